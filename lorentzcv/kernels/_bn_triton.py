"""Triton kernels of the fused Lorentz batch norm (see :mod:`lorentzcv.kernels.batch_norm`).

Imported on first use only (Triton is needed on CUDA only). Triton's interpreter (``TRITON_INTERPRET=1`` in the
environment before Triton is first imported) runs these kernels on CPU tensors.

The input is ``x`` of shape ``(B, 1+C, N)`` (contiguous), pixels ``p = b·N + n`` are the program lanes and the
channels a loop. The math is the closed form of ``lorentzcv.kernels.batch_norm`` (``pixel_forward``,
``pixel_backward``, ``constants``, ``constants_backward``) written for float32 registers: ``y_s = A Δ_s + B' μ_s +
D β_s`` with ``Δ = x - μ`` and per-pixel scalars ``A, B', D``.

Kernels (launch order):

* ``bn_constants`` (1 program): μ from the per-sample means ``m`` (training; the centroid of the normalised
  per-sample means for maps, of the raw means for vectors) or ``exp0(running_mean)`` (eval), then
  ``SC = [β_0, μ_s·β_s, μ_0]``.
* ``bn_stats`` (training): per-program partial sums of the per-pixel norm (the batch σ is their mean).
* ``bn_output``: σ (the sum of the partials, or the running σ), the coefficients, ``y``; in training its first
  program also updates the running statistics (log0 of the centroid with exp0(rm), σ's EMA; ``_running_update``).
* ``bn_backward_scale`` (training): partial sums of ∂L/∂s (σ's gradient needs their total first).
* ``bn_backward_pixels``: per-pixel ``A, ∂L/∂n2, ∂L/∂p1, ∂L/∂x_0``, per-program per-channel partials of
  ∂L/∂[μ_s, β_s] and per-program partials of the scalar gradients.
* ``bn_backward_constants`` (1 program): the constants' backward → ∂L/∂m (per sample), ∂L/∂β (0 at β_0), ∂L/∂γ,
  ∂L/∂k.
* ``bn_backward_input``: ``∂L/∂x``.
"""

import triton
import triton.language as tl

from ._triton_math import _log1p, _tanh_pos

_TINY = 1e-30
_QF = 1.1920928955078125e-07  # float32 epsilon: floor of a²-1 under the square root
_MAXR = 43.36172580718994  # lorentzcv.geometry.math.max_rapidity(float32) = ½·log(float32 max) - 1


@triton.jit
def _expm1(x):  # x >= 0
    u = tl.exp(x)
    return tl.where(u == 1.0, x, (u - 1.0) * x / tl.log(u))


@triton.jit
def _asinhc(z):  # asinh(z)/z for z >= 0
    z2 = z * z
    a = _log1p(z + z2 / (1.0 + tl.sqrt(1.0 + z2)))
    return tl.where(z < 1e-4, 1.0 - z2 / 6.0, a / tl.maximum(z, 1e-30))


@triton.jit
def _sinhc_cosh(theta):
    """(|θ|, max(|θ|, tiny), sinh θ_c, sinh θ_c/|θ|, cosh θ_c) with θ_c = min(|θ|, max rapidity)."""
    th = tl.abs(theta)
    u = _expm1(tl.minimum(th, _MAXR))
    r = u / (u + 1.0)
    sinh = 0.5 * (u + r)
    ch = 1.0 + 0.5 * u * r
    ths = tl.maximum(th, _TINY)
    return th, ths, sinh, sinh / ths, ch


@triton.jit
def _sinhc_cosh_prime(theta, th, ths, sinh, sh, ch):
    sgn = theta / ths
    shp = (ch - sh) * sgn / ths
    t2 = th * th
    ser = theta * (1.0 / 3.0 + t2 * (1.0 / 30.0 + t2 * (1.0 / 840.0 + t2 / 45360.0)))
    shp = tl.where(th < 0.3, ser, shp)
    chp = sinh * sgn
    clamped = th > _MAXR
    shp = tl.where(clamped, -sh * sgn / ths, shp)
    chp = tl.where(clamped, 0.0, chp)
    return shp, chp


