"""The classification training loop: data, model, optimizer, AMP, DDP, checkpoints, metrics (spec §8).

>>> from lorentzcv.train import Config, train
>>> summary = train(Config())            # the digits demo; returns the summary dict

One :class:`Trainer` runs one run directory:

- **Data** from :func:`lorentzcv.data.create_dataset` (``train``, an optional validation hold-out when
  ``data.val_fraction > 0`` — model selection is never done on the test split — and ``test``).
  The training order is a function of ``(seed, epoch)`` only: a ``DistributedSampler`` (``set_epoch``) with
  the run seed, and every epoch reseeds torch/numpy/python and the loader's generator from
  ``(seed, epoch, rank)``, so augmentations and worker seeds do not depend on what ran before.
- **Model** from :func:`lorentzcv.models.create_model` (classes, channels and image size from the dataset)
  and **optimizer** from :func:`lorentzcv.optim.create_optimizer` (``decay``/``no_decay``/``manifold``/
  ``curvature`` groups; Riemannian ones curvature-aware or naive), scheduled per iteration
  (:mod:`.schedule`).
- **AMP**: ``bf16`` autocast (CPU or CUDA), ``fp16`` autocast + ``torch.amp.GradScaler``; hyperbolic layers
  keep their own float32 islands.
- **Guards**: the global gradient norm is computed every step; a non-finite loss or gradient norm skips the
  step on every rank (the decision is all-reduced), is logged, and counted in ``skipped_steps``. A skipped
  step leaves the model exactly as it was: the module buffers (batch-norm running statistics, which the
  forward pass already updated from the bad batch) are restored from a copy taken before the forward. After
  ``train.max_skipped_steps`` consecutive skipped steps (float16 loss-scale back-offs of the GradScaler are
  not counted while the scale is >= 1: that is its normal search at start-up), when every step of an epoch
  was skipped, when a parameter, buffer or optimizer state is non-finite at the end of an epoch, or when the
  model's outputs on finite evaluation images are non-finite, the run stops with
  :class:`TrainingDivergedError` (a one-line error, exit status 2 on the command line) before writing a
  checkpoint, so ``last.pt`` keeps the last finite epoch. Optional clipping by norm
  (``train.grad_clip_norm``) and by value (``train.grad_clip_value``).
- **DDP** under ``torchrun`` (:mod:`.distributed`): metrics are all-reduced sums, rank 0 writes the run
  directory, the shutdown releases the DDP wrapper before destroying the process group, and collectives time
  out after ``train.ddp_timeout_s`` (a :class:`~lorentzcv.train.distributed.DDPTimeoutError` naming the
  stalled rank) instead of hanging.
- **Run directory**: a non-empty ``output.dir`` is refused (before any data is read) unless the run is
  resumed or ``output.overwrite=true`` (which removes the old run's files once the new run has been set up).
  ``config.yaml`` is written only after the resume checks passed.
- **Checkpoints** every epoch (``best.pt`` when selecting on a validation split, then ``last.pt``), atomic,
  ``fsync``'d and ``weights_only``-loadable (:mod:`.checkpoint`). ``resume`` restores model, optimizer,
  scheduler, GradScaler, epoch, history and RNG states; the resumed run ends with exactly the weights of an
  uninterrupted one (deterministic kernels assumed, e.g. CPU) unless a setting that shapes the trajectory
  changed (batch size, optimizer, schedule, epochs, world size, …): such a resume is logged as a warning
  and recorded (``resumes`` in the checkpoints and ``summary.json``).
"""

from __future__ import annotations

import contextlib
import gc
import math
import os
import shutil
import sys
import time
import warnings
from collections.abc import Callable, Iterator, Sequence
from dataclasses import replace
from datetime import datetime
from pathlib import Path
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn
from torch.utils.data import DataLoader, Dataset, DistributedSampler, Sampler, Subset

from .checkpoint import (
    CHECKPOINT_FORMAT,
    RESUME_KEYS,
    CheckpointError,
    capture_rng_state,
    find_checkpoint,
    load_checkpoint,
    remove_orphan_temp_files,
    restore_rng_state,
    save_checkpoint,
)
from .config import (
    AnyConfig,
    Config,
    ConfigError,
    OptimConfig,
    apply_overrides,
    config_from_dict,
    config_to_dict,
    save_config,
)
from .distributed import (
    DistInfo,
    ProgressBoard,
    all_gather_object,
    all_reduce_sum,
    broadcast_object,
    init_distributed,
    is_timeout,
    params_digest,
    resolve_device,
    shutdown,
    timeout_error,
)
from .recorder import RunRecorder, format_metrics_line, format_table
from .schedule import LRScheduler

__all__ = [
    "Trainer",
    "TrainingDivergedError",
    "train",
    "evaluate",
    "evaluate_checkpoint",
    "build_datasets",
    "build_model",
    "build_optimizer",
    "resolve_amp",
    "resume_config",
    "with_resolved_root",
    "seed_everything",
    "derive_seed",
    "curvatures",
]


class TrainingDivergedError(ValueError):
    """A run stopped because it diverged: too many consecutive non-finite steps, or a non-finite parameter,
    buffer or optimizer state. Nothing non-finite was checkpointed; ``last.pt`` keeps the last finite epoch."""


# ----------------------------------------------------------------------------------------- seeding
def derive_seed(*parts: int) -> int:
    """A 32-bit seed that is a fixed function of ``parts`` (e.g. ``(seed, epoch, rank)``)."""
    return int(np.random.SeedSequence([int(p) % (2**63) for p in parts]).generate_state(1)[0])


def seed_everything(seed: int) -> None:
    """Seed python, numpy and torch (CPU and CUDA)."""
    import random

    random.seed(seed)
    np.random.seed(seed % (2**32))
    torch.manual_seed(seed)


