"""Micro benchmark of single full-size passes (not a test): what each elementwise/reduction op costs."""

from __future__ import annotations

import statistics
import sys
import time

import torch
import torch.nn.functional as F

torch.set_num_threads(int(sys.argv[1]) if len(sys.argv) > 1 else 2)
B, C, H, W = 32, 64, 32, 32
y = torch.randn(B, C, H, W)
g = torch.randn(B, C + 1, H, W)
gs = g[:, 1:]
r = torch.rand(B, 1, H, W)
out = torch.empty(B, C + 1, H, W)
outs = out[:, 1:]
cands = {
    "sq mul+sum": lambda: (y * y).sum(1, keepdim=True),
    "sq vecdot": lambda: torch.linalg.vecdot(y, y, dim=1),
    "gs.outs mul+sum": lambda: (gs * outs).sum(1, keepdim=True),
    "gs.outs vecdot": lambda: torch.linalg.vecdot(gs, outs, dim=1),
    "zeros65+copy": lambda: torch.zeros(B, C + 1, H, W).narrow(1, 1, C).copy_(y),
    "pad": lambda: F.pad(y, (0, 0, 0, 0, 1, 0)),
    "narrow.contiguous": lambda: g[:, 1:].contiguous(),
    "mul bcast out=": lambda: torch.mul(y, r, out=outs),
    "gs*r": lambda: gs * r,
    "addcmul": lambda: torch.addcmul(gs, outs, r),
    "clone": lambda: y.clone(),
    "small tanh 32K": lambda: torch.tanh(r),
    "small mul 32K": lambda: r * r,
    "small asinh 32K": lambda: torch.asinh(r),
    "small sinh 32K": lambda: torch.sinh(r),
}
for f in cands.values():
    f()
ts = {k: [] for k in cands}
for _ in range(50):
    for k, f in cands.items():
        t0 = time.perf_counter()
        f()
        ts[k].append(time.perf_counter() - t0)
for k, v in ts.items():
    print(f"  {k:20s} min {min(v) * 1e3:7.3f} ms  median {statistics.median(v) * 1e3:7.3f} ms")
