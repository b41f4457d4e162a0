r"""Maximum distance rescaling (``docs/method.md`` §2, decisions in ``docs/design.md`` §4.3).

Hyperbolic vectors far from the origin cannot be represented in floating point: a point at rapidity
:math:`r = d/\sqrt{k}` has :math:`x_0 = \sqrt{k}\cosh r`, and once :math:`\cosh^2 r\cdot\varepsilon \gtrsim 1`
the constraint :math:`-x_0^2 + \|x_s\|^2 = -k` is lost in rounding. Rescaling softly compresses every
distance from the origin into a radius the dtype can represent:

.. math::

    g(d) = m_k \tanh(c\,d), \qquad c = \frac{\operatorname{artanh}(\rho)}{m_k\,s}, \qquad
    m = \tfrac12\operatorname{arccosh}\!\Big(\frac{1}{2\varepsilon}\Big)\, r ,

with :math:`\varepsilon` the machine epsilon of the dtype the result lives in (float32: ``m ≈ 9.56``, float64: ``≈ 21.6``,
float16: ``≈ 4.16``, bfloat16: ``≈ 2.91``; the layers' float32 islands always use float32's or float64's, see
:func:`computation_dtype`), softness ``s`` (3 by default; classification uses 2),
``r = 1.2`` and ``ρ = 0.99``: :math:`g(0)=0`, :math:`g'(0) = \operatorname{artanh}(\rho)/s` (0.88 for
``s = 3``), :math:`g(s\,m_k) = \rho\, m_k` and :math:`g < m_k`.

Curvature. ``m`` is a bound on the *rapidity* (what the dtype resolves) and the authors' code caps
both the distance (``g``) and the rapidity (``clamp(f, max=m)``) at ``m``. We use the smooth equivalent,
the radius :math:`m_k = m\cdot\min(1, \sqrt{k})` in distance units, so every output has
``dist0 ≤ m`` *and* rapidity ``≤ m`` without a kink (for ``k = 1`` it is exactly the paper's ``g``).

All functions compute in float32 when given float16/bfloat16 inputs and return the input dtype;
they are smooth at the origin (written with ``sinhc``/``asinhc``/``tanhc``).

Huge and infinite inputs. Norms are taken of ``v/max|v_i|``, so inputs whose squared norm overflows the dtype
are rescaled exactly like any other. A vector with an infinite entry is mapped to the radius :math:`m_k` itself
(:math:`g(\infty) = m_k`) in the direction of its infinite entries' signs, e.g. ``(·, inf, 1)`` to the point at
distance ``m_k`` along the first space axis; NaN entries stay NaN. Infinite inputs are mapped rather than refused
because detecting them would cost a device synchronisation on every call; their gradients are not defined.

The rapidity floor of the authors' code (points pushed *out* to rapidity 0.05) is available as ``min_rapidity``
and off by default. :func:`clip_to_max_distance` is the hard version of the cap (points within ``m_k`` untouched),
which the optimizers apply to manifold parameters.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import torch

from . import math as lmath

__all__ = [
    "RescaleConfig", "max_distance", "computation_dtype", "rescale", "rescale_euclid", "clip_to_max_distance",
    "max_rapidity_radius",
]


@dataclass(frozen=True)
class RescaleConfig:
    """Constants of maximum distance rescaling.

    Attributes:
        s: softness; ``g(s·m) = ρ·m``. Values below ``artanh(ρ) ≈ 2.65`` enlarge small norms.
        r: multiplier on the dtype's maximal distance.
        rho: saturation target.
        min_rapidity: optional floor on the output rapidity of non-zero points ([A] uses 0.05); 0 = off.
        enabled: when False :func:`rescale` / :func:`rescale_euclid` are the identity.
    """

    s: float = 3.0
    r: float = 1.2
    rho: float = 0.99
    min_rapidity: float = 0.0
    enabled: bool = True

    def __post_init__(self) -> None:
        if self.s <= 0 or self.r <= 0 or not 0 < self.rho < 1 or self.min_rapidity < 0:
            raise ValueError(
                f"RescaleConfig needs s > 0, r > 0, 0 < rho < 1 and min_rapidity >= 0, got {self}"
            )


def max_distance(dtype: torch.dtype, r: float = 1.2) -> float:
    r"""``m = ½·arccosh(1/(2ε))·r`` for the machine epsilon ε of ``dtype`` (float32: 9.56)."""
    eps = torch.finfo(dtype).eps
    return 0.5 * math.acosh(1.0 / (2.0 * eps)) * r


def computation_dtype(x: torch.Tensor) -> torch.dtype:
    """The dtype whose epsilon sets the rescaling radius of a **float32 island**: the dtype the hyperbolic
    computation on ``x`` runs in and returns.

    The layers (:mod:`lorentzcv.nn`: lift, conv, batch norm, residual, bridges, manifold swap) upcast float16/
    bfloat16 inputs to float32, compute there and return float32, so a half-precision ``x`` gets float32's radius
    9.56 — whether it comes from an autocast region (e.g. a hybrid model's Euclidean features arriving in
    bfloat16) or from a ``.half()`` tensor. Float32 and float64 inputs get their own dtype's radius (9.56, 21.6).

    :func:`rescale` and :func:`rescale_euclid` are different: they return the dtype they are given, so their
    default radius is that of the *stored* dtype (a point at float32's radius cannot be stored in bfloat16 on the
    manifold). The 16-bit radii (float16 4.16, bfloat16 2.91) are used only there, on tensors stored in 16 bits,
    or when a caller passes ``dtype=`` explicitly.
    """
    return torch.float32 if x.dtype in (torch.float16, torch.bfloat16) else x.dtype


def _radius(k: torch.Tensor | None, dtype: torch.dtype, cfg: RescaleConfig, ref: torch.Tensor) -> torch.Tensor:
    m = torch.tensor(max_distance(dtype, cfg.r), dtype=ref.dtype, device=ref.device)
    if k is None:
        return m
    sk = k.sqrt()
    return torch.where(sk < 1, m * sk, m)  # m·min(1, √k), with the same gradient on every device


def _upcast(x: torch.Tensor) -> torch.Tensor:
    return x.float() if x.dtype in (torch.float16, torch.bfloat16) else x


def _kt(k: torch.Tensor | float, ref: torch.Tensor, dim: int) -> torch.Tensor:
    k = lmath._k(k, ref)
    return lmath._kdim(k, ref.dim(), dim)


def rescale(
    x: torch.Tensor, k: torch.Tensor | float, *, dim: int = -1, config: RescaleConfig = RescaleConfig(),
    dtype: torch.dtype | None = None,
) -> torch.Tensor:
    r"""Maximum distance rescaling of points: keep the direction, map ``dist0`` from ``d`` to ``g(d)``.

    :math:`x_s \leftarrow x_s\,\sinh(g(d)/\sqrt{k}) / \sinh(d/\sqrt{k})`, then time from space. The ratio is
    evaluated as ``sinhc(b)·(g(d)/d)·asinhc(‖x_s‖/√k)`` (``b = g(d)/√k``), which is smooth at the origin with
    value ``artanh(ρ)/s``.

    Args:
        x: points, manifold dimension ``dim``.
        k: the curvature parameter (``K = -1/k``).
        config: the constants (:class:`RescaleConfig`).
        dtype: dtype whose epsilon sets ``m``; default the dtype ``x`` is stored in, which is also the dtype of
            the result (see :func:`computation_dtype` for the layers' float32 islands).

    A point with an infinite space entry is mapped to distance ``m_k`` along the signs of its infinite entries
    (module docstring).
    """
    if not config.enabled:
        return x
    dtype = dtype or x.dtype  # the result is stored in x.dtype
    xs = lmath.space(_upcast(x), dim=dim)
    k = _kt(k, xs, dim)
    sk = k.sqrt()
    m = _radius(k, dtype, config, xs)
    c = math.atanh(config.rho) / (m * config.s)
    a, w, inf = lmath._split_scale(xs, dim)  # x_s = a·w without overflow (inf: w = signs of the infinite entries)
    nw = lmath._safe_norm(w, dim)
    n = a * nw / sk  # = sinh(rapidity)
    inf = inf | torch.isinf(n)  # beyond the dtype's range: g(d) = m_k to working precision there
    n = torch.where(inf, torch.ones_like(n), n)  # a finite stand-in for those rows (masked below)
    d = sk * torch.asinh(n)
    b = m * torch.tanh(c * d) / sk  # target rapidity
    b_inf = m / sk  # g(∞) = m_k
    if config.min_rapidity > 0:
        b = b.clamp_min(config.min_rapidity)
        b_inf = b_inf.clamp_min(config.min_rapidity)
        ratio = torch.sinh(b) / n.clamp_min(torch.finfo(n.dtype).tiny)
        ratio = torch.where(n > 0, ratio, torch.zeros_like(ratio))
    else:
        ratio = lmath.sinhc(b) * (m * c) * lmath.tanhc(c * d) * lmath.asinhc(n)
    # x_s·ratio = w·(a·ratio); an infinite row lands at distance m_k along w
    coef = torch.where(inf, sk * torch.sinh(b_inf) / nw, ratio * a)
    return lmath.add_time(coef * w, k, dim=dim).to(x.dtype)


def rescale_euclid(
    v: torch.Tensor, k: torch.Tensor | float | None = None, *, dim: int = -1,
    config: RescaleConfig = RescaleConfig(), dtype: torch.dtype | None = None,
) -> torch.Tensor:
    r"""Maximum distance rescaling of Euclidean or tangent vectors: :math:`v \leftarrow g(\|v\|_2)\, v/\|v\|_2`.

    The norm runs over the whole dimension ``dim`` (a time component included). For a tangent vector at the
    origin :math:`\|v\|_2 = d_0(\exp_0 v)`, so this is :func:`rescale` seen in the tangent space. With ``k``
    given the radius is :math:`m\min(1,\sqrt{k})` as in :func:`rescale`, otherwise ``m``. Written as
    ``m·c·tanhc(c‖v‖)·v``: smooth at 0 with slope ``artanh(ρ)/s``. A vector with an infinite entry gets norm
    ``m`` along the signs of its infinite entries (module docstring).
    """
    if not config.enabled:
        return v
    dtype = dtype or v.dtype  # the result is stored in v.dtype
    vv = _upcast(v)
    m = _radius(None if k is None else _kt(k, vv, dim), dtype, config, vv)
    c = math.atanh(config.rho) / (m * config.s)
    a, w, inf = lmath._split_scale(vv, dim)  # v = a·w without overflow
    nw = lmath._safe_norm(w, dim)
    n = a * nw  # ‖v‖
    inf = inf | torch.isinf(n)  # beyond the dtype's range: g(‖v‖) = m to working precision there
    n = torch.where(inf, torch.ones_like(n), n)  # a finite stand-in for those rows (masked below)
    ratio = (m * c) * lmath.tanhc(c * n)  # g(‖v‖)/‖v‖
    if config.min_rapidity > 0:
        floor = config.min_rapidity * (1.0 if k is None else _kt(k, vv, dim).sqrt())
        target = (ratio * n).clamp_min(floor)
        ratio = torch.where(n > torch.finfo(n.dtype).tiny * 2, target / n, torch.zeros_like(n))
    coef = torch.where(inf, m / nw, ratio * a)  # an infinite row lands at norm m along w
    return (coef * w).to(v.dtype)


def clip_to_max_distance(
    x: torch.Tensor, k: torch.Tensor | float, *, dim: int = -1, r: float = 1.2, dtype: torch.dtype | None = None,
) -> torch.Tensor:
    r"""Hard radial cap: points farther than :math:`m_k = m\min(1,\sqrt{k})` from the origin are put at ``m_k``.

    The *representable radius* of maximum distance rescaling (``m`` of :func:`max_distance` for ``dtype``, default
    the dtype of ``x``): a point beyond it keeps its direction and gets :math:`d_0 = m_k`, i.e.
    :math:`x_s \leftarrow \sqrt{k}\sinh(m_k/\sqrt{k})\,x_s/\|x_s\|`, time recomputed from space; points within
    are returned unchanged (bit for bit). Rows whose squared norm overflows or that hold infinite entries are
    capped along their direction (the signs of the infinite entries); NaN stays NaN. Unlike :func:`rescale` this
    leaves every distance below ``m_k`` alone; the optimizers apply it to manifold parameters after each step and
    curvature move. Not meant for autograd (its derivative is 0 along the radius beyond the cap).

    Args:
        x: points, manifold dimension ``dim`` (``<x,x>_L = -k``).
        k: the curvature parameter (``K = -1/k``).
        r: the multiplier ``r`` of :func:`max_distance` (``RescaleConfig.r``).
        dtype: dtype whose epsilon sets ``m``; default ``x.dtype``.
    """
    xs = lmath.space(_upcast(x), dim=dim)
    k = _kt(k, xs, dim)
    sk = k.sqrt()
    m = _radius(k, dtype or x.dtype, RescaleConfig(r=r), xs)
    a, w, inf = lmath._split_scale(xs, dim)
    nw = lmath._safe_norm(w, dim)
    target = sk * torch.sinh(m / sk)  # ‖x_s‖ at distance m_k
    beyond = inf | (a * nw > target)
    capped = lmath.add_time(target / nw * w, k, dim=dim).to(x.dtype)
    return torch.where(beyond, capped, x)


def max_rapidity_radius(k: torch.Tensor, dtype: torch.dtype, r: float = 1.2) -> torch.Tensor:
    r"""The cap of :func:`clip_to_max_distance` in rapidity units, :math:`m_k/\sqrt{k} = m/\max(1, \sqrt{k})`."""
    m = max_distance(dtype, r)
    return m / k.sqrt().clamp_min(1.0)
