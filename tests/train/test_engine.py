"""The training engine end to end on tiny data: real on-disk formats, exact resume, NaN guard, AMP, clipping."""

from __future__ import annotations

import csv
import io
import json
import math

import pytest
import torch

from lorentzcv.train import Trainer, evaluate_checkpoint, load_checkpoint, load_config, resume_config, train

from .conftest import DEVICE, TINY


def _cfg(tmp_path, name, overrides=()):
    return load_config(None, [*TINY, f"output.dir={tmp_path / name}", *overrides])


def _run(tmp_path, name, overrides=(), trainer_cls=Trainer):
    cfg = _cfg(tmp_path, name, overrides)
    return trainer_cls(cfg, stream=io.StringIO()).run()


# ------------------------------------------------------------------------------- real on-disk formats
FORMATS = [
    # dataset, model, extra overrides
    ("cifar10", "hecnn_resnet18", []),
    ("cifar100", "resnet18", []),
    ("tiny_imagenet", "hybrid_resnet18", []),
    ("mini_imagenet", "hcnn_resnet18", ["data.native_val=true"]),
    ("fashion_mnist", "hecnn_resnet18", ["data.val_fraction=0.25"]),
]


@pytest.mark.parametrize(("dataset", "model", "extra"), FORMATS, ids=[f[0] for f in FORMATS])
def test_end_to_end_on_real_formats(tmp_path, datasets_root, dataset, model, extra):
    overrides = [f"data.name={dataset}", f"data.root={datasets_root}", f"model.name={model}",
                 "data.batch_size=16", "train.max_steps_per_epoch=2", *extra]
    if model in ("resnet18", "hybrid_resnet18"):  # no hyperbolic encoder options for these
        overrides.append("model.layers=[1, 1, 1, 1]")
    s = _run(tmp_path, "run", overrides)
    run = tmp_path / "run"
    assert s["run_dir"] == str(run) and 0.0 <= s["test_acc"] <= 1.0
    assert load_config(run / "config.yaml").data.name == dataset  # the resolved config is saved
    rows = [json.loads(line) for line in (run / "metrics.jsonl").read_text().splitlines()]
    assert len(rows) == 1 and rows[0]["epoch"] == 1
    for key in ("train_loss", "train_acc", "test_acc", "lr", "throughput", "skipped_steps", "epoch_time"):
        assert key in rows[0]
    assert math.isfinite(rows[0]["train_loss"]) and rows[0]["throughput"] > 0
    with open(run / "metrics.csv") as fh:
        header = next(csv.reader(fh))
    assert header[:3] == ["epoch", "train_loss", "train_acc"]
    curv = [k for k in rows[0] if k.startswith("K/")]
    assert (len(curv) > 0) == (model != "resnet18")  # every manifold's curvature is logged
    if model == "hecnn_resnet18":
        assert set(curv) == {"K/encoder_manifold", "K/decoder_manifold"}
    state = torch.load(run / "last.pt", weights_only=True)  # plain tensors/containers only
    assert state["epoch"] == 1
    has_val = bool(extra)
    assert (run / "best.pt").is_file() == has_val and ("val_acc" in rows[0]) == has_val
    if has_val:
        assert s["best_epoch"] == 1 and 0.0 <= s["test_acc_best"] <= 1.0


def test_no_run_dir_for_bad_input(tmp_path):
    with pytest.raises(ValueError, match="Unknown model 'hecnn_resnet81'"):
        _run(tmp_path, "run", ["model.name=hecnn_resnet81"])
    with pytest.raises(FileNotFoundError, match="cifar10"):
        _run(tmp_path, "run", ["data.name=cifar10", f"data.root={tmp_path / 'nothing'}"])
    assert not (tmp_path / "run").exists()


# --------------------------------------------------------------------------------------------- resume
RESUME = ["data.train_subset=48", "data.eval_subset=24", "data.batch_size=16", "train.epochs=2",
          "data.val_fraction=0.2", "schedule.warmup_epochs=0.5"]


class _Interrupted(Trainer):
    """Dies (like Ctrl-C) when epoch ``stop_at`` (0-based) begins, i.e. after ``stop_at`` finished epochs."""

    stop_at = 1

    def _train_epoch(self, epoch):
        if epoch == self.stop_at:
            raise KeyboardInterrupt
        return super()._train_epoch(epoch)


