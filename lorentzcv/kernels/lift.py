r"""The lift epilogue — space coordinates → point, optionally maximum-distance rescaled — as fused kernels.

Curvature convention: ``k > 0`` (points satisfy :math:`\langle x,x\rangle_L = -k`, sectional curvature
:math:`K = -1/k`), a scalar tensor here; gradients reach it.

Every efficient convolution, ReLU activation and residual of a fully hyperbolic ResNet ends with

.. math:: v \mapsto \big(\sqrt{\rho^2\|v\|^2 + k},\ \rho\,v\big),\qquad
          \rho = \begin{cases} 1 & \text{time only}\\
                 \sinh(b)/n,\ n = \|v\|/\sqrt{k},\ b = \tfrac{m_k}{\sqrt{k}}\tanh\!\big(c\sqrt{k}\,\operatorname{asinh} n\big)
                 & \text{maximum distance rescaling (docs/method.md §2.2)}\end{cases}

with :math:`m_k = m\min(1,\sqrt{k})`, :math:`m c = \operatorname{artanh}(\rho_{\max})/s`, where the input ``v`` is

* ``src="space"``: the given space coordinates (a convolution's output, ``(B, C, H, W)``);
* ``src="relu"``: :math:`\mathrm{ReLU}(x_s)` of a point ``x`` (``(B, 1+C, H, W)``), the Lorentz ReLU;
* ``src="sum"``: :math:`x_s + y_s` of two points, the Lorentz residual.

Written with PyTorch ops the chain is ~10 kernels forward and ~40 backward (rescaling and the curvature gradient
included). Here it is one kernel forward (one pass computes :math:`\|v\|^2` per pixel, the scalar math, and writes
the point) and one kernel plus one reduction backward (the per-pixel partial sums of :math:`\partial L/\partial k`
are written per program and summed by ``torch.sum``, which keeps the result deterministic, unlike atomics).

Implementations: :class:`LiftFast` / :func:`lift_fast` (eager closed form with a hand-written backward, the CPU
default), and the ``torch.library`` custom ops ``lorentzcv::fused_lift`` / ``lorentzcv::fused_lift_backward``
behind :func:`fused_lift`, which run Triton kernels on CUDA and the same eager closed form on other devices. The
Triton kernels live in :mod:`lorentzcv.kernels._lift_triton`; with ``TRITON_INTERPRET=1`` set before Triton is
imported, Triton's interpreter runs them on CPU tensors (the tests compare them with the eager closed form that
way, in a subprocess).
Everything computes in float32 (float64 on the eager path when given float64).
"""

from __future__ import annotations

import math

import torch
from torch.autograd.function import once_differentiable

from . import LAUNCHES, with_eager_fallback

__all__ = ["SRCS", "fused_lift", "fused_log0", "fused_lift_supported", "lift_fast", "lift_fast_forward", "LiftFast", "radius",
           "relu_lift", "launch_triton_lift", "launch_triton_lift_backward"]

#: Inputs of the lift: ``space`` (space coordinates), ``relu`` (ReLU of a point's space part), ``sum`` (sum of the
#: space parts of two points).
SRCS = ("space", "relu", "sum")
_TINY32 = float(torch.finfo(torch.float32).tiny)


# ------------------------------------------------------------------------------------------------------------
# eager closed form (the CPU default and the reference of the Triton kernels)
# ------------------------------------------------------------------------------------------------------------
def radius(m0: float, sk: torch.Tensor) -> torch.Tensor:
    """``m·min(1, √k)`` with the derivative of the ``k >= 1`` side at ``k = 1`` whatever the torch version."""
    return torch.where(sk < 1, m0 * sk, m0)


def empty_like_lifted(ys: torch.Tensor, dim: int) -> torch.Tensor:
    """An uninitialised tensor shaped like ``ys`` with one more entry along ``dim`` (channels-last kept)."""
    shape = list(ys.shape)
    shape[dim] += 1
    if ys.dim() == 4 and dim == 1 and not ys.is_contiguous() and ys.is_contiguous(
        memory_format=torch.channels_last
    ):
        return torch.empty(shape, dtype=ys.dtype, device=ys.device, memory_format=torch.channels_last)
    return ys.new_empty(shape)


