"""Figures of ``docs/results.md`` from the JSON written by ``scripts/classification_results.py``.

Writes (default into ``docs/img/``):

- ``curvature_trajectory.png``: learned curvature K = -1/k per epoch of HECNN+ (encoder and decoder manifold,
  every seed; epoch 0 is the initial K = -1), and the mean trajectories of curvature-aware vs naive learning
  at curvature lr 0.05 and 0.5.
- ``accuracy_curves.png``: test accuracy per epoch (mean ± std over seeds) of the four models, test accuracy
  per epoch of HECNN+ with learned vs fixed curvature (every seed), and the training loss per epoch of the
  bf16 / fp16 / fp32 runs with and without rescaling (every seed).

Per-epoch values come from each run's cached history in the JSON; when a run has none, its
``metrics.jsonl`` (``run_dir`` in the JSON) is read instead.

Usage::

    python scripts/plot_classification.py [--results docs/data/classification_results.json] [--out docs/img]
"""

from __future__ import annotations

import argparse
import json
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from lorentzcv.plot import load_history, mean_std

REPO = Path(__file__).resolve().parents[1]
DEFAULT_RESULTS = REPO / "docs" / "data" / "classification_results.json"
DEFAULT_OUT = REPO / "docs" / "img"

MODEL_ROWS = (("resnet18", "ResNet (Euclidean)"), ("hybrid", "Hybrid"), ("hcnn", "HCNN"), ("hecnn", "HECNN+"))
CURV_ROWS = (("hecnn", "aware, lr_k 0.05", "C0", "-"), ("hecnn_naive", "naive, lr_k 0.05", "C0", ":"),
             ("hecnn_clr0.5", "aware, lr_k 0.5", "C3", "-"), ("hecnn_clr0.5_naive", "naive, lr_k 0.5", "C3", ":"))
CONV_ROWS = (("hecnn", "learned K (learn_k=true)", "C0"), ("hecnn_fixed_k", "fixed K = -1 (learn_k=false)", "C3"))
PRECISION_ROWS = (("bf16_rescale", "bf16, rescaling", "C0", "-"), ("bf16_norescale", "bf16, no rescaling", "C3", "-"),
                  ("fp16_rescale", "fp16, rescaling", "C0", "--"),
                  ("fp16_norescale", "fp16, no rescaling", "C3", "--"),
                  ("fp32_rescale", "fp32, rescaling", "C0", ":"), ("fp32_norescale", "fp32, no rescaling", "C3", ":"))


def history(rec: dict[str, Any]) -> list[dict[str, Any]]:
    """Per-epoch rows of one run: the cached history, else the run's ``metrics.jsonl``."""
    if rec.get("history"):
        return rec["history"]
    return load_history(REPO / rec["run_dir"])


def runs_of(results: dict[str, Any], variant: str) -> list[dict[str, Any]]:
    """The finished runs of a variant (every seed), in seed order."""
    seeds = results.get("meta", {}).get("seeds")
    keys = [k for k in results["runs"] if k.split("/")[0] == variant]
    if seeds is not None:
        keys = [k for k in keys if int(k.split("seed")[-1]) in seeds]
    keys.sort(key=lambda k: int(k.split("seed")[-1]))
    return [results["runs"][k] for k in keys if results["runs"][k].get("status") == "ok"]


def _series(runs: Sequence[dict[str, Any]], key: str) -> list[list[float]]:
    return [[float("nan") if h.get(key) is None else h[key] for h in history(r)] for r in runs]


def _legend(ax, **kw) -> None:
    if ax.get_legend_handles_labels()[0]:  # a panel may be empty when only some experiments have run
        ax.legend(**kw)


