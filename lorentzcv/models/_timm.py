"""The lorentzcv classifiers in timm's registry: ``timm.create_model("hecnn_resnet18")`` after ``import lorentzcv``.

Every model of :func:`lorentzcv.models.list_models` is registered with ``timm.models.register_model`` under

- ``lorentzcv_<name>`` (always; ``timm.list_models("lorentzcv_*")`` lists them all), and
- ``<name>`` itself when timm has no model of that name: ``hybrid_resnet18/50``, ``hcnn_resnet18``,
  ``hecnn_resnet18/50``. The Euclidean baselines ``resnet18``/``resnet50`` keep timm's own models (they are
  different networks, with other weights); ours are ``lorentzcv_resnet18``/``lorentzcv_resnet50``.

The timm entrypoints call :func:`lorentzcv.models.create_model` (the one way models are built) through timm's
``build_model_with_cfg``, so timm's keywords work::

    import lorentzcv, timm

    m = timm.create_model("hecnn_resnet18", num_classes=100, img_size=32, drop_rate=0.1, drop_path_rate=0.05)
    f = timm.create_model("hecnn_resnet18", features_only=True, out_indices=(2, 4), img_size=32)   # feature maps
    e = timm.create_model("hecnn_resnet18", num_classes=0)           # pooled features (decoder Lorentz points)
    w = timm.create_model("hecnn_resnet18", num_classes=10, img_size=32, width=8, pretrained=True,
                          pretrained_cfg_overlay=dict(file="runs/RUN/best.pt"))   # local weights

No weights are published: each model's pretrained cfg has no ``url``/``hf_hub_id``, and ``pretrained=True``
without a local ``file`` (or ``state_dict``) in ``pretrained_cfg``/``pretrained_cfg_overlay`` raises a one-line
``ValueError``. A local file may be a lorentzcv checkpoint (``last.pt``/``best.pt``: the weights under
``"model"``), a bare state dict, or ``.safetensors``; it loads strictly, except that a classifier of another size
(or ``num_classes=0``) is left freshly initialised (a warning says so). The cfg's ``input_size`` sets
``img_size`` (and so the stem) unless ``img_size`` is passed. ``features_only=True`` wraps the model in timm's
``FeatureGetterNet`` over :meth:`~lorentzcv.models.ResNet.forward_intermediates` (index 0 = stem, ``i`` =
``layer{i}``); hyperbolic stages return Lorentz points ``(B, 1+C, h, w)`` with the time at channel 0 (curvature
``K = -1/k`` of the encoder manifold), as ``feature_info`` states.

Registration runs when both ``lorentzcv`` and ``timm`` are imported, in either order (:func:`install`).
"""

from __future__ import annotations

import importlib.abc
import importlib.util
import sys
import warnings
from collections.abc import Callable
from pathlib import Path
from typing import Any

from torch import nn

from ._registry import create_model, list_models

__all__ = ["timm_names", "register_timm_models", "install", "PREFIX"]

PREFIX = "lorentzcv_"
_IMAGENET_MEAN = (0.485, 0.456, 0.406)
_IMAGENET_STD = (0.229, 0.224, 0.225)

#: timm pretrained cfgs by timm name (timm's ``register_model`` reads the module's ``default_cfgs``).
default_cfgs: dict[str, dict[str, Any]] = {}
_registered: dict[str, str] = {}  # timm name -> lorentzcv name


def _cfg(name: str) -> dict[str, Any]:
    return dict(
        url="", num_classes=1000, input_size=(3, 224, 224), pool_size=None, crop_pct=0.875,
        interpolation="bilinear", mean=_IMAGENET_MEAN, std=_IMAGENET_STD, first_conv=None, classifier=None,
        license="mit", architecture=name,
        description=f"lorentzcv {name} (lorentzcv.models.create_model); no published weights",
        notes=("load local weights with pretrained=True, pretrained_cfg_overlay=dict(file=PATH)",),
    )


def timm_names(name: str, taken: Callable[[str], bool] | None = None) -> list[str]:
    """The timm names of lorentzcv model ``name``: ``lorentzcv_<name>``, and ``<name>`` unless ``taken(name)``
    (default: timm already has a model of that name that is not ours)."""
    if taken is None:
        import timm

        def taken(n: str) -> bool:
            return timm.is_model(n) and n not in _registered

    return [PREFIX + name] + ([] if taken(name) else [name])


def _has_weights_source(cfg: Any) -> bool:
    return any(getattr(cfg, k, None) for k in ("url", "file", "state_dict", "hf_hub_id"))


def _num_stages(kwargs: dict[str, Any]) -> int:
    layers = kwargs.get("layers")
    return 4 if layers is None else len(layers)


def _classifier_filter(state_dict: dict[str, Any], model: nn.Module) -> dict[str, Any]:
    """Keep the model's fresh classifier where the checkpoint's has another shape or the model has none."""
    own = model.state_dict()
    body = {k: tuple(v.shape) for k, v in state_dict.items() if not k.startswith("fc.")}
    if body != {k: tuple(v.shape) for k, v in own.items() if not k.startswith("fc.")}:
        return state_dict  # another architecture: let the strict load report it
    out = {k: v for k, v in state_dict.items()
           if not (k.startswith("fc.") and (k not in own or tuple(own[k].shape) != tuple(v.shape)))}
    fresh = [k for k in own if k.startswith("fc.") and k not in out]
    if fresh or len(out) < len(state_dict):
        out.update({k: own[k] for k in fresh})
        warnings.warn(f"the checkpoint's classifier does not match the model's (num_classes="
                      f"{getattr(model, 'num_classes', '?')}); the classifier is freshly initialised", stacklevel=2)
    return out


