r"""ResNets: Euclidean, hybrid (Euclidean encoder + Lorentz MLR) and fully hyperbolic (HCNN, HECNN+).

``docs/method.md`` §6 (models), §5.6–5.7 (blocks), §8 (protocol); ``docs/design.md`` §2, §4.7. Every variant is one
:class:`ResNet` assembled from the same blocks (:mod:`lorentzcv.nn.blocks`) with different **layer factories**;
the geometry is chosen by which factories a builder passes, never by ``if manifold is …`` branches.

================  =====================================================================================
name              composition
================  =====================================================================================
resnet18/50       Euclidean ResNet (CIFAR stem for ``img_size <= 64``), linear classifier.
hybrid_resnet*    Euclidean encoder → global average pool → ``ToLorentz`` (maximum distance rescaling,
                  time from space; ``lift="clip_expmap"`` = HCNN's clipped exp0) → ``LorentzMLR`` on the
                  decoder's own learnable manifold.
hcnn_resnet18     Fully hyperbolic HCNN baseline: Lorentz stem, Lorentz basic blocks with the unfold conv
                  (``conv_impl="unfold"``), HCNN batch norm, space-add residual, centroid pooling, Lorentz MLR;
                  one manifold, fixed ``k = 1``, no rescaling, conv bias.
hecnn_resnet18    Fully hyperbolic HECNN+: efficient conv, maximum distance rescaling with ``s = 2``
                  (``docs/design.md`` §4.7) in conv/BN/residual, learnable curvature, separate encoder and decoder
                  manifolds joined by a Lorentz→Lorentz ``ManifoldSwap`` before the MLR.
hecnn_resnet50    Euclidean stem and shortcuts, ``LorentzCoreBottleneck`` stages (hyperbolic 3×3 cores on one
                  encoder manifold, §5.7), Euclidean pool → ``ToLorentz`` → ``LorentzMLR`` on the decoder
                  manifold.
================  =====================================================================================

Curvature convention: every :class:`~lorentzcv.geometry.Lorentz` holds ``k > 0``; :meth:`ResNet.curvatures`
reports the sectional curvatures ``K = -1/k``. The manifolds are registered on the model first
(``encoder_manifold``/``decoder_manifold``, or ``manifold`` when shared), so :meth:`ResNet.manifolds` lists them
under those names.

Ablation keywords of the hyperbolic builders (the paper's Table 5): ``learn_k``, ``k_init``,
``separate_decoder``, ``rescale``, ``rescale_s``, ``conv_impl`` (``"efficient"``/``"unfold"``), ``bn_variant``
(``"hcnn"``/``"rhl"``), ``bias``. ``hcnn_resnet18`` and ``hecnn_resnet18`` are the same builder with different
defaults, so ``create_model("hecnn_resnet18", conv_impl="unfold", rescale=False, learn_k=False,
separate_decoder=False, bias=True)`` is the HCNN baseline.

timm API: ``forward_features``/``forward_head``/``forward_intermediates``/``prune_intermediate_layers``,
``feature_info``, ``get_classifier``/``reset_classifier``, ``drop_rate``/``drop_path_rate`` keywords; every
variant is also a timm model after ``import lorentzcv`` (:mod:`lorentzcv.models._timm`).

Mixed precision: under ``torch.autocast`` the Euclidean convs run in the autocast dtype and every hyperbolic
kernel (lift, Lorentz conv time/rescaling, batch norm, pooling, swap, MLR) is a float32 island, so hybrid and
hyperbolic models train in bfloat16/float16 without dtype errors or NaN.
"""

from __future__ import annotations

import contextlib
from collections.abc import Callable, Sequence
from functools import partial
from typing import Any

import torch
from torch import nn

from ..geometry import Lorentz, RescaleConfig, named_manifolds
from ..nn.activation import LorentzActivation, LorentzResidual
from ..nn.blocks import Add, BasicBlock, Bottleneck, ConvNormAct, LorentzCoreBottleneck, conv2d, relu
from ..nn.bridge import ManifoldSwap, ToLorentz
from ..nn.conv import LorentzConv2d
from ..nn.mlr import LorentzMLR
from ..nn.norm import LorentzBatchNorm2d
from ..nn.pooling import LorentzGlobalAvgPool2d
from ._drop import DropFactory, euclidean_drop_layers, lorentz_drop_layers
from ._registry import register_model

