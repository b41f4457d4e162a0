r"""Functional building blocks shared by the Lorentz layers (``docs/method.md`` §1.2, §2, §5.6).

Curvature convention (``docs/design.md`` §1): ``k > 0``, points satisfy :math:`\langle x,x\rangle_L = -k`,
:math:`x_0 > 0`, sectional curvature :math:`K = -1/k`. Every function takes the manifold dimension ``dim``
(``1`` for channels-first maps ``(B, 1+C, H, W)``, ``-1`` for vectors ``(…, 1+C)``; for ``(B, 1+C)`` both
mean the same axis).

The workhorse is :func:`lift`: almost every layer ends with "new space coordinates :math:`y_s`, optionally
boosted and/or maximum-distance rescaled, time from space". All of these are a per-pixel scalar factor
``ratio(‖y_s‖², k, …)`` on the space part plus a per-pixel time ``sqrt(ratio²‖y_s‖² + k)``, so :func:`lift`
computes ``‖y_s‖²`` once, evaluates the scalar factors on the small ``(…, 1, …)`` tensor and writes the
output ``(time, ratio·y_s)`` into one preallocated tensor (no ``torch.cat``, no full-size autograd
intermediates). Two implementations:

* the hot path (time only, or rescaling without boost/floor: every conv, linear, activation and residual by
  default) has a closed-form backward (:class:`lorentzcv.kernels.lift.LiftFast`): one reduction + one multiply over ``y_s`` in forward,
  one reduction + two passes in backward, a few dozen ops on the per-pixel tensor, gradient of ``k`` in closed
  form (scaling symmetry, see the class docstring);
* the generic path (:class:`_Lift`, boost, rapidity floor, bridges, manifold swaps) builds the small per-pixel
  graph with autograd in forward and handles only the full-size part by hand.

Both save only their output for the backward (``y_s = out_s/ratio`` is implied), are first-order
differentiable (``once_differentiable``; no double backward) and agree to rounding (tested).

Float32 islands (``docs/design.md`` §1): the helpers run with autocast disabled and half-precision inputs upcast to
float32, and return float32 (the next autocast op casts down again). The rescaling radius ``m`` is that of the
dtype the island computes in (``computation_dtype``): float32's (m ≈ 9.56) for float32 and float16/bfloat16 inputs
alike, float64's (≈ 21.6) for float64; a 16-bit radius only when ``dtype=`` is passed explicitly.
"""

from __future__ import annotations

import functools
import math
from collections.abc import Callable

import torch
from torch.autograd.function import once_differentiable

from ..geometry import math as lmath
from ..geometry.precision import no_autocast, upcast
from ..geometry.rescale import RescaleConfig, computation_dtype, max_distance
from ..kernels import use_fused
from ..kernels.lift import (
    empty_like_lifted,
    fused_lift,
    fused_lift_supported,
    fused_log0,
    lift_fast,
    radius,
    relu_lift,
)
from ..kernels.swap import fused_swap, fused_swap_supported, swap_scalars

__all__ = [
    "lift", "lorentz_residual", "lorentz_activation", "euclid_to_lorentz", "lorentz_to_euclid", "swap_manifold",
    "check_points",
]

ScaleFn = Callable[..., tuple[torch.Tensor | None, torch.Tensor]]


