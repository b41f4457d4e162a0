r"""Step many manifold parameters as one: their points stacked into one ``(rows, 1+C_max)`` tensor.

A fully hyperbolic ResNet has dozens of small manifold parameters (every Lorentz batch norm's β is one point).
Riemannian SGD/AdamW update each point with a few dozen small tensor ops, so stepping them one by one costs
``params × ops`` kernel launches on a GPU. Every op of the manifold step is per point (a row along the last
dimension), so the manifold parameters of one manifold — with the same dtype and device and optimizer state of the
same kind and age — are stacked along the rows, stepped once, and written back. Points of different sizes are
padded with zero space coordinates: every map of the step (projection, exponential map, transport, weight decay
toward the origin, the radius cap) acts on a point and its tangent vectors through inner products and linear
combinations, so zeros stay zeros and the other coordinates are exactly what they would be unpadded. Stacking
costs one ``torch.cat`` (plus a zero fill and one indexed copy when sizes differ) per tensor kind in, and one
indexed gather and one ``torch._foreach_copy_`` out. The result is that of stepping the parameters one by one, up
to the rounding order of row reductions (tested).
"""

from __future__ import annotations

import functools
from collections.abc import Callable, Iterable
from typing import Any

import torch

__all__ = ["stack_buckets", "stacked_call", "stack_rows", "unstack_rows_into"]


def stack_buckets(params: Iterable[torch.Tensor], key: Callable[[torch.Tensor], Any]) -> list[list[torch.Tensor]]:
    """Parameters grouped by ``(key(p), dtype, device)``, in first-seen order."""
    groups: dict[Any, list[torch.Tensor]] = {}
    for p in params:
        groups.setdefault((key(p), p.dtype, p.device), []).append(p)
    return list(groups.values())


def _rows(t: torch.Tensor) -> torch.Tensor:
    return t.reshape(-1, t.size(-1))


@functools.lru_cache(maxsize=64)
def _pad_index(layout: tuple[tuple[int, int], ...], width: int, device: torch.device) -> torch.Tensor:
    """Flat positions in a ``(Σ rows, width)`` stack of the entries of blocks ``(rows, w)`` laid one after another."""
    idx, row = [], 0
    for rows, w in layout:
        idx.append(((torch.arange(rows) + row)[:, None] * width + torch.arange(w)[None, :]).reshape(-1))
        row += rows
    return torch.cat(idx).to(device)


def _layout(tensors: list[torch.Tensor]) -> tuple[tuple[int, int], ...]:
    return tuple((t.numel() // t.size(-1), t.size(-1)) for t in tensors)


def stack_rows(tensors: list[torch.Tensor], width: int | None = None) -> torch.Tensor:
    """The row-concatenation ``(Σ rows, width)`` of the tensors' rows (last dimension), zero-padded to ``width``
    (default: the widest)."""
    rows = [_rows(t.detach()) for t in tensors]
    width = width or max(r.size(-1) for r in rows)
    if all(r.size(-1) == width for r in rows):
        return torch.cat(rows)
    flat = torch.cat([r.reshape(-1) for r in rows])
    out = flat.new_zeros(sum(r.size(0) for r in rows), width)
    out.view(-1)[_pad_index(_layout(rows), width, flat.device)] = flat
    return out


def unstack_rows_into(dsts: list[torch.Tensor], rows: torch.Tensor) -> None:
    """Copy the row blocks of ``rows`` back into ``dsts``, dropping padding (the inverse of :func:`stack_rows`)."""
    width = rows.size(-1)
    if all(d.size(-1) == width for d in dsts):
        flat = rows.reshape(-1)
    else:
        flat = rows.reshape(-1)[_pad_index(_layout(dsts), width, rows.device)]
    chunks = flat.split([d.numel() for d in dsts])
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
    return all(  # tensors of the same rank (points/moments, or one entry per point)
        not isinstance(states[0][k], torch.Tensor) or all(s[k].dim() == states[0][k].dim() for s in states)
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
    proxy = stack_rows(params)
    proxy.grad = stack_rows([p.grad for p in params], proxy.size(-1))
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
            if k not in states[0]:  # created by the step (first step): one tensor per parameter
                for p, s in zip(params, states):
                    s[k] = v.new_empty(p.shape if v.size(-1) == proxy.size(-1) else (*p.shape[:-1], v.size(-1)))
            unstack_rows_into([s[k] for s in states], v)
        else:
            for s in states:
                s[k] = v.clone() if isinstance(v, torch.Tensor) else v
    return True
