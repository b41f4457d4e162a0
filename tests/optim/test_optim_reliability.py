"""Reliability of the Riemannian optimizers: the representable radius at extreme curvatures, geoopt parameters."""

from __future__ import annotations

import pytest
import torch
from torch import nn

from lorentzcv.geometry import Lorentz, ManifoldParameter, max_distance
from lorentzcv.geometry import math as lmath
from lorentzcv.optim import RiemannianAdamW, RiemannianSGD, create_optimizer, move_to_curvature
from lorentzcv.optim.curvature import geodesic_step_limit, tangent_norm

from ._optim_helpers import constraint_error, tangent_error

MOMENT = {"radamw": "exp_avg", "rsgd": "momentum_buffer"}


def _radius(k: float, dtype: torch.dtype = torch.float32) -> float:
    """The cap of the optimizers in distance units: ``½·arccosh(1/(2ε))·min(1, √k)``."""
    return max_distance(dtype, 1.0) * min(1.0, k**0.5)


def _issue_setup(seed: int = 0):
    torch.manual_seed(seed)
    man = Lorentz(k=0.2)
    v = torch.randn(8, 7)
    v[:, 0] = 0
    p = ManifoldParameter(man.expmap0(v / v.norm(dim=-1, keepdim=True) * 4.6), manifold=man)
    t = man.expmap0(torch.cat([torch.zeros(8, 1), torch.randn(8, 6)], -1))
    return man, p, t


@pytest.mark.parametrize("name", ["radamw", "rsgd"])
def test_issue_reproducer_stays_finite(name: str) -> None:
    """Points past float32's radius at k = 0.2: the steps exploded to NaN within 3 iterations."""
    man, p, t = _issue_setup()
    opt = (RiemannianAdamW([p], lr=1e-2, weight_decay=0.0) if name == "radamw"
           else RiemannianSGD([p], lr=1e-2, momentum=0.9))
    for _ in range(20):
        opt.zero_grad()
        man.dist(p, t).sum().backward()
        opt.step()
    assert torch.isfinite(p).all()
    assert (man.dist0(p.detach()) <= _radius(0.2) * (1 + 1e-4)).all()
    assert constraint_error(p.detach(), man.k) < 1e-5
    assert tangent_error(p.detach(), opt.state[p][MOMENT[name]]) < 1e-2


def _make(name: str, groups, move: str):
    if name == "radamw":
        return RiemannianAdamW(groups, lr=2e-2, weight_decay=1e-3, curvature_move=move)
    return RiemannianSGD(groups, lr=2e-2, momentum=0.9, nesterov=True, curvature_move=move)


@pytest.mark.parametrize("amp,steps", [
    (False, 1000),
    (True, 150),  # CPU autocast is slow; the 1000-step run is marked slow
    pytest.param(True, 1000, marks=pytest.mark.slow),
], ids=["float32-1000", "fp16_autocast-150", "fp16_autocast-1000"])
@pytest.mark.parametrize("name", ["radamw", "rsgd"])
@pytest.mark.parametrize("bound", ["low", "high"])
def test_curvature_driven_to_its_bound(bound: str, name: str, amp: bool, steps: int) -> None:
    """A learnable k pushed to k_min = 0.05 (explog move raises the rapidity d/√k) or k_max = 20 (scale move raises
    d), points pulled outward: finite, on the manifold, within the radius, every step (float32 parameters, the
    forward in float32 or under float16 autocast)."""
    lo, hi = 0.05, 20.0
    move = "explog" if bound == "low" else "scale"
    man = Lorentz(k=1.0, learnable=True, bounds=(lo, hi))
    gen = torch.Generator().manual_seed(0)
    v = torch.randn(6, 5, generator=gen)
    v[:, 0] = 0
    x = ManifoldParameter(man.expmap0(v / v.norm(dim=-1, keepdim=True) * 6.0).detach(), manifold=man)
    tv = torch.randn(6, 5, generator=gen)
    tv[:, 0] = 0
    push = -1.0 if bound == "low" else 1.0  # dL/dk sign that drives k to the bound
    groups = [{"params": [x]}, {"params": [man.k], "curvature": True, "lr": 0.2, "weight_decay": 0.0}]
    opt = _make(name, groups, move)
    lin = nn.Linear(5, 5)
    for step in range(steps):
        opt.zero_grad()
        with torch.autocast("cpu", dtype=torch.float16, enabled=amp):
            tgt = man.expmap0(lin(tv))  # the linear layer runs in float16 under autocast
            loss = man.dist(x, tgt).sum() - 2.0 * man.dist0(x).sum() - push * 1000.0 * man.k
        loss.backward()
        opt.step()
        k = float(man.k.detach())
        xd = x.detach()
        assert torch.isfinite(xd).all(), step
        assert constraint_error(xd, man.k) < 1e-5, step
        assert float(man.dist0(xd).detach().max()) <= _radius(k) * (1 + 1e-4), step
    assert k == pytest.approx(lo if bound == "low" else hi)
    assert tangent_error(xd, opt.state[x][MOMENT[name]]) < 1e-2
    assert float(man.dist0(xd).detach().max()) > 0.9 * _radius(k)  # the outward pull really reached the cap


