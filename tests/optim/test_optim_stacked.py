"""Manifold parameters of one manifold are stepped as one stacked (zero-padded) tensor: same result as one by one."""

from __future__ import annotations

import pytest
import torch

from lorentzcv.geometry import Lorentz, ManifoldParameter
from lorentzcv.optim import RiemannianAdamW, RiemannianSGD
from lorentzcv.optim import curvature as curvature_mod


def _params(man: Lorentz) -> list[ManifoldParameter]:
    g = torch.Generator().manual_seed(0)
    shapes = [(5,), (5,), (3, 5), (5,), (7,), (2, 7), (4,)]  # three sizes (padded to 7), points and point matrices
    return [ManifoldParameter(man.expmap0(torch.cat([torch.zeros(*s[:-1], 1), torch.randn(*s[:-1], s[-1] - 1,
                                                                                        generator=g)], -1)),
                              manifold=man) for s in shapes]


def _run(opt_cls, kwargs, stacked: bool, monkeypatch, skip_first: int | None = None):
    torch.manual_seed(1)
    man = Lorentz(0.7, learnable=True)
    params = _params(man)
    targets = [man.expmap0(torch.randn_like(p) * 0.5).detach() for p in params]
    opt = opt_cls([{"params": params}, {"params": [man.k], "curvature": True, "lr": 1e-3}], **kwargs)
    if not stacked:
        monkeypatch.setattr(curvature_mod, "stack_buckets", lambda ps, key: [[p] for p in ps])
    for it in range(4):
        opt.zero_grad()
        loss = sum(man.dist(p, t).sum() for i, (p, t) in enumerate(zip(params, targets))
                   if not (it == 0 and i == skip_first))
        loss.backward()
        opt.step()
    monkeypatch.undo()
    states = [{k: (v.clone() if isinstance(v, torch.Tensor) else v) for k, v in opt.state[p].items()} for p in params]
    return [p.detach().clone() for p in params], states, man.k.detach().clone()


@pytest.mark.parametrize("opt_cls,kwargs", [
    (RiemannianSGD, dict(lr=0.05, momentum=0.9, nesterov=True, weight_decay=1e-3)),
    (RiemannianSGD, dict(lr=0.05)),
    (RiemannianAdamW, dict(lr=0.05, weight_decay=1e-2)),
    (RiemannianAdamW, dict(lr=0.05, amsgrad=True)),
], ids=["rsgd-nesterov", "rsgd-plain", "radamw", "radamw-amsgrad"])
@pytest.mark.parametrize("skip_first", [None, 1], ids=["all", "one-late"])
def test_stacked_step_equals_one_by_one(opt_cls, kwargs, skip_first, monkeypatch):
    a = _run(opt_cls, kwargs, True, monkeypatch, skip_first)
    b = _run(opt_cls, kwargs, False, monkeypatch, skip_first)
    for pa, pb in zip(a[0], b[0]):
        torch.testing.assert_close(pa, pb, rtol=1e-6, atol=1e-6)
    for sa, sb in zip(a[1], b[1]):
        assert set(sa) == set(sb)
        for key in sa:
            if isinstance(sa[key], torch.Tensor):
                assert sa[key].shape == sb[key].shape, key
                torch.testing.assert_close(sa[key], sb[key], rtol=1e-6, atol=1e-6)
            else:
                assert sa[key] == sb[key]
    torch.testing.assert_close(a[2], b[2])


def test_stacked_state_tensors_stay_separate(monkeypatch):
    """After a stacked first step every parameter owns its state tensors (no shared storage)."""
    man = Lorentz(1.0)
    params = _params(man)[:2]
    opt = RiemannianSGD(params, lr=0.1, momentum=0.9)
    sum(man.dist0(p).sum() for p in params).backward()
    opt.step()
    b0, b1 = (opt.state[p]["momentum_buffer"] for p in params)
    assert b0.untyped_storage().data_ptr() != b1.untyped_storage().data_ptr()
    assert b0.shape == params[0].shape


def test_points_of_all_sizes_are_stepped_and_moved_as_one_stack(monkeypatch):
    """The stacked path is taken once per manifold (sizes 4, 5 and 7 padded into one stack), for the step and for
    the curvature move."""
    from lorentzcv.optim import stacked

    calls = {"step": 0, "move": 0}
    real_call, real_rows = stacked.stacked_call, stacked.stack_rows

    def spy_call(*a, **kw):
        calls["step"] += 1
        return real_call(*a, **kw)

    def spy_rows(tensors):
        calls["move"] += 1
        return real_rows(tensors)

    monkeypatch.setattr(curvature_mod, "stacked_call", spy_call)
    monkeypatch.setattr(curvature_mod, "stack_rows", spy_rows)
    man = Lorentz(0.7, learnable=True)
    params = _params(man)
    opt = RiemannianAdamW([{"params": params}, {"params": [man.k], "curvature": True, "lr": 1e-2}], lr=1e-2)
    sum(man.dist0(p).sum() for p in params).backward()
    opt.step()
    assert calls["step"] == 1
    assert calls["move"] == 2  # the points and the moments
