r"""Reconstruction metrics of an embedded graph: mean rank and mean average precision (Nickel & Kiela 2017).

For every node :math:`u` with a non-empty neighbour set :math:`N(u)` (its ancestors in the closure: the pairs
``(u, v)``, directed as in N&K's evaluation, which keys the adjacency by the first column of the closure file),
all other nodes are sorted by their distance to :math:`u` (``u`` itself excluded):

- **rank** of a neighbour :math:`v \in N(u)`: :math:`1 + |\{w \notin N(u) \cup \{u\} : d(u,w) < d(u,v)\}|`
  (other neighbours do not count against it; ties with non-neighbours count in its favour). The **mean rank** is
  the mean over all pairs ``(u, v)`` (1 is perfect).
- **average precision** of :math:`u`: the mean over :math:`v \in N(u)` of the precision among the nodes at
  distance :math:`\le d(u, v)` (tied nodes grouped, as scikit-learn's ``average_precision_score``);
  **MAP** is the mean over the nodes with neighbours (1 is perfect).

Computed in blocks of ``block_size`` source rows, so the full ``(N, N)`` distance matrix is never held.
"""

from __future__ import annotations

from collections.abc import Callable

import torch

__all__ = ["reconstruction_metrics", "ranks_and_ap"]


def ranks_and_ap(
    dist: torch.Tensor, pos: torch.Tensor, self_index: torch.Tensor | None = None
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """Per-row ranks and average precision for a block of distance rows.

    One sort of each row; the neighbours' counts come from a ``(B, P)`` table of their distances (``P`` the
    largest number of neighbours in the block, padded with ``inf``): for a neighbour at distance ``q``,
    ``#{w : d < q}`` and ``#{w : d <= q}`` by binary search in the sorted row, the same counts among the
    neighbours by binary search in their sorted table, and the non-neighbours' count as the difference.

    Args:
        dist: ``(B, N)`` distances from ``B`` sources to all ``N`` nodes (or any increasing function of them).
        pos: ``(B, N)`` boolean neighbour mask.
        self_index: ``(B,)`` column of each source (excluded from the ranking), or None.

    Returns:
        ``(ranks, ap, has_pos)``: ``ranks`` the ranks of every True entry of ``pos`` (row-major order),
        ``ap`` ``(B,)`` average precisions (NaN for rows without neighbours), ``has_pos`` ``(B,)``.
    """
    dist = dist.clone()
    pos = pos.clone()
    if self_index is not None:
        rows = torch.arange(dist.shape[0], device=dist.device)
        dist[rows, self_index] = torch.inf  # sorts last, below no finite distance
        pos[rows, self_index] = False
    npos = pos.sum(dim=1)
    width = max(int(npos.max()), 1) if npos.numel() else 1
    slot = torch.cumsum(pos, dim=1) - 1  # position of each neighbour within its row
    q = torch.full((dist.shape[0], width), torch.inf, dtype=dist.dtype, device=dist.device)
    r_idx, c_idx = pos.nonzero(as_tuple=True)
    q[r_idx, slot[r_idx, c_idx]] = dist[r_idx, c_idx]
    valid = torch.arange(width, device=dist.device) < npos[:, None]
    all_sorted = dist.sort(dim=1).values
    q_sorted = q.sort(dim=1).values
    n_lt = torch.searchsorted(all_sorted, q, side="left")
    n_le = torch.searchsorted(all_sorted, q, side="right").clamp_min(1)
    p_lt = torch.searchsorted(q_sorted, q, side="left")
    p_le = torch.searchsorted(q_sorted, q, side="right")
    ranks = (n_lt - p_lt + 1)[valid]  # row-major, neighbours in column order
    prec = torch.where(valid, p_le.to(dist.dtype) / n_le.to(dist.dtype), torch.zeros_like(q))
    ap = prec.sum(dim=1) / npos.clamp_min(1)
    ap = torch.where(npos > 0, ap, torch.full_like(ap, torch.nan))
    return ranks, ap, npos > 0


def reconstruction_metrics(
    distances_from: Callable[[torch.Tensor], torch.Tensor],
    edges: torch.Tensor,
    num_nodes: int,
    *,
    block_size: int = 128,
) -> dict[str, float]:
    """Mean rank and MAP of the closure ``edges`` (module docstring).

    Args:
        distances_from: maps source indices ``(B,)`` to distances ``(B, num_nodes)`` (e.g.
            :meth:`~lorentzcv.graph.LorentzEmbedding.distances_from`).
        edges: ``(E, 2)`` pairs ``(u, v)``: ``v`` is a neighbour of ``u``.
        num_nodes: number of nodes.
        block_size: source rows per block.

    Returns:
        ``{"mean_rank", "map", "num_pairs", "num_sources"}``.
    """
    edges = torch.as_tensor(edges, dtype=torch.long)
    if edges.ndim != 2 or edges.shape[1] != 2 or edges.shape[0] == 0:
        raise ValueError(f"edges must be a non-empty (E, 2) tensor, got shape {tuple(edges.shape)}")
    order = torch.argsort(edges[:, 0] * num_nodes + edges[:, 1])
    edges = edges[order]
    sources = torch.unique(edges[:, 0])
    col0 = edges[:, 0].contiguous()
    starts = torch.searchsorted(col0, sources)
    ends = torch.searchsorted(col0, sources, right=True)
    rank_sum, n_ranks, ap_sum = 0.0, 0, 0.0
    for b in range(0, len(sources), block_size):
        src = sources[b : b + block_size]
        d = distances_from(src)
        pos = torch.zeros(len(src), num_nodes, dtype=torch.bool, device=d.device)
        lo, hi = int(starts[b]), int(ends[b + len(src) - 1])
        row = torch.repeat_interleave(torch.arange(len(src)), (ends[b : b + len(src)] - starts[b : b + len(src)]))
        pos[row.to(d.device), edges[lo:hi, 1].to(d.device)] = True
        ranks, ap, _ = ranks_and_ap(d, pos, src.to(d.device))
        rank_sum += float(ranks.double().sum())
        n_ranks += ranks.numel()
        ap_sum += float(ap.double().sum())
    return {
        "mean_rank": rank_sum / n_ranks,
        "map": ap_sum / len(sources),
        "num_pairs": n_ranks,
        "num_sources": len(sources),
    }
