r"""Pure kernels of the Lorentz (hyperboloid) model with an explicit curvature parameter ``k``.

Convention (``docs/design.md`` §1, geoopt's): ``k > 0`` and points satisfy

.. math:: \langle x, x\rangle_L = -x_0^2 + \|x_s\|^2 = -k, \qquad x_0 > 0,

so the sectional curvature is :math:`K = -1/k`. Component 0 of the manifold dimension ``dim`` is time,
the others are space. ``k`` is a tensor (usually a 0-d parameter) broadcastable against the inputs
with the manifold dimension removed; every kernel is differentiable with respect to ``k``.

Numerics (``docs/method.md`` §1.2): removable singularities (``sinh(t)/t``, ``asinh(t)/t`` …) are
evaluated with Taylor branches and safe denominators, so there is no ``0/0`` at the origin, for zero
tangent vectors or for coincident points and gradients stay finite there. ``arcosh`` is evaluated in
float64. Time coordinates of results are recomputed from space (``projx``), which keeps outputs on the
manifold to the precision of their space part.
"""

from __future__ import annotations

import math as pymath

import torch

__all__ = [
    "inner", "lorentz_norm", "arcosh", "dist", "dist0", "sqdist", "expmap", "expmap0", "logmap", "logmap0",
    "transp", "transp0", "transp0back", "projx", "proju", "egrad2rgrad", "origin", "add_time", "time",
    "space", "centroid", "normalize", "max_rapidity", "to_poincare", "from_poincare", "sinhc", "asinhc",
    "tanhc",
]

_SMALL = 1e-4  # below this |t| the Taylor branches of sinhc/asinhc/tanhc are exact to float64


def _k(k: torch.Tensor | float, ref: torch.Tensor) -> torch.Tensor:
    """``k`` as a tensor with the dtype/device of ``ref``."""
    if isinstance(k, torch.Tensor):
        return k.to(dtype=ref.dtype) if k.dtype != ref.dtype else k
    return torch.tensor(k, dtype=ref.dtype, device=ref.device)


def _kdim(k: torch.Tensor, ndim: int, dim: int) -> torch.Tensor:
    """Insert the manifold dimension into a non-scalar ``k`` so it broadcasts against ``(…, n+1, …)``.

    ``k`` broadcasts against the inputs with the manifold dimension removed; a ``k`` that already has the
    inputs' rank (as passed between kernels) is returned unchanged.
    """
    if k.dim() == 0 or k.dim() == ndim:
        return k
    return k.unsqueeze(dim if dim < 0 else dim - ndim)


def time(x: torch.Tensor, *, dim: int = -1) -> torch.Tensor:
    """Time coordinate ``x_0`` (keeps the manifold dimension, size 1)."""
    return x.narrow(dim, 0, 1)


def space(x: torch.Tensor, *, dim: int = -1) -> torch.Tensor:
    """Space coordinates ``x_s`` (size ``n`` along ``dim``)."""
    return x.narrow(dim, 1, x.size(dim) - 1)


def sinhc(t: torch.Tensor) -> torch.Tensor:
    r""":math:`\sinh(t)/t`, smooth at 0 (``1 + t^2/6`` there)."""
    small = t.abs() < _SMALL
    safe = torch.where(small, torch.ones_like(t), t)
    return torch.where(small, 1 + t * t / 6, torch.sinh(safe) / safe)


def asinhc(t: torch.Tensor) -> torch.Tensor:
    r""":math:`\operatorname{asinh}(t)/t`, smooth at 0 (``1 - t^2/6`` there)."""
    small = t.abs() < _SMALL
    safe = torch.where(small, torch.ones_like(t), t)
    return torch.where(small, 1 - t * t / 6, torch.asinh(safe) / safe)


