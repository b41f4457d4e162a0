"""Curvature-aware scheme (``docs/method.md`` §4): ordered update, clamping, the explog/scale moves, naive mode, k recovery."""

from __future__ import annotations

import pytest
import torch

from lorentzcv.geometry import Lorentz
from lorentzcv.geometry import math as lmath
from lorentzcv.optim import RiemannianAdamW, RiemannianSGD, create_optimizer, move_to_curvature

from ._optim_helpers import DEVICE, constraint_error, manifold_param, random_points, tangent_error

MOMENT = {"radamw": "exp_avg", "rsgd": "momentum_buffer"}


def _make(name: str, groups, **kw):
    if name == "radamw":
        return RiemannianAdamW(groups, lr=0.05, weight_decay=0.01, **kw)
    return RiemannianSGD(groups, lr=0.05, momentum=0.9, **kw)


def _loss(x, man, t: int = 0):
    # depends on x and on k (targets are recomputed at the current k)
    k = man.k
    v = lmath.logmap0(random_points(x.shape[0], x.shape[1] - 1, 1.0, scale=1.2, seed=11).to(x.dtype),
                      torch.tensor(1.0, dtype=x.dtype, device=x.device))
    return lmath.sqdist(x, lmath.expmap0(v, k), k).sum() + (0.5 + t % 2) * k


def _curvature_groups(x, man, lr: float = 0.1):
    return [{"params": [x], "name": "manifold"},
            {"params": [man.k], "curvature": True, "lr": lr, "weight_decay": 0.0, "name": "curvature"}]


@pytest.mark.parametrize("name", ["radamw", "rsgd"])
@pytest.mark.parametrize("move", ["explog", "scale"])
def test_after_curvature_update_points_and_moments_live_on_the_new_manifold(name: str, move: str) -> None:
    man, x = manifold_param(n=5, d=3, k=1.0)
    opt = _make(name, _curvature_groups(x, man), curvature_move=move)
    for t in range(3):
        k_before = man.k.detach().clone()
        opt.zero_grad()
        _loss(x, man, t).backward()
        opt.step()
        assert not torch.equal(man.k.detach(), k_before)
        assert constraint_error(x.detach(), man.k) < 1e-12
        assert tangent_error(x.detach(), opt.state[x][MOMENT[name]]) < 1e-12


@pytest.mark.parametrize("name", ["radamw", "rsgd"])
def test_naive_mode_leaves_points_off_the_new_manifold(name: str) -> None:
    man, x = manifold_param(n=5, d=3, k=1.0)
    opt = _make(name, _curvature_groups(x, man), curvature_mode="naive")
    opt.zero_grad()
    _loss(x, man).backward()
    k_old = man.k.detach().clone()
    opt.step()
    assert abs(float(man.k.detach() - k_old)) > 1e-3
    assert constraint_error(x.detach(), k_old) < 1e-12  # still on the old manifold ...
    assert constraint_error(x.detach(), man.k) > 1e-3  # ... hence off the new one


@pytest.mark.parametrize("name", ["radamw", "rsgd"])
@pytest.mark.parametrize("mode", ["aware", "naive", "naive_repaired"])
def test_only_the_naive_mode_leaves_stored_points_unrepaired(name: str, mode: str) -> None:
    """After a k change, ``naive`` keeps the stored coordinates: a later step with zero gradient leaves them bit for
    bit, off the current hyperboloid; ``naive_repaired`` puts them back on it at that step; ``aware`` at once."""
    man, x = manifold_param(n=5, d=3, k=1.0)
    groups = _curvature_groups(x, man)
    opt = (RiemannianAdamW(groups, lr=0.05, weight_decay=0.0, curvature_mode=mode) if name == "radamw"
           else RiemannianSGD(groups, lr=0.05, momentum=0.9, curvature_mode=mode))
    opt.zero_grad()
    _loss(x, man).backward()
    k_old = man.k.detach().clone()
    opt.step()
    k1 = man.k.detach().clone()
    assert abs(float(k1 - k_old)) > 1e-3
    assert (constraint_error(x.detach(), k1) < 1e-12) == (mode == "aware")
    # k fixed from here on; a step with zero gradient (the point does not move) re-projects only when repairing
    opt.param_groups[1]["lr"] = 0.0
    for _ in range(2):
        stored = x.detach().clone()
        if name == "rsgd":  # RSGD: no momentum left either, so the step is exactly zero
            opt.state[x]["momentum_buffer"].zero_()
        else:
            opt.state[x]["exp_avg"].zero_()
        x.grad = torch.zeros_like(x)
        man.k.grad = torch.zeros_like(man.k)
        opt.step()
        assert torch.equal(man.k.detach(), k1)
        if mode == "naive":
            assert torch.equal(x.detach(), stored)  # no repair on use, no move
            assert constraint_error(x.detach(), k1) > 1e-3
        else:
            assert constraint_error(x.detach(), k1) < 1e-12


