r"""Embedding a transitive closure on the Lorentz manifold (Nickel & Kiela's reconstruction task).

Every node :math:`u` of a graph gets a point :math:`x_u \in \mathbb{H}^n_k` (``<x,x>_L = -k``, ``k > 0``,
sectional curvature ``K = -1/k``), stored as one :class:`~lorentzcv.geometry.ManifoldParameter` of shape
``(num_nodes, 1 + n)`` on a :class:`~lorentzcv.geometry.Lorentz` manifold, fixed or with a learnable ``k``.
The points are trained with the library's Riemannian optimizers (:func:`~lorentzcv.optim.create_optimizer`:
``"rsgd"`` or ``"radamw"``, curvature in its own group and the curvature-aware move of
:mod:`lorentzcv.optim.curvature`); nothing here re-implements an exponential map or an optimizer step.

Objective (Nickel & Kiela 2017's softmax over sampled non-edges): for a closure pair :math:`(u, v)`
(``v`` an ancestor of ``u``) and negatives :math:`\mathcal{N}(u) = \{v' : (u, v') \notin D\}`,

.. math::

    \ell(u, v) = -\log \frac{e^{-d(x_u, x_v)}}{e^{-d(x_u, x_v)} + \sum_{v' \in \mathcal{N}(u)} e^{-d(x_u, x_{v'})}},

with :math:`d(x, y) = \sqrt{k}\operatorname{arcosh}(-\langle x,y\rangle_L/k)` (:func:`lorentzcv.geometry.math.dist`),
i.e. a cross-entropy with logits :math:`-d` and the true parent at index 0. Negatives are drawn uniformly
(``num_negatives`` per pair, as tensors); a draw that is ``u`` itself or an ancestor of ``u`` is redrawn a few
times and masked out of the softmax if it stays invalid. N&K's scripts set a burn-in period (``-burnin``); here
the first ``burnin_epochs`` epochs run at ``lr * burnin_factor``. Points start near the origin: space
coordinates uniform in ``[-init_scale, init_scale]``, time from :meth:`~lorentzcv.geometry.Lorentz.add_time`.

Float64 is the default: the optimizers keep points within the rapidity
``min(1, r)·½·arccosh(1/(2ε))`` (``r`` of the manifold's :class:`~lorentzcv.geometry.RescaleConfig`; at
``r = 1`` this is where the dtype still resolves ``<x,x>_L = -k``: ≈ 8 in float32, ≈ 18 in float64), and a deep
hierarchy needs the larger radius. The default manifold uses ``r = radius_fraction = 0.8`` (rapidity ≈ 14.4 in
float64), the setting of the results in ``docs/wordnet.md``: leaves of a 2-d embedding pile up on the allowed
radius, and at the dtype's limit (``r = 1``) the RAdamW first moment of such a parked leaf once grew
exponentially and overflowed to NaN after ~3,840 steps. The cause was the optimizers' moment numerics at the cap
(a proju per step, which compounds rounding of :math:`\varepsilon\cosh^2 r \approx 1/4`); since they read
inner products at the origin (``docs/method.md``, RAdamW), the same run at ``r = 1`` completes its 300 epochs,
and ``radius_fraction=1.0`` is safe. ``0.8`` stays the default so that the published grid reproduces.
"""

from __future__ import annotations

import dataclasses
import math
import time
from collections.abc import Callable, Sequence

import torch
import torch.nn.functional as F
from torch import nn

from ..geometry import Lorentz, ManifoldParameter, RescaleConfig
from ..geometry import math as lmath
from ..optim import RiemannianSGD, create_optimizer

__all__ = ["LorentzEmbedding", "EdgeSet", "sample_negatives", "nk_loss", "TrainConfig", "train_embedding"]


