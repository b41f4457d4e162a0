r"""The metric-learning task (HIER, LHIER, Proxy-Anchor) on the training engine (docs/method.md §7).

>>> from lorentzcv.train import load_config, train
>>> cfg = load_config("configs/metric/table1/cub_r50_512_lhier.yaml", ["data.root=~/data"])
>>> summary = train(cfg)                   # or: lorentzcv train CONFIG --set data.root=~/data

Offline: ``lorentzcv train configs/metric/demo/digits_dml_lhier.yaml`` (scikit-learn's digits, ~15 s on a CPU),
``configs/metric/demo/fashion_mnist_dml_lhier.yaml`` (Fashion-MNIST, ~1 min) or ``lorentzcv train --set task=metric``
(:class:`~lorentzcv.train.schema.MetricRunConfig` defaults: digits).
Evaluate a run with ``lorentzcv eval RUN_DIR`` (Recall@K and MAP@R on the test protocol).

A YAML with ``task: metric`` at the top is a :class:`~lorentzcv.train.schema.MetricRunConfig`, and
:class:`MetricTrainer` runs it with the training loop's machinery (:class:`~lorentzcv.train.engine.Engine`:
run directory, ``config.yaml``, ``metrics.jsonl``/``.csv``, TensorBoard, atomic ``weights_only`` checkpoints,
exact resume, the non-finite guard (buffers restored on a skipped step, the run stopped when it diverges), AMP,
DDP under ``torchrun`` with its timeout, the summary table). What differs, following
HIER's protocol (docs/method.md §7.3):

- **Data.** A class-disjoint metric dataset; batches from :class:`~lorentzcv.data.ClassBalancedBatchSampler`
  (``metric.images_per_class`` images of each drawn class; under DDP every rank draws from the same global
  batch, ``set_epoch`` each epoch).
- **Model.** :func:`~lorentzcv.models.embedding.create_embedding_model`: backbone + Euclidean / Poincaré /
  Lorentz head. **Objective** :class:`~lorentzcv.metric.HierarchicalObjective`: Proxy-Anchor plus
  :class:`~lorentzcv.metric.HIERLoss` (Poincaré head) or :class:`~lorentzcv.metric.LHIERLoss` (Lorentz head,
  sharing the head's manifold, so one learnable ``k``: init 10 = HIER's ``c = 0.1``).
- **Parameter groups** (:func:`metric_param_groups`): :func:`lorentzcv.optim.param_groups` over one container
  of model and objective (by type: ``decay``/``no_decay``/``manifold``/``curvature``; the shared ``k`` once),
  each split by the module that owns the parameter (identity, never names) into roles with lr multipliers:
  ``backbone`` ×1, ``head`` (the head's Linear, HIER's "last layer") ×``fc_lr_scale``, ``lcas`` ×50,
  ``proxies`` (Proxy-Anchor) ×1e4; the ``curvature`` group keeps ``optim.curvature_lr``. HIER's lr is for a
  global batch of 180 and scaled by ``batch/180`` (``metric.lr_reference_batch``).
- **Schedule.** ``schedule`` as for classification (HIER's step decay = ``multistep`` with milestones every
  N epochs; ViTs ``constant``), and ``metric.warmup_epochs`` with the backbone's lr at 0 (HIER's warm-up).
- **Step.** Under DDP the embeddings of all ranks are gathered with a gradient-carrying all-gather
  (:func:`gather_with_grad`) and every rank evaluates the loss on the whole global batch (mining and the
  Gumbel noise use a generator seeded by ``(seed, epoch)``, the same on every rank), so the averaged DDP
  gradient is the exact gradient of the global-batch loss. Gradients are clamped element-wise to
  ``±train.grad_clip_value`` (HIER: 10). ``train.amp="fp16"`` is float16 autocast with a GradScaler (HIER's
  GPU setting; it also runs, slowly, on a CPU), ``bf16`` bfloat16 autocast; the hyperbolic parts are float32
  islands.
- **Evaluation** every ``train.eval_test_every`` epochs and after the last (docs/method.md §7.4): Recall@K
  (``metric.recall_ks`` or :data:`~lorentzcv.metric.DATASET_KS`) and MAP@R with the head's distance,
  leave-one-out on ``test`` (CUB, Cars, SOP) or ``query``→``gallery`` (In-Shop); logged as ``R@1``, …,
  ``MAP@R``, with the curvature ``K/<manifold>`` and the lr of each role.
- **Model selection** only on a class-disjoint validation split: ``data.val_fraction > 0`` holds whole
  training classes out, evaluated leave-one-out on the same epochs (``val_R@1``, …, ``val_MAP@R``); the epoch
  with the best validation Recall@1 is saved as ``best.pt`` and its test figures are reported next to the
  last epoch's (``summary["best"]``).
- **Reporting.** By default the last epoch's test figures (``summary["recall"]``), plus the validation-selected
  epoch's when there is a validation split. ``metric.report="best_test"`` adds HIER's protocol, labelled as such
  (``summary["best_test"]``, "HIER protocol: best test epoch"): the evaluated epoch with the best test Recall@1
  and its Recall@K — selected on test, so comparable with HIER's README numbers but not a held-out estimate.
"""

