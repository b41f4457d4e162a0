r"""Regularisers of the model zoo: classifier dropout (``drop_rate``) and stochastic depth (``drop_path_rate``).

timm's ``drop_rate``/``drop_path_rate`` keywords for every geometry. Euclidean tensors use ``nn.Dropout`` and
timm's ``DropPath``. Lorentz tensors cannot be dropped coordinate-wise (a zeroed or rescaled point leaves the
hyperboloid), so the Lorentz variants act on the **space coordinates** and recompute the time, the same
"space operation + re-lift" as :class:`~lorentzcv.nn.LorentzActivation`:

.. math::

    y = \bigl(\sqrt{\|d(x_s)\|^2 + k},\ d(x_s)\bigr), \qquad \langle y, y\rangle_L = -k,

with ``d`` the Euclidean dropout / drop path (kept entries scaled by ``1/(1-p)``) and ``k > 0`` the manifold's
parameter (sectional curvature ``K = -1/k``). A dropped residual branch becomes the origin's space part
``0``, so a space-add residual (:class:`~lorentzcv.nn.LorentzResidual`) passes the shortcut through. The time is
computed in float32 under autocast (a float32 island, like the other Lorentz layers).
"""

from __future__ import annotations

from collections.abc import Callable

import torch
from torch import nn

from ..geometry import Lorentz
from ..geometry import math as lmath
from ..geometry.precision import no_autocast, upcast

__all__ = ["LorentzDropout", "LorentzDropPath", "euclidean_drop_layers", "lorentz_drop_layers"]


class _SpaceDrop(nn.Module):
    """Apply a Euclidean drop to the space coordinates of Lorentz points and re-lift (module docstring)."""

    def __init__(self, manifold: Lorentz, p: float, dim: int | None = None) -> None:
        super().__init__()
        if not 0.0 <= p < 1.0:
            raise ValueError(f"drop probability must be in [0, 1), got {p}")
        # a plain tuple, not a submodule: the manifold belongs to the model, so adding a drop layer does not add
        # state-dict keys (checkpoints trained without dropout load into a model with dropout and back)
        self._manifold = (manifold,)
        self.p, self.dim = float(p), dim

    @property
    def manifold(self) -> Lorentz:
        return self._manifold[0]

    def extra_repr(self) -> str:
        return f"p={self.p}"

    def _drop(self, xs: torch.Tensor) -> torch.Tensor:  # pragma: no cover - overridden
        raise NotImplementedError

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if not self.training or self.p == 0.0:
            return x
        dim = (1 if x.dim() == 4 else -1) if self.dim is None else self.dim
        ys = self._drop(lmath.space(x, dim=dim))
        with no_autocast(x):
            out = lmath.add_time(upcast(ys), self.manifold.use_k(), dim=dim)
        return out if x.dtype == out.dtype else out.to(x.dtype)


class LorentzDropout(_SpaceDrop):
    """Dropout of the space coordinates of Lorentz points, time recomputed: ``(…, 1+C) -> (…, 1+C)`` (or
    ``(B, 1+C, H, W)``; ``dim=None`` infers 1 for 4-D inputs, else −1). Identity in eval mode or for ``p = 0``."""

    def _drop(self, xs: torch.Tensor) -> torch.Tensor:
        return nn.functional.dropout(xs, self.p, training=True)


class LorentzDropPath(_SpaceDrop):
    """Stochastic depth for Lorentz residual branches: per sample, the space coordinates are zeroed with
    probability ``p`` (else scaled by ``1/(1-p)``), then the time is recomputed. Identity in eval mode."""

    def _drop(self, xs: torch.Tensor) -> torch.Tensor:
        from timm.layers import drop_path

        return drop_path(xs, self.p, training=True)


DropFactory = Callable[[float], nn.Module]


def euclidean_drop_layers() -> dict[str, DropFactory]:
    """``{"drop_path_layer": DropPath, "head_drop_layer": nn.Dropout}`` for Euclidean branches and features."""
    from timm.layers import DropPath

    return dict(drop_path_layer=DropPath, head_drop_layer=nn.Dropout)


def lorentz_drop_layers(encoder: Lorentz | None, decoder: Lorentz | None) -> dict[str, DropFactory]:
    """Drop factories for a model whose residual branches live on ``encoder`` (``None``: Euclidean branches)
    and whose classifier input lives on ``decoder`` (``None``: Euclidean features)."""
    eu = euclidean_drop_layers()
    return dict(
        drop_path_layer=eu["drop_path_layer"] if encoder is None else (lambda p: LorentzDropPath(encoder, p)),
        head_drop_layer=eu["head_drop_layer"] if decoder is None else (lambda p: LorentzDropout(decoder, p)),
    )
