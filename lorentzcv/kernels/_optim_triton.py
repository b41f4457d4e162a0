"""Triton kernels of the fused optimizer steps (see :mod:`lorentzcv.optim.fused`; imported on first use).

One program per point (a row of ``width`` float32 entries, time first; ``BLOCK`` ≥ ``width`` lanes), all the
per-point scalars of :func:`lorentzcv.optim.point_steps.rsgd_point_step` and of the explog curvature move
(:func:`lorentzcv.optim.point_steps.move_to_curvature`) computed in registers: the step reads the point, its
gradient and its momentum buffer once and writes the point and the buffer once. ``asinh``, ``sinh``, ``cosh`` and
``arcosh`` are written with ``exp``/``log`` (Taylor series near 0, no cancellation), so the kernels also run in
Triton's interpreter (``TRITON_INTERPRET=1``), which is how the tests check them on CPU tensors.
"""

import triton
import triton.language as tl

from ._lift_triton import _asinh_pos, _sinh_pos
from ._triton_math import _log1p, _row

_TINY = tl.constexpr(1.1754943508222875e-38)  # float32's smallest normal number


@triton.jit
def _sinhc_pos(t):  # sinh(t)/t for t >= 0, Taylor below 0.5
    t2 = t * t
    ser = 1.0 + t2 / 6.0 * (1.0 + t2 / 20.0 * (1.0 + t2 / 42.0 * (1.0 + t2 / 72.0)))
    return tl.where(t < 0.5, ser, _sinh_pos(t) / tl.maximum(t, 0.5))


@triton.jit
def _cosh(t):  # t >= 0
    e = tl.exp(t)
    return 0.5 * (e + 1.0 / e)


@triton.jit
def _acosh(q):  # q >= 1: log1p((q-1) + sqrt((q-1)(q+1)))
    a = q - 1.0
    return _log1p(a + tl.sqrt(a * (q + 1.0)))


@triton.jit
def _asinhc_pos(t):  # asinh(t)/t for t >= 0 (1 - t²/6 below 1e-4, as lorentzcv.geometry.math.asinhc)
    return tl.where(t < 1e-4, 1.0 - t * t / 6.0, _asinh_pos(t) / tl.maximum(t, 1e-4))


@triton.jit
def _rapidity_coef(theta, theta_c):
    """``sinh(θc)/θ`` where the rapidity was clamped, else ``sinhc(θc)`` (the exponential maps' coefficient)."""
    return tl.where(theta > theta_c, _sinh_pos(theta_c) / tl.maximum(theta, _TINY), _sinhc_pos(theta_c))


@triton.jit
def _explog(r2, xm, m0, ko, kn, cap, maxrap):
    """Per-point scalars of ``point_steps._move_explog`` (``exp_0^{kn}∘log_0^{ko}`` with the moment transported
    through the origin, rapidity clamped to ``cap`` and ``maxrap``) from ``r2 = ‖x_s‖²``, ``xm = x_s·m_s`` and the
    moment's time ``m0``: the new point is ``(xn0, f·x_s)``, the new moment ``(mt, m_s + mc·x_s)``."""
    sko = tl.sqrt(ko)
    skn = tl.sqrt(kn)
    x0 = tl.sqrt(r2 + ko)
    r = tl.sqrt(tl.maximum(r2, _TINY))
    d_over_r = _asinhc_pos(r / sko)
    theta = r * d_over_r / skn
    theta_c = tl.minimum(tl.minimum(theta, maxrap), cap)
    f = _rapidity_coef(theta, theta_c) * d_over_r
    xn0 = tl.sqrt(f * f * r2 + kn)
    c1 = m0 / (sko + x0)  # transp0back of the tangent moment, no proju first (as point_steps._move_explog)
    xmo = xm - c1 * r2
    c2 = f * xmo / (kn + skn * xn0)
    return xn0, f, c2 * (xn0 + skn), c2 * f - c1


