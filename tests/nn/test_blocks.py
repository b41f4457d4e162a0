"""ResNet blocks from layer factories (lorentzcv.nn.blocks): one definition, Euclidean and Lorentz variants."""

from __future__ import annotations

from functools import partial

import pytest
import torch
import torchvision
from torch import nn

from lorentzcv.geometry import Lorentz, RescaleConfig
from lorentzcv.geometry import math as lmath
from lorentzcv.models import euclidean_factories, lorentz_factories
from lorentzcv.nn import FromLorentz, LorentzActivation, LorentzBatchNorm2d, LorentzConv2d, LorentzResidual, ToLorentz
from lorentzcv.nn.blocks import Add, BasicBlock, Bottleneck, ConvNormAct, LorentzCoreBottleneck


def _lorentz_point_map(man: Lorentz, b: int, c: int, h: int, w: int, dtype=torch.float32) -> torch.Tensor:
    xs = 0.5 * torch.randn(b, c, h, w, dtype=dtype)
    return lmath.add_time(xs, man.k.to(dtype), dim=1)


@pytest.mark.parametrize("stride, in_ch, planes", [(1, 6, 6), (2, 4, 6)])
def test_same_basic_block_builds_euclidean_and_lorentz(stride, in_ch, planes):
    torch.manual_seed(0)
    eu = BasicBlock(in_ch, planes, stride, **euclidean_factories())
    man = Lorentz(1.0, learnable=True)
    lo = BasicBlock(in_ch, planes, stride, **lorentz_factories(man))
    assert type(eu) is type(lo)
    assert isinstance(eu.conv1, nn.Conv2d) and isinstance(eu.bn1, nn.BatchNorm2d) and isinstance(eu.residual, Add)
    assert isinstance(lo.conv1, LorentzConv2d) and isinstance(lo.bn1, LorentzBatchNorm2d)
    assert isinstance(lo.act1, LorentzActivation) and isinstance(lo.residual, LorentzResidual)
    assert (eu.downsample is None) == (lo.downsample is None) == (stride == 1 and in_ch == planes)

    y = eu(torch.randn(2, in_ch, 8, 8))
    assert y.shape == (2, planes, 8 // stride, 8 // stride) and (y >= 0).all()
    x = _lorentz_point_map(man, 2, in_ch, 8, 8)
    z = lo(x)
    assert z.shape == (2, 1 + planes, 8 // stride, 8 // stride)
    man.check_point_on_manifold(z.detach(), dim=1, atol=1e-5)
    assert (lmath.space(z, dim=1) >= 0).all()  # the block ends with the Lorentz ReLU
    z.sum().backward()
    assert man.k.grad is not None and torch.isfinite(man.k.grad)


def test_euclidean_basic_block_equals_torchvision():
    torch.manual_seed(0)
    ours = BasicBlock(4, 8, 2)
    ref = torchvision.models.resnet.BasicBlock(4, 8, 2, downsample=nn.Sequential(
        nn.Conv2d(4, 8, 1, 2, bias=False), nn.BatchNorm2d(8)))
    ours.load_state_dict(ref.state_dict())  # identical parameter names
    x = torch.randn(3, 4, 8, 8)
    torch.testing.assert_close(ours(x), ref(x))


def test_euclidean_bottleneck_equals_torchvision():
    torch.manual_seed(0)
    ours = Bottleneck(8, 4, 2)
    ref = torchvision.models.resnet.Bottleneck(8, 4, 2, downsample=nn.Sequential(
        nn.Conv2d(8, 16, 1, 2, bias=False), nn.BatchNorm2d(16)))
    sd = {k.replace("conv2.", "core.conv.").replace("bn2.", "core.bn."): v for k, v in ref.state_dict().items()}
    ours.load_state_dict(sd)
    x = torch.randn(3, 8, 8, 8)
    torch.testing.assert_close(ours(x), ref(x))


def test_lorentz_basic_block_wiring_matches_hand_computation():
    """HCNN semantics (no rescaling): relu_L(add_time(bn2(conv2(relu_L(bn1(conv1 x))))_s + x_s))."""
    torch.manual_seed(1)
    man = Lorentz(0.7)
    blk = BasicBlock(5, 5, 1, **lorentz_factories(man, conv_impl="unfold", rescale=False, bias=True))
    x = _lorentz_point_map(man, 2, 5, 6, 6, torch.float64)
    blk = blk.double()
    k = man.k
    h = blk.bn2(blk.conv2(blk.act1(blk.bn1(blk.conv1(x)))))
    zs = lmath.space(h, dim=1) + lmath.space(x, dim=1)
    expected = lmath.add_time(torch.relu(zs), k, dim=1)
    torch.testing.assert_close(blk(x), expected)


def test_conv_norm_act_pre_post_factories():
    man = Lorentz(1.3)
    f = lorentz_factories(man)
    core = ConvNormAct(4, 6, 3, 2, conv_layer=f["conv_layer"], norm_layer=f["norm_layer"], act_layer=f["act_layer"],
                       pre_layer=partial(ToLorentz, man), post_layer=partial(FromLorentz, man))
    x = torch.randn(2, 4, 8, 8)
    y = core(x)
    assert y.shape == (2, 6, 4, 4)
    expected = FromLorentz(man)(core.act(core.bn(core.conv(ToLorentz(man)(x)))))
    torch.testing.assert_close(y, expected)


@pytest.mark.parametrize("stride, in_ch", [(1, 16), (2, 8)])
def test_lorentz_core_bottleneck(stride, in_ch):
    torch.manual_seed(0)
    man = Lorentz(1.0, learnable=True, rescale=RescaleConfig(s=2.0))
    blk = LorentzCoreBottleneck(in_ch, 4, stride, manifold=man)
    assert isinstance(blk, Bottleneck)
    assert isinstance(blk.conv1, nn.Conv2d) and isinstance(blk.bn1, nn.BatchNorm2d)  # Euclidean 1×1s
    assert isinstance(blk.core.pre, ToLorentz) and blk.core.pre.mode == "rescale"
    assert isinstance(blk.core.conv, LorentzConv2d) and blk.core.conv.impl == "efficient"
    assert blk.core.conv.kernel_size == (3, 3) and blk.core.conv.stride == (stride, stride)
    assert isinstance(blk.core.bn, LorentzBatchNorm2d) and isinstance(blk.core.post, FromLorentz)
    assert (blk.downsample is None) == (stride == 1 and in_ch == 16)
    if blk.downsample is not None:
        assert isinstance(blk.downsample[0], nn.Conv2d)  # Euclidean shortcut
    x = torch.randn(3, in_ch, 8, 8, requires_grad=True)
    y = blk(x)
    assert y.shape == (3, 16, 8 // stride, 8 // stride) and torch.isfinite(y).all() and (y >= 0).all()
    # the core really is hyperbolic: its output is the logmap0 of a Lorentz point
    h = blk.act1(blk.bn1(blk.conv1(x)))
    pts = blk.core.act(blk.core.bn(blk.core.conv(blk.core.pre(h))))
    man.check_point_on_manifold(pts.detach(), dim=1, atol=1e-4)
    torch.testing.assert_close(blk.core(h), lmath.space(lmath.logmap0(pts, man.k, dim=1), dim=1))
    (y * torch.randn_like(y)).sum().backward()
    assert x.grad is not None and torch.isfinite(x.grad).all()
    for name, p in blk.named_parameters():
        assert p.grad is not None and torch.isfinite(p.grad).all(), name
    assert man.k.grad.abs() > 0


def test_lorentz_core_bottleneck_options_and_autocast():
    man = Lorentz(0.8, learnable=True)
    blk = LorentzCoreBottleneck(8, 2, 1, manifold=man, conv_impl="unfold", bn_variant="rhl", rescale=False)
    assert blk.core.conv.impl == "unfold" and blk.core.bn.variant == "rhl" and blk.core.pre.mode == "add_time"
    x = torch.randn(2, 8, 6, 6)
    with torch.autocast("cpu", dtype=torch.bfloat16):
        y = blk(x)
    assert y.shape == (2, 8, 6, 6) and torch.isfinite(y).all()
    y.float().sum().backward()
    assert torch.isfinite(man.k.grad)


def test_lorentz_core_bottleneck_gradcheck_float64():
    """float64 gradcheck w.r.t. the input and the curvature k (train mode, batch statistics)."""
    torch.manual_seed(0)
    man = Lorentz(1.2, learnable=True)
    blk = LorentzCoreBottleneck(3, 2, 2, manifold=man).double()
    x = torch.randn(2, 3, 3, 3, dtype=torch.float64, requires_grad=True)
    assert torch.autograd.gradcheck(blk, (x,), eps=1e-6, atol=1e-5, fast_mode=True)
    # k is a module parameter: compare its analytic gradient with central differences
    k0 = man.k.detach().clone()
    y = blk(x)
    w = torch.randn_like(y)
    (y * w).sum().backward()
    analytic = man.k.grad.item()
    h = 1e-6
    with torch.no_grad():
        man.k.copy_(k0 + h)
        up = (blk(x) * w).sum()
        man.k.copy_(k0 - h)
        down = (blk(x) * w).sum()
        man.k.copy_(k0)
    assert analytic == pytest.approx(((up - down) / (2 * h)).item(), rel=1e-4, abs=1e-6)
