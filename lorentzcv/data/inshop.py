"""In-Shop Clothes Retrieval (DeepFashion) for deep metric learning (HIER's convention, ``docs/method.md`` §7.5).

``Inshop_Clothes/Eval/list_eval_partition.txt``: line 1 = number of images, line 2 = header
``image_name item_id evaluation_status``, then one whitespace-separated row per image with status
``train``, ``query`` or ``gallery`` (the three splits). Labels are the numeric suffix of ``id_XXXXXXXX``,
remapped to contiguous ids separately for ``train`` and for ``query ∪ gallery`` (so query and gallery share
one label space). ``image_name`` (e.g. ``img/WOMEN/Dresses/id_00000002/02_1_front.jpg``) is resolved under
``Inshop_Clothes/Img/`` (the official ``Img/img/...`` layout, HIER's) or, if that does not exist, under
``Inshop_Clothes/`` itself. ``.super_targets`` (ours, not official): the clothing category
``<GENDER>/<Category>`` taken from the path, indexed over the sorted categories of the whole file.
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any

from ._base import FileLoader, LabeledDataset, check_first_last, dataset_not_found, require_file
from ._registry import DatasetInfo, register_dataset
from .transforms import IMAGENET_MEAN, IMAGENET_STD

__all__ = ["INSHOP_INFO", "read_inshop_partition"]

INSHOP_INFO = DatasetInfo(
    name="inshop",
    task="metric",
    num_classes={"train": 3997, "query": 3985, "gallery": 3985},
    in_chans=3,
    img_size=224,
    mean=IMAGENET_MEAN,
    std=IMAGENET_STD,
    layout=(
        "ROOT/Inshop_Clothes/\n"
        "    Eval/list_eval_partition.txt\n"
        "        line 1: count; line 2: 'image_name item_id evaluation_status'; then rows like\n"
        "        'img/WOMEN/Dresses/id_00000002/02_1_front.jpg id_00000002 train' (train|query|gallery)\n"
        "    Img/img/WOMEN/...   images (image_name is resolved under Img/, else under Inshop_Clothes/)"
    ),
    how_to_get=(
        "Download 'In-shop Clothes Retrieval Benchmark' of DeepFashion "
        "(https://mmlab.ie.cuhk.edu.hk/projects/DeepFashion/InShopRetrieval.html, Google Drive): "
        "Img/img.zip and Eval/list_eval_partition.txt, unzipped into ROOT/Inshop_Clothes/.\n"
        "No registry package ships it."
    ),
    splits=("train", "query", "gallery"),
    transform="metric",
    description="In-Shop: 25,882 train / 14,218 query / 12,612 gallery images (query, gallery share labels).",
)

_HEADER = ["image_name", "item_id", "evaluation_status"]


def read_inshop_partition(path: Path) -> list[tuple[str, str, str]]:
    """Read the ``(image_name, item_id, evaluation_status)`` rows of ``list_eval_partition.txt``.

    Raises:
        ValueError: If the count line, the header or a row is malformed.
    """
    lines = [ln for ln in path.read_text().splitlines() if ln.strip()]
    if len(lines) < 2 or not lines[0].strip().isdigit() or lines[1].split() != _HEADER:
        raise ValueError(f"expected a count line, then the header {' '.join(_HEADER)!r}")
    rows = []
    for lineno, line in enumerate(lines[2:], 3):
        fields = line.split()
        if len(fields) != 3 or fields[2] not in ("train", "query", "gallery"):
            raise ValueError(f"line {lineno}: expected 'image_name item_id train|query|gallery'")
        rows.append((fields[0], fields[1], fields[2]))
    if len(rows) != int(lines[0]):
        raise ValueError(f"count line says {lines[0].strip()} images, found {len(rows)} rows")
    return rows


def _item_number(item_id: str) -> int:
    return int(item_id.rsplit("_", 1)[-1])


def _category(image_name: str) -> str:
    parts = Path(image_name).parts
    return "/".join(parts[-4:-2]) if len(parts) >= 4 else ""


@register_dataset("inshop", INSHOP_INFO)
def build_inshop(
    root: Path, split: str, transform: Callable[[Any], Any] | None, download: bool = False
) -> LabeledDataset:
    """In-Shop ``"train"``, ``"query"`` or ``"gallery"``; images read lazily."""
    base = root / "Inshop_Clothes"
    listing = require_file(INSHOP_INFO, root, base / "Eval" / "list_eval_partition.txt")
    try:
        rows = read_inshop_partition(listing)
        pool = ("train",) if split == "train" else ("query", "gallery")
        remap = {n: i for i, n in enumerate(sorted({_item_number(r[1]) for r in rows if r[2] in pool}))}
        labels = [remap[_item_number(r[1])] for r in rows if r[2] == split]
    except ValueError as e:
        raise dataset_not_found(INSHOP_INFO, root, f"malformed {str(listing)!r}: {e}") from None
    names = [r[0] for r in rows if r[2] == split]
    if not names:
        raise dataset_not_found(INSHOP_INFO, root, f"no rows with evaluation_status {split!r}")
    image_base = base / "Img" if (base / "Img" / names[0]).is_file() else base
    paths = [image_base / n for n in names]
    check_first_last(INSHOP_INFO, root, paths)
    categories = {c: i for i, c in enumerate(sorted({_category(r[0]) for r in rows}))}
    return LabeledDataset(
        paths, labels, FileLoader("RGB"), len(set(labels)), transform=transform,
        super_targets=[categories[_category(n)] for n in names], name="inshop", split=split,
    )  # fmt: skip
