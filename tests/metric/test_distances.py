"""LorentzDistance / PoincareDistance: values, the isometry, PML contract, gradients, autocast."""

from __future__ import annotations

import types

import pytest
import torch
from pytorch_metric_learning import losses as pml_losses
from pytorch_metric_learning import miners as pml_miners
from pytorch_metric_learning.distances import BaseDistance

from lorentzcv.geometry import Lorentz
from lorentzcv.geometry import math as lmath
from lorentzcv.metric import LorentzDistance, PoincareDistance, ToPoincare

from ._helpers import lorentz_points, mobius_dist_matrix


def test_lorentz_distance_matches_kernel(device):
    m = Lorentz(k=10.0).double().to(device)
    x = lorentz_points(7, 5).to(device)
    y = lorentz_points(4, 5, scale=2.0).to(device)
    dist = LorentzDistance(m)
    assert isinstance(dist, BaseDistance) and not dist.is_inverted and not dist.normalize_embeddings
    ref = lmath.dist(x.unsqueeze(1), y.unsqueeze(0), m.k)
    torch.testing.assert_close(dist(x, y), ref, rtol=1e-10, atol=1e-10)
    torch.testing.assert_close(dist.pairwise_distance(x[:4], y), lmath.dist(x[:4], y, m.k))
    self_mat = dist(x)
    assert torch.equal(self_mat.diagonal(), torch.zeros(7, dtype=x.dtype, device=device))
    torch.testing.assert_close(self_mat, self_mat.T)


def test_lorentz_distance_reads_current_k():
    m = Lorentz(k=1.0, learnable=True).double()
    x, y = lorentz_points(3, 4, k=1.0), lorentz_points(3, 4, k=1.0)
    dist = LorentzDistance(m)
    d1 = dist(x, y)
    with torch.no_grad():
        m.k.fill_(4.0)
    x4, y4 = lmath.projx(x, m.k), lmath.projx(y, m.k)
    torch.testing.assert_close(dist(x4, y4), lmath.dist(x4.unsqueeze(1), y4.unsqueeze(0), m.k.detach()))
    assert not torch.allclose(dist(x4, y4), d1)
    assert "k" not in dict(dist.named_parameters())  # the manifold is referenced, not registered


def test_poincare_distance_matches_mobius_formula():
    c = 0.1
    p = ToPoincare(c=c)(torch.randn(6, 4, dtype=torch.float64) * 2)
    q = ToPoincare(c=c)(torch.randn(5, 4, dtype=torch.float64) * 2)
    dist = PoincareDistance(c)
    torch.testing.assert_close(dist(p, q), mobius_dist_matrix(p, q, c), rtol=1e-10, atol=1e-10)
    torch.testing.assert_close(dist.pairwise_distance(p[:5], q), mobius_dist_matrix(p[:5], q, c).diagonal())
    assert torch.equal(dist(p).diagonal(), torch.zeros(6, dtype=p.dtype))


@pytest.mark.parametrize("k", [10.0, 0.5])
def test_lorentz_equals_poincare_through_isometry(k):
    """LorentzDistance at k equals PoincareDistance at c = 1/k on to_poincare images (k=10 ↔ HIER's c=0.1)."""
    m = Lorentz(k=k).double()
    x = lorentz_points(8, 6, k=k, scale=1.5)
    y = lorentz_points(5, 6, k=k, scale=0.5)
    px, py = lmath.to_poincare(x, m.k), lmath.to_poincare(y, m.k)
    torch.testing.assert_close(LorentzDistance(m)(x, y), PoincareDistance(1 / k)(px, py), rtol=1e-8, atol=1e-8)
    # and float32 inputs (float64 Gram inside) stay close
    torch.testing.assert_close(
        LorentzDistance(Lorentz(k=k))(x.float(), y.float()), PoincareDistance(1 / k)(px.float(), py.float()),
        rtol=1e-4, atol=1e-4,
    )


def test_ranking_scores_are_monotone_in_distance():
    m = Lorentz(k=3.0).double()
    x, g = lorentz_points(6, 5, k=3.0), lorentz_points(30, 5, k=3.0, scale=1.3)
    for dist, (a, b) in [
        (LorentzDistance(m), (x, g)),
        (PoincareDistance(1 / 3.0), (lmath.to_poincare(x, m.k), lmath.to_poincare(g, m.k))),
    ]:
        d, s = dist(a, b), dist.ranking_scores(a, b)
        order = s.argsort(dim=1)
        assert (d.gather(1, order).diff(dim=1) >= -1e-12).all()


def test_gradcheck_lorentz_distance_points_and_k():
    x = lorentz_points(3, 3, k=2.0).requires_grad_()
    y = lorentz_points(4, 3, k=2.0, scale=2.0).requires_grad_()
    k = torch.tensor(2.0, dtype=torch.float64, requires_grad=True)

    def f(x, y, k):
        d = LorentzDistance(types.SimpleNamespace(k=k))
        return d(x, y), d.pairwise_distance(x, y[:3])

    assert torch.autograd.gradcheck(f, (x, y, k))


def test_gradcheck_poincare_distance():
    p = (ToPoincare()(torch.randn(3, 4, dtype=torch.float64))).detach().requires_grad_()
    q = (ToPoincare()(torch.randn(4, 4, dtype=torch.float64))).detach().requires_grad_()
    assert torch.autograd.gradcheck(lambda a, b: PoincareDistance(0.1)(a, b), (p, q))


def test_self_distance_matrix_has_finite_zero_gradient_on_diagonal():
    x = lorentz_points(5, 4).requires_grad_()
    LorentzDistance(types.SimpleNamespace(k=torch.tensor(10.0, dtype=torch.float64)))(x).diagonal().sum().backward()
    assert torch.equal(x.grad, torch.zeros_like(x))
    p = ToPoincare()(torch.randn(5, 4, dtype=torch.float64)).detach().requires_grad_()
    PoincareDistance()(p).sum().backward()
    assert torch.isfinite(p.grad).all()


def test_pml_loss_accepts_lorentz_distance():
    m = Lorentz(k=10.0, learnable=True)
    x = lorentz_points(12, 4, dtype=torch.float32).requires_grad_()
    labels = torch.arange(12) // 3
    triplets = pml_miners.TripletMarginMiner(margin=0.5, distance=LorentzDistance(m))(x, labels)
    assert len(triplets[0]) > 0
    loss = pml_losses.TripletMarginLoss(margin=0.5, distance=LorentzDistance(m))(x, labels, triplets)
    assert torch.isfinite(loss) and loss > 0
    loss.backward()
    assert torch.isfinite(x.grad).all() and m.k.grad is not None and torch.isfinite(m.k.grad)


def test_autocast_bf16_float32_island():
    m = Lorentz(k=10.0)
    x, y = lorentz_points(6, 8, dtype=torch.float32), lorentz_points(5, 8, dtype=torch.float32)
    ref = LorentzDistance(m)(x, y)
    with torch.autocast("cpu", dtype=torch.bfloat16):
        out = LorentzDistance(m)(x, y)
        out_half = LorentzDistance(m)(x.bfloat16(), y.bfloat16())
    assert out.dtype == torch.float32 and torch.equal(out, ref)
    assert out_half.dtype == torch.float32 and torch.isfinite(out_half).all()


def test_rejects_normalisation():
    with pytest.raises(ValueError, match="normalize"):
        LorentzDistance(Lorentz(), normalize_embeddings=True)
    with pytest.raises(ValueError, match="c > 0"):
        PoincareDistance(0.0)
