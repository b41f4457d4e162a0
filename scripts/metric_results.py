"""Small-scale metric-learning evidence (issue #5 item 7): Euclidean vs HIER vs LHIER on offline data.

Trains the three demo configs ``configs/metric/demo/fashion_mnist_dml_{euclidean,hier,lhier}.yaml`` (a small CNN
on class-disjoint Fashion-MNIST: train on T-shirt/trouser/pullover/dress/coat, retrieve sandal/shirt/sneaker/
bag/ankle boot; 4,000 training and 2,000 test images, 16-d embeddings, 8 epochs) through the public API
(``lorentzcv.train.load_config`` + ``train``) in two stages:

1. **Learning-rate selection on a class-disjoint validation split** (never on test): for every method and every
   lr in ``SELECT_LRS``, train with ``data.val_fraction=0.4`` (2 of the 5 training classes held out, 3 trained
   on) for the seeds ``SELECT_SEEDS``, chosen so that the held-out pairs differ and cover all five training
   classes ({pullover, coat}, {T-shirt, dress}, {trouser, coat}); each method gets the lr with the highest mean
   last-epoch validation Recall@1.
2. **Test**: each method with its selected lr on all five training classes, for several seeds; the last-epoch
   test Recall@K and MAP@R as mean ± sample std over seeds, and paired per-seed differences.

Then it draws the learned embeddings and LCA proxies in the Poincaré disk (``docs/img/metric_poincare.png``):

- **left/middle**: HIER and LHIER retrained with 2-d embeddings (``--set model.embedding_dim=2``; seed 0), so the
  disk shows the learned geometry exactly (LHIER: the Lorentz points of H² mapped to the Poincaré disk of
  the learned curvature; HIER: its ball points). Both disks are drawn with unit radius (coordinates / √k).
- **right**: the 16-d LHIER run of the first seed, its Poincaré-ball coordinates projected orthogonally onto
  their first two (uncentred) principal directions, a 2-d *view* of a 16-d embedding (distances are not
  preserved; the points stay inside the disk).

Outputs: ``docs/data/metric_results.json`` (every run's summary and history), ``docs/img/metric_poincare.png``
and the report ``runs/metric_results/results_metric.md`` (commands, seeds, tables, figure; ``--doc`` to change
it), which is copied by hand into the "Metric learning" section of ``docs/results.md``.

Usage::

    python scripts/metric_results.py                 # selection (27 runs) + 5 seeds x 3 methods + 2 picture runs
    python scripts/metric_results.py --seeds 0 1 2
    python scripts/metric_results.py --quick         # smoke test: 1 seed, 1 short epoch, separate output
    python scripts/metric_results.py --set train.amp=fp16 --tag fp16 \\
        --selection-from docs/data/metric_results.json                  # a variant with the main run's lrs

Finished runs are cached in the JSON with a digest of their resolved config; a re-run skips them (``--force``
reruns; do that after library changes: the cache key is the config, not the code, and every record stores the
git commit it ran with). ``--set optim.lr=X`` fixes the lr and skips the selection. Every run uses one
intra-op thread and the CPU.
"""

from __future__ import annotations

import argparse
import io
import json
import math
import platform
import shutil
import sys
import time
from collections.abc import Callable, Sequence
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _report import REPO, code_version, mean_std, pm  # noqa: E402  (the scripts folder's shared helpers)

DEMO = REPO / "configs" / "metric" / "demo"
DEFAULT_OUT = REPO / "docs" / "data" / "metric_results.json"
DEFAULT_RUNS = REPO / "runs" / "metric_results"
DEFAULT_PICTURE = REPO / "docs" / "img" / "metric_poincare.png"
DEFAULT_DOC = DEFAULT_RUNS / "results_metric.md"  # a report to copy into docs/results.md, not a page itself
QUICK_DIR = REPO / "runs" / "metric_results_quick"