@pytest.mark.parametrize("dtype", [torch.float32, torch.float64])
def test_curvature_moves_are_capped(dtype: torch.dtype) -> None:
    k1 = torch.tensor(1.0, dtype=dtype)
    v = torch.tensor([[0.0, 7.0, 1.0], [0.0, 0.0, -2.0], [0.0, 1e-3, 0.0]], dtype=dtype)
    x = lmath.expmap0(v, k1)
    m = lmath.transp0(x, torch.tensor([[0.0, 0.3, -0.2]] * 3, dtype=dtype), k1)
    for variant, k_new in (("explog", 0.05), ("scale", 20.0)):
        kn = torch.tensor(k_new, dtype=dtype)
        x_new, m_new = move_to_curvature(x, k1, kn, m, variant=variant)
        d = lmath.dist0(x_new, kn)
        assert (d <= _radius(k_new, dtype) * (1 + 1e-6)).all(), variant
        assert constraint_error(x_new, kn) < 1e-6 and tangent_error(x_new, m_new) < 1e-5
        # the moment keeps its norm (explog) or scales with the similarity (scale), also where the point was capped
        factor = 1.0 if variant == "explog" else (k_new / 1.0) ** 0.5
        # a float32 vector tangent at rapidity 7 carries a normal component of relative size ε·cosh²(7) ≈ 1.8e-2
        # (rounding of its entries); the move turns it into a norm error of that order
        rtol = 3e-2 if dtype == torch.float32 else 1e-8
        torch.testing.assert_close(tangent_norm(x_new, m_new, kn), factor * tangent_norm(x, m, k1), rtol=rtol, atol=0)
        # the point near the origin is moved as before (no cap there)
        x_free, m_free = move_to_curvature(x[2:], k1, kn, m[2:], variant=variant, r=None)
        torch.testing.assert_close(x_new[2:], x_free)
        torch.testing.assert_close(m_new[2:], m_free)
    # without the cap, the explog move to k = 0.05 leaves float32's resolvable range (rapidity 7/√0.05 = 31)
    x_free, _ = move_to_curvature(x, k1, torch.tensor(0.05, dtype=dtype), variant="explog", r=None)
    assert float(lmath.dist0(x_free, torch.tensor(0.05, dtype=dtype))[0]) > 6.5


def test_step_limit_and_tangent_norm_formulas() -> None:
    k = torch.tensor(0.7, dtype=torch.float64)
    x = lmath.expmap0(torch.tensor([[0.0, 2.0, 0.5]], dtype=torch.float64), k)
    u = lmath.proju(x, torch.tensor([[0.3, 1.0, -2.0]], dtype=torch.float64), k)
    un = tangent_norm(x, u, k)
    torch.testing.assert_close(un, lmath.lorentz_norm(u, keepdim=True))
    cap = torch.tensor(3.0, dtype=torch.float64)
    limit = geodesic_step_limit(x[:, :1], u[:, :1], un, k, cap)
    end = lmath.expmap(x, u / un * limit * k.sqrt(), k)  # travel exactly `limit` in rapidity
    torch.testing.assert_close(lmath.dist0(end, k) / k.sqrt(), cap.expand(1))


