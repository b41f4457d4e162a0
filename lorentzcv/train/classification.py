"""The classification task: datasets, model, optimizer and evaluation of a classifier, and its :class:`Trainer`.

>>> from lorentzcv.train import Config, train
>>> summary = train(Config())            # the digits demo; returns the summary dict

- **Data** from :func:`lorentzcv.data.create_dataset` (``train``, an optional validation hold-out when
  ``data.val_fraction > 0`` or the dataset's own with ``data.native_val`` — model selection is never done on
  the test split — and ``test``), batches from a ``DistributedSampler`` with the run seed.
- **Model** from :func:`lorentzcv.models.create_model` (classes, channels and image size from the dataset)
  and **optimizer** from :func:`lorentzcv.optim.create_optimizer` (``decay``/``no_decay``/``manifold``/
  ``curvature`` groups; Riemannian ones curvature-aware or naive); cross-entropy loss with
  ``train.label_smoothing``.
- **Evaluation**: validation loss/accuracy every epoch, test every ``train.eval_test_every`` epochs and after the
  last; ``best.pt`` holds the epoch with the best validation accuracy, whose test accuracy the summary reports.

The loop itself (run directory, AMP, guards, DDP, checkpoints, resume) is :mod:`lorentzcv.train.engine`'s.
"""

from __future__ import annotations

import contextlib
import math
import os
from collections.abc import Sequence
from dataclasses import replace
from typing import Any

import torch
import torch.nn.functional as F
from torch import nn
from torch.utils.data import DataLoader, DistributedSampler, Subset

from .checkpoint import CheckpointError
from .common import curvatures, optimizer_kwargs, resolve_amp, seed_everything, set_repair_on_use, subset
from .config import Config, ConfigError, apply_overrides, config_from_dict
from .distributed import DistInfo, all_reduce_sum, resolve_device
from .engine import Engine, Task
from .recorder import format_metrics_line, format_table
from .schedule import LRScheduler

__all__ = ["Trainer", "build_datasets", "build_model", "build_optimizer", "evaluate", "evaluate_state",
           "inference_model", "TASK"]


def build_datasets(cfg: Config, splits: Sequence[str] = ("train", "val", "test"),
                   augment_train: bool = True) -> dict[str, Any]:
    """The datasets of a run and the dataset facts a model needs.

    ``augment_train=False`` gives the training split the evaluation transform (to evaluate on it).

    Returns a dict with ``"train"``, ``"val"`` (``None`` unless ``data.val_fraction > 0`` or ``data.native_val``),
    ``"test"`` (only the
    requested ``splits`` are built), ``"info"`` (the ``DatasetInfo``), ``"num_classes"``, ``"in_chans"`` and
    ``"img_size"``.
    """
    from ..data import create_dataset, create_transform, get_dataset_info

    d = cfg.data
    info = get_dataset_info(d.name)
    if info.task != "classification":
        raise ConfigError(
            f"data.name={d.name!r} is a metric-learning dataset; the classification trainer needs one of the "
            "classification datasets (see `lorentzcv datasets`)"
        )
    common = dict(root=d.root, download=d.download, seed=cfg.train.seed)
    out: dict[str, Any] = {"info": info, "train": None, "val": None, "test": None}
    if "train" in splits:
        tf = "default" if augment_train else create_transform(d.name, "test")
        out["train"] = subset(create_dataset(d.name, split="train", val_fraction=d.val_fraction, transform=tf,
                                              **common), d.train_subset, cfg.train.seed)
    if "val" in splits and (d.val_fraction > 0 or d.native_val):
        if d.native_val and "val" not in info.splits:
            raise ConfigError(
                f"data.native_val=true but {d.name!r} has no validation split of its own; use "
                "--set data.native_val=false --set data.val_fraction=0.1 to hold one out of train"
            )
        out["val"] = subset(create_dataset(d.name, split="val", val_fraction=d.val_fraction, **common),
                             d.eval_subset, cfg.train.seed)
    if "test" in splits:
        out["test"] = subset(create_dataset(d.name, split="test", **common), d.eval_subset, cfg.train.seed)
    num_classes = info.num_classes if isinstance(info.num_classes, int) else None
    if num_classes is None:
        for key in ("train", "test", "val"):
            ds = out[key]
            base = ds.dataset if isinstance(ds, Subset) else ds
            if base is not None and hasattr(base, "num_classes"):
                num_classes = int(base.num_classes)
                break
    out.update(num_classes=num_classes, in_chans=info.in_chans, img_size=info.img_size)
    return out


