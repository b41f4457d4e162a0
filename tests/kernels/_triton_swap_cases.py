"""Run the Triton swap kernels (``lorentzcv.kernels._swap_triton``) against the eager closed form; print JSON.

Rows near and far from the origin (far enough that the rapidity is clamped without rescaling), an exact zero, a tiny
row; with and without rescaling; curvatures growing and shrinking across the swap. Run as a module with
``TRITON_INTERPRET=1`` (``test_fused_swap.py`` does that in a subprocess) or on CUDA in-process.
"""

from __future__ import annotations

import json
import math
import sys

import torch

from lorentzcv.kernels import LAUNCHES
from lorentzcv.kernels import swap as KS

from ._launch_counting import count_launches

M0, MC = 0.5 * math.acosh(1 / (2 * torch.finfo(torch.float32).eps)), math.atanh(0.99) / 2.0


def rows(k1: float, g: torch.Generator) -> torch.Tensor:
    xs = torch.randn(6, 9, generator=g) * 2.0
    xs[0] = 0
    xs[1] *= 1e-6
    xs[2] *= 1e3 / xs[2].norm() * k1**0.5  # rapidity ~7.6 at k1: beyond max_rapidity·√k2 / √k1 for a small k2
    xs[3] *= 40.0 * k1**0.5 / xs[3].norm()
    return torch.cat([((xs * xs).sum(-1, keepdim=True) + k1).sqrt(), xs], -1)


def run(device: str = "cpu") -> dict:
    T = KS._triton_module()
    out = {}
    for i, (k1, k2, rescale) in enumerate([(0.7, 1.6, True), (2.0, 0.3, True), (1.0, 1.0, True), (0.7, 1.6, False),
                                           (2.0, 0.02, False), (1.0, 1.0, False)]):
        g = torch.Generator().manual_seed(i)
        x, gy = rows(k1, g), torch.randn(6, 10, generator=g)
        args = (torch.tensor(k1), torch.tensor(k2), rescale, M0, MC)
        ref = KS._swap_eager(x, *args)
        ref_b = KS._swap_backward_eager(gy, x, *args)
        dev = [a.to(device) if isinstance(a, torch.Tensor) else a for a in args]
        tri, n_fwd = count_launches(T, KS.launch_triton_swap, x.to(device), *dev)
        tri_b, n_bwd = count_launches(T, KS.launch_triton_swap_backward, gy.to(device), x.to(device), *dev)

        def rel(a, b):
            return float((a.cpu() - b).abs().max() / b.abs().max().clamp_min(1e-30))

        res = {"y": rel(tri, ref), "gx": rel(tri_b[0], ref_b[0]), "gk1": rel(tri_b[1], ref_b[1]),
               "gk2": rel(tri_b[2], ref_b[2]),
               "launches_as_declared": (n_fwd == LAUNCHES["lorentzcv::fused_swap"]
                                        and n_bwd == LAUNCHES["lorentzcv::fused_swap_backward"]),
               "finite": bool(torch.isfinite(tri).all() and all(torch.isfinite(t).all() for t in tri_b))}
        out[f"k{k1}-to-k{k2}-{'rescale' if rescale else 'plain'}"] = res
    return out


if __name__ == "__main__":
    print(json.dumps(run(sys.argv[1] if len(sys.argv) > 1 else "cpu")))
