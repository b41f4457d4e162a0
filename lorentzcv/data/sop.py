"""Stanford Online Products (SOP) for deep metric learning (HIER's convention, ``docs/method.md`` §7.5).

``Ebay_train.txt`` / ``Ebay_test.txt`` (header ``image_id class_id super_class_id path``, whitespace
separated, paths relative to ``Stanford_Online_Products/``) define the class-disjoint splits. Labels are
``class_id - 1`` (train 0..11317, test 11318..22633: raw, as in HIER); ``.super_targets`` holds
``super_class_id - 1`` (the 12 official product categories), the hierarchy HIER-style losses can use.
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any

from ._base import FileLoader, LabeledDataset, check_first_last, dataset_not_found, require_file
from ._registry import DatasetInfo, register_dataset
from .transforms import IMAGENET_MEAN, IMAGENET_STD

__all__ = ["SOP_INFO", "read_sop_list"]

SOP_INFO = DatasetInfo(
    name="sop",
    task="metric",
    num_classes={"train": 11318, "test": 11316},
    in_chans=3,
    img_size=224,
    mean=IMAGENET_MEAN,
    std=IMAGENET_STD,
    layout=(
        "ROOT/Stanford_Online_Products/\n"
        "    Ebay_train.txt, Ebay_test.txt   header 'image_id class_id super_class_id path', e.g.\n"
        "                                    '1 1 1 bicycle_final/111085122871_0.JPG'\n"
        "    bicycle_final/ cabinet_final/ ... (12 category folders with the images)"
    ),
    how_to_get=(
        "Download Stanford_Online_Products.zip (ftp://cs.stanford.edu/cs/cvgl/Stanford_Online_Products.zip, "
        "see https://cvgl.stanford.edu/projects/lifted_struct/) and extract it into ROOT.\n"
        "No registry package ships it."
    ),
    transform="metric",
    description="Stanford Online Products: 59,551 train / 60,502 test images, class-disjoint, 12 categories.",
)

_HEADER = ["image_id", "class_id", "super_class_id", "path"]


def read_sop_list(path: Path) -> tuple[list[str], list[int], list[int]]:
    """Read ``(relative paths, class_id - 1, super_class_id - 1)`` from an ``Ebay_*.txt`` file.

    Raises:
        ValueError: If the header or a row does not match ``image_id class_id super_class_id path``.
    """
    lines = [ln for ln in path.read_text().splitlines() if ln.strip()]
    if not lines or lines[0].split() != _HEADER:
        raise ValueError(f"first line must be {' '.join(_HEADER)!r}")
    rel, labels, supers = [], [], []
    for lineno, line in enumerate(lines[1:], 2):
        fields = line.split()
        if len(fields) != 4:
            raise ValueError(f"line {lineno}: expected 4 fields, got {len(fields)}")
        labels.append(int(fields[1]) - 1)
        supers.append(int(fields[2]) - 1)
        rel.append(fields[3])
    return rel, labels, supers


@register_dataset("sop", SOP_INFO)
def build_sop(root: Path, split: str, transform: Callable[[Any], Any] | None, download: bool = False) -> LabeledDataset:
    """SOP ``"train"`` or ``"test"`` from ``Ebay_<split>.txt``; images read lazily."""
    base = root / "Stanford_Online_Products"
    listing = require_file(SOP_INFO, root, base / f"Ebay_{split}.txt")
    try:
        rel, labels, supers = read_sop_list(listing)
    except ValueError as e:
        raise dataset_not_found(SOP_INFO, root, f"malformed {str(listing)!r}: {e}") from None
    paths = [base / r for r in rel]
    check_first_last(SOP_INFO, root, paths)
    return LabeledDataset(
        paths, labels, FileLoader("RGB"), len(set(labels)), transform=transform, super_targets=supers,
        name="sop", split=split,
    )  # fmt: skip
