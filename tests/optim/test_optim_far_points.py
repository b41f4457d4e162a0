"""Riemannian optimizers with points at the representable radius and the curvature at its bounds.

At ``k = 0.05`` in float32 the radius is rapidity ``½·arccosh(1/(2ε)) ≈ 7.97`` (time coordinate ≈ 324), where
``<x,x>_L = -k`` is resolved only to about ``k/4``. Every manifold parameter and moment must stay finite, on the
hyperboloid (relative to ``x_0²``) and within the radius.
"""

from __future__ import annotations

import pytest
import torch

from lorentzcv.geometry import Lorentz, ManifoldParameter, max_distance
from lorentzcv.geometry import math as lmath
from lorentzcv.optim import RiemannianAdamW, RiemannianSGD
from lorentzcv.optim.curvature import geodesic_step_limit, tangent_norm

from ._optim_helpers import constraint_error, tangent_error

MOMENT = {RiemannianSGD: "momentum_buffer", RiemannianAdamW: "exp_avg"}


def _radius(k: float) -> float:
    """The optimizers' cap in distance units (float32): ``½·arccosh(1/(2ε))·min(1, √k)``."""
    return max_distance(torch.float32, 1.0) * min(1.0, k**0.5)


def _points(man: Lorentz, shapes, gen: torch.Generator, scale: float) -> list[torch.Tensor]:
    out = []
    for s in shapes:
        v = torch.randn(*s, generator=gen) * scale
        v[..., 0] = 0
        out.append(man.expmap0(v).detach())
    return out


def _check(params, opt, man: Lorentz, step) -> None:
    k = float(man.k.detach())
    for p in params:
        x = p.detach()
        assert torch.isfinite(x).all(), step
        assert constraint_error(x, man.k) < 1e-5, step
        assert float(man.dist0(x).detach().max()) <= _radius(k) * (1 + 1e-4), step
        m = opt.state[p].get(MOMENT[type(opt)])
        if m is not None:
            assert torch.isfinite(m).all(), step


@pytest.mark.parametrize("name", ["rsgd", "radamw"])
def test_nesterov_reproducer_at_the_lower_curvature_bound(name: str) -> None:
    """Regression: k hits 0.05 at once, points sit at the float32 radius; RSGD with Nesterov momentum made a
    parameter NaN at step 2 (a step from the radius, nearly radially inward, was allowed to travel to rapidity ~50
    by a rounding-broken geodesic limit, and the transported buffer overflowed)."""
    torch.manual_seed(0)
    man = Lorentz(0.7, learnable=True)
    g = torch.Generator().manual_seed(0)
    shapes = [(5,), (5,), (3, 5), (5,), (7,), (2, 7), (4,)]
    params = [ManifoldParameter(man.expmap0(torch.cat(
        [torch.zeros(*s[:-1], 1), torch.randn(*s[:-1], s[-1] - 1, generator=g)], -1)), manifold=man) for s in shapes]
    targets = [man.expmap0(torch.randn_like(p) * 0.5).detach() for p in params]
    groups = [{"params": params}, {"params": [man.k], "curvature": True, "lr": 1e-2}]
    opt = (RiemannianSGD(groups, lr=0.05, momentum=0.9, nesterov=True, weight_decay=1e-3) if name == "rsgd"
           else RiemannianAdamW(groups, lr=0.05, weight_decay=1e-3))
    for it in range(20):
        opt.zero_grad()
        sum(man.dist(p, t).square().sum() for p, t in zip(params, targets)).backward()
        opt.step()
        _check(params, opt, man, it)
    if name == "rsgd":
        assert float(man.k.detach()) == pytest.approx(0.05)


