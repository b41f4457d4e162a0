"""LR schedules: multistep = torch's MultiStepLR (with §8's skipped first drop for the manifold group), cosine."""

from __future__ import annotations

import math

import pytest
import torch

from lorentzcv.train import LRScheduler, ScheduleConfig, schedule_factor


def _optimizer():
    groups = [
        {"name": "decay", "params": [torch.nn.Parameter(torch.zeros(2))], "lr": 0.1},
        {"name": "manifold", "params": [torch.nn.Parameter(torch.zeros(2))], "lr": 0.02},
        {"name": "curvature", "params": [torch.nn.Parameter(torch.ones(()))], "lr": 1e-4},
    ]
    return torch.optim.SGD(groups, lr=0.1)


def test_multistep_matches_torch_and_skips_the_manifold_groups_first_drop():
    cfg = ScheduleConfig(name="multistep", milestones=[3, 5, 8], gamma=0.2, warmup_epochs=0.0)
    spe, epochs = 4, 10
    ours = _optimizer()
    sched = LRScheduler(ours, cfg, spe, epochs)
    ref = torch.optim.SGD([torch.nn.Parameter(torch.zeros(1))], lr=0.1)
    ref_sched = torch.optim.lr_scheduler.MultiStepLR(ref, milestones=[3, 5, 8], gamma=0.2)
    for epoch in range(epochs):
        for _ in range(spe):
            lr_decay, lr_man, lr_curv = (g["lr"] for g in ours.param_groups)
            assert lr_decay == pytest.approx(ref.param_groups[0]["lr"], rel=1e-12)
            assert lr_curv == pytest.approx(1e-4 * ref.param_groups[0]["lr"] / 0.1, rel=1e-12)
            drops = sum(epoch >= m for m in (3, 5, 8))
            assert lr_man == pytest.approx(0.02 * 0.2 ** max(drops - 1, 0), rel=1e-12)  # §8: first drop skipped
            sched.step()
        ref.step()  # no gradients: a no-op that keeps torch's order check quiet
        ref_sched.step()


def test_multistep_without_skip():
    cfg = ScheduleConfig(name="multistep", milestones=[1], gamma=0.5, manifold_skip_first_drop=False,
                         warmup_epochs=0.0)
    assert schedule_factor(cfg, 10, 10, 3, "manifold") == 0.5
    assert schedule_factor(cfg, 9, 10, 3, "manifold") == 1.0


def test_cosine_with_linear_warmup():
    cfg = ScheduleConfig(name="cosine", warmup_epochs=1.0, warmup_start_factor=0.1, min_lr_factor=0.0)
    spe, epochs = 10, 5
    f = [schedule_factor(cfg, s, spe, epochs) for s in range(spe * epochs + 1)]
    assert f[0] == pytest.approx(0.1 + 0.9 * 1 / 10)
    assert f[9] == pytest.approx(1.0)  # warm-up ends at the end of epoch 1
    assert all(a < b for a, b in zip(f[:10], f[1:10]))  # increasing during warm-up
    assert all(a >= b for a, b in zip(f[10:], f[11:]))  # then non-increasing
    assert f[10] == pytest.approx(1.0)
    assert f[30] == pytest.approx(0.5 * (1 + math.cos(math.pi * 20 / 40)))
    assert f[-1] == pytest.approx(0.0, abs=1e-12)


def test_constant_and_min_lr():
    assert schedule_factor(ScheduleConfig(name="constant", warmup_epochs=0.0), 123, 10, 5) == 1.0
    cfg = ScheduleConfig(name="cosine", warmup_epochs=0.0, min_lr_factor=0.1)
    assert schedule_factor(cfg, 50, 10, 5) == pytest.approx(0.1)


def test_state_dict_round_trip():
    cfg = ScheduleConfig(name="cosine", warmup_epochs=0.5)
    a = LRScheduler(_optimizer(), cfg, 7, 3)
    for _ in range(11):
        a.step()
    opt = _optimizer()
    b = LRScheduler(opt, cfg, 7, 3)
    b.load_state_dict(a.state_dict())
    assert b.get_last_lr() == a.get_last_lr()
    a.step()
    b.step()
    assert b.get_last_lr() == a.get_last_lr()