from __future__ import annotations

import contextlib
import math
import os
from collections.abc import Sequence
from dataclasses import replace
from typing import Any

import torch
import torch.distributed as dist
from torch import nn
from torch.utils.data import DataLoader

from .checkpoint import CheckpointError, find_checkpoint, load_checkpoint
from .common import curvatures, derive_seed, resolve_amp, seed_everything, subset
from .config import ConfigError, MetricRunConfig, apply_overrides, config_from_dict
from .distributed import resolve_device
from .engine import Engine, Task
from .metric_optim import ROLES, MetricLRScheduler, build_metric_optimizer, metric_param_groups
from .recorder import format_epoch_tail, format_table
from .retrieval import compute_embeddings, evaluate_retrieval

__all__ = [
    "MetricTrainer",
    "MetricLearner",
    "MetricLRScheduler",
    "build_metric_datasets",
    "build_metric_model",
    "build_objective",
    "metric_param_groups",
    "build_metric_optimizer",
    "gather_with_grad",
    "compute_embeddings",
    "evaluate_retrieval",
    "evaluate_metric_checkpoint",
    "evaluate_metric_state",
    "inference_model",
    "retrieval_splits",
    "recall_ks",
    "train_num_classes",
    "best_test_epoch",
    "ROLES",
    "TASK",
]


# ---------------------------------------------------------------------------------------------------------- data


def retrieval_splits(info) -> tuple[str, ...]:
    """``("query", "gallery")`` for datasets with those splits (In-Shop), else ``("test",)`` (leave-one-out)."""
    return ("query", "gallery") if {"query", "gallery"} <= set(info.splits) else ("test",)


def recall_ks(cfg: MetricRunConfig) -> tuple[int, ...]:
    """The Recall@K list: ``metric.recall_ks``, else ``DATASET_KS[data.name]``, else ``(1, 2, 4, 8)``."""
    from ..metric import DATASET_KS

    if cfg.metric.recall_ks is not None:
        return tuple(int(k) for k in cfg.metric.recall_ks)
    return tuple(DATASET_KS.get(cfg.data.name, (1, 2, 4, 8)))


def train_num_classes(info) -> int | None:
    """Number of training classes from a metric dataset's :class:`~lorentzcv.data.DatasetInfo` (no data read)."""
    n = info.num_classes
    if isinstance(n, int):
        return n
    if n is not None and "train" in n:
        return int(n["train"])
    return None


def _transform_kwargs(cfg: MetricRunConfig, info) -> dict[str, Any]:
    if info.transform != "metric":  # the demo datasets' own presets take no options
        return {}
    return {"backbone_name": cfg.model.backbone, "img_size": cfg.data.img_size or info.img_size}


def build_metric_datasets(cfg: MetricRunConfig, splits: Sequence[str] = ("train", "val", "eval"),
                          augment_train: bool = True) -> dict[str, Any]:
    """The datasets of a metric run.

    Args:
        cfg: the run config.
        splits: any of ``"train"``, ``"val"`` (the classes ``data.val_fraction`` holds out of train; ``None``
            when it is 0) and ``"eval"`` (the retrieval splits, :func:`retrieval_splits`).
        augment_train: ``False`` gives the training split the evaluation transform.

    Returns:
        ``{"info", "train", "val", "eval": {split: dataset}, "num_classes" (training classes), "in_chans",
        "img_size"}``.
    """
    from ..data import create_dataset, create_transform, get_dataset_info, list_datasets

    d = cfg.data
    info = get_dataset_info(d.name)
    if info.task != "metric":
        raise ConfigError(
            f"data.name={d.name!r} is a classification dataset; a metric run (task: metric) needs a "
            f"class-disjoint metric dataset: {', '.join(list_datasets(task='metric'))}"
        )
    tfk = _transform_kwargs(cfg, info)
    common = dict(root=d.root, download=d.download, seed=cfg.train.seed, transform_kwargs=tfk)
    out: dict[str, Any] = {"info": info, "train": None, "val": None, "eval": {}}
    if "train" in splits:
        tf = "default" if augment_train else create_transform(d.name, "test", **tfk)
        out["train"] = subset(create_dataset(d.name, split="train", val_fraction=d.val_fraction,
                                              **{**common, "transform": tf}), d.train_subset, cfg.train.seed)
    if "val" in splits and d.val_fraction > 0:
        out["val"] = subset(create_dataset(d.name, split="val", val_fraction=d.val_fraction, **common),
                             d.eval_subset, cfg.train.seed)
    if "eval" in splits:
        for s in retrieval_splits(info):
            out["eval"][s] = subset(create_dataset(d.name, split=s, **common), d.eval_subset, cfg.train.seed)
    n = None
    if out["train"] is not None:
        base = getattr(out["train"], "dataset", out["train"])
        n = getattr(base, "num_classes", None)
    out.update(num_classes=int(n) if n is not None else train_num_classes(info), in_chans=info.in_chans,
               img_size=d.img_size or info.img_size)
    return out



