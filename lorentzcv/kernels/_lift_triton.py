"""Triton kernels of the fused lift (see :mod:`lorentzcv.kernels.lift`; imported on first use).

Imported on first use only (Triton is needed on CUDA only). Triton's interpreter (``TRITON_INTERPRET=1`` in the
environment before Triton is first imported) runs these kernels on CPU tensors.

Per pixel (program lanes = pixels, a loop over the channels): ``sq = ‖v‖²``, the scalar math of
``lorentzcv.kernels.lift.fast_scale`` (``RESCALE``: 0 time only, 1 the point, 2 ``rescale_euclid`` of ``v``) in float32 (``asinh``, ``tanh``, ``sinh`` written with ``exp``/``log`` and
Taylor series near 0, so no cancellation), then the point; the backward mirrors ``lift_fast_backward`` and writes
one partial sum of ``∂L/∂k`` per program.
"""

import triton
import triton.language as tl

from ._triton_math import _log1p, _tanh_pos


@triton.jit
def _asinh_pos(n):  # n >= 0
    n2 = n * n
    return _log1p(n + n2 / (1.0 + tl.sqrt(1.0 + n2)))


@triton.jit
def _sinh_pos(b):  # b >= 0, Taylor below 0.5 (no cancellation)
    b2 = b * b
    ser = b * (1.0 + b2 / 6.0 * (1.0 + b2 / 20.0 * (1.0 + b2 / 42.0 * (1.0 + b2 / 72.0))))
    e = tl.exp(b)
    return tl.where(b < 0.5, ser, 0.5 * (e - 1.0 / e))


@triton.jit
def _scale(sq, k, m0, mc):  # rescaling: (ratio, n, r, th, b) per pixel, as fast_scale
    sk = tl.sqrt(k)
    m = tl.where(sk < 1.0, m0 * sk, m0)
    n = tl.sqrt(tl.maximum(sq, 1.1754943508222875e-38)) / sk
    r = _asinh_pos(tl.minimum(n, 1e18))
    th = _tanh_pos((mc * sk / m) * r)
    b = (m / sk) * th
    ratio = tl.where(sq > 0.0, _sinh_pos(b) / n, mc)
    return ratio, n, r, th, b


@triton.jit
def _scale_euclid(sq, k, m0, mc):  # rescale_euclid of v: (ratio, n, u, th) per pixel, as fast_scale(euclid=True)
    sk = tl.sqrt(k)
    m = tl.where(sk < 1.0, m0 * sk, m0)
    n = tl.sqrt(tl.maximum(sq, 1.1754943508222875e-38))
    u = (mc / m) * n
    th = _tanh_pos(u)
    ratio = tl.where(sq > 0.0, m * th / n, mc)
    return ratio, n, u, th


@triton.jit
def _source(xb, yb, c, sxc, syc, mask, SRC: tl.constexpr):
    """Channel ``c`` of the lift's input ``v``: space coordinates, ReLU of a point's space part, or a sum of two."""
    v = tl.load(xb + c * sxc, mask=mask, other=0.0).to(tl.float32)
    if SRC == 1:
        v = tl.maximum(v, 0.0)
    if SRC == 2:
        v += tl.load(yb + c * syc, mask=mask, other=0.0).to(tl.float32)
    return v


@triton.jit
def _dot_space(gb, ob, C, sgc, soc, mask, BLOCK: tl.constexpr):
    """Per pixel ``<g_s, out_s>`` (a loop over the space channels)."""
    acc = tl.zeros([BLOCK], dtype=tl.float32)
    for c in range(C):
        acc += tl.load(gb + (c + 1) * sgc, mask=mask, other=0.0).to(tl.float32) * \
            tl.load(ob + (c + 1) * soc, mask=mask, other=0.0)
    return acc


@triton.jit
def _pixels(npix, inner, BLOCK: tl.constexpr):
    """This program's pixels ``p = o·inner + i``: (program id, in-range mask, outer index o, inner index i)."""
    pid = tl.program_id(0)
    p = pid.to(tl.int64) * BLOCK + tl.arange(0, BLOCK)
    return pid, p < npix, p // inner, p % inner