def _dot(a: torch.Tensor, b: torch.Tensor, dim: int, buf: torch.Tensor) -> torch.Tensor:
    """Per-pixel dot product along ``dim`` (keepdim), the products written into ``buf`` (no new allocation)."""
    return torch.mul(a, b, out=buf).sum(dim=dim, keepdim=True)


def _asinh_pos(n: torch.Tensor) -> torch.Tensor:
    """``asinh(n)`` for ``n >= 0`` from vectorised ops (``torch.asinh`` is ~10x slower on CPU), accurate near 0;
    arguments above 1e18 (rapidity 42, far outside anything a float32 time coordinate resolves) are clamped."""
    n = n.clamp_max(1e18)
    n2 = n * n
    return torch.log1p(n + n2 / (1 + (1 + n2).sqrt()))


def fast_scale(sq: torch.Tensor, k: torch.Tensor, m0: float | None, mc: float, euclid: bool = False):
    """Per-pixel ``(ratio, time, saved)`` from ``sq = ‖v‖²``: time only (``m0 is None``), rescaling of the point
    (default) or, with ``euclid``, ``rescale_euclid`` of ``v`` itself (``ratio = m_k·tanh(c·‖v‖)/‖v‖``, the
    ``ToLorentz(mode="rescale")`` bridge), then time from space."""
    if m0 is None:
        return None, (sq + k).sqrt(), ()
    if euclid:
        sk = k.sqrt()
        m = radius(m0, sk)
        n = sq.clamp_min(torch.finfo(sq.dtype).tiny).sqrt()
        u = (mc / m) * n
        th = torch.tanh(u)
        ratio = torch.where(sq > 0, m * th / n, mc)
        return ratio, (ratio * ratio * sq + k).sqrt(), (n, u, th)
    sk = k.sqrt()
    m = radius(m0, sk)
    a1 = mc * sk / m  # u = a1·r: tanh argument, r = asinh(n) the rapidity
    n = sq.clamp_min(torch.finfo(sq.dtype).tiny).sqrt() / sk
    r = _asinh_pos(n)
    th = torch.tanh(a1 * r)
    b = (m / sk) * th  # target rapidity g(d)/√k
    ratio = torch.where(sq > 0, torch.sinh(b) / n, mc)
    t = (ratio * ratio * sq + k).sqrt()
    return ratio, t, (n, r, th, b)


def lift_fast_forward(ys: torch.Tensor, k: torch.Tensor, dim: int, m0: float | None, mc: float,
                      ctx=None, euclid: bool = False) -> torch.Tensor:
    """Forward of :class:`LiftFast` (saves ``out, sq, t, k`` and the rescaling intermediates on ``ctx``)."""
    out, sq, t, ratio, saved = _lift_fast_forward(ys, k, dim, m0, mc, euclid)
    if ctx is not None:
        ctx.save_for_backward(out, sq, t, k, *(() if ratio is None else (ratio, *saved)))
    return out


def _lift_fast_forward(ys: torch.Tensor, k: torch.Tensor, dim: int, m0: float | None, mc: float,
                       euclid: bool = False):
    out = empty_like_lifted(ys, dim)
    n_s = ys.size(dim)
    out_t, out_s = out.narrow(dim, 0, 1), out.narrow(dim, 1, n_s)
    sq = _dot(ys, ys, dim, out_s)  # out_s is scratch space until the result is written
    ratio, t, saved = fast_scale(sq, k, m0, mc, euclid)
    if ratio is None:
        out_s.copy_(ys)
    else:
        torch.mul(ys, ratio, out=out_s)
    out_t.copy_(t)
    return out, sq, t, ratio, saved


