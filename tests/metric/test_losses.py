"""Proxy-Anchor, HIER and LHIER against slow references written from ``docs/method.md`` §7.1; LHIER training behaviour."""

from __future__ import annotations

import math

import pytest
import torch
from torch import nn

from lorentzcv.geometry import Lorentz
from lorentzcv.geometry import math as lmath
from lorentzcv.metric import (
    HierarchicalObjective,
    HIERLoss,
    LHIERLoss,
    ProxyAnchorLoss,
    ToPoincare,
    reciprocal_triplets,
)

from ._helpers import lorentz_points, mobius_dist_matrix, to_poincare_ref

# ----------------------------------------------------------------------------------------------- Proxy-Anchor


def proxy_anchor_literal(x, labels, proxies, alpha=32.0, delta=0.1):
    """L_PA of ``docs/method.md`` §7.1, term by term."""
    xn = x / x.norm(dim=1, keepdim=True)
    pn = proxies / proxies.norm(dim=1, keepdim=True)
    s = xn @ pn.T
    present = sorted(set(labels.tolist()))
    pos = sum(torch.log(1 + sum(torch.exp(-alpha * (s[i, p] - delta)) for i in range(len(x)) if labels[i] == p))
              for p in present) / len(present)
    neg = sum(torch.log(1 + sum((torch.exp(alpha * (s[i, p] + delta)) for i in range(len(x)) if labels[i] != p),
                                torch.zeros((), dtype=x.dtype)))
              for p in range(len(proxies))) / len(proxies)
    return pos + neg


def test_proxy_anchor_matches_formula():
    torch.manual_seed(0)
    loss_fn = ProxyAnchorLoss(num_classes=7, embedding_size=5).double()
    x = torch.randn(10, 5, dtype=torch.float64, requires_grad=True)
    labels = torch.tensor([0, 0, 1, 1, 1, 3, 3, 5, 5, 5])  # classes 2, 4, 6 absent; class 1 thrice
    out = loss_fn(x, labels)
    ref = proxy_anchor_literal(x, labels, loss_fn.proxies)
    torch.testing.assert_close(out, ref, rtol=1e-10, atol=1e-10)
    gx, gp = torch.autograd.grad(out, (x, loss_fn.proxies))
    rx, rp = torch.autograd.grad(proxy_anchor_literal(x, labels, loss_fn.proxies), (x, loss_fn.proxies))
    torch.testing.assert_close(gx, rx)
    torch.testing.assert_close(gp, rp)


def test_proxy_anchor_float32_island_keeps_proxies_float32():
    loss_fn = ProxyAnchorLoss(num_classes=4, embedding_size=8)
    x = torch.randn(6, 8)
    with torch.autocast("cpu", dtype=torch.bfloat16):
        out = loss_fn(x.bfloat16(), torch.tensor([0, 0, 1, 1, 2, 2]))
    assert loss_fn.proxies.dtype == torch.float32 and out.dtype == torch.float32 and torch.isfinite(out)


# ----------------------------------------------------------------------------------------------- HIER reference


def ref_mine(sim, topk, t, gen):
    """Reciprocal-kNN mining with loops; picks element ⌊u·n⌋ of the sorted candidates (same RNG calls)."""
    n = len(sim)
    nn_ind = torch.zeros(n, n, dtype=sim.dtype)
    for i in range(n):
        for j in torch.argsort(sim[i], descending=True)[: min(topk, n)].tolist():
            nn_ind[i, j] = 1
    mutual = (nn_ind + nn_ind.T) / 2
    for i in range(n):
        mutual[i, i] = -1
    anchors = [i for i in range(n) if int((mutual[i] == 1).sum()) > 1]
    if not anchors:
        return []
    u_pos = torch.rand((len(anchors), t), generator=gen)
    u_neg = torch.rand((len(anchors), t), generator=gen)
    triplets = []
    for a, i in enumerate(anchors):
        pos = [j for j in range(n) if mutual[i, j] == 1]
        neg = [j for j in range(n) if mutual[i, j] < 1]
        for s in range(t):
            triplets.append((i, pos[min(int(u_pos[a, s] * len(pos)), len(pos) - 1)],
                             neg[min(int(u_neg[a, s] * len(neg)), len(neg) - 1)]))
    return triplets