__all__ = [
    "ResNet", "resnet18", "resnet50", "hybrid_resnet18", "hybrid_resnet50", "hcnn_resnet18", "hecnn_resnet18",
    "hecnn_resnet50", "euclidean_factories", "lorentz_factories",
]

HeadFactory = Callable[[int, int], nn.Module]
_CONV_IMPLS = ("efficient", "unfold")
_BN_VARIANTS = ("hcnn", "rhl")
_LIFTS = ("rescale", "clip_expmap")


# ------------------------------------------------------------------------------------------------------------
# the model
# ------------------------------------------------------------------------------------------------------------
class ResNet(nn.Module):
    """A ResNet assembled from parts: ``stem → layer1..layerN → global_pool → neck → fc``.

    The parts decide the geometry; the model only wires them. Built by the registered entrypoints (use
    :func:`lorentzcv.models.create_model`), not usually by hand.

    Args:
        block: block class (:class:`~lorentzcv.nn.blocks.BasicBlock`, ``Bottleneck``, ``LorentzCoreBottleneck``)
            with an ``expansion`` attribute, called as ``block(in_ch, planes, stride, **block_kwargs)``.
        layers: blocks per stage (e.g. ``(2, 2, 2, 2)``); stage ``i`` has ``width·2^i`` planes, stride 1 for the
            first stage and 2 after.
        stem: the stem module, ``(B, in_chans, H, W) →`` ``width`` channels.
        block_kwargs: the factories passed to every block.
        global_pool: ``(B, C, H, W) → (B, C)`` (Euclidean) or ``(B, 1+C, H, W) → (B, 1+C)`` (Lorentz).
        neck: applied to the pooled features before the classifier (a lift/swap to the decoder manifold, or
            ``nn.Identity``).
        head_layer: ``head_layer(num_features, num_classes) -> module``, the classifier factory (kept for
            :meth:`reset_classifier`).
        num_classes: classifier outputs; 0 = no classifier (``forward`` returns the pooled features).
        width: base channels of the first stage.
        manifolds: named :class:`~lorentzcv.geometry.Lorentz` modules registered on the model before the other
            parts (so :meth:`manifolds` reports them under these names).
        drop_rate: dropout on the classifier input (timm's ``drop_rate``), built by ``head_drop_layer``.
        drop_path_rate: stochastic depth; block ``i`` of ``n`` drops its residual branch with probability
            ``drop_path_rate·i/(n-1)`` (timm's linear rule), built by ``drop_path_layer``.
        drop_path_layer, head_drop_layer: ``factory(p) -> module`` (:mod:`._drop`: Euclidean ``DropPath``/
            ``nn.Dropout``, or their Lorentz space-coordinate versions); needed only when the rate is > 0.
        stem_reduction: spatial reduction of the stem (1, 2 or 4), for :attr:`feature_info`.
        feature_time: whether stem and stage outputs are Lorentz points with a time channel (``1+C``
            channels), for :attr:`feature_info`.

    Attributes:
        num_features: channels (space channels for Lorentz features) of the pooled features.
        feature_info: timm's feature metadata, one dict per feature index (0 = stem, ``i`` = ``layer{i}``):
            ``num_chs`` (channels of the returned tensor, time included for Lorentz maps), ``reduction``,
            ``module``.
    """

    def __init__(
        self, *, block: type[nn.Module], layers: Sequence[int], stem: nn.Module, block_kwargs: dict[str, Any],
        global_pool: nn.Module, neck: nn.Module, head_layer: HeadFactory, num_classes: int, width: int = 64,
        manifolds: dict[str, Lorentz] | None = None, drop_rate: float = 0.0, drop_path_rate: float = 0.0,
        drop_path_layer: DropFactory | None = None, head_drop_layer: DropFactory | None = None,
        stem_reduction: int = 1, feature_time: bool = False,
    ) -> None:
        super().__init__()
        if not layers or any(int(n) < 1 for n in layers):
            raise ValueError(f"layers must be a non-empty sequence of positive block counts, got {layers!r}")
        if width < 1:
            raise ValueError(f"width (base channels) must be >= 1, got {width}")
        if num_classes < 0:
            raise ValueError(f"num_classes must be >= 0 (0 = no classifier), got {num_classes}")
        for what, rate in (("drop_rate", drop_rate), ("drop_path_rate", drop_path_rate)):
            if not 0.0 <= rate < 1.0:
                raise ValueError(f"{what} must be in [0, 1), got {rate}")
        for name, m in (manifolds or {}).items():
            self.add_module(name, m)
        self.stem = stem
        expansion = getattr(block, "expansion", 1)
        in_ch = width
        tc = int(feature_time)
        self.feature_info: list[dict[str, Any]] = [dict(num_chs=width + tc, reduction=stem_reduction, module="stem")]
        self.stage_names: list[str] = []
        total, idx, reduction = sum(int(n) for n in layers), 0, stem_reduction
        for i, n in enumerate(layers):
            planes = width * 2**i
            blocks = []
            for j in range(int(n)):
                stride = 2 if (i > 0 and j == 0) else 1
                kw = dict(block_kwargs)
                dpr = drop_path_rate * idx / max(total - 1, 1)
                if dpr > 0:
                    kw["drop_path"] = _required(drop_path_layer, "drop_path_layer")(dpr)
                blocks.append(block(in_ch, planes, stride, **kw))
                in_ch, idx, reduction = planes * expansion, idx + 1, reduction * stride
            self.add_module(f"layer{i + 1}", nn.Sequential(*blocks))
            self.stage_names.append(f"layer{i + 1}")
            self.feature_info.append(dict(num_chs=in_ch + tc, reduction=reduction, module=f"layer{i + 1}"))
        self.num_features = in_ch
        self.global_pool = global_pool
        self.neck = neck
        self.drop_rate = float(drop_rate)
        self.head_drop = _required(head_drop_layer, "head_drop_layer")(drop_rate) if drop_rate > 0 else nn.Identity()
        self._head_layer = head_layer
        self.num_classes = num_classes
        self.fc = head_layer(self.num_features, num_classes) if num_classes > 0 else nn.Identity()

    # --- timm-like API ------------------------------------------------------------------------------
    def forward_features(self, x: torch.Tensor) -> torch.Tensor:
        """Stem and stages: ``(B, in_chans, H, W)`` → the last feature map (``(B, 1+C, h, w)`` if hyperbolic)."""
        x = self.stem(x)
        for name in self.stage_names:
            x = getattr(self, name)(x)
        return x

    def forward_head(self, x: torch.Tensor, pre_logits: bool = False) -> torch.Tensor:
        """Pool, map to the decoder (``neck``), dropout (``drop_rate``, training only), classify.
        ``pre_logits=True`` returns the classifier input (``(B, C)`` Euclidean, or ``(B, 1+C)`` points on the
        decoder manifold)."""
        x = self.head_drop(self.neck(self.global_pool(x)))
        return x if pre_logits else self.fc(x)

    def forward_intermediates(
        self, x: torch.Tensor, indices: int | Sequence[int] | None = None, norm: bool = False,
        stop_early: bool = False, output_fmt: str = "NCHW", intermediates_only: bool = False,
    ) -> list[torch.Tensor] | tuple[torch.Tensor, list[torch.Tensor]]:
        """timm's feature API: the outputs of the stem (index 0) and of the stages (``i`` = ``layer{i}``).

        Args:
            x: ``(B, in_chans, H, W)`` images.
            indices: ``None`` = all, an int ``n`` = the last ``n``, a sequence = those indices (negative ones
                count from the end).
            norm: accepted for timm compatibility (the model has no final norm).
            stop_early: stop after the last requested stage.
            output_fmt: only ``"NCHW"``.
            intermediates_only: return only the list of intermediates.

        Returns:
            The intermediates (``(B, C, h, w)``, or ``(B, 1+C, h, w)`` Lorentz points with the time at channel 0
            for hyperbolic stages, see :attr:`feature_info`), or ``(last feature map, intermediates)``.
        """
        from timm.models._features import feature_take_indices

        if output_fmt != "NCHW":
            raise ValueError(f"output_fmt must be 'NCHW', got {output_fmt!r}")
        take, max_index = feature_take_indices(len(self.stage_names) + 1, indices)
        out = []
        x = self.stem(x)
        if 0 in take:
            out.append(x)
        names = self.stage_names[:max_index] if stop_early else self.stage_names
        for i, name in enumerate(names, start=1):
            x = getattr(self, name)(x)
            if i in take:
                out.append(x)
        return out if intermediates_only else (x, out)

    def prune_intermediate_layers(self, indices: int | Sequence[int] = 1, prune_norm: bool = False,
                                  prune_head: bool = True) -> list[int]:
        """Drop the stages after the last requested feature index (and the classifier when ``prune_head``);
        returns the absolute indices (timm's feature API)."""
        from timm.models._features import feature_take_indices

        take, max_index = feature_take_indices(len(self.stage_names) + 1, indices)
        for name in self.stage_names[max_index:]:
            delattr(self, name)
        self.stage_names = self.stage_names[:max_index]
        self.feature_info = self.feature_info[:max_index + 1]
        if prune_head:
            self.reset_classifier(0)
        return take

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if torch.compiler.is_compiling() or torch.jit.is_tracing() or not torch.is_grad_enabled():
            return self.forward_head(self.forward_features(x))
        with contextlib.ExitStack() as stack:  # one gradient sum per learnable k (Lorentz.shared_gradients)
            for manifold in self.manifolds().values():
                stack.enter_context(manifold.shared_gradients())
            return self.forward_head(self.forward_features(x))

    def get_classifier(self) -> nn.Module:
        """The classifier module (``nn.Linear``, ``LorentzMLR`` or ``nn.Identity`` when ``num_classes=0``)."""
        return self.fc

    def reset_classifier(self, num_classes: int) -> None:
        """Replace the classifier by a freshly initialised one with ``num_classes`` outputs (0 = none)."""
        if num_classes < 0:
            raise ValueError(f"num_classes must be >= 0 (0 = no classifier), got {num_classes}")
        self.num_classes = num_classes
        ref = next(self.parameters())
        fc = self._head_layer(self.num_features, num_classes) if num_classes > 0 else nn.Identity()
        self.fc = fc.to(device=ref.device, dtype=ref.dtype)

    def manifolds(self) -> dict[str, Lorentz]:
        """Every distinct :class:`~lorentzcv.geometry.Lorentz` of the model by name (empty if Euclidean)."""
        return named_manifolds(self)

    def curvatures(self) -> dict[str, float]:
        """Sectional curvature ``K = -1/k`` of every manifold, by name (for logging)."""
        return {name: float(m.curvature.detach()) for name, m in self.manifolds().items()}