@triton.jit
def lift_fwd(X, Y, K, OUT, SQ, C, inner, npix,
              sxo, sxc, sxi, syo, syc, syi, soo, soc, soi, sqo, sqi, m0, mc,
              SRC: tl.constexpr, RESCALE: tl.constexpr, BLOCK: tl.constexpr):
    pid, mask, o, i = _pixels(npix, inner, BLOCK)
    xb = X + o * sxo + i * sxi
    yb = Y + o * syo + i * syi
    if SRC != 0:  # the space part of a point starts at channel 1
        xb += sxc
        yb += syc
    sq = tl.zeros([BLOCK], dtype=tl.float32)
    for c in range(C):
        v = _source(xb, yb, c, sxc, syc, mask, SRC)
        sq += v * v
    k = tl.load(K).to(tl.float32)
    if RESCALE == 1:
        ratio, n, r, th, b = _scale(sq, k, m0, mc)
    elif RESCALE == 2:
        ratio, n, u, th = _scale_euclid(sq, k, m0, mc)
    else:
        ratio = tl.full([BLOCK], 1.0, tl.float32)
    ob = OUT + o * soo + i * soi
    tl.store(ob, tl.sqrt(ratio * ratio * sq + k), mask=mask)
    for c in range(C):
        v = _source(xb, yb, c, sxc, syc, mask, SRC)
        tl.store(ob + (c + 1) * soc, v * ratio, mask=mask)
    tl.store(SQ + o * sqo + i * sqi, sq, mask=mask)


@triton.jit
def lift_bwd(G, OUT, SQ, K, GIN, GKP, C, inner, npix,
              sgo, sgc, sgi, soo, soc, soi, sqo, sqi, sio, sic, sii, m0, mc,
              SRC: tl.constexpr, RESCALE: tl.constexpr, BLOCK: tl.constexpr):
    pid, mask, o, i = _pixels(npix, inner, BLOCK)
    gb = G + o * sgo + i * sgi
    ob = OUT + o * soo + i * soi
    ib = GIN + o * sio + i * sii
    k = tl.load(K).to(tl.float32)
    sq = tl.load(SQ + o * sqo + i * sqi, mask=mask, other=1.0)
    t = tl.load(ob, mask=mask, other=1.0)
    g_t = tl.load(gb, mask=mask, other=0.0).to(tl.float32)
    if RESCALE == 2:  # rescale_euclid (see lift_fast_backward)
        ratio, n, u, th = _scale_euclid(sq, k, m0, mc)
        inv = 1.0 / ratio
        big_g = _dot_space(gb, ob, C, sgc, soc, mask, BLOCK) * inv + g_t * ratio * sq / t  # ∂L/∂ratio
        one_th2 = 1.0 - th * th
        pos = sq > 0.0
        dr_dsq = tl.where(pos, (mc * one_th2 - ratio) / (2.0 * n * n), 0.0)
        g_sq = big_g * dr_dsq + g_t * ratio * ratio / (2.0 * t)
        c_s = ratio
        c_o = 2.0 * g_sq * inv
        sk = tl.sqrt(k)
        dm_dk = tl.where(sk < 1.0, m0 / (2.0 * sk), 0.0)  # m = m0·min(1, √k)
        dr_dk = tl.where(pos, dm_dk * (th - u * one_th2) / n, 0.0)
        gk = big_g * dr_dk + g_t / (2.0 * t)
    elif RESCALE == 1:
        ratio, n, r, th, b = _scale(sq, k, m0, mc)
        inv = 1.0 / ratio
        big_g = _dot_space(gb, ob, C, sgc, soc, mask, BLOCK) * inv + g_t * ratio * sq / t  # ∂L/∂ratio
        eb = tl.exp(b)
        ch = 0.5 * (eb + 1.0 / eb)
        one_th2 = 1.0 - th * th
        pos = sq > 0.0
        dr_dsq = tl.where(pos, (ch * (mc * one_th2) / tl.sqrt(1.0 + n * n) - ratio) / (2.0 * k * n * n), 0.0)
        g_sq = big_g * dr_dsq + g_t * ratio * ratio / (2.0 * t)
        c_s = ratio
        c_o = 2.0 * g_sq * inv
        sk = tl.sqrt(k)
        m = tl.where(sk < 1.0, m0 * sk, m0)
        u = (mc * sk / m) * r
        dr_dm = tl.where(pos, ch * (th - u * one_th2) / (sk * n), 0.0)
        dr_dk = -(sq / k) * dr_dsq - tl.where(k >= 1.0, m / (2.0 * k), 0.0) * dr_dm
        gk = big_g * dr_dk + g_t / (2.0 * t)
    else:
        h = g_t / t
        c_s = tl.full([BLOCK], 1.0, tl.float32)
        c_o = h
        gk = 0.5 * h
    if SRC != 0:  # the gradient of a point: zero time entry, space from channel 1
        tl.store(ib, tl.zeros([BLOCK], dtype=tl.float32), mask=mask)
        ib += sic
    for c in range(C):
        gs = tl.load(gb + (c + 1) * sgc, mask=mask, other=0.0).to(tl.float32)
        os_ = tl.load(ob + (c + 1) * soc, mask=mask, other=0.0)
        v = gs * c_s + os_ * c_o
        if SRC == 1:
            v = tl.where(os_ > 0.0, v, 0.0)
        tl.store(ib + c * sic, v, mask=mask)
    tl.store(GKP + pid, tl.sum(tl.where(mask, gk, 0.0), axis=0))