# --------------------------------------------------------------------------------------------------------------
# validation
# --------------------------------------------------------------------------------------------------------------
def check_points(x: torch.Tensor, channels: int | None, *, dim: int, ndim: int | tuple[int, ...] | None = None,
                 name: str = "input", what: str = "") -> None:
    """Raise ``ValueError`` unless ``x`` has ``1 + channels`` entries along ``dim`` (and ``ndim`` dimensions).

    ``channels`` counts space channels (``None``: any number ≥ 1).
    """
    where = f"{what}: " if what else ""
    if ndim is not None:
        allowed = (ndim,) if isinstance(ndim, int) else tuple(ndim)
        if x.dim() not in allowed:
            layout = {4: "(B, 1+C, H, W)", 2: "(B, 1+C)", 3: "(B, N, 1+C)"}
            exp = " or ".join(layout.get(n, f"{n}-D") for n in allowed)
            raise ValueError(f"{where}{name} must be {exp} (time at index 0 of dim {dim}), got shape {tuple(x.shape)}")
    if x.dim() == 0 or not -x.dim() <= dim < x.dim():
        raise ValueError(f"{where}{name} of shape {tuple(x.shape)} has no dimension {dim}")
    size = x.size(dim)
    if channels is None:
        if size < 2:
            raise ValueError(f"{where}{name} needs a time and at least one space entry along dim {dim}, got shape "
                             f"{tuple(x.shape)}")
    elif size != channels + 1:
        raise ValueError(
            f"{where}{name} must have 1 + {channels} = {channels + 1} entries along dim {dim} (time + {channels} "
            f"space channels), got {size} (shape {tuple(x.shape)}); Lorentz layers count space channels, the "
            f"time coordinate comes first"
        )


# ------------------------------------------------------------------------------------------------------------
# per-pixel scale functions: (sq = ‖y_s‖², k, *params) -> (ratio or None, time), on (…, 1, …) tensors
# ------------------------------------------------------------------------------------------------------------
def _norm(sq: torch.Tensor) -> torch.Tensor:
    return sq.clamp_min(torch.finfo(sq.dtype).tiny).sqrt()


def _time(sq: torch.Tensor, ratio: torch.Tensor | None, k: torch.Tensor) -> torch.Tensor:
    return (sq + k).sqrt() if ratio is None else (ratio * ratio * sq + k).sqrt()


def _sinh_ratio(sq: torch.Tensor, b: torch.Tensor, n: torch.Tensor, limit: torch.Tensor | float) -> torch.Tensor:
    """``sinh(b)/n`` for ``sq > 0`` (accurate for tiny ``n``: ``b ∝ n`` there), its limit at ``sq = 0``."""
    return torch.where(sq > 0, torch.sinh(b) / n, limit)


def _scale_time_only(sq: torch.Tensor, k: torch.Tensor) -> tuple[None, torch.Tensor]:
    return None, _time(sq, None, k)


def _scale_point(
    sq: torch.Tensor, k: torch.Tensor, gamma: torch.Tensor | None = None, *, m0: float | None,
    cfg: RescaleConfig | None, max_rap: float,
) -> tuple[torch.Tensor, torch.Tensor]:
    r"""Boost (rapidity ``r ↦ |γ|·r``) and/or maximum distance rescaling (``d ↦ g(d)``) of ``add_time(y_s)``.

    With ``n = ‖y_s‖/√k = sinh r`` and the target rapidity ``b``, ``ratio = sinh(b)/n`` (limit at ``n = 0``:
    ``m·c·|γ|``, resp. ``|γ|``). Equals :func:`lorentzcv.geometry.rescale.rescale` of ``add_time(y_s)``.
    """
    sk = k.sqrt()
    n = _norm(sq) / sk
    r = torch.asinh(n)
    g = None if gamma is None else gamma.abs()
    if g is not None:
        r = r * g
    if m0 is None:  # boost only, clamped to the largest representable rapidity
        ratio = _sinh_ratio(sq, r.clamp_max(max_rap), n, 1.0 if g is None else g)
        return ratio, _time(sq, ratio, k)
    m = radius(m0, sk)
    mc = math.atanh(cfg.rho) / cfg.s  # m·c, with c = artanh(ρ)/(m·s)
    b = (m / sk) * torch.tanh((mc * sk / m) * r)  # g(d)/√k with d = √k·r
    if cfg.min_rapidity > 0:
        b = b.clamp_min(cfg.min_rapidity)
        ratio = _sinh_ratio(sq, b, n, 0.0)
    else:
        ratio = _sinh_ratio(sq, b, n, mc if g is None else mc * g)
    return ratio, _time(sq, ratio, k)


