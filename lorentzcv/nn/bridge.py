r"""Manifold swappers between Euclidean features and Lorentz points (``docs/method.md`` §5.6, §1.2 item 13).

Curvature convention: ``k > 0`` (``<x,x>_L = -k``, ``K = -1/k``), read from the manifold at every forward.

Precision: the bridges are float32 islands. Under autocast a Euclidean encoder hands them bfloat16/float16
features; they are upcast, and the rescaling radius is float32's (``m ≈ 9.56``,
:func:`~lorentzcv.geometry.rescale.computation_dtype`), the dtype the lift computes and returns in, not the
16-bit dtype the features arrived in (whose radius, 2.91 for bfloat16, made a hybrid ResNet-18's logits 0.55 off
their float32 values).
Layouts: channels-first maps ``(B, C, H, W)`` ↔ ``(B, 1+C, H, W)`` and vectors ``(B, C)`` ↔ ``(B, 1+C)`` both use
``dim=1`` (the default); for ``(…, N, C)`` pass ``dim=-1``.
"""

from __future__ import annotations

import torch
from torch import nn

from ..geometry import Lorentz
from ..geometry.rescale import RescaleConfig
from .functional import check_points, euclid_to_lorentz, lorentz_to_euclid, swap_manifold

__all__ = ["ToLorentz", "FromLorentz", "ManifoldSwap"]


class ToLorentz(nn.Module):
    r"""Euclidean features → Lorentz points (a float32 island).

    * ``mode="rescale"`` ([A] ``ManifoldSwapper``): :math:`v \leftarrow g(\|v\|)\,v/\|v\|` (maximum distance
      rescaling of the Euclidean vector, radius :math:`m\min(1,\sqrt{k})`, the manifold's
      :class:`RescaleConfig`), used **directly as space coordinates**: :math:`(\sqrt{\|v\|^2+k}, v)` (not exp0).
    * ``mode="clip_expmap"`` ([H] hybrid head, Guo et al.'s feature clipping):
      :math:`v \leftarrow \min(1, r/\|v\|)\,v`, then :math:`\exp_0((0, v))`, ``r = clip_r``.
    * ``mode="add_time"``: ``v`` as space coordinates unchanged (the input lift of an image, §5.6).

    Shapes: ``(B, C, H, W) → (B, 1+C, H, W)`` or ``(B, C) → (B, 1+C)`` (``dim`` is the channel dim).
    """

    def __init__(self, manifold: Lorentz, mode: str = "rescale", clip_r: float = 1.0, dim: int = 1) -> None:
        super().__init__()
        if mode not in ("rescale", "clip_expmap", "add_time"):
            raise ValueError(f"unknown ToLorentz mode {mode!r}; expected 'rescale', 'clip_expmap' or 'add_time'")
        if mode == "clip_expmap" and not clip_r > 0:
            raise ValueError(f"clip_r must be > 0, got {clip_r}")
        self.manifold, self.mode, self.clip_r, self.dim = manifold, mode, float(clip_r), dim

    def extra_repr(self) -> str:
        return f"mode={self.mode!r}" + (f", clip_r={self.clip_r}" if self.mode == "clip_expmap" else "")

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if x.dim() < 2 or not -x.dim() <= self.dim < x.dim():
            raise ValueError(f"ToLorentz expects (B, C, H, W) or (B, C) features with channels at dim {self.dim}, "
                             f"got shape {tuple(x.shape)}")
        return euclid_to_lorentz(x, self.manifold.use_k(), dim=self.dim, mode=self.mode, clip_r=self.clip_r,
                                 config=self.manifold.rescale_config)


class FromLorentz(nn.Module):
    r"""Lorentz points → Euclidean features, the time coordinate dropped.

    * ``mode="logmap0"`` (default): space part of :math:`\log_0 x = d_0(x)\,x_s/\|x_s\|` (float32 island).
    * ``mode="space"`` ([A] ``space_only_swap``): :math:`x_s`.

    Shapes: ``(B, 1+C, H, W) → (B, C, H, W)`` or ``(B, 1+C) → (B, C)``.
    """

    def __init__(self, manifold: Lorentz, mode: str = "logmap0", dim: int = 1) -> None:
        super().__init__()
        if mode not in ("logmap0", "space"):
            raise ValueError(f"unknown FromLorentz mode {mode!r}; expected 'logmap0' or 'space'")
        self.manifold, self.mode, self.dim = manifold, mode, dim

    def extra_repr(self) -> str:
        return f"mode={self.mode!r}"

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        check_points(x, None, dim=self.dim, what=type(self).__name__)
        return lorentz_to_euclid(x, self.manifold.use_k(), dim=self.dim, mode=self.mode)


class ManifoldSwap(nn.Module):
    r"""Lorentz ``k₁`` → Lorentz ``k₂``: :math:`\exp_0^{k_2}(\mathrm{rescale\_euclid}(\log_0^{k_1} x))`
    ([A] swapper, §1.2 item 13, §2.4 item 7), e.g. between an encoder and a decoder with separate learnable
    curvatures. Gradients reach both ``k``. The rescaling (``dst``'s config, radius :math:`m\min(1,\sqrt{k_2})`)
    is skipped with ``rescale=False``. Shapes are unchanged; float32 island.
    """

    def __init__(self, src: Lorentz, dst: Lorentz, rescale: bool | RescaleConfig = True, dim: int = 1) -> None:
        super().__init__()
        self.src, self.dst, self.rescale, self.dim = src, dst, rescale, dim

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        check_points(x, None, dim=self.dim, what=type(self).__name__)
        if isinstance(self.rescale, RescaleConfig):
            cfg = self.rescale
        else:
            cfg = self.dst.rescale_config if self.rescale else None
        return swap_manifold(x, self.src.use_k(), self.dst.use_k(), dim=self.dim, rescale=cfg)
