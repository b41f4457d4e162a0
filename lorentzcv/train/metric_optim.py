"""HIER's optimizer for a metric run (docs/method.md §7.3): parameter groups by role (backbone, head, LCAs,
proxies, curvature) with their lr multipliers, the optimizer over them, and the schedule with HIER's warm-up."""

from __future__ import annotations

from typing import Any

import torch
from torch import nn

from .common import optimizer_kwargs, set_repair_on_use
from .config import ConfigError, MetricRunConfig
from .schedule import LRScheduler, schedule_factor

__all__ = ["ROLES", "metric_param_groups", "build_metric_optimizer", "MetricLRScheduler"]


#: Parameter roles of a metric run, in the order their groups appear in the optimizer.
ROLES = ("backbone", "head", "lcas", "proxies", "curvature")


def metric_param_groups(model: nn.Module, objective: nn.Module, lr: float, weight_decay: float, *,
                        fc_lr_scale: float = 1.0, lca_lr_scale: float = 50.0, proxy_lr_scale: float = 1e4,
                        curvature_lr: float = 1e-4, curvature_weight_decay: float = 0.0,
                        manifold_lr: float | None = None) -> list[dict]:
    """HIER's parameter groups (docs/method.md §7.3) built on :func:`lorentzcv.optim.param_groups` semantics.

    The type groups of ``param_groups(nn.ModuleList([model, objective]), ...)`` (a parameter shared by both,
    e.g. LHIER's ``k``, counted once) are split by role, decided by which module holds the parameter:

    ========== ======================================================= =====================
    role       parameters                                              lr
    ========== ======================================================= =====================
    backbone   ``model.backbone``                                      ``lr``
    head       ``model.head`` (its Linear: HIER's "last layer")        ``lr · fc_lr_scale``
    lcas       the hierarchical loss (``objective.hier_loss``)         ``lr · lca_lr_scale``
    proxies    Proxy-Anchor (``objective.pa_loss``)                    ``lr · proxy_lr_scale``
    curvature  every learnable ``k`` (``"curvature": True``)           ``curvature_lr``
    ========== ======================================================= =====================

    The manifold group (LHIER's LCAs) starts from ``manifold_lr or lr``. Every group keeps the keys of
    ``param_groups`` and gets ``"name"`` = ``"<role>.<type>"`` (``"curvature"`` alone), ``"type"``, ``"role"``
    and ``"lr_scale"``; weight decay per type (Euclidean ``ndim <= 1`` parameters get none; HIER decays all).
    """
    from ..optim import param_groups

    container = nn.ModuleList([model, objective])
    base = param_groups(container, lr, weight_decay, curvature_lr=curvature_lr,
                        curvature_weight_decay=curvature_weight_decay, manifold_lr=manifold_lr)
    role_of: dict[int, str] = {}
    owners = [("backbone", getattr(model, "backbone", model)), ("head", getattr(model, "head", None)),
              ("proxies", getattr(objective, "pa_loss", None)), ("lcas", getattr(objective, "hier_loss", None))]
    for role, mod in owners:
        if mod is not None:
            for p in mod.parameters():
                role_of.setdefault(id(p), role)  # a shared parameter belongs to its first owner
    scale = {"backbone": 1.0, "head": fc_lr_scale, "lcas": lca_lr_scale, "proxies": proxy_lr_scale}
    out: list[dict] = []
    for g in base:
        kind = g["name"]
        if g.get("curvature"):
            out.append({**g, "type": kind, "role": "curvature", "lr_scale": 1.0})
            continue
        by_role: dict[str, list[torch.Tensor]] = {}
        for p in g["params"]:
            by_role.setdefault(role_of.get(id(p), "backbone"), []).append(p)
        for role in ROLES:
            if role in by_role:
                out.append({**g, "params": by_role[role], "name": f"{role}.{kind}", "type": kind, "role": role,
                            "lr_scale": scale[role], "lr": g["lr"] * scale[role]})
    order = {r: i for i, r in enumerate(ROLES)}
    return sorted(out, key=lambda g: order[g["role"]])  # stable: type order kept within a role


def build_metric_optimizer(cfg: MetricRunConfig, model: nn.Module, objective: nn.Module) -> torch.optim.Optimizer:
    """The optimizer of a metric run over :func:`metric_param_groups` (``optim.name``: ``radamw`` for LHIER,
    ``adamw`` for HIER and Euclidean baselines; ``rsgd``/``sgd`` work too). The lr is first scaled by
    ``data.batch_size / metric.lr_reference_batch`` when that is set (HIER: 180)."""
    from ..optim import OPTIMIZERS

    o, mc = cfg.optim, cfg.metric
    lr = o.lr * (cfg.data.batch_size / mc.lr_reference_batch if mc.lr_reference_batch else 1.0)
    manifold_lr = None if o.manifold_lr is None else o.manifold_lr * (lr / o.lr if o.lr else 1.0)
    groups = metric_param_groups(model, objective, lr, o.weight_decay, fc_lr_scale=mc.fc_lr_scale,
                                 lca_lr_scale=mc.lca_lr_scale, proxy_lr_scale=mc.proxy_lr_scale,
                                 curvature_lr=o.curvature_lr, curvature_weight_decay=o.curvature_weight_decay,
                                 manifold_lr=manifold_lr)
    if o.name not in ("rsgd", "radamw") and any(g["type"] == "manifold" for g in groups):
        raise ConfigError(f"optim.name={o.name!r} is Euclidean but the model has ManifoldParameters (LHIER's "
                          "LCAs); use optim.name=radamw")
    set_repair_on_use(o, model, objective)
    return OPTIMIZERS[o.name](groups, lr=lr, weight_decay=o.weight_decay, **optimizer_kwargs(o))


class MetricLRScheduler(LRScheduler):
    """:class:`~lorentzcv.train.schedule.LRScheduler` plus HIER's warm-up: the ``backbone`` groups have lr 0
    during the first ``warmup_epochs`` epochs (the other groups follow the schedule)."""

    def __init__(self, optimizer: torch.optim.Optimizer, cfg, steps_per_epoch: int, total_epochs: int,
                 warmup_epochs: int = 0) -> None:
        self.warmup_steps = int(warmup_epochs) * max(int(steps_per_epoch), 1)
        super().__init__(optimizer, cfg, steps_per_epoch, total_epochs)

    def factor(self, group: dict[str, Any]) -> float:
        if group.get("role") == "backbone" and self.last_step < self.warmup_steps:
            return 0.0
        return schedule_factor(self.cfg, self.last_step, self.steps_per_epoch, self.total_epochs,
                               group.get("type", group.get("name")))
