"""Shared helpers of the optimizer tests (not a test module)."""

from __future__ import annotations

import os

import torch

from lorentzcv.geometry import Lorentz, ManifoldParameter
from lorentzcv.geometry import math as lmath

DEVICE = os.environ.get("LORENTZCV_TEST_DEVICE", "cpu")


def random_points(n: int, d: int, k, scale: float = 1.0, seed: int = 0, dtype=torch.float64) -> torch.Tensor:
    """``n`` points of H^d_k (``k`` a float or tensor) at tangent scale ``scale`` from the origin."""
    g = torch.Generator().manual_seed(seed)
    v = torch.randn(n, d, generator=g, dtype=dtype) * scale
    v = torch.cat([torch.zeros(n, 1, dtype=dtype), v], dim=-1).to(DEVICE)
    k = k.detach().to(dtype) if isinstance(k, torch.Tensor) else torch.tensor(k, dtype=dtype, device=DEVICE)
    return lmath.expmap0(v, k)


def manifold_param(n: int = 3, d: int = 2, k: float = 1.0, learnable: bool = True, seed: int = 0,
                   dtype=torch.float64, bounds=(0.05, 20.0)) -> tuple[Lorentz, ManifoldParameter]:
    man = Lorentz(k=k, learnable=learnable, bounds=bounds).to(device=DEVICE, dtype=dtype)
    return man, ManifoldParameter(random_points(n, d, man.k, seed=seed, dtype=dtype), manifold=man)


def constraint_error(x: torch.Tensor, k: torch.Tensor) -> float:
    """Relative violation of <x,x>_L = -k (relative to x_0^2 + k)."""
    k = k.detach().to(x.dtype)
    err = (lmath.inner(x, x) + k).abs() / (lmath.time(x).squeeze(-1) ** 2 + k)
    return float(err.max())


def tangent_error(x: torch.Tensor, v: torch.Tensor) -> float:
    """Relative violation of <x,v>_L = 0."""
    den = (x.norm(dim=-1) * v.norm(dim=-1)).clamp_min(1e-30)
    return float((lmath.inner(x, v).abs() / den).max())
