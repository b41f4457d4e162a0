"""The fused lift and the functional ops of ``lorentzcv.nn.functional`` against compositions of the kernels."""

from __future__ import annotations

import math

import pytest
import torch

from lorentzcv.geometry import RescaleConfig, max_distance, rescale, rescale_euclid
from lorentzcv.geometry import math as lmath
from lorentzcv.nn import functional as LF

from ._nn_helpers import assert_on_manifold, points

KS = [0.3, 1.0, 4.0]
CFGS = [RescaleConfig(), RescaleConfig(s=2.0), RescaleConfig(min_rapidity=0.05)]


def _ys(device, scale=3.0):
    g = torch.Generator().manual_seed(0)
    ys = torch.randn(3, 5, 4, 2, generator=g, dtype=torch.float64) * scale
    ys[0, :, 0, 0] = 0  # an exact zero vector
    ys[1, :, 1, 0] *= 1e-9  # a tiny one
    ys[2, :, 2, 1] *= 40  # a far one (rescaling saturates)
    return ys.to(device)


@pytest.mark.parametrize("k", KS)
@pytest.mark.parametrize("cfg", CFGS, ids=["s3", "s2", "floor"])
def test_lift_rescale_matches_geometry_rescale(device, k, cfg):
    ys = _ys(device)
    kk = torch.tensor(k, dtype=torch.float64, device=device)
    out = LF.lift(ys, kk, dim=1, rescale=cfg)
    ref = rescale(lmath.add_time(ys, kk, dim=1), kk, dim=1, config=cfg)
    torch.testing.assert_close(out, ref, rtol=1e-10, atol=1e-12)
    assert_on_manifold(out, k, 1)
    # the result is within the radius m·min(1, √k) and keeps the direction of y_s
    assert (lmath.dist0(out, kk, dim=1) <= max_distance(torch.float64) * min(1, math.sqrt(k)) + 1e-9).all()


@pytest.mark.parametrize("k", KS)
def test_lift_plain_is_add_time(device, k):
    ys = _ys(device)
    kk = torch.tensor(k, dtype=torch.float64, device=device)
    torch.testing.assert_close(LF.lift(ys, kk, dim=1), lmath.add_time(ys, kk, dim=1), rtol=0, atol=0)


@pytest.mark.parametrize("with_rescale", [False, True])
def test_lift_boost(device, with_rescale):
    ys, k, gamma = _ys(device, 1.0), torch.tensor(0.7, dtype=torch.float64), torch.tensor(-1.7, dtype=torch.float64)
    k, gamma = k.to(device), gamma.to(device)
    cfg = RescaleConfig() if with_rescale else None
    out = LF.lift(ys, k, dim=1, rescale=cfg, gamma=gamma)
    # reference: the point at rapidity |γ|·r in the direction of y_s, then (optionally) rescaled
    n = ys.norm(dim=1, keepdim=True)
    r = torch.asinh(n / k.sqrt())
    boosted = lmath.add_time(k.sqrt() * torch.sinh(gamma.abs() * r) * ys / n.clamp_min(1e-300), k, dim=1)
    ref = rescale(boosted, k, dim=1) if with_rescale else boosted
    torch.testing.assert_close(out, ref, rtol=1e-9, atol=1e-12)


@pytest.mark.parametrize("k", KS)
def test_euclid_to_lorentz_modes(device, k):
    v = _ys(device, 2.0)
    kk = torch.tensor(k, dtype=torch.float64, device=device)
    cfg = RescaleConfig()
    out = LF.euclid_to_lorentz(v, kk, dim=1, mode="rescale", config=cfg)
    torch.testing.assert_close(out, lmath.add_time(rescale_euclid(v, kk, dim=1, config=cfg), kk, dim=1))
    clip = torch.clamp(1.5 / v.norm(dim=1, keepdim=True), max=1.0) * v
    out = LF.euclid_to_lorentz(v, kk, dim=1, mode="clip_expmap", clip_r=1.5)
    ref = lmath.expmap0(torch.cat([torch.zeros_like(v[:, :1]), clip], 1), kk, dim=1)
    torch.testing.assert_close(out, ref, rtol=1e-10, atol=1e-12)
    assert_on_manifold(out, k, 1)
    with pytest.raises(ValueError, match="unknown mode"):
        LF.euclid_to_lorentz(v, kk, mode="exp")


