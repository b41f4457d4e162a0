"""Every layer of ``lorentzcv.nn`` (except batch norm): manifold, gradcheck incl. k, state_dict, bf16 autocast,
errors, plus the layer-specific references (MLR distance, pooling, bridges, linear)."""

from __future__ import annotations

import copy
import itertools
import math

import pytest
import torch
from torch import nn

from lorentzcv.geometry import Lorentz, RescaleConfig, max_distance, rescale
from lorentzcv.geometry import math as lmath
from lorentzcv.nn import (
    FromLorentz,
    LorentzActivation,
    LorentzConv2d,
    LorentzGlobalAvgPool2d,
    LorentzLinear,
    LorentzMaxPool2d,
    LorentzMLR,
    LorentzResidual,
    ManifoldSwap,
    ToLorentz,
)

from ._nn_helpers import assert_on_manifold, gradcheck_module, points

K = 0.75  # exactly representable, so float32 and float64 manifolds agree


def _vec(c):
    return lambda dt, dev: (points(3, c, k=K, dim=-1, scale=2.0, dtype=dt, device=dev),)


def _map(c, h=4, w=4):
    return lambda dt, dev: (points(2, c, h, w, k=K, dim=1, scale=2.0, dtype=dt, device=dev),)


def _euclid(*shape):
    return lambda dt, dev: (torch.randn(*shape, dtype=dt, device=dev) * 3,)


def _two_maps(c):
    return lambda dt, dev: _map(c)(dt, dev) + _map(c)(dt, dev)


# name: (factory(manifold) -> module, inputs(dtype, device), output kind, manifold dim of the output, bad input)
CASES = {
    "linear": (lambda m: LorentzLinear(m, 4, 3), _vec(4), "points", -1, torch.randn(3, 4)),
    "linear_hcnn_normalize": (lambda m: LorentzLinear(m, 4, 3, variant="hcnn", normalize=True, learn_scale=True),
                              _vec(4), "points", -1, torch.randn(3, 6)),
    "conv_efficient": (lambda m: LorentzConv2d(m, 3, 4, 3, padding=1), _map(3), "points", 1, torch.randn(2, 3, 4, 4)),
    "conv_unfold": (lambda m: LorentzConv2d(m, 3, 4, 2, impl="unfold"), _map(3), "points", 1, torch.randn(2, 4, 4)),
    "activation_map": (lambda m: LorentzActivation(m), _map(3), "points", 1, torch.randn(2, 1, 4, 4)),
    "activation_vec": (lambda m: LorentzActivation(m, nn.Tanh), _vec(3), "points", -1, torch.randn(3, 1)),
    "residual": (lambda m: LorentzResidual(m), _two_maps(3), "points", 1, None),
    "gap": (lambda m: LorentzGlobalAvgPool2d(m), _map(3), "points", -1, torch.randn(2, 4)),
    "maxpool": (lambda m: LorentzMaxPool2d(m, 2, 2, 1), _map(3, 5, 5), "points", 1, torch.randn(4, 4, 4)),
    "to_lorentz_rescale": (lambda m: ToLorentz(m), _euclid(2, 3, 4, 4), "points", 1, torch.randn(3)),
    "to_lorentz_clip": (lambda m: ToLorentz(m, "clip_expmap", clip_r=2.0, dim=-1), _euclid(3, 5), "points", -1,
                        torch.randn(3)),
    "from_lorentz": (lambda m: FromLorentz(m), _map(3), "euclid", 1, torch.randn(2, 1, 3, 3)),
    "swap": (lambda m: ManifoldSwap(m, Lorentz(2.5, learnable=True)), _map(3), "points", 1,
             torch.randn(2, 1, 3, 3)),
    "mlr": (lambda m: LorentzMLR(m, 4, 5), _vec(4), "logits", -1, torch.randn(3, 4)),
}