METHODS = ("euclidean", "hier", "lhier")
LABELS = {"euclidean": "Euclidean (Proxy-Anchor)", "hier": "HIER (Poincaré ball)", "lhier": "LHIER (Lorentz, ours)"}
SEEDS = (0, 1, 2, 3, 4)
#: Stage 1: the lrs tried, the validation fraction of the 5 training classes, and the selection seeds (each
#: seed holds out a different pair: 0 -> {pullover, coat}, 8 -> {T-shirt, dress}, 11 -> {trouser, coat}).
SELECT_LRS = (1e-3, 3e-3, 1e-2)
VAL_FRACTION = 0.4
SELECT_SEEDS = (0, 8, 11)
BASE_OVERRIDES = ["train.device=cpu", "train.threads=1", "output.progress=false", "output.tensorboard=false"]
QUICK_OVERRIDES = ["train.epochs=1", "data.train_subset=256", "data.eval_subset=200", "train.max_steps_per_epoch=3"]
FASHION_TEST_CLASSES = {5: "sandal", 6: "shirt", 7: "sneaker", 8: "bag", 9: "ankle boot"}


def run_overrides(method: str, seed: int, run_dir: Path, quick: bool, extra: Sequence[str] = ()) -> list[str]:
    return [*BASE_OVERRIDES, f"train.seed={seed}", f"output.dir={run_dir}", *(QUICK_OVERRIDES if quick else []),
            *extra]


def config_digest(cfg) -> str:
    """SHA-256 of the resolved config without its output section: what a cached run must match."""
    import hashlib

    from lorentzcv.train import config_to_dict

    d = config_to_dict(cfg)
    d.pop("output", None)
    return hashlib.sha256(json.dumps(d, sort_keys=True).encode()).hexdigest()[:16]


def pm100(ms: dict | None) -> str:
    """A fraction's ``mean ± std`` in percent."""
    return pm(ms, 100.0)


def _repo_relative(override: str) -> str:
    """``output.dir=/abs/repo/runs/...`` as ``output.dir=runs/...`` (records must not name this machine's paths)."""
    key, _, value = override.partition("=")
    path = Path(value)
    if key == "output.dir" and path.is_absolute() and path.is_relative_to(REPO):
        return f"{key}={path.relative_to(REPO)}"
    return override


def train_one(method: str, seed: int, run_dir: Path, quick: bool, extra: Sequence[str], cache: dict,
              key: str, force: bool, code: dict | None = None, config: Path | None = None) -> dict[str, Any]:
    """Train (or reuse from the cache: same resolved config) one run; returns its record.

    ``config``: the YAML to train (default: the demo config of ``method``; scripts/hierarchy_results.py passes its own).
    """
    from lorentzcv.train import TrainingDivergedError, load_config, train

    config = config or DEMO / f"fashion_mnist_dml_{method}.yaml"
    overrides = run_overrides(method, seed, run_dir, quick, extra)
    cfg = load_config(config, overrides)
    digest = config_digest(cfg)
    old = cache.get(key)
    if old and old.get("config_digest") == digest and old.get("status") in ("ok", "diverged") and not force:
        what = f"R@1 {100 * old['recall']['1']:.2f} %" if old["status"] == "ok" else "diverged"
        print(f"  {key}: cached ({what})", flush=True)
        return old
    if run_dir.exists():  # a stale directory of an earlier or interrupted run: start afresh
        shutil.rmtree(run_dir)
    t0 = time.perf_counter()
    try:
        s = train(cfg, stream=io.StringIO())
    except TrainingDivergedError as exc:  # a result, not a crash: recorded (and cached), left out of the tables
        print(f"  {key}: diverged ({exc})", flush=True)
        return {"status": "diverged", "method": method, "seed": seed, "config": str(config.relative_to(REPO)),
                "overrides": [_repo_relative(o) for o in overrides], "config_digest": digest, "error": str(exc),
                "wall_time": time.perf_counter() - t0, "code": code}
    wall = time.perf_counter() - t0
    history = [json.loads(line) for line in (run_dir / "metrics.jsonl").read_text().splitlines()]
    rec = {"status": "ok", "method": method, "seed": seed, "config": str(config.relative_to(REPO)),
           "overrides": [_repo_relative(o) for o in overrides], "config_digest": digest, "recall": {str(k): v for k, v in s["recall"].items()},
           "map_at_r": s["map_at_r"], "curvatures": s["curvatures"], "train_time": s["train_time"],
           "val_recall": {str(k): v for k, v in s.get("val_recall", {}).items()} or None,
           "val_map_at_r": s.get("val_map_at_r"), "skipped_steps": s["skipped_steps"],
           "wall_time": wall, "run_dir": str(run_dir.relative_to(REPO) if run_dir.is_relative_to(REPO) else run_dir),
           "code": code, "history": history}
    k_text = "".join(f", K {v:.4f}" for v in s["curvatures"].values())
    val = f"  val R@1 {100 * s['val_recall'][1]:.2f} %" if s.get("val_recall") else ""
    print(f"  {key}: R@1 {100 * s['recall'][1]:.2f} %  MAP@R {100 * s['map_at_r']:.2f} %{val}{k_text}  "
          f"({wall:.0f} s)", flush=True)
    return rec


