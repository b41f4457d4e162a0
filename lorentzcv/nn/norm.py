r"""Lorentz batch normalisation (``spec/method.md`` §5.4, ``design.md`` §4.2).

Curvature convention: the layer's :class:`~lorentzcv.geometry.Lorentz` holds ``k > 0`` (points satisfy
:math:`\langle x,x\rangle_L = -k`, sectional curvature :math:`K = -1/k`); ``manifold.k`` is read at every
forward and receives gradients when it is learnable.

For a batch of points :math:`x` with batch mean :math:`\mu` the layer computes

``variant="hcnn"`` (HCNN, Bdeir et al. 2024; the default)
    :math:`u = P_{\mu\to o}(\log_\mu x)`, :math:`\sigma = \operatorname{mean}\|u\|_2` (the Fréchet "variance"
    as a mean *distance*: :math:`\|u\|_2 = \|u\|_L = d(\mu, x)`), :math:`u \leftarrow u\,\gamma/(\sigma+\epsilon)`,
    optionally :math:`u \leftarrow \operatorname{rescale\_euclid}(u)` (``rescale=True``, spec §2.3) and
    :math:`y = \exp_\beta(P_{o\to\beta}(u))`.
``variant="rhl"`` (the authors' later ``batch2d``, spec [A])
    :math:`v = \log_\mu x` (no transport to the origin), :math:`\sigma = \operatorname{mean}\|v\|_2` (Euclidean
    norm of the ambient vector, :math:`\|v\|_2^2 = d^2 + 2v_0^2`), :math:`v \leftarrow v\,\gamma/(\sigma+\epsilon)`,
    :math:`v \leftarrow \operatorname{rescale\_euclid}(v)` (on by default, as in [A]) and
    :math:`y = \exp_\beta(P_{\mu\to\beta}(v))`.

:math:`\beta` is a :class:`~lorentzcv.geometry.ManifoldParameter` initialised at the origin and used as
``projx(β)`` (time recomputed from space; identical when β is on the manifold, which Riemannian optimizers
keep), :math:`\gamma` a learnable scalar (init 1). ``rescale_euclid`` uses the manifold's
:class:`~lorentzcv.geometry.RescaleConfig`, the radius :math:`m\min(1,\sqrt{k})` and the dtype the input is stored in
(:func:`~lorentzcv.geometry.rescale.computation_dtype`). Training uses batch statistics and updates ``running_mean`` (a tangent
vector at the origin, re-mapped with the current ``k``) by
:math:`rm \leftarrow \log_0(\operatorname{centroid}([\exp_0 rm, \mu], w=(1-m, m)))` and ``running_var`` by
:math:`rv \leftarrow (1-m)\,rv + m\,\sigma`; eval uses :math:`\mu = \exp_0(rm)`, :math:`\sigma = rv`.

**Batch mean.** 1-D input: the Lorentzian centroid over the batch. 2-D input: the spec's two-stage mean — the
centroid over the ``H·W`` pixels of each sample, then the centroid of those ``B`` centroids, as [A]/[H] run it.
It costs the same single pass over the input as one centroid over ``B·H·W`` (the second stage runs on a
``(B, 1+C)`` tensor), so there is no reason to deviate. Both are equivariant under isometries, hence: with unit
scale (``γ = σ + ε``) and no rescaling the layer is the isometry taking μ to β — distances are preserved and
the batch mean of the output is exactly β (tested). With other ``γ`` the output mean is only close to β.

**Speed** (batch norm is the paper's bottleneck, ≈60% of the runtime). Nothing of the literal pipeline (log,
transport, norm, transport, exp over ``(B, 1+C, H, W)``) is materialised. With μ and β fixed for the batch,
``Δ = x - μ`` and :math:`t = a - 1 = \langle\Delta,\Delta\rangle_L/2k` per pixel (:math:`a = \cosh(d/\sqrt{k})`,
from the squared chord as in :func:`lorentzcv.geometry.math.dist`), :math:`\log_\mu x = f(a)\,(x - a\mu)` with
:math:`f(a) = \operatorname{arcosh}(a)/\sqrt{a^2-1}`, :math:`\|\log_\mu x\|_L = \sqrt{k}\operatorname{arcosh}(a)`,
the transports are closed-form and :math:`\exp_\beta` of a vector of known norm is
:math:`\cosh\theta\,\beta + \operatorname{sinhc}\theta\,z`. Both variants reduce to

.. math:: y_s = A\,(x_s - \mu_s) + B'\,\mu_s + D\,\beta_s, \qquad y_0 = \sqrt{\|y_s\|^2 + k},

with per-pixel scalars :math:`A, B', D` that depend only on :math:`\|\Delta_s\|^2`, :math:`\Delta_0`,
:math:`\beta_s\cdot\Delta_s` and batch constants. The layer (``impl="fused"``, :class:`_LorentzBNFunction`) is
one pass of per-pixel channel reductions, scalar math on ``(B, 1, H, W)`` and one multiply-add pass over the
map, with a hand-written backward of the same structure (it saves only ``x``, ``y`` and per-pixel scalars); on
CPU the passes over the map run in cache-sized blocks of samples. Working with differences ``x - μ`` (never
with ``<μ,x>_L`` of two far-away points) keeps float32 as accurate as the literal formula with the chord-based
kernels, also for tight batches far from the origin. ``impl="autograd"`` is the same closed form with plain
autograd ops; ``impl="reference"`` (:func:`lorentz_batch_norm_reference`) is §5.4 written literally with the
kernels of :mod:`lorentzcv.geometry.math` (slow; the baseline in benchmarks and tests). The closed form
assumes the input is on the hyperboloid (every layer's output is); its gradient then agrees with the literal
formula's along the manifold (e.g. through ``add_time``), which is what the tests check.

**Precision.** The layer is a float32 island under ``torch.autocast`` (half inputs are upcast, the output is
float32). The per-pixel scalar math runs in the input dtype without cancellation: ``arcosh(a) =
log1p(t + sqrt(t(t+2)))`` with ``t = a - 1`` (floor on ``a²-1``: 1e-15 in float64 as
:func:`lorentzcv.geometry.math.arcosh`, the machine epsilon in float32), ``sinh``/``cosh`` from one ``expm1``;
the derivatives of the removable singularities (``arcosh(a)/sqrt(a²-1)``, ``sinhc``, ``tanhc``) switch to Taylor
series below a dtype-dependent threshold, and ``exp_β`` clamps the rapidity like
:func:`~lorentzcv.geometry.math.expmap`.
"""

from __future__ import annotations

import math

import torch
from torch import nn

from ..geometry import Lorentz, ManifoldParameter, RescaleConfig
from ..geometry import math as lmath
from ..geometry.precision import no_autocast, upcast
from ..geometry.rescale import computation_dtype, max_distance, rescale_euclid

__all__ = ["LorentzBatchNorm1d", "LorentzBatchNorm2d", "lorentz_batch_norm_reference"]

_VARIANTS = ("hcnn", "rhl")
_IMPLS = ("fused", "autograd", "reference")