def _scale_euclid(
    sq: torch.Tensor, k: torch.Tensor, *, m0: float, cfg: RescaleConfig
) -> tuple[torch.Tensor, torch.Tensor]:
    """``rescale_euclid`` of ``y_s`` (radius ``m·min(1, √k)``), then time from space."""
    sk = k.sqrt()
    m = radius(m0, sk)
    mc = math.atanh(cfg.rho) / cfg.s
    n = _norm(sq)
    ratio = torch.where(sq > 0, m * torch.tanh((mc / m) * n) / n, mc)
    if cfg.min_rapidity > 0:
        target = (ratio * n).clamp_min(cfg.min_rapidity * sk)
        ratio = torch.where(sq > 0, target / n, 0.0)
    return ratio, _time(sq, ratio, k)


def _scale_clip_expmap0(
    sq: torch.Tensor, k: torch.Tensor, *, clip_r: float, max_rap: float
) -> tuple[torch.Tensor, torch.Tensor]:
    r"""Feature clipping :math:`v \leftarrow \min(1, r/\|v\|)v` (Guo et al.), then :math:`\exp_0((0, v))`."""
    sk = k.sqrt()
    n = _norm(sq)
    clip = (clip_r / n).clamp_max(1.0)
    theta = (clip / sk) * n
    ratio = _sinh_ratio(sq, theta.clamp_max(max_rap), n / sk, 1.0)
    return ratio, _time(sq, ratio, k)


def _scale_swap(
    sq: torch.Tensor, k1: torch.Tensor, k2: torch.Tensor, *, m0: float | None, cfg: RescaleConfig | None,
    max_rap: float,
) -> tuple[torch.Tensor, torch.Tensor]:
    r""":math:`\exp_0^{k_2}(\mathrm{rescale\_euclid}(\log_0^{k_1} x))` as a factor on ``x_s`` (§1.2 item 13;
    :func:`lorentzcv.kernels.swap.swap_scalars`)."""
    return swap_scalars(sq, k1, k2, m0, math.atanh(cfg.rho) / cfg.s if m0 is not None else 1.0, max_rap)


# ------------------------------------------------------------------------------------------------------------
# the fused lift
# ------------------------------------------------------------------------------------------------------------
def _write(ys: torch.Tensor, ratio: torch.Tensor | None, t: torch.Tensor, dim: int) -> torch.Tensor:
    out = empty_like_lifted(ys, dim)
    n = ys.size(dim)
    if ratio is None:
        out.narrow(dim, 1, n).copy_(ys)
    else:
        torch.mul(ys, ratio, out=out.narrow(dim, 1, n))
    out.narrow(dim, 0, 1).copy_(t)
    return out


