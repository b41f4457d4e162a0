r"""The Lorentz → Lorentz manifold swap of points as one fused op (forward 1 kernel, backward 2).

:math:`\exp_0^{k_2}(\mathrm{rescale\_euclid}(\log_0^{k_1} x))` (``rescale=False``: without the rescaling), the
``ManifoldSwap`` between a fully hyperbolic ResNet's encoder and decoder, on rows of points ``(…, 1+C)`` (time first,
the last dimension). Curvature convention: ``k > 0``, :math:`\langle x,x\rangle_L = -k`, ``K = -1/k``. Per row,
with :math:`n = \|x_s\|`:

.. math::
    d = \sqrt{k_1}\operatorname{asinh}(n/\sqrt{k_1}),\quad d' = m\tanh(m_c d/m)\ (\text{or } d),\quad
    b = \min(d'/\sqrt{k_2}, \theta_{max}),\quad y_s = \frac{\sqrt{k_2}\sinh b}{n}\,x_s,\quad
    y_0 = \sqrt{\|y_s\|^2 + k_2},

with :math:`m = m_0\min(1,\sqrt{k_2})` — the closed form of :func:`lorentzcv.nn.functional.swap_manifold`. As a
``torch.library`` custom op: on CUDA the Triton kernels of :mod:`lorentzcv.kernels._swap_triton` (one program per
row; the backward writes ∂L/∂x and per-row partials of ∂L/∂k₁, ∂L/∂k₂, summed by one ``torch.sum``), elsewhere the
eager closed form (its backward by autograd), which the tests compare with the kernels.
"""

from __future__ import annotations

import torch

from ..geometry import math as lmath
from . import LAUNCHES, row_block, row_warps, with_eager_fallback
from .lift import radius

__all__ = ["fused_swap", "fused_swap_supported", "swap_scalars"]

#: Widest row (time included) one program takes.
MAX_WIDTH = 8192


def fused_swap_supported(x: torch.Tensor, k1: torch.Tensor, k2: torch.Tensor, dim: int) -> bool:
    """Whether :func:`fused_swap` takes ``x``: float32 rows along the last dimension, scalar curvatures."""
    return (x.dtype == torch.float32 and x.dim() >= 1 and dim % x.dim() == x.dim() - 1
            and 2 <= x.size(-1) <= MAX_WIDTH and k1.numel() == 1 and k2.numel() == 1)


def swap_scalars(sq: torch.Tensor, k1: torch.Tensor, k2: torch.Tensor, m0: float | None, mc: float,
                 max_rap: float) -> tuple[torch.Tensor, torch.Tensor]:
    """``(ratio, y_0)`` of the module docstring from ``sq = ‖x_s‖²`` (per point, differentiable; ``m0=None``: no
    rescaling). The eager closed form of the swap (:func:`lorentzcv.nn.functional.swap_manifold` uses it too)."""
    sk1, sk2 = k1.sqrt(), k2.sqrt()
    n = sq.clamp_min(torch.finfo(sq.dtype).tiny).sqrt()
    d = sk1 * torch.asinh(n / sk1)  # ‖log0 x‖ = d0(x)
    lim = 1.0
    if m0 is not None:
        m = radius(m0, sk2)  # m0·min(1, √k2)
        d = m * torch.tanh((mc / m) * d)
        lim = mc
    ratio = torch.where(sq > 0, torch.sinh((d / sk2).clamp_max(max_rap)) / (n / sk2), lim)
    return ratio, (ratio * ratio * sq + k2).sqrt()


def _swap_closed_form(x: torch.Tensor, k1: torch.Tensor, k2: torch.Tensor, rescale: bool, m0: float,
                      mc: float) -> torch.Tensor:
    """The swap of rows ``x`` in plain differentiable ops (:func:`swap_scalars`)."""
    xs = x[..., 1:]
    ratio, t = swap_scalars((xs * xs).sum(-1, keepdim=True), k1, k2, m0 if rescale else None, mc,
                            lmath.max_rapidity(x.dtype))
    return torch.cat([t, ratio * xs], -1)


def _swap_eager(x: torch.Tensor, k1: torch.Tensor, k2: torch.Tensor, rescale: bool, m0: float,
                mc: float) -> torch.Tensor:
    return _swap_closed_form(x, k1, k2, rescale, m0, mc)


