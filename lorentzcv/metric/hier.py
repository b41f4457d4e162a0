r"""HIER (Kim et al., CVPR'23) and LHIER, its Lorentz-model port (``docs/method.md`` §7.1–7.2).

HIER learns ``P`` hierarchical proxies ("LCAs", least common ancestors) in hyperbolic space and, for triplets
``(i, j, k)`` mined from the batch, pushes the LCA of ``i, j`` below the LCA of ``i, j, k``:

1. **Mining** (:func:`reciprocal_triplets`): :math:`S = e^{-D}` between embeddings (detached), ``+1`` for
   pairs with the same label; ``N`` = row-wise top-``topk`` indicator of ``S`` (self included),
   :math:`M = (N + N^\top)/2`, :math:`\mathrm{diag}(M) = -1`. Anchors are rows with at least two mutual
   neighbours (:math:`M_{ij} = 1`); positives are the mutual neighbours, negatives every ``j`` with
   :math:`M_{ij} < 1` (the anchor itself included, as in HIER). ``num_triplets`` positives and negatives
   are drawn per anchor **with replacement**.
2. **Triplet loss** (:func:`hierarchical_triplet_loss`) on the rows :math:`D_{\cdot p}` of distances to the
   LCAs: :math:`M_{ij} = \max(D_i, D_j)`, :math:`e_{ij} = \mathrm{gumbel\_softmax}(-M_{ij}/\tau,\ hard)`
   (one-hot LCA, straight-through gradient), :math:`M_{ijk} = \max(D_k, M_{ij})`,
   :math:`e_{ijk}` likewise, :math:`d(x, e) = \langle D_x, e\rangle`, and

   .. math::

       \ell = [d(i,e_{ij}) - d(i,e_{ijk}) + \delta]_+ + [d(j,e_{ij}) - d(j,e_{ijk}) + \delta]_+
            + [d(k,e_{ijk}) - d(k,e_{ij}) + \delta]_+ ,

   set to 0 when both LCAs coincide; the mean over all triplets (zeros included).
3. The same on the LCAs themselves (:math:`S_2 = e^{-D_{pp}}`, no label bonus; the LCAs are both the points
   and the candidate ancestors). :math:`L_{HIER} = L_1 + L_2`.

Defaults are HIER's training scripts: τ = 0.1, δ = 0.1, ``topk = 20``, 50 triplets per anchor, 512 LCAs.
The combined objective :math:`L = L_{PA} + 0.5\,L_{HIER}` is :class:`HierarchicalObjective`.

Randomness: both losses take an optional ``torch.Generator`` (constructor or ``forward``). The stream is
consumed in this order: term 1 — ``rand(A₁, t)`` (positive picks), ``rand(A₁, t)`` (negative picks),
uniform noise ``rand(T₁, P)`` for :math:`e_{ij}` then ``rand(T₁, P)`` for :math:`e_{ijk}`; then term 2 the same
(``A`` anchors, ``T = A·t`` triplets). A pick ``u`` selects element ``⌊u·n⌋`` of the anchor's candidates in
increasing index order; the Gumbel noise is :math:`-\log(-\log \max(U, \text{tiny}))`.

Numerics: float32 islands under autocast (half embeddings are upcast); distances use float64 Gram matrices
(:mod:`lorentzcv.metric.distances`).
"""

from __future__ import annotations

import math

import torch
from torch import nn

from ..geometry import ManifoldParameter, rescale
from ..geometry import math as lmath
from ..geometry.precision import no_autocast, upcast
from .distances import LorentzDistance, PoincareDistance
from .poincare import ToPoincare

__all__ = [
    "HIERLoss", "LHIERLoss", "HierarchicalObjective", "reciprocal_triplets", "hierarchical_triplet_loss",
    "gumbel_hard",
]


# --------------------------------------------------------------------------------------------------------------
# random draws with an optional generator (drawn on the generator's device, then moved)
def _rand(shape: tuple[int, ...], generator: torch.Generator | None, device: torch.device) -> torch.Tensor:
    if generator is None:
        return torch.rand(shape, device=device)
    return torch.rand(shape, generator=generator, device=generator.device).to(device)