def _build(name, device, dtype=torch.float32, learnable=True):
    torch.manual_seed(0)
    m = Lorentz(K, learnable=learnable)
    mod = CASES[name][0](m).to(device, dtype)
    return mod, m


def _out_k(name, mod):
    return 2.5 if name == "swap" else K


@pytest.mark.parametrize("name", CASES)
@pytest.mark.parametrize("dtype", [torch.float32, torch.float64], ids=["f32", "f64"])
def test_output_on_manifold(device, name, dtype):
    mod, _ = _build(name, device, dtype)
    inputs = CASES[name][1](dtype, device)
    out = mod(*inputs)
    assert out.dtype == dtype and torch.isfinite(out).all()
    if CASES[name][2] == "points":
        assert_on_manifold(out, _out_k(name, mod), CASES[name][3])


@pytest.mark.parametrize("name", CASES)
def test_gradcheck_including_k(device, name):
    mod, _ = _build(name, device, torch.float64)
    torch.manual_seed(1)
    inputs = CASES[name][1](torch.float64, device)
    assert gradcheck_module(mod, *inputs)


@pytest.mark.parametrize("name", CASES)
def test_gradient_reaches_curvature(device, name):
    mod, m = _build(name, device)
    inputs = [x.requires_grad_() for x in CASES[name][1](torch.float32, device)]
    mod(*inputs).pow(2).sum().backward()
    assert all(torch.isfinite(x.grad).all() for x in inputs)
    if name == "maxpool":  # max pooling only selects: k does not enter
        return
    assert m.k.grad is not None and torch.isfinite(m.k.grad) and m.k.grad.abs() > 0, name


@pytest.mark.parametrize("name", CASES)
def test_state_dict_round_trip(device, name):
    mod, _ = _build(name, device)
    torch.manual_seed(5)
    other = CASES[name][0](Lorentz(K, learnable=True)).to(device)
    for p in other.parameters():
        p.data.normal_()
    other.load_state_dict(copy.deepcopy(mod.state_dict()))
    inputs = CASES[name][1](torch.float32, device)
    torch.testing.assert_close(other(*inputs), mod(*inputs), rtol=0, atol=0)


@pytest.mark.parametrize("name", CASES)
def test_autocast_bf16(device, name):
    mod, _ = _build(name, device)
    inputs = [x.requires_grad_() for x in CASES[name][1](torch.float32, device)]
    with torch.autocast(device.type, dtype=torch.bfloat16):
        out = mod(*inputs)
    assert torch.isfinite(out).all()
    if CASES[name][2] == "points" and name != "maxpool":
        assert out.dtype == torch.float32
        assert_on_manifold(out, _out_k(name, mod), CASES[name][3])
    out.float().sum().backward()
    assert all(torch.isfinite(x.grad).all() for x in inputs)


@pytest.mark.parametrize("name", [n for n in CASES if CASES[n][4] is not None])
def test_wrong_shape_raises_value_error(name):
    mod, _ = _build(name, "cpu")
    with pytest.raises(ValueError):
        mod(CASES[name][4])


# ------------------------------------------------------------------------------------------------------------
# LorentzLinear
# ------------------------------------------------------------------------------------------------------------
def test_linear_variants_match_definition():
    m = Lorentz(K).double()
    x = points(5, 4, k=K, dim=-1)
    lin = LorentzLinear(m, 4, 3).double()
    nn.init.normal_(lin.bias)
    torch.testing.assert_close(lin(x), lmath.add_time(x[:, 1:] @ lin.weight.T + lin.bias, m.k))
    h = LorentzLinear(m, 4, 3, variant="hcnn").double()
    assert h.weight.shape == (4, 5)
    torch.testing.assert_close(h(x), lmath.add_time((x @ h.weight.T + h.bias)[:, 1:], m.k))
    assert (lin.weight.abs() <= 0.02).all() and (LorentzLinear(m, 4, 3).bias == 0).all()