OPTIMIZERS = {
    "rsgd": (RiemannianSGD, {}),
    "rsgd_momentum": (RiemannianSGD, {"momentum": 0.9}),
    "rsgd_nesterov": (RiemannianSGD, {"momentum": 0.9, "nesterov": True}),
    "rsgd_weight_decay": (RiemannianSGD, {"momentum": 0.9, "nesterov": True, "weight_decay": 1e-2}),
    "radamw": (RiemannianAdamW, {"weight_decay": 1e-2}),
    "radamw_amsgrad": (RiemannianAdamW, {"weight_decay": 1e-2, "amsgrad": True}),
}


@pytest.mark.parametrize("bound", ["low", "high"])
@pytest.mark.parametrize("name", list(OPTIMIZERS))
def test_randomized_far_points_at_curvature_bounds(name: str, bound: str) -> None:
    """200 steps, k driven to k_min = 0.05 (explog move) or k_max = 20 (scale move), targets left on the initial
    hyperboloid (so the gradients at far points are large and arbitrary) and one parameter pulled outward: every
    point finite, on the hyperboloid relative to ``x_0²`` and within the radius after every step."""
    cls, kw = OPTIMIZERS[name]
    gen = torch.Generator().manual_seed(sum(map(ord, name + bound)))
    man = Lorentz(0.7, learnable=True)
    shapes = [(5,), (3, 5), (2, 7), (4,)]
    params = [ManifoldParameter(x, manifold=man) for x in _points(man, shapes, gen, 1.5)]
    targets = _points(man, shapes, gen, 0.5)
    push = -1.0 if bound == "low" else 1.0
    move = "explog" if bound == "low" else "scale"
    opt = cls([{"params": params}, {"params": [man.k], "curvature": True, "lr": 0.1, "weight_decay": 0.0}],
              lr=0.05, curvature_move=move, **kw)
    for it in range(200):
        opt.zero_grad()
        loss = sum(man.dist(p, t).square().sum() for p, t in zip(params, targets))
        (loss - 3.0 * man.dist0(params[0]).sum() - push * 100.0 * man.k).backward()
        opt.step()
        _check(params, opt, man, it)
    assert float(man.k.detach()) == pytest.approx(0.05 if bound == "low" else 20.0)
    for p in params:
        m = opt.state[p].get(MOMENT[cls])
        if m is not None:
            assert tangent_error(p.detach(), m) < 1e-3


def test_step_limit_is_bounded_for_rounded_inward_directions() -> None:
    """A direction at a far point whose time component exceeds ``sinh r·‖u‖_L`` (tangent only up to rounding)
    must not get an unbounded step: the limit is at most ``r_x + cap`` (through the origin to the far side)."""
    k = torch.tensor(0.05)
    cap = torch.tensor(7.97)
    r = 7.9
    x0 = k.sqrt() * torch.cosh(torch.tensor(r))
    un = torch.tensor([1.0])
    for excess in (1.0, 1.0 + 1e-6, 1.0 + 1e-4, 1.01):
        u0 = -torch.sinh(torch.tensor(r)) * excess * un  # radially inward, beyond tangent by `excess`
        limit = geodesic_step_limit(x0.reshape(1), u0, un, k, cap)
        assert torch.isfinite(limit).all() and float(limit) <= r + float(cap) + 1e-3, excess
    # exact and outward directions keep the formula's value (float64: the step ends on the cap)
    k64 = torch.tensor(0.7, dtype=torch.float64)
    x = lmath.expmap0(torch.tensor([[0.0, 2.0, 0.5]], dtype=torch.float64), k64)
    for sign in (1.0, -1.0):
        u = lmath.proju(x, sign * torch.tensor([[0.3, 1.0, -2.0]], dtype=torch.float64), k64)
        un64 = tangent_norm(x, u, k64)
        cap64 = torch.tensor(3.0, dtype=torch.float64)
        lim = geodesic_step_limit(x[:, :1], u[:, :1], un64, k64, cap64)
        end = lmath.expmap(x, u / un64 * lim * k64.sqrt(), k64)
        torch.testing.assert_close(lmath.dist0(end, k64) / k64.sqrt(), cap64.expand(1))
