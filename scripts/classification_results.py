"""Small-scale classification evidence for the paper's claims (issue #4 item 7), on offline data.

Runs a fixed list of trainings through the public API (``lorentzcv.train.load_config`` + ``train``), several
seeds each, and writes every run's summary and per-epoch history plus the aggregated tables (mean ± sample
std over seeds) to one JSON file (default ``docs/data/classification_results.json``). ``docs/results.md``
reports them; ``scripts/plot_classification.py`` draws the figures from the same JSON.

Experiments (all on scikit-learn's 8×8 digits, 1,258 train / 539 test images; last-epoch test accuracy,
no selection on test):

1. ``models``    Euclidean / hybrid / HCNN / HECNN+ ResNet (same width 16, layers [1, 1, 1, 1], 10 epochs).
2. ``curvature`` curvature-aware vs naive curvature learning, curvature lr 0.05 (demo) and 0.5 (10×).
3. ``precision`` maximum distance rescaling on/off under bfloat16 and float16 autocast (float16 with a
                 GradScaler, on the CPU: no GPU here), with float32 controls (width 8, 5 epochs: 16-bit
                 autocast is 5-10× slower than float32 on a CPU without bf16/fp16 units).
4. ``optim``     RiemannianSGD (lr 0.1, momentum 0.9, Nesterov) vs RiemannianAdamW (lr 2e-3, wd 1e-2,
                 curvature lr 0.01).
5. ``trajectory`` learned curvatures K = -1/k per epoch of HECNN+ (from the ``models`` runs).
6. ``convergence`` epochs to converge with and without curvature learning (``model.learn_k``).

Separate output (``--only convergence_fmnist``, default ``docs/data/convergence_fashion_mnist.json``; never part
of the default invocation): Fashion-MNIST, full 60k train / 10k test, epochs to fixed test-accuracy and
train-loss thresholds (:data:`FMNIST_ACC_THRESHOLDS`, :data:`FMNIST_LOSS_THRESHOLD`) with learned vs fixed k, for
the new hybrid ResNet ("hybrid+") and HECNN+ with the optimizer/schedule/curvature lr of the Table 2 configs
(``configs/classification/table2/*_hybrid_plus_resnet18.yaml``, ``*_hecnn_resnet18.yaml``) at width 16,
layers [1, 1, 1, 1] and :data:`FMNIST_EPOCHS` epochs (a CPU budget).

Usage::

    python scripts/classification_results.py            # everything, 3 seeds (~15 min on 2 CPU cores)
    python scripts/classification_results.py --quick    # smoke test: 1 seed, 2 epochs, separate output
    python scripts/classification_results.py --only models,curvature --seeds 1 2 3 4 5
    python scripts/classification_results.py --only convergence_fmnist --seed-major \
        --variants fm_hecnn,fm_hecnn_fixed_k,fm_hybrid,fm_hybrid_fixed_k   # ~90 min on one core

Finished runs are cached in the JSON under ``runs/<variant>/seed<N>`` together with the exact overrides they
ran with; a re-run skips every run whose overrides are unchanged (``--force`` reruns them). The JSON is
rewritten after each run, so an interrupted invocation resumes where it stopped. Every run uses one
intra-op thread (``train.threads=1``) and the CPU.
"""

from __future__ import annotations

import argparse
import json
import math
import os
import platform
import shutil
import statistics
import sys
import time
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _report import REPO, code_version, mean_std, pm  # noqa: E402  (the scripts folder's shared helpers)

DEFAULT_OUT = REPO / "docs" / "data" / "classification_results.json"
DEFAULT_RUNS = REPO / "runs" / "classification_results"
QUICK_OUT = REPO / "runs" / "classification_results_quick" / "results.json"
QUICK_RUNS = REPO / "runs" / "classification_results_quick"
FMNIST_OUT = REPO / "docs" / "data" / "convergence_fashion_mnist.json"
FMNIST_RUNS = REPO / "runs" / "convergence_fashion_mnist"

SEEDS = (1, 2, 3)
QUICK_SEEDS = (1,)

