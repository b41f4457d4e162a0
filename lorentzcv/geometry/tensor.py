"""``ManifoldParameter``: an ``nn.Parameter`` that knows the manifold its rows live on.

A real ``torch.Tensor``/``nn.Parameter`` subclass (unlike wrapper designs, which break ``.float()`` and
DDP), so it survives ``Module.to()``, ``.float()``/``.double()``, ``state_dict`` save/load, ``copy.deepcopy``,
pickling and ``DistributedDataParallel``. Operations on it return plain tensors (``nn.Parameter`` disables
``__torch_function__`` propagation), so only the stored parameter carries the manifold. Riemannian
optimizers dispatch on ``isinstance(p, ManifoldParameter)`` and read ``p.manifold``.
"""

from __future__ import annotations

import copy
from typing import Any

import torch
from torch import nn

__all__ = ["ManifoldParameter"]


def _rebuild_manifold_parameter(data: torch.Tensor, manifold: Any, requires_grad: bool) -> ManifoldParameter:
    return ManifoldParameter(data, manifold=manifold, requires_grad=requires_grad)


class ManifoldParameter(nn.Parameter):
    """A parameter whose last-dimension vectors are points of ``manifold``.

    Args:
        data: the initial points (e.g. ``manifold.origin(n, 1 + d)``), manifold dimension -1.
        manifold: the :class:`~lorentzcv.geometry.Lorentz` owning the curvature ``k``. The module that holds
            this parameter should also hold the manifold as a submodule, so that both move together.
        requires_grad: as for ``nn.Parameter``.
    """

    manifold: Any

    def __new__(cls, data: torch.Tensor | None = None, manifold: Any = None, requires_grad: bool = True):
        if data is None:
            data = torch.empty(0)
        if manifold is None:
            raise ValueError("ManifoldParameter needs its manifold, e.g. ManifoldParameter(x, manifold=Lorentz())")
        instance = torch.Tensor._make_subclass(cls, data.detach(), requires_grad)
        instance.manifold = manifold
        return instance

    def __deepcopy__(self, memo: dict) -> ManifoldParameter:
        if id(self) in memo:
            return memo[id(self)]
        result = ManifoldParameter(
            self.data.clone(memory_format=torch.preserve_format),
            manifold=copy.deepcopy(self.manifold, memo),
            requires_grad=self.requires_grad,
        )
        memo[id(self)] = result
        return result

    def __reduce_ex__(self, proto: int):
        return _rebuild_manifold_parameter, (self.data, self.manifold, self.requires_grad)

    def __repr__(self) -> str:
        return f"ManifoldParameter on {self.manifold!r} containing:\n{super(nn.Parameter, self).__repr__()}"