def _required(factory: DropFactory | None, name: str) -> DropFactory:
    if factory is None:
        raise ValueError(f"a positive drop rate needs {name}")
    return factory


# ------------------------------------------------------------------------------------------------------------
# factories and parts
# ------------------------------------------------------------------------------------------------------------
def euclidean_factories() -> dict[str, Any]:
    """Block factories of the Euclidean ResNet: bias-free conv, ``BatchNorm2d``, ReLU, addition."""
    return dict(conv_layer=conv2d, norm_layer=nn.BatchNorm2d, act_layer=relu, residual=Add)


def lorentz_factories(
    manifold: Lorentz, *, conv_impl: str = "efficient", bn_variant: str = "hcnn", rescale: bool = True,
    bias: bool = False,
) -> dict[str, Any]:
    """Block factories of a fully hyperbolic ResNet on ``manifold`` (``functools.partial`` of the Lorentz layers).

    ``rescale`` switches maximum distance rescaling (the manifold's :class:`RescaleConfig`) in the conv, the
    batch norm and the residual together.
    """
    return dict(
        conv_layer=partial(LorentzConv2d, manifold, impl=conv_impl, rescale=rescale, bias=bias),
        norm_layer=partial(LorentzBatchNorm2d, manifold, variant=bn_variant, rescale=rescale),
        act_layer=partial(LorentzActivation, manifold),
        residual=partial(LorentzResidual, manifold, rescale=rescale),
    )


