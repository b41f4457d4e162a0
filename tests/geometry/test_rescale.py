"""Maximum distance rescaling (``docs/method.md`` §2): bounds, smoothness, half precision, gradients."""

from __future__ import annotations

import math

import pytest
import torch

from lorentzcv import Lorentz
from lorentzcv.geometry import (
    RescaleConfig,
    clip_to_max_distance,
    max_distance,
    max_rapidity_radius,
    rescale,
    rescale_euclid,
)
from lorentzcv.geometry import math as lmath

from ._sampling import manifold_error

F64 = torch.float64


def test_max_distance_per_dtype() -> None:
    assert max_distance(torch.float32) == pytest.approx(9.5654, abs=1e-3)  # the paper's 9.56
    assert max_distance(torch.float16) == pytest.approx(0.6 * math.acosh(512), rel=1e-9)
    assert max_distance(torch.bfloat16) == pytest.approx(0.6 * math.acosh(64), rel=1e-9)
    assert max_distance(torch.float16) < max_distance(torch.float32) < max_distance(torch.float64)


def _points(norms: torch.Tensor, k: float, dim: int = 8, dtype: torch.dtype = F64) -> torch.Tensor:
    g = torch.Generator().manual_seed(0)
    v = torch.randn(norms.numel(), dim, generator=g, dtype=F64)
    xs = v / v.norm(dim=-1, keepdim=True) * norms.double()[:, None]
    return lmath.add_time(xs, torch.tensor(k, dtype=F64)).to(dtype)


@pytest.mark.parametrize("k", [0.1, 0.5, 1.0, 3.0, 10.0])
@pytest.mark.parametrize("s", [2.0, 3.0])
def test_dist0_bounded_by_m(k: float, s: float) -> None:
    cfg = RescaleConfig(s=s)
    norms = torch.logspace(-6, 18, 200, dtype=F64)  # float32 squares overflow beyond ~1e19
    x = _points(norms, k, dtype=torch.float32)
    y = rescale(x, torch.tensor(k), config=cfg)
    m = max_distance(torch.float32)
    d = lmath.dist0(y.double(), torch.tensor(k, dtype=F64))
    assert torch.isfinite(y).all()
    assert (d <= m + 1e-4).all()
    assert (d / math.sqrt(k) <= m + 1e-4).all()  # rapidity is bounded too
    # monotone in the input distance, direction preserved
    assert (d[1:] >= d[:-1] - 1e-5).all()
    cos = torch.nn.functional.cosine_similarity(y[:, 1:].double(), x[:, 1:].double(), dim=-1)
    assert (cos > 1 - 1e-5).all()


def test_curve_matches_spec_at_k1() -> None:
    """g(d) = m tanh(artanh(ρ) d/(m s)): g(s m) = ρ m, slope artanh(ρ)/s at 0 (§2.1)."""
    k = torch.tensor(1.0, dtype=F64)
    m = max_distance(torch.float32)
    for s in (2.0, 3.0):
        cfg = RescaleConfig(s=s)
        d_in = torch.tensor([s * m, 1e-5, 1.0], dtype=F64)
        x = lmath.expmap0(torch.stack([torch.zeros(3, dtype=F64), d_in, torch.zeros(3, dtype=F64)], -1), k)
        d_out = lmath.dist0(rescale(x, k, config=cfg, dtype=torch.float32), k)
        assert d_out[0] == pytest.approx(0.99 * m, rel=1e-9)
        assert (d_out[1] / d_in[1]).item() == pytest.approx(math.atanh(0.99) / s, rel=1e-6)
        assert d_out[2] == pytest.approx(m * math.tanh(math.atanh(0.99) / (m * s)), rel=1e-9)


def test_smooth_near_origin_no_blow_up() -> None:
    k = torch.tensor(1.0, dtype=F64, requires_grad=True)
    norms = torch.logspace(-12, -1, 12, dtype=F64)
    x = _points(norms, 1.0).requires_grad_()
    y = rescale(x, k, dtype=torch.float32)
    ratio = y[:, 1:].norm(dim=-1) / norms
    torch.testing.assert_close(ratio, torch.full_like(ratio, math.atanh(0.99) / 3.0), rtol=2e-3, atol=0)
    (gx, gk) = torch.autograd.grad(y.sum(), [x, k])
    assert torch.isfinite(gx).all() and torch.isfinite(gk) and gx.abs().max() < 10


