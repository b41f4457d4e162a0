"""The fused lift (``lorentzcv.kernels.lift``): custom ops vs the eager closed forms, the Triton kernels in Triton's
interpreter, gradients in float64, and the layers/models on the fused path vs the eager one."""

from __future__ import annotations

import pytest
import torch

from lorentzcv.geometry import Lorentz, RescaleConfig
from lorentzcv.geometry import math as lmath
from lorentzcv.kernels import backend, emulate_cuda, triton_available, use_fused
from lorentzcv.kernels import lift as KL
from lorentzcv.models import create_model
from lorentzcv.nn import LorentzConv2d, LorentzReLU, LorentzResidual

from ._interpreted import run_interpreted

M0, MC = 11.48, 1.32  # a rescaling radius (before min(1, √k)) and m·c


def _points(shape, k, scale=1.0, seed=0, dtype=torch.float32):
    g = torch.Generator().manual_seed(seed)
    ys = torch.randn(shape, generator=g, dtype=dtype) * scale
    return lmath.add_time(ys, torch.tensor(k, dtype=dtype), dim=1)


@pytest.mark.skipif(not triton_available(), reason="Triton is not installed")
def test_triton_kernels_match_the_eager_closed_form_in_the_interpreter():
    """Every source, with and without rescaling, k at 0.05/1/4, zero/tiny/far vectors, channels-last maps, vectors,
    one pixel with a broadcast gradient, a pixel count that is not a multiple of the block; each launcher launches
    what ``lorentzcv.kernels.LAUNCHES`` declares."""
    _check_cases(run_interpreted("tests.kernels._triton_cases"))


@pytest.mark.cuda
@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs CUDA")
def test_triton_kernels_on_cuda_match_the_eager_closed_form():
    from . import _triton_cases

    _check_cases(_triton_cases.run("cuda"))


def _check_cases(res: dict) -> None:
    assert len(res) == 23 + 9  # + the log0 bridge
    for name, r in res.items():
        assert r["finite"] and r["layout_kept"] and r["launches_as_declared"], (name, r)
        assert r["out"] < 1e-5 and r["sq"] < 1e-5, (name, r)
        assert r["grad"] < 1e-5 and r["grad_k"] < 5e-5, (name, r)


@pytest.mark.parametrize("src,rescale,euclid", [("space", False, False), ("space", True, False), ("space", True, True),
                                                ("relu", False, False), ("sum", False, False), ("sum", True, False)])
@pytest.mark.parametrize("k0", [0.7, 2.0])
def test_fused_lift_gradcheck_float64(src, rescale, euclid, k0):
    k = torch.tensor(k0, dtype=torch.float64, requires_grad=True)
    if src == "space":
        x = (3 * torch.randn(2, 3, 2, 2, dtype=torch.float64)).requires_grad_()
        args = (x,)
    else:
        x = _points((2, 3, 2, 2), k0, seed=1, dtype=torch.float64).requires_grad_()
        args = (x,) if src == "relu" else (x, _points((2, 3, 2, 2), k0, seed=2, dtype=torch.float64).requires_grad_())

    def fn(*inputs):
        *pts, kk = inputs
        return KL.fused_lift(pts[0], kk, dim=1, src=src, y=pts[1] if len(pts) > 1 else None,
                             rescale=(M0, MC) if rescale else None, euclid=euclid)

    assert torch.autograd.gradcheck(fn, (*args, k), eps=1e-6, atol=1e-6)


def test_fused_lift_opcheck():
    x = torch.randn(2, 4, 3, 3)
    torch.library.opcheck(KL._fused_lift_op, (x, None, torch.tensor(1.0), 0, 1, True, M0, MC))


def test_fused_lift_refuses_bad_arguments():
    x = _points((1, 2, 2, 2), 1.0)
    with pytest.raises(ValueError, match="y exactly"):
        KL.fused_lift(x, torch.tensor(1.0), dim=1, src="sum")
    with pytest.raises(ValueError, match="time-only"):
        KL.fused_lift(x, torch.tensor(1.0), dim=1, src="relu", rescale=(M0, MC))