def _small_input(img_size: int | Sequence[int]) -> bool:
    size = max(img_size) if isinstance(img_size, (tuple, list)) else int(img_size)
    if size < 1:
        raise ValueError(f"img_size must be positive, got {img_size!r}")
    return size <= 64


def _stem(in_chans: int, width: int, img_size: int | Sequence[int], factories: dict[str, Any], *,
          max_pool: bool, pre_layer: Callable[[], nn.Module] | None = None) -> nn.Module:
    """CIFAR/Tiny-ImageNet stem (``img_size <= 64``: 3×3 stride 1, no pool) or ImageNet stem (7×7 stride 2,
    + 3×3/2 max-pool when ``max_pool``), ``docs/method.md`` §6.1."""
    kw = {k: factories[k] for k in ("conv_layer", "norm_layer", "act_layer")}
    if _small_input(img_size):
        return ConvNormAct(in_chans, width, 3, 1, 1, pre_layer=pre_layer, **kw)
    stem = ConvNormAct(in_chans, width, 7, 2, 3, pre_layer=pre_layer, **kw)
    return nn.Sequential(stem, nn.MaxPool2d(3, 2, 1)) if max_pool else stem


def _stem_reduction(img_size: int | Sequence[int], max_pool: bool) -> int:
    """Spatial reduction of :func:`_stem`: 1 (small inputs), 2 (7×7/2), 4 (7×7/2 + 3×3/2 max-pool)."""
    return 1 if _small_input(img_size) else (4 if max_pool else 2)


