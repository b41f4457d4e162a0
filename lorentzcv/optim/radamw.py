r"""Riemannian AdamW with centroid weight decay and curvature-aware steps (``docs/method.md`` §3.2, §4).

Curvature convention: ``k > 0`` (points satisfy :math:`\langle x,x\rangle_L=-k`, ``K = -1/k``).
"""

from __future__ import annotations

import torch
from torch.optim.adamw import adamw as _torch_adamw

from ..geometry import math as lmath
from ..geometry.rescale import max_distance
from .curvature import CurvatureAwareOptimizer, _cap_r
from .fused import fused_step_supported, radamw_step_
from .point_steps import radamw_point_step_

__all__ = ["RiemannianAdamW"]


def _scalar_dtype() -> torch.dtype:
    return torch.float64 if torch.get_default_dtype() == torch.float64 else torch.float32


def _per_point(s: torch.Tensor, x: torch.Tensor) -> bool:
    """Whether ``s`` holds one contiguous entry per point of ``x`` (a second moment the fused step can index)."""
    return s.dtype == x.dtype and s.device == x.device and s.is_contiguous() and s.numel() * x.size(-1) == x.numel()


class RiemannianAdamW(CurvatureAwareOptimizer):
    r"""AdamW on Euclidean parameters, Riemannian AdamW on manifold parameters, curvature-aware ``k`` steps.

    **Euclidean parameters** get exactly :class:`torch.optim.AdamW` (its functional kernel, ``foreach`` as in
    torch): :math:`p \leftarrow p(1-\eta\lambda)`, Adam moments, bias corrections.

    **Manifold parameters** (rows along the last dim are points of ``p.manifold``, curvature ``k``), per step
    with :math:`\lambda' = \eta\lambda` (``docs/method.md`` §3.2, Algorithm 2 of the paper):

    1. decay = weighted Lorentzian centroid toward the origin :math:`o=(\sqrt{k},0,…)`:
       :math:`\tilde x = \sqrt{k}\,\mu/\sqrt{|\langle\mu,\mu\rangle_L|}`,
       :math:`\mu = (1-\lambda')x + \lambda' o`;
    2. :math:`g = \operatorname{egrad2rgrad}(\tilde x, \nabla)`; the first moment is re-projected,
       :math:`m \leftarrow \operatorname{proju}(\tilde x, m)` (``docs/design.md`` §4.6);
    3. :math:`m \leftarrow \beta_1 m + (1-\beta_1) g`,
       :math:`v \leftarrow \beta_2 v + (1-\beta_2)\langle g,g\rangle_L`
       (``v`` is one scalar per point, state shape ``(…, 1)``; ``amsgrad`` keeps its running maximum);
    4. :math:`u = (m/bc_1)/(\sqrt{v/bc_2}+\epsilon)`, :math:`x \leftarrow \exp_{\tilde x}(-\eta u)`,
       :math:`m \leftarrow P_{\tilde x\to x}(m)`, then stabilize
       :math:`m \leftarrow \operatorname{proju}(x, m)` (``expmap`` already ends with ``projx``).

    **Representable radius.** A step never takes a point beyond the radius :math:`m_k = m\min(1,\sqrt{k})` of
    maximum distance rescaling for the parameter's dtype (float32: ``m = 9.56``): one step travels at most that
    radius, the geodesic is cut where it leaves that ball (:func:`~lorentzcv.optim.geodesic_step_limit`), and a
    point left beyond it by rounding or by its initial value is put on it
    (:func:`~lorentzcv.geometry.clip_to_max_distance`). Beyond that radius the dtype no longer resolves
    ``<x,x>_L = -k`` and the step diverges (:class:`~lorentzcv.optim.CurvatureAwareOptimizer`).

    **Curvatures** (groups with ``"curvature": True``, see :func:`~lorentzcv.optim.create_optimizer`) get
    AdamW with *their group's* lr/weight decay, after all other parameters, are clamped to their bounds, and
    every manifold parameter on a changed ``k`` is moved with its first moment
    (:mod:`lorentzcv.optim.curvature`).

    Args:
        params: parameters or parameter groups (dicts; extra keys such as ``"name"`` are kept).
        lr: learning rate :math:`\eta`.
        betas: :math:`(\beta_1, \beta_2)`.
        eps: added to the denominator.
        weight_decay: :math:`\lambda` (decoupled; torch's AdamW default ``1e-2``).
        amsgrad: use the running maximum of the second moment.
        maximize: maximize the objective instead of minimizing.
        foreach: torch's ``foreach`` switch for the Euclidean kernel (None: torch's default for the device).
        curvature_mode: ``"aware"`` (default, §4.2), ``"naive"`` (the ablation baseline: ``k`` an ordinary
            parameter updated in its place in the group order, only kept positive, nothing moved, stored points
            never capped or re-projected) or ``"naive_repaired"`` (``k`` clamped, nothing moved, points
            re-projected by their steps); see :mod:`lorentzcv.optim.curvature`.
        curvature_move: ``"explog"`` (default) or ``"scale"``.

    Example:
        >>> opt = RiemannianAdamW([{"params": model_params}, {"params": [manifold.k], "curvature": True,
        ...                         "lr": 1e-4, "weight_decay": 0.0}], lr=1e-3)
    """

    moment_key = "exp_avg"

    def __init__(
        self, params, lr: float | torch.Tensor = 1e-3, betas: tuple[float, float] = (0.9, 0.999),
        eps: float = 1e-8, weight_decay: float = 1e-2, amsgrad: bool = False, *, maximize: bool = False,
        foreach: bool | None = None, curvature_mode: str = "aware", curvature_move: str = "explog",
    ) -> None:
        if not 0.0 <= lr:
            raise ValueError(f"Invalid learning rate: {lr}")
        if not 0.0 <= eps:
            raise ValueError(f"Invalid epsilon value: {eps}")
        if not 0.0 <= betas[0] < 1.0 or not 0.0 <= betas[1] < 1.0:
            raise ValueError(f"Invalid beta parameters: {betas}; each must be in [0, 1)")
        if not 0.0 <= weight_decay:
            raise ValueError(f"Invalid weight_decay value: {weight_decay}")
        defaults = dict(lr=lr, betas=betas, eps=eps, weight_decay=weight_decay, amsgrad=amsgrad,
                        maximize=maximize, foreach=foreach, curvature_mode=curvature_mode,
                        curvature_move=curvature_move)
        super().__init__(params, defaults)

    def _state(self, group: dict, p: torch.Tensor, scalar_v: bool) -> dict:
        state = self.state[p]
        if len(state) == 0:
            state["step"] = torch.tensor(0.0, dtype=_scalar_dtype())
            state["exp_avg"] = torch.zeros_like(p, memory_format=torch.preserve_format)
            vshape = (*p.shape[:-1], 1) if scalar_v else p.shape
            state["exp_avg_sq"] = p.new_zeros(vshape) if scalar_v else torch.zeros_like(
                p, memory_format=torch.preserve_format)
            if group["amsgrad"]:
                state["max_exp_avg_sq"] = torch.zeros_like(state["exp_avg_sq"])
        elif group["amsgrad"] and "max_exp_avg_sq" not in state:
            state["max_exp_avg_sq"] = torch.zeros_like(state["exp_avg_sq"])
        return state

    def _euclidean_step(self, group: dict, params: list[torch.Tensor]) -> None:
        grads, exp_avgs, exp_avg_sqs, max_exp_avg_sqs, steps = [], [], [], [], []
        for p in params:
            if p.grad.is_sparse:
                raise RuntimeError("RiemannianAdamW does not support sparse gradients")
            state = self._state(group, p, scalar_v=False)
            grads.append(p.grad)
            exp_avgs.append(state["exp_avg"])
            exp_avg_sqs.append(state["exp_avg_sq"])
            if group["amsgrad"]:
                max_exp_avg_sqs.append(state["max_exp_avg_sq"])
            steps.append(state["step"])
        beta1, beta2 = group["betas"]
        _torch_adamw(
            params, grads, exp_avgs, exp_avg_sqs, max_exp_avg_sqs, steps, foreach=group["foreach"],
            has_complex=any(torch.is_complex(p) for p in params), amsgrad=group["amsgrad"], beta1=beta1,
            beta2=beta2, lr=group["lr"], weight_decay=group["weight_decay"], eps=group["eps"],
            maximize=group["maximize"],
        )

    def _manifold_step(self, group: dict, p: torch.Tensor) -> None:
        """Steps 1–4 of the class docstring (:func:`~lorentzcv.optim.point_steps.radamw_point_step_`; one fused
        kernel on CUDA, :mod:`lorentzcv.optim.fused`)."""
        state = self._state(group, p, scalar_v=True)
        x = p.detach()
        k = p.manifold.k.detach()
        state["step"] += 1
        beta1, beta2 = group["betas"]
        vmax = state["max_exp_avg_sq"] if group["amsgrad"] else None
        kw = dict(lr=group["lr"], weight_decay=group["weight_decay"], beta1=beta1, beta2=beta2, eps=group["eps"],
                  step=float(state["step"]), maximize=group["maximize"], repair=self._repairs(group))
        m, v = state["exp_avg"], state["exp_avg_sq"]
        if not isinstance(kw["lr"], torch.Tensor) and fused_step_supported(x, p.grad, m) and \
                all(_per_point(s, x) for s in (v, vmax) if s is not None):
            radamw_step_(x, p.grad, m, v, vmax, k, mdist=max_distance(x.dtype, _cap_r(p.manifold)), **kw)
            return
        p.copy_(radamw_point_step_(x, p.grad, m, v, vmax, lmath._k(k, x), self._cap(p, k), **kw))
