"""Fault injection on tiny CPU runs: non-finite inputs, gradients, parameters and buffers; a crash at every
checkpoint write; occupied run directories; rejected and inexact resumes; malicious and incomplete checkpoints;
a stalled DDP rank. Every failure must be a one-line error, lose nothing, and never leave a non-finite
checkpoint behind an exit status of 0."""

from __future__ import annotations

import io
import json
import math
import os
import subprocess
import sys
import textwrap
from datetime import timedelta
from pathlib import Path

import pytest
import torch

from lorentzcv.cli import main
from lorentzcv.train import (
    CheckpointError,
    ConfigError,
    Trainer,
    TrainingDivergedError,
    evaluate_checkpoint,
    load_checkpoint,
    load_config,
    resume_config,
    save_checkpoint,
)
from lorentzcv.train import engine as engine_mod
from lorentzcv.train.checkpoint import CHECKPOINT_FORMAT
from lorentzcv.train.distributed import DistInfo, ProgressBoard, init_distributed, timeout_error

from .conftest import DEVICE, TINY
from .test_engine import _Interrupted

#: Three training steps per epoch, a 16-image test split.
SMALL = ["data.train_subset=48", "data.eval_subset=16", "data.batch_size=16"]


def _cfg(tmp_path: Path, name: str = "run", overrides=()):
    return load_config(None, [*TINY, *SMALL, f"output.dir={tmp_path / name}", *overrides])


def _finite(state: dict) -> bool:
    return all(torch.isfinite(v).all() for v in state["model"].values() if v.is_floating_point())


def _temp_files(run: Path) -> list[str]:
    return sorted(p.name for p in run.iterdir() if ".tmp" in p.name)




def _interrupted_run(tmp_path: Path, name: str = "run", overrides=()) -> Path:
    """A run of 2 epochs cut after the first (``last.pt`` holds epoch 1)."""
    with pytest.raises(KeyboardInterrupt):
        _Interrupted(_cfg(tmp_path, name, ["train.epochs=2", *overrides]), stream=io.StringIO()).run()
    return tmp_path / name


# ------------------------------------------------------------------------------------ non-finite data
class _BadPixel(Trainer):
    """One pixel of one image of the second training step is ``value``."""

    value = float("nan")

    def _train_batches(self):
        for step, x, y in super()._train_batches():
            if step == 1:
                x = x.clone()
                x[0, 0, 0, 0] = self.value
            yield step, x, y


@pytest.mark.parametrize("model", ["hecnn_resnet18", "resnet18"], ids=["lorentz_bn", "euclidean_bn"])
@pytest.mark.parametrize("value", [float("nan"), float("inf")], ids=["nan", "inf"])
def test_a_non_finite_pixel_does_not_poison_the_batch_norm_statistics(tmp_path, model, value):
    trainer = type("Bad", (_BadPixel,), {"value": value})
    s = trainer(_cfg(tmp_path, overrides=[f"model.name={model}"]), stream=io.StringIO()).run()
    assert s["skipped_steps"] == 1
    state = load_checkpoint(tmp_path / "run")
    assert _finite(state)  # the running means/variances too
    assert math.isfinite(s["test_loss"]) and s["test_acc"] is not None


class _InfGrad(Trainer):
    """An infinite gradient on the first parameter at the second step; checks the step changed nothing."""

    def _train_batches(self):
        for step, x, y in super()._train_batches():
            if step == 1:
                self.before = {k: v.detach().clone() for k, v in self.model.state_dict().items()}
            yield step, x, y

    def _guarded_step(self, loss, opt, scaler, epoch, step, skipped):
        if step != 1:
            return super()._guarded_step(loss, opt, scaler, epoch, step, skipped)
        p = self.params[0]
        handle = p.register_hook(lambda g: torch.full_like(g, float("inf")))
        try:
            took = super()._guarded_step(loss, opt, scaler, epoch, step, skipped)
        finally:
            handle.remove()
        self.unchanged = not took and all(torch.equal(v, self.before[k]) for k, v in self.model.state_dict().items())
        return took


def test_an_infinite_gradient_skips_the_step_and_leaves_the_model_as_it_was(tmp_path):
    t = _InfGrad(_cfg(tmp_path), stream=io.StringIO())
    s = t.run()
    assert s["skipped_steps"] == 1 and t.unchanged  # parameters and buffers (running statistics) untouched


