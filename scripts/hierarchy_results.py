"""Hierarchy-aware retrieval (issue #11 item 6): Euclidean vs HIER vs LHIER on Fashion-MNIST superclasses.

Trains ``configs/metric/hierarchy/fashion_mnist_hier_{euclidean,hier,lhier}.yaml`` (the demo configs' small CNN,
16-d embeddings, 8 epochs, 4,000 training / 2,000 test images, on ``fashion_mnist_hier``: superclasses tops /
bottoms / footwear / bags, training classes T-shirt, trouser, pullover, dress, sandal; test classes coat, shirt
(tops), sneaker, ankle boot (footwear), bag) through the public API, with :func:`metric_results.train_one` (same
run records and cache), in two stages:

1. **Learning-rate selection on a class-disjoint validation split only** (:func:`metric_results.select_lrs`):
   for every method and every lr in ``metric_results.SELECT_LRS``, train with ``data.val_fraction=0.4`` (2 of the 5 training classes held out, the model trained
   on the other 3) for the fold seeds ``SELECT_SEEDS`` (seed 0 holds out {pullover, sandal}: two superclasses;
   seed 8 holds out {T-shirt, dress}: two classes of one superclass, like the test's coat/shirt); each method
   gets the lr with the highest mean last-epoch validation class Recall@1. The test split plays no part.
2. **Test**: each method with its selected lr on all five training classes for the seeds ``SEEDS`` (seed-major, so
   an interrupted grid still has complete seeds); last-epoch test class Recall@K, superclass Recall@K, MAP@R,
   the mean LCA depth of top-1 mistakes and the fraction of mistakes within the superclass
   (:func:`lorentzcv.metric.hierarchy_metrics`), as mean ± sample std over seeds, per seed, and paired per-seed
   differences LHIER − HIER and LHIER − Euclidean.

Outputs: ``docs/data/hierarchy_results.json`` (rewritten after every run; every run's record with its history)
and the report ``runs/hierarchy_results/results_hierarchy.md`` (printed too), from which
``docs/hierarchy_retrieval.md`` takes its tables.

Usage::

    python scripts/hierarchy_results.py                    # selection (18 runs) + 5 seeds x 3 methods
    python scripts/hierarchy_results.py --seeds 0 1 2
    python scripts/hierarchy_results.py --quick            # smoke test: 1 seed, 1 short epoch, separate output

Finished runs are cached in the JSON by the digest of their resolved config (``--force`` reruns). Every run uses
one intra-op thread and the CPU.
"""

from __future__ import annotations

import argparse
import json
import math
import sys
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent))
import metric_results as mr  # noqa: E402  (run records, cache, lr text, environment)
from _report import REPO, code_version, mean_std, pm  # noqa: E402

CONFIGS = REPO / "configs" / "metric" / "hierarchy"
DEFAULT_OUT = REPO / "docs" / "data" / "hierarchy_results.json"
DEFAULT_RUNS = REPO / "runs" / "hierarchy_results"
DEFAULT_DOC = DEFAULT_RUNS / "results_hierarchy.md"
QUICK_DIR = REPO / "runs" / "hierarchy_results_quick"

METHODS = mr.METHODS
LABELS = mr.LABELS
SEEDS = (0, 1, 2, 3, 4)
VAL_FRACTION = mr.VAL_FRACTION  # the selection's: 2 of the 5 training classes held out
#: Fold seeds of the selection: seed 0 holds out {pullover, sandal}, seed 8 {T-shirt, dress}.
SELECT_SEEDS = (0, 8)
TRAIN_CLASS_NAMES = ("T-shirt", "trouser", "pullover", "dress", "sandal")  # fashion_mnist_hier labels 0..4
KS = ("1", "2", "4", "8")
#: Table columns: (record key, header); fractions shown in percent.
COLUMNS = (
    *((f"R@{k}", f"R@{k}") for k in KS),
    *((f"SR@{k}", f"super R@{k}") for k in KS),
    ("MAP@R", "MAP@R"),
    ("mistake_depth", "LCA depth of mistakes"),
    ("mistake_in_super", "mistakes in superclass"),
)
PAIRED = ("R@1", "SR@1", "SR@2", "MAP@R", "mistake_depth")