@triton.jit
def _cap_points(x, b, is_t, k, cap, maxrap, HAS_B: tl.constexpr):
    """``point_steps.cap_points`` of one point ``x`` (lanes, time at lane 0) and its moment ``b``: a point beyond
    rapidity ``cap`` is moved onto it (explog at fixed ``k``), the others are returned bit for bit."""
    xs = tl.where(is_t, 0.0, x)
    r2 = tl.sum(xs * xs, axis=0)
    lim = tl.sqrt(k) * _sinh_pos(cap)
    beyond = r2 > lim * lim
    if HAS_B:
        m0 = tl.sum(tl.where(is_t, b, 0.0), axis=0)
        xm = tl.sum(xs * b, axis=0)
    else:
        m0 = 0.0
        xm = 0.0
    xn0, f, mt, mc = _explog(r2, xm, m0, k, k, cap, maxrap)
    x_new = tl.where(beyond, tl.where(is_t, xn0, f * x), x)
    if HAS_B:
        b = tl.where(beyond, tl.where(is_t, mt, b + mc * xs), b)
    return x_new, b


@triton.jit
def _step_limit(x0, u0, un, k, cap):
    """``point_steps.geodesic_step_limit`` for one point (scalars)."""
    a = tl.maximum(x0 / tl.sqrt(k), 1.0)
    sh = tl.sqrt((a - 1.0) * (a + 1.0))
    b = u0 / tl.maximum(un, _TINY)
    b = tl.where(b != b, 0.0, b)  # NaN -> 0 (the clamp below takes ±inf to ±sinh r_x)
    b = tl.minimum(tl.maximum(b, -sh), sh)
    ab = tl.abs(b)
    q2 = 1.0 + (sh - ab) * (sh + ab)
    half_log = tl.log(a + ab) - 0.5 * tl.log(q2)
    q = tl.maximum(_cosh(cap) / tl.sqrt(q2), 1.0)
    return tl.maximum(_acosh(q) - tl.where(b < 0.0, -tl.abs(half_log), tl.abs(half_log)), 0.0)


@triton.jit
def _projx(x, is_t, k):
    xs = tl.where(is_t, 0.0, x)
    return tl.where(is_t, tl.sqrt(tl.sum(xs * xs, axis=0) + k), x)



@triton.jit
def _at_origin(x, v, is_t, sk, x0):
    """Space lanes of ``P_{x→o} v`` (``point_steps._at_origin``), time lane 0."""
    v0 = tl.sum(tl.where(is_t, v, 0.0), axis=0)
    return tl.where(is_t, 0.0, v - (v0 / (sk + x0)) * x)


@triton.jit
def _retangent(x, v, is_t, sk):
    """``point_steps.retangent``: ``v`` back onto the tangent space of ``x`` through the origin."""
    x0 = tl.sum(tl.where(is_t, x, 0.0), axis=0)
    w = _at_origin(x, v, is_t, sk, x0)
    c = tl.sum(tl.where(is_t, 0.0, x) * w, axis=0) / (sk * (sk + x0))
    return tl.where(is_t, c * (sk + x0), w + c * x)