def lift_fast_backward(g: torch.Tensor, out: torch.Tensor, sq: torch.Tensor, t: torch.Tensor, k: torch.Tensor,
                       rest: tuple, dim: int, m0: float | None, mc: float, need_ys: bool, need_k: bool,
                       euclid: bool = False):
    r"""``(∂L/∂v, ∂L/∂k)`` of the lift from ``g = ∂L/∂out`` (closed form, see :class:`LiftFast`).

    With ``euclid`` (``ratio = m·tanh(u)/n``, ``u = m·c·n/m``, ``n = ‖v‖``): ``∂ratio/∂sq = (m·c·(1-tanh²u) -
    ratio)/(2n²)`` and ``∂ratio/∂k = [k < 1]·(m0/(2√k))·(tanh u - u(1-tanh²u))/n`` (through ``m = m0·√k``)."""
    n_s = out.size(dim) - 1
    g_t, g_s, out_s = g.narrow(dim, 0, 1), g.narrow(dim, 1, n_s), out.narrow(dim, 1, n_s)
    g_ys = g_k = None
    if not rest:  # time only: ratio = 1, g_sq = g_t/(2t)
        h = g_t / t
        if need_ys:
            g_ys = torch.addcmul(g_s, out_s, h)
        if need_k:
            g_k = (0.5 * h).sum_to_size(k.shape)
        return g_ys, g_k
    if euclid:
        return _euclid_backward(g_s, g_t, out_s, sq, t, k, rest, dim, m0, mc, need_ys, need_k)
    ratio, n, r, th, b = rest
    pos = sq > 0
    inv = 1 / ratio  # > 0 on this path (sinh(b)/n with b > 0, or the limit m·c)
    buf = torch.empty_like(out_s, memory_format=torch.contiguous_format if out.is_contiguous()
                           else torch.preserve_format)  # becomes g_ys
    gr = _dot(g_s, out_s, dim, buf) * inv  # <g_s, y_s>
    big_g = gr + g_t * ratio * sq / t
    ch = torch.cosh(b)
    one_th2 = 1 - th * th
    dr_dsq = torch.where(pos, (ch * (mc * one_th2) / (1 + n * n).sqrt() - ratio) / (2 * k * n * n), 0.0)
    g_sq = big_g * dr_dsq + g_t * ratio * ratio / (2 * t)
    if need_ys:
        g_ys = torch.mul(g_s, ratio, out=buf)
        g_ys.addcmul_(out_s, 2 * g_sq * inv)
    if need_k:
        dr_dk = -(sq / k) * dr_dsq
        # m = m0·min(1, √k) is constant for k >= 1 (see radius): the ∂m term
        sk = k.sqrt()
        m = radius(m0, sk)
        u = (mc * sk / m) * r
        dr_dm = torch.where(pos, ch * (th - u * one_th2) / (sk * n), 0.0)
        dr_dk = dr_dk - torch.where(k >= 1, m / (2 * k), 0.0) * dr_dm
        g_k = (big_g * dr_dk + g_t / (2 * t)).sum_to_size(k.shape)
    return g_ys, g_k


def _euclid_backward(g_s, g_t, out_s, sq, t, k, rest, dim, m0, mc, need_ys, need_k):
    """:func:`lift_fast_backward` of the ``euclid`` rescaling (see there)."""
    ratio, n, u, th = rest
    pos = sq > 0
    inv = 1 / ratio
    big_g = (g_s * out_s).sum(dim=dim, keepdim=True) * inv + g_t * ratio * sq / t  # ∂L/∂ratio
    one_th2 = 1 - th * th
    dr_dsq = torch.where(pos, (mc * one_th2 - ratio) / (2 * n * n), 0.0)
    g_ys = g_k = None
    if need_ys:
        g_sq = big_g * dr_dsq + g_t * ratio * ratio / (2 * t)
        g_ys = torch.addcmul(g_s * ratio, out_s, 2 * g_sq * inv)
    if need_k:
        sk = k.sqrt()
        dr_dk = torch.where(pos & (sk < 1), (m0 / (2 * sk)) * (th - u * one_th2) / n, 0.0)
        g_k = (big_g * dr_dk + g_t / (2 * t)).sum_to_size(k.shape)
    return g_ys, g_k