def config_path(method: str) -> Path:
    return CONFIGS / f"fashion_mnist_hier_{method}.yaml"


def metrics_of(rec: dict[str, Any]) -> dict[str, float | None]:
    """The test figures of a run record: class R@K, MAP@R and the hierarchy metrics of its last logged row."""
    last = rec["history"][-1]
    out: dict[str, float | None] = {f"R@{k}": rec["recall"][k] for k in KS}
    out["MAP@R"] = rec["map_at_r"]
    for key in (*(f"SR@{k}" for k in KS), "mistake_rate", "mistake_depth", "mistake_in_super"):
        out[key] = last.get(key)
    return out


def held_out_classes(seed: int) -> str:
    """The training classes ``data.val_fraction=VAL_FRACTION`` holds out for ``train.seed=seed`` (names)."""
    from lorentzcv.data import class_holdout

    _, held = class_holdout(list(range(5)), VAL_FRACTION, seed)
    return "{" + ", ".join(TRAIN_CLASS_NAMES[i] for i in held) + "}"


def aggregate(runs: dict[str, dict], seeds: Sequence[int]) -> dict[str, dict[str, Any]]:
    table = {}
    for m in METHODS:
        recs = [runs.get(f"{m}/seed{s}") for s in seeds]
        recs = [r for r in recs if r and r.get("status") == "ok"]
        vals = [metrics_of(r) for r in recs]
        row = {
            key: mean_std([v[key] for v in vals if v[key] is not None and not math.isnan(v[key])]) for key, _ in COLUMNS
        }
        row["mistake_rate"] = mean_std([v["mistake_rate"] for v in vals])
        curv = [next(iter(r["curvatures"].values())) for r in recs if r["curvatures"]]
        row["K"] = mean_std(curv) if curv else None
        row["time"] = mean_std([r["wall_time"] for r in recs])
        table[m] = row
    return table


def paired(runs: dict, seeds: Sequence[int], a: str, b: str, key: str) -> dict[str, Any]:
    """Mean ± std over seeds of the per-seed difference ``a - b`` of ``key`` (same seed: same data and sampler)."""
    diffs = []
    for s in seeds:
        ra, rb = runs.get(f"{a}/seed{s}"), runs.get(f"{b}/seed{s}")
        if ra and rb and ra.get("status") == rb.get("status") == "ok":
            va, vb = metrics_of(ra)[key], metrics_of(rb)[key]
            if va is not None and vb is not None and not (math.isnan(va) or math.isnan(vb)):
                diffs.append(va - vb)
    out = mean_std(diffs)
    out["wins"] = sum(d > 0 for d in diffs)
    return out


def verdict(d: dict[str, Any]) -> str:
    """``higher``/``lower`` when the paired mean is beyond ±2 standard errors, else ``n.s.``."""
    if d["mean"] is None or d["n"] < 2:
        return "n/a"
    se = d["std"] / math.sqrt(d["n"])
    return "n.s." if abs(d["mean"]) <= 2 * se else ("higher" if d["mean"] > 0 else "lower")


# ------------------------------------------------------------------------------------------------- report
def selection_table(sel: dict) -> list[str]:
    lrs = sel["lrs"]
    lines = [
        "| method | " + " | ".join(f"lr {mr._lr_text(lr)}" for lr in lrs) + " | selected lr |",
        "|---|" + "---|" * (len(lrs) + 1),
    ]
    for m in METHODS:
        row = sel["methods"][m]
        cells = []
        for lr in lrs:
            cell = pm(row["val_r1"][mr._lr_text(lr)], 100.0)
            cells.append(f"**{cell}**" if lr == row["lr"] else cell)
        lines.append(f"| {LABELS[m]} | " + " | ".join(cells) + f" | {mr._lr_text(row['lr'])} |")
    return lines


