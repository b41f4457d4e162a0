r"""Retrieval metrics: Recall@K and MAP@R, chunked so that a 60k×60k gallery fits in memory (``docs/method.md`` §7.4).

Both functions rank the gallery for each query by a *score* that is lower for closer items:

- ``distance=None``: Euclidean, scored by :math:`\|g\|^2 - 2\,q\cdot g` (one matmul; the constant
  :math:`\|q\|^2` is dropped);
- an object with ``ranking_scores(query, gallery)`` (:class:`~lorentzcv.metric.LorentzDistance`: the negated
  Minkowski inner product :math:`-\langle q,g\rangle_L`, monotone in the geodesic distance;
  :class:`~lorentzcv.metric.PoincareDistance`);
- PML's ``LpDistance`` with ``p=2`` (the Euclidean path, after its optional normalisation);
- any other PML ``BaseDistance`` (its matrix, negated when ``is_inverted``, e.g. ``CosineSimilarity``).

Queries are processed in chunks of ``chunk_size`` on the device of the inputs; the largest intermediate is a
``chunk_size × G`` matrix (5000 × 60502 float32 ≈ 1.2 GB for SOP), never ``Q × G``.

Protocols:

- ``gallery=None``: leave-one-out on the query set (CUB, Cars, SOP): each query's own index is excluded
  from its ranking (by index, so exact duplicates of a query still count as neighbours).
- ``gallery`` given: query→gallery retrieval (In-Shop); nothing is masked (query and gallery are disjoint
  sets, ``docs/design.md`` §4.9).

Ties (equal scores) are resolved **pessimistically**: an item of another class with the same score as a
positive is ranked before it. A query is a hit at K iff its nearest positive has fewer than K other-class
items at a score ``<=`` its own. The result is deterministic and independent of the chunking, and a collapsed
embedding (all points equal) scores 0, not 1. Continuous embeddings have no ties in practice.

Hierarchy-aware retrieval (:func:`hierarchy_metrics`) needs a coarse label per item (a two-level tree
root → superclass → class): superclass Recall@K, and the lowest-common-ancestor (LCA) depth of the top-1
retrieval mistakes, in the spirit of HIER's hierarchy-aware evaluation (Kim et al., CVPR 2023).
"""

from __future__ import annotations

from collections.abc import Callable, Sequence

import numpy as np
import torch
from pytorch_metric_learning.distances import LpDistance

from ..geometry.precision import no_autocast, upcast

__all__ = ["recall_at_k", "map_at_r", "hierarchy_metrics", "HIERARCHY_KEYS", "DATASET_KS"]

DATASET_KS: dict[str, tuple[int, ...]] = {
    "cub": (1, 2, 4, 8),
    "cars": (1, 2, 4, 8),
    "sop": (1, 10, 100, 1000),
    "inshop": (1, 10, 20, 30),
}
"""The Recall@K lists of the standard metric-learning benchmarks (``docs/method.md`` §7.4)."""

Scorer = Callable[[torch.Tensor], torch.Tensor]


def _as_tensor(x, name: str, device: torch.device | None = None) -> torch.Tensor:
    if isinstance(x, np.ndarray) or not isinstance(x, torch.Tensor):
        x = torch.as_tensor(np.asarray(x))
    return x if device is None else x.to(device)


def _euclidean_scorer(gallery: torch.Tensor) -> Scorer:
    g = upcast(gallery)
    gt = g.transpose(0, 1).contiguous()
    g2 = (g * g).sum(1)

    def score(q: torch.Tensor) -> torch.Tensor:
        return torch.addmm(g2.unsqueeze(0), upcast(q).to(g.dtype), gt, alpha=-2.0)

    return score


def _make_scorer(distance, gallery: torch.Tensor) -> Scorer:
    """A function ``query_chunk -> (c, G)`` scores, lower = closer (see module docstring)."""
    if distance is None:
        return _euclidean_scorer(gallery)
    if hasattr(distance, "ranking_scores"):
        return lambda q: distance.ranking_scores(q, gallery)
    if isinstance(distance, LpDistance) and distance.p == 2:
        return _euclidean_scorer(distance.maybe_normalize(upcast(gallery)))
    if callable(distance) and hasattr(distance, "is_inverted"):
        sign = -1.0 if distance.is_inverted else 1.0
        return lambda q: sign * upcast(distance(q, gallery))
    raise ValueError(
        f"distance must be None (Euclidean), a lorentzcv distance (LorentzDistance, PoincareDistance) or a "
        f"pytorch-metric-learning BaseDistance, got {type(distance).__name__}"
    )