@triton.jit
def _tanhc_prime(z, zs, tz, tc):
    direct = (1.0 - tz * tz - tc) / zs
    t2 = z * z
    ser = 14.0 * (-929569.0 / 638512875.0)
    ser = 12.0 * (21844.0 / 6081075.0) + t2 * ser
    ser = 10.0 * (-1382.0 / 155925.0) + t2 * ser
    ser = 8.0 * (62.0 / 2835.0) + t2 * ser
    ser = 6.0 * (-17.0 / 315.0) + t2 * ser
    ser = 4.0 * (2.0 / 15.0) + t2 * ser
    ser = 2.0 * (-1.0 / 3.0) + t2 * ser
    return tl.where(z < 0.3, z * ser, direct)


@triton.jit
def _f_prime(t, q, f):
    direct = (1.0 - (1.0 + t) * f) / q
    ser = -1.0 / 3.0 + t * (4.0 / 15.0 + t * (-6.0 / 35.0 + t * (32.0 / 315.0 - t * (40.0 / 693.0))))
    return tl.where(t < 0.05, ser, direct)


@triton.jit
def _pixel(dt, n2, p1, k, sk, mu_t, beta_t, mb, gamma, var, eps, cr, Mc,
           RHL: tl.constexpr, RESCALE: tl.constexpr):
    """Per-pixel forward scalars (``pixel_forward``); returns everything the backward reuses."""
    t = tl.maximum((n2 - dt * dt) / (2.0 * k), 0.0)
    q = tl.maximum(t * (t + 2.0), _QF)
    sq = tl.sqrt(q)
    acosh = _log1p(t + sq)
    f = acosh / sq
    d = sk * acosh
    xm = dt - t * mu_t
    vt = f * xm
    if RHL:
        norm = tl.sqrt(tl.maximum(d * d + 2.0 * vt * vt, _TINY))
    else:
        norm = d
    den = var + eps
    s = gamma / den
    ne = tl.abs(s) * norm
    z = cr * ne
    zs = tl.maximum(z, _TINY)
    tz = _tanh_pos(zs)
    tc = tz / zs
    rho = Mc * tc
    if RESCALE:
        scale = s * rho
    else:
        scale = s
    theta = scale * acosh
    alpha = scale * f
    th, ths, sinh, sh, ch = _sinhc_cosh(theta)
    A = sh * alpha
    cden = sk + mu_t
    cm1 = (t * sk + dt) / cden
    if RHL:
        mbL = mb - mu_t * beta_t
        L = k - mbL
        w = p1 - beta_t * dt - t * mbL
        lam = alpha * w / L
        Bp = sh * lam - A * t
    else:
        L = k + sk * beta_t
        w = p1 - cm1 * mb
        lam = alpha * w / L
        Bp = -(A * cm1)
    D = ch + sh * lam
    return (A, Bp, D, t, q, sq, acosh, f, d, xm, vt, norm, den, s, ne, z, zs, tz, tc, rho, scale, theta, th, ths,
            sinh, sh, ch, alpha, cden, cm1, L, w, lam)


@triton.jit
def _load_consts(SC, K, GAMMA, BS_unused):
    k = tl.load(K).to(tl.float32)
    beta_t = tl.load(SC + 0)
    mb = tl.load(SC + 1)
    mu_t = tl.load(SC + 2)
    gamma = tl.load(GAMMA).to(tl.float32)
    return k, tl.sqrt(k), beta_t, mb, mu_t, gamma


@triton.jit
def _delta_stats(X, MU, BS, xb, N, C, mask):
    """``Δ_0``, ``‖Δ_s‖²``, ``β_s·Δ_s`` per pixel (a loop over the channels)."""
    dt = tl.load(xb, mask=mask, other=0.0) - tl.load(MU)
    n2 = dt * 0.0
    p1 = dt * 0.0
    for c in range(C):
        dc = tl.load(xb + (c + 1) * N, mask=mask, other=0.0) - tl.load(MU + 1 + c)
        n2 += dc * dc
        p1 += tl.load(BS + c) * dc
    return dt, n2, p1


