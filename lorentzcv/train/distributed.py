"""Process-group setup for ``torchrun`` (DDP) and the helpers the engine needs.

A run is distributed when ``torchrun`` sets ``WORLD_SIZE > 1`` (with ``RANK``/``LOCAL_RANK``/``MASTER_ADDR``);
multi-node runs use torchrun's usual flags (``--nnodes``, ``--node_rank``, ``--rdzv_endpoint``), nothing
else. The backend follows the device: ``nccl`` on CUDA, ``gloo`` on CPU.

Shutdown (``ecosystem.md`` §5): on CPU/gloo a process whose DDP wrapper is still alive at exit aborts in
about one run in five. :func:`shutdown` therefore does ``barrier``, drops the caller's references (the caller
must ``del`` its own DDP model and optimizer first), ``gc.collect()`` and only then
``destroy_process_group()``.
"""

from __future__ import annotations

import gc
import hashlib
import os
from dataclasses import dataclass
from typing import Any

import torch
import torch.distributed as dist

__all__ = [
    "DistInfo",
    "resolve_device",
    "init_distributed",
    "shutdown",
    "all_reduce_sum",
    "broadcast_object",
    "all_gather_object",
    "params_digest",
]


@dataclass(frozen=True)
class DistInfo:
    """This process's place in the run."""

    rank: int = 0
    local_rank: int = 0
    world_size: int = 1
    device: torch.device = torch.device("cpu")
    backend: str | None = None  # None: not distributed

    @property
    def distributed(self) -> bool:
        return self.world_size > 1

    @property
    def is_main(self) -> bool:
        return self.rank == 0


def _env_int(name: str, default: int) -> int:
    try:
        return int(os.environ.get(name, default))
    except ValueError:
        return default


def resolve_device(spec: str, local_rank: int = 0) -> torch.device:
    """``"auto"`` → ``cuda:LOCAL_RANK`` if CUDA is available, else ``cpu``; ``"cuda"`` → ``cuda:LOCAL_RANK``.

    Raises:
        ValueError: an unknown device string, or CUDA requested but not available.
    """
    spec = spec.strip().lower()
    if spec == "auto":
        spec = "cuda" if torch.cuda.is_available() else "cpu"
    try:
        device = torch.device(spec)
    except RuntimeError:
        raise ValueError(f"train.device: unknown device {spec!r}; use auto, cpu, cuda or cuda:N") from None
    if device.type == "cuda":
        if not torch.cuda.is_available():
            raise ValueError("train.device is 'cuda' but CUDA is not available; use --set train.device=auto or cpu")
        if device.index is None:
            device = torch.device("cuda", local_rank % max(torch.cuda.device_count(), 1))
    return device


def init_distributed(device_spec: str = "auto") -> DistInfo:
    """Read torchrun's environment, pick the device and (if ``WORLD_SIZE > 1``) join the process group."""
    world = _env_int("WORLD_SIZE", 1)
    local_rank = _env_int("LOCAL_RANK", 0)
    device = resolve_device(device_spec, local_rank)
    if world <= 1:
        return DistInfo(device=device)
    backend = "nccl" if device.type == "cuda" else "gloo"
    if device.type == "cuda":
        torch.cuda.set_device(device)
    if not dist.is_initialized():
        kwargs: dict[str, Any] = {"backend": backend}
        if device.type == "cuda":
            kwargs["device_id"] = device
        dist.init_process_group(**kwargs)
    return DistInfo(rank=dist.get_rank(), local_rank=local_rank, world_size=dist.get_world_size(),
                    device=device, backend=backend)


def shutdown(info: DistInfo, barrier: bool = True) -> None:
    """Barrier, garbage-collect, destroy the process group (no-op when not distributed).

    Pass ``barrier=False`` when leaving because of an error: the other ranks may be blocked in a collective
    and would never reach the barrier.
    """
    if not (info.distributed and dist.is_available() and dist.is_initialized()):
        return
    try:
        if barrier:
            dist.barrier()
    finally:
        gc.collect()
        dist.destroy_process_group()


def all_reduce_sum(t: torch.Tensor, info: DistInfo) -> torch.Tensor:
    """Sum ``t`` over all ranks in place (returned for chaining)."""
    if info.distributed:
        dist.all_reduce(t, op=dist.ReduceOp.SUM)
    return t


def broadcast_object(obj: Any, info: DistInfo, src: int = 0) -> Any:
    """Rank ``src``'s ``obj`` on every rank."""
    if not info.distributed:
        return obj
    box = [obj]
    dist.broadcast_object_list(box, src=src)
    return box[0]


def all_gather_object(obj: Any, info: DistInfo) -> list[Any]:
    """Every rank's ``obj``, in rank order."""
    if not info.distributed:
        return [obj]
    out: list[Any] = [None] * info.world_size
    dist.all_gather_object(out, obj)
    return out


def params_digest(model: torch.nn.Module) -> str:
    """SHA-256 of every parameter's bytes (name order): equal across ranks iff the replicas agree exactly."""
    h = hashlib.sha256()
    for name, p in model.named_parameters():
        h.update(name.encode())
        h.update(p.detach().cpu().contiguous().view(-1).view(torch.uint8).numpy().tobytes())
    return h.hexdigest()