# --------------------------------------------------------------------------------------------------- model, loss


def build_metric_model(cfg: MetricRunConfig, in_chans: int = 3, img_size: int | None = None,
                       pretrained: bool | None = None) -> nn.Module:
    """:func:`~lorentzcv.models.embedding.create_embedding_model` from ``cfg.model``.

    Args:
        cfg: the run config.
        in_chans: image channels (from the dataset).
        img_size: input size, passed to ViT backbones (position embeddings).
        pretrained: override ``model.pretrained`` (``False`` when the weights come from a checkpoint).
    """
    from ..geometry import Lorentz, RescaleConfig
    from ..models.embedding import BACKBONE_ALIASES, create_embedding_model

    m = cfg.model
    head_kwargs: dict[str, Any] = {"layer_norm": m.layer_norm}
    if m.head == "poincare":
        head_kwargs.update(c=m.c, clip_r=m.clip_r)
    elif m.head == "lorentz":
        man = Lorentz(k=m.k_init, learnable=m.learn_k, rescale=RescaleConfig(s=m.rescale_s))
        head_kwargs.update(manifold=man, lift=m.lift, scale=m.lift_scale, clip_r=m.clip_r, neck=m.neck)
    bb_kwargs = dict(m.backbone_kwargs)
    name = BACKBONE_ALIASES.get(m.backbone, m.backbone)
    if name != "bninception":
        bb_kwargs.setdefault("in_chans", in_chans)
    elif in_chans != 3:
        raise ConfigError(f"bninception takes 3 input channels, the dataset has {in_chans}")
    if img_size is not None and any(t in name for t in ("vit", "deit")):
        bb_kwargs.setdefault("img_size", img_size)
    use_pretrained = m.pretrained if pretrained is None else pretrained
    return create_embedding_model(
        m.backbone, m.head, m.embedding_dim, pretrained=use_pretrained,
        pretrained_path=m.pretrained_path if use_pretrained else None, head_kwargs=head_kwargs, pool=m.pool,
        bn_freeze=m.bn_freeze, freeze_patch_embed=m.freeze_patch_embed, **bb_kwargs,
    )


def build_objective(cfg: MetricRunConfig, model: nn.Module, num_classes: int) -> nn.Module:
    """:class:`~lorentzcv.metric.HierarchicalObjective` for ``cfg.loss`` and the model's head
    (docs/method.md §7.1–7.2).

    ``loss.name="proxy_anchor"``: Proxy-Anchor on the embeddings (Euclidean or Poincaré head).
    ``loss.name="hier"``: Proxy-Anchor + HIER (Poincaré head, same ``c``/``clip_r``) or LHIER (Lorentz head, on
    the head's own manifold object, so ``k`` is shared).
    """
    from ..metric import HierarchicalObjective, HIERLoss, LHIERLoss, ProxyAnchorLoss

    lo, m = cfg.loss, cfg.model
    if num_classes is None or num_classes < 2:
        raise ConfigError(f"metric training needs at least two training classes, got {num_classes}")
    pa = ProxyAnchorLoss(num_classes, m.embedding_dim, margin=lo.pa_margin, alpha=lo.pa_alpha)
    hier: nn.Module | None = None
    common = dict(tau=lo.tau, margin=lo.margin, topk=lo.topk, num_triplets=lo.num_triplets)
    if lo.name == "hier":
        if m.head == "poincare":
            hier = HIERLoss(lo.num_proxies, m.embedding_dim, c=m.c, clip_r=m.clip_r, **common)
        elif m.head == "lorentz":
            hier = LHIERLoss(model.manifold, lo.num_proxies, m.embedding_dim, lca_init_radius=lo.lca_init_radius,
                             rescale_lcas=lo.rescale_lcas, **common)
        else:
            raise ConfigError("loss.name=hier needs model.head=poincare (HIER) or lorentz (LHIER)")
    elif m.head == "lorentz":
        raise ConfigError("loss.name=proxy_anchor with a lorentz head is not supported; use loss.name=hier "
                          "(LHIER) or model.head=euclidean/poincare")
    return HierarchicalObjective(pa, hier, hier_weight=lo.hier_weight, pa_weight=lo.pa_weight)



