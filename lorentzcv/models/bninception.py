r"""BN-Inception (Ioffe & Szegedy 2015), the classic deep-metric-learning backbone (1024-d features).

A compact re-implementation of ``pretrainedmodels.bninception`` (the Caffe-converted model used by
Proxy-Anchor and most DML code) with **the same ``state_dict`` keys** (``conv1_7x7_s2.weight``,
``conv1_7x7_s2_bn.running_mean``, ``inception_3a_1x1.weight``, …, ``last_linear.weight``), so a local copy of
``bn_inception-239d2248.pth`` loads with ``load_state_dict`` (strict). There is no download: timm does not host
these weights and the original URL is gone; pass a file to ``create_backbone("bninception",
pretrained_path=...)``.

Every convolution is followed by its batch norm and a ReLU (the original applies the ReLU in place, so the
concatenated branch outputs are post-ReLU). Inception blocks have four branches (1×1; 1×1→3×3; 1×1→3×3→3×3;
pool→1×1 projection); the reduction blocks ``3c`` and ``4e`` drop the 1×1 branch and the projection and use
stride 2. Inputs must be multiples of 32 pixels (≥ 32; other sizes break the channel concatenation of the
reduction blocks, as in the original): 32×32 gives features ``(B, 1024, 1, 1)``, 224×224 gives ``7×7``.

Input convention: the pretrained weights expect **BGR in [0, 255] minus (104, 117, 128)**.
``input_space="rgb_imagenet"`` (default) accepts the usual ImageNet-normalised RGB tensor and converts it
inside ``forward``; ``input_space="bgr255"`` passes the input through unchanged (pretrainedmodels' behaviour).
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

__all__ = ["BNInception", "BNINCEPTION_BLOCKS"]

# name, in, 1x1, 3x3 reduce, 3x3, double reduce, double, pool ("avg"/"max"), pool proj. 1x1 == 0: reduction
BNINCEPTION_BLOCKS = (
    ("3a", 192, 64, 64, 64, 64, 96, "avg", 32),
    ("3b", 256, 64, 64, 96, 64, 96, "avg", 64),
    ("3c", 320, 0, 128, 160, 64, 96, "max", 0),
    ("4a", 576, 224, 64, 96, 96, 128, "avg", 128),
    ("4b", 576, 192, 96, 128, 96, 128, "avg", 128),
    ("4c", 576, 160, 128, 160, 128, 160, "avg", 128),
    ("4d", 608, 96, 128, 192, 160, 192, "avg", 128),
    ("4e", 608, 0, 128, 192, 192, 256, "max", 0),
    ("5a", 1056, 352, 192, 320, 160, 224, "avg", 128),
    ("5b", 1024, 352, 192, 320, 192, 224, "max", 128),
)
_IMAGENET_MEAN = (0.485, 0.456, 0.406)
_IMAGENET_STD = (0.229, 0.224, 0.225)
_CAFFE_BGR_MEAN = (104.0, 117.0, 128.0)


class BNInception(nn.Module):
    """BN-Inception with pretrainedmodels-compatible parameter names (module docstring).

    Args:
        num_classes: size of ``last_linear`` (1000 for ImageNet checkpoints); 0 drops it, and ``forward``
            returns the pooled 1024-d features.
        input_space: ``"rgb_imagenet"`` or ``"bgr255"`` (module docstring).
        bn_momentum: batch-norm momentum (PyTorch convention; the converted original uses 0.9).

    Shapes: ``forward_features``: ``(B, 3, H, W) -> (B, 1024, ⌈H/32⌉, ⌈W/32⌉)``; ``forward``: ``(B, num_classes)``
    (``(B, 1024)`` when ``num_classes = 0``), global average pooling.
    """

    num_features = 1024

    def __init__(self, num_classes: int = 1000, input_space: str = "rgb_imagenet", bn_momentum: float = 0.1):
        super().__init__()
        if input_space not in ("rgb_imagenet", "bgr255"):
            raise ValueError(f"input_space must be 'rgb_imagenet' or 'bgr255', got {input_space!r}")
        self.input_space = input_space
        self._bn_momentum = bn_momentum
        self._conv("conv1_7x7_s2", 3, 64, 7, stride=2, padding=3)
        self._conv("conv2_3x3_reduce", 64, 64, 1)
        self._conv("conv2_3x3", 64, 192, 3, padding=1)
        for name, cin, c1, c3r, c3, cdr, cd, _, cp in BNINCEPTION_BLOCKS:
            p, s = f"inception_{name}_", (2 if c1 == 0 else 1)
            if c1:
                self._conv(p + "1x1", cin, c1, 1)
            self._conv(p + "3x3_reduce", cin, c3r, 1)
            self._conv(p + "3x3", c3r, c3, 3, stride=s, padding=1)
            self._conv(p + "double_3x3_reduce", cin, cdr, 1)
            self._conv(p + "double_3x3_1", cdr, cd, 3, padding=1)
            self._conv(p + "double_3x3_2", cd, cd, 3, stride=s, padding=1)
            if cp:
                self._conv(p + "pool_proj", cin, cp, 1)
        self.last_linear = nn.Linear(1024, num_classes) if num_classes > 0 else None
        # ImageNet-normalised RGB -> Caffe BGR: x_bgr255 = a * x[:, [2, 1, 0]] + b (non-persistent buffers)
        a = torch.tensor([255.0 * s for s in _IMAGENET_STD[::-1]]).view(1, 3, 1, 1)
        b = torch.tensor([255.0 * m - c for m, c in zip(_IMAGENET_MEAN[::-1], _CAFFE_BGR_MEAN)]).view(1, 3, 1, 1)
        self.register_buffer("_in_scale", a, persistent=False)
        self.register_buffer("_in_shift", b, persistent=False)

    def _conv(self, name: str, cin: int, cout: int, k: int, stride: int = 1, padding: int = 0) -> None:
        setattr(self, name, nn.Conv2d(cin, cout, k, stride=stride, padding=padding))
        setattr(self, name + "_bn", nn.BatchNorm2d(cout, eps=1e-5, momentum=self._bn_momentum))

    def _cbr(self, name: str, x: torch.Tensor) -> torch.Tensor:
        return F.relu(getattr(self, name + "_bn")(getattr(self, name)(x)))

    def _block(self, spec: tuple, x: torch.Tensor) -> torch.Tensor:
        name, _, c1, _, _, _, _, pool, cp = spec
        p = f"inception_{name}_"
        out = [self._cbr(p + "1x1", x)] if c1 else []
        out.append(self._cbr(p + "3x3", self._cbr(p + "3x3_reduce", x)))
        d = self._cbr(p + "double_3x3_1", self._cbr(p + "double_3x3_reduce", x))
        out.append(self._cbr(p + "double_3x3_2", d))
        if not c1:  # reduction block: 3x3/2 max pool, no projection
            out.append(F.max_pool2d(x, 3, stride=2, ceil_mode=True))
        else:
            if pool == "avg":
                y = F.avg_pool2d(x, 3, stride=1, padding=1, ceil_mode=True, count_include_pad=True)
            else:
                y = F.max_pool2d(x, 3, stride=1, padding=1, ceil_mode=True)
            out.append(self._cbr(p + "pool_proj", y))
        return torch.cat(out, dim=1)

    def forward_features(self, x: torch.Tensor) -> torch.Tensor:
        if self.input_space == "rgb_imagenet":
            x = x.flip(1) * self._in_scale.to(x.dtype) + self._in_shift.to(x.dtype)
        x = F.max_pool2d(self._cbr("conv1_7x7_s2", x), 3, stride=2, ceil_mode=True)
        x = self._cbr("conv2_3x3", self._cbr("conv2_3x3_reduce", x))
        x = F.max_pool2d(x, 3, stride=2, ceil_mode=True)
        for spec in BNINCEPTION_BLOCKS:
            x = self._block(spec, x)
        return x

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.forward_features(x).mean(dim=(2, 3))
        return x if self.last_linear is None else self.last_linear(x)
