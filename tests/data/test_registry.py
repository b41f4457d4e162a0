"""Registry, ``create_dataset`` argument handling and missing-data errors."""

from __future__ import annotations

from pathlib import Path

import pytest

from lorentzcv.data import DatasetInfo, create_dataset, get_dataset_info, list_datasets, register_dataset
from lorentzcv.data._factory import DATA_ROOT_ENV

ALL = [
    "cars", "cifar10", "cifar100", "cub", "digits", "digits_dml", "fashion_mnist", "fashion_mnist_dml",
    "fashion_mnist_hier", "image_folder", "inshop", "mini_imagenet", "sop", "tiny_imagenet",
]  # fmt: skip
ON_DISK = [n for n in ALL if not n.startswith("digits")]


def test_list_datasets_names_and_patterns():
    assert list_datasets() == ALL
    assert list_datasets("cifar*") == ["cifar10", "cifar100"]
    assert list_datasets("*_dml") == ["digits_dml", "fashion_mnist_dml"]
    assert list_datasets(task="metric") == [
        "cars", "cub", "digits_dml", "fashion_mnist_dml", "fashion_mnist_hier", "inshop", "sop"
    ]  # fmt: skip
    assert list_datasets("nothing*") == []


@pytest.mark.parametrize("name", ALL)
def test_info_is_complete(name):
    info = get_dataset_info(name)
    assert isinstance(info, DatasetInfo)
    assert info.name == name
    assert info.task in ("classification", "metric")
    assert len(info.mean) == len(info.std) == info.in_chans
    assert info.layout.strip() and info.how_to_get.strip()
    assert "train" in info.splits


def test_info_values():
    assert get_dataset_info("cifar100").num_classes == 100
    assert get_dataset_info("cub").num_classes == {"train": 100, "test": 100}
    assert get_dataset_info("inshop").splits == ("train", "query", "gallery")
    assert "apt-get install dataset-fashion-mnist" in get_dataset_info("fashion_mnist").how_to_get


def test_unknown_name_suggests_close_match():
    with pytest.raises(ValueError, match=r"Unknown dataset 'cifar1O'.*Did you mean 'cifar10'") as e:
        create_dataset("cifar1O")
    assert "tiny_imagenet" in str(e.value)  # lists valid names
    with pytest.raises(ValueError, match="Did you mean 'tiny_imagenet'"):
        get_dataset_info("tiny-imagenet")


def test_unknown_split_and_bad_arguments():
    with pytest.raises(ValueError, match="unknown split 'query'"):
        create_dataset("digits", split="query")
    with pytest.raises(ValueError, match="val_fraction"):
        create_dataset("digits", val_fraction=1.5)
    with pytest.raises(ValueError, match="transform must be"):
        create_dataset("digits", transform="fancy")
    with pytest.raises(ValueError, match="no native validation split"):
        create_dataset("digits", split="val")


def test_register_rejects_duplicates_and_name_mismatch():
    info = get_dataset_info("digits")
    with pytest.raises(ValueError, match="already registered"):
        register_dataset("digits", info)(lambda *a, **k: None)
    with pytest.raises(ValueError, match="!= info.name"):
        register_dataset("other", info)


@pytest.mark.parametrize("name", ON_DISK)
def test_missing_dataset_raises_file_not_found_with_layout(name, tmp_path):
    info = get_dataset_info(name)
    with pytest.raises(FileNotFoundError) as e:
        create_dataset(name, root=tmp_path / "empty", split="train")
    msg = str(e.value)
    assert info.layout.splitlines()[0] in msg
    assert info.how_to_get.splitlines()[0] in msg
    assert str(tmp_path / "empty") in msg


def test_no_root_uses_env_variable(monkeypatch, data_root):
    monkeypatch.delenv(DATA_ROOT_ENV, raising=False)
    with pytest.raises(FileNotFoundError, match=f"pass root=... or set \\${DATA_ROOT_ENV}"):
        create_dataset("cub")
    monkeypatch.setenv(DATA_ROOT_ENV, str(data_root))
    assert len(create_dataset("cub", transform=None)) == 6


def test_fashion_mnist_default_root_is_debian_path():
    assert get_dataset_info("fashion_mnist").default_root == "/usr/share/datasets/fashion-mnist"
    if Path("/usr/share/datasets/fashion-mnist/train-images-idx3-ubyte.gz").is_file():  # package installed
        assert len(create_dataset("fashion_mnist", transform=None)) == 60000