#: Applied to every run first (pins the demo protocol so a change of the demo defaults does not change it).
BASE_OVERRIDES: list[str] = [
    "data.name=digits", "data.batch_size=128", "data.val_fraction=0.0",
    "model.name=hecnn_resnet18", "model.width=16", "model.layers=[1, 1, 1, 1]",
    "optim.name=rsgd", "optim.lr=0.1", "optim.weight_decay=5e-4", "optim.momentum=0.9", "optim.nesterov=true",
    "optim.curvature_lr=0.05", "optim.curvature_mode=aware",
    "schedule.name=cosine", "schedule.warmup_epochs=1.0",
    "train.epochs=10", "train.amp=none", "train.threads=1", "train.device=cpu",
    "output.checkpoints=false", "output.tensorboard=false", "output.progress=false",
]
#: Extra overrides of the ``precision`` experiment's suite (applied after the base ones).
PRECISION_SUITE: list[str] = ["model.width=8", "train.epochs=5"]
#: Applied last in ``--quick`` mode (tests monkeypatch this to shrink runs further).
QUICK_OVERRIDES: list[str] = ["train.epochs=2"]

#: "Converged" thresholds of the ``convergence`` experiment (see :func:`convergence_epochs`).
LOSS_THRESHOLD = 0.05
ACC_FRACTION = 0.99

#: ``convergence_fmnist``: test-accuracy targets and train-loss target, fixed before any run was made.
FMNIST_ACC_THRESHOLDS = (0.85, 0.88)
FMNIST_LOSS_THRESHOLD = 0.35
#: ``convergence_fmnist``: epochs per run (a CPU budget: HECNN+ takes ~5 min per 60k epoch on one core).
FMNIST_EPOCHS = 2
#: ``convergence_fmnist`` suite: the Table 2 configs' data/optim/schedule/model settings at the CPU scale of the
#: other experiments (width 16, layers [1, 1, 1, 1]; the configs: width 64, [2, 2, 2, 2], 200 epochs) and full
#: Fashion-MNIST (60k train, 10k test). ``milestones`` at 60: the lr stays 0.1 within these epochs.
FMNIST_SUITE: list[str] = [
    "data.name=fashion_mnist", "data.train_subset=null", "data.eval_subset=null", "data.eval_batch_size=128",
    "model.k_init=1.0", "model.rescale=true", "model.rescale_s=2.0",
    "optim.manifold_lr=0.02", "optim.curvature_lr=1e-4", "optim.curvature_weight_decay=0.0",
    "schedule.name=multistep", "schedule.milestones=[60, 120, 160]", "schedule.gamma=0.2",
    "schedule.manifold_skip_first_drop=true", "schedule.warmup_epochs=0.0",
    f"train.epochs={FMNIST_EPOCHS}",
]


@dataclass(frozen=True)
class Variant:
    """One training configuration (run once per seed)."""

    name: str
    overrides: tuple[str, ...]
    suite: tuple[str, ...] = ()  # suite overrides applied between the base and the variant's own


@dataclass(frozen=True)
class Experiment:
    """A table: rows are ``(label, variant name)``."""

    name: str
    title: str
    rows: tuple[tuple[str, str], ...]
    group: str = "digits"  # experiments of one group share an output JSON (see OUTPUTS)


PRECISION = tuple(PRECISION_SUITE)
FMNIST = tuple(FMNIST_SUITE)
_HECNN_PLUS = ("model.name=hecnn_resnet18", "model.separate_decoder=true", "model.conv_impl=efficient",
               "model.bn_variant=hcnn", "model.bias=false")