def test_table(table: dict) -> list[str]:
    head = [h for _, h in COLUMNS]
    lines = ["| method | " + " | ".join(head) + " | learned K | time / run |", "|---|" + "---|" * (len(head) + 2)]
    for m in METHODS:
        row = table[m]
        k = "–" if not row["K"] else f"{row['K']['mean']:.4f} ± {row['K']['std']:.4f}"
        cells = [
            pm(row[key], 1.0 if key == "mistake_depth" else 100.0, 3 if key == "mistake_depth" else 2)
            for key, _ in COLUMNS
        ]
        t = "–" if row["time"]["mean"] is None else f"{row['time']['mean']:.0f} s"
        lines.append(f"| {LABELS[m]} | " + " | ".join(cells) + f" | {k} | {t} |")
    return lines


def per_seed_table(res: dict) -> list[str]:
    seeds = res["seeds"]
    lines = ["| method | " + " | ".join(f"seed {s}" for s in seeds) + " |", "|---|" + "---|" * len(seeds)]
    for m in METHODS:
        cells = []
        for s in seeds:
            r = res["runs"].get(f"{m}/seed{s}")
            if not r:
                cells.append("–")
                continue
            v = metrics_of(r)
            depth = "–" if v["mistake_depth"] is None else f"{v['mistake_depth']:.3f}"
            cells.append(f"{100 * v['R@1']:.2f} / {100 * v['SR@1']:.2f} / {100 * v['MAP@R']:.2f} / {depth}")
        lines.append(f"| {LABELS[m]} | " + " | ".join(cells) + " |")
    return lines


def paired_table(res: dict) -> list[str]:
    seeds = res["seeds"]
    lines = ["| metric | LHIER − HIER | LHIER − Euclidean |", "|---|---|---|"]
    for key in PAIRED:
        scale, unit = (1.0, "") if key == "mistake_depth" else (100.0, " pts")
        cells = []
        for b in ("hier", "euclidean"):
            d = paired(res["runs"], seeds, "lhier", b, key)
            if d["mean"] is None:
                cells.append("–")
                continue
            cells.append(
                f"{scale * d['mean']:+.{3 if scale == 1 else 2}f} ± {scale * d['std']:.{3 if scale == 1 else 2}f}"
                f"{unit} ({d['wins']}/{d['n']} seeds ahead; {verdict(d)})"
            )
        name = dict(COLUMNS).get(key, key)
        lines.append(f"| {name} | " + " | ".join(cells) + " |")
    return lines


def markdown(res: dict) -> str:
    seeds = res["seeds"]
    sel = res.get("selection")
    lines = ["## Hierarchy-aware retrieval on fashion_mnist_hier", ""]
    if sel:
        lines += [
            "Learning rate selected per method from "
            f"{{{', '.join(mr._lr_text(lr) for lr in sel['lrs'])}}} by mean last-epoch **validation** class Recall@1 "
            f"(`data.val_fraction={sel['val_fraction']}`, folds {'; '.join(sel['held_out'])}; the model trained on "
            "the other 3 training classes). The test split played no part. Validation R@1, mean ± std over the "
            "folds (%):",
            "",
            *selection_table(sel),
            "",
        ]
    lines += [
        f"Last-epoch test retrieval (leave-one-out over the 2,000 test images), mean ± sample std over seeds "
        f"{', '.join(map(str, seeds))}; R@K, superclass R@K, MAP@R and mistakes in superclass in %, LCA depth of "
        "top-1 mistakes in [0, 1]:",
        "",
        *test_table(res["table"]),
        "",
        "Per seed (class R@1 / superclass R@1 / MAP@R in %, LCA depth of mistakes):",
        "",
        *per_seed_table(res),
        "",
        'Paired per-seed differences (mean ± std over seeds; "higher"/"lower" = beyond ±2 standard errors of the '
        'paired mean, "n.s." = within):',
        "",
        *paired_table(res),
        "",
        f"Training time of these tables: {res.get('total_time', 0) / 60:.0f} min on 2 shared CPU cores, one thread per "
        f"run. Environment: {res['env']['python']} · torch {res['env']['torch']} · {res['env']['platform']} · "
        f"{res['env']['date']} · runs made at commit {mr.commits(res)}.",
        "",
    ]
    return "\n".join(lines)


