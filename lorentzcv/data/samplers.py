"""Class-balanced batch sampling for metric learning (HIER's ``UniqueClassSampler``, ``docs/method.md`` §7.3)."""

from __future__ import annotations

from collections.abc import Iterator, Sequence

import numpy as np
import torch
from torch.utils.data import Sampler

__all__ = ["ClassBalancedBatchSampler"]


def _dist_world_and_rank() -> tuple[int, int]:
    if torch.distributed.is_available() and torch.distributed.is_initialized():
        return torch.distributed.get_world_size(), torch.distributed.get_rank()
    return 1, 0


class ClassBalancedBatchSampler(Sampler[list[int]]):
    """Batch sampler: each batch has ``batch_size // images_per_class`` classes × ``images_per_class`` images.

    Semantics of HIER's ``UniqueClassSampler`` (``docs/method.md`` §7.3): each *global* batch (all ranks together) draws
    ``G = batch_size · num_replicas / images_per_class`` classes — without replacement, unless the dataset
    has fewer than ``G`` classes — and ``images_per_class`` images of each class *with* replacement (classes
    can have few images). Rank ``r`` receives classes ``[r·G/W, (r+1)·G/W)`` of the global draw, so the
    ranks' batches are class-disjoint whenever classes are drawn without replacement. Each rank yields
    ``max(1, len(labels) // (batch_size · num_replicas))`` batches per epoch, i.e. about
    ``len(labels) / num_replicas`` samples. Batches are lists of ``images_per_class`` consecutive indices per
    class.

    All ranks draw the same global batches from ``numpy.random.default_rng([seed, epoch])``, so the stream
    depends only on ``(labels, seed, epoch)``; call :meth:`set_epoch` every epoch (as with
    ``DistributedSampler``) to get a new draw. Use it as ``DataLoader(dataset, batch_sampler=sampler)``.

    Args:
        labels: Integer label per dataset index (list, numpy array or tensor), e.g. ``dataset.targets``.
        batch_size: Per-rank batch size; must be a multiple of ``images_per_class``.
        images_per_class: Images drawn per sampled class (HIER: 2).
        num_replicas: World size; default from ``torch.distributed`` if initialised, else 1.
        rank: This process's rank; default from ``torch.distributed`` if initialised, else 0.
        seed: Base seed, identical on all ranks.
    """

    def __init__(
        self,
        labels: Sequence[int] | np.ndarray | torch.Tensor,
        batch_size: int,
        images_per_class: int = 2,
        num_replicas: int | None = None,
        rank: int | None = None,
        seed: int = 0,
    ) -> None:
        if images_per_class < 1 or batch_size < images_per_class or batch_size % images_per_class:
            raise ValueError(
                f"batch_size ({batch_size}) must be a positive multiple of images_per_class ({images_per_class})"
            )
        super().__init__()
        dist_world, dist_rank = _dist_world_and_rank()
        self.num_replicas = dist_world if num_replicas is None else int(num_replicas)
        self.rank = dist_rank if rank is None else int(rank)
        if not 0 <= self.rank < self.num_replicas:
            raise ValueError(f"rank {self.rank} is not in [0, num_replicas={self.num_replicas})")
        if isinstance(labels, torch.Tensor):
            labels = labels.detach().cpu().numpy()
        y = np.asarray(labels, dtype=np.int64).ravel()
        if y.size == 0:
            raise ValueError("labels is empty")
        self.batch_size = int(batch_size)
        self.images_per_class = int(images_per_class)
        self.seed = int(seed)
        self.epoch = 0
        self.num_labels = int(y.size)
        # Indices grouped by class: class j owns order[starts[j] : starts[j] + counts[j]].
        self._order = np.argsort(y, kind="stable")
        self.classes, self._starts, self._counts = np.unique(y[self._order], return_index=True, return_counts=True)
        self.classes_per_rank = self.batch_size // self.images_per_class
        self.classes_per_global_batch = self.classes_per_rank * self.num_replicas

    def set_epoch(self, epoch: int) -> None:
        """Set the epoch that, with ``seed``, determines the next iteration's draw."""
        self.epoch = int(epoch)

    def __len__(self) -> int:
        return max(1, self.num_labels // (self.batch_size * self.num_replicas))

    def __iter__(self) -> Iterator[list[int]]:
        rng = np.random.default_rng([self.seed, self.epoch])
        n_cls = self.classes_per_global_batch
        replace = n_cls > len(self.classes)
        lo, hi = self.rank * self.classes_per_rank, (self.rank + 1) * self.classes_per_rank
        for _ in range(len(self)):
            cls = rng.choice(len(self.classes), size=n_cls, replace=replace)
            # Draw images for the whole global batch so that every rank consumes the same random stream.
            offsets = rng.integers(0, self._counts[cls][:, None], size=(n_cls, self.images_per_class))
            picks = self._order[self._starts[cls][:, None] + offsets]
            yield picks[lo:hi].ravel().tolist()
