r"""Compute benchmark (the paper's Table 4 and more): time and peak extra memory, kernel launches, same-run ratios,
JSON out. Run it as ``python -m lorentzcv.bench`` (from an installed package), ``python benchmarks/compute.py``
(from a checkout) or ``lorentzcv bench`` (readable tables).

Every figure is the median over ``--repeats`` repeats in which the contenders run **interleaved** (one call of
each per repeat, after warm-up), so load changes on a shared machine hit all of them alike, and every ratio is
taken against the Euclidean counterpart measured in the same run.

Layers (``--only layers``), batch 32, 64 channels, 32×32, forward + backward (a fixed random output gradient):

- ``conv3x3``: ``nn.Conv2d(64, 64, 3, padding=1)`` vs ``LorentzConv2d`` ``impl="efficient"`` (HECNN+; with and
  without maximum distance rescaling) vs ``impl="unfold"`` (HCNN);
- ``batchnorm``: ``nn.BatchNorm2d(64)`` vs ``LorentzBatchNorm2d`` ``variant="hcnn"`` and ``"rhl"`` (train mode).

Models (``--only models``): one full **training step** (forward, cross-entropy, backward, ``optimizer.step()``,
``zero_grad``) of every registered ResNet-18 and ResNet-50 variant at batch 32, 32×32, 100 classes (CIFAR-100),
with ``create_optimizer(model, "sgd"|"rsgd", lr=0.01, weight_decay=5e-4, momentum=0.9, nesterov=True)``
(Riemannian SGD for every model with a manifold, as in the paper's classification protocol). Ratios are to
``resnet18`` resp. ``resnet50``.

Memory ("peak extra memory" beyond the model, its optimizer state and the batch):

- CPU: ``act_mem_mb`` = total bytes of the distinct tensor storages autograd saves for backward (the
  activation memory; parameters and, for models, the input batch excluded), via
  ``torch.autograd.graph.saved_tensors_hooks``; for a single layer the input and the output (held for the next
  layer) are included. With ``--rss``
  also ``rss_peak_extra_mb``: the RSS high-water mark of one training step above the RSS just before it,
  sampled every 0.5 ms in a fresh subprocess per model (noisier; allocator-dependent).
- CUDA: ``torch.cuda.max_memory_allocated()`` during the call minus the allocation before it.

Kernel launches: every entry has ``launches`` and ``launches_ratio`` (:func:`count_launches`): the kernels one
call/training step launches on the path a CUDA user gets by default (fused kernels included, foreach optimizers),
counted on any machine. The older ``kernel_ops`` (and ``kernel_ops_ratio``),
profiler count of the CPU path (:func:`count_kernel_ops`) is kept for comparison with earlier runs: it misses
convolutions and counts CPU-only branches, so ``launches`` is the figure to use.

Timers: every entry has the wall-clock median (``wall_ms``/``wall_ratio``, and ``wall_ratio_min`` of the
fastest repeats) and the process-CPU-time median (``cpu_ms``/``cpu_ratio``); ``time_ms``/``time_ratio`` and the
targets use ``--timer`` (``wall`` by default). On a machine shared with other jobs, wall-clock ratios swing by
±30% with the load; ``--threads 1 --timer cpu`` measures the work itself (CPU time of the single compute thread).

``--amp`` adds a pass under ``torch.autocast`` (bfloat16 on CPU, float16 on CUDA), ratios to the Euclidean
model under the same autocast (``--amp-only`` skips the float32 pass). On CPUs without native bfloat16 (e.g.
AVX2) every bfloat16 convolution takes a slow path (≈20× slower than float32), so use a small ``--batch``. ``--paper`` uses the paper's batch 80. ``--profile NAME`` adds the
``torch.profiler`` top ops (self time) of one training step of model ``NAME`` to the JSON.

Usage::

    python benchmarks/compute.py                       # CPU (2 threads), layers + models, float32
    python benchmarks/compute.py --amp --rss           # + bfloat16 autocast pass, + RSS peaks
    python benchmarks/compute.py --device cuda --amp   # on a GPU
    python benchmarks/compute.py --only layers --paper
    python benchmarks/compute.py --threads 1 --timer cpu --rss   # on a shared machine
    python benchmarks/compute.py --only models --compile --models resnet18 hecnn_resnet18   # torch.compile
    python benchmarks/compute.py --launches-only       # kernel launches per call/step only (a minute or two)

The reference figures (CPU, float32, batch 32, 64 channels, 32×32, forward+backward, same-run ratios) are in
``REFERENCE`` and echoed in the JSON.
"""

