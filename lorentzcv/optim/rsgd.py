r"""Riemannian SGD with momentum and curvature-aware steps (``docs/method.md`` §3.3, §4).

Curvature convention: ``k > 0`` (points satisfy :math:`\langle x,x\rangle_L=-k`, ``K = -1/k``).
"""

from __future__ import annotations

import torch
from torch.optim.sgd import sgd as _torch_sgd

from ..geometry.rescale import max_distance
from .curvature import CurvatureAwareOptimizer, _cap_r
from .fused import fused_step_supported, rsgd_step_
from .point_steps import rsgd_point_step

__all__ = ["RiemannianSGD"]


class RiemannianSGD(CurvatureAwareOptimizer):
    r"""SGD on Euclidean parameters, Riemannian SGD on manifold parameters, curvature-aware ``k`` steps.

    **Euclidean parameters** get exactly :class:`torch.optim.SGD` (its functional kernel):
    :math:`g \leftarrow \nabla + \lambda p`; :math:`b \leftarrow g` on the first step, then
    :math:`b \leftarrow \mu b + (1-\delta) g`; :math:`d = g + \mu b` (nesterov) or :math:`b`;
    :math:`p \leftarrow p - \eta d`.

    **Manifold parameters** (curvature ``k`` of ``p.manifold``; ``docs/method.md`` §3.3, geoopt's RSGD with
    torch's buffer semantics): :math:`g = \operatorname{egrad2rgrad}(x, \nabla + \lambda x)` (coupled ambient
    L2), the same buffer/nesterov rule, :math:`x \leftarrow \exp_x(-\eta d)`,
    :math:`b \leftarrow P_{x\to x_{new}}(b)`. Every ``stabilize`` steps:
    :math:`x \leftarrow \operatorname{projx}(x)`, :math:`b \leftarrow \operatorname{proju}(x, b)`.
    A step never takes a point beyond the representable radius :math:`m_k = m\min(1,\sqrt{k})` of maximum
    distance rescaling for the parameter's dtype: it travels at most that radius (rapidity
    :math:`m_k/\sqrt{k}`), the geodesic is cut where it leaves that ball and a point left beyond it is put on it
    (as in :class:`RiemannianAdamW`; see :class:`~lorentzcv.optim.CurvatureAwareOptimizer`).

    **Curvatures** (groups with ``"curvature": True``) get SGD with their group's settings after all other
    parameters, are clamped to their bounds, and manifold parameters on a changed ``k`` are moved with their
    momentum buffer (:mod:`lorentzcv.optim.curvature`).

    Args:
        params: parameters or parameter groups (dicts; extra keys such as ``"name"`` are kept).
        lr: learning rate :math:`\eta`.
        momentum: :math:`\mu`.
        dampening: :math:`\delta`.
        weight_decay: :math:`\lambda` (L2, coupled).
        nesterov: Nesterov momentum (needs ``momentum > 0`` and ``dampening = 0``).
        maximize: maximize the objective instead of minimizing.
        foreach: torch's ``foreach`` switch for the Euclidean kernel (None: torch's default for the device).
        stabilize: project manifold parameters (and buffers) back every ``stabilize`` steps (1 = every step,
            None = never).
        curvature_mode: ``"aware"`` (default), ``"naive"`` (the ablation baseline: ``k`` an ordinary parameter,
            only kept positive, nothing moved, stored points never capped or re-projected, ``stabilize``
            ignored) or ``"naive_repaired"`` (``k`` clamped, nothing moved, points re-projected by their steps);
            see :mod:`lorentzcv.optim.curvature`.
        curvature_move: ``"explog"`` (default) or ``"scale"``.
    """

    moment_key = "momentum_buffer"

    def __init__(
        self, params, lr: float | torch.Tensor = 1e-3, momentum: float = 0.0, dampening: float = 0.0,
        weight_decay: float = 0.0, nesterov: bool = False, *, maximize: bool = False,
        foreach: bool | None = None, stabilize: int | None = 1, curvature_mode: str = "aware",
        curvature_move: str = "explog",
    ) -> None:
        if not 0.0 <= lr:
            raise ValueError(f"Invalid learning rate: {lr}")
        if momentum < 0.0:
            raise ValueError(f"Invalid momentum value: {momentum}")
        if weight_decay < 0.0:
            raise ValueError(f"Invalid weight_decay value: {weight_decay}")
        if nesterov and (momentum <= 0 or dampening != 0):
            raise ValueError("Nesterov momentum requires a momentum and zero dampening")
        if stabilize is not None and (int(stabilize) != stabilize or stabilize < 1):
            raise ValueError(f"stabilize must be a positive integer or None, got {stabilize!r}")
        defaults = dict(lr=lr, momentum=momentum, dampening=dampening, weight_decay=weight_decay,
                        nesterov=nesterov, maximize=maximize, foreach=foreach, stabilize=stabilize,
                        curvature_mode=curvature_mode, curvature_move=curvature_move)
        super().__init__(params, defaults)

    def _euclidean_step(self, group: dict, params: list[torch.Tensor]) -> None:
        grads = [p.grad for p in params]
        use_momentum = group["momentum"] != 0
        bufs = [self.state[p].get("momentum_buffer") for p in params] if use_momentum else []
        _torch_sgd(
            params, grads, bufs, has_sparse_grad=any(g.is_sparse for g in grads), foreach=group["foreach"],
            weight_decay=group["weight_decay"], momentum=group["momentum"], lr=group["lr"],
            dampening=group["dampening"], nesterov=group["nesterov"], maximize=group["maximize"],
        )
        if use_momentum:
            for p, buf in zip(params, bufs):
                self.state[p]["momentum_buffer"] = buf

    def _manifold_step(self, group: dict, p: torch.Tensor) -> None:
        k = p.manifold.k.detach()
        x = p.detach()
        state = self.state[p]
        mom = group["momentum"]
        buf = state.get("momentum_buffer") if mom != 0 else None
        state["step"] = state.get("step", 0) + 1
        stab = group["stabilize"]
        kw = dict(lr=group["lr"], weight_decay=group["weight_decay"], momentum=mom, dampening=group["dampening"],
                  nesterov=group["nesterov"], maximize=group["maximize"],
                  repair=self._repairs(group),  # False in curvature_mode="naive": the stored point used as it is
                  stabilize=stab is not None and state["step"] % stab == 0)
        if not isinstance(kw["lr"], torch.Tensor) and fused_step_supported(x, p.grad, buf):
            first = mom != 0 and buf is None
            if first:
                buf = state["momentum_buffer"] = torch.empty_like(x)
            rsgd_step_(x, p.grad, buf, k, first=first, mdist=max_distance(x.dtype, _cap_r(p.manifold)), **kw)
            return
        x_new, buf_new = rsgd_point_step(x, p.grad, buf, k, self._cap(p, k), **kw)
        p.copy_(x_new)
        if buf_new is not None:
            if buf is None:
                state["momentum_buffer"] = buf_new
            else:
                buf.copy_(buf_new)