def _gumbel(shape: tuple[int, ...], generator: torch.Generator | None, like: torch.Tensor) -> torch.Tensor:
    """Gumbel(0, 1) noise :math:`-\\log(-\\log U)`, ``U ~ Uniform[tiny, 1)``, computed in place.

    The same law as ``F.gumbel_softmax``'s :math:`-\\log E`, ``E ~ Exponential(1)``, but ~4× faster on a CPU, where
    ``exponential_`` dominated the loss at 512 LCAs (a ``(25600, 512)`` draw per step).
    """
    dev = like.device if generator is None else generator.device
    u = torch.rand(shape, dtype=like.dtype, device=dev, generator=generator)
    return u.clamp_min_(torch.finfo(like.dtype).tiny).log_().neg_().log_().neg_().to(like.device)


def _pick(mask: torch.Tensor, u: torch.Tensor) -> torch.Tensor:
    """Column of the ``⌊u·n⌋``-th True of each row of ``mask`` (``n`` = its number of Trues), shape of ``u``."""
    counts = mask.sum(dim=1, keepdim=True)
    m = torch.minimum((u * counts).floor().long(), counts - 1)
    cs = mask.long().cumsum(dim=1)
    return torch.searchsorted(cs, m + 1)


def reciprocal_triplets(
    sim: torch.Tensor, topk: int = 20, num_triplets: int = 50, generator: torch.Generator | None = None,
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor] | None:
    """HIER's reciprocal-kNN triplet mining (module docstring, step 1).

    Args:
        sim: ``(n, n)`` similarities (no gradient needed).
        topk: neighbourhood size (clamped to ``n``).
        num_triplets: positives and negatives drawn per anchor, with replacement.
        generator: optional ``torch.Generator``.

    Returns:
        ``(i, j, k)`` index tensors of length ``A·num_triplets`` (anchor-major), or ``None`` when no row has
        two mutual neighbours.
    """
    n = sim.size(0)
    idx = sim.topk(min(topk, n), dim=1).indices
    nn_ind = torch.zeros(n, n, dtype=sim.dtype, device=sim.device).scatter_(1, idx, 1.0)
    mutual = (nn_ind + nn_ind.t()) / 2
    mutual.fill_diagonal_(-1)
    pos = mutual == 1
    anchors = torch.nonzero(pos.sum(dim=1) > 1).squeeze(1)
    if anchors.numel() == 0:
        return None
    a, t = anchors.numel(), num_triplets
    j = _pick(pos[anchors], _rand((a, t), generator, sim.device))
    k = _pick(mutual[anchors] < 1, _rand((a, t), generator, sim.device))
    i = anchors.repeat_interleave(t)
    return i, j.reshape(-1), k.reshape(-1)