class _Lift(torch.autograd.Function):
    """``out = (time(sq, …), ratio(sq, …)·y_s)`` with ``sq = ‖y_s‖²`` along ``dim``; see :func:`lift`.

    The small per-pixel graph ``(sq, params) → (ratio, time)`` is built with autograd inside ``forward`` and
    kept on ``ctx`` (it is ``1/C`` of the size of ``y_s``); ``backward`` handles the full-size part by hand.
    Only the *output* is saved (``y_s = out_s / ratio`` is never materialised again), so the layer adds no
    activation memory beyond its output, which the next layer keeps anyway. Modifying the output in place
    before the backward pass is therefore detected by autograd (version counter) and raises.
    """

    @staticmethod
    def forward(ctx, ys: torch.Tensor, fn: ScaleFn, dim: int, *params: torch.Tensor) -> torch.Tensor:
        sq = (ys * ys).sum(dim=dim, keepdim=True)
        with torch.enable_grad():
            sq_ = sq.requires_grad_(True)
            ps = [p.detach().requires_grad_(bool(r)) for p, r in zip(params, ctx.needs_input_grad[3:])]
            ratio, t = fn(sq_, *ps)
        out = _write(ys, None if ratio is None else ratio.detach(), t.detach(), dim)
        ctx.graph = (sq_, ps, ratio, t)
        ctx.dim = dim
        ctx.save_for_backward(out)
        return out

    @staticmethod
    @once_differentiable
    def backward(ctx, g: torch.Tensor):
        (out,) = ctx.saved_tensors
        sq_, ps, ratio, t = ctx.graph
        dim = ctx.dim
        n = out.size(dim) - 1
        g_t, g_s, out_s = g.narrow(dim, 0, 1), g.narrow(dim, 1, n), out.narrow(dim, 1, n)
        outs, gouts = [t], [g_t]
        if ratio is not None:  # y_s = out_s / ratio; ratio = 0 only where y_s = 0
            r = ratio.detach()
            inv = torch.where(r > 0, 1 / r, 0.0)
            outs.append(ratio)
            gouts.append((g_s * out_s).sum(dim=dim, keepdim=True) * inv)  # <g_s, y_s>
        wrt = [sq_] + [p for p in ps if p.requires_grad]
        grads = torch.autograd.grad(outs, wrt, gouts, allow_unused=True, retain_graph=True)
        g_sq = grads[0] if grads[0] is not None else torch.zeros_like(sq_)
        it = iter(grads[1:])
        g_params = [next(it) if p.requires_grad else None for p in ps]
        g_ys = None
        if ctx.needs_input_grad[0]:  # ratio·g_s + 2·g_sq·y_s
            if ratio is None:
                g_ys = torch.addcmul(g_s, out_s, 2 * g_sq)
            else:
                g_ys = g_s * r
                g_ys.addcmul_(out_s, 2 * g_sq * inv)
        return (g_ys, None, None, *g_params)


_OPTS = {"fast": True}  # "fast": closed-form hot path (False: generic autograd path; used by tests/benchmarks)


def _fast_constants(rescale: RescaleConfig | None, dtype: torch.dtype) -> tuple[float, float] | None:
    """``(m0, m·c)`` of the rescaling in the closed-form lift (``None``: time only)."""
    if rescale is None:
        return None
    return max_distance(dtype, rescale.r), math.atanh(rescale.rho) / rescale.s


def _prep_k(k: torch.Tensor | float, ref: torch.Tensor, dim: int) -> torch.Tensor:
    return lmath._kdim(lmath._k(k, ref), ref.dim(), dim)


def _lift_plain(ys: torch.Tensor, fn: ScaleFn, dim: int, *params: torch.Tensor) -> torch.Tensor:
    """:func:`lift` written with plain differentiable ops and no ``out=`` writes: what ``torch.compile`` traces
    (dynamo graph-breaks on custom autograd functions that call ``autograd.grad`` and on ``out=`` writes into
    views; inductor then fuses these ops into a few kernels)."""
    ratio, t = fn((ys * ys).sum(dim=dim, keepdim=True), *params)
    return torch.cat([t, ys if ratio is None else ratio * ys], dim=dim)


def _plain() -> bool:
    """Whether the plain differentiable ops must be used: under ``torch.compile``/dynamo export (they graph-break
    on the custom autograd functions and ``out=`` writes) and under ``torch.jit.trace`` (which records the
    in-place writes of the inference path wrongly)."""
    return torch.compiler.is_compiling() or torch.jit.is_tracing()


def _run(ys: torch.Tensor, fn: ScaleFn, dim: int, *params: torch.Tensor) -> torch.Tensor:
    if _plain():
        return _lift_plain(ys, fn, dim, *params)
    if torch.is_grad_enabled() and (ys.requires_grad or any(p.requires_grad for p in params)):
        return _Lift.apply(ys, fn, dim, *params)
    with torch.no_grad():  # inference: no autograd bookkeeping
        ratio, t = fn((ys * ys).sum(dim=dim, keepdim=True), *params)
        return _write(ys, ratio, t, dim)


