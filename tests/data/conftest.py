"""Session-scoped tiny datasets in their real on-disk formats (written once, read by many tests)."""

from __future__ import annotations

from pathlib import Path

import pytest

from . import fixtures as fx


@pytest.fixture(scope="session")
def data_root(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """One root holding every on-disk fixture (CIFAR, Tiny/mini-ImageNet, Fashion-MNIST, CUB, Cars, SOP, In-Shop)."""
    root = tmp_path_factory.mktemp("datasets")
    fx.write_cifar10(root, n_train=50, n_test=20)
    fx.write_cifar100(root, n_train=200, n_test=100)
    fx.write_tiny_imagenet(root, num_classes=3, n_train_per_class=4, n_val_per_class=2)
    fx.write_mini_imagenet(root, num_classes=4, n_per_class=10)
    fx.write_fashion_mnist(root, n_train=40, n_test=20, layout="debian", gz=True)
    fx.write_cub(root, num_classes=4, n_per_class=3)
    fx.write_cars(root, num_classes=4, n_per_class=3)
    fx.write_sop(root, n_train_classes=3, n_test_classes=3, n_per_class=2, n_super=2)
    fx.write_inshop(root, n_train_items=3, n_test_items=3, n_per_item=2)
    return root
