r"""The manifold step and the curvature move of the Riemannian optimizers as single fused kernels.

A Riemannian SGD step of a stack of points (:mod:`lorentzcv.optim.stacked`) is a chain of some 130 small tensor
ops (the cap onto the representable radius, ``egrad2rgrad``, momentum, the step length limit, the exponential
map, the transport, the re-projection, the cap again), and the explog curvature move some 40: on a GPU each op is
one kernel launch. :func:`rsgd_step_`, :func:`radamw_step_` and :func:`move_explog_` run the same per-point math
(:func:`~lorentzcv.optim.point_steps.rsgd_point_step`, :func:`~lorentzcv.optim.point_steps.radamw_point_step_`,
:func:`~lorentzcv.optim.point_steps.move_to_curvature`)
as ``torch.library`` custom ops that update the point (and its moment) in place: one Triton kernel on CUDA
(:mod:`lorentzcv.kernels._optim_triton`, one program per point), the eager math elsewhere. Which path runs
follows :func:`lorentzcv.kernels.use_fused` (CUDA by default; ``lorentzcv.kernels.backend("eager")`` turns it
off); :func:`fused_step_supported` says for which tensors (float32, contiguous, points of at most
:data:`MAX_WIDTH` entries). Curvature convention: ``k > 0``, :math:`\langle x,x\rangle_L = -k`, ``K = -1/k``.
"""

from __future__ import annotations

import torch

from ..geometry import math as lmath
from ..kernels import LAUNCHES, row_block, row_warps, use_fused, with_eager_fallback
from .point_steps import _move_explog, radamw_point_step_, rsgd_point_step

__all__ = ["rsgd_step_", "radamw_step_", "move_explog_", "fused_step_supported", "MAX_WIDTH"]

#: Widest point (entries along the manifold dimension, time included) the fused kernels take in one program.
MAX_WIDTH = 8192


def fused_step_supported(x: torch.Tensor, *others: torch.Tensor | None) -> bool:
    """Whether the fused step/move may update points ``x`` (with tensors ``others`` of the same layout)."""
    if not use_fused(x) or x.dtype != torch.float32 or x.dim() == 0 or not 2 <= x.size(-1) <= MAX_WIDTH:
        return False
    return x.is_contiguous() and all(
        t is None or (t.dtype == x.dtype and t.shape == x.shape and t.is_contiguous() and not t.is_sparse
                      and t.device == x.device)
        for t in others
    )


def _cap(k: torch.Tensor, x: torch.Tensor, mdist: float) -> torch.Tensor:
    """``max_rapidity_radius``: ``mdist / max(1, √k)``."""
    return mdist / lmath._k(k, x).sqrt().clamp_min(1.0)


def _rsgd_step_eager(
    x: torch.Tensor, grad: torch.Tensor, buf: torch.Tensor | None, k: torch.Tensor, lr: float, weight_decay: float,
    momentum: float, dampening: float, nesterov: bool, maximize: bool, first: bool, repair: bool, stabilize: bool,
    mdist: float,
) -> None:
    x_new, b_new = rsgd_point_step(
        x, grad, None if first else buf, k, _cap(k, x, mdist), lr=lr, weight_decay=weight_decay,
        momentum=momentum, dampening=dampening, nesterov=nesterov, maximize=maximize, repair=repair,
        stabilize=stabilize,
    )
    x.copy_(x_new)
    if buf is not None and b_new is not None:
        buf.copy_(b_new)


_rsgd_step_op = torch.library.custom_op("lorentzcv::rsgd_step_", mutates_args=("x", "buf"))(_rsgd_step_eager)


def _radamw_step_eager(
    x: torch.Tensor, grad: torch.Tensor, m: torch.Tensor, v: torch.Tensor, vmax: torch.Tensor | None,
    k: torch.Tensor, lr: float, weight_decay: float, beta1: float, beta2: float, eps: float, step: float,
    maximize: bool, repair: bool, mdist: float,
) -> None:
    kk = lmath._k(k, x)
    x.copy_(radamw_point_step_(x, grad, m, v, vmax, kk, _cap(kk, x, mdist), lr=lr, weight_decay=weight_decay,
                               beta1=beta1, beta2=beta2, eps=eps, step=step, maximize=maximize, repair=repair))


_radamw_step_op = torch.library.custom_op("lorentzcv::radamw_step_", mutates_args=("x", "m", "v", "vmax"))(
    _radamw_step_eager)


def _move_explog_eager(x: torch.Tensor, m: torch.Tensor | None, k_old: torch.Tensor, k_new: torch.Tensor,
                       mdist: float) -> None:
    if torch.equal(k_old, k_new):  # an unchanged k moves nothing (as the kernel)
        return
    x_new, m_new = _move_explog(x, lmath._k(k_old, x), lmath._k(k_new, x), m, -1, _cap(k_new, x, mdist))
    x.copy_(x_new)
    if m is not None:
        m.copy_(m_new)


_move_explog_op = torch.library.custom_op("lorentzcv::move_explog_", mutates_args=("x", "m"))(_move_explog_eager)

LAUNCHES["lorentzcv::rsgd_step_"] = 1
LAUNCHES["lorentzcv::radamw_step_"] = 1
LAUNCHES["lorentzcv::move_explog_"] = 1


