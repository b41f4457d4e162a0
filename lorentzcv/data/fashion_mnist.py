"""Fashion-MNIST from idx files (gzipped or not), plus the class-disjoint metric demo ``fashion_mnist_dml`` and
the hierarchy split ``fashion_mnist_hier`` (classes held out per superclass).

The idx format is read here with numpy (magic ``0x0000TTNN`` with type code ``TT`` and ``NN`` dimensions,
then ``NN`` big-endian int32 sizes, then the data), so Debian's ``.gz`` files work without a gunzip step.
"""

from __future__ import annotations

import dataclasses
import gzip
import zlib
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np

from ._base import ArrayLoader, LabeledDataset, dataset_not_found
from ._registry import DatasetInfo, register_dataset
from .transforms import FASHION_MNIST_MEAN, FASHION_MNIST_STD

__all__ = [
    "read_idx", "FASHION_MNIST_CLASSES", "FASHION_MNIST_SUPERCLASSES", "FASHION_MNIST_SUPER_OF",
    "FASHION_MNIST_HIER_SUPERCLASSES", "FASHION_MNIST_HIER_SUPER_OF", "FASHION_MNIST_HIER_TRAIN",
    "FASHION_MNIST_HIER_TEST",
]  # fmt: skip

IDX_IMAGES_MAGIC = 2051  # 0x00000803: unsigned byte, 3 dims
IDX_LABELS_MAGIC = 2049  # 0x00000801: unsigned byte, 1 dim
_IDX_DTYPES = {0x08: ">u1", 0x09: ">i1", 0x0B: ">i2", 0x0C: ">i4", 0x0D: ">f4", 0x0E: ">f8"}

FASHION_MNIST_CLASSES = (
    "T-shirt/top", "Trouser", "Pullover", "Dress", "Coat", "Sandal", "Shirt", "Sneaker", "Bag", "Ankle boot"
)  # fmt: skip
#: Our coarse grouping (not an official hierarchy): index = superclass id.
FASHION_MNIST_SUPERCLASSES = ("tops", "trousers", "dresses", "footwear", "bags")
#: Fine class -> superclass: tops {T-shirt, Pullover, Coat, Shirt}, Trouser, Dress, footwear {Sandal,
#: Sneaker, Ankle boot}, Bag.
FASHION_MNIST_SUPER_OF = (0, 1, 0, 2, 0, 3, 0, 3, 4, 3)

#: The four superclasses of ``fashion_mnist_hier`` (issue #11; ours, not official): coarser than
#: :data:`FASHION_MNIST_SUPERCLASSES` so that two superclasses have several classes to hold out.
FASHION_MNIST_HIER_SUPERCLASSES = ("tops", "bottoms", "footwear", "bags")
#: Fine class -> hierarchy superclass: tops {T-shirt, Pullover, Dress, Coat, Shirt}, bottoms {Trouser},
#: footwear {Sandal, Sneaker, Ankle boot}, bags {Bag}.
FASHION_MNIST_HIER_SUPER_OF = (0, 1, 0, 0, 0, 2, 0, 2, 3, 2)
#: ``fashion_mnist_hier`` training classes (raw labels): T-shirt, Trouser, Pullover, Dress, Sandal.
FASHION_MNIST_HIER_TRAIN = (0, 1, 2, 3, 5)
#: ``fashion_mnist_hier`` test classes (raw labels): Coat, Shirt (tops), Sneaker, Ankle boot (footwear), Bag.
FASHION_MNIST_HIER_TEST = (4, 6, 7, 8, 9)

DEBIAN_ROOT = "/usr/share/datasets/fashion-mnist"
_FILES = {
    "train": ("train-images-idx3-ubyte", "train-labels-idx1-ubyte"),
    "test": ("t10k-images-idx3-ubyte", "t10k-labels-idx1-ubyte"),
}
_LAYOUT = (
    "Any of (each file either plain or gzipped with a .gz suffix):\n"
    "  ROOT/{train,t10k}-images-idx3-ubyte[.gz], ROOT/{train,t10k}-labels-idx1-ubyte[.gz]  (Debian)\n"
    "  ROOT/FashionMNIST/raw/<same files>                                              (torchvision)\n"
    "Images: idx magic 2051, shape (N, 28, 28) uint8; labels: idx magic 2049, shape (N,) uint8 in 0..9."
)
_HOW = (
    "Offline: `apt-get install dataset-fashion-mnist` installs the .gz files in "
    f"{DEBIAN_ROOT} (the default root when root=None).\n"
    "Online: torchvision.datasets.FashionMNIST(ROOT, download=True) or "
    "https://github.com/zalandoresearch/fashion-mnist (data/fashion/*.gz)."
)