def _prepare(query, query_labels, gallery, gallery_labels, chunk_size: int):
    query = _as_tensor(query, "query")
    if query.dim() != 2:
        raise ValueError(f"query must have shape (Q, D), got {tuple(query.shape)}")
    device = query.device
    query_labels = _as_tensor(query_labels, "query_labels", device)
    if query_labels.dim() != 1 or len(query_labels) != len(query):
        raise ValueError(f"query_labels must have shape ({len(query)},), got {tuple(query_labels.shape)}")
    if (gallery is None) != (gallery_labels is None):
        raise ValueError("pass both gallery and gallery_labels (query→gallery) or neither (leave-one-out)")
    loo = gallery is None
    if loo:
        gallery, gallery_labels = query, query_labels
    else:
        gallery = _as_tensor(gallery, "gallery", device)
        gallery_labels = _as_tensor(gallery_labels, "gallery_labels", device)
        if gallery.dim() != 2 or gallery.size(1) != query.size(1):
            raise ValueError(f"gallery must have shape (G, {query.size(1)}), got {tuple(gallery.shape)}")
        if gallery_labels.dim() != 1 or len(gallery_labels) != len(gallery):
            raise ValueError(
                f"gallery_labels must have shape ({len(gallery)},), got {tuple(gallery_labels.shape)}"
            )
    if not (isinstance(chunk_size, int) and chunk_size > 0):
        raise ValueError(f"chunk_size must be a positive integer, got {chunk_size!r}")
    return query, query_labels, gallery, gallery_labels, loo


def _chunks(query, query_labels, gallery, gallery_labels, loo: bool, distance, chunk_size: int):
    """Yield ``(scores, positives)`` per chunk: ``(c, G)`` scores (self set to +inf) and the positive mask
    (self excluded)."""
    scorer = _make_scorer(distance, gallery)
    for s in range(0, len(query), chunk_size):
        e = min(s + chunk_size, len(query))
        scores = scorer(query[s:e])
        pos = query_labels[s:e].unsqueeze(1) == gallery_labels.unsqueeze(0)
        if loo:
            rows = torch.arange(e - s, device=scores.device)
            cols = rows + s
            scores[rows, cols] = float("inf")
            pos[rows, cols] = False
        yield scores, pos


@torch.no_grad()
def recall_at_k(
    query, query_labels, gallery=None, gallery_labels=None, ks: Sequence[int] = (1, 2, 4, 8),
    distance=None, chunk_size: int = 5000,
) -> dict[int, float]:
    r"""Recall@K: the fraction of queries with at least one same-label item among their K nearest.

    Args:
        query: ``(Q, D)`` embeddings (tensor or array; Lorentz points ``(Q, 1+n)`` for ``LorentzDistance``).
        query_labels: ``(Q,)`` integer labels.
        gallery, gallery_labels: ``(G, D)`` / ``(G,)``; ``None`` for leave-one-out on the query set.
        ks: the K values (e.g. ``DATASET_KS["sop"]``).
        distance: ``None`` (Euclidean) or a distance object (module docstring).
        chunk_size: queries per chunk.

    Returns:
        ``{K: recall}`` with floats in ``[0, 1]``. A query without any positive in the gallery (a class with
        a single sample under leave-one-out) counts as a miss. Ties are pessimistic (module docstring).
    """
    ks = tuple(int(k) for k in ks)
    if not ks or any(k < 1 for k in ks):
        raise ValueError(f"ks must be a non-empty list of positive integers, got {ks}")
    query, query_labels, gallery, gallery_labels, loo = _prepare(
        query, query_labels, gallery, gallery_labels, chunk_size
    )
    with no_autocast(query):
        hits = torch.zeros(len(ks), dtype=torch.long, device=query.device)
        for scores, pos in _chunks(query, query_labels, gallery, gallery_labels, loo, distance, chunk_size):
            inf = torch.tensor(float("inf"), dtype=scores.dtype, device=scores.device)
            nearest_pos = torch.where(pos, scores, inf).amin(dim=1)
            # other-class items ranked before the nearest positive (ties count against it); self is +inf
            n_before = ((scores <= nearest_pos.unsqueeze(1)) & ~pos).sum(dim=1)
            has_pos = pos.any(dim=1)
            for i, k in enumerate(ks):
                hits[i] += (has_pos & (n_before < k)).sum()
    return {k: hits[i].item() / len(query) for i, k in enumerate(ks)}


