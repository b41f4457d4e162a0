"""The one dataset class every builder returns, its image loaders, and the missing-data error helper."""

from __future__ import annotations

from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import numpy as np
from PIL import Image
from torch.utils.data import Dataset

from ._registry import DatasetInfo

__all__ = [
    "LabeledDataset",
    "ArrayLoader",
    "FileLoader",
    "dataset_not_found",
    "require_file",
    "require_dir",
    "check_first_last",
]


class ArrayLoader:
    """Load image ``i`` from an in-memory array as a PIL image.

    Args:
        images: ``(N, H, W)`` or ``(N, H, W, C)`` array. ``uint8`` arrays give ``"L"``/``"RGB"`` images,
            ``float32`` arrays (values in [0, 1]) give mode ``"F"`` images, which ``ToTensor`` keeps as is.
    """

    def __init__(self, images: np.ndarray) -> None:
        if images.dtype not in (np.uint8, np.float32):
            raise ValueError(f"ArrayLoader expects uint8 or float32 images, got {images.dtype}")
        self.images = images

    def __call__(self, index: int) -> Image.Image:
        return Image.fromarray(self.images[index])


class FileLoader:
    """Open an image file lazily and convert it to ``mode`` (``"RGB"`` by default; gray images become RGB)."""

    def __init__(self, mode: str = "RGB") -> None:
        self.mode = mode

    def __call__(self, path: str | Path) -> Image.Image:
        with Image.open(path) as im:
            return im.convert(self.mode)


class LabeledDataset(Dataset):
    """A map-style dataset of ``(image, label)`` pairs with its labels available up front.

    Images are produced lazily by ``loader(items[i])`` (a file path for on-disk datasets, an array index
    for in-memory ones) and passed through ``transform``.

    Args:
        items: One entry per sample, handed to ``loader``.
        targets: Integer label per sample.
        loader: Callable turning an item into a PIL image.
        num_classes: Number of classes. Classification: all classes of the dataset (labels are
            ``0..num_classes-1`` in every split). Metric learning: the number of distinct labels in the
            split; train labels are ``0..num_classes-1``, eval splits keep HIER's raw labels (e.g. CUB test
            = 100..199), where only label equality matters.
        transform: Callable applied to the PIL image, or ``None`` to return the PIL image.
        super_targets: Optional coarse label per sample (a two-level hierarchy), else ``None``.
        classes: Optional class names, indexed by label.
        name: Registry name, for ``repr``.
        split: Split name, for ``repr``.

    Attributes:
        targets: ``list[int]``, one label per sample (what samplers read).
        num_classes: ``int``.
        super_targets: ``list[int] | None``.
    """

    def __init__(
        self,
        items: Sequence[Any],
        targets: Sequence[int],
        loader: Callable[[Any], Image.Image],
        num_classes: int,
        transform: Callable[[Any], Any] | None = None,
        super_targets: Sequence[int] | None = None,
        classes: Sequence[str] | None = None,
        name: str = "",
        split: str = "",
    ) -> None:
        if len(items) != len(targets):
            raise ValueError(f"{len(items)} items but {len(targets)} targets")
        if super_targets is not None and len(super_targets) != len(targets):
            raise ValueError(f"{len(super_targets)} super_targets but {len(targets)} targets")
        self.items = list(items)
        self.targets = [int(t) for t in targets]
        self.loader = loader
        self.num_classes = int(num_classes)
        self.transform = transform
        self.super_targets = None if super_targets is None else [int(s) for s in super_targets]
        self.classes = None if classes is None else list(classes)
        self.name = name
        self.split = split

    def __len__(self) -> int:
        return len(self.targets)

    def __getitem__(self, index: int) -> tuple[Any, int]:
        img = self.loader(self.items[index])
        if self.transform is not None:
            img = self.transform(img)
        return img, self.targets[index]

    def subset(self, indices: Sequence[int], split: str | None = None, relabel: bool = False) -> LabeledDataset:
        """Return a new dataset with the samples at ``indices`` (same loader and transform).

        Args:
            indices: Sample indices to keep, in order.
            split: Split name of the result (defaults to this one's).
            relabel: Map the kept labels to ``0..n-1`` in sorted order and set ``num_classes = n``
                (used for class-disjoint metric training splits, whose proxies need contiguous labels).
        """
        idx = [int(i) for i in indices]
        targets = [self.targets[i] for i in idx]
        num_classes, classes = self.num_classes, self.classes
        if relabel:
            kept = sorted(set(targets))
            remap = {c: j for j, c in enumerate(kept)}
            targets = [remap[t] for t in targets]
            num_classes = len(kept)
            classes = None if self.classes is None else [self.classes[c] for c in kept]
        return LabeledDataset(
            [self.items[i] for i in idx],
            targets,
            self.loader,
            num_classes,
            transform=self.transform,
            super_targets=None if self.super_targets is None else [self.super_targets[i] for i in idx],
            classes=classes,
            name=self.name,
            split=self.split if split is None else split,
        )

    def __repr__(self) -> str:
        return (
            f"{type(self).__name__}(name={self.name!r}, split={self.split!r}, len={len(self)}, "
            f"num_classes={self.num_classes})"
        )


def dataset_not_found(info: DatasetInfo, root: str | Path | None, detail: str) -> FileNotFoundError:
    """Build the ``FileNotFoundError`` raised for a missing or malformed dataset.

    The message names what went wrong, the root that was searched, the expected layout and how to get the
    data (both from ``info``).
    """
    return FileNotFoundError(
        f"Dataset {info.name!r} not found or malformed under root={str(root)!r}: {detail}\n"
        f"Expected layout under root:\n{info.layout.rstrip()}\n"
        f"How to get it:\n{info.how_to_get.rstrip()}"
    )


def require_file(info: DatasetInfo, root: str | Path | None, path: Path) -> Path:
    """Return ``path`` if it is an existing file, else raise :func:`dataset_not_found`."""
    if not path.is_file():
        raise dataset_not_found(info, root, f"missing file {str(path)!r}")
    return path


def require_dir(info: DatasetInfo, root: str | Path | None, path: Path) -> Path:
    """Return ``path`` if it is an existing directory, else raise :func:`dataset_not_found`."""
    if not path.is_dir():
        raise dataset_not_found(info, root, f"missing directory {str(path)!r}")
    return path


def check_first_last(info: DatasetInfo, root: str | Path | None, paths: Sequence[Path]) -> None:
    """Cheap sanity check of a lazily-read file list: it is non-empty and its first and last files exist.

    Checking every file of SOP (120k images) would cost a stat call each at construction; a wrong root or a
    missing image folder is caught by these two.
    """
    if not paths:
        raise dataset_not_found(info, root, "no images listed")
    for p in (paths[0], paths[-1]):
        if not Path(p).is_file():
            raise dataset_not_found(info, root, f"listed image {str(p)!r} does not exist")