def _layer_grads(layer, inputs, impl, amp=False):
    inputs = [t.detach().clone().requires_grad_() for t in inputs]
    layer.zero_grad(set_to_none=True)
    with backend(impl), torch.autocast("cpu", dtype=torch.bfloat16, enabled=amp):
        y = layer(*inputs)
    y.backward(torch.linspace(-1, 1, y.numel()).reshape(y.shape))
    grads = [t.grad for t in inputs] + [p.grad for p in layer.parameters() if p.grad is not None]
    return y.detach(), grads


@pytest.mark.parametrize("amp", [False, True], ids=["fp32", "bf16-autocast"])
def test_layers_on_the_fused_path_equal_the_eager_path(amp):
    man = Lorentz(0.8, learnable=True, rescale=RescaleConfig(s=2.0))
    x = _points((3, 5, 4, 4), 0.8, scale=2.0)
    cases = [
        (LorentzConv2d(man, 5, 6, 3, padding=1), [x]),
        (LorentzConv2d(man, 5, 6, 3, padding=1, rescale=False), [x]),
        (LorentzReLU(man), [x]),
        (LorentzResidual(man), [x, _points((3, 5, 4, 4), 0.8, seed=3)]),
        (LorentzResidual(man, rescale=False), [x, _points((3, 5, 4, 4), 0.8, seed=4)]),
    ]
    for layer, inputs in cases:
        y_f, g_f = _layer_grads(layer, inputs, "fused", amp)
        y_e, g_e = _layer_grads(layer, inputs, "eager", amp)
        torch.testing.assert_close(y_f, y_e, rtol=1e-5, atol=1e-5)
        assert len(g_f) == len(g_e) >= 2
        for a, b in zip(g_f, g_e):
            torch.testing.assert_close(a, b, rtol=1e-4, atol=1e-5)


def test_k_gradient_reaches_the_manifold_on_the_fused_path():
    man = Lorentz(1.3, learnable=True, rescale=RescaleConfig(s=2.0))
    x = _points((2, 4, 3, 3), 1.3)
    grads = {}
    conv = LorentzConv2d(man, 4, 4, 3, padding=1)
    conv.weight.requires_grad_(False)
    for impl in ("fused", "eager"):
        man.k.grad = None
        with backend(impl):
            conv(x).sum().backward()
        grads[impl] = man.k.grad.clone()
    torch.testing.assert_close(grads["fused"], grads["eager"], rtol=1e-4, atol=1e-6)


def test_policy():
    x = torch.zeros(2)
    assert not use_fused(x)  # CPU default: the eager closed forms
    with backend("fused"):
        assert use_fused(x)
    with emulate_cuda():
        assert use_fused(x)
    with pytest.raises(ValueError, match="unknown kernel backend"):
        with backend("triton"):
            pass


def test_model_on_the_emulated_cuda_path_equals_eager():
    """hecnn_resnet18 with every fused kernel (as CUDA runs it) vs the eager default: loss and all gradients."""
    torch.manual_seed(0)
    model = create_model("hecnn_resnet18", num_classes=5, img_size=16, width=4)
    x, y = torch.randn(3, 3, 16, 16), torch.tensor([0, 1, 4])
    out = {}
    for name, ctx in (("eager", backend("eager")), ("cuda_path", emulate_cuda())):
        model.zero_grad(set_to_none=True)
        with ctx:
            loss = torch.nn.functional.cross_entropy(model(x), y)
        loss.backward()
        out[name] = (loss.detach(), [p.grad.clone() for p in model.parameters()])
    torch.testing.assert_close(out["cuda_path"][0], out["eager"][0], rtol=1e-5, atol=1e-6)
    for a, b in zip(out["cuda_path"][1], out["eager"][1]):
        torch.testing.assert_close(a, b, rtol=1e-3, atol=1e-5)


