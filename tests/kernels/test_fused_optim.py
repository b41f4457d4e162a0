"""The fused optimizer step and curvature move (``lorentzcv.optim.fused``): the Triton kernels in Triton's interpreter
against the eager per-point math, the custom ops' schemas, and whole optimizers on the fused path vs the eager one."""

from __future__ import annotations

import copy

import pytest
import torch

from lorentzcv.kernels import backend, triton_available
from lorentzcv.models import create_model
from lorentzcv.optim import create_optimizer
from lorentzcv.optim import fused as F

from ._interpreted import run_interpreted


def _check_cases(res: dict) -> None:
    assert len(res) == 18 + 12 + 12  # RSGD, RAdamW, explog moves
    for name, r in res.items():
        assert r.get("v", 0.0) < 1e-6 and r.get("vmax", 0.0) < 1e-6, (name, r)
        assert r["finite"] and r["padding_kept"] and r["launches_as_declared"], (name, r)
        assert r["x"] < 1e-5, (name, r)
        if "m" in r:
            assert r["m_rows"] >= 2 and r["m"] < 1e-5, (name, r)
        if "within_cap" in r:
            assert r["within_cap"] and r["on_manifold"], (name, r)


@pytest.mark.skipif(not triton_available(), reason="Triton is not installed")
def test_triton_optimizer_kernels_match_the_eager_math_in_the_interpreter():
    """RSGD steps at k 0.05/1/4 without momentum, at the first step and with a buffer, repairing and naive, with
    weight decay, dampening, Nesterov and maximize among them; RAdamW steps with and without amsgrad, weight decay
    and maximize, repairing and naive; explog moves to smaller/larger k with and without a
    moment; stacks with a far point, the origin, a tiny point, an off-hyperboloid point and zero padding."""
    _check_cases(run_interpreted("tests.kernels._triton_optim_cases"))


@pytest.mark.cuda
@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs CUDA")
def test_triton_optimizer_kernels_on_cuda_match_the_eager_math():
    from . import _triton_optim_cases

    _check_cases(_triton_optim_cases.run("cuda"))


def test_fused_optimizer_ops_pass_opcheck():
    x = torch.nn.functional.pad(torch.randn(4, 5), (1, 0))
    x[:, 0] = (x[:, 1:].pow(2).sum(-1) + 1.0).sqrt()
    args = (x, torch.randn(4, 6) * 0.1, torch.zeros(4, 6), torch.tensor(1.0), 0.1, 0.01, 0.9, 0.0, True, False, True,
            True, True, 7.97)
    torch.library.opcheck(F._rsgd_step_op, args, test_utils=("test_schema", "test_faketensor"))
    torch.library.opcheck(F._move_explog_op, (x.clone(), torch.zeros(4, 6), torch.tensor(1.0), torch.tensor(2.0), 7.97),
                          test_utils=("test_schema", "test_faketensor"))


def test_fused_step_supported_only_for_float32_contiguous_points():
    x = torch.randn(3, 5)
    with backend("fused"):
        assert F.fused_step_supported(x, torch.randn(3, 5), None)
        assert not F.fused_step_supported(x.double())
        assert not F.fused_step_supported(x, torch.randn(5, 3).t())
        assert not F.fused_step_supported(torch.randn(3, F.MAX_WIDTH + 1))
    with backend("eager"):
        assert not F.fused_step_supported(x)


def _train(model, opt_name: str, mode: str, steps: int = 3, **kw):
    torch.manual_seed(0)
    x, y = torch.randn(4, 3, 16, 16), torch.randint(0, 10, (4,))
    opt = create_optimizer(model, opt_name, **kw)
    for _ in range(steps):
        with backend("eager"):  # the same gradients for both paths: only the optimizer step differs
            torch.nn.functional.cross_entropy(model(x), y).backward()
        with backend(mode):
            opt.step()
        opt.zero_grad()
    return model, opt


@pytest.mark.parametrize("mode", ["aware", "naive", "naive_repaired"])
def test_rsgd_on_the_fused_path_equals_the_eager_path(mode):
    """Whole model, learned curvatures (the explog move runs in 'aware'), momentum + Nesterov + weight decay; on the
    CPU the fused ops run the eager math inside the custom op, so the two paths must agree to rounding."""
    torch.manual_seed(0)
    model = create_model("hecnn_resnet18", num_classes=10, img_size=16, width=8)
    kw = dict(lr=0.05, weight_decay=5e-4, momentum=0.9, nesterov=True, curvature_lr=0.05, curvature_mode=mode)
    a, opt_a = _train(copy.deepcopy(model), "rsgd", "eager", **kw)
    b, opt_b = _train(copy.deepcopy(model), "rsgd", "fused", **kw)
    ks = [m.k for m in a.manifolds().values()]
    assert any(abs(float(k.detach()) - 1.0) > 1e-6 for k in ks)  # the curvature moved, so the move ran
    for (name, pa), pb in zip(a.named_parameters(), b.parameters()):
        torch.testing.assert_close(pa, pb, rtol=1e-5, atol=1e-6, msg=name)
    _same_states(opt_a, opt_b)


def _same_states(opt_a, opt_b) -> None:
    for sa, sb in zip(opt_a.state.values(), opt_b.state.values()):
        for key in ("momentum_buffer", "exp_avg", "exp_avg_sq", "max_exp_avg_sq"):
            if key in sa:
                torch.testing.assert_close(sa[key], sb[key], rtol=1e-5, atol=1e-6, msg=key)


@pytest.mark.parametrize("kw", [dict(curvature_mode="aware"), dict(curvature_mode="naive", amsgrad=True)],
                         ids=["aware", "naive-amsgrad"])
def test_radamw_on_the_fused_path_equals_the_eager_path(kw):
    torch.manual_seed(0)
    model = create_model("hecnn_resnet18", num_classes=10, img_size=16, width=8)
    kw = dict(lr=0.01, weight_decay=0.05, curvature_lr=0.01, **kw)
    a, opt_a = _train(copy.deepcopy(model), "radamw", "eager", **kw)
    b, opt_b = _train(copy.deepcopy(model), "radamw", "fused", **kw)
    for (name, pa), pb in zip(a.named_parameters(), b.parameters()):
        torch.testing.assert_close(pa, pb, rtol=1e-5, atol=1e-6, msg=name)
    _same_states(opt_a, opt_b)


def test_radamw_manifold_step_is_one_fused_op_on_the_cuda_path():
    """Counted as CUDA dispatches it: the manifold parameters' step is the one ``lorentzcv::radamw_step_`` (no
    per-point math left as separate kernels)."""
    from lorentzcv.bench import count_launches

    torch.manual_seed(0)
    model = create_model("hecnn_resnet18", num_classes=10, img_size=16, width=8)
    x, y = torch.randn(2, 3, 16, 16), torch.randint(0, 10, (2,))
    opt = create_optimizer(model, "radamw", lr=1e-3, weight_decay=0.05, curvature_lr=0.0, foreach=True)
    torch.nn.functional.cross_entropy(model(x), y).backward()
    ops = count_launches(opt.step, by_op=True)
    assert ops.get("lorentzcv::radamw_step_") == 1, ops
    assert not any(name in ops for name in ("aten::sinh", "aten::cosh", "aten::acosh", "aten::where.self")), ops
