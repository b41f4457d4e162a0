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


def _reference_radamw(x, grads, k, lr, weight_decay, betas, eps, amsgrad):
    """``docs/method.md`` §3.2 written literally with the geometry kernels (no fused closed forms)."""
    b1, b2 = betas
    m = torch.zeros_like(x)
    v = torch.zeros_like(x[..., :1])
    vmax = torch.zeros_like(v)
    for t, g in enumerate(grads, start=1):
        lam = lr * weight_decay
        o = lmath.origin(*x.shape, k=k, dtype=x.dtype, device=x.device)
        xt = lmath.normalize((1 - lam) * x + lam * o, k)
        gr = lmath.egrad2rgrad(xt, g, k)
        m = b1 * lmath.proju(xt, m, k) + (1 - b1) * gr
        v = b2 * v + (1 - b2) * lmath.inner(gr, gr, keepdim=True)
        vmax = torch.maximum(vmax, v)
        vv = vmax if amsgrad else v
        direction = (m / (1 - b1**t)) / ((vv / (1 - b2**t)).sqrt() + eps)
        x_new = lmath.expmap(xt, -lr * direction, k)
        m = lmath.transp(xt, x_new, m, k)
        x = lmath.projx(x_new, k)
        m = lmath.proju(x, m, k)
    return x, m, v


@pytest.mark.parametrize("amsgrad", [False, True])
@pytest.mark.parametrize("wd", [0.0, 0.3])
def test_radamw_manifold_step_matches_the_literal_algorithm(amsgrad: bool, wd: float) -> None:
    man, x = manifold_param(n=6, d=4, k=0.6)
    with torch.no_grad():
        x.copy_(random_points(6, 4, man.k, scale=1.5, seed=8))
    gen = torch.Generator().manual_seed(3)
    grads = [torch.randn(6, 5, generator=gen, dtype=torch.float64).to(DEVICE) * (1 + t % 3) for t in range(20)]
    kw = dict(lr=0.05, weight_decay=wd, betas=(0.8, 0.9), eps=1e-8, amsgrad=amsgrad)
    x_ref, m_ref, v_ref = _reference_radamw(x.detach().clone(), grads, man.k.detach(), **kw)
    opt = RiemannianAdamW([x], **kw)
    for g in grads:
        x.grad = g.clone()
        opt.step()
    torch.testing.assert_close(x.detach(), x_ref, atol=1e-10, rtol=1e-10)
    torch.testing.assert_close(opt.state[x]["exp_avg"], m_ref, atol=1e-10, rtol=1e-10)
    torch.testing.assert_close(opt.state[x]["exp_avg_sq"], v_ref, atol=1e-10, rtol=1e-10)
    assert opt.state[x]["exp_avg_sq"].shape == (6, 1)


def _reference_rsgd(x, grads, k, lr, momentum, dampening, wd, nesterov):
    """``docs/method.md`` §3.3 with torch's buffer semantics, written with the geometry kernels."""
    buf = None
    for g in grads:
        rg = lmath.egrad2rgrad(x, g + wd * x, k)
        if momentum:
            buf = rg.clone() if buf is None else momentum * buf + (1 - dampening) * rg
            d = rg + momentum * buf if nesterov else buf
        else:
            d = rg
        x_new = lmath.expmap(x, -lr * d, k)
        if buf is not None:
            buf = lmath.transp(x, x_new, buf, k)
        x = lmath.projx(x_new, k)
        if buf is not None:
            buf = lmath.proju(x, buf, k)
    return x, buf


@pytest.mark.parametrize("kw", [dict(momentum=0.0, dampening=0.0, wd=0.0, nesterov=False),
                                dict(momentum=0.9, dampening=0.0, wd=0.01, nesterov=True),
                                dict(momentum=0.5, dampening=0.2, wd=0.1, nesterov=False)])
def test_rsgd_manifold_step_matches_the_literal_algorithm(kw: dict) -> None:
    man, x = manifold_param(n=6, d=4, k=1.4)
    gen = torch.Generator().manual_seed(4)
    grads = [torch.randn(6, 5, generator=gen, dtype=torch.float64).to(DEVICE) for _ in range(15)]
    x_ref, buf_ref = _reference_rsgd(x.detach().clone(), grads, man.k.detach(), lr=0.03, **kw)
    opt = RiemannianSGD([x], lr=0.03, momentum=kw["momentum"], dampening=kw["dampening"],
                        weight_decay=kw["wd"], nesterov=kw["nesterov"])
    for g in grads:
        x.grad = g.clone()
        opt.step()
    torch.testing.assert_close(x.detach(), x_ref, atol=1e-10, rtol=1e-10)
    if buf_ref is not None:
        torch.testing.assert_close(opt.state[x]["momentum_buffer"], buf_ref, atol=1e-10, rtol=1e-10)