class LiftFast(torch.autograd.Function):
    """The lift of ``src="space"`` (time only, or maximum distance rescaling without boost/floor) with a
    closed-form backward: the fewest passes over ``y_s`` and few small per-pixel ops.

    With ``G = <g_s, y_s> + g_t·ratio·sq/t``: ``g_sq = G·∂ratio/∂sq + g_t·ratio²/(2t)``,
    ``g_k = Σ G·∂ratio/∂k + g_t/(2t)``, ``g_ys = ratio·g_s + 2·g_sq·y_s``, where
    ``∂ratio/∂sq = (cosh(b)·mc·(1-th²)/sqrt(1+n²) - ratio)/(2k·n²)`` and, by the scaling symmetry
    ``ratio(λ²sq, λ²k, λm) = ratio(sq, k, m)``, ``∂ratio/∂k = -(sq/k)·∂ratio/∂sq - [k ≥ 1]·(m/2k)·∂ratio/∂m``.
    """

    @staticmethod
    def forward(ctx, ys: torch.Tensor, k: torch.Tensor, dim: int, m0: float | None, mc: float) -> torch.Tensor:
        out = lift_fast_forward(ys, k, dim, m0, mc, ctx)
        ctx.dim, ctx.m0, ctx.mc = dim, m0, mc
        return out

    @staticmethod
    @once_differentiable
    def backward(ctx, g: torch.Tensor):
        out, sq, t, k, *rest = ctx.saved_tensors
        g_ys, g_k = lift_fast_backward(g, out, sq, t, k, tuple(rest), ctx.dim, ctx.m0, ctx.mc,
                                       ctx.needs_input_grad[0], ctx.needs_input_grad[1])
        return g_ys, g_k, None, None, None


def lift_fast(ys: torch.Tensor, k: torch.Tensor, dim: int, m0: float | None, mc: float) -> torch.Tensor:
    """:class:`LiftFast` when a gradient is needed, else its forward without autograd bookkeeping."""
    if torch.is_grad_enabled() and (ys.requires_grad or k.requires_grad):
        return LiftFast.apply(ys, k, dim, m0, mc)
    with torch.no_grad():
        return lift_fast_forward(ys, k, dim, m0, mc)


def _relu_backward(g: torch.Tensor, out: torch.Tensor, k: torch.Tensor, dim: int, need_x: bool, need_k: bool):
    """Gradients of ``lift(relu(x_s))`` (time only) from its output alone: the ReLU mask is ``out_s > 0``."""
    n_s = out.size(dim) - 1
    out_s, g_s = out.narrow(dim, 1, n_s), g.narrow(dim, 1, n_s)
    h = g.narrow(dim, 0, 1) / out.narrow(dim, 0, 1)  # time-only lift: g_ys = g_s + out_s·g_t/t
    g_x = g_k = None
    if need_x:
        g_x = torch.zeros_like(out)
        gx_s = g_x.narrow(dim, 1, n_s)
        torch.addcmul(g_s, out_s, h, out=gx_s)
        gx_s.mul_(out_s > 0)
    if need_k:
        g_k = (0.5 * h).sum_to_size(k.shape)
    return g_x, g_k


def _relu_forward(x: torch.Tensor, k: torch.Tensor, dim: int) -> torch.Tensor:
    return lift_fast_forward(torch.relu(x.narrow(dim, 1, x.size(dim) - 1)), k, dim, None, 1.0)


class _ReluLift(torch.autograd.Function):
    """Fused ``lift(relu(x_s))`` that saves only its output: the ReLU mask is ``out_s > 0`` and the lift's
    time-only backward needs ``out`` alone, so one activation-sized tensor is kept instead of two."""

    @staticmethod
    def forward(ctx, x: torch.Tensor, k: torch.Tensor, dim: int) -> torch.Tensor:
        out = _relu_forward(x, k, dim)
        ctx.save_for_backward(out, k)
        ctx.dim = dim
        return out

    @staticmethod
    @once_differentiable
    def backward(ctx, g: torch.Tensor):
        out, k = ctx.saved_tensors
        g_x, g_k = _relu_backward(g, out, k, ctx.dim, ctx.needs_input_grad[0], ctx.needs_input_grad[1])
        return g_x, g_k, None


def relu_lift(x: torch.Tensor, k: torch.Tensor, dim: int) -> torch.Tensor:
    """Eager ``lift(relu(x_s))`` of a point ``x`` (time only), saving only its output for the backward."""
    if torch.is_grad_enabled() and (x.requires_grad or k.requires_grad):
        return _ReluLift.apply(x, k, dim)
    with torch.no_grad():
        return _relu_forward(x, k, dim)