@triton.jit
def rsgd_step(x_ptr, g_ptr, b_ptr, k_ptr, width, lr, wd, mom, damp, mdist, maxrap,
              HAS_WD: tl.constexpr, HAS_MOM: tl.constexpr, OLD_B: tl.constexpr, NESTEROV: tl.constexpr,
              MAXIMIZE: tl.constexpr, REPAIR: tl.constexpr, STAB: tl.constexpr, BLOCK: tl.constexpr):
    """One Riemannian SGD step of point ``program_id`` (``point_steps.rsgd_point_step``), in place."""
    row, base, offs, mask, is_t = _row(width, BLOCK)
    x = tl.load(x_ptr + base + offs, mask=mask, other=0.0)
    g = tl.load(g_ptr + base + offs, mask=mask, other=0.0)
    if OLD_B:  # a momentum buffer from earlier steps (HAS_MOM and not the first step)
        b = tl.load(b_ptr + base + offs, mask=mask, other=0.0)
    else:
        b = tl.zeros([BLOCK], dtype=tl.float32)
    k = tl.load(k_ptr).to(tl.float32)
    sk = tl.sqrt(k)
    cap = mdist / tl.maximum(sk, 1.0)
    if REPAIR:
        x, b = _cap_points(x, b, is_t, k, cap, maxrap, OLD_B)
    if MAXIMIZE:
        g = -g
    if HAS_WD:
        g = g + wd * x
    # egrad2rgrad: v = (-g_0, g_s) + (<x, (-g_0, g_s)>_L / k) x, <x, (-g_0, g_s)>_L = x·g
    rgrad = tl.where(is_t, -g, g) + (tl.sum(x * g, axis=0) / k) * x
    d = rgrad
    if HAS_MOM:
        if OLD_B:
            b = b * mom + (1.0 - damp) * rgrad
        else:
            b = rgrad
        if NESTEROV:
            d = rgrad + mom * b
        else:
            d = b
    u = d * -lr
    x0 = tl.sum(tl.where(is_t, x, 0.0), axis=0)
    u0 = tl.sum(tl.where(is_t, u, 0.0), axis=0)
    w = _at_origin(x, u, is_t, sk, x0)  # ‖u‖_L read at the origin (tangent_norm)
    un = tl.sqrt(tl.maximum(tl.sum(w * w, axis=0), _TINY))
    limit = _step_limit(x0, u0, un, k, cap)
    theta = un / sk
    theta_c = tl.minimum(tl.minimum(theta, tl.minimum(limit, cap)), maxrap)
    xn = _cosh(theta_c) * x + _rapidity_coef(theta, theta_c) * u
    if REPAIR:
        xn = _projx(xn, is_t, k)
    if HAS_MOM:  # transport along the step (point_steps._transport_along_step), <û, b>_L read at the origin
        beta = tl.sum(w * _at_origin(x, b, is_t, sk, x0), axis=0) / un
        half = _sinh_pos(theta_c * 0.5)
        b = b + beta * ((2.0 * half * half / un) * u + (_sinh_pos(theta_c) / sk) * x)
    if REPAIR:
        if STAB:
            xn = _projx(xn, is_t, k)
            if HAS_MOM:
                b = _retangent(xn, b, is_t, sk)
        xn, b = _cap_points(xn, b, is_t, k, cap, maxrap, HAS_MOM)
    tl.store(x_ptr + base + offs, xn, mask=mask)
    if HAS_MOM:
        tl.store(b_ptr + base + offs, b, mask=mask)


@triton.jit
def explog_move(x_ptr, m_ptr, ko_ptr, kn_ptr, width, mdist, maxrap, HAS_M: tl.constexpr, BLOCK: tl.constexpr):
    """The explog curvature move of point ``program_id`` (and its moment) from ``k_old`` to ``k_new``, in place,
    capped at ``cap = mdist / max(1, √k_new)`` (``point_steps.move_to_curvature``); nothing when ``k_old == k_new``."""
    row, base, offs, mask, is_t = _row(width, BLOCK)
    x = tl.load(x_ptr + base + offs, mask=mask, other=0.0)
    xs = tl.where(is_t, 0.0, x)
    ko = tl.load(ko_ptr).to(tl.float32)
    kn = tl.load(kn_ptr).to(tl.float32)
    r2 = tl.sum(xs * xs, axis=0)
    if HAS_M:
        m = tl.load(m_ptr + base + offs, mask=mask, other=0.0)
        m0 = tl.sum(tl.where(is_t, m, 0.0), axis=0)
        xm = tl.sum(xs * m, axis=0)
    else:
        m0 = 0.0
        xm = 0.0
    xn0, f, mt, mc = _explog(r2, xm, m0, ko, kn, mdist / tl.maximum(tl.sqrt(kn), 1.0), maxrap)
    same = ko == kn  # an unchanged k moves nothing (bit for bit; no host-side check needed)
    tl.store(x_ptr + base + offs, tl.where(same, x, tl.where(is_t, xn0, f * x)), mask=mask)
    if HAS_M:
        tl.store(m_ptr + base + offs, tl.where(same, m, tl.where(is_t, mt, m + mc * xs)), mask=mask)