def _swap_backward_eager(g: torch.Tensor, x: torch.Tensor, k1: torch.Tensor, k2: torch.Tensor, rescale: bool,
                         m0: float, mc: float) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """``(∂L/∂x, ∂L/∂k₁, ∂L/∂k₂)`` of the closed form, differentiated by hand per row (∂L/∂x₀ = 0: the input's
    time is not read). With ``L = g₀·y₀ + ratio·(g_s·x_s)``, ``y₀ = √(ratio²n² + k₂)``; the derivatives of
    ``ratio = √k₂·sinh(b)/n`` through ``b = d'/√k₂``, ``d'`` and ``d`` are those of the module docstring's chain
    (none through ``b`` where it is clamped, none through ``ratio`` at ``n = 0``, where it is its limit)."""
    xs, gs, g0 = x[..., 1:], g[..., 1:], g[..., :1]
    sq = (xs * xs).sum(-1, keepdim=True)
    sk1, sk2 = k1.sqrt(), k2.sqrt()
    n = sq.clamp_min(torch.finfo(sq.dtype).tiny).sqrt()
    d = sk1 * torch.asinh(n / sk1)
    maxrap = lmath.max_rapidity(x.dtype)
    if rescale:
        m = radius(m0, sk2)
        u = (mc / m) * d
        th = torch.tanh(u)
        dp, lim = m * th, mc
        sech2 = 1 - th * th
        ddp, dm = mc * sech2, th - u * sech2
        m_sk = torch.where(sk2 < 1, torch.full_like(sk2, m0), torch.zeros_like(sk2))
    else:
        dp, lim, ddp, dm, m_sk = d, 1.0, 1.0, 0.0, 0.0
    b = (dp / sk2).clamp_max(maxrap)
    pos = sq > 0
    ratio = torch.where(pos, torch.sinh(b) / (n / sk2), torch.full_like(sq, lim))
    t = (ratio * ratio * sq + k2).sqrt()
    g_ratio = (gs * xs).sum(-1, keepdim=True) + g0 * ratio * sq / t
    free = dp / sk2 < maxrap
    chain = torch.where(free, torch.cosh(b) * ddp, torch.zeros_like(b))  # n·∂ratio/∂d
    r_n = (chain * sk1 / (k1 + sq).sqrt() - ratio) / n
    r_sk2 = (torch.sinh(b) + torch.where(free, torch.cosh(b) * (dm * m_sk - b), torch.zeros_like(b))) / n
    r_k1 = chain * (torch.asinh(n / sk1) - n / (k1 + sq).sqrt()) / (2 * sk1) / n
    zero = torch.zeros_like(sq)
    g_sq = g0 * ratio * ratio / (2 * t) + torch.where(pos, g_ratio * r_n / (2 * n), zero)
    gx = torch.cat([torch.zeros_like(g0), ratio * gs + 2 * g_sq * xs], -1)
    gk1 = torch.where(pos, g_ratio * r_k1, zero).sum()
    gk2 = (g0 / (2 * t) + torch.where(pos, g_ratio * r_sk2 / (2 * sk2), zero)).sum()
    return gx, gk1.reshape(k1.shape).to(k1.dtype), gk2.reshape(k2.shape).to(k2.dtype)


_swap_op = torch.library.custom_op("lorentzcv::fused_swap", mutates_args=())(_swap_eager)
_swap_backward_op = torch.library.custom_op("lorentzcv::fused_swap_backward", mutates_args=())(_swap_backward_eager)


@_swap_op.register_fake
def _(x, k1, k2, rescale, m0, mc):
    return torch.empty_like(x)


@_swap_backward_op.register_fake
def _(g, x, k1, k2, rescale, m0, mc):
    return torch.empty_like(x), torch.empty_like(k1), torch.empty_like(k2)


def _setup_context(ctx, inputs, output) -> None:
    x, k1, k2, *cfg = inputs
    ctx.save_for_backward(x, k1, k2)
    ctx.cfg = cfg


def _backward(ctx, g):
    gx, gk1, gk2 = _swap_backward_op(g.contiguous(), *ctx.saved_tensors, *ctx.cfg)
    return gx, gk1, gk2, None, None, None


_swap_op.register_autograd(_backward, setup_context=_setup_context)

LAUNCHES["lorentzcv::fused_swap"] = 1
LAUNCHES["lorentzcv::fused_swap_backward"] = 2  # the kernel + the sum of its per-row partials of ∂L/∂k₁, ∂L/∂k₂


def fused_swap(x: torch.Tensor, k1: torch.Tensor, k2: torch.Tensor, *,
               rescale: tuple[float, float] | None) -> torch.Tensor:
    """The swap of the module docstring of float32 points ``x`` (rows along the last dimension) from ``k1`` to
    ``k2`` (scalar tensors), ``rescale = (m0, mc)`` (radius before ``min(1, √k₂)`` and ``m·c``) or None."""
    m0, mc = rescale if rescale is not None else (1.0, 1.0)
    shape = x.shape
    y = _swap_op(x.reshape(-1, shape[-1]).contiguous(), k1.reshape(()), k2.reshape(()), rescale is not None,
                 float(m0), float(mc))
    return y.reshape(shape)


# --- CUDA: the Triton kernels ---------------------------------------------------------------------------------
def _triton_module():
    """:mod:`lorentzcv.kernels._swap_triton`, imported on first use (Triton is needed on CUDA only)."""
    from . import _swap_triton

    return _swap_triton



def launch_triton_swap(x, k1, k2, rescale, m0, mc) -> torch.Tensor:
    """Run the forward Triton kernel of ``lorentzcv::fused_swap`` (one program per row)."""
    T = _triton_module()
    x = x.contiguous()
    y = torch.empty_like(x)
    width = x.size(-1)
    T.swap_fwd[(x.numel() // width,)](x, y, k1, k2, width, m0, mc, lmath.max_rapidity(x.dtype), RESCALE=rescale,
                                      BLOCK=row_block(width), num_warps=row_warps(width))
    return y


def launch_triton_swap_backward(g, x, k1, k2, rescale, m0, mc):
    """Run the backward Triton kernel of ``lorentzcv::fused_swap`` and the sum of its partials of ∂L/∂k."""
    T = _triton_module()
    g, x = g.contiguous(), x.contiguous()
    width = x.size(-1)
    rows = x.numel() // width
    gx = torch.empty_like(x)
    part = x.new_empty(2, rows)
    T.swap_bwd[(rows,)](g, x, gx, part, k1, k2, width, rows, m0, mc, lmath.max_rapidity(x.dtype), RESCALE=rescale,
                        BLOCK=row_block(width), num_warps=row_warps(width))
    gk = part.sum(1)
    return gx, gk[0].reshape(k1.shape).to(k1.dtype), gk[1].reshape(k2.shape).to(k2.dtype)


_swap_op.register_kernel("cuda")(with_eager_fallback("lorentzcv::fused_swap", launch_triton_swap, _swap_eager))
_swap_backward_op.register_kernel("cuda")(with_eager_fallback("lorentzcv::fused_swap_backward",
                                                              launch_triton_swap_backward, _swap_backward_eager))