# ------------------------------------------------------------------------------------------------------------
# closed form with plain autograd ops (impl="autograd"; also serves RescaleConfig.min_rapidity > 0)
# ------------------------------------------------------------------------------------------------------------
def _acosh_and_ratio(a: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    r"""``(arcosh(a), arcosh(a)/sqrt(a²-1))`` in float64, smooth at ``a = 1`` (ratio ``1 - t/3 + 2t²/15``).

    ``arcosh`` is :func:`lorentzcv.geometry.math.arcosh` (arguments below 1 give ≈ 0, finite gradient).
    """
    a64 = a.double()
    sq = (a64 * a64 - 1).clamp_min(1e-15).sqrt()
    acosh = torch.log(a64 + sq)
    t = (a64 - 1).clamp_min(0)
    small = t < 1e-6
    safe = torch.where(small, torch.ones_like(sq), sq)
    ratio = torch.where(small, 1 - t / 3 + 2 * t * t / 15, acosh / safe)
    return acosh.to(a.dtype), ratio.to(a.dtype)


def _rescale_ratio(n: torch.Tensor, k: torch.Tensor, cfg: RescaleConfig, dtype: torch.dtype) -> torch.Tensor:
    r"""``g(n)/n`` of :func:`lorentzcv.geometry.rescale_euclid` for a vector of Euclidean norm ``n ≥ 0``
    (radius ``m·min(1, √k)``, ``m`` from ``dtype``)."""
    sk = k.sqrt()
    m = max_distance(dtype, cfg.r) * torch.where(sk < 1, sk, torch.ones_like(sk))  # m·min(1, √k) as in rescale
    c = math.atanh(cfg.rho) / (m * cfg.s)
    ratio = (m * c) * lmath.tanhc(c * n)
    if cfg.min_rapidity > 0:
        floor = cfg.min_rapidity * k.sqrt()
        target = (ratio * n).clamp_min(floor)
        tiny = torch.finfo(n.dtype).tiny
        ratio = torch.where(n > 2 * tiny, target / n.clamp_min(tiny), torch.zeros_like(n))
    return ratio


def _batch_mean(m: torch.Tensor, k: torch.Tensor, two_stage: bool) -> torch.Tensor:
    """Centroid of the per-sample means ``m`` (B, 1+C): normalise each first if ``two_stage``."""
    if two_stage:
        m = lmath.normalize(m, k, dim=-1)
    return lmath.normalize(m.mean(0), k, dim=-1)


def _coefficients(
    P: torch.Tensor, dt: torch.Tensor, mu: torch.Tensor, beta_s: torch.Tensor, gamma: torch.Tensor,
    k: torch.Tensor, var: torch.Tensor | None, *, variant: str, eps: float, rescale: RescaleConfig | None,
    rdtype: torch.dtype,
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor]:
    r"""Per-pixel coefficients (each ``(B, 1, N)``) of ``y_s = A (x_s - μ_s) + B' μ_s + D β_s``, and ``σ``.

    Args:
        P: ``(B, 2, N)``: ``‖Δ_s‖²`` and ``β_s·Δ_s`` per pixel, ``Δ = x - μ``.
        dt: ``(B, 1, N)``: ``Δ_0 = x_0 - μ_0``.
        mu: ``(1+C,)`` the batch (or running) mean point; beta_s ``(C,)`` the space part of β.
        var: ``None`` in training (σ is the batch statistic), else the running σ.
    """
    sk = k.sqrt()
    mu_t, mu_s = mu[0], mu[1:]
    beta_t = (beta_s.pow(2).sum() + k).sqrt()
    n2, p1 = P[:, :1], P[:, 1:]
    t = ((n2 - dt * dt) / (2 * k)).clamp_min(0)  # a - 1 = <Δ,Δ>_L/2k (squared chord), a = cosh(d/√k)
    acosh, f = _acosh_and_ratio(1 + t)
    d = sk * acosh  # d(μ, x) = ‖log_μ x‖_L
    if variant == "hcnn":
        norm = d  # ‖P_{μ→o} log_μ x‖_2 = ‖·‖_L = d
    else:
        vt = f * (dt - t * mu_t)  # time component of log_μ x = f (x - a μ)
        norm = (d * d + 2 * vt * vt).sqrt()  # ‖v‖_2² = <v,v>_L + 2 v_t²
    if var is None:
        var = norm.mean()
    s = gamma / (var + eps)
    rho = _rescale_ratio((s * norm).abs(), k, rescale, rdtype) if rescale is not None else None
    scale = s if rho is None else s * rho  # total factor on the tangent vector
    alpha = scale * f  # its coefficient on (x - c μ) resp. (x - a μ)
    theta = scale * acosh  # ‖z‖_L/√k = scale·d/√k
    theta_c = theta.abs().clamp_max(lmath.max_rapidity(theta.dtype))
    # sinh(θ)/θ with θ clamped like lmath.expmap (the direction keeps the unclamped norm)
    sh = torch.where(theta.abs() > theta_c, torch.sinh(theta_c) / theta.abs().clamp_min(1.0),
                     lmath.sinhc(theta))
    ch = torch.cosh(theta_c)
    A = sh * alpha
    if variant == "hcnn":
        # u_s = α (x_s - c μ_s), c - 1 = (t √k + Δ_0)/(√k + μ_0); P_{o→β}(u) adds λ (o + β) with
        # λ = β_s·u_s/(k + √k β_0)
        cm1 = (t * sk + dt) / (sk + mu_t)
        lam = alpha * (p1 - cm1 * (beta_s * mu_s).sum()) / (k + sk * beta_t)
        Bp = -A * cm1
    else:
        # v = α (x - a μ); P_{μ→β}(v) adds λ (μ + β), λ = <β,v>_L/(k - <μ,β>_L)
        mb = -mu_t * beta_t + (mu_s * beta_s).sum()
        lam = alpha * (p1 - beta_t * dt - t * mb) / (k - mb)
        Bp = sh * lam - A * t
    D = ch + sh * lam
    return A, Bp, D, var


def _mean_point(
    m: torch.Tensor | None, running_mean: torch.Tensor, k: torch.Tensor, two_stage: bool
) -> torch.Tensor:
    """Batch mean from per-sample means ``m`` (training) or ``exp0(running_mean)`` (eval, ``m is None``)."""
    if m is not None:
        return _batch_mean(m, k, two_stage)
    return lmath.expmap0(running_mean, k, dim=-1)


def _forward_autograd(
    x3: torch.Tensor, beta_s: torch.Tensor, gamma: torch.Tensor, k: torch.Tensor, running_mean: torch.Tensor,
    running_var: torch.Tensor | None, opts: tuple,
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """Closed form with plain autograd ops (``impl="autograd"``); ``running_var is None`` means training."""
    variant, eps, rescale, rdtype, two_stage = opts
    mu = _mean_point(x3.mean(-1) if running_var is None else None, running_mean, k, two_stage)
    V = torch.stack([mu[1:], beta_s], 1)  # (C, 2)
    delta = x3 - mu[:, None]  # Δ = x - μ
    ds = delta[:, 1:]
    P = torch.cat([ds.pow(2).sum(1, keepdim=True), torch.matmul(beta_s[None], ds)], 1)  # (B, 2, N)
    A, Bp, D, var = _coefficients(P, delta[:, :1], mu, beta_s, gamma, k, running_var, variant=variant, eps=eps,
                                  rescale=rescale, rdtype=rdtype)
    ys = A * ds + torch.matmul(V, torch.cat([Bp, D], 1))
    return lmath.add_time(ys, k, dim=1), mu, var


# ------------------------------------------------------------------------------------------------------------
# fused closed form with a hand-written backward (impl="fused", the default)
# ------------------------------------------------------------------------------------------------------------
# Per-pixel scalar math on (B, 1, N) tensors, in the input dtype.
# The forward evaluates only what the output needs; derivatives are formed in the backward. Below these
# thresholds the derivatives of the removable singularities use their Taylor series (the series' truncation
# error and the cancellation of the direct formula above the threshold are both at the dtype's precision).
_F_SERIES = {torch.float64: 1e-3, torch.float32: 0.05}  # on t = a - 1 for d/da [arcosh(a)/sqrt(a²-1)]
_SH_SERIES = {torch.float64: 0.1, torch.float32: 0.3}  # on |θ| for d/dθ sinh(θ)/θ and tanh(θ)/θ
# Floor of a²-1 under the square root: lmath.arcosh's 1e-15 in float64; in float32 the machine epsilon, the
# resolution of a = -<μ,x>_L/k itself (it bounds the derivative 1/sqrt(a²-1) of arcosh at coincident points).
_Q_FLOOR = {torch.float64: 1e-15, torch.float32: float(torch.finfo(torch.float32).eps)}
_TINY = 1e-30


def _thr(table: dict, dtype: torch.dtype) -> float:
    return table.get(dtype, table[torch.float32])


def _none_below(t: torch.Tensor, thr: float) -> bool:
    """On CPU, whether no element is below ``thr`` (then a series branch can be skipped); on accelerators
    always False (no host sync)."""
    return t.device.type == "cpu" and float(t.min()) >= thr


def _acosh_f(t: torch.Tensor) -> tuple[torch.Tensor, ...]:
    r"""From ``t = a - 1``: ``t`` (clamped at 0), ``q = a²-1``, ``sqrt(q)``, ``arcosh(a)`` and
    ``f = arcosh(a)/sqrt(a²-1)``.

    ``arcosh(a) = log1p(t + sqrt(t(t+2)))``: no cancellation near ``a = 1``, so ``f`` needs no series.
    """
    t = t.clamp_min(0)
    q = (t * (t + 2)).clamp_min(_thr(_Q_FLOOR, t.dtype))
    sq = q.sqrt()
    acosh = torch.log1p(t + sq)
    return t, q, sq, acosh, acosh / sq


def _f_prime(t: torch.Tensor, q: torch.Tensor, f: torch.Tensor) -> torch.Tensor:
    r""":math:`f'(a) = (1 - a f)/(a^2-1)`; series ``Σ (-1)ⁿ n (n!)² 2ⁿ tⁿ⁻¹/(2n+1)!`` for small ``t = a-1``."""
    direct = (1 - (1 + t) * f) / q
    if _none_below(t, _thr(_F_SERIES, t.dtype)):
        return direct
    ser = -1 / 3 + t * (4 / 15 + t * (-6 / 35 + t * (32 / 315 - t * (40 / 693))))
    return torch.where(t < _thr(_F_SERIES, t.dtype), ser, direct)


def _sinhc_cosh(theta: torch.Tensor, dtype: torch.dtype) -> tuple[torch.Tensor, ...]:
    r"""``|θ|``, ``max(|θ|, tiny)``, ``sinh(θ_c)``, ``sh = sinh(θ_c)/|θ|`` and ``ch = cosh(θ_c)`` with
    ``θ_c = min(|θ|, max_rapidity(dtype))`` as in :func:`lorentzcv.geometry.math.expmap`.

    One ``expm1``: with ``u = e^θ - 1``, ``sinh θ = (u + u/(u+1))/2`` and ``cosh θ = 1 + u²/(2(u+1))`` have no
    cancellation at small θ.
    """
    th = theta.abs()
    u = torch.expm1(th.clamp_max(lmath.max_rapidity(dtype)))
    r = u / (u + 1)
    sinh = (u + r).mul_(0.5)
    ch = torch.addcmul(torch.ones_like(u), u, r, value=0.5)
    ths = th.clamp_min(_TINY)
    return th, ths, sinh, sinh / ths, ch


def _sinhc_cosh_prime(
    theta: torch.Tensor, th: torch.Tensor, ths: torch.Tensor, sinh: torch.Tensor, sh: torch.Tensor,
    ch: torch.Tensor, dtype: torch.dtype,
) -> tuple[torch.Tensor, torch.Tensor]:
    r"""Derivatives w.r.t. θ of ``sh`` (``(cosh θ - sinhc θ)/θ``, series ``θ/3 + θ³/30 + …`` for small θ) and of
    ``ch`` (``sinh θ``); past the clamp ``sh' = -sh/θ`` and ``ch' = 0``."""
    sgn = theta / ths
    shp = (ch - sh) * sgn / ths
    if not _none_below(th, _thr(_SH_SERIES, dtype)):
        t2 = th * th
        ser = theta * (1 / 3 + t2 * (1 / 30 + t2 * (1 / 840 + t2 / 45360)))
        shp = torch.where(th < _thr(_SH_SERIES, dtype), ser, shp)
    chp = sinh * sgn
    tmax = lmath.max_rapidity(dtype)
    if theta.device.type != "cpu" or float(th.max()) > tmax:  # (no host sync on accelerators)
        clamped = th > tmax
        shp = torch.where(clamped, -sh * sgn / ths, shp)
        chp = torch.where(clamped, torch.zeros_like(chp), chp)
    return shp, chp


# tanh(t)/t = Σ co[n] t^(2n)
_TANHC_SERIES = (1.0, -1 / 3, 2 / 15, -17 / 315, 62 / 2835, -1382 / 155925, 21844 / 6081075, -929569 / 638512875)


def _tanhc(t: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    r"""``max(t, tiny)``, ``tanh`` of it and ``tanh(t)/t`` for ``t ≥ 0`` (no cancellation, no series needed)."""
    ts = t.clamp_min(_TINY)
    th = torch.tanh(ts)
    return ts, th, th / ts


def _tanhc_prime(t: torch.Tensor, ts: torch.Tensor, th: torch.Tensor, tc: torch.Tensor) -> torch.Tensor:
    r"""``d/dt tanh(t)/t = (1 - tanh² t - tanhc t)/t``; series of :data:`_TANHC_SERIES` for small ``t``."""
    direct = (1 - th * th - tc) / ts
    if _none_below(t, _thr(_SH_SERIES, t.dtype)):
        return direct
    t2 = t * t
    co = _TANHC_SERIES
    ser = 2 * (len(co) - 1) * co[-1]
    for n in range(len(co) - 2, 0, -1):
        ser = 2 * n * co[n] + t2 * ser
    return torch.where(t < _thr(_SH_SERIES, t.dtype), t * ser, direct)


def _pixel_forward(
    dt: torch.Tensor, n2: torch.Tensor, p1: torch.Tensor, c: dict, var_in: torch.Tensor | None, *,
    variant: str, eps: float, rescale: bool, dtype: torch.dtype,
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor, dict]:
    r"""Coefficients of ``y_s = A (x_s - μ_s) + B' μ_s + D β_s`` per pixel, σ, and what the backward needs.

    Everything is expressed through ``Δ = x - μ``: ``t = a - 1 = <Δ,Δ>_L/2k`` (the squared chord, as
    :func:`lorentzcv.geometry.math.dist` uses it) and ``c - 1``. This keeps pixels near a mean far from the origin
    accurate: ``a = -<μ,x>_L/k`` itself loses half the digits there and is shifted by the rounding of the input's
    time coordinate. Same math as :func:`_coefficients` (the autograd path).

    Args:
        dt, n2, p1: ``Δ_0 = x_0 - μ_0``, ``‖Δ_s‖²`` and ``β_s·Δ_s`` of shape ``(B, 1, N)``.
        c: 0-d constants (same dtype) ``k, sk (= √k), mu_t, beta_t, gamma``, ``mb`` (``μ_s·β_s``, hcnn) or
            ``mbL`` (``<μ,β>_L``, rhl), ``cr`` and ``Mc`` (rescaling: ``ρ = Mc·tanhc(cr·n)``).
        var_in: the running σ (eval) or ``None`` (training: σ = mean of the norms).
    """
    k, sk, mu_t, beta_t, gamma = c["k"], c["sk"], c["mu_t"], c["beta_t"], c["gamma"]
    t, q, sq, acosh, f = _acosh_f((n2 - dt * dt) / (2 * k))
    sv: dict = dict(dt=dt, t=t, q=q, sq=sq, acosh=acosh, f=f)
    if variant == "hcnn":
        norm = sk * acosh
    else:
        d = sk * acosh
        xm = dt - t * mu_t  # x_0 - a μ_0
        vt = f * xm  # time component of log_μ x
        norm = torch.addcmul(d * d, vt, vt, value=2).clamp_min_(_TINY).sqrt_()
        sv.update(d=d, xm=xm, vt=vt)
    var = norm.mean() if var_in is None else var_in
    den = var + eps
    s = gamma / den
    sv.update(norm=norm, den=den, s=s)
    if rescale:
        ne = s.abs() * norm
        z = c["cr"] * ne
        zs, tz, tc = _tanhc(z)
        rho = c["Mc"] * tc
        scale = s * rho
        sv.update(ne=ne, z=z, zs=zs, tz=tz, tc=tc, rho=rho)
    else:
        scale = s
    theta = scale * acosh
    alpha = scale * f
    th, ths, sinh, sh, ch = _sinhc_cosh(theta, dtype)
    A = sh * alpha
    if variant == "hcnn":
        # u_s = α (x_s - c μ_s), c - 1 = (t √k + Δ_0)/(√k + μ_0); P_{o→β} adds λ (o + β), λ = β_s·u_s/(k + √k β_0)
        cden = sk + mu_t
        cm1 = (t * sk + dt) / cden
        L = k + sk * beta_t
        w = p1 - cm1 * c["mb"]  # β_s·u_s / α
        lam = alpha * w / L
        Bp = -(A * cm1)
        sv.update(cden=cden, cm1=cm1)
    else:
        # v = α (x - a μ); P_{μ→β} adds λ (μ + β), λ = <β,v>_L/(k - <μ,β>_L)
        mbL = c["mbL"]
        L = k - mbL
        w = p1 - beta_t * dt - t * c["mbL"]  # <β, v>_L / α
        lam = alpha * w / L
        Bp = sh * lam - A * t
    D = torch.addcmul(ch, sh, lam)
    sv.update(scale=scale, theta=theta, th=th, ths=ths, sinh=sinh, sh=sh, ch=ch, alpha=alpha, L=L, w=w, lam=lam,
              A=A, dtype=dtype)
    return A, Bp, D, var, sv


def _pixel_backward(
    gA: torch.Tensor, gBp: torch.Tensor, gD: torch.Tensor, c: dict, sv: dict, *, variant: str, rescale: bool,
    training: bool,
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor, dict]:
    """Gradients of :func:`_pixel_forward` w.r.t. ``x_0`` (through ``Δ_0``), ``n2``, ``p1`` (per pixel) and the
    constants ``c`` (0-d)."""
    k, sk, mu_t, beta_t = c["k"], c["sk"], c["mu_t"], c["beta_t"]
    dt, t, f, acosh = sv["dt"], sv["t"], sv["f"], sv["acosh"]
    sh, lam, alpha, L, w, A = sv["sh"], sv["lam"], sv["alpha"], sv["L"], sv["w"], sv["A"]
    g: dict = {}
    if variant == "hcnn":
        cm1, cden, mb = sv["cm1"], sv["cden"], c["mb"]
        gAc = gA - gBp * cm1
        g_sh = torch.addcmul(gAc * alpha, gD, lam)
        g_lam = gD * sh
        g_w = g_lam * alpha / L
        g_alpha = torch.addcmul(gAc * sh, g_lam, w / L)
        g_cm1 = -(gBp * A + g_w * mb)
        g_p1 = g_w
        g["mb"] = -(g_w * cm1).sum()
        g_t = g_cm1 * (sk / cden)
        g_dt = g_cm1 / cden
        g_sk = (g_cm1 * (t - cm1)).sum() / cden
        g_mu_t = -(g_cm1 * cm1).sum() / cden
        g_L = -(g_lam * lam).sum() / L
        g_k = g_L
        g_sk = g_sk + g_L * beta_t
        g["beta_t"] = g_L * sk
    else:
        mbL = c["mbL"]
        g_sh = gA * alpha + gBp * (lam - alpha * t) + gD * lam
        g_lam = (gBp + gD) * sh
        g_w = g_lam * alpha / L
        g_alpha = torch.addcmul((gA - gBp * t) * sh, g_lam, w / L)
        g_t = -(gBp * A + g_w * mbL)
        g_p1 = g_w
        g_dt = -g_w * beta_t
        g["beta_t"] = -(g_w * dt).sum()
        g_Lsum = -(g_lam * lam).sum() / L
        g["mbL"] = -(g_w * t).sum() - g_Lsum
        g_k = g_Lsum
        g_sk = torch.zeros_like(k)
        g_mu_t = torch.zeros_like(k)
    # θ = scale·arcosh(a), α = scale·f(a)
    shp, chp = _sinhc_cosh_prime(sv["theta"], sv["th"], sv["ths"], sv["sinh"], sh, sv["ch"], sv["dtype"])
    g_theta = torch.addcmul(g_sh * shp, gD, chp)
    g_scale = torch.addcmul(g_theta * acosh, g_alpha, f)
    g_acosh = g_theta * sv["scale"]
    g_f = g_alpha * sv["scale"]
    s, den, norm = sv["s"], sv["den"], sv["norm"]
    if rescale:
        rho, ne = sv["rho"], sv["ne"]
        tcp = _tanhc_prime(sv["z"], sv["zs"], sv["tz"], sv["tc"])
        g_rho = g_scale * s
        g_s = (g_scale * rho).sum()
        g_ne = g_rho * c["Mc"] * tcp  # ρ = Mc·tanhc(cr·ne)
        g["cr"] = (g_ne * ne).sum()
        g_ne = g_ne * c["cr"]
        g_norm = g_ne * s.abs()
        g_s = g_s + (g_ne * norm).sum() * s.sign()
    else:
        g_norm = None
        g_s = g_scale.sum()
    g["gamma"] = g_s / den
    if training:  # σ = mean(norm)
        g_var = -g_s * s / den
        g_norm_var = g_var / norm.numel()
        g_norm = g_norm_var if g_norm is None else g_norm + g_norm_var
    if g_norm is not None:
        if variant == "hcnn":
            g_sk = g_sk + (g_norm * acosh).sum()
            g_acosh = g_acosh + g_norm * sk
        else:
            d, xm, vt = sv["d"], sv["xm"], sv["vt"]
            g_d = g_norm * d / norm
            g_vt = 2 * g_norm * vt / norm
            g_f = g_f + g_vt * xm
            g_xm = g_vt * f
            g_dt = g_dt + g_xm
            g_t = g_t - g_xm * mu_t
            g_mu_t = g_mu_t - (g_xm * t).sum()
            g_sk = g_sk + (g_d * acosh).sum()
            g_acosh = g_acosh + g_d * sk
    # arcosh'(a) = 1/sqrt(a²-1) (with the floor), f'(a); a = 1 + t
    g_t = g_t + g_acosh / sv["sq"] + g_f * _f_prime(t, sv["q"], f)
    # t = (‖Δ_s‖² - Δ_0²)/2k, Δ_0 = x_0 - μ_0
    g_tk = g_t / k
    g_dt = g_dt - g_tk * dt
    g["mu_t"] = g_mu_t - g_dt.sum()
    g["k"] = g_k - (g_tk * t).sum()
    g["sk"] = g_sk
    return g_dt, g_tk / 2, g_p1, g


def _normalize_fwd(m: torch.Tensor, sk: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """``√k·m/n`` with ``n = sqrt(|<m,m>_L|)`` over the last dim (the centroid's normalisation) and ``n``."""
    n = lmath.inner(m, m, keepdim=True).abs().clamp_min(1e-8).sqrt()
    return sk * m / n, n


def _normalize_bwd(g: torch.Tensor, m: torch.Tensor, n: torch.Tensor, sk: torch.Tensor) -> torch.Tensor:
    """Gradient of :func:`_normalize_fwd` w.r.t. ``m`` (time-like ``m``: ``∂n/∂m = -J m/n``,
    ``J = diag(-1, 1, …, 1)``)."""
    gm = (g * m).sum(-1, keepdim=True) * sk / n.pow(3)
    jm = torch.cat([-m[..., :1], m[..., 1:]], -1)
    return sk / n * g + gm * jm


def _constants(
    m: torch.Tensor | None, running_mean: torch.Tensor, beta_s: torch.Tensor, gamma: torch.Tensor, k: torch.Tensor,
    *, variant: str, two_stage: bool, rescale: RescaleConfig | None, rdtype: torch.dtype, dtype: torch.dtype,
) -> tuple[torch.Tensor, torch.Tensor, dict, dict]:
    """The batch mean μ, ``V = [μ_s, β_s]`` (``(C, 2)``) and the 0-d constants of :func:`_pixel_forward` (in
    ``dtype``), from ``m`` (per-sample means, training) or ``running_mean`` (eval), β_s, γ and k.

    The last return value is what :func:`_constants_backward` needs."""
    kk = k.detach().to(dtype)
    sk = kk.sqrt()
    sv: dict = dict(k=kk, sk=sk, variant=variant, two_stage=two_stage)
    if m is not None:
        mm = m.detach().to(dtype)
        if two_stage:
            cb, nb = _normalize_fwd(mm, sk)
            sv.update(m=mm, nb=nb, cb=cb)
            mbar = cb.mean(0)
        else:
            mbar = mm.mean(0)
        mu, n = _normalize_fwd(mbar, sk)
        sv.update(mbar=mbar, n=n, batch=mm.size(0))
    else:
        rm = running_mean.detach().to(dtype)
        r = rm[1:].norm()
        theta = r / sk
        mu = lmath.expmap0(rm, kk)
        sv.update(rm=rm, theta=theta)
    bs = beta_s.detach().to(dtype)
    mu_t, mu_s = mu[0], mu[1:]
    beta_t = (bs.pow(2).sum() + kk).sqrt()
    mb = (mu_s * bs).sum()
    c = dict(k=kk, sk=sk, mu_t=mu_t, beta_t=beta_t, gamma=gamma.detach().to(dtype))
    if variant == "hcnn":
        c["mb"] = mb
    else:
        c["mbL"] = mb - mu_t * beta_t
    if rescale is not None:
        radius = max_distance(rdtype, rescale.r) * sk.clamp_max(1.0)
        c["cr"] = math.atanh(rescale.rho) / (radius * rescale.s)
        c["Mc"] = math.atanh(rescale.rho) / rescale.s
    sv.update(mu=mu, bs=bs, beta_t=beta_t, cr=c.get("cr"))
    return mu, torch.stack([mu_s, bs], 1), c, sv


def _constants_backward(gV: torch.Tensor, g: dict, sv: dict) -> tuple[torch.Tensor | None, ...]:
    """Gradients of :func:`_constants` w.r.t. ``m`` (training; ``None`` in eval), β_s, γ and k."""
    k, sk, mu, bs, beta_t = sv["k"], sv["sk"], sv["mu"], sv["bs"], sv["beta_t"]
    g_mu_s = gV[:, 0].clone()
    g_mu_t = g.get("mu_t", torch.zeros_like(k))
    g_beta_t = g.get("beta_t", torch.zeros_like(k))
    g_bs = gV[:, 1].clone()
    if sv["variant"] == "hcnn":
        g_mb = g.get("mb", torch.zeros_like(k))
    else:  # <μ,β>_L = μ_s·β_s - μ_t β_t
        g_mb = g.get("mbL", torch.zeros_like(k))
        g_mu_t = g_mu_t - g_mb * beta_t
        g_beta_t = g_beta_t - g_mb * mu[0]
    g_mu_s += g_mb * bs
    g_bs += g_mb * mu[1:] + g_beta_t * bs / beta_t
    g_sk = g.get("sk", torch.zeros_like(k))
    if sv["cr"] is not None and "cr" in g:  # cr ∝ 1/min(1, √k)
        g_sk = g_sk - g["cr"] * sv["cr"] / sk * (sk < 1).to(sk.dtype)
    g_k = g.get("k", torch.zeros_like(k)) + g_sk / (2 * sk) + g_beta_t / (2 * beta_t)
    g_mu = torch.cat([g_mu_t.reshape(1), g_mu_s])
    g_m = None
    if "mbar" in sv:  # μ = normalize(m̄): ∂/∂k of √k is g·μ/(2k)
        g_k = g_k + (g_mu * mu).sum() / (2 * k)
        g_mbar = _normalize_bwd(g_mu, sv["mbar"], sv["n"], sk)
        if sv["two_stage"]:
            g_cb = (g_mbar / sv["batch"]).expand_as(sv["cb"])
            g_k = g_k + (g_cb * sv["cb"]).sum() / (2 * k)
            g_m = _normalize_bwd(g_cb, sv["m"], sv["nb"], sk)
        else:
            g_m = (g_mbar / sv["batch"]).expand(sv["batch"], -1)
    else:  # μ = exp0(rm) = (√k cosh θ, sinhc(θ) rm_s), θ = ‖rm_s‖/√k
        theta = sv["theta"]
        th, ths, sinh, sh, ch = _sinhc_cosh(theta, theta.dtype)
        shp, _ = _sinhc_cosh_prime(theta, th, ths, sinh, sh, ch, theta.dtype)
        dmu_t = (ch - theta * sh * theta) / (2 * sk)
        dmu_s = shp * (-theta / (2 * k)) * sv["rm"][1:]
        g_k = g_k + g_mu_t * dmu_t + (g_mu_s * dmu_s).sum()
    return g_m, g_bs, g.get("gamma"), g_k


def _fused_forward(
    x3: torch.Tensor, beta_s: torch.Tensor, gamma: torch.Tensor, k: torch.Tensor, running_mean: torch.Tensor,
    running_var: torch.Tensor | None, opts: tuple, build_graph: bool,
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor, tuple | None]:
    """Forward of :class:`_LorentzBNFunction`; with ``build_graph`` it also returns what the backward needs."""
    variant, eps, rescale, rdtype, two_stage = opts
    Bn, C1, N = x3.shape
    xs = x3[:, 1:]
    m = x3.mean(-1) if running_var is None else None  # per-sample means (training)
    mu, V, c, csv = _constants(m, running_mean, beta_s, gamma, k, variant=variant, two_stage=two_stage,
                               rescale=rescale, rdtype=rdtype, dtype=x3.dtype)
    mu_s, beta_col = V[:, 0, None], V[:, 1, None]
    beta_row = V[:, 1][None]
    step = _chunk(x3)  # cache-blocked on CPU: each pass reads a block of x while it is in cache
    n2 = x3.new_empty(Bn, 1, N)  # ‖Δ_s‖² and β_s·Δ_s with Δ = x - μ (differences first: chord accuracy)
    p1 = x3.new_empty(Bn, 1, N)
    for xc, nc, pc in zip(xs.split(step), n2[:, 0].split(step), p1.split(step)):
        delta = xc - mu_s
        torch.linalg.vecdot(delta, delta, dim=1, out=nc)
        torch.bmm(beta_row.expand(len(xc), -1, -1), delta, out=pc)
    A, Bp, D, var, sv = _pixel_forward(x3[:, :1] - c["mu_t"], n2, p1, c, running_var, variant=variant, eps=eps,
                                       rescale=rescale is not None, dtype=x3.dtype)
    y3 = x3.new_empty(Bn, C1, N)
    for xc, yc, yt, ac, bc, dc in zip(*(t.split(step) for t in (xs, y3[:, 1:], y3[:, 0], A, Bp, D))):
        torch.sub(xc, mu_s, out=yc).mul_(ac)  # y_s = A Δ_s + B' μ_s + D β_s
        yc.addcmul_(mu_s, bc).addcmul_(beta_col, dc)
        torch.linalg.vecdot(yc, yc, dim=1, out=yt)
    y3[:, 0].add_(k.detach()).sqrt_()
    saved = (V, c, csv, sv, A, Bp, D) if build_graph else None
    return y3, mu.to(x3.dtype), var.detach().to(x3.dtype), saved


# Elements of a (chunk, 1+C, N) block processed at once on CPU. Single-threaded, blocks of 1 MiB (float32) keep
# the few passes over a block in cache (~30% faster than whole-tensor passes). Multi-threaded, every pass is a
# parallel region, and on a machine whose cores are shared (oversubscribed) each region waits for a descheduled
# thread; there the whole batch is one block (fewest regions), which measured fastest under contention.
_CHUNK_ELEMS = 1 << 18
_CHUNK_ELEMS_MT: int | None = None


def _chunk(x3: torch.Tensor) -> int:
    """Samples per block of the passes over the map (see ``_CHUNK_ELEMS``); on accelerators the whole batch
    (each pass is one kernel)."""
    batch, per_sample = max(x3.size(0), 1), x3[0].numel()
    if x3.device.type != "cpu":
        return batch
    elems = _CHUNK_ELEMS if torch.get_num_threads() == 1 else _CHUNK_ELEMS_MT
    if elems is None:
        return batch
    return min(batch, max(1, elems // max(per_sample, 1)))


class _LorentzBNFunction(torch.autograd.Function):
    r"""Fused Lorentz batch norm on ``x3`` of shape ``(B, 1+C, N)`` (``impl="fused"``).

    Forward: ``m = mean_N(x)`` (training) → μ and the batch constants (:func:`_constants`, on ``(1+C,)``
    tensors) → per pixel ``n2 = ‖x_s - μ_s‖²`` and ``p1 = β_s·(x_s - μ_s)`` (one pass over the map) → per-pixel
    ``A, B', D`` (scalar math on ``(B, 1, N)``, :func:`_pixel_forward`) → ``y_s = A Δ_s + B' μ_s + D β_s``
    written into the output → ``y_0 = sqrt(‖y_s‖² + k)``. Backward (every step by hand, no autograd graph), with
    ``G = ∂L/∂y_s + (∂L/∂y_0 / y_0) y_s``:

    - ``∂L/∂A = Σ_c G Δ_s``, ``∂L/∂[B'; D] = [μ_s, β_s]ᵀ G``, ``∂L/∂[μ_s, β_s] ⊃ Σ_{b,n} G [B' - A; D]ᵀ``;
    - per-pixel chain rule (:func:`_pixel_backward`) → ``∂L/∂x_0``, ``∂L/∂n2``, ``∂L/∂p1`` and the constants;
    - ``∂L/∂[μ_s, β_s] ⊃ Σ_{b,n}`` of the ``n2``/``p1`` terms, then :func:`_constants_backward` → ``∂L/∂m``,
      β, γ, k;
    - ``∂L/∂x_s = A G + ∂L/∂m_s / N + 2 ∂L/∂n2 Δ_s + ∂L/∂p1 β_s``.

    On CPU the passes over the map run in cache-sized blocks of samples (:func:`_chunk`). Saved: the input, the
    output and the per-pixel quantities. Not twice differentiable.
    """

    @staticmethod
    def forward(ctx, x3, beta_s, gamma, k, running_mean, running_var, opts):  # type: ignore[override]
        y3, mu, var, saved = _fused_forward(x3, beta_s, gamma, k, running_mean, running_var, opts, True)
        ctx.save_for_backward(x3, y3)
        ctx.saved = saved
        ctx.opts = opts
        ctx.training = running_var is None
        ctx.mark_non_differentiable(mu, var)
        return y3, mu, var

    @staticmethod
    @torch.autograd.function.once_differentiable
    def backward(ctx, gy, _gmu, _gvar):  # type: ignore[override]
        x3, y3 = ctx.saved_tensors
        V, c, csv, sv, A, Bp, D = ctx.saved
        variant, rescale = ctx.opts[0], ctx.opts[2] is not None
        Bn, C1, N = x3.shape
        xs, yt = x3[:, 1:], y3[:, :1]
        w = gy[:, :1] / yt
        Vt = V.t()
        mu_s = V[:, 0, None]
        BD = torch.cat([Bp - A, D], 1)  # ∂y_s/∂μ_s = B' - A (through Δ_s), ∂y_s/∂β_s = D
        gA = x3.new_empty(Bn, 1, N)
        gBD = x3.new_empty(Bn, 2, N)
        step = _chunk(x3)
        gVb = V.new_zeros(min(step, Bn), C1 - 1, 2)  # per-sample-slot accumulator of Σ_n G [B' - A; D]ᵀ
        blocks = list(zip(*(t.split(step) for t in (gy[:, 1:], y3[:, 1:], w, xs))))
        for (gyc, yc, wc, xc), gac, gbdc, bdc in zip(blocks, gA[:, 0].split(step), gBD.split(step),
                                                     BD.split(step)):
            # phase 1, cache-blocked: G = ∂L/∂y_s (through y_s and y_0) and its reductions
            cs = len(gyc)
            G = torch.addcmul(gyc, yc, wc)
            torch.linalg.vecdot(G, xc - mu_s, dim=1, out=gac)
            torch.bmm(Vt.expand(cs, -1, -1), G, out=gbdc)
            gVb[:cs].baddbmm_(G, bdc.transpose(1, 2))
        gV = gVb.sum(0)
        gxt, gn2, gp1, gc = _pixel_backward(gA, gBD[:, :1], gBD[:, 1:], c, sv, variant=variant, rescale=rescale,
                                            training=ctx.training)
        # n2 = ‖x_s - μ_s‖², p1 = β_s·(x_s - μ_s): ∂/∂μ_s = -2 ∂L/∂n2 Δ_s - ∂L/∂p1 β_s, ∂/∂β_s = ∂L/∂p1 Δ_s
        gP = torch.cat([-2 * gn2, gp1], 1)
        gV += torch.matmul(xs, gP.transpose(1, 2)).sum(0)
        s0, s1 = gP[:, 0].sum(), gp1.sum()
        gV[:, 0] -= s0 * V[:, 0] + s1 * V[:, 1]
        gV[:, 1] -= s1 * V[:, 0]
        gc["k"] = gc["k"] + w.sum() / 2  # y_0 = sqrt(‖y_s‖² + k)
        gm, gbs, gg, gk = _constants_backward(gV, gc, csv)
        gx = None
        if ctx.needs_input_grad[0]:
            gx = torch.empty_like(x3)
            beta_col = V[:, 1, None]
            gm = gm.to(x3.dtype) if gm is not None else None
            gms = gm[:, 1:, None] / N if gm is not None else None
            gms = gms.split(step) if gms is not None else [None] * len(blocks)
            for (gyc, yc, wc, xc), gxc, ac, gn, gpc, gmc in zip(blocks, gx[:, 1:].split(step), A.split(step),
                                                               gn2.split(step), gp1.split(step), gms):
                # phase 2: ∂L/∂x_s = A G + ∂L/∂m_s / N + 2 ∂L/∂n2 Δ_s + ∂L/∂p1 β_s
                G = torch.addcmul(gyc, yc, wc)
                if gmc is not None:
                    torch.addcmul(gmc, G, ac, out=gxc)
                else:
                    torch.mul(G, ac, out=gxc)
                gxc.addcmul_(xc - mu_s, gn, value=2).addcmul_(beta_col, gpc)
            if gm is not None:
                torch.add(gxt, gm[:, :1, None] / N, out=gx[:, :1])
            else:
                gx[:, :1] = gxt
        dt = x3.dtype
        return (gx, gbs.to(dt) if ctx.needs_input_grad[1] else None,
                gg.to(dt) if ctx.needs_input_grad[2] else None, gk.to(dt) if ctx.needs_input_grad[3] else None,
                None, None, None)


# ------------------------------------------------------------------------------------------------------------
# literal reference
# ------------------------------------------------------------------------------------------------------------
def lorentz_batch_norm_reference(
    x: torch.Tensor, beta: torch.Tensor, gamma: torch.Tensor, k: torch.Tensor, running_mean: torch.Tensor,
    running_var: torch.Tensor | None, *, variant: str = "hcnn", eps: float = 1e-5,
    rescale: RescaleConfig | None = None, rdtype: torch.dtype | None = None,
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    r"""``spec/method.md`` §5.4 written literally with the kernels of :mod:`lorentzcv.geometry.math` (slow).

    Args:
        x: ``(B, 1+C)`` or channels-last ``(B, N, 1+C)`` points (manifold dim -1).
        beta: ``(1+C,)`` the learned mean (its time coordinate is recomputed, ``projx``); gamma: scalar.
        k: curvature parameter (``K = -1/k``).
        running_mean: ``(1+C,)`` tangent vector at the origin, used when ``running_var`` is given (eval).
        running_var: ``None`` in training (batch statistics), else the running σ.
        variant: ``"hcnn"`` or ``"rhl"``; rescale: the constants of ``rescale_euclid`` or ``None`` (off).
        rdtype: dtype that sets the rescaling radius.

    Returns:
        ``(y, μ, σ)`` with ``y`` shaped like ``x``.
    """
    beta = lmath.projx(beta, k)
    if running_var is None:
        mean = lmath.centroid(x, k, reduce_dim=-2)  # over N per sample (3-D) or over B (2-D)
        if x.dim() == 3:
            mean = lmath.centroid(mean, k, reduce_dim=-2)
    else:
        mean = lmath.expmap0(running_mean, k)
    u = lmath.logmap(mean, x, k)
    if variant == "hcnn":
        u = lmath.transp0back(mean, u, k)
    var = u.norm(dim=-1).mean() if running_var is None else running_var
    u = u * (gamma / (var + eps))
    if rescale is not None:
        u = rescale_euclid(u, k, dim=-1, config=rescale, dtype=rdtype)
    z = lmath.transp0(beta, u, k) if variant == "hcnn" else lmath.transp(mean, beta, u, k)
    return lmath.expmap(beta, z, k), mean, var


# ------------------------------------------------------------------------------------------------------------
# modules
# ------------------------------------------------------------------------------------------------------------
class _LorentzBatchNorm(nn.Module):
    """Shared implementation of :class:`LorentzBatchNorm1d` / :class:`LorentzBatchNorm2d` on (B, 1+C, N)."""

    _two_stage = False

    def __init__(
        self, manifold: Lorentz, num_features: int, variant: str = "hcnn", momentum: float | None = 0.1,
        eps: float = 1e-5, rescale: bool | None = None, impl: str = "fused",
    ) -> None:
        super().__init__()
        if variant not in _VARIANTS:
            raise ValueError(f"variant must be one of {_VARIANTS}, got {variant!r}")
        if impl not in _IMPLS:
            raise ValueError(f"impl must be one of {_IMPLS}, got {impl!r}")
        if int(num_features) < 1:
            raise ValueError(f"num_features (space channels C) must be >= 1, got {num_features}")
        if momentum is not None and not 0.0 <= momentum <= 1.0:
            raise ValueError(f"momentum must be in [0, 1] or None (cumulative average), got {momentum}")
        self.manifold = manifold
        self.num_features = int(num_features)
        self.variant = variant
        self.momentum = momentum
        self.eps = float(eps)
        self.rescale = (variant == "rhl") if rescale is None else bool(rescale)
        self.impl = impl
        self.beta = ManifoldParameter(manifold.origin(1 + self.num_features), manifold=manifold)
        self.gamma = nn.Parameter(torch.ones(()))
        self.register_buffer("running_mean", torch.zeros(1 + self.num_features))
        self.register_buffer("running_var", torch.ones(()))
        self.register_buffer("num_batches_tracked", torch.tensor(0, dtype=torch.long))

    def extra_repr(self) -> str:
        return (f"{self.num_features}, variant={self.variant!r}, momentum={self.momentum}, eps={self.eps}, "
                f"rescale={self.rescale}, impl={self.impl!r}")

    def reset_running_stats(self) -> None:
        self.running_mean.zero_()
        self.running_var.fill_(1)
        self.num_batches_tracked.zero_()

    def reset_parameters(self) -> None:
        self.reset_running_stats()
        with torch.no_grad():
            self.beta.copy_(self.manifold.origin(1 + self.num_features, dtype=self.beta.dtype,
                                                 device=self.beta.device))
            self.gamma.fill_(1)

    def _rescale_config(self) -> RescaleConfig | None:
        cfg = self.manifold.rescale_config
        return cfg if self.rescale and cfg.enabled else None

    def _normalize3(self, x3: torch.Tensor, rdtype: torch.dtype) -> torch.Tensor:
        """Normalise ``x3`` of shape ``(B, 1+C, N)`` (float32/float64, autocast off)."""
        dtype = x3.dtype
        k = self.manifold.k.to(dtype)
        beta_s = self.beta[1:].to(dtype)
        gamma = self.gamma.to(dtype)
        rm = self.running_mean.to(dtype)
        training = self.training
        rv = None if training else self.running_var.to(dtype)
        opts = (self.variant, self.eps, self._rescale_config(), rdtype, self._two_stage)
        if self.impl == "reference":
            xl = x3.transpose(1, 2) if self._two_stage else x3[..., 0]
            beta = torch.cat([self.beta[:1].to(dtype), beta_s])
            y, mu, var = lorentz_batch_norm_reference(xl, beta, gamma, k, rm, rv, variant=self.variant,
                                                      eps=self.eps, rescale=opts[2], rdtype=rdtype)
            y = y.transpose(1, 2).contiguous() if self._two_stage else y[..., None]
        elif (self.impl == "autograd" or (opts[2] is not None and opts[2].min_rapidity > 0)
              or torch.compiler.is_compiling()):
            # (the fused kernels implement rescaling without the optional rapidity floor; under torch.compile
            # the plain closed form is traced and inductor fuses it)
            y, mu, var = _forward_autograd(x3, beta_s, gamma, k, rm, rv, opts)
        elif torch.is_grad_enabled() and any(t.requires_grad for t in (x3, beta_s, gamma, k)):
            y, mu, var = _LorentzBNFunction.apply(x3, beta_s, gamma, k, rm, rv, opts)
        else:
            y, mu, var, _ = _fused_forward(x3, beta_s, gamma, k, rm, rv, opts, False)
        if training:
            self._update_running_stats(mu.detach(), var.detach(), k.detach())
        return y

    @torch.no_grad()
    def _update_running_stats(self, mu: torch.Tensor, var: torch.Tensor, k: torch.Tensor) -> None:
        self.num_batches_tracked.add_(1)
        mom = 1.0 / float(self.num_batches_tracked) if self.momentum is None else self.momentum
        # rm ← log0(centroid([exp0(rm), μ], w=(1-m, m))), written out on the (1+C,) vectors
        rm = self.running_mean.to(mu.dtype)
        sk = k.sqrt()
        rs = rm[1:]
        theta = rs.norm() / sk
        p = torch.cat([(sk * torch.cosh(theta)).reshape(1), lmath.sinhc(theta) * rs])  # exp0(rm)
        c = lmath.normalize(torch.lerp(p, mu, mom), k)
        cs = c[1:]
        self.running_mean[0] = 0
        self.running_mean[1:] = lmath.asinhc(cs.norm() / sk) * cs  # log0(c)
        self.running_var.mul_(1.0 - mom).add_(mom * var.to(self.running_var.dtype))

    def _check_channels(self, x: torch.Tensor, layout: str) -> None:
        c1 = 1 + self.num_features
        if x.size(1) != c1:
            hint = ""
            if x.size(-1) == c1:
                hint = (" The input looks channels-last; use channels-first (time at channel 0), e.g. "
                        "x.movedim(-1, 1).")
            raise ValueError(
                f"{type(self).__name__} expects {layout} with 1+C = {c1} channels (C = {self.num_features} "
                f"space channels plus time), got shape {tuple(x.shape)}.{hint}"
            )


class LorentzBatchNorm1d(_LorentzBatchNorm):
    r"""Lorentz batch normalisation of points ``(B, 1+C)`` (``spec/method.md`` §5.4).

    See the module docstring for the formulas. The batch mean is the Lorentzian centroid over ``B``.

    Args:
        manifold: the :class:`~lorentzcv.geometry.Lorentz` of the input (``k > 0``, ``K = -1/k``; read at
            every forward, learnable ``k`` receives gradients).
        num_features: number of **space** features ``C`` (the input has ``1+C``).
        variant: ``"hcnn"`` (transport to the origin, variance = mean distance; default) or ``"rhl"``
            ([A]'s ``batch2d``: no transport, Euclidean norm of ``log_μ x``, transport ``μ → β``).
        momentum: for the running statistics (``None``: cumulative average, as ``nn.BatchNorm``).
        eps: added to σ.
        rescale: apply ``rescale_euclid`` (the manifold's :class:`RescaleConfig`) to the normalised tangent
            vector; ``None`` = the variant's default (off for ``"hcnn"``, on for ``"rhl"`` as in [A]).
        impl: ``"fused"`` (closed form + custom autograd function; default), ``"autograd"`` (same closed form,
            plain autograd ops) or ``"reference"`` (the literal, slow formula; for tests and benchmarks).

    Shapes: input ``(B, 1+C)``, output ``(B, 1+C)`` (float32 under autocast), on the manifold.
    """

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if x.dim() != 2:
            raise ValueError(f"LorentzBatchNorm1d expects (B, 1+C) points, got shape {tuple(x.shape)}; "
                             "use LorentzBatchNorm2d for (B, 1+C, H, W) feature maps")
        self._check_channels(x, "(B, 1+C)")
        rdtype = computation_dtype(x)  # (the dtype x is stored in: read before the island upcasts it)
        with no_autocast(x):
            x = upcast(x)
            return self._normalize3(x[..., None], rdtype)[..., 0]


class LorentzBatchNorm2d(_LorentzBatchNorm):
    r"""Lorentz batch normalisation of channels-first feature maps ``(B, 1+C, H, W)`` (time at channel 0;
    ``spec/method.md`` §5.4, ``design.md`` §4.2).

    See the module docstring for the formulas and the fast closed form. The batch mean is the spec's two-stage
    mean: the centroid over ``H·W`` per sample, then over ``B``. Statistics are shared by all pixels.

    Args:
        manifold: the :class:`~lorentzcv.geometry.Lorentz` of the input (``k > 0``, ``K = -1/k``; read at
            every forward, learnable ``k`` receives gradients).
        num_channels: number of **space** channels ``C`` (the input has ``1+C``).
        variant, momentum, eps, rescale, impl: as for :class:`LorentzBatchNorm1d`.

    Shapes: input ``(B, 1+C, H, W)`` (any memory format), output ``(B, 1+C, H, W)`` contiguous (float32 under
    autocast), on the manifold.

    Example:
        >>> m = Lorentz(k=1.0)
        >>> bn = LorentzBatchNorm2d(m, 16)
        >>> y = bn(m.add_time(torch.randn(8, 16, 4, 4), dim=1))
    """

    _two_stage = True

    def __init__(
        self, manifold: Lorentz, num_channels: int, variant: str = "hcnn", momentum: float | None = 0.1,
        eps: float = 1e-5, rescale: bool | None = None, impl: str = "fused",
    ) -> None:
        super().__init__(manifold, num_channels, variant=variant, momentum=momentum, eps=eps, rescale=rescale,
                         impl=impl)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if x.dim() != 4:
            raise ValueError(f"LorentzBatchNorm2d expects channels-first (B, 1+C, H, W) feature maps, got "
                             f"shape {tuple(x.shape)}; use LorentzBatchNorm1d for (B, 1+C) points")
        self._check_channels(x, "channels-first (B, 1+C, H, W)")
        rdtype = computation_dtype(x)  # (the dtype x is stored in: read before the island upcasts it)
        b, c1, h, w = x.shape
        with no_autocast(x):
            x = upcast(x)
            return self._normalize3(x.reshape(b, c1, h * w), rdtype).view(b, c1, h, w)