def tanhc(t: torch.Tensor) -> torch.Tensor:
    r""":math:`\tanh(t)/t`, smooth at 0 (``1 - t^2/3`` there)."""
    small = t.abs() < _SMALL
    safe = torch.where(small, torch.ones_like(t), t)
    return torch.where(small, 1 - t * t / 3, torch.tanh(safe) / safe)


_MAX_RAPIDITY = {dt: 0.5 * pymath.log(torch.finfo(dt).max) - 1.0
                 for dt in (torch.float16, torch.bfloat16, torch.float32, torch.float64)}


def max_rapidity(dtype: torch.dtype) -> float:
    r"""Largest rapidity :math:`\theta` for which :math:`\sinh(\theta)^2` is finite in ``dtype``.

    Exponential maps clamp the rapidity :math:`\|u\|_L/\sqrt{k}` to this value (HCNN uses 10, [A] 100,
    which overflows float32); it is ``½·log(max) − 1``: 43.4 for float32/bfloat16, 4.5 for float16. (A table,
    not a cached function: ``torch.compile`` traces a plain lookup without warnings.)
    """
    value = _MAX_RAPIDITY.get(dtype)
    return value if value is not None else 0.5 * pymath.log(torch.finfo(dtype).max) - 1.0


def _sqnorm(v: torch.Tensor, dim: int, keepdim: bool = True) -> torch.Tensor:
    return (v * v).sum(dim=dim, keepdim=keepdim)


def _safe_norm(v: torch.Tensor, dim: int, keepdim: bool = True) -> torch.Tensor:
    """Euclidean norm whose gradient is 0 (not NaN) at the zero vector."""
    return _sqnorm(v, dim, keepdim).clamp_min(torch.finfo(v.dtype).tiny).sqrt()


def _split_scale(v: torch.Tensor, dim: int) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    r"""Overflow-safe split :math:`v = a\,w` of each vector along ``dim`` (keepdim).

    ``a = max|v_i|`` (detached; 1 for the zero vector) and ``w = v / a``, so ``‖w‖ ∈ [1, √n]`` can be squared in
    any dtype while ``‖v‖ = a‖w‖`` need not be representable squared (``‖v‖²`` overflows float16 at 256 and
    float32 at 1.8e19). A vector with an infinite entry is divided by the largest finite number and clamped to
    ``[-2, 2]``: ``w`` is twice the signs of its infinite entries (its direction in the limit; its finite entries
    become ≤ 1e-38 for float32), and ``inf`` is True. NaN entries propagate. Because ``a`` is a constant for
    autograd, ``∂(a‖w‖)/∂v = v/‖v‖`` exactly (the clamp is inactive on finite vectors).

    Returns:
        ``(a, w, inf)``; ``a`` (1 for rows with an infinite entry) and ``inf`` have size 1 along ``dim``.
    """
    a = v.detach().abs().amax(dim=dim, keepdim=True)
    inf = torch.isinf(a)
    a = torch.where(a > 0, a, torch.ones_like(a))
    # |v_i/a| <= 1 on finite rows, so the clamp (whose gradient is 0 on its bounds) only acts on infinite entries
    w = (v / torch.where(inf, torch.full_like(a, torch.finfo(a.dtype).max), a)).clamp(-2.0, 2.0)
    return torch.where(inf, torch.ones_like(a), a), w, inf


def inner(u: torch.Tensor, v: torch.Tensor, *, dim: int = -1, keepdim: bool = False) -> torch.Tensor:
    r"""Minkowski inner product :math:`\langle u, v\rangle_L = -u_0 v_0 + u_s\cdot v_s`."""
    uv = u * v
    return uv.sum(dim=dim, keepdim=keepdim) - 2 * (
        uv.narrow(dim, 0, 1) if keepdim else uv.narrow(dim, 0, 1).squeeze(dim)
    )


