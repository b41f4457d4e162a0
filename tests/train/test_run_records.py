"""What a run records about itself: the data root it read (so a later ``eval`` finds the data) and a run
directory named after the dataset and model actually used; the offline metric demo the CLI cites."""

from __future__ import annotations

import io
import re
from pathlib import Path

import pytest
import yaml

from lorentzcv.cli import build_parser
from lorentzcv.train import ConfigError, evaluate_checkpoint, load_checkpoint, load_config, train

from .conftest import DEVICE, TINY

REPO = Path(__file__).resolve().parents[2]
DEMO = REPO / "configs" / "metric" / "demo"
#: ``--set`` overrides shrinking a metric demo config to a seconds-long run.
METRIC_TINY = [f"train.device={DEVICE}", "train.epochs=1", "train.max_steps_per_epoch=2", "data.num_workers=0",
               "output.progress=false", "output.tensorboard=false"]


def _only_run_dir(root: Path) -> Path:
    (run,) = [p for p in root.iterdir() if p.is_dir()]
    return run


def test_config_records_the_data_root_that_was_resolved(tmp_path, datasets_root, monkeypatch):
    """``data.root: null`` resolved through $LORENTZCV_DATA is saved as that root: ``eval`` works without it."""
    monkeypatch.setenv("LORENTZCV_DATA", str(datasets_root))
    run = tmp_path / "run"
    train(load_config(None, [*TINY, "data.name=cifar10", "model.name=resnet18", "data.batch_size=16",
                             "train.max_steps_per_epoch=1", f"output.dir={run}"]), stream=io.StringIO())
    saved = yaml.safe_load((run / "config.yaml").read_text())
    assert saved["data"]["root"] == str(datasets_root.resolve())
    assert load_checkpoint(run / "last.pt")["config"]["data"]["root"] == str(datasets_root.resolve())
    monkeypatch.delenv("LORENTZCV_DATA")
    r = evaluate_checkpoint(run, device="cpu")
    assert r["dataset"] == "cifar10" and r["n"] == 20


def test_a_relative_data_root_is_recorded_absolute(tmp_path, datasets_root, monkeypatch):
    monkeypatch.chdir(datasets_root.parent)
    run = tmp_path / "run"
    train(load_config(None, [*TINY, "data.name=cifar10", "model.name=resnet18", "data.batch_size=16",
                             "train.max_steps_per_epoch=1", f"data.root={datasets_root.name}", f"output.dir={run}"]),
          stream=io.StringIO())
    assert load_config(run / "config.yaml").data.root == str(datasets_root.resolve())


def test_the_offline_metric_demo_runs_and_keeps_an_embedded_root_null(tmp_path):
    """``configs/metric/demo/digits_dml_lhier.yaml`` needs no data; its run directory is named after digits."""
    s = train(load_config(DEMO / "digits_dml_lhier.yaml", [*METRIC_TINY, f"output.root={tmp_path}"]),
              stream=io.StringIO())
    run = _only_run_dir(tmp_path)
    assert run.name.startswith("demo_digits_dml_lhier-") and s["run_dir"] == str(run)
    assert load_config(run / "config.yaml").data.root is None  # scikit-learn's digits have no root
    assert 0.0 <= s["recall"][1] <= 1.0


def test_run_directory_is_named_after_the_dataset_used(tmp_path):
    """A Fashion-MNIST demo config trained on ``--set data.name=digits_dml`` names its directory after digits."""
    cfg = load_config(DEMO / "fashion_mnist_dml_lhier.yaml",
                      [*METRIC_TINY, "data.name=digits_dml", "data.eval_subset=100", f"output.root={tmp_path}"])
    train(cfg, stream=io.StringIO())
    assert _only_run_dir(tmp_path).name.startswith("demo_digits_dml_lhier-")


def test_a_metric_run_without_output_name_is_named_after_data_and_model(tmp_path):
    overrides = ["task=metric", "data.batch_size=16", "data.train_subset=64", "data.eval_subset=32",
                 "model.backbone_kwargs.width=4", "loss.num_proxies=8", "loss.topk=4", "loss.num_triplets=4",
                 *METRIC_TINY, f"output.root={tmp_path}"]
    train(load_config(None, overrides), stream=io.StringIO())
    assert _only_run_dir(tmp_path).name.startswith("digits_dml_convnet_small_lorentz-")


@pytest.mark.parametrize(("name", "expected"), [
    (None, "digits_hecnn_resnet18"), ("", "digits_hecnn_resnet18"), ("exp_{data}", "exp_digits"),
    ("{model}-{data}", "hecnn_resnet18-digits"), ("plain", "plain"),
])
def test_output_name_fields(name, expected):
    cfg = load_config(None, [f"output.name={name!r}" if name is not None else "output.name=null"])
    assert cfg.output.run_name(cfg.data.name, cfg.model_label()) == expected


@pytest.mark.parametrize("name", ["{dataset}", "{data", "{0}"])
def test_output_name_with_an_unknown_field_is_refused(name):
    with pytest.raises(ConfigError, match=r"output.name=.* may only use the fields \{data\} and \{model\}"):
        load_config(None, [f"output.name='{name}'"])


def test_every_config_the_train_help_cites_exists():
    parser = build_parser()
    sub = next(a for a in parser._actions if a.dest == "command")
    text = sub.choices["train"].format_help() + (parser.description or "")
    from lorentzcv import cli

    cited = set(re.findall(r"configs/[\w/.-]+\.yaml", text + (cli.__doc__ or "")))
    assert "configs/metric/demo/digits_dml_lhier.yaml" in cited
    assert all((REPO / c).is_file() for c in cited), sorted(c for c in cited if not (REPO / c).is_file())
