"""Lorentz closure embeddings (``lorentzcv.graph``): metrics on graphs with known answers, the N&K loss, negative
sampling, a short training that lowers the mean rank, and learned curvature keeping points on the manifold."""

from __future__ import annotations

import dataclasses
import math

import pytest
import torch

from lorentzcv.geometry import Lorentz, ManifoldParameter
from lorentzcv.geometry import math as lmath
from lorentzcv.graph import (
    EdgeSet,
    LorentzEmbedding,
    TrainConfig,
    nk_loss,
    ranks_and_ap,
    reconstruction_metrics,
    sample_negatives,
    train_embedding,
)


@pytest.fixture(autouse=True)
def _one_thread():
    n = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(n)


def tree_closure(depth: int, branching: int) -> tuple[int, torch.Tensor]:
    """A complete tree (node 0 the root) and its transitive closure pairs (child, ancestor)."""
    parent = {0: None}
    level, nxt = [0], 1
    for _ in range(depth):
        new = []
        for p in level:
            for _ in range(branching):
                parent[nxt] = p
                new.append(nxt)
                nxt += 1
        level = new
    pairs = []
    for u in parent:
        a = parent[u]
        while a is not None:
            pairs.append((u, a))
            a = parent[a]
    return nxt, torch.tensor(pairs)


def test_ranks_and_ap_by_hand() -> None:
    # source 0; neighbours 2 and 4; non-neighbours 1 (d=1) and 3 (d=3)
    d = torch.tensor([[0.0, 1.0, 2.0, 3.0, 4.0]])
    pos = torch.tensor([[False, False, True, False, True]])
    ranks, ap, has = ranks_and_ap(d, pos, torch.tensor([0]))
    assert ranks.tolist() == [2, 3]  # 1 + non-neighbours strictly closer; the other neighbour does not count
    assert ap.tolist() == [pytest.approx(0.5)]  # precisions 1/2 and 2/4
    assert has.tolist() == [True]
    # the source itself is never a competitor, even when it is the closest point
    ranks, ap, _ = ranks_and_ap(
        torch.tensor([[0.0, 5.0, 1.0]]), torch.tensor([[False, False, True]]), torch.tensor([0])
    )
    assert ranks.tolist() == [1] and ap.tolist() == [1.0]


def test_average_precision_matches_sklearn_with_ties() -> None:
    sk = pytest.importorskip("sklearn.metrics")
    g = torch.Generator().manual_seed(0)
    d = torch.randint(0, 6, (7, 30), generator=g).double()  # many ties
    pos = torch.rand(7, 30, generator=g) < 0.3
    pos[:, 0] = True
    ranks, ap, _ = ranks_and_ap(d, pos)
    for i in range(7):
        assert ap[i].item() == pytest.approx(sk.average_precision_score(pos[i].numpy(), -d[i].numpy()))
    # ranks against a brute-force count
    want = [1 + int(((~pos[i]) & (d[i] < d[i, j])).sum()) for i in range(7) for j in range(30) if pos[i, j]]
    assert ranks.tolist() == want


def test_reconstruction_metrics_perfect_and_reversed() -> None:
    # a path 0 <- 1 <- 2 <- 3 (closure: every node's ancestors are the smaller ones)
    n, pairs = 4, torch.tensor([(u, v) for u in range(4) for v in range(u)])
    i = torch.arange(n)
    perfect = torch.where(i[None, :] < i[:, None], 1.0, 10.0).double().fill_diagonal_(0)  # ancestors nearest
    m = reconstruction_metrics(lambda s: perfect[s], pairs, n, block_size=2)  # blocks must not matter
    assert m == {"mean_rank": 1.0, "map": 1.0, "num_pairs": 6, "num_sources": 3}
    # on a line descendants compete: node 1 has 0 and its descendant 2 both at distance 1 (a tie: rank 1,
    # precision 1/2); node 2 has 1 and its descendant 3 at distance 1 (rank 1, precision 1/2), then 0 at
    # distance 2 behind 3 (rank 2, precision 2/3); node 3 sees only ancestors (ranks 1, AP 1)
    line = (i[:, None] - i[None, :]).abs().double()
    m = reconstruction_metrics(lambda s: line[s], pairs, n)
    assert m["mean_rank"] == pytest.approx((1 + 1 + 2 + 1 + 1 + 1) / 6)
    assert m["map"] == pytest.approx((1 / 2 + (1 / 2 + 2 / 3) / 2 + 1) / 3)
    # put the descendants first: node 1's ancestor 0 at distance 10, descendants 2, 3 nearer
    far = torch.tensor([[0, 10, 11, 12], [10, 0, 1, 2], [11, 1, 0, 1], [12, 2, 1, 0]], dtype=torch.float64)
    m = reconstruction_metrics(lambda s: far[s], pairs, n)
    # node 1: ancestor 0 behind 2 and 3 -> rank 3, AP 1/3; node 2: 1 tied with 3 (rank 1, precision 1/2),
    # 0 behind 3 (rank 2, precision 2/3); node 3: 2, 1, 0 are its only other nodes -> ranks 1, AP 1
    assert m["mean_rank"] == pytest.approx((3 + 1 + 2 + 1 + 1 + 1) / 6)
    assert m["map"] == pytest.approx((1 / 3 + (1 / 2 + 2 / 3) / 2 + 1) / 3)
    with pytest.raises(ValueError):
        reconstruction_metrics(lambda s: line[s], torch.zeros(0, 2, dtype=torch.long), n)


