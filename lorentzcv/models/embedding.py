r"""Metric-learning embedding models: backbones + Euclidean / Poincaré / Lorentz heads (``docs/method.md`` §7.1–7.3).

::

    from lorentzcv.models.embedding import create_embedding_model
    model = create_embedding_model("resnet50", "lorentz", 512, pretrained_path="~/weights/resnet50.pth")
    z = model(images)                       # (B, 1+512) points of model.manifold (k = 10, learnable)
    recall_at_k(z, labels, distance=model.distance())

**Backbones** (:func:`create_backbone`): any timm model (``resnet50`` → GAP+GMP summed, 2048-d, as HIER;
``deit_small_distilled_patch16_224``, ``vit_small_patch16_224``, DINO ``vit_small_patch16_224.dino`` (alias
``dino_vits16``) → CLS token, 384-d) and ``bninception`` (:class:`~lorentzcv.models.bninception.BNInception`,
1024-d, GAP+GMP). HIER's ResNet-50 used torchvision's ImageNet weights, timm tag ``resnet50.tv_in1k``.

**Pretrained weights offline.** ``pretrained_path`` loads a local checkpoint (timm:
``pretrained_cfg_overlay=dict(file=path)``; BN-Inception: a pretrainedmodels state_dict). ``pretrained=True``
without a path downloads through timm/Hugging Face when online; when ``HF_HUB_OFFLINE=1`` or the hub is not
reachable (a 3 s probe), only the local Hugging Face cache is tried (hub offline mode, no retries), and a
missing file fails at once with a ``FileNotFoundError`` that says to pass ``pretrained_path``.

**Heads** (``in_features → embedding_dim``, all ``LayerNorm(no affine) → Linear(orthogonal, bias 0) → map``):
:class:`EuclideanHead` (L2 normalisation), :class:`PoincareHead` (HIER's ``ToPoincare(c=0.1, clip_r=2.3)``),
:class:`LorentzHead` (a lift onto a learnable-curvature Lorentz manifold, ``k = 10`` ≙ HIER's ``c = 0.1``; with
``neck="lorentz"`` the paper's Lorentz linear layer + maximum distance rescaling instead of the Linear).
"""

from __future__ import annotations

import os
import socket
import threading
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from urllib.parse import urlparse

import torch
import torch.nn.functional as F
from torch import nn

from ..geometry import Lorentz, rescale_euclid
from ..geometry import math as lmath
from ..geometry.precision import no_autocast, upcast
from ..metric.distances import LorentzDistance, PoincareDistance
from ..metric.poincare import ToPoincare
from .bninception import BNInception

__all__ = [
    "create_backbone", "Backbone", "GlobalPool", "ConvNetSmall", "EuclideanHead", "PoincareHead", "LorentzHead",
    "EmbeddingModel",
    "create_embedding_model", "load_bninception_checkpoint", "hub_offline", "BACKBONE_ALIASES",
    "EMBEDDING_ENTRYPOINTS",
]

BACKBONE_ALIASES = {
    "dino_vits16": "vit_small_patch16_224.dino",
    "dino_vits8": "vit_small_patch8_224.dino",
    "dino_vitb16": "vit_base_patch16_224.dino",
}
"""torch.hub DINO names (HIER's ``--model dino_vits16``) → timm names."""


# ------------------------------------------------------------------------------------------------ offline logic
def _truthy(v: str | None) -> bool:
    return v is not None and v.strip().lower() in ("1", "true", "yes", "on")


def _hub_reachable(url: str, timeout: float) -> bool:
    """Whether a TCP connection to ``url``'s host can be opened within ``timeout`` s (never blocks longer)."""
    parsed = urlparse(url)
    host, port = parsed.hostname or "huggingface.co", parsed.port or (80 if parsed.scheme == "http" else 443)
    result: list[bool] = []

    def probe() -> None:
        try:
            socket.create_connection((host, port), timeout=timeout).close()
            result.append(True)
        except OSError:
            result.append(False)

    t = threading.Thread(target=probe, daemon=True)
    t.start()
    t.join(timeout)
    return bool(result) and result[0]