# -------------------------------------------------------------------------------------------------- step, gather


class _GatherWithGrad(torch.autograd.Function):
    """All-gather of equal-shape tensors; backward sums the gradients of all ranks and keeps the local slice."""

    @staticmethod
    def forward(ctx, x: torch.Tensor) -> torch.Tensor:
        world, rank = dist.get_world_size(), dist.get_rank()
        ctx.rank, ctx.n = rank, x.shape[0]
        parts = [torch.empty_like(x) for _ in range(world)]
        dist.all_gather(parts, x.contiguous())
        return torch.cat(parts, dim=0)

    @staticmethod
    def backward(ctx, grad: torch.Tensor) -> torch.Tensor:
        grad = grad.contiguous().clone()
        dist.all_reduce(grad, op=dist.ReduceOp.SUM)
        return grad[ctx.rank * ctx.n:(ctx.rank + 1) * ctx.n]


def gather_with_grad(x: torch.Tensor) -> torch.Tensor:
    r"""Concatenate ``x`` ``(n, …)`` of every rank (rank order) with a gradient to the local part.

    The backward all-reduces (sums) the incoming gradient, so with every rank evaluating the same loss
    :math:`L` of the gathered batch, rank ``r`` receives :math:`W\,\partial L/\partial x_r` and DDP's average
    gives :math:`\partial L/\partial\theta` exactly (the "concat trick" that swaps the local slice into a
    gradient-free gather gives :math:`\partial L/\partial\theta / W` instead). Works with every backend (one
    all-gather forward, one all-reduce backward). Identity when not distributed.
    """
    if not (dist.is_available() and dist.is_initialized()) or dist.get_world_size() == 1:
        return x
    return _GatherWithGrad.apply(x)


def _gather_no_grad(x: torch.Tensor) -> torch.Tensor:
    parts = [torch.empty_like(x) for _ in range(dist.get_world_size())]
    dist.all_gather(parts, x.contiguous())
    return torch.cat(parts, dim=0)


class MetricLearner(nn.Module):
    """``objective(gather(model(images)), gather(labels))``: the module a metric step calls (and DDP wraps).

    Holding the model and the objective in one module lets DDP average the gradients of the objective's
    parameters (Proxy-Anchor proxies, LCAs) along with the model's.

    Args:
        model: the embedding model.
        objective: e.g. :class:`~lorentzcv.metric.HierarchicalObjective`.
        gather: under DDP, compute the loss on the embeddings of all ranks (:func:`gather_with_grad`).
    """

    def __init__(self, model: nn.Module, objective: nn.Module, gather: bool = True) -> None:
        super().__init__()
        self.model = model
        self.objective = objective
        self.gather = gather

    def forward(self, images: torch.Tensor, labels: torch.Tensor) -> torch.Tensor:
        z = self.model(images)
        if self.gather and dist.is_available() and dist.is_initialized() and dist.get_world_size() > 1:
            z = gather_with_grad(z)
            labels = _gather_no_grad(labels)
        return self.objective(z, labels)



# ------------------------------------------------------------------------------------------------------- trainer


def _fmt_row(row: dict[str, Any], epochs: int) -> str:
    parts = [f"epoch {row['epoch']:>{len(str(epochs))}}/{epochs}", f"loss {row['train_loss']:.4f}"]
    if row.get("loss_hier") is not None:
        parts.append(f"(pa {row['loss_pa']:.4f} hier {row['loss_hier']:.4f})")
    rec = [(k, v) for k, v in row.items() if k.startswith("R@")]
    if rec:
        parts.append(" ".join(f"{k} {100 * v:.2f}%" for k, v in rec))
    if row.get("MAP@R") is not None:
        parts.append(f"MAP@R {100 * row['MAP@R']:.2f}%")
    if row.get("val_R@1") is not None:
        parts.append(f"val R@1 {100 * row['val_R@1']:.2f}%")
    return format_epoch_tail(parts, row, curvature_digits=4)


