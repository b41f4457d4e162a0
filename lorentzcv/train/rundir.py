"""The run directory: its name, what a new run may overwrite, what a resume may change, and the config a run
records (with the data root it read) or is resumed with."""

from __future__ import annotations

import os
import shutil
from collections.abc import Sequence
from dataclasses import replace
from datetime import datetime
from pathlib import Path
from typing import Any

from .checkpoint import find_checkpoint, load_checkpoint, remove_orphan_temp_files
from .config import AnyConfig, apply_overrides, config_from_dict

__all__ = ["RUN_FILES", "new_run_dir", "occupied_error", "clear_run_files", "resume_changes", "with_resolved_root",
           "resume_config"]


def new_run_dir(cfg: AnyConfig) -> Path:
    """``output.dir``, else a fresh ``<output.root>/<run name>-<timestamp>`` (:meth:`OutputConfig.run_name
    <lorentzcv.train.schema.OutputConfig.run_name>`; ``-1``, ``-2``, … appended if it exists)."""
    if cfg.output.dir:
        return Path(cfg.output.dir)
    name = cfg.output.run_name(cfg.data.name, cfg.model_label())
    stamp = datetime.now().strftime("%Y%m%d-%H%M%S")
    base = Path(cfg.output.root) / f"{name}-{stamp}"
    path, i = base, 1
    while path.exists():
        path = base.with_name(f"{base.name}-{i}")
        i += 1
    return path


#: Files and folders a run writes into its directory (what ``output.overwrite=true`` removes).
RUN_FILES = ("config.yaml", "log.txt", "metrics.jsonl", "metrics.csv", "summary.json", "last.pt", "best.pt", "tb")


#: Config keys that do not change the training trajectory (a resume may change them and stay exact).
_RESUME_FREE = ("output.", "data.root", "data.download", "data.num_workers", "data.eval_batch_size",
                "data.eval_subset", "train.device", "train.eval_test_every", "train.threads",
                "train.max_skipped_steps", "train.ddp_timeout_s", "metric.eval_chunk_size", "metric.recall_ks",
                "metric.map_at_r")


def occupied_error(run_dir: Path) -> str | None:
    """Why a new run may not write into ``run_dir`` (``None`` when it is absent or an empty directory)."""
    if not run_dir.exists():
        return None
    if not run_dir.is_dir():
        return f"output.dir '{run_dir}' is a file, not a directory; pick another output.dir"
    names = sorted(p.name for p in run_dir.iterdir())
    if not names:
        return None
    shown = ", ".join(names[:5]) + (", ..." if len(names) > 5 else "")
    return (f"output.dir '{run_dir}' is not empty ({shown}); continue that run with `lorentzcv train --resume "
            f"{run_dir}`, replace it with --set output.overwrite=true, or pick another output.dir")


def clear_run_files(run_dir: Path) -> None:
    """Remove the files an earlier run wrote into ``run_dir`` (:data:`RUN_FILES` and temporary files)."""
    for name in RUN_FILES:
        p = run_dir / name
        if p.is_dir() and not p.is_symlink():
            shutil.rmtree(p)
        elif p.exists() or p.is_symlink():
            p.unlink()
    remove_orphan_temp_files(run_dir)


def _flatten(d: dict[str, Any], prefix: str = "") -> dict[str, Any]:
    out: dict[str, Any] = {}
    for k, v in d.items():
        key = f"{prefix}{k}"
        if isinstance(v, dict) and v:
            out.update(_flatten(v, key + "."))
        else:
            out[key] = v
    return out


def resume_changes(old_config: dict[str, Any], new_config: dict[str, Any], old_world: int | None,
                   new_world: int) -> list[str]:
    """The settings that differ between a checkpoint's config and the resumed run's and shape the training
    trajectory (batch size, optimizer, schedule, epochs, seed, world size, …), as ``"key a -> b"`` strings.

    Keys that only affect evaluation, logging or the machine (``output.*``, ``data.root``, ``train.device``,
    ``train.threads``, ...) are not listed: changing them keeps a resume exact.
    """
    a, b = _flatten(old_config), _flatten(new_config)
    out = []
    for key in sorted(set(a) | set(b)):
        if key.startswith(_RESUME_FREE) or a.get(key) == b.get(key):
            continue
        out.append(f"{key} {a.get(key)!r} -> {b.get(key)!r}")
    if old_world is not None and int(old_world) != int(new_world):
        out.append(f"world size {int(old_world)} -> {int(new_world)}")
    return out


def with_resolved_root(cfg: AnyConfig) -> AnyConfig:
    """``cfg`` with ``data.root`` set to the root its dataset is read from (:func:`lorentzcv.data.resolve_root`:
    the given root, else the dataset's default root such as Debian's, else ``$LORENTZCV_DATA``), as an absolute
    path, so that a run's ``config.yaml`` and checkpoints can be evaluated later from anywhere; embedded datasets
    without a given root keep ``None``."""
    from ..data import get_dataset_info, resolve_root

    root = resolve_root(get_dataset_info(cfg.data.name), cfg.data.root)
    if root is None:
        return cfg
    return replace(cfg, data=replace(cfg.data, root=str(Path(root).expanduser().resolve())))


def resume_config(run: str | os.PathLike[str], overrides: Sequence[str] = ()) -> AnyConfig:
    """The config a run was started with (from its ``last.pt``), with ``--set`` overrides applied."""
    state = load_checkpoint(find_checkpoint(run, "last.pt"))
    return config_from_dict(apply_overrides(state["config"], overrides))