class _Poison(Trainer):
    """Writes NaN into the first parameter (or a batch-norm buffer) when epoch 2 begins."""

    target = "parameter"

    def _reseed_epoch(self, epoch):
        super()._reseed_epoch(epoch)
        if epoch == 1:
            with torch.no_grad():
                if self.target == "parameter":
                    next(self.model.parameters()).fill_(float("nan"))
                else:
                    self.model.stem.bn.running_mean.fill_(float("nan"))


def test_a_nan_parameter_stops_the_run_after_the_consecutive_skip_limit(tmp_path):
    cfg = _cfg(tmp_path, overrides=["train.epochs=2", "train.max_skipped_steps=2"])
    with pytest.raises(TrainingDivergedError) as e:
        _Poison(cfg, stream=io.StringIO()).run()
    msg = str(e.value)
    assert "\n" not in msg and "2 consecutive steps" in msg and "keeps epoch 1" in msg
    run = tmp_path / "run"
    state = load_checkpoint(run)
    assert state["epoch"] == 1 and _finite(state)  # the last good checkpoint survives
    assert not (run / "summary.json").exists()
    assert len((run / "metrics.jsonl").read_text().splitlines()) == 1
    assert (run / "log.txt").read_text().splitlines()[-1].startswith("error: training diverged")


@pytest.mark.parametrize("target", ["parameter", "buffer"])
def test_a_non_finite_state_at_the_end_of_an_epoch_is_never_checkpointed(tmp_path, target):
    cfg = _cfg(tmp_path, overrides=["train.epochs=2", "train.max_skipped_steps=null"])
    with pytest.raises(TrainingDivergedError, match=rf"after epoch 2: {target} '.*' is non-finite"):
        type("P", (_Poison,), {"target": target})(cfg, stream=io.StringIO()).run()
    state = load_checkpoint(tmp_path / "run")
    assert state["epoch"] == 1 and _finite(state)


class _NaNLossFrom2(Trainer):
    """Every training loss of epoch 2 is NaN (the weights stay finite)."""

    def _setup(self):
        super()._setup()
        criterion = self.criterion
        self.criterion = lambda out, y: criterion(out, y) * (float("nan") if self.epoch == 1 else 1.0)


def test_an_epoch_of_only_skipped_steps_stops_the_run(tmp_path):
    cfg = _cfg(tmp_path, overrides=["train.epochs=3", "train.max_skipped_steps=null"])
    with pytest.raises(TrainingDivergedError, match="after epoch 2: every step of the epoch had a non-finite loss"):
        _NaNLossFrom2(cfg, stream=io.StringIO()).run()
    assert load_checkpoint(tmp_path / "run")["epoch"] == 1


class _FirstBatchBad(Trainer):
    def _train_batches(self):
        for step, x, y in super()._train_batches():
            yield step, (x * float("nan") if self.epoch == 0 else x), y


def test_one_bad_batch_in_a_one_step_epoch_is_not_a_divergence(tmp_path):
    cfg = _cfg(tmp_path, overrides=["train.epochs=2", "train.max_steps_per_epoch=1"])
    s = _FirstBatchBad(cfg, stream=io.StringIO()).run()
    assert s["skipped_steps"] == 1 and math.isfinite(s["test_loss"])


class _Overflow(Trainer):
    """After the training steps of epoch 2, the weights become huge but finite: the logits overflow."""

    def _check_finite_state(self, epoch, row):
        super()._check_finite_state(epoch, row)
        if epoch == 1:
            with torch.no_grad():
                for p in self.model.parameters():
                    p.mul_(1e30)


def test_finite_weights_with_non_finite_outputs_are_not_checkpointed(tmp_path):
    cfg = _cfg(tmp_path, overrides=["train.epochs=2", "model.name=resnet18"])
    with pytest.raises(TrainingDivergedError, match=r"after epoch 2: the model gives non-finite outputs for \d+ "
                                                    "finite test images"):
        _Overflow(cfg, stream=io.StringIO()).run()
    state = load_checkpoint(tmp_path / "run")
    assert state["epoch"] == 1 and math.isfinite(state["history"][0]["test_loss"])


