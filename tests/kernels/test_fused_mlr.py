"""The fused Lorentz MLR (``lorentzcv.kernels.mlr``): float64 gradcheck of the eager op's hand-written backward, the
Triton kernels in Triton's interpreter (and on CUDA), the op's schema, and ``LorentzMLR`` on the fused path vs the
eager closed form."""

from __future__ import annotations

import pytest
import torch

from lorentzcv.geometry import Lorentz
from lorentzcv.geometry import math as lmath
from lorentzcv.kernels import backend, triton_available
from lorentzcv.kernels import mlr as KM
from lorentzcv.nn import LorentzMLR
from lorentzcv.nn.mlr import lorentz_mlr_logits

from ._interpreted import run_interpreted


def _check_cases(res: dict) -> None:
    assert len(res) == 3
    for name, r in res.items():
        assert r["finite"] and r["launches_as_declared"], (name, r)
        assert max(r[key] for key in ("logits", "gx", "ga", "gz")) < 1e-5 and r["gk"] < 5e-5, (name, r)


@pytest.mark.skipif(not triton_available(), reason="Triton is not installed")
def test_triton_mlr_kernels_match_the_eager_closed_form_in_the_interpreter():
    _check_cases(run_interpreted("tests.kernels._triton_mlr_cases"))


@pytest.mark.cuda
@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs CUDA")
def test_triton_mlr_kernels_on_cuda_match_the_eager_closed_form():
    from . import _triton_mlr_cases

    _check_cases(_triton_mlr_cases.run("cuda"))


def test_mlr_op_gradcheck_float64_equals_the_closed_form_and_passes_opcheck():
    g = torch.Generator().manual_seed(0)
    dt = torch.float64
    x = lmath.add_time(torch.randn(5, 6, generator=g, dtype=dt) * 1.5, torch.tensor(0.8, dtype=dt)).requires_grad_()
    a = torch.randn(4, generator=g, dtype=dt).requires_grad_()
    z = (torch.randn(4, 6, generator=g, dtype=dt) * 0.5).requires_grad_()
    k = torch.tensor(0.8, dtype=dt, requires_grad=True)
    torch.autograd.gradcheck(lambda *t: KM._mlr_op(*t)[0], (x, a, z, k))
    torch.testing.assert_close(KM._mlr_op(x, a, z, k)[0], lorentz_mlr_logits(x, a, z, k))
    torch.library.opcheck(KM._mlr_op, tuple(t.detach().float() for t in (x, a, z, k)),
                          test_utils=("test_schema", "test_faketensor"))


def test_lorentz_mlr_on_the_fused_path_equals_the_eager_path():
    man = Lorentz(0.6, learnable=True)
    mlr = LorentzMLR(man, 12, 7)
    x = lmath.add_time(torch.randn(9, 12) * 2, torch.tensor(0.6)).requires_grad_()
    gy = torch.randn(9, 7)
    out = {}
    for mode in ("eager", "fused"):
        for t in (x, man.k, mlr.a, mlr.z):
            t.grad = None
        with backend(mode):
            y = mlr(x)
            y.backward(gy)
        out[mode] = (y.detach(), x.grad.clone(), man.k.grad.clone(), mlr.a.grad.clone(), mlr.z.grad.clone())
    for u, v in zip(out["fused"], out["eager"]):
        torch.testing.assert_close(u, v, rtol=1e-5, atol=1e-6)
