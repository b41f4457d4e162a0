"""hierarchy_metrics (superclass Recall@K, LCA depth of top-1 mistakes) on hand-built embeddings with known
answers, against a brute-force reference, and wired into evaluate_retrieval."""

from __future__ import annotations

import math

import pytest
import torch
from torch.utils.data import DataLoader, Dataset

from lorentzcv.geometry import Lorentz
from lorentzcv.geometry import math as lmath
from lorentzcv.metric import HIERARCHY_KEYS, LorentzDistance, hierarchy_metrics, recall_at_k
from lorentzcv.train.retrieval import evaluate_retrieval

# Six points on a line: (x, class, superclass). Nearest neighbours (leave-one-out):
#   0 -> 1 (same class), 1 -> 0 (same class), 2 -> 1 (class 0 != 1, same superclass 0: depth 1),
#   3 -> 4 (class 3 != 2, same superclass 1: depth 1), 4 -> 3 (depth 1),
#   5 -> 4 (class 3 != 1, superclass 1 != 0: depth 0).
LINE = [(0.0, 0, 0), (0.4, 0, 0), (1.0, 1, 0), (5.0, 2, 1), (5.3, 3, 1), (7.0, 1, 0)]


def _line():
    x = torch.tensor([[p[0]] for p in LINE], dtype=torch.float64)
    return x, torch.tensor([p[1] for p in LINE]), torch.tensor([p[2] for p in LINE])


def test_known_answers_on_a_line():
    x, y, s = _line()
    out = hierarchy_metrics(x, y, s, ks=(1, 2, 4))
    assert out["mistake_rate"] == pytest.approx(4 / 6)
    assert out["mistake_depth"] == pytest.approx(3 / 4)  # 3 of the 4 mistakes stay in the superclass
    assert out["mistake_in_super"] == pytest.approx(3 / 4)
    # superclass recall: only point 5 (superclass 0) has two superclass-1 points nearest; its 3rd is point 2
    assert (out["SR@1"], out["SR@2"], out["SR@4"]) == pytest.approx((5 / 6, 5 / 6, 1.0))
    assert set(out) == {"SR@1", "SR@2", "SR@4", *HIERARCHY_KEYS}


def test_mistake_rate_is_one_minus_recall_at_1_and_sr_bounds_r():
    gen = torch.Generator().manual_seed(0)
    x = torch.randn(60, 4, generator=gen)
    y = torch.randint(0, 6, (60,), generator=gen)
    s = y // 3  # classes 0-2 -> superclass 0, 3-5 -> 1
    out = hierarchy_metrics(x, y, s, ks=(1, 4))
    r = recall_at_k(x, y, ks=(1, 4))
    assert out["mistake_rate"] == pytest.approx(1 - r[1])
    assert out["SR@1"] >= r[1] and out["SR@4"] >= r[4]
    assert out["SR@4"] == pytest.approx(recall_at_k(x, s, ks=(4,))[4])


def _brute(x, y, s, dist) -> tuple[float, float]:
    """(mistake rate, mean LCA depth of mistakes) by sorting a full distance matrix (no ties)."""
    d = dist(x, x)
    d.fill_diagonal_(math.inf)
    nn = d.argmin(1)
    wrong = y[nn] != y
    depth = (s[nn] == s)[wrong].double()
    return wrong.double().mean().item(), depth.mean().item()


@pytest.mark.parametrize("chunk_size", [1, 7, 1000])
@pytest.mark.parametrize("geometry", ["euclidean", "lorentz"])
def test_matches_brute_force_for_every_chunking(geometry, chunk_size):
    gen = torch.Generator().manual_seed(1)
    centres = torch.randn(8, 5, dtype=torch.float64, generator=gen)
    y = torch.arange(8).repeat_interleave(6)
    x = centres[y] + 0.9 * torch.randn(len(y), 5, dtype=torch.float64, generator=gen)
    s = torch.tensor([0, 0, 0, 1, 1, 2, 2, 2])[y]
    if geometry == "euclidean":
        pts, distance, dist = x, None, torch.cdist
    else:
        m = Lorentz(k=10.0).double()
        pts = lmath.expmap0(torch.cat([torch.zeros(len(x), 1, dtype=x.dtype), 0.8 * x], 1), m.k)
        distance = LorentzDistance(m)

        def dist(a, b):
            return lmath.dist(a.unsqueeze(1), b.unsqueeze(0), m.k)

    out = hierarchy_metrics(pts, y, s, distance=distance, chunk_size=chunk_size)
    rate, depth = _brute(pts, y, s, dist)
    assert 0 < rate < 1 and 0 < depth < 1  # the case exercises both kinds of mistake
    assert out["mistake_rate"] == pytest.approx(rate)
    assert out["mistake_depth"] == pytest.approx(depth)