@pytest.mark.skipif(DEVICE != "cpu", reason="bitwise reproducibility is checked on CPU (deterministic kernels)")
def test_resume_reproduces_an_uninterrupted_run(tmp_path):
    full = _run(tmp_path, "full", RESUME)
    with pytest.raises(KeyboardInterrupt):
        _run(tmp_path, "cut", RESUME, trainer_cls=_Interrupted)
    cut = tmp_path / "cut"
    assert load_checkpoint(cut)["epoch"] == 1
    resumed = train(resume_config(cut), resume=cut, stream=io.StringIO())

    a, b = load_checkpoint(tmp_path / "full"), load_checkpoint(cut)
    assert a["epoch"] == b["epoch"] == 2
    assert a["model"].keys() == b["model"].keys()
    for k in a["model"]:
        assert torch.equal(a["model"][k], b["model"][k]), k
    for pa, pb in zip(a["optimizer"]["state"].values(), b["optimizer"]["state"].values()):
        for k in pa:
            assert torch.equal(torch.as_tensor(pa[k]), torch.as_tensor(pb[k])), k
    assert a["scheduler"] == b["scheduler"]
    drop = ("epoch_time", "throughput")
    strip = lambda rows: [{k: v for k, v in r.items() if k not in drop} for r in rows]  # noqa: E731
    assert strip(a["history"]) == strip(b["history"])
    assert full["curvatures"] == resumed["curvatures"] and full["test_acc"] == resumed["test_acc"]
    assert full["best_epoch"] == resumed["best_epoch"] and full["test_acc_best"] == resumed["test_acc_best"]
    assert len((cut / "metrics.jsonl").read_text().splitlines()) == 2
    # the curvatures did move, so the curvature-aware parameter moves were part of what was reproduced
    assert any(abs(k + 1.0) > 1e-4 for k in full["curvatures"].values())

    # a finished run has nothing left to resume
    with pytest.raises(ValueError, match="already finished 2"):
        train(resume_config(cut), resume=cut, stream=io.StringIO())
    # and the checkpoint evaluates to the same test accuracy the run reported
    r = evaluate_checkpoint(tmp_path / "full" / "last.pt", device=DEVICE)
    assert r["acc"] == full["test_acc"] and r["n"] == 24


# ------------------------------------------------------------------------------------ guards and AMP
class _NaNOnce(Trainer):
    """The loss of the second training step is NaN."""

    def _setup(self):
        super()._setup()
        criterion, calls = self.criterion, [0]

        def nan_once(out, y):
            calls[0] += 1
            loss = criterion(out, y)
            return loss * float("nan") if calls[0] == 2 else loss

        self.criterion = nan_once


def test_nan_guard_skips_the_step_and_counts_it(tmp_path):
    out = io.StringIO()
    cfg = _cfg(tmp_path, "run", ["data.train_subset=48", "data.eval_subset=16", "data.batch_size=16"])
    s = _NaNOnce(cfg, stream=out).run()
    assert s["skipped_steps"] == 1
    assert "non-finite loss/gradient at epoch 1 step 2" in out.getvalue()
    state = load_checkpoint(tmp_path / "run")
    assert all(torch.isfinite(v).all() for v in state["model"].values() if v.is_floating_point())
    assert state["history"][0]["skipped_steps"] == 1 and math.isfinite(state["history"][0]["train_loss"])


class _RecordGrads(Trainer):
    def _setup(self):
        super()._setup()
        self.seen = []
        step = self.optimizer.step

        def recording_step(*args, **kwargs):
            grads = [p.grad for p in self.params if p.grad is not None]
            self.seen.append((torch.nn.utils.get_total_norm(grads).item(), max(g.abs().max().item() for g in grads)))
            return step(*args, **kwargs)

        self.optimizer.step = recording_step


def test_gradient_clipping(tmp_path):
    cfg = _cfg(tmp_path, "run", ["data.train_subset=32", "data.eval_subset=16", "data.batch_size=16",
                                 "train.grad_clip_norm=0.05", "train.grad_clip_value=0.004"])
    t = _RecordGrads(cfg, stream=io.StringIO())
    t.run()
    assert len(t.seen) == 2
    for norm, biggest in t.seen:
        assert norm <= 0.05 * (1 + 1e-5) and biggest <= 0.004 + 1e-9


