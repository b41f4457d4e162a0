r"""Riemannian AdamW with centroid weight decay and curvature-aware steps (``docs/method.md`` §3.2, §4).

Curvature convention: ``k > 0`` (points satisfy :math:`\langle x,x\rangle_L=-k`, ``K = -1/k``).
"""

from __future__ import annotations

import torch
from torch.optim.adamw import adamw as _torch_adamw

from ..geometry import math as lmath
from .curvature import CurvatureAwareOptimizer, cap_points, geodesic_step_limit, tangent_norm

__all__ = ["RiemannianAdamW"]


def _scalar_dtype() -> torch.dtype:
    return torch.float64 if torch.get_default_dtype() == torch.float64 else torch.float32


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
        """Steps 1–4 of the class docstring, written with per-point scalars so that each full-size tensor
        is touched by few kernels (the maps are the closed forms of ``lmath.normalize/egrad2rgrad/proju/
        expmap/transp``; ``tests/optim`` checks them against those kernels)."""
        state = self._state(group, p, scalar_v=True)
        x = p.detach()
        k = lmath._k(p.manifold.k.detach(), x)
        sk = k.sqrt()
        lr, wd, eps = group["lr"], group["weight_decay"], group["eps"]
        beta1, beta2 = group["betas"]
        g = -p.grad if group["maximize"] else p.grad
        state["step"] += 1
        t = float(state["step"])
        m, v = state["exp_avg"], state["exp_avg_sq"]
        # 0. a point beyond the representable radius (initial value, …) is put on it first; not in
        #    curvature_mode="naive", which uses the stored point as it is (the closed forms below then take it
        #    for a point of the current hyperboloid, as a curvature-unaware optimizer does)
        repair = self._repairs(group)
        cap = self._cap(p, k)
        if repair:
            x, m_c = cap_points(x, k, cap, m)
            m.copy_(m_c)

        # 1. decay: x̃ = normalize(μ), μ = (1-λ')x + λ'o; on the manifold <μ,μ>_L = -(1-λ')²k - 2λ'(1-λ')√k x_0 - λ'²k
        if wd != 0:
            lam = lr * wd
            x0 = x[..., :1]
            c = sk / ((1 - lam) ** 2 * k + 2 * lam * (1 - lam) * sk * x0 + lam**2 * k).sqrt()
            time_ = c * ((1 - lam) * x0 + lam * sk)
            x = x * (c * (1 - lam))
            x[..., :1] = time_
        # 2. g_R = proju(x̃, Jg), J = diag(-1, 1, …), never materialised: <x̃, Jg>_L = x̃·g and
        #    <g_R, g_R>_L = <Jg, Jg>_L + <x̃, Jg>_L² / k = ‖g‖² - 2 g_0² + (x̃·g)² / k
        g0 = g[..., :1]
        xg = (x * g).sum(-1, keepdim=True)
        gr_sq = (g * g).sum(-1, keepdim=True) - 2 * g0 * g0 + xg * xg / k
        # 3. m <- β1·proju(x̃, m) + (1-β1)·g_R = proju(x̃, β1·m + (1-β1)·Jg)   (proju is linear)
        m.mul_(beta1).add_(g, alpha=1 - beta1)
        m[..., :1].sub_(g0, alpha=2 * (1 - beta1))
        m.addcmul_(x, lmath.inner(x, m, keepdim=True) / k)
        v.mul_(beta2).add_(gr_sq.clamp_min_(0), alpha=1 - beta2)
        if group["amsgrad"]:
            v = torch.maximum(state["max_exp_avg_sq"], v, out=state["max_exp_avg_sq"])
        bc1 = 1 - beta1**t
        bc2 = 1 - beta2**t
        step = (lr / bc1) / (v / bc2).sqrt_().add_(eps)  # (…, 1): the update is u = -step·m
        # 4. x_new = exp_x̃(u) = cosh(θ)x̃ + sinhc(θ)u, θ = ‖u‖_L/√k, then projx; θ is clamped to `cap`, to the part
        #    of the geodesic inside the representable ball (and to max_rapidity, as in lmath.expmap)
        mn = tangent_norm(x, m, k)  # ‖m‖_L read at the origin (accurate far from it, unlike sqrt<m,m>_L)
        mm = mn * mn
        theta = step * mn / sk
        limit = geodesic_step_limit(x[..., :1], -m[..., :1], mn, k, cap)  # u = -step·m
        theta_c = torch.minimum(theta, torch.minimum(limit, cap)).clamp_max_(lmath.max_rapidity(x.dtype))
        sh = torch.where(theta > theta_c, torch.sinh(theta_c) / theta.clamp_min(torch.finfo(theta.dtype).tiny),
                         lmath.sinhc(theta_c))
        ch = torch.cosh(theta_c)
        b = -step * sh  # x_new = ch·x̃ + b·m
        x_new = torch.addcmul(x * ch, m, b)
        if repair:
            xs = x_new[..., 1:]
            x_new[..., :1] = ((xs * xs).sum(-1, keepdim=True) + k).sqrt()
        #    m <- P_{x̃→x_new}(m) = m + <x_new,m>_L / (k - <x̃,x_new>_L)·(x̃ + x_new), along the geodesic
        #    <x_new,m>_L = b<m,m>_L and <x̃,x_new>_L = -k·cosh(θ) since <x̃,m>_L = 0
        coef = b * mm / (k * (1 + ch))
        m.addcmul_(x, coef).addcmul_(x_new, coef)
        if not repair:
            p.copy_(x_new)
            return
        x_new, m_new = cap_points(x_new, k, cap, m)  # rounding may leave a point just beyond the radius
        m.copy_(m_new)
        p.copy_(x_new)
        # stabilize: m <- proju(x, m)  (x is on the manifold: its time was just recomputed from space)
        m.addcmul_(x_new, lmath.inner(x_new, m, keepdim=True) / k)