def test_linear_normalize():
    m = Lorentz(K).double()
    lin = LorentzLinear(m, 4, 3, normalize=True).double()
    x = points(5, 4, k=K, dim=-1)
    with torch.no_grad():
        lin.weight[0].zero_()
        lin.weight[1:].normal_()
    x[0] = m.origin(5).double()  # with zero bias the origin maps to a zero space vector -> the origin
    y = lin(x)
    torch.testing.assert_close(y[0], m.origin(4).double())
    norms = y[1:, 1:].norm(dim=-1)
    torch.testing.assert_close(norms, x[1:, 0].sigmoid() * math.exp(2.3))
    assert_on_manifold(y, K, -1)


# ------------------------------------------------------------------------------------------------------------
# LorentzMLR
# ------------------------------------------------------------------------------------------------------------
@pytest.mark.parametrize("k", [0.5, 1.0, 3.0])
def test_mlr_equals_signed_distance_definition(k):
    m = Lorentz(k).double()
    mlr = LorentzMLR(m, 4, 6).double()
    x = points(7, 4, k=k, dim=-1, scale=1.5)
    kk = torch.tensor(k, dtype=torch.float64)
    logits = mlr(x)
    # explicit: w_t = sinh(a/√k)‖z‖, w_s = cosh(a/√k) z, β = sqrt(-w_t² + ‖w_s‖²), α = -w_t x_t + <w_s, x_s>
    zn = mlr.z.norm(dim=-1)
    wt = torch.sinh(mlr.a / kk.sqrt()) * zn
    ws = torch.cosh(mlr.a / kk.sqrt())[:, None] * mlr.z
    beta = (-(wt**2) + (ws**2).sum(-1)).sqrt()
    alpha = -wt * x[:, :1] + x[:, 1:] @ ws.T
    d = kk.sqrt() * torch.asinh(alpha / (kk.sqrt() * beta)).abs()
    torch.testing.assert_close(logits, alpha.sign() * beta * d, rtol=1e-8, atol=1e-10)
    # geometric distance: project x onto the hyperplane {<w, y>_L = 0} and measure along the geodesic
    w = torch.cat([wt[:, None], ws], -1)  # (n_cls, 1+n)
    w_hat = w / beta[:, None]
    inner_xw = lmath.inner(x[:, None, :], w_hat[None])  # (B, n_cls)
    y = lmath.normalize(x[:, None, :] - inner_xw[..., None] * w_hat[None], kk)
    torch.testing.assert_close(lmath.inner(y, w_hat[None].expand_as(y)), torch.zeros_like(inner_xw), atol=1e-9,
                               rtol=0)
    torch.testing.assert_close(lmath.dist(x[:, None, :], y, kk), logits.abs() / beta, rtol=1e-7, atol=1e-7)


def test_mlr_sign_flips_across_hyperplane():
    k = 2.0
    m = Lorentz(k).double()
    mlr = LorentzMLR(m, 3, 2).double()
    kk = torch.tensor(k, dtype=torch.float64)
    zn = mlr.z.norm(dim=-1)
    w = torch.cat([(torch.sinh(mlr.a / kk.sqrt()) * zn)[:, None], torch.cosh(mlr.a / kk.sqrt())[:, None] * mlr.z], -1)
    w_hat = w[0] / lmath.lorentz_norm(w[0])
    # a point on hyperplane 0 and the geodesic through it along the unit normal: logit_0 = ‖z_0‖·s (signed)
    p = lmath.normalize(m.origin(4).double() + 0.3 * torch.tensor([0.0, 1.0, -0.5, 0.2], dtype=torch.float64), kk)
    p = lmath.normalize(p - lmath.inner(p, w_hat) * w_hat, kk)
    assert abs(mlr(p[None])[0, 0]) < 1e-9
    for s in (-1.0, -0.1, 0.2, 2.0):
        st = torch.tensor(s, dtype=torch.float64) / kk.sqrt()
        q = torch.cosh(st) * p + kk.sqrt() * torch.sinh(st) * w_hat
        assert_on_manifold(q[None], k, -1)
        logit = mlr(q[None])[0, 0]
        assert torch.sign(logit) == math.copysign(1, s)
        torch.testing.assert_close(logit, zn[0] * s, rtol=1e-8, atol=1e-10)


