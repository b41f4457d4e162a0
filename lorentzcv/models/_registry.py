"""Model registry: ``register_model`` / ``create_model`` / ``list_models`` (timm-style, ``docs/design.md`` §2–§3).

Every architecture is a plain function decorated with :func:`register_model`; its name is the lower_snake
function name (``resnet18``, ``hecnn_resnet18``, …). :func:`create_model` looks the name up, checks the keyword
arguments against the entrypoint's signature and calls it::

    from lorentzcv.models import create_model, list_models

    list_models("*resnet18")             # ['hcnn_resnet18', 'hecnn_resnet18', 'hybrid_resnet18', 'resnet18']
    model = create_model("hecnn_resnet18", num_classes=100, img_size=32, learn_k=False)

Unknown names and unknown keyword arguments raise ``ValueError`` with a suggestion (``docs/design.md`` §5).
"""

from __future__ import annotations

import difflib
import fnmatch
import inspect
from collections.abc import Callable, Iterable
from typing import Any, TypeVar

from torch import nn

__all__ = ["register_model", "create_model", "list_models", "list_embedding_models", "is_model", "model_entrypoint"]

F = TypeVar("F", bound=Callable[..., nn.Module])
_model_entrypoints: dict[str, Callable[..., nn.Module]] = {}


def register_model(fn: F) -> F:
    """Register ``fn`` under its ``__name__`` as a model entrypoint (use as a decorator).

    The entrypoint must accept ``num_classes``, ``in_chans`` and ``img_size`` keyword arguments. Registering
    a second function under an existing name raises ``ValueError``.
    """
    name = fn.__name__
    if name in _model_entrypoints and _model_entrypoints[name] is not fn:
        raise ValueError(f"a model named {name!r} is already registered ({_model_entrypoints[name]!r})")
    _model_entrypoints[name] = fn
    return fn


def _unknown_model_error(name: str) -> ValueError:
    close = difflib.get_close_matches(name, list(_model_entrypoints), n=3, cutoff=0.5)
    hint = f" Did you mean {' or '.join(repr(c) for c in close)}?" if close else ""
    return ValueError(
        f"Unknown model {name!r}.{hint} Available models: {', '.join(sorted(_model_entrypoints))} "
        f"(see lorentzcv.models.list_models())."
    )


def is_model(name: str) -> bool:
    """Whether ``name`` is a registered model."""
    return name in _model_entrypoints


def model_entrypoint(name: str) -> Callable[..., nn.Module]:
    """The registered function for ``name`` (``ValueError`` with close matches if unknown)."""
    try:
        return _model_entrypoints[name]
    except KeyError:
        raise _unknown_model_error(name) from None


def list_models(pattern: str | Iterable[str] = "*", exclude: str | Iterable[str] | None = None) -> list[str]:
    """Sorted names of the registered models matching ``pattern`` (fnmatch wildcards, one or several).

    Args:
        pattern: e.g. ``"*resnet18"``, ``"hecnn_*"`` or a list of patterns (union).
        exclude: patterns to drop from the result.
    """
    return _match(_model_entrypoints, pattern, exclude)


def list_embedding_models(pattern: str | Iterable[str] = "*", exclude: str | Iterable[str] | None = None) -> list[str]:
    """Sorted names of the metric-learning embedding entrypoints
    (:data:`~lorentzcv.models.embedding.EMBEDDING_ENTRYPOINTS`, ``{euclidean,poincare,lorentz}_embed_<backbone>``)
    matching ``pattern``, filtered as :func:`list_models`. They return embeddings, not logits, so they are not
    in the classifier registry; build one with ``EMBEDDING_ENTRYPOINTS[name](embedding_dim=...)`` or
    :func:`~lorentzcv.models.create_embedding_model`."""
    from .embedding import EMBEDDING_ENTRYPOINTS

    return _match(EMBEDDING_ENTRYPOINTS, pattern, exclude)


def _match(names: Iterable[str], pattern: str | Iterable[str], exclude: str | Iterable[str] | None) -> list[str]:
    pats = [pattern] if isinstance(pattern, str) else list(pattern)
    found = {n for n in names for p in pats if fnmatch.fnmatchcase(n, p)}
    if exclude is not None:
        ex = [exclude] if isinstance(exclude, str) else list(exclude)
        found = {n for n in found if not any(fnmatch.fnmatchcase(n, p) for p in ex)}
    return sorted(found)


def _check_kwargs(name: str, fn: Callable[..., Any], kwargs: dict[str, Any]) -> None:
    params = inspect.signature(fn).parameters
    if any(p.kind is inspect.Parameter.VAR_KEYWORD for p in params.values()):
        return
    unknown = [k for k in kwargs if k not in params]
    if unknown:
        accepted = [k for k, p in params.items() if p.kind is not inspect.Parameter.VAR_POSITIONAL]
        hints = {k: difflib.get_close_matches(k, accepted, n=1) for k in unknown}
        hint = "; ".join(f"{k!r} (did you mean {v[0]!r}?)" if v else repr(k) for k, v in hints.items())
        raise ValueError(
            f"create_model({name!r}) got unknown keyword argument(s) {hint}. Accepted: {', '.join(accepted)}."
        )


def create_model(
    model_name: str, pretrained: bool = False, *, num_classes: int = 1000, in_chans: int = 3,
    img_size: int | tuple[int, int] = 224, **kwargs: Any,
) -> nn.Module:
    """Build a registered model.

    Args:
        model_name: a name from :func:`list_models`.
        pretrained: no pretrained weights ship yet; ``True`` raises ``ValueError`` (load a checkpoint with
            ``model.load_state_dict(torch.load(path))`` instead).
        num_classes: classifier outputs; ``0`` builds the model without a classifier (``forward`` returns the
            pooled features — a Lorentz point for hyperbolic decoders).
        in_chans: input image channels (3 for RGB, 1 for digits/Fashion-MNIST).
        img_size: input resolution; selects the stem (``<= 64``: 3×3 stride 1, no pool — CIFAR/Tiny-ImageNet;
            larger: 7×7 stride 2, + 3×3/2 max-pool for Euclidean stems).
        **kwargs: model-specific options (``width``, ``layers``, and for hyperbolic models ``learn_k``,
            ``k_init``, ``separate_decoder``, ``rescale``, ``rescale_s``, ``conv_impl``, ``bn_variant``, …); see
            the entrypoint's docstring.

    Raises:
        ValueError: unknown model name or keyword argument, or ``pretrained=True``.
    """
    fn = model_entrypoint(model_name)
    if pretrained:
        raise ValueError(
            f"no pretrained weights are available for {model_name!r}; build it with pretrained=False and load a "
            "checkpoint with model.load_state_dict(torch.load(path)['model']), or use timm.create_model("
            f"{model_name!r}, pretrained=True, pretrained_cfg_overlay=dict(file=path))"
        )
    _check_kwargs(model_name, fn, kwargs)
    model = fn(num_classes=num_classes, in_chans=in_chans, img_size=img_size, **kwargs)
    return model
