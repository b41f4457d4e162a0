"""``create_dataset``: registry lookup, root resolution, default transforms and validation hold-outs."""

from __future__ import annotations

import os
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Any

from ._base import LabeledDataset, dataset_not_found
from ._registry import DatasetInfo, get_dataset_builder, get_dataset_info
from ._splits import class_holdout, stratified_holdout
from .transforms import build_transform

__all__ = ["create_dataset", "create_transform", "resolve_root", "DATA_ROOT_ENV"]

#: Environment variable read (at call time) for the data root when ``root=None``.
DATA_ROOT_ENV = "LORENTZCV_DATA"


def resolve_root(info: DatasetInfo, root: str | os.PathLike[str] | None) -> Path | None:
    """Resolve the data root of a dataset.

    Order: the explicit ``root``; else ``info.default_root`` if that directory exists (e.g. Debian's
    ``/usr/share/datasets/fashion-mnist``); else ``$LORENTZCV_DATA``. Embedded datasets
    (``info.needs_root=False``) return ``None`` when no root is given.

    Raises:
        FileNotFoundError: If no root can be found; the message shows the expected layout.
    """
    if root is not None:
        return Path(root).expanduser()
    if not info.needs_root:
        return None
    if info.default_root is not None and Path(info.default_root).is_dir():
        return Path(info.default_root)
    env = os.environ.get(DATA_ROOT_ENV)
    if env:
        return Path(env).expanduser()
    raise dataset_not_found(info, None, f"no root given; pass root=... or set ${DATA_ROOT_ENV}")


def create_transform(name: str, split: str, **kwargs: Any) -> Callable[[Any], Any]:
    """Return the default transform of dataset ``name`` for ``split`` (train augmentation iff split is train).

    ``kwargs`` go to the preset builder, e.g. ``backbone_name="vit_small_patch16_224"`` for metric datasets.
    """
    return build_transform(get_dataset_info(name).transform, split, **kwargs)


def _resolve_transform(
    name: str, split: str, transform: str | Callable[[Any], Any] | None, transform_kwargs: Mapping[str, Any]
) -> Callable[[Any], Any] | None:
    if transform is None or callable(transform):
        return transform
    if transform == "default":
        return create_transform(name, split, **transform_kwargs)
    raise ValueError(f"transform must be 'default', None or a callable, got {transform!r}")


def create_dataset(
    name: str,
    root: str | os.PathLike[str] | None = None,
    split: str = "train",
    transform: str | Callable[[Any], Any] | None = "default",
    download: bool = False,
    val_fraction: float = 0.0,
    seed: int = 0,
    transform_kwargs: Mapping[str, Any] | None = None,
    **kwargs: Any,
) -> LabeledDataset:
    """Create a registered dataset split.

    Args:
        name: Registry name (see :func:`list_datasets`).
        root: Data root holding the layout in ``get_dataset_info(name).layout``. ``None``: the dataset's
            default root if it exists (Fashion-MNIST: Debian's ``/usr/share/datasets/fashion-mnist``),
            else ``$LORENTZCV_DATA``; embedded datasets (``digits*``) need none.
        split: One of the dataset's ``info.splits`` (``"train"``, ``"test"``; In-Shop: ``"train"``,
            ``"query"``, ``"gallery"``), or ``"val"``. ``"val"`` is the native validation split where one
            exists (mini-ImageNet, ``image_folder`` with ``root/val``) when ``val_fraction == 0``, and the
            held-out part of ``"train"`` when ``val_fraction > 0``.
        transform: ``"default"`` (the dataset's train transform for ``split="train"``, its eval transform
            otherwise), ``None`` (items are PIL images), or any callable applied to the PIL image.
        download: Download the data if missing (only datasets with ``info.downloadable``: CIFAR).
        val_fraction: If ``> 0``, hold this fraction out of ``"train"``: ``"train"`` returns the rest,
            ``"val"`` the held-out part, deterministically given ``seed``. Classification datasets hold out
            a stratified fraction of every class's samples; metric datasets hold out whole classes
            (class-disjoint, like their test split) and relabel the remaining train classes to
            ``0..n-1``. Test splits are never touched.
        seed: Seed of the hold-out split.
        transform_kwargs: Extra arguments of the default transform's builder (e.g.
            ``{"backbone_name": "vit_small_patch16_224"}`` for metric datasets).
        **kwargs: Dataset-specific options passed to the builder.

    Returns:
        A :class:`LabeledDataset`: items ``(image, label)``, ``.targets`` (``list[int]``), ``.num_classes``,
        ``.super_targets`` (coarse labels or ``None``).

    Raises:
        ValueError: Unknown ``name`` (with a close-match suggestion), split or argument.
        FileNotFoundError: The data is missing or malformed; the message shows the expected layout and how
            to get the data.
    """
    builder, info = get_dataset_builder(name)
    if split != "val" and split not in info.splits:
        raise ValueError(f"{name}: unknown split {split!r}; valid: {sorted({*info.splits, 'val'})}")
    if not 0.0 <= val_fraction < 1.0:
        raise ValueError(f"val_fraction must be in [0, 1), got {val_fraction}")
    tf = _resolve_transform(name, split, transform, transform_kwargs or {})

    if val_fraction > 0 and split in ("train", "val"):
        if "train" not in info.splits:
            raise ValueError(f"{name} has no train split to hold a validation fraction out of")
        base = builder(resolve_root(info, root), "train", tf, download, **kwargs)
        metric = info.task == "metric"
        holdout = class_holdout if metric else stratified_holdout
        keep, held = holdout(base.targets, val_fraction, seed)
        if split == "train":
            return base.subset(keep, relabel=metric)
        val = base.subset(held, split="val")
        if metric:
            val.num_classes = len(set(val.targets))
        return val

    if split == "val" and "val" not in info.splits:
        raise ValueError(
            f"{name} has no native validation split; pass val_fraction > 0 (e.g. 0.1) to hold one out of train"
        )
    return builder(resolve_root(info, root), split, tf, download, **kwargs)