class MetricTrainer(Engine):
    """Runs one metric-learning run (module docstring): :class:`~lorentzcv.train.engine.Engine` with a metric
    data pipeline, model + objective, HIER's optimizer groups and a retrieval evaluation.

    Args:
        cfg: a :class:`~lorentzcv.train.schema.MetricRunConfig`.
        resume: a run directory (or its ``last.pt``) to continue.
        stream: console stream for log lines.
    """

    task_name = "metric"
    stat_size = 5  # loss, pa, hier (sums over steps), images, steps

    def __init__(self, cfg: MetricRunConfig, resume: str | os.PathLike[str] | None = None,
                 stream: Any = None) -> None:
        if not isinstance(cfg, MetricRunConfig):
            raise ConfigError("MetricTrainer needs a metric config (task: metric); use Trainer for classification")
        super().__init__(cfg, resume=resume, stream=stream)

    # ----------------------------------------------------------------------------------- set-up
    def _setup(self) -> None:
        cfg, dist_info = self.cfg, self.dist
        t, mc = cfg.train, cfg.metric
        self._init_runtime()

        # Data: class-balanced batches (the same global draw on every rank), sharded evaluation.
        seed_everything(t.seed)
        data = build_metric_datasets(cfg)
        self.data = data
        world, rank = dist_info.world_size, dist_info.rank
        if cfg.data.batch_size % (world * mc.images_per_class):
            raise ConfigError(
                f"data.batch_size={cfg.data.batch_size} is the global batch and must be divisible by "
                f"{world} processes x metric.images_per_class={mc.images_per_class}; change it with "
                "--set data.batch_size=..."
            )
        from ..data import ClassBalancedBatchSampler

        bs = cfg.data.batch_size // world
        pin = self.device.type == "cuda"
        self.train_sampler = ClassBalancedBatchSampler(data["train"].targets, bs, mc.images_per_class,
                                                       num_replicas=world, rank=rank, seed=t.seed)
        self.loader_gen = torch.Generator()
        self.train_loader = DataLoader(data["train"], batch_sampler=self.train_sampler,
                                       num_workers=cfg.data.num_workers, pin_memory=pin, generator=self.loader_gen)

        self.eval_loaders = {s: self._eval_loader(ds) for s, ds in data["eval"].items()}
        self.val_loaders = {"val": self._eval_loader(data["val"])} if data["val"] is not None else {}
        self.val_loader = self.test_loader = None
        self._set_steps_per_epoch()
        self.ks = recall_ks(cfg)

        # Model, objective (shared manifold), optimizer over one container (same seed on every rank).
        seed_everything(t.seed)
        model = build_metric_model(cfg, data["in_chans"], data["img_size"]).to(self.device)
        if t.channels_last:
            model = model.to(memory_format=torch.channels_last)
        objective = build_objective(cfg, model, data["num_classes"]).to(self.device)
        self.model, self.objective = model, objective
        self.learner = MetricLearner(model, objective, gather=mc.gather_embeddings)
        self.loss_gen = torch.Generator(device=self.device)
        self.optimizer = build_metric_optimizer(cfg, model, objective)
        self.scheduler = MetricLRScheduler(self.optimizer, cfg.schedule, self.steps_per_epoch, t.epochs,
                                           warmup_epochs=mc.warmup_epochs)
        self.params = [p for g in self.optimizer.param_groups for p in g["params"]]

        self._open_run()
        self._wrap_ddp(self.learner)

    def _release(self) -> None:
        super()._release()
        if self.dist.distributed:
            self.learner = self.objective = None
            self.eval_loaders = self.val_loaders = {}

    def _load_state(self, state: dict[str, Any]) -> list[str]:
        notes = super()._load_state(state)
        try:
            self.objective.load_state_dict(state["objective"])
        except (KeyError, RuntimeError) as exc:
            raise CheckpointError(
                f"checkpoint in '{self.run_dir}' has no matching objective state ({str(exc).strip()[:160]}); "
                "resume with the same code and config"
            ) from None
        return notes

    def _checkpoint_meta(self) -> dict[str, Any]:
        return {"task": "metric", **super()._checkpoint_meta()}

    def _checkpoint_state(self, epoch: int) -> dict[str, Any]:
        """The engine's checkpoint plus the objective (Proxy-Anchor proxies, LCAs)."""
        state = super()._checkpoint_state(epoch)
        state["objective"] = self.objective.state_dict()
        return state

    # ------------------------------------------------------------------------------------- loop
    def _describe(self) -> str:
        cfg, m = self.cfg, self.cfg.model
        n_params = sum(p.numel() for p in self.learner.parameters())
        evals = ", ".join(f"{len(ds)} {s}" for s, ds in self.data["eval"].items())
        if self.data["val"] is not None:
            evals += f", {len(self.data['val'])} val ({len(set(self.data['val'].targets))} held-out classes)"
        return (f"metric: {m.backbone} + {m.head} head (D={m.embedding_dim}), loss {cfg.loss.name} "
                f"({n_params / 1e6:.3g}M params) | data {cfg.data.name}: {len(self.data['train'])} train "
                f"({self.data['num_classes']} classes), {evals} | {self._run_settings()}")

    def _evaluate_epoch(self, epoch: int, row: dict[str, Any]) -> bool:
        """Recall@K / MAP@R on the retrieval splits (and on the validation classes) every
        ``train.eval_test_every`` epochs and after the last; the best validation Recall@1 is ``best.pt``."""
        if self._test_due(epoch):
            r = self._evaluate(self.eval_loaders)
            self._check_outputs(epoch, "test", r["nonfinite"])
            row.update({k: v for k, v in r.items() if k not in ("n", "nonfinite")})
            if self.val_loaders:
                r = self._evaluate(self.val_loaders)
                self._check_outputs(epoch, "validation", r["nonfinite"])
                row.update({f"val_{k}": v for k, v in r.items() if k not in ("n", "nonfinite")})
        improved = "val_R@1" in row and (self.best is None or row["val_R@1"] > self.best["val_R@1"])
        if improved:
            self.best = {"val_R@1": row["val_R@1"], "epoch": epoch + 1}
        return improved

    def _format_row(self, row: dict[str, Any], epochs: int) -> str:
        return _fmt_row(row, epochs)

    def _lrs(self) -> dict[str, float]:
        groups = self.optimizer.param_groups
        out = {"lr": float(groups[0]["lr"])}
        for g in groups:
            key = f"lr/{g.get('role', g.get('name'))}"
            out.setdefault(key, float(g["lr"]))
        return out

    def _evaluate(self, loaders: dict[str, DataLoader]) -> dict[str, float]:
        mc = self.cfg.metric
        return evaluate_retrieval(self.model, loaders, self.device, self.ks, self.amp_dtype, self.dist,
                                  map_r=mc.map_at_r, chunk_size=mc.eval_chunk_size)

    def _begin_epoch(self, epoch: int) -> None:
        hier = getattr(self.objective, "hier_loss", None)
        if hier is not None:  # mining and Gumbel noise: the same stream on every rank, a function of the epoch
            self.loss_gen.manual_seed(derive_seed(self.cfg.train.seed, epoch, 2))
            hier.generator = self.loss_gen

    def _step_loss(self, module: nn.Module, x: torch.Tensor, y: torch.Tensor,
                   autocast: contextlib.AbstractContextManager) -> tuple[torch.Tensor, None]:
        with autocast:
            loss = module(x, y)
        return loss.float(), None

    def _accumulate(self, stats: torch.Tensor, loss: torch.Tensor, out: None, y: torch.Tensor) -> None:
        last = self.objective.last
        stats[0] += loss.detach().double()
        stats[1] += last["pa"].double()
        stats[2] += last["hier"].double() if "hier" in last else 0.0
        stats[3] += y.numel()
        stats[4] += 1

    def _postfix(self, stats: torch.Tensor) -> dict[str, str]:
        return {"loss": f"{stats[0].item() / max(stats[4].item(), 1):.3f}"}

    def _epoch_metrics(self, stats: torch.Tensor) -> tuple[dict[str, float], float]:
        # Every rank computed the same loss (gathered batch) unless gather_embeddings=false: average over ranks.
        loss_sum, pa_sum, hier_sum, n, k = stats.tolist()
        out = {"train_loss": loss_sum / k if k else math.nan, "loss_pa": pa_sum / k if k else math.nan}
        if getattr(self.objective, "hier_loss", None) is not None:
            out["loss_hier"] = hier_sum / k if k else math.nan
        return out, n

    # ----------------------------------------------------------------------------------- finish
    def _finish(self, train_time: float) -> dict[str, Any]:
        cfg = self.cfg
        last = self.history[-1]
        summary: dict[str, Any] = {
            "run_dir": str(self.run_dir),
            "task": "metric",
            "model": f"{cfg.model.backbone}+{cfg.model.head}",
            "loss": cfg.loss.name,
            "dataset": cfg.data.name,
            "epochs": cfg.train.epochs,
            "recall": {k: last.get(f"R@{k}") for k in self.ks},
            "map_at_r": last.get("MAP@R"),
            "train_loss": last.get("train_loss"),
            **self._run_facts(train_time),
        }
        hierarchy = _hierarchy(last)
        if hierarchy:  # the dataset has super_targets (evaluate_retrieval's hierarchy metrics)
            summary["hierarchy"] = hierarchy
        if self.val_loaders:
            summary["val_recall"] = {k: last.get(f"val_R@{k}") for k in self.ks}
            summary["val_map_at_r"] = last.get("val_MAP@R")
        if self.best is not None:  # test figures of the best-validation epoch (evaluated on the same epochs)
            row = self.history[self.best["epoch"] - 1]
            summary["best"] = {"epoch": self.best["epoch"], "val_recall_1": self.best["val_R@1"],
                               "recall": {k: row.get(f"R@{k}") for k in self.ks}, "map_at_r": row.get("MAP@R")}
        summary["report"] = cfg.metric.report
        if cfg.metric.report == "best_test":
            summary["best_test"] = best_test_epoch(self.history, self.ks)
        return self._publish_summary(summary, self.learner)

    def _summary_table(self, s: dict[str, Any]) -> str:
        rows = [("model", s["model"]), ("loss", s["loss"]), ("dataset", s["dataset"]),
                ("epochs", str(s["epochs"]))]
        for k, v in s["recall"].items():
            rows.append((f"Recall@{k}", "-" if v is None else f"{100 * v:.2f} %"))
        if s["map_at_r"] is not None:
            rows.append(("MAP@R", f"{100 * s['map_at_r']:.2f} %"))
        if "best" in s:
            b = s["best"]
            rows += [("best val Recall@1", f"{100 * b['val_recall_1']:.2f} % (epoch {b['epoch']})"),
                     (f"test Recall@{self.ks[0]} of best", f"{100 * b['recall'][self.ks[0]]:.2f} %")]
        bt = s.get("best_test")
        if bt:
            rows.append((BEST_TEST_LABEL, f"epoch {bt['epoch']} (selected on test: not a held-out estimate)"))
            rows += [(f"  Recall@{k}", "-" if v is None else f"{100 * v:.2f} %") for k, v in bt["recall"].items()]
        return format_table(rows + self._summary_tail(s), title="lorentzcv train: summary")


