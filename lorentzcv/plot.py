r"""Pictures of training runs: loss/accuracy curves, the curvature trajectory, Poincaré-disk embeddings.

What ``lorentzcv plot RUN_DIR [RUN_DIR ...] --out DIR`` draws (several runs share each figure, one colour per
run):

- ``curves.png``: losses (``train_loss``, ``val_loss``, ``test_loss``; the Proxy-Anchor/HIER parts of metric
  runs) and accuracies per epoch (``train_acc``/``val_acc``/``test_acc`` of classifiers; Recall@K at the
  smallest K (``R@1``, ``val_R@1``) and ``MAP@R`` of metric runs), read from each run's ``metrics.jsonl`` (:func:`load_history`).
- ``curvature.png``: the sectional curvature ``K = -1/k`` of every manifold per epoch (the ``K/<manifold>``
  columns; one line style per manifold). Skipped when no run has a learnable manifold.
- ``poincare.png`` (metric-learning runs): test embeddings in the Poincaré disk, coloured by class, with a
  second row coloured by superclass where the dataset has one (``.super_targets``) and HIER's LCA proxies as
  black crosses. This needs the run's checkpoint **and** its dataset (``--data ROOT`` if it moved); runs
  without either are skipped with a message. The disk is drawn with unit radius: a Lorentz point ``x`` on
  :math:`\mathbb{H}_k` maps to :math:`p = x_s / (x_0 + \sqrt{k})` (radius :math:`\sqrt{k}`), divided by
  :math:`\sqrt{k}`; HIER's ball points (curvature ``-c``) are multiplied by :math:`\sqrt{c}`; Euclidean
  embeddings on the unit sphere are shown as they are. Embeddings with more than two coordinates are projected
  orthogonally onto their first two (uncentred) principal directions: a 2-d *view* (distances are not
  preserved; points stay inside the disk because the projection does not increase norms).

Python::

    from lorentzcv.plot import plot_runs
    plot_runs(["runs/a", "runs/b"], "figures")          # -> [Path('figures/curves.png'), ...]

Figures are built with ``matplotlib.figure.Figure`` (Agg), so plotting never changes the caller's pyplot
backend or open figures.
"""

from __future__ import annotations

import json
import math
import os
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

__all__ = [
    "load_history", "mean_std", "plot_curves", "plot_curvature", "run_embeddings", "project_2d", "plot_poincare",
    "plot_runs", "RunEmbeddings",
]

PathLike = str | os.PathLike[str]
_LOSS_KEYS = ("train_loss", "val_loss", "test_loss", "loss_pa", "loss_hier")
_STYLES = {"train": "-", "val": "--", "test": ":"}


# ------------------------------------------------------------------------------------------------ history
def _number(v: Any) -> Any:
    """``metrics.jsonl`` stores non-finite floats as strings (``"nan"``, ``"inf"``); read them back as floats."""
    if isinstance(v, str) and v.strip().lower() in ("nan", "inf", "-inf", "+inf", "infinity", "-infinity"):
        return float(v)
    return v


def load_history(run_dir: PathLike) -> list[dict[str, Any]]:
    """The per-epoch rows of a run (its ``metrics.jsonl``, written by :class:`~lorentzcv.train.recorder.RunRecorder`).

    Raises:
        FileNotFoundError: ``run_dir/metrics.jsonl`` does not exist.
        ValueError: a line is not JSON.
    """
    path = Path(run_dir) / "metrics.jsonl"
    if not path.is_file():
        raise FileNotFoundError(f"no metrics.jsonl in '{run_dir}': pass a run directory written by `lorentzcv train`")
    rows = []
    with open(path) as fh:
        for i, line in enumerate(fh, 1):
            if not line.strip():
                continue
            try:
                rows.append({k: _number(v) for k, v in json.loads(line).items()})
            except json.JSONDecodeError as exc:
                raise ValueError(f"{path}:{i} is not valid JSON ({exc.msg})") from None
    return rows