def aggregate(runs: dict[str, dict], seeds: Sequence[int], ks: Sequence[str] = ("1", "2", "4", "8")) -> dict:
    table = {}
    for m in METHODS:
        recs = [runs.get(f"{m}/seed{s}") for s in seeds]
        recs = [r for r in recs if r and r.get("status") == "ok"]
        row = {f"R@{k}": mean_std([r["recall"][k] for r in recs]) for k in ks}
        row["MAP@R"] = mean_std([r["map_at_r"] for r in recs])
        curv = [next(iter(r["curvatures"].values())) for r in recs if r["curvatures"]]
        row["K"] = mean_std(curv) if curv else None
        row["time"] = mean_std([r["wall_time"] for r in recs])
        table[m] = row
    return table


# ----------------------------------------------------------------------------------------------- picture
def _embeddings(run_dir: Path, split: str = "test", limit: int = 2000):
    """Embeddings of ``split`` (``"test"``: the unseen classes; ``"train"``: the training classes, evaluation
    transform; the first ``limit`` images), their class names, the LCAs and the curvature of a finished run
    (its ``last.pt``); ball coordinates scaled to the unit disk (:func:`lorentzcv.plot.run_embeddings`)."""
    from lorentzcv.plot import run_embeddings

    e = run_embeddings(run_dir, split=split, limit=limit, checkpoint="last.pt", spread=False)
    names = [f"{c}: {e.class_names[c]}" if c in e.class_names else str(c) for c in e.labels.tolist()]
    return e.points, names, e.lcas, e.curvature


def _project(points, lcas):
    """Orthogonal projection onto the first two uncentred principal directions of the points."""
    from lorentzcv.plot import project_2d

    return project_2d(points, lcas)