@triton.jit
def _batch_mean(M, B, C1, cs, cm, sk, sgn, TWO_STAGE: tl.constexpr, BLOCK_C: tl.constexpr):
    """(m̄, n): the mean of the normalised per-sample means (maps) or of the raw means (vectors), and the norm
    ``sqrt(|<m̄,m̄>_L|)`` that makes it a point, ``μ = √k·m̄/n``."""
    acc = tl.zeros([BLOCK_C], dtype=tl.float32)
    for b in range(B):
        v = tl.load(M + b * C1 + cs, mask=cm, other=0.0)
        if TWO_STAGE:
            nb = tl.sqrt(tl.maximum(tl.abs(tl.sum(sgn * v * v, axis=0)), 1e-8))
            acc += sk * v / nb
        else:
            acc += v
    mbar = acc / B
    return mbar, tl.sqrt(tl.maximum(tl.abs(tl.sum(sgn * mbar * mbar, axis=0)), 1e-8))


@triton.jit
def bn_constants(M, RM, BS, K, MU, SC, B, C1, TWO_STAGE: tl.constexpr, TRAINING: tl.constexpr,
                 BLOCK_C: tl.constexpr):
    cs = tl.arange(0, BLOCK_C)
    cm = cs < C1
    k = tl.load(K).to(tl.float32)
    sk = tl.sqrt(k)
    sgn = tl.where(cs == 0, -1.0, 1.0)
    if TRAINING:
        mbar, n = _batch_mean(M, B, C1, cs, cm, sk, sgn, TWO_STAGE, BLOCK_C)
        mu = sk * mbar / n
    else:  # μ = exp0(running_mean)
        rs = tl.load(RM + cs, mask=cm & (cs > 0), other=0.0)
        theta = tl.sqrt(tl.sum(rs * rs, axis=0)) / sk
        th, ths, sinh, sh, ch = _sinhc_cosh(theta)
        mu = tl.where(cs == 0, sk * ch, sh * rs)
    tl.store(MU + cs, mu, mask=cm)
    bs = tl.load(BS + cs - 1, mask=cm & (cs > 0), other=0.0)
    tl.store(SC + 0, tl.sqrt(tl.sum(bs * bs, axis=0) + k))
    tl.store(SC + 1, tl.sum(tl.where(cs > 0, mu, 0.0) * bs, axis=0))
    tl.store(SC + 2, tl.sum(tl.where(cs == 0, mu, 0.0), axis=0))


@triton.jit
def _pixels(npix, N, C, BLOCK: tl.constexpr):
    """This program's pixels ``p = b·N + n``: (program id, p, in-range mask, sample b, offset of (b, 0, n))."""
    pid = tl.program_id(0)
    p = pid.to(tl.int64) * BLOCK + tl.arange(0, BLOCK)
    b = p // N
    return pid, p, p < npix, b, b * (C + 1) * N + p % N


@triton.jit
def bn_stats(X, MU, BS, SC, K, GAMMA, PART, N, C, npix, RHL: tl.constexpr, BLOCK: tl.constexpr):
    pid, p, mask, b, off = _pixels(npix, N, C, BLOCK)
    xb = X + off
    k, sk, beta_t, mb, mu_t, gamma = _load_consts(SC, K, GAMMA, BS)
    dt, n2, p1 = _delta_stats(X, MU, BS, xb, N, C, mask)
    t = tl.maximum((n2 - dt * dt) / (2.0 * k), 0.0)
    sq = tl.sqrt(tl.maximum(t * (t + 2.0), _QF))
    acosh = _log1p(t + sq)
    d = sk * acosh
    if RHL:
        vt = acosh / sq * (dt - t * mu_t)
        norm = tl.sqrt(tl.maximum(d * d + 2.0 * vt * vt, _TINY))
    else:
        norm = d
    tl.store(PART + pid, tl.sum(tl.where(mask, norm, 0.0), axis=0))


@triton.jit
def _var(PART, RV, nprog, count, TRAINING: tl.constexpr, BLOCK: tl.constexpr):
    if TRAINING:
        acc = tl.zeros([BLOCK], dtype=tl.float32)
        for j in range(0, nprog, BLOCK):
            idx = j + tl.arange(0, BLOCK)
            acc += tl.load(PART + idx, mask=idx < nprog, other=0.0)
        return tl.sum(acc, axis=0) / count
    else:
        return tl.load(RV).to(tl.float32)


