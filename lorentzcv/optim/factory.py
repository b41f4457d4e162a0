"""``create_optimizer``: parameter groups by type, then a Riemannian or torch optimizer.

See ``docs/design.md`` §3, §4.5.

Groups (each has a ``"name"`` key; empty groups are left out):

- ``decay``: Euclidean parameters with ``ndim >= 2``; lr ``lr``, decay ``weight_decay``.
- ``no_decay``: Euclidean parameters with ``ndim <= 1`` (biases, norm weights, scalars) and the names a model
  lists in its optional ``no_weight_decay()``; lr ``lr``, decay 0.
- ``manifold``: every ``ManifoldParameter`` (also geoopt's, detected by duck typing: a tensor with a non-Euclidean
  ``.manifold``); lr ``manifold_lr or lr``, decay ``weight_decay``.
- ``curvature``: each trainable ``Lorentz.k`` (deduplicated; geoopt's ``Lorentz`` too, with the default bounds
  ``(0.05, 20)``), flagged ``"curvature": True`` with ``"bounds"``
  (one ``(k_min, k_max)`` per ``k``); lr ``curvature_lr``, decay ``curvature_weight_decay``.

Membership is decided by type (``isinstance``) and identity, never by matching parameter names (except the
names a model lists itself in its optional ``no_weight_decay()`` hook, timm's convention).
"""

from __future__ import annotations

import warnings
from collections.abc import Iterable

import torch
from torch import nn

from ..geometry import Lorentz
from .curvature import DEFAULT_BOUNDS, _geoopt_class, manifold_of
from .radamw import RiemannianAdamW
from .rsgd import RiemannianSGD

__all__ = ["create_optimizer", "param_groups", "OPTIMIZERS"]

OPTIMIZERS = {
    "rsgd": RiemannianSGD,
    "radamw": RiemannianAdamW,
    "sgd": torch.optim.SGD,
    "adamw": torch.optim.AdamW,
}


def _is_lorentz(m: object) -> bool:
    """A lorentzcv ``Lorentz`` or geoopt's (same ``k`` convention; detected without importing geoopt)."""
    return isinstance(m, Lorentz) or (m is not None and _geoopt_class(m, "Lorentz")
                                      and isinstance(getattr(m, "k", None), torch.Tensor))


def _on_manifold(p: torch.Tensor) -> bool:
    """Whether ``p`` carries a non-Euclidean ``.manifold`` (unsupported ones too: the optimizer then refuses them)."""
    try:
        return manifold_of(p) is not None
    except ValueError:
        return True


