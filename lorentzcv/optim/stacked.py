r"""Step many manifold parameters as one: points of equal size stacked into one ``(rows, 1+C)`` tensor.

A fully hyperbolic ResNet has dozens of small manifold parameters (every Lorentz batch norm's β is one point).
Riemannian SGD/AdamW update each point with a few dozen small tensor ops, so stepping them one by one costs
``params × ops`` kernel launches on a GPU. Every op of the manifold step is per point (a row along the last
dimension), so parameters whose points have the same size ``1+C`` — on the same manifold, with the same dtype and
device and optimizer state of the same kind and age — are concatenated along the rows, stepped once, and
written back (one ``torch.cat`` per tensor kind in, one ``torch._foreach_copy_`` out). The result is that of
stepping them one by one, up to the rounding order of row reductions (tested).
"""

from __future__ import annotations

from collections.abc import Callable, Iterable
from typing import Any

import torch

__all__ = ["stack_buckets", "stacked_call", "stack_rows", "unstack_rows_into"]


def stack_buckets(params: Iterable[torch.Tensor], key: Callable[[torch.Tensor], Any]) -> list[list[torch.Tensor]]:
    """Parameters grouped by ``(key(p), p.size(-1), dtype, device)``, in first-seen order."""
    groups: dict[Any, list[torch.Tensor]] = {}
    for p in params:
        groups.setdefault((key(p), p.size(-1), p.dtype, p.device), []).append(p)
    return list(groups.values())


def _rows(t: torch.Tensor) -> torch.Tensor:
    return t.reshape(-1, t.size(-1))


def stack_rows(tensors: list[torch.Tensor]) -> torch.Tensor:
    """The row-concatenation ``(Σ rows, n)`` of tensors whose last dimension is ``n`` (one ``torch.cat``)."""
    return torch.cat([_rows(t.detach()) for t in tensors])


def unstack_rows_into(dsts: list[torch.Tensor], rows: torch.Tensor) -> None:
    """Copy the row blocks of ``rows`` back into ``dsts`` (the inverse of :func:`stack_rows`; one foreach copy)."""
    n = rows.size(-1)
    chunks = rows.split([d.numel() // n for d in dsts])
    torch._foreach_copy_(list(dsts), [c.view(d.shape) for d, c in zip(dsts, chunks)])


def _same_state(states: list[dict]) -> bool:
    """Whether the states hold the same keys, tensors of matching trailing size, and the same step count."""
    keys = set(states[0])
    if any(set(s) != keys for s in states):
        return False
    if "step" in keys:
        steps = [float(s["step"]) for s in states]
        if any(v != steps[0] for v in steps):
            return False
    return all(
        not isinstance(states[0][k], torch.Tensor) or states[0][k].dim() == 0
        or all(s[k].size(-1) == states[0][k].size(-1) for s in states)
        for k in keys
    )


def stacked_call(params: list[torch.Tensor], state: dict, step: Callable[[torch.Tensor], None]) -> bool:
    """Run ``step(proxy)`` once for all ``params`` (same point size) on a stacked proxy parameter.

    ``proxy`` is the row-concatenation of the params (with ``.grad`` and ``.manifold`` set, and its optimizer state
    ``state[proxy]`` the row-concatenation of theirs); ``step`` updates it in place like one parameter. The results
    are written back into the parameters and their states. Returns False (and does nothing) when the states differ
    in kind or age, in which case the caller steps the parameters one by one.
    """
    states = [state[p] for p in params]
    if not _same_state(states):
        return False
    n = params[0].size(-1)
    sizes = [p.numel() // n for p in params]
    proxy = stack_rows(params)
    proxy.grad = torch.cat([_rows(p.grad) for p in params])
    proxy.manifold = params[0].manifold
    pstate: dict = {}
    for k, v in states[0].items():
        if isinstance(v, torch.Tensor) and v.dim() > 0:
            pstate[k] = stack_rows([s[k] for s in states])
        else:
            pstate[k] = v.clone() if isinstance(v, torch.Tensor) else v
    state[proxy] = pstate
    try:
        step(proxy)
    finally:
        pstate = state.pop(proxy)
    unstack_rows_into([p.detach() for p in params], proxy)
    for k, v in pstate.items():
        if isinstance(v, torch.Tensor) and v.dim() > 0:
            chunks = v.split(sizes)
            if k in states[0]:
                unstack_rows_into([s[k] for s in states], v)
            else:  # created by the step (first step): one tensor per parameter
                for p, s, c in zip(params, states, chunks):
                    shape = (*p.shape[:-1], c.size(-1))
                    s[k] = c.reshape(shape).clone()
        else:
            for s in states:
                s[k] = v.clone() if isinstance(v, torch.Tensor) else v
    return True