# --- geoopt parameters (duck typing, geoopt is not installed) -------------------------------------------------
class _GeooptManifold(nn.Module):
    __module__ = "geoopt.manifolds.base"


class _FakeGeooptLorentz(_GeooptManifold):
    """Mimics geoopt.Lorentz: an nn.Module with a Parameter ``k``, points with <x,x>_L = -k."""

    __module__ = "geoopt.manifolds.lorentz"

    def __init__(self, k: float = 1.0, learnable: bool = False) -> None:
        super().__init__()
        self.k = nn.Parameter(torch.tensor(k), requires_grad=learnable)


_FakeGeooptLorentz.__name__ = _FakeGeooptLorentz.__qualname__ = "Lorentz"


class _FakePoincareBall(_GeooptManifold):
    __module__ = "geoopt.manifolds.stereographic.manifold"

    def __init__(self) -> None:
        super().__init__()
        self.k = nn.Parameter(torch.tensor(-1.0), requires_grad=False)


_FakePoincareBall.__name__ = _FakePoincareBall.__qualname__ = "PoincareBall"


class _FakeEuclidean(_GeooptManifold):
    __module__ = "geoopt.manifolds.euclidean"


_FakeEuclidean.__name__ = _FakeEuclidean.__qualname__ = "Euclidean"


class _FakeGeooptParameter(nn.Parameter):
    """Mimics geoopt.ManifoldParameter: a Parameter subclass carrying ``.manifold``."""

    __module__ = "geoopt.tensor"

    def __new__(cls, data: torch.Tensor, manifold: nn.Module, requires_grad: bool = True):
        instance = torch.Tensor._make_subclass(cls, data.detach(), requires_grad)
        instance.manifold = manifold
        return instance


def _geoopt_points(man: _FakeGeooptLorentz, n: int = 5) -> _FakeGeooptParameter:
    v = torch.randn(n, 4, generator=torch.Generator().manual_seed(2))
    return _FakeGeooptParameter(lmath.expmap0(v, man.k.detach()), manifold=man)


@pytest.mark.parametrize("name", ["radamw", "rsgd"])
def test_geoopt_lorentz_parameter_is_stepped_on_its_manifold(name: str) -> None:
    man = _FakeGeooptLorentz(k=1.5)
    p = _geoopt_points(man)
    ours = Lorentz(k=1.5)
    q = ManifoldParameter(p.detach().clone(), manifold=ours)
    target = lmath.expmap0(torch.randn(5, 4, generator=torch.Generator().manual_seed(3)), man.k.detach())
    kw = dict(lr=0.05, momentum=0.9) if name == "rsgd" else dict(lr=0.05)
    cls = RiemannianSGD if name == "rsgd" else RiemannianAdamW
    opt_geo, opt_ours = cls([p], **kw), cls([q], **kw)
    for _ in range(5):
        for par, opt in ((p, opt_geo), (q, opt_ours)):
            opt.zero_grad()
            lmath.dist(par, target, man.k.detach()).sum().backward()
            opt.step()
    assert constraint_error(p.detach(), man.k) < 1e-5  # a Euclidean step left it 0.49 off
    torch.testing.assert_close(p.detach(), q.detach())


def test_geoopt_learnable_curvature_gets_a_curvature_group() -> None:
    man = _FakeGeooptLorentz(k=1.0, learnable=True)
    p = _geoopt_points(man)
    opt = create_optimizer([p, man.k], "radamw", lr=0.05, curvature_lr=0.5)
    assert [g["name"] for g in opt.param_groups] == ["manifold", "curvature"]
    assert opt.param_groups[1]["bounds"] == [(0.05, 20.0)]
    for _ in range(3):
        opt.zero_grad()
        (lmath.dist0(p, man.k).sum() + 10 * man.k).backward()
        opt.step()
    assert float(man.k.detach()) < 1.0
    assert constraint_error(p.detach(), man.k) < 1e-5  # moved onto the new curvature