def ref_triplet_loss(dist, triplets, tau, margin, gen):
    """The hard-LCA triplet loss, triplet by triplet (straight-through one-hot as gumbel_softmax(hard=True))."""
    shape = (len(triplets), dist.shape[1])
    tiny = torch.finfo(dist.dtype).tiny  # Gumbel(0, 1) = -log(-log U), the documented draw order
    g1 = -(-torch.rand(shape, dtype=dist.dtype, generator=gen).clamp_min(tiny).log()).log()
    g2 = -(-torch.rand(shape, dtype=dist.dtype, generator=gen).clamp_min(tiny).log()).log()
    total = torch.zeros((), dtype=dist.dtype)
    for r, (i, j, k) in enumerate(triplets):
        m_ij = torch.maximum(dist[i], dist[j])
        m_ijk = torch.maximum(dist[k], m_ij)
        soft1, soft2 = torch.softmax(-m_ij / tau + g1[r], 0), torch.softmax(-m_ijk / tau + g2[r], 0)
        a, b = int(soft1.argmax()), int(soft2.argmax())
        if a == b:
            continue
        e1 = torch.nn.functional.one_hot(torch.tensor(a), shape[1]).to(dist.dtype) - soft1.detach() + soft1
        e2 = torch.nn.functional.one_hot(torch.tensor(b), shape[1]).to(dist.dtype) - soft2.detach() + soft2
        d = {x: ((dist[x] * e1).sum(), (dist[x] * e2).sum()) for x in (i, j, k)}
        total = total + torch.relu(d[i][0] - d[i][1] + margin) + torch.relu(d[j][0] - d[j][1] + margin) \
            + torch.relu(d[k][1] - d[k][0] + margin)
    return total / len(triplets)


def ref_hier(z, labels, lca_ball, c, tau, margin, topk, t, gen):
    """HIER loss of ``docs/method.md`` §7.1 on ball points ``z`` and ball LCAs (loops, Möbius-addition distances)."""
    d_zz = mobius_dist_matrix(z, z, c, same=True).detach()
    sim = torch.exp(-d_zz) + (labels[:, None] == labels[None]).to(z.dtype)
    loss = ref_triplet_loss(mobius_dist_matrix(z, lca_ball, c), ref_mine(sim, topk, t, gen), tau, margin, gen)
    d_pp = mobius_dist_matrix(lca_ball, lca_ball, c, same=True)
    return loss + ref_triplet_loss(d_pp, ref_mine(torch.exp(-d_pp.detach()), topk, t, gen), tau, margin, gen)


CFG = dict(topk=4, num_triplets=3)


def _batch(seed: int, b: int = 16, d: int = 6, n_cls: int = 4):
    g = torch.Generator().manual_seed(seed)
    feats = torch.randn(b, d, dtype=torch.float64, generator=g) * 3
    return feats, torch.arange(b) % n_cls


@pytest.mark.parametrize("seed", [0, 1])
def test_hier_matches_slow_reference(seed):
    torch.manual_seed(seed)
    feats, labels = _batch(seed)
    hier = HIERLoss(num_proxies=9, embedding_dim=6, **CFG).double()
    z = ToPoincare(c=0.1)(feats).detach().requires_grad_()
    out = hier(z, labels, generator=torch.Generator().manual_seed(100 + seed))
    lca_ball = to_poincare_ref(hier.lcas.detach(), 0.1, 2.3)
    torch.testing.assert_close(hier.lca_points(), lca_ball, rtol=1e-12, atol=1e-12)
    z_ref = z.detach().clone().requires_grad_()
    ref = ref_hier(z_ref, labels, lca_ball, 0.1, 0.1, 0.1, CFG["topk"], CFG["num_triplets"],
                   torch.Generator().manual_seed(100 + seed))
    assert ref > 0
    torch.testing.assert_close(out, ref, rtol=1e-9, atol=1e-9)
    (gz,) = torch.autograd.grad(out, z)
    (gz_ref,) = torch.autograd.grad(ref, z_ref)
    torch.testing.assert_close(gz, gz_ref, rtol=1e-7, atol=1e-9)