def _hierarchy(row: dict[str, Any]) -> dict[str, float]:
    """The hierarchy metrics of an evaluation row (``SR@k``, ``mistake_*``; empty without super_targets)."""
    from ..metric import HIERARCHY_KEYS

    return {k: v for k, v in row.items() if k.startswith("SR@") or k in HIERARCHY_KEYS}


#: The summary label of ``metric.report="best_test"``.
BEST_TEST_LABEL = "HIER protocol: best test epoch"


def best_test_epoch(history: Sequence[dict[str, Any]], ks: Sequence[int]) -> dict[str, Any] | None:
    """HIER's reporting protocol (``metric.report="best_test"``): the evaluated epoch with the highest test
    Recall@``ks[0]`` (the earliest on ties) and its test Recall@K / MAP@R.

    It selects on the test split, so it is optimistic: use it only to compare with numbers reported that way
    (HIER's README). Returns ``None`` when no epoch was evaluated; the dict carries ``"protocol"``, a label.
    """
    key = f"R@{ks[0]}"
    rows = [r for r in history if r.get(key) is not None]
    if not rows:
        return None
    row = max(rows, key=lambda r: r[key])  # max keeps the first of equal values
    return {"epoch": row["epoch"], "recall": {k: row.get(f"R@{k}") for k in ks}, "map_at_r": row.get("MAP@R"),
            "protocol": f"{BEST_TEST_LABEL} (selected on the test split, as HIER reports; optimistic)"}