from __future__ import annotations

import argparse
import collections
import json
import os
import platform
import resource
import statistics
import subprocess
import sys
import threading
import time
from collections.abc import Callable
from contextlib import nullcontext
from typing import Any

import torch
from torch import nn
from torch.utils._python_dispatch import TorchDispatchMode

from lorentzcv.geometry import Lorentz, RescaleConfig
from lorentzcv.geometry import math as lmath
from lorentzcv.kernels import LAUNCHES, emulate_cuda
from lorentzcv.models import create_model, list_models
from lorentzcv.nn import LorentzBatchNorm2d, LorentzConv2d
from lorentzcv.optim import create_optimizer

REFERENCE = {
    "note": "same-run ratios to Euclidean; CPU, float32, batch 32, 64 channels, 32x32, forward+backward",
    "authors_library": {"conv3x3_time": 1.65, "batchnorm_time": 9.5, "resnet18_step_time": 2.75,
                        "resnet18_activation_memory": 7.9},
    "hcnn": {"conv3x3_time": 11.2, "batchnorm_time": 12.2, "resnet18_step_time": 6.5,
             "resnet18_activation_memory": 10.5},
}
TARGETS = {  # (model, metric, max ratio, pass)
    "hecnn_resnet18_time": ("hecnn_resnet18", "time_ratio", 1.5, "fp32"),
    "hecnn_resnet18_memory": ("hecnn_resnet18", "mem_ratio", 2.0, "fp32"),
    "hecnn_resnet18_time_amp": ("hecnn_resnet18", "time_ratio", 2.0, "amp"),
    "hybrid_resnet18_time": ("hybrid_resnet18", "time_ratio", 1.05, "fp32"),
    "hybrid_resnet50_time": ("hybrid_resnet50", "time_ratio", 1.05, "fp32"),
}

Step = Callable[[], None]

#: ATen ops that launch no kernel of their own (views, allocations, casts that may be no-ops), left out of
#: ``kernel_ops``; a cast that does copy shows up as its ``aten::copy_`` child.
_NO_KERNEL = frozenset(f"aten::{n}" for n in (
    "view", "_unsafe_view", "reshape", "select", "slice", "split", "split_with_sizes", "unbind", "chunk", "narrow",
    "unsqueeze", "squeeze", "expand", "expand_as", "view_as", "as_strided", "t", "transpose", "permute", "movedim",
    "flatten", "unflatten", "detach", "alias", "lift_fresh", "empty", "empty_like", "new_empty", "empty_strided",
    "resolve_conj", "resolve_neg", "to", "type_as", "contiguous", "set_", "result_type"))


# ------------------------------------------------------------------------------------------------------------
# measurement helpers
# ------------------------------------------------------------------------------------------------------------
def _sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def _autocast(device: torch.device, amp: bool):
    if not amp:
        return nullcontext()
    return torch.autocast(device.type, dtype=torch.float16 if device.type == "cuda" else torch.bfloat16)


class SavedBytes:
    """Context: total bytes of the distinct storages autograd saves for backward (excluding ``exclude``)."""

    def __init__(self, exclude: set[int]) -> None:
        self.exclude, self.seen, self.bytes = exclude, set(), 0

    def add(self, t: torch.Tensor) -> None:
        try:
            st = t.untyped_storage()
            key = st.data_ptr()
            if key and key not in self.exclude and key not in self.seen:
                self.seen.add(key)
                self.bytes += st.nbytes()
        except (RuntimeError, NotImplementedError):  # tensors without storage
            pass

    def _pack(self, t: torch.Tensor) -> torch.Tensor:
        self.add(t)
        return t

    def __enter__(self) -> SavedBytes:
        self._ctx = torch.autograd.graph.saved_tensors_hooks(self._pack, lambda t: t)
        self._ctx.__enter__()
        return self

    def __exit__(self, *exc: Any) -> None:
        self._ctx.__exit__(*exc)


def _param_ptrs(*modules: nn.Module) -> set[int]:
    return {p.untyped_storage().data_ptr() for m in modules for p in m.parameters()} | {
        b.untyped_storage().data_ptr() for m in modules for b in m.buffers()}


