"""CIFAR-10 and CIFAR-100 read from torchvision's on-disk format (the official "python version" tarballs).

The pickled batches are read directly (no md5 check), so any correctly formatted copy works; torchvision is
used only to download when ``download=True`` and the files are missing. CIFAR-100 items also carry the 20
official superclasses as ``.super_targets``.
"""

from __future__ import annotations

import pickle
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from ._base import ArrayLoader, LabeledDataset, dataset_not_found
from ._registry import DatasetInfo, register_dataset
from ._safe_pickle import UnsafePickleError, load_pickle
from .transforms import CIFAR_MEAN, CIFAR_STD

__all__ = ["read_cifar"]


@dataclass(frozen=True)
class _CifarFormat:
    folder: str
    files: dict[str, tuple[str, ...]]
    meta_file: str
    label_key: str
    names_key: str
    super_key: str | None
    tv_class: str


_CIFAR10 = _CifarFormat(
    folder="cifar-10-batches-py",
    files={"train": tuple(f"data_batch_{i}" for i in range(1, 6)), "test": ("test_batch",)},
    meta_file="batches.meta",
    label_key="labels",
    names_key="label_names",
    super_key=None,
    tv_class="CIFAR10",
)
_CIFAR100 = _CifarFormat(
    folder="cifar-100-python",
    files={"train": ("train",), "test": ("test",)},
    meta_file="meta",
    label_key="fine_labels",
    names_key="fine_label_names",
    super_key="coarse_labels",
    tv_class="CIFAR100",
)

_HOW = (
    'python -c "import torchvision; torchvision.datasets.{cls}(ROOT, download=True)" '
    "(or create_dataset('{name}', ROOT, download=True)); or download {url} and extract it into ROOT.\n"
    "No registry package ships it (offline machines: copy the extracted folder)."
)

CIFAR10_INFO = DatasetInfo(
    name="cifar10",
    task="classification",
    num_classes=10,
    in_chans=3,
    img_size=32,
    mean=CIFAR_MEAN,
    std=CIFAR_STD,
    layout=(
        "ROOT/cifar-10-batches-py/\n"
        "    data_batch_1 ... data_batch_5   pickled dicts {'data': uint8 (N, 3072), 'labels': [int]}\n"
        "    test_batch\n"
        "    batches.meta                    pickled dict {'label_names': [str] * 10}"
    ),
    how_to_get=_HOW.format(
        cls="CIFAR10", name="cifar10", url="https://www.cs.toronto.edu/~kriz/cifar-10-python.tar.gz"
    ),
    transform="cifar",
    downloadable=True,
    description="CIFAR-10: 50,000 train / 10,000 test RGB images of 32x32, 10 classes.",
)

CIFAR100_INFO = DatasetInfo(
    name="cifar100",
    task="classification",
    num_classes=100,
    in_chans=3,
    img_size=32,
    mean=CIFAR_MEAN,
    std=CIFAR_STD,
    layout=(
        "ROOT/cifar-100-python/\n"
        "    train   pickled dict {'data': uint8 (N, 3072), 'fine_labels': [int], 'coarse_labels': [int]}\n"
        "    test\n"
        "    meta    pickled dict {'fine_label_names': [str] * 100, 'coarse_label_names': [str] * 20}"
    ),
    how_to_get=_HOW.format(
        cls="CIFAR100", name="cifar100", url="https://www.cs.toronto.edu/~kriz/cifar-100-python.tar.gz"
    ),
    transform="cifar",
    downloadable=True,
    description="CIFAR-100: 50,000 train / 10,000 test RGB images of 32x32, 100 classes in 20 superclasses.",
)


def _unpickle(path: Path) -> dict[str, Any]:
    """Read one batch with the restricted unpickler (containers, numbers, strings and numpy arrays only)."""
    entry = load_pickle(path, encoding="latin1")
    if not isinstance(entry, dict):
        raise TypeError(f"{path.name} holds a {type(entry).__name__}, not a dict")
    return entry


