"""Micro benchmark of ``LorentzConv2d`` (not a test): efficient vs unfold vs ``nn.Conv2d``, forward+backward.

Usage: ``python tests/nn/bench_conv.py [--device cpu] [--threads 2] [--iters 30] [--batch 32] [--channels 64]
[--size 32] [--amp]``. All variants run interleaved in one process; reported are the median and min per
variant, their ratio to ``nn.Conv2d`` with the same space channels, the per-iteration paired ratio, and the
activation memory (bytes saved for backward + output; on CUDA also the allocator's peak).
"""

from __future__ import annotations

import argparse
import contextlib
import statistics
import time

import torch
from torch import nn

from lorentzcv.geometry import Lorentz
from lorentzcv.geometry import math as lmath
from lorentzcv.nn import LorentzConv2d
from lorentzcv.nn import functional as LF


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--device", default="cpu")
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--iters", type=int, default=30)
    ap.add_argument("--batch", type=int, default=32)
    ap.add_argument("--channels", type=int, default=64)
    ap.add_argument("--size", type=int, default=32)
    ap.add_argument("--amp", action="store_true", help="bfloat16 autocast")
    ap.add_argument("--no-unfold", action="store_true")
    ap.add_argument("--variants", action="store_true", help="also time implementation alternatives")
    ap.add_argument("--profile", action="store_true", help="print the op breakdown of the default efficient conv")
    a = ap.parse_args()
    dev = torch.device(a.device)
    if dev.type == "cpu":
        torch.set_num_threads(a.threads)
    torch.manual_seed(0)
    b, c, s = a.batch, a.channels, a.size
    m = Lorentz(1.0, learnable=True).to(dev)
    x_e = (torch.randn(b, c, s, s, device=dev) * 0.5).requires_grad_()
    x_l = lmath.add_time(torch.randn(b, c, s, s, device=dev) * 0.5, m.k.detach(), dim=1).requires_grad_()
    g_e, g_l = torch.randn(b, c, s, s, device=dev), torch.randn(b, c + 1, s, s, device=dev)
    variants = {  # name: (module, input, grad_out, implementation switches)
        "nn.Conv2d": (nn.Conv2d(c, c, 3, padding=1), x_e, g_e, {}),
        "efficient": (LorentzConv2d(m, c, c, 3, padding=1), x_l, g_l, {}),
        "eff_no_rescale": (LorentzConv2d(m, c, c, 3, padding=1, rescale=False), x_l, g_l, {}),
    }
    if a.variants:
        variants.update({
            "eff_input_view": (LorentzConv2d(m, c, c, 3, padding=1), x_l, g_l, {"input": "view"}),
            "eff_input_copy": (LorentzConv2d(m, c, c, 3, padding=1), x_l, g_l, {"input": "copy"}),
            "eff_generic_autograd": (LorentzConv2d(m, c, c, 3, padding=1), x_l, g_l, {"fast": False}),
        })
    if not a.no_unfold:
        variants["unfold(hcnn)"] = (LorentzConv2d(m, c, c, 3, padding=1, impl="unfold"), x_l, g_l, {})
    for mod, *_ in variants.values():
        mod.to(dev)
    amp = torch.autocast(dev.type, dtype=torch.bfloat16) if a.amp else contextlib.nullcontext()
    defaults = dict(LF._OPTS)

    def configure(mod, opts):
        LF._OPTS.update(defaults)
        LF._OPTS.update({k: v for k, v in opts.items() if k in LF._OPTS})
        if isinstance(mod, LorentzConv2d):
            mod._input_mode = opts.get("input", "auto")

    mods = {k: v[:3] for k, v in variants.items()}

    def sync():
        if dev.type == "cuda":
            torch.cuda.synchronize()

    def step(mod, x, g):
        configure(mod, opts_of[id(mod)])
        with amp:
            y = mod(x)
        y.backward(g.to(y.dtype))

    opts_of = {id(v[0]): v[3] for v in variants.values()}
    for mod, x, g in mods.values():
        for _ in range(3):
            step(mod, x, g)
    sync()
    ts = {k: [] for k in mods}
    for _ in range(a.iters):
        for k, (mod, x, g) in mods.items():
            sync()
            t0 = time.perf_counter()
            step(mod, x, g)
            sync()
            ts[k].append(time.perf_counter() - t0)
    base_med, base_min = statistics.median(ts["nn.Conv2d"]), min(ts["nn.Conv2d"])
    print(f"device={dev} threads={torch.get_num_threads()} iters={a.iters} amp={a.amp} B={b} C={c} {s}x{s} 3x3 pad 1")
    for k, v in ts.items():
        med, mn = statistics.median(v), min(v)
        paired = statistics.median(x / y for x, y in zip(v, ts["nn.Conv2d"]))
        print(f"  {k:22s} median {med * 1e3:9.3f} ms ({med / base_med:5.2f}x)  min {mn * 1e3:9.3f} ms "
              f"({mn / base_min:5.2f}x)  paired {paired:5.2f}x")
    if "unfold(hcnn)" in ts:
        r = statistics.median(x / y for x, y in zip(ts["unfold(hcnn)"], ts["efficient"]))
        print(f"  unfold(hcnn)/efficient paired median: {r:.2f}x")

    params = {p.untyped_storage().data_ptr() for mod, _, _ in mods.values() for p in mod.parameters()}
    params |= {x_e.untyped_storage().data_ptr(), x_l.untyped_storage().data_ptr()}
    for k, (mod, x, g) in mods.items():
        store = {}

        def pack(t, store=store):
            store[t.untyped_storage().data_ptr()] = t.untyped_storage().nbytes()
            return t

        configure(mod, opts_of[id(mod)])
        with torch.autograd.graph.saved_tensors_hooks(pack, lambda t: t), amp:
            out = mod(x)
        act = sum(v for p, v in store.items() if p not in params and p != out.untyped_storage().data_ptr())
        total = act + out.untyped_storage().nbytes()
        line = f"  {k:22s} saved for backward {act / 2**20:8.1f} MiB + output = {total / 2**20:8.1f} MiB"
        del out
        if dev.type == "cuda":
            sync()
            torch.cuda.empty_cache()
            torch.cuda.reset_peak_memory_stats()
            base = torch.cuda.memory_allocated()
            step(mod, x, g)
            sync()
            line += f"; CUDA peak fwd+bwd above baseline {(torch.cuda.max_memory_allocated() - base) / 2**20:8.1f} MiB"
        print(line)

    if a.profile:
        from torch.profiler import ProfilerActivity, profile

        for name in ("nn.Conv2d", "efficient"):
            mod, x, g = mods[name]
            acts = [ProfilerActivity.CPU] + ([ProfilerActivity.CUDA] if dev.type == "cuda" else [])
            with profile(activities=acts) as prof:
                for _ in range(5):
                    step(mod, x, g)
                sync()
            key = "self_cuda_time_total" if dev.type == "cuda" else "self_cpu_time_total"
            print(f"--- profile {name} (5 steps)")
            print(prof.key_averages().table(sort_by=key, row_limit=22, max_name_column_width=40))


if __name__ == "__main__":
    main()
