r"""The per-point math of the Riemannian steps: the curvature move, the radius cap, the step length limit.

Pure functions of points, tangent vectors and the curvature parameter ``k > 0`` (points satisfy
:math:`\langle x,x\rangle_L = -k`, sectional curvature ``K = -1/k``; manifold dimension last). The optimizers
(:mod:`lorentzcv.optim.curvature`, :mod:`lorentzcv.optim.rsgd`, :mod:`lorentzcv.optim.radamw`) call them on one
parameter or on a stack of them (:mod:`lorentzcv.optim.stacked`); :mod:`lorentzcv.optim.fused` runs the same
math as single kernels on CUDA.
"""

from __future__ import annotations

import torch

from ..geometry import math as lmath
from ..geometry.rescale import max_rapidity_radius

__all__ = [
    "CURVATURE_MOVES", "move_to_curvature", "cap_points", "tangent_norm", "retangent", "geodesic_step_limit",
    "rsgd_point_step", "radamw_point_step_",
]

CURVATURE_MOVES = ("explog", "scale")

def move_to_curvature(
    x: torch.Tensor, k_old: torch.Tensor, k_new: torch.Tensor, m: torch.Tensor | None = None, *,
    variant: str = "explog", dim: int = -1, r: float | None = 1.0,
) -> tuple[torch.Tensor, torch.Tensor | None]:
    r"""Move points ``x`` of :math:`\mathbb{H}_{k_{old}}` (and tangent vectors ``m`` at them) to ``k_new``.

    ``docs/method.md`` §4.2 step 4. ``k`` is the positive curvature parameter (``K = -1/k``).

    Args:
        x: points, shape ``(…, n+1)`` (manifold dimension ``dim``), on the manifold with ``k_old``.
        k_old, k_new: curvature parameters before and after the update (tensors broadcastable like ``k``).
        m: optional tangent vectors at ``x`` (the optimizer's first moment), same shape as ``x``.
        variant: ``"explog"`` — :math:`\exp_0^{k_{new}}\circ\log_0^{k_{old}}` with the moment
            parallel-transported through the origin (keeps ``dist0``, direction and :math:`\|m\|_L`);
            ``"scale"`` — multiply both by :math:`\sqrt{k_{new}/k_{old}}` (keeps the rapidity).
        dim: manifold dimension.
        r: cap the moved points at the radius :math:`m\min(1,\sqrt{k_{new}})`, ``m = max_distance(x.dtype, r)``
            (:func:`~lorentzcv.geometry.max_distance`; the default ``r = 1`` is the largest rapidity
            ``½·arccosh(1/(2ε))`` at which the dtype still resolves ``<x,x>_L = -k``, see
            :class:`CurvatureAwareOptimizer`): a point the move would take farther (the explog move at a
            shrinking ``k`` raises the rapidity :math:`d_0/\sqrt{k}`, the scale move at a growing ``k`` raises
            :math:`d_0`) is put on that radius in its direction, its moment transported there through the origin.
            None: no cap (the rapidity is only clamped to ``max_rapidity`` against overflow).

    Returns:
        ``(x_new, m_new)`` on/tangent to the new manifold (``m_new`` is None when ``m`` is None).
    """
    if variant not in CURVATURE_MOVES:
        raise ValueError(f"unknown curvature move variant {variant!r}; expected one of {CURVATURE_MOVES}")
    kn = lmath._k(k_new, x)
    cap = max_rapidity_radius(kn, x.dtype, r) if r is not None else None
    if variant == "scale":
        x = lmath.projx(x, k_old, dim=dim)
        s = lmath._kdim((kn / lmath._k(k_old, x)).sqrt(), x.dim(), dim)
        if m is not None:
            m = s * lmath.proju(x, m, k_old, dim=dim)
        x = lmath.projx(s * x, kn, dim=dim)
        m = lmath.proju(x, m, kn, dim=dim) if m is not None else None
        return (x, m) if cap is None else cap_points(x, kn, cap, m, dim=dim)
    return _move_explog(x, lmath._k(k_old, x), kn, m, dim, cap)