def test_mlr_init_options():
    m = Lorentz()
    assert LorentzMLR(m, 16, 10).z.detach().std().item() == pytest.approx(0.25, rel=0.3)
    u = LorentzMLR(m, 16, 10, init="uniform")
    assert u.z.abs().max() <= 0.25 and u.a.abs().max() <= 0.25
    with pytest.raises(ValueError, match="unknown init"):
        LorentzMLR(m, 4, 2, init="zeros")


# ------------------------------------------------------------------------------------------------------------
# activation / residual
# ------------------------------------------------------------------------------------------------------------
def test_activation_layouts_and_callables():
    m = Lorentz(K).double()
    x = points(2, 3, 4, 4, k=K)
    torch.testing.assert_close(LorentzActivation(m)(x), lmath.add_time(x[:, 1:].relu(), m.k, dim=1))
    v = points(5, 3, k=K, dim=-1)
    torch.testing.assert_close(LorentzActivation(m, torch.sin)(v), lmath.add_time(v[:, 1:].sin(), m.k))
    torch.testing.assert_close(LorentzActivation(m, nn.GELU())(v), lmath.add_time(nn.functional.gelu(v[:, 1:]), m.k))
    with pytest.raises(ValueError, match="act must be"):
        LorentzActivation(m, act=3)


def test_residual_module():
    m = Lorentz(K, rescale=RescaleConfig(s=2.0)).double()
    x, y = points(2, 3, 3, 3, k=K, scale=5.0), points(2, 3, 3, 3, k=K, scale=5.0)
    ref = rescale(lmath.add_time(x[:, 1:] + y[:, 1:], m.k, dim=1), m.k, dim=1, config=RescaleConfig(s=2.0))
    torch.testing.assert_close(LorentzResidual(m)(x, y), ref)
    torch.testing.assert_close(LorentzResidual(m, rescale=False)(x, y), lmath.add_time(x[:, 1:] + y[:, 1:], m.k, dim=1))


# ------------------------------------------------------------------------------------------------------------
# pooling
# ------------------------------------------------------------------------------------------------------------
def test_gap_equals_centroid():
    m = Lorentz(K).double()
    x = points(3, 4, 5, 2, k=K, scale=2.0)
    ref = m.centroid(x.flatten(2).transpose(1, 2), dim=-2)
    torch.testing.assert_close(LorentzGlobalAvgPool2d(m)(x), ref)
    torch.testing.assert_close(LorentzGlobalAvgPool2d(m, keepdim=True)(x), ref[:, :, None, None])


@pytest.mark.parametrize("kernel,stride,padding", [(2, 2, 0), (3, 2, 1), (3, 1, 1), (2, 1, 0)])
def test_maxpool_picks_farthest_pixel(kernel, stride, padding):
    m = Lorentz(K).double()
    x = points(2, 3, 5, 6, k=K, scale=2.0)
    pool = LorentzMaxPool2d(m, kernel, stride, padding)
    out = pool(x)
    d0 = m.dist0(x, dim=1)  # (B, H, W)
    ho, wo = out.shape[-2:]
    for b, i, j in itertools.product(range(2), range(ho), range(wo)):
        rows = [r for r in range(i * stride - padding, i * stride - padding + kernel) if 0 <= r < 5]
        cols = [c for c in range(j * stride - padding, j * stride - padding + kernel) if 0 <= c < 6]
        best = max(itertools.product(rows, cols), key=lambda rc: d0[b, rc[0], rc[1]].item())
        torch.testing.assert_close(out[b, :, i, j], x[b, :, best[0], best[1]], rtol=0, atol=0)
    xr = x.clone().requires_grad_()
    pool(xr).sum().backward()  # gradients reach the selected pixels only
    assert (xr.grad != 0).any(dim=1).sum() <= 2 * ho * wo