def test_a_diverging_lr_ends_with_a_one_line_error_and_no_nan_checkpoint(tmp_path, capsys):
    run = tmp_path / "run"
    argv = ["train", *[a for o in [*TINY, *SMALL, "train.epochs=3", "optim.lr=1000", f"output.dir={run}"]
                       for a in ("--set", o)]]
    assert main(argv) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and err[0].startswith("error: training diverged")
    if (run / "last.pt").exists():  # the last epoch that was finite and gave finite test outputs
        state = load_checkpoint(run)
        assert _finite(state) and math.isfinite(state["history"][-1]["test_loss"])
    assert not (run / "summary.json").exists()


class _BigScale(Trainer):
    """float16 with a loss scale of 2**30: many GradScaler back-offs before the first step is taken."""

    def _init_runtime(self):
        super()._init_runtime()
        self.scaler = torch.amp.GradScaler(self.device.type, init_scale=2.0**30)


@pytest.mark.filterwarnings("ignore:train.amp=fp16 on CPU is slow")
def test_float16_scaler_backoffs_do_not_trip_the_skip_limit(tmp_path):
    cfg = load_config(None, [*TINY, "data.train_subset=64", "data.eval_subset=16", "data.batch_size=4",
                             "train.amp=fp16", "train.max_skipped_steps=2", f"output.dir={tmp_path / 'run'}"])
    s = _BigScale(cfg, stream=io.StringIO()).run()
    assert s["skipped_steps"] > 2  # the back-offs happened, were counted as skipped, and did not stop the run
    assert _finite(load_checkpoint(tmp_path / "run"))


class _NaNLoss(Trainer):
    def _setup(self):
        super()._setup()
        criterion = self.criterion
        self.criterion = lambda out, y: criterion(out, y) * float("nan")


@pytest.mark.filterwarnings("ignore:train.amp=fp16 on CPU is slow")
def test_float16_non_finite_losses_do_count(tmp_path):
    cfg = _cfg(tmp_path, overrides=["train.amp=fp16", "train.max_skipped_steps=2"])
    with pytest.raises(TrainingDivergedError, match="2 consecutive steps"):
        _NaNLoss(cfg, stream=io.StringIO()).run()


# ------------------------------------------------------------------------------------ checkpoint writes
class _Crash(BaseException):
    """A simulated crash: not an ``Exception``, so nothing on the way may swallow it."""


class _Improving(Trainer):
    """Validation accuracy rises every epoch, so every epoch writes best.pt and last.pt."""

    def _eval(self, loader):
        r = super()._eval(loader)
        return {**r, "acc": 0.1 * (len(self.history) + 1)} if loader is self.val_loader else r


CRASH = ["train.epochs=2", "data.val_fraction=0.25"]
#: The writes of one end of epoch, in order: best.pt (save, fsync file, rename, fsync dir), then last.pt.
WRITES = [("save", 1), ("fsync", 1), ("replace", 1), ("fsync", 2), ("save", 2), ("fsync", 3), ("replace", 2),
          ("fsync", 4)]


@pytest.fixture(scope="module")
def uninterrupted(tmp_path_factory):
    tmp = tmp_path_factory.mktemp("uninterrupted")
    _Improving(_cfg(tmp, "ref", CRASH), stream=io.StringIO()).run()
    return load_checkpoint(tmp / "ref")


@pytest.mark.parametrize(("what", "nth"), WRITES, ids=[f"{w}{n}" for w, n in WRITES])
def test_a_crash_at_any_checkpoint_write_loses_nothing(tmp_path, monkeypatch, uninterrupted, what, nth):
    armed, calls = [False], {"save": 0, "fsync": 0, "replace": 0}
    real = {"save": torch.save, "fsync": os.fsync, "replace": os.replace}

    def counting(name):
        def f(*args, **kwargs):
            if armed[0]:
                calls[name] += 1
                if name == what and calls[name] == nth:
                    raise _Crash(f"{name} #{nth}")
            return real[name](*args, **kwargs)
        return f

    monkeypatch.setattr(torch, "save", counting("save"))
    monkeypatch.setattr(os, "fsync", counting("fsync"))
    monkeypatch.setattr(os, "replace", counting("replace"))
    real_save = engine_mod.save_checkpoint

    def save_in_epoch_2(state, path):
        armed[0] = state["epoch"] == 2
        try:
            return real_save(state, path)
        finally:
            armed[0] = False

    monkeypatch.setattr(engine_mod, "save_checkpoint", save_in_epoch_2)
    with pytest.raises(_Crash):
        _Improving(_cfg(tmp_path, "run", CRASH), stream=io.StringIO()).run()
    monkeypatch.undo()

    run = tmp_path / "run"
    assert _temp_files(run) == []
    last, best = load_checkpoint(run / "last.pt"), load_checkpoint(run / "best.pt")
    assert _finite(last) and _finite(best)
    # best.pt is written first: it is the recorded best, or the epoch that last.pt does not hold yet
    assert best["epoch"] == last["best"]["epoch"] or best["epoch"] == last["epoch"] + 1
    assert not (run / "summary.json").exists()
    # a crash after the last rename still needs the resume to write the records (metrics, summary)
    s = _Improving(resume_config(run), resume=run, stream=io.StringIO()).run()
    assert s["best_epoch"] == 2 and (run / "summary.json").is_file()
    last, best = load_checkpoint(run / "last.pt"), load_checkpoint(run / "best.pt")
    assert last["epoch"] == best["epoch"] == last["best"]["epoch"] == 2
    rows = [json.loads(line)["epoch"] for line in (run / "metrics.jsonl").read_text().splitlines()]
    assert rows == [1, 2]
    if DEVICE == "cpu":  # the interrupted-and-resumed run is the uninterrupted one
        for k, v in uninterrupted["model"].items():
            assert torch.equal(v, last["model"][k]), k