def _extra_memory(device: torch.device, run: Callable[[], None], saved: SavedBytes | None) -> int:
    """Peak extra bytes of ``run`` (CUDA: allocator peak; CPU: saved-tensor bytes collected by ``saved``)."""
    if device.type == "cuda":
        _sync(device)
        torch.cuda.reset_peak_memory_stats(device)
        base = torch.cuda.memory_allocated(device)
        run()
        _sync(device)
        return torch.cuda.max_memory_allocated(device) - base
    assert saved is not None
    with saved:
        run()
    return saved.bytes


def count_kernel_ops(step: Step) -> int:
    """Kernel-launching ATen ops one call of ``step`` dispatches (forward, backward, optimizer; after a warm-up call).

    Counted: the innermost ``aten::`` profiler events that are not views, allocations or casts (``_NO_KERNEL``),
    i.e. the ops that do the work, once each (a composite op that calls a kernel op is not counted again). Each is a kernel launch on a GPU (~5–10 µs of launch overhead whatever
    the tensor size), so at small batches this count, not FLOPs, bounds a step's time; it does not depend on the
    machine, so a CPU run measures what a GPU would launch (before any fusion by ``torch.compile``).
    """
    from torch.profiler import ProfilerActivity, profile

    step()
    with profile(activities=[ProfilerActivity.CPU]) as prof:
        step()
    kernels = [e for e in prof.events() if e.name.startswith("aten::") and e.name not in _NO_KERNEL]
    wraps_a_kernel = set()  # composite ops (aten::linear -> aten::addmm): only the innermost op is counted
    for e in kernels:
        parent = e.cpu_parent
        while parent is not None:
            wraps_a_kernel.add(id(parent))
            parent = parent.cpu_parent
    return sum(1 for e in kernels if id(e) not in wraps_a_kernel)


def _add_kernel_ops(res: dict[str, dict], steps: dict[str, Step], base: str) -> None:
    """``kernel_ops`` and ``kernel_ops_ratio`` (to ``base``) into every entry of ``res``."""
    counts = {n: count_kernel_ops(steps[n]) for n in res}
    for n in res:
        res[n]["kernel_ops"] = counts[n]
        res[n]["kernel_ops_ratio"] = round(counts[n] / counts[base], 2) if counts[base] else None


#: Ops that launch no kernel on a GPU: allocations, aliasing and bookkeeping (view ops are recognised by their
#: schema, ``OpOverload.is_view``).
_FREE_OPS = frozenset({
    "empty", "empty_like", "empty_strided", "new_empty", "new_empty_strided", "detach", "alias", "lift_fresh",
    "set_", "resize_", "_record_function_enter_new", "_record_function_exit", "_reshape_alias", "is_same_size",
    "_has_same_storage_numel", "sym_size", "sym_stride", "sym_numel", "sym_storage_offset", "_version",
})


class _LaunchCounter(TorchDispatchMode):
    def __init__(self) -> None:
        super().__init__()
        self.ops: collections.Counter = collections.Counter()

    def __torch_dispatch__(self, func, types, args=(), kwargs=None):
        kwargs = kwargs or {}
        self.ops[func.name()] += _launches_of(func, args, kwargs)
        return func(*args, **kwargs)


def _launches_of(func, args, kwargs) -> int:
    name = func.name()  # e.g. "aten::mul.Tensor", "lorentzcv::fused_lift"
    packet = name.split(".")[0]
    if packet in LAUNCHES:
        n = LAUNCHES[packet]
        return n(args, kwargs) if callable(n) else n
    base = packet.split("::")[-1]
    if func.is_view or base in _FREE_OPS:
        return 0
    if base == "convolution_backward":  # grad input, grad weight, grad bias: one kernel each that is asked for
        mask = args[-1] if len(args) >= 11 else kwargs.get("output_mask", [True, True, True])
        return sum(bool(m) for m in mask)
    return _MULTI_KERNEL.get(base, 1)


#: Ops that CUDA runs as more than one kernel: the backward of a view fills a zero tensor, then copies the gradient
#: into the viewed part.
_MULTI_KERNEL = {"slice_backward": 2, "select_backward": 2, "diagonal_backward": 2, "as_strided_backward": 2,
                 "index_select_backward": 2, "unfold_backward": 2}