def test_edge_set_and_negatives() -> None:
    n, pairs = tree_closure(3, 2)
    es = EdgeSet(pairs, n)
    assert (3, 1) in es and (3, 0) in es and (1, 3) not in es and (3, 3) not in es
    u = pairs[:, 0].repeat(4)
    neg, valid = sample_negatives(u, 10, es, generator=torch.Generator().manual_seed(0))
    assert neg.shape == valid.shape == (len(u), 10)
    ok = neg[valid]
    uu = u[:, None].expand_as(neg)[valid]
    assert not es.contains(uu, ok).any() and not (ok == uu).any()
    assert valid.float().mean() > 0.99
    # node 1's only non-neighbours besides itself: none when every other node is an ancestor
    es2 = EdgeSet(torch.tensor([[1, 0]]), 2)
    _, valid2 = sample_negatives(torch.tensor([1]), 5, es2, generator=torch.Generator().manual_seed(0))
    assert not valid2.any()
    with pytest.raises(ValueError):
        EdgeSet(torch.tensor([[0, 5]]), 3)


def test_nk_loss_is_the_softmax_over_distances() -> None:
    model = LorentzEmbedding(6, 3, init_scale=0.5, generator=torch.Generator().manual_seed(1))
    edges = torch.tensor([[1, 0], [2, 0]])
    neg = torch.tensor([[3, 4, 5], [3, 4, 1]])
    valid = torch.tensor([[True, True, False], [True, True, True]])
    x, man = model.weight.detach(), model.manifold
    want = []
    for (u, v), ns, ok in zip(edges.tolist(), neg.tolist(), valid.tolist()):
        cand = [v] + [w for w, keep in zip(ns, ok) if keep]
        logits = torch.stack([-man.dist(x[u], x[c]) for c in cand])
        want.append(-torch.log_softmax(logits, 0)[0])
    assert nk_loss(model, edges, neg, valid).item() == pytest.approx(torch.stack(want).mean().item(), rel=1e-12)


def test_embedding_module_basics() -> None:
    model = LorentzEmbedding(5, 2)
    assert isinstance(model.weight, ManifoldParameter) and model.weight.manifold is model.manifold
    assert model.weight.shape == (5, 3) and model.weight.dtype == torch.float64
    model.manifold.check_point_on_manifold(model.weight.detach())
    d = model.distances_from(torch.tensor([0, 3]))
    assert d.shape == (2, 5) and d[0, 0] < 1e-6 and d[1, 3] < 1e-6
    assert model.manifold.rescale_config.r == 0.8  # radius_fraction: points kept off the dtype's limit radius
    shared = Lorentz(2.0).double()
    assert LorentzEmbedding(3, 2, shared).manifold is shared
    with pytest.raises(ValueError):
        LorentzEmbedding(0, 2)


def _trained(
    optimizer: str, lr: float, learn_k: bool, epochs: int = 60
) -> tuple[LorentzEmbedding, float, float, list[dict]]:
    n, pairs = tree_closure(3, 3)  # 40 nodes, 102 pairs
    model = LorentzEmbedding(n, 2, learn_k=learn_k, generator=torch.Generator().manual_seed(0))
    before = reconstruction_metrics(model.distances_from, pairs, n)["mean_rank"]
    cfg = TrainConfig(
        epochs=epochs,
        batch_size=32,
        num_negatives=10,
        optimizer=optimizer,
        lr=lr,
        burnin_epochs=5,
        curvature_lr=0.05,
        seed=0,
    )
    hist = train_embedding(model, pairs, cfg)
    after = reconstruction_metrics(model.distances_from, pairs, n)["mean_rank"]
    return model, before, after, hist