def test_best_pt_is_written_before_last_pt(tmp_path, monkeypatch):
    order = []
    real_save = engine_mod.save_checkpoint
    monkeypatch.setattr(engine_mod, "save_checkpoint", lambda state, path: order.append(Path(path).name)
                        or real_save(state, path))
    _Improving(_cfg(tmp_path, "run", CRASH), stream=io.StringIO()).run()
    assert order == ["best.pt", "last.pt", "best.pt", "last.pt"]


@pytest.mark.skipif(not Path("/proc/self/fd").is_dir(), reason="needs /proc to name the fsync'd files")
def test_checkpoints_are_fsynced_before_and_after_the_rename(tmp_path, monkeypatch):
    events = []
    real_fsync, real_replace = os.fsync, os.replace

    def fsync(fd):
        events.append(("fsync", os.readlink(f"/proc/self/fd/{fd}")))
        return real_fsync(fd)

    def replace(a, b):
        events.append(("replace", str(b)))
        return real_replace(a, b)

    monkeypatch.setattr(os, "fsync", fsync)
    monkeypatch.setattr(os, "replace", replace)
    target = tmp_path / "last.pt"
    save_checkpoint({"format": CHECKPOINT_FORMAT}, target)
    monkeypatch.undo()
    assert [e[0] for e in events] == ["fsync", "replace", "fsync"]
    assert Path(events[0][1]).name.startswith(".last.pt.tmp")  # the data, before it is renamed into place
    assert events[1][1] == str(target) and events[2][1] == str(tmp_path)  # the directory entry, after


def test_orphan_temp_files_are_removed_when_the_run_is_resumed(tmp_path):
    run = _interrupted_run(tmp_path)
    for name in (".last.pt.tmp4242", ".metrics.csv.tmp", ".config.yaml.tmp77"):
        (run / name).write_bytes(b"half a file")
    (run / "notes.tmp.txt").write_text("mine")  # not a temporary file of ours: kept
    out = io.StringIO()
    Trainer(resume_config(run), resume=run, stream=out).run()
    assert _temp_files(run) == ["notes.tmp.txt"]
    assert "removed .last.pt.tmp4242" in out.getvalue()


# ------------------------------------------------------------------------------------- run directories
def test_an_occupied_output_dir_is_refused_and_left_alone(tmp_path):
    Trainer(_cfg(tmp_path, overrides=["data.val_fraction=0.25"]), stream=io.StringIO()).run()
    run = tmp_path / "run"
    before = {p.name: p.read_bytes() for p in run.iterdir() if p.is_file()}
    with pytest.raises(ConfigError, match=r"output.dir '.*run' is not empty .*--resume .*output.overwrite=true"):
        Trainer(_cfg(tmp_path, overrides=["model.name=resnet18"]), stream=io.StringIO()).run()
    assert {p.name: p.read_bytes() for p in run.iterdir() if p.is_file()} == before