def draw_picture(panels: list[tuple[str, Path, bool]], path: Path) -> None:
    """One column per panel ``(title, run_dir, project)``; top row the training classes, bottom row the unseen
    test classes, both with the run's LCA proxies."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    import numpy as np

    rows = (("train", "training classes"), ("test", "unseen test classes"))
    fig, axes = plt.subplots(len(rows), len(panels), figsize=(4.6 * len(panels), 5.1 * len(rows)), squeeze=False)
    colors = plt.get_cmap("tab10")
    for j, (title, run_dir, project) in enumerate(panels):
        for i, (split, what) in enumerate(rows):
            ax = axes[i, j]
            pts, names, lcas, curv = _embeddings(run_dir, split)
            if project:
                pts, lcas = _project(pts, lcas)
            ax.add_patch(plt.Circle((0, 0), 1.0, fill=False, color="0.3", lw=1.0))
            names_arr = np.array(names)
            for c, name in enumerate(sorted(set(names), key=lambda n: int(n.split(":")[0]))):
                sel = names_arr == name
                ax.scatter(pts[sel, 0], pts[sel, 1], s=3, alpha=0.45, color=colors(c + 5 * (split == "test")),
                           label=name)
            ax.scatter(lcas[:, 0], lcas[:, 1], marker="x", s=20, color="k", lw=0.9, label="LCA proxies")
            ax.set_title(f"{title}\n{what}, K = {curv:.4f}", fontsize=9)
            ax.set_xlim(-1.05, 1.05)
            ax.set_ylim(-1.05, 1.05)
            ax.set_aspect("equal")
            ax.set_xticks([])
            ax.set_yticks([])
            if j == 0:
                ax.legend(loc="upper left", fontsize=7, markerscale=3, framealpha=0.8)
    fig.suptitle("Class-disjoint Fashion-MNIST embeddings and LCA proxies in the Poincaré disk "
                 "(unit radius = coordinates / √k)", fontsize=10)
    fig.tight_layout(rect=(0, 0, 1, 0.96))
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=100)
    plt.close(fig)


# ------------------------------------------------------------------------------------------------- report
def _r1(res: dict, variant: str) -> str:
    r = res["runs"].get(f"{variant}/seed{res['seeds'][0]}")
    return "-" if not r else f"{100 * r['recall']['1']:.1f} %"


def _lr_text(lr: float) -> str:
    return f"{lr:g}"


def selection_table(sel: dict) -> list[str]:
    """Markdown rows: validation Recall@1 of every (method, lr), the selected lr in bold."""
    lrs = sel["lrs"]
    lines = ["| method | " + " | ".join(f"lr {_lr_text(lr)}" for lr in lrs) + " | selected lr |",
             "|---|" + "---|" * (len(lrs) + 1)]
    for m in METHODS:
        row = sel["methods"][m]
        cells = []
        for lr in lrs:
            cell = pm100(row["val_r1"][_lr_text(lr)])
            cells.append(f"**{cell}**" if lr == row["lr"] else cell)
        lines.append(f"| {LABELS[m]} | " + " | ".join(cells) + f" | {_lr_text(row['lr'])} |")
    return lines


def test_table(table: dict) -> list[str]:
    """Markdown rows of the aggregated test retrieval (:func:`aggregate`)."""
    lines = ["| method | R@1 | R@2 | R@4 | R@8 | MAP@R | learned K | time / run |", "|---|---|---|---|---|---|---|---|"]
    for m in METHODS:
        row = table[m]
        k = "–" if not row["K"] else f"{row['K']['mean']:.4f} ± {row['K']['std']:.4f}"
        time_s = "–" if row["time"]["mean"] is None else f"{row['time']['mean']:.0f} s"
        lines.append(f"| {LABELS[m]} | {pm100(row['R@1'])} | {pm100(row['R@2'])} | {pm100(row['R@4'])} | "
                     f"{pm100(row['R@8'])} | {pm100(row['MAP@R'])} | {k} | {time_s} |")
    return lines


def variant_section(path: Path) -> list[str]:
    """A variant's results JSON (a ``--tag`` run) as a short section: its command, test table and paired reading."""
    v = json.loads(path.read_text())
    sets = " ".join(f"--set {o}" for o in v.get("set", []))
    sel = v.get("selection")
    how = (f"the lrs selected above (`--selection-from {sel['from']}`)" if sel and "from" in sel else
           f"`optim.lr={v['fixed_lr']}` for all three methods (no selection)" if "fixed_lr" in v else "its own selection")
    cmd = (f"python scripts/metric_results.py {sets} --tag {path.stem.removeprefix('metric_results_')}"
           + (f" --selection-from {sel['from']}" if sel and "from" in sel else "")
           + f" --seeds {' '.join(map(str, v['seeds']))}")
    return [f"**Variant `{sets}`**, with {how}, seeds {', '.join(map(str, v['seeds']))} (`{cmd}`):", "",
            *test_table(v["table"]), "", "Paired: " + v["reading"].split(": ", 1)[1].split(". On this")[0]
            .split(". Where a line")[0] + ".", ""]


def commits(res: dict) -> str:
    """The git commits the report's runs were trained at (from their records), ``+ changes`` where the library
    differed from it."""
    seen = []
    for r in res["runs"].values():
        code = r.get("code") or {}
        text = str(code.get("commit"))[:8] + (" + uncommitted library changes" if code.get("library_modified") else "")
        if r.get("status") == "ok" and text not in seen:
            seen.append(text)
    return ", ".join(seen) or "unknown"