_HYBRID_PLUS = ("model.name=hybrid_resnet18", "model.lift=rescale")
HECNN = "hecnn"
VARIANTS: dict[str, Variant] = {v.name: v for v in [
    Variant("resnet18", ("model.name=resnet18",)),
    Variant("hybrid", ("model.name=hybrid_resnet18",)),
    Variant("hcnn", ("model.name=hcnn_resnet18",)),
    Variant(HECNN, ()),  # HECNN+, curvature-aware RSGD, learned k, float32: shared by experiments 1, 2, 4, 5, 6
    Variant("hecnn_naive", ("optim.curvature_mode=naive",)),
    Variant("hecnn_clr0.5", ("optim.curvature_lr=0.5",)),
    Variant("hecnn_clr0.5_naive", ("optim.curvature_lr=0.5", "optim.curvature_mode=naive")),
    Variant("hecnn_radamw", ("optim.name=radamw", "optim.lr=2e-3", "optim.weight_decay=1e-2",
                             "optim.curvature_lr=0.01")),
    Variant("hecnn_fixed_k", ("model.learn_k=false",)),
    Variant("bf16_rescale", ("train.amp=bf16", "model.rescale=true"), PRECISION),
    Variant("bf16_norescale", ("train.amp=bf16", "model.rescale=false"), PRECISION),
    Variant("fp16_rescale", ("train.amp=fp16", "model.rescale=true"), PRECISION),
    Variant("fp16_norescale", ("train.amp=fp16", "model.rescale=false"), PRECISION),
    Variant("fp32_rescale", ("train.amp=none", "model.rescale=true"), PRECISION),
    Variant("fp32_norescale", ("train.amp=none", "model.rescale=false"), PRECISION),
    Variant("fm_hecnn", (*_HECNN_PLUS, "model.learn_k=true"), FMNIST),
    Variant("fm_hecnn_fixed_k", (*_HECNN_PLUS, "model.learn_k=false"), FMNIST),
    Variant("fm_hybrid", (*_HYBRID_PLUS, "model.learn_k=true"), FMNIST),
    Variant("fm_hybrid_fixed_k", (*_HYBRID_PLUS, "model.learn_k=false"), FMNIST),
]}

EXPERIMENTS: dict[str, Experiment] = {e.name: e for e in [
    Experiment("models", "Euclidean vs hybrid vs HCNN vs HECNN+ (width 16, layers [1,1,1,1], 10 epochs)",
               (("ResNet (Euclidean)", "resnet18"), ("Hybrid (Euclidean encoder, Lorentz MLR)", "hybrid"),
                ("HCNN (unfold conv, fixed K=-1, no rescaling)", "hcnn"), ("HECNN+", HECNN))),
    Experiment("curvature", "Curvature-aware vs naive curvature learning (HECNN+, RSGD)",
               (("aware, curvature lr 0.05", HECNN), ("naive, curvature lr 0.05", "hecnn_naive"),
                ("aware, curvature lr 0.5", "hecnn_clr0.5"), ("naive, curvature lr 0.5", "hecnn_clr0.5_naive"))),
    Experiment("precision", "Maximum distance rescaling under 16-bit autocast (HECNN+, width 8, 5 epochs)",
               (("bf16, rescaling", "bf16_rescale"), ("bf16, no rescaling", "bf16_norescale"),
                ("fp16 + GradScaler, rescaling", "fp16_rescale"), ("fp16 + GradScaler, no rescaling", "fp16_norescale"),
                ("fp32, rescaling", "fp32_rescale"), ("fp32, no rescaling", "fp32_norescale"))),
    Experiment("optim", "RiemannianSGD vs RiemannianAdamW (HECNN+)",
               (("RSGD lr 0.1, mom. 0.9 Nesterov, wd 5e-4, curv. lr 0.05", HECNN),
                ("RAdamW lr 2e-3, wd 1e-2, curv. lr 0.01", "hecnn_radamw"))),
    Experiment("trajectory", "Learned curvature per epoch (HECNN+)", (("HECNN+", HECNN),)),
    Experiment("convergence", "Epochs to converge with vs without curvature learning (HECNN+)",
               (("learned k (learn_k=true)", HECNN), ("fixed K=-1 (learn_k=false)", "hecnn_fixed_k"))),
    Experiment("convergence_fmnist",
               "Epochs to fixed targets with vs without curvature learning, Fashion-MNIST 60k "
               "(Table 2 optimizer, curvature lr 1e-4; width 16, layers [1,1,1,1])",
               (("HECNN+, learned k", "fm_hecnn"), ("HECNN+, fixed K=-1", "fm_hecnn_fixed_k"),
                ("hybrid+, learned k", "fm_hybrid"), ("hybrid+, fixed K=-1", "fm_hybrid_fixed_k")),
               group="fashion_mnist"),
]}
#: Per group: (output JSON, run directories, quick-mode output JSON, quick-mode run directories).
OUTPUTS: dict[str, tuple[Path, Path, Path, Path]] = {
    "digits": (DEFAULT_OUT, DEFAULT_RUNS, QUICK_OUT, QUICK_RUNS),
    "fashion_mnist": (FMNIST_OUT, FMNIST_RUNS, QUICK_RUNS / "convergence_fashion_mnist.json",
                      QUICK_RUNS / "convergence_fashion_mnist"),
}