def cap_points(
    x: torch.Tensor, k: torch.Tensor, cap: torch.Tensor, m: torch.Tensor | None = None, *, dim: int = -1,
) -> tuple[torch.Tensor, torch.Tensor | None]:
    r"""Put points beyond rapidity ``cap`` (``d_0/\sqrt{k}``) on it, moving their tangent vectors ``m`` along.

    A point beyond keeps its direction (the radial move ``exp_0∘log_0`` at fixed ``k`` with the rapidity clamped
    to ``cap``) and its moment is parallel-transported through the origin, which is accurate to
    :math:`\varepsilon\cosh r` where a projection from the old point onto the tangent space of the new one would
    amplify rounding by :math:`\varepsilon\cosh^2 r`. Points within ``cap`` and their moments are returned as they
    are (bit for bit).
    """
    k = lmath._k(k, x)
    sk, capk = lmath._kdim(k, x.dim(), dim).sqrt(), lmath._kdim(lmath._k(cap, x), x.dim(), dim)
    beyond = lmath._sqnorm(lmath.space(x, dim=dim), dim) > (sk * torch.sinh(capk)) ** 2
    capped, m_capped = _move_explog(x, k, k, m, dim, cap)
    return torch.where(beyond, capped, x), (torch.where(beyond, m_capped, m) if m is not None else None)


def _move_explog(
    x: torch.Tensor, k_old: torch.Tensor, k_new: torch.Tensor, m: torch.Tensor | None, dim: int,
    cap: torch.Tensor | None = None,
) -> tuple[torch.Tensor, torch.Tensor | None]:
    r"""Closed form of ``projx/proju`` at ``k_old`` → ``transp0back`` → ``expmap0∘logmap0`` → ``transp0`` →
    ``projx`` at ``k_new`` with per-point scalars (two reductions instead of ~40 full-size kernels).

    With :math:`r = \|x_s\|`, :math:`d = \sqrt{k_{old}}\operatorname{asinh}(r/\sqrt{k_{old}})`:
    :math:`x'_s = f x_s`, :math:`f = \sqrt{k_{new}}\sinh(d/\sqrt{k_{new}})/r`. Every tangent vector in the
    chain is ``m_s + c·x_s`` in space, so the moment's space part is one ``addcmul``. The new rapidity is clamped
    to ``cap`` (a tensor broadcastable like ``k``) and to ``max_rapidity``.
    """
    ko = lmath._kdim(k_old, x.dim(), dim)
    kn = lmath._kdim(k_new, x.dim(), dim)
    sko, skn = ko.sqrt(), kn.sqrt()
    xs = lmath.space(x, dim=dim)
    r2 = (xs * xs).sum(dim=dim, keepdim=True)
    x0 = (r2 + ko).sqrt()  # projx at k_old
    r = r2.clamp_min(torch.finfo(x.dtype).tiny).sqrt()
    d_over_r = lmath.asinhc(r / sko)  # dist0 / r (logmap0's coefficient)
    theta = r * d_over_r / skn  # rapidity on the new manifold, clamped as in expmap0
    theta_c = theta.clamp_max(lmath.max_rapidity(x.dtype))
    if cap is not None:
        theta_c = torch.minimum(theta_c, lmath._kdim(cap, x.dim(), dim))
    sh = torch.where(theta > theta_c, torch.sinh(theta_c) / theta.clamp_min(torch.finfo(theta.dtype).tiny),
                     lmath.sinhc(theta_c))
    f = sh * d_over_r
    xn0 = (f * f * r2 + kn).sqrt()
    x_new = torch.cat([xn0, f * xs], dim=dim)
    if m is None:
        return x_new, None
    m0, ms = lmath.time(m, dim=dim), lmath.space(m, dim=dim)
    xm = (xs * ms).sum(dim=dim, keepdim=True)
    # transp0back of the tangent m: m_o = m - c1·(x + o), time component 0. No proju at k_old first: its
    # Minkowski product of ambient vectors of size cosh r would add ε·cosh² r of |m|_L (≈ 1/4 at the cap, per
    # move) where this form loses ε·cosh r (see retangent; a component along x is damped, not removed)
    c1 = m0 / (sko + x0)
    xmo = xm - c1 * r2  # x_s · m_o,s
    c2 = f * xmo / (kn + skn * xn0)  # transp0 at k_new: m_n = m_o + c2·(x_new + o_new)
    m_new = torch.cat([c2 * (xn0 + skn), torch.addcmul(ms, xs, c2 * f - c1)], dim=dim)
    return x_new, m_new