def mean_std(series: Sequence[Sequence[float]]) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Epochs ``1..n``, mean and sample std (0 for one series) over several series, cut to the shortest."""
    n = min(len(s) for s in series)
    a = np.array([list(s)[:n] for s in series], dtype=float)
    return np.arange(1, n + 1), a.mean(0), (a.std(0, ddof=1) if len(a) > 1 else np.zeros(n))


def _values(rows: Sequence[dict[str, Any]], key: str) -> tuple[list[int], list[float]]:
    ep, val = [], []
    for i, r in enumerate(rows):
        v = r.get(key)
        if isinstance(v, (int, float)) and not isinstance(v, bool):
            ep.append(int(r.get("epoch", i + 1)))
            val.append(float(v))
    return ep, val


def _figure(ncols: int, nrows: int = 1, size: tuple[float, float] = (5.2, 4.0)):
    from matplotlib.figure import Figure

    fig = Figure(figsize=(size[0] * ncols, size[1] * nrows))
    axes = fig.subplots(nrows, ncols, squeeze=False)
    return fig, axes


def _save(fig, path: PathLike) -> Path:
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.tight_layout()
    fig.savefig(path, dpi=100)
    return path


def _labels(run_dirs: Sequence[PathLike]) -> list[str]:
    """Short, distinct labels: the directory names (with their parent when two names collide)."""
    paths = [Path(p) for p in run_dirs]
    names = [p.name or str(p) for p in paths]
    return [f"{p.parent.name}/{n}" if names.count(n) > 1 else n for p, n in zip(paths, names)]


def _legend(ax, **kw) -> None:
    if ax.get_legend_handles_labels()[0]:
        ax.legend(**kw)


def _split_style(key: str) -> str:
    return _STYLES.get(key.split("_")[0], "-.")


# ------------------------------------------------------------------------------------------------ curves
def plot_curves(run_dirs: Sequence[PathLike], path: PathLike,
                histories: Sequence[Sequence[dict[str, Any]]] | None = None) -> Path | None:
    """Loss and accuracy/retrieval curves of one or several runs on one figure (module docstring).

    Args:
        run_dirs: run directories (labels; histories are read from them unless given).
        path: the PNG to write.
        histories: the runs' rows, if already loaded.

    Returns:
        ``path``, or ``None`` when no run has any epoch.
    """
    from matplotlib.ticker import MaxNLocator

    hist = list(histories) if histories is not None else [load_history(d) for d in run_dirs]
    if not any(hist):
        return None
    fig, axes = _figure(2)
    ax_loss, ax_acc = axes[0]
    acc_label = set()
    for i, (label, rows) in enumerate(zip(_labels(run_dirs), hist)):
        color = f"C{i % 10}"
        keys = list(dict.fromkeys(k for r in rows for k in r))
        for key in (k for k in _LOSS_KEYS if k in keys):
            ep, v = _values(rows, key)
            ax_loss.plot(ep, v, color=color, ls=_split_style(key), marker="o", ms=2.5, label=f"{label}: {key}")
        recall = sorted((int(k[2:]), k) for k in keys if k.startswith("R@") and k[2:].isdigit())
        r1 = recall[0][1] if recall else None  # Recall@K at the smallest K (R@1), not every K
        for key in keys:
            base = key.split("_", 1)[-1] if key.startswith(("val_", "test_", "train_")) else key
            if not (base == "acc" or base == r1 or base == "MAP@R"):
                continue
            ep, v = _values(rows, key)
            if not v:
                continue
            ls = _split_style(key if "_" in key else "test_" + key)
            ax_acc.plot(ep, [100 * x for x in v], color=color, ls=ls, marker="s" if base == "MAP@R" else "o",
                        ms=2.5, label=f"{label}: {key}")
            acc_label.add("accuracy" if base == "acc" else "retrieval")
    positive = all(v > 0 for r in hist for row in r for k in _LOSS_KEYS
                   if isinstance(v := row.get(k), (int, float)) and math.isfinite(v))
    ax_loss.set(xlabel="epoch", ylabel="loss", title="loss", yscale="log" if positive else "linear")
    ax_acc.set(xlabel="epoch", ylabel=" / ".join(sorted(acc_label)) + " (%)" if acc_label else "%",
               title="accuracy (train/val/test); Recall@1 and MAP@R (■)")
    for ax in axes[0]:
        ax.xaxis.set_major_locator(MaxNLocator(integer=True))
        ax.grid(alpha=0.3)
        _legend(ax, fontsize=7)
    return _save(fig, path)


def plot_curvature(run_dirs: Sequence[PathLike], path: PathLike,
                   histories: Sequence[Sequence[dict[str, Any]]] | None = None) -> Path | None:
    """The curvature ``K = -1/k`` of every manifold per epoch, one colour per run, one line style per manifold.

    Returns:
        ``path``, or ``None`` when no run logged a curvature (Euclidean runs).
    """
    from matplotlib.ticker import MaxNLocator

    hist = list(histories) if histories is not None else [load_history(d) for d in run_dirs]
    names = sorted({k[2:] for rows in hist for r in rows for k in r if k.startswith("K/")})
    if not names:
        return None
    styles = ["-", "--", ":", "-."]
    fig, axes = _figure(1, size=(7.5, 4.5))
    ax = axes[0, 0]
    for i, (label, rows) in enumerate(zip(_labels(run_dirs), hist)):
        for j, name in enumerate(names):
            ep, v = _values(rows, f"K/{name}")
            if v:
                ax.plot(ep, v, color=f"C{i % 10}", ls=styles[j % len(styles)], marker="o", ms=2.5,
                        label=f"{label}: {name}")
    ax.set(xlabel="epoch", ylabel="sectional curvature K = −1/k", title="learned curvature per manifold")
    ax.xaxis.set_major_locator(MaxNLocator(integer=True))
    ax.grid(alpha=0.3)
    _legend(ax, fontsize=7)
    return _save(fig, path)


# -------------------------------------------------------------------------------------------- embeddings
@dataclass
class RunEmbeddings:
    """Embeddings of a metric-learning run, in the unit disk/ball (module docstring).

    Attributes:
        points: ``(N, D)`` coordinates with norm < 1 (unit ball; unit sphere for Euclidean heads).
        labels: ``(N,)`` class labels; ``class_names``: label → name (empty if the dataset has none).
        super_labels: ``(N,)`` superclass labels, or ``None``; ``super_names``: label → name.
        lcas: ``(M, D)`` LCA proxies in the same coordinates, or ``None``.
        curvature: the ball's curvature (``-1/k`` Lorentz, ``-c`` Poincaré), ``None`` for Euclidean heads.
        head: ``"lorentz"``, ``"poincare"`` or ``"euclidean"``.
    """

    points: np.ndarray
    labels: np.ndarray
    class_names: dict[int, str]
    super_labels: np.ndarray | None
    super_names: dict[int, str]
    lcas: np.ndarray | None
    curvature: float | None
    head: str


def _spread(n: int, limit: int | None) -> list[int]:
    if limit is None or n <= limit:
        return list(range(n))
    return sorted({int(i) for i in np.linspace(0, n - 1, limit)})


def run_embeddings(run_dir: PathLike, split: str = "test", limit: int | None = 2000, data_root: str | None = None,
                   device: str = "cpu", checkpoint: str = "best.pt", spread: bool = True) -> RunEmbeddings:
    """Embed ``split`` of a finished metric-learning run with its checkpoint, in unit-ball coordinates.

    Args:
        run_dir: the run directory (or a checkpoint file).
        split: ``"test"`` (the retrieval split, unseen classes; In-Shop: its query split) or ``"train"`` (the
            training classes, evaluation transform).
        limit: at most this many samples (``None``: all), spread evenly over the split (``spread=True``) or
            the first ones.
        data_root: the dataset root, if it is not the one in the run's config.
        device: ``"cpu"``, ``"cuda"``, ``"auto"`` …
        checkpoint: the file preferred inside a run directory (``"best.pt"``, else ``"last.pt"``).

    Raises:
        ValueError: not a metric-learning run.
        FileNotFoundError: the dataset is not available (the message says where it was looked for).
    """
    import torch
    from torch.utils.data import DataLoader

    from .geometry import math as lmath
    from .train import config_from_dict, load_checkpoint
    from .train.checkpoint import find_checkpoint
    from .train.config import MetricRunConfig
    from .train.distributed import resolve_device
    from .train.metric import build_metric_datasets, build_metric_model, compute_embeddings

    path = find_checkpoint(run_dir, checkpoint)
    state = load_checkpoint(path)
    cfg = config_from_dict(state["config"])
    if not isinstance(cfg, MetricRunConfig):
        raise ValueError(f"'{run_dir}' is not a metric-learning run (no embeddings to draw)")
    if data_root is not None:
        from dataclasses import replace

        cfg = replace(cfg, data=replace(cfg.data, root=data_root))
    data = build_metric_datasets(cfg, splits=("train",) if split == "train" else ("eval",), augment_train=False)
    ds = data["train"] if split == "train" else next(iter(data["eval"].values()))
    meta = state.get("meta", {})
    model = build_metric_model(cfg, meta.get("in_chans", data["in_chans"]), meta.get("img_size", data["img_size"]),
                               pretrained=False)
    model.load_state_dict(state["model"])
    dev = resolve_device(device)
    model.to(dev)
    idx = _spread(len(ds), limit) if spread else list(range(min(len(ds), limit or len(ds))))
    sub = ds.subset(idx) if hasattr(ds, "subset") else torch.utils.data.Subset(ds, idx)
    z, y = compute_embeddings(model, DataLoader(sub, batch_size=256), dev)
    z = z.detach().cpu().double()
    lcas = state.get("objective", {}).get("hier_loss.lcas")
    lcas = lcas.detach().cpu().double() if isinstance(lcas, torch.Tensor) else None
    head = cfg.model.head
    if head == "lorentz":
        k = model.manifold.k.detach().cpu().double()
        ball = lmath.to_poincare(z, k) / k.sqrt()
        lcas = None if lcas is None else lmath.to_poincare(lmath.projx(lcas, k), k) / k.sqrt()
        curv = -1.0 / float(k)
    elif head == "poincare":
        from .metric.poincare import ToPoincare

        c = float(model.head.to_poincare.c)
        ball = z * math.sqrt(c)
        lcas = None if lcas is None else ToPoincare(c=c, clip_r=cfg.model.clip_r)(lcas.float()).double() * math.sqrt(c)
        curv = -c
    else:
        ball, lcas, curv = z, None, None
    base = getattr(sub, "dataset", sub)
    classes = getattr(base, "classes", None) or []
    supers = getattr(sub, "super_targets", None)
    super_names = getattr(base, "super_classes", None) or []
    return RunEmbeddings(
        points=ball.numpy(), labels=y.cpu().numpy(), class_names=dict(enumerate(classes)),
        super_labels=None if supers is None else np.asarray(supers), super_names=dict(enumerate(super_names)),
        lcas=None if lcas is None else lcas.detach().numpy(), curvature=curv, head=head,
    )


def project_2d(points: np.ndarray, *others: np.ndarray | None) -> tuple[np.ndarray | None, ...]:
    """Orthogonal projection of ``points`` (and ``others``, same basis) onto the first two uncentred principal
    directions of ``points``; 2-d inputs are returned unchanged."""
    if points.shape[1] <= 2:
        return (points, *others)
    _, _, vt = np.linalg.svd(points, full_matrices=False)
    basis = vt[:2].T
    return (points @ basis, *(None if o is None else o @ basis for o in others))


def _task(run_dir: PathLike) -> str | None:
    """``"metric"`` or ``"classification"`` from the run's ``config.yaml`` (``None`` if it cannot be read)."""
    import yaml

    try:
        cfg = yaml.safe_load((Path(run_dir) / "config.yaml").read_text())
    except (OSError, yaml.YAMLError):
        return None
    return cfg.get("task", "classification") if isinstance(cfg, dict) else None