def lift(
    ys: torch.Tensor, k: torch.Tensor | float, *, dim: int = -1, rescale: RescaleConfig | None = None,
    gamma: torch.Tensor | None = None, dtype: torch.dtype | None = None,
) -> torch.Tensor:
    r"""Space coordinates → points, optionally boosted and maximum-distance rescaled (fused).

    Without options it is :math:`(\sqrt{\|y_s\|^2 + k},\ y_s)` (``add_time``, §1.2 item 1). With ``gamma``
    (boost-scale, §5.3 item 2.4) the rapidity :math:`r = \operatorname{asinh}(\|y_s\|/\sqrt{k})` becomes
    :math:`|\gamma| r`; with ``rescale`` (§2.2) the distance to the origin ``d`` becomes
    :math:`g(d) = m_k\tanh(c\,d)` (the result equals ``rescale(add_time(y_s))`` of
    :mod:`lorentzcv.geometry.rescale`). The output direction is that of ``y_s``.

    Args:
        ys: space coordinates, any shape, the space channels along ``dim``.
        k: curvature parameter (``K = -1/k``); gradients reach it.
        dim: the channel dimension (``1`` for maps, ``-1`` for vectors).
        rescale: rescaling constants, ``None`` (or ``enabled=False``) for none.
        gamma: optional boost factor (a tensor, gradients reach it).
        dtype: dtype whose epsilon sets the rescaling radius; default :func:`computation_dtype` of ``ys``.

    Returns:
        Points with ``ys.size(dim) + 1`` entries along ``dim``, float32 for half inputs (float32 island).
    """
    if rescale is not None and not rescale.enabled:
        rescale = None
    dtype = dtype or computation_dtype(ys)
    with no_autocast(ys):
        ys = upcast(ys)
        kk = _prep_k(k, ys, dim)
        if gamma is None and (rescale is None or rescale.min_rapidity == 0) and _OPTS["fast"] and not _plain():
            consts = _fast_constants(rescale, dtype)
            if use_fused(ys) and fused_lift_supported(ys, kk, dim):
                return fused_lift(ys, kk, dim=dim, rescale=consts)
            return lift_fast(ys, kk, dim, *(consts or (None, 1.0)))
        if rescale is None and gamma is None:
            return _run(ys, _scale_time_only, dim, kk)
        fn = functools.partial(
            _scale_point, m0=None if rescale is None else max_distance(dtype, rescale.r), cfg=rescale,
            max_rap=lmath.max_rapidity(ys.dtype),
        )
        if gamma is None:
            return _run(ys, fn, dim, kk)
        return _run(ys, fn, dim, kk, gamma.to(ys.dtype))


# --------------------------------------------------------------------------------------------------------------
# ops of §5.6
# --------------------------------------------------------------------------------------------------------------
def _k_of(manifold_or_k) -> torch.Tensor | float:
    if hasattr(manifold_or_k, "use_k"):
        return manifold_or_k.use_k()
    return manifold_or_k.k if hasattr(manifold_or_k, "k") else manifold_or_k


