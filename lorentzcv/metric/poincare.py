r"""The Poincaré ball as HIER uses it (``docs/method.md`` §7.1): exp0, projection, distances, ``ToPoincare``.

Convention: HIER's ``c > 0`` is the curvature *magnitude*; the ball :math:`\{\|x\| < 1/\sqrt{c}\}` has sectional
curvature :math:`K = -c`, i.e. the Lorentz curvature parameter ``k = 1/c`` (HIER's ``c = 0.1`` is ``k = 10``).
The metric is :math:`\lambda_x^2\,\|\cdot\|^2` with :math:`\lambda_x = 2/(1 - c\|x\|^2)`, so

.. math::

    d_c(x, y) = \frac{2}{\sqrt{c}}\operatorname{artanh}\big(\sqrt{c}\,\|(-x)\oplus_c y\|\big), \qquad
    d_c(0, \exp_0^c(u)) = 2\|u\|,

and :func:`lorentzcv.geometry.math.to_poincare` with ``k = 1/c`` is an isometry from the Lorentz model onto
this ball. These are the auxiliary ops of the HIER baseline; the library's own geometry is the Lorentz model.
"""

from __future__ import annotations

import math

import torch
from torch import nn

from ..geometry import math as lmath
from ..geometry.precision import no_autocast, upcast

__all__ = ["poincare_expmap0", "poincare_project", "poincare_dist", "poincare_dist_matrix", "ToPoincare"]


def poincare_expmap0(u: torch.Tensor, c: float) -> torch.Tensor:
    r"""HIER's ``expmap0``: :math:`\tanh(\sqrt{c}\|u\|)\,u/(\sqrt{c}\|u\|)` (smooth at ``u = 0``), shape kept."""
    sc = math.sqrt(c)
    n = lmath._safe_norm(u, -1)
    return lmath.tanhc(sc * n) * u


def poincare_project(x: torch.Tensor, c: float, eps: float = 1e-3) -> torch.Tensor:
    r"""Cap the norm at :math:`(1-\varepsilon)/\sqrt{c}` (HIER's ``project``, ``eps = 1e-3``)."""
    maxnorm = (1 - eps) / math.sqrt(c)
    n = lmath._safe_norm(x, -1)
    return torch.where(n > maxnorm, x / n * maxnorm, x)


def _artanh_clamped(z: torch.Tensor) -> torch.Tensor:
    return torch.atanh(z.clamp(0, 1 - 4 * torch.finfo(z.dtype).eps))


def poincare_dist(x: torch.Tensor, y: torch.Tensor, c: float) -> torch.Tensor:
    r"""Row-wise geodesic distance :math:`d_c(x, y)` (broadcasting over leading dims, last dim reduced).

    Uses the closed form :math:`\|(-x)\oplus_c y\|^2 = \|x-y\|^2 / (1 - 2c\langle x,y\rangle + c^2\|x\|^2\|y\|^2)`.
    """
    sc = math.sqrt(c)
    diff2 = ((x - y) ** 2).sum(-1)
    xy = (x * y).sum(-1)
    den = 1 - 2 * c * xy + c * c * (x * x).sum(-1) * (y * y).sum(-1)
    r = (diff2.clamp_min(torch.finfo(x.dtype).tiny) / den.clamp_min(torch.finfo(x.dtype).tiny)).sqrt()
    return 2 / sc * _artanh_clamped(sc * r)


def _sq_mobius_ratio(x: torch.Tensor, y: torch.Tensor, c: float) -> torch.Tensor:
    r""":math:`c\|(-x)\oplus_c y\|^2` for all pairs, ``(N, M)``, from one Gram matrix."""
    x2 = (x * x).sum(-1, keepdim=True)
    y2 = (y * y).sum(-1, keepdim=True).transpose(0, 1)
    xy = x @ y.transpose(0, 1)
    diff2 = (x2 + y2 - 2 * xy).clamp_min(0)
    den = (1 - 2 * c * xy + (c * c) * x2 * y2).clamp_min(torch.finfo(x.dtype).tiny)
    return c * diff2 / den


def poincare_dist_matrix(x: torch.Tensor, y: torch.Tensor, c: float) -> torch.Tensor:
    r"""All-pairs distances :math:`d_c(x_i, y_j)`, shape ``(N, M)``, for ``x`` ``(N, D)`` and ``y`` ``(M, D)``.

    One matmul (no ``N×M×D`` intermediate, unlike HIER's batched Möbius addition); computed in the dtype of
    the inputs (callers upcast). ``tiny`` clamps keep the gradient finite at coincident points.
    """
    z = _sq_mobius_ratio(x, y, c)
    return 2 / math.sqrt(c) * _artanh_clamped(z.clamp_min(torch.finfo(z.dtype).tiny).sqrt())


class _RiemannianGradient(torch.autograd.Function):
    """Identity forward; backward scales the gradient by :math:`(1 - c\\|x\\|^2)^2/4` (HIER, hyptorch)."""

    @staticmethod
    def forward(ctx, x: torch.Tensor, c: float) -> torch.Tensor:  # type: ignore[override]
        ctx.save_for_backward(x)
        ctx.c = c
        return x.view_as(x)

    @staticmethod
    def backward(ctx, grad: torch.Tensor):  # type: ignore[override]
        (x,) = ctx.saved_tensors
        scale = (1 - ctx.c * (x * x).sum(-1, keepdim=True)) ** 2 / 4
        return grad * scale, None


class ToPoincare(nn.Module):
    r"""HIER's map from Euclidean vectors to the Poincaré ball of curvature ``-c`` (``docs/method.md`` §7.1).

    .. math::

        x \leftarrow \min\Big(1, \frac{r}{\|x\| + 10^{-5}}\Big)\,x, \qquad
        z = \operatorname{proj}\big(\exp_0^c(x)\big),

    where ``proj`` caps :math:`\|z\| \le (1-10^{-3})/\sqrt{c}`. With ``riemannian=True`` the backward pass
    multiplies the gradient by :math:`(1 - c\|z\|^2)^2/4` (the inverse of the conformal factor squared), as
    hyptorch's ``RiemannianGradient``. Since :math:`d_c(0, z) = 2\|x\|`, ``clip_r = 2.3`` bounds distances to
    the origin by 4.6. Runs as a float32 island under autocast.

    Args:
        c: curvature magnitude (``K = -c``, Lorentz ``k = 1/c``); HIER uses 0.1.
        clip_r: feature clipping radius (``None``: no clipping); HIER uses 2.3.
        riemannian: rescale gradients as above.

    Shapes: ``(..., D) -> (..., D)``.
    """

    def __init__(self, c: float = 0.1, clip_r: float | None = 2.3, riemannian: bool = True) -> None:
        super().__init__()
        if not c > 0:
            raise ValueError(f"ToPoincare needs a curvature magnitude c > 0 (K = -c), got c={c}")
        if clip_r is not None and not clip_r > 0:
            raise ValueError(f"clip_r must be positive or None, got {clip_r}")
        self.c = float(c)
        self.clip_r = None if clip_r is None else float(clip_r)
        self.riemannian = riemannian

    def extra_repr(self) -> str:
        return f"c={self.c}, clip_r={self.clip_r}, riemannian={self.riemannian}"

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        with no_autocast(x):
            x = upcast(x)
            if self.clip_r is not None:
                n = x.norm(dim=-1, keepdim=True) + 1e-5
                x = x * torch.clamp(self.clip_r / n, max=1.0)
            z = poincare_project(poincare_expmap0(x, self.c), self.c)
            if self.riemannian:
                z = _RiemannianGradient.apply(z, self.c)
            return z
