r"""Lorentz batch normalisation (``docs/method.md`` §5.4, ``docs/design.md`` §4.2).

Curvature convention: the layer's :class:`~lorentzcv.geometry.Lorentz` holds ``k > 0`` (points satisfy
:math:`\langle x,x\rangle_L = -k`, sectional curvature :math:`K = -1/k`); ``manifold.k`` is read at every
forward and receives gradients when it is learnable.

For a batch of points :math:`x` with batch mean :math:`\mu` the layer computes

``variant="hcnn"`` (HCNN, Bdeir et al. 2024; the default)
    :math:`u = P_{\mu\to o}(\log_\mu x)`, :math:`\sigma = \operatorname{mean}\|u\|_2` (the Fréchet "variance"
    as a mean *distance*: :math:`\|u\|_2 = \|u\|_L = d(\mu, x)`), :math:`u \leftarrow u\,\gamma/(\sigma+\epsilon)`,
    optionally :math:`u \leftarrow \operatorname{rescale\_euclid}(u)` (``rescale=True``, ``docs/method.md`` §2.3) and
    :math:`y = \exp_\beta(P_{o\to\beta}(u))`.
``variant="rhl"`` (the authors' later ``batch2d``, [A] in ``docs/method.md`` §0)
    :math:`v = \log_\mu x` (no transport to the origin), :math:`\sigma = \operatorname{mean}\|v\|_2` (Euclidean
    norm of the ambient vector, :math:`\|v\|_2^2 = d^2 + 2v_0^2`), :math:`v \leftarrow v\,\gamma/(\sigma+\epsilon)`,
    :math:`v \leftarrow \operatorname{rescale\_euclid}(v)` (on by default, as in [A]) and
    :math:`y = \exp_\beta(P_{\mu\to\beta}(v))`.

:math:`\beta` is a :class:`~lorentzcv.geometry.ManifoldParameter` initialised at the origin and used as
``projx(β)`` (time recomputed from space; identical when β is on the manifold, which Riemannian optimizers
keep; with ``manifold.repair_on_use = False``, the naive-curvature ablation, β is used as stored, through the
literal formula), :math:`\gamma` a learnable scalar (init 1). ``rescale_euclid`` uses the manifold's
:class:`~lorentzcv.geometry.RescaleConfig`, the radius :math:`m\min(1,\sqrt{k})` and the dtype the batch norm computes in
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
:math:`\beta_s\cdot\Delta_s` and batch constants. The layer (``impl="fused"``, :class:`lorentzcv.kernels.batch_norm.LorentzBNFunction`) is
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
from ..kernels import use_fused
from ..kernels.batch_norm import (
    LorentzBNFunction,
    bn_fused_supported,
    fused_forward,
    lorentz_batch_norm_fused,
    update_running_stats,
)

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
# literal reference
# ------------------------------------------------------------------------------------------------------------
def lorentz_batch_norm_reference(
    x: torch.Tensor, beta: torch.Tensor, gamma: torch.Tensor, k: torch.Tensor, running_mean: torch.Tensor,
    running_var: torch.Tensor | None, *, variant: str = "hcnn", eps: float = 1e-5,
    rescale: RescaleConfig | None = None, rdtype: torch.dtype | None = None, project_beta: bool = True,
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    r"""``docs/method.md`` §5.4 written literally with the kernels of :mod:`lorentzcv.geometry.math` (slow).

    Args:
        x: ``(B, 1+C)`` or channels-last ``(B, N, 1+C)`` points (manifold dim -1).
        beta: ``(1+C,)`` the learned mean (its time coordinate is recomputed, ``projx``, unless
            ``project_beta=False``: then used as stored, as the naive-curvature ablation does); gamma: scalar.
        k: curvature parameter (``K = -1/k``).
        running_mean: ``(1+C,)`` tangent vector at the origin, used when ``running_var`` is given (eval).
        running_var: ``None`` in training (batch statistics), else the running σ.
        variant: ``"hcnn"`` or ``"rhl"``; rescale: the constants of ``rescale_euclid`` or ``None`` (off).
        rdtype: dtype that sets the rescaling radius.

    Returns:
        ``(y, μ, σ)`` with ``y`` shaped like ``x``.
    """
    if project_beta:
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
        k = self.manifold.use_k().to(dtype)
        beta_s = self.beta[1:].to(dtype)
        gamma = self.gamma.to(dtype)
        rm = self.running_mean.to(dtype)
        training = self.training
        rv = None if training else self.running_var.to(dtype)
        opts = (self.variant, self.eps, self._rescale_config(), rdtype, self._two_stage)
        repair = getattr(self.manifold, "repair_on_use", True)
        if self.impl == "reference" or not repair:
            # (repair_on_use=False, the naive-curvature ablation: β is used with its stored time coordinate, which
            # only the literal formula does; the closed forms recompute it from space)
            xl = x3.transpose(1, 2) if self._two_stage else x3[..., 0]
            beta = torch.cat([self.beta[:1].to(dtype), beta_s])
            y, mu, var = lorentz_batch_norm_reference(xl, beta, gamma, k, rm, rv, variant=self.variant,
                                                      eps=self.eps, rescale=opts[2], rdtype=rdtype,
                                                      project_beta=repair)
            y = y.transpose(1, 2).contiguous() if self._two_stage else y[..., None]
        elif (self.impl == "autograd" or (opts[2] is not None and opts[2].min_rapidity > 0)
              or torch.compiler.is_compiling() or torch.jit.is_tracing()):
            # (the fused kernels implement rescaling without the optional rapidity floor; under torch.compile
            # the plain closed form is traced and inductor fuses it)
            y, mu, var = _forward_autograd(x3, beta_s, gamma, k, rm, rv, opts)
        elif use_fused(x3) and bn_fused_supported(x3, k) and self.running_mean.dtype == dtype:
            return lorentz_batch_norm_fused(
                x3, self.beta.to(dtype), gamma, k, self.running_mean, self.running_var, self.num_batches_tracked,
                variant=self.variant, eps=self.eps, rescale=self._fused_rescale(rdtype), two_stage=self._two_stage,
                training=training, momentum=self.momentum)
        else:
            fopts = (self.variant, self.eps, self._fused_rescale(rdtype), self._two_stage)
            if torch.is_grad_enabled() and any(t.requires_grad for t in (x3, beta_s, gamma, k)):
                y, mu, var = LorentzBNFunction.apply(x3, beta_s, gamma, k, rm, rv, fopts)
            else:
                y, mu, var, _ = fused_forward(x3, beta_s, gamma, k, rm, rv, fopts, False)
        if training:
            update_running_stats(self.running_mean, self.running_var, self.num_batches_tracked, mu.detach(),
                                 var.detach(), k.detach(), self.momentum)
        return y

    def _fused_rescale(self, rdtype: torch.dtype) -> tuple[float, float] | None:
        """``(m0, m·c)`` of the rescaling for the fused kernels: radius before ``min(1, √k)`` and slope at 0."""
        cfg = self._rescale_config()
        return None if cfg is None else (max_distance(rdtype, cfg.r), math.atanh(cfg.rho) / cfg.s)

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
    r"""Lorentz batch normalisation of points ``(B, 1+C)`` (``docs/method.md`` §5.4).

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
        rdtype = computation_dtype(x)  # float32 for half inputs: the dtype the island computes in
        with no_autocast(x):
            x = upcast(x)
            return self._normalize3(x[..., None], rdtype)[..., 0]


class LorentzBatchNorm2d(_LorentzBatchNorm):
    r"""Lorentz batch normalisation of channels-first feature maps ``(B, 1+C, H, W)`` (time at channel 0;
    ``docs/method.md`` §5.4, ``docs/design.md`` §4.2).

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
        rdtype = computation_dtype(x)  # float32 for half inputs: the dtype the island computes in
        b, c1, h, w = x.shape
        with no_autocast(x):
            x = upcast(x)
            return self._normalize3(x.reshape(b, c1, h * w), rdtype).view(b, c1, h, w)
