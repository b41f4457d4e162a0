r"""Hyperbolic distances for pytorch-metric-learning (``docs/design.md`` §3, ``docs/method.md`` §7.1–7.4).

Both classes follow PML's ``BaseDistance`` contract (``compute_mat(query, ref) -> (Q, R)``,
``pairwise_distance(query, ref) -> (N,)``, ``is_inverted=False``: smaller is closer), so PML's losses, miners,
``CustomKNN`` and ``AccuracyCalculator`` accept them::

    from pytorch_metric_learning.utils.accuracy_calculator import AccuracyCalculator
    from pytorch_metric_learning.utils.inference import CustomKNN
    calc = AccuracyCalculator(include=("precision_at_1",), knn_func=CustomKNN(LorentzDistance(manifold)))

Embeddings are never normalised (``normalize_embeddings`` is forced to ``False``). The distance matrices are
float32/float64 islands under autocast: half-precision inputs are upcast, and the Gram matrix is accumulated
in ``dtype`` (float64 by default, which removes the cancellation of :math:`-\langle x,y\rangle_L/k - 1` for
nearby points; pass ``dtype=torch.float32`` for speed). The result has the (upcast) dtype of the inputs.
The diagonal of ``compute_mat(x, x)`` (the same tensor twice, as PML passes it) is exactly 0 with zero
gradient.

Each class also has :meth:`ranking_scores`, a cheaper matrix that is strictly increasing in the distance row by
row (one matmul, no ``arcosh``/``artanh``), which :func:`lorentzcv.metric.recall_at_k` uses for retrieval.
"""

from __future__ import annotations

import torch
from pytorch_metric_learning.distances import BaseDistance

from ..geometry import math as lmath
from ..geometry.precision import no_autocast, upcast
from .poincare import _sq_mobius_ratio, poincare_dist, poincare_dist_matrix

__all__ = ["LorentzDistance", "PoincareDistance"]


def _check_kwargs(name: str, kwargs: dict) -> dict:
    if kwargs.get("normalize_embeddings", False):
        raise ValueError(f"{name} works on manifold points and cannot normalise embeddings; "
                         "drop normalize_embeddings=True")
    if kwargs.get("is_inverted", False):
        raise ValueError(f"{name} is a distance (smaller is closer); is_inverted=True is not supported")
    kwargs["normalize_embeddings"] = False
    kwargs["is_inverted"] = False
    return kwargs


def _zero_diag_if_self(mat: torch.Tensor, query: torch.Tensor, ref: torch.Tensor) -> torch.Tensor:
    if query is ref:
        eye = torch.eye(mat.size(0), dtype=torch.bool, device=mat.device)
        mat = mat.masked_fill(eye, 0.0)
    return mat


def _minkowski_gram(q: torch.Tensor, r: torch.Tensor) -> torch.Tensor:
    r""":math:`\langle q_i, r_j\rangle_L = -q_{i0} r_{j0} + q_{is}\cdot r_{js}`, shape ``(Q, R)``, one matmul."""
    r_flip = torch.cat([-r[:, :1], r[:, 1:]], dim=1)
    return q @ r_flip.transpose(0, 1)


class _HyperbolicDistance(BaseDistance):
    """Shared PML plumbing: float32 island, Gram accumulation in ``self.dtype``, exact zero self-distances.

    Subclasses implement ``_mat(q, r)`` (all pairs) and ``_pairwise(q, r)`` (row-wise) on prepared inputs.
    """

    dtype: torch.dtype

    def _prep(self, x: torch.Tensor) -> torch.Tensor:
        return x.to(self.dtype) if x.dtype != torch.float64 else x

    def compute_mat(self, query_emb: torch.Tensor, ref_emb: torch.Tensor | None) -> torch.Tensor:
        """All-pairs distances ``(Q, R)`` (``ref_emb=None`` means ``query_emb``)."""
        ref_emb = query_emb if ref_emb is None else ref_emb
        out_dtype = upcast(query_emb).dtype
        with no_autocast(query_emb):
            q = self._prep(query_emb)
            r = q if ref_emb is query_emb else self._prep(ref_emb)
            return _zero_diag_if_self(self._mat(q, r), query_emb, ref_emb).to(out_dtype)

    def pairwise_distance(self, query_emb: torch.Tensor, ref_emb: torch.Tensor) -> torch.Tensor:
        """Row-wise distances ``d(query_i, ref_i)``, shape ``(N,)``."""
        out_dtype = upcast(query_emb).dtype
        with no_autocast(query_emb):
            return self._pairwise(self._prep(query_emb), self._prep(ref_emb)).to(out_dtype)

    def _mat(self, q: torch.Tensor, r: torch.Tensor) -> torch.Tensor:
        raise NotImplementedError

    def _pairwise(self, q: torch.Tensor, r: torch.Tensor) -> torch.Tensor:
        raise NotImplementedError


