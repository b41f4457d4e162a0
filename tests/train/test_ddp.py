"""A real 2-process ``torchrun`` (gloo, CPU) training run: exits 0, and both ranks end with identical parameters."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
import torch

from lorentzcv.train import build_model, config_from_dict, load_checkpoint
from lorentzcv.train.distributed import params_digest

ARGS = ["train", "--set", "model.width=4", "--set", "model.layers=[1, 1, 1, 1]", "--set", "train.epochs=2",
        "--set", "data.train_subset=64", "--set", "data.eval_subset=32", "--set", "data.batch_size=32",
        "--set", "output.progress=false", "--set", "train.device=cpu"]


def _torchrun(target: list[str], run_dir: Path, timeout: int = 150) -> subprocess.CompletedProcess:
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    cmd = [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node=2", *target, *ARGS,
           "--set", f"output.dir={run_dir}"]
    return subprocess.run(cmd, capture_output=True, text=True, timeout=timeout, env=env)


def _check(proc: subprocess.CompletedProcess, run_dir: Path) -> None:
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    summary = json.loads((run_dir / "summary.json").read_text())
    assert summary["world_size"] == 2
    digests = summary["ddp"]["param_digests"]
    assert len(digests) == 2 and digests[0] == digests[1] and summary["ddp"]["params_identical"]
    assert proc.stdout.count("lorentzcv train: summary") == 1  # only rank 0 logs
    assert "x2 (gloo)" in proc.stdout
    rows = (run_dir / "metrics.jsonl").read_text().splitlines()
    assert len(rows) == 2
    # rank 0's checkpoint holds exactly the parameters every rank ended with
    state = load_checkpoint(run_dir / "last.pt")
    meta = state["meta"]
    assert meta["world_size"] == 2
    model = build_model(config_from_dict(state["config"]), meta["num_classes"], meta["in_chans"], meta["img_size"])
    model.load_state_dict(state["model"])
    assert params_digest(model) == digests[0]
    # metrics are reduced over both ranks: the full 32-image test subset was counted, not one shard
    assert summary["test_acc"] * 32 == pytest.approx(round(summary["test_acc"] * 32))


def test_torchrun_two_processes_gloo(tmp_path):
    run_dir = tmp_path / "ddp"
    _check(_torchrun(["-m", "lorentzcv"], run_dir), run_dir)
    assert torch.load(run_dir / "last.pt", weights_only=True)["epoch"] == 2


@pytest.mark.slow
@pytest.mark.skipif(shutil.which("lorentzcv") is None and not (Path(sys.executable).parent / "lorentzcv").exists(),
                    reason="the lorentzcv console script is not installed")
def test_torchrun_console_script(tmp_path):
    script = shutil.which("lorentzcv") or str(Path(sys.executable).parent / "lorentzcv")
    run_dir = tmp_path / "ddp"
    _check(_torchrun([script], run_dir), run_dir)
