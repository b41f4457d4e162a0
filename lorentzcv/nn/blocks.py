r"""ResNet building blocks assembled from **layer factories** (``docs/design.md`` §2, ``docs/method.md`` §5.6–5.7, §6).

One block definition serves the Euclidean, hybrid and fully hyperbolic ResNets: a block never asks which
geometry it is in, it calls the factories it was given (timm's ``act_layer=``/``norm_layer=`` pattern). The
factory contracts are

=================  ==========================================================  ===============================
factory            call                                                        Euclidean default
=================  ==========================================================  ===============================
``conv_layer``     ``conv_layer(in_ch, out_ch, kernel_size, stride, padding)``  :func:`conv2d` (no bias)
``norm_layer``     ``norm_layer(num_channels)``                                ``nn.BatchNorm2d``
``act_layer``      ``act_layer()``                                             :func:`relu` (in place)
``residual``       ``residual()`` → module with ``forward(x, shortcut)``       :class:`Add`
=================  ==========================================================  ===============================

Channel counts are the **space** channels for Lorentz layers (``docs/design.md`` §1), so the same numbers work for
both geometries. For a Lorentz variant the factories are the Lorentz layers bound to their manifold with
``functools.partial``, e.g. ``conv_layer=partial(LorentzConv2d, manifold, impl="efficient")``,
``norm_layer=partial(LorentzBatchNorm2d, manifold)``, ``act_layer=partial(LorentzActivation, manifold)``,
``residual=partial(LorentzResidual, manifold)``; feature maps are then ``(B, 1+C, H, W)`` points (time at
channel 0, curvature ``K = -1/k`` of that manifold).

Blocks:

- :class:`ConvNormAct`: ``[pre] → conv → norm → act → [post]`` — stems, and the hyperbolic core of
  :class:`LorentzCoreBottleneck` (``pre``/``post`` are the Euclid↔Lorentz bridges).
- :class:`BasicBlock` (expansion 1, ResNet-18/34): ``act(residual(norm(conv3x3(act(norm(conv3x3 x)))),
  shortcut(x)))``; the shortcut is ``norm(conv1x1/stride)`` when the shape changes, else the identity. With
  Lorentz factories this is HCNN's ``LorentzBasicBlock`` (space-add residual + re-lift, §5.6), with
  rescaling it is the HECNN+ block.
- :class:`Bottleneck` (expansion 4, ResNet-50): ``conv1x1 → norm → act → core(3×3, stride) → conv1x1 → norm``,
  ``+`` shortcut, ``act``. ``core_layer`` replaces the 3×3 stage.
- :class:`LorentzCoreBottleneck` (§5.7): a Euclidean :class:`Bottleneck` whose 3×3 core runs on the
  hyperboloid: ``ToLorentz → LorentzConv2d 3×3 → LorentzBatchNorm2d → LorentzActivation → FromLorentz``.
"""

from __future__ import annotations

from collections.abc import Callable
from functools import partial
from typing import Any

import torch
from torch import nn

from ..geometry import Lorentz
from .activation import LorentzActivation
from .bridge import FromLorentz, ToLorentz
from .conv import LorentzConv2d
from .norm import LorentzBatchNorm2d

__all__ = [
    "ConvFactory", "NormFactory", "ActFactory", "ResidualFactory", "conv2d", "relu", "Add", "ConvNormAct",
    "BasicBlock", "Bottleneck", "LorentzCoreBottleneck", "make_shortcut",
]

ConvFactory = Callable[[int, int, int, int, int], nn.Module]
"""``conv_layer(in_ch, out_ch, kernel_size, stride, padding) -> module``."""
NormFactory = Callable[[int], nn.Module]
"""``norm_layer(num_channels) -> module``."""
ActFactory = Callable[[], nn.Module]
"""``act_layer() -> module``."""
ResidualFactory = Callable[[], nn.Module]
"""``residual() -> module`` whose ``forward(x, shortcut)`` merges the branch and the shortcut."""
ModuleFactory = Callable[[], nn.Module]


def conv2d(in_ch: int, out_ch: int, kernel_size: int, stride: int = 1, padding: int = 0) -> nn.Conv2d:
    """Euclidean conv factory: ``nn.Conv2d`` without bias (a norm follows), He (fan-out) initialised."""
    conv = nn.Conv2d(in_ch, out_ch, kernel_size, stride=stride, padding=padding, bias=False)
    nn.init.kaiming_normal_(conv.weight, mode="fan_out", nonlinearity="relu")
    return conv


def relu() -> nn.ReLU:
    """Euclidean activation factory: in-place ReLU."""
    return nn.ReLU(inplace=True)


class Add(nn.Module):
    """Euclidean residual: ``x + shortcut``."""

    def forward(self, x: torch.Tensor, shortcut: torch.Tensor) -> torch.Tensor:
        return x + shortcut


def make_shortcut(
    in_ch: int, out_ch: int, stride: int, conv_layer: ConvFactory, norm_layer: NormFactory
) -> nn.Module | None:
    """``norm(conv1x1(stride))`` when the block changes shape (``stride != 1`` or ``in_ch != out_ch``), else None."""
    if stride == 1 and in_ch == out_ch:
        return None
    return nn.Sequential(conv_layer(in_ch, out_ch, 1, stride, 0), norm_layer(out_ch))


