"""The report scripts (``scripts/classification_results.py``, ``scripts/plot_classification.py``, the metric,
hierarchy and WordNet scripts): a tiny ``--quick`` run of every experiment, the cache (a re-run trains nothing),
the tables and the figures."""

from __future__ import annotations

import importlib.util
import json
import math
import sys
from pathlib import Path

import pytest
import torch

REPO = Path(__file__).resolve().parents[1]


def _load(name: str):
    spec = importlib.util.spec_from_file_location(f"_scripts_{name}", REPO / "scripts" / f"{name}.py")
    mod = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = mod  # dataclasses look their module up there
    spec.loader.exec_module(mod)
    return mod


@pytest.fixture(autouse=True)
def _one_thread():
    n = torch.get_num_threads()
    yield
    torch.set_num_threads(n)


@pytest.fixture(scope="module")
def results_mod():
    return _load("classification_results")


def test_mean_std_and_convergence(results_mod):
    ms = results_mod.mean_std([0.9, 0.95, 1.0])
    assert ms["n"] == 3 and math.isclose(ms["mean"], 0.95) and math.isclose(ms["std"], 0.05)
    assert results_mod.mean_std([0.5]) == {"mean": 0.5, "std": 0.0, "n": 1}
    assert results_mod.mean_std([None]) == {"mean": None, "std": None, "n": 0}
    hist = [{"epoch": 1, "train_loss": 1.0, "test_acc": 0.5}, {"epoch": 2, "train_loss": 0.2, "test_acc": 0.96},
            {"epoch": 3, "train_loss": 0.04, "test_acc": 0.95}, {"epoch": 4, "train_loss": 0.01, "test_acc": 0.97}]
    # 99 % of the last-epoch accuracy 0.97 is 0.9603: first reached at epoch 4 (0.96 at epoch 2 is just below)
    assert results_mod.convergence_epochs(hist, 0.05, 0.99) == {"epochs_to_loss": 3, "epochs_to_acc": 4}
    assert results_mod.convergence_epochs(hist, 0.001, 0.98) == {"epochs_to_loss": None, "epochs_to_acc": 2}


def test_overrides_order(results_mod):
    v = results_mod.VARIANTS["bf16_norescale"]
    ov = results_mod.run_overrides(v, 7, quick=True, extra=["train.epochs=1"])
    assert ov[: len(results_mod.BASE_OVERRIDES)] == results_mod.BASE_OVERRIDES
    assert ov.index("model.width=8") < ov.index("train.amp=bf16") < ov.index("train.seed=7")
    assert ov[-1] == "train.epochs=1"
    from lorentzcv.train import load_config

    cfg = load_config(None, ov)
    assert (cfg.train.amp, cfg.model.rescale, cfg.model.width, cfg.train.epochs, cfg.train.seed) == \
        ("bf16", False, 8, 1, 7)


TINY = ["train.epochs=1", "data.train_subset=48", "data.eval_subset=32", "data.batch_size=16",
        "train.max_steps_per_epoch=2", "model.width=4"]


def _check_run(rec, manifolds):
    assert rec["status"] == "ok" and len(rec["history"]) == 1 and 0.0 <= rec["test_acc"] <= 1.0
    assert rec["overrides"][-len(TINY):] == TINY
    assert set(rec["curvatures"]) == set(manifolds)
    assert all(f"K/{m}" in rec["history"][0] for m in manifolds)


