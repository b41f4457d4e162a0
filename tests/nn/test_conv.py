"""LorentzConv2d: efficient == unfold (§5.3 identity), origin padding, an independent naive reference, options."""

from __future__ import annotations

import itertools
import math

import pytest
import torch

from lorentzcv.geometry import Lorentz, RescaleConfig, rescale
from lorentzcv.geometry import math as lmath
from lorentzcv.nn import LorentzConv2d

from ._nn_helpers import assert_on_manifold, gradcheck_module, points

GEOMS = [  # (kernel, stride, padding, dilation)
    (3, 1, 0, 1), (3, 2, 1, 1), (3, 1, 2, 2), ((2, 3), (2, 1), (1, 0), (1, 2)), (1, 1, 0, 1), (3, 3, 1, 1),
]


def _pair(v):
    return v if isinstance(v, tuple) else (v, v)


def naive_unfold_conv(x, k, weight, bias, kernel, stride, padding, dilation, lfc, patch_rescale):
    """Direct loops: gather each window (origin outside the map), direct concatenation, LFC, add_time."""
    (kh, kw), (sh, sw), (ph, pw), (dh, dw) = map(_pair, (kernel, stride, padding, dilation))
    b, c1, h, w = x.shape
    ho, wo = (h + 2 * ph - dh * (kh - 1) - 1) // sh + 1, (w + 2 * pw - dw * (kw - 1) - 1) // sw + 1
    out = []
    for i, j in itertools.product(range(ho), range(wo)):
        pts = []
        for a, bb in itertools.product(range(kh), range(kw)):
            r, s = i * sh - ph + a * dh, j * sw - pw + bb * dw
            if 0 <= r < h and 0 <= s < w:
                pts.append(x[:, :, r, s])
            else:
                pts.append(lmath.origin(b, c1, k=k, dtype=x.dtype, device=x.device))
        pts = torch.stack(pts, 1)  # (B, K, 1+C)
        t = ((pts[..., 0] ** 2).sum(1) - (len(pts[0]) - 1) * k).sqrt()  # Σ t² − (K−1)k
        patch = torch.cat([t[:, None], pts[..., 1:].reshape(b, -1)], -1)  # position-major
        if patch_rescale:
            patch = rescale(patch, k, dim=-1)
        inp = patch if lfc == "hcnn" else patch[:, 1:]
        y = inp @ weight.T + (bias if bias is not None else 0)
        ys = y[:, 1:] if lfc == "hcnn" else y
        out.append(lmath.add_time(ys, k))
    return torch.stack(out, -1).reshape(b, -1, ho, wo)


def _pad_with_origin(x, k, padding):
    ph, pw = _pair(padding)
    xp = torch.nn.functional.pad(x, (pw, pw, ph, ph))
    xp[:, 0] = xp[:, 0].clamp_min(math.sqrt(k))
    return xp


@pytest.mark.parametrize("geom", GEOMS, ids=lambda g: str(g))
@pytest.mark.parametrize("dtype", [torch.float32, torch.float64], ids=["f32", "f64"])
def test_efficient_equals_unfold_space_lfc(device, geom, dtype):
    kernel, stride, padding, dilation = geom
    m = Lorentz(0.75).to(device)
    eff = LorentzConv2d(m, 3, 4, kernel, stride, padding, dilation, rescale=False).to(device, dtype)
    unf = LorentzConv2d(m, 3, 4, kernel, stride, padding, dilation, impl="unfold", lfc="space").to(device, dtype)
    with torch.no_grad():  # the identity of §5.3: w[o, c, i, j] = LFC column p·C_in + c, p = i·kw + j
        kh, kw = _pair(kernel)
        w = torch.randn(4, 3, kh, kw, dtype=dtype, device=device)
        eff.weight.copy_(w)
        unf.linear.weight.copy_(w.permute(0, 2, 3, 1).reshape(4, -1))
        unf.linear.bias.copy_(eff.bias)
    torch.testing.assert_close(unf.conv_weight(), w)
    x = points(2, 3, 7, 6, k=0.75, scale=1.5, dtype=dtype, device=device)
    a, b = eff(x), unf(x)
    assert a.shape == b.shape == (2, 5, *eff.output_size(7, 6))
    tol = dict(rtol=1e-4, atol=1e-4) if dtype == torch.float32 else dict(rtol=1e-10, atol=1e-10)
    torch.testing.assert_close(a, b, **tol)
    assert_on_manifold(a, 0.75, 1)