def test_short_training_lowers_mean_rank() -> None:
    model, before, after, hist = _trained("rsgd", 5.0, learn_k=False)
    assert before > 5 and after < 0.5 * before
    assert hist[-1]["loss"] < hist[0]["loss"]
    assert hist[0]["lr"] == pytest.approx(0.5) and hist[-1]["lr"] == 5.0  # burn-in at lr * 0.1
    assert model.manifold.k.item() == 1.0  # fixed curvature stays


@pytest.mark.parametrize("optimizer,lr", [("rsgd", 5.0), ("radamw", 0.05)])
def test_learned_curvature_keeps_points_on_the_manifold(optimizer: str, lr: float) -> None:
    model, before, after, hist = _trained(optimizer, lr, learn_k=True, epochs=40)
    k = model.manifold.k.detach()
    assert abs(k.item() - 1.0) > 1e-3  # k was learned
    lo, hi = model.manifold.bounds
    assert lo <= k.item() <= hi
    x = model.weight.detach()
    assert torch.isfinite(x).all()
    model.manifold.check_point_on_manifold(x, atol=1e-9)  # <x,x>_L = -k for the *current* k
    assert after < before
    assert [h["k"] for h in hist][-1] == pytest.approx(k.item())


def test_train_rejects_bad_input() -> None:
    model = LorentzEmbedding(3, 2)
    with pytest.raises(ValueError):
        train_embedding(model, torch.zeros(0, 2, dtype=torch.long))
    with torch.no_grad():
        model.weight[1] = math.nan
    with pytest.raises(FloatingPointError, match="epoch 1"):
        train_embedding(model, torch.tensor([[1, 0], [2, 0]]), TrainConfig(epochs=3, burnin_epochs=0, num_negatives=2))


def test_distances_from_matches_the_geometry_kernel_far_from_the_origin() -> None:
    gen = torch.Generator().manual_seed(0)
    model = LorentzEmbedding(40, 5, k=2.5, init_scale=30.0, generator=gen)  # rapidities up to ~4 in sqrt(k) units
    x, k = model.weight.detach(), model.manifold.k.detach().double()
    src = torch.tensor([0, 7, 39])
    want = lmath.dist(x[src][:, None, :], x[None, :, :], k)
    got = model.distances_from(src)
    assert float(want.max()) > 5.0
    torch.testing.assert_close(got, want, rtol=1e-10, atol=1e-12)


def test_sparse_rsgd_steps_only_the_touched_rows_and_equals_the_dense_step() -> None:
    n, pairs = tree_closure(3, 3)  # 40 nodes, 102 pairs
    cfg = TrainConfig(epochs=4, batch_size=8, num_negatives=3, optimizer="rsgd", lr=2.0, burnin_epochs=1, seed=0)
    dense = LorentzEmbedding(n, 3, generator=torch.Generator().manual_seed(1))
    sparse = LorentzEmbedding(n, 3, generator=torch.Generator().manual_seed(1))
    h_dense = train_embedding(dense, pairs, cfg)
    h_sparse = train_embedding(sparse, pairs, dataclasses.replace(cfg, sparse=True))
    assert not torch.equal(dense.weight, LorentzEmbedding(n, 3, generator=torch.Generator().manual_seed(1)).weight)
    torch.testing.assert_close(sparse.weight, dense.weight, rtol=1e-12, atol=1e-13)
    assert [h["loss"] for h in h_sparse] == pytest.approx([h["loss"] for h in h_dense], rel=1e-12)
    sparse.manifold.check_point_on_manifold(sparse.weight.detach())
    for bad, match in [
        (dataclasses.replace(cfg, sparse=True, optimizer="radamw"), "radamw"),
        (dataclasses.replace(cfg, sparse=True, weight_decay=0.1), "weight_decay"),
    ]:
        with pytest.raises(ValueError, match=match):
            train_embedding(LorentzEmbedding(n, 3), pairs, bad)
    with pytest.raises(ValueError, match="learnable k"):
        train_embedding(LorentzEmbedding(n, 3, learn_k=True), pairs, dataclasses.replace(cfg, sparse=True))
