"""Shared fixtures of the training tests: tiny on-disk datasets and overrides that make runs take seconds."""

from __future__ import annotations

import os
from pathlib import Path

import pytest
import torch

from ..data import fixtures as fx

#: Device of the in-process training tests (``LORENTZCV_TEST_DEVICE=cuda`` runs them on a GPU).
DEVICE = os.environ.get("LORENTZCV_TEST_DEVICE", "cpu")

#: ``--set`` overrides shrinking any config to a seconds-long run.
TINY = [
    "model.width=4",
    "model.layers=[1, 1, 1, 1]",
    f"train.device={DEVICE}",
    "train.epochs=1",
    "data.num_workers=0",
    "output.progress=false",
    "output.tensorboard=false",
]


@pytest.fixture(scope="session")
def datasets_root(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """CIFAR-10/100, Tiny-ImageNet, mini-ImageNet and Fashion-MNIST fixtures in their real on-disk formats."""
    root = tmp_path_factory.mktemp("train_datasets")
    fx.write_cifar10(root, n_train=40, n_test=20)
    fx.write_cifar100(root, n_train=40, n_test=20)
    fx.write_tiny_imagenet(root, num_classes=3, n_train_per_class=4, n_val_per_class=2)
    fx.write_mini_imagenet(root, num_classes=4, n_per_class=10)
    fx.write_fashion_mnist(root, n_train=40, n_test=20, layout="debian", gz=True)
    return root


@pytest.fixture(autouse=True)
def _skip_without_cuda():
    if DEVICE.startswith("cuda") and not torch.cuda.is_available():
        pytest.skip("LORENTZCV_TEST_DEVICE=cuda but CUDA is not available")


@pytest.fixture(autouse=True)
def _one_thread():
    """Runs are compared bit for bit and the machine is shared: pin torch to one thread during a test."""
    n = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(n)