def hub_offline(timeout: float = 3.0) -> bool:
    """True when ``HF_HUB_OFFLINE`` is set, or no proxy is configured and the Hugging Face hub is unreachable."""
    import huggingface_hub.constants as hf_constants

    if _truthy(os.environ.get("HF_HUB_OFFLINE")) or hf_constants.HF_HUB_OFFLINE:
        return True
    if any(os.environ.get(v) for v in ("HTTPS_PROXY", "https_proxy", "ALL_PROXY", "all_proxy")):
        return False  # cannot probe through a proxy cheaply; let the hub client try
    return not _hub_reachable(hf_constants.ENDPOINT, timeout)


@contextmanager
def _hf_offline_mode(enabled: bool) -> Iterator[None]:
    """Temporarily put huggingface_hub in offline mode (it reads ``HF_HUB_OFFLINE`` only at import)."""
    import huggingface_hub.constants as hf_constants

    old = hf_constants.HF_HUB_OFFLINE
    if enabled:
        hf_constants.HF_HUB_OFFLINE = True
    try:
        yield
    finally:
        hf_constants.HF_HUB_OFFLINE = old


def _offline_error(name: str, why: str) -> FileNotFoundError:
    return FileNotFoundError(
        f"pretrained weights for {name!r} are not available: {why}. Download the checkpoint on a machine with "
        f"network access and pass its path, e.g. create_backbone({name!r}, pretrained_path='/path/to/weights.pth') "
        "(.pth or .safetensors), or use pretrained=False."
    )


def _checked_path(path: str | os.PathLike) -> Path:
    p = Path(path).expanduser()
    if not p.is_file():
        raise FileNotFoundError(f"pretrained_path {str(p)!r} does not exist or is not a file")
    return p


def _create_timm(name: str, pretrained: bool, pretrained_path, **kwargs) -> nn.Module:
    import timm

    if pretrained_path is not None:
        path = _checked_path(pretrained_path)
        return timm.create_model(name, pretrained=True, pretrained_cfg_overlay=dict(file=str(path)), **kwargs)
    if not pretrained:
        return timm.create_model(name, pretrained=False, **kwargs)
    offline = hub_offline()
    try:
        with _hf_offline_mode(offline):
            return timm.create_model(name, pretrained=True, **kwargs)
    except Exception as e:  # hub / cache / URL errors (LocalEntryNotFoundError, OSError, URLError, …)
        if offline:
            why = ("HF_HUB_OFFLINE=1 or the Hugging Face hub is unreachable, and the weights are not in the local "
                   "Hugging Face cache")
            raise _offline_error(name, why) from e
        raise


def load_bninception_checkpoint(model: BNInception, path: str | os.PathLike) -> BNInception:
    """Load a pretrainedmodels-format BN-Inception checkpoint (``bn_inception-239d2248.pth``) into ``model``.

    Accepts a bare state_dict or one wrapped under ``"state_dict"``/``"model"``, strips ``module.`` prefixes
    (DataParallel) and drops ``last_linear.*`` when ``model`` has no classifier; the rest loads strictly.
    """
    sd = torch.load(_checked_path(path), map_location="cpu", weights_only=True)
    for key in ("state_dict", "model"):
        if isinstance(sd, dict) and key in sd and isinstance(sd[key], dict):
            sd = sd[key]
    sd = {k.removeprefix("module."): v for k, v in sd.items()}
    if model.last_linear is None:
        sd = {k: v for k, v in sd.items() if not k.startswith("last_linear.")}
    model.load_state_dict(sd, strict=True)
    return model


# ------------------------------------------------------------------------------------------------ backbones
class ConvNetSmall(nn.Module):
    """A small CNN for offline demos and tests (``create_backbone("convnet_small")``; no pretrained weights).

    Three ``Conv3x3 → BatchNorm → ReLU`` stages with ``width``, ``2·width``, ``4·width`` channels (strides 1, 2,
    2): ``(B, in_chans, H, W) → (B, 4·width, ⌈H/4⌉, ⌈W/4⌉)`` from :meth:`forward_features`; suits 8×8 digits
    and 28×28 Fashion-MNIST. ``num_features = 4·width``.
    """

    def __init__(self, in_chans: int = 3, width: int = 32) -> None:
        super().__init__()
        chans = [in_chans, width, 2 * width, 4 * width]
        layers: list[nn.Module] = []
        for i, stride in enumerate((1, 2, 2)):
            layers += [nn.Conv2d(chans[i], chans[i + 1], 3, stride=stride, padding=1, bias=False),
                       nn.BatchNorm2d(chans[i + 1]), nn.ReLU(inplace=True)]
        self.features = nn.Sequential(*layers)
        self.num_features = chans[-1]

    def forward_features(self, x: torch.Tensor) -> torch.Tensor:
        return self.features(x)


