r"""Normalisation of time-like rows onto the hyperboloid as one fused op (forward 1 kernel, backward 2).

:math:`c = \sqrt{k}\,\mu/\sqrt{\max(|\langle\mu,\mu\rangle_L|, 10^{-8})}` per row ``μ`` (the last dimension, time
first) — :func:`lorentzcv.geometry.math.normalize`, the last step of the Lorentzian centroid (the global average
pooling of a fully hyperbolic ResNet). Curvature convention: ``k > 0``, ``K = -1/k``. With
:math:`s = \sqrt{|q|}`, :math:`q = \langle\mu,\mu\rangle_L` and ``J = diag(-1, 1, …, 1)``:

.. math:: \frac{\partial L}{\partial\mu} = \frac{\sqrt{k}}{s}\,g - \frac{\sqrt{k}\,(g\cdot\mu)\,\mathrm{sign}(q)}{s^3}\,J\mu,
          \qquad \frac{\partial L}{\partial k} = \sum_{rows}\frac{g\cdot\mu}{2\sqrt{k}\,s}

(no gradient through the clamp where :math:`|q| \le 10^{-8}`). As a ``torch.library`` custom op: on CUDA the
Triton kernels of :mod:`lorentzcv.kernels._rows_triton` (one program per row; the backward's per-row partials of
∂L/∂k summed by ``torch.sum``), elsewhere the eager closed form, which the tests compare with the kernels.
"""

from __future__ import annotations

import torch

from ..geometry import math as lmath
from . import LAUNCHES, row_block, row_warps, with_eager_fallback

__all__ = ["fused_normalize", "fused_normalize_supported"]

MAX_WIDTH = 8192


def fused_normalize_supported(mu: torch.Tensor, k: torch.Tensor) -> bool:
    """Whether :func:`fused_normalize` takes ``mu``: float32 rows along the last dimension, a scalar ``k``."""
    return mu.dtype == torch.float32 and mu.dim() >= 1 and 2 <= mu.size(-1) <= MAX_WIDTH and k.numel() == 1


def _jmu(mu: torch.Tensor) -> torch.Tensor:
    return torch.cat([-mu[..., :1], mu[..., 1:]], -1)


def _normalize_eager(mu: torch.Tensor, k: torch.Tensor) -> torch.Tensor:
    return lmath.normalize(mu, k)


def _normalize_backward_eager(g: torch.Tensor, mu: torch.Tensor, k: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    jmu = _jmu(mu)
    q = (mu * jmu).sum(-1, keepdim=True)
    a = q.abs()
    s = a.clamp_min(1e-8).sqrt()
    sk = k.sqrt()
    gm = (g * mu).sum(-1, keepdim=True)
    coef = torch.where(a > 1e-8, sk * gm * torch.sign(q) / (s * s * s), torch.zeros_like(q))
    gk = (gm / (2 * sk * s)).sum()
    return sk / s * g - coef * jmu, gk.reshape(k.shape).to(k.dtype)


_normalize_op = torch.library.custom_op("lorentzcv::fused_normalize", mutates_args=())(_normalize_eager)
_normalize_backward_op = torch.library.custom_op("lorentzcv::fused_normalize_backward", mutates_args=())(
    _normalize_backward_eager)


@_normalize_op.register_fake
def _(mu, k):
    return torch.empty_like(mu)


@_normalize_backward_op.register_fake
def _(g, mu, k):
    return torch.empty_like(mu), torch.empty_like(k)


def _setup_context(ctx, inputs, output) -> None:
    ctx.save_for_backward(*inputs)


def _backward(ctx, g):
    return _normalize_backward_op(g.contiguous(), *ctx.saved_tensors)


_normalize_op.register_autograd(_backward, setup_context=_setup_context)

LAUNCHES["lorentzcv::fused_normalize"] = 1
LAUNCHES["lorentzcv::fused_normalize_backward"] = 2  # the kernel + the sum of its per-row partials of ∂L/∂k


def fused_normalize(mu: torch.Tensor, k: torch.Tensor) -> torch.Tensor:
    """:func:`lorentzcv.geometry.math.normalize` of float32 rows ``mu`` (last dimension) as the fused op."""
    shape = mu.shape
    return _normalize_op(mu.reshape(-1, shape[-1]).contiguous(), k.reshape(())).reshape(shape)


# --- CUDA: the Triton kernels ---------------------------------------------------------------------------------
def _triton_module():
    """:mod:`lorentzcv.kernels._rows_triton`, imported on first use (Triton is needed on CUDA only)."""
    from . import _rows_triton

    return _rows_triton



def launch_triton_normalize(mu, k) -> torch.Tensor:
    """Run the forward Triton kernel of ``lorentzcv::fused_normalize`` (one program per row)."""
    mu = mu.contiguous()
    c = torch.empty_like(mu)
    width = mu.size(-1)
    _triton_module().normalize_fwd[(mu.numel() // width,)](mu, c, k, width, BLOCK=row_block(width),
                                                           num_warps=row_warps(width))
    return c


def launch_triton_normalize_backward(g, mu, k):
    """Run the backward Triton kernel of ``lorentzcv::fused_normalize`` and the sum of its partials of ∂L/∂k."""
    g, mu = g.contiguous(), mu.contiguous()
    width = mu.size(-1)
    rows = mu.numel() // width
    gmu, part = torch.empty_like(mu), mu.new_empty(rows)
    _triton_module().normalize_bwd[(rows,)](g, mu, gmu, part, k, width, BLOCK=row_block(width),
                                            num_warps=row_warps(width))
    return gmu, part.sum().reshape(k.shape).to(k.dtype)


_normalize_op.register_kernel("cuda")(with_eager_fallback("lorentzcv::fused_normalize", launch_triton_normalize,
                                                          _normalize_eager))
_normalize_backward_op.register_kernel("cuda")(with_eager_fallback(
    "lorentzcv::fused_normalize_backward", launch_triton_normalize_backward, _normalize_backward_eager))