def build_model(cfg: Config, num_classes: int, in_chans: int, img_size: int) -> nn.Module:
    """``create_model(cfg.model.name, num_classes=, in_chans=, img_size=, **cfg.model options)``."""
    from ..models import create_model

    return create_model(cfg.model.name, num_classes=num_classes, in_chans=in_chans, img_size=img_size,
                        **cfg.model.create_kwargs())


def build_optimizer(cfg: Config, model: nn.Module) -> torch.optim.Optimizer:
    """``create_optimizer`` with the options of ``cfg.optim`` that apply to the chosen optimizer."""
    from ..optim import create_optimizer

    o = cfg.optim
    set_repair_on_use(o, model)
    return create_optimizer(model, o.name, lr=o.lr, weight_decay=o.weight_decay, curvature_lr=o.curvature_lr,
                            curvature_weight_decay=o.curvature_weight_decay, manifold_lr=o.manifold_lr,
                            **optimizer_kwargs(o))


@torch.no_grad()
def evaluate(model: nn.Module, loader: DataLoader, device: torch.device, amp_dtype: torch.dtype | None = None,
             dist_info: DistInfo | None = None, channels_last: bool = False) -> dict[str, float]:
    """Mean cross-entropy and top-1 accuracy over ``loader`` (summed over ranks when distributed).

    Returns ``{"loss", "acc", "n", "nonfinite"}``; ``nonfinite`` counts the images that are finite but whose
    logits are not (a model that diverged; images holding NaN/Inf themselves are not counted).
    """
    was_training = model.training
    model.eval()
    stats = torch.zeros(4, dtype=torch.float64, device=device)  # loss sum, correct, count, non-finite outputs
    for x, y in loader:
        x = x.to(device, non_blocking=True)
        if channels_last:
            x = x.contiguous(memory_format=torch.channels_last)
        y = y.to(device, non_blocking=True)
        with torch.autocast(device.type, dtype=amp_dtype or torch.float32, enabled=amp_dtype is not None):
            out = model(x)
        out = out.float()
        stats[0] += F.cross_entropy(out, y, reduction="sum").double()
        stats[1] += (out.argmax(1) == y).sum()
        stats[2] += y.numel()
        stats[3] += (torch.isfinite(x).flatten(1).all(1) & ~torch.isfinite(out).all(1)).sum()
    if dist_info is not None:
        all_reduce_sum(stats, dist_info)
    model.train(was_training)
    loss, correct, n, nonfinite = stats.tolist()
    return {"loss": loss / max(n, 1), "acc": correct / max(n, 1), "n": int(n), "nonfinite": int(nonfinite)}