@pytest.mark.parametrize("geom", GEOMS[:4], ids=lambda g: str(g))
@pytest.mark.parametrize("lfc,patch_rescale", [("hcnn", False), ("space", True), ("hcnn", True)])
def test_unfold_matches_naive_reference(device, geom, lfc, patch_rescale):
    kernel, stride, padding, dilation = geom
    m = Lorentz(1.5).to(device)
    conv = LorentzConv2d(m, 2, 3, kernel, stride, padding, dilation, impl="unfold", lfc=lfc,
                         rescale=patch_rescale).to(device, torch.float64)
    x = points(2, 2, 5, 5, k=1.5, scale=2.0, device=device)
    ref = naive_unfold_conv(x, torch.tensor(1.5, dtype=torch.float64, device=device), conv.linear.weight,
                            conv.linear.bias, kernel, stride, padding, dilation, lfc, patch_rescale)
    torch.testing.assert_close(conv(x), ref, rtol=1e-10, atol=1e-10)


@pytest.mark.parametrize("impl", ["efficient", "unfold"])
def test_padding_is_origin_padding(device, impl):
    m = Lorentz(2.5).to(device)
    padded = LorentzConv2d(m, 3, 2, 3, stride=1, padding=2, impl=impl).to(device, torch.float64)
    plain = LorentzConv2d(m, 3, 2, 3, stride=1, padding=0, impl=impl).to(device, torch.float64)
    plain.load_state_dict(padded.state_dict())
    x = points(2, 3, 4, 5, k=2.5, device=device)
    torch.testing.assert_close(padded(x), plain(_pad_with_origin(x, 2.5, 2)), rtol=1e-12, atol=1e-12)


def test_unfold_hcnn_with_zero_time_column_equals_space(device):
    m = Lorentz(1.0).to(device)
    h = LorentzConv2d(m, 2, 3, 3, padding=1, impl="unfold", lfc="hcnn").to(device, torch.float64)
    s = LorentzConv2d(m, 2, 3, 3, padding=1, impl="unfold", lfc="space").to(device, torch.float64)
    with torch.no_grad():
        h.linear.weight[:, 0] = 0
        s.linear.weight.copy_(h.linear.weight[1:, 1:])
        s.linear.bias.copy_(h.linear.bias[1:])
    x = points(1, 2, 4, 4, device=device)
    torch.testing.assert_close(h(x), s(x))
    torch.testing.assert_close(h.conv_weight(), s.conv_weight())


def test_efficient_rescale_is_rescale_of_plain(device):
    m = Lorentz(0.5, rescale=RescaleConfig(s=2.0)).to(device)
    a = LorentzConv2d(m, 4, 5, 3, padding=1).to(device, torch.float64)
    b = LorentzConv2d(m, 4, 5, 3, padding=1, rescale=False).to(device, torch.float64)
    b.load_state_dict(a.state_dict())
    with torch.no_grad():
        a.weight.mul_(30)
        b.weight.copy_(a.weight)
    x = points(2, 4, 5, 5, k=0.5, scale=3.0, device=device)
    ref = rescale(b(x), m.k.detach(), dim=1, config=m.rescale_config)
    torch.testing.assert_close(a(x), ref, rtol=1e-10, atol=1e-10)
    assert (m.dist0(a(x), dim=1) < m.max_distance(torch.float64) + 1e-9).all()


def test_groups_equal_block_diagonal_conv(device):
    m = Lorentz().to(device)
    g = LorentzConv2d(m, 4, 6, 3, padding=1, groups=2, rescale=False).to(device, torch.float64)
    full = LorentzConv2d(m, 4, 6, 3, padding=1, rescale=False).to(device, torch.float64)
    with torch.no_grad():
        full.weight.zero_()
        full.weight[:3, :2] = g.weight[:3]
        full.weight[3:, 2:] = g.weight[3:]
        full.bias.copy_(g.bias)
    x = points(2, 4, 5, 5, device=device)
    torch.testing.assert_close(g(x), full(x))


def test_cayley_weight_is_orthonormal_and_boost_scales_rapidity(device):
    m = Lorentz(1.0).to(device)
    conv = LorentzConv2d(m, 2, 20, 3, padding=1, cayley=True, boost_scale=True, rescale=False).to(device)
    w = conv.conv_weight().reshape(20, -1)
    torch.testing.assert_close(w.T @ w, torch.eye(18, device=device), rtol=1e-5, atol=1e-5)
    assert conv.weight is None and conv.cayley_weight.shape == (20, 20)
    x = points(2, 2, 4, 4, scale=0.3, dtype=torch.float32, device=device)
    with torch.no_grad():
        y1 = conv(x)
        conv.boost.fill_(2.0)
        y2 = conv(x)
    torch.testing.assert_close(m.dist0(y2, dim=1), 2 * m.dist0(y1, dim=1), rtol=1e-4, atol=1e-5)
    with pytest.raises(ValueError, match="cayley=True needs"):
        LorentzConv2d(m, 4, 5, 3, cayley=True)
    assert LorentzConv2d(m, 4, 5, 3, cayley="auto").cayley is False