class LorentzEmbedding(nn.Module):
    r"""A table of ``num_nodes`` points on :math:`\mathbb{H}^{dim}_k`.

    Args:
        num_nodes: number of nodes.
        dim: manifold dimension ``n`` (points have ``1 + n`` coordinates, time first).
        manifold: the :class:`~lorentzcv.geometry.Lorentz` to live on; default ``Lorentz(k, learnable=learn_k)``.
        k: initial curvature parameter (``K = -1/k``) when ``manifold`` is None.
        learn_k: whether ``k`` is learned (when ``manifold`` is None).
        radius_fraction: with the default manifold, ``RescaleConfig(r=radius_fraction)``: the optimizers keep
            points within the rapidity ``radius_fraction·½·arccosh(1/(2ε))`` (module docstring).
        init_scale: space coordinates start uniform in ``[-init_scale, init_scale]``.
        dtype: dtype of the points (and of the default manifold's ``k``).
        generator: optional ``torch.Generator`` for the initialisation.

    Attributes:
        manifold: the manifold (a submodule, so ``.to()`` and ``state_dict`` carry ``k``).
        weight: ``ManifoldParameter`` of shape ``(num_nodes, 1 + dim)``.
    """

    def __init__(
        self,
        num_nodes: int,
        dim: int,
        manifold: Lorentz | None = None,
        *,
        k: float = 1.0,
        learn_k: bool = False,
        radius_fraction: float = 0.8,
        init_scale: float = 1e-3,
        dtype: torch.dtype = torch.float64,
        generator: torch.Generator | None = None,
    ) -> None:
        super().__init__()
        if num_nodes < 1 or dim < 1:
            raise ValueError(f"LorentzEmbedding needs num_nodes >= 1 and dim >= 1, got {num_nodes}, {dim}")
        if manifold is None:
            manifold = Lorentz(k, learnable=learn_k, rescale=RescaleConfig(r=radius_fraction)).to(dtype)
        self.manifold = manifold
        space = (torch.rand(num_nodes, dim, dtype=dtype, generator=generator) * 2 - 1) * init_scale
        with torch.no_grad():
            x = self.manifold.add_time(space.to(self.manifold.k.device))
        self.weight = ManifoldParameter(x, manifold=self.manifold)

    @property
    def num_nodes(self) -> int:
        return self.weight.shape[0]

    def extra_repr(self) -> str:
        return f"num_nodes={self.weight.shape[0]}, dim={self.weight.shape[1] - 1}"

    def forward(self, u: torch.Tensor, v: torch.Tensor) -> torch.Tensor:
        """Geodesic distances :math:`d(x_u, x_v)` for broadcastable index tensors ``u`` and ``v``."""
        k = self.manifold.k.to(self.weight.dtype)
        return lmath.dist(self.weight[u], self.weight[v], k)

    def distances_from(self, u: torch.Tensor) -> torch.Tensor:
        r"""Distances from the nodes ``u`` (shape ``(B,)``) to every node: shape ``(B, num_nodes)`` (no grad).

        The same chord form as :func:`lorentzcv.geometry.math.dist`,
        :math:`c^2 = \|x_s - y_s\|^2 - (x_0 - y_0)^2`, :math:`d = 2\sqrt{k}\operatorname{asinh}(c / 2\sqrt{k})`,
        with the space part from ``torch.cdist`` in its exact (difference-based, not Gram-matrix) mode, so no
        ``(B, N, 1 + n)`` temporary is built.
        """
        with torch.no_grad():
            k = self.manifold.k.to(self.weight.dtype)
            x = self.weight.detach()
            xu = x[u]
            space = torch.cdist(xu[:, 1:], x[:, 1:], compute_mode="donot_use_mm_for_euclid_dist")
            return lmath._chord_dist(space.square_() - (xu[:, :1] - x[:, 0]).square_(), k.sqrt())


class EdgeSet:
    """Membership test for directed pairs ``(u, v)`` of a graph with ``num_nodes`` nodes (sorted int64 keys).

    Args:
        edges: ``(E, 2)`` integer tensor of ``(u, v)`` pairs.
        num_nodes: number of nodes (indices must lie in ``[0, num_nodes)``).
    """

    def __init__(self, edges: torch.Tensor, num_nodes: int) -> None:
        edges = torch.as_tensor(edges, dtype=torch.long)
        if edges.ndim != 2 or edges.shape[1] != 2:
            raise ValueError(f"edges must have shape (E, 2), got {tuple(edges.shape)}")
        if edges.numel() and (edges.min() < 0 or edges.max() >= num_nodes):
            raise ValueError(f"edge indices must lie in [0, {num_nodes}), got [{edges.min()}, {edges.max()}]")
        self.num_nodes = num_nodes
        self.keys = torch.unique(edges[:, 0] * num_nodes + edges[:, 1])  # sorted

    def __contains__(self, pair: tuple[int, int]) -> bool:
        return bool(self.contains(torch.tensor([pair[0]]), torch.tensor([pair[1]]))[0])

    def contains(self, u: torch.Tensor, v: torch.Tensor) -> torch.Tensor:
        """Boolean tensor (broadcast shape of ``u``, ``v``): whether each ``(u, v)`` is an edge."""
        q = u * self.num_nodes + v
        if self.keys.numel() == 0:
            return torch.zeros_like(q, dtype=torch.bool)
        i = torch.searchsorted(self.keys, q.reshape(-1)).clamp_max_(self.keys.numel() - 1).reshape(q.shape)
        return self.keys[i] == q


