r"""Lorentz activation and residual modules (``docs/method.md`` §5.6)."""

from __future__ import annotations

from collections.abc import Callable

import torch
from torch import nn

from ..geometry import Lorentz
from ..geometry.rescale import RescaleConfig
from .functional import check_points, lorentz_activation, lorentz_residual

__all__ = ["LorentzActivation", "LorentzReLU", "LorentzResidual"]


def _layout_dim(x: torch.Tensor, dim: int | None) -> int:
    return (1 if x.dim() == 4 else -1) if dim is None else dim


class LorentzActivation(nn.Module):
    r"""Space activation :math:`y = (\sqrt{\|\sigma(x_s)\|^2 + k},\ \sigma(x_s))` (§5.6, HCNN/[A] ``LorentzAct``).

    Args:
        manifold: the :class:`~lorentzcv.geometry.Lorentz` (``k > 0``, ``K = -1/k``).
        act: an ``nn.Module`` instance, an ``nn.Module`` class (instantiated without arguments, e.g.
            ``nn.ReLU``) or any callable on tensors; default ``nn.ReLU``.
        dim: manifold dimension. ``None`` (default) infers it from the input: 4-D ``(B, 1+C, H, W)`` → 1,
            anything else ``(…, 1+C)`` → −1.

    ``σ`` runs in the input dtype (it is Euclidean, autocast applies); the time is computed in float32.
    """

    def __init__(self, manifold: Lorentz, act: nn.Module | type[nn.Module] | Callable = nn.ReLU,
                 dim: int | None = None) -> None:
        super().__init__()
        self.manifold = manifold
        if isinstance(act, type) and issubclass(act, nn.Module):
            act = act()
        if not callable(act):
            raise ValueError(f"act must be an nn.Module, an nn.Module class or a callable, got {act!r}")
        if getattr(act, "inplace", False):
            raise ValueError("LorentzActivation needs an out-of-place activation (it would overwrite the space "
                             "part of its input point); pass e.g. nn.ReLU() instead of nn.ReLU(inplace=True)")
        self.act = act
        self.dim = dim

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        dim = _layout_dim(x, self.dim)
        check_points(x, None, dim=dim, what=type(self).__name__)
        return lorentz_activation(x, self.act, self.manifold.use_k(), dim=dim)


class LorentzReLU(LorentzActivation):
    """:class:`LorentzActivation` with ``ReLU``."""

    def __init__(self, manifold: Lorentz, dim: int | None = None) -> None:
        super().__init__(manifold, nn.ReLU, dim=dim)


class LorentzResidual(nn.Module):
    r"""Residual addition of two points: space addition, time from space, maximum distance rescaling (§5.6).

    ``forward(x, y)`` returns :func:`~lorentzcv.nn.functional.lorentz_residual` ``(x, y)`` (``rescale=False``:
    HCNN's residual). ``dim`` as in :class:`LorentzActivation` (``None`` infers 1 for 4-D inputs, else −1).
    """

    def __init__(self, manifold: Lorentz, rescale: bool | RescaleConfig = True, dim: int | None = None) -> None:
        super().__init__()
        self.manifold, self.rescale, self.dim = manifold, rescale, dim

    def extra_repr(self) -> str:
        return f"rescale={self.rescale}"

    def forward(self, x: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
        return lorentz_residual(x, y, self.manifold, dim=_layout_dim(x, self.dim), rescale=self.rescale)