def markdown(res: dict, picture_rel: str | None, variants: Sequence[Path] = ()) -> str:
    seeds = res["seeds"]
    t = res["table"]
    sel = res.get("selection")
    lrs = {m: (_lr_text(sel["methods"][m]["lr"]) if sel else res.get("fixed_lr", "config")) for m in METHODS}
    lines = [
        "## Metric learning: Euclidean vs HIER vs LHIER (offline demo)",
        "",
        "Small-scale evidence for LHIER (issue #5, `docs/method.md` §7) on offline data: a small CNN (`convnet_small`, width 16)",
        "trained from scratch on **class-disjoint Fashion-MNIST** (`fashion_mnist_dml`: train on T-shirt, trouser,",
        "pullover, dress, coat; retrieve the unseen sandal, shirt, sneaker, bag, ankle boot), a seeded subset of",
        "4,000 training and 2,000 test images, 16-d embeddings, batch 64 (2 images per class), 8 epochs, constant lr,",
        "Proxy-Anchor proxies ×100, 64 LCAs ×50 (20 triplets per anchor), element-wise gradient clamp 10, fp32 on",
        "the CPU. The three configs differ only in the head, the loss, the optimizer and the selected lr:",
        "",
        f"- **Euclidean**: L2-normalised embeddings, Proxy-Anchor only, AdamW, lr {lrs['euclidean']}",
        "  (`configs/metric/demo/fashion_mnist_dml_euclidean.yaml`);",
        f"- **HIER**: Poincaré ball of curvature −0.1 (`ToPoincare`, clip 2.3), Proxy-Anchor + 0.5·HIER, AdamW, lr "
        f"{lrs['hier']}",
        "  (`configs/metric/demo/fashion_mnist_dml_hier.yaml`);",
        "- **LHIER**: Lorentz model with a learnable curvature (k₀ = 10, K₀ = −0.1, curvature lr 1e-2), maximum",
        "  distance rescaling + exp₀, LCAs as `ManifoldParameter`s, Proxy-Anchor + 0.5·LHIER, Riemannian AdamW",
        f"  with the curvature-aware step, lr {lrs['lhier']} (`configs/metric/demo/fashion_mnist_dml_lhier.yaml`).",
        "",
    ]
    if sel:
        lines += [
            "**Learning-rate selection, on validation only.** Each method's lr was chosen from "
            f"{{{', '.join(_lr_text(lr) for lr in sel['lrs'])}}} by its mean last-epoch **validation** Recall@1 "
            f"with `data.val_fraction={sel['val_fraction']}`: 2 of the 5 training classes held out (class-disjoint, "
            "like the test split) and the model trained on the other 3, for seeds "
            f"{', '.join(map(str, sel['seeds']))}, whose held-out pairs are "
            f"{'; '.join(sel['held_out'])}{' (selection reused from ' + sel['from'] + ')' if 'from' in sel else ''}."
            " The test split played no part in it. Validation Recall@1 "
            "(leave-one-out over up to 2,000 held-out images), mean ± std over the selection seeds (%):",
            "",
            *selection_table(sel),
            "",
        ]
    lines += [
        f"Last-epoch test retrieval with the selected lrs, trained on all five training classes (leave-one-out "
        f"over the 2,000 test images), mean ± sample std over seeds {', '.join(map(str, seeds))} (%):",
        "",
        *test_table(t),
    ]
    lines += ["", "Per seed (R@1 / MAP@R, %):", "", "| method | " + " | ".join(f"seed {s}" for s in seeds) + " |",
              "|---|" + "---|" * len(seeds)]
    for m in METHODS:
        cells = []
        for s in seeds:
            r = res["runs"].get(f"{m}/seed{s}")
            cells.append("–" if not r else f"{100 * r['recall']['1']:.2f} / {100 * r['map_at_r']:.2f}")
        lines.append(f"| {LABELS[m]} | " + " | ".join(cells) + " |")
    lines += ["", "**Reading.** " + res.get("reading", ""), ""]
    for path in variants:
        lines += variant_section(path)
    if picture_rel:
        lines += [
            f"![Learned embeddings and LCA proxies in the Poincaré disk]({picture_rel})",
            "",
            "Top row: the training classes (evaluation transform); bottom row: the unseen test classes. Left and",
            "middle: HIER and LHIER retrained with **2-d** embeddings (first seed, otherwise the same configs), so the",
            "disk shows the learned geometry exactly (LHIER's points of H² mapped to the Poincaré disk of the learned",
            "curvature; HIER's ball points, which its clipping keeps within radius tanh(√c·2.3)). Right: the 16-d LHIER",
            "run of the first seed, its Poincaré-ball coordinates projected onto their first two (uncentred) principal",
            "directions — a 2-d view, not an isometry. Crosses: the LCA proxies. Disks scaled to unit radius",
            "(coordinates / √k). With 2-d embeddings Proxy-Anchor's cosine term has only an angle to work with:",
            f"the 2-d runs reach R@1 {_r1(res, 'hier_2d')} (HIER) and {_r1(res, 'lhier_2d')} (LHIER) on the test",
            "classes (a random ranking gives about 20 %; below that, most test points fall on one spot and tied",
            "distances count as misses), so the 2-d panels illustrate the geometry (where points and LCAs sit), not",
            "the 16-d results.",
            "",
        ]
    lines += [
        f"Reproduce (these tables: {res.get('total_time', 0) / 60:.0f} min of training on 2 shared CPU cores, one "
        "thread per run; runs are cached in `docs/data/metric_results.json`):",
        "",
        "```bash",
        f"python scripts/metric_results.py --seeds {' '.join(map(str, seeds))}"
        + "".join(f" --variant {v}" for v in variants) + ("    # after the variants' commands" if variants else ""),
        "lorentzcv train configs/metric/demo/fashion_mnist_dml_lhier.yaml     # one run, with its log",
        "```",
        "",
        f"Environment: {res['env']['python']} · torch {res['env']['torch']} · {res['env']['platform']} · "
        f"{res['env']['date']} · runs made at commit {commits(res)}.",
        "",
    ]
    return "\n".join(lines)