def lorentz_norm(u: torch.Tensor, *, dim: int = -1, keepdim: bool = False) -> torch.Tensor:
    r"""Norm :math:`\sqrt{\max(\langle u,u\rangle_L, 10^{-8})}` of a tangent (space-like) vector."""
    return inner(u, u, dim=dim, keepdim=keepdim).clamp_min(1e-8 if u.dtype != torch.float64 else 1e-15).sqrt()


def arcosh(z: torch.Tensor) -> torch.Tensor:
    r""":math:`\operatorname{arcosh}(z) = \log(z + \sqrt{\max(z^2-1, 10^{-15})})` evaluated in float64.

    Arguments below 1 (rounding) give ≈ 0 instead of NaN; the gradient is finite everywhere
    (it is ≈ 1 instead of ∞ at ``z = 1``).
    """
    z64 = z.double()
    return torch.log(z64 + (z64 * z64 - 1).clamp_min(1e-15).sqrt()).to(z.dtype)


def _chord(x: torch.Tensor, y: torch.Tensor, dim: int, keepdim: bool) -> tuple[torch.Tensor, torch.Tensor]:
    """``(y - x, <y-x, y-x>_L)``, the squared chord clamped at 0 (it is ``-2k - 2<x,y>_L`` on the manifold)."""
    diff = y - x
    return diff, inner(diff, diff, dim=dim, keepdim=keepdim).clamp_min(0)


def _chord_dist(c2: torch.Tensor, sk: torch.Tensor) -> torch.Tensor:
    """Geodesic distance ``2√k·asinh(c / (2√k))`` from the squared Minkowski chord ``c2`` (``sk = √k``)."""
    return 2 * sk * torch.asinh(c2.clamp_min(torch.finfo(c2.dtype).tiny).sqrt() / (2 * sk))


def dist(x: torch.Tensor, y: torch.Tensor, k: torch.Tensor, *, dim: int = -1, keepdim: bool = False) -> torch.Tensor:
    r"""Geodesic distance :math:`d(x,y) = \sqrt{k}\,\operatorname{arcosh}(-\langle x,y\rangle_L / k)`.

    Evaluated through the Minkowski chord :math:`c^2 = \langle x-y, x-y\rangle_L = -2k - 2\langle x,y\rangle_L`
    as :math:`d = 2\sqrt{k}\,\operatorname{asinh}(c / (2\sqrt{k}))`: the same value, but accurate to relative
    :math:`\varepsilon\cosh^2 r` for nearby points where ``arcosh`` of a number near 1 loses half the digits.
    The gradient is finite (0 in its Riemannian part) at coincident points.
    """
    k = _k(k, x)
    kk = _kdim(k, x.dim(), dim) if keepdim else k
    _, c2 = _chord(x, y, dim, keepdim)
    return _chord_dist(c2, kk.sqrt())


def dist0(x: torch.Tensor, k: torch.Tensor, *, dim: int = -1, keepdim: bool = False) -> torch.Tensor:
    r"""Distance to the origin, :math:`\sqrt{k}\,\operatorname{asinh}(\|x_s\|/\sqrt{k})`.

    Equal to :math:`\sqrt{k}\operatorname{arcosh}(x_0/\sqrt{k})` on the manifold but computed from the space
    part, which has no cancellation near the origin.
    """
    k = _k(k, x)
    kk = _kdim(k, x.dim(), dim) if keepdim else k
    sk = kk.sqrt()
    n = _safe_norm(space(x, dim=dim), dim, keepdim)
    return sk * torch.asinh(n / sk)


def sqdist(x: torch.Tensor, y: torch.Tensor, k: torch.Tensor, *, dim: int = -1, keepdim: bool = False) -> torch.Tensor:
    r"""Squared Lorentzian distance :math:`\max(-2k - 2\langle x,y\rangle_L, 0)` (Law et al.)."""
    k = _k(k, x)
    kk = _kdim(k, x.dim(), dim) if keepdim else k
    return (-2 * kk - 2 * inner(x, y, dim=dim, keepdim=keepdim)).clamp_min(0)


