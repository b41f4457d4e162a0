"""``metric.report``: the last epoch (default) vs HIER's protocol, the best epoch on test, labelled (issue 11,
item 8)."""

from __future__ import annotations

import io

import pytest

from lorentzcv.train import load_config
from lorentzcv.train.metric import BEST_TEST_LABEL, MetricTrainer, best_test_epoch


def test_best_test_epoch_picks_the_highest_test_recall_among_evaluated_epochs():
    history = [
        {"epoch": 1, "train_loss": 3.0},  # not evaluated
        {"epoch": 2, "R@1": 0.50, "R@2": 0.60, "MAP@R": 0.1},
        {"epoch": 3, "R@1": 0.70, "R@2": 0.75, "MAP@R": 0.2},
        {"epoch": 4, "R@1": 0.70, "R@2": 0.90, "MAP@R": 0.3},  # a tie: the earlier epoch wins
        {"epoch": 5, "R@1": 0.60, "R@2": 0.80, "MAP@R": 0.4},
    ]
    best = best_test_epoch(history, (1, 2))
    assert best["epoch"] == 3 and best["recall"] == {1: 0.70, 2: 0.75} and best["map_at_r"] == 0.2
    assert BEST_TEST_LABEL in best["protocol"] and "test split" in best["protocol"]
    assert best_test_epoch(history[:1], (1, 2)) is None


def test_report_option_selects_the_best_test_epoch_and_labels_it(tmp_path):
    assert load_config(None, ["task=metric"]).metric.report == "last"  # the honest report stays the default
    cfg = load_config(None, [
        "task=metric", "metric.report=best_test", "train.epochs=3", "train.device=cpu", "train.threads=1",
        "data.batch_size=32", "loss.num_proxies=8", "loss.num_triplets=4", "metric.recall_ks=[1, 2]",
        "optim.lr=3e-2", "output.progress=false", "output.tensorboard=false", "output.checkpoints=false",
        f"output.dir={tmp_path / 'run'}",
    ])
    stream = io.StringIO()
    trainer = MetricTrainer(cfg, stream=stream)
    summary = trainer.run()
    rows = [r for r in trainer.history if "R@1" in r]
    assert len(rows) == 3
    best = max(rows, key=lambda r: r["R@1"])
    assert summary["report"] == "best_test"
    assert summary["best_test"]["epoch"] == best["epoch"]
    assert summary["best_test"]["recall"] == {1: best["R@1"], 2: best["R@2"]}
    assert summary["recall"] == {1: rows[-1]["R@1"], 2: rows[-1]["R@2"]}  # the default figures are untouched
    out = stream.getvalue()
    assert BEST_TEST_LABEL in out and "selected on test" in out
    no_option = {k: v for k, v in summary.items() if k != "best_test"}
    assert BEST_TEST_LABEL not in trainer._summary_table(no_option)


def test_report_option_is_checked():
    with pytest.raises(Exception, match="report"):
        load_config(None, ["task=metric", "metric.report=best"])
