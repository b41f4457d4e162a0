r"""Lorentz fully-connected layer (``docs/method.md`` §5.1).

Curvature convention: ``k > 0`` (``<x,x>_L = -k``, sectional curvature ``K = -1/k``), read from the manifold at
every forward so gradients reach a learnable ``k``.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from ..geometry import Lorentz
from ..geometry import math as lmath
from ..geometry.precision import float32_island, upcast
from .functional import check_points, lift

__all__ = ["LorentzLinear"]


class LorentzLinear(nn.Module):
    r"""Lorentz fully-connected layer (LFC): a linear map, then time from space.

    * ``variant="space"`` ([A], default): :math:`y_s = W x_s + b` on the space coordinates only
      (``nn.Linear(in_features, out_features)``); the input time is ignored.
    * ``variant="hcnn"`` ([H], Chen et al. modified): :math:`y = W x + b` over the full ambient input
      (``nn.Linear(1 + in_features, 1 + out_features)``), :math:`y_0` is dropped, :math:`y_s = y_{1..}`.

    Then :math:`y = (\sqrt{\|y_s\|^2 + k},\ y_s)`.

    ``normalize=True`` (Chen et al.): :math:`y_s \leftarrow \sigma(\tau)\,e^{s_0}\,y_s/\|y_s\|` with
    :math:`\tau = x_0` (``space``) or :math:`\tau = y_0` (``hcnn``), :math:`s_0` = ``init_scale`` (2.3, learnable
    with ``learn_scale``); rows with :math:`\|y_s\|^2 \le 10^{-10}` become the origin. Unlike the sources
    (:math:`\sqrt{\text{scale}^2 + k + 10^{-5}}`) the time is recomputed from the space part, so the output is
    exactly on the manifold.

    Init (as [H]/[A]): :math:`W \sim U(-0.02, 0.02)`, ``b = 0``.

    Args:
        manifold: the :class:`~lorentzcv.geometry.Lorentz` manifold (input and output).
        in_features, out_features: numbers of **space** features ``C_in``, ``C_out``.
        bias: add a bias.
        normalize: Chen et al.'s normalisation (above).
        variant: ``"space"`` or ``"hcnn"``.
        init_scale, learn_scale: ``s_0`` of the normalisation and whether it is learnt.

    Shapes: input ``(…, 1 + C_in)``, output ``(…, 1 + C_out)`` (manifold dim −1). Float32 island under autocast.
    """

    def __init__(
        self, manifold: Lorentz, in_features: int, out_features: int, bias: bool = True, normalize: bool = False,
        variant: str = "space", init_scale: float = 2.3, learn_scale: bool = False, init_std: float = 0.02,
    ) -> None:
        super().__init__()
        if variant not in ("space", "hcnn"):
            raise ValueError(f"unknown LorentzLinear variant {variant!r}; expected 'space' or 'hcnn'")
        if in_features < 1 or out_features < 1:
            raise ValueError(f"in_features and out_features count space features and must be >= 1, got "
                             f"{in_features}, {out_features}")
        self.manifold = manifold
        self.in_features, self.out_features = in_features, out_features
        self.variant, self.normalize = variant, normalize
        extra = 1 if variant == "hcnn" else 0
        self.weight = nn.Parameter(torch.empty(out_features + extra, in_features + extra))
        self.bias = nn.Parameter(torch.empty(out_features + extra)) if bias else None
        self.init_std = init_std
        if normalize:
            self.scale = nn.Parameter(torch.tensor(float(init_scale)), requires_grad=learn_scale)
        else:
            self.register_parameter("scale", None)
        self.reset_parameters()

    def reset_parameters(self) -> None:
        nn.init.uniform_(self.weight, -self.init_std, self.init_std)
        if self.bias is not None:
            nn.init.zeros_(self.bias)

    def extra_repr(self) -> str:
        return (f"{self.in_features}, {self.out_features}, bias={self.bias is not None}, variant={self.variant!r}, "
                f"normalize={self.normalize}")

    @float32_island
    def forward(self, x: torch.Tensor) -> torch.Tensor:
        check_points(x, self.in_features, dim=-1, name="input", what=type(self).__name__)
        k = self.manifold.use_k()
        # a float32 island: weights of a model cast with .half()/.bfloat16() are upcast like the input
        w, b = upcast(self.weight), None if self.bias is None else upcast(self.bias)
        if self.variant == "space":
            ys = F.linear(lmath.space(x), w, b)
            tau = lmath.time(x)
        else:
            y = F.linear(x, w, b)
            ys, tau = lmath.space(y), lmath.time(y)
        if not self.normalize:
            return lift(ys, k, dim=-1)
        scale = tau.sigmoid() * self.scale.exp()
        sq = (ys * ys).sum(-1, keepdim=True)
        nonzero = sq > 1e-10
        unit = ys / torch.where(nonzero, sq, torch.ones_like(sq)).sqrt()
        return lmath.add_time(torch.where(nonzero, scale * unit, torch.zeros_like(unit)), k)
