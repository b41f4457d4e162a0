"""Classification datasets read from tiny fixtures in their real on-disk formats."""

from __future__ import annotations

import pickle
import urllib.error
from collections import Counter

import numpy as np
import pytest
import torch
from PIL import Image

from lorentzcv.data import create_dataset
from lorentzcv.data.fashion_mnist import read_idx

from . import fixtures as fx


def _red(img: Image.Image) -> int:
    return img.convert("RGB").getpixel((0, 0))[0]


# ----------------------------------------------------------------------------------------------- CIFAR
def test_cifar10_splits_labels_and_pixels(data_root):
    train = create_dataset("cifar10", data_root, "train", transform=None)
    test = create_dataset("cifar10", data_root, "test", transform=None)
    assert (len(train), len(test)) == (50, 20)
    assert train.num_classes == 10 and train.classes[0] == "airplane"
    assert train.targets == [i % 10 for i in range(50)]  # order kept across data_batch_1..5
    assert test.targets == [(50 + i) % 10 for i in range(20)]
    img, label = train[13]
    assert isinstance(img, Image.Image) and img.size == (32, 32) and img.mode == "RGB"
    assert label == 3 and img.getpixel((5, 7)) == (30, 13, 252)  # planes R, G, B -> HWC
    assert test[4][0].getpixel((0, 0)) == (40, 54, 251)
    assert train.super_targets is None


def test_cifar100_fine_and_coarse_labels(data_root):
    train = create_dataset("cifar100", data_root, "train", transform=None)
    assert len(train) == 200 and train.num_classes == 100
    assert train.targets[:3] == [0, 1, 2] and train.targets[150] == 50
    assert train.super_targets[150] == 10  # fixture coarse = fine // 5
    assert create_dataset("cifar100", data_root, "test", transform=None).targets[0] == 0  # (200 + 0) % 100


def test_cifar_default_transforms(data_root):
    train = create_dataset("cifar10", data_root, "train")
    test = create_dataset("cifar10", data_root, "test")
    x, _ = test[0]
    assert x.shape == (3, 32, 32) and x.dtype == torch.float32
    # eval = ToTensor + Normalize(CIFAR-100 stats): red of test image 0 is 10*label(=0) -> (0 - 0.5074) / 0.267
    assert torch.allclose(x[0], torch.full((32, 32), (0 / 255 - 0.5074) / 0.267), atol=1e-5)
    names = [type(t).__name__ for t in train.transform.transforms]
    assert names == ["RandomCrop", "RandomHorizontalFlip", "ToTensor", "Normalize"]
    assert train.transform.transforms[0].padding == 4
    assert train[0][0].shape == (3, 32, 32)


def test_cifar_malformed_file_raises_file_not_found(tmp_path):
    fx.write_cifar10(tmp_path)
    (tmp_path / "cifar-10-batches-py" / "data_batch_3").write_bytes(b"not a pickle")
    with pytest.raises(FileNotFoundError, match="malformed CIFAR file") as e:
        create_dataset("cifar10", tmp_path)
    assert "cifar-10-batches-py/" in str(e.value)
    with open(tmp_path / "cifar-10-batches-py" / "data_batch_3", "wb") as f:
        pickle.dump({"data": np.zeros((2, 3072), np.uint8)}, f)  # no 'labels'
    with pytest.raises(FileNotFoundError, match="malformed"):
        create_dataset("cifar10", tmp_path)


def test_cifar_download_is_skipped_when_present_and_errors_are_clear(tmp_path, data_root, monkeypatch):
    import torchvision.datasets as tvd

    calls = []

    def offline(*args, **kwargs):
        calls.append(args)
        raise urllib.error.URLError("[Errno -2] Name or service not known")

    monkeypatch.setattr(tvd, "CIFAR10", offline)
    assert len(create_dataset("cifar10", data_root, download=True, transform=None)) == 50
    assert calls == []  # files present: no download attempted
    with pytest.raises(FileNotFoundError, match="download failed \\(URLError") as e:
        create_dataset("cifar10", tmp_path, download=True)
    assert len(calls) == 1 and "cifar-10-python.tar.gz" in str(e.value)