def read_cifar(
    fmt: _CifarFormat, info: DatasetInfo, root: Path, split: str
) -> tuple[np.ndarray, list[int], list[int] | None, list[str]]:
    """Read a CIFAR split: ``(images uint8 (N, 32, 32, 3), labels, coarse labels or None, class names)``.

    The batches are read with a restricted unpickler (:func:`lorentzcv.data._safe_pickle.load_pickle`): a file
    that references anything but plain containers, numbers, strings and numpy arrays is refused before any of
    its content runs.

    Raises:
        FileNotFoundError: A file is missing or not a CIFAR pickle (message shows the layout).
        UnsafePickleError: A file references a disallowed global, e.g. ``os.system`` (a ``ValueError``; one
            line naming the file).
    """
    folder = root / fmt.folder
    images, labels, supers = [], [], []
    try:
        for fname in fmt.files[split]:
            entry = _unpickle(folder / fname)
            images.append(np.asarray(entry["data"], dtype=np.uint8).reshape(-1, 3, 32, 32))
            labels.extend(int(v) for v in entry[fmt.label_key])
            if fmt.super_key is not None:
                supers.extend(int(v) for v in entry[fmt.super_key])
        names = [str(n) for n in _unpickle(folder / fmt.meta_file)[fmt.names_key]]
    except UnsafePickleError:
        raise
    except FileNotFoundError as e:
        raise dataset_not_found(info, root, f"missing file {e.filename!r}") from None
    except (pickle.UnpicklingError, KeyError, ValueError, EOFError, TypeError) as e:
        raise dataset_not_found(info, root, f"malformed CIFAR file in {str(folder)!r}: {e!r}") from None
    data = np.ascontiguousarray(np.concatenate(images).transpose(0, 2, 3, 1))
    if len(data) != len(labels):
        raise dataset_not_found(info, root, f"{len(data)} images but {len(labels)} labels in {split}")
    return data, labels, (supers if fmt.super_key is not None else None), names


def _download(fmt: _CifarFormat, info: DatasetInfo, root: Path) -> None:
    import torchvision.datasets as tvd

    try:
        getattr(tvd, fmt.tv_class)(str(root), train=True, download=True)
    except Exception as e:  # network errors surface as URLError/OSError/RuntimeError depending on the stage
        raise dataset_not_found(info, root, f"download failed ({type(e).__name__}: {e})") from e


def _build(
    fmt: _CifarFormat,
    info: DatasetInfo,
    root: Path,
    split: str,
    transform: Callable[[Any], Any] | None,
    download: bool,
) -> LabeledDataset:
    folder = root / fmt.folder
    needed = [*fmt.files[split], fmt.meta_file]
    if download and not all((folder / f).is_file() for f in needed):
        _download(fmt, info, root)
    data, labels, supers, names = read_cifar(fmt, info, root, split)
    return LabeledDataset(
        range(len(data)),
        labels,
        ArrayLoader(data),
        info.num_classes,  # type: ignore[arg-type]
        transform=transform,
        super_targets=supers,
        classes=names,
        name=info.name,
        split=split,
    )


@register_dataset("cifar10", CIFAR10_INFO)
def build_cifar10(
    root: Path, split: str, transform: Callable[[Any], Any] | None, download: bool = False
) -> LabeledDataset:
    """CIFAR-10 ``"train"`` (50,000) or ``"test"`` (10,000); raw items are 32×32 RGB PIL images."""
    return _build(_CIFAR10, CIFAR10_INFO, root, split, transform, download)


@register_dataset("cifar100", CIFAR100_INFO)
def build_cifar100(
    root: Path, split: str, transform: Callable[[Any], Any] | None, download: bool = False
) -> LabeledDataset:
    """CIFAR-100 ``"train"``/``"test"``; ``.super_targets`` holds the 20 official coarse labels."""
    return _build(_CIFAR100, CIFAR100_INFO, root, split, transform, download)