def _euclidean_pool() -> nn.Module:
    return nn.Sequential(nn.AdaptiveAvgPool2d(1), nn.Flatten(1))


def _manifold(k_init: float, learn_k: bool, rescale: bool, rescale_s: float) -> Lorentz:
    return Lorentz(k_init, learnable=learn_k, rescale=RescaleConfig(s=rescale_s, enabled=rescale))


def _check_choice(name: str, value: str, choices: Sequence[str]) -> None:
    if value not in choices:
        raise ValueError(f"{name} must be one of {', '.join(map(repr, choices))}, got {value!r}")


def _decoder_manifolds(
    enc: Lorentz, separate_decoder: bool, k_init: float, learn_k: bool, rescale: bool, rescale_s: float,
) -> tuple[dict[str, Lorentz], Lorentz]:
    if not separate_decoder:
        return {"manifold": enc}, enc
    dec = _manifold(k_init, learn_k, rescale, rescale_s)
    return {"encoder_manifold": enc, "decoder_manifold": dec}, dec


def _tag(model: ResNet, name: str, num_classes: int, in_chans: int, img_size: Any) -> ResNet:
    model.default_cfg = dict(architecture=name, num_classes=num_classes, in_chans=in_chans, img_size=img_size)
    return model


# ------------------------------------------------------------------------------------------------------------
# builders
# ------------------------------------------------------------------------------------------------------------
def _euclidean_resnet(
    name: str, block: type[nn.Module], default_layers: Sequence[int], *, num_classes: int, in_chans: int,
    img_size: Any, width: int, layers: Sequence[int] | None, drop_rate: float = 0.0, drop_path_rate: float = 0.0,
) -> ResNet:
    f = euclidean_factories()
    model = ResNet(
        block=block, layers=default_layers if layers is None else layers, width=width, block_kwargs=f,
        stem=_stem(in_chans, width, img_size, f, max_pool=True), global_pool=_euclidean_pool(), neck=nn.Identity(),
        head_layer=nn.Linear, num_classes=num_classes, drop_rate=drop_rate, drop_path_rate=drop_path_rate,
        stem_reduction=_stem_reduction(img_size, max_pool=True), **euclidean_drop_layers(),
    )
    return _tag(model, name, num_classes, in_chans, img_size)


def _hybrid_resnet(
    name: str, block: type[nn.Module], default_layers: Sequence[int], *, num_classes: int, in_chans: int,
    img_size: Any, width: int, layers: Sequence[int] | None, learn_k: bool, k_init: float, rescale: bool,
    rescale_s: float, lift: str, clip_r: float, drop_rate: float = 0.0, drop_path_rate: float = 0.0,
) -> ResNet:
    _check_choice("lift", lift, _LIFTS)
    dec = _manifold(k_init, learn_k, rescale, rescale_s)
    f = euclidean_factories()
    model = ResNet(
        block=block, layers=default_layers if layers is None else layers, width=width, block_kwargs=f,
        stem=_stem(in_chans, width, img_size, f, max_pool=True), global_pool=_euclidean_pool(),
        neck=ToLorentz(dec, mode=lift if rescale or lift != "rescale" else "add_time", clip_r=clip_r, dim=1),
        head_layer=partial(LorentzMLR, dec), num_classes=num_classes, manifolds={"decoder_manifold": dec},
        drop_rate=drop_rate, drop_path_rate=drop_path_rate, stem_reduction=_stem_reduction(img_size, max_pool=True),
        **lorentz_drop_layers(None, dec),
    )
    return _tag(model, name, num_classes, in_chans, img_size)


