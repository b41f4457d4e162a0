"""scripts/hierarchy_results.py: a tiny ``--quick`` grid on an idx fixture (lr selected on validation, then test),
the hierarchy metrics in every record and the run summary, the tables, and the cache (a re-run trains nothing)."""

from __future__ import annotations

import importlib.util
import json
import sys
from pathlib import Path

import pytest
import torch

REPO = Path(__file__).resolve().parents[1]
TINY = ["train.epochs=1", "data.train_subset=60", "data.eval_subset=40", "data.batch_size=16",
        "train.max_steps_per_epoch=2", "model.backbone_kwargs.width=4", "loss.num_proxies=8", "loss.topk=4",
        "loss.num_triplets=4"]  # fmt: skip


def _load():
    spec = importlib.util.spec_from_file_location("_scripts_hierarchy_results", REPO / "scripts" /
                                                  "hierarchy_results.py")  # fmt: skip
    mod = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = mod
    spec.loader.exec_module(mod)
    return mod


@pytest.fixture(autouse=True)
def _threads():
    n = torch.get_num_threads()
    yield
    torch.set_num_threads(n)


def test_quick_grid_selects_on_validation_and_reports_hierarchy_metrics(tmp_path, monkeypatch):
    from tests.data import fixtures as fx

    mod = _load()
    root = fx.write_fashion_mnist(tmp_path / "fm", n_train=300, n_test=100)  # 40 images per class, pooled
    monkeypatch.setattr(mod.mr, "QUICK_OVERRIDES", [*TINY, f"data.root={root}"])
    monkeypatch.setattr(mod.mr, "SELECT_LRS", (1e-3, 1e-2))
    argv = ["--quick", "--out", str(tmp_path / "res.json"), "--runs-dir", str(tmp_path / "runs"),
            "--doc", str(tmp_path / "report.md")]  # fmt: skip
    res = mod.main(argv)
    sel = res["selection"]
    assert sel["held_out"] == ["seed 0: {pullover, sandal}"]
    for m in mod.METHODS:
        means = {lr: sel["methods"][m]["val_r1"][f"{lr:g}"]["mean"] for lr in (1e-3, 1e-2)}
        assert sel["methods"][m]["lr"] == max((1e-3, 1e-2), key=means.get)
        r = res["runs"][f"select/{m}/lr0.01/seed0"]
        assert r["config"] == f"configs/metric/hierarchy/fashion_mnist_hier_{m}.yaml"
        assert "data.val_fraction=0.4" in r["overrides"] and "val_SR@1" in r["history"][-1]
        t = res["runs"][f"{m}/seed0"]
        assert f"optim.lr={sel['methods'][m]['lr']}" in t["overrides"] and t["val_recall"] is None
        v = mod.metrics_of(t)
        assert v["SR@1"] >= v["R@1"] and v["mistake_rate"] == pytest.approx(1 - v["R@1"])
        summary = json.loads((tmp_path / "runs" / m / "seed0" / "summary.json").read_text())
        assert summary["hierarchy"]["SR@1"] == pytest.approx(v["SR@1"])
    report = (tmp_path / "report.md").read_text()
    assert "| method | R@1 | R@2 | R@4 | R@8 | super R@1 |" in report and "LCA depth of mistakes" in report
    assert "| metric | LHIER − HIER | LHIER − Euclidean |" in report and "The test split played no part" in report

    import lorentzcv.train

    def boom(*a, **k):
        raise AssertionError("cached run was retrained")

    monkeypatch.setattr(lorentzcv.train, "train", boom)
    assert mod.main(argv)["runs"] == res["runs"]
