"""Gradient checks, properties and errors of the Lorentz kernels (``docs/method.md`` §1)."""

from __future__ import annotations

import pytest
import torch

from lorentzcv import Lorentz
from lorentzcv.geometry import math as lmath

from ._sampling import (
    manifold_error,
    rapidity,
    resolvable_rapidity,
    sample_k,
    sample_points,
    sample_tangent,
)

F64 = torch.float64


def _point(n: int = 3, d: int = 4, k: float = 1.7, scale: float = 0.8, seed: int = 0) -> torch.Tensor:
    g = torch.Generator().manual_seed(seed)
    v = torch.randn(n, d, generator=g, dtype=F64) * scale
    return lmath.expmap0(v, torch.tensor(k, dtype=F64)).requires_grad_()


def _tangent(x: torch.Tensor, k: torch.Tensor, seed: int = 1) -> torch.Tensor:
    g = torch.Generator().manual_seed(seed)
    return lmath.proju(x.detach(), torch.randn(x.shape, generator=g, dtype=F64) * 0.5, k.detach()).requires_grad_()


def _k(value: float = 1.7) -> torch.Tensor:
    return torch.tensor(value, dtype=F64, requires_grad=True)


# --- float64 gradcheck of every kernel, including d/dk ------------------------------------------------
KERNELS = {
    "inner": lambda x, y, v, k: lmath.inner(x, y),
    "lorentz_norm": lambda x, y, v, k: lmath.lorentz_norm(v),
    "dist": lambda x, y, v, k: lmath.dist(x, y, k),
    "dist_keepdim": lambda x, y, v, k: lmath.dist(x, y, k, keepdim=True),
    "dist0": lambda x, y, v, k: lmath.dist0(x, k),
    "sqdist": lambda x, y, v, k: lmath.sqdist(x, y, k),
    "expmap": lambda x, y, v, k: lmath.expmap(x, v, k),
    "expmap0": lambda x, y, v, k: lmath.expmap0(v, k),
    "logmap": lambda x, y, v, k: lmath.logmap(x, y, k),
    "logmap0": lambda x, y, v, k: lmath.logmap0(y, k),
    "transp": lambda x, y, v, k: lmath.transp(x, y, v, k),
    "transp0": lambda x, y, v, k: lmath.transp0(y, v, k),
    "transp0back": lambda x, y, v, k: lmath.transp0back(x, v, k),
    "projx": lambda x, y, v, k: lmath.projx(x, k),
    "proju": lambda x, y, v, k: lmath.proju(x, v, k),
    "egrad2rgrad": lambda x, y, v, k: lmath.egrad2rgrad(x, v, k),
    "add_time": lambda x, y, v, k: lmath.add_time(v[..., 1:], k),
    "normalize": lambda x, y, v, k: lmath.normalize(x + y, k),
    "centroid": lambda x, y, v, k: lmath.centroid(torch.stack([x, y], -2), k),
    "centroid_weighted": lambda x, y, v, k: lmath.centroid(
        torch.stack([x, y], -2), k, weights=torch.tensor([0.3, 0.7], dtype=F64)
    ),
    "to_poincare": lambda x, y, v, k: lmath.to_poincare(x, k),
    "from_poincare": lambda x, y, v, k: lmath.from_poincare(lmath.to_poincare(y, 1.7) * 0.9, k),
    "origin_dist": lambda x, y, v, k: lmath.dist(lmath.origin(3, 4, k=1.7, dtype=F64), y, k),
}


@pytest.mark.parametrize("name", sorted(KERNELS))
def test_gradcheck_kernels(name: str) -> None:
    k = _k()
    x, y = _point(seed=0), _point(seed=1, scale=1.3)
    v = _tangent(x, k)
    fn = KERNELS[name]
    assert torch.autograd.gradcheck(lambda x, y, v, k: fn(x, y, v, k), (x, y, v, k))


