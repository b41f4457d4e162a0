"""The ``lorentzcv`` command line: help, listings, the demo code path, eval, bench, and one-line errors."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest
import torch

from lorentzcv import cli
from lorentzcv.cli import main

REPO = Path(__file__).resolve().parents[1]
FAST = ["--set", "model.width=4", "--set", "train.epochs=1", "--set", "data.train_subset=64",
        "--set", "data.eval_subset=32", "--set", "output.progress=false", "--set", "output.tensorboard=false",
        "--set", "train.device=cpu"]


@pytest.fixture(autouse=True)
def _one_thread():
    n = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(n)


def _error_line(capsys) -> str:
    err = capsys.readouterr().err
    lines = err.strip().splitlines()
    assert len(lines) == 1, err  # one line, no traceback
    assert lines[0].startswith("error: ") and "Traceback" not in err
    return lines[0]


# ---------------------------------------------------------------------------------------------- help
@pytest.mark.parametrize("argv", [[], ["train"], ["eval"], ["models"], ["datasets"]])
def test_help_everywhere(argv, capsys):
    with pytest.raises(SystemExit) as e:
        main([*argv, "--help"])
    assert e.value.code == 0
    assert "usage: lorentzcv" in capsys.readouterr().out


def test_no_command_prints_help(capsys):
    assert main([]) == 0
    out = capsys.readouterr().out
    for cmd in ("train", "eval", "models", "datasets", "bench"):
        assert cmd in out


# ----------------------------------------------------------------------------------------- listings
def test_models(capsys):
    assert main(["models"]) == 0
    names = capsys.readouterr().out.split()
    assert {"resnet18", "hybrid_resnet18", "hcnn_resnet18", "hecnn_resnet18", "hecnn_resnet50"} <= set(names)
    assert main(["models", "hecnn*"]) == 0
    assert set(capsys.readouterr().out.split()) == {"hecnn_resnet18", "hecnn_resnet50"}
    assert main(["models", "nothing*"]) == 2
    assert "no model matches" in _error_line(capsys)


def test_datasets_show_layouts(capsys):
    assert main(["datasets"]) == 0
    out = capsys.readouterr().out
    assert "cifar10" in out and "tiny_imagenet" in out and "val_annotations.txt" in out and "layout:" in out
    assert main(["datasets", "digits"]) == 0
    out = capsys.readouterr().out
    assert out.startswith("digits") and "cifar10" not in out
    assert main(["datasets", "cifar11"]) == 2
    assert "Did you mean 'cifar10'" in _error_line(capsys)


# ------------------------------------------------------------------------------- train (demo path)
def test_demo_code_path_and_eval(tmp_path, capsys):
    """The default config (what `lorentzcv train` runs) shrunk to one epoch on a subset, then `eval` on it."""
    run = tmp_path / "demo"
    assert main(["train", *FAST, "--set", f"output.dir={run}"]) == 0
    out = capsys.readouterr().out
    assert "lorentzcv train: summary" in out and "test accuracy" in out
    assert "curvature K encoder_manifold" in out and "curvature K decoder_manifold" in out
    assert str(run) in out
    assert (run / "last.pt").is_file() and (run / "config.yaml").is_file()

    assert main(["eval", str(run), "--split", "test"]) == 0
    out = capsys.readouterr().out
    assert "digits test: accuracy" in out and "(32 images" in out
    assert main(["eval", str(run / "last.pt"), "--json"]) == 0
    assert '"acc"' in capsys.readouterr().out


def test_warnings_print_as_one_line(tmp_path, capsys):
    """A library warning reaches the user as ``warning: …`` without Python's source-line echo."""
    assert main(["train", *FAST, "--set", f"output.dir={tmp_path / 'r'}", "--set", "train.device=cpu",
                 "--set", "train.amp=fp16"]) == 0
    err = capsys.readouterr().err
    assert "warning: train.amp=fp16 on CPU is slow" in err
    assert "resolve_amp(" not in err and "UserWarning" not in err


def test_resume_of_a_finished_run_and_config_plus_resume(tmp_path, capsys):
    run = tmp_path / "r"
    assert main(["train", *FAST, "--set", "data.train_subset=16", "--set", f"output.dir={run}"]) == 0
    capsys.readouterr()
    assert main(["train", "--resume", str(run)]) == 2
    assert "already finished 1 of train.epochs=1" in _error_line(capsys)
    assert main(["train", "--resume", str(run), "--set", "train.epochs=2"]) == 0  # train longer
    assert "resuming" in capsys.readouterr().out
    assert torch.load(run / "last.pt", weights_only=True)["epoch"] == 2
    assert main(["train", str(REPO / "configs/demo/digits_hecnn.yaml"), "--resume", str(run)]) == 2
    assert "either CONFIG or --resume" in _error_line(capsys)