def lorentz_residual(
    x: torch.Tensor, y: torch.Tensor, manifold, *, dim: int = 1, rescale: bool | RescaleConfig = True,
) -> torch.Tensor:
    r"""Lorentz residual connection (§5.6, [A] ``LorentzBasicBlock``): space addition, time from space, then
    maximum distance rescaling.

    :math:`z_s = x_s + y_s`, :math:`z = \mathrm{rescale}((\sqrt{\|z_s\|^2+k}, z_s))` (HCNN when
    ``rescale=False``). Shapes ``(B, 1+C, H, W)`` (``dim=1``) or ``(…, 1+C)`` (``dim=-1``), same for ``x``/``y``.

    Args:
        manifold: a :class:`~lorentzcv.geometry.Lorentz` (its ``k`` and ``rescale_config`` are used) or ``k``.
        rescale: ``True`` uses the manifold's :class:`RescaleConfig`, a config uses that one, ``False`` none.
    """
    if x.shape != y.shape:
        raise ValueError(f"lorentz_residual needs inputs of the same shape, got {tuple(x.shape)} and {tuple(y.shape)}")
    check_points(x, None, dim=dim, what="lorentz_residual")
    cfg = _config(manifold, rescale)
    dtype = computation_dtype(x)
    with no_autocast(x):
        x, y = upcast(x), upcast(y)
        if use_fused(x) and (cfg is None or cfg.min_rapidity == 0):
            kk = _prep_k(_k_of(manifold), x, dim)
            if fused_lift_supported(x, kk, dim) and fused_lift_supported(y, kk, dim):
                return fused_lift(x, kk, dim=dim, src="sum", y=y, rescale=_fast_constants(cfg, dtype))
        zs = lmath.space(x, dim=dim) + lmath.space(y, dim=dim)
        return lift(zs, _k_of(manifold), dim=dim, rescale=cfg, dtype=dtype)


def _config(manifold, rescale: bool | RescaleConfig | None) -> RescaleConfig | None:
    if isinstance(rescale, RescaleConfig):
        return rescale if rescale.enabled else None
    if not rescale:
        return None
    cfg = getattr(manifold, "rescale_config", None) or RescaleConfig()
    return cfg if cfg.enabled else None


def _is_relu(act: Callable) -> bool:
    return act in (torch.relu, torch.nn.functional.relu) or (
        type(act) is torch.nn.ReLU and not act.inplace)


def lorentz_activation(x: torch.Tensor, act: Callable[[torch.Tensor], torch.Tensor], k: torch.Tensor | float, *,
                       dim: int = 1) -> torch.Tensor:
    r"""Space activation (§5.6): :math:`y = (\sqrt{\|\sigma(x_s)\|^2 + k},\ \sigma(x_s))`.

    ``act`` runs in the input dtype (it is Euclidean); the time is computed in float32. ReLU takes a fused
    path that keeps only the output for backward (half the activation memory of ``relu`` then ``lift``).
    """
    if _is_relu(act) and _OPTS["fast"] and x.dtype not in (torch.float16, torch.bfloat16) and not _plain():
        kk = _prep_k(k, x, dim)
        if use_fused(x) and fused_lift_supported(x, kk, dim):
            return fused_lift(x, kk, dim=dim, src="relu")
        return relu_lift(x, kk, dim)
    ys = act(lmath.space(x, dim=dim))
    return lift(ys, k, dim=dim)


def euclid_to_lorentz(
    v: torch.Tensor, k: torch.Tensor | float, *, dim: int = 1, mode: str = "rescale", clip_r: float = 1.0,
    config: RescaleConfig | None = None, dtype: torch.dtype | None = None,
) -> torch.Tensor:
    r"""Euclidean features → Lorentz points (§5.6 "Manifold swappers").

    * ``mode="rescale"`` ([A]): :math:`v \leftarrow g(\|v\|)\,v/\|v\|` (``rescale_euclid``, radius
      :math:`m\min(1,\sqrt{k})`), used directly as space coordinates: :math:`(\sqrt{\|v\|^2+k}, v)`.
    * ``mode="clip_expmap"`` ([H], Guo et al.): :math:`v \leftarrow \min(1, r/\|v\|)\,v`, then
      :math:`\exp_0((0, v))`.
    * ``mode="add_time"``: ``v`` used as space coordinates as is (the input lift of §5.6).
    """
    dtype = dtype or computation_dtype(v)
    with no_autocast(v):
        v = upcast(v)
        kk = _prep_k(k, v, dim)
        if mode == "rescale":
            cfg = config or RescaleConfig()
            if not cfg.enabled:
                return _run(v, _scale_time_only, dim, kk)
            if use_fused(v) and cfg.min_rapidity == 0 and fused_lift_supported(v, kk, dim):
                return fused_lift(v, kk, dim=dim, rescale=_fast_constants(cfg, dtype), euclid=True)
            return _run(v, functools.partial(_scale_euclid, m0=max_distance(dtype, cfg.r), cfg=cfg), dim, kk)
        if mode == "clip_expmap":
            fn = functools.partial(_scale_clip_expmap0, clip_r=float(clip_r), max_rap=lmath.max_rapidity(v.dtype))
            return _run(v, fn, dim, kk)
        if mode == "add_time":
            if use_fused(v) and fused_lift_supported(v, kk, dim):
                return fused_lift(v, kk, dim=dim)
            return _run(v, _scale_time_only, dim, kk)
    raise ValueError(f"unknown mode {mode!r}; expected 'rescale', 'clip_expmap' or 'add_time'")