def test_reciprocal_triplets_sets():
    """Positives are mutual top-k neighbours (not self), negatives the rest (self allowed, as in HIER)."""
    g = torch.Generator().manual_seed(0)
    sim = torch.rand(12, 12, generator=g)
    i, j, k = reciprocal_triplets(sim, topk=4, num_triplets=200, generator=g)
    top = sim.topk(4, dim=1).indices
    nn_ind = torch.zeros(12, 12).scatter_(1, top, 1.0)
    mutual = (nn_ind * nn_ind.T).bool()
    mutual.fill_diagonal_(False)
    assert mutual[i, j].all() and not mutual[i, k].any()
    for a in i.unique().tolist():  # every candidate gets drawn (with replacement, 200 draws)
        assert set(j[i == a].tolist()) == set(torch.nonzero(mutual[a]).squeeze(1).tolist())
    assert (i == k).any()
    assert reciprocal_triplets(torch.eye(5), topk=1, num_triplets=3) is None


def test_generator_makes_hier_reproducible():
    feats, labels = _batch(3)
    hier = HIERLoss(num_proxies=9, embedding_dim=6, **CFG).double()
    z = ToPoincare()(feats)
    a = hier(z, labels, generator=torch.Generator().manual_seed(5))
    b = hier(z, labels, generator=torch.Generator().manual_seed(5))
    hier.generator = torch.Generator().manual_seed(5)
    assert torch.equal(a, b) and torch.equal(a, hier(z, labels))
    assert not torch.equal(a, hier(z, labels, generator=torch.Generator().manual_seed(6)))


def test_lhier_equals_hier_through_isometry():
    """LHIER at k = 10 on from_poincare(HIER's points and LCAs) is HIER's loss (same random stream)."""
    torch.manual_seed(4)
    feats, labels = _batch(4)
    hier = HIERLoss(num_proxies=9, embedding_dim=6, **CFG).double()
    m = Lorentz(k=10.0, learnable=True).double()
    lhier = LHIERLoss(m, num_proxies=9, embedding_dim=6, **CFG).double()
    with torch.no_grad():
        lhier.lcas.copy_(lmath.from_poincare(hier.lca_points(), m.k))
    zb = ToPoincare()(feats).detach().requires_grad_()
    out_h = hier(zb, labels, generator=torch.Generator().manual_seed(9))
    out_l = lhier(lmath.from_poincare(zb, m.k), labels, generator=torch.Generator().manual_seed(9))
    assert out_h > 0
    torch.testing.assert_close(out_l, out_h, rtol=1e-8, atol=1e-8)
    gh, gl = torch.autograd.grad(out_h, zb)[0], torch.autograd.grad(out_l, zb)[0]
    torch.testing.assert_close(gl, gh, rtol=1e-6, atol=1e-8)


def test_to_poincare_riemannian_gradient_scaling():
    x = torch.randn(5, 4, dtype=torch.float64, requires_grad=True)
    w = torch.randn(5, 4, dtype=torch.float64)
    z = ToPoincare(c=0.1, clip_r=None)(x)
    (g,) = torch.autograd.grad((z * w).sum(), x)
    x2 = x.detach().clone().requires_grad_()
    z2 = ToPoincare(c=0.1, clip_r=None, riemannian=False)(x2)
    scale = (1 - 0.1 * (z2 * z2).sum(-1, keepdim=True)).detach() ** 2 / 4
    (g2,) = torch.autograd.grad((z2 * w * scale).sum(), x2)
    torch.testing.assert_close(g, g2)
    torch.testing.assert_close(z, z2)


# ----------------------------------------------------------------------------------------------- LHIER training


def _lhier_setup(seed: int = 0, emb: int = 6, b: int = 16):
    torch.manual_seed(seed)
    m = Lorentz(k=10.0, learnable=True)
    from lorentzcv.models.embedding import LorentzHead

    head = LorentzHead(m, 12, emb, scale=0.3)
    objective = HierarchicalObjective(ProxyAnchorLoss(4, emb),
                                      LHIERLoss(m, num_proxies=10, embedding_dim=emb, topk=5, num_triplets=4))
    feats = torch.randn(b, 12)
    labels = torch.arange(b) % 4
    return m, head, objective, feats, labels