def param_groups(
    model_or_params: nn.Module | Iterable[torch.Tensor], lr: float, weight_decay: float, *,
    curvature_lr: float = 1e-4, curvature_weight_decay: float = 0.0, manifold_lr: float | None = None,
) -> list[dict]:
    """Split trainable parameters into the groups of the module docstring.

    Args:
        model_or_params: a module (``Lorentz`` submodules give the curvatures; an optional
            ``no_weight_decay()`` method returns parameter names to exempt from decay) or an iterable of
            parameters (then a parameter is a curvature when it is ``p.manifold.k`` of one of the given
            ``ManifoldParameter``\\ s).
        lr, weight_decay: for the Euclidean groups.
        curvature_lr, curvature_weight_decay: for the curvature group.
        manifold_lr: for the manifold group (default ``lr``).

    Returns:
        a list of parameter-group dicts, each with ``"name"``; the curvature group also has
        ``"curvature": True`` and ``"bounds"`` (one ``(k_min, k_max)`` per parameter).
    """
    if isinstance(model_or_params, nn.Module):
        named = [(n, p) for n, p in model_or_params.named_parameters() if p.requires_grad]
        skip = set()
        hook = getattr(model_or_params, "no_weight_decay", None)
        if callable(hook):
            skip = set(hook())
        curv = {}
        for mod in model_or_params.modules():
            if _is_lorentz(mod) and mod.k.requires_grad:
                curv.setdefault(id(mod.k), (mod.k, getattr(mod, "bounds", DEFAULT_BOUNDS)))
    else:
        params = list(model_or_params)
        if any(isinstance(p, dict) for p in params):
            raise ValueError("create_optimizer takes a module or an iterable of tensors, not group dicts")
        seen: set[int] = set()
        named = []
        for p in params:
            if p.requires_grad and id(p) not in seen:
                seen.add(id(p))
                named.append(("", p))
        skip = set()
        curv = {}
        for _, p in named:
            man = getattr(p, "manifold", None)
            if _is_lorentz(man) and man.k.requires_grad and id(man.k) in seen:
                curv.setdefault(id(man.k), (man.k, getattr(man, "bounds", DEFAULT_BOUNDS)))

    decay, no_decay, manifold, curvature, bounds = [], [], [], [], []
    for name, p in named:
        if id(p) in curv:
            continue
        if _on_manifold(p):
            manifold.append(p)
        elif p.ndim <= 1 or name in skip:
            no_decay.append(p)
        else:
            decay.append(p)
    trainable = {id(p) for _, p in named}
    for k, b in curv.values():
        if id(k) in trainable:  # a Lorentz reachable from the model whose k is a trainable parameter of it
            curvature.append(k)
            bounds.append(tuple(b))

    groups = [
        {"name": "decay", "params": decay, "lr": lr, "weight_decay": weight_decay},
        {"name": "no_decay", "params": no_decay, "lr": lr, "weight_decay": 0.0},
        {"name": "manifold", "params": manifold, "lr": manifold_lr if manifold_lr is not None else lr,
         "weight_decay": weight_decay},
        {"name": "curvature", "params": curvature, "lr": curvature_lr, "weight_decay": curvature_weight_decay,
         "curvature": True, "bounds": bounds},
    ]
    return [g for g in groups if g["params"]]


def create_optimizer(
    model_or_params: nn.Module | Iterable[torch.Tensor], name: str, lr: float, weight_decay: float = 0.0,
    curvature_lr: float = 1e-4, curvature_weight_decay: float = 0.0, manifold_lr: float | None = None,
    **kwargs,
) -> torch.optim.Optimizer:
    """Build an optimizer with parameter groups by type (module docstring; ``docs/design.md`` §3, §4.5).

    Args:
        model_or_params: a module or an iterable of parameters (see :func:`param_groups`).
        name: ``"rsgd"`` (:class:`RiemannianSGD`), ``"radamw"`` (:class:`RiemannianAdamW`), or the Euclidean
            baselines ``"sgd"``/``"adamw"`` (torch's own optimizers; curvatures still get their own group,
            ``ManifoldParameter``\\ s would get Euclidean steps and trigger a warning).
        lr, weight_decay: learning rate and weight decay of the Euclidean and manifold groups.
        curvature_lr, curvature_weight_decay: of the curvature group (``k > 0``, ``K = -1/k``).
        manifold_lr: learning rate of the ``ManifoldParameter`` group (default ``lr``).
        **kwargs: passed to the optimizer (``momentum``, ``nesterov``, ``betas``, ``eps``, ``amsgrad``,
            ``stabilize``, ``curvature_mode`` (``"aware"``, ``"naive"``, ``"naive_repaired"``; see
            :mod:`lorentzcv.optim.curvature`), ``curvature_move``, ``foreach``, …).

    Raises:
        ValueError: unknown ``name`` (the message lists the valid names).
    """
    key = name.lower() if isinstance(name, str) else name
    if key not in OPTIMIZERS:
        raise ValueError(f"unknown optimizer {name!r}; valid names: {', '.join(sorted(OPTIMIZERS))}")
    groups = param_groups(model_or_params, lr, weight_decay, curvature_lr=curvature_lr,
                          curvature_weight_decay=curvature_weight_decay, manifold_lr=manifold_lr)
    cls = OPTIMIZERS[key]
    if key in ("sgd", "adamw") and any(g["name"] == "manifold" for g in groups):
        warnings.warn(
            f"{name!r} is a Euclidean optimizer: ManifoldParameters will leave the manifold; "
            "use 'rsgd' or 'radamw'",
            stacklevel=2,
        )
    return cls(groups, lr=lr, weight_decay=weight_decay, **kwargs)