def test_quick_run_cache_and_plots(results_mod, tmp_path, monkeypatch, capsys):
    """Two variants (the ``optim`` experiment), the cache, and both figures."""
    monkeypatch.setattr(results_mod, "QUICK_OVERRIDES", TINY)
    out, runs = tmp_path / "res.json", tmp_path / "runs"
    argv = ["--quick", "--only", "optim", "--out", str(out), "--runs-dir", str(runs)]
    res = results_mod.main(argv)
    assert sorted(res["runs"]) == ["hecnn/seed1", "hecnn_radamw/seed1"]
    saved = json.loads(out.read_text())
    assert saved["runs"] == res["runs"] and saved["meta"]["quick"] and saved["meta"]["seeds"] == [1]
    for key in res["runs"]:
        _check_run(saved["runs"][key], ["encoder_manifold", "decoder_manifold"])
    assert "optim.name=radamw" in saved["runs"]["hecnn_radamw/seed1"]["overrides"]
    # tables of every experiment that has runs (hecnn also feeds models, curvature, trajectory, convergence)
    rows = {e: [r["variant"] for r in t["rows"]] for e, t in saved["tables"].items()}
    assert rows["optim"] == ["hecnn", "hecnn_radamw"] and rows["models"] == ["hecnn"] and rows["precision"] == []
    traj = saved["tables"]["trajectory"]["rows"][0]["trajectory"]
    assert len(traj["encoder_manifold"]["per_seed"][0]) == 1
    assert "| HECNN+ |" in capsys.readouterr().out

    # a re-run trains nothing (every run is cached with unchanged overrides) ...
    def boom(*a, **k):
        raise AssertionError("cached run was retrained")

    monkeypatch.setattr(results_mod, "run_one", boom)
    res2 = results_mod.main(argv)
    assert res2["runs"] == res["runs"]
    # ... but a changed override does retrain
    with pytest.raises(AssertionError, match="retrained"):
        results_mod.main([*argv, "--set", "optim.lr=0.05"])

    plot = _load("plot_classification")
    written = plot.main(["--results", str(out), "--out", str(tmp_path / "img")])
    assert {p.name for p in written} == {"curvature_trajectory.png", "accuracy_curves.png"}
    assert all(p.stat().st_size > 10_000 for p in written)


@pytest.mark.slow
def test_quick_run_every_experiment(results_mod, tmp_path, monkeypatch):
    """Every variant once (13 tiny runs, ~15-40 s), then the figures."""
    monkeypatch.setattr(results_mod, "QUICK_OVERRIDES", TINY)
    out = tmp_path / "res.json"
    res = results_mod.main(["--quick", "--out", str(out), "--runs-dir", str(tmp_path / "runs")])
    digits = {v for e in results_mod.EXPERIMENTS.values() if e.group == "digits" for _, v in e.rows}
    assert sorted(res["runs"]) == sorted(f"{v}/seed1" for v in digits)  # convergence_fmnist: only with --only
    _check_run(res["runs"]["resnet18/seed1"], [])
    _check_run(res["runs"]["hybrid/seed1"], ["decoder_manifold"])
    _check_run(res["runs"]["hcnn/seed1"], ["manifold"])
    _check_run(res["runs"]["bf16_norescale/seed1"], ["encoder_manifold", "decoder_manifold"])
    assert all(t["rows"] for t in res["tables"].values())
    plot = _load("plot_classification")
    assert len(plot.main(["--results", str(out), "--out", str(tmp_path / "img")])) == 2


# ------------------------------------------------------------------------- convergence_fmnist (Fashion-MNIST)
def test_epochs_to_threshold(results_mod):
    hist = [{"epoch": 1, "train_loss": 0.6, "test_acc": 0.84}, {"epoch": 2, "train_loss": float("nan")},
            {"epoch": 3, "train_loss": 0.3, "test_acc": 0.85}, {"epoch": 4, "train_loss": 0.36, "test_acc": 0.9}]
    f = results_mod.epochs_to_threshold
    assert f(hist, "test_acc", 0.85) == 3  # >= counts; epoch 2 has no test accuracy
    assert f(hist, "test_acc", 0.851) == 4
    assert f(hist, "test_acc", 0.95) is None
    assert f(hist, "train_loss", 0.35, above=False) == 3  # the NaN of epoch 2 never counts
    assert f(hist, "train_loss", 0.6, above=False) == 1
    assert f(hist, "train_loss", 0.1, above=False) is None
    assert f([], "test_acc", 0.5) is None


def _fake_record(accs, losses, k=-0.99):
    hist = [{"epoch": i + 1, "train_loss": lo, "test_acc": a, "epoch_time": 10.0}
            for i, (a, lo) in enumerate(zip(accs, losses))]
    return {"status": "ok", "test_acc": accs[-1], "test_loss": 0.4, "train_acc": 0.9, "train_loss": losses[-1],
            "curvatures": {"decoder_manifold": k}, "skipped_steps": 0, "nonfinite_metrics": False,
            "train_time": 20.0, "wall_time": 21.0, "run_dir": "x", "history": hist}


