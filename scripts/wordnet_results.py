"""WordNet closure reconstruction on the Lorentz manifold: the grid of ``docs/wordnet.md``, cached and tabulated.

Embeds the transitive closure of a WordNet 3.0 hierarchy (``lorentzcv.data.wordnet``; Debian's ``wordnet-base``):
the mammal subtree (``--dataset mammals``, the default), the verbs (``verbs``) or all nouns (``nouns``), with
``lorentzcv.graph`` for every dimension x optimizer x curvature (fixed ``k = 1`` or learned) x seed, evaluates
reconstruction mean rank and MAP (``lorentzcv.graph.reconstruction_metrics``) over the directed pairs (each node's
ancestors, as N&K's evaluation code) and over both directions (ancestors and descendants, the "undirected
closure" of N&K 2018's text), and caches each run in ``docs/data/wordnet_results.json`` as soon as it finishes (a
re-run trains only what is missing). Prints the markdown table of ``docs/wordnet.md``.

    python scripts/wordnet_results.py                      # the mammal grid of docs/wordnet.md
    python scripts/wordnet_results.py --dataset verbs      # the verb grid
    python scripts/wordnet_results.py --table              # only print the table from the cache
    python scripts/wordnet_results.py --estimate-nouns     # time a few batches on all nouns (no training run)
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import statistics
import sys
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import torch

REPO = Path(__file__).resolve().parents[1]
if str(REPO) not in sys.path:
    sys.path.insert(0, str(REPO))

from lorentzcv.data import wordnet as wn  # noqa: E402
from lorentzcv.graph import (  # noqa: E402
    LorentzEmbedding,
    TrainConfig,
    reconstruction_metrics,
    train_embedding,
)

OUT = REPO / "docs" / "data" / "wordnet_results.json"
#: Synsets N&K's mammal script drops (the anchored part of its filter that takes effect, see docs/wordnet.md).
NK_MAMMAL_EXCLUDE = ("tusker.n.01", "female_mammal.n.01")
#: Learning rates of the points per optimizer (mean loss over a batch of 256 pairs) and of the curvature k
#: (RAdamW's k step is ~lr whatever the gradient's size, so it gets a smaller one).
LR = {"rsgd": 30.0, "radamw": 0.01}
CURVATURE_LR = {"rsgd": 1e-2, "radamw": 1e-3}


DATASETS = ("mammals", "verbs", "nouns")


def dataset_graph(dataset: str, root: str | None = None) -> wn.ClosureGraph:
    """The closure of ``dataset``: the N&K mammal subtree, or the whole verb or noun hierarchy."""
    if dataset not in DATASETS:
        raise ValueError(f"dataset must be one of {DATASETS}, got {dataset!r}")
    h = wn.load_wordnet(root, pos="verb" if dataset == "verbs" else "noun")
    if dataset != "mammals":
        return wn.closure(h.synsets, names=h.names)
    present = set(h.names.values())
    exclude = [h.offset(n) for n in NK_MAMMAL_EXCLUDE if n in present]
    return wn.subtree(h.synsets, h.offset("mammal.n.01"), names=h.names, exclude=exclude)


def run_key(dataset: str, dim: int, opt: str, curv: str, seed: int, epochs: int) -> str:
    return f"{dataset}/dim{dim}/{opt}/{curv}/seed{seed}/epochs{epochs}"


def evaluate(
    model: LorentzEmbedding, edges: torch.Tensor, num_nodes: int, sources: torch.Tensor | None = None
) -> dict[str, float]:
    """Mean rank and MAP over the directed pairs and over both directions (``*_undirected``); with ``sources``,
    over the pairs starting at those nodes only (a uniform sample of nodes gives unbiased estimates of the MAP
    and of the mean rank per pair, the latter as a ratio of sums)."""

    def metrics(pairs: torch.Tensor) -> dict[str, float]:
        if sources is not None:
            pairs = pairs[torch.isin(pairs[:, 0], sources)]
        return reconstruction_metrics(model.distances_from, pairs, num_nodes)

    directed = metrics(edges)
    both = metrics(torch.cat([edges, edges.flip(1)]))
    return {
        "mean_rank": directed["mean_rank"],
        "map": directed["map"],
        "mean_rank_undirected": both["mean_rank"],
        "map_undirected": both["map"],
    }


def train_one(
    graph: wn.ClosureGraph,
    dim: int,
    opt: str,
    curv: str,
    seed: int,
    epochs: int,
    eval_every: int,
    dataset: str = "mammals",
    sparse: bool = False,
    eval_sources: int = 0,
) -> dict[str, Any]:
    torch.manual_seed(seed)
    edges = torch.tensor(graph.edges)
    model = LorentzEmbedding(
        graph.num_nodes, dim, learn_k=curv == "learned", generator=torch.Generator().manual_seed(seed)
    )
    cfg = TrainConfig(
        epochs=epochs,
        batch_size=256,
        num_negatives=50,
        optimizer=opt,
        lr=LR[opt],
        burnin_epochs=10,
        burnin_factor=0.1,
        curvature_lr=CURVATURE_LR[opt],
        seed=seed,
        sparse=sparse and opt == "rsgd" and curv == "fixed",
    )
    evals: list[dict[str, Any]] = []
    sample = None
    if eval_sources:  # the same nodes at every evaluation, whatever the training seed
        sample = torch.randperm(graph.num_nodes, generator=torch.Generator().manual_seed(0))[:eval_sources]

    def cb(epoch: int, loss: float, m: LorentzEmbedding) -> None:
        if epoch % eval_every == 0 or epoch == epochs:
            r = evaluate(m, edges, graph.num_nodes, sample)
            evals.append({"epoch": epoch, "loss": loss, **r, "k": float(m.manifold.k.detach())})
            print(
                f"  epoch {epoch}: loss {loss:.4f} mean rank {r['mean_rank']:.3f} MAP {r['map']:.4f} "
                f"(undirected {r['mean_rank_undirected']:.3f} / {r['map_undirected']:.4f}) k {evals[-1]['k']:.4g}",
                flush=True,
            )

    t0 = time.perf_counter()
    hist = train_embedding(model, edges, cfg, callback=cb)
    seconds = time.perf_counter() - t0
    x = model.weight.detach()
    k = model.manifold.k.detach()
    on_manifold = float(((-(x[:, 0] ** 2) + (x[:, 1:] ** 2).sum(-1) + k).abs() / (k + x[:, 0] ** 2)).max())
    final = evals[-1]
    return {
        "dataset": dataset,
        "dim": dim,
        "optimizer": opt,
        "curvature": curv,
        "seed": seed,
        "epochs": epochs,
        "nodes": graph.num_nodes,
        "edges": graph.num_edges,
        "eval_sources": eval_sources or graph.num_nodes,
        "config": {**cfg.__dict__, "init_scale": 1e-3, "dtype": "float64", "k0": 1.0},
        "mean_rank": final["mean_rank"],
        "map": final["map"],
        "mean_rank_undirected": final["mean_rank_undirected"],
        "map_undirected": final["map_undirected"],
        "k": final["k"],
        "K": -1.0 / final["k"],
        "best_mean_rank": min(e["mean_rank"] for e in evals),
        "best_map": max(e["map"] for e in evals),
        "final_loss": hist[-1]["loss"],
        "max_rel_constraint_error": on_manifold,
        "train_seconds": seconds,
        "evals": evals,
    }


def load(path: Path) -> dict[str, Any]:
    return json.loads(path.read_text()) if path.is_file() else {"runs": {}}


def save(res: dict[str, Any], path: Path) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_suffix(".json.tmp")
    tmp.write_text(json.dumps(res, indent=1, sort_keys=True) + "\n")
    os.replace(tmp, path)


def _ms(vals: list[float], digits: int) -> str:
    if not vals:
        return "–"
    if len(vals) == 1:
        return f"{vals[0]:.{digits}f}"
    return f"{statistics.fmean(vals):.{digits}f} ± {statistics.stdev(vals):.{digits}f}"


def table(res: dict[str, Any], epochs: int, dataset: str = "mammals") -> str:
    runs = [r for r in res["runs"].values() if r["epochs"] == epochs and r.get("dataset", "mammals") == dataset]
    lines = [
        "| dim | optimizer | curvature | seeds | mean rank | MAP | best of evals: mean rank / MAP "
        "| both directions: mean rank / MAP | final k (K = -1/k) | train s/run |",
        "|---|---|---|---|---|---|---|---|---|---|",
    ]
    keys = sorted(
        {(r["dim"], r["optimizer"], r["curvature"]) for r in runs},
        key=lambda t: (t[0], t[1] != "rsgd", t[2] != "fixed"),
    )
    for dim, opt, curv in keys:
        rs = sorted(
            (r for r in runs if (r["dim"], r["optimizer"], r["curvature"]) == (dim, opt, curv)), key=lambda r: r["seed"]
        )
        k = _ms([r["k"] for r in rs], 3)
        kk = _ms([r["K"] for r in rs], 3)
        lines.append(
            f"| {dim} | {opt} | {curv} | {','.join(str(r['seed']) for r in rs)} | "
            f"{_ms([r['mean_rank'] for r in rs], 2)} | {_ms([r['map'] for r in rs], 3)} | "
            f"{_ms([r['best_mean_rank'] for r in rs], 2)} / {_ms([r['best_map'] for r in rs], 3)} | "
            f"{_ms([r['mean_rank_undirected'] for r in rs if 'mean_rank_undirected' in r], 2)} / "
            f"{_ms([r['map_undirected'] for r in rs if 'map_undirected' in r], 3)} | {k} ({kk}) | {statistics.fmean(r['train_seconds'] for r in rs):.0f} |"
        )
    return "\n".join(lines)


def estimate_nouns(root: str | None, batches: int, dim: int = 10) -> dict[str, Any]:
    """Time ``batches`` RSGD steps (dense and sparse) and one evaluation block on the full noun closure.

    A step's cost does not depend on how many pairs an epoch has, so one epoch of ``train_embedding`` over
    ``batches`` batches of the closure's pairs times it; the per-epoch and per-run figures are extrapolated.
    """
    g = dataset_graph("nouns", root)
    edges = torch.tensor(g.edges)
    subset = edges[torch.randperm(len(edges), generator=torch.Generator().manual_seed(0))[: 256 * batches]]
    step_seconds = {}
    for mode in ("dense", "sparse"):
        model = LorentzEmbedding(g.num_nodes, dim, generator=torch.Generator().manual_seed(0))
        cfg = TrainConfig(epochs=1, batch_size=256, lr=LR["rsgd"], burnin_epochs=0, sparse=mode == "sparse")
        t0 = time.perf_counter()
        train_embedding(model, subset, cfg)
        step_seconds[mode] = (time.perf_counter() - t0) / batches
    src = torch.arange(256)
    t0 = time.perf_counter()
    reconstruction_metrics(model.distances_from, edges[torch.isin(edges[:, 0], src)], g.num_nodes, block_size=256)
    block = time.perf_counter() - t0
    steps_per_epoch = -(-len(edges) // 256)
    return {
        "nodes": g.num_nodes,
        "edges": g.num_edges,
        "dim": dim,
        "batch_size": 256,
        "timed_batches": batches,
        "seconds_per_step": step_seconds,
        "steps_per_epoch": steps_per_epoch,
        "seconds_per_epoch_estimate": {m: t * steps_per_epoch for m, t in step_seconds.items()},
        "seconds_per_eval_block_of_256_sources": block,
        "seconds_per_full_eval_estimate": block * g.num_nodes / 256,
    }


def main(argv: Sequence[str] | None = None) -> dict[str, Any]:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--dataset", default="mammals", choices=DATASETS, help="which closure to embed")
    p.add_argument("--dims", type=int, nargs="+", default=[2, 5, 10])
    p.add_argument("--optimizers", nargs="+", default=["rsgd", "radamw"], choices=["rsgd", "radamw"])
    p.add_argument("--curvatures", nargs="+", default=["fixed", "learned"], choices=["fixed", "learned"])
    p.add_argument("--seeds", type=int, nargs="+", default=[0])
    p.add_argument("--epochs", type=int, default=300)
    p.add_argument("--eval-every", type=int, default=50)
    p.add_argument("--out", type=Path, default=OUT)
    p.add_argument("--wordnet-root", default=None, help="folder with data.noun/.verb (default: /usr/share/wordnet)")
    p.add_argument("--threads", type=int, default=1)
    p.add_argument(
        "--eval-sources",
        type=int,
        default=0,
        metavar="N",
        help="evaluate on the pairs of N nodes drawn uniformly (seed 0) instead of all nodes (0: all)",
    )
    p.add_argument(
        "--sparse",
        action="store_true",
        help="step only the rows a batch touches in the fixed-k RSGD cells (the same result as the dense step)",
    )
    p.add_argument("--table", action="store_true", help="only print the table of the cached runs")
    p.add_argument("--force", action="store_true", help="rerun cached runs")
    p.add_argument(
        "--merge-from", type=Path, default=None, help="copy the runs (and closure sizes, estimate) cached in this JSON"
    )
    p.add_argument(
        "--estimate-nouns",
        type=int,
        default=0,
        metavar="BATCHES",
        help="time this many batches on the full noun closure and cache the estimate",
    )
    args = p.parse_args(argv)
    torch.set_num_threads(args.threads)
    res = load(args.out)
    if args.merge_from is not None:
        other = load(args.merge_from)
        res["runs"].update(other["runs"])
        res.update({key: other[key] for key in (*DATASETS, "nouns_estimate") if key in other})
        save(res, args.out)
    if args.estimate_nouns:
        est = estimate_nouns(args.wordnet_root, args.estimate_nouns)
        est["host"] = {"threads": args.threads, "machine": platform.machine(), "torch": torch.__version__}
        res["nouns_estimate"] = est
        save(res, args.out)
        print(json.dumps(est, indent=1))
        return res
    if not args.table:
        graph = dataset_graph(args.dataset, args.wordnet_root)
        res[args.dataset] = {"nodes": graph.num_nodes, "edges": graph.num_edges}
        if args.dataset == "mammals":
            res[args.dataset]["exclude"] = list(NK_MAMMAL_EXCLUDE)
        print(f"{args.dataset} closure: {graph.num_nodes} nodes, {graph.num_edges} pairs", flush=True)
        for dim in args.dims:
            for opt in args.optimizers:
                for curv in args.curvatures:
                    for seed in args.seeds:
                        key = run_key(args.dataset, dim, opt, curv, seed, args.epochs)
                        if key in res["runs"] and not args.force:
                            continue
                        print(f"{key}", flush=True)
                        res["runs"][key] = train_one(
                            graph,
                            dim,
                            opt,
                            curv,
                            seed,
                            args.epochs,
                            args.eval_every,
                            args.dataset,
                            args.sparse,
                            args.eval_sources,
                        )
                        res["runs"][key]["host"] = {"threads": args.threads, "torch": torch.__version__}
                        save(res, args.out)
    print(table(res, args.epochs, args.dataset))
    return res


if __name__ == "__main__":
    main()
