"""Writers of tiny datasets in each dataset's real on-disk format (for tests and end-to-end smoke runs).

Every ``write_<name>(root, ...)`` creates the files under ``root`` exactly as the official archive / the
library that produces them lays them out, and returns the ``root`` to pass to
``lorentzcv.data.create_dataset(name, root)``. Images are tiny (8×8 by default) and encode their label so
that tests can check image/label pairing:

* array datasets (CIFAR, Fashion-MNIST): see each writer's docstring for the exact pixel values;
* image-file datasets: a constant-colour image whose red channel is :func:`label_color` of the class index
  in the listing order (JPEG-compressed, so compare with a tolerance of a few units).

The module depends only on numpy, Pillow and scipy and has no test-framework imports, so other test
packages can import it.
"""

from __future__ import annotations

import gzip
import pickle
from pathlib import Path

import numpy as np
from PIL import Image

__all__ = [
    "label_color",
    "write_cifar10",
    "write_cifar100",
    "write_tiny_imagenet",
    "write_mini_imagenet",
    "write_fashion_mnist",
    "write_image_folder",
    "write_cub",
    "write_cars",
    "write_sop",
    "write_inshop",
]


def label_color(index: int) -> int:
    """Red-channel value used for class ``index`` by the image-file writers (spaced 20 apart)."""
    return (20 * index + 10) % 256


def _save_image(path: Path, red: int, size: int = 8, gray: bool = False) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    if gray:
        img = Image.new("L", (size, size), red)
    else:
        img = Image.new("RGB", (size, size), (red, 128, 255 - red))
    img.save(path, format="JPEG" if path.suffix.lower() in (".jpg", ".jpeg") else None, quality=95)


def _dump(path: Path, obj: object) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    with open(path, "wb") as f:
        pickle.dump(obj, f, protocol=2)


def _cifar_arrays(n: int, num_classes: int, offset: int) -> tuple[np.ndarray, list[int]]:
    """Image ``i`` of a split: R plane = 10·label, G plane = (offset + i) % 256, B plane = 255 - label."""
    labels = [(offset + i) % num_classes for i in range(n)]
    data = np.empty((n, 3, 32 * 32), dtype=np.uint8)
    for i, y in enumerate(labels):
        data[i, 0], data[i, 1], data[i, 2] = (10 * y) % 256, (offset + i) % 256, 255 - y
    return data.reshape(n, 3072), labels


def write_cifar10(root: str | Path, n_train: int = 50, n_test: int = 20) -> Path:
    """Write ``root/cifar-10-batches-py`` like the official python tarball / torchvision.

    Five ``data_batch_i`` pickles (the ``n_train`` images split as evenly as possible), ``test_batch`` and
    ``batches.meta``. Each batch is a dict ``{'batch_label', 'labels', 'data' (uint8, N×3072, planes
    R,G,B), 'filenames'}``. Train image ``i`` has label ``i % 10`` and pixels
    ``(10·label, i % 256, 255 − label)``; test image ``i`` has label ``(n_train + i) % 10`` and green value
    ``(n_train + i) % 256``.
    """
    root = Path(root)
    folder = root / "cifar-10-batches-py"
    data, labels = _cifar_arrays(n_train, 10, 0)
    bounds = np.linspace(0, n_train, 6).astype(int)
    for b in range(5):
        lo, hi = bounds[b], bounds[b + 1]
        _dump(
            folder / f"data_batch_{b + 1}",
            {
                "batch_label": f"training batch {b + 1} of 5",
                "labels": labels[lo:hi],
                "data": data[lo:hi],
                "filenames": [f"img_{i}.png" for i in range(lo, hi)],
            },
        )
    tdata, tlabels = _cifar_arrays(n_test, 10, n_train)
    _dump(
        folder / "test_batch",
        {
            "batch_label": "testing batch 1 of 1",
            "labels": tlabels,
            "data": tdata,
            "filenames": [f"test_{i}.png" for i in range(n_test)],
        },
    )
    names = ["airplane", "automobile", "bird", "cat", "deer", "dog", "frog", "horse", "ship", "truck"]
    _dump(folder / "batches.meta", {"num_cases_per_batch": 10000, "label_names": names, "num_vis": 3072})
    return root


