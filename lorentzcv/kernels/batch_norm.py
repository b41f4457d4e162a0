r"""Fused Lorentz batch norm: the closed form with a hand-written backward (eager, the CPU path) and the same as
Triton kernels behind ``torch.library`` custom ops (the CUDA path).

Curvature convention: ``k > 0`` (points satisfy :math:`\langle x,x\rangle_L = -k`, sectional curvature
:math:`K = -1/k`). The formulas are those of :mod:`lorentzcv.nn.norm` (its module docstring): with the batch mean
μ, the learned mean β and ``Δ = x - μ``, both variants reduce to

.. math:: y_s = A\,(x_s - \mu_s) + B'\,\mu_s + D\,\beta_s, \qquad y_0 = \sqrt{\|y_s\|^2 + k},

with per-pixel scalars :math:`A, B', D` of :math:`\|\Delta_s\|^2`, :math:`\Delta_0`, :math:`\beta_s\cdot\Delta_s`
and batch constants.

* :class:`LorentzBNFunction` (:func:`fused_forward`, :func:`fused_backward`): PyTorch ops, cache-blocked on CPU.
  About 150 kernel launches forward and backward each on a GPU (the per-pixel scalar math alone is ~200 small
  elementwise ops).
* :func:`lorentz_batch_norm_fused`: the custom ops ``lorentzcv::lorentz_batch_norm`` (forward; in training it
  also updates the running statistics in place) and ``lorentzcv::lorentz_batch_norm_backward``. On CUDA they run
  the Triton kernels of :mod:`lorentzcv.kernels._bn_triton`: forward = per-sample means (``torch.mean``), the
  constants (one program), the σ partial sums, the output (whose first program also updates the running
  statistics); backward = ∂L/∂s partials, the per-pixel pass (with per-channel partials of ∂L/∂[μ_s, β_s], summed
  by ``torch.sum``), the constants' backward (one program), ∂L/∂x. 4 launches forward in training (2 in eval),
  5 backward. On other devices the custom ops run the eager closed form (the same numbers; the tests compare
  both, Triton in its interpreter).
"""

from __future__ import annotations

import torch

from ..geometry import math as lmath
from . import LAUNCHES, cpu_path, with_eager_fallback

__all__ = ["LorentzBNFunction", "fused_forward", "fused_backward", "lorentz_batch_norm_fused", "bn_fused_supported",
           "update_running_stats"]


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
    return cpu_path(t) and float(t.min()) >= thr


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
    if not cpu_path(theta) or float(th.max()) > tmax:  # (no host sync on accelerators)
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
    *, variant: str, two_stage: bool, rescale: tuple[float, float] | None, dtype: torch.dtype,
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
    if rescale is not None:  # (m0, m·c): ρ = m·c·tanhc(cr·n), cr = m·c/(m0·min(1, √k))
        m0, mc = rescale
        c["cr"] = mc / (m0 * sk.clamp_max(1.0))
        c["Mc"] = mc
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