def _build(timm_name: str, name: str, pretrained: bool = False, **kwargs: Any) -> nn.Module:
    from timm.models import build_model_with_cfg
    from timm.models._builder import resolve_pretrained_cfg

    cfg = resolve_pretrained_cfg(timm_name, kwargs.pop("pretrained_cfg", None),
                                 kwargs.pop("pretrained_cfg_overlay", None))
    cache_dir = kwargs.pop("cache_dir", None)
    if pretrained and not _has_weights_source(cfg):
        raise ValueError(
            f"no pretrained weights are published for {timm_name!r}; load a local checkpoint with "
            f"timm.create_model({timm_name!r}, pretrained=True, pretrained_cfg_overlay=dict(file='runs/RUN/best.pt'))"
        )
    if pretrained and cfg.file and not Path(cfg.file).expanduser().is_file():
        raise FileNotFoundError(f"pretrained weights file {str(cfg.file)!r} does not exist")
    if cfg.file:
        cfg = type(cfg)(**{**cfg.to_dict(), "file": str(Path(cfg.file).expanduser())})
    for key in ("output_stride", "global_pool"):
        if kwargs.get(key) not in (None, "avg", 32):
            raise ValueError(f"{timm_name!r} does not support {key}={kwargs[key]!r}")
        kwargs.pop(key, None)
    if "img_size" not in kwargs and cfg.input_size is not None:
        h, w = cfg.input_size[-2:]
        kwargs["img_size"] = h if h == w else (h, w)
    feature_cfg = dict(feature_cls="getter", out_indices=tuple(range(_num_stages(kwargs) + 1)))
    try:
        return build_model_with_cfg(
            lambda **kw: create_model(name, **kw), timm_name, pretrained, pretrained_cfg=cfg, feature_cfg=feature_cfg,
            pretrained_filter_fn=_classifier_filter, cache_dir=cache_dir, **kwargs,
        )
    except RuntimeError as exc:  # load_state_dict mismatch: make it one line
        lines = [ln.strip() for ln in str(exc).strip().splitlines() if ln.strip()]
        if not lines or "loading state_dict" not in lines[0]:
            raise
        detail = lines[1] if len(lines) > 1 else lines[0]
        raise ValueError(f"the weights in {cfg.file or 'pretrained_cfg'} do not match {timm_name!r} built with "
                         f"{kwargs} ({detail[:200]}); pass the model options the checkpoint was trained with "
                         "(num_classes, img_size, width, layers, ...)") from None


def _entrypoint(timm_name: str, name: str) -> Callable[..., nn.Module]:
    def fn(pretrained: bool = False, **kwargs: Any) -> nn.Module:
        return _build(timm_name, name, pretrained, **kwargs)

    fn.__name__ = fn.__qualname__ = timm_name
    fn.__module__ = __name__
    fn.__doc__ = f"timm entrypoint of lorentzcv's ``{name}`` (calls ``lorentzcv.models.create_model``)."
    return fn


def register_timm_models() -> dict[str, str]:
    """Register every lorentzcv classifier with timm (idempotent); returns ``{timm name: lorentzcv name}``."""
    from timm.models import register_model

    for name in list_models():
        for tname in timm_names(name):
            if _registered.get(tname) == name:
                continue
            default_cfgs[tname] = _cfg(tname)
            fn = _entrypoint(tname, name)
            globals()[tname] = fn
            register_model(fn)
            _registered[tname] = name
    return dict(_registered)


class _RegisterAfterTimmImport(importlib.abc.MetaPathFinder):
    """One-shot import hook: when ``timm`` is imported later, register the models right after it loads."""

    def find_spec(self, fullname: str, path: Any = None, target: Any = None):
        if fullname != "timm":
            return None
        if self in sys.meta_path:
            sys.meta_path.remove(self)
        spec = importlib.util.find_spec("timm")
        if spec is None or spec.loader is None:
            return spec
        spec.loader = _Loader(spec.loader)
        return spec


class _Loader(importlib.abc.Loader):
    def __init__(self, loader: Any) -> None:
        self._loader = loader

    def __getattr__(self, item: str) -> Any:  # resources, get_data, is_package, …
        return getattr(self._loader, item)

    def create_module(self, spec):
        return self._loader.create_module(spec)

    def exec_module(self, module) -> None:
        self._loader.exec_module(module)
        register_timm_models()


def install() -> None:
    """Register with timm now if it is imported, else as soon as it is (without importing it: ``import
    lorentzcv`` stays fast). Called by ``import lorentzcv``."""
    if "timm" in sys.modules:
        register_timm_models()
    elif not any(isinstance(f, _RegisterAfterTimmImport) for f in sys.meta_path):
        sys.meta_path.insert(0, _RegisterAfterTimmImport())