def test_fmnist_convergence_statistics(results_mod, monkeypatch):
    monkeypatch.setattr(results_mod, "FMNIST_ACC_THRESHOLDS", (0.85, 0.88))
    monkeypatch.setattr(results_mod, "FMNIST_LOSS_THRESHOLD", 0.35)
    recs = [_fake_record([0.86, 0.89], [0.5, 0.3]), _fake_record([0.80, 0.87], [0.6, 0.4]),
            _fake_record([0.84, 0.88], [0.5, 0.34])]
    c = results_mod.fmnist_convergence(recs)
    assert c["test_acc>=0.85"]["per_seed"] == [1, 2, 2] and c["test_acc>=0.85"]["reached"] == 3
    assert math.isclose(c["test_acc>=0.85"]["mean_std"]["mean"], 5 / 3)
    assert c["test_acc>=0.88"]["per_seed"] == [2, None, 2] and c["test_acc>=0.88"]["reached"] == 2
    assert c["test_acc>=0.88"]["mean_std"] == {"mean": 2.0, "std": 0.0, "n": 2}  # the miss is counted, not averaged
    assert c["train_loss<=0.35"]["per_seed"] == [2, None, 2]
    assert c["test_acc_per_epoch"] == [[0.86, 0.89], [0.80, 0.87], [0.84, 0.88]]
    assert c["test_acc_per_seed"] == [0.89, 0.87, 0.88]


def test_fmnist_variants_are_the_table2_configs_at_cpu_scale(results_mod):
    """The Fashion-MNIST variants train with the Table 2 configs' model/optimizer/schedule (curvature lr 1e-4 ...);
    only the CPU-scale keys differ (width, depth, epochs, dataset, loader workers, device, threads)."""
    import dataclasses

    from lorentzcv.train import load_config

    allowed = {"model": {"width", "layers", "learn_k"}, "data": {"name", "num_workers"},
               "train": {"epochs", "device", "threads"}, "optim": set(), "schedule": set()}
    for vname, yml, learn in [("fm_hecnn", "hecnn", True), ("fm_hecnn_fixed_k", "hecnn", False),
                              ("fm_hybrid", "hybrid_plus", True), ("fm_hybrid_fixed_k", "hybrid_plus", False)]:
        ours = load_config(None, results_mod.run_overrides(results_mod.VARIANTS[vname], 1, quick=False))
        ref = load_config(REPO / "configs" / "classification" / "table2" / f"cifar10_{yml}_resnet18.yaml", [])
        for sec, keys in allowed.items():
            a, b = dataclasses.asdict(getattr(ours, sec)), dataclasses.asdict(getattr(ref, sec))
            assert {k for k in a if a[k] != b[k]} <= keys, (vname, sec)
        assert ours.model.learn_k is learn and ours.optim.curvature_lr == 1e-4 and ours.data.name == "fashion_mnist"
        assert (ours.model.width, ours.model.layers, ours.train.threads) == (16, [1, 1, 1, 1], 1)
        assert ours.data.train_subset is None and ours.data.eval_subset is None  # the full 60k / 10k


