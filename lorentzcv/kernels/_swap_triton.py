"""Triton kernels of the fused manifold swap (see :mod:`lorentzcv.kernels.swap`; imported on first use).

One program per point (a row ``(1+C)`` of float32, time first). Per row, with ``n = ‖x_s‖``:
``d = √k₁·asinh(n/√k₁)`` (``‖log₀ x‖``), optionally ``d ← m·tanh(mc·d/m)`` (``rescale_euclid``, ``m = m0·min(1, √k₂)``),
``b = min(d/√k₂, maxrap)``, ``ratio = √k₂·sinh(b)/n`` (its limit ``mc`` or 1 at ``n = 0``), ``y_s = ratio·x_s``,
``y_0 = √(ratio²n² + k₂)``. The backward differentiates the same scalars by hand (module docstring of
:mod:`lorentzcv.kernels.swap`) and writes one partial of ∂L/∂k₁ and ∂L/∂k₂ per row. ``asinh``/``sinh``/``cosh``/
``tanh`` are written with ``exp``/``log`` (no cancellation near 0), so the kernels run in Triton's interpreter.
"""

import triton
import triton.language as tl

from ._lift_triton import _asinh_pos, _sinh_pos
from ._triton_math import _row, _tanh_pos


@triton.jit
def _scalars(sq, k1, k2, m0, mc, maxrap, RESCALE: tl.constexpr):
    """``(n, d, dp, u, th, b, ratio, m)`` of one row (module docstring)."""
    sk1 = tl.sqrt(k1)
    sk2 = tl.sqrt(k2)
    n = tl.sqrt(tl.maximum(sq, 1.1754943508222875e-38))
    d = sk1 * _asinh_pos(n / sk1)
    m = tl.where(sk2 < 1.0, m0 * sk2, m0)
    if RESCALE:
        u = (mc / m) * d
        th = _tanh_pos(u)
        dp = m * th
        lim = mc
    else:
        u = d * 0.0
        th = u
        dp = d
        lim = 1.0
    b = tl.minimum(dp / sk2, maxrap)
    ratio = tl.where(sq > 0.0, sk2 * _sinh_pos(b) / n, lim)
    return n, d, dp, u, th, b, ratio, m


@triton.jit
def swap_fwd(x_ptr, y_ptr, k1_ptr, k2_ptr, width, m0, mc, maxrap, RESCALE: tl.constexpr, BLOCK: tl.constexpr):
    row, base, offs, mask, is_t = _row(width, BLOCK)
    x = tl.where(is_t, 0.0, tl.load(x_ptr + base + offs, mask=mask, other=0.0))
    k2 = tl.load(k2_ptr).to(tl.float32)
    sq = tl.sum(x * x, axis=0)
    n, d, dp, u, th, b, ratio, m = _scalars(sq, tl.load(k1_ptr).to(tl.float32), k2, m0, mc, maxrap, RESCALE)
    tl.store(y_ptr + base + offs, tl.where(is_t, tl.sqrt(ratio * ratio * sq + k2), ratio * x), mask=mask)


@triton.jit
def swap_bwd(g_ptr, x_ptr, gx_ptr, part_ptr, k1_ptr, k2_ptr, width, rows, m0, mc, maxrap, RESCALE: tl.constexpr,
             BLOCK: tl.constexpr):
    """∂L/∂x of one row and its partials of ∂L/∂k₁ (``part[row]``) and ∂L/∂k₂ (``part[rows + row]``)."""
    row, base, offs, mask, is_t = _row(width, BLOCK)
    x = tl.where(is_t, 0.0, tl.load(x_ptr + base + offs, mask=mask, other=0.0))
    g = tl.load(g_ptr + base + offs, mask=mask, other=0.0)
    k1 = tl.load(k1_ptr).to(tl.float32)
    k2 = tl.load(k2_ptr).to(tl.float32)
    sk1 = tl.sqrt(k1)
    sk2 = tl.sqrt(k2)
    sq = tl.sum(x * x, axis=0)
    n, d, dp, u, th, b, ratio, m = _scalars(sq, k1, k2, m0, mc, maxrap, RESCALE)
    g0 = tl.sum(tl.where(is_t, g, 0.0), axis=0)
    s = tl.sum(tl.where(is_t, 0.0, g) * x, axis=0)
    t = tl.sqrt(ratio * ratio * sq + k2)
    # L = g0·t + ratio·s, t = √(ratio²·sq + k2)
    g_ratio = s + g0 * ratio * sq / t
    # ratio = √k2·sinh(b)/n, b = d'/√k2 (unless clamped), d' = m·tanh(mc·d/m) (rescaling) or d, d = √k1·asinh(n/√k1)
    eb = tl.exp(b)
    cosh_b = 0.5 * (eb + 1.0 / eb)
    sinh_b = _sinh_pos(b)
    free = dp / sk2 < maxrap  # b not clamped
    dn = sk1 / tl.sqrt(k1 + sq)  # ∂d/∂n
    dk1 = (_asinh_pos(n / sk1) - n / tl.sqrt(k1 + sq)) / (2.0 * sk1)  # ∂d/∂k1
    if RESCALE:
        sech2 = 1.0 - th * th
        ddp = mc * sech2  # ∂d'/∂d
        dm = th - u * sech2  # ∂d'/∂m
        m_sk = tl.where(sk2 < 1.0, m0, 0.0)  # ∂m/∂√k2
    else:
        ddp = 1.0
        dm = 0.0
        m_sk = 0.0
    chain = tl.where(free, cosh_b * ddp, 0.0)  # n·∂ratio/∂d (through b)
    # n·∂ratio/∂n = cosh(b)·∂d'/∂d·∂d/∂n - ratio, n·∂ratio/∂√k2 = sinh(b) + cosh(b)·(∂d'/∂m·∂m/∂√k2 - b)
    r_n = (chain * dn - ratio) / n
    r_sk2 = (sinh_b + tl.where(free, cosh_b * (dm * m_sk - b), 0.0)) / n
    r_k1 = chain * dk1 / n
    pos = sq > 0.0
    g_sq = g0 * ratio * ratio / (2.0 * t) + tl.where(pos, g_ratio * r_n / (2.0 * n), 0.0)
    gx = tl.where(is_t, 0.0, ratio * g + 2.0 * g_sq * x)
    tl.store(gx_ptr + base + offs, gx, mask=mask)
    tl.store(part_ptr + row, tl.where(pos, g_ratio * r_k1, 0.0))
    tl.store(part_ptr + rows + row, g0 / (2.0 * t) + tl.where(pos, g_ratio * r_sk2 / (2.0 * sk2), 0.0))
