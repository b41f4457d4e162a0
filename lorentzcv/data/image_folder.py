"""Generic ImageFolder classification dataset: ``ROOT/<split>/<class>/<image>``.

Classes are the sorted sub-folders of ``ROOT/train`` (or of the requested split's folder when there is no
``train``), so every split shares one label mapping even when a split lacks a class.
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any

from torchvision.datasets.folder import IMG_EXTENSIONS, make_dataset

from ._base import FileLoader, LabeledDataset, dataset_not_found, require_dir
from ._registry import DatasetInfo, register_dataset
from .transforms import IMAGENET_MEAN, IMAGENET_STD

__all__ = ["IMAGE_FOLDER_INFO"]

IMAGE_FOLDER_INFO = DatasetInfo(
    name="image_folder",
    task="classification",
    num_classes=None,
    in_chans=3,
    img_size=224,
    mean=IMAGENET_MEAN,
    std=IMAGENET_STD,
    layout=(
        "ROOT/train/<class_name>/*.{jpg,jpeg,png,...}\n"
        "ROOT/val/<class_name>/...     (optional)\n"
        "ROOT/test/<class_name>/...    (optional)\n"
        "Labels = index of the class folder in the sorted folder names of ROOT/train."
    ),
    how_to_get="Arrange your own images in this layout (torchvision ImageFolder convention).",
    splits=("train", "val", "test"),
    transform="imagenet",
    description="Any ImageFolder-style dataset (ImageNet-like default transforms at 224 px).",
)


def _classes(folder: Path) -> list[str]:
    return sorted(p.name for p in folder.iterdir() if p.is_dir() and not p.name.startswith("."))


@register_dataset("image_folder", IMAGE_FOLDER_INFO)
def build_image_folder(
    root: Path, split: str, transform: Callable[[Any], Any] | None, download: bool = False
) -> LabeledDataset:
    """``ROOT/<split>`` as an ImageFolder with the class mapping of ``ROOT/train``; images read lazily."""
    folder = require_dir(IMAGE_FOLDER_INFO, root, root / split)
    ref = root / "train" if (root / "train").is_dir() else folder
    classes = _classes(ref)
    if not classes:
        raise dataset_not_found(IMAGE_FOLDER_INFO, root, f"no class folders in {str(ref)!r}")
    extra = set(_classes(folder)) - set(classes)
    if extra:
        raise dataset_not_found(IMAGE_FOLDER_INFO, root, f"{str(folder)!r} has classes not in train: {sorted(extra)}")
    class_to_idx = {c: i for i, c in enumerate(classes)}
    present = {c: i for c, i in class_to_idx.items() if (folder / c).is_dir()}
    try:
        samples = make_dataset(str(folder), present, extensions=IMG_EXTENSIONS, allow_empty=True)
    except (FileNotFoundError, OSError) as e:
        raise dataset_not_found(IMAGE_FOLDER_INFO, root, str(e)) from None
    if not samples:
        raise dataset_not_found(IMAGE_FOLDER_INFO, root, f"no images found under {str(folder)!r}")
    return LabeledDataset(
        [Path(p) for p, _ in samples], [t for _, t in samples], FileLoader("RGB"), len(classes),
        transform=transform, classes=classes, name="image_folder", split=split,
    )  # fmt: skip