# ------------------------------------------------------------------------------------------------- main
def main(argv: Sequence[str] | None = None) -> dict:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--seeds", type=int, nargs="+", default=list(SEEDS))
    p.add_argument("--select-seeds", type=int, nargs="+", default=list(SELECT_SEEDS))
    p.add_argument("--quick", action="store_true", help="smoke test: 1 seed, 1 short epoch, separate outputs")
    p.add_argument("--force", action="store_true", help="rerun cached runs")
    p.add_argument("--out", type=Path, default=None, help="results JSON")
    p.add_argument("--runs-dir", type=Path, default=None, help="where the run directories go")
    p.add_argument("--doc", type=Path, default=None, help="markdown report")
    p.add_argument("--set", action="append", default=[], metavar="KEY=VALUE", help="extra override for every run")
    args = p.parse_args(argv)

    import torch

    torch.set_num_threads(1)
    quick = args.quick
    seeds = args.seeds[:1] if quick else args.seeds
    select_seeds = args.select_seeds[:1] if quick else args.select_seeds
    out = args.out or (QUICK_DIR / "results.json" if quick else DEFAULT_OUT)
    runs_dir = args.runs_dir or (QUICK_DIR / "runs" if quick else DEFAULT_RUNS)
    doc = args.doc or (QUICK_DIR / "results_hierarchy.md" if quick else DEFAULT_DOC)
    extra = list(args.set)

    res: dict[str, Any] = {"runs": {}}
    if out.is_file():
        res = json.loads(out.read_text())
    code = code_version()
    res.update(seeds=seeds, quick=quick, env=mr._env(), set=extra, code=code)

    def save() -> None:
        out.parent.mkdir(parents=True, exist_ok=True)
        out.write_text(json.dumps(res, indent=1) + "\n")

    t0 = time.perf_counter()
    used: list[str] = []

    def run(method: str, seed: int, key: str, subdir: Path, overrides: Sequence[str]) -> dict[str, Any]:
        print(f"[{time.perf_counter() - t0:6.0f} s] {key}", flush=True)
        rec = mr.train_one(
            method,
            seed,
            runs_dir / subdir,
            quick,
            [*extra, *overrides],
            res["runs"],
            key,
            args.force,
            code,
            config=config_path(method),
        )
        res["runs"][key] = rec
        used.append(key)
        save()
        return rec

    sel = mr.select_lrs(res, run, select_seeds, held_out=held_out_classes)
    res["selection"] = sel
    save()

    for seed in seeds:  # seed-major: an interrupted grid leaves complete seeds
        for m in METHODS:
            run(m, seed, f"{m}/seed{seed}", Path(m) / f"seed{seed}", [f"optim.lr={sel['methods'][m]['lr']}"])
            res["table"] = aggregate(res["runs"], seeds)
            save()
    res["total_time"] = sum(res["runs"][key]["wall_time"] for key in used)
    save()
    text = markdown(res)
    doc.parent.mkdir(parents=True, exist_ok=True)
    doc.write_text(text)
    print(text)
    print(f"total {time.perf_counter() - t0:.0f} s; results: {out}; report: {doc}")
    return res


if __name__ == "__main__":
    main(sys.argv[1:])