def test_fmnist_experiment_runs_apart(results_mod, tmp_path, monkeypatch, capsys):
    """``convergence_fmnist`` never runs by default, writes its own JSON, trains in ``--variants``/``--seed-major``
    order, and cannot be mixed with the digits experiments."""
    order = []

    def fake_run_one(overrides, run_dir):
        order.append(run_dir.relative_to(tmp_path / "runs").as_posix())
        learn = "model.learn_k=true" in overrides
        return {**_fake_record([0.86, 0.9 if learn else 0.87], [0.5, 0.3]), "overrides": overrides}

    monkeypatch.setattr(results_mod, "run_one", fake_run_one)
    digits = {e for e, x in results_mod.EXPERIMENTS.items() if x.group == "digits"}
    assert "convergence_fmnist" not in digits and len(digits) == 6
    with pytest.raises(SystemExit, match="different files"):
        results_mod.main(["--only", "convergence,convergence_fmnist", "--out", str(tmp_path / "x.json")])
    with pytest.raises(SystemExit, match="unknown variant"):
        results_mod.main(["--only", "convergence_fmnist", "--variants", "hecnn", "--out", str(tmp_path / "x.json")])
    out = tmp_path / "fm.json"
    argv = ["--only", "convergence_fmnist", "--seeds", "1", "2", "--out", str(out), "--runs-dir", str(tmp_path / "runs")]
    res = results_mod.main([*argv, "--seed-major", "--variants", "fm_hecnn,fm_hecnn_fixed_k"])
    assert order == ["fm_hecnn/seed1", "fm_hecnn_fixed_k/seed1", "fm_hecnn/seed2", "fm_hecnn_fixed_k/seed2"]
    assert list(res["tables"]) == ["convergence_fmnist"]  # no digits tables in this file
    rows = res["tables"]["convergence_fmnist"]["rows"]
    assert [r["variant"] for r in rows] == ["fm_hecnn", "fm_hecnn_fixed_k"] and rows[0]["seed_list"] == [1, 2]
    assert rows[0]["fmnist"]["test_acc>=0.88"]["per_seed"] == [2, 2]
    assert rows[1]["fmnist"]["test_acc>=0.88"]["per_seed"] == [None, None]
    md = capsys.readouterr().out
    assert "| HECNN+, learned k | 2 | 1.0 ± 0.0 (1 / 1) | 2.0 ± 0.0 (2 / 2) |" in md
    assert "| HECNN+, fixed K=-1 | 2 | 1.0 ± 0.0 (1 / 1) | – (never / never, 2 never) |" in md
    saved = json.loads(out.read_text())
    assert saved["meta"]["convergence_fmnist"] == {"test_acc_thresholds": [0.85, 0.88], "train_loss_threshold": 0.35}
    assert saved["meta"]["command"].startswith("python scripts/classification_results.py --only convergence_fmnist")
    assert saved["meta"]["command"].endswith("--seed-major --variants fm_hecnn,fm_hecnn_fixed_k")
    order.clear()
    results_mod.main(argv)  # variant-major, the HECNN+ runs cached
    assert order == ["fm_hybrid/seed1", "fm_hybrid/seed2", "fm_hybrid_fixed_k/seed1", "fm_hybrid_fixed_k/seed2"]


# ------------------------------------------------------------------------------------------ metric_results.py
METRIC_TINY = ["train.epochs=1", "data.train_subset=60", "data.eval_subset=40", "data.batch_size=16",
               "train.max_steps_per_epoch=2", "model.backbone_kwargs.width=4", "loss.num_proxies=8", "loss.topk=4",
               "loss.num_triplets=4"]


def test_metric_results_selects_the_lr_on_validation_then_tests(tmp_path, monkeypatch):
    """Stage 1 trains on 3 of the 5 training classes and ranks lrs by validation Recall@1; stage 2 trains on all
    five with each method's selected lr; a re-run trains nothing; a fixed lr skips the selection."""
    from tests.data import fixtures as fx

    mod = _load("metric_results")
    root = fx.write_fashion_mnist(tmp_path / "fm", n_train=300, n_test=100)  # 30 images per class
    monkeypatch.setattr(mod, "QUICK_OVERRIDES", [*METRIC_TINY, f"data.root={root}"])
    monkeypatch.setattr(mod, "SELECT_LRS", (1e-3, 1e-2))
    argv = ["--quick", "--no-picture", "--out", str(tmp_path / "res.json"), "--runs-dir", str(tmp_path / "runs"),
            "--doc", str(tmp_path / "report.md")]
    res = mod.main(argv)
    sel = res["selection"]
    assert sel["seeds"] == [0] and sel["held_out"] == ["seed 0: {pullover, coat}"]
    for m in mod.METHODS:
        means = {lr: sel["methods"][m]["val_r1"][f"{lr:g}"]["mean"] for lr in (1e-3, 1e-2)}
        assert sel["methods"][m]["lr"] == max((1e-3, 1e-2), key=means.get)
        r = res["runs"][f"select/{m}/lr0.01/seed0"]
        assert "data.val_fraction=0.4" in r["overrides"] and 0.0 <= r["val_recall"]["1"] <= 1.0
        log = (tmp_path / "runs" / "select" / m / "lr0.01" / "seed0" / "log.txt").read_text()
        assert "(3 classes)" in log and "val (2 held-out classes)" in log
        t = res["runs"][f"{m}/seed0"]
        assert f"optim.lr={sel['methods'][m]['lr']}" in t["overrides"] and t["val_recall"] is None
        assert "(5 classes)" in (tmp_path / "runs" / m / "seed0" / "log.txt").read_text()
    report = (tmp_path / "report.md").read_text()
    assert "| method | lr 0.001 | lr 0.01 | selected lr |" in report and "The test split played no part" in report

    import lorentzcv.train

    def boom(*a, **k):
        raise AssertionError("cached run was retrained")

    monkeypatch.setattr(lorentzcv.train, "train", boom)
    assert mod.main(argv)["runs"] == res["runs"]
    monkeypatch.undo()
    monkeypatch.setattr(mod, "QUICK_OVERRIDES", [*METRIC_TINY, f"data.root={root}"])
    variant = tmp_path / "metric_results_lr3e-3.json"
    fixed = mod.main([*argv[:-6], "--out", str(variant), "--runs-dir", str(tmp_path / "runs_v"), "--doc",
                      str(tmp_path / "v.md"), "--set", "optim.lr=3e-3"])
    assert "selection" not in fixed and fixed["fixed_lr"] == "3e-3"
    assert fixed["runs"]["lhier/seed0"]["overrides"][-1] == "optim.lr=3e-3"
    mod.main([*argv, "--variant", str(variant)])  # the main report, cached runs, plus the variant's table
    report = (tmp_path / "report.md").read_text()
    assert "**Variant `--set optim.lr=3e-3`**, with `optim.lr=3e-3` for all three methods (no selection)" in report
    assert "--tag lr3e-3 --seeds 0`" in report and report.count("| LHIER (Lorentz, ours) |") == 4
    assert f"--variant {variant}" in report