def paired(runs: dict, seeds: Sequence[int], a: str, b: str, metric: str) -> dict[str, Any]:
    """Mean ± std over seeds of the per-seed difference ``a - b`` (same seed: same data subset and sampler)."""
    def val(r: dict) -> float:
        return r["recall"]["1"] if metric == "R@1" else r["map_at_r"]

    diffs = [val(runs[f"{a}/seed{s}"]) - val(runs[f"{b}/seed{s}"]) for s in seeds
             if runs.get(f"{a}/seed{s}", {}).get("status") == "ok" and runs.get(f"{b}/seed{s}", {}).get("status") == "ok"]
    out = mean_std(diffs)
    out["wins"] = sum(d > 0 for d in diffs)
    return out


def reading(runs: dict, seeds: Sequence[int]) -> str:
    """What the numbers show: paired per-seed differences against their spread, written from the runs."""
    parts = []
    for b in ("hier", "euclidean"):
        for metric in ("R@1", "MAP@R"):
            d = paired(runs, seeds, "lhier", b, metric)
            if d["mean"] is None:
                return "Incomplete runs."
            se = d["std"] / math.sqrt(d["n"]) if d["n"] > 1 else float("inf")
            verdict = ("no significant difference" if abs(d["mean"]) <= 2 * se else
                       ("LHIER higher" if d["mean"] > 0 else "LHIER lower"))
            parts.append(f"{metric} LHIER − {LABELS[b].split(' (')[0]}: {100 * d['mean']:+.2f} ± "
                         f"{100 * d['std']:.2f} points per seed (LHIER ahead in {d['wins']}/{d['n']} seeds; "
                         f"{verdict} at ±2 standard errors)")
    verdicts = [p.rsplit("; ", 1)[1] for p in parts]
    if all(v.startswith("no significant") for v in verdicts):
        summary = ("On this small from-scratch problem the differences are within the seed-to-seed spread "
                   "(no significant difference at ±2 standard errors of the paired mean).")
    else:
        summary = ("Where a line says LHIER higher/lower, the paired mean is beyond ±2 standard errors; with "
                   f"{len(seeds)} seeds of a short from-scratch run this is still a small-sample estimate.")
    return ("Paired over seeds (each seed fixes the data subset, the sampler and the initialisation): "
            + "; ".join(parts) + ". " + summary + " This is not a reproduction of the paper's Table 1, which "
            "fine-tunes ImageNet-pretrained backbones on CUB, Cars, SOP and In-Shop (configs/metric/table1/, GPU "
            "runs).")


def _env() -> dict[str, str]:
    import torch

    return {"python": f"Python {platform.python_version()}", "torch": torch.__version__,
            "platform": platform.machine(), "date": datetime.now(timezone.utc).strftime("%Y-%m-%d")}


def held_out_classes(seed: int) -> str:
    """The training classes ``data.val_fraction=VAL_FRACTION`` holds out for ``train.seed=seed`` (names)."""
    from lorentzcv.data import class_holdout

    names = ("T-shirt", "trouser", "pullover", "dress", "coat")
    _, held = class_holdout(list(range(5)), VAL_FRACTION, seed)
    return "{" + ", ".join(names[i] for i in held) + "}"


