"""The fused manifold swap (``lorentzcv.kernels.swap``): float64 gradcheck of the eager op's hand-written backward,
the Triton kernels in Triton's interpreter (and on CUDA), the op's schema, and ``ManifoldSwap`` on the fused path vs
the eager one."""

from __future__ import annotations

import pytest
import torch

from lorentzcv.geometry import Lorentz, RescaleConfig
from lorentzcv.geometry import math as lmath
from lorentzcv.kernels import backend, triton_available
from lorentzcv.kernels import swap as KS
from lorentzcv.nn.bridge import ManifoldSwap

from ._interpreted import run_interpreted
from ._triton_swap_cases import M0, MC


def _check_cases(res: dict) -> None:
    assert len(res) == 6
    for name, r in res.items():
        assert r["finite"] and r["launches_as_declared"], (name, r)
        assert r["y"] < 1e-5 and r["gx"] < 1e-5 and r["gk1"] < 5e-5 and r["gk2"] < 5e-5, (name, r)


@pytest.mark.skipif(not triton_available(), reason="Triton is not installed")
def test_triton_swap_kernels_match_the_eager_closed_form_in_the_interpreter():
    _check_cases(run_interpreted("tests.kernels._triton_swap_cases"))


@pytest.mark.cuda
@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs CUDA")
def test_triton_swap_kernels_on_cuda_match_the_eager_closed_form():
    from . import _triton_swap_cases

    _check_cases(_triton_swap_cases.run("cuda"))


@pytest.mark.parametrize("rescale", [True, False])
@pytest.mark.parametrize("k1,k2", [(0.7, 1.6), (2.0, 0.3)])
def test_swap_op_gradcheck_float64(rescale, k1, k2):
    """The eager op's hand-written backward (which the Triton kernel mirrors) against finite differences."""
    g = torch.Generator().manual_seed(0)
    xs = torch.randn(4, 5, generator=g, dtype=torch.float64) * 1.5
    x = lmath.add_time(xs, torch.tensor(k1, dtype=torch.float64)).requires_grad_()
    kt1 = torch.tensor(k1, dtype=torch.float64, requires_grad=True)
    kt2 = torch.tensor(k2, dtype=torch.float64, requires_grad=True)
    torch.autograd.gradcheck(lambda a, b, c: KS._swap_op(a, b, c, rescale, M0, MC), (x, kt1, kt2))


def test_swap_op_opcheck():
    x = lmath.add_time(torch.randn(3, 4), torch.tensor(1.0))
    torch.library.opcheck(KS._swap_op, (x, torch.tensor(1.0), torch.tensor(2.0), True, M0, MC),
                          test_utils=("test_schema", "test_faketensor"))


@pytest.mark.parametrize("rescale", [True, False])
def test_manifold_swap_on_the_fused_path_equals_the_eager_path(rescale):
    a = Lorentz(2.0, learnable=True, rescale=RescaleConfig(s=2.0))
    b = Lorentz(0.3, learnable=True, rescale=RescaleConfig(s=2.0))
    swap = ManifoldSwap(a, b, rescale=rescale, dim=-1)
    x = lmath.add_time(torch.randn(6, 9) * 2, torch.tensor(2.0))
    x[0, 1:], x[0, 0] = 0, 2.0**0.5
    x.requires_grad_()
    gy = torch.randn(6, 10)
    out = {}
    for mode in ("eager", "fused"):
        for t in (x, a.k, b.k):
            t.grad = None
        with backend(mode):
            y = swap(x)
            y.backward(gy)
        out[mode] = (y.detach(), x.grad.clone(), a.k.grad.clone(), b.k.grad.clone())
    for u, v in zip(out["fused"], out["eager"]):
        torch.testing.assert_close(u, v, rtol=1e-4, atol=1e-6)