@pytest.mark.parametrize("name", ["dist0", "expmap0", "logmap0", "rescale", "rescale_euclid"])
def test_gradcheck_at_origin(name: str) -> None:
    """Removable singularities at the origin / zero vector are smooth (Taylor branches)."""
    from lorentzcv.geometry import rescale, rescale_euclid

    k = _k(0.7)
    v = torch.zeros(2, 4, dtype=F64).requires_grad_()
    fns = {
        "dist0": lambda v, k: lmath.dist0(lmath.add_time(v[..., 1:], k), k) ** 2,
        "expmap0": lambda v, k: lmath.expmap0(v, k),
        "logmap0": lambda v, k: lmath.logmap0(lmath.add_time(v[..., 1:], k), k),
        "rescale": lambda v, k: rescale(lmath.add_time(v[..., 1:], k), k),
        "rescale_euclid": lambda v, k: rescale_euclid(v, k),
    }
    assert torch.autograd.gradcheck(fns[name], (v, k))


def test_gradients_finite_at_degenerate_inputs() -> None:
    """Origin, zero tangent vectors and coincident points: finite gradients, no 0/0."""
    k = _k(1.0)
    o = lmath.origin(2, 5, k=1.0, dtype=F64).requires_grad_()
    x = _point(2, 5, k=1.0)
    zero = torch.zeros(2, 5, dtype=F64, requires_grad=True)
    outs = [
        lmath.dist(x, x, k).sum(), lmath.dist(o, o, k).sum(), lmath.dist0(o, k).sum(),
        lmath.logmap(x, x, k).sum(), lmath.logmap0(o, k).sum(), lmath.expmap(x, zero, k).sum(),
        lmath.expmap0(zero, k).sum(), lmath.transp(x, x, zero, k).sum(), lmath.sqdist(x, x, k).sum(),
        lmath.centroid(torch.stack([o, o], -2), k).sum(),
    ]
    grads = torch.autograd.grad(sum(outs), [x, o, zero, k])
    for g in grads:
        assert torch.isfinite(g).all()
    # at coincident points the ambient gradient of dist is normal to the manifold: its Riemannian part is 0
    (gx,) = torch.autograd.grad(lmath.dist(x.detach(), x, k.detach()).sum(), [x])
    assert lmath.egrad2rgrad(x.detach(), gx, k.detach()).abs().max() < 1e-6


def test_zero_tangent_and_coincident_values() -> None:
    k = torch.tensor(2.0, dtype=F64)
    x = _point(4, 3, k=2.0).detach()
    assert torch.equal(lmath.expmap(x, torch.zeros_like(x), k), lmath.projx(x, k))
    assert lmath.logmap(x, x, k).abs().max() < 1e-6
    assert lmath.dist(x, x, k).max() < 1e-6
    o = lmath.origin(4, 3, k=k, dtype=F64)
    assert lmath.logmap0(o, k).abs().max() == 0
    assert lmath.dist0(o, k).abs().max() < 1e-100


# --- properties over k in [0.1, 10] and distances 0..20 -------------------------------------------
N, DIM = 256, 6


def _assert_close(err: torch.Tensor, tol: torch.Tensor, what: str) -> None:
    """Assert ``err <= tol`` where the tolerance is meaningful (< 0.1); elsewhere only finiteness."""
    assert torch.isfinite(err).all(), f"{what}: non-finite values"
    sel = tol < 0.1
    assert sel.float().mean() > 0.5, f"{what}: test would be vacuous"
    bad = (err > tol) & sel
    assert not bad.any(), f"{what}: max excess {(err - tol)[sel].max().item():.3g}"


def _eps(dtype: torch.dtype) -> float:
    return torch.finfo(dtype).eps


def _sample(dtype: torch.dtype, seed: int, max_dist: float = 20.0, tangents: bool = False):
    """Points at distance 0..max_dist from the origin for k in [0.1, 10].

    Without ``tangents`` the whole range is kept up to float overflow of ``cosh(r)^2``. Beyond rapidity
    ``≈ ½·log(1/ε)`` ambient coordinates cannot resolve tangent vectors in ``dtype`` (which is what maximum
    distance rescaling is for), so properties involving tangent vectors keep points up to that rapidity.
    """
    gen = torch.Generator().manual_seed(seed)
    k = sample_k(N, gen, F64)
    x, d = sample_points(k, DIM, gen, max_dist)
    r = rapidity(d, k)
    keep = r < (resolvable_rapidity(dtype) if tangents else (40.0 if dtype == torch.float32 else 300.0))
    return gen, k[keep].to(dtype), x[keep].to(dtype), r[keep]