_HISTORY_KEYS = ("epoch", "train_loss", "train_acc", "test_loss", "test_acc", "skipped_steps", "epoch_time")


# ------------------------------------------------------------------------------------------------ runs
def run_overrides(variant: Variant, seed: int, quick: bool, extra: Sequence[str] = ()) -> list[str]:
    """Every ``--set`` override of one run, in the order applied (later ones win)."""
    out = [*BASE_OVERRIDES, *variant.suite, *variant.overrides, f"train.seed={seed}"]
    if quick:
        out += QUICK_OVERRIDES
    return out + list(extra)


def _finite(v: Any) -> bool:
    return not (isinstance(v, float) and not math.isfinite(v))


def _number(v: Any) -> Any:
    """A metric value as written to ``metrics.jsonl``, where NaN/±Inf are strings, back as a float."""
    return float(v) if v in ("nan", "inf", "-inf") else v


def run_one(overrides: list[str], run_dir: Path) -> dict[str, Any]:
    """Train once; return the cached record (summary, history, wall time)."""
    import io

    from lorentzcv.train import TrainingDivergedError, load_config, train

    if run_dir.exists():  # a stale directory of an interrupted run: start afresh
        shutil.rmtree(run_dir)
    cfg = load_config(None, [*overrides, f"output.dir={run_dir}"])
    t0 = time.perf_counter()
    log = io.StringIO()
    try:
        summary = train(cfg, stream=log)
    except TrainingDivergedError as exc:  # a result, not a crash: recorded, counted in the tables, the grid goes on
        return {"overrides": overrides, "status": "diverged", "error": str(exc),
                "wall_time": time.perf_counter() - t0, "run_dir": os.path.relpath(run_dir, REPO)}
    wall = time.perf_counter() - t0
    history = []
    with open(Path(summary["run_dir"]) / "metrics.jsonl") as f:
        for line in f:
            row = json.loads(line)
            history.append({k: _number(v) for k, v in row.items() if k in _HISTORY_KEYS or k.startswith("K/")})
    nonfinite = any(not _finite(v) for r in history for v in r.values())
    return {
        "overrides": overrides,
        "status": "ok",
        "test_acc": summary["test_acc"],
        "test_loss": summary["test_loss"],
        "train_acc": summary["train_acc"],
        "train_loss": history[-1]["train_loss"],
        "curvatures": summary["curvatures"],
        "skipped_steps": summary["skipped_steps"],
        "nonfinite_metrics": nonfinite,
        "train_time": summary["train_time"],
        "wall_time": wall,
        "run_dir": os.path.relpath(summary["run_dir"], REPO),
        "history": history,
    }


# ----------------------------------------------------------------------------------------- statistics
def convergence_epochs(history: Sequence[dict[str, Any]], loss_threshold: float = LOSS_THRESHOLD,
                       acc_fraction: float = ACC_FRACTION) -> dict[str, int | None]:
    """Epochs to converge of one run (1-based; ``None`` if never reached).

    - ``epochs_to_loss``: the first epoch whose mean training loss is ``<= loss_threshold``.
    - ``epochs_to_acc``: the first epoch whose test accuracy is ``>= acc_fraction`` × the run's
      *last-epoch* test accuracy (a measurement of speed, not a selection: the reported accuracy stays the
      last epoch's).
    """
    to_loss = next((r["epoch"] for r in history if r["train_loss"] <= loss_threshold), None)
    final = history[-1].get("test_acc")
    to_acc = None
    if final is not None:
        to_acc = next((r["epoch"] for r in history if r.get("test_acc") is not None
                       and r["test_acc"] >= acc_fraction * final), None)
    return {"epochs_to_loss": to_loss, "epochs_to_acc": to_acc}