def rsgd_step_(
    x: torch.Tensor, grad: torch.Tensor, buf: torch.Tensor | None, k: torch.Tensor, *, lr: float,
    weight_decay: float, momentum: float, dampening: float, nesterov: bool, maximize: bool, first: bool,
    repair: bool, stabilize: bool, mdist: float,
) -> None:
    """:func:`~lorentzcv.optim.point_steps.rsgd_point_step` of points ``x`` in place as one fused op.

    ``buf`` is the momentum buffer (updated in place; ``first``: it holds nothing yet and is filled with the
    Riemannian gradient; None with ``momentum == 0``); ``mdist`` the representable distance
    (:func:`~lorentzcv.geometry.max_distance`), so the cap is ``mdist / max(1, √k)`` in rapidity; ``k`` a scalar
    tensor (read on the device: no host synchronisation). Check :func:`fused_step_supported` first.
    """
    _rsgd_step_op(x, grad, buf if momentum else None, k.detach().reshape(()), float(lr), float(weight_decay),
                  float(momentum), float(dampening), bool(nesterov), bool(maximize), bool(first), bool(repair),
                  bool(stabilize), float(mdist))


def radamw_step_(
    x: torch.Tensor, grad: torch.Tensor, m: torch.Tensor, v: torch.Tensor, vmax: torch.Tensor | None,
    k: torch.Tensor, *, lr: float, weight_decay: float, beta1: float, beta2: float, eps: float, step: float,
    maximize: bool, repair: bool, mdist: float,
) -> None:
    """:func:`~lorentzcv.optim.point_steps.radamw_point_step_` of points ``x`` in place as one fused op (moments
    ``m``, ``v`` (one entry per point) and ``vmax`` (amsgrad, else None) updated in place; ``step`` the step count
    after this step; cap ``mdist / max(1, √k)``). Check :func:`fused_step_supported` first."""
    _radamw_step_op(x, grad, m, v, vmax, k.detach().reshape(()), float(lr), float(weight_decay), float(beta1),
                    float(beta2), float(eps), float(step), bool(maximize), bool(repair), float(mdist))


def move_explog_(x: torch.Tensor, m: torch.Tensor | None, k_old: torch.Tensor, k_new: torch.Tensor, *,
                 mdist: float) -> None:
    """The explog curvature move (:func:`~lorentzcv.optim.point_steps.move_to_curvature`, cap
    ``mdist / max(1, √k_new)``) of points ``x`` and moments ``m`` in place, as one fused op; nothing moves when
    ``k_old == k_new`` (decided on the device: no host synchronisation)."""
    _move_explog_op(x, m, k_old.detach().reshape(()), k_new.detach().reshape(()), float(mdist))


# --- CUDA: the Triton kernels ---------------------------------------------------------------------------------
def _triton_module():
    """:mod:`lorentzcv.kernels._optim_triton`, imported on first use (Triton is needed on CUDA only)."""
    from ..kernels import _optim_triton

    return _optim_triton




def launch_triton_rsgd_step(x, grad, buf, k, lr, weight_decay, momentum, dampening, nesterov, maximize, first,
                            repair, stabilize, mdist) -> None:
    """Run the Triton kernel of ``lorentzcv::rsgd_step_`` (one program per point)."""
    T = _triton_module()
    width = x.size(-1)
    rows = x.numel() // width
    has_mom = buf is not None
    T.rsgd_step[(rows,)](
        x, grad, buf if has_mom else x, k, width, lr, weight_decay, momentum, dampening, mdist,
        lmath.max_rapidity(x.dtype), HAS_WD=weight_decay != 0, HAS_MOM=has_mom, OLD_B=has_mom and not first,
        NESTEROV=nesterov, MAXIMIZE=maximize, REPAIR=repair, STAB=stabilize, BLOCK=row_block(width),
        num_warps=row_warps(width),
    )


def launch_triton_radamw_step(x, grad, m, v, vmax, k, lr, weight_decay, beta1, beta2, eps, step, maximize, repair,
                              mdist) -> None:
    """Run the Triton kernel of ``lorentzcv::radamw_step_`` (one program per point)."""
    T = _triton_module()
    width = x.size(-1)
    T.radamw_step[(x.numel() // width,)](
        x, grad, m, v, vmax if vmax is not None else v, k, width, lr, weight_decay, beta1, beta2, eps,
        1.0 - beta1**step, 1.0 - beta2**step, mdist, lmath.max_rapidity(x.dtype), HAS_WD=weight_decay != 0,
        AMSGRAD=vmax is not None, MAXIMIZE=maximize, REPAIR=repair, BLOCK=row_block(width), num_warps=row_warps(width),
    )


def launch_triton_move_explog(x, m, k_old, k_new, mdist) -> None:
    """Run the Triton kernel of ``lorentzcv::move_explog_`` (one program per point)."""
    T = _triton_module()
    width = x.size(-1)
    T.explog_move[(x.numel() // width,)](
        x, m if m is not None else x, k_old, k_new, width, mdist, lmath.max_rapidity(x.dtype), HAS_M=m is not None,
        BLOCK=row_block(width), num_warps=row_warps(width),
    )


_rsgd_step_op.register_kernel("cuda")(with_eager_fallback("lorentzcv::rsgd_step_", launch_triton_rsgd_step,
                                                           _rsgd_step_eager))
_radamw_step_op.register_kernel("cuda")(with_eager_fallback("lorentzcv::radamw_step_", launch_triton_radamw_step,
                                                             _radamw_step_eager))
_move_explog_op.register_kernel("cuda")(with_eager_fallback("lorentzcv::move_explog_", launch_triton_move_explog,
                                                            _move_explog_eager))
