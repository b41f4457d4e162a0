r"""Fused kernels for the per-pixel Lorentz chains, and the policy that picks them.

A Lorentz layer's work outside its convolution or matrix product is a chain of small per-pixel operations
(time from space, maximum distance rescaling, ReLU, residual sums). Written as PyTorch ops each link is one kernel
launch, which bounds a GPU step at small batches. This package provides the same chains as single kernels:

* :mod:`lorentzcv.kernels.batch_norm`: the Lorentz batch norm (forward 4 kernels in training, the running
  statistics included, backward 5), same structure (Triton on CUDA, the eager closed form with a hand-written
  backward elsewhere).
* :mod:`lorentzcv.kernels.lift`: :func:`~lorentzcv.kernels.lift.fused_lift`, the "space coordinates → point"
  epilogue of every efficient convolution, activation and residual (forward one kernel, backward one kernel plus
  the reduction of the curvature gradient), as ``torch.library`` custom ops: hand-written Triton kernels on CUDA,
  the eager closed forms of :mod:`lorentzcv.nn.functional` elsewhere.
* :mod:`lorentzcv.kernels.swap`, :mod:`lorentzcv.kernels.rows`, :mod:`lorentzcv.kernels.mlr`: the head of a fully
  hyperbolic ResNet — the encoder→decoder manifold swap, the normalisation of the global average pooling and the
  Lorentz MLR (around ``torch.mm``) — one program per point or class, hand-written backwards.
* :mod:`lorentzcv.optim.fused`: the Riemannian SGD and AdamW steps and the explog curvature move of a stack of
  points, one kernel each (Triton, :mod:`lorentzcv.kernels._optim_triton`), behind the same policy.

**Which path runs** (:func:`use_fused`): ``"auto"`` (default) takes the fused kernels for CUDA tensors when Triton
is importable and the eager closed forms otherwise (on CPU those are the fastest: PyTorch's CPU kernels are
already multi-threaded loops); :func:`backend` switches it in a ``with`` block (``"fused"``: always, also on CPU
where the custom ops run the eager math; ``"eager"``: never). :func:`emulate_cuda` makes CPU tensors take every
branch a CUDA tensor would (fused kernels, no CPU-only cache blocking or host-synchronising shortcuts); the
launch counter of ``benchmarks/compute.py`` runs under it. Under ``torch.compile`` the layers use plain
differentiable ops instead, which inductor fuses itself.

Both are context managers over a thread-local setting (no process-wide state is changed). On CUDA a Triton kernel
that cannot be compiled or launched falls back to the eager closed form with one warning
(:func:`with_eager_fallback`).
"""

from __future__ import annotations

import contextlib
import importlib.util
import threading
import warnings
from collections.abc import Callable, Iterator

import torch

__all__ = [
    "backend", "emulate_cuda", "use_fused", "cpu_path", "triton_available", "with_eager_fallback", "LAUNCHES",
    "row_block", "row_warps",
]

_BACKENDS = ("auto", "fused", "eager")
_STATE = threading.local()

#: Kernel launches of each fused custom op on CUDA: a number, or a function of the op's ``(args, kwargs)`` (the launch
#: counter of ``benchmarks/compute.py`` reads it).
LAUNCHES: dict[str, int | Callable[[tuple, dict], int]] = {}


def _get(name: str, default):
    return getattr(_STATE, name, default)


@contextlib.contextmanager
def backend(name: str) -> Iterator[None]:
    """Within the block, Lorentz layers use ``"fused"`` kernels, the ``"eager"`` closed forms, or ``"auto"``."""
    if name not in _BACKENDS:
        raise ValueError(f"unknown kernel backend {name!r}; expected one of {_BACKENDS}")
    old = _get("backend", "auto")
    _STATE.backend = name
    try:
        yield
    finally:
        _STATE.backend = old


@contextlib.contextmanager
def emulate_cuda() -> Iterator[None]:
    """Within the block, CPU tensors take the branches CUDA tensors take (for counting kernel launches)."""
    old = _get("emulate", False)
    _STATE.emulate = True
    try:
        yield
    finally:
        _STATE.emulate = old


def row_block(width: int) -> int:
    """Lanes of a one-program-per-point Triton kernel for rows of ``width`` entries: the next power of two, >= 16."""
    return max(16, 1 << (int(width) - 1).bit_length())


def row_warps(width: int) -> int:
    """Warps of a one-program-per-point Triton kernel for rows of ``width`` entries."""
    return 1 if width <= 256 else 4 if width <= 2048 else 8


def triton_available() -> bool:
    """Whether Triton can be imported (it ships with the CUDA builds of torch)."""
    return importlib.util.find_spec("triton") is not None


def use_fused(x: torch.Tensor) -> bool:
    """Whether the layers should run the fused kernels for tensor ``x`` (see the module docstring)."""
    if torch.compiler.is_compiling() or torch.jit.is_tracing():  # (plain ops: traceable)
        return False
    name = _get("backend", "auto")
    if name == "eager":
        return False
    if name == "fused" or _get("emulate", False):
        return True
    return x.is_cuda and triton_available()


def cpu_path(x: torch.Tensor) -> bool:
    """Whether CPU-only branches (cache blocking, host-synchronising shortcuts) may run for ``x``."""
    return (x.device.type == "cpu" and not _get("emulate", False) and not torch.compiler.is_compiling()
            and not torch.jit.is_tracing())


#: Fused ops whose Triton kernel failed in this process (see :func:`with_eager_fallback`).
_FAILED: set[str] = set()


def with_eager_fallback(name: str, triton_fn: Callable, eager_fn: Callable) -> Callable:
    """The CUDA implementation of fused op ``name``: the Triton launcher, or, once it has raised (e.g. a Triton or
    driver version that cannot compile the kernel), the eager closed form, with one warning per op and process.

    The eager result is the same to rounding (tested); only the launch count differs. Not a guard against wrong
    numbers: the CUDA tests (``tests/kernels``, ``benchmarks/cuda_check.sh``) compare the kernels with the eager
    closed forms."""

    def kernel(*args):
        if name not in _FAILED:
            try:
                return triton_fn(*args)
            except Exception as exc:  # noqa: BLE001 (any compilation/launch failure)
                _FAILED.add(name)
                warnings.warn(f"lorentzcv: the Triton kernel of {name} failed ({type(exc).__name__}: {exc}); using "
                              "the eager closed form instead (same results, more kernel launches)", RuntimeWarning,
                              stacklevel=2)
        return eager_fn(*args)

    return kernel