def test_bf16_autocast_on_cpu(tmp_path):
    s = _run(tmp_path, "run", ["data.train_subset=32", "data.eval_subset=16", "data.batch_size=16", "train.amp=bf16"])
    state = load_checkpoint(tmp_path / "run")
    assert math.isfinite(state["history"][0]["train_loss"]) and 0 <= s["test_acc"] <= 1
    assert state["scaler"] is None and s["skipped_steps"] == 0  # bfloat16 needs no loss scaling


def test_fp16_uses_a_grad_scaler_whose_backoffs_are_the_skipped_steps(tmp_path):
    overrides = ["data.train_subset=48", "data.eval_subset=16", "data.batch_size=16", "train.amp=fp16"]
    if DEVICE == "cpu":
        with pytest.warns(UserWarning, match="fp16 on CPU is slow"):
            s = _run(tmp_path, "run", overrides)
    else:
        s = _run(tmp_path, "run", overrides)
    state = load_checkpoint(tmp_path / "run")
    scaler = state["scaler"]
    assert scaler is not None
    assert scaler["scale"] == 65536.0 * 0.5 ** s["skipped_steps"]  # every inf/NaN step backed the scale off
    assert all(torch.isfinite(v).all() for v in state["model"].values() if v.is_floating_point())


def test_tensorboard_scalars_when_installed(tmp_path, monkeypatch):
    """With tensorboard importable, every numeric metric goes to a SummaryWriter in ``run/tb`` (optional dep)."""
    import sys
    import types

    written = []

    class FakeWriter:
        def __init__(self, log_dir):
            written.append(("dir", log_dir))

        def add_scalar(self, tag, value, step):
            written.append((tag, value, step))

        def flush(self):
            pass

        def close(self):
            written.append(("closed",))

    monkeypatch.setitem(sys.modules, "torch.utils.tensorboard", types.SimpleNamespace(SummaryWriter=FakeWriter))
    _run(tmp_path, "run", ["data.train_subset=16", "data.eval_subset=16", "data.batch_size=16",
                           "output.tensorboard=true"])
    tags = {w[0] for w in written}
    assert ("dir", str(tmp_path / "run" / "tb")) in written and ("closed",) in written
    assert {"train_loss", "test_acc", "lr", "K/encoder_manifold", "throughput"} <= tags


@pytest.mark.parametrize("kind", ["classification", "metric"])
def test_compile_switch_compiles_the_training_step(tmp_path, datasets_root, monkeypatch, kind):
    """``train.compile=true`` wraps what the training step calls in ``torch.compile`` (default arguments) and the run
    trains through it. (The eager backend keeps the test fast; inductor on every layer kind is
    tests/kernels/test_compile.py.)"""
    calls = []
    real = torch.compile

    def spy(module, **kwargs):
        calls.append((type(module).__name__, kwargs))
        return real(module, backend="eager")

    monkeypatch.setattr(torch, "compile", spy)
    if kind == "classification":
        overrides = ["data.name=cifar10", f"data.root={datasets_root}", "model.name=hecnn_resnet18",
                     "data.batch_size=16", "train.max_steps_per_epoch=2", "train.compile=true"]
        s = _run(tmp_path, "run", overrides)
        assert 0.0 <= s["test_acc"] <= 1.0
    else:
        cfg = load_config("configs/metric/demo/fashion_mnist_dml_lhier.yaml",
                          [f"data.root={datasets_root}", f"output.dir={tmp_path / 'run'}", f"train.device={DEVICE}",
                           "train.epochs=1", "train.max_steps_per_epoch=2", "data.num_workers=0",
                           "output.progress=false", "output.tensorboard=false", "train.compile=true"])
        train(cfg, stream=io.StringIO())
    assert len(calls) == 1 and calls[0][1] == {}
    rows = [json.loads(line) for line in (tmp_path / "run" / "metrics.jsonl").read_text().splitlines()]
    assert rows and math.isfinite(rows[-1]["train_loss"])
