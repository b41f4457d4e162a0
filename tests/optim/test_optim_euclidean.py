"""On Euclidean parameters RiemannianAdamW == torch.optim.AdamW and RiemannianSGD == torch.optim.SGD."""

from __future__ import annotations

import os

import pytest
import torch

from lorentzcv.optim import RiemannianAdamW, RiemannianSGD

DEVICE = os.environ.get("LORENTZCV_TEST_DEVICE", "cpu")


def _params(seed: int = 0) -> list[torch.nn.Parameter]:
    g = torch.Generator().manual_seed(seed)
    shapes = [(4, 3), (3,), (2, 3, 2, 2), (), (5,)]
    return [torch.nn.Parameter(torch.randn(s, generator=g).to(DEVICE)) for s in shapes]


def _loss(params: list[torch.Tensor], step: int) -> torch.Tensor:
    # a non-quadratic loss whose gradients change from step to step
    total = 0.0
    for i, p in enumerate(params):
        total = total + (torch.sin(p * (1 + 0.1 * i) + 0.05 * step) * p).sum() + 0.1 * (p**4).sum()
    return total


def _run(opt_factory, steps: int = 50, skip_grad_of: int | None = None) -> list[torch.Tensor]:
    params = _params()
    opt = opt_factory(params)
    for t in range(steps):
        opt.zero_grad(set_to_none=True)
        _loss(params, t).backward()
        if skip_grad_of is not None and t % 3 == 0:
            params[skip_grad_of].grad = None  # exercised: params with grad None are skipped, as in torch
        opt.step()
    return [p.detach().clone() for p in params]


def _assert_same(a: list[torch.Tensor], b: list[torch.Tensor]) -> None:
    for x, y in zip(a, b):
        torch.testing.assert_close(x, y, atol=1e-6, rtol=0)


@pytest.mark.parametrize("amsgrad", [False, True])
@pytest.mark.parametrize("weight_decay", [0.0, 0.1])
@pytest.mark.parametrize("foreach", [None, True])
def test_radamw_equals_torch_adamw(amsgrad: bool, weight_decay: float, foreach: bool | None) -> None:
    kw = dict(lr=0.05, betas=(0.8, 0.95), eps=1e-6, weight_decay=weight_decay, amsgrad=amsgrad, foreach=foreach)
    ours = _run(lambda ps: RiemannianAdamW(ps, **kw), skip_grad_of=1)
    ref = _run(lambda ps: torch.optim.AdamW(ps, **kw), skip_grad_of=1)
    _assert_same(ours, ref)
    start = _params()
    assert not torch.allclose(ours[0], start[0])  # the test moves the parameters


def test_radamw_default_hyperparameters_equal_torch() -> None:
    _assert_same(_run(lambda ps: RiemannianAdamW(ps)), _run(lambda ps: torch.optim.AdamW(ps)))


@pytest.mark.parametrize(
    "kw",
    [
        dict(lr=0.01),
        dict(lr=0.01, momentum=0.9),
        dict(lr=0.01, momentum=0.9, dampening=0.3),
        dict(lr=0.01, momentum=0.9, nesterov=True),
        dict(lr=0.01, momentum=0.9, nesterov=True, weight_decay=5e-2),
        dict(lr=0.01, momentum=0.5, dampening=0.1, weight_decay=1e-1),
        dict(lr=0.01, weight_decay=1e-1, foreach=True),
        dict(lr=0.01, momentum=0.9, nesterov=True, weight_decay=5e-2, foreach=True),
    ],
)
def test_rsgd_equals_torch_sgd(kw: dict) -> None:
    ours = _run(lambda ps: RiemannianSGD(ps, **kw), skip_grad_of=2)
    ref = _run(lambda ps: torch.optim.SGD(ps, **kw), skip_grad_of=2)
    _assert_same(ours, ref)


def test_param_groups_with_own_hyperparameters_match_torch() -> None:
    def groups(ps):
        return [{"params": ps[:2], "lr": 0.02, "name": "a"}, {"params": ps[2:], "weight_decay": 0.3, "name": "b"}]

    _assert_same(_run(lambda ps: RiemannianAdamW(groups(ps), lr=0.05)),
                 _run(lambda ps: torch.optim.AdamW(groups(ps), lr=0.05)))
    _assert_same(_run(lambda ps: RiemannianSGD(groups(ps), lr=0.05, momentum=0.9)),
                 _run(lambda ps: torch.optim.SGD(groups(ps), lr=0.05, momentum=0.9)))


def test_invalid_hyperparameters() -> None:
    p = [torch.nn.Parameter(torch.zeros(2))]
    with pytest.raises(ValueError, match="Nesterov"):
        RiemannianSGD(p, lr=0.1, nesterov=True)
    with pytest.raises(ValueError, match="stabilize"):
        RiemannianSGD(p, lr=0.1, stabilize=0)
    with pytest.raises(ValueError, match="beta"):
        RiemannianAdamW(p, betas=(1.0, 0.9))
    with pytest.raises(ValueError, match="curvature_mode"):
        RiemannianAdamW(p, curvature_mode="eager")
    with pytest.raises(ValueError, match="curvature_move"):
        RiemannianSGD(p, curvature_move="rotate")
