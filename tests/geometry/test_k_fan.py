"""``Lorentz.shared_gradients``/``use_k``: every use of ``k`` takes a view from a fan node, so the gradient of all uses
is one sum (two kernels) instead of one autograd ``add`` per use; values and gradients are those of plain ``k``."""

from __future__ import annotations

import copy

import pytest
import torch

from lorentzcv.geometry import Lorentz
from lorentzcv.geometry import lorentz as L
from lorentzcv.models import create_model


def _k_grad(uses: int, shared: bool) -> torch.Tensor:
    man = Lorentz(1.3, learnable=True)
    x = torch.linspace(0.1, 2.0, uses)
    if shared:
        with man.shared_gradients():
            loss = sum(man.use_k() * x[i] ** 2 for i in range(uses))
    else:
        loss = sum(man.use_k() * x[i] ** 2 for i in range(uses))
    loss.backward()
    return man.k.grad


@pytest.mark.parametrize("uses", [1, 3, 10])
def test_shared_gradients_give_the_gradient_of_plain_k(monkeypatch, uses):
    monkeypatch.setattr(L, "FAN_WIDTH", 4)  # 10 uses open three fans
    torch.testing.assert_close(_k_grad(uses, True), _k_grad(uses, False))


def test_use_k_outside_the_block_and_without_grad_is_the_parameter():
    man = Lorentz(1.0, learnable=True)
    assert man.use_k() is man.k
    with torch.no_grad(), man.shared_gradients():
        assert man.use_k() is man.k
    fixed = Lorentz(1.0)
    with fixed.shared_gradients():
        assert fixed.use_k() is fixed.k
    with man.shared_gradients():
        assert man.use_k() is not man.k and float(man.use_k().detach()) == 1.0
    assert man._fan is None


def test_model_k_gradients_reach_the_manifolds_through_one_sum():
    """A fully hyperbolic ResNet step: the same curvature gradients as without the fan, and its backward no longer
    has one ``add`` per Lorentz layer (counted as CUDA dispatches them)."""
    from lorentzcv.bench import count_launches

    torch.manual_seed(0)
    model = create_model("hecnn_resnet18", num_classes=3, img_size=8, width=4)
    x, y = torch.randn(2, 3, 8, 8), torch.randint(0, 3, (2,))
    plain = copy.deepcopy(model)
    torch.nn.functional.cross_entropy(model(x), y).backward()
    # the same model without the fan: the layers' uses of k go straight to the parameter
    feats = plain.forward_features(x)
    torch.nn.functional.cross_entropy(plain.forward_head(feats), y).backward()
    for (name, a), b in zip(model.manifolds().items(), plain.manifolds().values()):
        torch.testing.assert_close(a.k.grad, b.k.grad, msg=name)

    def backward():
        torch.nn.functional.cross_entropy(model(x), y).backward()

    ops = count_launches(backward, by_op=True)
    assert ops.get("aten::stack", 0) >= 1 and ops.get("aten::add.Tensor", 0) < 40, ops