def plot_curvature(results: dict[str, Any], path: Path) -> bool:
    import matplotlib.pyplot as plt
    from matplotlib.ticker import MaxNLocator

    runs = runs_of(results, "hecnn")
    if not runs:
        return False
    k0 = results.get("meta", {}).get("initial_curvature", -1.0)
    fig, axes = plt.subplots(1, 2, figsize=(11, 4))
    ax = axes[0]
    styles = {"encoder_manifold": ("C0", "encoder"), "decoder_manifold": ("C1", "decoder")}
    names = sorted({k[2:] for r in runs for h in history(r) for k in h if k.startswith("K/")})
    for name in names:
        color, label = styles.get(name, ("C2", name))
        for i, s in enumerate(_series(runs, f"K/{name}")):
            ax.plot(range(len(s) + 1), [k0, *s], color=color, alpha=0.8, marker="o", ms=3,
                    label=f"{label} ({len(runs)} seeds)" if i == 0 else None)
    ax.axhline(-0.6, color="gray", ls="--", lw=1, label="paper: encoders drift to about −0.6")
    ax.set(xlabel="epoch", ylabel="curvature K = −1/k", title="HECNN+ learned curvature (every seed)")
    ax.xaxis.set_major_locator(MaxNLocator(integer=True))
    _legend(ax, fontsize=8)
    ax = axes[1]
    for variant, label, color, ls in CURV_ROWS:
        vr = runs_of(results, variant)
        if not vr:
            continue
        for name, marker in (("encoder_manifold", "o"), ("decoder_manifold", "s")):
            if not any(f"K/{name}" in h for h in history(vr[0])):
                continue
            ep, m, sd = mean_std(_series(vr, f"K/{name}"))
            ax.plot([0, *ep], [k0, *m], color=color, ls=ls, marker=marker, ms=3,
                    label=f"{label}, {name.split('_')[0]}")
    ax.set(xlabel="epoch", ylabel="curvature K (mean over seeds)", title="curvature-aware vs naive learning")
    _legend(ax, fontsize=7, ncol=2)
    fig.tight_layout()
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return True


def plot_accuracy(results: dict[str, Any], path: Path) -> bool:
    import matplotlib.pyplot as plt
    from matplotlib.ticker import MaxNLocator

    fig, axes = plt.subplots(1, 3, figsize=(16, 4.2))
    drawn = False
    ax = axes[0]
    for variant, label in MODEL_ROWS:
        vr = runs_of(results, variant)
        if not vr:
            continue
        ep, m, sd = mean_std(_series(vr, "test_acc"))
        ax.plot(ep, 100 * m, marker="o", ms=3, label=f"{label} (n={len(vr)})")
        ax.fill_between(ep, 100 * (m - sd), 100 * (m + sd), alpha=0.2)
        drawn = True
    ax.set(xlabel="epoch", ylabel="test accuracy (%)", title="models: test accuracy, mean ± std", ylim=(50, 100))
    _legend(ax, fontsize=8)
    ax = axes[1]
    for variant, label, color in CONV_ROWS:
        vr = runs_of(results, variant)
        for i, s in enumerate(_series(vr, "test_acc")):
            ax.plot(range(1, len(s) + 1), [100 * v for v in s], color=color, marker="o", ms=3, alpha=0.8,
                    label=label if i == 0 else None)
            drawn = True
    ax.set(xlabel="epoch", ylabel="test accuracy (%)", title="HECNN+: learned vs fixed curvature, every seed",
           ylim=(0, 100))
    _legend(ax, fontsize=8)
    ax = axes[2]
    for variant, label, color, ls in PRECISION_ROWS:
        vr = runs_of(results, variant)
        for i, s in enumerate(_series(vr, "train_loss")):
            ax.plot(range(1, len(s) + 1), s, color=color, ls=ls, marker="o", ms=3, alpha=0.8,
                    label=label if i == 0 else None)
            drawn = True
    ax.set(xlabel="epoch", ylabel="training loss", yscale="log", title="HECNN+ (width 8): 16-bit / rescaling, every seed")
    _legend(ax, fontsize=8)
    for ax in axes:
        ax.xaxis.set_major_locator(MaxNLocator(integer=True))
    fig.tight_layout()
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return drawn


def main(argv: Sequence[str] | None = None) -> list[Path]:
    import matplotlib

    matplotlib.use("Agg")
    p = argparse.ArgumentParser(description="Plot the classification results (docs/results.md figures).")
    p.add_argument("--results", type=Path, default=DEFAULT_RESULTS, help="JSON from classification_results.py")
    p.add_argument("--out", type=Path, default=DEFAULT_OUT, help="output folder for the PNGs")
    args = p.parse_args(argv)
    results = json.loads(args.results.read_text())
    written = []
    for name, fn in (("curvature_trajectory.png", plot_curvature), ("accuracy_curves.png", plot_accuracy)):
        if fn(results, args.out / name):
            written.append(args.out / name)
            print(f"wrote {args.out / name}")
    return written


if __name__ == "__main__":
    main()