@triton.jit
def bn_output(X, Y, MU, BS, SC, K, GAMMA, PART, RV, VAR, RM, NBT, N, C, npix, nprog, eps, m0, Mc, momentum,
              RHL: tl.constexpr, RESCALE: tl.constexpr, TRAINING: tl.constexpr, CUMULATIVE: tl.constexpr,
              BLOCK: tl.constexpr, BLOCK_C: tl.constexpr):
    pid, p, mask, b, off = _pixels(npix, N, C, BLOCK)
    xb = X + off
    yb = Y + off
    k, sk, beta_t, mb, mu_t, gamma = _load_consts(SC, K, GAMMA, BS)
    cr = Mc / (m0 * tl.minimum(sk, 1.0))  # rescaling: ρ = m·c·tanhc(cr·n) (m0 = 1, Mc = 0 without)
    var = _var(PART, RV, nprog, npix, TRAINING, BLOCK)
    if pid == 0:
        tl.store(VAR, var)
        if TRAINING:  # (no other program reads RM/RV in training)
            _running_update(MU, var, K, RM, RV, NBT, C + 1, momentum, CUMULATIVE, BLOCK_C)
    dt, n2, p1 = _delta_stats(X, MU, BS, xb, N, C, mask)
    r = _pixel(dt, n2, p1, k, sk, mu_t, beta_t, mb, gamma, var, eps, cr, Mc, RHL, RESCALE)
    A, Bp, D = r[0], r[1], r[2]
    ysq = dt * 0.0
    for c in range(C):
        mus = tl.load(MU + 1 + c)
        dc = tl.load(xb + (c + 1) * N, mask=mask, other=0.0) - mus
        yc = A * dc + Bp * mus + D * tl.load(BS + c)
        ysq += yc * yc
        tl.store(yb + (c + 1) * N, yc, mask=mask)
    tl.store(yb, tl.sqrt(ysq + k), mask=mask)


@triton.jit
def _running_update(MU, var, K, RM, RV, NBT, C1, momentum, CUMULATIVE: tl.constexpr, BLOCK_C: tl.constexpr):
    """The running statistics in place: ``rm ← log0(centroid([exp0(rm), μ], w=(1-m, m)))``, ``rv ← (1-m) rv + m σ``,
    ``n += 1`` (``CUMULATIVE``: ``m = 1/n``)."""
    cs = tl.arange(0, BLOCK_C)
    cm = cs < C1
    k = tl.load(K).to(tl.float32)
    sk = tl.sqrt(k)
    nbt = tl.load(NBT) + 1
    tl.store(NBT, nbt)
    if CUMULATIVE:
        mom = 1.0 / nbt.to(tl.float32)
    else:
        mom = momentum
    rs = tl.load(RM + cs, mask=cm & (cs > 0), other=0.0)
    theta = tl.sqrt(tl.sum(rs * rs, axis=0)) / sk
    th, ths, sinh, sh, ch = _sinhc_cosh(theta)
    p = tl.where(cs == 0, sk * ch, sh * rs)  # exp0(rm)
    mu = tl.load(MU + cs, mask=cm, other=0.0)
    c = p + mom * (mu - p)
    sgn = tl.where(cs == 0, -1.0, 1.0)
    c = sk * c / tl.sqrt(tl.maximum(tl.abs(tl.sum(sgn * c * c, axis=0)), 1e-8))
    cs_ = tl.where(cs > 0, c, 0.0)
    z = tl.sqrt(tl.sum(cs_ * cs_, axis=0)) / sk
    tl.store(RM + cs, _asinhc(z) * cs_, mask=cm)
    rv = tl.load(RV)
    tl.store(RV, (1.0 - mom) * rv + mom * var)