@triton.jit
def _log0_scalars(sq, k):  # (f, h, z²) of lorentzcv.kernels.lift._log0_scalars
    z2 = sq / k
    z = tl.sqrt(z2)
    zs = tl.where(z < 0.2, 1.0, z)
    f = tl.where(z < 0.2, 1.0 - z2 / 6.0 + 3.0 * z2 * z2 / 40.0, _asinh_pos(zs) / zs)
    h_direct = (1.0 / tl.sqrt(1.0 + z2) - f) / tl.where(z < 0.2, 1.0, z2)
    h = tl.where(z < 0.2, -1.0 / 3.0 + z2 * (3.0 / 10.0 + z2 * (-15.0 / 56.0 + z2 * (35.0 / 144.0))), h_direct)
    return f, h, z2


@triton.jit
def log0_fwd(X, K, Y, C, inner, npix, sxo, sxc, sxi, syo, syc, syi, BLOCK: tl.constexpr):
    pid, mask, o, i = _pixels(npix, inner, BLOCK)
    xb = X + o * sxo + i * sxi + sxc  # the space part starts at channel 1
    yb = Y + o * syo + i * syi
    sq = tl.zeros([BLOCK], dtype=tl.float32)
    for c in range(C):
        v = tl.load(xb + c * sxc, mask=mask, other=0.0)
        sq += v * v
    f, h, z2 = _log0_scalars(sq, tl.load(K).to(tl.float32))
    for c in range(C):
        tl.store(yb + c * syc, f * tl.load(xb + c * sxc, mask=mask, other=0.0), mask=mask)


@triton.jit
def log0_bwd(G, X, K, GX, GKP, C, inner, npix, sgo, sgc, sgi, sxo, sxc, sxi, sio, sic, sii, BLOCK: tl.constexpr):
    pid, mask, o, i = _pixels(npix, inner, BLOCK)
    gb = G + o * sgo + i * sgi
    xb = X + o * sxo + i * sxi + sxc
    ib = GX + o * sio + i * sii
    sq = tl.zeros([BLOCK], dtype=tl.float32)
    gx = tl.zeros([BLOCK], dtype=tl.float32)
    for c in range(C):
        v = tl.load(xb + c * sxc, mask=mask, other=0.0)
        sq += v * v
        gx += tl.load(gb + c * sgc, mask=mask, other=0.0) * v
    k = tl.load(K).to(tl.float32)
    f, h, z2 = _log0_scalars(sq, k)
    co = h / k * gx
    tl.store(ib, tl.zeros([BLOCK], dtype=tl.float32), mask=mask)  # the time coordinate gets no gradient
    for c in range(C):
        v = tl.load(xb + c * sxc, mask=mask, other=0.0)
        tl.store(ib + (c + 1) * sic, f * tl.load(gb + c * sgc, mask=mask, other=0.0) + co * v, mask=mask)
    tl.store(GKP + pid, tl.sum(tl.where(mask, -(gx * h * z2) / (2.0 * k), 0.0), axis=0))