def sample_negatives(
    u: torch.Tensor,
    num_negatives: int,
    edge_set: EdgeSet,
    *,
    generator: torch.Generator | None = None,
    retries: int = 5,
) -> tuple[torch.Tensor, torch.Tensor]:
    r"""Uniform negatives :math:`v'` for each source ``u``: not ``u`` itself and ``(u, v')`` not an edge.

    Returns:
        ``(neg, valid)``, both of shape ``(B, num_negatives)``: node indices and whether each draw is a true
        non-edge (a draw still invalid after ``retries`` redraws is kept but flagged False).
    """
    n = edge_set.num_nodes
    shape = (u.shape[0], num_negatives)
    neg = torch.randint(0, n, shape, generator=generator)
    uu = u[:, None].expand(shape)

    def bad(c: torch.Tensor) -> torch.Tensor:
        return (c == uu) | edge_set.contains(uu, c)

    invalid = bad(neg)
    for _ in range(retries):
        if not invalid.any():
            break
        redraw = torch.randint(0, n, shape, generator=generator)
        neg = torch.where(invalid, redraw, neg)
        invalid = bad(neg)
    return neg, ~invalid


def nk_loss(
    model: LorentzEmbedding,
    edges: torch.Tensor,
    neg: torch.Tensor,
    valid: torch.Tensor | None = None,
) -> torch.Tensor:
    r"""Mean over the batch of the softmax loss of the module docstring.

    Args:
        model: the embedding.
        edges: ``(B, 2)`` pairs ``(u, v)``, ``v`` the positive.
        neg: ``(B, M)`` negatives.
        valid: ``(B, M)`` mask; invalid negatives get logit :math:`-\infty` (left out of the softmax).
    """
    dev = model.weight.device
    return _softmax_loss(model.weight, model.manifold.k, edges.to(dev), neg.to(dev), valid)


def _softmax_loss(
    x: torch.Tensor, k: torch.Tensor, edges: torch.Tensor, neg: torch.Tensor, valid: torch.Tensor | None
) -> torch.Tensor:
    """:func:`nk_loss` on the rows ``x`` of a point table (indices into ``x``)."""
    dev = x.device
    cand = torch.cat([edges[:, 1:], neg], dim=1)  # (B, 1 + M), the positive first
    logits = -lmath.dist(x[edges[:, :1]], x[cand], k.to(x.dtype))
    if valid is not None:
        keep = torch.cat([torch.ones_like(valid[:, :1]), valid], dim=1).to(dev)
        logits = logits.masked_fill(~keep, -math.inf)
    return F.cross_entropy(logits, torch.zeros(len(edges), dtype=torch.long, device=dev))


@dataclasses.dataclass
class TrainConfig:
    """Settings of :func:`train_embedding`.

    Attributes:
        epochs: passes over the shuffled pairs.
        batch_size: pairs per step.
        num_negatives: negatives per pair (N&K: 50).
        optimizer: ``"rsgd"`` or ``"radamw"`` (:func:`~lorentzcv.optim.create_optimizer`).
        lr: learning rate of the points.
        burnin_epochs: epochs at ``lr * burnin_factor`` first (N&K's burn-in).
        burnin_factor: learning-rate factor during burn-in.
        curvature_lr: learning rate of ``k`` (used when ``k`` is learnable).
        weight_decay: of the points (RAdamW: centroid decay toward the origin); 0 for reconstruction.
        seed: seeds the generator of shuffling and negative sampling.
        sparse: step only the rows a batch touches (its pairs and negatives), as N&K's sparse updates, instead of
            the whole table: the same RSGD step (a row with a zero gradient does not move), at a cost that no
            longer grows with the number of nodes. Only for ``optimizer="rsgd"`` without weight decay and a
            fixed ``k``: a decay, a moment or the curvature move would also change the untouched rows.
    """

    epochs: int = 100
    batch_size: int = 256
    num_negatives: int = 50
    optimizer: str = "rsgd"
    lr: float = 1.0
    burnin_epochs: int = 10
    burnin_factor: float = 0.1
    curvature_lr: float = 1e-3
    weight_decay: float = 0.0
    seed: int = 0
    sparse: bool = False


