"""The fused Lorentz batch norm (``lorentzcv.kernels.batch_norm``): the Triton kernels in Triton's interpreter
against the eager closed form, and the layer on the CUDA path (custom ops) against the eager path."""

from __future__ import annotations

import pytest
import torch

from lorentzcv.geometry import Lorentz, RescaleConfig
from lorentzcv.geometry import math as lmath
from lorentzcv.kernels import backend, triton_available
from lorentzcv.nn import LorentzBatchNorm1d, LorentzBatchNorm2d

from ._interpreted import run_interpreted


@pytest.mark.skipif(not triton_available(), reason="Triton is not installed")
def test_triton_kernels_match_the_eager_closed_form_in_the_interpreter():
    """Both variants, with and without rescaling, training and eval, k at 0.3/1/2.5, vectors (1-D), a batch far
    from the origin, a pixel count that is not a multiple of the block: outputs, μ, σ, all gradients (input, β, γ,
    k) and the running statistics; each launcher launches what ``LAUNCHES`` declares."""
    _check_cases(run_interpreted("tests.kernels._triton_bn_cases"))


@pytest.mark.cuda
@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs CUDA")
def test_triton_kernels_on_cuda_match_the_eager_closed_form():
    from . import _triton_bn_cases

    _check_cases(_triton_bn_cases.run("cuda"))


def _check_cases(res: dict) -> None:
    assert len(res) == 27
    for name, r in res.items():
        assert r["finite"] and r["launches_as_declared"], (name, r)
        for key in ("y", "mu", "var", "gx", "gbeta", "ggamma"):
            assert r[key] < 2e-5, (name, key, r[key])
        assert r["gk"] < 5e-5, (name, r["gk"])
        if "running_mean" in r:
            assert r["running_mean"] < 2e-5 and r["running_var"] < 1e-6 and r["num_batches_tracked"] == 0
            assert r["running_changed"] == 0, (name, r)  # the forward op updated them


def _run(bn, x, impl):
    x = x.detach().clone().requires_grad_()
    bn.zero_grad(set_to_none=True)
    bn.manifold.k.grad = None
    with backend(impl):
        y = bn(x)
    y.backward(torch.linspace(-1, 1, y.numel()).reshape(y.shape))
    return y.detach(), x.grad, bn.beta.grad, bn.gamma.grad, bn.manifold.k.grad


@pytest.mark.parametrize("variant,rescale", [("hcnn", False), ("hcnn", True), ("rhl", True)])
@pytest.mark.parametrize("training", [True, False], ids=["train", "eval"])
@pytest.mark.parametrize("layer", ["2d", "1d"])
def test_layer_on_the_fused_ops_equals_the_eager_path(variant, rescale, training, layer):
    man = Lorentz(0.8, learnable=True, rescale=RescaleConfig(s=2.0))
    shape = (4, 5, 3, 3) if layer == "2d" else (7, 5)
    dim = 1
    x = lmath.add_time(torch.randn(shape) + 0.5, torch.tensor(0.8), dim=dim)
    cls = LorentzBatchNorm2d if layer == "2d" else LorentzBatchNorm1d
    torch.manual_seed(0)
    runs = {}
    for impl in ("fused", "eager"):
        bn = cls(man, 5, variant=variant, rescale=rescale)
        with torch.no_grad():
            bn.beta.copy_(man.expmap0(torch.cat([torch.zeros(1), 0.2 * torch.arange(5.0)])))
            bn.gamma.fill_(1.4)
            bn.running_mean[1:] = 0.1
            bn.running_var.fill_(0.7)
        bn.train(training)
        runs[impl] = (_run(bn, x, impl), bn.running_mean.clone(), bn.running_var.clone(), bn.num_batches_tracked)
    (out_f, rm_f, rv_f, n_f), (out_e, rm_e, rv_e, n_e) = runs["fused"], runs["eager"]
    for a, b in zip(out_f, out_e):
        torch.testing.assert_close(a, b, rtol=1e-4, atol=1e-5)
    torch.testing.assert_close(rm_f, rm_e)
    torch.testing.assert_close(rv_f, rv_e)
    assert int(n_f) == int(n_e) == (1 if training else 0)


def test_fused_ops_opcheck():
    x3 = lmath.add_time(torch.randn(3, 4, 5), torch.tensor(1.0), dim=1)
    from lorentzcv.kernels import batch_norm as KB

    for training in (True, False):  # (training mutates the running statistics: the schema says so)
        args = (x3, torch.tensor([1.0, 0, 0, 0, 0]), torch.tensor(1.0), torch.tensor(1.0), torch.zeros(5),
                torch.tensor(1.0), torch.tensor(0), False, 1e-5, True, 11.5, 1.3, True, 0.1, training)
        torch.library.opcheck(KB._bn_op, args, test_utils=("test_schema", "test_faketensor"))