class ConvNormAct(nn.Module):
    """``[pre] → conv(k×k, stride) → norm → act → [post]`` built from factories.

    Args:
        in_ch, out_ch: channels (space channels for Lorentz layers).
        kernel_size, stride: of the conv; padding defaults to ``kernel_size // 2``.
        conv_layer, norm_layer, act_layer: factories (module docstring); ``act_layer=None`` skips the
            activation.
        pre_layer, post_layer: optional zero-argument factories run before / after (e.g. a Euclid→Lorentz
            lift and a Lorentz→Euclid map around a hyperbolic core, or the input lift of a Lorentz stem).
    """

    def __init__(
        self, in_ch: int, out_ch: int, kernel_size: int = 3, stride: int = 1, padding: int | None = None, *,
        conv_layer: ConvFactory = conv2d, norm_layer: NormFactory = nn.BatchNorm2d,
        act_layer: ActFactory | None = relu, pre_layer: ModuleFactory | None = None,
        post_layer: ModuleFactory | None = None,
    ) -> None:
        super().__init__()
        padding = kernel_size // 2 if padding is None else padding
        self.pre = pre_layer() if pre_layer is not None else nn.Identity()
        self.conv = conv_layer(in_ch, out_ch, kernel_size, stride, padding)
        self.bn = norm_layer(out_ch)
        self.act = act_layer() if act_layer is not None else nn.Identity()
        self.post = post_layer() if post_layer is not None else nn.Identity()

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        y = self.post(self.act(self.bn(self.conv(self.pre(x)))))
        if (y.dtype != x.dtype and x.dtype in (torch.float16, torch.bfloat16) and not isinstance(self.post, nn.Identity)
                and not torch.is_autocast_enabled(x.device.type)):
            # a Lorentz core between bridges in a model cast with .half()/.bfloat16(): a float32 island that returns
            # the dtype it was given (under autocast the next op casts instead)
            y = y.to(x.dtype)
        return y


class BasicBlock(nn.Module):
    """ResNet basic block (expansion 1) from layer factories (``docs/method.md`` §5.6, §6.1).

    ``y = act(residual(bn2(conv2(act(bn1(conv1(x))))), shortcut(x)))`` with 3×3 convs (the first one strided)
    and ``shortcut = bn(conv1x1/stride)`` when the shape changes.

    Args:
        in_ch: input channels (space channels for Lorentz factories).
        planes: output channels (``planes * expansion``).
        stride: stride of the first conv and of the shortcut.
        conv_layer, norm_layer, act_layer, residual: factories (module docstring).
        downsample: an explicit shortcut module; default: :func:`make_shortcut`.
        drop_path: applied to the branch before the residual (stochastic depth, e.g. timm's ``DropPath``);
            default: none.

    Shapes: Euclidean ``(B, C_in, H, W) → (B, planes, H/s, W/s)``; Lorentz ``(B, 1+C_in, H, W) →
    (B, 1+planes, H/s, W/s)``.
    """

    expansion = 1

    def __init__(
        self, in_ch: int, planes: int, stride: int = 1, *, conv_layer: ConvFactory = conv2d,
        norm_layer: NormFactory = nn.BatchNorm2d, act_layer: ActFactory = relu, residual: ResidualFactory = Add,
        downsample: nn.Module | None = None, drop_path: nn.Module | None = None,
    ) -> None:
        super().__init__()
        out_ch = planes * self.expansion
        self.conv1 = conv_layer(in_ch, planes, 3, stride, 1)
        self.bn1 = norm_layer(planes)
        self.act1 = act_layer()
        self.conv2 = conv_layer(planes, out_ch, 3, 1, 1)
        self.bn2 = norm_layer(out_ch)
        self.downsample = downsample if downsample is not None else make_shortcut(
            in_ch, out_ch, stride, conv_layer, norm_layer)
        self.drop_path = drop_path if drop_path is not None else nn.Identity()
        self.residual = residual()
        self.act2 = act_layer()

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        shortcut = x if self.downsample is None else self.downsample(x)
        out = self.act1(self.bn1(self.conv1(x)))
        out = self.bn2(self.conv2(out))
        return self.act2(self.residual(self.drop_path(out), shortcut))