def test_overwrite_replaces_the_old_run_completely(tmp_path):
    Trainer(_cfg(tmp_path, overrides=["data.val_fraction=0.25"]), stream=io.StringIO()).run()
    run = tmp_path / "run"
    (run / "notes.txt").write_text("mine")
    (run / ".last.pt.tmp99").write_bytes(b"x")
    Trainer(_cfg(tmp_path, overrides=["model.name=resnet18", "output.overwrite=true"]), stream=io.StringIO()).run()
    assert not (run / "best.pt").exists()  # the old model's best.pt is gone, so `eval RUN` reads the new run
    assert evaluate_checkpoint(run, device=DEVICE)["epoch"] == 1
    assert load_checkpoint(run)["config"]["model"]["name"] == "resnet18"
    assert len((run / "metrics.jsonl").read_text().splitlines()) == 1
    assert (run / "notes.txt").read_text() == "mine" and _temp_files(run) == []


def test_a_rejected_resume_leaves_the_run_directory_unchanged(tmp_path):
    run = _interrupted_run(tmp_path)
    before = {p.name: p.read_bytes() for p in run.iterdir() if p.is_file()}
    with pytest.raises(CheckpointError, match="does not match the model/optimizer"):
        Trainer(resume_config(run, ["model.width=8"]), resume=run, stream=io.StringIO()).run()
    assert {p.name: p.read_bytes() for p in run.iterdir() if p.is_file()} == before  # config.yaml included


def test_a_resume_that_changes_the_trajectory_is_warned_about_and_recorded(tmp_path):
    run = _interrupted_run(tmp_path)
    state = load_checkpoint(run)
    state["meta"]["world_size"] = 2  # as if the first part ran on two processes
    save_checkpoint(state, run / "last.pt")
    out = io.StringIO()
    cfg = resume_config(run, ["data.batch_size=8", "train.epochs=3", "optim.momentum=0.8",
                              "train.max_skipped_steps=20", "data.eval_subset=8"])
    s = Trainer(cfg, resume=run, stream=out).run()
    changes = ["data.batch_size 16 -> 8", "optim.momentum 0.9 -> 0.8", "train.epochs 2 -> 3", "world size 2 -> 1"]
    assert s["resumes"] == [{"epoch": 1, "changes": changes}]  # the guard and the eval subset do not count
    assert load_checkpoint(run)["resumes"] == s["resumes"]
    assert "warning: resuming with changed settings (data.batch_size 16 -> 8;" in out.getvalue()
    assert "the result will differ from an uninterrupted run" in (run / "log.txt").read_text()


# ------------------------------------------------------------------------------------------ checkpoints
class _Payload:
    """Unpickling this would create ``path`` (``open(path, "w")``)."""

    def __init__(self, path: Path) -> None:
        self.path = path

    def __reduce__(self):
        return (open, (str(self.path), "w"))