def test_a_diverged_run_is_recorded_and_counted_not_a_crash(results_mod, tmp_path, monkeypatch, capsys):
    """``TrainingDivergedError`` in one run: the grid goes on, the run is cached as ``diverged`` (not retrained), and
    the tables say how many seeds diverged — also when all of a variant's seeds did."""
    import lorentzcv.train as train_api

    real_train = train_api.train

    def train(cfg, **kw):
        if cfg.optim.name == "radamw":
            raise train_api.TrainingDivergedError("5 consecutive non-finite steps")
        return real_train(cfg, **kw)

    monkeypatch.setattr(train_api, "train", train)
    monkeypatch.setattr(results_mod, "QUICK_OVERRIDES", TINY)
    out = tmp_path / "res.json"
    argv = ["--quick", "--only", "optim", "--out", str(out), "--runs-dir", str(tmp_path / "runs")]
    res = results_mod.main(argv)
    assert res["runs"]["hecnn/seed1"]["status"] == "ok"
    assert res["runs"]["hecnn_radamw/seed1"]["status"] == "diverged"
    assert "non-finite" in res["runs"]["hecnn_radamw/seed1"]["error"]
    rows = {r["variant"]: r for r in res["tables"]["optim"]["rows"]}
    assert rows["hecnn_radamw"]["seeds"] == 0 and rows["hecnn_radamw"]["diverged"] == [1]
    printed = capsys.readouterr().out
    assert "diverged (5 consecutive non-finite steps)" in printed and "0 (all 1 diverged: seeds 1)" in printed

    monkeypatch.setattr(results_mod, "run_one", lambda *a, **k: (_ for _ in ()).throw(AssertionError("retrained")))
    assert results_mod.main(argv)["runs"]["hecnn_radamw/seed1"]["status"] == "diverged"  # cached, not retrained