@triton.jit
def _grad_stats(GY, Y, MU, BS, gyb, yb, xb, N, C, mask):
    """``w = ∂L/∂y_0 / y_0`` and the per-pixel reductions of ``G = ∂L/∂y_s + w y_s``: ``G·Δ_s, G·μ_s, G·β_s``."""
    w = tl.load(gyb, mask=mask, other=0.0) / tl.load(yb, mask=mask, other=1.0)
    gA = w * 0.0
    gB = w * 0.0
    gD = w * 0.0
    for c in range(C):
        mus = tl.load(MU + 1 + c)
        G = tl.load(gyb + (c + 1) * N, mask=mask, other=0.0) + tl.load(yb + (c + 1) * N, mask=mask, other=0.0) * w
        gA += G * (tl.load(xb + (c + 1) * N, mask=mask, other=0.0) - mus)
        gB += G * mus
        gD += G * tl.load(BS + c)
    return w, gA, gB, gD


@triton.jit
def _pixel_grads(gA, gB, gD, dt, k, sk, mu_t, beta_t, mb, Mc, cr, r, RHL: tl.constexpr, RESCALE: tl.constexpr):
    """First half of ``pixel_backward`` (up to ∂L/∂scale); returns the per-pixel pieces and ∂L/∂s's summand."""
    (A, Bp, D, t, q, sq, acosh, f, d, xm, vt, norm, den, s, ne, z, zs, tz, tc, rho, scale, theta, th, ths,
     sinh, sh, ch, alpha, cden, cm1, L, w, lam) = r
    if RHL:
        mbL = mb - mu_t * beta_t
        g_sh = gA * alpha + gB * (lam - alpha * t) + gD * lam
        g_lam = (gB + gD) * sh
        g_w = g_lam * alpha / L
        g_alpha = (gA - gB * t) * sh + g_lam * w / L
        g_t = -(gB * A + g_w * mbL)
        g_dt = -g_w * beta_t
        g_cm1 = g_t * 0.0
    else:
        gAc = gA - gB * cm1
        g_sh = gAc * alpha + gD * lam
        g_lam = gD * sh
        g_w = g_lam * alpha / L
        g_alpha = gAc * sh + g_lam * w / L
        g_cm1 = -(gB * A + g_w * mb)
        g_t = g_cm1 * (sk / cden)
        g_dt = g_cm1 / cden
    shp, chp = _sinhc_cosh_prime(theta, th, ths, sinh, sh, ch)
    g_theta = g_sh * shp + gD * chp
    g_scale = g_theta * acosh + g_alpha * f
    g_acosh = g_theta * scale
    g_f = g_alpha * scale
    if RESCALE:
        tcp = _tanhc_prime(z, zs, tz, tc)
        g_ne = g_scale * s * Mc * tcp
        gs_pix = g_scale * rho + g_ne * cr * norm * tl.where(s > 0, 1.0, tl.where(s < 0, -1.0, 0.0))
        g_norm = g_ne * cr * tl.abs(s)
    else:
        g_ne = g_scale * 0.0
        gs_pix = g_scale
        g_norm = g_scale * 0.0
    return g_lam, g_w, g_t, g_dt, g_acosh, g_f, g_ne, g_norm, gs_pix, g_cm1


@triton.jit
def bn_backward_scale(X, Y, GY, MU, BS, SC, K, GAMMA, VAR, PART, N, C, npix, eps, m0, Mc,
                      RHL: tl.constexpr, RESCALE: tl.constexpr, BLOCK: tl.constexpr):
    pid, p, mask, b, off = _pixels(npix, N, C, BLOCK)
    k, sk, beta_t, mb, mu_t, gamma = _load_consts(SC, K, GAMMA, BS)
    cr = Mc / (m0 * tl.minimum(sk, 1.0))  # rescaling: ρ = m·c·tanhc(cr·n) (m0 = 1, Mc = 0 without)
    var = tl.load(VAR)
    dt, n2, p1 = _delta_stats(X, MU, BS, X + off, N, C, mask)
    r = _pixel(dt, n2, p1, k, sk, mu_t, beta_t, mb, gamma, var, eps, cr, Mc, RHL, RESCALE)
    w, gA, gB, gD = _grad_stats(GY, Y, MU, BS, GY + off, Y + off, X + off, N, C, mask)
    g = _pixel_grads(gA, gB, gD, dt, k, sk, mu_t, beta_t, mb, Mc, cr, r, RHL, RESCALE)
    tl.store(PART + pid, tl.sum(tl.where(mask, g[8], 0.0), axis=0))


