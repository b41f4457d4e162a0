"""Riemannian steps on ManifoldParameters: on-manifold invariants, decay, zero/None grads, centroid convergence."""

from __future__ import annotations

import pytest
import torch

from lorentzcv.geometry import Lorentz, ManifoldParameter
from lorentzcv.geometry import math as lmath
from lorentzcv.optim import RiemannianAdamW, RiemannianSGD

from ._optim_helpers import DEVICE, constraint_error, manifold_param, random_points, tangent_error

OPTS = {
    "radamw": lambda groups: RiemannianAdamW(groups, lr=0.05, weight_decay=1e-2, amsgrad=True),
    "rsgd": lambda groups: RiemannianSGD(groups, lr=0.05, momentum=0.9, nesterov=True, weight_decay=1e-3),
}


@pytest.mark.parametrize("name", ["radamw", "rsgd"])
@pytest.mark.parametrize("move,steps", [("explog", 1000), ("scale", 200)])
def test_stays_on_manifold_while_curvature_changes_every_step(name: str, move: str, steps: int) -> None:
    man, x = manifold_param(n=4, d=3, k=1.0, dtype=torch.float32)
    targets = random_points(4, 3, 1.0, scale=1.5, seed=1).float()
    k_lr = 0.02 if name == "radamw" else 0.002
    groups = [{"params": [x]}, {"params": [man.k], "curvature": True, "lr": k_lr, "weight_decay": 0.0}]
    opt = OPTS[name](groups)
    opt.param_groups[1]["curvature_move"] = move
    ks = [float(man.k.detach())]
    moment = "exp_avg" if name == "radamw" else "momentum_buffer"
    for t in range(steps):
        opt.zero_grad()
        k = man.k
        # targets recomputed at the current k; the sin term flips the sign of dL/dk, so k moves every step
        tgt = lmath.expmap0(lmath.logmap0(targets, torch.tensor(1.0)), k)
        loss = lmath.dist(x, tgt, k).pow(2).sum() + 3.0 * torch.sin(torch.tensor(t / 7.0)) * k
        loss.backward()
        opt.step()
        ks.append(float(man.k.detach()))
        assert ks[-1] != ks[-2]
        assert constraint_error(x.detach(), man.k) < 1e-5, t
        assert tangent_error(x.detach(), opt.state[x][moment]) < 1e-4, t
    assert torch.isfinite(x).all()
    assert max(ks) - min(ks) > 0.3  # the curvature really travelled


@pytest.mark.parametrize("name", ["radamw", "rsgd"])
def test_zero_gradient_leaves_point_unchanged(name: str) -> None:
    man, x = manifold_param(n=5, d=3, k=0.7)
    x0 = x.detach().clone()
    opt = (RiemannianAdamW([x], lr=0.1, weight_decay=0.0) if name == "radamw"
           else RiemannianSGD([x], lr=0.1, momentum=0.9, weight_decay=0.0))
    for _ in range(3):
        x.grad = torch.zeros_like(x)
        opt.step()
    torch.testing.assert_close(x.detach(), x0, atol=1e-12, rtol=1e-12)


def test_radamw_zero_gradient_applies_only_the_centroid_decay() -> None:
    man, x = manifold_param(n=5, d=3, k=0.7)
    lr, wd = 0.1, 0.2
    opt = RiemannianAdamW([x], lr=lr, weight_decay=wd)
    x0 = x.detach().clone()
    x.grad = torch.zeros_like(x)
    opt.step()
    lam = lr * wd
    origin = lmath.origin(5, 4, k=man.k.detach(), dtype=x.dtype, device=x.device)
    expected = lmath.centroid(torch.stack([x0, origin], dim=-2), man.k.detach(),
                              weights=torch.tensor([1 - lam, lam], dtype=x.dtype, device=x.device))
    torch.testing.assert_close(x.detach(), expected, atol=1e-12, rtol=1e-10)


def test_radamw_decay_moves_points_monotonically_to_the_origin() -> None:
    man, x = manifold_param(n=6, d=4, k=1.3)
    with torch.no_grad():
        x.copy_(random_points(6, 4, 1.3, scale=2.0, seed=3))
    opt = RiemannianAdamW([x], lr=0.1, weight_decay=0.5)
    d = man.dist0(x.detach())
    for _ in range(100):
        x.grad = torch.zeros_like(x)
        opt.step()
        d_new = man.dist0(x.detach())
        assert (d_new < d).all()
        d = d_new
    assert constraint_error(x.detach(), man.k) < 1e-10
    # direction is kept: the decay pulls along the geodesic to the origin
    start = random_points(6, 4, 1.3, scale=2.0, seed=3)
    cos = torch.nn.functional.cosine_similarity(lmath.space(x.detach()), lmath.space(start), dim=-1)
    torch.testing.assert_close(cos, torch.ones_like(cos))


@pytest.mark.parametrize("name", ["radamw", "rsgd"])
def test_params_without_grad_are_skipped(name: str) -> None:
    man, x = manifold_param(n=2, d=2)
    _, y = manifold_param(n=2, d=2, seed=4)
    w = torch.nn.Parameter(torch.randn(3, device=DEVICE, dtype=torch.float64))
    x0, w0 = x.detach().clone(), w.detach().clone()
    opt = (RiemannianAdamW([x, y, w], lr=0.1, weight_decay=0.1) if name == "radamw"
           else RiemannianSGD([x, y, w], lr=0.1, momentum=0.9, weight_decay=0.1))
    y.grad = torch.randn_like(y)
    opt.step()
    assert torch.equal(x.detach(), x0) and torch.equal(w.detach(), w0)
    assert len(opt.state.get(x, {})) == 0 and len(opt.state.get(w, {})) == 0
    assert len(opt.state[y]) > 0


@pytest.mark.parametrize("name", ["radamw", "rsgd"])
def test_converges_to_the_lorentzian_centroid(name: str) -> None:
    man = Lorentz(k=0.8).to(device=DEVICE, dtype=torch.float64)
    k = man.k.detach()
    ys = random_points(7, 3, man.k, scale=0.8, seed=5)
    x = ManifoldParameter(random_points(1, 3, man.k, scale=0.7, seed=6)[0], manifold=man)
    if name == "radamw":
        opt = RiemannianAdamW([x], lr=0.1, weight_decay=0.0)
    else:
        opt = RiemannianSGD([x], lr=0.01, momentum=0.9)
    sched = torch.optim.lr_scheduler.CosineAnnealingLR(opt, 300)
    for _ in range(300):
        opt.zero_grad()
        lmath.sqdist(x, ys, k).sum().backward()
        opt.step()
        sched.step()
    expected = lmath.centroid(ys, k)
    assert float(man.dist(x.detach(), expected)) < 1e-4
    assert constraint_error(x.detach(), k) < 1e-10


def test_rsgd_stabilize_none_still_retracts() -> None:
    man, x = manifold_param(n=3, d=2)
    target = random_points(3, 2, man.k, seed=9)
    opt = RiemannianSGD([x], lr=0.05, momentum=0.5, stabilize=None)
    for _ in range(20):
        opt.zero_grad()
        lmath.sqdist(x, target, man.k).sum().backward()
        opt.step()
    assert constraint_error(x.detach(), man.k) < 1e-10
    assert "step" in opt.state[x]