# --------------------------------------------------------------------------------------------------- checkpoints

def evaluate_metric_state(path, state: dict[str, Any], *, data_root: str | None = None, split: str = "test",
                          device: str = "auto", batch_size: int | None = None,
                          overrides: Sequence[str] = ()) -> dict[str, Any]:
    """:func:`evaluate_metric_checkpoint` on an already loaded checkpoint ``state`` (read from ``path``)."""
    cfg = config_from_dict(apply_overrides(state["config"], overrides))
    if not isinstance(cfg, MetricRunConfig):
        raise CheckpointError(f"'{path}' is not a metric-learning checkpoint")
    if data_root is not None:
        cfg = replace(cfg, data=replace(cfg.data, root=data_root))
    if split not in ("test", "train", "val"):
        raise ConfigError(f"a metric run is evaluated on 'test' (its retrieval splits), 'val' or 'train', not {split!r}")
    if split == "val" and cfg.data.val_fraction <= 0:
        raise ConfigError("this run has no validation split (data.val_fraction=0); use --split test or train")
    dev = resolve_device(device)
    data = build_metric_datasets(cfg, splits=(split,) if split != "test" else ("eval",), augment_train=False)
    meta = state.get("meta", {})
    torch.manual_seed(0)
    model = build_metric_model(cfg, meta.get("in_chans", data["in_chans"]), meta.get("img_size", data["img_size"]),
                               pretrained=False)
    try:
        model.load_state_dict(state["model"])
    except RuntimeError as exc:
        raise CheckpointError(
            f"checkpoint '{path}' does not match the model of its config ({str(exc).strip().splitlines()[0][:160]})"
        ) from None
    model.to(dev)
    amp_dtype, _ = resolve_amp(cfg.train.amp, dev)
    bs = batch_size or cfg.data.eval_batch_size or cfg.data.batch_size
    sets = {split: data[split]} if split != "test" else data["eval"]
    loaders = {s: DataLoader(ds, batch_size=bs, shuffle=False, num_workers=cfg.data.num_workers)
               for s, ds in sets.items()}
    ks = recall_ks(cfg)
    r = evaluate_retrieval(model, loaders, dev, ks, amp_dtype, map_r=cfg.metric.map_at_r,
                           chunk_size=cfg.metric.eval_chunk_size)
    return {"checkpoint": str(path), "task": "metric", "dataset": cfg.data.name, "split": split,
            "epoch": int(state["epoch"]), "recall": {k: r[f"R@{k}"] for k in ks}, "map_at_r": r.get("MAP@R"),
            **({"hierarchy": _hierarchy(r)} if _hierarchy(r) else {}),
            "n": r["n"], "protocol": "query->gallery" if "query" in loaders else "leave-one-out",
            "curvatures": curvatures(model)}