def write_cifar100(root: str | Path, n_train: int = 200, n_test: int = 100) -> Path:
    """Write ``root/cifar-100-python/{train,test,meta}`` like the official python tarball / torchvision.

    ``train``/``test`` are dicts ``{'filenames', 'batch_label', 'fine_labels', 'coarse_labels', 'data'}``;
    ``meta`` holds ``fine_label_names`` (100) and ``coarse_label_names`` (20). Fine label of train image
    ``i`` = ``i % 100``, test image ``i`` = ``(n_train + i) % 100``; coarse label = ``fine // 5`` (the fixture's
    own mapping); pixels as in :func:`write_cifar10`.
    """
    root = Path(root)
    folder = root / "cifar-100-python"
    for name, n, offset in (("train", n_train, 0), ("test", n_test, n_train)):
        data, fine = _cifar_arrays(n, 100, offset)
        _dump(
            folder / name,
            {
                "filenames": [f"{name}_{i}.png" for i in range(n)],
                "batch_label": f"{name}ing batch 1 of 1",
                "fine_labels": fine,
                "coarse_labels": [y // 5 for y in fine],
                "data": data,
            },
        )
    _dump(
        folder / "meta",
        {
            "fine_label_names": [f"fine_{i}" for i in range(100)],
            "coarse_label_names": [f"coarse_{i}" for i in range(20)],
        },
    )
    return root


def write_tiny_imagenet(
    root: str | Path, num_classes: int = 3, n_train_per_class: int = 4, n_val_per_class: int = 2
) -> Path:
    """Write ``root/tiny-imagenet-200`` in the official zip layout.

    ``wnids.txt`` lists ``n00000000, n00000001, ...`` in *reverse* order (labels must come from the sorted
    order); ``train/<wnid>/images/<wnid>_<j>.JPEG`` and ``train/<wnid>/<wnid>_boxes.txt``;
    ``val/images/val_<k>.JPEG`` with ``val/val_annotations.txt`` (tab-separated filename, wnid, x, y, w, h),
    val images interleaved over the classes; an unlabelled ``test/images/test_0.JPEG``. Images are 64×64
    (the real size, which the default ``RandomCrop(64, padding=4)`` needs); red channel =
    :func:`label_color` of the sorted wnid index.
    """
    root = Path(root)
    base = root / "tiny-imagenet-200"
    wnids = [f"n{i:08d}" for i in range(num_classes)]
    base.mkdir(parents=True, exist_ok=True)
    (base / "wnids.txt").write_text("".join(f"{w}\n" for w in reversed(wnids)))
    (base / "words.txt").write_text("".join(f"{w}\tclass {i}\n" for i, w in enumerate(wnids)))
    for c, w in enumerate(wnids):
        for j in range(n_train_per_class):
            _save_image(base / "train" / w / "images" / f"{w}_{j}.JPEG", label_color(c), size=64)
        boxes = "".join(f"{w}_{j}.JPEG\t0\t0\t7\t7\n" for j in range(n_train_per_class))
        (base / "train" / w / f"{w}_boxes.txt").write_text(boxes)
    rows = []
    for k in range(num_classes * n_val_per_class):
        c = k % num_classes
        _save_image(base / "val" / "images" / f"val_{k}.JPEG", label_color(c), size=64)
        rows.append(f"val_{k}.JPEG\t{wnids[c]}\t0\t0\t7\t7\n")
    (base / "val" / "val_annotations.txt").write_text("".join(rows))
    _save_image(base / "test" / "images" / "test_0.JPEG", 0, size=64)
    return root


def write_mini_imagenet(root: str | Path, num_classes: int = 4, n_per_class: int = 10) -> Path:
    """Write ``root/mini-imagenet/{images/*.jpg, train.csv, val.csv, test.csv}`` (header ``filename,label``).

    Like the real files, the csvs are class-disjoint: the classes are dealt round-robin to train, val, test
    (so every csv gets at least one class when ``num_classes >= 3``). Filenames are
    ``<wnid><8-digit index>.jpg``, written to the csv in *descending* order. Red channel =
    :func:`label_color` of the sorted wnid index.
    """
    root = Path(root)
    base = root / "mini-imagenet"
    wnids = [f"n{i:08d}" for i in range(num_classes)]
    rows: dict[str, list[str]] = {"train": [], "val": [], "test": []}
    for c, w in enumerate(wnids):
        split = ("train", "val", "test")[c % 3]
        for j in reversed(range(n_per_class)):
            fname = f"{w}{j + 1:08d}.jpg"
            _save_image(base / "images" / fname, label_color(c))
            rows[split].append(f"{fname},{w}\n")
    for split, lines in rows.items():
        (base / f"{split}.csv").write_text("filename,label\n" + "".join(lines))
    return root


def _write_idx(path: Path, array: np.ndarray, magic: int, gz: bool) -> None:
    header = magic.to_bytes(4, "big") + b"".join(int(d).to_bytes(4, "big") for d in array.shape)
    payload = header + np.ascontiguousarray(array, dtype=np.uint8).tobytes()
    path.parent.mkdir(parents=True, exist_ok=True)
    if gz:
        with gzip.open(path.with_name(path.name + ".gz"), "wb") as f:
            f.write(payload)
    else:
        path.write_bytes(payload)


def write_fashion_mnist(
    root: str | Path, n_train: int = 40, n_test: int = 20, layout: str = "debian", gz: bool = True
) -> Path:
    """Write Fashion-MNIST idx files (magic 2051 for images, 2049 for labels).

    ``layout="debian"``: ``root/{train,t10k}-{images-idx3,labels-idx1}-ubyte[.gz]`` (as the Debian package
    ``dataset-fashion-mnist`` installs them); ``layout="torchvision"``: the same files in
    ``root/FashionMNIST/raw/``. Train image ``i`` has label ``i % 10``, test image ``i`` label
    ``(i + 3) % 10``; pixel ``(r, c)`` of image ``i`` is ``(10·label + r + c + i) % 256``.
    """
    root = Path(root)
    folder = root if layout == "debian" else root / "FashionMNIST" / "raw"
    if layout not in ("debian", "torchvision"):
        raise ValueError(f"layout must be 'debian' or 'torchvision', got {layout!r}")
    rc = np.add.outer(np.arange(28), np.arange(28))
    for prefix, n, shift in (("train", n_train, 0), ("t10k", n_test, 3)):
        labels = (np.arange(n) + shift) % 10
        images = np.stack([(10 * y + rc + i) % 256 for i, y in enumerate(labels)]).astype(np.uint8)
        _write_idx(folder / f"{prefix}-images-idx3-ubyte", images.reshape(n, 28, 28), 2051, gz)
        _write_idx(folder / f"{prefix}-labels-idx1-ubyte", labels.astype(np.uint8), 2049, gz)
    return root


def write_image_folder(
    root: str | Path, classes: tuple[str, ...] = ("cat", "dog", "fox"), n_per_class: int = 3,
    splits: tuple[str, ...] = ("train", "test"),
) -> Path:  # fmt: skip
    """Write ``root/<split>/<class>/<j>.png``; red channel = :func:`label_color` of the sorted class index."""
    root = Path(root)
    for split in splits:
        for c, name in enumerate(sorted(classes)):
            for j in range(n_per_class):
                _save_image(root / split / name / f"{j}.png", label_color(c))
    return root


def write_cub(root: str | Path, num_classes: int = 4, n_per_class: int = 3) -> Path:
    """Write ``root/CUB_200_2011/images/<NNN.Name>/*.jpg`` (plus ``._*.jpg`` macOS junk and ``images.txt``).

    Folder ``c`` is ``f"{c + 1:03d}.Bird_{c}"``; red channel = :func:`label_color` of ``c``.
    """
    root = Path(root)
    base = root / "CUB_200_2011"
    lines = []
    for c in range(num_classes):
        folder = f"{c + 1:03d}.Bird_{c}"
        for j in range(n_per_class):
            _save_image(base / "images" / folder / f"Bird_{c}_{j:04d}.jpg", label_color(c))
            lines.append(f"{len(lines) + 1} {folder}/Bird_{c}_{j:04d}.jpg\n")
        (base / "images" / folder / f"._Bird_{c}_0000.jpg").write_bytes(b"\x00\x05\x16\x07 not an image")
    (base / "images.txt").write_text("".join(lines))
    return root


def write_cars(root: str | Path, num_classes: int = 4, n_per_class: int = 3) -> Path:
    """Write ``root/cars196/{cars_annos.mat, car_ims/*.jpg}``.

    ``cars_annos.mat`` is saved with ``scipy.io.savemat`` as the real file: a 1×N struct array
    ``annotations`` with fields ``relative_im_path`` (``car_ims/000001.jpg``), ``bbox_x1``, ``bbox_y1``,
    ``bbox_x2``, ``bbox_y2``, ``class`` (1-based) and ``test`` (alternating 0/1, to be ignored), plus
    ``class_names``. Images are listed class-interleaved; red channel = :func:`label_color` of ``class - 1``.
    """
    from scipy.io import savemat

    root = Path(root)
    base = root / "cars196"
    fields = ["relative_im_path", "bbox_x1", "bbox_y1", "bbox_x2", "bbox_y2", "class", "test"]
    n = num_classes * n_per_class
    annos = np.zeros((1, n), dtype=[(f, "O") for f in fields])
    for k in range(n):
        c = k % num_classes
        rel = f"car_ims/{k + 1:06d}.jpg"
        _save_image(base / rel, label_color(c))
        annos[0, k] = (
            rel,
            np.array([[1]], dtype=np.uint8),
            np.array([[2]], dtype=np.uint8),
            np.array([[7]], dtype=np.uint8),
            np.array([[6]], dtype=np.uint8),
            np.array([[c + 1]], dtype=np.uint8),
            np.array([[k % 2]], dtype=np.uint8),
        )
    names = np.empty((1, num_classes), dtype=object)
    for c in range(num_classes):
        names[0, c] = f"Car Model {c}"
    savemat(str(base / "cars_annos.mat"), {"annotations": annos, "class_names": names})
    return root


def write_sop(
    root: str | Path, n_train_classes: int = 3, n_test_classes: int = 3, n_per_class: int = 2,
    n_super: int = 2,
) -> Path:  # fmt: skip
    """Write ``root/Stanford_Online_Products/{Ebay_train.txt, Ebay_test.txt, <super>_final/*.JPG}``.

    Header ``image_id class_id super_class_id path``; class ids are 1-based and continue from train into
    test (train ``1..n_train_classes``); super class of class id ``k`` is ``(k - 1) % n_super + 1``. Red
    channel = :func:`label_color` of ``class_id - 1``.
    """
    root = Path(root)
    base = root / "Stanford_Online_Products"
    supers = ["bicycle", "cabinet", "chair", "coffee_maker", "fan", "kettle", "lamp", "mug", "sofa"]
    image_id = 0
    ranges = {"train": range(1, n_train_classes + 1),
              "test": range(n_train_classes + 1, n_train_classes + n_test_classes + 1)}  # fmt: skip
    for split, class_ids in ranges.items():
        lines = ["image_id class_id super_class_id path\n"]
        for k in class_ids:
            s = (k - 1) % n_super + 1
            for j in range(n_per_class):
                image_id += 1
                rel = f"{supers[s - 1]}_final/{100000 + k}_{j}.JPG"
                _save_image(base / rel, label_color(k - 1))
                lines.append(f"{image_id} {k} {s} {rel}\n")
        (base / f"Ebay_{split}.txt").write_text("".join(lines))
    return root


def write_inshop(
    root: str | Path, n_train_items: int = 3, n_test_items: int = 3, n_per_item: int = 2,
    under_img: bool = True, gallery_only_items: int = 0,
) -> Path:  # fmt: skip
    """Write ``root/Inshop_Clothes/{Eval/list_eval_partition.txt, Img/img/...}``.

    The partition file has the count line, the header ``image_name item_id evaluation_status`` and one
    row per image. Train items get ids ``id_00000002, id_00000004, ...`` (even, non-contiguous); test items
    odd ids; of each test item's ``n_per_item`` images the first goes to ``query`` and the rest to
    ``gallery``, except for the first ``gallery_only_items`` test items, whose images all go to
    ``gallery`` (so query and gallery label sets differ, as labels must be shared between them). ``image_name`` is ``img/<WOMEN|MEN>/<Category>/<id>/<j>_front.jpg``; the images are stored
    under ``Inshop_Clothes/Img/`` (official layout) or, with ``under_img=False``, under
    ``Inshop_Clothes/``. Red channel = :func:`label_color` of the item's rank (within train, or within
    query∪gallery).
    """
    root = Path(root)
    base = root / "Inshop_Clothes"
    image_base = base / "Img" if under_img else base
    cats = ["WOMEN/Dresses", "MEN/Denim"]
    rows = []
    items = [("train", 2 * (r + 1), r) for r in range(n_train_items)]
    items += [("test", 2 * r + 1, r) for r in range(n_test_items)]
    for kind, number, rank in items:
        item = f"id_{number:08d}"
        for j in range(n_per_item):
            name = f"img/{cats[rank % 2]}/{item}/{j + 1:02d}_{j}_front.jpg"
            _save_image(image_base / name, label_color(rank))
            is_query = j == 0 and rank >= gallery_only_items
            status = "train" if kind == "train" else ("query" if is_query else "gallery")
            rows.append(f"{name}   {item}   {status}\n")
    (base / "Eval").mkdir(parents=True, exist_ok=True)
    (base / "Eval" / "list_eval_partition.txt").write_text(
        f"{len(rows)}\nimage_name item_id evaluation_status\n" + "".join(rows)
    )
    return root
