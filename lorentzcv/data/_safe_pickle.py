"""A restricted unpickler for dataset files that only ship in pickle format (the CIFAR "python version" batches).

``pickle.load`` imports and calls whatever a file names, so a crafted dataset file runs arbitrary code when it is
opened. :func:`load_pickle` resolves only the globals a CIFAR batch needs: numpy arrays and their dtypes
(``numpy.core.multiarray._reconstruct`` as written by numpy 1 and by the original Python 2 files,
``numpy._core.multiarray._reconstruct`` as written by numpy 2, ``numpy.ndarray``, ``numpy.dtype``) and the
``_codecs.encode(text, "latin1")`` by which Python 3 writes ``bytes`` in protocols 0-2 (restricted to latin-1, so
it can only turn a string into bytes). Dicts, lists,
tuples, strings, bytes, numbers, booleans and None need no global. Any other global (``os.system``,
``builtins.eval``, ``subprocess.Popen``, …) stops the load with :class:`UnsafePickleError` before anything is
called, and persistent ids are refused as by plain ``pickle``.
"""

from __future__ import annotations

import pickle
from pathlib import Path
from typing import Any

import numpy as np

__all__ = ["UnsafePickleError", "load_pickle", "ALLOWED_GLOBALS"]


class UnsafePickleError(pickle.UnpicklingError, ValueError):
    """A pickle file references a global outside :data:`ALLOWED_GLOBALS` (refused before it is called)."""


def _reconstruct() -> Any:
    core = getattr(np, "_core", None)  # numpy >= 2 (numpy.core is a deprecated alias there)
    if core is None:  # pragma: no cover - numpy 1.x
        core = np.core
    return core.multiarray._reconstruct


def _latin1_encode(text: str, encoding: str = "latin1", errors: str = "strict") -> bytes:
    """``_codecs.encode`` as Python 3 uses it to pickle ``bytes`` in protocols 0-2, latin-1 only."""
    if not isinstance(text, str) or encoding.lower().replace("_", "-") not in ("latin1", "latin-1", "iso-8859-1"):
        raise UnsafePickleError(f"_codecs.encode is only accepted as encode(str, 'latin1'), got encoding {encoding!r}")
    return text.encode("latin-1", errors="strict")


#: (module, name) pairs a CIFAR batch may reference, each with a resolver of the object it stands for.
ALLOWED_GLOBALS: dict[tuple[str, str], Any] = {
    ("numpy.core.multiarray", "_reconstruct"): _reconstruct,
    ("numpy._core.multiarray", "_reconstruct"): _reconstruct,
    ("numpy", "ndarray"): lambda: np.ndarray,
    ("numpy", "dtype"): lambda: np.dtype,
    ("_codecs", "encode"): lambda: _latin1_encode,
}


class _RestrictedUnpickler(pickle.Unpickler):
    def __init__(self, file: Any, path: Path, **kwargs: Any) -> None:
        super().__init__(file, **kwargs)
        self._path = path

    def find_class(self, module: str, name: str) -> Any:
        resolve = ALLOWED_GLOBALS.get((module, name))
        if resolve is None:
            raise UnsafePickleError(
                f"refusing to load {str(self._path)!r}: it references {module}.{name}, which is not allowed "
                "in a dataset pickle (only dicts, lists, str, bytes, numbers and numpy arrays in protocols 0-4 are "
                "accepted); replace the file with a copy from the official source"
            )
        return resolve()


def load_pickle(path: str | Path, *, encoding: str = "latin1") -> Any:
    """Unpickle ``path`` allowing only plain containers, scalars and numpy arrays.

    Args:
        path: the pickle file.
        encoding: how Python 2 ``str`` objects are decoded (``"latin1"`` keeps numpy's raw bytes intact).

    Raises:
        UnsafePickleError: the file names a global that is not in :data:`ALLOWED_GLOBALS` (one-line message
            with the file name); nothing from the file has been executed.
        pickle.UnpicklingError, EOFError, ...: the file is not a valid pickle (as ``pickle.load``).
    """
    path = Path(path)
    with open(path, "rb") as f:
        return _RestrictedUnpickler(f, path, encoding=encoding).load()
