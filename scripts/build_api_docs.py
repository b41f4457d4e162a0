"""Build the HTML API reference of ``lorentzcv`` from its docstrings, offline, with pdoc.

Usage::

    pip install -e ".[docs]"                     # pdoc (also part of the dev extra)
    python scripts/build_api_docs.py             # -> docs/api/index.html (not committed; open it in a browser)
    python scripts/build_api_docs.py --out DIR --no-source

Every public module of the package gets a page (``lorentzcv.geometry``, ``lorentzcv.nn``, ``lorentzcv.optim``,
``lorentzcv.models``, ``lorentzcv.metric``, ``lorentzcv.data``, ``lorentzcv.train`` and their public
submodules) with each public name, its signature and its docstring (Google style; the formulas are written in
the docstrings' reStructuredText math, shown as LaTeX source: the pages load nothing from the network). The
mathematics behind the names is in ``docs/method.md``, the conventions and decisions in ``docs/design.md``.
"""

from __future__ import annotations

import argparse
import sys
import time
import warnings
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
DEFAULT_OUT = REPO / "docs" / "api"


def build(out: Path, show_source: bool = True, modules: list[str] | None = None) -> list[Path]:
    """Render the reference into ``out``; returns the HTML files written.

    Args:
        out: output folder (created).
        show_source: include each object's source code (larger pages).
        modules: dotted module names (default :func:`public_modules`: the whole public package).
    """
    try:
        import pdoc
        import pdoc.render
    except ImportError as e:  # the docs extra is optional
        raise SystemExit(f"error: pdoc is not installed ({e}); install it with: pip install -e \".[docs]\"") from e
    sys.path.insert(0, str(REPO))  # the repository's package, also when it is not installed
    pdoc.render.configure(docformat="google", math=False, mermaid=False, search=True, show_source=show_source,
                          footer_text="lorentzcv API reference")
    out.mkdir(parents=True, exist_ok=True)
    with warnings.catch_warnings():  # pdoc's notes on modules it reaches twice and on inherited internals
        warnings.filterwarnings("ignore", message=r"The module specification .* adds a module named")
        warnings.filterwarnings("ignore", message=r"Cannot determine where .* is taken from")
        pdoc.pdoc(*(modules or public_modules()), output_directory=out)
    return sorted(out.rglob("*.html"))


def public_modules() -> list[str]:
    """``lorentzcv`` and every submodule without a leading underscore in its dotted name.

    Listed explicitly because pdoc shows only the submodules a package names in its ``__all__``."""
    import pkgutil

    import lorentzcv

    names = ["lorentzcv"] + [m.name for m in pkgutil.walk_packages(lorentzcv.__path__, "lorentzcv.")]
    return [n for n in names if not any(part.startswith("_") for part in n.split("."))]


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--out", type=Path, default=DEFAULT_OUT, help=f"output folder (default {DEFAULT_OUT.relative_to(REPO)})")
    p.add_argument("--no-source", action="store_true", help="leave the source code out of the pages (smaller)")
    args = p.parse_args(argv)
    t0 = time.perf_counter()
    pages = build(args.out, show_source=not args.no_source)
    size = sum(f.stat().st_size for f in args.out.rglob("*") if f.is_file())
    print(f"{len(pages)} pages, {size / 1e6:.1f} MB in {time.perf_counter() - t0:.1f} s: {args.out / 'index.html'}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