def count_launches(step: Step, *, by_op: bool = False) -> int | dict[str, int]:
    """Kernel launches of one call of ``step`` (forward, backward, optimizer; after a warm-up call) as the
    default path of a CUDA user dispatches them, counted on any device.

    How it is counted: the step runs under :func:`lorentzcv.kernels.emulate_cuda` — the Lorentz layers take the
    branches a CUDA tensor takes (the fused kernels, no CPU-only cache blocking or host-synchronising
    shortcuts) — and under a ``TorchDispatchMode`` that sees every ATen/custom op *below autograd*, i.e. the
    ops that actually run (composite ops arrive decomposed; what an op calls internally is not seen). Each op
    counts as the kernels it launches on CUDA: view ops (by schema) and allocations/bookkeeping (``_FREE_OPS``)
    0; ``convolution_backward`` one per gradient asked for (input, weight, bias); the backward of a view op
    (``slice_backward`` …) 2, a zero fill and a copy (``_MULTI_KERNEL``); a fused ``lorentzcv::`` op its
    declared count (:data:`lorentzcv.kernels.LAUNCHES`: e.g. the fused lift 1 forward, 2 backward); a
    ``_foreach_*`` op 1 (CUDA's multi-tensor apply launches one kernel per few hundred thousand elements:
    1–3 at these model sizes, so this slightly favours the Euclidean optimizers); every other op 1. Optimizers
    must be built as on CUDA (``foreach=True`` for ``torch.optim``; :func:`_model_and_step` does that when
    counting). The count depends on neither the machine nor the thread count (a test pins this).

    Args:
        step: a zero-argument callable (one training step or layer call).
        by_op: return the launches per op name instead of the total.
    """
    step()
    with emulate_cuda(), _LaunchCounter() as counter:
        step()
    ops = {k: v for k, v in counter.ops.items() if v}
    return dict(sorted(ops.items(), key=lambda kv: -kv[1])) if by_op else sum(ops.values())


def _add_launches(res: dict[str, dict], steps: dict[str, Step], base: str) -> None:
    """``launches`` and ``launches_ratio`` (to ``base``) into every entry of ``res``."""
    counts = {n: count_launches(steps[n]) for n in res}
    for n in res:
        res[n]["launches"] = counts[n]
        res[n]["launches_ratio"] = round(counts[n] / counts[base], 2) if counts[base] else None


def interleaved(
    steps: dict[str, Step], repeats: int, warmup: int, device: torch.device
) -> tuple[dict[str, list[float]], dict[str, list[float]]]:
    """Wall and process-CPU seconds per call of every step (one entry per repeat), interleaved per repeat."""
    for _ in range(warmup):
        for fn in steps.values():
            fn()
    _sync(device)
    wall: dict[str, list[float]] = {n: [] for n in steps}
    cpu: dict[str, list[float]] = {n: [] for n in steps}
    for r in range(repeats):
        order = list(steps) if r % 2 == 0 else list(reversed(steps))  # alternate the order too
        for n in order:
            _sync(device)
            t0, c0 = time.perf_counter(), time.process_time()
            steps[n]()
            _sync(device)
            wall[n].append(time.perf_counter() - t0)
            cpu[n].append(time.process_time() - c0)
    return wall, cpu


def _summary(
    samples: tuple[dict[str, list[float]], dict[str, list[float]]], mem: dict[str, int], base: str, mem_key: str,
    timer: str,
) -> dict[str, dict]:
    wall, cpu = samples
    wall_med = {n: statistics.median(v) for n, v in wall.items()}
    cpu_med = {n: statistics.median(v) for n, v in cpu.items()}
    times = cpu_med if timer == "cpu" else wall_med
    out = {}
    for n in times:
        out[n] = {
            "time_ms": round(times[n] * 1e3, 3),
            "time_ratio": round(times[n] / times[base], 3),
            "wall_ms": round(wall_med[n] * 1e3, 3),
            "wall_ratio": round(wall_med[n] / wall_med[base], 3),
            "wall_ratio_min": round(min(wall[n]) / min(wall[base]), 3),
            "cpu_ms": round(cpu_med[n] * 1e3, 3),
            "cpu_ratio": round(cpu_med[n] / cpu_med[base], 3),
            mem_key: round(mem[n] / 2**20, 2),
            "mem_ratio": round(mem[n] / mem[base], 3) if mem[base] else None,
        }
    return out


# ------------------------------------------------------------------------------------------------------------
# layers
# ------------------------------------------------------------------------------------------------------------
def _layer_step(layer: nn.Module, x: torch.Tensor, g: torch.Tensor, amp: bool) -> Step:
    def step() -> None:
        x.grad = None
        layer.zero_grad(set_to_none=True)
        with _autocast(x.device, amp):
            y = layer(x)
        y.backward(g.to(y.dtype))

    return step


