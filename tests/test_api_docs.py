"""The API reference builds offline from the repository (``scripts/build_api_docs.py``, pdoc)."""

from __future__ import annotations

import importlib
import importlib.util
import re
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
SUBPACKAGES = ("geometry", "optim", "nn", "models", "metric", "data", "train")


def _script():
    spec = importlib.util.spec_from_file_location("build_api_docs", ROOT / "scripts" / "build_api_docs.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_public_modules_cover_the_package() -> None:
    names = _script().public_modules()
    assert names[0] == "lorentzcv"
    assert {f"lorentzcv.{p}" for p in SUBPACKAGES} <= set(names)
    assert "lorentzcv.geometry.math" in names and "lorentzcv.cli" in names
    assert not [n for n in names if any(part.startswith("_") for part in n.split("."))]


def test_build_writes_pages_with_the_docstrings(tmp_path: Path) -> None:
    pytest.importorskip("pdoc", reason="pdoc is part of the docs and dev extras")
    pages = _script().build(tmp_path, show_source=False, modules=["lorentzcv", "lorentzcv.optim"])
    rel = {p.relative_to(tmp_path).as_posix() for p in pages}
    assert {"index.html", "lorentzcv.html", "lorentzcv/optim.html"} <= rel
    html = (tmp_path / "lorentzcv" / "optim.html").read_text(encoding="utf-8")
    for name in importlib.import_module("lorentzcv.optim").__all__:
        assert name in html, name
    assert "centroid weight decay" in html  # a docstring, not only the names
    assert not re.findall(r'src="https?:', html)  # the page loads nothing from the network


def test_no_pdoc_is_a_one_line_error(tmp_path: Path, monkeypatch) -> None:
    monkeypatch.setitem(sys.modules, "pdoc", None)  # import pdoc -> ImportError
    with pytest.raises(SystemExit, match=r"pip install -e \"\.\[docs\]\""):
        _script().build(tmp_path)


@pytest.mark.slow
def test_full_reference_documents_every_public_name(tmp_path: Path) -> None:
    pytest.importorskip("pdoc", reason="pdoc is part of the docs and dev extras")
    assert _script().main(["--out", str(tmp_path), "--no-source"]) == 0
    for sub in SUBPACKAGES:
        html = (tmp_path / "lorentzcv" / f"{sub}.html").read_text(encoding="utf-8")
        missing = [n for n in importlib.import_module(f"lorentzcv.{sub}").__all__ if n not in html]
        assert not missing, (sub, missing)