# ------------------------------------------------------------------------------------------------------------
# bridges
# ------------------------------------------------------------------------------------------------------------
@pytest.mark.parametrize("k", [0.5, 1.0, 4.0])
def test_clip_expmap_round_trip(k):
    m = Lorentz(k).double()
    v = torch.randn(6, 5, dtype=torch.float64)
    v = 0.9 * v / v.norm(dim=-1, keepdim=True) * torch.rand(6, 1, dtype=torch.float64)  # ‖v‖ < clip_r = 1
    x = ToLorentz(m, "clip_expmap", clip_r=1.0)(v)
    assert_on_manifold(x, k, -1)
    torch.testing.assert_close(FromLorentz(m)(x), v, rtol=1e-10, atol=1e-12)
    big = 10 * v / v.norm(dim=-1, keepdim=True)  # clipped to norm 1: dist0 = 1
    torch.testing.assert_close(m.dist0(ToLorentz(m, "clip_expmap")(big)), torch.ones(6, dtype=torch.float64))


def test_to_lorentz_rescale_keeps_norms_below_m():
    m = Lorentz(1.0)
    v = torch.randn(4, 8, 3, 3) * torch.logspace(-3, 4, 4)[:, None, None, None]
    x = ToLorentz(m)(v)
    assert_on_manifold(x, 1.0, 1)
    n = x[:, 1:].norm(dim=1)
    assert (n <= max_distance(torch.float32) * (1 + 1e-6)).all()
    torch.testing.assert_close(x[:, 1:] / n[:, None], v / v.norm(dim=1, keepdim=True))  # direction kept
    with pytest.raises(ValueError, match="unknown ToLorentz mode"):
        ToLorentz(m, "exp")
    torch.testing.assert_close(FromLorentz(m, "space")(x), x[:, 1:])


def test_manifold_swap_separate_curvatures():
    enc, dec = Lorentz(0.5, learnable=True).double(), Lorentz(3.0, learnable=True).double()
    x = points(4, 6, k=0.5, dim=-1, scale=3.0)
    y = ManifoldSwap(enc, dec, dim=-1)(x)
    assert_on_manifold(y, 3.0, -1)
    ref = dec.expmap0(dec.rescale_tangent(enc.logmap0(x)))
    torch.testing.assert_close(y, ref)
    y.sum().backward()
    assert enc.k.grad.abs() > 0 and dec.k.grad.abs() > 0


def test_fused_relu_keeps_one_activation_and_matches_unfused() -> None:
    """LorentzReLU saves only its output for backward and has the gradients of relu-then-lift."""
    from lorentzcv.nn import LorentzReLU
    from lorentzcv.nn import functional as LF

    man = Lorentz(k=0.7, learnable=True).double()
    x = man.expmap0(torch.randn(2, 9, 5, 5, dtype=torch.float64), dim=1).detach().requires_grad_()
    saved: list[torch.Tensor] = []
    with torch.autograd.graph.saved_tensors_hooks(lambda t: saved.append(t) or t, lambda t: t):
        y = LorentzReLU(man)(x)
    big = [t for t in saved if t.numel() >= y.numel()]
    assert len(big) == 1 and big[0].shape == y.shape
    g = torch.randn_like(y)
    gx, gk = torch.autograd.grad(y, [x, man.k], g)
    LF._OPTS["fast"] = False
    try:
        y2 = LorentzReLU(man)(x)
        gx2, gk2 = torch.autograd.grad(y2, [x, man.k], g)
    finally:
        LF._OPTS["fast"] = True
    torch.testing.assert_close(y, y2)
    torch.testing.assert_close(gx[:, 1:], gx2[:, 1:])
    torch.testing.assert_close(gk, gk2)
