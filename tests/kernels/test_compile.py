"""``torch.compile`` on every registered model and on the Lorentz layers: no graph break, same numbers as eager.

Dynamo with ``fullgraph=True`` raises on any graph break, so the first tests prove that whole models (forward and
backward) trace as one graph; the eager backend keeps them fast (no code generation). The last test runs the
default backend (inductor) on a stack of every Lorentz layer kind, forward, backward and an optimizer step.
"""

from __future__ import annotations

import warnings

import pytest
import torch
from torch import nn

from lorentzcv.geometry import Lorentz, RescaleConfig
from lorentzcv.models import create_embedding_model, create_model, list_models
from lorentzcv.nn import (
    LorentzBatchNorm2d,
    LorentzConv2d,
    LorentzGlobalAvgPool2d,
    LorentzMLR,
    LorentzReLU,
    LorentzResidual,
    ToLorentz,
)
from lorentzcv.optim import RiemannianSGD


@pytest.fixture(autouse=True)
def _fresh_dynamo():
    torch._dynamo.reset()
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # dynamo's notes on lru_cache-wrapped helpers
        yield
    torch._dynamo.reset()


def _fwd_bwd(model: nn.Module, x: torch.Tensor) -> tuple[torch.Tensor, list[torch.Tensor]]:
    model.zero_grad(set_to_none=True)
    out = model(x)
    out.float().square().mean().backward()
    return out.detach(), [p.grad.clone() for p in model.parameters() if p.grad is not None]


def _assert_same(a, b, rtol=1e-4, atol=1e-5):
    torch.testing.assert_close(a[0], b[0], rtol=rtol, atol=atol)
    assert len(a[1]) == len(b[1])
    for ga, gb in zip(a[1], b[1]):
        torch.testing.assert_close(ga, gb, rtol=1e-3, atol=1e-4)


@pytest.mark.parametrize("name", list_models())
def test_registered_model_compiles_as_one_graph(name):
    torch.manual_seed(0)
    model = create_model(name, num_classes=5, img_size=16, width=4).eval()  # eval: batch statistics fixed
    x = torch.randn(2, 3, 16, 16)
    eager = _fwd_bwd(model, x)
    compiled = _fwd_bwd(torch.compile(model, backend="eager", fullgraph=True), x)
    _assert_same(compiled, eager)


@pytest.mark.parametrize("head", ["lorentz", "poincare", "euclidean"])
def test_embedding_model_compiles_as_one_graph(head):
    torch.manual_seed(0)
    model = create_embedding_model("resnet18", head, 8).eval()
    x = torch.randn(2, 3, 32, 32)
    _assert_same(_fwd_bwd(torch.compile(model, backend="eager", fullgraph=True), x), _fwd_bwd(model, x))


class _Stack(nn.Module):
    """Every Lorentz layer kind of a HECNN+ ResNet: lift, conv, batch norm, ReLU, residual, pool, MLR."""

    def __init__(self, man: Lorentz) -> None:
        super().__init__()
        self.lift = ToLorentz(man, mode="add_time", dim=1)
        self.conv = LorentzConv2d(man, 3, 6, 3, padding=1)
        self.bn = LorentzBatchNorm2d(man, 6)
        self.act = LorentzReLU(man)
        self.conv2 = LorentzConv2d(man, 6, 6, 3, padding=1)
        self.res = LorentzResidual(man)
        self.pool = LorentzGlobalAvgPool2d(man)
        self.mlr = LorentzMLR(man, 6, 4)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        h = self.act(self.bn(self.conv(self.lift(x))))
        return self.mlr(self.pool(self.res(self.conv2(h), h)))


def test_inductor_compiles_every_layer_kind_with_default_arguments():
    torch.manual_seed(0)
    man = Lorentz(0.9, learnable=True, rescale=RescaleConfig(s=2.0))
    eager_model = _Stack(man)
    compiled_model = _Stack(Lorentz(0.9, learnable=True, rescale=RescaleConfig(s=2.0)))
    compiled_model.load_state_dict(eager_model.state_dict())
    x, y = torch.randn(4, 3, 6, 6), torch.tensor([0, 1, 2, 3])
    compiled = torch.compile(compiled_model)
    for model, step_model in ((eager_model, eager_model), (compiled, compiled_model)):
        opt = RiemannianSGD(step_model.parameters(), lr=0.05, momentum=0.9)
        for _ in range(2):  # forward, backward, optimizer step (curvature included), twice
            opt.zero_grad(set_to_none=True)
            nn.functional.cross_entropy(model(x), y).backward()
            opt.step()
    for (n, a), b in zip(eager_model.state_dict().items(), compiled_model.state_dict().values()):
        torch.testing.assert_close(b, a, rtol=1e-4, atol=1e-5, msg=n)


@pytest.mark.parametrize("name", ["hecnn_resnet18", "hybrid_resnet18"])
def test_jit_trace_records_the_plain_ops(name):
    """``torch.jit.trace`` (the old ONNX exporter's front end) gets the plain ops, not the in-place inference path
    it would record wrongly: the traced model equals the eager one on a new input."""
    torch.manual_seed(0)
    model = create_model(name, num_classes=5, img_size=16, width=4).eval()
    with torch.no_grad():
        traced = torch.jit.trace(model, torch.randn(2, 3, 16, 16), check_trace=False)
        x = torch.randn(3, 3, 16, 16)
        torch.testing.assert_close(traced(x), model(x), rtol=1e-4, atol=1e-5)