def test_points_on_manifold(dtype: torch.dtype, seed: int) -> None:
    gen, k, x, r = _sample(dtype, seed)
    kk = k
    for name, y in {
        "expmap0": x, "projx": lmath.projx(x * 1.5, kk), "rescale_input": lmath.add_time(x[:, 1:], kk),
    }.items():
        err = manifold_error(y, k)
        assert torch.isfinite(err).all() and (err < 20 * _eps(dtype)).all(), name
        assert (y[:, 0] > 0).all(), name


def test_expmap_on_manifold(dtype: torch.dtype, seed: int) -> None:
    gen, k, x, r = _sample(dtype, seed, tangents=True)
    y = lmath.expmap(x, sample_tangent(x, k, gen, 3.0), k)
    assert (manifold_error(y, k) < 20 * _eps(dtype)).all() and (y[:, 0] > 0).all()


def test_logmap_expmap_identity(dtype: torch.dtype, seed: int) -> None:
    gen, k, x, r = _sample(dtype, seed, tangents=True)
    kk = k
    u = sample_tangent(x, k, gen, 3.0)
    u_back = lmath.logmap(x, lmath.expmap(x, u, kk), kk)
    ru = lmath.lorentz_norm(u.double()) / k.double().sqrt()
    cond = torch.cosh(r) ** 2 * torch.cosh(ru) ** 2
    err = (u_back.double() - u.double()).abs().amax(-1) / (1 + u.double().abs().amax(-1))
    _assert_close(err, 1e3 * _eps(dtype) * cond, "log_x(exp_x(u)) = u")


def test_expmap0_logmap0_identity(dtype: torch.dtype, seed: int) -> None:
    gen, k, x, r = _sample(dtype, seed)
    v = lmath.logmap0(x, k)
    assert (v[:, 0] == 0).all()
    err = (lmath.expmap0(v, k).double() - x.double()).abs().amax(-1) / x.double().abs().amax(-1)
    assert (err < 10 * _eps(dtype) * (1 + r.to(err.dtype))).all()  # sinh(asinh) has condition ≈ r


def test_dist0_of_expmap0_is_norm(dtype: torch.dtype, seed: int) -> None:
    gen = torch.Generator().manual_seed(seed)
    k = sample_k(N, gen, dtype)
    v = torch.randn(N, DIM, generator=gen, dtype=dtype)
    v[:, 0] = 0
    v = v / v.norm(dim=-1, keepdim=True) * (torch.rand(N, 1, generator=gen, dtype=dtype) * 20)
    keep = (v.norm(dim=-1) / k.sqrt()) < 40
    k, v = k[keep], v[keep]
    d0 = lmath.dist0(lmath.expmap0(v, k), k)
    torch.testing.assert_close(d0, v.norm(dim=-1), rtol=20 * _eps(dtype), atol=20 * _eps(dtype))
    # and agrees with the general distance from the origin where that is well conditioned
    x = lmath.expmap0(v, k).double()
    o = lmath.origin(*x.shape, k=1.0, dtype=F64) * k.double().sqrt()[:, None]
    sel = (v.norm(dim=-1) / k.sqrt()) < 5
    torch.testing.assert_close(lmath.dist(o, x, k.double(), keepdim=True)[sel, 0], d0.double()[sel],
                               rtol=1e-4, atol=1e-4)