@triton.jit
def radamw_step(x_ptr, g_ptr, m_ptr, v_ptr, vmax_ptr, k_ptr, width, lr, wd, beta1, beta2, eps, bc1, bc2, mdist,
                maxrap, HAS_WD: tl.constexpr, AMSGRAD: tl.constexpr, MAXIMIZE: tl.constexpr, REPAIR: tl.constexpr,
                BLOCK: tl.constexpr):
    """One Riemannian AdamW step of point ``program_id`` (``point_steps.radamw_point_step_``), in place: the point,
    its first moment (a row) and its second moment (one entry per point; ``vmax`` its running maximum)."""
    row, base, offs, mask, is_t = _row(width, BLOCK)
    x = tl.load(x_ptr + base + offs, mask=mask, other=0.0)
    g = tl.load(g_ptr + base + offs, mask=mask, other=0.0)
    m = tl.load(m_ptr + base + offs, mask=mask, other=0.0)
    k = tl.load(k_ptr).to(tl.float32)
    sk = tl.sqrt(k)
    cap = mdist / tl.maximum(sk, 1.0)
    if MAXIMIZE:
        g = -g
    if REPAIR:
        x, m = _cap_points(x, m, is_t, k, cap, maxrap, True)
    else:  # the repairing modes end every step with m re-tangented (below)
        m = _retangent(x, m, is_t, sk)
    if HAS_WD:  # x̃ = normalize((1-λ')x + λ'o), λ' = lr·wd
        lam = lr * wd
        x0 = tl.sum(tl.where(is_t, x, 0.0), axis=0)
        c = sk / tl.sqrt((1.0 - lam) * (1.0 - lam) * k + 2.0 * lam * (1.0 - lam) * sk * x0 + lam * lam * k)
        x = tl.where(is_t, c * ((1.0 - lam) * x0 + lam * sk), x * (c * (1.0 - lam)))
        m = m - (tl.sum(tl.where(is_t, m, 0.0), axis=0) * (c * lam / sk)) * x  # proju(x̃, m), <x̃,m>_L exact
    g0 = tl.sum(tl.where(is_t, g, 0.0), axis=0)
    xg = tl.sum(x * g, axis=0)
    gr_sq = tl.sum(g * g, axis=0) - 2.0 * g0 * g0 + xg * xg / k
    m = beta1 * m + (1.0 - beta1) * (tl.where(is_t, -g, g) + (xg / k) * x)  # β1·m + (1-β1)·proju(x̃, Jg)
    v = beta2 * tl.load(v_ptr + row) + (1.0 - beta2) * tl.maximum(gr_sq, 0.0)
    tl.store(v_ptr + row, v)
    if AMSGRAD:
        v = tl.maximum(tl.load(vmax_ptr + row), v)
        tl.store(vmax_ptr + row, v)
    rate = (lr / bc1) / (tl.sqrt(v / bc2) + eps)
    x0 = tl.sum(tl.where(is_t, x, 0.0), axis=0)
    m0 = tl.sum(tl.where(is_t, m, 0.0), axis=0)
    w = _at_origin(x, m, is_t, sk, x0)  # ‖m‖_L read at the origin (tangent_norm)
    mn = tl.sqrt(tl.maximum(tl.sum(w * w, axis=0), _TINY))
    theta = rate * mn / sk
    limit = _step_limit(x0, -m0, mn, k, cap)
    theta_c = tl.minimum(tl.minimum(theta, tl.minimum(limit, cap)), maxrap)
    ch = _cosh(theta_c)
    b = -rate * _rapidity_coef(theta, theta_c)
    xn = x * ch + m * b
    if REPAIR:
        xn = _projx(xn, is_t, k)
    coef = b * mn * mn / (k * (1.0 + ch))  # transport along the geodesic
    m = m + x * coef + xn * coef
    if REPAIR:
        xn, m = _cap_points(xn, m, is_t, k, cap, maxrap, True)
        m = _retangent(xn, m, is_t, sk)  # stabilize: m back onto the tangent space of x_new
    tl.store(x_ptr + base + offs, xn, mask=mask)
    tl.store(m_ptr + base + offs, m, mask=mask)
