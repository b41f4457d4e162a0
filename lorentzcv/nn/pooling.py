r"""Lorentz pooling on channels-first maps ``(B, 1+C, H, W)`` (``docs/method.md`` §5.6).

Curvature convention: ``k > 0`` (``<x,x>_L = -k``, ``K = -1/k``), read from the manifold at every forward.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn
from torch.nn.modules.utils import _pair

from ..geometry import Lorentz
from ..geometry import math as lmath
from ..geometry.precision import float32_island
from ..kernels import use_fused
from ..kernels.rows import fused_normalize, fused_normalize_supported
from .functional import check_points

__all__ = ["LorentzGlobalAvgPool2d", "LorentzMaxPool2d"]


class LorentzGlobalAvgPool2d(nn.Module):
    r"""Lorentzian centroid over the ``H·W`` pixels of each sample (§1.2 item 12, §5.6):
    :math:`\mu = \frac{1}{HW}\sum_{p} x_p`, :math:`c = \sqrt{k}\,\mu/\sqrt{|\langle\mu,\mu\rangle_L|}`.

    Shapes: ``(B, 1+C, H, W) → (B, 1+C)`` (``keepdim=True``: ``(B, 1+C, 1, 1)``). Float32 island.
    """

    def __init__(self, manifold: Lorentz, keepdim: bool = False) -> None:
        super().__init__()
        self.manifold, self.keepdim = manifold, keepdim

    def extra_repr(self) -> str:
        return f"keepdim={self.keepdim}"

    @float32_island
    def forward(self, x: torch.Tensor) -> torch.Tensor:
        check_points(x, None, dim=1, ndim=4, what=type(self).__name__)
        mu = x.mean(dim=(2, 3))
        k = lmath._k(self.manifold.use_k(), mu)
        if use_fused(mu) and fused_normalize_supported(mu, k):
            c = fused_normalize(mu, k)  # (one kernel forward, two backward on CUDA)
        else:
            c = lmath.normalize(mu, k, dim=-1)
        return c[:, :, None, None] if self.keepdim else c


class LorentzMaxPool2d(nn.Module):
    r"""Lorentz max pooling ([A] ``LorentzMaxPool2D``, §5.6): in each window, the pixel farthest from the
    origin (largest :math:`d_0`) is copied with all its channels.

    ``d_0`` is monotone in :math:`\|x_s\|^2`, so the window argmax is ``max_pool2d`` of the per-pixel
    :math:`\|x_s\|^2` map with ``return_indices=True``, followed by one gather of the full vectors; gradients
    flow to the selected pixels. Padded positions are never selected (they act as the origin, the minimum).

    Args:
        manifold: the :class:`~lorentzcv.geometry.Lorentz` (unused by the computation, kept for uniformity).
        kernel_size, stride (default ``kernel_size``), padding, dilation, ceil_mode: as ``nn.MaxPool2d``.

    Shapes: ``(B, 1+C, H, W) → (B, 1+C, H', W')``.
    """

    def __init__(
        self, manifold: Lorentz, kernel_size: int | tuple[int, int], stride: int | tuple[int, int] | None = None,
        padding: int | tuple[int, int] = 0, dilation: int | tuple[int, int] = 1, ceil_mode: bool = False,
    ) -> None:
        super().__init__()
        self.manifold = manifold
        self.kernel_size = _pair(kernel_size)
        self.stride = _pair(stride) if stride is not None else self.kernel_size
        self.padding, self.dilation, self.ceil_mode = _pair(padding), _pair(dilation), ceil_mode

    def extra_repr(self) -> str:
        return (f"kernel_size={self.kernel_size}, stride={self.stride}, padding={self.padding}, "
                f"dilation={self.dilation}, ceil_mode={self.ceil_mode}")

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        check_points(x, None, dim=1, ndim=4, what=type(self).__name__)
        b, c1 = x.shape[:2]
        with torch.no_grad():
            xs = lmath.space(x, dim=1).float()
            score = (xs * xs).sum(1, keepdim=True)
            _, idx = F.max_pool2d(score, self.kernel_size, self.stride, self.padding, self.dilation,
                                  self.ceil_mode, return_indices=True)
        ho, wo = idx.shape[-2:]
        idx = idx.view(b, 1, ho * wo).expand(b, c1, ho * wo)
        return x.flatten(2).gather(2, idx).view(b, c1, ho, wo)