FASHION_MNIST_INFO = DatasetInfo(
    name="fashion_mnist",
    task="classification",
    num_classes=10,
    in_chans=1,
    img_size=28,
    mean=FASHION_MNIST_MEAN,
    std=FASHION_MNIST_STD,
    layout=_LAYOUT,
    how_to_get=_HOW,
    transform="fashion_mnist",
    default_root=DEBIAN_ROOT,
    description="Fashion-MNIST: 60,000 train / 10,000 test gray images of 28x28, 10 classes.",
)

FASHION_MNIST_DML_INFO = DatasetInfo(
    name="fashion_mnist_dml",
    task="metric",
    num_classes={"train": 5, "test": 5},
    in_chans=1,
    img_size=28,
    mean=FASHION_MNIST_MEAN,
    std=FASHION_MNIST_STD,
    layout=_LAYOUT,
    how_to_get=_HOW,
    transform="fashion_mnist",
    default_root=DEBIAN_ROOT,
    description=(
        "Class-disjoint metric-learning demo on Fashion-MNIST (train+t10k pooled): train = classes 0-4, "
        "test = classes 5-9 (raw labels). .super_targets: our coarse grouping FASHION_MNIST_SUPER_OF."
    ),
)

FASHION_MNIST_HIER_INFO = dataclasses.replace(
    FASHION_MNIST_DML_INFO,
    name="fashion_mnist_hier",
    description=(
        "Class-disjoint Fashion-MNIST with classes held out per superclass (train+t10k pooled): superclasses "
        "tops/bottoms/footwear/bags (FASHION_MNIST_HIER_SUPER_OF, .super_targets); train = T-shirt, trouser, "
        "pullover, dress, sandal (labels 0..4); test = coat, shirt | sneaker, ankle boot | bag (raw labels)."
    ),
)


def read_idx(path: str | Path, expected_magic: int | None = None) -> np.ndarray:
    """Read an idx file (``.gz`` or plain, detected from the gzip magic bytes) into a numpy array.

    Args:
        path: File to read.
        expected_magic: If given, the big-endian int32 magic the file must start with (2051 for
            ``uint8`` 3-d image files, 2049 for ``uint8`` 1-d label files).

    Raises:
        ValueError: If the header is not a valid idx header, the magic differs from ``expected_magic`` or
            the payload size does not match the header.
    """
    with open(path, "rb") as f:
        raw = f.read()
    if raw[:2] == b"\x1f\x8b":
        raw = gzip.decompress(raw)
    if len(raw) < 4 or raw[0] != 0 or raw[1] != 0 or raw[2] not in _IDX_DTYPES:
        raise ValueError(f"{path}: not an idx file (header {raw[:4]!r})")
    magic = int.from_bytes(raw[:4], "big")
    if expected_magic is not None and magic != expected_magic:
        raise ValueError(f"{path}: idx magic {magic} != expected {expected_magic}")
    ndim = raw[3]
    dims = tuple(int(d) for d in np.frombuffer(raw, dtype=">i4", count=ndim, offset=4))
    dtype = np.dtype(_IDX_DTYPES[raw[2]])
    offset = 4 + 4 * ndim
    expected = int(np.prod(dims)) * dtype.itemsize
    if len(raw) - offset != expected:
        raise ValueError(f"{path}: idx header says {dims} but holds {len(raw) - offset} bytes")
    return np.frombuffer(raw, dtype=dtype, offset=offset).reshape(dims).astype(dtype.newbyteorder("="))


def _find(root: Path, name: str) -> Path | None:
    for folder in (root, root / "FashionMNIST" / "raw"):
        for candidate in (folder / name, folder / f"{name}.gz"):
            if candidate.is_file():
                return candidate
    return None


def read_fashion_mnist(info: DatasetInfo, root: Path, split: str) -> tuple[np.ndarray, np.ndarray]:
    """Read ``(images uint8 (N, 28, 28), labels int64 (N,))`` of the ``"train"`` or ``"test"`` files."""
    arrays = []
    for name, magic in zip(_FILES[split], (IDX_IMAGES_MAGIC, IDX_LABELS_MAGIC)):
        path = _find(root, name)
        if path is None:
            raise dataset_not_found(info, root, f"no {name}[.gz] in ROOT or ROOT/FashionMNIST/raw")
        try:
            arrays.append(read_idx(path, expected_magic=magic))
        except (ValueError, OSError, EOFError, zlib.error) as e:
            raise dataset_not_found(info, root, f"malformed idx file {str(path)!r}: {e}") from None
    images, labels = arrays
    if images.ndim != 3 or labels.ndim != 1 or len(images) != len(labels):
        raise dataset_not_found(info, root, f"image array {images.shape} does not match labels {labels.shape}")
    return np.ascontiguousarray(images, dtype=np.uint8), labels.astype(np.int64)


