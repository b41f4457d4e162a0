"""fashion_mnist_hier: classes held out per superclass, class-disjoint train / validation / test, super_targets;
read from tiny idx fixtures in the Debian layout."""

from __future__ import annotations

import pytest

from lorentzcv.data import create_dataset, get_dataset_info
from lorentzcv.data.fashion_mnist import (
    FASHION_MNIST_CLASSES,
    FASHION_MNIST_HIER_SUPER_OF,
    FASHION_MNIST_HIER_SUPERCLASSES,
    FASHION_MNIST_HIER_TEST,
    FASHION_MNIST_HIER_TRAIN,
)

from . import fixtures as fx

TOPS, BOTTOMS, FOOTWEAR, BAGS = range(4)


@pytest.fixture(scope="module")
def root(tmp_path_factory):
    # 40 train images (label i % 10) + 20 t10k images (label (i + 3) % 10): 6 images of every class, pooled
    return fx.write_fashion_mnist(tmp_path_factory.mktemp("fm"), n_train=40, n_test=20, layout="debian", gz=True)


def _raw(ds, split: str) -> list[int]:
    """Raw Fashion-MNIST labels of a split (train is relabelled 0..4 in FASHION_MNIST_HIER_TRAIN order)."""
    return [FASHION_MNIST_HIER_TRAIN[t] for t in ds.targets] if split == "train" else list(ds.targets)


def test_superclasses_are_the_issue_grouping():
    assert FASHION_MNIST_HIER_SUPERCLASSES == ("tops", "bottoms", "footwear", "bags")
    by_super = {
        s: {FASHION_MNIST_CLASSES[c] for c in range(10) if FASHION_MNIST_HIER_SUPER_OF[c] == s} for s in range(4)
    }
    assert by_super[TOPS] == {"T-shirt/top", "Pullover", "Dress", "Coat", "Shirt"}
    assert by_super[BOTTOMS] == {"Trouser"}
    assert by_super[FOOTWEAR] == {"Sandal", "Sneaker", "Ankle boot"}
    assert by_super[BAGS] == {"Bag"}


def test_split_is_class_disjoint_with_classes_held_out_per_superclass(root):
    train = create_dataset("fashion_mnist_hier", root, "train", transform=None)
    test = create_dataset("fashion_mnist_hier", root, "test", transform=None)
    assert len(train) == len(test) == 30  # 5 classes x 6 pooled images each
    assert sorted(set(train.targets)) == [0, 1, 2, 3, 4] and train.num_classes == 5  # contiguous for the proxies
    assert train.classes == ["T-shirt/top", "Trouser", "Pullover", "Dress", "Sandal"]
    raw_train, raw_test = set(_raw(train, "train")), set(test.targets)
    assert raw_train == {0, 1, 2, 3, 5} and raw_test == {4, 6, 7, 8, 9} and not raw_train & raw_test
    assert test.num_classes == 5
    for ds, split in ((train, "train"), (test, "test")):
        assert ds.super_targets == [FASHION_MNIST_HIER_SUPER_OF[c] for c in _raw(ds, split)]
    # test: two superclasses with two classes each (coat/shirt, sneaker/ankle boot) and the bag
    per_super = {s: {c for c, t in zip(test.targets, test.super_targets) if t == s} for s in range(4)}
    assert per_super == {TOPS: {4, 6}, BOTTOMS: set(), FOOTWEAR: {7, 9}, BAGS: {8}}
    # train keeps classes of three superclasses, tops with three of them
    per_super = {s: {c for c, t in zip(train.targets, train.super_targets) if t == s} for s in range(4)}
    assert per_super == {TOPS: {0, 2, 3}, BOTTOMS: {1}, FOOTWEAR: {4}, BAGS: set()}
    info = get_dataset_info("fashion_mnist_hier")
    assert info.task == "metric" and info.num_classes == {"train": 5, "test": 5}
    assert set(FASHION_MNIST_HIER_TRAIN) | set(FASHION_MNIST_HIER_TEST) == set(range(10))


@pytest.mark.parametrize("seed", [0, 8])
def test_validation_is_class_disjoint_from_its_training_classes_and_from_test(root, seed):
    fit = create_dataset("fashion_mnist_hier", root, "train", transform=None, val_fraction=0.4, seed=seed)
    val = create_dataset("fashion_mnist_hier", root, "val", transform=None, val_fraction=0.4, seed=seed)
    test = create_dataset("fashion_mnist_hier", root, "test", transform=None)
    # names identify classes across the relabelling of the training split
    fit_names = {fit.classes[t] for t in fit.targets}
    val_names = {FASHION_MNIST_CLASSES[FASHION_MNIST_HIER_TRAIN[t]] for t in val.targets}
    test_names = {FASHION_MNIST_CLASSES[t] for t in test.targets}
    assert len(fit_names) == 3 and len(val_names) == 2
    assert not fit_names & val_names and not val_names & test_names and not fit_names & test_names
    assert val.super_targets == [FASHION_MNIST_HIER_SUPER_OF[FASHION_MNIST_HIER_TRAIN[t]] for t in val.targets]
    expected = {0: {"Pullover", "Sandal"}, 8: {"T-shirt/top", "Dress"}}[seed]  # scripts/hierarchy_results.py
    assert val_names == expected


def test_missing_data_says_where_to_get_it(tmp_path):
    with pytest.raises(FileNotFoundError, match="dataset-fashion-mnist"):
        create_dataset("fashion_mnist_hier", tmp_path, "train")