def test_transport_properties(dtype: torch.dtype, seed: int) -> None:
    gen, k, x, r = _sample(dtype, seed, max_dist=6.0, tangents=True)
    kk = k
    perm = torch.randperm(x.shape[0], generator=gen)
    y = lmath.projx(x[perm], kk)  # other points on the same k
    u, v = sample_tangent(x, k, gen, 2.0), sample_tangent(x, k, gen, 2.0)
    tu, tv = lmath.transp(x, y, u, kk), lmath.transp(x, y, v, kk)
    r_y = r[perm]
    scale = torch.cosh(r) ** 2 + torch.cosh(r_y) ** 2
    tol = 50 * _eps(dtype) * scale
    # tangency at y and preservation of the Minkowski inner product
    _assert_close(lmath.inner(y.double(), tu.double()).abs() / (1 + k.double()), tol, "<y, P(u)> = 0")
    _assert_close((lmath.inner(tu.double(), tv.double()) - lmath.inner(u.double(), v.double())).abs(), tol * 4,
                  "<P u, P v> = <u, v>")
    # origin transports agree with the general one and invert each other
    o = (lmath.origin(*x.shape, k=1.0, dtype=dtype) * k.sqrt()[:, None])
    t0 = lmath.transp0back(x, u, kk)
    assert (t0[:, 0].abs().double() < tol * 10 + 1e-6).all() or dtype == torch.float32
    _assert_close((t0 - lmath.transp(x, o, u, kk)).double().abs().amax(-1), tol * 10, "transp0back")
    _assert_close((lmath.transp0(x, t0, kk) - u).double().abs().amax(-1), tol * 10, "transp0 o transp0back")


def test_dist_metric_axioms(dtype: torch.dtype, seed: int) -> None:
    gen, k, x, r = _sample(dtype, seed, tangents=True)
    kk = k
    n = x.shape[0]
    y = lmath.projx(x[torch.randperm(n, generator=gen)], kk)
    z = lmath.projx(x[torch.randperm(n, generator=gen)], kk)
    dxy, dyx = lmath.dist(x, y, k), lmath.dist(y, x, k)
    assert (dxy >= 0).all()
    torch.testing.assert_close(dxy, dyx)
    slack = 1e3 * _eps(dtype) * (1 + dxy) * torch.cosh(r.to(dtype)).clamp_max(1e4)
    assert (lmath.dist(x, z, k) <= dxy + lmath.dist(y, z, k) + slack).all()
    # exp/log consistency of the distance: d(x, exp_x(u)) = |u| for moderate |u|
    u = sample_tangent(x, k, gen, 2.0)
    tol = 1e3 * _eps(dtype) * torch.cosh(r) ** 2
    _assert_close((lmath.dist(x, lmath.expmap(x, u, kk), k) - lmath.lorentz_norm(u)).abs().double(), tol,
                  "d(x, exp_x u) = |u|_L")


def test_centroid_properties(dtype: torch.dtype, seed: int) -> None:
    gen, k, x, r = _sample(dtype, seed, max_dist=6.0, tangents=True)
    same = x[:, None, :].expand(-1, 5, -1)
    c = lmath.centroid(same, k[:, None])
    rel = (c.double() - x.double()).abs().amax(-1) / x.double().abs().amax(-1)
    assert (rel < 100 * _eps(dtype) * torch.cosh(r) ** 2).all()  # normalisation cancels like cosh(r)^2
    pts = torch.stack([x, lmath.projx(x.flip(0), k), lmath.projx(x.roll(3, 0), k)], 1)
    w = torch.rand(x.shape[0], 3, generator=gen, dtype=dtype)
    cw = lmath.centroid(pts, k[:, None], weights=w)
    assert (manifold_error(cw, k) < 50 * _eps(dtype)).all()
    assert (cw[:, 0] > 0).all()


def test_centroid_minimises_sqdist() -> None:
    """The Lorentzian centroid is the minimiser of the sum of squared Lorentzian distances."""
    k = torch.tensor(0.8, dtype=F64)
    pts = lmath.expmap0(torch.randn(6, 4, dtype=F64), k)
    c = lmath.centroid(pts, k)
    f = lambda y: lmath.sqdist(y, pts, k).sum()
    for _ in range(20):
        y = lmath.expmap(c, lmath.proju(c, torch.randn(4, dtype=F64) * 0.05, k), k)
        assert f(y) >= f(c) - 1e-10


def test_scale_equivariance() -> None:
    """Scaling a point by s moves it from H_k to H_{k s^2} and scales distances by s."""
    k, s = torch.tensor(1.3, dtype=F64), 1.7
    x, y = _point(k=1.3).detach(), _point(k=1.3, seed=5).detach()
    torch.testing.assert_close(lmath.dist(s * x, s * y, k * s * s), s * lmath.dist(x, y, k))
    torch.testing.assert_close(lmath.projx(x / s, k / s**2) * s, lmath.projx(x, k))