class Bottleneck(nn.Module):
    """ResNet bottleneck block (expansion 4) from layer factories (``docs/method.md`` §6.1).

    ``y = act(residual(bn3(conv3(core(act(bn1(conv1(x)))))), shortcut(x)))``: 1×1 reduce, 3×3 core (strided),
    1×1 expand to ``4·planes``.

    Args:
        in_ch, planes, stride: as in :class:`BasicBlock`; the output has ``4·planes`` channels.
        conv_layer, norm_layer, act_layer, residual: factories (module docstring).
        core_layer: ``core_layer(planes, planes, stride=stride) -> module`` for the 3×3 stage; default
            :class:`ConvNormAct` with the block's factories.
        downsample: an explicit shortcut module; default: :func:`make_shortcut`.
        drop_path: applied to the branch before the residual (stochastic depth); default: none.
    """

    expansion = 4

    def __init__(
        self, in_ch: int, planes: int, stride: int = 1, *, conv_layer: ConvFactory = conv2d,
        norm_layer: NormFactory = nn.BatchNorm2d, act_layer: ActFactory = relu, residual: ResidualFactory = Add,
        core_layer: Callable[[int, int, int], nn.Module] | None = None, downsample: nn.Module | None = None,
        drop_path: nn.Module | None = None,
    ) -> None:
        super().__init__()
        out_ch = planes * self.expansion
        self.conv1 = conv_layer(in_ch, planes, 1, 1, 0)
        self.bn1 = norm_layer(planes)
        self.act1 = act_layer()
        if core_layer is None:
            core_layer = partial(ConvNormAct, kernel_size=3, conv_layer=conv_layer, norm_layer=norm_layer,
                                 act_layer=act_layer)
        self.core = core_layer(planes, planes, stride=stride)
        self.conv3 = conv_layer(planes, out_ch, 1, 1, 0)
        self.bn3 = norm_layer(out_ch)
        self.downsample = downsample if downsample is not None else make_shortcut(
            in_ch, out_ch, stride, conv_layer, norm_layer)
        self.drop_path = drop_path if drop_path is not None else nn.Identity()
        self.residual = residual()
        self.act3 = act_layer()

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        shortcut = x if self.downsample is None else self.downsample(x)
        out = self.act1(self.bn1(self.conv1(x)))
        out = self.core(out)
        out = self.bn3(self.conv3(out))
        return self.act3(self.residual(self.drop_path(out), shortcut))


def _lorentz_core_factories(
    manifold: Lorentz, conv_impl: str, bn_variant: str, rescale: bool, bias: bool
) -> dict[str, Any]:
    return dict(
        conv_layer=partial(LorentzConv2d, manifold, impl=conv_impl, rescale=rescale, bias=bias),
        norm_layer=partial(LorentzBatchNorm2d, manifold, variant=bn_variant, rescale=rescale),
        act_layer=partial(LorentzActivation, manifold),
        pre_layer=partial(ToLorentz, manifold, mode="rescale" if rescale else "add_time", dim=1),
        post_layer=partial(FromLorentz, manifold, mode="logmap0", dim=1),
    )


class LorentzCoreBottleneck(Bottleneck):
    r"""Bottleneck with a hyperbolic 3×3 core (``docs/method.md`` §5.7, [A] ``LorentzCoreBottleneck``).

    Euclidean ``(B, C_in, H, W)`` in, Euclidean ``(B, 4·planes, H/s, W/s)`` out; only the core is hyperbolic:

    1. ``conv1x1 → BatchNorm2d → ReLU`` (Euclidean, ``conv_layer``/``norm_layer``/``act_layer``);
    2. lift to :math:`\mathbb{H}_k` (``ToLorentz``: maximum distance rescaling of the channel vector, then the
       vector is used as space coordinates and time is :math:`\sqrt{\|x_s\|^2+k}`, §5.6);
    3. ``LorentzConv2d 3×3/stride → LorentzBatchNorm2d → LorentzActivation`` on ``(B, 1+planes, H, W)``;
    4. back to Euclidean with :math:`\log_0` (time dropped);
    5. ``conv1x1 → BatchNorm2d`` to ``4·planes``; Euclidean shortcut; ``+``; ReLU.

    All cores of a network usually share one :class:`~lorentzcv.geometry.Lorentz` (curvature ``K = -1/k``).
    The hyperbolic layers are float32 islands under autocast.

    Args:
        in_ch, planes, stride: as in :class:`Bottleneck`.
        manifold: the core's manifold.
        conv_impl: ``"efficient"`` (conv on the space channels, default) or ``"unfold"`` (HCNN) for the core conv.
        bn_variant: ``"hcnn"`` or ``"rhl"`` for the core batch norm.
        rescale: maximum distance rescaling in the lift, conv and batch norm.
        bias: bias of the core conv.
        core_factories: override any of the core factories (``conv_layer``, ``norm_layer``, ``act_layer``,
            ``pre_layer``, ``post_layer``) of :class:`ConvNormAct`.
        **kwargs: the Euclidean factories ``conv_layer``, ``norm_layer``, ``act_layer``, ``residual`` and
            ``downsample`` of :class:`Bottleneck`.
    """

    def __init__(
        self, in_ch: int, planes: int, stride: int = 1, *, manifold: Lorentz, conv_impl: str = "efficient",
        bn_variant: str = "hcnn", rescale: bool = True, bias: bool = False,
        core_factories: dict[str, Any] | None = None, **kwargs: Any,
    ) -> None:
        factories = _lorentz_core_factories(manifold, conv_impl, bn_variant, rescale, bias)
        factories.update(core_factories or {})
        super().__init__(in_ch, planes, stride, core_layer=partial(ConvNormAct, kernel_size=3, **factories), **kwargs)
