"""ONNX export (``lorentzcv.export``, ``lorentzcv export``): Lorentz models export (the old exporter stopped at
``aten::sinh``) and onnxruntime computes what PyTorch computes, with a dynamic batch."""

from __future__ import annotations

import importlib.util
import io
import json
from pathlib import Path

import pytest

from lorentzcv.cli import main
from lorentzcv.models import create_model, list_embedding_models, list_models
from lorentzcv.models.embedding import EMBEDDING_ENTRYPOINTS, create_embedding_model
from lorentzcv.train import load_config, train

pytest.importorskip("onnxscript", reason="ONNX export needs the onnx extra: pip install 'lorentzcv[onnx]'")
pytest.importorskip("onnx")
from lorentzcv.export import export_onnx  # noqa: E402

REPO = Path(__file__).resolve().parents[1]
HAS_ORT = importlib.util.find_spec("onnxruntime") is not None


def _check(r: dict) -> None:
    assert Path(r["path"]).is_file() and r["input"][0] is None and r["output"][0] is None
    if HAS_ORT:
        assert r["checked_by"] == "onnxruntime" and r["max_abs_diff"] <= 1e-4
    else:
        assert r["checked_by"] == "onnx.checker"


def test_a_hybrid_lorentz_classifier_exports_and_matches(tmp_path):
    """hybrid_resnet18: a Lorentz bridge (sinh/asinh in the rescaling) and a Lorentz MLR head."""
    model = create_model("hybrid_resnet18", num_classes=5, img_size=16, width=4, layers=[1, 1, 1, 1])
    model.train()
    r = export_onnx(model, tmp_path / "sub" / "hybrid.onnx", input_shape=(3, 16, 16))
    _check(r)
    assert r["input"] == [None, 3, 16, 16] and r["output"] == [None, 5]
    assert model.training  # the mode is restored


@pytest.mark.parametrize("head", ["lorentz", "poincare"])
def test_a_hyperbolic_embedding_model_exports_and_matches(tmp_path, head):
    model = create_embedding_model("convnet_small", head, 8, width=4, in_chans=1)
    r = export_onnx(model, tmp_path / f"{head}.onnx", input_shape=(1, 8, 8))
    _check(r)
    assert r["output"] == [None, 9 if head == "lorentz" else 8]  # Lorentz points have 1 + D coordinates


def test_export_refuses_a_graph_that_disagrees(tmp_path, monkeypatch):
    if not HAS_ORT:
        pytest.skip("needs onnxruntime")
    model = create_embedding_model("convnet_small", "euclidean", 4, width=2, in_chans=1)
    with pytest.raises(ValueError, match="disagrees with PyTorch"):
        export_onnx(model, tmp_path / "m.onnx", input_shape=(1, 8, 8), atol=-1.0)


def test_an_export_failure_is_one_line(tmp_path):
    model = create_embedding_model("convnet_small", "euclidean", 4, width=2, in_chans=3)
    with pytest.raises(ValueError, match=r"^ONNX export of EmbeddingModel failed: .*3 channels, but got 1") as info:
        export_onnx(model, tmp_path / "m.onnx", input_shape=(1, 8, 8))
    assert "\n" not in str(info.value)


def test_without_onnxruntime_the_file_is_checked_by_onnx(tmp_path, monkeypatch):
    real = importlib.util.find_spec
    monkeypatch.setattr(importlib.util, "find_spec", lambda name, *a: None if name == "onnxruntime" else real(name, *a))
    r = export_onnx(create_embedding_model("convnet_small", "euclidean", 4, width=2, in_chans=1), tmp_path / "m.onnx",
                    input_shape=(1, 8, 8))
    assert r["checked_by"] == "onnx.checker" and r["max_abs_diff"] is None


def test_cli_exports_a_config_and_a_trained_run(tmp_path, capsys):
    demo = REPO / "configs" / "metric" / "demo" / "digits_dml_lhier.yaml"
    assert main(["export", str(demo), "--out", str(tmp_path / "demo.onnx")]) == 0
    out = capsys.readouterr().out
    assert "metric model" in out and "input images (batch, 1, 8, 8) float32 -> output (batch, 17)" in out

    run = tmp_path / "run"
    train(load_config(None, ["model.name=resnet18", "model.width=4", "model.layers=[1, 1, 1, 1]", "train.epochs=1",
                             "train.max_steps_per_epoch=1", "train.device=cpu", "output.progress=false",
                             "output.tensorboard=false", f"output.dir={run}"]), stream=io.StringIO())
    assert main(["export", str(run), "--json"]) == 0
    r = json.loads(capsys.readouterr().out)
    assert r["path"] == str(run / "model.onnx") and r["epoch"] == 1 and r["task"] == "classification"
    assert r["source"] == str(run / "last.pt") and r["output"] == [None, 10]


def test_cli_without_the_exporter_is_a_one_line_error(tmp_path, capsys, monkeypatch):
    real = importlib.util.find_spec
    monkeypatch.setattr(importlib.util, "find_spec", lambda name, *a: None if name == "onnxscript" else real(name, *a))
    config = REPO / "configs" / "demo" / "digits_hecnn.yaml"
    assert main(["export", str(config), "--out", str(tmp_path / "m.onnx")]) == 2
    err = capsys.readouterr().err.strip()
    assert err.startswith("error: ONNX export needs onnxscript: pip install 'lorentzcv[onnx]'") and "\n" not in err
    assert not (tmp_path / "m.onnx").exists()


#: Small but complete instances of every registered model (the architecture's code paths, few channels).
SMALL = {"width": 4, "layers": [1, 1, 1, 1]}
VIT_SMALL = {"depth": 1, "embed_dim": 48, "num_heads": 2}


@pytest.mark.slow
@pytest.mark.parametrize("name", list_models())
def test_every_registered_classifier_exports(tmp_path, name):
    model = create_model(name, num_classes=3, img_size=16, **SMALL)
    _check(export_onnx(model, tmp_path / f"{name}.onnx", input_shape=(3, 16, 16)))


@pytest.mark.slow
@pytest.mark.parametrize("name", list_embedding_models())
def test_every_registered_embedding_model_exports(tmp_path, name):
    vit = any(t in name for t in ("vit", "deit"))
    size = 32 if vit else 64
    model = EMBEDDING_ENTRYPOINTS[name](img_size=size, embedding_dim=8, **(VIT_SMALL if vit else {}))
    _check(export_onnx(model, tmp_path / f"{name}.onnx", input_shape=(3, size, size)))