def epochs_to_threshold(history: Sequence[dict[str, Any]], key: str, threshold: float,
                        above: bool = True) -> int | None:
    """The first (1-based) epoch whose ``history[key]`` is ``>= threshold`` (``above``) or ``<= threshold``
    (not ``above``); ``None`` if no epoch gets there. Epochs without the key (or with a NaN) never count."""
    for r in history:
        v = r.get(key)
        if v is None or not isinstance(v, (int, float)) or math.isnan(v):
            continue
        if (v >= threshold) if above else (v <= threshold):
            return int(r["epoch"])
    return None


def fmnist_convergence(records: Sequence[dict[str, Any]]) -> dict[str, Any]:
    """The ``convergence_fmnist`` statistics of one variant's seeds: per seed and mean ± std of the epochs to
    each test-accuracy target of :data:`FMNIST_ACC_THRESHOLDS` and to train loss ``<=``
    :data:`FMNIST_LOSS_THRESHOLD` (runs that never get there are counted in ``reached``, not averaged), plus the
    per-seed per-epoch test accuracies."""
    targets = {f"test_acc>={t:g}": ("test_acc", t, True) for t in FMNIST_ACC_THRESHOLDS}
    targets[f"train_loss<={FMNIST_LOSS_THRESHOLD:g}"] = ("train_loss", FMNIST_LOSS_THRESHOLD, False)
    out: dict[str, Any] = {}
    for name, (key, thr, above) in targets.items():
        per_seed = [epochs_to_threshold(r["history"], key, thr, above) for r in records]
        out[name] = {"per_seed": per_seed, "mean_std": mean_std(per_seed),
                     "reached": sum(e is not None for e in per_seed)}
    out["test_acc_per_epoch"] = [[h.get("test_acc") for h in r["history"]] for r in records]
    out["test_acc_per_seed"] = [r["test_acc"] for r in records]
    return out


def aggregate_variant(records: Sequence[dict[str, Any]]) -> dict[str, Any]:
    """Mean ± std over the seeds of one variant."""
    out: dict[str, Any] = {
        "seeds": len(records),
        "test_acc": mean_std([r["test_acc"] for r in records]),
        "train_loss": mean_std([r["train_loss"] for r in records]),
        "skipped_steps": int(sum(r["skipped_steps"] for r in records)),
        "nonfinite_runs": int(sum(bool(r["nonfinite_metrics"]) for r in records)),
        "epoch_time": mean_std([statistics.fmean(h["epoch_time"] for h in r["history"]) for r in records]),
        "train_time": mean_std([r["train_time"] for r in records]),
    }
    names = sorted({n for r in records for n in r["curvatures"]})
    out["curvatures"] = {n: mean_std([r["curvatures"][n] for r in records if n in r["curvatures"]])
                         for n in names}
    conv = [convergence_epochs(r["history"]) for r in records]
    out["epochs_to_loss"] = mean_std([c["epochs_to_loss"] for c in conv])
    out["epochs_to_loss_reached"] = sum(c["epochs_to_loss"] is not None for c in conv)
    out["epochs_to_acc"] = mean_std([c["epochs_to_acc"] for c in conv])
    # the loss spike: the largest increase of the training loss from one epoch to the next
    out["max_loss_increase"] = mean_std([
        max([0.0] + [b["train_loss"] - a["train_loss"] for a, b in zip(r["history"], r["history"][1:])])
        for r in records])
    return out


def trajectory(records: Sequence[dict[str, Any]]) -> dict[str, Any]:
    """Per manifold: the per-epoch curvature of every seed and its mean ± std."""
    names = sorted({k[2:] for r in records for h in r["history"] for k in h if k.startswith("K/")})
    out: dict[str, Any] = {}
    for n in names:
        per_seed = [[h.get(f"K/{n}") for h in r["history"]] for r in records]
        epochs = len(per_seed[0]) if per_seed else 0
        out[n] = {"per_seed": per_seed,
                  "mean_std": [mean_std([s[e] for s in per_seed if e < len(s)]) for e in range(epochs)]}
    return out