def test_lhier_gradients_reach_embeddings_lcas_and_curvature():
    m, head, objective, feats, labels = _lhier_setup()
    lhier = objective.hier_loss
    z = head(feats)
    z.retain_grad()
    loss = lhier(z, labels, generator=torch.Generator().manual_seed(0))
    assert torch.isfinite(loss) and loss > 0
    loss.backward()
    assert z.grad.abs().sum() > 0 and lhier.lcas.grad.abs().sum() > 0
    assert m.k.grad is not None and m.k.grad != 0 and torch.isfinite(m.k.grad)
    assert torch.isfinite(lhier.lcas.grad).all() and torch.isfinite(z.grad).all()
    # the combined objective: PA on the space part + 0.5·LHIER
    total = objective(head(feats), labels)
    assert set(objective.last) == {"pa", "hier"}
    assert torch.isfinite(total) and total > objective.last["pa"]


def test_lhier_lcas_stay_on_manifold_with_riemannian_adamw():
    optim = pytest.importorskip("lorentzcv.optim")
    m, head, objective, feats, labels = _lhier_setup(1)
    lhier = objective.hier_loss
    lhier.generator = torch.Generator().manual_seed(0)
    opt = optim.create_optimizer(nn.ModuleList([head, objective]), "radamw", lr=5e-2, weight_decay=1e-2,
                                 curvature_lr=0.5, manifold_lr=5e-2)
    assert sum(1 for g in opt.param_groups if g.get("curvature")) == 1
    lcas0, k0 = lhier.lcas.detach().clone(), m.k.item()
    ks = []
    for _ in range(6):
        opt.zero_grad()
        loss = objective(head(feats), labels)
        assert torch.isfinite(loss)
        loss.backward()
        opt.step()
        ks.append(m.k.item())
        m.check_point_on_manifold(lhier.lcas.detach(), atol=1e-4)
    assert abs(ks[-1] - k0) > 1e-3 and m.bounds[0] <= ks[-1] <= m.bounds[1]
    assert not torch.allclose(lhier.lcas.detach(), lcas0)
    assert torch.isfinite(head(feats)).all()


def test_lhier_no_anchor_batch_is_zero_with_graph():
    m = Lorentz(k=10.0, learnable=True)
    lhier = LHIERLoss(m, num_proxies=4, embedding_dim=3, topk=1, num_triplets=2)
    z = lorentz_points(3, 3, dtype=torch.float32).requires_grad_()
    out = lhier(z, torch.arange(3))  # topk=1: only self is a neighbour, no anchors anywhere
    assert out == 0 and out.requires_grad
    out.backward()


def test_losses_under_autocast_and_shape_errors():
    m, head, objective, feats, labels = _lhier_setup(2)
    with torch.autocast("cpu", dtype=torch.bfloat16):
        total = objective(head(feats), labels)
    assert total.dtype == torch.float32 and torch.isfinite(total)
    with pytest.raises(ValueError, match="expects embeddings of shape"):
        objective.hier_loss(torch.randn(4, 6), torch.arange(4))
    with pytest.raises(ValueError, match="labels must have shape"):
        HIERLoss(4, 3)(torch.zeros(5, 3), torch.arange(4))
    hier = HIERLoss(8, 6)
    assert hier.lcas.shape == (8, 6)
    assert hier.lcas.detach().norm(dim=1).mean() == pytest.approx(2.07, rel=0.3)  # randn/√D · 2.3 · 0.9
    lh = LHIERLoss(Lorentz(k=10.0), 64, 6)
    assert lh.manifold.dist0(lh.lcas.detach()).mean() == pytest.approx(2.07, rel=0.3)  # |exp0(v)| = |v|
    lh.manifold.check_point_on_manifold(lh.lcas.detach())


def test_losses_follow_the_device(device):
    m = Lorentz(k=10.0, learnable=True).to(device)
    lhier = LHIERLoss(m, num_proxies=6, embedding_dim=4, **CFG)
    assert lhier.lcas.device.type == device.type
    z = lorentz_points(12, 4, dtype=torch.float32).to(device).requires_grad_()
    labels = (torch.arange(12) % 3).to(device)
    gen = torch.Generator(device="cpu").manual_seed(0)  # a CPU generator works with device tensors
    out = lhier(z, labels, generator=gen)
    out.backward()
    assert torch.isfinite(out) and m.k.grad is not None
    hier = HIERLoss(6, 4, **CFG).to(device)
    obj = HierarchicalObjective(ProxyAnchorLoss(3, 4).to(device), hier)
    total = obj(ToPoincare()(torch.randn(12, 4, device=device)), labels)
    assert torch.isfinite(total) and set(obj.last) == {"pa", "hier"}


