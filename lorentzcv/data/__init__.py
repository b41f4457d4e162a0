"""Datasets, transforms and samplers for classification and deep metric learning.

>>> from lorentzcv.data import create_dataset, list_datasets
>>> ds = create_dataset("digits", split="train")          # embedded, offline
>>> img, label = ds[0]; img.shape, ds.num_classes
(torch.Size([1, 8, 8]), 10)

Every dataset is registered by name (``list_datasets()``) with a :class:`DatasetInfo` that documents its
on-disk layout and how to get it; a missing dataset raises ``FileNotFoundError`` quoting both.
Classification: ``cifar10``, ``cifar100``, ``tiny_imagenet``, ``mini_imagenet``, ``fashion_mnist``,
``digits``, ``image_folder``. Metric learning (class-disjoint train/test): ``cub``, ``cars``, ``sop``,
``inshop``, the offline demos ``digits_dml``, ``fashion_mnist_dml``, and ``fashion_mnist_hier`` (classes held
out per superclass, for hierarchy-aware retrieval).
"""

# Importing the dataset modules registers them.
from . import cars, cifar, cub, digits, fashion_mnist, image_folder, inshop, mini_imagenet, sop, tiny_imagenet
from ._base import LabeledDataset
from ._factory import create_dataset, create_transform, resolve_root
from ._registry import DatasetInfo, get_dataset_info, list_datasets, register_dataset
from ._splits import class_holdout, stratified_holdout
from .samplers import ClassBalancedBatchSampler
from .transforms import (
    build_cifar_transform,
    build_digits_transform,
    build_fashion_mnist_transform,
    build_imagenet_transform,
    build_metric_transform,
    build_mini_imagenet_transform,
    build_tiny_imagenet_transform,
    build_transform,
)

del cars, cifar, cub, digits, fashion_mnist, image_folder, inshop, mini_imagenet, sop, tiny_imagenet

__all__ = [
    "DatasetInfo",
    "LabeledDataset",
    "ClassBalancedBatchSampler",
    "create_dataset",
    "create_transform",
    "get_dataset_info",
    "list_datasets",
    "register_dataset",
    "resolve_root",
    "stratified_holdout",
    "class_holdout",
    "build_transform",
    "build_cifar_transform",
    "build_tiny_imagenet_transform",
    "build_mini_imagenet_transform",
    "build_imagenet_transform",
    "build_fashion_mnist_transform",
    "build_digits_transform",
    "build_metric_transform",
]