def _layer_suites(args: argparse.Namespace, device: torch.device) -> dict[str, tuple[str, dict]]:
    """``suite -> (Euclidean baseline name, {name: (layer, input, output gradient)})``."""
    b, c, s = args.batch, args.channels, args.size
    torch.manual_seed(0)
    man = Lorentz(1.0, learnable=True, rescale=RescaleConfig(s=2.0))
    xe = torch.randn(b, c, s, s, device=device, requires_grad=True)
    xl = lmath.add_time(0.5 * torch.randn(b, c, s, s, device=device), man.k.detach().to(device), dim=1)
    xl.requires_grad_(True)
    man = man.to(device)
    ge = torch.randn(b, c, s, s, device=device)
    gl = torch.randn(b, 1 + c, s, s, device=device)
    suites = {
        "conv3x3": ("nn.Conv2d", {
            "nn.Conv2d": (nn.Conv2d(c, c, 3, padding=1), xe, ge),
            "lorentz_efficient": (LorentzConv2d(man, c, c, 3, padding=1, impl="efficient", rescale=True), xl, gl),
            "lorentz_efficient_norescale": (LorentzConv2d(man, c, c, 3, padding=1, impl="efficient",
                                                          rescale=False), xl, gl),
            "lorentz_unfold_hcnn": (LorentzConv2d(man, c, c, 3, padding=1, impl="unfold"), xl, gl),
        }),
        "batchnorm": ("nn.BatchNorm2d", {
            "nn.BatchNorm2d": (nn.BatchNorm2d(c), xe, ge),
            "lorentz_bn_hcnn": (LorentzBatchNorm2d(man, c, variant="hcnn"), xl, gl),
            "lorentz_bn_hcnn_rescale": (LorentzBatchNorm2d(man, c, variant="hcnn", rescale=True), xl, gl),
            "lorentz_bn_rhl": (LorentzBatchNorm2d(man, c, variant="rhl"), xl, gl),
        }),
    }
    return suites


def bench_layers(args: argparse.Namespace, device: torch.device, amp: bool) -> dict[str, Any]:
    out: dict[str, Any] = {}
    for suite, (base, layers) in _layer_suites(args, device).items():
        steps, mem = {}, {}
        for name, (layer, x, g) in layers.items():
            layer.to(device).train()
            steps[name] = _layer_step(layer, x, g, amp)
            saved = None if device.type == "cuda" else SavedBytes(_param_ptrs(layer))  # (the manifold is a submodule)

            def fwd(layer=layer, x=x, saved=saved) -> None:
                with _autocast(device, amp):
                    y = layer(x)
                saved.add(y)  # the output is held for the next layer as well

            mem[name] = _extra_memory(device, steps[name] if device.type == "cuda" else fwd, saved)
        times = interleaved(steps, args.layer_repeats, args.warmup, device)
        out[suite] = _summary(times, mem, base, "act_mem_mb" if device.type == "cpu" else "peak_extra_mb",
                              args.timer)
        _add_kernel_ops(out[suite], steps, base)
        _add_launches(out[suite], steps, base)
    return out


# ------------------------------------------------------------------------------------------------------------
# models
# ------------------------------------------------------------------------------------------------------------
def _model_and_step(name: str, args: argparse.Namespace, device: torch.device, amp: bool,
                    foreach: bool | None = None):
    """Model, optimizer, batch and training step of ``name`` (``foreach=True``: the optimizers as CUDA runs
    them, for :func:`count_launches`; ``None``: torch's default for the device)."""
    torch.manual_seed(0)
    model = create_model(name, num_classes=args.num_classes, img_size=args.size, width=args.channels).to(device)
    model.train()
    opt_name = "rsgd" if model.manifolds() else "sgd"
    opt = create_optimizer(model, opt_name, lr=0.01, weight_decay=5e-4, momentum=0.9, nesterov=True,
                           foreach=foreach)
    x = torch.randn(args.batch, 3, args.size, args.size, device=device)
    y = torch.randint(0, args.num_classes, (args.batch,), device=device)

    def forward_loss() -> torch.Tensor:
        with _autocast(device, amp):
            return nn.functional.cross_entropy(model(x), y)

    def step() -> None:
        forward_loss().backward()
        opt.step()
        opt.zero_grad(set_to_none=True)

    return model, opt, x, step, forward_loss