@pytest.mark.parametrize("name", ["radamw", "rsgd"])
def test_naive_mode_keeps_gradient_steps_unprojected(name: str) -> None:
    """``naive``'s manifold step is the exponential map of the current k without ``projx``: a point stored on
    H_{k_old} and stepped at k_new stays off H_{k_new} (``naive_repaired`` lands on it)."""
    errs = {}
    for mode in ("naive", "naive_repaired"):
        man, x = manifold_param(n=5, d=3, k=1.0)
        opt = _make(name, _curvature_groups(x, man), curvature_mode=mode)
        for t in range(3):
            opt.zero_grad()
            _loss(x, man, t).backward()
            k_step = man.k.detach().clone()  # the k the manifold step uses (the curvature group comes last)
            opt.step()
            assert torch.isfinite(x).all()
        errs[mode] = constraint_error(x.detach(), k_step)
    assert errs["naive"] > 1e-3 and errs["naive_repaired"] < 1e-12


@pytest.mark.parametrize("name", ["radamw", "rsgd"])
def test_naive_mode_keeps_k_positive_but_ignores_its_bounds(name: str) -> None:
    results = {}
    for mode in ("aware", "naive", "naive_repaired"):
        man, x = manifold_param(n=3, d=2, k=0.1, bounds=(0.05, 20.0))
        lr = 0.06 if name == "radamw" else 0.002  # first step: 0.1 -> 0.04 (Adam: lr, SGD: lr·30)
        opt = _make(name, _curvature_groups(x, man, lr=lr), curvature_mode=mode)
        for push in (30.0, 1e6):  # below k_min, then below 0
            opt.zero_grad()
            (push * man.k).backward()
            opt.step()
            results[(mode, push)] = float(man.k.detach())
    assert results[("aware", 30.0)] == results[("naive_repaired", 30.0)] == pytest.approx(0.05)
    assert 0.0 < results[("naive", 30.0)] < 0.05
    assert results[("naive", 1e6)] == torch.finfo(torch.float64).tiny  # kept positive, nothing more


def test_unknown_curvature_mode_is_a_one_line_error() -> None:
    man, x = manifold_param()
    with pytest.raises(ValueError, match="curvature_mode must be one of.*naive_repaired") as e:
        RiemannianSGD(_curvature_groups(x, man), lr=0.1, curvature_mode="repaired")
    assert "\n" not in str(e.value)


def test_explog_move_preserves_dist0_direction_and_moment_norm() -> None:
    k_old = torch.tensor(0.6, dtype=torch.float64)
    k_new = torch.tensor(2.5, dtype=torch.float64)
    x = random_points(6, 4, k_old, scale=1.5, seed=2)
    m = lmath.proju(x, torch.randn(x.shape, dtype=x.dtype, generator=torch.Generator().manual_seed(0)).to(x),
                    k_old)
    x_new, m_new = move_to_curvature(x, k_old, k_new, m, variant="explog")
    assert constraint_error(x_new, k_new) < 1e-12
    assert tangent_error(x_new, m_new) < 1e-12
    torch.testing.assert_close(lmath.dist0(x_new, k_new), lmath.dist0(x, k_old))
    cos = torch.nn.functional.cosine_similarity(lmath.space(x_new), lmath.space(x), dim=-1)
    torch.testing.assert_close(cos, torch.ones_like(cos))
    torch.testing.assert_close(lmath.lorentz_norm(m_new), lmath.lorentz_norm(m))
    # the moment is the parallel transport through the origin, not a mere re-projection
    m0 = lmath.transp0back(x, m, k_old)
    torch.testing.assert_close(m_new, lmath.transp0(x_new, m0, k_new))
    assert not torch.allclose(m_new, lmath.proju(x_new, m, k_new), atol=1e-3)