def _lorentz_resnet(
    name: str, block: type[nn.Module], default_layers: Sequence[int], *, num_classes: int, in_chans: int,
    img_size: Any, width: int, layers: Sequence[int] | None, learn_k: bool, k_init: float, separate_decoder: bool,
    rescale: bool, rescale_s: float, conv_impl: str, bn_variant: str, bias: bool, drop_rate: float = 0.0,
    drop_path_rate: float = 0.0,
) -> ResNet:
    _check_choice("conv_impl", conv_impl, _CONV_IMPLS)
    _check_choice("bn_variant", bn_variant, _BN_VARIANTS)
    enc = _manifold(k_init, learn_k, rescale, rescale_s)
    manifolds, dec = _decoder_manifolds(enc, separate_decoder, k_init, learn_k, rescale, rescale_s)
    f = lorentz_factories(enc, conv_impl=conv_impl, bn_variant=bn_variant, rescale=rescale, bias=bias)
    # input lift (§5.6): pixel vectors as space coordinates, time = sqrt(|rgb|^2 + k)
    lift = partial(ToLorentz, enc, mode="add_time", dim=1)
    model = ResNet(
        block=block, layers=default_layers if layers is None else layers, width=width, block_kwargs=f,
        stem=_stem(in_chans, width, img_size, f, max_pool=False, pre_layer=lift),
        global_pool=LorentzGlobalAvgPool2d(enc),
        neck=ManifoldSwap(enc, dec, rescale=rescale, dim=-1) if separate_decoder else nn.Identity(),
        head_layer=partial(LorentzMLR, dec), num_classes=num_classes, manifolds=manifolds,
        drop_rate=drop_rate, drop_path_rate=drop_path_rate, stem_reduction=_stem_reduction(img_size, max_pool=False),
        feature_time=True, **lorentz_drop_layers(enc, dec),
    )
    return _tag(model, name, num_classes, in_chans, img_size)


def _lorentz_core_resnet(
    name: str, default_layers: Sequence[int], *, num_classes: int, in_chans: int, img_size: Any, width: int,
    layers: Sequence[int] | None, learn_k: bool, k_init: float, separate_decoder: bool, rescale: bool,
    rescale_s: float, conv_impl: str, bn_variant: str, bias: bool, drop_rate: float = 0.0,
    drop_path_rate: float = 0.0,
) -> ResNet:
    _check_choice("conv_impl", conv_impl, _CONV_IMPLS)
    _check_choice("bn_variant", bn_variant, _BN_VARIANTS)
    enc = _manifold(k_init, learn_k, rescale, rescale_s)
    manifolds, dec = _decoder_manifolds(enc, separate_decoder, k_init, learn_k, rescale, rescale_s)
    f = euclidean_factories()
    block_kwargs = dict(f, manifold=enc, conv_impl=conv_impl, bn_variant=bn_variant, rescale=rescale, bias=bias)
    model = ResNet(
        block=LorentzCoreBottleneck, layers=default_layers if layers is None else layers, width=width, block_kwargs=block_kwargs,
        stem=_stem(in_chans, width, img_size, f, max_pool=True), global_pool=_euclidean_pool(),
        neck=ToLorentz(dec, mode="rescale" if rescale else "add_time", dim=1),
        head_layer=partial(LorentzMLR, dec), num_classes=num_classes, manifolds=manifolds,
        drop_rate=drop_rate, drop_path_rate=drop_path_rate, stem_reduction=_stem_reduction(img_size, max_pool=True),
        **lorentz_drop_layers(None, dec),
    )
    return _tag(model, name, num_classes, in_chans, img_size)


# ------------------------------------------------------------------------------------------------------------
# registered entrypoints
# ------------------------------------------------------------------------------------------------------------
@register_model
def resnet18(
    *, num_classes: int = 1000, in_chans: int = 3, img_size: int | tuple[int, int] = 224, width: int = 64,
    layers: Sequence[int] | None = None,
    drop_rate: float = 0.0, drop_path_rate: float = 0.0,
) -> ResNet:
    """Euclidean ResNet-18 (basic blocks ``[2, 2, 2, 2]``, widths ``width·(1, 2, 4, 8)``, linear classifier;
    ``drop_rate``/``drop_path_rate`` as timm's). In timm: ``lorentzcv_resnet18`` (timm's ``resnet18`` is timm's)."""
    return _euclidean_resnet("resnet18", BasicBlock, (2, 2, 2, 2), num_classes=num_classes, in_chans=in_chans,
                             img_size=img_size, width=width, layers=layers,
        drop_rate=drop_rate, drop_path_rate=drop_path_rate)