@pytest.mark.parametrize("k0", [0.4, 1.0, 3.0])
def test_euclid_bridge_on_the_fused_path_equals_the_eager_path(k0):
    """``ToLorentz(mode="rescale")`` (``rescale_euclid`` then time) through the fused op vs the generic eager path."""
    from lorentzcv.nn import ToLorentz

    man = Lorentz(k0, learnable=True, rescale=RescaleConfig(s=2.0))
    layer = ToLorentz(man, mode="rescale", dim=1)
    v = 4 * torch.randn(3, 6, 2, 2)
    v[0, :, 0, 0] = 0  # the origin
    _assert_bridge_paths_agree(layer, man, v)


def test_a_failing_triton_kernel_falls_back_to_the_eager_closed_form(monkeypatch):
    """On CUDA a Triton kernel that cannot be compiled (Triton/driver mismatch) must not break training: one
    warning, then the eager closed form for the rest of the process."""
    from lorentzcv import kernels

    monkeypatch.setattr(kernels, "_FAILED", set())
    calls = []

    def broken(*args):
        calls.append("triton")
        raise RuntimeError("PTX too new")

    def eager(*args):
        calls.append("eager")
        return sum(args)

    kernel = kernels.with_eager_fallback("lorentzcv::demo", broken, eager)
    with pytest.warns(RuntimeWarning, match="lorentzcv::demo failed .*PTX too new.*eager closed form"):
        assert kernel(1, 2) == 3
    assert kernel(3, 4) == 7  # no second attempt, no second warning
    assert calls == ["triton", "eager", "eager"]


@pytest.mark.parametrize("k0", [0.3, 1.0, 3.0])
def test_fused_log0_gradcheck_float64(k0):
    k = torch.tensor(k0, dtype=torch.float64, requires_grad=True)
    for scale in (0.05, 2.0):  # both sides of the series switch at z = 0.2
        x = _points((2, 4, 2, 2), k0, scale=scale, seed=5, dtype=torch.float64).requires_grad_()
        assert torch.autograd.gradcheck(lambda x, k: KL.fused_log0(x, k, dim=1), (x, k), eps=1e-6, atol=1e-6)


def test_from_lorentz_on_the_fused_path_equals_the_eager_path():
    from lorentzcv.nn import FromLorentz

    man = Lorentz(0.6, learnable=True)
    layer = FromLorentz(man, dim=1)
    x0 = _points((3, 5, 2, 2), 0.6, scale=2.0)
    x0[0, :, 0, 0] = torch.tensor([0.6 ** 0.5, 0, 0, 0, 0, 0])  # the origin
    _assert_bridge_paths_agree(layer, man, x0)


def _assert_bridge_paths_agree(layer, man: Lorentz, inp: torch.Tensor) -> None:
    """Output and gradients (input, k) of ``layer`` on the fused path equal those on the eager path."""
    outs = {}
    for impl in ("fused", "eager"):
        man.k.grad = None
        x = inp.clone().requires_grad_()
        with backend(impl):
            y = layer(x)
        y.backward(torch.linspace(-1, 1, y.numel()).reshape(y.shape))
        outs[impl] = (y.detach(), x.grad, man.k.grad.clone())
    for a, b in zip(outs["fused"], outs["eager"]):
        torch.testing.assert_close(a, b, rtol=1e-4, atol=1e-5)


def test_conv_input_gradient_on_the_fused_path_is_one_kernel_not_slice_backward():
    """The efficient conv reads the space channels of its input as a view; on the fused path the gradient of the
    view is one ``cat`` with a zero time channel (``_SpaceView``), not autograd's two-kernel ``slice_backward``."""
    from lorentzcv.bench import count_launches

    man = Lorentz(0.8, learnable=True, rescale=RescaleConfig(s=2.0))
    conv = LorentzConv2d(man, 5, 6, 3, padding=1)
    x = _points((2, 5, 4, 4), 0.8).requires_grad_()
    g = torch.randn(2, 7, 4, 4)

    def step():
        conv(x).backward(g)

    ops = count_launches(step, by_op=True)
    assert "aten::slice_backward" not in ops and ops.get("aten::cat") == 1, ops
    x.grad = None
    with backend("fused"):
        conv(x).backward(g)
    gf = x.grad.clone()
    x.grad = None
    with backend("eager"):
        conv(x).backward(g)
    assert gf[:, 0].abs().max() == 0 and torch.equal(gf, x.grad)