def evaluate_metric_checkpoint(checkpoint: str | os.PathLike[str], *, data_root: str | None = None,
                               split: str = "test", device: str = "auto", batch_size: int | None = None,
                               overrides: Sequence[str] = ()) -> dict[str, Any]:
    """Recall@K / MAP@R of a metric-learning checkpoint (a file, or a run directory's ``best.pt`` when the run
    selected on a validation split, else its ``last.pt``).

    ``split="test"``: the dataset's retrieval protocol (leave-one-out on ``test``; In-Shop ``query``→``gallery``);
    ``split="train"``: leave-one-out on the training split with the evaluation transform; ``split="val"``:
    leave-one-out on the classes ``data.val_fraction`` held out of train. The backbone is built
    without pretrained weights (they come from the checkpoint). Also reached through
    :func:`lorentzcv.train.evaluate_checkpoint` and ``lorentzcv eval``.

    Returns:
        ``{"checkpoint", "task", "dataset", "split", "epoch", "recall": {K: value}, "map_at_r", "n", "protocol",
        "curvatures"}``.
    """
    path = find_checkpoint(checkpoint, "best.pt")
    return evaluate_metric_state(path, load_checkpoint(path, map_location="cpu"), data_root=data_root,
                                 split=split, device=device, batch_size=batch_size, overrides=overrides)


def inference_model(cfg: MetricRunConfig, meta: dict[str, Any]) -> tuple[nn.Module, tuple[int, int, int]]:
    """The untrained embedding model of ``cfg`` (no pretrained weights fetched) and its image shape ``(C, H, W)``:
    channels and size from a checkpoint's ``meta``, else from the config and the dataset's registry entry."""
    from ..data import get_dataset_info

    info = get_dataset_info(cfg.data.name)
    in_chans = int(meta.get("in_chans", info.in_chans))
    img_size = meta.get("img_size", cfg.data.img_size or info.img_size)
    if img_size is None:
        raise ConfigError(f"the image size of {cfg.data.name!r} is only known from its data; set data.img_size")
    return build_metric_model(cfg, in_chans, int(img_size), pretrained=False), (in_chans, int(img_size), int(img_size))


#: The metric-learning task (``task: metric``).
TASK = Task("metric", MetricTrainer, evaluate_metric_state, inference_model)
