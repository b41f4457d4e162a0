"""Run the Triton row-normalisation kernels (``lorentzcv.kernels._rows_triton``) against the eager closed form; print
JSON. Means of points (time-like rows), a row at the clamp (``<μ,μ>_L`` ≈ 0), far rows; run as a module with
``TRITON_INTERPRET=1`` (``test_fused_rows.py`` does that in a subprocess) or on CUDA in-process."""

from __future__ import annotations

import json
import sys

import torch

from lorentzcv.geometry import math as lmath
from lorentzcv.kernels import LAUNCHES
from lorentzcv.kernels import rows as KR

from ._launch_counting import count_launches


def run(device: str = "cpu") -> dict:
    T = KR._triton_module()
    out = {}
    for i, (k, scale, width) in enumerate([(1.0, 1.0, 9), (0.3, 5.0, 33), (4.0, 0.01, 5), (1.0, 30.0, 300)]):
        g = torch.Generator().manual_seed(i)
        pts = lmath.add_time(torch.randn(6, 3, width - 1, generator=g) * scale, torch.tensor(k))
        mu = pts.mean(1)
        mu[0] = torch.tensor([1.0] + [1.0] + [0.0] * (width - 2))  # <μ,μ>_L = 0: the clamp
        gy = torch.randn(mu.shape, generator=g)
        kt = torch.tensor(k)
        ref, (rg, rk) = KR._normalize_eager(mu, kt), KR._normalize_backward_eager(gy, mu, kt)
        tri, n_fwd = count_launches(T, KR.launch_triton_normalize, mu.to(device), kt.to(device))
        (tg, tk), n_bwd = count_launches(T, KR.launch_triton_normalize_backward, gy.to(device), mu.to(device),
                                         kt.to(device))

        def rel(a, b):  # per row (the clamped row's entries are ~1e4 times the others')
            b = b.reshape(-1, b.shape[-1]) if b.dim() else b.reshape(1, 1)
            a = a.cpu().reshape(b.shape)
            return float(((a - b).abs().amax(-1) / b.abs().amax(-1).clamp_min(1e-30)).max())

        out[f"k{k}-scale{scale}-w{width}"] = {
            "y": rel(tri, ref), "gmu": rel(tg, rg), "gk": rel(tk, rk),
            "launches_as_declared": (n_fwd == LAUNCHES["lorentzcv::fused_normalize"]
                                     and n_bwd == LAUNCHES["lorentzcv::fused_normalize_backward"]),
            "finite": bool(torch.isfinite(tri).all() and torch.isfinite(tg).all())}
    return out


if __name__ == "__main__":
    print(json.dumps(run(sys.argv[1] if len(sys.argv) > 1 else "cpu")))