@pytest.mark.parametrize("k1,k2", [(1.0, 1.0), (0.5, 3.0), (6.0, 0.2)])
@pytest.mark.parametrize("with_rescale", [False, True])
def test_swap_manifold_matches_composition(device, k1, k2, with_rescale):
    x = points(3, 5, 4, k=k1, scale=4.0, device=device)
    x[0, :, 0] = 0
    x[0, 0, 0] = math.sqrt(k1)  # the origin
    a, b = torch.tensor(k1, dtype=torch.float64, device=device), torch.tensor(k2, dtype=torch.float64, device=device)
    cfg = RescaleConfig() if with_rescale else None
    out = LF.swap_manifold(x, a, b, dim=1, rescale=cfg)
    v = lmath.logmap0(x, a, dim=1)
    if with_rescale:
        v = rescale_euclid(v, b, dim=1, config=cfg)
    torch.testing.assert_close(out, lmath.expmap0(v, b, dim=1), rtol=1e-10, atol=1e-12)
    assert_on_manifold(out, k2, 1)


def test_swap_identity_without_rescale(device):
    x = points(4, 6, k=2.0, dim=-1, device=device)
    k = torch.tensor(2.0, dtype=torch.float64, device=device)
    torch.testing.assert_close(LF.swap_manifold(x, k, k, dim=-1), x, rtol=1e-12, atol=1e-12)


def test_lorentz_to_euclid(device):
    x = points(3, 5, 2, 2, k=0.5, device=device)
    k = torch.tensor(0.5, dtype=torch.float64, device=device)
    torch.testing.assert_close(LF.lorentz_to_euclid(x, k, dim=1), lmath.logmap0(x, k, dim=1)[:, 1:])
    assert LF.lorentz_to_euclid(x, k, dim=1, mode="space").data_ptr() == x[:, 1:].data_ptr()


def test_lift_dim_layouts_agree(device):
    ys = _ys(device)
    k = torch.tensor(0.8, dtype=torch.float64, device=device)
    a = LF.lift(ys, k, dim=1, rescale=RescaleConfig())
    b = LF.lift(ys.movedim(1, -1), k, dim=-1, rescale=RescaleConfig()).movedim(-1, 1)
    torch.testing.assert_close(a, b, rtol=1e-12, atol=1e-12)


def test_lift_channels_last_kept(device):
    ys = _ys(device).float().contiguous(memory_format=torch.channels_last)
    out = LF.lift(ys, 1.0, dim=1, rescale=RescaleConfig())
    assert out.is_contiguous(memory_format=torch.channels_last)
    torch.testing.assert_close(out, LF.lift(ys.contiguous(), 1.0, dim=1, rescale=RescaleConfig()))


def test_inference_path_equals_autograd_path(device):
    ys = _ys(device).requires_grad_()
    k = torch.tensor(1.3, dtype=torch.float64, device=device)
    with torch.no_grad():
        a = LF.lift(ys, k, dim=1, rescale=RescaleConfig())
    b = LF.lift(ys, k, dim=1, rescale=RescaleConfig())
    assert b.requires_grad and not a.requires_grad
    torch.testing.assert_close(a, b.detach(), rtol=0, atol=0)


@pytest.mark.parametrize(
    "fn", ["plain", "rescale", "rescale_s2", "boost", "boost_rescale", "euclid", "clip", "swap", "swap_rescale"]
)
def test_lift_gradcheck(device, fn):
    g = torch.Generator().manual_seed(1)
    ys = (torch.randn(2, 3, 2, 2, generator=g, dtype=torch.float64) * 3).to(device).requires_grad_()
    k = torch.tensor(0.7, dtype=torch.float64, device=device, requires_grad=True)
    k2 = torch.tensor(2.0, dtype=torch.float64, device=device, requires_grad=True)
    gamma = torch.tensor(1.3, dtype=torch.float64, device=device, requires_grad=True)
    funcs = {
        "plain": (lambda y, k, k2, gm: LF.lift(y, k, dim=1)),
        "rescale": (lambda y, k, k2, gm: LF.lift(y, k, dim=1, rescale=RescaleConfig())),
        "rescale_s2": (lambda y, k, k2, gm: LF.lift(y, k2, dim=1, rescale=RescaleConfig(s=2.0))),
        "boost": (lambda y, k, k2, gm: LF.lift(y, k, dim=1, gamma=gm)),
        "boost_rescale": (lambda y, k, k2, gm: LF.lift(y, k, dim=1, gamma=gm, rescale=RescaleConfig())),
        "euclid": (lambda y, k, k2, gm: LF.euclid_to_lorentz(y, k, dim=1, mode="rescale")),
        "clip": (lambda y, k, k2, gm: LF.euclid_to_lorentz(y, k, dim=1, mode="clip_expmap", clip_r=2.0)),
        "swap": (lambda y, k, k2, gm: LF.swap_manifold(lmath.add_time(y, k, dim=1), k, k2, dim=1)),
        "swap_rescale": (lambda y, k, k2, gm: LF.swap_manifold(lmath.add_time(y, k, dim=1), k, k2, dim=1,
                                                                 rescale=RescaleConfig())),
    }
    assert torch.autograd.gradcheck(funcs[fn], (ys, k, k2, gamma))