def projx(x: torch.Tensor, k: torch.Tensor, *, dim: int = -1) -> torch.Tensor:
    r"""Project onto the hyperboloid by recomputing time: :math:`(\sqrt{\|x_s\|^2 + k},\ x_s)`."""
    return add_time(space(x, dim=dim), k, dim=dim)


def add_time(xs: torch.Tensor, k: torch.Tensor, *, dim: int = -1) -> torch.Tensor:
    r"""Lift space coordinates to the hyperboloid: :math:`(\sqrt{\|x_s\|^2 + k},\ x_s)`."""
    k = _kdim(_k(k, xs), xs.dim(), dim)
    return torch.cat([(_sqnorm(xs, dim) + k).sqrt(), xs], dim=dim)


def proju(x: torch.Tensor, v: torch.Tensor, k: torch.Tensor, *, dim: int = -1) -> torch.Tensor:
    r"""Project onto the tangent space :math:`T_x`: :math:`v + (\langle x,v\rangle_L / k)\,x`."""
    k = _kdim(_k(k, x), x.dim(), dim)
    return v + inner(x, v, dim=dim, keepdim=True) / k * x


def egrad2rgrad(x: torch.Tensor, g: torch.Tensor, k: torch.Tensor, *, dim: int = -1) -> torch.Tensor:
    r"""Riemannian gradient: apply the inverse metric ``diag(-1, 1, …, 1)`` to ``g``, then :func:`proju`.

    Out of place (geoopt, HCNN and [A] flip the sign of ``p.grad`` in place).
    """
    g = torch.cat([-time(g, dim=dim), space(g, dim=dim)], dim=dim)
    return proju(x, g, k, dim=dim)


def expmap(x: torch.Tensor, u: torch.Tensor, k: torch.Tensor, *, dim: int = -1) -> torch.Tensor:
    r"""Exponential map :math:`\exp_x(u) = \cosh(\theta)\,x + \sqrt{k}\sinh(\theta)\,u/\|u\|_L`,
    :math:`\theta = \|u\|_L/\sqrt{k}` clamped to :func:`max_rapidity`, followed by :func:`projx`.

    Written as ``cosh(θ)·x + sinhc(θ)·u`` (unclamped), so a zero tangent vector maps to ``x`` exactly. The norm is
    taken of ``u/max|u_i|`` (:func:`_split_scale`), so a ``u`` whose squared norm overflows (float16 norms above
    256, float32 above 1.8e19) or that has infinite entries still lands at rapidity ``max_rapidity`` in its
    direction (not at ``x``); gradients are exact for finite ``u`` and not defined for infinite ones.
    """
    k = _kdim(_k(k, x), x.dim(), dim)
    sk = k.sqrt()
    a, w, inf = _split_scale(u, dim)  # u = a·w without overflow; ‖u‖_L = a·‖w‖_L
    nw = inner(w, w, dim=dim, keepdim=True).clamp_min(torch.finfo(u.dtype).tiny).sqrt()
    theta = torch.where(inf, torch.full_like(nw, torch.inf), a * nw / sk)
    theta_c = theta.clamp_max(max_rapidity(x.dtype))
    # √k·sinh(θc)·u/‖u‖_L when clamped (the direction uses the unclamped norm, ``docs/method.md`` §1.2 item 7), else sinhc(θ)·u
    coef = torch.where(theta > theta_c, sk * torch.sinh(theta_c) / nw, sinhc(theta_c) * a)
    return projx(torch.cosh(theta_c) * x + coef * w, k, dim=dim)


