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
@pytest.mark.parametrize("argv", [[], ["train"], ["eval"], ["models"], ["datasets"], ["plot"], ["config"]])
def test_help_everywhere(argv, capsys):
    with pytest.raises(SystemExit) as e:
        main([*argv, "--help"])
    assert e.value.code == 0
    assert "usage: lorentzcv" in capsys.readouterr().out


def test_no_command_prints_help(capsys):
    assert main([]) == 0
    out = capsys.readouterr().out
    for cmd in ("train", "eval", "plot", "config", "models", "datasets", "bench"):
        assert cmd in out


def test_version(capsys):
    import lorentzcv

    with pytest.raises(SystemExit) as e:
        main(["--version"])
    assert e.value.code == 0
    out = capsys.readouterr().out
    assert out.startswith(f"lorentzcv {lorentzcv.__version__} (torch ") and "timm" in out


# ----------------------------------------------------------------------------------------- listings
def test_models(capsys):
    assert main(["models"]) == 0
    out = capsys.readouterr().out
    names = out.split()
    assert {"resnet18", "hybrid_resnet18", "hcnn_resnet18", "hecnn_resnet18", "hecnn_resnet50"} <= set(names)
    # the embedding models are listed too, in their own section (the README promises it)
    assert "lorentz_embed_resnet50" in names and "euclidean_embed_bninception" in names
    assert out.index("classifiers") < out.index("hecnn_resnet18") < out.index("embedding models")
    assert main(["models", "hecnn*", "--names"]) == 0
    assert capsys.readouterr().out.split() == ["hecnn_resnet18", "hecnn_resnet50"]
    assert main(["models", "*embed_dino*", "--names"]) == 0
    assert capsys.readouterr().out.split() == ["euclidean_embed_dino_vits16", "lorentz_embed_dino_vits16",
                                               "poincare_embed_dino_vits16"]
    assert main(["models", "nothing*"]) == 2
    assert "no model matches" in _error_line(capsys)


# ------------------------------------------------------------------------------------------ config
def test_config_prints_the_resolved_yaml(tmp_path, capsys):
    import yaml

    assert main(["config", "--set", "optim.lr=0.05", "--set", "model.width=4"]) == 0
    cfg = yaml.safe_load(capsys.readouterr().out)
    assert cfg["optim"]["lr"] == 0.05 and cfg["model"]["width"] == 4 and cfg["model"]["name"] == "hecnn_resnet18"
    assert {"data", "train", "schedule", "output"} <= set(cfg)  # every section, defaults filled in
    metric = REPO / "configs" / "metric" / "demo" / "fashion_mnist_dml_lhier.yaml"
    assert main(["config", str(metric)]) == 0
    assert yaml.safe_load(capsys.readouterr().out)["task"] == "metric"
    assert main(["config", "--set", "optim.lrr=1"]) == 2
    assert "optim.lrr" in _error_line(capsys)
    assert main(["config", str(tmp_path / "nope.yaml")]) == 2
    _error_line(capsys)


# -------------------------------------------------------------------------------------------- plot
def test_plot_command(tmp_path, capsys):
    import json

    run = tmp_path / "run"
    run.mkdir()
    rows = [{"epoch": e, "train_loss": 1.0 / e, "train_acc": 0.1 * e, "test_acc": 0.1 * e, "K/manifold": -1 + 0.1 * e}
            for e in (1, 2)]
    (run / "metrics.jsonl").write_text("".join(json.dumps(r) + "\n" for r in rows))
    assert main(["plot", str(run), "--out", str(tmp_path / "figs")]) == 0
    out = capsys.readouterr().out
    assert f"wrote {tmp_path / 'figs' / 'curves.png'}" in out and "curvature.png" in out
    assert (tmp_path / "figs" / "curves.png").read_bytes()[:4] == b"\x89PNG"
    assert main(["plot", str(run), "--no-embeddings"]) == 0  # default: RUN_DIR/plots for one run
    assert (run / "plots" / "curvature.png").is_file()
    capsys.readouterr()
    assert main(["plot", str(tmp_path / "missing")]) == 2
    assert "no metrics.jsonl" in _error_line(capsys)


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
FAKE_BENCH = """
import json, sys
args = sys.argv[1:]
print("profiler noise", file=sys.stderr)
if "--fail" in args:
    print("Traceback: it broke", file=sys.stderr)
    sys.exit(3)
entry = lambda t, r: {"time_ms": t, "time_ratio": r, "act_mem_mb": 1.5, "mem_ratio": 2.0, "kernel_ops": 8,
                      "kernel_ops_ratio": 1.0}
result = {"config": {"device": "cpu", "batch": 2}, "args": args[:args.index("--out")],
          "layers": {"fp32": {"conv3x3": {"nn.Conv2d": entry(1.0, 1.0), "lorentz_efficient": entry(1.7, 1.7)}}},
          "models": {"fp32": {"resnet18": entry(10.0, 1.0), "hecnn_resnet18": entry(30.0, 3.0)}},
          "targets": {"hecnn_resnet18_step_time": {"ratio": 3.0, "target": 2.75, "met": False}}, "wall_s": 1.0}
print(json.dumps(result, indent=1))  # 100+ lines of JSON on stdout, as compute.py does
open(args[args.index("--out") + 1], "w").write(json.dumps(result))
"""