# -------------------------------------------------------------------------------------------- AMP
def resolve_amp(amp: str, device: torch.device) -> tuple[torch.dtype | None, bool]:
    """``(autocast dtype or None, use GradScaler)`` for ``train.amp`` on ``device``.

    ``bf16``: bfloat16 autocast, no scaler. ``fp16``: float16 autocast with a ``GradScaler`` (on CPU it works
    but is ~17× slower than float32, ``ecosystem.md`` §6). ``auto``: bfloat16 on CPU and on CUDA devices that
    support it, else float16.
    """
    if amp == "none":
        return None, False
    if amp == "auto":
        if device.type == "cuda" and not torch.cuda.is_bf16_supported():
            amp = "fp16"
        else:
            amp = "bf16"
    if amp == "bf16":
        if device.type == "cuda" and not torch.cuda.is_bf16_supported():
            raise ConfigError("train.amp=bf16 but this GPU has no bfloat16 support; use fp16 or none")
        return torch.bfloat16, False
    if amp == "fp16":
        if device.type == "cpu":
            warnings.warn("train.amp=fp16 on CPU is slow (no native float16 kernels: a step takes several times "
                          "float32's)", stacklevel=2)
        return torch.float16, True
    raise ConfigError(f"train.amp must be none, bf16, fp16 or auto, got {amp!r}")


# ------------------------------------------------------------------------------------------- data
class ShardSampler(Sampler[int]):
    """Indices ``rank, rank + world, …`` of ``range(n)`` in order: a padding-free evaluation shard."""

    def __init__(self, n: int, rank: int = 0, world_size: int = 1) -> None:
        self.n, self.rank, self.world = int(n), int(rank), int(world_size)

    def __iter__(self) -> Iterator[int]:
        return iter(range(self.rank, self.n, self.world))

    def __len__(self) -> int:
        return len(range(self.rank, self.n, self.world))


def _subset(ds: Dataset, n: int | None, seed: int) -> Dataset:
    if n is None or n >= len(ds):
        return ds
    g = torch.Generator().manual_seed(seed)
    idx = sorted(torch.randperm(len(ds), generator=g)[:n].tolist())
    sub = getattr(ds, "subset", None)
    return sub(idx) if callable(sub) else Subset(ds, idx)


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
        out["train"] = _subset(create_dataset(d.name, split="train", val_fraction=d.val_fraction, transform=tf,
                                              **common), d.train_subset, cfg.train.seed)
    if "val" in splits and (d.val_fraction > 0 or d.native_val):
        if d.native_val and "val" not in info.splits:
            raise ConfigError(
                f"data.native_val=true but {d.name!r} has no validation split of its own; use "
                "--set data.native_val=false --set data.val_fraction=0.1 to hold one out of train"
            )
        out["val"] = _subset(create_dataset(d.name, split="val", val_fraction=d.val_fraction, **common),
                             d.eval_subset, cfg.train.seed)
    if "test" in splits:
        out["test"] = _subset(create_dataset(d.name, split="test", **common), d.eval_subset, cfg.train.seed)
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


# ------------------------------------------------------------------------------------ model, optim
def build_model(cfg: Config, num_classes: int, in_chans: int, img_size: int) -> nn.Module:
    """``create_model(cfg.model.name, num_classes=, in_chans=, img_size=, **cfg.model options)``."""
    from ..models import create_model

    return create_model(cfg.model.name, num_classes=num_classes, in_chans=in_chans, img_size=img_size,
                        **cfg.model.create_kwargs())


def build_optimizer(cfg: Config, model: nn.Module) -> torch.optim.Optimizer:
    """``create_optimizer`` with the options of ``cfg.optim`` that apply to the chosen optimizer."""
    from ..optim import create_optimizer

    o = cfg.optim
    return create_optimizer(model, o.name, lr=o.lr, weight_decay=o.weight_decay, curvature_lr=o.curvature_lr,
                            curvature_weight_decay=o.curvature_weight_decay, manifold_lr=o.manifold_lr,
                            **optimizer_kwargs(o))


def optimizer_kwargs(o: OptimConfig) -> dict[str, Any]:
    """The options of an ``OptimConfig`` that apply to ``o.name`` (momentum/Nesterov for SGD, betas/eps for
    AdamW, the curvature mode for the Riemannian ones), then ``o.kwargs``."""
    kw: dict[str, Any] = {}
    if o.name in ("rsgd", "sgd"):
        kw.update(momentum=o.momentum, nesterov=o.nesterov and o.momentum > 0)
    else:
        kw.update(betas=tuple(o.betas), eps=o.eps)
    if o.name in ("rsgd", "radamw"):
        kw["curvature_mode"] = o.curvature_mode
    kw.update(o.kwargs)
    return kw


def curvatures(model: nn.Module) -> dict[str, float]:
    """Sectional curvature ``K = -1/k`` of every distinct manifold of ``model``, by module name."""
    from ..geometry import named_manifolds

    return {(name or "model"): float(m.curvature.detach().float().cpu()) for name, m in
            named_manifolds(model).items()}


def _unwrap(model: nn.Module) -> nn.Module:
    return model.module if isinstance(model, nn.parallel.DistributedDataParallel) else model


# ------------------------------------------------------------------------------------------- eval
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


# ------------------------------------------------------------------------------------------ trainer
def _new_run_dir(cfg: Config) -> Path:
    if cfg.output.dir:
        return Path(cfg.output.dir)
    name = cfg.output.run_name(cfg.data.name, cfg.model_label())
    stamp = datetime.now().strftime("%Y%m%d-%H%M%S")
    base = Path(cfg.output.root) / f"{name}-{stamp}"
    path, i = base, 1
    while path.exists():
        path = base.with_name(f"{base.name}-{i}")
        i += 1
    return path