class GlobalPool(nn.Module):
    """Global pooling of ``(B, C, H, W)`` to ``(B, C)``: ``"avgmax"`` (GAP + GMP, summed: HIER / Proxy-Anchor),
    ``"avg"`` or ``"max"``."""

    def __init__(self, kind: str = "avgmax") -> None:
        super().__init__()
        if kind not in ("avgmax", "avg", "max"):
            raise ValueError(f"pool must be 'avgmax', 'avg' or 'max', got {kind!r}")
        self.kind = kind

    def extra_repr(self) -> str:
        return self.kind

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if self.kind == "avg":
            return x.mean(dim=(2, 3))
        if self.kind == "max":
            return x.amax(dim=(2, 3))
        return x.mean(dim=(2, 3)) + x.amax(dim=(2, 3))


class Backbone(nn.Module):
    """A feature extractor ``(B, 3, H, W) -> (B, num_features)``.

    Args:
        body: the network. With ``pool`` set, ``body.forward_features`` must return a ``(B, C, H, W)`` map that
            is pooled here; with ``pool=None``, ``body(x)`` must return pooled features (timm ``num_classes=0``).
        num_features: the feature dimension.
        pool: a :class:`GlobalPool` kind or ``None``.
        bn_freeze: keep every batch norm in eval mode (running statistics frozen, affine parameters still
            trained), HIER's ``bn_freeze`` for CUB/Cars.
    """

    def __init__(self, body: nn.Module, num_features: int, pool: str | None = None, bn_freeze: bool = False):
        super().__init__()
        self.body = body
        self.num_features = int(num_features)
        self.pool = GlobalPool(pool) if pool is not None else None
        self.bn_freeze = bn_freeze
        if bn_freeze:
            self.train(self.training)

    def train(self, mode: bool = True) -> Backbone:
        super().train(mode)
        if self.bn_freeze:
            for m in self.modules():
                if isinstance(m, nn.modules.batchnorm._BatchNorm):
                    m.eval()
        return self

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if self.pool is None:
            f = self.body(x)
            return f[0] if isinstance(f, tuple) else f
        return self.pool(self.body.forward_features(x))


def create_backbone(
    name: str | nn.Module, pretrained: bool = False, pretrained_path: str | os.PathLike | None = None, *,
    pool: str | None = "auto", bn_freeze: bool = False, freeze_patch_embed: bool = False, **kwargs,
) -> Backbone:
    """Build a backbone by name (module docstring).

    Args:
        name: ``"bninception"``, ``"convnet_small"`` (:class:`ConvNetSmall`, demos/tests), a timm model name
            (``"resnet50"``, ``"resnet50.tv_in1k"``,
            ``"deit_small_distilled_patch16_224"``, ``"vit_small_patch16_224"``, ``"vit_small_patch16_224.dino"``,
            …), an alias from :data:`BACKBONE_ALIASES` (``"dino_vits16"``), or an already built ``nn.Module``
            (e.g. ``timm.create_model("resnet50", pretrained=True, num_classes=0)``) with a ``num_features``
            attribute; it is used as is (its own weights; ``pretrained``/``pretrained_path``/``**kwargs`` must be
            left unset).
        pretrained: load ImageNet weights (see the module docstring for the offline behaviour).
        pretrained_path: a local checkpoint; implies ``pretrained``.
        pool: ``"auto"`` (GAP+GMP for CNNs — timm models whose ``global_pool`` is a module, and BN-Inception —
            the model's own pooling, e.g. the CLS token, otherwise), a :class:`GlobalPool` kind, or ``None``
            (the model's own pooling).
        bn_freeze: see :class:`Backbone`.
        freeze_patch_embed: ``requires_grad=False`` on ``patch_embed`` (HIER freezes it for ViTs).
        **kwargs: passed to the model constructor (timm: ``img_size``, ``in_chans``, ``drop_path_rate``, …;
            BN-Inception: ``input_space``, ``bn_momentum``).

    Raises:
        FileNotFoundError: ``pretrained_path`` missing, or pretrained weights unavailable offline (the message
            says to pass ``pretrained_path``).
        ValueError: unknown ``pool`` kind, ``freeze_patch_embed`` on a model without ``patch_embed``.
    """
    if isinstance(name, nn.Module):
        return _wrap_module(name, pretrained, pretrained_path, pool, bn_freeze, freeze_patch_embed, kwargs)
    name = BACKBONE_ALIASES.get(name, name)
    if name == "convnet_small":
        if pretrained or pretrained_path is not None:
            raise ValueError("convnet_small is a demo backbone without pretrained weights; use pretrained=False")
        body = ConvNetSmall(**kwargs)
        own_pool_is_spatial = True
    elif name == "bninception":
        body: nn.Module = BNInception(num_classes=0, **kwargs)
        if pretrained_path is not None:
            load_bninception_checkpoint(body, pretrained_path)
        elif pretrained:
            raise _offline_error(name, "BN-Inception weights cannot be downloaded by lorentzcv (no hub hosts them)")
        own_pool_is_spatial = True
    else:
        body = _create_timm(name, pretrained, pretrained_path, num_classes=0, **kwargs)
        own_pool_is_spatial = isinstance(getattr(body, "global_pool", None), nn.Module)
    return _finish_backbone(body, name, own_pool_is_spatial, pool, bn_freeze, freeze_patch_embed)