def test_bench_prints_tables_and_keeps_noise_off_the_terminal(tmp_path, monkeypatch, capsys):
    import json

    script = tmp_path / "benchmarks" / "compute.py"
    script.parent.mkdir()
    script.write_text(FAKE_BENCH)
    monkeypatch.setattr(cli, "find_benchmark", lambda: script)
    assert main(["bench", "--only", "layers"]) == 0
    cap = capsys.readouterr()
    assert "profiler noise" not in cap.out + cap.err and '"layers"' not in cap.out
    lines = cap.out.splitlines()
    assert any(ln.startswith("layers/fp32/conv3x3") and "x time" in ln for ln in lines)
    assert any(ln.split()[:3] == ["hecnn_resnet18", "30", "3"] for ln in lines)
    assert "hecnn_resnet18_step_time: 3 (target 2.75) NOT met" in cap.out
    out = tmp_path / "res" / "bench.json"
    assert main(["bench", "--only", "models", f"--out={out}"]) == 0
    saved = json.loads(out.read_text())
    assert saved["args"] == ["--only", "models"] and "wrote" in capsys.readouterr().err
    assert main(["bench", "--json", "--only", "layers"]) == 0
    assert json.loads(capsys.readouterr().out)["args"] == ["--only", "layers"]
    assert main(["bench", "--fail"]) == 3
    err = capsys.readouterr().err
    assert "it broke" in err and "compute.py failed (exit status 3)" in err
    monkeypatch.setattr(cli, "find_benchmark", lambda: None)
    assert main(["bench"]) == 2
    assert "benchmarks/compute.py not found" in _error_line(capsys)


def test_format_bench_on_an_empty_result():
    assert cli.format_bench({}) == "lorentzcv bench"


def test_bench_runs_from_the_installed_package():
    """``lorentzcv bench`` needs no source checkout: the benchmark is the package module ``lorentzcv.bench``."""
    import lorentzcv.bench

    assert cli.find_benchmark() == Path(lorentzcv.bench.__file__).resolve()


def test_format_bench_shows_launch_and_compile_passes():
    result = {"launches": {"fp32": {"models": {"resnet18": {"launches": 189, "launches_ratio": 1.0},
                                               "hecnn_resnet18": {"launches": 1143, "launches_ratio": 6.05}}}},
              "compile": {"fp32": {"resnet18": {"compile_s": 53.0, "eager_ms": 1216.0, "compiled_ms": 1143.0,
                                                "speedup": 1.06, "time_ratio": 1.0}}}}
    text = cli.format_bench(result)
    assert "launches/fp32/models" in text and "1143" in text and "6.05" in text
    assert "compile/fp32" in text and "speedup" in text and "1.06" in text


def test_eval_prints_the_hierarchy_metrics_of_a_dataset_with_superclasses(monkeypatch, capsys):
    """`lorentzcv eval` on a metric run whose dataset has superclasses shows superclass Recall@K and where the top-1
    mistakes land (they were returned but not printed)."""
    import lorentzcv.train as train_api

    result = {"task": "metric", "dataset": "fashion_mnist_hier", "split": "test", "protocol": "leave-one-out",
              "n": 100, "recall": {1: 0.8, 2: 0.9}, "map_at_r": 0.4, "curvatures": {}, "checkpoint": "x.pt",
              "epoch": 3, "hierarchy": {"SR@1": 0.95, "SR@2": 0.99, "mistake_rate": 0.2, "mistake_depth": 0.75,
                                        "mistake_in_super": 0.75}}
    monkeypatch.setattr(train_api, "evaluate_checkpoint", lambda *a, **k: result)
    assert main(["eval", "x.pt"]) == 0
    out = capsys.readouterr().out
    assert "superclasses: SR@1 95.00 %  SR@2 99.00 %  top-1 mistakes 20.00 %, 75.00 % of them" in out
    assert "mean LCA depth 0.750" in out
