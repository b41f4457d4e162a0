"""``lorentzcv.plot``: curves, curvature and Poincaré-disk PNGs from run directories."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

from lorentzcv import plot
from lorentzcv.plot import RunEmbeddings, load_history, plot_poincare, plot_runs, project_2d


def _fake_run(path: Path, rows: list[dict], task: str | None = None) -> Path:
    path.mkdir(parents=True)
    with open(path / "metrics.jsonl", "w") as fh:
        for r in rows:
            fh.write(json.dumps(r) + "\n")
    (path / "config.yaml").write_text(f"task: {task}\n" if task else "model: {name: hecnn_resnet18}\n")
    return path


def _classification_rows(n: int = 3, curvature: bool = True) -> list[dict]:
    rows = []
    for e in range(1, n + 1):
        r = {"epoch": e, "train_loss": 2.0 / e, "train_acc": 0.3 * e / n, "test_loss": 2.2 / e,
             "test_acc": 0.25 * e / n, "lr": 0.1, "throughput": 100.0, "epoch_time": 1.0}
        if curvature:
            r.update({"K/encoder_manifold": -1.0 + 0.05 * e, "K/decoder_manifold": -1.0 + 0.02 * e})
        rows.append(r)
    rows[-1]["test_loss"] = "nan"  # how RunRecorder stores non-finite values
    return rows


def _metric_rows(n: int = 2) -> list[dict]:
    return [{"epoch": e, "train_loss": 20.0 / e, "loss_pa": 19.0 / e, "loss_hier": 0.9, "R@1": 0.5 + 0.1 * e,
             "R@2": 0.7, "MAP@R": 0.3, "val_R@1": 0.4, "K/head.manifold": -0.1 - 0.001 * e} for e in range(1, n + 1)]


def _valid_png(path: Path) -> tuple[int, int]:
    assert path.is_file() and path.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    with Image.open(path) as im:
        im.verify()
    with Image.open(path) as im:
        return im.size


def test_load_history_reads_non_finite_values(tmp_path):
    run = _fake_run(tmp_path / "a", _classification_rows())
    rows = load_history(run)
    assert len(rows) == 3 and np.isnan(rows[-1]["test_loss"]) and rows[0]["K/encoder_manifold"] == pytest.approx(-0.95)
    with pytest.raises(FileNotFoundError, match="no metrics.jsonl"):
        load_history(tmp_path / "missing")
    (run / "metrics.jsonl").write_text('{"epoch": 1}\n{broken\n')
    with pytest.raises(ValueError, match="metrics.jsonl:2 is not valid JSON"):
        load_history(run)


def test_plot_runs_writes_valid_pngs_for_several_runs(tmp_path):
    a = _fake_run(tmp_path / "runs" / "hecnn", _classification_rows(), task=None)
    b = _fake_run(tmp_path / "runs" / "lhier", _metric_rows(), task="metric")
    notes: list[str] = []
    written = plot_runs([a, b], tmp_path / "out", embeddings=True, log=notes.append)
    assert [p.name for p in written] == ["curves.png", "curvature.png"]
    for p in written:
        w, h = _valid_png(p)
        assert w > 300 and h > 200
    # the metric run has no checkpoint: its disk is skipped with a note; the classifier is not even tried
    assert len(notes) == 1 and "no Poincaré disk for" in notes[0] and "lhier" in notes[0]


def test_curvature_is_skipped_for_euclidean_runs(tmp_path):
    a = _fake_run(tmp_path / "resnet", _classification_rows(curvature=False))
    notes: list[str] = []
    written = plot_runs([a], tmp_path / "out", embeddings=False, log=notes.append)
    assert [p.name for p in written] == ["curves.png"]
    assert any("curvature.png" in n and "Euclidean" in n for n in notes)
    with pytest.raises(ValueError, match="at least one run"):
        plot_runs([], tmp_path / "out")


def test_project_2d_keeps_points_in_the_disk():
    rng = np.random.default_rng(0)
    x = rng.normal(size=(50, 6))
    ball = 0.99 * x / (1 + np.linalg.norm(x, axis=1, keepdims=True))
    lcas = ball[:4] * 0.5
    p, q = project_2d(ball, lcas)
    assert p.shape == (50, 2) and q.shape == (4, 2)
    assert (np.linalg.norm(p, axis=1) <= np.linalg.norm(ball, axis=1) + 1e-12).all()
    two = ball[:, :2]
    assert project_2d(two)[0] is two


def test_poincare_figure_with_superclasses(tmp_path, monkeypatch):
    rng = np.random.default_rng(0)

    def fake_embeddings(run, **kwargs):
        pts = rng.uniform(-0.6, 0.6, size=(40, 8))
        labels = np.repeat(np.arange(4), 10)
        supers = labels // 2 if Path(run).name == "with_super" else None
        return RunEmbeddings(points=pts, labels=labels, class_names={0: "a", 1: "b", 2: "c", 3: "d"},
                             super_labels=supers, super_names={0: "ab", 1: "cd"}, lcas=pts[:3], curvature=-0.1,
                             head="lorentz")

    monkeypatch.setattr(plot, "run_embeddings", fake_embeddings)
    runs = [_fake_run(tmp_path / n, _metric_rows(), task="metric") for n in ("with_super", "plain")]
    out = plot_poincare(runs, tmp_path / "poincare.png")
    w, h = _valid_png(out)
    assert h > w / 2  # two rows: classes, superclasses


def test_poincare_of_a_real_metric_run(tmp_path):
    """A tiny LHIER run on the offline digits_dml data, then its test embeddings in the disk."""
    from lorentzcv.train import load_config, train

    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        _real_run_checks(tmp_path, load_config, train)
    finally:
        torch.set_num_threads(threads)


def _real_run_checks(tmp_path, load_config, train) -> None:
    cfg = load_config(None, [
        "task=metric", "data.name=digits_dml", "data.batch_size=16", "data.train_subset=64", "data.eval_subset=48",
        "model.backbone_kwargs.width=4", "model.embedding_dim=4", "loss.num_proxies=8", "loss.topk=4",
        "loss.num_triplets=4", "train.epochs=1", "output.progress=false", "output.tensorboard=false",
        "train.device=cpu", f"output.dir={tmp_path / 'run'}"])
    train(cfg)
    emb = plot.run_embeddings(tmp_path / "run", limit=20)
    assert emb.points.shape == (20, 4) and emb.head == "lorentz" and emb.curvature < 0
    assert (np.linalg.norm(emb.points, axis=1) < 1).all() and emb.lcas is not None
    written = plot_runs([tmp_path / "run"], tmp_path / "plots", limit=20)
    assert [p.name for p in written] == ["curves.png", "curvature.png", "poincare.png"]
    _valid_png(written[-1])
    with pytest.raises(ValueError, match="not a metric-learning run"):
        cls = load_config(None, ["model.width=2", "train.epochs=1", "data.train_subset=16", "data.eval_subset=16",
                                 "output.progress=false", "output.tensorboard=false", "train.device=cpu",
                                 f"output.dir={tmp_path / 'cls'}"])
        train(cls)
        plot.run_embeddings(tmp_path / "cls")
