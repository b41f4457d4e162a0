"""recall_at_k / map_at_r against brute force and pytorch-metric-learning; chunking, masking and ties."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from pytorch_metric_learning.distances import CosineSimilarity, LpDistance
from pytorch_metric_learning.utils.accuracy_calculator import AccuracyCalculator
from pytorch_metric_learning.utils.inference import CustomKNN

from lorentzcv.geometry import Lorentz
from lorentzcv.geometry import math as lmath
from lorentzcv.metric import DATASET_KS, LorentzDistance, PoincareDistance, map_at_r, recall_at_k

from ._helpers import brute_map_at_r, brute_recall, lorentz_points

KS = (1, 2, 4, 8, 100)


def _clustered(n_classes: int, per_class: int, d: int, gen: torch.Generator, spread: float = 0.9):
    centers = torch.randn(n_classes, d, dtype=torch.float64, generator=gen)
    x = centers.repeat_interleave(per_class, 0) + spread * torch.randn(n_classes * per_class, d,
                                                                      dtype=torch.float64, generator=gen)
    return x, torch.arange(n_classes).repeat_interleave(per_class)


def _setup(kind: str, gen: torch.Generator):
    """(embeddings, labels, distance object, exact float64 distance function) for one geometry."""
    x, y = _clustered(9, 5, 6, gen)
    perm = torch.randperm(len(x), generator=gen)
    x, y = x[perm], y[perm]
    if kind == "euclidean":
        return x, y, None, lambda a, b: torch.cdist(a, b)
    m = Lorentz(k=10.0).double()
    pts = lmath.expmap0(torch.cat([torch.zeros(len(x), 1, dtype=x.dtype), x * 0.8], 1), m.k)
    if kind == "lorentz":
        return pts, y, LorentzDistance(m), lambda a, b: lmath.dist(a.unsqueeze(1), b.unsqueeze(0), m.k)
    ball = lmath.to_poincare(pts, m.k)  # Poincaré ball of curvature -0.1; exact distance through the isometry
    return ball, y, PoincareDistance(0.1), lambda a, b: lmath.dist(
        lmath.from_poincare(a, m.k).unsqueeze(1), lmath.from_poincare(b, m.k).unsqueeze(0), m.k)


@pytest.mark.parametrize("kind", ["euclidean", "poincare", "lorentz"])
@pytest.mark.parametrize("chunk_size", [7, 45, 5000])
def test_recall_and_map_match_brute_force(kind, chunk_size, device):
    gen = torch.Generator().manual_seed(0)
    x, y, dist, exact = _setup(kind, gen)
    full = exact(x, x).numpy()
    got = recall_at_k(x.to(device), y.to(device), ks=KS, distance=dist, chunk_size=chunk_size)
    assert got == pytest.approx(brute_recall(full, y.numpy(), y.numpy(), KS, loo=True), abs=1e-12)
    assert 0 < got[1] < 1
    got_map = map_at_r(x.to(device), y.to(device), distance=dist, chunk_size=chunk_size)
    assert got_map == pytest.approx(brute_map_at_r(full, y.numpy(), y.numpy(), loo=True), abs=1e-12)
    # query -> gallery (In-Shop style): nothing masked
    q, qy, g, gy = x[:17], y[:17], x[17:], y[17:]
    got = recall_at_k(q.to(device), qy.to(device), g.to(device), gy.to(device), ks=KS, distance=dist,
                      chunk_size=chunk_size)
    assert got == pytest.approx(brute_recall(exact(q, g).numpy(), qy.numpy(), gy.numpy(), KS, loo=False))
    got_map = map_at_r(q.to(device), qy.to(device), g.to(device), gy.to(device), distance=dist, chunk_size=chunk_size)
    assert got_map == pytest.approx(brute_map_at_r(exact(q, g).numpy(), qy.numpy(), gy.numpy(), loo=False))


@pytest.mark.parametrize("kind", ["euclidean", "poincare", "lorentz"])
def test_agrees_with_pml_accuracy_calculator(kind):
    gen = torch.Generator().manual_seed(1)
    x, y, dist, _ = _setup(kind, gen)
    knn_dist = dist if dist is not None else LpDistance(normalize_embeddings=False)
    calc = AccuracyCalculator(include=("precision_at_1", "mean_average_precision_at_r"),
                              knn_func=CustomKNN(knn_dist), device=torch.device("cpu"), k="max_bin_count")
    acc = calc.get_accuracy(x.float(), y)
    assert recall_at_k(x.float(), y, ks=(1,), distance=dist, chunk_size=11)[1] == pytest.approx(
        acc["precision_at_1"], abs=1e-12)
    assert map_at_r(x.float(), y, distance=dist, chunk_size=11) == pytest.approx(
        acc["mean_average_precision_at_r"], abs=1e-9)
    # query -> gallery
    acc = calc.get_accuracy(x[:20].float(), y[:20], x[20:].float(), y[20:], ref_includes_query=False)
    assert recall_at_k(x[:20].float(), y[:20], x[20:].float(), y[20:], ks=(1,), distance=dist)[1] == \
        pytest.approx(acc["precision_at_1"], abs=1e-12)
    assert map_at_r(x[:20].float(), y[:20], x[20:].float(), y[20:], distance=dist) == pytest.approx(
        acc["mean_average_precision_at_r"], abs=1e-9)


def test_other_distance_objects():
    gen = torch.Generator().manual_seed(2)
    x, y = _clustered(6, 4, 5, gen)
    eu = recall_at_k(x, y, ks=KS)
    assert recall_at_k(x, y, ks=KS, distance=LpDistance(normalize_embeddings=False)) == eu
    xn = torch.nn.functional.normalize(x, dim=1)
    cos = recall_at_k(x, y, ks=KS, distance=CosineSimilarity())  # generic path, is_inverted
    assert cos == recall_at_k(xn, y, ks=KS) == recall_at_k(x, y, ks=KS, distance=LpDistance())
    full = torch.cdist(xn, xn).numpy()
    assert cos == pytest.approx(brute_recall(full, y.numpy(), y.numpy(), KS, loo=True))
    # numpy inputs
    assert recall_at_k(x.numpy(), y.numpy(), ks=KS) == eu


def test_singleton_class_is_a_miss_and_lone_queries_leave_map():
    x = torch.tensor([[0.0, 0.0], [0.1, 0.0], [5.0, 5.0], [0.0, 0.2]])
    y = torch.tensor([0, 0, 1, 0])  # class 1 has a single sample: no positive under leave-one-out
    r = recall_at_k(x, y, ks=(1, 3, 10))
    assert r == {1: 0.75, 3: 0.75, 10: 0.75}
    # MAP@R leaves the lone query out (PML's convention): the three class-0 queries are perfect
    assert map_at_r(x, y) == 1.0
    assert np.isnan(map_at_r(x[:1], y[:1], x[2:3], y[2:3]))


def test_duplicates_and_self_masking_by_index():
    # exact duplicates of the same label: the duplicate is the nearest neighbour (only self is masked)
    x = torch.tensor([[1.0, 2.0], [1.0, 2.0], [3.0, 0.0], [3.0, 0.0], [0.0, 9.0]])
    y = torch.tensor([0, 0, 1, 1, 2])
    assert recall_at_k(x, y, ks=(1,)) == {1: 0.8}
    # gallery mode masks nothing: a copy of the query in the gallery is retrieved at rank 1
    assert recall_at_k(x[:1], y[:1], x, y, ks=(1,)) == {1: 1.0}


def test_ties_are_pessimistic_and_collapse_scores_zero():
    # query at the origin; a positive and a negative at exactly the same distance 1
    q = torch.tensor([[0.0, 0.0]])
    g = torch.tensor([[1.0, 0.0], [0.0, 1.0], [3.0, 0.0]])
    gy = torch.tensor([0, 1, 0])
    assert recall_at_k(q, torch.tensor([0]), g, gy, ks=(1, 2)) == {1: 0.0, 2: 1.0}
    # ranking: negative (tie, first), positive, positive; R = 2 -> only position 2 counts: (1/2) / 2
    assert map_at_r(q, torch.tensor([0]), g, gy) == 0.25
    # a collapsed embedding scores 0 at every K below the number of other-class items
    x = torch.ones(12, 3)
    y = torch.arange(12) % 4
    assert recall_at_k(x, y, ks=(1, 9, 10)) == {1: 0.0, 9: 0.0, 10: 1.0}  # 9 other-class items per query
    assert map_at_r(x, y) == 0.0


def test_lorentz_fast_path_under_autocast_and_float32():
    m = Lorentz(k=10.0)
    gen = torch.Generator().manual_seed(3)
    x = lorentz_points(40, 8, gen=gen, dtype=torch.float32)
    y = torch.arange(40) % 5
    ref = brute_recall(LorentzDistance(m)(x, x).double().numpy(), y.numpy(), y.numpy(), KS, loo=True)
    with torch.autocast("cpu", dtype=torch.bfloat16):
        assert recall_at_k(x, y, ks=KS, distance=LorentzDistance(m), chunk_size=9) == pytest.approx(ref)


def test_dataset_ks_and_errors():
    assert DATASET_KS["sop"] == (1, 10, 100, 1000) and DATASET_KS["inshop"] == (1, 10, 20, 30)
    assert DATASET_KS["cub"] == DATASET_KS["cars"] == (1, 2, 4, 8)
    x, y = torch.randn(5, 3), torch.arange(5)
    with pytest.raises(ValueError, match="both gallery"):
        recall_at_k(x, y, gallery=x)
    with pytest.raises(ValueError, match="query_labels"):
        recall_at_k(x, y[:4])
    with pytest.raises(ValueError, match="ks"):
        recall_at_k(x, y, ks=(0,))
    with pytest.raises(ValueError, match="chunk_size"):
        map_at_r(x, y, chunk_size=0)
    with pytest.raises(ValueError, match="gallery must have shape"):
        recall_at_k(x, y, torch.randn(4, 2), torch.arange(4))
    with pytest.raises(ValueError, match="distance must be"):
        recall_at_k(x, y, distance="cosine")
