"""Validation hold-outs: disjoint from train, deterministic, stratified (or class-disjoint), test untouched."""

from __future__ import annotations

from collections import Counter

import pytest

from lorentzcv.data import class_holdout, create_dataset, stratified_holdout


def _keys(ds):
    """Identify samples by (item, label): array datasets hold indices into the same split array."""
    return set(ds.items)


def test_stratified_holdout_properties():
    targets = [0] * 10 + [1] * 20 + [2] * 1 + [3] * 3
    keep, hold = stratified_holdout(targets, 0.2, seed=5)
    assert sorted(keep + hold) == list(range(len(targets))) and not set(keep) & set(hold)
    held = Counter(targets[i] for i in hold)
    assert held == {0: 2, 1: 4, 3: 1}  # round(0.2 n) per class; a singleton class is never held out
    _, capped = stratified_holdout([0, 0, 1, 1, 1, 1, 1], 0.8, seed=0)
    assert [i for i in capped if i < 2] in ([0], [1]) and len(capped) == 1 + 4  # class 0 capped at n - 1
    assert (keep, hold) == stratified_holdout(targets, 0.2, seed=5)
    assert hold != stratified_holdout(targets, 0.2, seed=6)[1]
    with pytest.raises(ValueError):
        stratified_holdout(targets, 0.0, seed=0)


def test_class_holdout_properties():
    targets = [c for c in range(10) for _ in range(3)]
    keep, hold = class_holdout(targets, 0.3, seed=1)
    kept_classes = {targets[i] for i in keep}
    held_classes = {targets[i] for i in hold}
    assert len(held_classes) == 3 and not kept_classes & held_classes
    assert len(keep) + len(hold) == 30
    assert (keep, hold) == class_holdout(targets, 0.3, seed=1)


def test_digits_val_carve_is_disjoint_stratified_and_deterministic():
    full = create_dataset("digits", split="train", transform=None)
    train = create_dataset("digits", split="train", transform=None, val_fraction=0.2, seed=3)
    val = create_dataset("digits", split="val", transform=None, val_fraction=0.2, seed=3)
    assert len(train) + len(val) == len(full)
    assert not _keys(train) & _keys(val) and _keys(train) | _keys(val) == _keys(full)
    n_full = Counter(full.targets)
    for c, n in Counter(val.targets).items():
        assert n == int(0.2 * n_full[c] + 0.5)
    assert val.num_classes == train.num_classes == 10 and val.split == "val"
    again = create_dataset("digits", split="val", transform=None, val_fraction=0.2, seed=3)
    assert again.items == val.items
    other = create_dataset("digits", split="val", transform=None, val_fraction=0.2, seed=4)
    assert other.items != val.items
    # the test split does not depend on val_fraction / seed
    t0 = create_dataset("digits", split="test", transform=None)
    t1 = create_dataset("digits", split="test", transform=None, val_fraction=0.2, seed=4)
    assert t0.items == t1.items and t0.targets == t1.targets


def test_val_uses_eval_transform(data_root):
    train = create_dataset("cifar10", data_root, "train", val_fraction=0.2)
    val = create_dataset("cifar10", data_root, "val", val_fraction=0.2)
    assert (len(train), len(val)) == (40, 10)  # 5 per class, 1 held out each
    assert [type(t).__name__ for t in val.transform.transforms] == ["ToTensor", "Normalize"]
    assert type(train.transform.transforms[0]).__name__ == "RandomCrop"
    assert val[0][0].shape == (3, 32, 32)


def test_val_carve_on_file_dataset(data_root):
    train = create_dataset("tiny_imagenet", data_root, "train", transform=None, val_fraction=0.25, seed=0)
    val = create_dataset("tiny_imagenet", data_root, "val", transform=None, val_fraction=0.25, seed=0)
    assert Counter(val.targets) == {0: 1, 1: 1, 2: 1} and len(train) == 9
    assert not set(train.items) & set(val.items)


def test_metric_val_holds_out_whole_classes(data_root):
    full = create_dataset("sop", data_root, "train", transform=None)
    train = create_dataset("sop", data_root, "train", transform=None, val_fraction=0.34, seed=0)
    val = create_dataset("sop", data_root, "val", transform=None, val_fraction=0.34, seed=0)
    assert len(train) + len(val) == len(full)
    val_paths = set(val.items)
    held = {y for p, y in zip(full.items, full.targets) if p in val_paths}
    assert len(held) == 1 and val.num_classes == 1 and set(val.targets) == held  # raw label kept
    assert sorted(set(train.targets)) == [0, 1] and train.num_classes == 2  # relabelled contiguous
    assert train.super_targets is not None and len(train.super_targets) == len(train)
    kept = {p for p, y in zip(full.items, full.targets) if y not in held}
    assert set(train.items) == kept


def test_native_val_and_carve_of_mini_imagenet(data_root):
    native = create_dataset("mini_imagenet", data_root, "val", transform=None)
    assert len(native) == 4
    carved = create_dataset("mini_imagenet", data_root, "val", transform=None, val_fraction=0.25)
    train = create_dataset("mini_imagenet", data_root, "train", transform=None, val_fraction=0.25)
    assert len(carved) == 8 and len(train) == 24  # carved out of the 32 train images, 2 per class
    test_items = set(create_dataset("mini_imagenet", data_root, "test", transform=None).items)
    assert not (set(carved.items) | set(train.items)) & test_items