def build_tables(results: dict[str, Any], experiments: Sequence[str], seeds: Sequence[int]) -> dict[str, Any]:
    tables: dict[str, Any] = {}
    for ename in experiments:
        exp = EXPERIMENTS[ename]
        rows = []
        for label, vname in exp.rows:
            recs = [results["runs"][f"{vname}/seed{s}"] for s in seeds
                    if results["runs"].get(f"{vname}/seed{s}", {}).get("status") == "ok"]
            diverged = [s for s in seeds if results["runs"].get(f"{vname}/seed{s}", {}).get("status") == "diverged"]
            if not recs:
                if diverged and ename not in ("trajectory", "convergence_fmnist"):
                    rows.append({"label": label, "variant": vname, "seeds": 0, "diverged": diverged})
                continue
            row = {"label": label, "variant": vname, **aggregate_variant(recs), "diverged": diverged}
            if ename == "trajectory":
                row["trajectory"] = trajectory(recs)
            if ename == "convergence_fmnist":
                row["seed_list"] = [s for s in seeds
                                    if results["runs"].get(f"{vname}/seed{s}", {}).get("status") == "ok"]
                row["fmnist"] = fmnist_convergence(recs)
            rows.append(row)
        tables[ename] = {"title": exp.title, "rows": rows}
    return tables


# --------------------------------------------------------------------------------------------- output
def _seeds_cell(row: dict[str, Any]) -> str:
    """The seeds column: the finished seeds, and how many diverged (``TrainingDivergedError``) besides."""
    diverged = row.get("diverged") or []
    return f"{row['seeds']}" + (f" (+{len(diverged)} diverged)" if diverged else "")


def markdown_tables(tables: dict[str, Any]) -> str:
    """The tables as Markdown (what ``docs/results.md`` shows)."""
    out = []
    for ename, t in tables.items():
        out.append(f"### {ename}: {t['title']}\n")
        if ename == "trajectory":
            for r in t["rows"]:
                traj = r["trajectory"]
                names = list(traj)
                out.append("| epoch | " + " | ".join(f"K {n.replace('_manifold', '')}" for n in names) + " |")
                out.append("|---" * (len(names) + 1) + "|")
                out.append("| 0 (init) | " + " | ".join("-1" for _ in names) + " |")
                for e in range(len(traj[names[0]]["mean_std"]) if names else 0):
                    cells = [pm(traj[n]["mean_std"][e], digits=3) for n in names]
                    out.append(f"| {e + 1} | " + " | ".join(cells) + " |")
            out.append("")
            continue
        if ename == "convergence_fmnist":
            out.extend(_fmnist_table(t["rows"]))
            continue
        if ename == "convergence":
            out.append(f"| variant | seeds | test acc. (%) | epochs to train loss ≤ {LOSS_THRESHOLD} "
                       f"| epochs to {ACC_FRACTION:.0%} of final test acc. | final K |")
            out.append("|---|---|---|---|---|---|")
        else:
            out.append("| variant | seeds | test acc. (%) | final train loss | final K (per manifold) "
                       "| skipped steps | max loss increase | s/epoch |")
            out.append("|---|---|---|---|---|---|---|---|")
        for r in t["rows"]:
            if not r["seeds"]:  # every seed diverged: no statistics, one line that says so
                out.append(f"| {r['label']} | 0 (all {len(r['diverged'])} diverged: seeds "
                           f"{', '.join(map(str, r['diverged']))}) |" + " – |" * (4 if ename == "convergence" else 6))
                continue
            ks = "; ".join(f"{n.replace('_manifold', '')} {pm(ms, digits=3)}" for n, ms in r["curvatures"].items())
            ks = ks or "–"
            if ename == "convergence":
                reached = f" ({r['epochs_to_loss_reached']}/{r['seeds']} reached)" \
                    if r["epochs_to_loss_reached"] < r["seeds"] else ""
                out.append(f"| {r['label']} | {_seeds_cell(r)} | {pm(r['test_acc'], 100)} | "
                           f"{pm(r['epochs_to_loss'], digits=1)}{reached} | {pm(r['epochs_to_acc'], digits=1)} "
                           f"| {ks} |")
            else:
                nf = f" ({r['nonfinite_runs']} runs with NaN)" if r["nonfinite_runs"] else ""
                out.append(f"| {r['label']} | {_seeds_cell(r)} | {pm(r['test_acc'], 100)} | "
                           f"{pm(r['train_loss'], digits=4)} | {ks} | {r['skipped_steps']}{nf} | "
                           f"{pm(r['max_loss_increase'], digits=3)} | {pm(r['epoch_time'], digits=1)} |")
        out.append("")
    return "\n".join(out)


