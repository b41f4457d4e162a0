r"""Curvature-aware optimization (``docs/method.md`` §4, ``docs/design.md`` §4.4–4.5).

Learning the curvature naively (``k`` as one more parameter, geoopt-style) is unstable: once ``k`` changes,
the points, gradients and momenta of every manifold parameter still live on the *old* hyperboloid
:math:`\langle x,x\rangle_L = -k_{old}`. The curvature-aware scheme fixes the order of one step:

1. update all Euclidean and manifold parameters with the current ``k_old``;
2. update the curvatures (their own parameter group, flagged ``"curvature": True``) and clamp each to its
   manifold's ``bounds``;
3. move every manifold parameter whose ``k`` changed, together with its first moment, onto the new manifold:

   - ``"explog"`` (default, the paper's move): :math:`x \leftarrow \exp_0^{k_{new}}(\log_0^{k_{old}}(x))`
     (keeps ``dist0`` and the direction), the moment transported to the origin with ``k_old``
     (:math:`m_0 = P^{k_{old}}_{x\to o}(m)`, time component 0, curvature-agnostic) and back to the new point
     with ``k_new`` (:math:`m \leftarrow P^{k_{new}}_{o\to x}(m_0)`); this keeps :math:`\|m\|_L`.
   - ``"scale"``: :math:`x \leftarrow \sqrt{k_{new}/k_{old}}\,x`,
     :math:`m \leftarrow \sqrt{k_{new}/k_{old}}\,m` (the similarity
     :math:`\mathbb{H}_{k_{old}}\to\mathbb{H}_{k_{new}}` and its differential: keeps the rapidity
     :math:`d_0/\sqrt{k}`, scales distances and :math:`\|m\|_L` by :math:`\sqrt{k_{new}/k_{old}}`).

   Both start with :math:`x \leftarrow \operatorname{projx}_{k_{old}}(x)`, :math:`m \leftarrow
   \operatorname{proju}_{k_{old}}(x, m)` and end with ``projx`` at ``k_new`` (``"scale"`` also with ``proju``; the
   explog moment, transported in closed form, is tangent to rounding, and re-projecting it far from the origin
   would amplify rounding by :math:`\varepsilon\cosh^2 r`). The second moment is not moved.

   Both moves are capped: a point they would take beyond the resolvable radius (:class:`CurvatureAwareOptimizer`)
   is put on it, its moment transported there through the origin (:func:`cap_points`).
   Unlike the authors' code ([A]), the transported moment is written back into the optimizer state.

:class:`CurvatureAwareOptimizer` implements this orchestration once for
:class:`~lorentzcv.optim.RiemannianSGD` and :class:`~lorentzcv.optim.RiemannianAdamW`. ``curvature_mode``
selects it (:data:`CURVATURE_MODES`):

- ``"aware"`` (default): the scheme above.
- ``"naive"`` (the ablation baseline: what a curvature-unaware optimizer does): ``k`` is an ordinary parameter,
  stepped in its group's place in the same pass with that group's settings, **not** clamped to its bounds (only
  kept positive, at the dtype's smallest normal number, so that the geometry stays defined: a curvature-unaware
  optimizer knows no bounds, and a ``k <= 0`` would only turn every later step into NaN at once), and nothing is
  moved. The manifold steps use the current ``k`` as if every stored point were on its hyperboloid and never
  repair the stored coordinates: no cap onto the representable radius, no ``projx`` after the exponential map,
  no stabilising re-projection (RSGD's ``stabilize`` is ignored). A point stored on
  :math:`\mathbb{H}_{k_{old}}` therefore stays off :math:`\mathbb{H}_{k_{new}}`, and float rounding accumulates.
  The step length is still limited as in the other modes (at most the radius's rapidity, the geodesic cut where
  it leaves the ball): that is part of the step rule, not a repair of the stored point.
- ``"naive_repaired"``: ``k`` stepped in its place in the same pass and clamped to its bounds, nothing moved,
  but the manifold steps repair the points as in ``"aware"`` (cap, ``projx``, stabilisation, all at the current
  ``k``), so a point left on the old hyperboloid is put back on the new one by its next step. (This was
  ``"naive"`` before; it hides the failure the curvature-aware scheme guards against.)

Layers may repair stored points on use as well (e.g. a batch norm that recomputes β's time coordinate from the
current ``k``); the optimizer's ``"naive"`` mode does not change that.

Limitations: only manifold parameters held by *this* optimizer are moved; frozen ``ManifoldParameter``\ s and
non-parameter hyperbolic buffers on a manifold with learnable ``k`` are not (store such state as tangent
vectors at the origin, as the Lorentz batch norm does).
"""

