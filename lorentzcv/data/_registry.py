"""Dataset registry: a name -> (builder, :class:`DatasetInfo`) table filled by :func:`register_dataset`.

Each dataset module decorates its builder with ``@register_dataset(name, info)``; :func:`create_dataset`
(``_factory.py``) looks the name up here. There is no ``if name == ...`` chain anywhere in the package.
"""

from __future__ import annotations

import difflib
import fnmatch
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any

__all__ = ["DatasetInfo", "register_dataset", "get_dataset_info", "list_datasets", "get_dataset_builder"]

_TASKS = ("classification", "metric")


@dataclass(frozen=True)
class DatasetInfo:
    """Static description of a registered dataset.

    Attributes:
        name: Registry name (``create_dataset(name)``).
        task: ``"classification"`` or ``"metric"`` (class-disjoint train/test, evaluated by Recall@K).
        num_classes: Number of classes. An ``int`` when all splits share the label set (classification), a
            ``{split: int}`` mapping for class-disjoint metric splits, or ``None`` when it is only known
            after reading the data (e.g. ``image_folder``).
        in_chans: Number of image channels the default transform produces.
        img_size: Side length (pixels) of the default transform's output.
        mean: Per-channel normalisation mean used by the default transform.
        std: Per-channel normalisation std used by the default transform.
        layout: Multi-line text with the on-disk layout expected under ``root``.
        how_to_get: How to obtain the data (URL, manual steps, package to install).
        splits: Split names the dataset serves natively. ``"val"`` is additionally available for every
            dataset through ``val_fraction > 0`` (held out of ``"train"``).
        transform: Name of the default-transform preset (a key of ``transforms.TRANSFORM_PRESETS``).
        default_root: Root used when ``create_dataset(root=None)`` and that directory exists.
        needs_root: ``False`` for embedded datasets that ignore ``root`` (scikit-learn digits).
        downloadable: ``True`` when ``create_dataset(..., download=True)`` can fetch the data (CIFAR only);
            every other dataset ignores ``download`` and explains in its error how to get the data.
        description: One-line description.
    """

    name: str
    task: str
    num_classes: int | Mapping[str, int] | None
    in_chans: int
    img_size: int
    mean: tuple[float, ...]
    std: tuple[float, ...]
    layout: str
    how_to_get: str
    splits: tuple[str, ...] = ("train", "test")
    transform: str = "imagenet_eval"
    default_root: str | None = None
    needs_root: bool = True
    downloadable: bool = False
    description: str = ""

    def __post_init__(self) -> None:
        if self.task not in _TASKS:
            raise ValueError(f"DatasetInfo.task must be one of {_TASKS}, got {self.task!r}")
        if len(self.mean) != self.in_chans or len(self.std) != self.in_chans:
            raise ValueError(f"{self.name}: mean/std must have in_chans={self.in_chans} entries")


# name -> (builder, info). Filled at import time of the dataset modules (see ``__init__.py``).
_DATASETS: dict[str, tuple[Callable[..., Any], DatasetInfo]] = {}


def register_dataset(name: str, info: DatasetInfo) -> Callable[[Callable[..., Any]], Callable[..., Any]]:
    """Register a dataset builder under ``name``.

    The builder is called as ``builder(root: Path | None, split: str, transform, download: bool, **kwargs)``
    and must return a :class:`lorentzcv.data._base.LabeledDataset`. ``split`` is one of ``info.splits``.

    Args:
        name: Registry name; must equal ``info.name``.
        info: Static description of the dataset.

    Returns:
        A decorator that records the builder and returns it unchanged.

    Raises:
        ValueError: If ``name`` is already registered or differs from ``info.name``.
    """
    if name != info.name:
        raise ValueError(f"register_dataset: name {name!r} != info.name {info.name!r}")

    def decorator(builder: Callable[..., Any]) -> Callable[..., Any]:
        if name in _DATASETS:
            raise ValueError(f"dataset {name!r} is already registered")
        _DATASETS[name] = (builder, info)
        return builder

    return decorator


def _unknown(name: str) -> ValueError:
    names = sorted(_DATASETS)
    close = difflib.get_close_matches(name, names, n=3, cutoff=0.5)
    hint = f" Did you mean {' or '.join(repr(c) for c in close)}?" if close else ""
    return ValueError(f"Unknown dataset {name!r}.{hint} Valid names: {', '.join(names)}.")


def get_dataset_builder(name: str) -> tuple[Callable[..., Any], DatasetInfo]:
    """Return ``(builder, info)`` for ``name``; raise ``ValueError`` with a suggestion if unknown."""
    try:
        return _DATASETS[name]
    except KeyError:
        raise _unknown(name) from None


def get_dataset_info(name: str) -> DatasetInfo:
    """Return the :class:`DatasetInfo` of a registered dataset.

    Raises:
        ValueError: If ``name`` is not registered (the message lists valid names and a close match).
    """
    return get_dataset_builder(name)[1]


def list_datasets(pattern: str = "*", task: str | None = None) -> list[str]:
    """List registered dataset names matching a shell-style ``pattern`` (``fnmatch``), sorted.

    Args:
        pattern: e.g. ``"*"``, ``"cifar*"``, ``"*_dml"``.
        task: Optionally keep only ``"classification"`` or ``"metric"`` datasets.
    """
    return sorted(
        n
        for n, (_, info) in _DATASETS.items()
        if fnmatch.fnmatchcase(n, pattern) and (task is None or info.task == task)
    )