def test_poincare_isometry() -> None:
    k = torch.tensor(10.0, dtype=F64)
    x, y = _point(k=10.0).detach(), _point(k=10.0, seed=3, scale=2.0).detach()
    p, q = lmath.to_poincare(x, k), lmath.to_poincare(y, k)
    assert (p.norm(dim=-1) < k.sqrt()).all()
    c = 1 / k
    diff = q - p
    dp = torch.acosh(1 + 2 * c * diff.pow(2).sum(-1) / ((1 - c * p.pow(2).sum(-1)) * (1 - c * q.pow(2).sum(-1))))
    torch.testing.assert_close(dp / c.sqrt(), lmath.dist(x, y, k))
    torch.testing.assert_close(lmath.from_poincare(p, k), x)


def test_expmap_clamps_without_overflow() -> None:
    for dtype in (torch.float32, torch.float16, torch.bfloat16):
        x = lmath.origin(2, 3, k=1.0, dtype=dtype)
        u = torch.tensor([[0.0, 1e3, 0.0], [0.0, 0.0, 60.0]], dtype=dtype)
        y = lmath.expmap(x, u, torch.tensor(1.0, dtype=dtype))
        assert torch.isfinite(y).all(), dtype
        assert torch.isfinite(lmath.expmap0(u, torch.tensor(1.0, dtype=dtype))).all(), dtype


# --- the Lorentz module ------------------------------------------------------------------------------
def test_module_wraps_kernels_and_curvature() -> None:
    m = Lorentz(k=2.0, learnable=True)
    assert m.k.requires_grad and m.learnable
    torch.testing.assert_close(m.curvature, torch.tensor(-0.5))
    x = m.expmap0(torch.randn(4, 3))
    torch.testing.assert_close(m.dist0(x), lmath.dist0(x, m.k))
    m.dist(x, m.origin(4, 3)).sum().backward()
    assert m.k.grad is not None and torch.isfinite(m.k.grad)
    o = m.origin(2, 3)
    torch.testing.assert_close(o, torch.tensor([[2**0.5, 0, 0]] * 2))
    assert not o.requires_grad
    assert m.origin((2, 5)).shape == (2, 5)
    assert set(Lorentz().state_dict()) == {"k"}


@pytest.mark.parametrize(
    "make, match",
    [
        (lambda: Lorentz(k=0.0), "k > 0"),
        (lambda: Lorentz(k=-1.0), "k > 0"),
        (lambda: Lorentz(k=50.0), "k_min <= k <= k_max"),
        (lambda: Lorentz().dist0(torch.zeros(3, 1)), "size >= 2"),
        (lambda: Lorentz().dist(torch.zeros(3, 4), torch.zeros(2, 4)), "broadcastable"),
        (lambda: Lorentz().inner(torch.zeros(3, 4), torch.zeros(3, 5)), "broadcastable|same manifold"),
        (lambda: Lorentz().expmap(torch.zeros(3, 4), torch.zeros(3, 3)), "broadcastable|same manifold"),
        (lambda: Lorentz().origin(3, 1), "size >= 2"),
        (lambda: Lorentz(check=True).dist0(torch.ones(3, 4)), "not on the hyperboloid"),
        (lambda: Lorentz().check_point_on_manifold(-Lorentz().origin(2, 3)), "x_0 > 0|not on"),
        (lambda: Lorentz().centroid(torch.zeros(3, 4), weights=torch.ones(5)), "weights"),
    ],
)
def test_clear_errors(make, match: str) -> None:
    with pytest.raises(ValueError, match=match):
        make()


def test_check_accepts_points_on_manifold() -> None:
    m = Lorentz(k=0.5, check=True)
    x = m.expmap0(torch.randn(10, 5) * 3)
    m.dist(x, x.flip(0))  # no error
    m.check_point_on_manifold(x)


# --- huge and infinite tangent vectors (issue: expmap0 of a huge vector returned the origin) ----------------
@pytest.mark.parametrize("dtype,norm", [(torch.float16, 257.0), (torch.float16, 6e4), (torch.float32, 1e20),
                                        (torch.float32, 3e38), (torch.float64, 1e200)])
