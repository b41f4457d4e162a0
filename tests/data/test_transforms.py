"""Default transforms: composition per ``docs/method.md`` §7.3 / §8 and output shapes/dtypes."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from PIL import Image
from torchvision import transforms as T
from torchvision.transforms import InterpolationMode

from lorentzcv.data import build_metric_transform, build_transform, create_transform
from lorentzcv.data.transforms import CIFAR_MEAN, IMAGENET_MEAN, TRANSFORM_PRESETS


def _rgb(w: int, h: int) -> Image.Image:
    return Image.fromarray(np.random.default_rng(0).integers(0, 256, (h, w, 3), dtype=np.uint8))


def _by_type(tf: T.Compose, cls: type):
    return [t for t in tf.transforms if isinstance(t, cls)]


@pytest.mark.parametrize(
    ("backbone", "scale", "mean"),
    [
        ("resnet50", (0.08, 1.0), IMAGENET_MEAN),
        ("vit_small_patch16_224", (0.2, 1.0), (0.5, 0.5, 0.5)),
        ("deit_small_distilled_patch16_224", (0.2, 1.0), IMAGENET_MEAN),
        ("dino_vits16", (0.2, 1.0), IMAGENET_MEAN),
    ],
)
def test_metric_train_transform(backbone, scale, mean):
    tf = build_metric_transform("train", backbone)
    (rrc,) = _by_type(tf, T.RandomResizedCrop)
    assert rrc.size == (224, 224) and rrc.scale == scale and rrc.interpolation == InterpolationMode.BICUBIC
    assert _by_type(tf, T.RandomHorizontalFlip) and _by_type(tf, T.Normalize)[0].mean == mean
    x = tf(_rgb(50, 37))
    assert x.shape == (3, 224, 224) and x.dtype == torch.float32


def test_metric_eval_transform_is_deterministic():
    tf = build_metric_transform("test", "resnet50")
    (resize,) = _by_type(tf, T.Resize)
    (crop,) = _by_type(tf, T.CenterCrop)
    assert resize.size == 256 and resize.interpolation == InterpolationMode.BICUBIC and crop.size == (224, 224)
    assert not _by_type(tf, T.RandomHorizontalFlip)
    img = _rgb(300, 260)
    assert torch.equal(tf(img), tf(img))
    assert build_metric_transform("gallery", "resnet50", img_size=112)(img).shape == (3, 112, 112)


@pytest.mark.parametrize(
    ("name", "size", "chans"),
    [("cifar10", 32, 3), ("cifar100", 32, 3), ("tiny_imagenet", 64, 3), ("mini_imagenet", 84, 3),
     ("image_folder", 224, 3), ("cub", 224, 3)],
)  # fmt: skip
@pytest.mark.parametrize("split", ["train", "test"])
def test_dataset_default_transform_shapes(name, size, chans, split):
    x = create_transform(name, split)(_rgb(size, size) if size <= 64 else _rgb(120, 100))
    assert x.shape == (chans, size, size) and x.dtype == torch.float32


def test_classification_presets():
    cifar = build_transform("cifar", "train")
    assert _by_type(cifar, T.RandomCrop)[0].padding == 4 and _by_type(cifar, T.Normalize)[0].mean == CIFAR_MEAN
    tiny = build_transform("tiny_imagenet", "train")
    assert _by_type(tiny, T.RandomCrop)[0].size == (64, 64) and _by_type(tiny, T.Normalize)[0].mean == IMAGENET_MEAN
    mini_eval = build_transform("mini_imagenet", "test")
    assert _by_type(mini_eval, T.Resize)[0].size == 96 and _by_type(mini_eval, T.CenterCrop)[0].size == (84, 84)
    assert _by_type(build_transform("mini_imagenet", "train"), T.RandomResizedCrop)[0].size == (84, 84)
    assert not _by_type(build_transform("cifar", "val"), T.RandomCrop)
    fm = build_transform("fashion_mnist", "train")
    assert _by_type(fm, T.RandomCrop)[0].padding == 2 and not _by_type(fm, T.RandomHorizontalFlip)
    gray = Image.fromarray(np.full((28, 28), 255, np.uint8))
    assert build_transform("fashion_mnist", "test")(gray).shape == (1, 28, 28)
    with pytest.raises(ValueError, match="Unknown transform preset"):
        build_transform("nope", "train")
    assert set(TRANSFORM_PRESETS) >= {"cifar", "tiny_imagenet", "mini_imagenet", "metric", "digits"}