@pytest.mark.parametrize("cls", [RiemannianAdamW, RiemannianSGD])
def test_unsupported_geoopt_manifold_is_refused_in_one_line(cls) -> None:
    p = _FakeGeooptParameter(torch.zeros(3, 2), manifold=_FakePoincareBall())
    with pytest.raises(ValueError, match="PoincareBall") as e:
        cls([p], lr=0.1)
    assert "\n" not in str(e.value) and "geoopt" in str(e.value)
    with pytest.raises(ValueError, match="PoincareBall"):
        create_optimizer([p], "rsgd", lr=0.1)


def test_geoopt_euclidean_parameter_is_a_plain_parameter() -> None:
    p = _FakeGeooptParameter(torch.randn(3, 2, generator=torch.Generator().manual_seed(0)), manifold=_FakeEuclidean())
    ref = nn.Parameter(p.detach().clone())
    opt, opt_ref = RiemannianAdamW([p], lr=0.1), torch.optim.AdamW([ref], lr=0.1)
    for par, o in ((p, opt), (ref, opt_ref)):
        par.grad = torch.ones_like(par)
        o.step()
    torch.testing.assert_close(p.detach(), ref.detach())


def test_capping_a_point_keeps_its_moment_norm() -> None:
    """A point just beyond the float64 cap (rapidity ≈ 18, ε·cosh² r ≈ 1/4) is moved onto it with its moment
    transported through the origin; the transport keeps the moment's Lorentz norm. A proju at the old point first
    (a Minkowski product of ambient entries of size cosh r) changed it by 27 % in one move."""
    from lorentzcv.geometry.rescale import max_rapidity_radius
    from lorentzcv.optim.point_steps import cap_points, retangent

    k = torch.tensor(1.0, dtype=torch.float64)
    cap = max_rapidity_radius(k, torch.float64, 1.0)
    gen = torch.Generator().manual_seed(0)
    r = torch.tensor(float(cap) + 1e-3, dtype=torch.float64)
    d = torch.nn.functional.normalize(torch.randn(4, 2, dtype=torch.float64, generator=gen), dim=-1)
    x = torch.cat([torch.cosh(r).expand(4, 1), torch.sinh(r) * d], dim=-1)
    m = retangent(x, lmath.proju(x, torch.randn(4, 3, dtype=torch.float64, generator=gen), k), k)
    x_new, m_new = cap_points(x, k, cap, m)
    assert float(lmath.dist0(x_new, k).max()) <= float(cap) * (1 + 1e-9)
    torch.testing.assert_close(tangent_norm(x_new, m_new, k), tangent_norm(x, m, k), rtol=1e-6, atol=0)


@pytest.mark.parametrize("dtype", [torch.float32, torch.float64])
def test_rsgd_momentum_of_points_held_at_the_cap_stays_bounded(dtype: torch.dtype) -> None:
    """Points pulled outward sit on the representable radius; their momentum buffer is a decaying sum of
    gradients of Lorentz norm sinh(r) <= sinh(cap), so it stays below sinh(cap)/(1 - mu). Transporting it with
    ``lmath.transp`` (and capping with a proju) compounded rounding of eps*cosh^2 r ~ 1/4 per step: the buffer
    reached 1e32 in float64 within 100 steps and overflowed after 1,652."""
    from lorentzcv.geometry import RescaleConfig
    from lorentzcv.geometry.rescale import max_rapidity_radius

    man = Lorentz(1.0, rescale=RescaleConfig(r=1.0)).to(dtype)
    gen = torch.Generator().manual_seed(0)
    x = ManifoldParameter(man.add_time(torch.randn(8, 2, dtype=dtype, generator=gen) * 0.1), manifold=man)
    opt = RiemannianSGD([x], lr=0.05, momentum=0.9)
    k = man.k.detach()
    bound = float(torch.sinh(max_rapidity_radius(k, dtype, 1.0))) / (1 - 0.9)
    for _ in range(150):
        opt.zero_grad()
        (-x[:, 0]).sum().backward()  # d(-x_0): Riemannian gradient of Lorentz norm sinh(r), outward
        opt.step()
    buf = opt.state[x]["momentum_buffer"]
    assert float(lmath.dist0(x.detach(), k).min()) > 0.99 * _radius(1.0, dtype)  # held at the cap
    assert float(tangent_norm(x.detach(), buf, k).max()) <= 1.01 * bound
