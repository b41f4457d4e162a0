"""Training: typed config, the training loop (AMP, DDP, checkpoints, metrics), evaluation.

Classification (:mod:`.engine`) and metric learning (``task: metric``: HIER / LHIER, :mod:`.metric`) share the
config machinery, the CLI and the engine.

>>> from lorentzcv.train import load_config, train
>>> cfg = load_config("configs/classification/table2/cifar10_hecnn_resnet18.yaml", ["data.root=~/data"])
>>> summary = train(cfg)                  # or: lorentzcv train CONFIG --set data.root=~/data

``train(Config())`` (``lorentzcv train`` without arguments) is the offline digits demo. See
:mod:`lorentzcv.train.engine` for what a run does and writes, and :mod:`lorentzcv.train.config` for the
configuration schema. A run that diverges stops with :class:`TrainingDivergedError`, a distributed run whose
collective times out with :class:`DDPTimeoutError` (both one-line errors; the last finite checkpoint is kept).
"""

from .checkpoint import CheckpointError, find_checkpoint, load_checkpoint, save_checkpoint
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
from .engine import (
    Trainer,
    TrainingDivergedError,
    build_datasets,
    build_model,
    build_optimizer,
    curvatures,
    evaluate,
    evaluate_checkpoint,
    resume_config,
    train,
)
from .metric import (
    MetricTrainer,
    build_metric_datasets,
    build_metric_model,
    build_metric_optimizer,
    build_objective,
    create_trainer,
    evaluate_metric_checkpoint,
    metric_param_groups,
)
from .schedule import LRScheduler, schedule_factor
from .tasks import build_inference_model

__all__ = [
    "Config", "ModelConfig", "DataConfig", "OptimConfig", "ScheduleConfig", "TrainConfig", "OutputConfig",
    "ConfigError", "CheckpointError", "TrainingDivergedError", "DDPTimeoutError", "load_config", "config_from_dict", "config_to_dict", "save_config",
    "Trainer", "train", "evaluate", "evaluate_checkpoint", "resume_config", "build_datasets", "build_model",
    "build_optimizer", "curvatures", "LRScheduler", "schedule_factor", "load_checkpoint", "save_checkpoint",
    "MetricRunConfig", "MetricModelConfig", "MetricDataConfig", "LossConfig", "MetricConfig", "MetricTrainer",
    "create_trainer", "build_metric_datasets", "build_metric_model", "build_objective", "build_metric_optimizer",
    "metric_param_groups", "evaluate_metric_checkpoint", "build_inference_model", "find_checkpoint",
]