@torch.no_grad()
def map_at_r(
    query, query_labels, gallery=None, gallery_labels=None, distance=None, chunk_size: int = 5000,
) -> float:
    r"""Mean average precision at R (Musgrave et al. 2020, "A Metric Learning Reality Check").

    For a query with :math:`R` positives in the gallery (self excluded under leave-one-out),

    .. math:: \mathrm{MAP@R} = \frac{1}{R}\sum_{i=1}^{R} P(i)\,[\text{item } i \text{ is a positive}],

    with :math:`P(i)` the precision among the first ``i`` retrieved items; the result is averaged over
    queries. Queries with ``R = 0`` are left out (as pytorch-metric-learning's ``AccuracyCalculator``);
    ``nan`` if every query has ``R = 0``. Same arguments, chunking and (pessimistic) ties as
    :func:`recall_at_k`. Per chunk, the ``R_max`` nearest positives and other-class items are taken with
    ``topk`` (``R_max`` = largest class size in the gallery), so memory stays ``O(chunk_size · G)``.
    """
    query, query_labels, gallery, gallery_labels, loo = _prepare(
        query, query_labels, gallery, gallery_labels, chunk_size
    )
    _, counts = torch.unique(gallery_labels, return_counts=True)
    r_max = int(counts.max()) - int(loo)
    total = torch.zeros((), dtype=torch.float64, device=query.device)
    n_valid = 0
    if r_max < 1:
        return float("nan")
    with no_autocast(query):
        for scores, pos in _chunks(query, query_labels, gallery, gallery_labels, loo, distance, chunk_size):
            inf = torch.tensor(float("inf"), dtype=scores.dtype, device=scores.device)
            r = pos.sum(dim=1)
            kk = min(r_max, scores.size(1))
            pos_s = torch.where(pos, scores, inf).topk(kk, dim=1, largest=False, sorted=True).values
            neg_s = torch.where(pos, inf, scores).topk(kk, dim=1, largest=False, sorted=True).values
            # position of the p-th nearest positive = p + (# other-class items with score <= it); the self
            # entry is +inf in neg_s and is never <= a finite positive score
            n_before = torch.searchsorted(neg_s.contiguous(), pos_s.contiguous(), right=True)
            p = torch.arange(1, kk + 1, device=scores.device).unsqueeze(0)
            position = p + n_before
            valid = (p <= r.unsqueeze(1)) & (position <= r.unsqueeze(1))
            prec = torch.where(valid, p.double() / position.double(), torch.zeros((), dtype=torch.float64,
                                                                                   device=scores.device))
            has = r > 0
            total += (prec.sum(dim=1)[has] / r[has].double()).sum()
            n_valid += int(has.sum())
    return float(total / n_valid) if n_valid else float("nan")


#: The keys :func:`hierarchy_metrics` adds besides ``SR@K`` (superclass Recall@K).
HIERARCHY_KEYS = ("mistake_rate", "mistake_depth", "mistake_in_super")


