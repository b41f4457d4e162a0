"""The fused row normalisation (``lorentzcv.kernels.rows``, the last step of the Lorentz global average pooling): the
eager op's hand-written backward against finite differences, the Triton kernels in the interpreter (and on CUDA), and
the pooling layer on the fused path vs the eager one."""

from __future__ import annotations

import pytest
import torch

from lorentzcv.geometry import Lorentz
from lorentzcv.geometry import math as lmath
from lorentzcv.kernels import backend, triton_available
from lorentzcv.kernels import rows as KR
from lorentzcv.nn.pooling import LorentzGlobalAvgPool2d

from ._interpreted import run_interpreted


def _check_cases(res: dict) -> None:
    assert len(res) == 4
    for name, r in res.items():
        assert r["finite"] and r["launches_as_declared"], (name, r)
        assert r["y"] < 1e-5 and r["gmu"] < 1e-5 and r["gk"] < 1e-5, (name, r)


@pytest.mark.skipif(not triton_available(), reason="Triton is not installed")
def test_triton_normalize_kernels_match_the_eager_closed_form_in_the_interpreter():
    _check_cases(run_interpreted("tests.kernels._triton_rows_cases"))


@pytest.mark.cuda
@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs CUDA")
def test_triton_normalize_kernels_on_cuda_match_the_eager_closed_form():
    from . import _triton_rows_cases

    _check_cases(_triton_rows_cases.run("cuda"))


def test_normalize_op_gradcheck_float64_and_opcheck():
    g = torch.Generator().manual_seed(0)
    mu = lmath.add_time(torch.randn(4, 3, 5, generator=g, dtype=torch.float64), torch.tensor(0.8, dtype=torch.float64))
    mu = mu.mean(1).requires_grad_()
    k = torch.tensor(0.8, dtype=torch.float64, requires_grad=True)
    torch.autograd.gradcheck(KR._normalize_op, (mu, k))
    torch.library.opcheck(KR._normalize_op, (mu.detach().float(), k.detach().float()),
                          test_utils=("test_schema", "test_faketensor"))


def test_global_pooling_on_the_fused_path_equals_the_eager_path():
    man = Lorentz(1.7, learnable=True)
    pool = LorentzGlobalAvgPool2d(man)
    x = lmath.add_time(torch.randn(3, 6, 4, 4) * 2, torch.tensor(1.7), dim=1).requires_grad_()
    gy = torch.randn(3, 7)
    out = {}
    for mode in ("eager", "fused"):
        x.grad, man.k.grad = None, None
        with backend(mode):
            y = pool(x)
            y.backward(gy)
        out[mode] = (y.detach(), x.grad.clone(), man.k.grad.clone())
    for u, v in zip(out["fused"], out["eager"]):
        torch.testing.assert_close(u, v, rtol=1e-5, atol=1e-6)