# ------------------------------------------------------------------------------------------- errors
def test_unknown_config_key(capsys):
    assert main(["train", "--set", "optim.lrr=0.1"]) == 2
    line = _error_line(capsys)
    assert "unknown config key 'optim.lrr'" in line and "did you mean 'optim.lr'" in line and "momentum" in line


def test_wrong_type(capsys):
    assert main(["train", "--set", "train.epochs=ten"]) == 2
    line = _error_line(capsys)
    assert "'train.epochs' expects int" in line and "--set train.epochs=" in line


def test_missing_config_file(tmp_path, capsys):
    assert main(["train", str(tmp_path / "nope.yaml")]) == 2
    assert "config file" in _error_line(capsys)


def test_missing_dataset_directory(tmp_path, capsys):
    assert main(["train", *FAST, "--set", "data.name=cifar10", "--set", f"data.root={tmp_path / 'none'}",
                 "--set", f"output.dir={tmp_path / 'run'}"]) == 2
    line = _error_line(capsys)
    assert "cifar10" in line and "data.root" in line and "lorentzcv datasets cifar10" in line
    assert not (tmp_path / "run").exists()  # nothing is created for a run that cannot start


def test_unknown_model_name(capsys):
    assert main(["train", "--set", "model.name=hecnn_resnet19"]) == 2
    assert "Did you mean 'hecnn_resnet18'" in _error_line(capsys)


def test_corrupt_checkpoint(tmp_path, capsys):
    bad = tmp_path / "run"
    bad.mkdir()
    (bad / "last.pt").write_bytes(b"\x00garbage")
    assert main(["eval", str(bad / "last.pt")]) == 2
    assert "corrupt or not a lorentzcv checkpoint" in _error_line(capsys)
    assert main(["train", "--resume", str(bad)]) == 2
    assert "corrupt or not a lorentzcv checkpoint" in _error_line(capsys)
    assert main(["eval", str(tmp_path / "missing.pt")]) == 2
    assert "does not exist" in _error_line(capsys)


def test_debug_shows_the_traceback():
    from lorentzcv.train import ConfigError

    with pytest.raises(ConfigError, match="optim.lrr"):
        main(["train", "--debug", "--set", "optim.lrr=0.1"])
    with pytest.raises(ConfigError):
        main(["--debug", "train", "--set", "optim.lrr=0.1"])


def test_error_exit_status_in_a_real_process(tmp_path):
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    proc = subprocess.run([sys.executable, "-m", "lorentzcv", "train", "--set", "train.epochs=zero"],
                          capture_output=True, text=True, cwd=tmp_path, env=env, timeout=120)
    assert proc.returncode == 2
    assert proc.stderr.strip().startswith("error: ") and len(proc.stderr.strip().splitlines()) == 1
    assert "Traceback" not in proc.stderr and not (tmp_path / "runs").exists()


# -------------------------------------------------------------------------------------------- bench
def test_bench_runs_benchmarks_compute(tmp_path, monkeypatch, capsys):
    script = tmp_path / "benchmarks" / "compute.py"
    script.parent.mkdir()
    script.write_text("import sys\nprint('bench args', sys.argv[1:])\nsys.exit(3 if '--fail' in sys.argv else 0)\n")
    monkeypatch.setattr(cli, "find_benchmark", lambda: script)
    assert main(["bench", "--layers", "conv", "--json", "out.json"]) == 0
    assert "bench args ['--layers', 'conv', '--json', 'out.json']" in capsys.readouterr().out
    assert main(["bench", "--fail"]) == 3
    monkeypatch.setattr(cli, "find_benchmark", lambda: None)
    assert main(["bench"]) == 2
    assert "benchmarks/compute.py not found" in _error_line(capsys)


def test_find_benchmark_prefers_the_working_directory(tmp_path, monkeypatch):
    (tmp_path / "benchmarks").mkdir()
    (tmp_path / "benchmarks" / "compute.py").write_text("")
    monkeypatch.chdir(tmp_path)
    assert cli.find_benchmark() == tmp_path / "benchmarks" / "compute.py"


# ---------------------------------------------------------------------------------------- full demo
@pytest.mark.slow
def test_full_demo(tmp_path, monkeypatch, capsys):
    """`lorentzcv train` with no arguments: > 90 % test accuracy on digits with learned curvatures."""
    import json

    monkeypatch.chdir(tmp_path)
    assert main(["train"]) == 0
    runs = list((tmp_path / "runs").iterdir())
    assert len(runs) == 1 and runs[0].name.startswith("digits_hecnn_resnet18-")
    summary = json.loads((runs[0] / "summary.json").read_text())
    assert summary["test_acc"] > 0.9
    assert all(k != -1.0 for k in summary["curvatures"].values())