def expmap0(u: torch.Tensor, k: torch.Tensor, *, dim: int = -1) -> torch.Tensor:
    r"""Exponential map at the origin, :math:`(\sqrt{k}\cosh\theta,\ \sqrt{k}\sinh\theta\ u_s/\|u_s\|)`,
    :math:`\theta = \|u_s\|/\sqrt{k}` (clamped to :func:`max_rapidity`). The time component of ``u`` is ignored.

    Overflow-safe like :func:`expmap`: a huge or infinite ``u_s`` gives the point at rapidity ``max_rapidity`` in
    its direction, never the origin."""
    k = _kdim(_k(k, u), u.dim(), dim)
    sk = k.sqrt()
    a, w, inf = _split_scale(space(u, dim=dim), dim)  # u_s = a·w without overflow
    nw = _safe_norm(w, dim)
    theta = torch.where(inf, torch.full_like(nw, torch.inf), a * nw / sk)
    theta_c = theta.clamp_max(max_rapidity(u.dtype))
    coef = torch.where(theta > theta_c, sk * torch.sinh(theta_c) / nw, sinhc(theta_c) * a)
    return add_time(coef * w, k, dim=dim)


def logmap(x: torch.Tensor, y: torch.Tensor, k: torch.Tensor, *, dim: int = -1) -> torch.Tensor:
    r"""Logarithmic map :math:`\log_x(y) = d(x,y)\, w/\|w\|_L` with :math:`w = y + (\langle x,y\rangle_L/k)\,x`.

    Uses :math:`w = (y-x) - \frac{c^2}{2k}x` (``c²`` the squared chord of :func:`dist`) and
    :math:`\|w\|_L = \sqrt{k}\sinh(d/\sqrt{k})`, i.e. :math:`\log_x(y) = w / \operatorname{sinhc}(d/\sqrt{k})`:
    accurate for nearby points and exactly 0 for coincident ones (no 0/0).
    """
    k = _kdim(_k(k, x), x.dim(), dim)
    sk = k.sqrt()
    diff, c2 = _chord(x, y, dim, True)
    d = _chord_dist(c2, sk)
    w = diff - c2 / (2 * k) * x
    return w / sinhc(d / sk)


def logmap0(y: torch.Tensor, k: torch.Tensor, *, dim: int = -1) -> torch.Tensor:
    r"""Logarithmic map at the origin :math:`(0,\ d_0(y)\,y_s/\|y_s\|)` with
    :math:`d_0(y)/\|y_s\| = \operatorname{asinhc}(\|y_s\|/\sqrt{k})`, smooth at the origin."""
    k = _kdim(_k(k, y), y.dim(), dim)
    ys = space(y, dim=dim)
    coef = asinhc(_safe_norm(ys, dim) / k.sqrt())
    return torch.cat([torch.zeros_like(time(y, dim=dim)), coef * ys], dim=dim)


def transp(x: torch.Tensor, y: torch.Tensor, v: torch.Tensor, k: torch.Tensor, *, dim: int = -1) -> torch.Tensor:
    r"""Closed-form parallel transport :math:`P_{x\to y}(v) = v + \frac{\langle y,v\rangle_L}{k - \langle x,y\rangle_L}(x+y)`.

    Well defined for coincident points (the log-based form of HCNN/geoopt is 0/0 there).
    """
    k = _kdim(_k(k, x), x.dim(), dim)
    coef = inner(y, v, dim=dim, keepdim=True) / (k - inner(x, y, dim=dim, keepdim=True))
    return v + coef * (x + y)


def _add_origin(x: torch.Tensor, sk: torch.Tensor, dim: int) -> torch.Tensor:
    """``x + o`` with ``o = (√k, 0, …, 0)``."""
    return torch.cat([time(x, dim=dim) + sk, space(x, dim=dim)], dim=dim)


def transp0(y: torch.Tensor, v: torch.Tensor, k: torch.Tensor, *, dim: int = -1) -> torch.Tensor:
    r"""Parallel transport from the origin to ``y``: :math:`v + \frac{\langle y,v\rangle_L}{k + \sqrt{k}\,y_0}(o + y)`."""
    k = _kdim(_k(k, y), y.dim(), dim)
    sk = k.sqrt()
    coef = inner(y, v, dim=dim, keepdim=True) / (k + sk * time(y, dim=dim))
    return v + coef * _add_origin(y, sk, dim)