# --------------------------------------------------------------------------------------- Tiny-ImageNet
def test_tiny_imagenet_train_and_official_val_as_test(data_root):
    train = create_dataset("tiny_imagenet", data_root, "train", transform=None)
    test = create_dataset("tiny_imagenet", data_root, "test", transform=None)
    assert (len(train), len(test)) == (12, 6)
    assert train.classes == ["n00000000", "n00000001", "n00000002"]  # sorted, although wnids.txt is reversed
    assert Counter(train.targets) == {0: 4, 1: 4, 2: 4}
    assert test.targets == [0, 1, 2, 0, 1, 2]  # from val_annotations.txt
    for ds in (train, test):
        for i in range(len(ds)):
            img, y = ds[i]
            assert img.size == (64, 64) and abs(_red(img) - fx.label_color(y)) <= 4
    x, _ = create_dataset("tiny_imagenet", data_root, "train")[0]
    assert x.shape == (3, 64, 64)


def test_tiny_imagenet_bad_annotation_line(tmp_path):
    fx.write_tiny_imagenet(tmp_path, num_classes=2, n_train_per_class=1, n_val_per_class=1)
    ann = tmp_path / "tiny-imagenet-200" / "val" / "val_annotations.txt"
    ann.write_text("val_0.JPEG n99999999\t0\t0\t1\t1\n")
    with pytest.raises(FileNotFoundError, match="line 1"):
        create_dataset("tiny_imagenet", tmp_path, "test")


# --------------------------------------------------------------------------------------- mini-ImageNet
def test_mini_imagenet_pools_csvs_and_splits_each_class(data_root):
    splits = {s: create_dataset("mini_imagenet", data_root, s, transform=None) for s in ("train", "val", "test")}
    # 4 classes x 10 images, split 8 / 1 / 1 per class by sorted filename, whatever csv a class came from.
    assert {s: len(d) for s, d in splits.items()} == {"train": 32, "val": 4, "test": 4}
    for ds in splits.values():
        assert ds.num_classes == 4 and set(ds.targets) == {0, 1, 2, 3}
    names = {s: {p.name for p in d.items} for s, d in splits.items()}
    assert not (names["train"] & names["val"]) and not (names["train"] & names["test"])
    assert not (names["val"] & names["test"])
    assert "n0000000200000009.jpg" in names["val"] and "n0000000200000010.jpg" in names["test"]
    assert "n0000000200000001.jpg" in names["train"]
    img, y = splits["test"][3]
    assert abs(_red(img) - fx.label_color(y)) <= 4
    x, _ = create_dataset("mini_imagenet", data_root, "val")[0]
    assert x.shape == (3, 84, 84)


def test_mini_imagenet_bad_header(tmp_path):
    fx.write_mini_imagenet(tmp_path, num_classes=3, n_per_class=2)
    (tmp_path / "mini-imagenet" / "val.csv").write_text("file,wnid\nx.jpg,n00000001\n")
    with pytest.raises(FileNotFoundError, match="header 'filename,label'"):
        create_dataset("mini_imagenet", tmp_path)


# --------------------------------------------------------------------------------------- Fashion-MNIST
@pytest.mark.parametrize(("layout", "gz"), [("debian", True), ("torchvision", False), ("torchvision", True)])
def test_fashion_mnist_layouts(tmp_path, layout, gz):
    fx.write_fashion_mnist(tmp_path, n_train=30, n_test=10, layout=layout, gz=gz)
    train = create_dataset("fashion_mnist", tmp_path, "train", transform=None)
    test = create_dataset("fashion_mnist", tmp_path, "test", transform=None)
    assert (len(train), len(test)) == (30, 10)
    assert train.targets == [i % 10 for i in range(30)] and test.targets[0] == 3
    img, y = train[12]
    assert img.mode == "L" and img.size == (28, 28)
    assert img.getpixel((4, 3)) == (10 * y + 3 + 4 + 12) % 256  # pixel (r=3, c=4)


