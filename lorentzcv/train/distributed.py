"""Process-group setup for ``torchrun`` (DDP) and the helpers the engine needs.

A run is distributed when ``torchrun`` sets ``WORLD_SIZE > 1`` (with ``RANK``/``LOCAL_RANK``/``MASTER_ADDR``);
multi-node runs use torchrun's usual flags (``--nnodes``, ``--node_rank``, ``--rdzv_endpoint``), nothing
else. The backend follows the device: ``nccl`` on CUDA, ``gloo`` on CPU.

Shutdown: on CPU/gloo a process whose DDP wrapper is still alive at exit aborts in about one run in five.
:func:`shutdown` therefore does ``barrier``, drops the caller's references (the caller must ``del`` its own DDP
model and optimizer first), ``gc.collect()`` and only then ``destroy_process_group()``.

Stalls: the process group is created with a timeout (``train.ddp_timeout_s``, default 300 s) instead of
torch's 30 minutes, so a rank that stalls (a hung data loader, a dead node) ends the job. Every rank reports
its progress (:class:`ProgressBoard`, through the process group's key-value store), so the rank that notices
the timeout can name the rank(s) that fell behind (:func:`timeout_error`). With gloo the timed-out collective
raises and the run stops with that one-line :class:`DDPTimeoutError`; with NCCL, torch's watchdog ends the
process after the same timeout with its own message.
"""

from __future__ import annotations

import gc
import hashlib
import os
from dataclasses import dataclass
from datetime import timedelta
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
    "DDPTimeoutError",
    "ProgressBoard",
    "is_timeout",
    "timeout_error",
]


class DDPTimeoutError(TimeoutError):
    """A collective of a distributed run timed out (``train.ddp_timeout_s``): a rank stalled or died."""


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


def init_distributed(device_spec: str = "auto", timeout_s: float | None = None) -> DistInfo:
    """Read torchrun's environment, pick the device and (if ``WORLD_SIZE > 1``) join the process group.

    Args:
        device_spec: ``train.device`` (see :func:`resolve_device`).
        timeout_s: timeout of every collective of the process group in seconds (``train.ddp_timeout_s``);
            ``None`` keeps torch's default (30 minutes for gloo, 10 for NCCL).
    """
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
        if timeout_s is not None:
            kwargs["timeout"] = timedelta(seconds=float(timeout_s))
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


# ---------------------------------------------------------------------------------------------- stalls
def _default_store() -> Any:
    """The default process group's key-value store, or ``None`` (not initialized, or a torch without it)."""
    if not (dist.is_available() and dist.is_initialized()):
        return None
    try:
        return dist.distributed_c10d._get_default_store()
    except Exception:  # a private helper: without it the timeout message cannot name the stalled rank
        return None


class ProgressBoard:
    """Where each rank of a distributed run is (a counter and a label such as ``"epoch 2 step 5"``).

    Every rank writes its own entry to the process group's store (one small ``set`` per call); after a
    timeout, :meth:`behind` reads all of them to find the ranks that fell behind. A no-op when not distributed.
    """

    PREFIX = "lorentzcv/progress/"

    def __init__(self, info: DistInfo) -> None:
        self.info = info
        self.store = _default_store() if info.distributed else None
        self.count = 0

    def mark(self, label: str) -> None:
        """Record that this rank reached ``label``."""
        if self.store is None:
            return
        self.count += 1
        try:
            self.store.set(f"{self.PREFIX}{self.info.rank}", f"{self.count}|{label}")
        except Exception:  # the store is gone (another rank died): the collectives will report it
            self.store = None

    def read(self) -> dict[int, tuple[int, str]]:
        """``{rank: (counter, label)}`` of every rank that has reported (an empty dict if unknown)."""
        out: dict[int, tuple[int, str]] = {}
        if self.store is None:
            return out
        for r in range(self.info.world_size):
            key = f"{self.PREFIX}{r}"
            try:
                if not self.store.check([key]):
                    continue
                count, _, label = self.store.get(key).decode().partition("|")
                out[r] = (int(count), label)
            except Exception:
                continue
        return out

    def behind(self) -> str | None:
        """A sentence naming the ranks that are behind the furthest one, or ``None`` if that is unknown."""
        seen = self.read()
        if not seen:
            return None
        top = max(c for c, _ in seen.values())
        lead = next(label for c, label in seen.values() if c == top)
        late = [r for r in range(self.info.world_size) if r not in seen or seen[r][0] < top]
        if not late:
            return None
        where = "; ".join(f"rank {r} at '{seen[r][1]}'" if r in seen else f"rank {r} never reported"
                          for r in late)
        return f"stalled: {where} while the others reached '{lead}'"


def is_timeout(exc: BaseException) -> bool:
    """Whether ``exc`` is a timed-out collective (gloo: ``Timed out waiting …``; NCCL/c10d: ``timeout``)."""
    text = str(exc).lower()
    return isinstance(exc, RuntimeError) and ("timed out" in text or "timeout" in text)


def timeout_error(exc: BaseException, info: DistInfo, timeout_s: float,
                  board: ProgressBoard | None = None) -> DDPTimeoutError:
    """The one-line :class:`DDPTimeoutError` for a timed-out collective ``exc`` on this rank, naming the stalled
    rank(s) when ``board`` knows them."""
    who = board.behind() if board is not None else None
    first = str(exc).strip().splitlines()[0][:160] if str(exc).strip() else type(exc).__name__
    return DDPTimeoutError(
        f"distributed run: a collective on rank {info.rank} timed out after train.ddp_timeout_s={timeout_s:g} s "
        f"({who or 'another rank stalled or died'}); the job stops instead of hanging ({first}). Check that "
        "rank's log; raise train.ddp_timeout_s if one step, evaluation or checkpoint legitimately takes longer"
    )
