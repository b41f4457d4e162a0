r"""The Lorentz MLR logits as one fused op (forward: a matrix product + 1 kernel; backward: 2 matrix products + 2
kernels + the sum of the curvature gradient).

:math:`\mathrm{logit}_c(x) = \sqrt{k}\|z_c\|\operatorname{asinh}(\alpha_c/(\sqrt{k}\|z_c\|))`,
:math:`\alpha_c = -\sinh(a_c/\sqrt{k})\|z_c\|x_0 + \cosh(a_c/\sqrt{k})\langle x_s, z_c\rangle` — the closed form of
:func:`lorentzcv.nn.mlr.lorentz_mlr_logits` (``k > 0``, ``K = -1/k``) for points ``x`` ``(B, 1+C)``. With
:math:`P = x_s z^\top`, :math:`t = \alpha/\beta`, :math:`\beta = \sqrt{k}\|z\|`, :math:`G_\alpha = g/\sqrt{1+t^2}`,
:math:`G_\beta = g\,(\operatorname{asinh} t - t/\sqrt{1+t^2})`, :math:`r = a/\sqrt{k}`:

.. math::
    \partial L/\partial x = G_\alpha W,\ W_c = (-\sinh r_c\|z_c\|,\ \cosh r_c\, z_c);\qquad
    \partial L/\partial z_c = \cosh r_c\,(G_\alpha^\top x_s)_c + \frac{\partial L/\partial\|z_c\|}{\|z_c\|} z_c;

    \partial L/\partial a_c = \frac{1}{\sqrt{k}}\sum_b G_\alpha(-\cosh r_c\|z_c\|x_0 + \sinh r_c P);\quad
    \partial L/\partial\|z_c\| = \sum_b G_\alpha(-\sinh r_c x_0) + G_\beta\sqrt{k};\quad
    \partial L/\partial k = \frac{1}{2\sqrt{k}}\sum_{b,c} \big(G_\beta\|z_c\| - \sqrt{k}\,\partial L/\partial a_c\, a_c/k\big).

As ``torch.library`` custom ops: on CUDA the Triton kernels of :mod:`lorentzcv.kernels._mlr_triton` (one program
per class) around ``torch.mm``, elsewhere the eager closed form with the same hand-written backward.
"""

from __future__ import annotations

import torch

from . import LAUNCHES, row_block, with_eager_fallback

__all__ = ["fused_mlr", "fused_mlr_supported", "mlr_logits"]

MAX_FEATURES = 8192


def fused_mlr_supported(x: torch.Tensor, a: torch.Tensor, z: torch.Tensor, k: torch.Tensor) -> bool:
    """Whether :func:`fused_mlr` takes these: float32 points ``(B, 1+C)``, ``a (n,)``, ``z (n, C)``, scalar ``k``."""
    return (x.dtype == a.dtype == z.dtype == torch.float32 and x.dim() == 2 and z.dim() == 2
            and x.size(1) == z.size(1) + 1 and 1 <= z.size(1) <= MAX_FEATURES and k.numel() == 1)