def _scatter(ax, pts: np.ndarray, labels: np.ndarray, names: dict[int, str], lcas: np.ndarray | None,
             title: str) -> None:
    from matplotlib import colormaps
    from matplotlib.patches import Circle

    classes = sorted(set(labels.tolist()))
    cmap = colormaps["tab10" if len(classes) <= 10 else "tab20" if len(classes) <= 20 else "turbo"]
    ax.add_patch(Circle((0, 0), 1.0, fill=False, color="0.3", lw=1.0))
    for j, c in enumerate(classes):
        sel = labels == c
        color = cmap(j % cmap.N) if len(classes) <= 20 else cmap(j / max(len(classes) - 1, 1))
        ax.scatter(pts[sel, 0], pts[sel, 1], s=4, alpha=0.5, color=color,
                   label=f"{c}: {names[c]}" if c in names else str(c))
    if lcas is not None:
        ax.scatter(lcas[:, 0], lcas[:, 1], marker="x", s=18, color="k", lw=0.8, label="LCA proxies")
    ax.set_title(title, fontsize=9)
    ax.set(xlim=(-1.05, 1.05), ylim=(-1.05, 1.05), xticks=[], yticks=[])
    ax.set_aspect("equal")
    if len(classes) <= 12:
        ax.legend(loc="upper left", fontsize=6, markerscale=2.5, framealpha=0.8)