def lorentz_to_euclid(x: torch.Tensor, k: torch.Tensor | float, *, dim: int = 1, mode: str = "logmap0") -> torch.Tensor:
    r"""Lorentz points → Euclidean features, the time coordinate dropped (§5.6).

    * ``mode="logmap0"``: space part of :math:`\log_0 x`, i.e. :math:`d_0(x)\,x_s/\|x_s\|` (float32 island).
    * ``mode="space"``: :math:`x_s` (``space_only_swap`` of [A]).
    """
    if mode == "space":
        return lmath.space(x, dim=dim)
    if mode != "logmap0":
        raise ValueError(f"unknown mode {mode!r}; expected 'logmap0' or 'space'")
    with no_autocast(x):
        x = upcast(x)
        xs = lmath.space(x, dim=dim)
        kk = _prep_k(k, xs, dim)
        if use_fused(x) and fused_lift_supported(x, kk, dim):
            return fused_log0(x, kk, dim=dim)
        return lmath.asinhc(lmath._safe_norm(xs, dim) / kk.sqrt()) * xs


def swap_manifold(
    x: torch.Tensor, k_src: torch.Tensor | float, k_dst: torch.Tensor | float, *, dim: int = 1,
    rescale: RescaleConfig | None = None, dtype: torch.dtype | None = None,
) -> torch.Tensor:
    r"""Lorentz ``k₁`` → Lorentz ``k₂`` (§1.2 item 13, §2.4 item 7):
    :math:`\exp_0^{k_2}(\mathrm{rescale\_euclid}(\log_0^{k_1} x))` (no rescaling with ``rescale=None``).

    Gradients reach both curvatures. On the fused path (:func:`lorentzcv.kernels.use_fused`) points along the
    last dimension go through :func:`lorentzcv.kernels.swap.fused_swap` (one kernel forward, two backward on CUDA).
    """
    if rescale is not None and not rescale.enabled:
        rescale = None
    dtype = dtype or computation_dtype(x)
    with no_autocast(x):
        x = upcast(x)
        if (use_fused(x) and (rescale is None or rescale.min_rapidity == 0) and isinstance(k_src, torch.Tensor)
                and isinstance(k_dst, torch.Tensor) and fused_swap_supported(x, k_src, k_dst, dim)):
            return fused_swap(x, lmath._k(k_src, x), lmath._k(k_dst, x), rescale=_fast_constants(rescale, dtype))
        xs = lmath.space(x, dim=dim)
        k1, k2 = _prep_k(k_src, xs, dim), _prep_k(k_dst, xs, dim)
        fn = functools.partial(
            _scale_swap, m0=None if rescale is None else max_distance(dtype, rescale.r), cfg=rescale,
            max_rap=lmath.max_rapidity(xs.dtype),
        )
        return _run(xs, fn, dim, k1, k2)
