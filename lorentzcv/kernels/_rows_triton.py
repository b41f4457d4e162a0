"""Triton kernels of the fused row normalisation (see :mod:`lorentzcv.kernels.rows`; imported on first use).

One program per row ``μ`` (``1+C`` float32 entries, time first): :math:`c = \\sqrt{k}\\,\\mu/s`,
:math:`s = \\sqrt{\\max(|\\langle\\mu,\\mu\\rangle_L|, 10^{-8})}` and its backward (∂L/∂μ and one partial of ∂L/∂k per
row). Plain ``sqrt``/``abs`` only, so the kernels run in Triton's interpreter.
"""

import triton
import triton.language as tl

from ._triton_math import _row


@triton.jit
def normalize_fwd(mu_ptr, c_ptr, k_ptr, width, BLOCK: tl.constexpr):
    row, base, offs, mask, is_t = _row(width, BLOCK)
    mu = tl.load(mu_ptr + base + offs, mask=mask, other=0.0)
    q = tl.sum(tl.where(is_t, -mu * mu, mu * mu), axis=0)
    s = tl.sqrt(tl.maximum(tl.abs(q), 1e-8))
    tl.store(c_ptr + base + offs, tl.sqrt(tl.load(k_ptr).to(tl.float32)) * mu / s, mask=mask)


@triton.jit
def normalize_bwd(g_ptr, mu_ptr, gmu_ptr, part_ptr, k_ptr, width, BLOCK: tl.constexpr):
    row, base, offs, mask, is_t = _row(width, BLOCK)
    mu = tl.load(mu_ptr + base + offs, mask=mask, other=0.0)
    g = tl.load(g_ptr + base + offs, mask=mask, other=0.0)
    sk = tl.sqrt(tl.load(k_ptr).to(tl.float32))
    q = tl.sum(tl.where(is_t, -mu * mu, mu * mu), axis=0)
    a = tl.abs(q)
    s = tl.sqrt(tl.maximum(a, 1e-8))
    gm = tl.sum(g * mu, axis=0)
    sign = tl.where(q > 0.0, 1.0, tl.where(q < 0.0, -1.0, 0.0))
    coef = tl.where(a > 1e-8, sk * gm * sign / (s * s * s), 0.0)  # ∂s/∂μ = sign(q)·Jμ/s where |q| > 1e-8
    tl.store(gmu_ptr + base + offs, (sk / s) * g - coef * tl.where(is_t, -mu, mu), mask=mask)
    tl.store(part_ptr + row, gm / (2.0 * sk * s))