def _finish_backbone(body: nn.Module, name: str, own_pool_is_spatial: bool, pool: str | None, bn_freeze: bool,
                     freeze_patch_embed: bool) -> Backbone:
    if pool == "auto":
        pool = "avgmax" if own_pool_is_spatial else None
    if freeze_patch_embed:
        if not hasattr(body, "patch_embed"):
            raise ValueError(f"freeze_patch_embed=True but {name!r} has no patch_embed")
        for p in body.patch_embed.parameters():
            p.requires_grad_(False)
    return Backbone(body, body.num_features, pool=pool, bn_freeze=bn_freeze)


def _wrap_module(body: nn.Module, pretrained: bool, pretrained_path, pool: str | None, bn_freeze: bool,
                 freeze_patch_embed: bool, kwargs: dict) -> Backbone:
    """:func:`create_backbone` of a built module: checks that it can serve as a feature extractor."""
    what = type(body).__name__
    if pretrained or pretrained_path is not None or kwargs:
        extra = ", ".join(["pretrained"] * bool(pretrained) + ["pretrained_path"] * (pretrained_path is not None)
                          + sorted(kwargs))
        raise ValueError(f"a built backbone module ({what}) is used as is; {extra} only apply to backbone names "
                         "(load its weights before passing it)")
    if not isinstance(getattr(body, "num_features", None), int):
        raise ValueError(f"the backbone module {what} needs an integer num_features attribute (its feature "
                         "dimension), as timm models have")
    own_pool_is_spatial = isinstance(getattr(body, "global_pool", None), nn.Module)
    spatial = own_pool_is_spatial if pool == "auto" else pool is not None
    if spatial and not hasattr(body, "forward_features"):
        raise ValueError(f"pool={pool!r} needs a forward_features method returning (B, C, H, W) maps; {what} has "
                         "none: pass pool=None (the module must then return (B, num_features) features)")
    if not spatial and getattr(body, "num_classes", 0):
        raise ValueError(f"the backbone module {what} has a classifier (num_classes={body.num_classes}); build it "
                         "with num_classes=0 or call reset_classifier(0) first")
    info = getattr(body, "feature_info", None)
    last = info[-1].get("num_chs") if isinstance(info, list) and info and isinstance(info[-1], dict) else None
    if (spatial and last is not None and last != body.num_features) or (
            not spatial and callable(getattr(body, "manifolds", None)) and body.manifolds()):
        raise ValueError(f"the backbone module {what} gives Lorentz points, but the embedding heads take Euclidean "
                         "features: use a Euclidean backbone (a timm model, lorentzcv resnet18/50, or hecnn_resnet50/"
                         "hybrid_resnet* with pool='avgmax', whose feature maps are Euclidean)")
    return _finish_backbone(body, what, own_pool_is_spatial, pool, bn_freeze, freeze_patch_embed)