def val_r1_of(rec: dict[str, Any]) -> float:
    """A selection run's validation Recall@1; 0 for a run that diverged (it retrieves nothing: that lr loses)."""
    return rec["val_recall"]["1"] if rec.get("status") == "ok" else 0.0


def select_lrs(res: dict, run: Any, seeds: Sequence[int],
               held_out: Callable[[int], str] | None = None) -> dict[str, Any]:
    """Stage 1: every (method, lr, seed) with a class-disjoint validation split; the best mean val R@1 per method.

    ``run(method, seed, key, run_subdir, overrides)`` trains (or reuses) one run and returns its record;
    ``held_out(seed)`` names the training classes that seed holds out (default: this demo's,
    :func:`held_out_classes`; ``scripts/hierarchy_results.py`` passes its own).
    """
    held_out = held_out or held_out_classes
    out: dict[str, Any] = {"lrs": list(SELECT_LRS), "seeds": list(seeds), "val_fraction": VAL_FRACTION,
                           "held_out": [f"seed {s}: {held_out(s)}" for s in seeds], "methods": {}}
    for m in METHODS:
        val_r1 = {}
        for lr in SELECT_LRS:
            recs = []
            for seed in seeds:
                key = f"select/{m}/lr{_lr_text(lr)}/seed{seed}"
                recs.append(run(m, seed, key, Path("select") / m / f"lr{_lr_text(lr)}" / f"seed{seed}",
                                [f"optim.lr={lr}", f"data.val_fraction={VAL_FRACTION}"]))
            val_r1[_lr_text(lr)] = mean_std([val_r1_of(r) for r in recs])
        best = max(SELECT_LRS, key=lambda lr: val_r1[_lr_text(lr)]["mean"])  # ties: the first (smallest) lr
        out["methods"][m] = {"lr": best, "val_r1": val_r1}
        print(f"  selected lr for {m}: {_lr_text(best)} (val R@1 {pm100(val_r1[_lr_text(best)])} %)", flush=True)
    return out


def check_configs(selection: dict) -> list[str]:
    """Notes for demo configs whose ``optim.lr`` differs from the selected lr (so ``lorentzcv train`` agrees)."""
    from lorentzcv.train import load_config

    notes = []
    for m, row in selection["methods"].items():
        lr = load_config(DEMO / f"fashion_mnist_dml_{m}.yaml").optim.lr
        if not math.isclose(lr, row["lr"]):
            notes.append(f"note: {DEMO.name}/fashion_mnist_dml_{m}.yaml has optim.lr={lr:g}, the selection chose "
                         f"{row['lr']:g}; update the config so that `lorentzcv train` reproduces the table")
    return notes