def _fmnist_table(rows: Sequence[dict[str, Any]]) -> list[str]:
    """Markdown lines of the ``convergence_fmnist`` table (epochs to each target: mean ± std and per seed)."""
    names = [*(f"test_acc>={t:g}" for t in FMNIST_ACC_THRESHOLDS), f"train_loss<={FMNIST_LOSS_THRESHOLD:g}"]
    heads = [*(f"epochs to test acc. ≥ {100 * t:g} %" for t in FMNIST_ACC_THRESHOLDS),
             f"epochs to train loss ≤ {FMNIST_LOSS_THRESHOLD:g}"]
    out = ["| variant | seeds | " + " | ".join(heads) + " | final test acc. (%) | per seed (%) | final K | s/epoch |",
           "|---" * (len(heads) + 6) + "|"]
    for r in rows:
        cells = []
        for n in names:
            c = r["fmnist"][n]
            per = " / ".join("never" if e is None else str(e) for e in c["per_seed"])
            never = f", {r['seeds'] - c['reached']} never" if c["reached"] < r["seeds"] else ""
            cells.append(f"{pm(c['mean_std'], digits=1)} ({per}{never})")
        ks = "; ".join(f"{n.replace('_manifold', '')} {pm(ms, digits=4)}" for n, ms in r["curvatures"].items())
        per_acc = " / ".join(f"{100 * a:.2f}" for a in r["fmnist"]["test_acc_per_seed"])
        out.append(f"| {r['label']} | {r['seeds']} | " + " | ".join(cells) + f" | {pm(r['test_acc'], 100)} | "
                   f"{per_acc} | {ks or '–'} | {pm(r['epoch_time'], digits=0)} |")
    out.append("")
    return out


def _write_json(path: Path, data: dict[str, Any]) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.tmp{os.getpid()}")
    tmp.write_text(json.dumps(data, indent=1, allow_nan=True) + "\n")
    os.replace(tmp, path)


def _meta(args: argparse.Namespace, seeds: Sequence[int], argv: Sequence[str]) -> dict[str, Any]:
    import shlex

    import torch

    return {
        "command": shlex.join(["python", "scripts/classification_results.py", *argv]),
        "quick": args.quick,
        "seeds": list(seeds),
        "base_overrides": BASE_OVERRIDES,
        "precision_suite_overrides": PRECISION_SUITE,
        "fmnist_suite_overrides": FMNIST_SUITE,
        "quick_overrides": QUICK_OVERRIDES if args.quick else [],
        "extra_overrides": list(args.set),
        "convergence": {"loss_threshold": LOSS_THRESHOLD, "acc_fraction": ACC_FRACTION},
        "convergence_fmnist": {"test_acc_thresholds": list(FMNIST_ACC_THRESHOLDS),
                               "train_loss_threshold": FMNIST_LOSS_THRESHOLD},
        "initial_curvature": -1.0,  # every model here starts at k = 1 (K = -1)
        "selection": "none: last-epoch test accuracy is reported (data.val_fraction=0)",
        "torch": torch.__version__,
        "python": platform.python_version(),
        "platform": platform.platform(),
        "cpu_count": os.cpu_count(),
        "threads_per_run": 1,
        "updated": datetime.now(timezone.utc).isoformat(timespec="seconds"),
    }


def parse_args(argv: Sequence[str] | None = None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0],
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--quick", action="store_true", help="smoke test: 1 seed, 2 epochs, separate output files")
    p.add_argument("--out", type=Path, default=None, help=f"results JSON (default {DEFAULT_OUT.relative_to(REPO)}; "
                   f"--quick: {QUICK_OUT.relative_to(REPO)})")
    p.add_argument("--runs-dir", type=Path, default=None, help="where the run directories go "
                   f"(default {DEFAULT_RUNS.relative_to(REPO)})")
    p.add_argument("--only", default=None, help=f"comma-separated experiments among {', '.join(EXPERIMENTS)}")
    p.add_argument("--seeds", type=int, nargs="+", default=None, help=f"seeds (default {list(SEEDS)})")
    p.add_argument("--set", action="append", default=[], metavar="KEY=VALUE",
                   help="extra config override applied to every run (part of the cache key)")
    p.add_argument("--variants", default=None, help="comma-separated variants: train only these (in this order) "
                   "among the chosen experiments' (the tables still show every cached run)")
    p.add_argument("--seed-major", action="store_true", help="train every variant of one seed before the next seed "
                   "(default: every seed of one variant before the next variant)")
    p.add_argument("--force", action="store_true", help="rerun cached runs")
    return p.parse_args(argv)