def _at_origin(x: torch.Tensor, v: torch.Tensor, k: torch.Tensor) -> torch.Tensor:
    r"""Space part of :math:`P_{x\to o}v`, :math:`v_s - \frac{v_0}{\sqrt{k} + x_0}x_s` (its time part is 0)."""
    return torch.addcmul(v[..., 1:], x[..., 1:], v[..., :1] / (k.sqrt() + x[..., :1]), value=-1.0)


def tangent_norm(x: torch.Tensor, v: torch.Tensor, k: torch.Tensor) -> torch.Tensor:
    r"""Lorentz norm :math:`\|v\|_L` of tangent vectors ``v`` at points ``x`` (manifold dim -1, keepdim), read at
    the origin: :math:`\|v\|_L = \|(P_{x\to o}v)_s\| = \|v_s - \frac{v_0}{\sqrt{k} + x_0}x_s\|`.

    :math:`\sqrt{\langle v,v\rangle_L}` cancels ambient components of size :math:`\cosh(r)\|v\|_L` and loses
    :math:`\varepsilon\cosh^2 r` of relative precision (all of it in float32 near the representable radius); the
    transported form loses only :math:`\varepsilon\cosh r`. Exact for tangent ``v`` (parallel transport keeps norms).
    """
    return lmath._safe_norm(_at_origin(x, v, k), -1)


def retangent(x: torch.Tensor, v: torch.Tensor, k: torch.Tensor) -> torch.Tensor:
    r"""Put vectors ``v`` that are tangent at ``x`` up to rounding back onto :math:`T_x`, through the origin:
    :math:`P_{o\to x}(P_{x\to o}v)` with the time part at the origin dropped (manifold dim -1).

    With :math:`w = v_s - \frac{v_0}{\sqrt{k}+x_0}x_s` and :math:`c = \frac{x_s\cdot w}{\sqrt{k}(\sqrt{k}+x_0)}`
    the result is :math:`(c(\sqrt{k}+x_0),\ w + c\,x_s)`: ``v`` itself for a tangent ``v`` (exactly, in exact
    arithmetic), but where ``proju`` (:math:`v + \langle x,v\rangle_L x/k`) amplifies the rounding of an ambient
    :math:`v` by :math:`\varepsilon\cosh^2 r` relative to :math:`\|v\|_L` — about 1/4 per step at the radius the
    optimizers allow, which a moment re-projected every step compounds into an overflow — this form loses
    :math:`\varepsilon\cosh r`. A component along ``x`` is damped (mapped to a vector of Lorentz norm at most
    :math:`\sqrt{k}` times its coefficient), not removed: use it for moments, not to project a gradient.
    """
    sk = k.sqrt()
    w = _at_origin(x, v, k)
    c = (x[..., 1:] * w).sum(-1, keepdim=True) / (sk * (sk + x[..., :1]))
    return torch.cat([c * (sk + x[..., :1]), torch.addcmul(w, x[..., 1:], c)], dim=-1)


def _transport_along_step(
    x: torch.Tensor, u: torch.Tensor, wu: torch.Tensor, un: torch.Tensor, theta: torch.Tensor, b: torch.Tensor,
    k: torch.Tensor,
) -> torch.Tensor:
    r"""Parallel transport of tangent vectors ``b`` at ``x`` along the geodesic :math:`\exp_x(\theta\sqrt{k}\,\hat u)`,
    :math:`\hat u = u/\|u\|_L` (``wu`` = ``_at_origin(x, u, k)``, ``un`` = :math:`\|u\|_L` = ``‖wu‖``, ``theta``
    the rapidity travelled):

    .. math:: P(b) = b + \beta\big((\cosh\theta - 1)\hat u + \sinh\theta\,x/\sqrt{k}\big),\quad
              \beta = \langle \hat u, b\rangle_L,

    with :math:`\beta` read at the origin (the dot product of the two vectors' :func:`tangent_norm` forms), so no
    Minkowski product of ambient vectors of size :math:`\cosh r` is formed (``lmath.transp`` would lose
    :math:`\varepsilon\cosh^2 r` per step).
    """
    inv = 1 / un.clamp_min(torch.finfo(un.dtype).tiny)
    beta = (wu * _at_origin(x, b, k)).sum(-1, keepdim=True) * inv
    half = torch.sinh(theta / 2)
    return b + beta * (2 * half * half * inv * u + torch.sinh(theta) / k.sqrt() * x)