def _model_names(args: argparse.Namespace) -> list[str]:
    names = args.models or list_models(["*resnet18", "*resnet50"])
    base = [n for n in ("resnet18", "resnet50") if any(m.endswith(n) for m in names)]
    return base + [n for n in names if n not in base]


def bench_models(args: argparse.Namespace, device: torch.device, amp: bool) -> dict[str, Any]:
    names = _model_names(args)
    steps, mem, info = {}, {}, {}
    for name in names:
        model, opt, x, step, forward_loss = _model_and_step(name, args, device, amp)
        step()  # materialise the optimizer state before measuring
        if device.type == "cuda":
            mem[name] = _extra_memory(device, step, None)
        else:
            saved = SavedBytes(_param_ptrs(model) | {x.untyped_storage().data_ptr()})
            with saved:
                loss = forward_loss()
            loss.backward()
            opt.zero_grad(set_to_none=True)
            mem[name] = saved.bytes
        steps[name] = step
        info[name] = {"params_M": round(sum(p.numel() for p in model.parameters()) / 1e6, 3),
                      "optimizer": type(opt).__name__}
    times = interleaved(steps, args.model_repeats, args.warmup, device)
    mem_key = "act_mem_mb" if device.type == "cpu" else "peak_extra_mb"
    out = {}
    for depth in ("18", "50"):
        group = [n for n in names if n.endswith("resnet" + depth)]
        base = "resnet" + depth
        if base not in group:
            continue
        res = _summary(tuple({n: t[n] for n in group} for t in times), {n: mem[n] for n in group}, base, mem_key,
                       args.timer)
        for n in group:
            res[n].update(info[n])
        _add_kernel_ops(res, steps, base)
        _add_launches(res, {n: _model_and_step(n, args, device, amp, foreach=True)[3] for n in group}, base)
        out.update(res)
    if args.rss and device.type == "cpu":
        for name in names:
            rss = _rss_in_subprocess(name, args, amp)
            out[name]["rss_peak_extra_mb"] = rss
        for n in names:
            base = "resnet" + n[-2:]
            if out[base].get("rss_peak_extra_mb"):
                out[n]["rss_ratio"] = round(out[n]["rss_peak_extra_mb"] / out[base]["rss_peak_extra_mb"], 3)
    return out


def bench_launches(args: argparse.Namespace, device: torch.device, amp: bool) -> dict[str, Any]:
    """Only ``launches``/``launches_ratio`` of every layer and model (``--launches-only``: fast, no timing)."""
    out: dict[str, Any] = {"layers": {}, "models": {}}
    for suite, (base, layers) in _layer_suites(args, device).items():
        steps = {n: _layer_step(layer.to(device).train(), x, g, amp) for n, (layer, x, g) in layers.items()}
        out["layers"][suite] = {n: {} for n in steps}
        _add_launches(out["layers"][suite], steps, base)
    names = _model_names(args)
    for depth in ("18", "50"):
        group = [n for n in names if n.endswith("resnet" + depth)]
        base = "resnet" + depth
        if base in group:
            res = {n: {} for n in group}
            _add_launches(res, {n: _model_and_step(n, args, device, amp, foreach=True)[3] for n in group}, base)
            out["models"].update(res)
    return out


def bench_compile(args: argparse.Namespace, device: torch.device, amp: bool) -> dict[str, Any]:
    """``torch.compile`` (default arguments) of each model's forward + backward (the optimizer step stays eager):
    compile time (the first step, including its own run), then the eager and compiled steps interleaved.

    Per model: ``compile_s``, ``eager_ms``, ``compiled_ms``, ``speedup`` (eager/compiled) and ``time_ratio``
    (compiled, to the compiled Euclidean model of the same depth)."""
    out: dict[str, Any] = {}
    for name in _model_names(args):
        *_, eager_step, _ = _model_and_step(name, args, device, amp)
        model, opt, x, _, _ = _model_and_step(name, args, device, amp)
        compiled = torch.compile(model)
        y = torch.randint(0, args.num_classes, (args.batch,), device=device)

        def compiled_step(compiled=compiled, opt=opt, x=x, y=y) -> None:
            with _autocast(device, amp):
                loss = nn.functional.cross_entropy(compiled(x), y)
            loss.backward()
            opt.step()
            opt.zero_grad(set_to_none=True)

        _sync(device)
        t0 = time.perf_counter()
        compiled_step()
        _sync(device)
        compile_s = time.perf_counter() - t0
        wall, cpu = interleaved({"eager": eager_step, "compiled": compiled_step}, args.model_repeats, args.warmup,
                                device)
        t = cpu if args.timer == "cpu" else wall
        e, c = statistics.median(t["eager"]), statistics.median(t["compiled"])
        out[name] = {"compile_s": round(compile_s, 1), "eager_ms": round(e * 1e3, 2), "compiled_ms": round(c * 1e3, 2),
                     "speedup": round(e / c, 3)}
    for name, entry in out.items():
        base = out.get("resnet" + name[-2:])
        entry["time_ratio"] = round(entry["compiled_ms"] / base["compiled_ms"], 3) if base else None
    return out