def mlr_logits(x: torch.Tensor, a: torch.Tensor, z: torch.Tensor, k: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """``(logits, P)`` of the module docstring for points ``(…, 1+C)`` in plain differentiable ops, with
    ``P = x_s z^T`` (the eager closed form; :func:`lorentzcv.nn.mlr.lorentz_mlr_logits` is its first output)."""
    sk = k.sqrt()
    p = x[..., 1:] @ z.transpose(0, 1)
    zn = z.norm(dim=-1).clamp_min(torch.finfo(z.dtype).tiny)
    r = a / sk
    alpha = -torch.sinh(r) * zn * x[..., :1] + torch.cosh(r) * p
    beta = sk * zn
    return beta * torch.asinh(alpha / beta), p


def _mlr_backward_eager(g: torch.Tensor, x: torch.Tensor, a: torch.Tensor, z: torch.Tensor, k: torch.Tensor,
                        p: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor]:
    """``(∂L/∂x, ∂L/∂a, ∂L/∂z, ∂L/∂k)`` by the formulas of the module docstring."""
    sk = k.sqrt()
    zn = z.norm(dim=-1).clamp_min(torch.finfo(z.dtype).tiny)
    r = a / sk
    sh, ch = torch.sinh(r), torch.cosh(r)
    x0 = x[:, :1]
    alpha = -sh * zn * x0 + ch * p
    beta = sk * zn
    t = alpha / beta
    q = (1 + t * t).sqrt()
    ga, gb = g / q, g * (torch.asinh(t) - t / q)
    w = torch.cat([(-sh * zn)[:, None], ch[:, None] * z], 1)
    g_r = (ga * (-ch * zn * x0 + sh * p)).sum(0)
    g_zn = (ga * (-sh * x0) + gb * sk).sum(0)
    gz = ch[:, None] * (ga.t() @ x[:, 1:]) + (g_zn / zn)[:, None] * z
    gk = ((gb * zn).sum() - (g_r * a).sum() / k) / (2 * sk)
    return ga @ w, g_r / sk, gz, gk.reshape(k.shape)


_mlr_op = torch.library.custom_op("lorentzcv::fused_mlr", mutates_args=())(mlr_logits)
_mlr_backward_op = torch.library.custom_op("lorentzcv::fused_mlr_backward", mutates_args=())(_mlr_backward_eager)


@_mlr_op.register_fake
def _(x, a, z, k):
    return x.new_empty(x.size(0), z.size(0)), x.new_empty(x.size(0), z.size(0))


@_mlr_backward_op.register_fake
def _(g, x, a, z, k, p):
    return torch.empty_like(x), torch.empty_like(a), torch.empty_like(z), torch.empty_like(k)


def _setup_context(ctx, inputs, output) -> None:
    ctx.save_for_backward(*inputs, output[1])
    ctx.mark_non_differentiable(output[1])
    ctx.set_materialize_grads(False)


def _backward(ctx, g, _gp):
    if g is None:
        return None, None, None, None
    return _mlr_backward_op(g.contiguous(), *ctx.saved_tensors)


_mlr_op.register_autograd(_backward, setup_context=_setup_context)

LAUNCHES["lorentzcv::fused_mlr"] = 2  # x_s z^T + the epilogue kernel
LAUNCHES["lorentzcv::fused_mlr_backward"] = 5  # the per-class kernel, G_α W, G_αᵀ x_s, the z kernel, the k sum


def fused_mlr(x: torch.Tensor, a: torch.Tensor, z: torch.Tensor, k: torch.Tensor) -> torch.Tensor:
    """The logits of the module docstring as the fused op (check :func:`fused_mlr_supported` first)."""
    return _mlr_op(x, a, z, k.reshape(()))[0]


# --- CUDA: the Triton kernels ---------------------------------------------------------------------------------
def _triton_module():
    """:mod:`lorentzcv.kernels._mlr_triton`, imported on first use (Triton is needed on CUDA only)."""
    from . import _mlr_triton

    return _mlr_triton



_BLOCK_B = 32


def launch_triton_mlr(x, a, z, k):
    """``x_s z^T`` and the Triton epilogue of ``lorentzcv::fused_mlr`` (one program per class)."""
    z, a = z.contiguous(), a.contiguous()
    p = x[:, 1:] @ z.t()
    out = torch.empty_like(p)
    ncls, c = z.shape
    _triton_module().mlr_fwd[(ncls,)](p, x, z, a, k, out, x.size(0), c, ncls, x.stride(0), BLOCK_C=row_block(c),
                                      BLOCK_B=_BLOCK_B, num_warps=4)
    return out, p


def launch_triton_mlr_backward(g, x, a, z, k, p):
    """The Triton kernels and matrix products of ``lorentzcv::fused_mlr``'s backward."""
    T = _triton_module()
    g, z, a, p = g.contiguous(), z.contiguous(), a.contiguous(), p.contiguous()
    ncls, c = z.shape
    ga, w = torch.empty_like(p), z.new_empty(ncls, c + 1)
    gaz, part = z.new_empty(ncls, 3), z.new_empty(ncls)
    T.mlr_bwd[(ncls,)](g, p, x, z, a, k, ga, w, gaz, part, x.size(0), c, ncls, x.stride(0), BLOCK_C=row_block(c),
                       BLOCK_B=_BLOCK_B, num_warps=4)
    gx = ga @ w
    m = ga.t() @ x[:, 1:]
    gz = torch.empty_like(z)
    T.mlr_grad_z[(ncls,)](m, z, gaz, gz, c, BLOCK_C=row_block(c), num_warps=4)
    return gx, gaz[:, 0], gz, part.sum().reshape(k.shape).to(k.dtype)


_mlr_op.register_kernel("cuda")(with_eager_fallback("lorentzcv::fused_mlr", launch_triton_mlr, mlr_logits))
_mlr_backward_op.register_kernel("cuda")(with_eager_fallback("lorentzcv::fused_mlr_backward",
                                                             launch_triton_mlr_backward, _mlr_backward_eager))