@register_dataset("fashion_mnist", FASHION_MNIST_INFO)
def build_fashion_mnist(
    root: Path, split: str, transform: Callable[[Any], Any] | None, download: bool = False
) -> LabeledDataset:
    """Fashion-MNIST ``"train"`` (60,000) or ``"test"`` (10,000); items are 28×28 ``"L"`` PIL images."""
    images, labels = read_fashion_mnist(FASHION_MNIST_INFO, root, split)
    return LabeledDataset(
        range(len(images)),
        labels.tolist(),
        ArrayLoader(images),
        10,
        transform=transform,
        classes=FASHION_MNIST_CLASSES,
        name="fashion_mnist",
        split=split,
    )


def _pooled(info: DatasetInfo, root: Path, classes) -> tuple[np.ndarray, np.ndarray]:
    """Images and raw labels of the official train and test files pooled, restricted to ``classes``."""
    parts = [read_fashion_mnist(info, root, s) for s in ("train", "test")]
    images = np.concatenate([p[0] for p in parts])
    labels = np.concatenate([p[1] for p in parts])
    keep = np.flatnonzero(np.isin(labels, list(classes)))
    return np.ascontiguousarray(images[keep]), labels[keep]


@register_dataset("fashion_mnist_dml", FASHION_MNIST_DML_INFO)
def build_fashion_mnist_dml(
    root: Path, split: str, transform: Callable[[Any], Any] | None, download: bool = False
) -> LabeledDataset:
    """Class-disjoint Fashion-MNIST: ``"train"`` = classes 0–4, ``"test"`` = classes 5–9 (raw labels 5..9).

    Both official files are pooled first (35,000 images per split), as metric-learning benchmarks pool all
    images before splitting by class. ``.super_targets`` follow :data:`FASHION_MNIST_SUPER_OF` (our grouping).
    """
    images, labels = _pooled(FASHION_MNIST_DML_INFO, root, range(5) if split == "train" else range(5, 10))
    return LabeledDataset(
        range(len(images)),
        labels.tolist(),
        ArrayLoader(images),
        len(np.unique(labels)),
        transform=transform,
        super_targets=[FASHION_MNIST_SUPER_OF[int(c)] for c in labels],
        classes=FASHION_MNIST_CLASSES,
        name="fashion_mnist_dml",
        split=split,
    )


@register_dataset("fashion_mnist_hier", FASHION_MNIST_HIER_INFO)
def build_fashion_mnist_hier(
    root: Path, split: str, transform: Callable[[Any], Any] | None, download: bool = False
) -> LabeledDataset:
    """Class-disjoint Fashion-MNIST whose test classes are held out **per superclass** (issue #11).

    Superclasses (:data:`FASHION_MNIST_HIER_SUPERCLASSES`, ours): tops {T-shirt, pullover, dress, coat, shirt},
    bottoms {trouser}, footwear {sandal, sneaker, ankle boot}, bags {bag}. In each superclass with several
    classes the ones with the largest labels are held out for test (2 of the 5 tops, 2 of the 3 footwear
    classes); of the two single-class superclasses, bags go to test and bottoms to train, so each split has
    three superclasses:

    - ``"train"`` (:data:`FASHION_MNIST_HIER_TRAIN`): T-shirt, trouser, pullover, dress, sandal, relabelled to
      ``0..4`` in that order (contiguous labels for the proxies);
    - ``"test"`` (:data:`FASHION_MNIST_HIER_TEST`): coat, shirt (tops), sneaker, ankle boot (footwear), bag,
      with their raw labels 4, 6, 7, 9, 8; two superclasses with two classes each, so a retrieval mistake can
      stay within the query's superclass or leave it.

    Both official files are pooled first (35,000 images per split). ``.super_targets`` follow
    :data:`FASHION_MNIST_HIER_SUPER_OF`. A validation split for model selection comes from
    ``create_dataset(..., val_fraction=f, seed=s)``, which holds whole *training* classes out (class-disjoint
    from test and from the classes the validation model trains on).
    """
    classes = FASHION_MNIST_HIER_TRAIN if split == "train" else FASHION_MNIST_HIER_TEST
    images, labels = _pooled(FASHION_MNIST_HIER_INFO, root, classes)
    supers = [FASHION_MNIST_HIER_SUPER_OF[int(c)] for c in labels]
    names: tuple[str, ...] = FASHION_MNIST_CLASSES
    if split == "train":
        remap = np.full(10, -1, dtype=np.int64)
        remap[list(FASHION_MNIST_HIER_TRAIN)] = np.arange(len(FASHION_MNIST_HIER_TRAIN))
        labels = remap[labels]
        names = tuple(FASHION_MNIST_CLASSES[c] for c in FASHION_MNIST_HIER_TRAIN)
    return LabeledDataset(
        range(len(images)),
        labels.tolist(),
        ArrayLoader(images),
        len(np.unique(labels)),
        transform=transform,
        super_targets=supers,
        classes=names,
        name="fashion_mnist_hier",
        split=split,
    )
