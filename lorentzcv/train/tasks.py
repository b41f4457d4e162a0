"""The training tasks by name, and what chooses one: :func:`train`, :func:`create_trainer`,
:func:`evaluate_checkpoint` and :func:`build_inference_model` read the config's ``task`` (``classification``, the
default, or ``metric``) and hand the work to that task's module. The loop (:mod:`lorentzcv.train.engine`) knows
no task, and no task imports another.

>>> from lorentzcv.train import load_config, train
>>> summary = train(load_config("configs/metric/demo/digits_dml_lhier.yaml"))   # the metric task
"""

from __future__ import annotations

import os
from collections.abc import Mapping, Sequence
from typing import Any

from torch import nn

from . import classification, metric
from .checkpoint import CheckpointError, find_checkpoint, load_checkpoint
from .config import AnyConfig, Config, ConfigError, config_from_dict
from .engine import Engine, Task
from .rundir import resume_config

__all__ = ["TASKS", "get_task", "task_of", "create_trainer", "train", "evaluate_checkpoint", "build_inference_model"]

#: Every task by name (the config's ``task``).
TASKS: dict[str, Task] = {t.name: t for t in (classification.TASK, metric.TASK)}


def get_task(name: str) -> Task:
    """The :class:`~lorentzcv.train.engine.Task` called ``name``."""
    try:
        return TASKS[name]
    except KeyError:
        raise ConfigError(f"unknown task {name!r}; expected one of {', '.join(TASKS)}") from None


def task_of(config: AnyConfig | Mapping[str, Any]) -> Task:
    """The task of a config object or of a config dict (a checkpoint's): its ``task``, else classification."""
    name = config.get("task") if isinstance(config, Mapping) else getattr(config, "task", None)
    return get_task(name or "classification")


def create_trainer(cfg: AnyConfig, resume: str | os.PathLike[str] | None = None, stream: Any = None) -> Engine:
    """The trainer of ``cfg``'s task (:class:`~lorentzcv.train.classification.Trainer`, or
    :class:`~lorentzcv.train.metric.MetricTrainer` for ``task: metric``)."""
    return task_of(cfg).trainer(cfg, resume=resume, stream=stream)


def train(cfg: AnyConfig | None = None, *, resume: str | os.PathLike[str] | None = None,
          stream: Any = None) -> dict[str, Any]:
    """Run a training (``Config()``: the digits demo) and return its summary dict.

    Args:
        cfg: The configuration; with ``resume`` it defaults to the run's own (:func:`resume_config`).
        resume: A run directory (or checkpoint) to continue.
        stream: Console stream for log lines.
    """
    if cfg is None:
        cfg = resume_config(resume) if resume is not None else Config()
    return create_trainer(cfg, resume=resume, stream=stream).run()


def evaluate_checkpoint(checkpoint: str | os.PathLike[str], *, data_root: str | None = None,
                        split: str = "test", device: str = "auto", batch_size: int | None = None,
                        overrides: Sequence[str] = ()) -> dict[str, Any]:
    """Evaluate a checkpoint (file or run directory, ``best.pt`` preferred there) on a split of its dataset.

    Returns ``{"checkpoint", "dataset", "split", "loss", "acc", "n", "epoch", "curvatures"}`` for a classifier
    (:func:`lorentzcv.train.classification.evaluate_state`); for a metric-learning checkpoint (``task: metric``)
    the retrieval metrics instead (:func:`lorentzcv.train.metric.evaluate_metric_state`).
    """
    path = find_checkpoint(checkpoint, "best.pt")
    state = load_checkpoint(path, map_location="cpu")
    return task_of(state["config"]).evaluate_state(path, state, data_root=data_root, split=split, device=device,
                                                   batch_size=batch_size, overrides=overrides)


def build_inference_model(config: AnyConfig | Mapping[str, Any], meta: Mapping[str, Any] | None = None,
                          state: Mapping[str, Any] | None = None) -> tuple[nn.Module, tuple[int, int, int], str]:
    """The model of a run in evaluation mode, with its image shape ``(C, H, W)`` and its task name.

    Args:
        config: the run's config (a config object, or the dict a checkpoint stores).
        meta: the checkpoint's ``meta`` (number of classes, channels, image size); missing facts come from the
            config and the dataset's registry entry (no data is read).
        state: a checkpoint whose ``"model"`` weights are loaded; ``None`` keeps the fresh initialisation
            (no pretrained weights are fetched for metric backbones).

    Raises:
        ConfigError: a fact only the data knows (a classifier's number of classes): export a run instead.
        CheckpointError: the weights do not fit the model of the config.
    """
    cfg = config_from_dict(config) if isinstance(config, Mapping) else config
    task = task_of(cfg)
    model, shape = task.inference_model(cfg, dict(meta or {}))
    if state is not None:
        try:
            model.load_state_dict(state["model"])
        except RuntimeError as exc:
            raise CheckpointError(f"the checkpoint does not match the model of its config "
                                  f"({str(exc).strip().splitlines()[0][:160]})") from None
    return model.eval(), shape, task.name