def test_lhier_state_dict_round_trip():
    a = LHIERLoss(Lorentz(k=10.0, learnable=True), num_proxies=5, embedding_dim=3)
    with torch.no_grad():
        a.manifold.k.fill_(7.0)
    b = LHIERLoss(Lorentz(k=10.0, learnable=True), num_proxies=5, embedding_dim=3)
    assert set(a.state_dict()) == {"lcas", "manifold.k"}
    b.load_state_dict(a.state_dict())
    assert torch.equal(b.lcas, a.lcas) and b.manifold.k.item() == 7.0 and b.lcas.manifold is b.manifold


def test_gumbel_noise_has_the_gumbel_law_and_samples_the_softmax():
    """The in-place -log(-log U) draw: Gumbel(0, 1) moments, and hard Gumbel-max picks follow softmax(logits)."""
    from lorentzcv.metric.hier import _gumbel, gumbel_hard

    gen = torch.Generator().manual_seed(0)
    logits = torch.tensor([0.5, 0.3, 0.15, 0.05]).log()
    g = _gumbel((200_000, 4), gen, logits)
    assert torch.isfinite(g).all()
    assert abs(g.mean().item() - 0.5772) < 0.01 and abs(g.var().item() - math.pi**2 / 6) < 0.03
    _, idx = gumbel_hard(logits.expand(200_000, 4), g)
    freq = torch.bincount(idx, minlength=4).double() / 200_000
    assert torch.allclose(freq, logits.exp().double(), atol=0.005), freq


@pytest.mark.parametrize("k", [0.5, 10.0])
def test_lhier_rescaled_lcas_are_within_the_radius(k):
    """rescale_lcas=True (the paper's LHIER): the LCAs enter the loss rescaled, within m·min(1, √k)."""
    from lorentzcv.geometry import RescaleConfig, rescale

    torch.manual_seed(0)
    m = Lorentz(k=k, learnable=True, rescale=RescaleConfig(s=3.0))
    lhier = LHIERLoss(m, num_proxies=32, embedding_dim=6, topk=5, num_triplets=4, lca_init_radius=2.07,
                      rescale_lcas=True)
    with torch.no_grad():  # some LCAs beyond the radius (1.5 m_k from the origin)
        v = torch.randn(8, 6)
        v = v / v.norm(dim=1, keepdim=True) * 1.5 * m.max_distance(torch.float32)
        lhier.lcas[:8] = lmath.expmap0(torch.cat([torch.zeros(8, 1), v], 1), m.k)
    raw = lmath.projx(lhier.lcas.detach(), m.k.detach())
    pts = lhier.lca_points()
    m.check_point_on_manifold(pts.detach(), atol=1e-3 * max(1.0, k))
    d = m.dist0(pts.detach())
    assert (d < m.max_distance(torch.float32) + 1e-4).all()
    assert (d[:8] < m.dist0(raw[:8]) - 1.0).all()  # the far ones were pulled in
    torch.testing.assert_close(pts, rescale(raw, m.k, config=m.rescale_config))
    # the loss and its gradients go through the rescaling to the stored LCAs and to k
    z = lmath.expmap0(torch.cat([torch.zeros(16, 1), torch.randn(16, 6)], 1), m.k.detach())
    loss = lhier(z, torch.arange(16) // 4, generator=torch.Generator().manual_seed(0))
    loss.backward()
    assert torch.isfinite(loss) and lhier.lcas.grad.abs().sum() > 0 and torch.isfinite(m.k.grad)
    # off (the default): the LCAs as stored
    plain = LHIERLoss(m, num_proxies=4, embedding_dim=6)
    assert not plain.rescale_lcas
    torch.testing.assert_close(plain.lca_points(), lmath.projx(plain.lcas, m.k))
    assert "rescale_lcas=True" in lhier.extra_repr()