@pytest.mark.parametrize("fn", ["expmap0", "expmap"])
def test_huge_tangent_vectors_reach_the_clamp_rapidity_in_their_direction(dtype, norm: float, fn: str) -> None:
    k = torch.tensor(0.7, dtype=dtype)
    direction = torch.tensor([[0.0, 0.6, -0.8, 0.0], [0.0, 0.0, 0.0, -1.0]], dtype=F64)
    u = (direction * norm).to(dtype)
    x = lmath.expmap0(u, k) if fn == "expmap0" else lmath.expmap(lmath.origin(2, 4, k=k, dtype=dtype), u, k)
    assert torch.isfinite(x).all()
    r = lmath.dist0(x.double(), k.double()) / k.double().sqrt()
    torch.testing.assert_close(r, torch.full_like(r, lmath.max_rapidity(dtype)), rtol=5e-3, atol=0)
    cos = torch.nn.functional.cosine_similarity(x[:, 1:].double(), direction[:, 1:], dim=-1)
    torch.testing.assert_close(cos, torch.ones_like(cos), rtol=0, atol=1e-3)


@pytest.mark.parametrize("dtype", [torch.float16, torch.float32, torch.float64])
def test_infinite_tangent_vectors_point_along_their_infinite_entries(dtype) -> None:
    k = torch.tensor(2.0, dtype=dtype)
    inf = float("inf")
    u = torch.tensor([[0.0, inf, 1.0], [0.0, -inf, inf], [0.0, 0.0, 0.0]], dtype=dtype)
    for x in (lmath.expmap0(u, k), lmath.expmap(lmath.origin(3, 3, k=k, dtype=dtype), u, k)):
        assert torch.isfinite(x).all()
        xs = x[:, 1:].double()
        torch.testing.assert_close(xs[0] / xs[0].norm(), torch.tensor([1.0, 0.0], dtype=F64), atol=1e-3, rtol=0)
        torch.testing.assert_close(xs[1] / xs[1].norm(), torch.tensor([-1.0, 1.0], dtype=F64) / 2**0.5,
                                   atol=1e-3, rtol=0)
        assert torch.equal(x[2], lmath.origin(3, k=k, dtype=dtype))


def test_clamped_expmap_gradients_are_finite_and_correct() -> None:
    """Beyond the clamp (θ > max_rapidity) the old sinhc branch overflowed and gave NaN gradients."""
    k = _k(0.8)
    u = torch.tensor([[0.0, 3e2, -4e2], [0.0, 1e3, 2.0]], dtype=F64, requires_grad=True)  # θ > 353 in float64
    assert torch.autograd.gradcheck(lambda u, k: lmath.expmap0(u, k) * 1e-150, (u, k))
    x = lmath.origin(2, 3, k=0.8, dtype=F64)
    assert torch.autograd.gradcheck(lambda u, k: lmath.expmap(x, u, k) * 1e-150, (u, k))
    for dtype, scale in ((torch.float32, 1e2), (torch.float32, 1e20), (torch.float16, 3e2)):
        uu = (torch.tensor([[0.0, 0.6, -0.8]]) * scale).to(dtype).requires_grad_()
        kk = torch.tensor(1.0, requires_grad=True)
        for out in (lmath.expmap0(uu, kk.to(dtype)), lmath.expmap(lmath.origin(1, 3, dtype=dtype), uu, kk.to(dtype))):
            gu, gk = torch.autograd.grad(out.float().sum() * 1e-18, [uu, kk])
            assert torch.isfinite(gu.float()).all() and torch.isfinite(gk), (dtype, scale)


def test_gradcheck_expmap_overflow_safe_norm_below_the_clamp() -> None:
    """The scaled norm (u / max|u_i|) keeps the exact gradient of the unclamped branch, incl. d/dk."""
    k = _k(3.0)
    u = torch.tensor([[0.0, 1.5, -0.5, 2.0], [0.0, 1e-3, 0.0, 0.0]], dtype=F64, requires_grad=True)
    assert torch.autograd.gradcheck(lambda u, k: lmath.expmap0(u, k), (u, k))
    x = _point(2, 4, k=3.0, scale=1.5).detach()
    v = lmath.proju(x, u.detach(), k.detach()).requires_grad_()
    assert torch.autograd.gradcheck(lambda v, k: lmath.expmap(x, v, k), (v, k))