from __future__ import annotations

import math
import warnings
from collections.abc import Sequence
from typing import Any

import torch

from ..geometry import Lorentz
from ..geometry.rescale import max_distance, max_rapidity_radius
from .fused import fused_step_supported, move_explog_
from .point_steps import CURVATURE_MOVES, cap_points, geodesic_step_limit, move_to_curvature, tangent_norm
from .stacked import stack_buckets, stack_rows, stacked_call, unstack_rows_into

__all__ = [
    "move_to_curvature", "CurvatureAwareOptimizer", "CURVATURE_MODES", "CURVATURE_MOVES", "manifold_of",
    "geodesic_step_limit", "cap_points", "tangent_norm",
]

CURVATURE_MODES = ("aware", "naive", "naive_repaired")


DEFAULT_BOUNDS = (0.05, 20.0)  # Lorentz's default; used for geoopt manifolds, which carry no bounds


def _geoopt_class(manifold: Any, *names: str) -> bool:
    """Whether ``manifold`` is (a subclass of) geoopt's class named one of ``names`` (no geoopt import)."""
    return any(c.__name__ in names and c.__module__.split(".")[0] == "geoopt" for c in type(manifold).__mro__)


def manifold_of(p: torch.Tensor) -> Any | None:
    """The Lorentz manifold a parameter lives on, or None for a Euclidean parameter.

    Detection is by duck typing, without importing geoopt: a tensor with a ``.manifold`` attribute is a manifold
    parameter (:class:`~lorentzcv.geometry.ManifoldParameter`, geoopt's ``ManifoldParameter``/``ManifoldTensor``).
    Supported manifolds are :class:`~lorentzcv.geometry.Lorentz` and geoopt's ``Lorentz`` (or a subclass, e.g.
    HCNN's ``CustomLorentz``), which uses the same convention (tensor ``k > 0``, ``<x,x>_L = -k``, time at index 0
    of the last dimension); geoopt's ``Euclidean`` means a plain parameter.

    Raises:
        ValueError: any other manifold (e.g. geoopt's ``PoincareBall`` or ``Stiefel``), which these optimizers
            would otherwise step as if it were Euclidean and move off its manifold.
    """
    man = getattr(p, "manifold", None)
    if man is None or isinstance(man, Lorentz):
        return man
    if _geoopt_class(man, "Lorentz") and isinstance(getattr(man, "k", None), torch.Tensor):
        return man
    if _geoopt_class(man, "Euclidean", "R"):
        return None
    cls = type(man)
    raise ValueError(
        f"a parameter of shape {tuple(p.shape)} lives on {cls.__module__}.{cls.__qualname__}, which the lorentzcv "
        "optimizers cannot step (supported: lorentzcv.Lorentz and geoopt.Lorentz manifolds); use geoopt's own "
        "optimizer for it or convert it to a lorentzcv ManifoldParameter on a Lorentz manifold"
    )


def _cap_r(manifold: Any) -> float:
    """``min(1, RescaleConfig.r)`` of the manifold (1 for manifolds without one, e.g. geoopt's)."""
    return min(1.0, float(getattr(getattr(manifold, "rescale_config", None), "r", 1.0)))



def _is_pair(b) -> bool:
    return isinstance(b, Sequence) and len(b) == 2 and all(isinstance(v, (int, float)) for v in b)