def plot_poincare(run_dirs: Sequence[PathLike], path: PathLike, *, split: str = "test", limit: int | None = 2000,
                  data_root: str | None = None, device: str = "cpu",
                  log: Callable[[str], None] | None = None) -> Path | None:
    """Poincaré-disk pictures of the metric-learning runs among ``run_dirs`` (one column per run; a second row
    by superclass when the data has superclasses). Runs that are not metric runs, have no checkpoint, or whose
    dataset is not available are skipped and reported through ``log``.

    Returns:
        ``path``, or ``None`` when no run could be drawn.
    """
    from .train.checkpoint import CheckpointError

    log = log or (lambda msg: None)
    drawn: list[tuple[str, RunEmbeddings]] = []
    for label, run in zip(_labels(run_dirs), run_dirs):
        if _task(run) == "classification":
            continue  # classifiers have no embedding space to draw
        try:
            drawn.append((label, run_embeddings(run, split=split, limit=limit, data_root=data_root, device=device)))
        except (CheckpointError, FileNotFoundError, ValueError, KeyError) as exc:
            first = str(exc.args[0] if isinstance(exc, KeyError) and exc.args else exc).strip().splitlines()
            log(f"no Poincaré disk for {run}: {first[0] if first else type(exc).__name__}")
    if not drawn:
        return None
    with_super = any(e.super_labels is not None for _, e in drawn)
    fig, axes = _figure(len(drawn), 2 if with_super else 1, size=(4.6, 4.8))
    for j, (label, e) in enumerate(drawn):
        pts, lcas = project_2d(e.points, e.lcas)
        what = "unit disk" if e.curvature is None else f"K = {e.curvature:.4g}"
        view = "" if e.points.shape[1] <= 2 else f", {e.points.shape[1]}-d projected"
        geometry = {"lorentz": "Lorentz", "poincare": "Poincaré"}.get(e.head, "Euclidean (unit sphere)")
        _scatter(axes[0, j], pts, e.labels, e.class_names, lcas, f"{label}\n{geometry}, {what}{view}: classes")
        if with_super:
            ax = axes[1, j]
            if e.super_labels is None:
                ax.set_axis_off()
                ax.set_title(f"{label}: no superclasses", fontsize=9)
            else:
                _scatter(ax, pts, e.super_labels, e.super_names, lcas, f"{label}: superclasses")
    return _save(fig, path)


