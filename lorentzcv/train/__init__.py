"""Training: typed config, the training loop (AMP, DDP, checkpoints, metrics), evaluation.

Two tasks run on one generic loop (:mod:`.engine`): classification (:mod:`.classification`) and metric learning
(``task: metric``: HIER / LHIER, :mod:`.metric`); :mod:`.tasks` picks the task by the config's ``task``.

>>> from lorentzcv.train import load_config, train
>>> cfg = load_config("configs/classification/table2/cifar10_hecnn_resnet18.yaml", ["data.root=~/data"])
>>> summary = train(cfg)                  # or: lorentzcv train CONFIG --set data.root=~/data

``train(Config())`` (``lorentzcv train`` without arguments) is the offline digits demo. See
:mod:`lorentzcv.train.engine` for what a run does and writes, :mod:`lorentzcv.train.schema` for the
configuration schema and :mod:`lorentzcv.train.config` for reading it. A run that diverges stops with
:class:`TrainingDivergedError`, a distributed run whose collective times out with :class:`DDPTimeoutError` (both
one-line errors; the last finite checkpoint is kept).

Modules: ``schema`` (config dataclasses), ``config`` (YAML, ``--set``), ``engine`` (the loop), ``common``
(seeds, AMP, shards), ``rundir`` (run directory, resume), ``checkpoint``, ``distributed``, ``recorder``,
``schedule``; the tasks ``classification`` and ``metric`` (with ``metric_optim`` and ``retrieval``); ``tasks``.
"""

from .checkpoint import CheckpointError, find_checkpoint, load_checkpoint, save_checkpoint
from .classification import Trainer, build_datasets, build_model, build_optimizer, evaluate
from .common import curvatures
from .config import (
    Config,
    ConfigError,
    DataConfig,
    LossConfig,
    MetricConfig,
    MetricDataConfig,
    MetricModelConfig,
    MetricRunConfig,
    ModelConfig,
    OptimConfig,
    OutputConfig,
    ScheduleConfig,
    TrainConfig,
    config_from_dict,
    config_to_dict,
    load_config,
    save_config,
)
from .distributed import DDPTimeoutError
from .engine import Engine, Task, TrainingDivergedError
from .metric import (
    MetricTrainer,
    build_metric_datasets,
    build_metric_model,
    build_metric_optimizer,
    build_objective,
    evaluate_metric_checkpoint,
    metric_param_groups,
)
from .rundir import resume_config
from .schedule import LRScheduler, schedule_factor
from .tasks import TASKS, build_inference_model, create_trainer, evaluate_checkpoint, train

__all__ = [
    "Config", "ModelConfig", "DataConfig", "OptimConfig", "ScheduleConfig", "TrainConfig", "OutputConfig",
    "ConfigError", "CheckpointError", "TrainingDivergedError", "DDPTimeoutError", "load_config", "config_from_dict",
    "config_to_dict", "save_config", "Trainer", "train", "evaluate", "evaluate_checkpoint", "resume_config",
    "build_datasets", "build_model", "build_optimizer", "curvatures", "LRScheduler", "schedule_factor",
    "load_checkpoint", "save_checkpoint", "MetricRunConfig", "MetricModelConfig", "MetricDataConfig", "LossConfig",
    "MetricConfig", "MetricTrainer", "create_trainer", "build_metric_datasets", "build_metric_model",
    "build_objective", "build_metric_optimizer", "metric_param_groups", "evaluate_metric_checkpoint",
    "build_inference_model", "find_checkpoint", "Engine", "Task", "TASKS",
]