@triton.jit
def bn_backward_pixels(X, Y, GY, MU, BS, SC, K, GAMMA, VAR, SPART, PIX, CPART, SCPART, N, C, npix, nprog, eps,
                       m0, Mc, RHL: tl.constexpr, RESCALE: tl.constexpr, TRAINING: tl.constexpr,
                       BLOCK: tl.constexpr):
    pid, p, mask, b, off = _pixels(npix, N, C, BLOCK)
    xb = X + off
    k, sk, beta_t, mb, mu_t, gamma = _load_consts(SC, K, GAMMA, BS)
    cr = Mc / (m0 * tl.minimum(sk, 1.0))  # rescaling: ρ = m·c·tanhc(cr·n) (m0 = 1, Mc = 0 without)
    var = tl.load(VAR)
    dt, n2, p1 = _delta_stats(X, MU, BS, xb, N, C, mask)
    r = _pixel(dt, n2, p1, k, sk, mu_t, beta_t, mb, gamma, var, eps, cr, Mc, RHL, RESCALE)
    (A, Bp, D, t, q, sq, acosh, f, d, xm, vt, norm, den, s, ne, z, zs, tz, tc, rho, scale, theta, th, ths,
     sinh, sh, ch, alpha, cden, cm1, L, w, lam) = r
    wy, gA, gB, gD = _grad_stats(GY, Y, MU, BS, GY + off, Y + off, xb, N, C, mask)
    g_lam, g_w, g_t, g_dt, g_acosh, g_f, g_ne, g_norm, gs_pix, g_cm1 = _pixel_grads(
        gA, gB, gD, dt, k, sk, mu_t, beta_t, mb, Mc, cr, r, RHL, RESCALE)
    zero = dt * 0.0
    if TRAINING:  # σ = mean(norm): ∂L/∂σ = -g_s·s/den with g_s the total of ∂L/∂s
        g_s = _var(SPART, SPART, nprog, 1.0, True, BLOCK)
        g_norm += -g_s * s / den / npix
    if RHL:
        g_d = g_norm * d / norm
        g_vt = 2.0 * g_norm * vt / norm
        g_f += g_vt * xm
        g_xm = g_vt * f
        g_dt += g_xm
        g_t -= g_xm * mu_t
        s_mu_t = -(g_xm * t)
        s_sk = g_d * acosh
        g_acosh += g_d * sk
        s_mb = -(g_w * t)  # ∂L/∂<μ,β>_L (the L term is added from s_L)
        s_beta_t = -(g_w * dt)
        s_L = -(g_lam * lam) / L
        s_k = s_L
        s_mb = s_mb - s_L
    else:
        s_mu_t = -(g_cm1 * cm1) / cden
        s_sk = g_cm1 * (t - cm1) / cden + g_norm * acosh
        g_acosh += g_norm * sk
        s_mb = -(g_w * cm1)
        s_L = -(g_lam * lam) / L
        s_k = s_L
        s_sk += s_L * beta_t
        s_beta_t = s_L * sk
    g_t += g_acosh / sq + g_f * _f_prime(t, q, f)
    g_tk = g_t / k
    g_dt -= g_tk * dt
    s_mu_t -= g_dt
    s_k -= g_tk * t
    s_k += 0.5 * wy  # y_0 = sqrt(‖y_s‖² + k)
    s_cr = g_ne * ne
    g_n2 = 0.5 * g_tk
    g_p1 = g_w
    # per-pixel values for bn_backward_input
    pix = PIX + p * 4
    tl.store(pix + 0, A, mask=mask)
    tl.store(pix + 1, g_n2, mask=mask)
    tl.store(pix + 2, g_p1, mask=mask)
    tl.store(pix + 3, g_dt, mask=mask)
    # scalar partial sums: mu_t, beta_t, mb, sk, k, cr, g_s (no-rescale: Σ g_scale)
    sc = SCPART + pid * 12
    tl.store(sc + 0, tl.sum(tl.where(mask, s_mu_t, 0.0), axis=0))
    tl.store(sc + 1, tl.sum(tl.where(mask, s_beta_t, 0.0), axis=0))
    tl.store(sc + 2, tl.sum(tl.where(mask, s_mb, 0.0), axis=0))
    tl.store(sc + 3, tl.sum(tl.where(mask, s_sk, 0.0), axis=0))
    tl.store(sc + 4, tl.sum(tl.where(mask, s_k, 0.0), axis=0))
    tl.store(sc + 5, tl.sum(tl.where(mask, s_cr, 0.0), axis=0))
    tl.store(sc + 6, tl.sum(tl.where(mask, gs_pix + zero, 0.0), axis=0))
    # per-channel partials of ∂L/∂[μ_s, β_s]: Σ G (B' - A) - 2 ∂L/∂n2 Δ_s - ∂L/∂p1 β_s and Σ G D + ∂L/∂p1 Δ_s
    cp = CPART + pid * C * 2
    for c in range(C):
        mus = tl.load(MU + 1 + c)
        bsc = tl.load(BS + c)
        G = tl.load(GY + off + (c + 1) * N, mask=mask, other=0.0) + \
            tl.load(Y + off + (c + 1) * N, mask=mask, other=0.0) * wy
        dc = tl.load(xb + (c + 1) * N, mask=mask, other=0.0) - mus
        v0 = G * (Bp - A) - 2.0 * g_n2 * dc - g_p1 * bsc
        v1 = G * D + g_p1 * dc
        tl.store(cp + c * 2 + 0, tl.sum(tl.where(mask, v0, 0.0), axis=0))
        tl.store(cp + c * 2 + 1, tl.sum(tl.where(mask, v1, 0.0), axis=0))