def test_a_malicious_checkpoint_is_refused_without_running_its_code(tmp_path, capsys):
    marker = tmp_path / "pwned"
    run = tmp_path / "run"
    run.mkdir()
    torch.save({"format": CHECKPOINT_FORMAT, "config": {}, "epoch": 1, "model": {}, "x": _Payload(marker)},
               run / "last.pt")
    with pytest.raises(CheckpointError, match="corrupt or not a lorentzcv checkpoint"):
        load_checkpoint(run / "last.pt")
    assert main(["eval", str(run / "last.pt")]) == 2
    assert main(["train", "--resume", str(run)]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 2 and all(line.startswith("error: cannot read checkpoint") for line in err)
    assert not marker.exists()


def test_a_checkpoint_with_only_the_format_tag_is_a_clear_error(tmp_path, capsys):
    run = tmp_path / "run"
    run.mkdir()
    torch.save({"format": CHECKPOINT_FORMAT}, run / "last.pt")
    assert main(["eval", str(run / "last.pt")]) == 2
    assert main(["train", "--resume", str(run)]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 2
    assert all("is incomplete: it has no 'config', 'epoch', 'model' entry" in line for line in err)


def test_a_resume_needs_the_optimizer_and_rng_states(tmp_path):
    run = _interrupted_run(tmp_path)
    state = load_checkpoint(run)
    del state["rng"]
    save_checkpoint(state, run / "last.pt")
    with pytest.raises(CheckpointError, match="it has no 'rng' entry"):
        Trainer(resume_config(run), resume=run, stream=io.StringIO()).run()


# -------------------------------------------------------------------------------------------------- DDP
def test_the_process_group_gets_the_configured_timeout(monkeypatch):
    import torch.distributed as dist

    seen = {}
    monkeypatch.setenv("WORLD_SIZE", "2")
    monkeypatch.setenv("LOCAL_RANK", "0")
    monkeypatch.setattr(dist, "is_initialized", lambda: False)
    monkeypatch.setattr(dist, "init_process_group", lambda **kw: seen.update(kw))
    monkeypatch.setattr(dist, "get_rank", lambda: 0)
    monkeypatch.setattr(dist, "get_world_size", lambda: 2)
    info = init_distributed("cpu", timeout_s=7)
    assert info.world_size == 2 and seen["backend"] == "gloo" and seen["timeout"] == timedelta(seconds=7)
    assert load_config(None).train.ddp_timeout_s == 300.0  # a few minutes, not torch's 30


class _Store:
    """The part of a c10d store that :class:`ProgressBoard` uses."""

    def __init__(self):
        self.data = {}

    def set(self, key, value):
        self.data[key] = value.encode()

    def check(self, keys):
        return all(k in self.data for k in keys)

    def get(self, key):
        return self.data[key]


def test_the_timeout_message_names_the_stalled_rank():
    store = _Store()
    boards = []
    for rank in range(3):
        b = ProgressBoard(DistInfo(rank=rank, world_size=3))
        b.store = store
        boards.append(b)
    for b in boards:
        b.mark("epoch 1 step 1")
    boards[0].mark("epoch 1 step 2")
    boards[2].mark("epoch 1 step 2")
    err = timeout_error(RuntimeError("Timed out waiting 3000ms for recv operation to complete"), boards[0].info,
                        3, boards[0])
    msg = str(err)
    assert isinstance(err, TimeoutError) and "\n" not in msg
    assert "rank 1 at 'epoch 1 step 1' while the others reached 'epoch 1 step 2'" in msg
    assert "train.ddp_timeout_s=3" in msg


STALL = """
import sys, time
from lorentzcv.train import engine
from lorentzcv.cli import main

train_epoch = engine.Engine._train_epoch

def stalled(self, epoch):  # rank 1 hangs (a stuck data loader, a dead filesystem)
    if self.dist.rank == 1:
        time.sleep(120)
    return train_epoch(self, epoch)

engine.Engine._train_epoch = stalled
sys.exit(main(sys.argv[1:]))
"""


def test_a_timed_out_collective_becomes_a_one_line_error(tmp_path, monkeypatch):
    """What ``Trainer.run`` does with a collective's timeout (the real thing: the slow test below)."""
    monkeypatch.setattr(engine_mod, "init_distributed", lambda *a, **k: DistInfo(rank=0, world_size=2))
    monkeypatch.setattr(engine_mod, "broadcast_object", lambda obj, info: obj)
    monkeypatch.setattr(engine_mod, "shutdown", lambda info, barrier=True: None)

    def stall(self):
        raise RuntimeError("[gloo/transport/tcp/unbound_buffer.cc:78] Timed out waiting 3000ms for recv operation")

    monkeypatch.setattr(Trainer, "_run", stall)
    with pytest.raises(TimeoutError, match=r"on rank 0 timed out after train.ddp_timeout_s=300 s \(another rank "
                                           r"stalled or died\)"):
        Trainer(_cfg(tmp_path), stream=io.StringIO()).run()
    assert main(["train", "--set", f"output.dir={tmp_path / 'cli'}", "--set", "train.device=cpu"]) == 2


@pytest.mark.slow
def test_a_stalled_rank_ends_the_job_with_a_message_naming_it(tmp_path):
    script = tmp_path / "stall.py"
    script.write_text(textwrap.dedent(STALL))
    args = [a for o in ["model.width=4", "model.layers=[1, 1, 1, 1]", "data.train_subset=64", "data.eval_subset=32",
                        "data.batch_size=32", "output.progress=false", "output.tensorboard=false",
                        "train.device=cpu", "train.ddp_timeout_s=3", f"output.dir={tmp_path / 'ddp'}"]
            for a in ("--set", o)]
    cmd = [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node=2", str(script), "train",
           *args]
    proc = subprocess.run(cmd, capture_output=True, text=True, timeout=100,
                          env={**os.environ, "OMP_NUM_THREADS": "1"})
    assert proc.returncode != 0
    lines = [line for line in proc.stderr.splitlines() if line.startswith("error: distributed run")]
    assert len(lines) == 1, proc.stderr[-3000:]
    assert "timed out after train.ddp_timeout_s=3 s" in lines[0] and "rank 1" in lines[0]
    assert not (tmp_path / "ddp" / "summary.json").exists()