# ------------------------------------------------------------------------------------------------------------
# custom ops: one kernel forward, one kernel + one reduction backward
# ------------------------------------------------------------------------------------------------------------
def _source(x: torch.Tensor, y: torch.Tensor | None, src: int, dim: int) -> torch.Tensor:
    if src == 0:
        return x
    xs = x.narrow(dim, 1, x.size(dim) - 1)
    return torch.relu(xs) if src == 1 else xs + y.narrow(dim, 1, y.size(dim) - 1)


def _m0(rescale: int, m0: float) -> float | None:
    return m0 if rescale else None


def _fused_lift_eager(x: torch.Tensor, y: torch.Tensor | None, k: torch.Tensor, src: int, dim: int, rescale: int,
                   m0: float, mc: float) -> tuple[torch.Tensor, torch.Tensor]:
    """``(out, sq)``: the lifted point and ``‖v‖²`` per pixel (saved for the backward)."""
    out, sq, *_ = _lift_fast_forward(_source(x, y, src, dim), k, dim, _m0(rescale, m0), mc, rescale == 2)
    return out, sq


_fused_lift_op = torch.library.custom_op("lorentzcv::fused_lift", mutates_args=())(_fused_lift_eager)


@_fused_lift_op.register_fake
def _(x, y, k, src, dim, rescale, m0, mc):
    shape = list(x.shape)
    if src == 0:
        shape[dim] += 1
    sq_shape = list(x.shape)
    sq_shape[dim] = 1
    return x.new_empty(shape), x.new_empty(sq_shape)


def _fused_lift_backward_eager(g: torch.Tensor, out: torch.Tensor, sq: torch.Tensor, k: torch.Tensor, src: int,
                            dim: int, rescale: int, m0: float, mc: float) -> tuple[torch.Tensor, torch.Tensor]:
    """``(∂L/∂input, ∂L/∂k)``; ``∂L/∂input`` has the input's shape (a point's, time entry 0, for relu/sum)."""
    if src == 1:
        g_x, g_k = _relu_backward(g, out, k, dim, True, True)
        return g_x, g_k
    ratio, t, saved = fast_scale(sq, k, _m0(rescale, m0), mc, rescale == 2)
    g_ys, g_k = lift_fast_backward(g, out, sq, t, k, () if ratio is None else (ratio, *saved), dim,
                                   _m0(rescale, m0), mc, True, True, rescale == 2)
    if src == 2:
        g_x = torch.zeros_like(out)
        g_x.narrow(dim, 1, out.size(dim) - 1).copy_(g_ys)
        return g_x, g_k
    return g_ys, g_k


_fused_lift_backward_op = torch.library.custom_op("lorentzcv::fused_lift_backward", mutates_args=())(
    _fused_lift_backward_eager)


@_fused_lift_backward_op.register_fake
def _(g, out, sq, k, src, dim, rescale, m0, mc):
    shape = list(out.shape)
    if src == 0:
        shape[dim] -= 1
    return out.new_empty(shape), k.new_empty(k.shape)


def _setup_context(ctx, inputs, output) -> None:
    x, y, k, src, dim, rescale, m0, mc = inputs
    out, sq = output
    ctx.save_for_backward(out, sq, k)
    ctx.cfg = (src, dim, rescale, m0, mc)
    ctx.two = y is not None
    ctx.mark_non_differentiable(sq)
    ctx.set_materialize_grads(False)  # no zero-filled gradient for sq (a kernel launch on a GPU)


def _backward(ctx, g_out: torch.Tensor | None, _g_sq: torch.Tensor | None):
    out, sq, k = ctx.saved_tensors
    if g_out is None:
        return (None,) * 8
    g_in, g_k = _fused_lift_backward_op(g_out, out, sq, k, *ctx.cfg)
    return g_in, (g_in if ctx.two else None), g_k, None, None, None, None, None


_fused_lift_op.register_autograd(_backward, setup_context=_setup_context)
LAUNCHES["lorentzcv::fused_lift"] = 1
LAUNCHES["lorentzcv::fused_lift_backward"] = 2  # the kernel + torch.sum of its per-program partials of ∂L/∂k