class CurvatureAwareOptimizer(torch.optim.Optimizer):
    r"""Base of the Riemannian optimizers: dispatch by type and the curvature-aware step (module docstring).

    Subclasses implement :meth:`_euclidean_step` (a torch functional optimizer on a list of plain tensors),
    :meth:`_manifold_step` (one ``ManifoldParameter``) and set :attr:`moment_key` (the state key of the first
    moment that is moved with its point on a curvature change).

    Parameter groups flagged ``"curvature": True`` hold curvature parameters (each manifold's ``k``). They may
    carry ``"bounds"``: one ``(k_min, k_max)`` pair for the whole group or a list of pairs aligned with
    ``params`` (``create_optimizer`` fills it from each ``Lorentz.bounds``). Without it, a ``k`` is clamped to
    the bounds of the manifold of a ``ManifoldParameter`` in this optimizer that lives on it, else only kept
    positive. ``curvature_mode`` (module docstring) is read per group: the curvature group's decides the order
    and the clamp, a manifold parameter's group whether its steps repair the stored point.

    **Representable radius.** Manifold parameters are kept within the rapidity
    ``cap = max_rapidity_radius(k, dtype, min(1, RescaleConfig.r))`` (``½·arccosh(1/(2ε)) ≈ 7.97`` in float32,
    where ``<x,x>_L = -k`` is still resolved to about ``k/4``): one step travels at most ``cap`` in rapidity and
    is cut where its geodesic leaves that ball (:func:`geodesic_step_limit`), and a point left beyond it is put
    on it (:func:`cap_points`). A longer step from a far point (through the origin to the far side) cannot be
    computed in the dtype: ``cosh(θ)·x + sinhc(θ)·u`` cancels to the new point with an error of
    :math:`\varepsilon\cosh\theta\cosh r_x` (relative to :math:`\sqrt{k}`), larger than the point itself for
    ``θ ≈ 2·cap``, and the moment transported to that point overflows within a few steps.
    """

    moment_key: str = "exp_avg"

    @staticmethod
    def _repairs(group: dict) -> bool:
        """Whether the manifold steps of ``group`` cap and re-project the stored points (all modes but naive)."""
        return group["curvature_mode"] != "naive"

    def __init__(self, params, defaults: dict) -> None:
        defaults = {"curvature": False, **defaults}
        super().__init__(params, defaults)
        curvatures = {id(manifold_of(p).k) for g in self.param_groups for p in g["params"]
                      if manifold_of(p) is not None}
        if any(id(p) in curvatures for g in self.param_groups if not g["curvature"] for p in g["params"]):
            warnings.warn(
                "the curvature k of a ManifoldParameter's manifold is in a group not flagged 'curvature': it is "
                "updated like any parameter (no clamping, no curvature-aware move); build the optimizer with "
                "create_optimizer() or pass {'params': [manifold.k], 'curvature': True}",
                stacklevel=3,
            )

    # --- groups -----------------------------------------------------------------------------------
    def add_param_group(self, param_group: dict) -> None:
        super().add_param_group(param_group)
        group = self.param_groups[-1]
        if group["curvature_mode"] not in CURVATURE_MODES:
            raise ValueError(
                f"curvature_mode must be one of {CURVATURE_MODES}, got {group['curvature_mode']!r}")
        if group["curvature_move"] not in CURVATURE_MOVES:
            raise ValueError(
                f"curvature_move must be one of {CURVATURE_MOVES}, got {group['curvature_move']!r}")
        manifolds = [manifold_of(p) for p in group["params"]]  # raises on unsupported (e.g. geoopt) manifolds
        if group["curvature"]:
            if any(man is not None for man in manifolds):
                raise ValueError(
                    "a group flagged 'curvature' must hold curvature parameters (Lorentz.k), not "
                    "ManifoldParameters; put manifold parameters in an ordinary group"
                )
            b = group.get("bounds")
            if b is not None and not _is_pair(b) and len(b) != len(group["params"]):
                raise ValueError(
                    "a curvature group's 'bounds' must be one (k_min, k_max) pair or one pair per parameter, "
                    f"got {b!r} for {len(group['params'])} parameters"
                )

    def _manifold_params(self) -> dict[int, list[torch.Tensor]]:
        """``id(p.manifold.k)`` → the manifold parameters of this optimizer living on that ``k``."""
        index: dict[int, list[torch.Tensor]] = {}
        for group in self.param_groups:
            for p in group["params"]:
                man = manifold_of(p)
                if man is not None:
                    index.setdefault(id(man.k), []).append(p)
        return index

    def _bounds(self, group: dict, i: int, k: torch.Tensor, index: dict) -> tuple[float, float]:
        b = group.get("bounds")
        if b is not None:
            return tuple(b) if _is_pair(b) else tuple(b[i])
        on_k = index.get(id(k))
        if on_k:
            return tuple(getattr(on_k[0].manifold, "bounds", DEFAULT_BOUNDS))
        return (torch.finfo(k.dtype).tiny, math.inf)

    def _clamp(self, group: dict, index: dict) -> None:
        if group["curvature_mode"] == "naive":  # a curvature-unaware optimizer: k only kept positive
            for k in group["params"]:
                k.clamp_(min=torch.finfo(k.dtype).tiny)
            return
        for i, k in enumerate(group["params"]):
            lo, hi = self._bounds(group, i, k, index)
            k.clamp_(lo, hi)

    # --- the step ---------------------------------------------------------------------------------
    def _euclidean_step(self, group: dict, params: list[torch.Tensor]) -> None:  # pragma: no cover
        raise NotImplementedError

    def _manifold_step(self, group: dict, p: torch.Tensor) -> None:  # pragma: no cover
        raise NotImplementedError

    @staticmethod
    def _cap(p: torch.Tensor, k: torch.Tensor) -> torch.Tensor:
        """The radius manifold parameter ``p`` is kept within, in rapidity units (class docstring)."""
        return max_rapidity_radius(k, p.dtype, _cap_r(p.manifold))

    def _step_group(self, group: dict, index: dict | None) -> None:
        euclid = [p for p in group["params"] if p.grad is not None and manifold_of(p) is None]
        if euclid:
            self._euclidean_step(group, euclid)
        if group["curvature"]:
            self._clamp(group, index if index is not None else self._manifold_params())
            return
        manifold_params = [p for p in group["params"] if p.grad is not None and manifold_of(p) is not None]
        if any(p.grad.is_sparse for p in manifold_params):
            raise RuntimeError("sparse gradients are not supported on manifold parameters")
        # points of equal size on one manifold are stepped as one stacked tensor (lorentzcv.optim.stacked)
        for bucket in stack_buckets(manifold_params, lambda p: (id(p.manifold.k), _cap_r(p.manifold))):
            if len(bucket) > 1 and all(p.is_contiguous() and p.grad.is_contiguous() for p in bucket) and \
                    stacked_call(bucket, self.state, lambda proxy: self._manifold_step(group, proxy)):
                continue
            for p in bucket:
                self._manifold_step(group, p)

    @torch.no_grad()
    def step(self, closure=None):
        """Perform one optimization step (curvatures last, then the curvature move).

        Args:
            closure: optional callable that re-evaluates the model and returns the loss.
        """
        loss = None
        if closure is not None:
            with torch.enable_grad():
                loss = closure()
        deferred = []
        for group in self.param_groups:
            if group["curvature"] and group["curvature_mode"] == "aware":
                deferred.append(group)
            else:
                self._step_group(group, None)
        if deferred:
            index = self._manifold_params()
            old = [(k, k.detach().clone(), g["curvature_move"]) for g in deferred for k in g["params"]
                   if k.grad is not None]
            for group in deferred:
                self._step_group(group, index)
            self._move(old, index)
        return loss

    def _move(self, old: list, index: dict) -> None:
        for k, k_old, variant in old:
            on_k = index.get(id(k))
            if not on_k:
                continue
            # the fused move checks an unchanged k on the device (no host sync); the eager one is skipped here
            fused = variant == "explog" and all(fused_step_supported(p.detach()) for p in on_k)
            if not fused and torch.equal(k, k_old):
                continue
            k_new = k.detach()
            for bucket in stack_buckets(on_k, lambda p: _cap_r(p.manifold)):
                moments = [self.state[p].get(self.moment_key) if p in self.state else None for p in bucket]
                r = _cap_r(bucket[0].manifold)
                has_m = [m is not None for m in moments]
                if len(bucket) > 1 and all(has_m) == any(has_m):
                    # all or none with a moment: one move of the stacked points (lorentzcv.optim.stacked)
                    x_new, m_new = self._move_points(stack_rows(bucket), stack_rows(moments) if has_m[0] else None,
                                                     k_old, k_new, variant, r, fused)
                    unstack_rows_into([p.detach() for p in bucket], x_new)
                    if has_m[0]:
                        unstack_rows_into(moments, m_new)
                    continue
                for p, m in zip(bucket, moments):
                    x = p.detach()
                    x_new, m_new = self._move_points(x, m, k_old, k_new, variant, r, fused)
                    if x_new is not x:
                        p.copy_(x_new)
                    if m is not None and m_new is not m:
                        m.copy_(m_new)

    @staticmethod
    def _move_points(x: torch.Tensor, m: torch.Tensor | None, k_old: torch.Tensor, k_new: torch.Tensor,
                     variant: str, r: float, unchecked: bool) -> tuple[torch.Tensor, torch.Tensor | None]:
        """:func:`move_to_curvature` of points ``x`` and moments ``m``: in place by the fused kernel where it
        applies (explog, :mod:`lorentzcv.optim.fused`; ``x`` and ``m`` are returned), else out of place.
        ``unchecked``: the caller has not skipped an unchanged ``k`` (it expected the fused kernel to)."""
        if variant == "explog" and fused_step_supported(x, m):
            move_explog_(x, m, k_old, k_new, mdist=max_distance(x.dtype, r))
            return x, m
        if unchecked and torch.equal(k_old, k_new):  # the points are fused-ready but their moments are not
            return x, m
        return move_to_curvature(x, k_old, k_new, m, variant=variant, r=r)