def geodesic_step_limit(
    x0: torch.Tensor, u0: torch.Tensor, u_norm: torch.Tensor, k: torch.Tensor, cap: torch.Tensor
) -> torch.Tensor:
    r"""Longest rapidity :math:`\theta^* \ge 0` the geodesic :math:`\exp_x(\theta\sqrt{k}\,\hat u)` may travel
    without leaving the ball of rapidity ``cap`` around the origin (per point; all arguments size 1 along the
    manifold dimension).

    With :math:`A = x_0/\sqrt{k} = \cosh r_x` and :math:`B = \hat u_0 = u_0/\|u\|_L`, the point at rapidity
    :math:`\theta` has :math:`\cosh\rho(\theta) = A\cosh\theta + B\sinh\theta =
    \sqrt{A^2-B^2}\,\cosh(\theta+\varphi)`, :math:`\tanh\varphi = B/A`, so

    .. math:: \theta^* = \operatorname{arcosh}\Big(\frac{\cosh(\text{cap})}{\sqrt{(A-B)(A+B)}}\Big) -
              \tfrac12\log\frac{A+B}{A-B}.

    For a tangent ``u``, :math:`|B| \le \sinh r_x = \sqrt{A^2-1}` (so :math:`A^2-B^2 \ge 1`), but a direction
    that is tangent only up to rounding far from the origin (ambient entries :math:`\cosh r_x` times its norm) can
    carry a :math:`B` beyond that, and the formula with :math:`A+B \to 0` then allows an unbounded step (a point
    at the float32 radius stepped to rapidity ~50, whose moment overflows). :math:`B` is therefore clamped to
    :math:`[-\sinh r_x, \sinh r_x]` and the formula written with
    :math:`A^2-B^2 = 1 + (\sinh r_x - |B|)(\sinh r_x + |B|) \ge 1` and the larger factor :math:`A+|B|`
    (no cancellation), which bounds the result by :math:`r_x + \text{cap}` (the triangle inequality). Where
    rounding leaves the estimate uncertain (outward radial steps near ``cap`` in float32) it errs either way by
    at most about one unit of rapidity, which the final :func:`cap_points` absorbs. A point already beyond
    ``cap`` may only travel to its geodesic's closest approach to the origin.
    """
    tiny = torch.finfo(x0.dtype).tiny
    a = (x0 / k.sqrt()).clamp_min(1.0)
    sh = ((a - 1) * (a + 1)).sqrt()  # sinh r_x
    b = (u0 / u_norm.clamp_min(tiny)).nan_to_num(0.0)
    b = torch.minimum(torch.maximum(b, -sh), sh)
    q2 = 1 + (sh - b.abs()) * (sh + b.abs())  # A² - B² >= 1
    big = a + b.abs()  # A + |B|; log((A+B)/(A-B)) = ±(2 log(A+|B|) - log(A²-B²))
    half_log = torch.log(big) - 0.5 * torch.log(q2)
    q = (torch.cosh(cap) / q2.sqrt()).clamp_min(1.0)
    return (torch.acosh(q) - torch.copysign(half_log, b)).clamp_min(0.0)



