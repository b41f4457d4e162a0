"""Helpers shared by the report scripts (``classification_results.py``, ``metric_results.py``)."""

from __future__ import annotations

import statistics
import subprocess
from collections.abc import Sequence
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parents[1]


def mean_std(values: Sequence[float | None]) -> dict[str, Any]:
    """``{"mean", "std", "n"}`` of the non-``None`` values, with the sample standard deviation (0 for one value);
    NaNs propagate (a diverged run shows as NaN instead of vanishing from the mean)."""
    vals = [float(v) for v in values if v is not None]
    if not vals:
        return {"mean": None, "std": None, "n": 0}
    std = statistics.stdev(vals) if len(vals) > 1 else 0.0
    return {"mean": statistics.fmean(vals), "std": std, "n": len(vals)}


def pm(ms: dict[str, Any] | None, scale: float = 1.0, digits: int = 2) -> str:
    """``"mean ± std"`` of a :func:`mean_std` result times ``scale`` (``–`` when there is none)."""
    if not ms or ms["mean"] is None:
        return "–"
    return f"{scale * ms['mean']:.{digits}f} ± {scale * ms['std']:.{digits}f}"


def code_version() -> dict[str, Any]:
    """The git commit of the checkout and whether ``lorentzcv/`` differs from it (results depend on both)."""

    def git(*cmd: str) -> str | None:
        try:
            return subprocess.run(["git", *cmd], cwd=REPO, capture_output=True, text=True, timeout=10,
                                  check=True).stdout.strip()
        except (OSError, subprocess.SubprocessError):
            return None

    status = git("status", "--porcelain", "--", "lorentzcv")
    return {"commit": git("rev-parse", "HEAD"), "library_modified": None if status is None else bool(status)}