# ------------------------------------------------------------------------------------------------ heads
class _LinearHead(nn.Module):
    """``LayerNorm(in, no affine) → Linear(in, emb)`` with HIER's init (orthogonal weight, zero bias)."""

    def __init__(self, in_features: int, embedding_dim: int, layer_norm: bool = True) -> None:
        super().__init__()
        self.in_features, self.embedding_dim = int(in_features), int(embedding_dim)
        self.norm = nn.LayerNorm(in_features, elementwise_affine=False) if layer_norm else nn.Identity()
        self.linear = nn.Linear(in_features, embedding_dim)
        nn.init.orthogonal_(self.linear.weight, gain=1.0)
        nn.init.zeros_(self.linear.bias)

    def project(self, x: torch.Tensor) -> torch.Tensor:
        return self.linear(self.norm(x))


class EuclideanHead(_LinearHead):
    """Euclidean embeddings on the unit sphere: ``normalize(Linear(LayerNorm(x)))``, ``(B, in) -> (B, emb)``.

    Retrieval: Euclidean distance (= cosine ranking on the sphere); :meth:`distance` returns ``None``.
    """

    def __init__(self, in_features: int, embedding_dim: int, layer_norm: bool = True, normalize: bool = True):
        super().__init__(in_features, embedding_dim, layer_norm)
        self.normalize = normalize

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        h = self.project(x)
        return F.normalize(h, dim=-1) if self.normalize else h

    def distance(self) -> None:
        return None


class PoincareHead(_LinearHead):
    """HIER's head: ``ToPoincare(c, clip_r)(Linear(LayerNorm(x)))``, ``(B, in) -> (B, emb)`` ball points.

    Points lie in the ball of curvature ``-c`` within distance ``2·clip_r`` of the origin (norm
    ``≤ tanh(√c·clip_r)/√c``); gradients are rescaled as hyptorch's ``RiemannianGradient``
    (:class:`~lorentzcv.metric.poincare.ToPoincare`).
    """

    def __init__(self, in_features: int, embedding_dim: int, c: float = 0.1, clip_r: float | None = 2.3,
                 layer_norm: bool = True, riemannian: bool = True) -> None:
        super().__init__(in_features, embedding_dim, layer_norm)
        self.to_poincare = ToPoincare(c=c, clip_r=clip_r, riemannian=riemannian)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.to_poincare(self.project(x))

    def distance(self) -> PoincareDistance:
        return PoincareDistance(self.to_poincare.c)


