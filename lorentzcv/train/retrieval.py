"""Retrieval evaluation of an embedding model (docs/method.md §7.4): embeddings of a whole split (gathered back
from the ranks of a distributed run), then Recall@K and MAP@R with the model's own distance."""

from __future__ import annotations

from collections.abc import Sequence

import torch
import torch.distributed as dist
from torch import nn
from torch.utils.data import DataLoader

from .distributed import DistInfo

__all__ = ["compute_embeddings", "evaluate_retrieval"]


def _gather_rows(x: torch.Tensor, n: int, info: DistInfo | None) -> torch.Tensor:
    """Reassemble ``n`` rows sharded by :class:`ShardSampler` (rank ``r`` holds rows ``r, r+W, …``)."""
    if info is None or not info.distributed:
        return x
    w = info.world_size
    m = -(-n // w)
    pad = x.new_zeros((m - x.shape[0], *x.shape[1:]))
    parts = [torch.empty((m, *x.shape[1:]), dtype=x.dtype, device=x.device) for _ in range(w)]
    dist.all_gather(parts, torch.cat([x, pad]).contiguous())
    return torch.stack(parts, dim=1).reshape(m * w, *x.shape[1:])[:n]


@torch.no_grad()
def compute_embeddings(model: nn.Module, loader: DataLoader, device: torch.device,
                       amp_dtype: torch.dtype | None = None,
                       dist_info: DistInfo | None = None) -> tuple[torch.Tensor, torch.Tensor]:
    """Embeddings (float32) and labels of the whole dataset behind ``loader``, in dataset order.

    Under DDP ``loader`` must shard with :class:`~lorentzcv.train.common.ShardSampler`; every rank returns all rows.
    """
    was_training = model.training
    model.eval()
    zs, ys = [], []
    for x, y in loader:
        x = x.to(device, non_blocking=True)
        with torch.autocast(device.type, dtype=amp_dtype or torch.float32, enabled=amp_dtype is not None):
            z = model(x)
        zs.append(z.float())
        ys.append(torch.as_tensor(y).to(device))
    model.train(was_training)
    n = len(loader.dataset)
    z = torch.cat(zs) if zs else None
    y = torch.cat(ys) if ys else torch.empty(0, dtype=torch.long, device=device)
    if dist_info is not None and dist_info.distributed:
        dim = torch.tensor([float(z.shape[1]) if z is not None else 0.0], device=device)
        dist.all_reduce(dim, op=dist.ReduceOp.MAX)  # a rank without rows still takes part in the gathers
        if z is None:
            z = torch.empty(0, int(dim.item()), device=device)
        z = _gather_rows(z, n, dist_info)
        y = _gather_rows(y, n, dist_info)
    elif z is None:
        raise ValueError("cannot evaluate an empty dataset")
    return z, y


def evaluate_retrieval(model: nn.Module, loaders: dict[str, DataLoader], device: torch.device,
                       ks: Sequence[int] = (1, 2, 4, 8), amp_dtype: torch.dtype | None = None,
                       dist_info: DistInfo | None = None, map_r: bool = True,
                       chunk_size: int = 5000) -> dict[str, float]:
    """Recall@K (and MAP@R) with the model's distance (``model.distance()``, docs/method.md §7.4).

    ``loaders`` has ``"test"`` (leave-one-out, self-match masked by index) or ``"query"`` and ``"gallery"``
    (query→gallery, nothing masked), or ``"train"`` (leave-one-out). Returns ``{"R@k": …, "MAP@R": …, "n": …,
    "nonfinite": …}`` (``nonfinite``: embeddings with a NaN/Inf coordinate, over all splits: a diverged model).
    When every split's dataset has ``super_targets`` (a two-level class hierarchy, in dataset order), also the
    hierarchy metrics of :func:`~lorentzcv.metric.hierarchy_metrics`: ``"SR@k"`` (superclass Recall@K),
    ``"mistake_rate"``, ``"mistake_depth"`` (mean LCA depth of the top-1 mistakes), ``"mistake_in_super"``.
    """
    from ..metric import hierarchy_metrics, map_at_r, recall_at_k

    distance = model.distance() if hasattr(model, "distance") else None
    emb = {s: compute_embeddings(model, ld, device, amp_dtype, dist_info) for s, ld in loaders.items()}
    if "query" in emb:
        (q, qy), (g, gy) = emb["query"], emb["gallery"]
    else:
        (q, qy), = emb.values()
        g = gy = None
    out: dict[str, float] = {f"R@{k}": v for k, v in recall_at_k(q, qy, g, gy, ks=ks, distance=distance,
                                                                   chunk_size=chunk_size).items()}
    if map_r:
        out["MAP@R"] = map_at_r(q, qy, g, gy, distance=distance, chunk_size=chunk_size)
    supers = {s: getattr(ld.dataset, "super_targets", None) for s, ld in loaders.items()}
    if all(v is not None for v in supers.values()):
        qs = supers["query"] if "query" in supers else next(iter(supers.values()))
        gs = supers["gallery"] if "query" in supers else None
        out.update(hierarchy_metrics(q, qy, qs, g, gy, gs, ks=ks, distance=distance, chunk_size=chunk_size))
    out["n"] = int(len(q))
    out["nonfinite"] = sum(int((~torch.isfinite(z).all(1)).sum()) for z, _ in emb.values())
    return out