#: Files and folders a run writes into its directory (what ``output.overwrite=true`` removes).
RUN_FILES = ("config.yaml", "log.txt", "metrics.jsonl", "metrics.csv", "summary.json", "last.pt", "best.pt", "tb")

#: Config keys that do not change the training trajectory (a resume may change them and stay exact).
_RESUME_FREE = ("output.", "data.root", "data.download", "data.num_workers", "data.eval_batch_size",
                "data.eval_subset", "train.device", "train.eval_test_every", "train.threads",
                "train.max_skipped_steps", "train.ddp_timeout_s", "metric.eval_chunk_size", "metric.recall_ks",
                "metric.map_at_r")


def _occupied_error(run_dir: Path) -> str | None:
    """Why a new run may not write into ``run_dir`` (``None`` when it is absent or an empty directory)."""
    if not run_dir.exists():
        return None
    if not run_dir.is_dir():
        return f"output.dir '{run_dir}' is a file, not a directory; pick another output.dir"
    names = sorted(p.name for p in run_dir.iterdir())
    if not names:
        return None
    shown = ", ".join(names[:5]) + (", ..." if len(names) > 5 else "")
    return (f"output.dir '{run_dir}' is not empty ({shown}); continue that run with `lorentzcv train --resume "
            f"{run_dir}`, replace it with --set output.overwrite=true, or pick another output.dir")


def _clear_run_files(run_dir: Path) -> None:
    """Remove the files an earlier run wrote into ``run_dir`` (:data:`RUN_FILES` and temporary files)."""
    for name in RUN_FILES:
        p = run_dir / name
        if p.is_dir() and not p.is_symlink():
            shutil.rmtree(p)
        elif p.exists() or p.is_symlink():
            p.unlink()
    remove_orphan_temp_files(run_dir)


def _flatten(d: dict[str, Any], prefix: str = "") -> dict[str, Any]:
    out: dict[str, Any] = {}
    for k, v in d.items():
        key = f"{prefix}{k}"
        if isinstance(v, dict) and v:
            out.update(_flatten(v, key + "."))
        else:
            out[key] = v
    return out


def resume_changes(old_config: dict[str, Any], new_config: dict[str, Any], old_world: int | None,
                   new_world: int) -> list[str]:
    """The settings that differ between a checkpoint's config and the resumed run's and shape the training
    trajectory (batch size, optimizer, schedule, epochs, seed, world size, …), as ``"key a -> b"`` strings.

    Keys that only affect evaluation, logging or the machine (``output.*``, ``data.root``, ``train.device``,
    ``train.threads``, ...) are not listed: changing them keeps a resume exact.
    """
    a, b = _flatten(old_config), _flatten(new_config)
    out = []
    for key in sorted(set(a) | set(b)):
        if key.startswith(_RESUME_FREE) or a.get(key) == b.get(key):
            continue
        out.append(f"{key} {a.get(key)!r} -> {b.get(key)!r}")
    if old_world is not None and int(old_world) != int(new_world):
        out.append(f"world size {int(old_world)} -> {int(new_world)}")
    return out


def with_resolved_root(cfg: AnyConfig) -> AnyConfig:
    """``cfg`` with ``data.root`` set to the root its dataset is read from (:func:`lorentzcv.data.resolve_root`:
    the given root, else the dataset's default root such as Debian's, else ``$LORENTZCV_DATA``), as an absolute
    path, so that a run's ``config.yaml`` and checkpoints can be evaluated later from anywhere; embedded datasets
    without a given root keep ``None``."""
    from ..data import get_dataset_info, resolve_root

    root = resolve_root(get_dataset_info(cfg.data.name), cfg.data.root)
    if root is None:
        return cfg
    return replace(cfg, data=replace(cfg.data, root=str(Path(root).expanduser().resolve())))


def resume_config(run: str | os.PathLike[str], overrides: Sequence[str] = ()) -> Config:
    """The config a run was started with (from its ``last.pt``), with ``--set`` overrides applied."""
    state = load_checkpoint(find_checkpoint(run, "last.pt"))
    return config_from_dict(apply_overrides(state["config"], overrides))