@torch.no_grad()
def hierarchy_metrics(
    query, query_labels, query_supers, gallery=None, gallery_labels=None, gallery_supers=None,
    ks: Sequence[int] = (1, 2, 4, 8), distance=None, chunk_size: int = 5000,
) -> dict[str, float]:
    r"""Hierarchy-aware retrieval on a two-level tree (root → superclass → class).

    Every item has a class label and a superclass label (the class's parent). The depth of the lowest common
    ancestor of two items is

    .. math:: d_\mathrm{LCA}(a, b) = [s_a = s_b] + [s_a = s_b][y_a = y_b] \in \{0, 1, 2\}

    (0: they meet only at the root; 1: same superclass, different class; 2: same class), with
    :math:`s` the superclass and :math:`y` the class. Reported (same ranking, chunking, leave-one-out and
    pessimistic ties as :func:`recall_at_k`, with the distance of ``distance``):

    - ``"SR@K"`` — **superclass Recall@K**: the fraction of queries with at least one item of their own
      superclass among their K nearest (:func:`recall_at_k` on the superclass labels; same-class items count).
      Always ``>= R@K``.
    - ``"mistake_rate"`` — the fraction of queries whose top-1 neighbour is of another class
      (``1 - R@1`` exactly, ties pessimistic).
    - ``"mistake_depth"`` — the **mean LCA depth of the top-1 mistakes**: over the queries whose top-1
      neighbour is of another class, the mean of :math:`d_\mathrm{LCA}(q, n_1)` with :math:`n_1` that neighbour
      (the nearest other-class item; among other-class items tied at that score the one of smallest depth,
      pessimistic). In ``[0, 1]``: 1 = every mistake stays within the query's superclass, 0 = every mistake
      crosses to another superclass. It follows HIER's hierarchy-aware evaluation in spirit (HIER measures
      how well an embedding respects a class hierarchy it was not given) and Bertinetto et al.'s "mistake
      severity" (CVPR 2020, the LCA height of top-1 mistakes); the definition here is ours.
    - ``"mistake_in_super"`` — the **fraction of top-1 mistakes that stay in the query's superclass**
      (:math:`d_\mathrm{LCA} \ge 1`). On this two-level tree it equals ``mistake_depth`` by definition (a
      mistake has depth 0 or 1); both are reported because they differ on deeper trees.

    ``mistake_depth`` and ``mistake_in_super`` are ``nan`` when there is no mistake.

    Args:
        query, query_labels: as :func:`recall_at_k`.
        query_supers: ``(Q,)`` superclass labels of the queries.
        gallery, gallery_labels, gallery_supers: the gallery (all three or none: leave-one-out).
        ks: the K values of the superclass recall.
        distance, chunk_size: as :func:`recall_at_k`.

    Returns:
        ``{"SR@K": …, "mistake_rate": …, "mistake_depth": …, "mistake_in_super": …}`` (floats).
    """
    if (gallery is None) != (gallery_supers is None):
        raise ValueError("pass gallery_supers exactly when a gallery is given")
    q_sup = _as_tensor(query_supers, "query_supers")
    if q_sup.dim() != 1 or len(q_sup) != len(query_labels):
        raise ValueError(f"query_supers must have shape ({len(query_labels)},), got {tuple(q_sup.shape)}")
    g_sup = None if gallery_supers is None else _as_tensor(gallery_supers, "gallery_supers")
    if g_sup is not None and (g_sup.dim() != 1 or len(g_sup) != len(gallery_labels)):
        raise ValueError(f"gallery_supers must have shape ({len(gallery_labels)},), got {tuple(g_sup.shape)}")
    sr = recall_at_k(query, q_sup, gallery, g_sup, ks=ks, distance=distance, chunk_size=chunk_size)
    query, query_labels, gallery, gallery_labels, loo = _prepare(
        query, query_labels, gallery, gallery_labels, chunk_size
    )
    q_sup = q_sup.to(query.device)
    g_sup = q_sup if loo else g_sup.to(query.device)
    n_mistakes, n_in_super = 0, 0
    with no_autocast(query):
        for i, (scores, pos) in enumerate(
            _chunks(query, query_labels, gallery, gallery_labels, loo, distance, chunk_size)
        ):
            s = i * chunk_size
            inf = torch.tensor(float("inf"), dtype=scores.dtype, device=scores.device)
            nearest_pos = torch.where(pos, scores, inf).amin(dim=1)
            neg = torch.where(pos, inf, scores)  # self is +inf under leave-one-out
            nearest_neg = neg.amin(dim=1)
            # a top-1 mistake (ties pessimistic, as R@1): an other-class item at a score <= the nearest positive
            mistake = (nearest_neg <= nearest_pos) & torch.isfinite(nearest_neg)
            if not bool(mistake.any()):
                continue
            q_s = q_sup[s:s + len(scores)]
            tied = (neg <= nearest_neg.unsqueeze(1)) & mistake.unsqueeze(1)
            same_super = q_s.unsqueeze(1) == g_sup.unsqueeze(0)
            # depth 1 only if every tied other-class neighbour shares the superclass (pessimistic)
            in_super = ~(tied & ~same_super).any(dim=1) & mistake
            n_mistakes += int(mistake.sum())
            n_in_super += int(in_super.sum())
    depth = n_in_super / n_mistakes if n_mistakes else float("nan")
    out: dict[str, float] = {f"SR@{k}": v for k, v in sr.items()}
    out.update(mistake_rate=n_mistakes / len(query), mistake_depth=depth, mistake_in_super=depth)
    return out
