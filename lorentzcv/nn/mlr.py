r"""Lorentz multinomial logistic regression (``docs/method.md`` §5.5; [H] = [A])."""

from __future__ import annotations

import math

import torch
from torch import nn

from ..geometry import Lorentz
from ..geometry import math as lmath
from ..geometry.precision import float32_island
from ..kernels import use_fused
from ..kernels.mlr import fused_mlr, fused_mlr_supported, mlr_logits
from .functional import check_points

__all__ = ["LorentzMLR", "lorentz_mlr_logits"]


def lorentz_mlr_logits(x: torch.Tensor, a: torch.Tensor, z: torch.Tensor, k: torch.Tensor | float) -> torch.Tensor:
    r"""Signed, ‖z‖-weighted distances of ``x`` to the Lorentz hyperplanes ``(a, z)`` (closed form, §5.5).

    .. math::
        \mathrm{logit}_c(x) = \sqrt{k}\,\|z_c\|\,
        \operatorname{asinh}\!\Big(\frac{\alpha_c}{\sqrt{k}\,\|z_c\|}\Big),\qquad
        \alpha_c = -\sinh(a_c/\sqrt{k})\,\|z_c\|\,x_0 + \cosh(a_c/\sqrt{k})\,\langle x_s, z_c\rangle .

    This is :math:`\operatorname{sign}(\alpha)\,\beta\,d` with :math:`w_t = \sinh(a/\sqrt{k})\|z\|`,
    :math:`w_s = \cosh(a/\sqrt{k}) z`, :math:`\beta = \sqrt{-w_t^2 + \|w_s\|^2} = \|z\|` and ``d`` the distance
    to the hyperplane :math:`\{y: -w_t y_0 + w_s\cdot y_s = 0\}`; using ``‖z‖`` for ``β`` avoids the cancellation.

    Args:
        x: points ``(…, 1 + n)`` (manifold dim −1).
        a: ``(n_cls,)`` hyperplane offsets; z: ``(n_cls, n)`` directions.
        k: curvature parameter (``K = -1/k``).

    Returns:
        ``(…, n_cls)`` logits.
    """
    return mlr_logits(x, a, z, lmath._k(k, x))[0]


class LorentzMLR(nn.Module):
    r"""Lorentz MLR classifier: logits = signed distances to ``num_classes`` Lorentz hyperplanes (§5.5).

    See :func:`lorentz_mlr_logits` for the formula. Parameters ``a`` (``(num_classes,)``) and ``z``
    (``(num_classes, num_features)``) are Euclidean (the optimizer does not move them when ``k`` changes).

    Args:
        manifold: the :class:`~lorentzcv.geometry.Lorentz` (``k > 0``, ``K = -1/k``) of the input points.
        num_features: number of **space** features ``n`` (input ``(B, 1 + n)``).
        num_classes: number of classes.
        init: ``"normal"`` (default, [A]: ``N(0, 1/√n)`` for ``a`` and ``z``) or ``"uniform"`` ([H]:
            ``U(-1/√n, 1/√n)``).

    Shapes: ``(B, 1 + n) → (B, num_classes)`` (any leading dims). Float32 island under autocast.
    """

    def __init__(self, manifold: Lorentz, num_features: int, num_classes: int, init: str = "normal") -> None:
        super().__init__()
        if init not in ("normal", "uniform"):
            raise ValueError(f"unknown init {init!r}; expected 'normal' or 'uniform'")
        if num_features < 1 or num_classes < 1:
            raise ValueError(f"num_features (space features) and num_classes must be >= 1, got {num_features}, "
                             f"{num_classes}")
        self.manifold = manifold
        self.num_features, self.num_classes, self.init = num_features, num_classes, init
        self.a = nn.Parameter(torch.empty(num_classes))
        self.z = nn.Parameter(torch.empty(num_classes, num_features))
        self.reset_parameters()

    def reset_parameters(self) -> None:
        s = 1.0 / math.sqrt(self.num_features)
        for p in (self.a, self.z):
            if self.init == "normal":
                nn.init.normal_(p, std=s)
            else:
                nn.init.uniform_(p, -s, s)

    def extra_repr(self) -> str:
        return f"num_features={self.num_features}, num_classes={self.num_classes}, init={self.init!r}"

    @float32_island
    def forward(self, x: torch.Tensor) -> torch.Tensor:
        check_points(x, self.num_features, dim=-1, name="input", what=type(self).__name__)
        a, z, k = self.a.to(x.dtype), self.z.to(x.dtype), self.manifold.use_k()
        if use_fused(x) and fused_mlr_supported(x, a, z, k):
            return fused_mlr(x, a, z, k)  # (CUDA: 2 launches forward, 5 backward)
        return lorentz_mlr_logits(x, a, z, k)
