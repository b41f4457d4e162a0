"""CUB-200-2011 for deep metric learning (HIER's convention, ``docs/method.md`` §7.5).

Class folders of ``CUB_200_2011/images`` in sorted order get labels 0..199 (files starting with ``._``,
macOS resource forks, are skipped). The first half of the classes (0–99) is ``"train"``, the second half
(100–199) ``"test"``; test labels are kept raw (100..199) as in HIER — only label equality matters for
Recall@K. ``num_classes`` is the number of classes in the split.
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any

from torchvision.datasets.folder import IMG_EXTENSIONS

from ._base import FileLoader, LabeledDataset, check_first_last, dataset_not_found, require_dir
from ._registry import DatasetInfo, register_dataset
from .transforms import IMAGENET_MEAN, IMAGENET_STD

__all__ = ["CUB_INFO"]

CUB_INFO = DatasetInfo(
    name="cub",
    task="metric",
    num_classes={"train": 100, "test": 100},
    in_chans=3,
    img_size=224,
    mean=IMAGENET_MEAN,
    std=IMAGENET_STD,
    layout=(
        "ROOT/CUB_200_2011/images/<NNN.ClassName>/*.jpg   (200 folders, e.g. 001.Black_footed_Albatross)\n"
        "Sorted folders -> labels 0..199; train = classes 0-99, test = classes 100-199."
    ),
    how_to_get=(
        "Download CUB_200_2011.tgz from https://data.caltech.edu/records/65de6-vp158 "
        "(Caltech-UCSD Birds-200-2011) and extract it into ROOT.\nNo registry package ships it."
    ),
    transform="metric",
    description="CUB-200-2011: 5,864 train / 5,924 test images, class-disjoint (100 + 100 bird species).",
)


@register_dataset("cub", CUB_INFO)
def build_cub(root: Path, split: str, transform: Callable[[Any], Any] | None, download: bool = False) -> LabeledDataset:
    """CUB ``"train"`` (classes 0–99) or ``"test"`` (classes 100–199, raw labels); images read lazily."""
    images = require_dir(CUB_INFO, root, root / "CUB_200_2011" / "images")
    classes = sorted(p.name for p in images.iterdir() if p.is_dir() and not p.name.startswith("."))
    if len(classes) < 2:
        raise dataset_not_found(CUB_INFO, root, f"found {len(classes)} class folders in {str(images)!r}")
    half = len(classes) // 2
    chosen = range(half) if split == "train" else range(half, len(classes))
    paths: list[Path] = []
    labels: list[int] = []
    for label in chosen:
        files = sorted(
            p
            for p in (images / classes[label]).iterdir()
            if not p.name.startswith("._") and p.name.lower().endswith(IMG_EXTENSIONS)
        )
        paths.extend(files)
        labels.extend([label] * len(files))
    check_first_last(CUB_INFO, root, paths)
    return LabeledDataset(
        paths, labels, FileLoader("RGB"), len(set(labels)), transform=transform, classes=classes,
        name="cub", split=split,
    )  # fmt: skip