def train_embedding(
    model: LorentzEmbedding,
    edges: torch.Tensor | Sequence[tuple[int, int]],
    config: TrainConfig | None = None,
    *,
    callback: Callable[[int, float, LorentzEmbedding], None] | None = None,
) -> list[dict]:
    """Train ``model`` on the closure pairs ``edges`` with the N&K objective (module docstring).

    Args:
        model: the embedding (its ``manifold.k`` is learned when it requires grad).
        edges: ``(E, 2)`` pairs ``(u, v)``, ``v`` an ancestor of ``u``.
        config: :class:`TrainConfig` (defaults if None).
        callback: called after every epoch as ``callback(epoch, mean_loss, model)`` (epochs count from 1).

    Returns:
        one dict per epoch: ``epoch``, ``loss`` (mean over the epoch's batches), ``lr``, ``k``, ``seconds``.
    """
    cfg = config or TrainConfig()
    edges = torch.as_tensor(edges, dtype=torch.long)
    if edges.ndim != 2 or edges.shape[0] == 0:
        raise ValueError(f"edges must be a non-empty (E, 2) tensor, got shape {tuple(edges.shape)}")
    edge_set = EdgeSet(edges, model.num_nodes)
    gen = torch.Generator().manual_seed(cfg.seed)
    if cfg.sparse:
        _check_sparse(model, cfg)
        step = _sparse_step
        opt = RiemannianSGD([model.weight], lr=cfg.lr)  # holds the lr schedule; never stepped on the full table
    else:
        step = _dense_step
        opt = create_optimizer(
            model, cfg.optimizer, lr=cfg.lr, weight_decay=cfg.weight_decay, curvature_lr=cfg.curvature_lr
        )
    base = [g["lr"] for g in opt.param_groups]
    history = []
    t0 = time.perf_counter()
    for epoch in range(1, cfg.epochs + 1):
        factor = cfg.burnin_factor if epoch <= cfg.burnin_epochs else 1.0
        for g, lr in zip(opt.param_groups, base):
            g["lr"] = lr * factor
        perm = torch.randperm(len(edges), generator=gen)
        total, batches = 0.0, 0
        for start in range(0, len(edges), cfg.batch_size):
            batch = edges[perm[start : start + cfg.batch_size]]
            neg, valid = sample_negatives(batch[:, 0], cfg.num_negatives, edge_set, generator=gen)
            loss = step(model, opt, batch, neg, valid)
            total += float(loss.detach())
            batches += 1
        mean = total / batches
        history.append(
            {
                "epoch": epoch,
                "loss": mean,
                "lr": cfg.lr * factor,
                "k": float(model.manifold.k.detach()),
                "seconds": time.perf_counter() - t0,
            }
        )
        if not math.isfinite(mean):
            raise FloatingPointError(f"loss became {mean} at epoch {epoch}; lower the learning rate")
        if callback is not None:
            callback(epoch, mean, model)
    return history


def _dense_step(
    model: LorentzEmbedding, opt: torch.optim.Optimizer, batch: torch.Tensor, neg: torch.Tensor, valid: torch.Tensor
) -> torch.Tensor:
    opt.zero_grad(set_to_none=True)
    loss = nk_loss(model, batch, neg, valid)
    loss.backward()
    opt.step()
    return loss


def _check_sparse(model: LorentzEmbedding, cfg: TrainConfig) -> None:
    reasons = []
    if cfg.optimizer != "rsgd":
        reasons.append(f"optimizer={cfg.optimizer!r} (its moments move untouched rows; use 'rsgd')")
    if cfg.weight_decay:
        reasons.append(f"weight_decay={cfg.weight_decay} (decays untouched rows)")
    if model.manifold.k.requires_grad:
        reasons.append("a learnable k (the curvature move moves every row)")
    if reasons:
        raise ValueError("TrainConfig(sparse=True) needs RSGD, no weight decay and a fixed k; got " + "; ".join(reasons))


def _sparse_step(
    model: LorentzEmbedding, opt: torch.optim.Optimizer, batch: torch.Tensor, neg: torch.Tensor, valid: torch.Tensor
) -> torch.Tensor:
    """One RSGD step of the rows the batch touches: the library's :class:`~lorentzcv.optim.RiemannianSGD` on a
    :class:`ManifoldParameter` holding just those rows, written back into the table."""
    dev = model.weight.device
    rows, local = torch.unique(torch.cat([batch.reshape(-1), neg.reshape(-1)]).to(dev), return_inverse=True)
    sub = ManifoldParameter(model.weight.detach()[rows], manifold=model.manifold)
    local_batch, local_neg = local[: batch.numel()].view(batch.shape), local[batch.numel() :].view(neg.shape)
    loss = _softmax_loss(sub, model.manifold.k, local_batch, local_neg, valid)
    loss.backward()
    RiemannianSGD([sub], lr=opt.param_groups[0]["lr"]).step()
    with torch.no_grad():
        model.weight[rows] = sub
    return loss
