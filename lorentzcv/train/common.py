"""Helpers the training loop and every task share: seeds, mixed precision, evaluation shards, subsets,
optimizer options and the curvature report."""

from __future__ import annotations

import warnings
from collections.abc import Iterator
from typing import Any

import numpy as np
import torch
from torch import nn
from torch.utils.data import Dataset, Sampler, Subset

from .config import ConfigError, OptimConfig

__all__ = ["derive_seed", "seed_everything", "resolve_amp", "ShardSampler", "subset", "optimizer_kwargs",
           "curvatures"]


def derive_seed(*parts: int) -> int:
    """A 32-bit seed that is a fixed function of ``parts`` (e.g. ``(seed, epoch, rank)``)."""
    return int(np.random.SeedSequence([int(p) % (2**63) for p in parts]).generate_state(1)[0])


def seed_everything(seed: int) -> None:
    """Seed python, numpy and torch (CPU and CUDA)."""
    import random

    random.seed(seed)
    np.random.seed(seed % (2**32))
    torch.manual_seed(seed)


def resolve_amp(amp: str, device: torch.device) -> tuple[torch.dtype | None, bool]:
    """``(autocast dtype or None, use GradScaler)`` for ``train.amp`` on ``device``.

    ``bf16``: bfloat16 autocast, no scaler. ``fp16``: float16 autocast with a ``GradScaler`` (on CPU it works
    but is ~17× slower than float32, ``docs/ecosystem.md`` §6). ``auto``: bfloat16 on CPU and on CUDA devices that
    support it, else float16.
    """
    if amp == "none":
        return None, False
    if amp == "auto":
        if device.type == "cuda" and not torch.cuda.is_bf16_supported():
            amp = "fp16"
        else:
            amp = "bf16"
    if amp == "bf16":
        if device.type == "cuda" and not torch.cuda.is_bf16_supported():
            raise ConfigError("train.amp=bf16 but this GPU has no bfloat16 support; use fp16 or none")
        return torch.bfloat16, False
    if amp == "fp16":
        if device.type == "cpu":
            warnings.warn("train.amp=fp16 on CPU is slow (no native float16 kernels: a step takes several times "
                          "float32's)", stacklevel=2)
        return torch.float16, True
    raise ConfigError(f"train.amp must be none, bf16, fp16 or auto, got {amp!r}")


class ShardSampler(Sampler[int]):
    """Indices ``rank, rank + world, …`` of ``range(n)`` in order: a padding-free evaluation shard."""

    def __init__(self, n: int, rank: int = 0, world_size: int = 1) -> None:
        self.n, self.rank, self.world = int(n), int(rank), int(world_size)

    def __iter__(self) -> Iterator[int]:
        return iter(range(self.rank, self.n, self.world))

    def __len__(self) -> int:
        return len(range(self.rank, self.n, self.world))


def subset(ds: Dataset, n: int | None, seed: int) -> Dataset:
    """A seeded random subset of ``n`` items of ``ds`` (in index order), or ``ds`` itself when ``n`` is ``None`` or
    not smaller; uses the dataset's own ``subset`` when it has one (keeping its labels and facts)."""
    if n is None or n >= len(ds):
        return ds
    g = torch.Generator().manual_seed(seed)
    idx = sorted(torch.randperm(len(ds), generator=g)[:n].tolist())
    sub = getattr(ds, "subset", None)
    return sub(idx) if callable(sub) else Subset(ds, idx)


def optimizer_kwargs(o: OptimConfig) -> dict[str, Any]:
    """The options of an ``OptimConfig`` that apply to ``o.name`` (momentum/Nesterov for SGD, betas/eps for
    AdamW, the curvature mode for the Riemannian ones), then ``o.kwargs``."""
    kw: dict[str, Any] = {}
    if o.name in ("rsgd", "sgd"):
        kw.update(momentum=o.momentum, nesterov=o.nesterov and o.momentum > 0)
    else:
        kw.update(betas=tuple(o.betas), eps=o.eps)
    if o.name in ("rsgd", "radamw"):
        kw["curvature_mode"] = o.curvature_mode
    kw.update(o.kwargs)
    return kw


def set_repair_on_use(o: OptimConfig, *modules: nn.Module) -> None:
    """``Lorentz.repair_on_use`` of every manifold of ``modules``: False for ``optim.curvature_mode="naive"`` (the
    ablation baseline of a curvature-unaware optimizer: layers use stored points as they are), else True."""
    from ..geometry import named_manifolds

    repair = not (o.name in ("rsgd", "radamw") and o.curvature_mode == "naive")
    for module in modules:
        for manifold in named_manifolds(module).values():
            manifold.repair_on_use = repair


def curvatures(model: nn.Module) -> dict[str, float]:
    """Sectional curvature ``K = -1/k`` of every distinct manifold of ``model``, by module name."""
    from ..geometry import named_manifolds

    return {(name or "model"): float(m.curvature.detach().float().cpu()) for name, m in
            named_manifolds(model).items()}