def test_fashion_mnist_transform_and_classes(data_root):
    test = create_dataset("fashion_mnist", data_root, "test")
    x, y = test[0]
    assert x.shape == (1, 28, 28) and x.dtype == torch.float32
    assert x[0, 0, 0].item() == pytest.approx((10 * y / 255 - 0.2860) / 0.3530, abs=1e-5)
    assert test.classes[9] == "Ankle boot"


def test_idx_reader_checks_magic(tmp_path):
    fx.write_fashion_mnist(tmp_path, n_train=5, n_test=5, gz=False)
    images = read_idx(tmp_path / "train-images-idx3-ubyte", expected_magic=2051)
    assert images.shape == (5, 28, 28) and images.dtype == np.uint8
    with pytest.raises(ValueError, match="magic 2051 != expected 2049"):
        read_idx(tmp_path / "train-images-idx3-ubyte", expected_magic=2049)
    # swap labels and images files: must be reported as malformed, not mis-read
    (tmp_path / "train-labels-idx1-ubyte").write_bytes((tmp_path / "train-images-idx3-ubyte").read_bytes())
    with pytest.raises(FileNotFoundError, match="malformed idx file"):
        create_dataset("fashion_mnist", tmp_path)


# ---------------------------------------------------------------------------------------------- digits
def test_digits_fixed_stratified_split():
    train = create_dataset("digits", split="train", transform=None)
    test = create_dataset("digits", split="test", transform=None)
    assert (len(train), len(test)) == (1258, 539)
    ct, cs = Counter(train.targets), Counter(test.targets)
    for c in range(10):
        assert abs(cs[c] / (cs[c] + ct[c]) - 0.3) < 0.01  # stratified 30 %
    img, _ = train[0]
    arr = np.asarray(img)
    assert img.mode == "F" and arr.shape == (8, 8) and 0.0 <= arr.min() and arr.max() <= 1.0
    again = create_dataset("digits", split="test", transform=None, seed=123)  # seed drives only val
    assert again.targets == test.targets
    assert np.array_equal(np.asarray(again[7][0]), np.asarray(test[7][0]))


def test_digits_values_match_sklearn():
    from sklearn.datasets import load_digits

    bunch = load_digits()
    ds = create_dataset("digits", split="train")
    x, y = ds[0]
    assert x.shape == (1, 8, 8) and x.dtype == torch.float32
    raw = x * 0.3760 + 0.3053  # undo Normalize
    matches = [i for i in range(len(bunch.target)) if np.allclose(bunch.images[i] / 16, raw[0].numpy(), atol=1e-5)]
    assert matches and bunch.target[matches[0]] == y


# ---------------------------------------------------------------------------------------- image_folder
def test_image_folder_uses_train_class_mapping(tmp_path):
    fx.write_image_folder(tmp_path, classes=("cat", "dog", "fox"), n_per_class=2, splits=("train",))
    fx.write_image_folder(tmp_path, classes=("dog", "fox"), n_per_class=1, splits=("test",))
    train = create_dataset("image_folder", tmp_path, "train", transform=None)
    test = create_dataset("image_folder", tmp_path, "test", transform=None)
    assert train.classes == ["cat", "dog", "fox"] and train.targets == [0, 0, 1, 1, 2, 2]
    assert test.targets == [1, 2] and test.num_classes == 3  # 'dog' stays 1 although test lacks 'cat'
    with pytest.raises(FileNotFoundError, match="ROOT/val/<class_name>"):
        create_dataset("image_folder", tmp_path, "val")
    assert create_dataset("image_folder", tmp_path, "test")[0][0].shape == (3, 224, 224)