class LorentzHead(_LinearHead):
    r"""LHIER's head (``docs/method.md`` §7.2): backbone features lifted onto :math:`\mathbb{H}_k`.

    Two necks (``neck=``); with ``x`` the LayerNorm output:

    - ``neck="lorentz"`` — **the paper's**: a Lorentz linear layer with maximum distance rescaling after it,

      .. math::

          p = \mathrm{lift}_k(x),\qquad z = \mathrm{rescale}\big(\mathrm{LFC}(p)\big),

      where :math:`\mathrm{lift}_k(x) = (\sqrt{\|v\|^2 + k}, v)`, :math:`v = g(\|x\|)\,x/\|x\|` (the
      Euclid→Lorentz swap of the authors' code, §5.6: :class:`~lorentzcv.nn.ToLorentz` ``mode="rescale"``), the
      LFC is :class:`~lorentzcv.nn.LorentzLinear` (``variant="space"``: :math:`y_s = W p_s + b`, time from
      space; HIER's init: orthogonal ``W``, zero ``b``) and ``rescale`` is maximum distance rescaling of the
      output points (:func:`~lorentzcv.geometry.rescale`, :math:`d_0 \mapsto m_k\tanh(c\,d_0)`). Every
      output has :math:`d_0 < m_k = 9.56\min(1,\sqrt{k})` (float32). How the features enter the hyperboloid is
      not stated by the paper: this swap is our flagged choice.
    - ``neck="linear"`` (the default, the library's earlier head): a Euclidean ``Linear`` and then
      :math:`z = \exp_0^k((0, v))` (distance :math:`\|v\|` from the origin) with

      - ``lift="rescale"``: :math:`v = g(\|s\,h\|)\,h/\|h\|`, ``h`` the Linear output, maximum distance
        rescaling (:func:`~lorentzcv.geometry.rescale_euclid`) of ``h`` scaled by ``scale`` (``scale=2`` mimics
        HIER, whose Poincaré ``exp0`` doubles tangent norms; flagged choice, default 1);
      - ``lift="clip"``: :math:`v = 2\min(1, r/(\|h\|+10^{-5}))\,h` — HIER's clipping (``r = clip_r``) and its
        doubling, so that with ``k = 1/c`` the points are exactly HIER's ball points seen in the Lorentz model
        (``to_poincare``), up to HIER's ball projection and gradient rescaling.

    The rescaling constants (softness ``s`` …) are ``manifold.rescale_config``. The neck runs as a float32
    island under autocast. The manifold is created as ``Lorentz(k=10, learnable=True)`` when not given
    (``k = 10`` ≙ HIER's ``c = 0.1``; ``K = -1/k``; default ``s = 3``).

    Args:
        manifold: the :class:`~lorentzcv.geometry.Lorentz` of the embeddings, or ``None``.
        in_features: backbone feature dimension.
        embedding_dim: number of space coordinates ``D``; outputs have ``1+D`` coordinates.
        lift: ``"rescale"`` or ``"clip"`` (``neck="linear"`` only).
        scale: factor on ``h`` before rescaling (``neck="linear"``, ``lift="rescale"``).
        clip_r: clipping radius (``neck="linear"``, ``lift="clip"``).
        layer_norm: the LayerNorm before the linear layer (HIER's ``use_lastnorm``).
        neck: ``"linear"`` or ``"lorentz"`` (the paper's).

    Attributes:
        linear: the ``nn.Linear`` (``neck="linear"``) or :class:`~lorentzcv.nn.LorentzLinear`
            (``neck="lorentz"``) — both with ``weight`` ``(D, in)`` and ``bias`` ``(D,)``.

    Shapes: ``(B, in) -> (B, 1+D)``.
    """

    def __init__(self, manifold: Lorentz | None, in_features: int, embedding_dim: int, lift: str = "rescale",
                 scale: float = 1.0, clip_r: float = 2.3, layer_norm: bool = True, neck: str = "linear") -> None:
        super().__init__(in_features, embedding_dim, layer_norm)
        if lift not in ("rescale", "clip"):
            raise ValueError(f"lift must be 'rescale' or 'clip', got {lift!r}")
        if neck not in ("linear", "lorentz"):
            raise ValueError(f"neck must be 'linear' (Euclidean Linear + lift) or 'lorentz' (the paper's Lorentz "
                             f"linear layer + rescaling), got {neck!r}")
        self.manifold = manifold if manifold is not None else Lorentz(k=10.0, learnable=True)
        self.lift, self.scale, self.clip_r, self.neck = lift, float(scale), float(clip_r), neck
        if neck == "lorentz":
            from ..nn.bridge import ToLorentz
            from ..nn.linear import LorentzLinear

            self.to_lorentz = ToLorentz(self.manifold, mode="rescale", dim=-1)
            self.linear = LorentzLinear(self.manifold, self.in_features, self.embedding_dim, bias=True)
            nn.init.orthogonal_(self.linear.weight, gain=1.0)  # HIER's init of the layer it replaces
            nn.init.zeros_(self.linear.bias)

    def extra_repr(self) -> str:
        if self.neck == "lorentz":
            return "neck='lorentz'"
        return f"neck='linear', lift={self.lift!r}, scale={self.scale}, clip_r={self.clip_r}"

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if self.neck == "lorentz":
            h = self.norm(x)
            with no_autocast(h):
                z = self.linear(self.to_lorentz(upcast(h)))
                return self.manifold.rescale(z)
        h = self.project(x)
        with no_autocast(h):
            h = upcast(h)
            k = self.manifold.k.to(h.dtype)
            if self.lift == "rescale":
                v = rescale_euclid(self.scale * h, k, config=self.manifold.rescale_config)
            else:
                v = 2.0 * h * torch.clamp(self.clip_r / (h.norm(dim=-1, keepdim=True) + 1e-5), max=1.0)
            return lmath.expmap0(torch.cat([torch.zeros_like(v[..., :1]), v], dim=-1), k)

    def distance(self) -> LorentzDistance:
        return LorentzDistance(self.manifold)


class EmbeddingModel(nn.Module):
    """``head(backbone(images))``.

    Attributes:
        backbone, head: the two parts.
        manifold: the head's Lorentz manifold (``None`` for Euclidean/Poincaré heads).
        embedding_dim: the head's ``D`` (Lorentz outputs have ``1+D`` coordinates).
    """

    def __init__(self, backbone: nn.Module, head: nn.Module) -> None:
        super().__init__()
        self.backbone = backbone
        self.head = head

    @property
    def manifold(self) -> Lorentz | None:
        return getattr(self.head, "manifold", None)

    @property
    def embedding_dim(self) -> int:
        return self.head.embedding_dim

    def distance(self):
        """The retrieval distance matching the head (``None`` = Euclidean), for :func:`~lorentzcv.metric.recall_at_k`."""
        return self.head.distance()

    def forward(self, images: torch.Tensor) -> torch.Tensor:
        return self.head(self.backbone(images))


