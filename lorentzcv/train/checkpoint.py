"""Atomic, ``weights_only``-loadable checkpoints and the RNG state needed for an exact resume.

A checkpoint is a dict of tensors and plain Python containers/numbers/strings only, so it loads with
``torch.load(path, weights_only=True)`` (no pickled classes, no code execution). It is written to a
temporary file in the same directory and moved into place with ``os.replace``, so a crash while saving
never leaves a truncated ``last.pt``.
"""

from __future__ import annotations

import os
import random
from pathlib import Path
from typing import Any

import numpy as np
import torch

__all__ = [
    "CheckpointError",
    "save_checkpoint",
    "load_checkpoint",
    "capture_rng_state",
    "restore_rng_state",
    "find_checkpoint",
    "CHECKPOINT_FORMAT",
]

#: Version tag stored in every checkpoint (``"format"``).
CHECKPOINT_FORMAT = "lorentzcv-train-v1"


class CheckpointError(ValueError):
    """A checkpoint file or run directory that cannot be used (missing, corrupt, not a lorentzcv checkpoint)."""


def save_checkpoint(state: dict[str, Any], path: str | os.PathLike[str]) -> Path:
    """Write ``state`` to ``path`` atomically (temporary file in the same directory + ``os.replace``)."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.tmp{os.getpid()}")
    try:
        torch.save(state, tmp)
        os.replace(tmp, path)
    finally:
        if tmp.exists():
            tmp.unlink()
    return path


def find_checkpoint(path: str | os.PathLike[str], prefer: str = "last.pt") -> Path:
    """Resolve a checkpoint file from a file or a run directory (``prefer`` inside it).

    Raises:
        CheckpointError: nothing usable at ``path``.
    """
    p = Path(path)
    if p.is_dir():
        for name in (prefer, "last.pt", "best.pt"):
            if (p / name).is_file():
                return p / name
        raise CheckpointError(
            f"no checkpoint in run directory '{p}' (expected last.pt or best.pt); pass a run directory written "
            "by `lorentzcv train` or a .pt file"
        )
    if not p.is_file():
        raise CheckpointError(f"checkpoint '{p}' does not exist; pass a run directory or its last.pt/best.pt")
    return p


def load_checkpoint(path: str | os.PathLike[str], map_location: Any = "cpu") -> dict[str, Any]:
    """Load a training checkpoint with ``weights_only=True`` and check that it is a lorentzcv checkpoint.

    Raises:
        CheckpointError: unreadable/corrupt file or one not written by :mod:`lorentzcv.train`.
    """
    p = find_checkpoint(path)
    try:
        state = torch.load(p, map_location=map_location, weights_only=True)
    except Exception as exc:  # torch raises RuntimeError/UnpicklingError/EOFError/... for bad files
        reason = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
        raise CheckpointError(
            f"cannot read checkpoint '{p}' ({type(exc).__name__}: {reason[:160]}); the file is corrupt or not a "
            "lorentzcv checkpoint: use another one (last.pt/best.pt of a finished epoch) or retrain"
        ) from None
    if not isinstance(state, dict) or state.get("format") != CHECKPOINT_FORMAT:
        raise CheckpointError(
            f"'{p}' is not a lorentzcv training checkpoint (no format tag {CHECKPOINT_FORMAT!r}); pass last.pt or "
            "best.pt from a run directory written by `lorentzcv train`"
        )
    return state


# ------------------------------------------------------------------------------------------------ RNG
def capture_rng_state() -> dict[str, Any]:
    """The torch (CPU and every CUDA device), numpy and Python RNG states, as tensors and plain values."""
    np_state = np.random.get_state()
    py_version, py_internal, py_gauss = random.getstate()
    state: dict[str, Any] = {
        "torch": torch.get_rng_state(),
        "numpy": {
            "name": str(np_state[0]),
            "keys": torch.from_numpy(np.asarray(np_state[1], dtype=np.int64)),
            "pos": int(np_state[2]),
            "has_gauss": int(np_state[3]),
            "cached_gaussian": float(np_state[4]),
        },
        "python": {"version": int(py_version), "internal": list(py_internal), "gauss": py_gauss},
    }
    if torch.cuda.is_available() and torch.cuda.is_initialized():
        state["cuda"] = torch.cuda.get_rng_state_all()
    return state


def restore_rng_state(state: dict[str, Any]) -> None:
    """Restore what :func:`capture_rng_state` captured."""
    torch.set_rng_state(state["torch"].cpu())
    n = state["numpy"]
    np.random.set_state(
        (n["name"], n["keys"].numpy().astype(np.uint32), n["pos"], n["has_gauss"], n["cached_gaussian"])
    )
    py = state["python"]
    random.setstate((py["version"], tuple(py["internal"]), py["gauss"]))
    if "cuda" in state and torch.cuda.is_available():
        cuda_states = [s.cpu() for s in state["cuda"]]
        if len(cuda_states) == torch.cuda.device_count():
            torch.cuda.set_rng_state_all(cuda_states)