def _ocs(t: torch.Tensor, dim: int) -> tuple[int, int, int, int, int, int] | None:
    """``(outer, C, inner, s_outer, s_c, s_inner)`` if ``t`` is a strided (outer, C, inner) array, else None."""
    def merged(shape, strides) -> int | None:
        dims = [(n, s) for n, s in zip(shape, strides) if n != 1]
        for (_, s1), (n2, s2) in zip(dims, dims[1:]):
            if s1 != n2 * s2:
                return None
        return dims[-1][1] if dims else 0

    shape, strides = t.shape, t.stride()
    so, si = merged(shape[:dim], strides[:dim]), merged(shape[dim + 1:], strides[dim + 1:])
    if so is None or si is None:
        return None
    return math.prod(shape[:dim]), shape[dim], math.prod(shape[dim + 1:]), so, strides[dim], si


def fused_lift_supported(x: torch.Tensor, k: torch.Tensor, dim: int) -> bool:
    """Whether :func:`fused_lift` takes ``x``: float32, a scalar ``k``, a layout it can address (see ``_ocs``)."""
    return x.dtype == torch.float32 and k.numel() == 1 and _ocs(x, dim % x.dim()) is not None


def fused_lift(x: torch.Tensor, k: torch.Tensor, *, dim: int, src: str = "space", y: torch.Tensor | None = None,
               rescale: tuple[float, float] | None = None, euclid: bool = False) -> torch.Tensor:
    """The lift of ``src`` (module docstring) as the fused custom op.

    Args:
        x: space coordinates (``src="space"``) or a point (``"relu"``, ``"sum"``), float32.
        k: the curvature parameter, a scalar tensor (``K = -1/k``).
        dim: the channel dimension.
        y: the second point of ``src="sum"``.
        rescale: ``(m0, mc)``, the rescaling radius (before ``min(1, √k)``) and ``m·c``; ``None``: time only.
        euclid: rescale the vector ``v`` itself (``rescale_euclid``, the Euclid→Lorentz bridge) instead of the point.
    """
    src_i = SRCS.index(src)
    if (src_i == 2) != (y is not None):
        raise ValueError("fused_lift needs y exactly when src='sum'")
    if src_i == 1 and rescale is not None:
        raise ValueError("fused_lift: src='relu' is the time-only Lorentz ReLU (no rescaling)")
    m0, mc = rescale if rescale is not None else (0.0, 1.0)
    mode = 0 if rescale is None else (2 if euclid else 1)
    out, _ = _fused_lift_op(x, y, k.reshape(()), src_i, dim % x.dim(), mode, float(m0), float(mc))
    return out


# ------------------------------------------------------------------------------------------------------------
# log0: point -> Euclidean features (the Lorentz -> Euclid bridge), y = asinhc(‖x_s‖/√k)·x_s
# ------------------------------------------------------------------------------------------------------------
def _log0_scalars(sq: torch.Tensor, k: torch.Tensor):
    """``(f, h, z)`` per pixel: ``f = asinh(z)/z`` and ``h = f'(z)/z = (1/sqrt(1+z²) - f)/z²`` at ``z = ‖x_s‖/√k``
    (Taylor series below 0.2, where the difference cancels)."""
    z2 = sq / k
    z = z2.sqrt()
    small = z < 0.2
    zs = torch.where(small, torch.ones_like(z), z)
    f = torch.where(small, 1 - z2 / 6 + 3 * z2 * z2 / 40, _asinh_pos(zs) / zs)
    h_direct = ((1 + z2).rsqrt() - f) / torch.where(small, torch.ones_like(z2), z2)
    h = torch.where(small, -1 / 3 + z2 * (3 / 10 + z2 * (-15 / 56 + z2 * (35 / 144))), h_direct)
    return f, h, z2


def _log0_eager(x: torch.Tensor, k: torch.Tensor, dim: int) -> torch.Tensor:
    """``y = f·x_s`` (the eager closed form of ``lorentzcv::fused_log0``)."""
    xs = x.narrow(dim, 1, x.size(dim) - 1)
    f, _, _ = _log0_scalars((xs * xs).sum(dim=dim, keepdim=True), k)
    return f * xs