def test_origin_fixed_and_floor_option() -> None:
    k = torch.tensor(2.0, dtype=F64)
    o = lmath.origin(3, 5, k=k, dtype=F64)
    assert torch.equal(rescale(o, k), o)
    floor = RescaleConfig(min_rapidity=0.05)
    tiny = _points(torch.tensor([1e-6, 1e-3]), 2.0)
    out = rescale(tiny, k, config=floor)
    torch.testing.assert_close(lmath.dist0(out, k), torch.full((2,), 0.05 * math.sqrt(2.0), dtype=F64))
    assert torch.equal(rescale(o, k, config=floor), o)
    assert torch.equal(rescale(tiny, k, config=RescaleConfig(enabled=False)), tiny)


@pytest.mark.parametrize("dtype", [torch.float16, torch.bfloat16])
@pytest.mark.parametrize("k", [0.5, 1.0, 4.0])
def test_half_precision_inputs(dtype: torch.dtype, k: float) -> None:
    """Norms 1e-6..1e6 in float16/bfloat16: finite, on the manifold in the dtype's precision, finite grads."""
    norms = torch.logspace(-6, 6, 60, dtype=F64)
    dim = 8
    g = torch.Generator().manual_seed(1)
    v = torch.randn(norms.numel(), dim, generator=g, dtype=F64)
    xs = (v / v.norm(dim=-1, keepdim=True) * norms[:, None] / math.sqrt(dim)).clamp(-6e4, 6e4)  # fp16 range
    x = torch.cat([torch.zeros(norms.numel(), 1, dtype=F64), xs], -1).to(dtype).requires_grad_()
    kk = torch.tensor(k, requires_grad=True)
    y = rescale(x, kk)
    assert y.dtype == dtype and torch.isfinite(y).all()
    m = max_distance(dtype)
    assert (lmath.dist0(y.double(), kk.double()) <= m + 0.05).all()
    err = manifold_error(y, kk.detach())
    assert (err < 4 * torch.finfo(dtype).eps).all()
    gx, gk = torch.autograd.grad(y.float().sum(), [x, kk])
    assert torch.isfinite(gx.float()).all() and torch.isfinite(gk)


def test_radius_follows_the_stored_dtype() -> None:
    """Float32 islands under autocast keep float32's radius; half tensors get their own (smaller) one."""
    k = torch.tensor(1.0)
    x = _points(torch.tensor([1e4]), 1.0, dtype=torch.float32)
    with torch.autocast("cpu", dtype=torch.bfloat16):
        y = rescale(x, k)
    assert y.dtype == torch.float32
    d_in = lmath.dist0(x, k).item()
    m = max_distance(torch.float32)
    expected = m * math.tanh(math.atanh(0.99) / (m * 3.0) * d_in)
    assert lmath.dist0(y, k).item() == pytest.approx(expected, rel=1e-4)
    yb = rescale(x.bfloat16(), k)
    assert lmath.dist0(yb.float(), k).item() <= max_distance(torch.bfloat16) + 0.05


def test_euclid_matches_point_rescale_in_tangent_space() -> None:
    k = torch.tensor(0.6, dtype=F64)
    v = torch.randn(20, 6, dtype=F64) * torch.logspace(-3, 2, 20, dtype=F64)[:, None]
    v[:, 0] = 0
    via_points = lmath.logmap0(rescale(lmath.expmap0(v, k), k), k)
    torch.testing.assert_close(rescale_euclid(v, k), via_points)
    out = rescale_euclid(torch.randn(50, 7) * 1e3)
    assert (out.norm(dim=-1) <= max_distance(torch.float32) + 1e-4).all()
    z = torch.zeros(3, 4)
    assert torch.equal(rescale_euclid(z), z)


def test_module_rescale_uses_its_config() -> None:
    m = Lorentz(k=1.0, rescale=RescaleConfig(s=2.0))
    x = m.expmap0(torch.tensor([[0.0, 1e-4, 0.0]], dtype=F64))
    ratio = (m.dist0(m.rescale(x)) / m.dist0(x)).item()
    assert ratio == pytest.approx(math.atanh(0.99) / 2.0, rel=1e-6)
    assert m.max_distance() == pytest.approx(max_distance(torch.float32))


def test_bad_config() -> None:
    with pytest.raises(ValueError, match="RescaleConfig"):
        RescaleConfig(rho=1.5)


