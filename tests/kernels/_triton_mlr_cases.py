"""Run the Triton MLR kernels (``lorentzcv.kernels._mlr_triton``) against the eager closed form; print JSON.

Batches smaller and larger than the kernel's batch block, wide and narrow features, points near and far from the
origin, curvatures below and above 1. Run as a module with ``TRITON_INTERPRET=1`` (``test_fused_mlr.py`` does that in
a subprocess) or on CUDA in-process."""

from __future__ import annotations

import json
import sys

import torch

from lorentzcv.geometry import math as lmath
from lorentzcv.kernels import LAUNCHES
from lorentzcv.kernels import mlr as KM

from ._launch_counting import count_launches


def run(device: str = "cpu") -> dict:
    T = KM._triton_module()
    out = {}
    for i, (k, batch, feats, ncls, scale) in enumerate([(0.8, 70, 33, 10, 1.5), (2.5, 3, 8, 5, 0.1),
                                                        (0.2, 40, 64, 100, 4.0)]):
        g = torch.Generator().manual_seed(i)
        x = lmath.add_time(torch.randn(batch, feats, generator=g) * scale * k**0.5, torch.tensor(k))
        a, z = torch.randn(ncls, generator=g), torch.randn(ncls, feats, generator=g) / feats**0.5
        kt, gy = torch.tensor(k), torch.randn(batch, ncls, generator=g)
        ref, p = KM.mlr_logits(x, a, z, kt)
        ref_b = KM._mlr_backward_eager(gy, x, a, z, kt, p)
        dev = [t.to(device) for t in (x, a, z, kt)]
        (tri, _), n_fwd = count_launches(T, KM.launch_triton_mlr, *dev)
        tri_b, n_bwd = count_launches(T, KM.launch_triton_mlr_backward, gy.to(device), *dev, p.to(device))

        def rel(u, v):
            return float((u.cpu() - v).abs().max() / v.abs().max().clamp_min(1e-30))

        out[f"k{k}-b{batch}-c{feats}-n{ncls}"] = {
            "logits": rel(tri, ref), **{name: rel(u, v) for name, u, v in zip(("gx", "ga", "gz", "gk"), tri_b, ref_b)},
            "launches_as_declared": (n_fwd == LAUNCHES["lorentzcv::fused_mlr"]
                                     and n_bwd == LAUNCHES["lorentzcv::fused_mlr_backward"]),
            "finite": bool(torch.isfinite(tri).all() and all(torch.isfinite(t).all() for t in tri_b))}
    return out


if __name__ == "__main__":
    print(json.dumps(run(sys.argv[1] if len(sys.argv) > 1 else "cpu")))