def test_scale_move_preserves_rapidity_and_scales_distances() -> None:
    k_old = torch.tensor(1.7, dtype=torch.float64)
    k_new = torch.tensor(0.3, dtype=torch.float64)
    x = random_points(6, 4, k_old, scale=1.5, seed=3)
    m = lmath.proju(x, torch.randn(x.shape, dtype=x.dtype, generator=torch.Generator().manual_seed(1)).to(x),
                    k_old)
    x_new, m_new = move_to_curvature(x, k_old, k_new, m, variant="scale")
    s = (k_new / k_old).sqrt()
    assert constraint_error(x_new, k_new) < 1e-12
    assert tangent_error(x_new, m_new) < 1e-12
    torch.testing.assert_close(lmath.dist0(x_new, k_new) / k_new.sqrt(), lmath.dist0(x, k_old) / k_old.sqrt())
    torch.testing.assert_close(lmath.dist(x_new[:3], x_new[3:], k_new), s * lmath.dist(x[:3], x[3:], k_old))
    torch.testing.assert_close(lmath.lorentz_norm(m_new), s * lmath.lorentz_norm(m))


def test_move_identity_when_curvature_is_unchanged() -> None:
    k = torch.tensor(1.3, dtype=torch.float64)
    x = random_points(4, 3, k, seed=4)
    m = lmath.proju(x, torch.ones_like(x), k)
    for variant in ("explog", "scale"):
        x2, m2 = move_to_curvature(x, k, k.clone(), m, variant=variant)
        torch.testing.assert_close(x2, x)
        torch.testing.assert_close(m2, m)
    with pytest.raises(ValueError, match="variant"):
        move_to_curvature(x, k, k, variant="warp")


@pytest.mark.parametrize("name", ["radamw", "rsgd"])
def test_optimizer_writes_the_transported_moment_back(name: str) -> None:
    """The authors' code loses the transport; here the state holds P_{o->x}^{k_new}(P_{x->o}^{k_old}(m))."""
    man, x = manifold_param(n=4, d=3, k=1.0)
    opt = _make(name, _curvature_groups(x, man, lr=0.2))
    opt.zero_grad()
    _loss(x, man).backward()
    opt.step()  # creates the first moment
    x_before = x.detach().clone()
    m_before = opt.state[x][MOMENT[name]].clone()
    k_before = man.k.detach().clone()
    opt.zero_grad(set_to_none=True)
    man.k.grad = torch.ones_like(man.k)  # only the curvature moves in this step
    opt.step()
    assert not torch.equal(man.k.detach(), k_before)
    x_exp, m_exp = move_to_curvature(x_before, k_before, man.k.detach(), m_before)
    torch.testing.assert_close(x.detach(), x_exp, atol=1e-12, rtol=1e-12)
    torch.testing.assert_close(opt.state[x][MOMENT[name]], m_exp, atol=1e-12, rtol=1e-12)
    torch.testing.assert_close(lmath.lorentz_norm(opt.state[x][MOMENT[name]]), lmath.lorentz_norm(m_before))


@pytest.mark.parametrize("name", ["radamw", "rsgd"])
def test_curvature_uses_its_own_group_lr_and_is_clamped(name: str) -> None:
    man, x = manifold_param(n=2, d=2, k=1.0, bounds=(0.5, 2.0))
    # curvature group FIRST with lr 0: [A] read the last group's lr for k; here k must not move
    groups = [{"params": [man.k], "curvature": True, "lr": 0.0}, {"params": [x], "lr": 1.0}]
    opt = _make(name, groups)
    opt.zero_grad()
    _loss(x, man).backward()
    opt.step()
    assert float(man.k.detach()) == 1.0
    # a huge curvature lr: clamped to the manifold's bounds (found from the manifold parameter)
    opt.param_groups[0]["lr"] = 1e3
    for sign in (1.0, -1.0):
        opt.zero_grad()
        man.k.grad = torch.full_like(man.k, sign * 1e6)
        x.grad = torch.zeros_like(x)
        opt.step()
        assert float(man.k.detach()) == (0.5 if sign > 0 else 2.0)
        assert constraint_error(x.detach(), man.k) < 1e-12