def _rss_now() -> int:
    with open("/proc/self/statm") as f:
        return int(f.read().split()[1]) * os.sysconf("SC_PAGE_SIZE")


def _rss_child(name: str, args: argparse.Namespace, amp: bool) -> None:
    """Subprocess entry: RSS high-water of one training step above the RSS before it (MB, on stdout)."""
    device = torch.device("cpu")
    _, _, _, step, _ = _model_and_step(name, args, device, amp)
    step()
    step()
    try:  # hand freed heap pages back to the OS so that the baseline is the live memory
        import ctypes

        ctypes.CDLL("libc.so.6").malloc_trim(0)
    except (OSError, AttributeError):
        pass
    base = _rss_now()
    peak = [base]
    done = threading.Event()

    def sample() -> None:
        while not done.is_set():
            peak[0] = max(peak[0], _rss_now())
            time.sleep(0.0005)

    th = threading.Thread(target=sample, daemon=True)
    th.start()
    step()
    done.set()
    th.join()
    print(json.dumps({"rss_peak_extra_mb": round((peak[0] - base) / 2**20, 2),
                      "ru_maxrss_mb": round(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024, 1)}))


def _rss_in_subprocess(name: str, args: argparse.Namespace, amp: bool) -> float | None:
    cmd = [sys.executable, "-m", "lorentzcv.bench", "--_rss-child", name, "--batch", str(args.batch),
           "--size", str(args.size), "--channels", str(args.channels), "--threads", str(args.threads),
           "--num-classes", str(args.num_classes)] + (["--amp"] if amp else [])
    res = subprocess.run(cmd, capture_output=True, text=True, check=False)
    try:
        return json.loads(res.stdout.strip().splitlines()[-1])["rss_peak_extra_mb"]
    except (IndexError, ValueError, KeyError):
        print(f"rss subprocess for {name} failed: {res.stderr[-2000:]}", file=sys.stderr)
        return None


def profile_model(name: str, args: argparse.Namespace, device: torch.device, amp: bool, top: int = 15) -> list:
    """``torch.profiler`` top ops (by self time) of one training step of ``name``."""
    from torch.profiler import ProfilerActivity, profile

    *_, step, _ = _model_and_step(name, args, device, amp)
    for _ in range(2):
        step()
    acts = [ProfilerActivity.CPU] + ([ProfilerActivity.CUDA] if device.type == "cuda" else [])
    with profile(activities=acts) as prof:
        step()
    def self_us(e: Any) -> float:
        if device.type == "cuda":
            return float(getattr(e, "self_device_time_total", None) or getattr(e, "self_cuda_time_total", 0.0))
        return float(e.self_cpu_time_total)

    events = list(prof.key_averages())
    rows = sorted(events, key=self_us, reverse=True)[:top]
    total = sum(self_us(e) for e in events) or 1.0
    return [{"op": e.key, "self_ms": round(self_us(e) / 1e3, 3), "share": round(self_us(e) / total, 3),
             "calls": e.count} for e in rows]


def _targets(models: dict[str, dict]) -> dict[str, Any]:
    out = {}
    for tname, (model, metric, limit, pass_) in TARGETS.items():
        entry = models.get(pass_, {}).get(model)
        if entry is None:
            continue
        value = entry[metric]
        out[tname] = {"ratio": value, "target": limit, "met": value is not None and value <= limit}
    return out


