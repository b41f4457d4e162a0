"""Helpers for the layer tests: random points, the manifold check, gradcheck through all parameters and k."""

from __future__ import annotations

import torch
from torch import nn
from torch.func import functional_call

from lorentzcv.geometry import math as lmath


def points(*space_shape: int, k: float | torch.Tensor = 1.0, dim: int = 1, scale: float = 1.0,
           dtype: torch.dtype = torch.float64, device: torch.device | str = "cpu") -> torch.Tensor:
    """Random points ``add_time(scale·N(0,1))``; ``space_shape`` has the space channels at ``dim``."""
    ys = torch.randn(*space_shape, dtype=dtype, device=device) * scale
    kk = torch.as_tensor(k, dtype=dtype, device=device)
    return lmath.add_time(ys, kk, dim=dim)


def manifold_error(x: torch.Tensor, k: torch.Tensor | float, dim: int) -> float:
    """Max relative constraint error ``|<x,x>_L + k| / (x_0² + ‖x_s‖²)`` (float64) and the time sign."""
    x = x.double()
    k = torch.as_tensor(k, dtype=torch.float64, device=x.device)
    err = (lmath.inner(x, x, dim=dim) + k).abs() / (x * x).sum(dim)
    assert (lmath.time(x, dim=dim) > 0).all(), "non-positive time coordinate"
    return err.max().item()


def assert_on_manifold(x: torch.Tensor, k, dim: int) -> None:
    tol = 1e-12 if x.dtype == torch.float64 else 1e-5
    assert torch.isfinite(x).all()
    err = manifold_error(x, k, dim)
    assert err < tol, f"constraint error {err:.3g} >= {tol:g}"


def gradcheck_module(module: nn.Module, *inputs: torch.Tensor, **kw) -> bool:
    """float64 gradcheck w.r.t. the inputs **and every parameter** (curvature ``k`` included, even if the
    manifold is not learnable)."""
    module = module.double()
    names, params = zip(*[(n, p.detach().clone().requires_grad_(True)) for n, p in module.named_parameters()])
    inputs = tuple(x.detach().double().requires_grad_(x.is_floating_point()) for x in inputs)
    n_in = len(inputs)

    def f(*args):
        return functional_call(module, dict(zip(names, args[n_in:])), args[:n_in])

    kw.setdefault("fast_mode", True)
    kw.setdefault("nondet_tol", 1e-10)  # cuDNN weight gradients are not bitwise deterministic
    return torch.autograd.gradcheck(f, inputs + tuple(params), **kw)
