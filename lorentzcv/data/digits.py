"""scikit-learn's bundled 8×8 digits: the embedded, always-available dataset (no root, no download).

``digits`` (classification) has no official split; we use a fixed stratified split: 30 % of every class is
the test set, chosen with seed 0 (:func:`lorentzcv.data._splits.stratified_holdout`), independent of the
``seed`` argument of ``create_dataset`` (which only drives the validation hold-out). That gives 1,258
train and 539 test images. ``digits_dml`` is the class-disjoint metric version: train = digits 0–4,
test = digits 5–9 (raw labels), all 1,797 images pooled.
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np

from ._base import ArrayLoader, LabeledDataset
from ._registry import DatasetInfo, register_dataset
from ._splits import stratified_holdout
from .transforms import DIGITS_MEAN, DIGITS_STD

__all__ = ["load_digits_arrays", "DIGITS_TEST_FRACTION", "DIGITS_SPLIT_SEED"]

DIGITS_TEST_FRACTION = 0.3
DIGITS_SPLIT_SEED = 0

_LAYOUT = "None: bundled with scikit-learn (sklearn.datasets.load_digits); `root` is ignored."
_HOW = "pip install scikit-learn (the data ships inside the wheel)."

DIGITS_INFO = DatasetInfo(
    name="digits",
    task="classification",
    num_classes=10,
    in_chans=1,
    img_size=8,
    mean=DIGITS_MEAN,
    std=DIGITS_STD,
    layout=_LAYOUT,
    how_to_get=_HOW,
    transform="digits",
    needs_root=False,
    description="scikit-learn digits: 1,797 gray 8x8 images, 10 classes; fixed stratified 70/30 split.",
)

DIGITS_DML_INFO = DatasetInfo(
    name="digits_dml",
    task="metric",
    num_classes={"train": 5, "test": 5},
    in_chans=1,
    img_size=8,
    mean=DIGITS_MEAN,
    std=DIGITS_STD,
    layout=_LAYOUT,
    how_to_get=_HOW,
    transform="digits",
    needs_root=False,
    description="Class-disjoint metric demo on scikit-learn digits: train = digits 0-4, test = digits 5-9.",
)


def load_digits_arrays() -> tuple[np.ndarray, np.ndarray]:
    """Return ``(images float32 (1797, 8, 8) in [0, 1], labels int64 (1797,))`` (pixel values / 16)."""
    from sklearn.datasets import load_digits

    bunch = load_digits()
    images = (np.asarray(bunch.images, dtype=np.float64) / 16.0).astype(np.float32)
    return np.ascontiguousarray(images), np.asarray(bunch.target, dtype=np.int64)


def _dataset(name: str, images: np.ndarray, labels: np.ndarray, num_classes: int, split: str,
             transform: Callable[[Any], Any] | None) -> LabeledDataset:  # fmt: skip
    return LabeledDataset(
        range(len(images)),
        labels.tolist(),
        ArrayLoader(np.ascontiguousarray(images)),
        num_classes,
        transform=transform,
        classes=[str(d) for d in range(10)],
        name=name,
        split=split,
    )


@register_dataset("digits", DIGITS_INFO)
def build_digits(
    root: Path | None, split: str, transform: Callable[[Any], Any] | None, download: bool = False
) -> LabeledDataset:
    """Digits ``"train"`` (1,258) or ``"test"`` (539); items are 8×8 mode-``"F"`` PIL images in [0, 1]."""
    images, labels = load_digits_arrays()
    train_idx, test_idx = stratified_holdout(labels, DIGITS_TEST_FRACTION, DIGITS_SPLIT_SEED)
    idx = np.asarray(train_idx if split == "train" else test_idx)
    return _dataset("digits", images[idx], labels[idx], 10, split, transform)


@register_dataset("digits_dml", DIGITS_DML_INFO)
def build_digits_dml(
    root: Path | None, split: str, transform: Callable[[Any], Any] | None, download: bool = False
) -> LabeledDataset:
    """Class-disjoint digits: ``"train"`` = digits 0–4, ``"test"`` = digits 5–9 (labels kept raw, 5..9)."""
    images, labels = load_digits_arrays()
    idx = np.flatnonzero(labels < 5) if split == "train" else np.flatnonzero(labels >= 5)
    return _dataset("digits_dml", images[idx], labels[idx], 5, split, transform)
