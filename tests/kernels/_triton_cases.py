"""Run the Triton lift kernels in Triton's interpreter against the eager closed form; print JSON errors.

Also counts what each launcher launches against the declared :data:`lorentzcv.kernels.LAUNCHES`. Run as a module
with ``TRITON_INTERPRET=1`` in the environment (``test_fused_lift.py`` does that in a
subprocess: the variable must be set before Triton is first imported).
"""

from __future__ import annotations

import json
import math
import sys

import torch

from lorentzcv.kernels import LAUNCHES
from lorentzcv.kernels import _lift_triton as T
from lorentzcv.kernels import lift as KL

from ._launch_counting import count_launches


def _cases():
    g = torch.Generator().manual_seed(0)

    def rnd(*shape, scale=1.0):
        return torch.randn(*shape, generator=g) * scale

    for k in (0.05, 1.0, 4.0):
        for src in (0, 1, 2):
            for rescale in ((0, 1, 2) if src == 0 else (0, 1) if src == 2 else (0,)):
                x = rnd(3, 6 + (src > 0), 5, 7, scale=2.0)
                x[0, :, 0, 0] = 0  # an exact zero vector (space)
                x[1, :, 1, 1] *= 1e-6  # a tiny one
                x[2, :, 2, 2] *= 1e3  # a far one (rescaling saturates)
                y = rnd(*x.shape) if src == 2 else None
                yield f"k{k}-src{src}-rs{rescale}", x, y, k, src, 1, rescale
    # layouts: channels-last maps, vectors (dim -1), one pixel, a pixel count that is not a multiple of the block
    yield "channels_last", rnd(2, 5, 4, 3).contiguous(memory_format=torch.channels_last), None, 1.0, 0, 1, 1
    yield "vectors", rnd(9, 17, scale=3.0), None, 0.5, 0, 1, 1
    yield "vectors_euclid", rnd(9, 17, scale=30.0), None, 0.5, 0, 1, 2
    yield "one_pixel", rnd(1, 4, 1, 1), None, 1.0, 0, 1, 1
    yield "odd_count", rnd(3, 3, 9, 11), rnd(3, 3, 9, 11), 2.0, 2, 1, 1


def _on(device: str, *args):
    """``args`` with their tensors moved to ``device``."""
    return [a.to(device) if isinstance(a, torch.Tensor) else a for a in args]


def _cpu(out):
    return [o.cpu() for o in out] if isinstance(out, (tuple, list)) else out.cpu()


def run(device: str = "cpu") -> dict:
    """The Triton kernels on ``device`` (CPU: Triton's interpreter) against the eager closed form on the CPU."""
    m0, mc = 1.2 * 0.5 * math.acosh(1 / (2 * torch.finfo(torch.float32).eps)), math.atanh(0.99) / 2.0
    out = {}
    for name, x, y, k, src, dim, rescale in _cases():
        kt = torch.tensor(k)
        ref_out, ref_sq = KL._fused_lift_op(x, y, kt, src, dim, rescale, m0, mc)
        (tri_out, tri_sq), n_fwd = count_launches(T, KL.launch_triton_lift, *_on(device, x, y, kt), src, dim,
                                                  rescale, m0, mc)
        tri_out, tri_sq = _cpu((tri_out, tri_sq))
        gout = torch.randn(ref_out.shape, generator=torch.Generator().manual_seed(2))
        if name == "one_pixel":
            gout = gout[:1, :1].expand_as(ref_out)  # a broadcast (stride-0) gradient
        ref_g, ref_gk = KL._fused_lift_backward_op(gout, ref_out, ref_sq, kt, src, dim, rescale, m0, mc)
        (tri_g, tri_gk), n_bwd = count_launches(T, KL.launch_triton_lift_backward,
                                                *_on(device, gout, ref_out, ref_sq, kt), src, dim, rescale, m0, mc)
        tri_g, tri_gk = _cpu((tri_g, tri_gk))

        def rel(a, b):
            return float((a - b).abs().max() / b.abs().max().clamp_min(1e-30))

        out[name] = {"out": rel(tri_out, ref_out), "sq": rel(tri_sq, ref_sq), "grad": rel(tri_g, ref_g),
                     "grad_k": rel(tri_gk, ref_gk), "layout_kept": tri_out.stride() == ref_out.stride(),
                     "launches_as_declared": (n_fwd == LAUNCHES["lorentzcv::fused_lift"]
                                              and n_bwd == LAUNCHES["lorentzcv::fused_lift_backward"]),
                     "finite": bool(torch.isfinite(tri_out).all() and torch.isfinite(tri_g).all())}
    out.update(_log0_cases(device, rel=lambda a, b: float((a - b).abs().max() / b.abs().max().clamp_min(1e-30))))
    return out


def _log0_cases(device: str, rel) -> dict:
    """``lorentzcv::fused_log0`` (the Lorentz → Euclid bridge) on points near and far from the origin."""
    out = {}
    g = torch.Generator().manual_seed(3)
    for k in (0.05, 1.0, 4.0):
        for scale, tag in ((1e-3, "near"), (1.0, "mid"), (30.0, "far")):
            kt = torch.tensor(k)
            xs = torch.randn(3, 6, 4, 5, generator=g) * scale
            xs[0, :, 0, 0] = 0
            x = torch.cat([((xs * xs).sum(1, keepdim=True) + k).sqrt(), xs], 1)
            ref = KL._log0_eager(x, kt, 1)
            tri, n_fwd = count_launches(T, KL.launch_triton_log0, *_on(device, x, kt), 1)
            gout = torch.randn(ref.shape, generator=g)
            ref_g, ref_gk = KL._log0_backward_eager(gout, x, kt, 1)
            (tri_g, tri_gk), n_bwd = count_launches(T, KL.launch_triton_log0_backward, *_on(device, gout, x, kt), 1)
            tri, tri_g, tri_gk = _cpu((tri, tri_g, tri_gk))
            out[f"log0-k{k}-{tag}"] = {
                "out": rel(tri, ref), "sq": 0.0, "grad": rel(tri_g, ref_g), "grad_k": rel(tri_gk, ref_gk),
                "layout_kept": tri.stride() == ref.stride(),
                "launches_as_declared": (n_fwd == LAUNCHES["lorentzcv::fused_log0"]
                                         and n_bwd == LAUNCHES["lorentzcv::fused_log0_backward"]),
                "finite": bool(torch.isfinite(tri).all() and torch.isfinite(tri_g).all())}
    return out


if __name__ == "__main__":
    print(json.dumps(run(sys.argv[1] if len(sys.argv) > 1 else "cpu")))
