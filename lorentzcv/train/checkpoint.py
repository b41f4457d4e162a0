"""Atomic, durable, ``weights_only``-loadable checkpoints and the RNG state needed for an exact resume.

A checkpoint is a dict of tensors and plain Python containers/numbers/strings only, so it loads with
``torch.load(path, weights_only=True)`` (no pickled classes, no code execution: a file holding anything else
is refused with a one-line :class:`CheckpointError`). It is written to a temporary file in the same
directory (``.NAME.tmpPID``), flushed and ``fsync``'d, moved into place with ``os.replace`` and the directory
is ``fsync``'d after the rename (:func:`replace_durably`): a crash or power loss while saving leaves either
the previous file or the new one, never a truncated one. Temporary files that a killed process could not
remove are deleted by :func:`remove_orphan_temp_files` when a run directory is opened again.
"""

from __future__ import annotations

import contextlib
import os
import random
import re
from collections.abc import Sequence
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
    "replace_durably",
    "remove_orphan_temp_files",
    "CHECKPOINT_FORMAT",
    "TRAINING_KEYS",
    "RESUME_KEYS",
]

#: Version tag stored in every checkpoint (``"format"``).
CHECKPOINT_FORMAT = "lorentzcv-train-v1"

#: Entries every training checkpoint has (what evaluating it needs).
TRAINING_KEYS = ("config", "epoch", "model")

#: Entries a checkpoint needs to be resumed from.
RESUME_KEYS = (*TRAINING_KEYS, "optimizer", "scheduler", "rng")

#: Names of the temporary files this package writes next to a run's files (``.last.pt.tmp1234``,
#: ``.metrics.csv.tmp``): hidden, the target's name, ``.tmp`` and an optional process id.
_TEMP_RE = re.compile(r"^\..+\.tmp\d*$")


class CheckpointError(ValueError):
    """A checkpoint file or run directory that cannot be used (missing, corrupt, not a lorentzcv checkpoint)."""


def _fsync_dir(directory: Path) -> None:
    """``fsync`` a directory so a rename in it survives a power loss (a no-op where directories cannot be
    opened, e.g. on Windows)."""
    try:
        fd = os.open(directory, os.O_RDONLY)
    except OSError:
        return
    try:
        os.fsync(fd)
    except OSError:  # some filesystems refuse fsync on directories; the rename itself is still atomic
        pass
    finally:
        os.close(fd)


def replace_durably(tmp: str | os.PathLike[str], path: str | os.PathLike[str]) -> None:
    """``os.replace(tmp, path)`` after ``fsync``-ing ``tmp``, then ``fsync`` the directory.

    ``tmp`` must be a complete file in ``path``'s directory; on an error it is removed and ``path`` is left as it
    was.
    """
    tmp, path = Path(tmp), Path(path)
    try:
        with open(tmp, "rb+") as fh:
            os.fsync(fh.fileno())
        os.replace(tmp, path)
    finally:
        with contextlib.suppress(FileNotFoundError):
            tmp.unlink()
    _fsync_dir(path.parent)


def save_checkpoint(state: dict[str, Any], path: str | os.PathLike[str]) -> Path:
    """Write ``state`` to ``path`` atomically and durably.

    The state goes to ``.NAME.tmpPID`` in the same directory, which is flushed, ``fsync``'d and renamed over
    ``path`` (``os.replace``); the directory is ``fsync``'d after the rename. If anything fails (disk full, an
    interrupt) the temporary file is removed and ``path`` keeps its previous content.
    """
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.tmp{os.getpid()}")
    try:
        with open(tmp, "wb") as fh:
            torch.save(state, fh)
    except BaseException:
        with contextlib.suppress(FileNotFoundError):
            tmp.unlink()
        raise
    replace_durably(tmp, path)  # fsync, rename, fsync the directory; removes tmp on an error
    return path


def remove_orphan_temp_files(directory: str | os.PathLike[str]) -> list[Path]:
    """Delete the temporary files a killed process left in ``directory`` (``.last.pt.tmp1234``, …); returns them.

    Only hidden files named like this package's temporary files (``.NAME.tmp`` plus an optional process id)
    are removed. Call it only where no other process is writing to ``directory``.
    """
    d = Path(directory)
    removed = []
    if d.is_dir():
        for p in sorted(d.iterdir()):
            if p.is_file() and _TEMP_RE.match(p.name):
                with contextlib.suppress(FileNotFoundError):
                    p.unlink()
                    removed.append(p)
    return removed


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


def load_checkpoint(path: str | os.PathLike[str], map_location: Any = "cpu",
                    required: Sequence[str] = TRAINING_KEYS) -> dict[str, Any]:
    """Load a training checkpoint with ``weights_only=True`` and check that it is a lorentzcv checkpoint.

    Args:
        path: a checkpoint file or a run directory (its ``last.pt``).
        map_location: passed to ``torch.load``.
        required: entries the checkpoint must hold besides the format tag (default :data:`TRAINING_KEYS`;
            :data:`RESUME_KEYS` to resume; ``()`` for any tagged file).

    Raises:
        CheckpointError: unreadable/corrupt file, one holding anything but tensors and plain containers (a
            pickled class or function is never unpickled), one not written by :mod:`lorentzcv.train`, or one
            missing a ``required`` entry.
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
    missing = [k for k in required if k not in state]
    if missing:
        raise CheckpointError(
            f"checkpoint '{p}' is incomplete: it has no {', '.join(repr(k) for k in missing)} entry; it was not "
            "written by a training run of this version (use last.pt/best.pt of a run directory, or retrain)"
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
