"""Default train/eval transforms (``docs/method.md`` §7.3 for metric learning, §8 for classification).

Every builder takes the split name; ``split == "train"`` gives the augmenting transform, any other split
(``"val"``, ``"test"``, ``"query"``, ``"gallery"``) the deterministic eval transform. All return a
``torchvision.transforms.Compose`` mapping a PIL image to a float32 tensor of shape ``(C, H, W)``.
Datasets name their preset in ``DatasetInfo.transform``; :func:`build_transform` dispatches through the
:data:`TRANSFORM_PRESETS` table.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from torchvision import transforms as T
from torchvision.transforms import InterpolationMode

__all__ = [
    "CIFAR_MEAN",
    "CIFAR_STD",
    "IMAGENET_MEAN",
    "IMAGENET_STD",
    "VIT_MEAN",
    "VIT_STD",
    "FASHION_MNIST_MEAN",
    "FASHION_MNIST_STD",
    "DIGITS_MEAN",
    "DIGITS_STD",
    "TRANSFORM_PRESETS",
    "build_transform",
    "build_cifar_transform",
    "build_tiny_imagenet_transform",
    "build_mini_imagenet_transform",
    "build_imagenet_transform",
    "build_gray_transform",
    "build_fashion_mnist_transform",
    "build_digits_transform",
    "build_metric_transform",
    "is_train_split",
]

# CIFAR-100 training-set statistics; HCNN ([H]) uses them for CIFAR-10 and CIFAR-100 alike (``docs/method.md`` §8).
CIFAR_MEAN = (0.5074, 0.4867, 0.4411)
CIFAR_STD = (0.267, 0.256, 0.276)
IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)
VIT_MEAN = (0.5, 0.5, 0.5)
VIT_STD = (0.5, 0.5, 0.5)
# Fashion-MNIST training-set statistics (pixel values / 255).
FASHION_MNIST_MEAN = (0.2860,)
FASHION_MNIST_STD = (0.3530,)
# scikit-learn digits statistics over all 1,797 images (pixel values / 16).
DIGITS_MEAN = (0.3053,)
DIGITS_STD = (0.3760,)


def is_train_split(split: str) -> bool:
    """``True`` for the augmenting (training) transform, i.e. ``split == "train"``."""
    return split == "train"


def build_cifar_transform(
    split: str, mean: tuple[float, ...] = CIFAR_MEAN, std: tuple[float, ...] = CIFAR_STD
) -> T.Compose:
    """CIFAR-10/100 (32×32): train ``RandomCrop(32, padding=4)`` + ``RandomHorizontalFlip``; eval: none.

    Both end with ``ToTensor`` + ``Normalize(mean, std)`` (CIFAR-100 statistics by default, ``docs/method.md`` §8).
    """
    aug = [T.RandomCrop(32, padding=4), T.RandomHorizontalFlip()] if is_train_split(split) else []
    return T.Compose([*aug, T.ToTensor(), T.Normalize(mean, std)])


def build_tiny_imagenet_transform(split: str) -> T.Compose:
    """Tiny-ImageNet (64×64): train ``RandomCrop(64, padding=4)`` + flip; ImageNet normalisation (``docs/method.md`` §8)."""
    aug = [T.RandomCrop(64, padding=4), T.RandomHorizontalFlip()] if is_train_split(split) else []
    return T.Compose([*aug, T.ToTensor(), T.Normalize(IMAGENET_MEAN, IMAGENET_STD)])


def build_mini_imagenet_transform(split: str, img_size: int = 84) -> T.Compose:
    """mini-ImageNet: train ``RandomResizedCrop(84)`` + flip; eval ``Resize(96)`` + ``CenterCrop(84)``.

    ``img_size`` other than 84 scales the eval resize by the same 96/84 ratio. ImageNet normalisation.
    """
    if is_train_split(split):
        geo = [T.RandomResizedCrop(img_size), T.RandomHorizontalFlip()]
    else:
        geo = [T.Resize(round(img_size * 96 / 84)), T.CenterCrop(img_size)]
    return T.Compose([*geo, T.ToTensor(), T.Normalize(IMAGENET_MEAN, IMAGENET_STD)])


def build_imagenet_transform(split: str, img_size: int = 224) -> T.Compose:
    """Generic ImageNet-style transform (used by ``image_folder``).

    Train ``RandomResizedCrop(img_size)`` + flip; eval ``Resize(img_size·256/224)`` +
    ``CenterCrop(img_size)``; ImageNet normalisation.
    """
    if is_train_split(split):
        geo = [T.RandomResizedCrop(img_size), T.RandomHorizontalFlip()]
    else:
        geo = [T.Resize(round(img_size * 256 / 224)), T.CenterCrop(img_size)]
    return T.Compose([*geo, T.ToTensor(), T.Normalize(IMAGENET_MEAN, IMAGENET_STD)])


def build_gray_transform(
    split: str, img_size: int, mean: tuple[float, ...], std: tuple[float, ...], pad: int = 0
) -> T.Compose:
    """Small gray images: optional train ``RandomCrop(img_size, padding=pad)``, then tensor + normalise.

    No flip: flipping changes the meaning of digits. ``ToTensor`` keeps float (mode ``"F"``) images as they
    are and divides ``uint8`` ones by 255.
    """
    aug = [T.RandomCrop(img_size, padding=pad)] if is_train_split(split) and pad > 0 else []
    return T.Compose([*aug, T.ToTensor(), T.Normalize(mean, std)])


def build_fashion_mnist_transform(split: str) -> T.Compose:
    """Fashion-MNIST (28×28 gray): train ``RandomCrop(28, padding=2)``; its own mean/std."""
    return build_gray_transform(split, 28, FASHION_MNIST_MEAN, FASHION_MNIST_STD, pad=2)


def build_digits_transform(split: str) -> T.Compose:
    """scikit-learn digits (8×8 gray, values in [0, 1]): tensor + normalise, no augmentation (too small)."""
    return build_gray_transform(split, 8, DIGITS_MEAN, DIGITS_STD, pad=0)


def _is_vit_family(backbone_name: str) -> bool:
    name = backbone_name.lower()
    return "vit" in name or "deit" in name or name.startswith("dino")


def build_metric_transform(split: str, backbone_name: str = "resnet50", img_size: int = 224) -> T.Compose:
    """HIER's metric-learning transforms (``docs/method.md`` §7.3).

    Train: ``RandomResizedCrop(img_size, scale=s, bicubic)`` + ``RandomHorizontalFlip``, with
    ``s = (0.2, 1)`` for ViT/DeiT/DINO backbones (name contains ``"vit"`` or ``"deit"`` or starts with
    ``"dino"``) and ``(0.08, 1)`` otherwise. Eval: ``Resize(img_size·256/224, bicubic)`` +
    ``CenterCrop(img_size)``. Normalisation: mean = std = 0.5 when the backbone name starts with ``"vit"``
    (timm ViT weights), ImageNet statistics otherwise.

    Args:
        split: ``"train"`` for the augmenting transform, anything else for eval.
        backbone_name: timm/torchvision/hub name of the backbone, e.g. ``"resnet50"``,
            ``"vit_small_patch16_224"``, ``"deit_small_distilled_patch16_224"``, ``"dino_vits16"``.
        img_size: Output side length.
    """
    bicubic = InterpolationMode.BICUBIC
    if is_train_split(split):
        scale = (0.2, 1.0) if _is_vit_family(backbone_name) else (0.08, 1.0)
        geo = [T.RandomResizedCrop(img_size, scale=scale, interpolation=bicubic), T.RandomHorizontalFlip()]
    else:
        geo = [T.Resize(round(img_size * 256 / 224), interpolation=bicubic), T.CenterCrop(img_size)]
    vit_norm = backbone_name.lower().startswith("vit")
    mean, std = (VIT_MEAN, VIT_STD) if vit_norm else (IMAGENET_MEAN, IMAGENET_STD)
    return T.Compose([*geo, T.ToTensor(), T.Normalize(mean, std)])


TRANSFORM_PRESETS: dict[str, Callable[..., T.Compose]] = {
    "cifar": build_cifar_transform,
    "tiny_imagenet": build_tiny_imagenet_transform,
    "mini_imagenet": build_mini_imagenet_transform,
    "imagenet": build_imagenet_transform,
    "fashion_mnist": build_fashion_mnist_transform,
    "digits": build_digits_transform,
    "metric": build_metric_transform,
}


def build_transform(preset: str, split: str, **kwargs: Any) -> T.Compose:
    """Build the ``preset`` transform for ``split`` (``kwargs`` go to the preset's builder).

    Raises:
        ValueError: If ``preset`` is not a key of :data:`TRANSFORM_PRESETS`.
    """
    try:
        fn = TRANSFORM_PRESETS[preset]
    except KeyError:
        raise ValueError(f"Unknown transform preset {preset!r}; valid: {sorted(TRANSFORM_PRESETS)}") from None
    return fn(split, **kwargs)