@pytest.mark.parametrize(
    "kwargs",
    [dict(), dict(rescale=False), dict(boost_scale=True, stride=2), dict(cayley=True, kernel_size=1),
     dict(impl="unfold"), dict(impl="unfold", lfc="space", rescale=True), dict(groups=2, dilation=2)],
    ids=["eff", "eff_norescale", "eff_boost", "eff_cayley", "unfold_hcnn", "unfold_space_rescale", "eff_groups"],
)
def test_gradcheck_including_k(device, kwargs):
    kwargs = {"kernel_size": 2, "padding": 1, **kwargs}
    m = Lorentz(0.75, learnable=True)
    conv = LorentzConv2d(m, 2, 4, **kwargs).to(device)
    with torch.no_grad():
        for p in conv.parameters():
            if p is not m.k:
                p.mul_(3)  # get into the non-linear range of the rescaling
    x = points(1, 2, 3, 3, k=0.75, scale=2.0, device=device)
    assert gradcheck_module(conv, x)


def test_gradient_reaches_k(device):
    m = Lorentz(1.0, learnable=True).to(device)
    conv = LorentzConv2d(m, 3, 3, 3, padding=1).to(device)
    x = points(2, 3, 4, 4, scale=3.0, dtype=torch.float32, device=device)
    conv(x).pow(2).sum().backward()
    assert m.k.grad is not None and m.k.grad.abs() > 0


def test_errors():
    m = Lorentz()
    conv = LorentzConv2d(m, 3, 4, 3)
    with pytest.raises(ValueError, match="1 \\+ 3 = 4 entries"):
        conv(torch.randn(1, 3, 5, 5))
    with pytest.raises(ValueError, match="\\(B, 1\\+C, H, W\\)"):
        conv(torch.randn(4, 5))
    with pytest.raises(ValueError, match="unknown LorentzConv2d impl"):
        LorentzConv2d(m, 3, 4, 3, impl="fast")
    with pytest.raises(ValueError, match="groups=1 only"):
        LorentzConv2d(m, 4, 4, 3, groups=2, impl="unfold")
    with pytest.raises(ValueError, match="must divide"):
        LorentzConv2d(m, 3, 4, 3, groups=2)
    with pytest.raises(ValueError, match="options of impl='efficient'"):
        LorentzConv2d(m, 3, 4, 3, impl="unfold", boost_scale=True)
    with pytest.raises(ValueError, match="unknown lfc"):
        LorentzConv2d(m, 3, 4, 3, impl="unfold", lfc="full")


def test_efficient_is_much_lighter_than_unfold():
    """Memory saved for backward (a deterministic proxy of the compute table): efficient ≪ unfold."""
    m = Lorentz()
    x = points(4, 16, 8, 8, dtype=torch.float32).requires_grad_()

    def saved(mod):
        store = {}

        def pack(t):
            store[t.untyped_storage().data_ptr()] = t.untyped_storage().nbytes()
            return t

        with torch.autograd.graph.saved_tensors_hooks(pack, lambda t: t):
            mod(x)
        return sum(store.values())

    eff = saved(LorentzConv2d(m, 16, 16, 3, padding=1))
    unf = saved(LorentzConv2d(m, 16, 16, 3, padding=1, impl="unfold"))
    assert eff < 0.5 * unf


@pytest.mark.parametrize("mode", ["view", "copy"])
def test_input_modes_agree(device, mode, monkeypatch):
    m = Lorentz(0.75, learnable=True).to(device)
    conv = LorentzConv2d(m, 3, 4, 3, padding=1, stride=2).to(device, torch.float64)
    x = points(2, 3, 5, 5, k=0.75, scale=2.0, device=device)
    g = torch.randn(2, 5, 3, 3, dtype=torch.float64, device=device)
    res = []
    for md in ("auto", mode):
        monkeypatch.setattr(conv, "_input_mode", md)
        xr = x.clone().requires_grad_()
        conv.zero_grad()
        conv(xr).backward(g)
        res.append((xr.grad, conv.weight.grad.clone(), m.k.grad.clone()))
    for a, b in zip(*res):
        torch.testing.assert_close(a, b, rtol=1e-12, atol=1e-12)