@triton.jit
def _normalize_bwd(g, m, n, sk, sgn):
    gm = tl.sum(g * m, axis=0) * sk / (n * n * n)
    return sk / n * g + gm * sgn * m


@triton.jit
def bn_backward_constants(M, RM, MU, BS, SC, K, GAMMA, VAR, GV, SCPART, GM, GBS, GG, GK, B, C1, nprog, eps, m0, Mc,
                          RHL: tl.constexpr, RESCALE: tl.constexpr, TRAINING: tl.constexpr,
                          TWO_STAGE: tl.constexpr, BLOCK_C: tl.constexpr, BLOCK: tl.constexpr):
    cs = tl.arange(0, BLOCK_C)
    cm = cs < C1
    sp = cm & (cs > 0)
    sgn = tl.where(cs == 0, -1.0, 1.0)
    k, sk, beta_t, mb, mu_t, gamma = _load_consts(SC, K, GAMMA, BS)
    cr = Mc / (m0 * tl.minimum(sk, 1.0))  # rescaling: ρ = m·c·tanhc(cr·n) (m0 = 1, Mc = 0 without)
    var = tl.load(VAR)
    den = var + eps
    # totals of the scalar partials
    j = tl.arange(0, BLOCK)
    acc = tl.zeros([BLOCK, 8], dtype=tl.float32)
    cols = tl.arange(0, 8)
    for i in range(0, nprog, BLOCK):
        rows = i + j
        acc += tl.load(SCPART + rows[:, None] * 12 + cols[None, :], mask=(rows[:, None] < nprog) & (cols[None, :] < 7),
                       other=0.0)
    tot = tl.sum(acc, axis=0)
    tot_mu_t = tl.sum(tl.where(cols == 0, tot, 0.0), axis=0)
    tot_beta_t = tl.sum(tl.where(cols == 1, tot, 0.0), axis=0)
    tot_mb = tl.sum(tl.where(cols == 2, tot, 0.0), axis=0)
    tot_sk = tl.sum(tl.where(cols == 3, tot, 0.0), axis=0)
    tot_k = tl.sum(tl.where(cols == 4, tot, 0.0), axis=0)
    tot_cr = tl.sum(tl.where(cols == 5, tot, 0.0), axis=0)
    g_s = tl.sum(tl.where(cols == 6, tot, 0.0), axis=0)
    tl.store(GG, g_s / den)
    mu = tl.load(MU + cs, mask=cm, other=0.0)
    bs = tl.load(BS + cs - 1, mask=sp, other=0.0)  # β_s at lanes 1..C
    g_mu_s = tl.load(GV + (cs - 1) * 2 + 0, mask=sp, other=0.0)
    g_bs = tl.load(GV + (cs - 1) * 2 + 1, mask=sp, other=0.0)
    g_mu_t = tot_mu_t
    g_beta_t = tot_beta_t
    g_mb = tot_mb
    if RHL:
        g_mu_t -= g_mb * beta_t
        g_beta_t -= g_mb * mu_t
    g_mu_s += g_mb * bs
    g_bs += g_mb * tl.where(cs > 0, mu, 0.0) + g_beta_t * bs / beta_t
    tl.store(GBS + cs, tl.where(cs > 0, g_bs, 0.0), mask=cm)  # ∂L/∂β, 0 at the time coordinate
    g_sk = tot_sk
    if RESCALE:
        g_sk -= tl.where(sk < 1.0, tot_cr * cr / sk, 0.0)
    g_k = tot_k + g_sk / (2.0 * sk) + g_beta_t / (2.0 * beta_t)
    g_mu = tl.where(cs == 0, g_mu_t, g_mu_s)
    if TRAINING:
        g_k += tl.sum(g_mu * mu, axis=0) / (2.0 * k)
        mbar, n = _batch_mean(M, B, C1, cs, cm, sk, sgn, TWO_STAGE, BLOCK_C)
        g_mbar = _normalize_bwd(g_mu, mbar, n, sk, sgn)
        g_cb = g_mbar / B
        for b in range(B):
            v = tl.load(M + b * C1 + cs, mask=cm, other=0.0)
            if TWO_STAGE:
                nb = tl.sqrt(tl.maximum(tl.abs(tl.sum(sgn * v * v, axis=0)), 1e-8))
                g_k += tl.sum(g_cb * sk * v / nb, axis=0) / (2.0 * k)
                gmb = _normalize_bwd(g_cb, v, nb, sk, sgn)
            else:
                gmb = g_cb
            tl.store(GM + b * C1 + cs, gmb, mask=cm)
    else:  # μ = exp0(rm)
        rs = tl.load(RM + cs, mask=sp, other=0.0)
        theta = tl.sqrt(tl.sum(rs * rs, axis=0)) / sk
        th, ths, sinh, sh, ch = _sinhc_cosh(theta)
        shp, chp = _sinhc_cosh_prime(theta, th, ths, sinh, sh, ch)
        dmu_t = (ch - theta * sh * theta) / (2.0 * sk)
        g_k += g_mu_t * dmu_t + tl.sum(g_mu_s * shp * (-theta / (2.0 * k)) * rs, axis=0)
    tl.store(GK, g_k)


