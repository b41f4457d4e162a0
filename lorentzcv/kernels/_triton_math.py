"""Scalar math shared by the Triton kernels (float32, no cancellation near 0): ``log1p`` and ``tanh`` for
non-negative arguments, written with ``exp``/``log`` (and a Taylor series) so that they also run in Triton's
interpreter; and the lane set-up of the one-program-per-point kernels (``_row``)."""

import triton
import triton.language as tl


@triton.jit
def _log1p(z):  # z >= 0: log(u)·z/(u-1), u = 1+z (exact to rounding near 0)
    u = 1.0 + z
    return tl.where(u == 1.0, z, tl.log(u) * z / (u - 1.0))


@triton.jit
def _tanh_pos(u):  # u >= 0, Taylor below 0.25
    u2 = u * u
    ser = u * (1.0 + u2 * (-1.0 / 3.0 + u2 * (2.0 / 15.0 + u2 * (-17.0 / 315.0 + u2 * (62.0 / 2835.0)))))
    e = tl.exp(-2.0 * u)
    return tl.where(u < 0.25, ser, (1.0 - e) / (1.0 + e))


@triton.jit
def _row(width, BLOCK: tl.constexpr):
    """This program's point (one program per row of ``width`` entries, time first): (row index, offset of its first
    entry, lane offsets, in-range mask, time lane)."""
    row = tl.program_id(0).to(tl.int64)
    offs = tl.arange(0, BLOCK)
    return row, row * width, offs, offs < width, offs == 0