@register_model
def resnet50(
    *, num_classes: int = 1000, in_chans: int = 3, img_size: int | tuple[int, int] = 224, width: int = 64,
    layers: Sequence[int] | None = None,
    drop_rate: float = 0.0, drop_path_rate: float = 0.0,
) -> ResNet:
    """Euclidean ResNet-50 (bottlenecks ``[3, 4, 6, 3]``, expansion 4, linear classifier; ``drop_rate``/
    ``drop_path_rate`` as timm's). In timm: ``lorentzcv_resnet50`` (timm's ``resnet50`` is timm's)."""
    return _euclidean_resnet("resnet50", Bottleneck, (3, 4, 6, 3), num_classes=num_classes, in_chans=in_chans,
                             img_size=img_size, width=width, layers=layers,
        drop_rate=drop_rate, drop_path_rate=drop_path_rate)


_HYBRID_DOC = """

    Args:
        width, layers: base channels and blocks per stage (small values for tests and CPU demos).
        learn_k: learnable decoder curvature (default True). k_init: initial ``k`` (``K = -1/k``).
        rescale, rescale_s: maximum distance rescaling in the lift and its softness ``s`` (2 for classification).
        lift: ``"rescale"`` ([A]: rescale the feature vector, use it as space coordinates) or ``"clip_expmap"``
            ([H]: clip to norm ``clip_r`` (1 for CIFAR, 4 for Tiny-ImageNet), then ``exp_0``).
        drop_rate, drop_path_rate: dropout of the decoder points (space coordinates, time recomputed) and
            stochastic depth of the Euclidean blocks.
    """


@register_model
def hybrid_resnet18(
    *, num_classes: int = 1000, in_chans: int = 3, img_size: int | tuple[int, int] = 224, width: int = 64,
    layers: Sequence[int] | None = None, learn_k: bool = True, k_init: float = 1.0, rescale: bool = True,
    rescale_s: float = 2.0, lift: str = "rescale", clip_r: float = 1.0,
    drop_rate: float = 0.0, drop_path_rate: float = 0.0,
) -> ResNet:
    return _hybrid_resnet("hybrid_resnet18", BasicBlock, (2, 2, 2, 2), num_classes=num_classes, in_chans=in_chans,
                          img_size=img_size, width=width, layers=layers, learn_k=learn_k, k_init=k_init,
                          rescale=rescale, rescale_s=rescale_s, lift=lift, clip_r=clip_r,
        drop_rate=drop_rate, drop_path_rate=drop_path_rate)


hybrid_resnet18.__doc__ = "Hybrid ResNet-18: Euclidean encoder, Lorentz MLR decoder on its own manifold." + _HYBRID_DOC


@register_model
def hybrid_resnet50(
    *, num_classes: int = 1000, in_chans: int = 3, img_size: int | tuple[int, int] = 224, width: int = 64,
    layers: Sequence[int] | None = None, learn_k: bool = True, k_init: float = 1.0, rescale: bool = True,
    rescale_s: float = 2.0, lift: str = "rescale", clip_r: float = 1.0,
    drop_rate: float = 0.0, drop_path_rate: float = 0.0,
) -> ResNet:
    return _hybrid_resnet("hybrid_resnet50", Bottleneck, (3, 4, 6, 3), num_classes=num_classes, in_chans=in_chans,
                          img_size=img_size, width=width, layers=layers, learn_k=learn_k, k_init=k_init,
                          rescale=rescale, rescale_s=rescale_s, lift=lift, clip_r=clip_r,
        drop_rate=drop_rate, drop_path_rate=drop_path_rate)


hybrid_resnet50.__doc__ = "Hybrid ResNet-50: Euclidean encoder, Lorentz MLR decoder on its own manifold." + _HYBRID_DOC

_LORENTZ_DOC = """

    Args:
        width, layers: base channels and blocks per stage (small values for tests and CPU demos).
        learn_k: learnable curvatures. k_init: initial ``k`` of every manifold (``K = -1/k``).
        separate_decoder: separate encoder and decoder manifolds (each with its own ``k``) joined by a
            ``ManifoldSwap``; ``False`` shares one manifold.
        rescale, rescale_s: maximum distance rescaling (conv, batch norm, residual, swap/lift) and its softness.
        conv_impl: ``"efficient"`` (conv on space channels) or ``"unfold"`` (HCNN unfold + LFC).
        bn_variant: ``"hcnn"`` or ``"rhl"`` (:class:`~lorentzcv.nn.LorentzBatchNorm2d`).
        bias: bias of the Lorentz convs.
        drop_rate, drop_path_rate: classifier-input dropout and stochastic depth (Lorentz space-coordinate
            versions on the hyperboloid, :mod:`lorentzcv.models._drop`).
    """