def main(argv: Sequence[str] | None = None) -> dict:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--seeds", type=int, nargs="+", default=list(SEEDS))
    p.add_argument("--select-seeds", type=int, nargs="+", default=list(SELECT_SEEDS),
                   help="seeds of the lr selection (each holds out a different pair of training classes)")
    p.add_argument("--quick", action="store_true", help="smoke test: 1 seed, 1 short epoch, separate outputs")
    p.add_argument("--force", action="store_true", help="rerun cached runs")
    p.add_argument("--no-picture", action="store_true", help="skip the 2-d runs and the figure")
    p.add_argument("--out", type=Path, default=None, help="results JSON")
    p.add_argument("--runs-dir", type=Path, default=None, help="where the run directories go")
    p.add_argument("--picture", type=Path, default=None)
    p.add_argument("--doc", type=Path, default=None)
    p.add_argument("--set", action="append", default=[], metavar="KEY=VALUE",
                   help="extra config override for every run (optim.lr=X fixes the lr and skips the selection)")
    p.add_argument("--variant", type=Path, action="append", default=[], metavar="JSON",
                   help="a --tag run's results JSON to add to the report as a variant table (repeatable)")
    p.add_argument("--selection-from", type=Path, default=None, metavar="JSON",
                   help="reuse the lr selection of another results JSON (e.g. the main one for a --tag variant)")
    p.add_argument("--tag", default=None,
                   help="a variant name: outputs go to docs/data/metric_results_TAG.json and runs/metric_results_TAG "
                        "(no figure, report in the runs folder)")
    args = p.parse_args(argv)

    import torch

    torch.set_num_threads(1)
    quick = args.quick
    seeds = args.seeds[:1] if quick else args.seeds
    select_seeds = args.select_seeds[:1] if quick else args.select_seeds
    extra = list(args.set)
    if args.tag:
        base = REPO / "runs" / f"metric_results_{args.tag}"
        out = args.out or REPO / "docs" / "data" / f"metric_results_{args.tag}.json"
        runs_dir, doc = args.runs_dir or base, args.doc or base / "results_metric.md"
        picture = args.picture or base / "metric_poincare.png"
        args.no_picture = args.no_picture or args.picture is None
    else:
        out = args.out or (QUICK_DIR / "results.json" if quick else DEFAULT_OUT)
        runs_dir = args.runs_dir or (QUICK_DIR / "runs" if quick else DEFAULT_RUNS)
        picture = args.picture or (QUICK_DIR / "metric_poincare.png" if quick else DEFAULT_PICTURE)
        doc = args.doc or (QUICK_DIR / "results_metric.md" if quick else DEFAULT_DOC)

    res: dict[str, Any] = {"runs": {}}
    if out.is_file():
        res = json.loads(out.read_text())
    code = code_version()  # taken once: this process keeps the library it imported first
    res.update(seeds=seeds, quick=quick, env=_env(), set=extra, code=code)
    res.pop("selection", None)
    res.pop("fixed_lr", None)

    def save() -> None:
        out.parent.mkdir(parents=True, exist_ok=True)
        out.write_text(json.dumps(res, indent=1) + "\n")

    t0 = time.perf_counter()
    used: list[str] = []

    def run(method: str, seed: int, key: str, subdir: Path, overrides: Sequence[str]) -> dict[str, Any]:
        print(f"[{time.perf_counter() - t0:6.0f} s] {key}", flush=True)
        res["runs"][key] = train_one(method, seed, runs_dir / subdir, quick, [*extra, *overrides], res["runs"], key,
                                     args.force, code)
        used.append(key)
        save()
        return res["runs"][key]

    fixed = next((o.split("=", 1)[1] for o in extra if o.startswith("optim.lr=")), None)
    if fixed is None:
        if args.selection_from is not None:
            res["selection"] = json.loads(args.selection_from.read_text())["selection"]
            res["selection"]["from"] = str(args.selection_from)
        else:
            res["selection"] = select_lrs(res, run, select_seeds)
        save()
        lr_of = {m: [f"optim.lr={res['selection']['methods'][m]['lr']}"] for m in METHODS}
    else:
        res["fixed_lr"] = fixed
        lr_of = {m: [] for m in METHODS}
    for seed in seeds:
        for m in METHODS:
            run(m, seed, f"{m}/seed{seed}", Path(m) / f"seed{seed}", lr_of[m])
    res["table"] = aggregate(res["runs"], seeds)
    res["reading"] = reading(res["runs"], seeds)
    save()

    picture_rel = None
    if not args.no_picture:
        panels = []
        for m in ("hier", "lhier"):
            sub = Path(f"{m}_2d") / f"seed{seeds[0]}"
            run(m, seeds[0], f"{m}_2d/seed{seeds[0]}", sub, [*lr_of[m], "model.embedding_dim=2"])
            panels.append((f"{LABELS[m]}, 2-d embeddings", runs_dir / sub, False))
        panels.append((f"{LABELS['lhier']}, 16-d (2 principal directions)", runs_dir / "lhier" / f"seed{seeds[0]}",
                       True))
        draw_picture(panels, picture)
        # a picture under docs/ is linked as docs/results.md (where the report is copied) sees it
        page = REPO / "docs" if picture.is_relative_to(REPO / "docs") else doc.parent
        picture_rel = str(picture.relative_to(page)) if picture.is_relative_to(page) else str(picture)
    res["total_time"] = sum(res["runs"][key]["wall_time"] for key in used)
    save()
    doc.parent.mkdir(parents=True, exist_ok=True)
    text = markdown(res, picture_rel, args.variant)
    doc.write_text(text)
    print(text)
    if "selection" in res and not quick:
        for note in check_configs(res["selection"]):
            print(note)
    print(f"total {time.perf_counter() - t0:.0f} s; results: {out}; report: {doc}"
          + (f"; figure: {picture}" if picture_rel else ""))
    return res


if __name__ == "__main__":
    main(sys.argv[1:])