class Trainer(Engine):
    """Runs one classification run (:class:`~lorentzcv.train.engine.Engine` with the classification hooks; see
    the module docstring). Use :func:`lorentzcv.train.train` unless you need the pieces.

    Args:
        cfg: The run configuration (a :class:`~lorentzcv.train.schema.Config`).
        resume: A run directory (or its ``last.pt``) to continue; ``cfg`` should then be its config
            (:func:`~lorentzcv.train.rundir.resume_config`).
        stream: Console stream for the log lines (default stdout).
    """

    task_name = "classification"
    stat_size = 3  # loss sum, correct, count

    def _setup(self) -> None:
        cfg, dist_info = self.cfg, self.dist
        t = cfg.train
        self._init_runtime()

        # Data.
        seed_everything(t.seed)
        data = build_datasets(cfg)
        self.data = data
        world, rank = dist_info.world_size, dist_info.rank
        if cfg.data.batch_size % world:
            raise ConfigError(
                f"data.batch_size={cfg.data.batch_size} is the global batch and must be divisible by the "
                f"{world} processes; change it with --set data.batch_size=..."
            )
        bs = cfg.data.batch_size // world
        pin = self.device.type == "cuda"
        self.train_sampler = DistributedSampler(data["train"], num_replicas=world, rank=rank, shuffle=True,
                                                seed=t.seed, drop_last=cfg.data.drop_last)
        self.loader_gen = torch.Generator()
        self.train_loader = DataLoader(data["train"], batch_size=bs, sampler=self.train_sampler,
                                       num_workers=cfg.data.num_workers, pin_memory=pin,
                                       drop_last=cfg.data.drop_last, generator=self.loader_gen)
        if len(self.train_loader) == 0:
            raise ConfigError(
                f"the training split has {len(data['train'])} images, fewer than one batch per process "
                f"(batch {bs}) with data.drop_last=true; lower data.batch_size or set data.drop_last=false"
            )

        self.val_loader = self._eval_loader(data["val"])
        self.test_loader = self._eval_loader(data["test"])
        self._set_steps_per_epoch()

        # Model and optimizer (same seed on every rank; DDP also broadcasts rank 0's weights).
        seed_everything(t.seed)
        model = build_model(cfg, data["num_classes"], data["in_chans"], data["img_size"]).to(self.device)
        if t.channels_last:
            model = model.to(memory_format=torch.channels_last)
        self.model = model
        self.optimizer = build_optimizer(cfg, model)
        self.scheduler = LRScheduler(self.optimizer, cfg.schedule, self.steps_per_epoch, t.epochs)
        self.params = [p for g in self.optimizer.param_groups for p in g["params"]]
        self.criterion = nn.CrossEntropyLoss(label_smoothing=t.label_smoothing)

        self._open_run()
        self._wrap_ddp(model)

    def _describe(self) -> str:
        cfg = self.cfg
        n_params = sum(p.numel() for p in self.model.parameters())
        return (f"model {cfg.model.name} ({n_params / 1e6:.3g}M params) | data {cfg.data.name}: "
                f"{len(self.data['train'])} train"
                + (f", {len(self.data['val'])} val" if self.data["val"] is not None else "")
                + f", {len(self.data['test'])} test | {self._run_settings()}")

    def _step_loss(self, module: nn.Module, x: torch.Tensor, y: torch.Tensor,
                   autocast: contextlib.AbstractContextManager) -> tuple[torch.Tensor, torch.Tensor]:
        with autocast:
            out = module(x)
        return self.criterion(out.float(), y), out

    def _accumulate(self, stats: torch.Tensor, loss: torch.Tensor, out: torch.Tensor, y: torch.Tensor) -> None:
        stats[0] += loss.detach().double() * y.numel()
        stats[1] += (out.detach().argmax(1) == y).sum()
        stats[2] += y.numel()

    def _postfix(self, stats: torch.Tensor) -> dict[str, str]:
        n = max(stats[2].item(), 1)
        return {"loss": f"{stats[0].item() / n:.3f}", "acc": f"{100 * stats[1].item() / n:.1f}%"}

    def _epoch_metrics(self, stats: torch.Tensor) -> tuple[dict[str, float], float]:
        loss_sum, correct, n = stats.tolist()
        return {"train_loss": loss_sum / n if n else math.nan, "train_acc": correct / n if n else math.nan}, n

    def _evaluate_epoch(self, epoch: int, row: dict[str, Any]) -> bool:
        """Validation loss/accuracy every epoch (when there is a validation split), test every
        ``train.eval_test_every`` epochs; the best validation accuracy's weights are kept (``best.pt``)."""
        if self.val_loader is not None:
            v = self._eval(self.val_loader)
            self._check_outputs(epoch, "validation", v["nonfinite"])
            row.update(val_loss=v["loss"], val_acc=v["acc"])
        if self.test_loader is not None and self._test_due(epoch):
            r = self._eval(self.test_loader)
            self._check_outputs(epoch, "test", r["nonfinite"])
            row.update(test_loss=r["loss"], test_acc=r["acc"])
        improved = self.val_loader is not None and (self.best is None or row["val_acc"] > self.best["val_acc"])
        if improved:
            self.best = {"val_acc": row["val_acc"], "epoch": epoch + 1}
            self.best_state = {k: v.detach().cpu().clone() for k, v in self.model.state_dict().items()}
        return improved

    def _format_row(self, row: dict[str, Any], epochs: int) -> str:
        return format_metrics_line(row, epochs)

    def _eval(self, loader: DataLoader) -> dict[str, float]:
        return evaluate(self.model, loader, self.device, self.amp_dtype, self.dist, self.cfg.train.channels_last)

    # ----------------------------------------------------------------------------------- finish
    def _finish(self, train_time: float) -> dict[str, Any]:
        cfg = self.cfg
        last = self.history[-1]
        summary: dict[str, Any] = {
            "run_dir": str(self.run_dir),
            "model": cfg.model.name,
            "dataset": cfg.data.name,
            "epochs": cfg.train.epochs,
            "test_acc": last.get("test_acc"),
            "test_loss": last.get("test_loss"),
            "train_acc": last.get("train_acc"),
            **self._run_facts(train_time),
        }
        if self.best is not None and self.best_state is not None and self.test_loader is not None:
            current = {k: v.detach().clone() for k, v in self.model.state_dict().items()}
            self.model.load_state_dict(self.best_state)
            r = self._eval(self.test_loader)
            self.model.load_state_dict(current)
            summary.update(best_val_acc=self.best["val_acc"], best_epoch=self.best["epoch"],
                           test_acc_best=r["acc"])
        return self._publish_summary(summary, self.model)

    def _summary_table(self, s: dict[str, Any]) -> str:
        def pct(v: float | None) -> str:
            return "-" if v is None else f"{100 * v:.2f} %"

        rows = [("model", s["model"]), ("dataset", s["dataset"]), ("epochs", str(s["epochs"])),
                ("train accuracy", pct(s["train_acc"])), ("test accuracy", pct(s["test_acc"]))]
        if "best_val_acc" in s:
            rows += [("best val accuracy", f"{pct(s['best_val_acc'])} (epoch {s['best_epoch']})"),
                     ("test acc. of best", pct(s["test_acc_best"]))]
        return format_table(rows + self._summary_tail(s), title="lorentzcv train: summary")


