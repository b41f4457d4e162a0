"""Tiny-ImageNet-200 read directly from the official zip layout (no reorganisation step).

The official ``val`` split (10,000 labelled images) is served as split ``"test"``, as in HCNN (``docs/method.md`` §8);
the official ``test`` folder has no labels and is not used. A validation split is held out of ``"train"``
with ``create_dataset(..., val_fraction=...)``. Labels are indices into the sorted list of wnids in
``wnids.txt``.
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any

from ._base import FileLoader, LabeledDataset, check_first_last, dataset_not_found, require_dir, require_file
from ._registry import DatasetInfo, register_dataset
from .transforms import IMAGENET_MEAN, IMAGENET_STD

__all__ = ["TINY_IMAGENET_INFO"]

TINY_IMAGENET_INFO = DatasetInfo(
    name="tiny_imagenet",
    task="classification",
    num_classes=200,
    in_chans=3,
    img_size=64,
    mean=IMAGENET_MEAN,
    std=IMAGENET_STD,
    layout=(
        "ROOT/tiny-imagenet-200/        (the official zip, extracted as is)\n"
        "    wnids.txt                  200 wnids, one per line (labels = index in sorted order)\n"
        "    train/<wnid>/images/*.JPEG 500 images per class        -> split 'train'\n"
        "    val/images/*.JPEG          10,000 images               -> split 'test'\n"
        "    val/val_annotations.txt    tab-separated: filename, wnid, x, y, w, h"
    ),
    how_to_get=(
        "Download http://cs231n.stanford.edu/tiny-imagenet-200.zip (237 MB) and unzip it into ROOT.\n"
        "No registry package ships it (offline machines: copy the extracted folder)."
    ),
    transform="tiny_imagenet",
    description="Tiny-ImageNet-200: 100,000 train / 10,000 test (official val) 64x64 images, 200 classes.",
)


def _read_wnids(root: Path, base: Path) -> list[str]:
    path = require_file(TINY_IMAGENET_INFO, root, base / "wnids.txt")
    wnids = sorted({line.strip() for line in path.read_text().splitlines() if line.strip()})
    if not wnids:
        raise dataset_not_found(TINY_IMAGENET_INFO, root, f"{str(path)!r} lists no wnids")
    return wnids


def _train_samples(root: Path, base: Path, wnids: list[str]) -> tuple[list[Path], list[int]]:
    paths: list[Path] = []
    labels: list[int] = []
    for label, wnid in enumerate(wnids):
        folder = require_dir(TINY_IMAGENET_INFO, root, base / "train" / wnid / "images")
        files = sorted(p for p in folder.iterdir() if p.suffix.lower() in (".jpeg", ".jpg", ".png"))
        paths.extend(files)
        labels.extend([label] * len(files))
    return paths, labels


def _val_samples(root: Path, base: Path, wnids: list[str]) -> tuple[list[Path], list[int]]:
    ann = require_file(TINY_IMAGENET_INFO, root, base / "val" / "val_annotations.txt")
    index = {w: i for i, w in enumerate(wnids)}
    paths: list[Path] = []
    labels: list[int] = []
    for lineno, line in enumerate(ann.read_text().splitlines(), 1):
        if not line.strip():
            continue
        fields = line.split("\t")
        if len(fields) < 2 or fields[1].strip() not in index:
            raise dataset_not_found(
                TINY_IMAGENET_INFO, root, f"{str(ann)!r} line {lineno}: expected 'filename<TAB>wnid...'"
            )
        paths.append(base / "val" / "images" / fields[0].strip())
        labels.append(index[fields[1].strip()])
    return paths, labels


@register_dataset("tiny_imagenet", TINY_IMAGENET_INFO)
def build_tiny_imagenet(
    root: Path, split: str, transform: Callable[[Any], Any] | None, download: bool = False
) -> LabeledDataset:
    """Tiny-ImageNet ``"train"`` (``train/``) or ``"test"`` (the official ``val/``); images read lazily."""
    base = root / "tiny-imagenet-200"
    wnids = _read_wnids(root, base)
    reader = _train_samples if split == "train" else _val_samples
    paths, labels = reader(root, base, wnids)
    check_first_last(TINY_IMAGENET_INFO, root, paths)
    return LabeledDataset(
        paths, labels, FileLoader("RGB"), len(wnids), transform=transform, classes=wnids,
        name="tiny_imagenet", split=split,
    )  # fmt: skip