def gumbel_hard(logits: torch.Tensor, gumbels: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """``F.gumbel_softmax(logits, tau=1, hard=True)`` with given Gumbel noise: ``(one_hot_st, argmax)``."""
    y_soft = (logits + gumbels).softmax(dim=-1)
    index = y_soft.argmax(dim=-1)
    y_hard = torch.zeros_like(y_soft).scatter_(-1, index.unsqueeze(-1), 1.0)
    return y_hard - y_soft.detach() + y_soft, index


def hierarchical_triplet_loss(
    dist: torch.Tensor, triplets: tuple[torch.Tensor, torch.Tensor, torch.Tensor], tau: float = 0.1,
    margin: float = 0.1, generator: torch.Generator | None = None,
) -> torch.Tensor:
    """HIER's hard-LCA triplet loss (module docstring, step 2), the mean over all triplets.

    Args:
        dist: ``(n, P)`` distances from the points to the ``P`` candidate LCAs.
        triplets: ``(i, j, k)`` from :func:`reciprocal_triplets`.
        tau: temperature of the LCA selection.
        margin: δ.
        generator: optional ``torch.Generator`` for the Gumbel noise.
    """
    i, j, k = triplets
    di, dj, dk = dist[i], dist[j], dist[k]
    shape = tuple(di.shape)
    g_ij = _gumbel(shape, generator, dist)
    g_ijk = _gumbel(shape, generator, dist)
    m_ij = torch.maximum(di, dj)
    e_ij, idx_ij = gumbel_hard(-m_ij / tau, g_ij)
    e_ijk, idx_ijk = gumbel_hard(-torch.maximum(dk, m_ij) / tau, g_ijk)
    delta = e_ij - e_ijk  # d(x, e_ij) - d(x, e_ijk) = <D_x, e_ij - e_ijk>: one (T, P) product per point
    loss = (
        torch.relu(torch.linalg.vecdot(di, delta) + margin)
        + torch.relu(torch.linalg.vecdot(dj, delta) + margin)
        + torch.relu(margin - torch.linalg.vecdot(dk, delta))
    )
    return (loss * (idx_ij != idx_ijk).to(loss.dtype)).mean()


# --------------------------------------------------------------------------------------------------------------
class _HierarchicalLCALoss(nn.Module):
    """Shared HIER machinery; subclasses give the LCA points, the distance and the PA directions."""

    distance: nn.Module

    def __init__(self, num_proxies: int, embedding_dim: int, tau: float, margin: float, topk: int,
                 num_triplets: int, generator: torch.Generator | None) -> None:
        super().__init__()
        if num_proxies < 2 or embedding_dim < 1 or topk < 1 or num_triplets < 1 or not tau > 0:
            raise ValueError(
                f"{type(self).__name__} needs num_proxies >= 2, embedding_dim >= 1, topk >= 1, num_triplets >= 1 "
                f"and tau > 0; got {num_proxies}, {embedding_dim}, {topk}, {num_triplets}, {tau}"
            )
        self.num_proxies = num_proxies
        self.embedding_dim = embedding_dim
        self.tau = float(tau)
        self.margin = float(margin)
        self.topk = int(topk)
        self.num_triplets = int(num_triplets)
        self.generator = generator

    def extra_repr(self) -> str:
        return (f"num_proxies={self.num_proxies}, embedding_dim={self.embedding_dim}, tau={self.tau}, "
                f"margin={self.margin}, topk={self.topk}, num_triplets={self.num_triplets}")

    def lca_points(self) -> torch.Tensor:
        raise NotImplementedError

    def directions(self, embeddings: torch.Tensor) -> torch.Tensor:
        """What Proxy-Anchor sees (its cosine normalises): see :class:`HierarchicalObjective`."""
        raise NotImplementedError

    def _point_dim(self) -> int:
        return self.embedding_dim

    def _term(self, dist: torch.Tensor, sim: torch.Tensor, generator: torch.Generator | None) -> torch.Tensor:
        triplets = reciprocal_triplets(sim, self.topk, self.num_triplets, generator)
        if triplets is None:
            return dist.sum() * 0.0
        return hierarchical_triplet_loss(dist, triplets, self.tau, self.margin, generator)

    def forward(self, embeddings: torch.Tensor, labels: torch.Tensor,
                generator: torch.Generator | None = None) -> torch.Tensor:
        """``L_HIER = L_1 + L_2`` for ``embeddings`` ``(B, D)`` and integer ``labels`` ``(B,)``; returns ``()``."""
        gen = generator if generator is not None else self.generator
        if embeddings.dim() != 2 or embeddings.size(1) != self._point_dim():
            raise ValueError(f"{type(self).__name__} expects embeddings of shape (B, {self._point_dim()}), "
                             f"got {tuple(embeddings.shape)}")
        labels = torch.as_tensor(labels, device=embeddings.device)
        if labels.shape != embeddings.shape[:1]:
            raise ValueError(f"labels must have shape ({len(embeddings)},), got {tuple(labels.shape)}")
        with no_autocast(embeddings):
            z = upcast(embeddings)
            lcas = self.lca_points()
            lcas = lcas.to(z.dtype) if lcas.dtype != z.dtype else lcas
            with torch.no_grad():
                sim = torch.exp(-self.distance(z))
                sim = sim + (labels.unsqueeze(1) == labels.unsqueeze(0)).to(sim.dtype)
            loss = self._term(self.distance(z, lcas), sim, gen)
            d_pp = self.distance(lcas)
            loss = loss + self._term(d_pp, torch.exp(-d_pp.detach()), gen)
        return loss


class HIERLoss(_HierarchicalLCALoss):
    r"""HIER on the Poincaré ball of curvature ``-c`` (``docs/method.md`` §7.1), as implemented by HIER.

    The LCAs are Euclidean parameters, initialised ``randn(P, D)/√D · clip_r · 0.9`` and mapped to the ball by
    :class:`~lorentzcv.metric.poincare.ToPoincare` (``c``, ``clip_r``, Riemannian gradient scaling) on every
    forward; HIER trains them with a ×50 learning-rate multiplier. Embeddings are ball points (e.g. from
    :class:`~lorentzcv.models.embedding.PoincareHead`); distances are :class:`PoincareDistance`.

    Args:
        num_proxies: number of LCAs ``P`` (HIER: 512).
        embedding_dim: ball dimension ``D``.
        tau, margin, topk, num_triplets: τ, δ, the mining neighbourhood and triplets per anchor.
        c: curvature magnitude (``K = -c``, Lorentz ``k = 1/c``).
        clip_r: ``ToPoincare`` clipping radius for the LCAs.
        generator: default ``torch.Generator`` for the sampling and Gumbel noise.

    Shapes: ``forward(embeddings (B, D), labels (B,)) -> ()``.
    """

    def __init__(self, num_proxies: int = 512, embedding_dim: int = 512, *, tau: float = 0.1,
                 margin: float = 0.1, topk: int = 20, num_triplets: int = 50, c: float = 0.1,
                 clip_r: float = 2.3, generator: torch.Generator | None = None) -> None:
        super().__init__(num_proxies, embedding_dim, tau, margin, topk, num_triplets, generator)
        self.lcas = nn.Parameter(torch.randn(num_proxies, embedding_dim) / math.sqrt(embedding_dim) * clip_r * 0.9)
        self.to_poincare = ToPoincare(c=c, clip_r=clip_r, riemannian=True)
        self.distance = PoincareDistance(c)

    @property
    def c(self) -> float:
        return self.to_poincare.c

    def lca_points(self) -> torch.Tensor:
        """The LCAs on the ball, ``(P, D)``."""
        return self.to_poincare(self.lcas)

    def directions(self, embeddings: torch.Tensor) -> torch.Tensor:
        """Ball coordinates as they are (PA normalises them)."""
        return embeddings


class LHIERLoss(_HierarchicalLCALoss):
    r"""LHIER: HIER on the Lorentz model :math:`\mathbb{H}_k` (``docs/method.md`` §7.2, ``docs/design.md`` §4.8).

    Embeddings are Lorentz points ``(B, 1+D)`` (e.g. from :class:`~lorentzcv.models.embedding.LorentzHead`);
    mining and triplets use the geodesic :class:`LorentzDistance` at the manifold's *current* ``k``
    (``K = -1/k``; ``k = 10`` is HIER's ``c = 0.1``). The LCAs are a :class:`~lorentzcv.geometry.ManifoldParameter`
    ``(P, 1+D)`` on ``manifold``, initialised :math:`\exp_0((0, v))` with ``v = randn(D)/√D · lca_init_radius``
    (so at distance ≈ ``lca_init_radius`` from the origin), to be trained by ``RiemannianAdamW`` and moved by
    the curvature-aware optimizer when ``k`` changes. Their time coordinate is recomputed from space on every
    forward (``projx``), which does not change their Riemannian gradient and keeps the loss well defined even
    if ``k`` moved without them — except with ``manifold.repair_on_use = False`` (the naive-curvature ablation),
    which uses the stored coordinates as they are.

    ``manifold`` is registered as a submodule (so ``.to()``, ``state_dict`` and ``create_optimizer(loss, ...)``
    see ``k``). When the model's head shares it, build the optimizer over one container of both
    (``create_optimizer(nn.ModuleList([model, objective]), ...)``) so ``k`` is counted once.

    ``rescale_lcas=True`` (the paper's LHIER, used by the Table 1 configs) applies maximum distance rescaling
    to the LCAs as well (``manifold.rescale_config``, :func:`~lorentzcv.geometry.rescale`): they enter the loss
    as :math:`\mathrm{rescale}(\mathrm{projx}(P))`, at distance :math:`m_k\tanh(c\,d_0) < m_k = 9.56\min(1,
    \sqrt{k})` from the origin, like the embeddings of the paper's neck (``LorentzHead(neck="lorentz")``); the
    gradient reaches the stored LCAs through the rescaling. Off by default (the earlier behaviour).

    Note (flagged choice): HIER's ball LCAs sit at distance ``2·2.07 = 4.14`` (its ``exp0`` doubles tangent
    norms); the method's Lorentz init uses the tangent radius 2.07 as is. Pass ``lca_init_radius=4.14`` to
    reproduce HIER's initial geometry exactly.

    Args:
        manifold: the :class:`~lorentzcv.geometry.Lorentz` of the embeddings (usually learnable ``k``).
        num_proxies: number of LCAs ``P``.
        embedding_dim: number of space coordinates ``D`` (points have ``1+D`` coordinates).
        tau, margin, topk, num_triplets: as :class:`HIERLoss`.
        lca_init_radius: tangent norm scale of the LCA initialisation (2.07 = HIER's ``2.3·0.9``).
        rescale_lcas: maximum distance rescaling of the LCAs (above).
        generator: default ``torch.Generator``.

    Shapes: ``forward(embeddings (B, 1+D), labels (B,)) -> ()``.
    """

    def __init__(self, manifold, num_proxies: int = 512, embedding_dim: int = 512, *, tau: float = 0.1,
                 margin: float = 0.1, topk: int = 20, num_triplets: int = 50, lca_init_radius: float = 2.07,
                 rescale_lcas: bool = False, generator: torch.Generator | None = None) -> None:
        super().__init__(num_proxies, embedding_dim, tau, margin, topk, num_triplets, generator)
        self.manifold = manifold
        self.rescale_lcas = bool(rescale_lcas)
        with torch.no_grad():
            k = manifold.k.detach().float()
            v = torch.randn(num_proxies, embedding_dim, device=k.device) / math.sqrt(embedding_dim) * lca_init_radius
            u = torch.cat([torch.zeros_like(v[:, :1]), v], dim=1)
            x = lmath.expmap0(u, k)
        self.lcas = ManifoldParameter(x, manifold=manifold)
        self.distance = LorentzDistance(manifold)

    def _point_dim(self) -> int:
        return self.embedding_dim + 1

    def extra_repr(self) -> str:
        return super().extra_repr() + f", rescale_lcas={self.rescale_lcas}"

    def lca_points(self) -> torch.Tensor:
        """The LCAs on the hyperboloid at the current ``k``, ``(P, 1+D)`` (rescaled with ``rescale_lcas``)."""
        k = self.manifold.k.to(self.lcas.dtype)
        # (manifold.repair_on_use=False, the naive-curvature ablation: the stored coordinates as they are)
        x = lmath.projx(self.lcas, k) if getattr(self.manifold, "repair_on_use", True) else self.lcas
        return rescale(x, k, config=self.manifold.rescale_config) if self.rescale_lcas else x

    def directions(self, embeddings: torch.Tensor) -> torch.Tensor:
        """The space part :math:`x_s` (the direction of :math:`\\log_0 x`; PA normalises it)."""
        return lmath.space(embeddings)


class HierarchicalObjective(nn.Module):
    r"""HIER's total objective :math:`L = \lambda_{PA} L_{PA} + \lambda_{H} L_{HIER}` (``docs/method.md`` §7.1).

    Proxy-Anchor runs on the direction of the embedding — ``hier_loss.directions(z)``: the ball coordinates
    for :class:`HIERLoss`, the space part (direction of :math:`\log_0 z`) for :class:`LHIERLoss` — and the
    hierarchical loss on the hyperbolic points. With ``hier_loss=None`` it is plain Proxy-Anchor on the
    (Euclidean) embeddings.

    Args:
        pa_loss: e.g. :class:`~lorentzcv.metric.ProxyAnchorLoss` (any ``loss(embeddings, labels)``).
        hier_loss: :class:`HIERLoss`, :class:`LHIERLoss` or ``None``.
        hier_weight: :math:`\lambda_H` (HIER: 0.5).
        pa_weight: :math:`\lambda_{PA}` (HIER: 1).

    After each forward, ``self.last`` holds the detached components ``{"pa": …, "hier": …}`` for logging.
    """

    def __init__(self, pa_loss: nn.Module, hier_loss: _HierarchicalLCALoss | None = None,
                 hier_weight: float = 0.5, pa_weight: float = 1.0) -> None:
        super().__init__()
        self.pa_loss = pa_loss
        self.hier_loss = hier_loss
        self.hier_weight = float(hier_weight)
        self.pa_weight = float(pa_weight)
        self.last: dict[str, torch.Tensor] = {}

    def forward(self, embeddings: torch.Tensor, labels: torch.Tensor) -> torch.Tensor:
        if self.hier_loss is None:
            pa = self.pa_loss(embeddings, labels)
            self.last = {"pa": pa.detach()}
            return self.pa_weight * pa
        pa = self.pa_loss(self.hier_loss.directions(embeddings), labels)
        hier = self.hier_loss(embeddings, labels)
        self.last = {"pa": pa.detach(), "hier": hier.detach()}
        return self.pa_weight * pa + self.hier_weight * hier