def test_metric_results_records_a_diverged_run_and_scores_it_out(tmp_path, monkeypatch):
    """``TrainingDivergedError`` in a metric run: recorded (and cached) as diverged, a selection fold that diverged
    scores validation Recall@1 0, and paired differences use only seeds where both runs finished."""
    import lorentzcv.train as train_api

    mod = _load("metric_results")

    def diverge(*a, **k):
        raise train_api.TrainingDivergedError("a non-finite parameter")

    monkeypatch.setattr(train_api, "train", diverge)
    cache: dict = {}
    rec = mod.train_one("lhier", 0, tmp_path / "run", True, [], cache, "lhier/seed0", False)
    assert rec["status"] == "diverged" and "non-finite" in rec["error"] and mod.val_r1_of(rec) == 0.0
    cache["lhier/seed0"] = rec
    monkeypatch.setattr(train_api, "train", lambda *a, **k: pytest.fail("a cached diverged run was retrained"))
    assert mod.train_one("lhier", 0, tmp_path / "run", True, [], cache, "lhier/seed0", False) is rec
    ok = {"status": "ok", "recall": {"1": 0.5}, "map_at_r": 0.2}
    runs = {"lhier/seed0": rec, "hier/seed0": ok, "lhier/seed1": {**ok, "recall": {"1": 0.7}}, "hier/seed1": ok}
    d = mod.paired(runs, [0, 1], "lhier", "hier", "R@1")
    assert d["n"] == 1 and abs(d["mean"] - 0.2) < 1e-12


@pytest.fixture(scope="module")
def wordnet_mod():
    return _load("wordnet_results")


def test_wordnet_results_caches_each_mammal_run(wordnet_mod, tmp_path, capsys):
    from tests.data.test_wordnet import _write

    root, out = _write(tmp_path / "wn"), tmp_path / "res.json"
    args = ["--wordnet-root", str(root), "--dims", "2", "--optimizers", "rsgd", "--curvatures", "learned",
            "--epochs", "3", "--eval-every", "2", "--out", str(out)]
    wordnet_mod.main(args)
    res = json.loads(out.read_text())
    assert res["mammals"] == {"nodes": 4, "edges": 4, "exclude": list(wordnet_mod.NK_MAMMAL_EXCLUDE)}
    (run,) = res["runs"].values()
    assert [e["epoch"] for e in run["evals"]] == [2, 3] and run["k"] == run["evals"][-1]["k"]
    assert run["max_rel_constraint_error"] < 1e-9
    capsys.readouterr()
    wordnet_mod.main(args)  # cached: no training output
    text = capsys.readouterr().out
    assert "epoch" not in text and "| 2 | rsgd | learned | 0 |" in text


def test_wordnet_results_runs_the_verb_closure_and_caches_it(wordnet_mod, tmp_path, capsys):
    from tests.data.test_wordnet import HEADER, VERB_DATA, VERB_INDEX, _write

    root = _write(tmp_path / "wordnet")
    (root / "data.verb").write_text(HEADER + VERB_DATA, encoding="utf-8")
    (root / "index.verb").write_text(VERB_INDEX, encoding="utf-8")
    mod = wordnet_mod
    out = tmp_path / "wn.json"
    args = [
        "--dataset",
        "verbs",
        "--wordnet-root",
        str(root),
        "--dims",
        "2",
        "--optimizers",
        "rsgd",
        "--curvatures",
        "fixed",
        "--epochs",
        "2",
        "--eval-every",
        "1",
        "--out",
        str(out),
    ]
    res = mod.main(args)
    run = res["runs"]["verbs/dim2/rsgd/fixed/seed0/epochs2"]
    assert (run["dataset"], run["nodes"], run["edges"]) == ("verbs", 3, 3)
    assert [e["epoch"] for e in run["evals"]] == [1, 2]
    # directed: respire.v.02 -> breathe.v.01, respire.v.03 -> both; both directions add breathe's two descendants
    assert 1.0 <= run["mean_rank"] and 1.0 <= run["mean_rank_undirected"] and 0.0 < run["map_undirected"] <= 1.0
    assert json.loads(out.read_text())["verbs"] == {"nodes": 3, "edges": 3}
    model = mod.LorentzEmbedding(3, 2, init_scale=1.0, generator=torch.Generator().manual_seed(0))
    pairs = torch.tensor([(1, 0), (2, 0), (2, 1)])
    assert mod.evaluate(model, pairs, 3, torch.arange(3)) == mod.evaluate(model, pairs, 3)  # every node sampled
    assert mod.evaluate(model, pairs, 3, torch.tensor([2]))["mean_rank"] == 1.0  # node 2's ancestors are all
    capsys.readouterr()
    mod.main(args)  # cached: trains nothing, prints the verbs table
    printed = capsys.readouterr().out
    assert "verbs/dim2" not in printed and "| 2 | rsgd | fixed | 0 |" in printed
