"""ClassBalancedBatchSampler: batch composition, per-rank slices, determinism, DataLoader use."""

from __future__ import annotations

from collections import Counter

import numpy as np
import pytest
import torch
from torch.utils.data import DataLoader, TensorDataset

from lorentzcv.data import ClassBalancedBatchSampler

# 20 classes with unequal sizes (3..12 images), shuffled order.
_RNG = np.random.default_rng(0)
LABELS = _RNG.permutation(np.repeat(np.arange(20), [3 + (c % 10) for c in range(20)])).tolist()


def _check_batch(batch, labels, n_classes, ipc):
    counts = Counter(labels[i] for i in batch)
    assert len(batch) == n_classes * ipc
    assert len(counts) == n_classes and set(counts.values()) == {ipc}
    for k in range(0, len(batch), ipc):  # ipc consecutive indices per class
        assert len({labels[i] for i in batch[k : k + ipc]}) == 1


def test_batch_composition_and_length():
    sampler = ClassBalancedBatchSampler(LABELS, batch_size=8, images_per_class=2, num_replicas=1, rank=0)
    batches = list(sampler)
    assert len(batches) == len(sampler) == len(LABELS) // 8
    for b in batches:
        _check_batch(b, LABELS, 4, 2)
    assert sum(map(len, batches)) == (len(LABELS) // 8) * 8


def test_images_per_class_three():
    sampler = ClassBalancedBatchSampler(LABELS, batch_size=9, images_per_class=3)
    for b in sampler:
        _check_batch(b, LABELS, 3, 3)


def test_ranks_get_disjoint_slices_of_the_same_global_batch():
    ranks = [ClassBalancedBatchSampler(LABELS, 8, 2, num_replicas=2, rank=r, seed=7) for r in range(2)]
    b0, b1 = list(ranks[0]), list(ranks[1])
    assert len(b0) == len(b1) == len(LABELS) // 16
    assert sum(map(len, b0)) == (len(LABELS) // 16) * 8  # about len / world samples per rank
    for x, y in zip(b0, b1):
        _check_batch(x, LABELS, 4, 2)
        _check_batch(y, LABELS, 4, 2)
        assert not {LABELS[i] for i in x} & {LABELS[i] for i in y}  # 8 distinct classes per global batch
    # the two ranks together equal a single-process sampler with the doubled batch
    single = list(ClassBalancedBatchSampler(LABELS, 16, 2, num_replicas=1, rank=0, seed=7))
    assert [x + y for x, y in zip(b0, b1)] == single[: len(b0)]


def test_determinism_and_set_epoch():
    a = ClassBalancedBatchSampler(LABELS, 8, 2, seed=3)
    b = ClassBalancedBatchSampler(LABELS, 8, 2, seed=3)
    assert list(a) == list(b) == list(a)  # same seed+epoch -> same stream, iteration is repeatable
    a.set_epoch(1)
    e1 = list(a)
    assert e1 != list(b)
    b.set_epoch(1)
    assert list(b) == e1
    assert list(ClassBalancedBatchSampler(LABELS, 8, 2, seed=4)) != list(ClassBalancedBatchSampler(LABELS, 8, 2))


def test_replacement_when_too_few_classes():
    labels = [0, 0, 1, 1, 1, 2]
    batches = list(ClassBalancedBatchSampler(labels, batch_size=10, images_per_class=2, seed=0))
    assert len(batches) == 1 and len(batches[0]) == 10  # 5 class draws from 3 classes
    for k in range(0, 10, 2):
        assert labels[batches[0][k]] == labels[batches[0][k + 1]]


def test_works_with_dataloader_and_tensor_labels():
    labels = torch.tensor(LABELS)
    ds = TensorDataset(torch.arange(len(LABELS)), labels)
    sampler = ClassBalancedBatchSampler(labels, batch_size=6, images_per_class=2)
    loader = DataLoader(ds, batch_sampler=sampler)
    batches = list(loader)
    assert len(batches) == len(LABELS) // 6
    for idx, y in batches:
        assert idx.shape == (6,) and torch.equal(y, labels[idx])
        assert sorted(Counter(y.tolist()).values()) == [2, 2, 2]


def test_defaults_without_distributed_and_argument_checks():
    s = ClassBalancedBatchSampler(LABELS, 4)
    assert (s.num_replicas, s.rank, s.images_per_class) == (1, 0, 2)
    with pytest.raises(ValueError, match="multiple of images_per_class"):
        ClassBalancedBatchSampler(LABELS, 5, 2)
    with pytest.raises(ValueError, match="rank 2"):
        ClassBalancedBatchSampler(LABELS, 4, 2, num_replicas=2, rank=2)
    with pytest.raises(ValueError, match="empty"):
        ClassBalancedBatchSampler([], 4, 2)
