"""Run-directory outputs: console/file log, per-epoch metrics (JSONL, CSV, TensorBoard) and the summary table.

Only rank 0 creates a :class:`RunRecorder` with a directory; other ranks get a silent one
(``RunRecorder(None, enabled=False)``), so the engine never branches on the rank when logging.

``metrics.csv`` and ``summary.json`` are replaced atomically and durably (temporary file, ``fsync``, rename);
``metrics.jsonl`` and ``log.txt`` are appended to, and a resumed run rewrites ``metrics.jsonl`` from its
checkpoint's history.
"""

from __future__ import annotations

import csv
import io
import json
import math
import os
import sys
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from .checkpoint import replace_durably

__all__ = ["RunRecorder", "format_table", "format_metrics_line"]

#: Leading CSV columns, in this order; the remaining keys (lr of each group, K of each manifold) follow.
_FIRST = ("epoch", "train_loss", "train_acc", "val_loss", "val_acc", "test_loss", "test_acc")
_LAST = ("throughput", "skipped_steps", "epoch_time")


def _columns(rows: Sequence[dict[str, Any]]) -> list[str]:
    keys: dict[str, None] = {}
    for r in rows:
        keys.update(dict.fromkeys(r))
    first = [k for k in _FIRST if k in keys]
    last = [k for k in _LAST if k in keys]
    middle = [k for k in keys if k not in first and k not in last]
    return first + middle + last


def _fmt(v: Any) -> str:
    if v is None:
        return ""
    if isinstance(v, float):
        return f"{v:.6g}"
    return str(v)


def format_table(rows: Sequence[tuple[str, str]], title: str | None = None) -> str:
    """A two-column box table (plain ASCII) of ``(label, value)`` rows."""
    w0 = max([len(a) for a, _ in rows] + [1])
    w1 = max([len(b) for _, b in rows] + [len(title or "") - w0 - 3, 1])
    line = f"+-{'-' * w0}-+-{'-' * w1}-+"
    out = [line]
    if title:
        out += [f"| {title:<{w0 + w1 + 3}} |", line]
    out += [f"| {a:<{w0}} | {b:<{w1}} |" for a, b in rows]
    out.append(line)
    return "\n".join(out)


def format_metrics_line(row: dict[str, Any], epochs: int) -> str:
    """One console line per epoch."""
    parts = [f"epoch {row['epoch']:>{len(str(epochs))}}/{epochs}", f"loss {row['train_loss']:.4f}",
             f"acc {100 * row['train_acc']:.2f}%"]
    if row.get("val_acc") is not None:
        parts.append(f"val {100 * row['val_acc']:.2f}%")
    if row.get("test_acc") is not None:
        parts.append(f"test {100 * row['test_acc']:.2f}%")
    return format_epoch_tail(parts, row, curvature_digits=3)


def format_epoch_tail(parts: list[str], row: dict[str, Any], curvature_digits: int = 3) -> str:
    """Finish an epoch line: curvatures ``K/<manifold>``, lr, throughput, skipped steps and epoch time."""
    curv = [(k[2:], v) for k, v in row.items() if k.startswith("K/")]
    if curv:
        parts.append("K " + " ".join(f"{n}={v:.{curvature_digits}f}" for n, v in curv))
    parts.append(f"lr {row['lr']:.3g}")
    parts.append(f"{row['throughput']:.0f} img/s")
    if row.get("skipped_steps"):
        parts.append(f"skipped {row['skipped_steps']}")
    parts.append(f"{row['epoch_time']:.1f}s")
    return "  ".join(parts)