@register_model
def hcnn_resnet18(
    *, num_classes: int = 1000, in_chans: int = 3, img_size: int | tuple[int, int] = 224, width: int = 64,
    layers: Sequence[int] | None = None, learn_k: bool = False, k_init: float = 1.0, separate_decoder: bool = False,
    rescale: bool = False, rescale_s: float = 3.0, conv_impl: str = "unfold", bn_variant: str = "hcnn",
    bias: bool = True,
    drop_rate: float = 0.0, drop_path_rate: float = 0.0,
) -> ResNet:
    return _lorentz_resnet("hcnn_resnet18", BasicBlock, (2, 2, 2, 2), num_classes=num_classes, in_chans=in_chans,
                           img_size=img_size, width=width, layers=layers, learn_k=learn_k, k_init=k_init,
                           separate_decoder=separate_decoder, rescale=rescale, rescale_s=rescale_s,
                           conv_impl=conv_impl, bn_variant=bn_variant, bias=bias,
        drop_rate=drop_rate, drop_path_rate=drop_path_rate)


hcnn_resnet18.__doc__ = ("Fully hyperbolic HCNN ResNet-18 (Bdeir et al. 2024 baseline): unfold conv, HCNN batch "
                         "norm, one manifold with fixed k = 1, no rescaling." + _LORENTZ_DOC)


@register_model
def hecnn_resnet18(
    *, num_classes: int = 1000, in_chans: int = 3, img_size: int | tuple[int, int] = 224, width: int = 64,
    layers: Sequence[int] | None = None, learn_k: bool = True, k_init: float = 1.0, separate_decoder: bool = True,
    rescale: bool = True, rescale_s: float = 2.0, conv_impl: str = "efficient", bn_variant: str = "hcnn",
    bias: bool = False,
    drop_rate: float = 0.0, drop_path_rate: float = 0.0,
) -> ResNet:
    return _lorentz_resnet("hecnn_resnet18", BasicBlock, (2, 2, 2, 2), num_classes=num_classes, in_chans=in_chans,
                           img_size=img_size, width=width, layers=layers, learn_k=learn_k, k_init=k_init,
                           separate_decoder=separate_decoder, rescale=rescale, rescale_s=rescale_s,
                           conv_impl=conv_impl, bn_variant=bn_variant, bias=bias,
        drop_rate=drop_rate, drop_path_rate=drop_path_rate)


hecnn_resnet18.__doc__ = ("Fully hyperbolic HECNN+ ResNet-18: efficient conv, rescaling (s = 2), learnable "
                          "curvature, separate encoder/decoder manifolds." + _LORENTZ_DOC)


@register_model
def hecnn_resnet50(
    *, num_classes: int = 1000, in_chans: int = 3, img_size: int | tuple[int, int] = 224, width: int = 64,
    layers: Sequence[int] | None = None, learn_k: bool = True, k_init: float = 1.0, separate_decoder: bool = True,
    rescale: bool = True, rescale_s: float = 2.0, conv_impl: str = "efficient", bn_variant: str = "hcnn",
    bias: bool = False,
    drop_rate: float = 0.0, drop_path_rate: float = 0.0,
) -> ResNet:
    return _lorentz_core_resnet("hecnn_resnet50", (3, 4, 6, 3), num_classes=num_classes, in_chans=in_chans,
                                img_size=img_size, width=width, layers=layers, learn_k=learn_k, k_init=k_init,
                                separate_decoder=separate_decoder, rescale=rescale, rescale_s=rescale_s,
                                conv_impl=conv_impl, bn_variant=bn_variant, bias=bias,
        drop_rate=drop_rate, drop_path_rate=drop_path_rate)


hecnn_resnet50.__doc__ = ("HECNN+ ResNet-50 with Lorentz-Core bottlenecks (hyperbolic 3×3 cores, Euclidean stem "
                          "and shortcuts) and a Lorentz MLR decoder (``docs/method.md`` §5.7)." + _LORENTZ_DOC)
