"""Triton kernels of the fused Lorentz MLR (see :mod:`lorentzcv.kernels.mlr`; imported on first use).

One program per class ``c`` (its direction ``z_c`` loaded once, ``‖z_c‖`` reduced in registers), a loop over the
batch in blocks: the forward epilogue turns ``P = x_s z^T`` (a matrix product) into logits, the backward writes the
per-element ``G_α``, the row ``W_c = (-sinh(a_c/√k)‖z_c‖, cosh(a_c/√k) z_c)`` (``∂L/∂x = G_α W``, one more matrix
product), ``∂L/∂a_c``, the coefficient of ``z_c`` in ``∂L/∂z`` and one partial of ``∂L/∂k``; ``grad_z`` finishes the
direction gradient from ``G_αᵀ x_s``. ``asinh``/``sinh``/``cosh`` are written with ``exp``/``log`` so the kernels
run in Triton's interpreter.
"""

import triton
import triton.language as tl

from ._lift_triton import _asinh_pos


@triton.jit
def _asinh(t):
    return tl.where(t < 0.0, -_asinh_pos(-t), _asinh_pos(t))


@triton.jit
def _class(z_ptr, a_ptr, k_ptr, C, BLOCK_C: tl.constexpr):
    """``(c, z_c lanes, mask, ‖z_c‖, sinh(r), cosh(r), r = a_c/√k, √k, a_c)`` of this program's class."""
    c = tl.program_id(0).to(tl.int64)
    cs = tl.arange(0, BLOCK_C)
    cm = cs < C
    z = tl.load(z_ptr + c * C + cs, mask=cm, other=0.0)
    zn = tl.maximum(tl.sqrt(tl.sum(z * z, axis=0)), 1.1754943508222875e-38)
    sk = tl.sqrt(tl.load(k_ptr).to(tl.float32))
    a = tl.load(a_ptr + c)
    r = a / sk
    e = tl.exp(r)
    # sinh without cancellation near 0: (expm1(r) - expm1(-r)) / 2 with expm1 from log1p's identity
    em1 = tl.where(e == 1.0, r, (e - 1.0) * r / tl.log(e))
    ie = 1.0 / e
    em1n = tl.where(ie == 1.0, -r, (ie - 1.0) * (-r) / tl.log(ie))
    return c, cs, cm, z, zn, 0.5 * (em1 - em1n), 0.5 * (e + ie), r, sk, a


@triton.jit
def mlr_fwd(p_ptr, x_ptr, z_ptr, a_ptr, k_ptr, out_ptr, B, C, NCLS, sxb, BLOCK_C: tl.constexpr, BLOCK_B: tl.constexpr):
    c, cs, cm, z, zn, sh, ch, r, sk, a = _class(z_ptr, a_ptr, k_ptr, C, BLOCK_C)
    beta = sk * zn
    for b0 in range(0, B, BLOCK_B):
        bs = b0 + tl.arange(0, BLOCK_B)
        bm = bs < B
        p = tl.load(p_ptr + bs * NCLS + c, mask=bm, other=0.0)
        x0 = tl.load(x_ptr + bs * sxb, mask=bm, other=0.0)
        alpha = -sh * zn * x0 + ch * p
        tl.store(out_ptr + bs * NCLS + c, beta * _asinh(alpha / beta), mask=bm)


@triton.jit
def mlr_bwd(g_ptr, p_ptr, x_ptr, z_ptr, a_ptr, k_ptr, ga_ptr, w_ptr, gaz_ptr, part_ptr, B, C, NCLS, sxb,
            BLOCK_C: tl.constexpr, BLOCK_B: tl.constexpr):
    """Per class: ``G_α`` (column ``c`` of ``ga``), ``W_c`` (row ``c`` of ``w``, ``1+C`` entries), and in ``gaz`` the
    triple ``(∂L/∂a_c, ∂L/∂‖z_c‖ / ‖z_c‖, cosh(a_c/√k))``, in ``part`` the class's partial of ``∂L/∂k``."""
    c, cs, cm, z, zn, sh, ch, r, sk, a = _class(z_ptr, a_ptr, k_ptr, C, BLOCK_C)
    beta = sk * zn
    g_r = 0.0
    g_zn = 0.0
    g_beta_zn = 0.0
    for b0 in range(0, B, BLOCK_B):
        bs = b0 + tl.arange(0, BLOCK_B)
        bm = bs < B
        p = tl.load(p_ptr + bs * NCLS + c, mask=bm, other=0.0)
        x0 = tl.load(x_ptr + bs * sxb, mask=bm, other=0.0)
        g = tl.load(g_ptr + bs * NCLS + c, mask=bm, other=0.0)
        alpha = -sh * zn * x0 + ch * p
        t = alpha / beta
        q = tl.sqrt(1.0 + t * t)
        ga = g / q  # ∂logit/∂α = 1/√(1+t²)
        gb = g * (_asinh(t) - t / q)  # ∂logit/∂β
        tl.store(ga_ptr + bs * NCLS + c, ga, mask=bm)
        g_r += tl.sum(ga * (-ch * zn * x0 + sh * p), axis=0)
        g_zn += tl.sum(ga * (-sh * x0) + gb * sk, axis=0)
        g_beta_zn += tl.sum(gb * zn, axis=0)
    tl.store(w_ptr + c * (C + 1), -sh * zn)
    tl.store(w_ptr + c * (C + 1) + 1 + cs, ch * z, mask=cm)
    tl.store(gaz_ptr + c * 3, g_r / sk)
    tl.store(gaz_ptr + c * 3 + 1, g_zn / zn)
    tl.store(gaz_ptr + c * 3 + 2, ch)
    # ∂L/∂√k = Σ G_β‖z‖ + ∂L/∂r · (-a/k); ∂L/∂k = ∂L/∂√k / (2√k)
    tl.store(part_ptr + c, (g_beta_zn - g_r * a / (sk * sk)) / (2.0 * sk))


@triton.jit
def mlr_grad_z(m_ptr, z_ptr, gaz_ptr, gz_ptr, C, BLOCK_C: tl.constexpr):
    """``∂L/∂z_c = cosh(a_c/√k)·(G_αᵀ x_s)_c + (∂L/∂‖z_c‖ / ‖z_c‖)·z_c``."""
    c = tl.program_id(0).to(tl.int64)
    cs = tl.arange(0, BLOCK_C)
    cm = cs < C
    mrow = tl.load(m_ptr + c * C + cs, mask=cm, other=0.0)
    z = tl.load(z_ptr + c * C + cs, mask=cm, other=0.0)
    tl.store(gz_ptr + c * C + cs, tl.load(gaz_ptr + c * 3 + 2) * mrow + tl.load(gaz_ptr + c * 3 + 1) * z, mask=cm)