# --- huge and infinite inputs (issue: rescale of an input with inf returned NaN silently) -------------------
@pytest.mark.parametrize("k", [0.05, 1.0, 20.0])
def test_infinite_inputs_map_to_the_radius_along_their_infinite_entries(k: float) -> None:
    inf = float("inf")
    kk = torch.tensor(k)
    x = torch.tensor([[0.0, inf, 1.0, 0.0], [0.0, -inf, inf, 5.0], [1.0, 2.0, 3.0, 4.0]])
    y = rescale(x, kk)
    assert torch.isfinite(y).all()
    m_k = max_distance(torch.float32) * min(1.0, math.sqrt(k))
    d = lmath.dist0(y.double(), kk.double())
    torch.testing.assert_close(d[:2], torch.full((2,), m_k, dtype=F64), rtol=1e-5, atol=0)
    ys = y[:, 1:].double()
    expected = torch.tensor([[1.0, 0.0, 0.0], [-1.0, 1.0, 0.0]], dtype=F64)
    torch.testing.assert_close(ys[:2] / ys[:2].norm(dim=-1, keepdim=True), expected / expected.norm(dim=-1,
                               keepdim=True), atol=1e-6, rtol=0)
    torch.testing.assert_close(y[2], rescale(x[2:], kk)[0])  # finite rows are unaffected by their neighbours
    assert (manifold_error(y, kk) < 1e-6).all()
    v = rescale_euclid(x[:, 1:], kk)
    torch.testing.assert_close(v[:2].norm(dim=-1).double(), torch.full((2,), m_k, dtype=F64), rtol=1e-5, atol=0)
    assert torch.isnan(rescale(torch.tensor([[0.0, float("nan"), 1.0]]), kk)).all()  # NaN stays NaN


@pytest.mark.parametrize("scale", [1e19, 1e30, 3e38])
def test_float32_inputs_whose_squared_norm_overflows(scale: float) -> None:
    k = torch.tensor(0.5)
    direction = torch.tensor([[0.0, 0.6, -0.8, 0.0], [0.0, 0.0, 0.3, -0.4]], dtype=F64)
    x = (direction * scale).float()
    expected = rescale(x.double(), k.double(), dtype=torch.float32)  # float64 holds these squares
    torch.testing.assert_close(rescale(x, k).double(), expected, rtol=1e-5, atol=1e-5)
    torch.testing.assert_close(rescale_euclid(x, k).double(), rescale_euclid(x.double(), k.double(),
                               dtype=torch.float32), rtol=1e-5, atol=1e-5)


def test_gradcheck_rescale_far_from_the_origin() -> None:
    k = torch.tensor(0.6, dtype=F64, requires_grad=True)
    x = _points(torch.tensor([3.0, 40.0, 1e4]), 0.6).requires_grad_()
    assert torch.autograd.gradcheck(lambda x, k: rescale(x, k), (x, k))
    v = (torch.randn(3, 5, dtype=F64) * torch.tensor([[1.0], [30.0], [1e5]], dtype=F64)).requires_grad_()
    assert torch.autograd.gradcheck(lambda v, k: rescale_euclid(v, k), (v, k))
    floor = RescaleConfig(min_rapidity=0.05)
    assert torch.autograd.gradcheck(lambda x, k: rescale(x, k, config=floor), (x, k))


@pytest.mark.parametrize("dtype", [torch.float16, torch.float32, torch.float64])
@pytest.mark.parametrize("k", [0.05, 1.0, 20.0])
def test_clip_to_max_distance(dtype: torch.dtype, k: float) -> None:
    kk = torch.tensor(k, dtype=dtype)
    m_k = max_distance(dtype) * min(1.0, math.sqrt(k))
    rap = torch.tensor([0.1, 0.5, 0.999, 1.5, 4.0], dtype=F64) * m_k / math.sqrt(k)
    xs = torch.randn(5, 3, dtype=F64, generator=torch.Generator().manual_seed(0))
    xs = xs / xs.norm(dim=-1, keepdim=True) * math.sqrt(k) * torch.sinh(rap)[:, None]
    x = lmath.add_time(xs.clamp(-6e4, 6e4) if dtype == torch.float16 else xs, torch.tensor(k, dtype=F64)).to(dtype)
    y = clip_to_max_distance(x, kk)
    assert torch.equal(y[:3], x[:3])  # within the radius: untouched
    d = lmath.dist0(y.double(), kk.double())
    torch.testing.assert_close(d[3:], torch.full((2,), m_k, dtype=F64), rtol=2e-3, atol=0)
    cos = torch.nn.functional.cosine_similarity(y[3:, 1:].double(), x[3:, 1:].double(), dim=-1)
    torch.testing.assert_close(cos, torch.ones_like(cos))
    r = max_rapidity_radius(kk.double(), dtype)
    assert float(r) == pytest.approx(m_k / math.sqrt(k))
