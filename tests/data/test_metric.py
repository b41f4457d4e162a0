"""Metric-learning datasets: HIER's class-disjoint splits read from fixtures in the real formats."""

from __future__ import annotations

from collections import Counter

import pytest
from PIL import Image

from lorentzcv.data import create_dataset
from lorentzcv.data.fashion_mnist import FASHION_MNIST_SUPER_OF

from . import fixtures as fx


def _red(img: Image.Image) -> int:
    return img.convert("RGB").getpixel((0, 0))[0]


def _assert_pairs_match(ds, color_index=lambda y: y):
    for i in range(len(ds)):
        img, y = ds[i]
        assert abs(_red(img) - fx.label_color(color_index(y))) <= 4, (i, y)


def test_cub_class_halves_and_junk_files(data_root):
    train = create_dataset("cub", data_root, "train", transform=None)
    test = create_dataset("cub", data_root, "test", transform=None)
    assert (len(train), len(test)) == (6, 6)  # the '._*.jpg' files are skipped
    assert all(not p.name.startswith("._") for p in train.items + test.items)
    assert train.targets == [0, 0, 0, 1, 1, 1] and test.targets == [2, 2, 2, 3, 3, 3]  # raw test labels
    assert (train.num_classes, test.num_classes) == (2, 2)
    assert train.classes[3] == "004.Bird_3"
    _assert_pairs_match(train)
    _assert_pairs_match(test)


def test_cars_reads_mat_struct_and_ignores_test_flag(data_root):
    train = create_dataset("cars", data_root, "train", transform=None)
    test = create_dataset("cars", data_root, "test", transform=None)
    assert (len(train), len(test)) == (6, 6)  # all 12 images used although half are flagged test=1
    assert Counter(train.targets) == {0: 3, 1: 3} and Counter(test.targets) == {2: 3, 3: 3}
    assert [p.name for p in train.items[:2]] == ["000001.jpg", "000002.jpg"]
    _assert_pairs_match(train)
    _assert_pairs_match(test)


def test_cars_malformed_mat(tmp_path):
    (tmp_path / "cars196").mkdir()
    (tmp_path / "cars196" / "cars_annos.mat").write_bytes(b"garbage")
    with pytest.raises(FileNotFoundError, match="cannot read annotations"):
        create_dataset("cars", tmp_path)


def test_sop_labels_and_superclasses(data_root):
    train = create_dataset("sop", data_root, "train", transform=None)
    test = create_dataset("sop", data_root, "test", transform=None)
    assert train.targets == [0, 0, 1, 1, 2, 2] and test.targets == [3, 3, 4, 4, 5, 5]
    assert train.super_targets == [0, 0, 1, 1, 0, 0] and test.super_targets == [1, 1, 0, 0, 1, 1]
    assert (train.num_classes, test.num_classes) == (3, 3)
    assert not set(train.targets) & set(test.targets)
    _assert_pairs_match(test)


def test_sop_bad_header(tmp_path):
    fx.write_sop(tmp_path)
    path = tmp_path / "Stanford_Online_Products" / "Ebay_test.txt"
    path.write_text("1 4 2 chair_final/x.JPG\n")
    with pytest.raises(FileNotFoundError, match="first line must be 'image_id class_id super_class_id path'"):
        create_dataset("sop", tmp_path, "test")


@pytest.mark.parametrize("under_img", [True, False])
def test_inshop_splits_and_label_spaces(tmp_path, under_img):
    fx.write_inshop(tmp_path, 3, 4, n_per_item=3, under_img=under_img, gallery_only_items=1)
    train = create_dataset("inshop", tmp_path, "train", transform=None)
    query = create_dataset("inshop", tmp_path, "query", transform=None)
    gallery = create_dataset("inshop", tmp_path, "gallery", transform=None)
    assert (len(train), len(query), len(gallery)) == (9, 3, 9)
    assert train.targets == [0, 0, 0, 1, 1, 1, 2, 2, 2]  # ids 2, 4, 6 -> 0, 1, 2
    # ids 1, 3, 5, 7 -> 0..3 over query ∪ gallery (id 1 is gallery-only), so query starts at 1
    assert query.targets == [1, 2, 3]
    assert gallery.targets == [0, 0, 0, 1, 1, 2, 2, 3, 3]
    assert train.super_targets == [1, 1, 1, 0, 0, 0, 1, 1, 1]  # WOMEN/Dresses=1, MEN/Denim=0 (sorted)
    expected_base = tmp_path / "Inshop_Clothes" / ("Img" if under_img else "")
    assert query.items[0] == expected_base / "img/MEN/Denim/id_00000003/01_0_front.jpg"
    for ds in (train, query, gallery):
        _assert_pairs_match(ds)


def test_inshop_count_line_checked(tmp_path):
    fx.write_inshop(tmp_path)
    path = tmp_path / "Inshop_Clothes" / "Eval" / "list_eval_partition.txt"
    lines = path.read_text().splitlines(keepends=True)
    path.write_text("999\n" + "".join(lines[1:]))
    with pytest.raises(FileNotFoundError, match="count line says 999"):
        create_dataset("inshop", tmp_path, "query")


def test_metric_default_transform_follows_backbone(data_root):
    vit = create_dataset("cub", data_root, "test", transform_kwargs={"backbone_name": "vit_small_patch16_224"})
    res = create_dataset("cub", data_root, "test")
    assert vit[0][0].shape == res[0][0].shape == (3, 224, 224)
    assert vit.transform.transforms[-1].mean == (0.5, 0.5, 0.5)
    assert res.transform.transforms[-1].mean == (0.485, 0.456, 0.406)
    small = create_dataset("sop", data_root, "train", transform_kwargs={"img_size": 32})
    assert small[0][0].shape == (3, 32, 32)


def test_digits_dml_is_class_disjoint():
    train = create_dataset("digits_dml", split="train", transform=None)
    test = create_dataset("digits_dml", split="test", transform=None)
    assert set(train.targets) == {0, 1, 2, 3, 4} and set(test.targets) == {5, 6, 7, 8, 9}
    assert len(train) + len(test) == 1797 and (train.num_classes, test.num_classes) == (5, 5)
    assert create_dataset("digits_dml", split="test")[0][0].shape == (1, 8, 8)


def test_fashion_mnist_dml_pools_files_and_has_superclasses(data_root):
    train = create_dataset("fashion_mnist_dml", data_root, "train", transform=None)
    test = create_dataset("fashion_mnist_dml", data_root, "test", transform=None)
    assert len(train) + len(test) == 60  # 40 train + 20 t10k images pooled
    assert set(train.targets) == {0, 1, 2, 3, 4} and set(test.targets) == {5, 6, 7, 8, 9}
    assert [FASHION_MNIST_SUPER_OF[y] for y in test.targets] == test.super_targets
    sup = dict(zip(train.targets + test.targets, train.super_targets + test.super_targets))
    assert sup[0] == sup[2] == sup[4] == sup[6]  # tops
    assert sup[5] == sup[7] == sup[9] != sup[8]  # footwear vs bag
    assert len({sup[1], sup[3], sup[0], sup[5], sup[8]}) == 5