_HEADS: dict[str, Callable[..., nn.Module]] = {
    "euclidean": lambda feat, emb, **kw: EuclideanHead(feat, emb, **kw),
    "poincare": lambda feat, emb, **kw: PoincareHead(feat, emb, **kw),
    "lorentz": lambda feat, emb, manifold=None, **kw: LorentzHead(manifold, feat, emb, **kw),
}


def create_embedding_model(
    backbone: str | nn.Module = "resnet50", head: str = "lorentz", embedding_dim: int = 512, *, pretrained: bool = False,
    pretrained_path: str | os.PathLike | None = None, head_kwargs: dict | None = None, **backbone_kwargs,
) -> EmbeddingModel:
    """Backbone + head (module docstring).

    Args:
        backbone: a :func:`create_backbone` name, or a built ``nn.Module`` with ``num_features`` (e.g. a timm
            model with ``num_classes=0``; see :func:`create_backbone`).
        head: ``"euclidean"``, ``"poincare"`` or ``"lorentz"``.
        embedding_dim: 128, 384 or 512 in HIER's tables (any positive integer works).
        pretrained, pretrained_path: backbone weights (:func:`create_backbone`).
        head_kwargs: head options (``c``, ``clip_r``, ``lift``, ``scale``, ``manifold``, ``layer_norm`` …).
        **backbone_kwargs: :func:`create_backbone` options (``bn_freeze``, ``freeze_patch_embed``, ``img_size``…).
    """
    if head not in _HEADS:
        raise ValueError(f"unknown head {head!r}; expected one of {sorted(_HEADS)}")
    bb = create_backbone(backbone, pretrained, pretrained_path, **backbone_kwargs)
    return EmbeddingModel(bb, _HEADS[head](bb.num_features, embedding_dim, **(head_kwargs or {})))


# ------------------------------------------------------------------------------------------------ registry helpers
def _entrypoint(fn_name: str, backbone: str, head: str, default_dim: int) -> Callable[..., EmbeddingModel]:
    vit = any(t in backbone for t in ("vit", "deit"))

    def fn(num_classes: int = 0, in_chans: int = 3, img_size: int = 224, embedding_dim: int = default_dim,
           pretrained_path: str | None = None, pretrained_backbone: bool = False, **kwargs) -> EmbeddingModel:
        del num_classes  # embedding models have no classifier
        if backbone == "bninception" and in_chans != 3:
            raise ValueError(f"bninception takes 3 input channels, got in_chans={in_chans}")
        extra = dict(in_chans=in_chans) if backbone != "bninception" else {}
        if vit:
            extra["img_size"] = img_size
        return create_embedding_model(backbone, head, embedding_dim, pretrained=pretrained_backbone,
                                      pretrained_path=pretrained_path, **extra, **kwargs)

    fn.__name__ = fn.__qualname__ = fn_name
    fn.__doc__ = (f"{head.capitalize()} embedding model on {backbone} (default D={default_dim}); "
                  "num_classes is ignored (no classifier). See create_embedding_model.")
    return fn


_BACKBONES = {
    "resnet50": ("resnet50", 512),
    "bninception": ("bninception", 512),
    "deit_small": ("deit_small_distilled_patch16_224", 128),
    "vit_small": ("vit_small_patch16_224", 128),
    "dino_vits16": ("vit_small_patch16_224.dino", 128),
}
EMBEDDING_ENTRYPOINTS: dict[str, Callable[..., EmbeddingModel]] = {
    f"{h}_embed_{short}": _entrypoint(f"{h}_embed_{short}", full, h, dim)
    for h in ("euclidean", "poincare", "lorentz")
    for short, (full, dim) in _BACKBONES.items()
}
"""Registry-compatible entrypoints (``num_classes``/``in_chans``/``img_size`` keywords), named
``{euclidean,poincare,lorentz}_embed_{resnet50,bninception,deit_small,vit_small,dino_vits16}``; register them
with ``for fn in EMBEDDING_ENTRYPOINTS.values(): register_model(fn)``."""