def _log0_backward_eager(g: torch.Tensor, x: torch.Tensor, k: torch.Tensor,
                         dim: int) -> tuple[torch.Tensor, torch.Tensor]:
    """``(∂L/∂x, ∂L/∂k)``: ``∂L/∂x_s = f·g + (h/k)·<g, x_s>·x_s``, ``∂L/∂x_0 = 0``,
    ``∂L/∂k = -Σ <g, x_s>·h·z²/(2k)``."""
    n = x.size(dim) - 1
    xs = x.narrow(dim, 1, n)
    f, h, z2 = _log0_scalars((xs * xs).sum(dim=dim, keepdim=True), k)
    gx = (g * xs).sum(dim=dim, keepdim=True)
    g_x = torch.zeros_like(x)
    g_x.narrow(dim, 1, n).copy_(f * g + (h / k * gx) * xs)
    return g_x, (-(gx * h * z2) / (2 * k)).sum().reshape(k.shape)


_fused_log0_op = torch.library.custom_op("lorentzcv::fused_log0", mutates_args=())(_log0_eager)
_fused_log0_backward_op = torch.library.custom_op("lorentzcv::fused_log0_backward", mutates_args=())(
    _log0_backward_eager)


@_fused_log0_op.register_fake
def _(x, k, dim):
    shape = list(x.shape)
    shape[dim] -= 1
    return x.new_empty(shape)


@_fused_log0_backward_op.register_fake
def _(g, x, k, dim):
    return torch.empty_like(x), torch.empty_like(k)


def _log0_setup(ctx, inputs, output) -> None:
    x, k, dim = inputs
    ctx.save_for_backward(x, k)
    ctx.dim = dim


def _log0_backward(ctx, g):
    x, k = ctx.saved_tensors
    g_x, g_k = _fused_log0_backward_op(g.contiguous(), x, k, ctx.dim)
    return g_x, g_k, None


_fused_log0_op.register_autograd(_log0_backward, setup_context=_log0_setup)
LAUNCHES["lorentzcv::fused_log0"] = 1
LAUNCHES["lorentzcv::fused_log0_backward"] = 2  # the kernel + the sum of its partials of ∂L/∂k


def fused_log0(x: torch.Tensor, k: torch.Tensor, *, dim: int) -> torch.Tensor:
    r"""The space part of :math:`\log_0 x`, :math:`\operatorname{asinhc}(\|x_s\|/\sqrt{k})\,x_s`, as the fused op
    (points ``x`` float32 with ``1+C`` entries along ``dim``; ``k`` a scalar tensor, ``K = -1/k``)."""
    return _fused_log0_op(x, k.reshape(()), dim % x.dim())


# ------------------------------------------------------------------------------------------------------------
# Triton kernels (CUDA; Triton's interpreter runs them on CPU tensors for the tests)
# ------------------------------------------------------------------------------------------------------------
def _triton_module():
    """:mod:`lorentzcv.kernels._lift_triton`, imported on first use (Triton is needed on CUDA only). With
    ``TRITON_INTERPRET=1`` in the environment *before Triton is first imported* its kernels run on CPU tensors in
    Triton's interpreter (how the tests exercise them without a GPU)."""
    from . import _lift_triton

    return _lift_triton


_BLOCK = 128


def _strides(t: torch.Tensor, dim: int) -> tuple[int, int, int]:
    ocs = _ocs(t, dim)
    assert ocs is not None, "callers make the tensor addressable first"
    return ocs[3], ocs[4], ocs[5]


def _addressable(t: torch.Tensor, dim: int) -> torch.Tensor:
    return t if _ocs(t, dim) is not None else t.contiguous()