def rsgd_point_step(
    x: torch.Tensor, grad: torch.Tensor, buf: torch.Tensor | None, k: torch.Tensor, cap: torch.Tensor, *,
    lr: float | torch.Tensor, weight_decay: float, momentum: float, dampening: float, nesterov: bool,
    maximize: bool, repair: bool, stabilize: bool,
) -> tuple[torch.Tensor, torch.Tensor | None]:
    r"""One Riemannian SGD step of points ``x`` (rows along the last dimension) with momentum buffer ``buf``.

    The math of :class:`~lorentzcv.optim.RiemannianSGD` for manifold parameters, out of place:
    :math:`g = \operatorname{egrad2rgrad}(x, \pm\nabla + \lambda x)`; :math:`b \leftarrow g` when ``buf`` is None
    (first step) else :math:`b \leftarrow \mu b + (1-\delta)g`; :math:`d = g + \mu b` (nesterov), :math:`b`, or
    :math:`g` (``momentum = 0``, ``buf`` ignored); :math:`u = -\eta d`;
    :math:`x' = \cosh(\theta)x + \operatorname{sinhc}(\theta)u` with the rapidity :math:`\theta = \|u\|_L/\sqrt{k}`
    limited to ``cap``, to the part of the geodesic inside the ball of rapidity ``cap``
    (:func:`geodesic_step_limit`) and to ``max_rapidity``; :math:`b \leftarrow P_{x\to x'}(b)`.
    With ``repair`` (every curvature mode but ``"naive"``) the point is first put within ``cap``
    (:func:`cap_points`), ``x'`` is projected (time from space), re-projected with ``proju`` of the buffer when
    ``stabilize``, and capped again. ``k > 0`` (``K = -1/k``), ``cap`` in rapidity units.

    Returns:
        ``(x_new, buf_new)``; ``buf_new`` is None when ``momentum == 0``.
    """
    kk = lmath._k(k, x)
    if not momentum:
        buf = None
    if repair:  # a point beyond the representable radius (initial value, …) is put on it first
        x, buf = cap_points(x, kk, cap, buf)
    if maximize:
        grad = -grad
    if weight_decay != 0:
        grad = grad.add(x, alpha=weight_decay)
    rgrad = lmath.egrad2rgrad(x, grad, k)
    direction = rgrad
    if momentum:
        buf = rgrad.clone(memory_format=torch.preserve_format) if buf is None else \
            buf.mul(momentum).add_(rgrad, alpha=1 - dampening)
        direction = rgrad.add(buf, alpha=momentum) if nesterov else buf
    u = direction * -lr
    # at most `cap` in rapidity, the geodesic cut where it leaves the representable ball, then exp:
    #    x_new = cosh(θ)x + sinhc(θ)u, θ = ‖u‖_L/√k with ‖u‖_L read at the origin (see tangent_norm), clamped to the
    #    geodesic limit and max_rapidity as in lmath.expmap, then projx
    sk = kk.sqrt()
    wu = _at_origin(x, u, kk)  # u read at the origin: its norm here, ⟨û, buf⟩_L in the transport below
    un = lmath._safe_norm(wu, -1)
    limit = geodesic_step_limit(x[..., :1], u[..., :1], un, kk, cap)
    theta = un / sk
    theta_c = torch.minimum(theta, torch.minimum(limit, cap)).clamp_max_(lmath.max_rapidity(x.dtype))
    sh = torch.where(theta > theta_c, torch.sinh(theta_c) / theta.clamp_min(torch.finfo(theta.dtype).tiny),
                     lmath.sinhc(theta_c))
    x_new = torch.addcmul(torch.cosh(theta_c) * x, u, sh)
    if repair:
        x_new = lmath.projx(x_new, kk)
    if buf is not None:
        buf = _transport_along_step(x, u, wu, un, theta_c, buf, kk)
    if not repair:
        return x_new, buf
    if stabilize:
        x_new = lmath.projx(x_new, k)
        if buf is not None:
            buf = retangent(x_new, buf, kk)
    return cap_points(x_new, kk, cap, buf)  # rounding may leave a point just beyond the radius


