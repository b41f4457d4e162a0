"""The training tasks by name: the model a run's config and checkpoint describe, for inference and export."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from torch import nn

from .checkpoint import CheckpointError
from .config import AnyConfig, ConfigError, MetricRunConfig, config_from_dict
from .engine import build_model
from .metric import build_metric_model

__all__ = ["build_inference_model"]


def _dataset_facts(cfg: AnyConfig, meta: Mapping[str, Any]) -> tuple[Any, int, int]:
    """``(num_classes, in_chans, img_size)`` from a checkpoint's ``meta``, else from the dataset's registry entry
    (no data is read)."""
    from ..data import get_dataset_info

    info = get_dataset_info(cfg.data.name)
    img = meta.get("img_size", getattr(cfg.data, "img_size", None) or info.img_size)
    if img is None:
        raise ConfigError(f"the image size of {cfg.data.name!r} is only known from its data; export a trained run "
                          "directory or checkpoint instead of its config")
    return meta.get("num_classes", info.num_classes), int(meta.get("in_chans", info.in_chans)), int(img)


def build_inference_model(config: AnyConfig | Mapping[str, Any], meta: Mapping[str, Any] | None = None,
                          state: Mapping[str, Any] | None = None) -> tuple[nn.Module, tuple[int, int, int], str]:
    """The model of a run in evaluation mode, with its image shape ``(C, H, W)`` and its task name.

    Args:
        config: the run's config (a config object, or the dict a checkpoint stores).
        meta: the checkpoint's ``meta`` (number of classes, channels, image size); missing facts come from the
            dataset's registry entry.
        state: a checkpoint whose ``"model"`` weights are loaded; ``None`` keeps the fresh initialisation
            (no pretrained weights are fetched for metric backbones).

    Raises:
        ConfigError: a classifier whose number of classes is only known from its data (export a run instead).
        CheckpointError: the weights do not fit the model of the config.
    """
    cfg = config if not isinstance(config, Mapping) else config_from_dict(config)
    num_classes, in_chans, img_size = _dataset_facts(cfg, meta or {})
    if isinstance(cfg, MetricRunConfig):
        task = "metric"
        model = build_metric_model(cfg, in_chans, img_size, pretrained=False)
    else:
        task = "classification"
        if not isinstance(num_classes, int):
            raise ConfigError(f"the number of classes of {cfg.data.name!r} is only known from its data; export a "
                              "trained run directory or checkpoint instead of its config")
        model = build_model(cfg, num_classes, in_chans, img_size)
    if state is not None:
        try:
            model.load_state_dict(state["model"])
        except RuntimeError as exc:
            raise CheckpointError(f"the checkpoint does not match the model of its config "
                                  f"({str(exc).strip().splitlines()[0][:160]})") from None
    return model.eval(), (in_chans, img_size, img_size), task
