"""The training loop every task runs: run directory, AMP, guards, DDP, checkpoints, resume, metrics.

:class:`Engine` knows no task. A task (:mod:`lorentzcv.train.classification`, :mod:`lorentzcv.train.metric`)
subclasses it and fills in its hooks: what to build (``_setup``: data, model, optimizer, schedule), what one
training step's loss is and what it adds to the epoch's statistics, how an epoch is evaluated and which epoch
is the best, and the run's summary. :class:`Task` names a task's trainer, its checkpoint evaluation and its
inference model; :mod:`lorentzcv.train.tasks` picks one by name (``task:`` in the config).

What every run gets from the loop:

- **Order**: the training order is a function of ``(seed, epoch)`` only: every epoch reseeds
  torch/numpy/python, the loader's generator and the task's sampler (``set_epoch``) from ``(seed, epoch,
  rank)``, so augmentations and worker seeds do not depend on what ran before.
- **Steps** scheduled per iteration (:mod:`.schedule`).
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
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import nn
from torch.utils.data import DataLoader, Dataset

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
from .common import ShardSampler, curvatures, derive_seed, resolve_amp
from .config import AnyConfig, ConfigError, config_to_dict, save_config
from .distributed import (
    ProgressBoard,
    all_gather_object,
    all_reduce_sum,
    broadcast_object,
    init_distributed,
    is_timeout,
    params_digest,
    shutdown,
    timeout_error,
)
from .recorder import RunRecorder
from .rundir import clear_run_files, new_run_dir, occupied_error, resume_changes, with_resolved_root

__all__ = ["Engine", "Task", "TrainingDivergedError"]


#: ``(loss, outputs)`` of one training step (the outputs go to :meth:`Engine._accumulate`).
StepResult = tuple[torch.Tensor, Any]


class TrainingDivergedError(ValueError):
    """A run stopped because it diverged: too many consecutive non-finite steps, or a non-finite parameter,
    buffer or optimizer state. Nothing non-finite was checkpointed; ``last.pt`` keeps the last finite epoch."""


class Engine:
    """Runs one training run of a task (see the module docstring); the task subclasses it.

    A task sets ``task_name`` and implements the hooks that raise ``NotImplementedError`` here: :meth:`_setup`
    (ending with :meth:`_open_run` and :meth:`_wrap_ddp`), :meth:`_describe`, :meth:`_step_loss`,
    :meth:`_accumulate`, :meth:`_epoch_metrics`, :meth:`_evaluate_epoch`, :meth:`_finish`,
    :meth:`_summary_table` and :meth:`_format_row`; ``stat_size`` is the length of its per-epoch statistics.

    Args:
        cfg: The run configuration.
        resume: A run directory (or its ``last.pt``) to continue; ``cfg`` should then be its config
            (:func:`~lorentzcv.train.rundir.resume_config`).
        stream: Console stream for the log lines (default stdout).
    """

    task_name = ""
    #: Length of the float64 statistics a training epoch accumulates (:meth:`_accumulate`).
    stat_size = 1

    def __init__(self, cfg: AnyConfig, resume: str | os.PathLike[str] | None = None,
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
            run_dir = new_run_dir(self.cfg)
            answer = (str(run_dir), None if self.cfg.output.overwrite else occupied_error(run_dir))
        run_dir, error = broadcast_object(answer, d)
        if error is not None:
            raise ConfigError(error)
        self.run_dir = Path(run_dir)

    def _release(self) -> None:
        """Drop DDP (its reducer hooks live on the parameters, so the model and everything holding parameters
        go too) and the optimizer before the process group goes away (``docs/ecosystem.md`` §5). Subclasses holding
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
        """Build data, loaders (``train_loader``, ``train_sampler`` with ``set_epoch``, ``loader_gen``), model,
        optimizer, scheduler and ``params``; then call :meth:`_open_run` and :meth:`_wrap_ddp`. Task hook."""
        raise NotImplementedError

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
                clear_run_files(self.run_dir)
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

    def _checkpoint_meta(self) -> dict[str, Any]:
        """The checkpoint's ``meta``: what rebuilding the model needs without the data, and the run's facts."""
        d = self.data
        return {"num_classes": d["num_classes"], "in_chans": d["in_chans"], "img_size": d["img_size"],
                "world_size": self.dist.world_size, "torch": str(torch.__version__)}

    def _checkpoint_state(self, epoch: int) -> dict[str, Any]:
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
            "meta": self._checkpoint_meta(),
        }

    # ------------------------------------------------------------------------------------- loop
    def _run(self) -> dict[str, Any]:
        self._setup()
        t = self.cfg.train
        self.rec.log(f"run: {self.run_dir}" if self.state is None
                     else f"resuming {self.run_dir} after epoch {self.start_epoch}")
        self.rec.log(self._describe())
        t_start = time.perf_counter()
        for epoch in range(self.start_epoch, t.epochs):
            row = self._train_epoch(epoch)
            self._check_finite_state(epoch, row)
            self.progress.mark(f"epoch {epoch + 1} evaluation")
            improved = self._evaluate_epoch(epoch, row)
            self._end_epoch(row, epoch, improved)
        return self._finish(time.perf_counter() - t_start)

    def _describe(self) -> str:
        """The opening log line after ``run: DIR``: model, data sizes and :meth:`_run_settings`. Task hook."""
        raise NotImplementedError

    def _evaluate_epoch(self, epoch: int, row: dict[str, Any]) -> bool:
        """Evaluate after ``epoch`` (add the figures to ``row``, stop a diverged run with :meth:`_check_outputs`)
        and return whether it is the best so far on the validation split (``self.best`` updated). Task hook."""
        raise NotImplementedError

    def _test_due(self, epoch: int) -> bool:
        """Whether the test split is evaluated after ``epoch``: every ``train.eval_test_every`` epochs, and
        after the last."""
        t = self.cfg.train
        return epoch + 1 == t.epochs or bool(t.eval_test_every and (epoch + 1) % t.eval_test_every == 0)

    def _run_settings(self) -> str:
        """The optimizer, schedule, epochs, device(s) and AMP part of the run's opening log line."""
        cfg, d = self.cfg, self.dist
        return (f"optim {cfg.optim.name} lr {cfg.optim.lr:g} | {cfg.schedule.name} | {cfg.train.epochs} epochs "
                f"| device {self.device}" + (f" x{d.world_size} ({d.backend})" if d.distributed else "")
                + (f" | amp {self.amp_dtype}" if self.amp_dtype is not None else ""))

    def _end_epoch(self, row: dict[str, Any], epoch: int, improved: bool) -> None:
        """Add the learning rates and curvatures to ``row`` and log it; on the main rank write ``best.pt`` (when
        the validation metric ``improved``), then ``last.pt``, then record the row in the metrics files.

        ``best.pt`` goes first so that ``last.pt`` (what a resume reads) never names a best epoch whose file was
        not written; the metrics files never hold an epoch the checkpoints do not.
        """
        row.update(self._lrs())
        row.update({f"K/{n}": k for n, k in curvatures(self.model).items()})
        self.history.append(row)
        self.rec.log(self._format_row(row, self.cfg.train.epochs))
        self.progress.mark(f"epoch {epoch + 1} checkpoint")
        if self.dist.is_main and self.cfg.output.checkpoints:
            state = self._checkpoint_state(epoch + 1)
            if improved:
                save_checkpoint(state, self.run_dir / "best.pt")
            save_checkpoint(state, self.run_dir / "last.pt")
        self.rec.add(row)

    def _format_row(self, row: dict[str, Any], epochs: int) -> str:
        """The log line of an epoch's row. Task hook."""
        raise NotImplementedError

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
        """One epoch of guarded steps (:meth:`_step_loss` under autocast, :meth:`_guarded_step`, the scaler, the
        per-iteration schedule); returns its row: ``epoch``, the task's :meth:`_epoch_metrics`, ``throughput``,
        ``skipped_steps`` and ``epoch_time`` (statistics summed over ranks)."""
        device = self.device
        module = self.ddp if self.ddp is not None else self.step_module
        module.train()
        self._reseed_epoch(epoch)
        self._begin_epoch(epoch)
        opt, sched, scaler = self.optimizer, self.scheduler, self.scaler
        stats = torch.zeros(self.stat_size, dtype=torch.float64, device=device)
        skipped = 0
        bar = self._progress(epoch)
        autocast = (torch.autocast(device.type, dtype=self.amp_dtype) if self.amp_dtype is not None
                    else contextlib.nullcontext())
        t0 = time.perf_counter()
        for step, x, y in self._train_batches():
            loss, out = self._step_loss(module, x, y, autocast)
            if not self._guarded_step(loss, opt, scaler, epoch, step, skipped):
                skipped += 1
            else:
                with torch.no_grad():
                    self._accumulate(stats, loss, out, y)
            if scaler is not None:
                scaler.update()
            opt.zero_grad(set_to_none=True)
            sched.step()
            if bar is not None:
                bar.update(1)
                if step % 10 == 0 or step + 1 == self.steps_per_epoch:
                    bar.set_postfix(self._postfix(stats))
        if bar is not None:
            bar.close()
        skipped_t = torch.tensor([float(skipped)], device=device)
        all_reduce_sum(stats, self.dist)
        all_reduce_sum(skipped_t, self.dist)
        elapsed = time.perf_counter() - t0
        metrics, n = self._epoch_metrics(stats)
        return {"epoch": epoch + 1, **metrics, "throughput": n / elapsed if elapsed > 0 else 0.0,
                "skipped_steps": int(skipped_t.item() / self.dist.world_size), "epoch_time": elapsed}

    def _begin_epoch(self, epoch: int) -> None:
        """Called before the first step of ``epoch`` (after the reseed); a task may seed its own generators."""

    def _step_loss(self, module: nn.Module, x: torch.Tensor, y: torch.Tensor,
                   autocast: contextlib.AbstractContextManager) -> StepResult:
        """The float32 loss of one batch through ``module`` (DDP/compile-wrapped ``step_module``) and the outputs
        :meth:`_accumulate` needs; ``autocast`` is the run's autocast context. Task hook."""
        raise NotImplementedError

    def _accumulate(self, stats: torch.Tensor, loss: torch.Tensor, out: Any, y: torch.Tensor) -> None:
        """Add a finished step's figures to the epoch's ``stats`` (under ``no_grad``). Task hook."""
        raise NotImplementedError

    def _postfix(self, stats: torch.Tensor) -> dict[str, str]:
        """The progress bar's figures from this rank's running ``stats``. Task hook."""
        raise NotImplementedError

    def _epoch_metrics(self, stats: torch.Tensor) -> tuple[dict[str, float], float]:
        """``(row entries, images trained on)`` from the epoch's ``stats`` summed over ranks. Task hook."""
        raise NotImplementedError

    # ----------------------------------------------------------------------------------- finish
    def _finish(self, train_time: float) -> dict[str, Any]:
        """Build the summary and return :meth:`_publish_summary`'s result. Task hook."""
        raise NotImplementedError

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
        """The summary as a table (:func:`~lorentzcv.train.recorder.format_table`). Task hook."""
        raise NotImplementedError


@dataclass(frozen=True)
class Task:
    """A training task, as :mod:`lorentzcv.train.tasks` chooses it by ``name`` (the config's ``task``).

    Attributes:
        name: ``"classification"``, ``"metric"``, ...
        trainer: its :class:`Engine` subclass, ``trainer(cfg, resume=, stream=)``.
        evaluate_state: ``evaluate_state(path, state, *, data_root, split, device, batch_size, overrides)``: the
            evaluation of a loaded checkpoint ``state`` read from ``path`` (``lorentzcv eval``).
        inference_model: ``inference_model(cfg, meta) -> (model, (C, H, W))``: the untrained model a config and
            a checkpoint's ``meta`` describe, and its image shape (export, inference).
    """

    name: str
    trainer: type[Engine]
    evaluate_state: Callable[..., dict[str, Any]]
    inference_model: Callable[[AnyConfig, dict[str, Any]], tuple[nn.Module, tuple[int, int, int]]]