# ------------------------------------------------------------------------------------------------ all
def plot_runs(run_dirs: Sequence[PathLike], out: PathLike, *, embeddings: bool = True, split: str = "test",
              limit: int | None = 2000, data_root: str | None = None, device: str = "cpu",
              log: Callable[[str], None] | None = None) -> list[Path]:
    """Write ``curves.png``, ``curvature.png`` and (metric runs) ``poincare.png`` into ``out``; see the module
    docstring. Returns the files written; ``log`` receives one line per skipped figure or run."""
    log = log or (lambda msg: None)
    if not run_dirs:
        raise ValueError("pass at least one run directory")
    hist = [load_history(d) for d in run_dirs]
    out = Path(out)
    written = []
    for name, fn in (("curves.png", plot_curves), ("curvature.png", plot_curvature)):
        p = fn(run_dirs, out / name, histories=hist)
        if p is None:
            log(f"{name}: nothing to draw" + (" (no run logged a curvature: Euclidean models)"
                                              if name == "curvature.png" else " (no epochs yet)"))
        else:
            written.append(p)
    if embeddings:
        p = plot_poincare(run_dirs, out / "poincare.png", split=split, limit=limit, data_root=data_root,
                          device=device, log=log)
        if p is not None:
            written.append(p)
    return written
