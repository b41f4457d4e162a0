"""Micro-benchmark of Lorentz batch norm vs ``nn.BatchNorm2d`` (forward+backward, same-run medians).

Usage::

    python benchmarks/norm_bench.py [--batch 32 --channels 64 --size 32 --threads 2 --repeats 30]
        [--impls fused autograd reference] [--variants hcnn rhl] [--eval] [--out result.json]

Every timing is the median (and the minimum) of ``--repeats`` runs after warm-up; the Euclidean baseline runs on
the ``C`` space channels, the Lorentz layers on ``(B, 1+C, H, W)``. The result (JSON, printed and optionally
written) has ``ratio_vs_bn2d`` = Lorentz median / BatchNorm2d median for every (variant, impl), and the same for
the minima. The runs of all cases are interleaved so that load changes on a shared machine affect all of them;
the 1-minute load average is recorded (on an oversubscribed machine multi-threaded timings mostly measure the
scheduler: every parallel region waits for a descheduled thread).
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import statistics
import time
from collections.abc import Callable

import torch
from torch import nn

from lorentzcv.geometry import Lorentz
from lorentzcv.geometry import math as lmath
from lorentzcv.nn import LorentzBatchNorm2d


def _step(layer: nn.Module, x: torch.Tensor, g: torch.Tensor, backward: bool) -> Callable[[], None]:
    def run() -> None:
        if backward:
            x.grad = None
            layer.zero_grad(set_to_none=True)
            layer(x).backward(g)
        else:
            with torch.no_grad():
                layer(x)

    return run


def main(argv: list[str] | None = None) -> dict:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--batch", type=int, default=32)
    p.add_argument("--channels", type=int, default=64)
    p.add_argument("--size", type=int, default=32)
    p.add_argument("--threads", type=int, default=2)
    p.add_argument("--repeats", type=int, default=30)
    p.add_argument("--warmup", type=int, default=3)
    p.add_argument("--k", type=float, default=1.0)
    p.add_argument("--impls", nargs="+", default=["fused", "autograd", "reference"])
    p.add_argument("--variants", nargs="+", default=["hcnn", "rhl"])
    p.add_argument("--rescale", action="store_true", help="rescaling on for both variants")
    p.add_argument("--forward-only", action="store_true", help="time forward (no_grad) instead of fwd+bwd")
    p.add_argument("--eval", action="store_true", help="eval mode (running statistics)")
    p.add_argument("--out", default=None)
    a = p.parse_args(argv)
    torch.set_num_threads(a.threads)
    torch.manual_seed(0)
    B, C, S = a.batch, a.channels, a.size
    backward = not a.forward_only

    manifold = Lorentz(k=a.k, learnable=True)
    xs = torch.randn(B, C, S, S)
    xe = xs.clone().requires_grad_(backward)
    xl = lmath.add_time(xs, manifold.k.detach(), dim=1).requires_grad_(backward)
    ge = torch.randn_like(xe)
    gl = torch.randn_like(xl)

    cases: dict[str, Callable[[], None]] = {}
    bn = nn.BatchNorm2d(C).train(not a.eval)
    cases["bn2d"] = _step(bn, xe, ge, backward)
    for variant in a.variants:
        for impl in a.impls:
            layer = LorentzBatchNorm2d(manifold, C, variant=variant, impl=impl,
                                       rescale=True if a.rescale else None).train(not a.eval)
            cases[f"{variant}/{impl}"] = _step(layer, xl, gl, backward)

    for fn in cases.values():
        for _ in range(a.warmup):
            fn()
    times: dict[str, list[float]] = {name: [] for name in cases}
    for _ in range(a.repeats):  # interleaved
        for name, fn in cases.items():
            t0 = time.perf_counter()
            fn()
            times[name].append(time.perf_counter() - t0)
    med = {name: statistics.median(ts) * 1e3 for name, ts in times.items()}
    best = {name: min(ts) * 1e3 for name, ts in times.items()}
    result = {
        "shape": [B, C, S, S], "threads": a.threads, "repeats": a.repeats, "k": a.k, "eval": a.eval,
        "mode": "fwd+bwd" if backward else "fwd", "rescale_forced": a.rescale,
        "torch": torch.__version__, "machine": platform.processor() or platform.machine(),
        "load_avg_1min": round(os.getloadavg()[0], 2) if hasattr(os, "getloadavg") else None,
        "median_ms": {n: round(v, 3) for n, v in med.items()},
        "ratio_vs_bn2d": {n: round(v / med["bn2d"], 2) for n, v in med.items() if n != "bn2d"},
        "min_ms": {n: round(v, 3) for n, v in best.items()},
        "ratio_of_min_vs_bn2d": {n: round(v / best["bn2d"], 2) for n, v in best.items() if n != "bn2d"},
    }
    print(json.dumps(result, indent=1))
    if a.out:
        with open(a.out, "w") as f:
            json.dump(result, f, indent=1)
    return result


if __name__ == "__main__":
    main()