def main(argv: Sequence[str] | None = None) -> dict[str, Any]:
    argv = list(sys.argv[1:] if argv is None else argv)
    args = parse_args(argv)
    seeds = tuple(args.seeds or (QUICK_SEEDS if args.quick else SEEDS))
    experiments = [e for e in EXPERIMENTS if EXPERIMENTS[e].group == "digits"] if args.only is None \
        else [e.strip() for e in args.only.split(",") if e.strip()]
    unknown = [e for e in experiments if e not in EXPERIMENTS]
    if unknown:
        raise SystemExit(f"unknown experiment(s) {unknown}; choose among {', '.join(EXPERIMENTS)}")
    groups = {EXPERIMENTS[e].group for e in experiments}
    if len(groups) != 1:
        raise SystemExit(f"experiments {experiments} write to different files ({sorted(groups)}): run them apart")
    group = groups.pop()
    default_out, default_runs, quick_out, quick_runs = OUTPUTS[group]
    out = args.out or (quick_out if args.quick else default_out)
    runs_dir = args.runs_dir or (quick_runs if args.quick else default_runs)

    results: dict[str, Any] = {"runs": {}}
    if out.exists():
        results = json.loads(out.read_text())
        results.setdefault("runs", {})
    code = code_version()  # taken once: this process keeps the library it imported first
    variants = list(dict.fromkeys(v for e in experiments for _, v in EXPERIMENTS[e].rows))
    if args.variants is not None:
        chosen = [v.strip() for v in args.variants.split(",") if v.strip()]
        if not set(chosen) <= set(variants):
            raise SystemExit(f"unknown variant(s) {sorted(set(chosen) - set(variants))}; choose among {variants}")
        variants = chosen
    todo = [(v, s) for s in seeds for v in variants] if args.seed_major else [(v, s) for v in variants for s in seeds]
    t_all = time.perf_counter()
    for i, (vname, seed) in enumerate(todo, 1):
        key = f"{vname}/seed{seed}"
        overrides = run_overrides(VARIANTS[vname], seed, args.quick, args.set)
        cached = results["runs"].get(key)
        if not args.force and cached and cached.get("status") in ("ok", "diverged") and \
                cached.get("overrides") == overrides:
            what = f"test acc {100 * cached['test_acc']:.2f} %" if cached["status"] == "ok" else "diverged"
            print(f"[{i}/{len(todo)}] {key}: cached ({what})", flush=True)
            continue
        print(f"[{i}/{len(todo)}] {key}: training ...", end=" ", flush=True)
        rec = run_one(overrides, runs_dir / vname / f"seed{seed}")
        rec["code"] = code
        results["runs"][key] = rec
        if rec["status"] == "diverged":
            print(f"diverged ({rec['error']}), {rec['wall_time']:.1f} s", flush=True)
        else:
            ks = ", ".join(f"{n} {k:.3f}" for n, k in rec["curvatures"].items())
            print(f"test acc {100 * rec['test_acc']:.2f} %, K [{ks}], skipped {rec['skipped_steps']}, "
                  f"{rec['wall_time']:.1f} s", flush=True)
        results["meta"] = _meta(args, seeds, argv)
        _write_json(out, results)
    results["meta"] = _meta(args, seeds, argv)
    # every experiment of this output's group (rows without runs are left out)
    results["tables"] = build_tables(results, [e for e in EXPERIMENTS if EXPERIMENTS[e].group == group], seeds)
    _write_json(out, results)
    print(f"\n{markdown_tables(results['tables'])}")
    print(f"wrote {out} ({time.perf_counter() - t_all:.0f} s this invocation)", flush=True)
    return results


if __name__ == "__main__":
    sys.path.insert(0, str(REPO))
    main()