@triton.jit
def bn_backward_input(X, Y, GY, MU, BS, PIX, GM, GX, N, C, npix, TRAINING: tl.constexpr, BLOCK: tl.constexpr):
    pid, p, mask, b, off = _pixels(npix, N, C, BLOCK)
    pix = PIX + p * 4
    A = tl.load(pix + 0, mask=mask, other=0.0)
    g_n2 = tl.load(pix + 1, mask=mask, other=0.0)
    g_p1 = tl.load(pix + 2, mask=mask, other=0.0)
    gxt = tl.load(pix + 3, mask=mask, other=0.0)
    w = tl.load(GY + off, mask=mask, other=0.0) / tl.load(Y + off, mask=mask, other=1.0)
    gmb = GM + b * (C + 1)
    if TRAINING:
        gxt += tl.load(gmb, mask=mask, other=0.0) / N
    tl.store(GX + off, gxt, mask=mask)
    for c in range(C):
        o = off + (c + 1) * N
        G = tl.load(GY + o, mask=mask, other=0.0) + tl.load(Y + o, mask=mask, other=0.0) * w
        dc = tl.load(X + o, mask=mask, other=0.0) - tl.load(MU + 1 + c)
        v = A * G + 2.0 * g_n2 * dc + g_p1 * tl.load(BS + c)
        if TRAINING:
            v += tl.load(gmb + 1 + c, mask=mask, other=0.0) / N
        tl.store(GX + o, v, mask=mask)
