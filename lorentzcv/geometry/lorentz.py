r"""``Lorentz``: the hyperboloid :math:`\mathbb{H}^n_k = \{x : \langle x,x\rangle_L = -k,\ x_0 > 0\}` as a module.

Owns the curvature parameter ``k > 0`` (sectional curvature :math:`K = -1/k`, ``docs/design.md`` §1) and wraps
the pure kernels of :mod:`lorentzcv.geometry.math` and :mod:`lorentzcv.geometry.rescale`. Every method reads
the *current* ``k``, so a learnable curvature is seen consistently by all layers sharing the manifold.
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterator

import torch
from torch import nn

from . import math as lmath
from .rescale import RescaleConfig, rescale, rescale_euclid

__all__ = ["Lorentz"]


def _check_dim(x: torch.Tensor, dim: int, name: str = "x") -> None:
    if x.dim() == 0 or x.size(dim) < 2:
        raise ValueError(
            f"{name} must have a manifold dimension (dim={dim}) of size >= 2 (time + at least one space "
            f"coordinate), got shape {tuple(x.shape)}"
        )


def _check_pair(x: torch.Tensor, y: torch.Tensor, dim: int, names: str = "x and y") -> None:
    _check_dim(x, dim, names.split(" and ")[0])
    _check_dim(y, dim, names.split(" and ")[1])
    try:
        torch.broadcast_shapes(x.shape, y.shape)
    except RuntimeError:
        raise ValueError(f"{names} must have broadcastable shapes, got {tuple(x.shape)} and {tuple(y.shape)}") from None
    if x.size(dim) != y.size(dim):
        raise ValueError(f"{names} must have the same manifold dimension size, got {x.size(dim)} and {y.size(dim)}")


#: Views of ``k`` one fan node hands out (:meth:`Lorentz.use_k`); a forward with more uses opens another fan.
FAN_WIDTH = 128


class _KFan(torch.autograd.Function):
    """``n`` views of the 0-d ``k`` from one autograd node. Each use of ``k`` in a forward takes its own view, so the
    backward receives the gradients of all uses at once and sums them in two kernels (``stack`` + ``sum``), where
    autograd would accumulate the gradient of a tensor used ``n`` times with ``n - 1`` separate ``add`` kernels."""

    @staticmethod
    def forward(ctx, k: torch.Tensor, n: int):  # type: ignore[override]
        ctx.set_materialize_grads(False)  # (unused views: no zero-filled gradients)
        return tuple(k.view_as(k) for _ in range(n))

    @staticmethod
    def backward(ctx, *grads):  # type: ignore[override]
        gs = [g for g in grads if g is not None]
        if not gs:
            return None, None
        return (gs[0] if len(gs) == 1 else torch.stack(gs).sum(0)), None


class Lorentz(nn.Module):
    r"""The Lorentz model with curvature parameter ``k`` (points satisfy :math:`\langle x,x\rangle_L=-k`).

    Args:
        k: initial value, ``k > 0``; the sectional curvature is ``K = -1/k``.
        learnable: whether ``k`` receives gradients (it is always an ``nn.Parameter``, so it moves with
            ``.to()`` and is saved in ``state_dict``).
        bounds: ``(k_min, k_max)`` that optimizers clamp ``k`` to after each update.
        rescale: constants of maximum distance rescaling used by :meth:`rescale`.
        check: validate that inputs of point-taking methods lie on the manifold (raises ``ValueError``).

    Attributes:
        k: the ``nn.Parameter`` holding ``k``.
        curvature: ``K = -1/k`` (a tensor).
        repair_on_use: whether layers that read stored points of this manifold (a Lorentz batch norm's β, LHIER's
            LCAs) recompute their time coordinate from the current ``k`` (``projx``) before using them (default
            True). The training engine sets it False for ``optim.curvature_mode="naive"``, the ablation baseline
            of a curvature-unaware optimizer, whose layers use the stored coordinates as they are (so a point left
            on the old hyperboloid when ``k`` moved stays off the new one; ``lorentzcv.optim.curvature``).
    """

    def __init__(
        self, k: float = 1.0, learnable: bool = False, bounds: tuple[float, float] = (0.05, 20.0),
        rescale: RescaleConfig | None = None, check: bool = False,
    ) -> None:
        super().__init__()
        k = float(k)
        if not k > 0:
            raise ValueError(f"Lorentz needs k > 0 (sectional curvature K = -1/k < 0), got k={k}")
        if not 0 < bounds[0] <= k <= bounds[1]:
            raise ValueError(f"Lorentz needs 0 < k_min <= k <= k_max, got k={k}, bounds={bounds}")
        self.k = nn.Parameter(torch.tensor(k), requires_grad=learnable)
        self.bounds = (float(bounds[0]), float(bounds[1]))
        self.rescale_config = rescale or RescaleConfig()
        self.check = check
        self.repair_on_use = True
        self._fan: list[torch.Tensor] | None = None  # the views of k left in an open shared_gradients() block

    # --- properties -------------------------------------------------------------------------------
    @property
    def learnable(self) -> bool:
        return self.k.requires_grad

    @property
    def curvature(self) -> torch.Tensor:
        """Sectional curvature ``K = -1/k``."""
        return -1.0 / self.k

    def extra_repr(self) -> str:
        return f"k={self.k.item():.4g}, learnable={self.learnable}, bounds={self.bounds}"

    def use_k(self) -> torch.Tensor:
        """``k`` for one use in a layer's forward (what the layers of :mod:`lorentzcv.nn` read).

        Outside a :meth:`shared_gradients` block this is the parameter ``k`` itself; inside, a view of it from a
        fan node (same value, same gradient), so that the gradients of all uses reach ``k`` through one sum.
        """
        fan = self._fan
        if fan is None:
            return self.k
        if not fan:
            fan.extend(_KFan.apply(self.k, FAN_WIDTH))
        return fan.pop()

    @contextlib.contextmanager
    def shared_gradients(self) -> Iterator[None]:
        """Within the block, :meth:`use_k` hands out views of ``k`` from fan nodes of :data:`FAN_WIDTH` views each.

        Autograd accumulates the gradient of a tensor used ``n`` times with ``n - 1`` ``add`` kernels (about one per
        Lorentz layer: a GPU launch each); through a fan the backward sums them in two. The values and gradients
        are those of using ``k`` directly (to rounding of the sum's order). A no-op for a fixed ``k``, without
        gradients, and under ``torch.compile``/``torch.jit.trace`` (plain ``k``). The models open it around their
        forward (:class:`~lorentzcv.models.resnet.LorentzResNet`).
        """
        if (not (self.k.requires_grad and torch.is_grad_enabled()) or torch.compiler.is_compiling()
                or torch.jit.is_tracing()):
            yield
            return
        saved, self._fan = self._fan, []
        try:
            yield
        finally:
            self._fan = saved

    def _kk(self, x: torch.Tensor) -> torch.Tensor:
        return self.k if self.k.dtype == x.dtype else self.k.to(x.dtype)

    def check_point_on_manifold(self, x: torch.Tensor, *, dim: int = -1, atol: float | None = None) -> None:
        """Raise ``ValueError`` unless ``<x,x>_L = -k`` (relative tolerance) and ``x_0 > 0``."""
        _check_dim(x, dim)
        k = self._kk(x).detach()
        tol = atol if atol is not None else (1e-5 if x.dtype == torch.float64 else 1e-2)
        err = ((lmath.inner(x, x, dim=dim) + k).abs() / (k + lmath.time(x, dim=dim).squeeze(dim) ** 2)).max()
        if err > tol or (lmath.time(x, dim=dim) <= 0).any():
            raise ValueError(
                f"points are not on the hyperboloid <x,x>_L = -k (k={k.item():.4g}) with x_0 > 0: relative "
                f"error {err.item():.3g} > {tol:g} or a non-positive time coordinate; use projx() to project"
            )

    def _points(self, *xs: torch.Tensor, dim: int) -> None:
        if self.check:
            for x in xs:
                self.check_point_on_manifold(x, dim=dim)

    # --- metric -----------------------------------------------------------------------------------
    def inner(self, u: torch.Tensor, v: torch.Tensor, *, dim: int = -1, keepdim: bool = False) -> torch.Tensor:
        r""":math:`\langle u,v\rangle_L = -u_0v_0 + u_s\cdot v_s`."""
        _check_pair(u, v, dim, "u and v")
        return lmath.inner(u, v, dim=dim, keepdim=keepdim)

    def norm(self, u: torch.Tensor, *, dim: int = -1, keepdim: bool = False) -> torch.Tensor:
        r"""Lorentz norm :math:`\sqrt{\langle u,u\rangle_L}` of a tangent vector."""
        _check_dim(u, dim, "u")
        return lmath.lorentz_norm(u, dim=dim, keepdim=keepdim)

    def dist(self, x: torch.Tensor, y: torch.Tensor, *, dim: int = -1, keepdim: bool = False) -> torch.Tensor:
        r"""Geodesic distance :math:`\sqrt{k}\operatorname{arcosh}(-\langle x,y\rangle_L/k)`."""
        _check_pair(x, y, dim)
        self._points(x, y, dim=dim)
        return lmath.dist(x, y, self._kk(x), dim=dim, keepdim=keepdim)

    def dist0(self, x: torch.Tensor, *, dim: int = -1, keepdim: bool = False) -> torch.Tensor:
        r"""Distance to the origin :math:`\sqrt{k}\operatorname{asinh}(\|x_s\|/\sqrt{k})`."""
        _check_dim(x, dim)
        self._points(x, dim=dim)
        return lmath.dist0(x, self._kk(x), dim=dim, keepdim=keepdim)

    def sqdist(self, x: torch.Tensor, y: torch.Tensor, *, dim: int = -1, keepdim: bool = False) -> torch.Tensor:
        r"""Squared Lorentzian distance :math:`-2k - 2\langle x,y\rangle_L`."""
        _check_pair(x, y, dim)
        self._points(x, y, dim=dim)
        return lmath.sqdist(x, y, self._kk(x), dim=dim, keepdim=keepdim)

    # --- maps -------------------------------------------------------------------------------------
    def expmap(self, x: torch.Tensor, u: torch.Tensor, *, dim: int = -1) -> torch.Tensor:
        """Exponential map at ``x`` (see :func:`lorentzcv.geometry.math.expmap`)."""
        _check_pair(x, u, dim, "x and u")
        self._points(x, dim=dim)
        return lmath.expmap(x, u, self._kk(x), dim=dim)

    def logmap(self, x: torch.Tensor, y: torch.Tensor, *, dim: int = -1) -> torch.Tensor:
        """Logarithmic map at ``x`` (see :func:`lorentzcv.geometry.math.logmap`)."""
        _check_pair(x, y, dim)
        self._points(x, y, dim=dim)
        return lmath.logmap(x, y, self._kk(x), dim=dim)

    def expmap0(self, u: torch.Tensor, *, dim: int = -1) -> torch.Tensor:
        """Exponential map at the origin (the time component of ``u`` is ignored)."""
        _check_dim(u, dim, "u")
        return lmath.expmap0(u, self._kk(u), dim=dim)

    def logmap0(self, x: torch.Tensor, *, dim: int = -1) -> torch.Tensor:
        """Logarithmic map at the origin; the result has time component 0."""
        _check_dim(x, dim)
        self._points(x, dim=dim)
        return lmath.logmap0(x, self._kk(x), dim=dim)

    def transp(self, x: torch.Tensor, y: torch.Tensor, v: torch.Tensor, *, dim: int = -1) -> torch.Tensor:
        """Closed-form parallel transport of ``v ∈ T_x`` to ``T_y``."""
        _check_pair(x, y, dim)
        _check_pair(x, v, dim, "x and v")
        self._points(x, y, dim=dim)
        return lmath.transp(x, y, v, self._kk(x), dim=dim)

    def transp0(self, y: torch.Tensor, v: torch.Tensor, *, dim: int = -1) -> torch.Tensor:
        """Parallel transport of ``v ∈ T_o`` to ``T_y``."""
        _check_pair(y, v, dim, "y and v")
        self._points(y, dim=dim)
        return lmath.transp0(y, v, self._kk(y), dim=dim)

    def transp0back(self, x: torch.Tensor, v: torch.Tensor, *, dim: int = -1) -> torch.Tensor:
        """Parallel transport of ``v ∈ T_x`` to the origin."""
        _check_pair(x, v, dim, "x and v")
        self._points(x, dim=dim)
        return lmath.transp0back(x, v, self._kk(x), dim=dim)

    # --- projections ------------------------------------------------------------------------------
    def projx(self, x: torch.Tensor, *, dim: int = -1) -> torch.Tensor:
        """Project onto the hyperboloid (time recomputed from space)."""
        _check_dim(x, dim)
        return lmath.projx(x, self._kk(x), dim=dim)

    def proju(self, x: torch.Tensor, v: torch.Tensor, *, dim: int = -1) -> torch.Tensor:
        """Project ``v`` onto the tangent space at ``x``."""
        _check_pair(x, v, dim, "x and v")
        return lmath.proju(x, v, self._kk(x), dim=dim)

    def egrad2rgrad(self, x: torch.Tensor, g: torch.Tensor, *, dim: int = -1) -> torch.Tensor:
        """Riemannian gradient from the Euclidean gradient ``g`` at ``x``."""
        _check_pair(x, g, dim, "x and g")
        return lmath.egrad2rgrad(x, g, self._kk(x), dim=dim)

    def origin(
        self, *size: int, dtype: torch.dtype | None = None, device: torch.device | str | None = None, dim: int = -1
    ) -> torch.Tensor:
        r"""The origin :math:`(\sqrt{k}, 0, …, 0)` of the given shape (detached from ``k``)."""
        if len(size) == 1 and isinstance(size[0], (tuple, list, torch.Size)):
            size = tuple(size[0])
        if not size or size[dim] < 2:
            raise ValueError(f"origin needs a manifold dimension (dim={dim}) of size >= 2, got size {size}")
        return lmath.origin(*size, k=self.k.detach(), dtype=dtype or self.k.dtype,
                            device=device or self.k.device, dim=dim)

    def add_time(self, xs: torch.Tensor, *, dim: int = -1) -> torch.Tensor:
        r"""Lift space coordinates: :math:`(\sqrt{\|x_s\|^2+k}, x_s)`."""
        return lmath.add_time(xs, self._kk(xs), dim=dim)

    def centroid(
        self, x: torch.Tensor, weights: torch.Tensor | None = None, dim: int = -2, *, manifold_dim: int = -1,
        keepdim: bool = False,
    ) -> torch.Tensor:
        """Lorentzian centroid over ``dim`` (optionally weighted); see :func:`lorentzcv.geometry.math.centroid`."""
        _check_dim(x, manifold_dim)
        self._points(x, dim=manifold_dim)
        if weights is not None and weights.shape != x.shape[:manifold_dim % x.dim()] + x.shape[manifold_dim % x.dim() + 1:]:
            try:
                torch.broadcast_shapes(weights.unsqueeze(manifold_dim).shape, x.shape)
            except RuntimeError:
                raise ValueError(
                    f"weights must broadcast against x without its manifold dimension, got {tuple(weights.shape)} "
                    f"for x of shape {tuple(x.shape)}"
                ) from None
        return lmath.centroid(x, self._kk(x), weights=weights, reduce_dim=dim, dim=manifold_dim, keepdim=keepdim)

    # --- rescaling --------------------------------------------------------------------------------
    def rescale(self, x: torch.Tensor, *, dim: int = -1) -> torch.Tensor:
        """Maximum distance rescaling of points (``docs/method.md`` §2.2) with this manifold's constants."""
        _check_dim(x, dim)
        return rescale(x, self._kk(x), dim=dim, config=self.rescale_config)

    def rescale_tangent(self, v: torch.Tensor, *, dim: int = -1) -> torch.Tensor:
        """Maximum distance rescaling of a tangent vector at the origin (``docs/method.md`` §2.3)."""
        return rescale_euclid(v, self._kk(v), dim=dim, config=self.rescale_config)

    def max_distance(self, dtype: torch.dtype = torch.float32) -> float:
        """Radius ``m·min(1, √k)`` that :meth:`rescale` keeps points within, for ``dtype``."""
        from .rescale import max_distance

        return max_distance(dtype, self.rescale_config.r) * min(1.0, float(self.k.detach()) ** 0.5)


def named_manifolds(module: nn.Module) -> dict[str, Lorentz]:
    """Every distinct :class:`Lorentz` inside ``module`` by its qualified name (shared ones listed once).

    Example: ``{n: m.curvature.item() for n, m in named_manifolds(model).items()}`` reports the learned
    curvatures ``K = -1/k``.
    """
    return {name: m for name, m in module.named_modules() if isinstance(m, Lorentz)}
