"""The scripts in ``examples/`` run and do what their docstrings say.

Fast tests import each script and call its ``main`` with a few steps; the ``slow`` test runs every script as a
user would (``python examples/NAME.py``, default settings, a subprocess without network).
"""

from __future__ import annotations

import importlib.util
import math
import os
import subprocess
import sys
from pathlib import Path
from types import ModuleType

import pytest

ROOT = Path(__file__).resolve().parents[1]
EXAMPLES = sorted((ROOT / "examples").glob("*.py"))


def load(name: str) -> ModuleType:
    path = ROOT / "examples" / f"{name}.py"
    spec = importlib.util.spec_from_file_location(f"lorentzcv_example_{name}", path)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_examples_exist_and_are_documented() -> None:
    names = {p.stem for p in EXAMPLES}
    assert {"manifold_parameter_radamw", "pml_loss_lorentz_distance", "timm_backbone_lorentz_embedding"} <= names
    for path in EXAMPLES:
        text = path.read_text(encoding="utf-8")
        assert text.startswith('"""') and "Run: ``python examples/" in text, path.name
        assert 'if __name__ == "__main__":' in text, path.name


def test_manifold_parameter_radamw(capsys) -> None:
    out = load("manifold_parameter_radamw").main(steps=40)
    assert out["accuracy"] > 0.5  # 10 classes: chance is 0.1
    assert out["off_manifold"] < 1e-3  # the prototypes stay on the (moving) hyperboloid
    assert out["k"] != 1.0  # the curvature was learned
    assert "('manifold', 1), ('curvature', 1)" in capsys.readouterr().out


def test_pml_loss_lorentz_distance() -> None:
    out = load("pml_loss_lorentz_distance").main(steps=40)
    assert out["recall1_after"] > out["recall1_before"]


def test_timm_backbone_lorentz_embedding() -> None:
    out = load("timm_backbone_lorentz_embedding").main(steps=2, embedding_dim=8)
    assert 0.0 <= out["recall1"] <= 1.0
    assert out["off_manifold"] < 1e-2 and math.isfinite(out["k"])


@pytest.mark.slow
@pytest.mark.parametrize("path", EXAMPLES, ids=lambda p: p.name)
def test_example_runs_as_a_script(path: Path) -> None:
    env = {**os.environ, "HF_HUB_OFFLINE": "1", "OMP_NUM_THREADS": "1"}
    proc = subprocess.run([sys.executable, str(path)], cwd=ROOT, env=env, capture_output=True, text=True,
                          timeout=600)
    assert proc.returncode == 0, proc.stdout[-2000:] + proc.stderr[-4000:]
