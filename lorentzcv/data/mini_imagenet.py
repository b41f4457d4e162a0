"""mini-ImageNet for (many-way) classification.

The ``train.csv``/``val.csv``/``test.csv`` files of Ravi & Larochelle are *class-disjoint* few-shot splits
(64/16/20 classes). For classification we pool the rows of all three files (100 classes × 600 images) and
split every class's images deterministically by sorted filename: the first 80 % are ``"train"``, the next
10 % ``"val"``, the last 10 % ``"test"`` (480/60/60 per class). The split does not depend on any seed, so
the test set is fixed. Labels are indices into the sorted list of wnids.
"""

from __future__ import annotations

import csv
from collections import defaultdict
from collections.abc import Callable
from pathlib import Path
from typing import Any

from ._base import FileLoader, LabeledDataset, check_first_last, dataset_not_found, require_dir, require_file
from ._registry import DatasetInfo, register_dataset
from .transforms import IMAGENET_MEAN, IMAGENET_STD

__all__ = ["MINI_IMAGENET_INFO", "MINI_IMAGENET_FRACTIONS", "per_class_split"]

#: Per-class (train, val, test) fractions of the pooled images, by sorted filename.
MINI_IMAGENET_FRACTIONS = (0.8, 0.1, 0.1)

MINI_IMAGENET_INFO = DatasetInfo(
    name="mini_imagenet",
    task="classification",
    num_classes=100,
    in_chans=3,
    img_size=84,
    mean=IMAGENET_MEAN,
    std=IMAGENET_STD,
    layout=(
        "ROOT/mini-imagenet/   (or ROOT itself)\n"
        "    images/*.jpg                 e.g. n0153282900000005.jpg\n"
        "    train.csv, val.csv, test.csv header 'filename,label', label = wnid\n"
        "All 100 classes of the three csvs are pooled; each class's images, sorted by filename, are split\n"
        "80/10/10 into train/val/test."
    ),
    how_to_get=(
        "Build it from ImageNet with the csv files of Ravi & Larochelle (2017) "
        "(https://github.com/twitter/meta-learning-lstm/tree/master/data/miniImagenet) and an "
        "images/ folder of the listed files (e.g. resized to 84x84), or use a pre-built copy.\n"
        "No registry package ships it."
    ),
    splits=("train", "val", "test"),
    transform="mini_imagenet",
    description="mini-ImageNet pooled for classification: 100 classes, 480/60/60 images per class.",
)


def per_class_split(
    files_by_class: dict[str, list[str]], split: str, fractions: tuple[float, float, float]
) -> list[tuple[str, str]]:
    """Select ``(filename, class)`` pairs of ``split`` by slicing each class's sorted filenames.

    With ``n`` images, a class contributes ``[0, n_tr)`` to train, ``[n_tr, n_tr + n_val)`` to val and the
    rest to test, where ``n_val = round(f_val · n)``, ``n_test = round(f_test · n)`` and
    ``n_tr = n - n_val - n_test``.
    """
    out: list[tuple[str, str]] = []
    for cls in sorted(files_by_class):
        files = sorted(files_by_class[cls])
        n = len(files)
        n_val, n_test = round(fractions[1] * n), round(fractions[2] * n)
        n_tr = n - n_val - n_test
        bounds = {"train": (0, n_tr), "val": (n_tr, n_tr + n_val), "test": (n_tr + n_val, n)}[split]
        out.extend((f, cls) for f in files[bounds[0] : bounds[1]])
    return out


def _base_dir(root: Path) -> Path:
    nested = root / "mini-imagenet"
    return nested if (nested / "train.csv").is_file() else root


def _read_csvs(root: Path, base: Path) -> dict[str, list[str]]:
    files_by_class: dict[str, list[str]] = defaultdict(list)
    for name in ("train.csv", "val.csv", "test.csv"):
        path = require_file(MINI_IMAGENET_INFO, root, base / name)
        with open(path, newline="") as f:
            reader = csv.DictReader(f)
            if reader.fieldnames is None or not {"filename", "label"} <= set(reader.fieldnames):
                raise dataset_not_found(
                    MINI_IMAGENET_INFO, root, f"{str(path)!r} must have the header 'filename,label'"
                )
            for row in reader:
                files_by_class[row["label"].strip()].append(row["filename"].strip())
    return files_by_class


@register_dataset("mini_imagenet", MINI_IMAGENET_INFO)
def build_mini_imagenet(
    root: Path, split: str, transform: Callable[[Any], Any] | None, download: bool = False
) -> LabeledDataset:
    """mini-ImageNet ``"train"``/``"val"``/``"test"`` (pooled, per-class 80/10/10 by sorted filename)."""
    base = _base_dir(root)
    files_by_class = _read_csvs(root, base)
    images = require_dir(MINI_IMAGENET_INFO, root, base / "images")
    wnids = sorted(files_by_class)
    index = {w: i for i, w in enumerate(wnids)}
    pairs = per_class_split(files_by_class, split, MINI_IMAGENET_FRACTIONS)
    paths = [images / f for f, _ in pairs]
    check_first_last(MINI_IMAGENET_INFO, root, paths)
    return LabeledDataset(
        paths, [index[c] for _, c in pairs], FileLoader("RGB"), len(wnids), transform=transform,
        classes=wnids, name="mini_imagenet", split=split,
    )  # fmt: skip
