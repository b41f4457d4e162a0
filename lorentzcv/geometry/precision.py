"""Float32 islands under ``torch.autocast`` (``docs/design.md`` §1, Precision).

Hyperbolic kernels (cosh/sinh, arcosh, time-from-space) lose the hyperboloid constraint in float16/bfloat16,
so layers run them in float32 even when the surrounding network runs under autocast: inputs in a half dtype are
cast up, autocast is disabled inside, and the float32 result flows on (the next autocast op casts it down).
"""

from __future__ import annotations

import functools
from collections.abc import Callable
from contextlib import AbstractContextManager, nullcontext
from typing import Any, TypeVar

import torch

__all__ = ["float32_island", "no_autocast", "upcast"]

F = TypeVar("F", bound=Callable[..., Any])
_HALF = (torch.float16, torch.bfloat16)


def upcast(x: torch.Tensor) -> torch.Tensor:
    """``x`` in float32 if it is float16/bfloat16, else unchanged."""
    return x.float() if x.dtype in _HALF else x


def no_autocast(x: torch.Tensor) -> AbstractContextManager:
    """A context that disables autocast on ``x``'s device if it is enabled there (else a no-op)."""
    dev = x.device.type
    if dev in ("cpu", "cuda") and torch.is_autocast_enabled(dev):
        return torch.autocast(dev, enabled=False)
    return nullcontext()


def float32_island(fn: F) -> F:
    """Decorate a ``forward(self, x, *args)``: run it with autocast off and half-precision tensor args upcast."""

    @functools.wraps(fn)
    def wrapper(self: Any, x: torch.Tensor, *args: Any, **kwargs: Any) -> Any:
        with no_autocast(x):
            args = tuple(upcast(a) if isinstance(a, torch.Tensor) else a for a in args)
            return fn(self, upcast(x), *args, **kwargs)

    return wrapper  # type: ignore[return-value]