class RunRecorder:
    """Writes ``log.txt``, ``metrics.jsonl``, ``metrics.csv`` (and ``tb/`` if TensorBoard is installed).

    Args:
        run_dir: The run directory (``None`` or ``enabled=False``: print nothing, write nothing).
        enabled: ``False`` on non-zero ranks.
        tensorboard: Try to open a ``torch.utils.tensorboard.SummaryWriter`` in ``run_dir/tb``.
        stream: Console stream for log lines (stdout).
    """

    def __init__(self, run_dir: str | os.PathLike[str] | None, enabled: bool = True, tensorboard: bool = True,
                 stream: io.TextIOBase | None = None) -> None:
        self.enabled = enabled and run_dir is not None
        self.run_dir = Path(run_dir) if run_dir is not None else None
        self.stream = stream
        self.rows: list[dict[str, Any]] = []
        self._tb = None
        if self.enabled and tensorboard:
            try:
                from torch.utils.tensorboard import SummaryWriter
            except ImportError:  # tensorboard not installed (optional dependency): say so once, per run
                SummaryWriter = None
                import warnings

                warnings.warn("output.tensorboard is true but tensorboard is not installed: no TensorBoard logs "
                              "(pip install tensorboard, or set output.tensorboard=false)", stacklevel=2)
            if SummaryWriter is not None:
                self._tb = SummaryWriter(log_dir=str(self.run_dir / "tb"))

    # ------------------------------------------------------------------------------------------ log
    def log(self, msg: str) -> None:
        """Print ``msg`` on the console and append it to ``log.txt``."""
        if not self.enabled:
            return
        print(msg, file=self.stream or sys.stdout, flush=True)
        with open(self.run_dir / "log.txt", "a") as fh:
            fh.write(msg + "\n")

    def note(self, msg: str) -> None:
        """Append ``msg`` to ``log.txt`` only (e.g. the error that stopped the run, already on stderr)."""
        if not self.enabled:
            return
        with open(self.run_dir / "log.txt", "a") as fh:
            fh.write(msg + "\n")

    # -------------------------------------------------------------------------------------- metrics
    def set_history(self, rows: Sequence[dict[str, Any]]) -> None:
        """Replace the metrics history (resume) and rewrite the files from it."""
        self.rows = [dict(r) for r in rows]
        self._rewrite()

    def add(self, row: dict[str, Any]) -> None:
        """Record one epoch's metrics."""
        self.rows.append(dict(row))
        if not self.enabled:
            return
        with open(self.run_dir / "metrics.jsonl", "a") as fh:
            fh.write(json.dumps(_jsonable(row)) + "\n")
        self._write_csv()
        if self._tb is not None:
            step = int(row["epoch"])
            for k, v in row.items():
                if k != "epoch" and isinstance(v, (int, float)) and v is not None:
                    self._tb.add_scalar(k, v, step)
            self._tb.flush()

    def _rewrite(self) -> None:
        if not self.enabled:
            return
        with open(self.run_dir / "metrics.jsonl", "w") as fh:
            for r in self.rows:
                fh.write(json.dumps(_jsonable(r)) + "\n")
        self._write_csv()

    def _write_csv(self) -> None:
        cols = _columns(self.rows)
        tmp = self.run_dir / ".metrics.csv.tmp"
        with open(tmp, "w", newline="") as fh:
            w = csv.writer(fh)
            w.writerow(cols)
            for r in self.rows:
                w.writerow([_fmt(r.get(c)) for c in cols])
        replace_durably(tmp, self.run_dir / "metrics.csv")

    def write_json(self, name: str, obj: Any) -> None:
        if not self.enabled:
            return
        tmp = self.run_dir / f".{name}.tmp"
        tmp.write_text(json.dumps(_jsonable(obj), indent=2) + "\n")
        replace_durably(tmp, self.run_dir / name)

    def close(self) -> None:
        if self._tb is not None:
            self._tb.close()
            self._tb = None


def _jsonable(obj: Any) -> Any:
    if isinstance(obj, dict):
        return {str(k): _jsonable(v) for k, v in obj.items()}
    if isinstance(obj, (list, tuple)):
        return [_jsonable(v) for v in obj]
    if isinstance(obj, float) and not math.isfinite(obj):
        return str(obj)
    return obj
