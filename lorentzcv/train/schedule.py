"""Learning-rate schedules as per-iteration factors of each parameter group's initial lr.

One scheduler object covers the three schedules of :class:`~lorentzcv.train.config.ScheduleConfig`; it sets
``group["lr"] = group["initial_lr"] * factor(group, t)`` with ``t = step / steps_per_epoch`` (fractional
epochs), and its state is just the step counter, so a resumed run continues the exact lr sequence.

``multistep`` (``docs/method.md`` §8, [H]): ``factor = gamma ** #{m in milestones : m <= epoch}`` with
``epoch = floor(t)``, i.e. ``torch.optim.lr_scheduler.MultiStepLR`` stepped once per epoch. [H] skips the
first drop for the ``manifold`` group (lr 0.02; "at epoch 60 its lr is multiplied by 1/γ before
``scheduler.step()``"): with ``manifold_skip_first_drop`` that group's exponent is ``max(0, n - 1)``.

``cosine``: linear warm-up over ``warmup_epochs`` from ``warmup_start_factor`` to 1, then
``min + (1 - min) · (1 + cos(π p)) / 2`` over the remaining iterations (``p`` from 0 to 1).
``constant``: 1 after the optional warm-up.
"""

from __future__ import annotations

import bisect
import math
from typing import Any

import torch

from .config import ScheduleConfig

__all__ = ["LRScheduler", "schedule_factor"]


def schedule_factor(cfg: ScheduleConfig, step: int, steps_per_epoch: int, total_epochs: int,
                    group_name: str | None = None) -> float:
    """The lr factor at iteration ``step`` (0-based) for a group named ``group_name``."""
    spe = max(int(steps_per_epoch), 1)
    warm = int(round(cfg.warmup_epochs * spe))
    if cfg.name == "multistep":
        if warm and step < warm:
            return cfg.warmup_start_factor + (1 - cfg.warmup_start_factor) * (step + 1) / warm
        drops = bisect.bisect_right(list(cfg.milestones), step // spe)
        if group_name == "manifold" and cfg.manifold_skip_first_drop:
            drops = max(drops - 1, 0)
        return cfg.gamma**drops
    if warm and step < warm:
        return cfg.warmup_start_factor + (1 - cfg.warmup_start_factor) * (step + 1) / warm
    if cfg.name == "constant":
        return 1.0
    total = max(total_epochs * spe - warm, 1)
    p = min(max((step - warm) / total, 0.0), 1.0)
    return cfg.min_lr_factor + (1 - cfg.min_lr_factor) * 0.5 * (1 + math.cos(math.pi * p))


class LRScheduler:
    """Sets every group's lr from its ``initial_lr`` at each iteration (see the module docstring).

    Call :meth:`step` after every optimizer step (skipped steps included, so the schedule follows time).
    """

    def __init__(self, optimizer: torch.optim.Optimizer, cfg: ScheduleConfig, steps_per_epoch: int,
                 total_epochs: int) -> None:
        self.optimizer = optimizer
        self.cfg = cfg
        self.steps_per_epoch = max(int(steps_per_epoch), 1)
        self.total_epochs = int(total_epochs)
        self.last_step = 0
        for g in optimizer.param_groups:
            g.setdefault("initial_lr", g["lr"])
        self._apply()

    def factor(self, group: dict[str, Any]) -> float:
        return schedule_factor(self.cfg, self.last_step, self.steps_per_epoch, self.total_epochs,
                               group.get("name"))

    def _apply(self) -> None:
        for g in self.optimizer.param_groups:
            g["lr"] = g["initial_lr"] * self.factor(g)

    def step(self) -> None:
        self.last_step += 1
        self._apply()

    def get_last_lr(self) -> list[float]:
        return [g["lr"] for g in self.optimizer.param_groups]

    def state_dict(self) -> dict[str, Any]:
        return {"last_step": self.last_step, "steps_per_epoch": self.steps_per_epoch,
                "total_epochs": self.total_epochs}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        self.last_step = int(state["last_step"])
        self._apply()