# ------------------------------------------------------------------------------------ checkpoints
def evaluate_state(path: str | os.PathLike[str], state: dict[str, Any], *, data_root: str | None = None,
                   split: str = "test", device: str = "auto", batch_size: int | None = None,
                   overrides: Sequence[str] = ()) -> dict[str, Any]:
    """Loss and accuracy of a loaded classification checkpoint ``state`` (read from ``path``) on a split of its
    dataset (reached through :func:`lorentzcv.train.evaluate_checkpoint` and ``lorentzcv eval``).

    Returns ``{"checkpoint", "dataset", "split", "epoch", "curvatures", "loss", "acc", "n", "nonfinite"}``.
    """
    cfg = config_from_dict(apply_overrides(state["config"], overrides))
    if data_root is not None:
        cfg = replace(cfg, data=replace(cfg.data, root=data_root))
    if split == "val" and cfg.data.val_fraction <= 0 and not cfg.data.native_val:
        raise ConfigError("this run has no validation split (data.val_fraction=0); use --split test or train")
    dev = resolve_device(device)
    if split not in ("train", "val", "test"):
        raise ConfigError(f"unknown split {split!r} for evaluation; use test, val or train")
    data = build_datasets(cfg, splits=(split,), augment_train=False)
    ds = data[split]
    meta = state.get("meta", {})
    torch.manual_seed(0)
    model = build_model(cfg, meta.get("num_classes", data["num_classes"]), meta.get("in_chans", data["in_chans"]),
                        meta.get("img_size", data["img_size"]))
    try:
        model.load_state_dict(state["model"])
    except RuntimeError as exc:
        raise CheckpointError(
            f"checkpoint '{path}' does not match model {cfg.model.name!r} of its config "
            f"({str(exc).strip().splitlines()[0][:160]})"
        ) from None
    model.to(dev)
    amp_dtype, _ = resolve_amp(cfg.train.amp, dev)
    loader = DataLoader(ds, batch_size=batch_size or cfg.data.eval_batch_size or cfg.data.batch_size,
                        shuffle=False, num_workers=cfg.data.num_workers)
    r = evaluate(model, loader, dev, amp_dtype)
    return {"checkpoint": str(path), "dataset": cfg.data.name, "split": split, "epoch": int(state["epoch"]),
            "curvatures": curvatures(model), **r}


def inference_model(cfg: Config, meta: dict[str, Any]) -> tuple[nn.Module, tuple[int, int, int]]:
    """The untrained classifier of ``cfg`` and its image shape ``(C, H, W)``: classes, channels and size from a
    checkpoint's ``meta``, else from the dataset's registry entry (no data is read)."""
    from ..data import get_dataset_info

    info = get_dataset_info(cfg.data.name)
    num_classes = meta.get("num_classes", info.num_classes)
    in_chans, img_size = int(meta.get("in_chans", info.in_chans)), meta.get("img_size", info.img_size)
    if not isinstance(num_classes, int) or img_size is None:
        raise ConfigError(f"the classes or image size of {cfg.data.name!r} are only known from its data; export a "
                          "trained run directory or checkpoint instead of its config")
    return build_model(cfg, num_classes, in_chans, int(img_size)), (in_chans, int(img_size), int(img_size))


#: The classification task (``task: classification``, the default).
TASK = Task("classification", Trainer, evaluate_state, inference_model)
