"""Count what a Triton launcher launches: its Triton kernels (wrapped) and its kernel-launching torch ops."""

from __future__ import annotations

from types import ModuleType
from typing import Any

from torch.utils._python_dispatch import TorchDispatchMode

_FREE = {"empty", "empty_like", "empty_strided", "new_empty", "new_empty_strided", "detach", "alias"}


class _TorchOps(TorchDispatchMode):
    def __init__(self) -> None:
        super().__init__()
        self.count = 0
        self.paused = False  # inside a Triton kernel (the interpreter moves its arguments with torch ops)

    def __torch_dispatch__(self, func, types, args=(), kwargs=None):
        name = func.name().split("::")[-1].split(".")[0]
        if not self.paused and not func.is_view and name not in _FREE:
            self.count += 1
        return func(*args, **(kwargs or {}))


class _Counted:
    def __init__(self, kernel: Any, counter: list[int], ops: _TorchOps) -> None:
        self.kernel, self.counter, self.ops = kernel, counter, ops

    def __getitem__(self, grid):
        launch = self.kernel[grid]

        def run(*args, **kwargs):
            self.counter[0] += 1
            self.ops.paused = True
            try:
                return launch(*args, **kwargs)
            finally:
                self.ops.paused = False

        return run


def count_launches(kernels: ModuleType, fn, *args) -> tuple[Any, int]:
    """``(fn(*args), launches)``: Triton kernels of ``kernels`` (a module of ``@triton.jit`` functions whose names do
    not start with ``_``) called through ``kernel[grid]``, plus torch ops that are not views or allocations."""
    counter = [0]
    names = [n for n in dir(kernels) if not n.startswith("_") and hasattr(getattr(kernels, n), "__getitem__")
             and type(getattr(kernels, n)).__name__ in ("JITFunction", "InterpretedFunction")]
    saved = {n: getattr(kernels, n) for n in names}
    ops = _TorchOps()
    try:
        for n in names:
            setattr(kernels, n, _Counted(saved[n], counter, ops))
        with ops:
            out = fn(*args)
    finally:
        for n, k in saved.items():
            setattr(kernels, n, k)
    return out, counter[0] + ops.count