@pytest.mark.parametrize("mode", ["rescale", "point", "clip"])
def test_gradient_at_zero_vector_is_the_limit(device, mode):
    ys = torch.zeros(2, 3, dtype=torch.float64, device=device, requires_grad=True)
    gout = torch.randn(2, 4, dtype=torch.float64, device=device)
    cfg = RescaleConfig()
    if mode == "point":
        out, slope = LF.lift(ys, 1.0, dim=-1, rescale=cfg), math.atanh(cfg.rho) / cfg.s
    elif mode == "rescale":
        out, slope = LF.euclid_to_lorentz(ys, 1.0, dim=-1, config=cfg), math.atanh(cfg.rho) / cfg.s
    else:
        out, slope = LF.euclid_to_lorentz(ys, 1.0, dim=-1, mode="clip_expmap"), 1.0
    torch.testing.assert_close(out, lmath.origin(2, 4, dtype=torch.float64, device=device))
    out.backward(gout)
    torch.testing.assert_close(ys.grad, slope * gout[:, 1:])


def test_residual_and_activation(device):
    x, y = points(2, 4, 3, 3, scale=3.0, device=device), points(2, 4, 3, 3, scale=3.0, device=device)
    k = torch.tensor(1.0, dtype=torch.float64, device=device)
    out = LF.lorentz_residual(x, y, k, dim=1)
    ref = rescale(lmath.add_time(x[:, 1:] + y[:, 1:], k, dim=1), k, dim=1)
    torch.testing.assert_close(out, ref)
    out = LF.lorentz_residual(x, y, k, dim=1, rescale=False)
    torch.testing.assert_close(out, lmath.add_time(x[:, 1:] + y[:, 1:], k, dim=1))
    with pytest.raises(ValueError, match="same shape"):
        LF.lorentz_residual(x, y[:, :, :2], k)
    act = LF.lorentz_activation(x, torch.relu, k, dim=1)
    torch.testing.assert_close(act, lmath.add_time(x[:, 1:].relu(), k, dim=1))


def test_autocast_bf16_radius(device):
    ys = (torch.randn(2, 8, 3, 3, device=device) * 50)
    with torch.autocast(device.type, dtype=torch.bfloat16):
        out = LF.lift(ys.bfloat16(), 1.0, dim=1, rescale=RescaleConfig())
    assert out.dtype == torch.float32
    assert_on_manifold(out, 1.0, 1)
    # the lift computes in float32, so float32's radius (≈9.57) is used, not bfloat16's (≈2.91)
    d = lmath.dist0(out, torch.tensor(1.0, device=device), dim=1)
    assert max_distance(torch.bfloat16) < d.max() <= max_distance(torch.float32)
    with torch.autocast(device.type, dtype=torch.bfloat16):  # the 16-bit radius only when asked for
        out = LF.lift(ys.bfloat16(), 1.0, dim=1, rescale=RescaleConfig(), dtype=torch.bfloat16)
    assert lmath.dist0(out, torch.tensor(1.0, device=device), dim=1).max() <= max_distance(torch.bfloat16) + 1e-4


@pytest.mark.parametrize("k", [0.3, 1.0, 2.5])
@pytest.mark.parametrize("with_rescale", [False, True])
def test_closed_form_backward_equals_autograd_path(device, k, with_rescale, monkeypatch):
    """The hot path (closed-form backward) and the generic path (autograd on the per-pixel graph) agree."""
    g = torch.Generator().manual_seed(3)
    ys0 = _ys(device, 4.0)
    gout = torch.randn(3, 6, 4, 2, generator=g, dtype=torch.float64).to(device)
    cfg = RescaleConfig() if with_rescale else None
    res = []
    for fast in (True, False):
        monkeypatch.setitem(LF._OPTS, "fast", fast)
        ys = ys0.clone().requires_grad_()
        kk = torch.tensor(k, dtype=torch.float64, device=device, requires_grad=True)
        out = LF.lift(ys, kk, dim=1, rescale=cfg)
        out.backward(gout)
        res.append((out.detach(), ys.grad, kk.grad))
    for a, b in zip(*res):
        torch.testing.assert_close(a, b, rtol=1e-9, atol=1e-12)