class Trainer:
    """Runs one training run (see the module docstring). Use :func:`train` unless you need the pieces.

    Args:
        cfg: The run configuration.
        resume: A run directory (or its ``last.pt``) to continue; ``cfg`` should then be its config
            (:func:`resume_config`).
        stream: Console stream for the log lines (default stdout).
    """

    def __init__(self, cfg: Config, resume: str | os.PathLike[str] | None = None,
                 stream: Any = None) -> None:
        self.cfg = cfg.validate()
        self.resume = resume
        self.stream = stream
        self.model: nn.Module | None = None
        self.ddp: nn.Module | None = None  # what the training step calls: the DDP and/or torch.compile wrapper
        self.optimizer: torch.optim.Optimizer | None = None

    # ------------------------------------------------------------------------------------ public
    def run(self) -> dict[str, Any]:
        """Train to ``cfg.train.epochs`` and return the summary (also written to ``summary.json``).

        Raises:
            TrainingDivergedError: the run diverged (see the module docstring); ``last.pt`` keeps the last
                finite epoch.
            DDPTimeoutError: a collective of a distributed run timed out (``train.ddp_timeout_s``).
            ConfigError, CheckpointError: bad settings, an occupied ``output.dir``, a checkpoint that cannot be
                resumed; nothing in the run directory was changed.
        """
        t = self.cfg.train
        self.dist = init_distributed(t.device, timeout_s=t.ddp_timeout_s)
        self.progress = ProgressBoard(self.dist)
        ok = False
        try:
            self._claim_run_dir()
            summary = self._run()
            ok = True
            return summary
        except RuntimeError as exc:
            if self.dist.distributed and is_timeout(exc):
                err = timeout_error(exc, self.dist, t.ddp_timeout_s, self.progress)
                self._note(f"error: {err}")
                raise err from None
            raise
        except BaseException as exc:
            text = str(exc).strip().splitlines()
            self._note("interrupted" if isinstance(exc, KeyboardInterrupt)
                       else f"error: {text[0] if text else type(exc).__name__}")
            raise
        finally:
            rec = getattr(self, "rec", None)
            if rec is not None:
                rec.close()
            self._release()
            gc.collect()
            shutdown(self.dist, barrier=ok)

    def _note(self, msg: str) -> None:
        """Append ``msg`` to the run's ``log.txt`` (only once the run is open; not printed)."""
        rec = getattr(self, "rec", None)
        if rec is not None:
            rec.note(msg)

    def _claim_run_dir(self) -> None:
        """Decide the run directory before any data is read, and refuse an occupied one.

        A resumed run continues in its own directory. A new run's directory (``output.dir``, or a fresh
        ``<root>/<name>-<timestamp>``) must be absent or empty unless ``output.overwrite=true``; rank 0 decides
        and every rank gets the same answer.
        """
        if self.resume is not None:
            self.run_dir = find_checkpoint(self.resume, "last.pt").parent
            return
        d = self.dist
        answer = None
        if d.is_main:
            run_dir = _new_run_dir(self.cfg)
            answer = (str(run_dir), None if self.cfg.output.overwrite else _occupied_error(run_dir))
        run_dir, error = broadcast_object(answer, d)
        if error is not None:
            raise ConfigError(error)
        self.run_dir = Path(run_dir)

    def _release(self) -> None:
        """Drop DDP (its reducer hooks live on the parameters, so the model and everything holding parameters
        go too) and the optimizer before the process group goes away (``ecosystem.md`` §5). Subclasses holding
        more parameter owners extend it."""
        self.ddp = None
        self.optimizer = None
        self.scheduler = None
        if self.dist.distributed:
            self.model = None
            self.params = None
            self.train_loader = self.val_loader = self.test_loader = None

    # ----------------------------------------------------------------------------------- set-up
    def _init_runtime(self) -> None:
        """Threads, determinism, the device and AMP (autocast dtype, GradScaler), shared by the classification
        and metric trainers."""
        t = self.cfg.train
        if t.threads:
            torch.set_num_threads(t.threads)
        if t.deterministic:
            torch.use_deterministic_algorithms(True, warn_only=True)
            torch.backends.cudnn.benchmark = False
        self.device = self.dist.device
        self.amp_dtype, use_scaler = resolve_amp(t.amp, self.device)
        self.scaler = torch.amp.GradScaler(self.device.type) if use_scaler else None

    def _eval_loader(self, ds: Dataset | None) -> DataLoader | None:
        """This rank's shard of ``ds`` (:class:`ShardSampler`, gathered back by the evaluation), or ``None``."""
        if ds is None:
            return None
        cfg, d = self.cfg, self.dist
        ebs = max((cfg.data.eval_batch_size or cfg.data.batch_size) // d.world_size, 1)
        return DataLoader(ds, batch_size=ebs, sampler=ShardSampler(len(ds), d.rank, d.world_size),
                          num_workers=cfg.data.num_workers, pin_memory=self.device.type == "cuda")

    def _set_steps_per_epoch(self) -> None:
        """Batches of ``train_loader`` per epoch, capped by ``train.max_steps_per_epoch``."""
        cap = self.cfg.train.max_steps_per_epoch
        self.steps_per_epoch = len(self.train_loader) if cap is None else min(len(self.train_loader), cap)

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

    def _open_run(self) -> None:
        """Run directory (written only once data, model and the resume state are known to work), recorder and
        resume state.

        Nothing in the run directory changes before every check passed: a rejected resume (finished run,
        mismatching model, incomplete checkpoint) leaves ``config.yaml``, the metrics and the checkpoints as
        they were. The resume checkpoint is read on every rank: multi-node runs need the run dir on a shared
        filesystem.
        """
        self.cfg = with_resolved_root(self.cfg)  # config.yaml and the checkpoints name the root the data came from
        cfg, dist_info, t = self.cfg, self.dist, self.cfg.train
        self.state: dict[str, Any] | None = None
        self.start_epoch = 0
        self.history: list[dict[str, Any]] = []
        self.best: dict[str, Any] | None = None
        self.best_state: dict[str, torch.Tensor] | None = None
        self.resumes: list[dict[str, Any]] = []
        self.consecutive_skips = 0
        notes: list[str] = []
        if self.resume is not None:
            path = find_checkpoint(self.resume, "last.pt")
            self.state = load_checkpoint(path, map_location="cpu", required=RESUME_KEYS)
            self.run_dir = path.parent
            done = int(self.state["epoch"])
            if done > t.epochs or (done == t.epochs and (self.run_dir / "summary.json").is_file()):
                raise ConfigError(
                    f"run '{self.run_dir}' already finished {done} of train.epochs={t.epochs} epochs; "
                    f"nothing to resume (pass --set train.epochs=N with N > {done} to train longer)"
                )
            changes = resume_changes(self.state["config"], config_to_dict(cfg),
                                     self.state.get("meta", {}).get("world_size"), dist_info.world_size)
            notes += self._load_state(self.state)  # raises (before anything is written) if it does not fit
            self.resumes = list(self.state.get("resumes", []))
            if changes:
                self.resumes.append({"epoch": done, "changes": changes})
                notes.append(f"warning: resuming with changed settings ({'; '.join(changes)}): the result will "
                             "differ from an uninterrupted run")
            if done == t.epochs:
                notes.append(f"all {done} epochs are in last.pt but the run stopped before its summary: "
                             "completing the records")
        if dist_info.is_main:
            if self.state is None and cfg.output.overwrite and self.run_dir.is_dir():
                _clear_run_files(self.run_dir)
            self.run_dir.mkdir(parents=True, exist_ok=True)
            for orphan in remove_orphan_temp_files(self.run_dir):
                notes.append(f"removed {orphan.name}, a temporary file left by an interrupted write")
            save_config(cfg, self.run_dir / "config.yaml")
        self.rec = RunRecorder(self.run_dir, enabled=dist_info.is_main, tensorboard=cfg.output.tensorboard,
                               stream=self.stream)
        if self.state is not None:
            self.rec.set_history(self.history)
        for note in notes:
            self.rec.log(note)
        self.progress.mark("set-up done")

    def _wrap_ddp(self, module: nn.Module) -> None:
        """Wrap ``module`` (what the training step calls) in DDP when the run is distributed, and note its
        buffers, which a skipped step restores (:meth:`_guarded_step`; modules update them in place, as torch's
        and lorentzcv's batch norms do)."""
        self.step_module = module
        self.guard_buffers = list(module.buffers())
        self.buffer_copies: list[torch.Tensor] | None = None
        if self.dist.distributed:
            ids = [self.device.index] if self.device.type == "cuda" else None
            self.ddp = nn.parallel.DistributedDataParallel(module, device_ids=ids,
                                                           find_unused_parameters=self.cfg.train.find_unused_parameters)
        if self.cfg.train.compile:  # torch.compile with default arguments: forward and backward of the step
            self.ddp = torch.compile(self.ddp if self.ddp is not None else module)

    def _load_state(self, state: dict[str, Any]) -> list[str]:
        """Load a resume checkpoint into the model, optimizer, scheduler, scaler and RNGs; returns notes to log.

        Raises:
            CheckpointError: the checkpoint does not fit the model/optimizer built from the config.
        """
        try:
            self.model.load_state_dict(state["model"])
            self.optimizer.load_state_dict(state["optimizer"])
            self.scheduler.load_state_dict(state["scheduler"])
            if self.scaler is not None and state.get("scaler"):
                self.scaler.load_state_dict(state["scaler"])
        except (KeyError, RuntimeError, ValueError) as exc:
            msg = str(exc).strip().splitlines()[0][:200] if str(exc).strip() else type(exc).__name__
            raise CheckpointError(
                f"checkpoint in '{self.run_dir}' does not match the model/optimizer of its config ({msg}); "
                "resume with the same code and config, or start a new run"
            ) from None
        self.start_epoch = int(state["epoch"])
        self.history = list(state.get("history", []))
        self.best = state.get("best")
        notes = self._load_best(state)
        restore_rng_state(state["rng"])
        return notes

    def _load_best(self, state: dict[str, Any]) -> list[str]:
        """Pair ``best.pt`` with the resumed ``last.pt`` (``self.best``, ``self.best_state``); returns notes.

        ``best.pt`` is written before ``last.pt``, so after an interruption between the two it can be one
        epoch ahead: it is then adopted as the best so far (its own record), and the re-run of that epoch
        replaces it only if it does better. A ``best.pt`` that matches neither is kept out of the selection.
        """
        path = self.run_dir / "best.pt"
        if not path.is_file():
            return []
        best = load_checkpoint(path, map_location="cpu")
        epoch, recorded = int(best["epoch"]), (self.best or {}).get("epoch")
        if epoch == recorded:
            self.best_state = best["model"]
            return []
        if epoch > int(state["epoch"]) and best.get("best") is not None:
            self.best, self.best_state = best["best"], best["model"]
            return [f"best.pt holds epoch {epoch}, saved before the interruption: it stays the best unless the "
                    "re-run of that epoch does better"]
        return [f"warning: best.pt holds epoch {epoch} but the run's records name epoch {recorded}; it is "
                "not used and is replaced at the next improvement"]

    def _checkpoint_state(self, epoch: int) -> dict[str, Any]:
        d = self.data
        return {
            "format": CHECKPOINT_FORMAT,
            "epoch": epoch,
            "global_step": self.scheduler.last_step,
            "model": self.model.state_dict(),
            "optimizer": self.optimizer.state_dict(),
            "scheduler": self.scheduler.state_dict(),
            "scaler": self.scaler.state_dict() if self.scaler is not None else None,
            "rng": capture_rng_state(),
            "config": config_to_dict(self.cfg),
            "history": self.history,
            "best": self.best,
            "resumes": self.resumes,
            "meta": {"num_classes": d["num_classes"], "in_chans": d["in_chans"], "img_size": d["img_size"],
                     "world_size": self.dist.world_size, "torch": str(torch.__version__)},
        }

    # ------------------------------------------------------------------------------------- loop
    def _run(self) -> dict[str, Any]:
        self._setup()
        cfg, t = self.cfg, self.cfg.train
        rec = self.rec
        n_params = sum(p.numel() for p in self.model.parameters())
        if self.state is None:
            rec.log(f"run: {self.run_dir}")
        else:
            rec.log(f"resuming {self.run_dir} after epoch {self.start_epoch}")
        rec.log(
            f"model {cfg.model.name} ({n_params / 1e6:.3g}M params) | data {cfg.data.name}: "
            f"{len(self.data['train'])} train"
            + (f", {len(self.data['val'])} val" if self.data["val"] is not None else "")
            + f", {len(self.data['test'])} test | {self._run_settings()}"
        )
        t_start = time.perf_counter()
        for epoch in range(self.start_epoch, t.epochs):
            row = self._train_epoch(epoch)
            self._check_finite_state(epoch, row)
            self.progress.mark(f"epoch {epoch + 1} evaluation")
            last = epoch + 1 == t.epochs
            if self.val_loader is not None:
                v = self._eval(self.val_loader)
                self._check_outputs(epoch, "validation", v["nonfinite"])
                row.update(val_loss=v["loss"], val_acc=v["acc"])
            if self.test_loader is not None and (last or (t.eval_test_every and (epoch + 1) % t.eval_test_every == 0)):
                r = self._eval(self.test_loader)
                self._check_outputs(epoch, "test", r["nonfinite"])
                row.update(test_loss=r["loss"], test_acc=r["acc"])
            improved = self.val_loader is not None and (self.best is None or row["val_acc"] > self.best["val_acc"])
            if improved:
                self.best = {"val_acc": row["val_acc"], "epoch": epoch + 1}
                self.best_state = {k: v.detach().cpu().clone() for k, v in self.model.state_dict().items()}
            self._end_epoch(row, epoch, improved, format_metrics_line)
        train_time = time.perf_counter() - t_start
        return self._finish(train_time)

    def _run_settings(self) -> str:
        """The optimizer, schedule, epochs, device(s) and AMP part of the run's opening log line."""
        cfg, d = self.cfg, self.dist
        return (f"optim {cfg.optim.name} lr {cfg.optim.lr:g} | {cfg.schedule.name} | {cfg.train.epochs} epochs "
                f"| device {self.device}" + (f" x{d.world_size} ({d.backend})" if d.distributed else "")
                + (f" | amp {self.amp_dtype}" if self.amp_dtype is not None else ""))

    def _end_epoch(self, row: dict[str, Any], epoch: int, improved: bool,
                   format_line: Callable[[dict[str, Any], int], str]) -> None:
        """Add the learning rates and curvatures to ``row`` and log it; on the main rank write ``best.pt`` (when
        the validation metric ``improved``), then ``last.pt``, then record the row in the metrics files.

        ``best.pt`` goes first so that ``last.pt`` (what a resume reads) never names a best epoch whose file was
        not written; the metrics files never hold an epoch the checkpoints do not.
        """
        row.update(self._lrs())
        row.update({f"K/{n}": k for n, k in curvatures(self.model).items()})
        self.history.append(row)
        self.rec.log(format_line(row, self.cfg.train.epochs))
        self.progress.mark(f"epoch {epoch + 1} checkpoint")
        if self.dist.is_main and self.cfg.output.checkpoints:
            state = self._checkpoint_state(epoch + 1)
            if improved:
                save_checkpoint(state, self.run_dir / "best.pt")
            save_checkpoint(state, self.run_dir / "last.pt")
        self.rec.add(row)

    def _saved_epoch_text(self) -> str:
        """Which checkpoint a stopped run leaves behind, for the error message."""
        done = int(self.history[-1]["epoch"]) if self.history else 0
        if not self.cfg.output.checkpoints:
            return "no checkpoint is written (output.checkpoints=false)"
        if done == 0:
            return "no checkpoint was written (no earlier epoch to keep)"
        return f"{self.run_dir / 'last.pt'} keeps epoch {done}, the last finite state"

    def _diverged(self, what: str, epoch: int) -> TrainingDivergedError:
        return TrainingDivergedError(
            f"training diverged after epoch {epoch + 1}: {what}; the run stopped and {self._saved_epoch_text()}. "
            f"Lower optim.lr (now {self.cfg.optim.lr:g}) or set train.grad_clip_norm"
        )

    def _check_outputs(self, epoch: int, split: str, nonfinite: int) -> None:
        """Stop the run if the model gave non-finite outputs for finite images of ``split`` (its weights can be
        finite and still overflow): the epoch is not checkpointed."""
        if nonfinite:
            raise self._diverged(f"the model gives non-finite outputs for {nonfinite} finite {split} images",
                                 epoch)

    def _check_finite_state(self, epoch: int, row: dict[str, Any]) -> None:
        """Raise :class:`TrainingDivergedError` if every step of ``epoch`` was skipped, or if a parameter, buffer
        or optimizer state is non-finite after it (checked on every rank, decided together), before anything of
        the epoch is saved."""
        bad: str | None = None
        named = [("parameter", n, p) for n, p in self.step_module.named_parameters()]
        named += [("buffer", n, b) for n, b in self.step_module.named_buffers()]
        names = {id(p): n for _, n, p in named}
        for param, st in self.optimizer.state.items():
            for k, v in st.items():
                if isinstance(v, torch.Tensor):
                    named.append(("optimizer state", f"{k} of {names.get(id(param), 'a parameter')}", v))
        named = [(kind, name, v) for kind, name, v in named if v.is_floating_point() and v.numel()]
        finite = torch.stack([torch.isfinite(v).all().to(self.device) for _, _, v in named]) if named else None
        if finite is not None and not bool(finite.all()):  # one device sync; the name only on failure
            kind, name, _ = named[int((~finite).nonzero()[0, 0])]
            bad = f"{kind} '{name}'"
        flag = torch.tensor([0.0 if bad is None else 1.0], device=self.device)
        all_reduce_sum(flag, self.dist)
        if flag.item() > 0:
            raise self._diverged(f"{bad or 'a tensor on another rank'} is non-finite (train loss "
                                 f"{row.get('train_loss', math.nan):.4g}, {row.get('skipped_steps', 0)} skipped "
                                 "steps)", epoch)
        # The same on every rank (the skip decisions are all-reduced). Two skips at least: one bad batch in a
        # one-step epoch is not a divergence.
        if self.consecutive_skips >= max(self.steps_per_epoch, 2):
            raise self._diverged("every step of the epoch had a non-finite loss or gradient", epoch)

    def _lrs(self) -> dict[str, float]:
        groups = self.optimizer.param_groups
        out = {"lr": float(groups[0]["lr"])}
        for g in groups:
            name = g.get("name")
            if name in ("manifold", "curvature"):
                out[f"lr/{name}"] = float(g["lr"])
        return out

    def _eval(self, loader: DataLoader) -> dict[str, float]:
        return evaluate(self.model, loader, self.device, self.amp_dtype, self.dist, self.cfg.train.channels_last)

    def _reseed_epoch(self, epoch: int) -> None:
        import random

        self.epoch = epoch
        s = derive_seed(self.cfg.train.seed, epoch, self.dist.rank)
        random.seed(s)
        np.random.seed(s)
        torch.manual_seed(s)
        self.loader_gen.manual_seed(derive_seed(self.cfg.train.seed, epoch, self.dist.rank, 1))
        self.train_sampler.set_epoch(epoch)

    def _progress(self, epoch: int):
        show = self.cfg.output.progress
        if show is None:
            show = sys.stderr.isatty()
        if not (show and self.dist.is_main):
            return None
        from tqdm.auto import tqdm

        # shutil's size falls back to 80x24 where a pseudo-terminal reports 0x0 (tqdm would then draw nothing)
        size = shutil.get_terminal_size()
        return tqdm(total=self.steps_per_epoch, desc=f"epoch {epoch + 1}/{self.cfg.train.epochs}",
                    file=sys.stderr, leave=False, ncols=min(size.columns, 120), nrows=max(size.lines, 2),
                    unit="it")


    def _train_batches(self):
        """``(step, images, labels)`` of one epoch on the device (``steps_per_epoch`` at most).

        Before each batch is handed out the step module's buffers are copied (a skipped step restores them) and
        this rank's progress is reported (:class:`~lorentzcv.train.distributed.ProgressBoard`).
        """
        device = self.device
        epoch = getattr(self, "epoch", 0)
        for step, (x, y) in enumerate(self.train_loader):
            if step >= self.steps_per_epoch:
                break
            self.progress.mark(f"epoch {epoch + 1} step {step + 1}")
            x = x.to(device, non_blocking=True)
            if self.cfg.train.channels_last:
                x = x.contiguous(memory_format=torch.channels_last)
            self._copy_buffers()
            yield step, x, y.to(device, non_blocking=True)

    def _copy_buffers(self) -> None:
        """Copy the step module's buffers (batch-norm running statistics) into ``buffer_copies``."""
        if not self.guard_buffers:
            return
        if self.buffer_copies is None:
            self.buffer_copies = [b.detach().clone() for b in self.guard_buffers]
        else:
            torch._foreach_copy_(self.buffer_copies, self.guard_buffers)

    def _restore_buffers(self) -> None:
        """Undo what the forward pass of a skipped step wrote into the buffers."""
        if self.guard_buffers and self.buffer_copies is not None:
            with torch.no_grad():
                torch._foreach_copy_(self.guard_buffers, self.buffer_copies)

    def _guarded_step(self, loss: torch.Tensor, opt, scaler, epoch: int, step: int, skipped: int) -> bool:
        """Backward (scaled under fp16), NaN/Inf guard, clipping and the optimizer step; False if skipped.

        The skip decision is all-reduced so every rank skips together; the first three skips of an epoch are
        logged. A skipped step restores the buffers its forward pass changed. Consecutive skips are counted
        (not the float16 loss-scale back-offs while the scale is >= 1, i.e. a finite loss whose scaled gradients
        overflowed: the GradScaler's normal search); at ``train.max_skipped_steps`` the run stops with
        :class:`TrainingDivergedError`.
        """
        t = self.cfg.train
        if scaler is not None:
            scaler.scale(loss).backward()
            scaler.unscale_(opt)
        else:
            loss.backward()
        grads = [p.grad for p in self.params if p.grad is not None]
        gnorm = torch.nn.utils.get_total_norm(grads) if grads else torch.zeros((), device=loss.device)
        flags = torch.stack([~torch.isfinite(loss.detach()), ~torch.isfinite(gnorm)]).to(torch.float32)
        all_reduce_sum(flags, self.dist)  # [ranks with a non-finite loss, ranks with a non-finite grad norm]
        bad_loss, bad_grad = (bool(f > 0) for f in flags.tolist())
        if bad_loss or bad_grad:
            self._restore_buffers()
            backoff = scaler is not None and not bad_loss  # fp16: the scaled gradients overflowed
            if not (backoff and scaler.get_scale() >= 1.0):
                self.consecutive_skips += 1
            where = f"at epoch {epoch + 1} step {step + 1}"
            if skipped < 3:
                if backoff:  # the usual start-up back-off of fp16
                    self.rec.log(f"float16 gradient overflow {where} at loss scale {scaler.get_scale():g}; step "
                                 "skipped, the GradScaler halves the scale")
                else:
                    self.rec.log(f"warning: non-finite loss/gradient {where} (loss {loss.item():.4g}, grad norm "
                                 f"{gnorm.item():.4g}); step skipped")
            limit = self.cfg.train.max_skipped_steps
            if limit is not None and self.consecutive_skips >= limit:
                raise TrainingDivergedError(
                    f"training diverged: {self.consecutive_skips} consecutive steps had a non-finite loss or "
                    f"gradient (the last {where}, loss {loss.item():.4g}, grad norm {gnorm.item():.4g}); the run "
                    f"stopped and {self._saved_epoch_text()}. Lower optim.lr (now {self.cfg.optim.lr:g}), set "
                    "train.grad_clip_norm, or raise train.max_skipped_steps if the skips are expected"
                )
            return False
        self.consecutive_skips = 0
        if t.grad_clip_norm is not None:
            torch.nn.utils.clip_grads_with_norm_(self.params, t.grad_clip_norm, gnorm)
        if t.grad_clip_value is not None:  # HIER: every gradient element clamped to [-v, v]
            torch.nn.utils.clip_grad_value_(self.params, t.grad_clip_value)
        if scaler is not None:
            scaler.step(opt)
        else:
            opt.step()
        return True

    def _train_epoch(self, epoch: int) -> dict[str, Any]:
        device = self.device
        model = self.ddp if self.ddp is not None else self.model
        model.train()
        self._reseed_epoch(epoch)
        opt, sched, scaler = self.optimizer, self.scheduler, self.scaler
        stats = torch.zeros(3, dtype=torch.float64, device=device)  # loss sum, correct, count
        skipped = 0
        bar = self._progress(epoch)
        autocast = (torch.autocast(device.type, dtype=self.amp_dtype) if self.amp_dtype is not None
                    else contextlib.nullcontext())
        t0 = time.perf_counter()
        for step, x, y in self._train_batches():
            with autocast:
                out = model(x)
            loss = self.criterion(out.float(), y)
            if not self._guarded_step(loss, opt, scaler, epoch, step, skipped):
                skipped += 1
            else:
                with torch.no_grad():
                    stats[0] += loss.detach().double() * y.numel()
                    stats[1] += (out.detach().argmax(1) == y).sum()
                    stats[2] += y.numel()
            if scaler is not None:
                scaler.update()
            opt.zero_grad(set_to_none=True)
            sched.step()
            if bar is not None:
                bar.update(1)
                if step % 10 == 0 or step + 1 == self.steps_per_epoch:
                    n = max(stats[2].item(), 1)
                    bar.set_postfix(loss=f"{stats[0].item() / n:.3f}", acc=f"{100 * stats[1].item() / n:.1f}%")
        if bar is not None:
            bar.close()
        skipped_t = torch.tensor([float(skipped)], device=device)
        all_reduce_sum(stats, self.dist)
        all_reduce_sum(skipped_t, self.dist)
        elapsed = time.perf_counter() - t0
        loss_sum, correct, n = stats.tolist()
        return {
            "epoch": epoch + 1,
            "train_loss": loss_sum / n if n else math.nan,
            "train_acc": correct / n if n else math.nan,
            "throughput": n / elapsed if elapsed > 0 else 0.0,
            "skipped_steps": int(skipped_t.item() / self.dist.world_size),
            "epoch_time": elapsed,
        }

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

    def _run_facts(self, train_time: float) -> dict[str, Any]:
        """Summary entries every run has: curvatures, skipped steps, training time, world size."""
        return {"curvatures": curvatures(self.model),
                "skipped_steps": int(sum(r.get("skipped_steps", 0) for r in self.history)),
                "train_time": train_time, "world_size": self.dist.world_size,
                **({"resumes": self.resumes} if self.resumes else {})}

    def _publish_summary(self, summary: dict[str, Any], trained: nn.Module) -> dict[str, Any]:
        """Add the DDP check (a digest of ``trained``'s parameters per rank), write ``summary.json`` and log the
        summary table; returns ``summary``."""
        if self.dist.distributed:
            digests = all_gather_object(params_digest(trained), self.dist)
            summary["ddp"] = {"param_digests": digests, "params_identical": len(set(digests)) == 1}
        self.rec.write_json("summary.json", summary)
        self.rec.log(self._summary_table(summary))
        return summary

    def _summary_tail(self, s: dict[str, Any]) -> list[tuple[str, str]]:
        """The summary table's last rows (curvatures, skipped steps, DDP check, time, run directory)."""
        rows = [(f"curvature K {name}", f"{k:.4f}") for name, k in s["curvatures"].items()]
        if s["skipped_steps"]:
            rows.append(("skipped steps", str(s["skipped_steps"])))
        if "ddp" in s:
            rows.append(("DDP ranks in sync", str(s["ddp"]["params_identical"])))
        return rows + [("train time", f"{s['train_time']:.1f} s"), ("run directory", s["run_dir"])]

    def _summary_table(self, s: dict[str, Any]) -> str:
        def pct(v: float | None) -> str:
            return "-" if v is None else f"{100 * v:.2f} %"

        rows = [("model", s["model"]), ("dataset", s["dataset"]), ("epochs", str(s["epochs"])),
                ("train accuracy", pct(s["train_acc"])), ("test accuracy", pct(s["test_acc"]))]
        if "best_val_acc" in s:
            rows += [("best val accuracy", f"{pct(s['best_val_acc'])} (epoch {s['best_epoch']})"),
                     ("test acc. of best", pct(s["test_acc_best"]))]
        return format_table(rows + self._summary_tail(s), title="lorentzcv train: summary")


def train(cfg: Config | None = None, *, resume: str | os.PathLike[str] | None = None,
          stream: Any = None) -> dict[str, Any]:
    """Run a training (``Config()``: the digits demo) and return its summary dict.

    Args:
        cfg: The configuration; with ``resume`` it defaults to the run's own (:func:`resume_config`).
        resume: A run directory (or checkpoint) to continue.
        stream: Console stream for log lines.
    """
    if cfg is None:
        cfg = resume_config(resume) if resume is not None else Config()
    if getattr(cfg, "task", "classification") == "metric":  # metric learning (lorentzcv.train.metric)
        from .metric import MetricTrainer

        return MetricTrainer(cfg, resume=resume, stream=stream).run()
    return Trainer(cfg, resume=resume, stream=stream).run()


# ------------------------------------------------------------------------------------ checkpoints
def evaluate_checkpoint(checkpoint: str | os.PathLike[str], *, data_root: str | None = None,
                        split: str = "test", device: str = "auto", batch_size: int | None = None,
                        overrides: Sequence[str] = ()) -> dict[str, Any]:
    """Evaluate a checkpoint (file or run directory, ``best.pt`` preferred there) on a split of its dataset.

    Returns ``{"checkpoint", "dataset", "split", "loss", "acc", "n", "epoch"}``; for a metric-learning checkpoint
    (``task: metric``) the retrieval metrics instead (:func:`lorentzcv.train.metric.evaluate_metric_checkpoint`).
    """
    path = find_checkpoint(checkpoint, "best.pt")
    state = load_checkpoint(path, map_location="cpu")
    if state["config"].get("task") == "metric":  # Recall@K / MAP@R (lorentzcv.train.metric)
        from .metric import evaluate_metric_state

        return evaluate_metric_state(path, state, data_root=data_root, split=split, device=device,
                                     batch_size=batch_size, overrides=overrides)
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