def radamw_point_step_(
    x: torch.Tensor, grad: torch.Tensor, m: torch.Tensor, v: torch.Tensor, vmax: torch.Tensor | None,
    k: torch.Tensor, cap: torch.Tensor, *, lr: float | torch.Tensor, weight_decay: float, beta1: float, beta2: float,
    eps: float, step: float, maximize: bool, repair: bool,
) -> torch.Tensor:
    r"""One Riemannian AdamW step of points ``x``; returns the new points, updates the moments in place.

    The math of :class:`~lorentzcv.optim.RiemannianAdamW` for manifold parameters, written with per-point scalars
    (the closed forms of ``normalize``/``egrad2rgrad``/``proju``/``expmap``/``transp``): ``m`` is the first moment
    (tangent vectors, same shape as ``x``), ``v`` the second (one entry per point, ``(…, 1)``), ``vmax`` its running
    maximum (amsgrad) or None, ``step`` the step count after this step (bias corrections), ``k`` the curvature as a
    tensor of ``x``'s dtype (``K = -1/k``), ``cap`` the representable rapidity. Without ``repair``
    (``curvature_mode="naive"``) the stored point is used as it is and never capped or re-projected.
    """
    sk = k.sqrt()
    g = -grad if maximize else grad
    # 0. a point beyond the representable radius (initial value, …) is put on it first; not in
    #    curvature_mode="naive", which uses the stored point as it is (the closed forms below then take it
    #    for a point of the current hyperboloid, as a curvature-unaware optimizer does)
    if repair:
        x, m_c = cap_points(x, k, cap, m)
        m.copy_(m_c)
    else:  # the repairing modes end every step with m re-tangented at the point (below); naive does not
        m.copy_(retangent(x, m, k))
    # 1. decay: x̃ = normalize(μ), μ = (1-λ')x + λ'o; on the manifold <μ,μ>_L = -(1-λ')²k - 2λ'(1-λ')√k x_0 - λ'²k
    if weight_decay != 0:
        lam = lr * weight_decay
        x0 = x[..., :1]
        c = sk / ((1 - lam) ** 2 * k + 2 * lam * (1 - lam) * sk * x0 + lam**2 * k).sqrt()
        time_ = c * ((1 - lam) * x0 + lam * sk)
        x = x * (c * (1 - lam))
        x[..., :1] = time_
        # m is tangent at the point before the decay, so <x̃, m>_L = c·λ'·<o, m>_L = -c·λ'·√k·m_0 exactly:
        # proju(x̃, m) = m - (c·λ'·m_0/√k)·x̃ without a Minkowski product of large ambient vectors
        m.addcmul_(x, m[..., :1] * (c * lam / sk), value=-1.0)
    # 2. g_R = proju(x̃, Jg), J = diag(-1, 1, …), never materialised: <x̃, Jg>_L = x̃·g and
    #    <g_R, g_R>_L = <Jg, Jg>_L + <x̃, Jg>_L² / k = ‖g‖² - 2 g_0² + (x̃·g)² / k
    g0 = g[..., :1]
    xg = (x * g).sum(-1, keepdim=True)
    gr_sq = (g * g).sum(-1, keepdim=True) - 2 * g0 * g0 + xg * xg / k
    # 3. m <- β1·proju(x̃, m) + (1-β1)·g_R, m already tangent at x̃ (above), g_R = Jg + (x̃·g/k)·x̃
    m.mul_(beta1).add_(g, alpha=1 - beta1)
    m[..., :1].sub_(g0, alpha=2 * (1 - beta1))
    m.addcmul_(x, xg / k, value=1 - beta1)
    v.mul_(beta2).add_(gr_sq.clamp_min_(0), alpha=1 - beta2)
    if vmax is not None:
        v = torch.maximum(vmax, v, out=vmax)
    bc1 = 1 - beta1**step
    bc2 = 1 - beta2**step
    rate = (lr / bc1) / (v / bc2).sqrt_().add_(eps)  # (…, 1): the update is u = -rate·m
    # 4. x_new = exp_x̃(u) = cosh(θ)x̃ + sinhc(θ)u, θ = ‖u‖_L/√k, then projx; θ is clamped to `cap`, to the part
    #    of the geodesic inside the representable ball (and to max_rapidity, as in lmath.expmap)
    mn = tangent_norm(x, m, k)  # ‖m‖_L read at the origin (accurate far from it, unlike sqrt<m,m>_L)
    mm = mn * mn
    theta = rate * mn / sk
    limit = geodesic_step_limit(x[..., :1], -m[..., :1], mn, k, cap)  # u = -rate·m
    theta_c = torch.minimum(theta, torch.minimum(limit, cap)).clamp_max_(lmath.max_rapidity(x.dtype))
    sh = torch.where(theta > theta_c, torch.sinh(theta_c) / theta.clamp_min(torch.finfo(theta.dtype).tiny),
                     lmath.sinhc(theta_c))
    ch = torch.cosh(theta_c)
    b = -rate * sh  # x_new = ch·x̃ + b·m
    x_new = torch.addcmul(x * ch, m, b)
    if repair:
        xs = x_new[..., 1:]
        x_new[..., :1] = ((xs * xs).sum(-1, keepdim=True) + k).sqrt()
    #    m <- P_{x̃→x_new}(m) = m + <x_new,m>_L / (k - <x̃,x_new>_L)·(x̃ + x_new), along the geodesic
    #    <x_new,m>_L = b<m,m>_L and <x̃,x_new>_L = -k·cosh(θ) since <x̃,m>_L = 0
    coef = b * mm / (k * (1 + ch))
    m.addcmul_(x, coef).addcmul_(x_new, coef)
    if not repair:
        return x_new
    x_new, m_new = cap_points(x_new, k, cap, m)  # rounding may leave a point just beyond the radius
    m.copy_(m_new)
    # stabilize: m back onto T_{x_new} (x_new is on the manifold: its time was just recomputed from space)
    m.copy_(retangent(x_new, m, k))
    return x_new