def test_explicit_bounds_in_the_group_win() -> None:
    man = Lorentz(k=1.0, learnable=True).to(DEVICE)
    opt = RiemannianSGD([{"params": [man.k], "curvature": True, "bounds": (0.9, 1.1)}], lr=10.0)
    man.k.grad = torch.ones_like(man.k)
    opt.step()
    assert float(man.k.detach()) == pytest.approx(0.9)
    with pytest.raises(ValueError, match="ManifoldParameter"):
        _, x = manifold_param()
        RiemannianSGD([{"params": [x], "curvature": True}])


@pytest.mark.parametrize("name", ["radamw", "rsgd"])
def test_recovers_curvature_from_pairwise_distances(name: str) -> None:
    g = torch.Generator().manual_seed(0)
    v = torch.cat([torch.zeros(8, 1), torch.randn(8, 2, generator=g)], dim=-1).double().to(DEVICE)
    i, j = torch.triu_indices(8, 8, offset=1)

    def pdist(k):
        x = lmath.expmap0(v, k)  # points recomputed from the fixed tangent vectors at every step
        return lmath.dist(x[i], x[j], k)

    target = pdist(torch.tensor(2.0, dtype=torch.float64, device=DEVICE))
    man = Lorentz(k=1.0, learnable=True).to(device=DEVICE, dtype=torch.float64)
    if name == "radamw":
        opt = create_optimizer(man, "radamw", lr=0.0, weight_decay=0.0, curvature_lr=0.05)
    else:
        opt = create_optimizer(man, "rsgd", lr=0.0, weight_decay=0.0, curvature_lr=0.5, momentum=0.9)
    assert [gr["name"] for gr in opt.param_groups] == ["curvature"]
    for _ in range(200):
        opt.zero_grad()
        (pdist(man.k) - target).pow(2).mean().backward()
        opt.step()
    assert abs(float(man.k.detach()) - 2.0) / 2.0 < 0.05


@pytest.mark.parametrize("variant", ["explog", "scale"])
def test_move_matches_the_kernel_composition_and_honours_dim(variant: str) -> None:
    k_old = torch.tensor(2.2, dtype=torch.float64)
    k_new = torch.tensor(0.4, dtype=torch.float64)
    x = random_points(12, 3, k_old, scale=2.0, seed=7)
    m = lmath.proju(x, torch.randn(x.shape, dtype=x.dtype, generator=torch.Generator().manual_seed(2)).to(x),
                    k_old)
    x_new, m_new = move_to_curvature(x, k_old, k_new, m, variant=variant)
    if variant == "explog":
        x_exp = lmath.expmap0(lmath.logmap0(x, k_old), k_new)
        m_exp = lmath.transp0(x_exp, lmath.transp0back(x, m, k_old), k_new)
    else:
        s = (k_new / k_old).sqrt()
        x_exp, m_exp = s * x, s * m
    torch.testing.assert_close(x_new, x_exp)
    torch.testing.assert_close(m_new, m_exp)
    # channels-first feature maps: (B, 1+C, H, W) with the manifold at dim 1
    xf = x.reshape(3, 2, 2, 4).permute(0, 3, 1, 2)
    mf = m.reshape(3, 2, 2, 4).permute(0, 3, 1, 2)
    xf_new, mf_new = move_to_curvature(xf, k_old, k_new, mf, variant=variant, dim=1)
    torch.testing.assert_close(xf_new.permute(0, 2, 3, 1).reshape(12, 4), x_new)
    torch.testing.assert_close(mf_new.permute(0, 2, 3, 1).reshape(12, 4), m_new)
    x_only, none = move_to_curvature(x, k_old, k_new, variant=variant)
    assert none is None
    torch.testing.assert_close(x_only, x_new)


def test_warns_when_a_curvature_is_not_in_a_curvature_group() -> None:
    man, x = manifold_param(n=2, d=2)
    with pytest.warns(UserWarning, match="not flagged 'curvature'"):
        RiemannianAdamW([x, man.k])