def fused_forward(
    x3: torch.Tensor, beta_s: torch.Tensor, gamma: torch.Tensor, k: torch.Tensor, running_mean: torch.Tensor,
    running_var: torch.Tensor | None, opts: tuple, build_graph: bool,
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor, tuple | None]:
    """Forward of :class:`_LorentzBNFunction`; with ``build_graph`` it also returns what the backward needs."""
    variant, eps, rescale, two_stage = opts
    Bn, C1, N = x3.shape
    xs = x3[:, 1:]
    m = x3.mean(-1) if running_var is None else None  # per-sample means (training)
    mu, V, c, csv = _constants(m, running_mean, beta_s, gamma, k, variant=variant, two_stage=two_stage,
                               rescale=rescale, dtype=x3.dtype)
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
    if not cpu_path(x3):
        return batch
    elems = _CHUNK_ELEMS if torch.get_num_threads() == 1 else _CHUNK_ELEMS_MT
    if elems is None:
        return batch
    return min(batch, max(1, elems // max(per_sample, 1)))


class LorentzBNFunction(torch.autograd.Function):
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
        y3, mu, var, saved = fused_forward(x3, beta_s, gamma, k, running_mean, running_var, opts, True)
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
        grads = fused_backward(gy, x3, y3, ctx.saved, ctx.opts, ctx.training, ctx.needs_input_grad[:4])
        return (*grads, None, None, None)


def fused_backward(gy: torch.Tensor, x3: torch.Tensor, y3: torch.Tensor, saved: tuple, opts: tuple, training: bool,
                   needs: tuple[bool, ...] = (True, True, True, True)) -> tuple[torch.Tensor | None, ...]:
    """Backward of :class:`LorentzBNFunction` from what :func:`fused_forward` saved: ``(∂L/∂x3, ∂L/∂β_s, ∂L/∂γ,
    ∂L/∂k)`` (each ``None`` unless ``needs`` asks for it)."""
    V, c, csv, sv, A, Bp, D = saved
    variant, rescale = opts[0], opts[2] is not None
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
                                        training=training)
    # n2 = ‖x_s - μ_s‖², p1 = β_s·(x_s - μ_s): ∂/∂μ_s = -2 ∂L/∂n2 Δ_s - ∂L/∂p1 β_s, ∂/∂β_s = ∂L/∂p1 Δ_s
    gP = torch.cat([-2 * gn2, gp1], 1)
    gV += torch.matmul(xs, gP.transpose(1, 2)).sum(0)
    s0, s1 = gP[:, 0].sum(), gp1.sum()
    gV[:, 0] -= s0 * V[:, 0] + s1 * V[:, 1]
    gV[:, 1] -= s1 * V[:, 0]
    gc["k"] = gc["k"] + w.sum() / 2  # y_0 = sqrt(‖y_s‖² + k)
    gm, gbs, gg, gk = _constants_backward(gV, gc, csv)
    gx = None
    if needs[0]:
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
    return (gx, gbs.to(dt) if needs[1] else None, gg.to(dt) if needs[2] else None,
            gk.to(dt) if needs[3] else None)




@torch.no_grad()
def update_running_stats(running_mean: torch.Tensor, running_var: torch.Tensor, num_batches_tracked: torch.Tensor,
                         mu: torch.Tensor, var: torch.Tensor, k: torch.Tensor, momentum: float | None) -> None:
    r"""In place: ``rm ← log0(centroid([exp0(rm), μ], w=(1-m, m)))``, ``rv ← (1-m) rv + m σ``, ``n += 1``
    (``momentum=None``: ``m = 1/n``, the cumulative average)."""
    num_batches_tracked.add_(1)
    mom = 1.0 / float(num_batches_tracked) if momentum is None else momentum
    rm = running_mean.to(mu.dtype)
    sk = k.sqrt()
    rs = rm[1:]
    theta = rs.norm() / sk
    p = torch.cat([(sk * torch.cosh(theta)).reshape(1), lmath.sinhc(theta) * rs])  # exp0(rm)
    c = lmath.normalize(torch.lerp(p, mu, mom), k)
    cs = c[1:]
    running_mean[0] = 0
    running_mean[1:] = lmath.asinhc(cs.norm() / sk) * cs  # log0(c)
    running_var.mul_(1.0 - mom).add_(mom * var.to(running_var.dtype))


# ------------------------------------------------------------------------------------------------------------
# custom ops (CUDA: Triton kernels; elsewhere: the eager closed form above)
# ------------------------------------------------------------------------------------------------------------
def _opts(rhl: bool, eps: float, rescale: bool, m0: float, mc: float, two_stage: bool) -> tuple:
    return ("rhl" if rhl else "hcnn", eps, (m0, mc) if rescale else None, two_stage)


def _batch_constants(mu: torch.Tensor, beta_s: torch.Tensor, k: torch.Tensor) -> torch.Tensor:
    """``[β_0, μ_s·β_s, μ_0]`` (what the Triton kernels read as ``SC``)."""
    return torch.stack([(beta_s.pow(2).sum() + k).sqrt(), (mu[1:] * beta_s).sum(), mu[0]])


def _bn_eager(x3: torch.Tensor, beta: torch.Tensor, gamma: torch.Tensor, k: torch.Tensor, running_mean: torch.Tensor,
           running_var: torch.Tensor, num_batches_tracked: torch.Tensor, rhl: bool, eps: float, rescale: bool,
           m0: float, mc: float, two_stage: bool, momentum: float, training: bool,
           ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor]:
    """``(y, m, μ, σ, SC)``: output, per-sample means (training; else empty), batch mean, σ, batch constants; in
    training the running statistics are updated in place (:func:`update_running_stats`; ``momentum < 0``: the
    cumulative average).

    ``beta`` is the whole point β (only its space part is read: the layer uses ``projx(β)``)."""
    opts = _opts(rhl, eps, rescale, m0, mc, two_stage)
    beta_s = beta[1:]
    y3, mu, var, _ = fused_forward(x3, beta_s, gamma, k, running_mean, None if training else running_var, opts, False)
    m = x3.mean(-1) if training else x3.new_empty(0)
    out = y3, m, mu.clone(), var.clone(), _batch_constants(mu, beta_s, k)  # (eval: σ is the running σ's storage)
    if training:
        update_running_stats(running_mean, running_var, num_batches_tracked, mu.detach(), var.detach(), k.detach(),
                             None if momentum < 0 else momentum)
    return out


_bn_op = torch.library.custom_op(
    "lorentzcv::lorentz_batch_norm", mutates_args=("running_mean", "running_var", "num_batches_tracked"))(_bn_eager)


@_bn_op.register_fake
def _(x3, beta, gamma, k, running_mean, running_var, num_batches_tracked, rhl, eps, rescale, m0, mc, two_stage,
      momentum, training):
    b, c1, _ = x3.shape
    m = x3.new_empty(b, c1) if training else x3.new_empty(0)
    return torch.empty_like(x3), m, x3.new_empty(c1), x3.new_empty(()), x3.new_empty(3)


def _bn_backward_eager(gy: torch.Tensor, x3: torch.Tensor, y3: torch.Tensor, m: torch.Tensor, mu: torch.Tensor,
                    var: torch.Tensor, sc: torch.Tensor, beta: torch.Tensor, gamma: torch.Tensor, k: torch.Tensor,
                    running_mean: torch.Tensor, running_var: torch.Tensor, rhl: bool, eps: float, rescale: bool,
                    m0: float, mc: float, two_stage: bool, training: bool,
                    ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor]:
    """``(∂L/∂x, ∂L/∂β, ∂L/∂γ, ∂L/∂k)``; ``∂L/∂β`` is 0 at the time coordinate (it is recomputed from space)."""
    opts = _opts(rhl, eps, rescale, m0, mc, two_stage)
    saved = fused_forward(x3, beta[1:], gamma, k, running_mean, None if training else running_var, opts, True)[3]
    gx, gbs, gg, gk = fused_backward(gy.contiguous(), x3, y3, saved, opts, training)
    return gx, torch.cat([gbs.new_zeros(1), gbs]), gg.reshape(gamma.shape), gk.reshape(k.shape)


_bn_backward_op = torch.library.custom_op("lorentzcv::lorentz_batch_norm_backward", mutates_args=())(
    _bn_backward_eager)


@_bn_backward_op.register_fake
def _(gy, x3, y3, m, mu, var, sc, beta, gamma, k, running_mean, running_var, rhl, eps, rescale, m0, mc, two_stage,
      training):
    return torch.empty_like(x3), torch.empty_like(beta), torch.empty_like(gamma), torch.empty_like(k)


def _bn_setup_context(ctx, inputs, output) -> None:
    x3, beta, gamma, k, running_mean, running_var, _nbt, *cfg = inputs
    y3, m, mu, var, sc = output
    if cfg[-1]:  # training: the running statistics are not used by the backward (and were updated in place)
        running_mean, running_var = running_mean.new_empty(running_mean.shape), running_var.new_empty(())
    ctx.save_for_backward(x3, y3, m, mu, var, sc, beta, gamma, k, running_mean, running_var)
    ctx.cfg = cfg[:-2] + cfg[-1:]  # (the backward takes no momentum)
    ctx.mark_non_differentiable(m, mu, var, sc)
    ctx.set_materialize_grads(False)  # no zero-filled gradients for m, μ, σ, SC (kernel launches on a GPU)


def _bn_backward(ctx, gy, _gm, _gmu, _gvar, _gsc):
    if gy is None:
        return (None,) * 15
    gx, gbs, gg, gk = _bn_backward_op(gy, *ctx.saved_tensors, *ctx.cfg)
    return (gx, gbs, gg, gk) + (None,) * 11


class _FusedBNFunction(torch.autograd.Function):
    """Autograd of ``lorentzcv::lorentz_batch_norm`` (a mutating op — it updates the running statistics — so its
    formula cannot be registered on the op itself): the forward op, the backward op."""

    @staticmethod
    def forward(ctx, *inputs):  # type: ignore[override]
        out = _bn_op(*inputs)
        _bn_setup_context(ctx, inputs, out)
        return out

    @staticmethod
    def backward(ctx, *grads):  # type: ignore[override]
        return _bn_backward(ctx, *grads)


LAUNCHES["lorentzcv::lorentz_batch_norm"] = lambda args, kwargs: 4 if args[-1] else 2  # training: + mean, σ
LAUNCHES["lorentzcv::lorentz_batch_norm_backward"] = lambda args, kwargs: 5 if args[-1] else 4


def bn_fused_supported(x3: torch.Tensor, k: torch.Tensor) -> bool:
    """Whether :func:`lorentz_batch_norm_fused` takes ``x3``: float32 and a scalar ``k``."""
    return x3.dtype == torch.float32 and k.numel() == 1


def lorentz_batch_norm_fused(
    x3: torch.Tensor, beta: torch.Tensor, gamma: torch.Tensor, k: torch.Tensor, running_mean: torch.Tensor,
    running_var: torch.Tensor, num_batches_tracked: torch.Tensor, *, variant: str, eps: float,
    rescale: tuple[float, float] | None, two_stage: bool, training: bool, momentum: float | None,
) -> torch.Tensor:
    """Lorentz batch norm of ``x3`` ``(B, 1+C, N)`` through the fused custom ops; in training the running
    statistics are updated in place (by the forward op).

    Args:
        beta: the learned mean β ``(1+C,)`` (its time coordinate is not read: ``projx(β)``; its gradient there is
            0); gamma: scalar; k: the curvature parameter (``K = -1/k``).
        rescale: ``(m0, m·c)`` of ``rescale_euclid`` (radius before ``min(1, √k)``, slope), or ``None``.
        two_stage: per-sample centroids first (2-D maps), else one centroid over the batch.
    """
    m0, mc = rescale if rescale is not None else (1.0, 0.0)
    y3, *_ = _FusedBNFunction.apply(
        x3.contiguous(), beta, gamma, k.reshape(()), running_mean, running_var, num_batches_tracked, variant == "rhl",
        float(eps), rescale is not None, float(m0), float(mc), two_stage, -1.0 if momentum is None else float(momentum),
        training)
    return y3


# ------------------------------------------------------------------------------------------------------------
# Triton launchers (CUDA)
# ------------------------------------------------------------------------------------------------------------
_BLOCK = 128


def _triton():
    from . import _bn_triton

    return _bn_triton


def _cdiv(a: int, b: int) -> int:
    return max(1, -(-a // b))


def launch_triton_forward(x3, beta, gamma, k, running_mean, running_var, num_batches_tracked, rhl, eps, rescale, m0,
                          mc, two_stage, momentum, training):
    """The forward Triton kernels: ``(y, m, μ, σ, SC)`` as :func:`_bn_op` returns them (and, in training, the
    running statistics updated in place)."""
    T = _triton()
    x3 = x3.contiguous()
    beta_s = beta[1:]  # (a view: the kernels read the space part)
    b, c1, n = x3.shape
    npix, nprog = b * n, _cdiv(b * n, _BLOCK)
    m = x3.mean(-1) if training else x3.new_empty(0)
    mu, sc = x3.new_empty(c1), x3.new_empty(3)
    bc = triton_next_pow2(c1)
    T.bn_constants[(1,)](m if training else x3, running_mean, beta_s, k, mu, sc, b, c1, TWO_STAGE=two_stage,
                         TRAINING=training, BLOCK_C=bc)
    part = x3.new_empty(nprog)
    if training:
        T.bn_stats[(nprog,)](x3, mu, beta_s, sc, k, gamma, part, n, c1 - 1, npix, RHL=rhl, BLOCK=_BLOCK)
    y3, var = torch.empty_like(x3), x3.new_empty(())
    T.bn_output[(nprog,)](x3, y3, mu, beta_s, sc, k, gamma, part, running_var, var, running_mean, num_batches_tracked,
                          n, c1 - 1, npix, nprog, eps, m0, mc, float(max(momentum, 0.0)), RHL=rhl, RESCALE=rescale,
                          TRAINING=training, CUMULATIVE=momentum < 0, BLOCK=_BLOCK, BLOCK_C=bc)
    return y3, m, mu, var, sc


def launch_triton_backward(gy, x3, y3, m, mu, var, sc, beta, gamma, k, running_mean, running_var, rhl, eps,
                           rescale, m0, mc, two_stage, training):
    """The backward Triton kernels: ``(∂L/∂x, ∂L/∂β_s, ∂L/∂γ, ∂L/∂k)``."""
    T = _triton()
    gy = gy.contiguous()
    beta_s = beta[1:]
    b, c1, n = x3.shape
    c = c1 - 1
    npix, nprog = b * n, _cdiv(b * n, _BLOCK)
    spart = x3.new_empty(nprog)
    if training:
        T.bn_backward_scale[(nprog,)](x3, y3, gy, mu, beta_s, sc, k, gamma, var, spart, n, c, npix, eps, m0, mc,
                                      RHL=rhl, RESCALE=rescale, BLOCK=_BLOCK)
    pix, cpart, scpart = x3.new_empty(npix * 4), x3.new_empty(nprog * c * 2), x3.new_empty(nprog * 12)
    T.bn_backward_pixels[(nprog,)](x3, y3, gy, mu, beta_s, sc, k, gamma, var, spart, pix, cpart, scpart, n, c, npix,
                                   nprog, eps, m0, mc, RHL=rhl, RESCALE=rescale, TRAINING=training, BLOCK=_BLOCK)
    gv = cpart.view(nprog, c * 2).sum(0)
    gm = x3.new_empty(b * c1) if training else x3.new_empty(1)
    gbeta, gg, gk = torch.empty_like(beta), torch.empty_like(gamma), torch.empty_like(k)
    T.bn_backward_constants[(1,)](m if training else x3, running_mean, mu, beta_s, sc, k, gamma, var, gv, scpart, gm,
                                  gbeta, gg, gk, b, c1, nprog, eps, m0, mc, RHL=rhl, RESCALE=rescale,
                                  TRAINING=training, TWO_STAGE=two_stage, BLOCK_C=triton_next_pow2(c1),
                                  BLOCK=_BLOCK)
    gx = torch.empty_like(x3)
    T.bn_backward_input[(nprog,)](x3, y3, gy, mu, beta_s, pix, gm, gx, n, c, npix, TRAINING=training, BLOCK=_BLOCK)
    return gx, gbeta, gg, gk


def triton_next_pow2(n: int) -> int:
    """The smallest power of two ``>= n`` (Triton block sizes)."""
    return 1 << max(0, (int(n) - 1).bit_length())


_bn_op.register_kernel("cuda")(with_eager_fallback("lorentzcv::lorentz_batch_norm", launch_triton_forward,
                                                   _bn_eager))
_bn_backward_op.register_kernel("cuda")(with_eager_fallback("lorentzcv::lorentz_batch_norm_backward",
                                                            launch_triton_backward, _bn_backward_eager))