def transp0back(x: torch.Tensor, v: torch.Tensor, k: torch.Tensor, *, dim: int = -1) -> torch.Tensor:
    r"""Parallel transport from ``x`` to the origin: :math:`v - \frac{\sqrt{k}\,v_0}{k + \sqrt{k}\,x_0}(x + o)`."""
    k = _kdim(_k(k, x), x.dim(), dim)
    sk = k.sqrt()
    coef = -sk * time(v, dim=dim) / (k + sk * time(x, dim=dim))
    return v + coef * _add_origin(x, sk, dim)


def origin(
    *size: int, k: torch.Tensor | float = 1.0, dtype: torch.dtype | None = None,
    device: torch.device | str | None = None, dim: int = -1,
) -> torch.Tensor:
    r"""The origin :math:`o = (\sqrt{k}, 0, …, 0)` broadcast to ``size`` (manifold dimension ``dim``)."""
    ref = torch.empty((), dtype=dtype, device=device)
    k = _k(k, ref)
    x = torch.zeros(*size, dtype=ref.dtype, device=ref.device)
    return projx(x, k.detach() if isinstance(k, torch.Tensor) else k, dim=dim)


def normalize(mu: torch.Tensor, k: torch.Tensor, *, dim: int = -1) -> torch.Tensor:
    r"""Rescale a time-like vector onto the hyperboloid: :math:`\sqrt{k}\,\mu/\sqrt{|\langle\mu,\mu\rangle_L|}`."""
    k = _kdim(_k(k, mu), mu.dim(), dim)
    return k.sqrt() * mu / inner(mu, mu, dim=dim, keepdim=True).abs().clamp_min(1e-8).sqrt()


def centroid(
    x: torch.Tensor, k: torch.Tensor, *, weights: torch.Tensor | None = None, reduce_dim: int = -2,
    dim: int = -1, keepdim: bool = False,
) -> torch.Tensor:
    r"""Lorentzian centroid (Law et al. 2019): :math:`c = \sqrt{k}\,\mu/\sqrt{|\langle\mu,\mu\rangle_L|}`,
    :math:`\mu = \sum_i w_i x_i` (the plain mean over ``reduce_dim`` when ``weights`` is None).

    It minimises the weighted sum of squared Lorentzian distances :func:`sqdist`. ``weights`` has the shape of
    ``x`` without the manifold dimension (e.g. ``(…, N)`` for ``x`` of shape ``(…, N, n+1)``); they are not
    normalised (the result does not depend on a positive common factor).
    """
    if weights is None:
        mu = x.mean(dim=reduce_dim, keepdim=True)
    else:
        mu = (weights.unsqueeze(dim) * x).sum(dim=reduce_dim, keepdim=True)
    c = normalize(mu, k, dim=dim)
    return c if keepdim else c.squeeze(reduce_dim)


def to_poincare(x: torch.Tensor, k: torch.Tensor, *, dim: int = -1) -> torch.Tensor:
    r"""Isometry to the Poincaré ball of radius :math:`\sqrt{k}` (curvature ``-1/k``): :math:`p = \sqrt{k}\,x_s/(x_0+\sqrt{k})`."""
    k = _kdim(_k(k, x), x.dim(), dim)
    sk = k.sqrt()
    return sk * space(x, dim=dim) / (time(x, dim=dim) + sk)


def from_poincare(p: torch.Tensor, k: torch.Tensor, *, dim: int = -1) -> torch.Tensor:
    r"""Inverse of :func:`to_poincare`: :math:`x_s = 2k\,p/(k - \|p\|^2)`, time from space."""
    k = _kdim(_k(k, p), p.dim(), dim)
    xs = 2 * k * p / (k - _sqnorm(p, dim)).clamp_min(1e-15)
    return add_time(xs, k, dim=dim)