def launch_triton_lift(x: torch.Tensor, y: torch.Tensor | None, k: torch.Tensor, src: int, dim: int,
                       rescale: int, m0: float, mc: float):
    """Run the forward Triton kernel: ``(out, sq)`` as :func:`_fused_lift_op` returns them."""
    fwd = _triton_module().lift_fwd
    x = _addressable(x, dim)
    y = _addressable(y, dim) if y is not None else x
    outer, c_in, inner, *_ = _ocs(x, dim)
    c = c_in if src == 0 else c_in - 1
    out = empty_like_lifted(x, dim) if src == 0 else torch.empty_like(x)
    sq_shape = list(x.shape)
    sq_shape[dim] = 1
    sq = x.new_empty(sq_shape)
    npix = outer * inner
    grid = (max(1, -(-npix // _BLOCK)),)
    fwd[grid](x, y, k, out, sq, c, inner, npix, *_strides(x, dim), *_strides(y, dim), *_strides(out, dim),
              _strides(sq, dim)[0], _strides(sq, dim)[2], float(m0), float(mc), SRC=src, RESCALE=int(rescale),
              BLOCK=_BLOCK)
    return out, sq


def launch_triton_lift_backward(g: torch.Tensor, out: torch.Tensor, sq: torch.Tensor, k: torch.Tensor, src: int,
                                dim: int, rescale: int, m0: float, mc: float):
    """Run the backward Triton kernel and the reduction of ``∂L/∂k``: ``(∂L/∂input, ∂L/∂k)``."""
    bwd = _triton_module().lift_bwd
    g = _addressable(g, dim)
    outer, c1, inner, *_ = _ocs(out, dim)
    shape = list(out.shape)
    if src == 0:
        shape[dim] -= 1
    g_in = out.new_empty(shape) if src == 0 else torch.empty_like(out)
    if _ocs(g_in, dim) is None:
        g_in = out.new_empty(shape)
    npix = outer * inner
    nprog = max(1, -(-npix // _BLOCK))
    partial = out.new_empty(nprog)
    bwd[(nprog,)](g, out, sq, k, g_in, partial, c1 - 1, inner, npix, *_strides(g, dim), *_strides(out, dim),
                  _strides(sq, dim)[0], _strides(sq, dim)[2], *_strides(g_in, dim), float(m0), float(mc), SRC=src,
                  RESCALE=int(rescale), BLOCK=_BLOCK)
    return g_in, partial.sum().reshape(k.shape).to(k.dtype)


_fused_lift_op.register_kernel("cuda")(with_eager_fallback("lorentzcv::fused_lift", launch_triton_lift,
                                                            _fused_lift_eager))
_fused_lift_backward_op.register_kernel("cuda")(with_eager_fallback(
    "lorentzcv::fused_lift_backward", launch_triton_lift_backward, _fused_lift_backward_eager))


def launch_triton_log0(x: torch.Tensor, k: torch.Tensor, dim: int) -> torch.Tensor:
    """Run the forward Triton kernel of ``lorentzcv::fused_log0``."""
    T = _triton_module()
    x = _addressable(x, dim)
    outer, c1, inner, *_ = _ocs(x, dim)
    shape = list(x.shape)
    shape[dim] -= 1
    y = x.new_empty(shape)
    npix = outer * inner
    T.log0_fwd[(max(1, -(-npix // _BLOCK)),)](x, k, y, c1 - 1, inner, npix, *_strides(x, dim), *_strides(y, dim),
                                              BLOCK=_BLOCK)
    return y


def launch_triton_log0_backward(g: torch.Tensor, x: torch.Tensor, k: torch.Tensor, dim: int):
    """Run the backward Triton kernel of ``lorentzcv::fused_log0`` and the reduction of ``∂L/∂k``."""
    T = _triton_module()
    g, x = _addressable(g, dim), _addressable(x, dim)
    outer, c1, inner, *_ = _ocs(x, dim)
    g_x = torch.empty_like(x)
    if _ocs(g_x, dim) is None:
        g_x = x.new_empty(x.shape)
    npix = outer * inner
    nprog = max(1, -(-npix // _BLOCK))
    partial = x.new_empty(nprog)
    T.log0_bwd[(nprog,)](g, x, k, g_x, partial, c1 - 1, inner, npix, *_strides(g, dim), *_strides(x, dim),
                         *_strides(g_x, dim), BLOCK=_BLOCK)
    return g_x, partial.sum().reshape(k.shape).to(k.dtype)


_fused_log0_op.register_kernel("cuda")(with_eager_fallback("lorentzcv::fused_log0", launch_triton_log0, _log0_eager))
_fused_log0_backward_op.register_kernel("cuda")(with_eager_fallback(
    "lorentzcv::fused_log0_backward", launch_triton_log0_backward, _log0_backward_eager))