class LorentzDistance(_HyperbolicDistance):
    r"""Geodesic distance on the Lorentz model :math:`\mathbb{H}_k` (``k > 0``, curvature ``K = -1/k``).

    .. math:: d(x, y) = \sqrt{k}\,\operatorname{arcosh}\big(-\langle x, y\rangle_L / k\big)

    The curvature is read from ``manifold.k`` at every call (learnable ``k`` receives gradients through it).
    The manifold is *referenced*, not registered as a submodule, so a PML loss holding this distance does not
    list ``k`` among its parameters a second time (the model or the LHIER loss owns it).

    Args:
        manifold: the :class:`~lorentzcv.geometry.Lorentz` the embeddings live on; points have shape
            ``(N, 1+n)`` with time at index 0.
        dtype: accumulation dtype of the Gram matrix (default float64; the output keeps the input dtype).
        **kwargs: passed to ``BaseDistance`` (e.g. ``power``); ``normalize_embeddings``/``is_inverted`` must
            stay False.
    """

    def __init__(self, manifold, *, dtype: torch.dtype = torch.float64, **kwargs) -> None:
        super().__init__(**_check_kwargs("LorentzDistance", kwargs))
        object.__setattr__(self, "_manifold", manifold)  # a reference, not a submodule (see docstring)
        self.dtype = dtype

    @property
    def manifold(self):
        return self._manifold

    def extra_repr(self) -> str:
        return f"k={float(self._manifold.k):.4g}, dtype={self.dtype}"

    def _mat(self, q: torch.Tensor, r: torch.Tensor) -> torch.Tensor:
        k = self._manifold.k.to(q.dtype)
        return k.sqrt() * lmath.arcosh(-_minkowski_gram(q, r) / k)

    def _pairwise(self, q: torch.Tensor, r: torch.Tensor) -> torch.Tensor:
        return lmath.dist(q, r, self._manifold.k.to(q.dtype))

    @torch.no_grad()
    def ranking_scores(self, query_emb: torch.Tensor, ref_emb: torch.Tensor) -> torch.Tensor:
        r""":math:`-\langle q_i, r_j\rangle_L` (one matmul, in the upcast input dtype, no gradient).

        Strictly increasing in :math:`d(q_i, r_j)` for every ``k``, so it ranks a gallery exactly like the
        distance, without ``arcosh``.
        """
        with no_autocast(query_emb):
            return -_minkowski_gram(upcast(query_emb), upcast(ref_emb).to(upcast(query_emb).dtype))


class PoincareDistance(_HyperbolicDistance):
    r"""Geodesic distance on HIER's Poincaré ball of curvature ``-c`` (``docs/method.md`` §7.1).

    .. math::

        d_c(x, y) = \frac{2}{\sqrt{c}}\operatorname{artanh}\big(\sqrt{c}\,\|(-x)\oplus_c y\|\big)
        = \frac{2}{\sqrt{c}}\operatorname{artanh}\sqrt{\frac{c\,\|x-y\|^2}
          {1 - 2c\langle x,y\rangle + c^2\|x\|^2\|y\|^2}}

    It equals :class:`LorentzDistance` with ``k = 1/c`` on corresponding points
    (:func:`lorentzcv.geometry.math.to_poincare`).

    Args:
        c: curvature magnitude (``K = -c``); HIER uses 0.1.
        dtype: accumulation dtype of the Gram matrix (default float64; the output keeps the input dtype).
        **kwargs: passed to ``BaseDistance``.
    """

    def __init__(self, c: float = 0.1, *, dtype: torch.dtype = torch.float64, **kwargs) -> None:
        super().__init__(**_check_kwargs("PoincareDistance", kwargs))
        if not c > 0:
            raise ValueError(f"PoincareDistance needs a curvature magnitude c > 0 (K = -c), got c={c}")
        self.c = float(c)
        self.dtype = dtype

    def extra_repr(self) -> str:
        return f"c={self.c}, dtype={self.dtype}"

    def _mat(self, q: torch.Tensor, r: torch.Tensor) -> torch.Tensor:
        return poincare_dist_matrix(q, r, self.c)

    def _pairwise(self, q: torch.Tensor, r: torch.Tensor) -> torch.Tensor:
        return poincare_dist(q, r, self.c)

    @torch.no_grad()
    def ranking_scores(self, query_emb: torch.Tensor, ref_emb: torch.Tensor) -> torch.Tensor:
        r""":math:`c\|(-q)\oplus_c r\|^2` (one matmul, upcast input dtype): strictly increasing in :math:`d_c`."""
        with no_autocast(query_emb):
            q = upcast(query_emb)
            return _sq_mobius_ratio(q, upcast(ref_emb).to(q.dtype), self.c)

