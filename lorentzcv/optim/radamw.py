r"""Riemannian AdamW with centroid weight decay and curvature-aware steps (``spec/method.md`` §3.2, §4).

Curvature convention: ``k > 0`` (points satisfy :math:`\langle x,x\rangle_L=-k`, ``K = -1/k``).
"""

from __future__ import annotations

import torch
from torch.optim.adamw import adamw as _torch_adamw

from ..geometry import ManifoldParameter
from ..geometry import math as lmath
from .curvature import CurvatureAwareOptimizer

__all__ = ["RiemannianAdamW"]


def _scalar_dtype() -> torch.dtype:
    return torch.float64 if torch.get_default_dtype() == torch.float64 else torch.float32


class RiemannianAdamW(CurvatureAwareOptimizer):
    r"""AdamW on Euclidean parameters, Riemannian AdamW on manifold parameters, curvature-aware ``k`` steps.

    **Euclidean parameters** get exactly :class:`torch.optim.AdamW` (its functional kernel, ``foreach`` as in
    torch): :math:`p \leftarrow p(1-\eta\lambda)`, Adam moments, bias corrections.

    **Manifold parameters** (rows along the last dim are points of ``p.manifold``, curvature ``k``), per step
    with :math:`\lambda' = \eta\lambda` (``spec/method.md`` §3.2, Algorithm 2 of the paper):

    1. decay = weighted Lorentzian centroid toward the origin :math:`o=(\sqrt{k},0,…)`:
       :math:`\tilde x = \sqrt{k}\,\mu/\sqrt{|\langle\mu,\mu\rangle_L|}`,
       :math:`\mu = (1-\lambda')x + \lambda' o`;
    2. :math:`g = \operatorname{egrad2rgrad}(\tilde x, \nabla)`; the first moment is re-projected,
       :math:`m \leftarrow \operatorname{proju}(\tilde x, m)` (``design.md`` §4.6);
    3. :math:`m \leftarrow \beta_1 m + (1-\beta_1) g`,
       :math:`v \leftarrow \beta_2 v + (1-\beta_2)\langle g,g\rangle_L`
       (``v`` is one scalar per point, state shape ``(…, 1)``; ``amsgrad`` keeps its running maximum);
    4. :math:`u = (m/bc_1)/(\sqrt{v/bc_2}+\epsilon)`, :math:`x \leftarrow \exp_{\tilde x}(-\eta u)`,
       :math:`m \leftarrow P_{\tilde x\to x}(m)`, then stabilize
       :math:`m \leftarrow \operatorname{proju}(x, m)` (``expmap`` already ends with ``projx``).

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
        curvature_mode: ``"aware"`` (default, §4.2) or ``"naive"`` (curvature updated in its place in the
            group order like any parameter, clamped, nothing moved; for the ablation).
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

    def _manifold_step(self, group: dict, p: ManifoldParameter) -> None:
        state = self._state(group, p, scalar_v=True)
        k = p.manifold.k.detach()
        lr, wd, eps = group["lr"], group["weight_decay"], group["eps"]
        beta1, beta2 = group["betas"]
        grad = -p.grad if group["maximize"] else p.grad
        state["step"] += 1
        t = float(state["step"])
        exp_avg, exp_avg_sq = state["exp_avg"], state["exp_avg_sq"]

        x = p.detach()
        if wd != 0:
            lam = lr * wd
            mu = x * (1 - lam)
            mu.narrow(-1, 0, 1).add_(lam * lmath._k(k, x).sqrt())  # + λ'·o
            x = lmath.normalize(mu, k)
        rgrad = lmath.egrad2rgrad(x, grad, k)
        m = lmath.proju(x, exp_avg, k).mul_(beta1).add_(rgrad, alpha=1 - beta1)
        exp_avg_sq.mul_(beta2).add_(lmath.inner(rgrad, rgrad, keepdim=True).clamp_min_(0), alpha=1 - beta2)
        if group["amsgrad"]:
            v = torch.maximum(state["max_exp_avg_sq"], exp_avg_sq, out=state["max_exp_avg_sq"])
        else:
            v = exp_avg_sq
        bc1 = 1 - beta1**t
        bc2 = 1 - beta2**t
        denom = (v / bc2).sqrt_().add_(eps)
        direction = m / denom
        x_new = lmath.expmap(x, direction.mul_(-lr / bc1), k)
        m = lmath.transp(x, x_new, m, k)
        p.copy_(x_new)
        exp_avg.copy_(lmath.proju(x_new, m, k))