# ------------------------------------------------------------------------------------------------------------
def main(argv: list[str] | None = None) -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0], formatter_class=argparse.RawTextHelpFormatter)
    p.add_argument("--device", default="cpu", help="cpu (default) or cuda")
    p.add_argument("--threads", type=int, default=2, help="torch.set_num_threads (CPU)")
    p.add_argument("--only", choices=["layers", "models"], default=None)
    p.add_argument("--amp", action="store_true", help="add a pass under autocast (bf16 on CPU, fp16 on CUDA)")
    p.add_argument("--amp-only", action="store_true", help="only the autocast pass (bf16 autocast is very slow on "
                   "CPUs without native bf16, e.g. AVX2: use with a smaller --batch)")
    p.add_argument("--paper", action="store_true", help="the paper's batch 80")
    p.add_argument("--batch", type=int, default=None, help="batch size (default 32, 80 with --paper)")
    p.add_argument("--channels", type=int, default=64, help="layer channels and model width")
    p.add_argument("--size", type=int, default=32, help="input resolution")
    p.add_argument("--num-classes", type=int, default=100)
    p.add_argument("--models", nargs="*", default=None, help="subset of registered models")
    p.add_argument("--layer-repeats", type=int, default=10)
    p.add_argument("--model-repeats", type=int, default=5)
    p.add_argument("--warmup", type=int, default=1)
    p.add_argument("--timer", choices=["wall", "cpu"], default="wall",
                   help="what time_ms/time_ratio (and the targets) use: wall clock (default) or the process CPU "
                   "time, which is robust to other processes on a shared machine (use with --threads 1)")
    p.add_argument("--rss", action="store_true", help="CPU: also RSS peaks in a subprocess per model")
    p.add_argument("--launches-only", action="store_true", help="only count kernel launches (fast, no timing)")
    p.add_argument("--compile", action="store_true", help="also torch.compile each model's training step: compile "
                   "time, speedup, ratio to the compiled Euclidean model (use with --only models)")
    p.add_argument("--profile", nargs="*", default=None, metavar="MODEL",
                   help="add torch.profiler top ops of these models' training step")
    p.add_argument("--_rss-child", dest="rss_child", default=None, help=argparse.SUPPRESS)
    p.add_argument("--out", default=None, help="also write the JSON to this file")
    args = p.parse_args(argv)
    args.batch = args.batch or (80 if args.paper else 32)
    device = torch.device(args.device)
    if device.type == "cpu":
        torch.set_num_threads(args.threads)
    if args.rss_child:
        _rss_child(args.rss_child, args, args.amp)
        return
    t_start = time.perf_counter()
    result: dict[str, Any] = {
        "command": "python benchmarks/compute.py " + " ".join(sys.argv[1:] if argv is None else argv),
        "config": {"device": str(device), "batch": args.batch, "channels": args.channels, "size": args.size,
                   "num_classes": args.num_classes, "threads": torch.get_num_threads() if device.type == "cpu"
                   else None, "layer_repeats": args.layer_repeats, "model_repeats": args.model_repeats,
                   "warmup": args.warmup, "timer": args.timer, "statistic": "median, contenders interleaved"},
        "env": {"torch": torch.__version__, "python": platform.python_version(), "machine": platform.machine(),
                "processor": platform.processor() or None,
                "cuda_device": torch.cuda.get_device_name(device) if device.type == "cuda" else None},
        "reference": REFERENCE,
        "loadavg_start": [round(v, 2) for v in os.getloadavg()],
    }
    passes = ([] if args.amp_only else [("fp32", False)]) + ([("amp", True)] if args.amp or args.amp_only else [])
    if args.launches_only:
        result["launches"] = {pname: bench_launches(args, device, amp) for pname, amp in passes}
    elif args.only in (None, "layers"):
        result["layers"] = {pname: bench_layers(args, device, amp) for pname, amp in passes}
    if args.only in (None, "models") and not args.launches_only:
        result["models"] = {pname: bench_models(args, device, amp) for pname, amp in passes}
        result["targets"] = _targets(result["models"])
    if args.compile:
        result["compile"] = {pname: bench_compile(args, device, amp) for pname, amp in passes}
    if args.profile is not None:
        names = args.profile or ["hecnn_resnet18"]
        result["profile"] = {f"{n}/{pname}": profile_model(n, args, device, amp) for n in names for pname, amp in passes}
    if args.amp or args.amp_only:
        result["config"]["amp_dtype"] = "float16" if device.type == "cuda" else "bfloat16"
    result["loadavg_end"] = [round(v, 2) for v in os.getloadavg()]
    result["wall_s"] = round(time.perf_counter() - t_start, 1)
    text = json.dumps(result, indent=1)
    print(text)
    if args.out:
        with open(args.out, "w") as f:
            f.write(text + "\n")


if __name__ == "__main__":
    main()