def test_ties_are_pessimistic():
    # the query (point 0) has two other-class neighbours at the same distance, one in its superclass and one not:
    # the mistake counts as leaving the superclass; a collapsed embedding is all mistakes
    x = torch.tensor([[0.0], [1.0], [-1.0], [5.0]])
    y = torch.tensor([0, 1, 2, 0])
    s = torch.tensor([0, 0, 1, 0])
    out = hierarchy_metrics(x[:3], y[:3], s[:3])
    # point 0: tie between 1 (depth 1) and 2 (depth 0) -> 0; point 1 -> 0 (depth 1); point 2 -> 0 (depth 0)
    assert out["mistake_rate"] == 1.0 and out["mistake_depth"] == pytest.approx(1 / 3)
    collapsed = hierarchy_metrics(torch.zeros(4, 2), y, s)
    assert collapsed["mistake_rate"] == 1.0 and collapsed["SR@1"] == 0.0
    assert collapsed["mistake_depth"] == 0.0  # every query has an other-superclass item among the tied


def test_no_mistakes_gives_nan_depth():
    x = torch.tensor([[0.0], [0.1], [5.0], [5.1]])
    y = torch.tensor([0, 0, 1, 1])
    out = hierarchy_metrics(x, y, torch.tensor([0, 0, 1, 1]))
    assert out["mistake_rate"] == 0.0 and math.isnan(out["mistake_depth"]) and math.isnan(out["mistake_in_super"])


def test_query_to_gallery():
    q = torch.tensor([[0.0], [10.0]])
    g = torch.tensor([[1.0], [2.0], [9.0]])
    out = hierarchy_metrics(
        q, torch.tensor([0, 5]), torch.tensor([0, 1]), g, torch.tensor([3, 0, 5]), torch.tensor([0, 0, 1]), ks=(1, 2)
    )
    # query 0 -> gallery 0 (class 3, same superclass: depth 1); query 1 -> gallery 2 (same class): no mistake
    assert out["mistake_rate"] == 0.5 and out["mistake_depth"] == 1.0
    assert out["SR@1"] == 1.0


def test_bad_input():
    x, y, s = _line()
    with pytest.raises(ValueError, match="gallery_supers"):
        hierarchy_metrics(x, y, s, x, y)
    with pytest.raises(ValueError, match="query_supers"):
        hierarchy_metrics(x, y, s[:3])
    with pytest.raises(ValueError, match="gallery_supers"):
        hierarchy_metrics(x, y, s, x, y, s[:2])


class _Points(Dataset):
    def __init__(self, x, y, supers):
        self.x, self.targets, self.super_targets = x, y.tolist(), supers

    def __len__(self) -> int:
        return len(self.x)

    def __getitem__(self, i):
        return self.x[i], self.targets[i]


def test_evaluate_retrieval_reports_hierarchy_only_with_super_targets():
    x, y, s = _line()
    model = torch.nn.Identity()
    ds = _Points(x.float(), y, s.tolist())
    out = evaluate_retrieval(model, {"test": DataLoader(ds, batch_size=4)}, torch.device("cpu"), ks=(1, 2))
    assert out["SR@1"] == pytest.approx(5 / 6) and out["mistake_depth"] == pytest.approx(3 / 4)
    assert out["R@1"] == pytest.approx(2 / 6) and out["mistake_rate"] == pytest.approx(1 - out["R@1"])
    plain = evaluate_retrieval(
        model, {"test": DataLoader(_Points(x.float(), y, None), batch_size=4)}, torch.device("cpu"), ks=(1, 2)
    )
    assert "SR@1" not in plain and not set(HIERARCHY_KEYS) & set(plain)
