"""Seeded samplers of Lorentz points/tangent vectors with controlled distance from the origin."""

from __future__ import annotations

import math

import torch

from lorentzcv.geometry import math as lmath


def sample_k(n: int, gen: torch.Generator, dtype: torch.dtype, lo: float = 0.1, hi: float = 10.0) -> torch.Tensor:
    """``n`` curvature parameters log-uniform in ``[lo, hi]``."""
    u = torch.rand(n, generator=gen, dtype=torch.float64)
    return torch.exp(math.log(lo) + u * (math.log(hi) - math.log(lo))).to(dtype)


def sample_points(
    k: torch.Tensor, dim: int, gen: torch.Generator, max_dist: float = 20.0, dtype: torch.dtype | None = None
) -> tuple[torch.Tensor, torch.Tensor]:
    """Points at uniform distance in ``[0, max_dist]`` from the origin (one per entry of ``k``).

    Returns ``(x, d)``; ``x`` is built in float64 and cast to ``dtype``.
    """
    n = k.numel()
    d = torch.rand(n, generator=gen, dtype=torch.float64) * max_dist
    direction = torch.randn(n, dim, generator=gen, dtype=torch.float64)
    direction = direction / direction.norm(dim=-1, keepdim=True)
    v = torch.cat([torch.zeros(n, 1, dtype=torch.float64), d[:, None] * direction], dim=-1)
    x = lmath.expmap0(v, k.double())
    return x.to(dtype or k.dtype), d


def sample_tangent(x: torch.Tensor, k: torch.Tensor, gen: torch.Generator, max_norm: float) -> torch.Tensor:
    """Tangent vectors at ``x`` with Lorentz norm uniform in ``[0, max_norm]`` (transported from the origin)."""
    v = torch.randn(x.shape, generator=gen, dtype=torch.float64)
    v[:, 0] = 0
    r = torch.rand(x.shape[0], 1, generator=gen, dtype=torch.float64) * max_norm
    v = r * v / v.norm(dim=-1, keepdim=True)
    return lmath.transp0(x.double(), v, k.double()).to(x.dtype)


def resolvable_rapidity(dtype: torch.dtype) -> float:
    """Rapidity up to which ambient coordinates resolve tangent vectors: ``cosh(r)^2·eps ≈ 1e-3``."""
    import math as _m

    return 0.5 * _m.log(4e-3 / torch.finfo(dtype).eps)


def rapidity(d: torch.Tensor, k: torch.Tensor) -> torch.Tensor:
    return d / k.double().sqrt()


def manifold_error(x: torch.Tensor, k: torch.Tensor) -> torch.Tensor:
    """Relative constraint error ``|<x,x>_L + k| / (x_0² + ‖x_s‖²)`` (backward-stable scale), in float64."""
    x = x.double()
    return (lmath.inner(x, x) + k.double()).abs() / (x * x).sum(-1)
