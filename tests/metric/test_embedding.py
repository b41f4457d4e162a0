"""Embedding heads, backbones (timm, BN-Inception), pretrained/offline behaviour and the entrypoints."""

from __future__ import annotations

import math
import time

import pytest
import torch

from lorentzcv.geometry import Lorentz
from lorentzcv.geometry import math as lmath
from lorentzcv.metric import LorentzDistance, PoincareDistance
from lorentzcv.models import embedding as emb_mod
from lorentzcv.models.bninception import BNInception
from lorentzcv.models.embedding import (
    EMBEDDING_ENTRYPOINTS,
    EmbeddingModel,
    EuclideanHead,
    LorentzHead,
    PoincareHead,
    create_backbone,
    create_embedding_model,
)

# ----------------------------------------------------------------------------------------------- heads


@pytest.mark.parametrize("dim", [128, 384, 512])
def test_heads_shapes_and_ranges(dim):
    torch.manual_seed(0)
    x = torch.randn(6, 64) * 3
    e = EuclideanHead(64, dim)(x)
    assert e.shape == (6, dim)
    torch.testing.assert_close(e.norm(dim=1), torch.ones(6))
    p_head = PoincareHead(64, dim)
    p = p_head(x)
    assert p.shape == (6, dim)
    assert (p.norm(dim=1) <= math.tanh(math.sqrt(0.1) * 2.3) / math.sqrt(0.1) + 1e-5).all()  # dist0 <= 4.6
    lh = LorentzHead(None, 64, dim)
    z = lh(x)
    assert z.shape == (6, dim + 1)
    assert lh.manifold.learnable and lh.manifold.k.item() == 10.0
    lh.manifold.check_point_on_manifold(z.detach(), atol=1e-4)
    assert (lh.manifold.dist0(z.detach()) <= 9.57).all()  # rescaling radius (float32)
    assert isinstance(lh.distance(), LorentzDistance) and isinstance(p_head.distance(), PoincareDistance)
    # HIER's init: orthogonal weight, zero bias, LayerNorm without affine parameters
    w = lh.linear.weight.detach()  # (dim, 64), dim >= 64: orthonormal columns
    torch.testing.assert_close(w.T @ w, torch.eye(64), atol=1e-5, rtol=0)
    assert torch.equal(lh.linear.bias.detach(), torch.zeros(dim))
    assert len(list(lh.norm.parameters())) == 0


def test_lorentz_clip_lift_is_hier_ball_through_isometry():
    """lift='clip' at k=10 gives exactly HIER's PoincareHead points (c=0.1) after to_poincare."""
    torch.manual_seed(1)
    x = torch.randn(8, 32, dtype=torch.float64)
    x[:2] *= 0.01  # two small features: below the clipping radius
    ph = PoincareHead(32, 16).double()
    lh = LorentzHead(Lorentz(k=10.0).double(), 32, 16, lift="clip").double()
    lh.linear.load_state_dict(ph.linear.state_dict())
    torch.testing.assert_close(lmath.to_poincare(lh(x), lh.manifold.k), ph(x), rtol=1e-10, atol=1e-10)
    # and the same distances
    torch.testing.assert_close(lh.distance()(lh(x)), ph.distance()(ph(x)), rtol=1e-8, atol=1e-8)


def test_lorentz_head_gradients_and_autocast():
    m = Lorentz(k=10.0, learnable=True)
    head = LorentzHead(m, 16, 8, scale=2.0)
    z = head(torch.randn(5, 16))
    lmath.dist0(z, m.k).sum().backward()
    assert m.k.grad is not None and torch.isfinite(m.k.grad) and head.linear.weight.grad.abs().sum() > 0
    with torch.autocast("cpu", dtype=torch.bfloat16):
        z = head(torch.randn(5, 16))
    assert z.dtype == torch.float32
    m.check_point_on_manifold(z.detach(), atol=1e-4)
    with pytest.raises(ValueError, match="lift"):
        LorentzHead(m, 4, 4, lift="exp")


# ----------------------------------------------------------------------------------------------- backbones


def test_resnet_backbone_gap_plus_gmp():
    torch.manual_seed(0)
    bb = create_backbone("resnet18")
    assert bb.num_features == 512 and bb.pool is not None and bb.pool.kind == "avgmax"
    x = torch.randn(2, 3, 32, 32)
    bb.eval()
    fmap = bb.body.forward_features(x)
    torch.testing.assert_close(bb(x), fmap.mean((2, 3)) + fmap.amax((2, 3)))
    model = EmbeddingModel(bb, LorentzHead(None, bb.num_features, 16))
    assert model(x).shape == (2, 17) and model.manifold is model.head.manifold
    assert isinstance(model.distance(), LorentzDistance)


def test_resnet50_features_are_2048():
    bb = create_backbone("resnet50", bn_freeze=True)
    assert bb.num_features == 2048
    bb.train()
    assert bb.training and not bb.body.bn1.training  # frozen batch-norm statistics
    with torch.no_grad():
        assert bb(torch.randn(1, 3, 32, 32)).shape == (1, 2048)


@pytest.mark.parametrize("name", ["dino_vits16", "deit_small_distilled_patch16_224", "vit_small_patch16_224"])
def test_vit_backbones_cls_token(name):
    bb = create_backbone(name, img_size=32, depth=1, freeze_patch_embed=True)
    assert bb.num_features == 384 and bb.pool is None
    assert not any(p.requires_grad for p in bb.body.patch_embed.parameters())
    for mode in (True, False):
        bb.train(mode)
        assert bb(torch.randn(2, 3, 32, 32)).shape == (2, 384)


def test_bninception_state_dict_names_and_forward():
    with torch.device("meta"):  # names and shapes only: no initialisation cost
        sd = BNInception().state_dict()
    n_params = sum(v.numel() for k, v in sd.items() if not k.endswith(("running_mean", "running_var", "tracked")))
    assert len(sd) == 485 and n_params == 11_295_240
    expected = {
        "conv1_7x7_s2.weight": (64, 3, 7, 7), "conv1_7x7_s2_bn.running_var": (64,),
        "conv2_3x3.weight": (192, 64, 3, 3), "inception_3a_1x1.weight": (64, 192, 1, 1),
        "inception_3a_pool_proj_bn.weight": (32,), "inception_3c_double_3x3_2.weight": (96, 96, 3, 3),
        "inception_4e_double_3x3_2.weight": (256, 256, 3, 3), "inception_5b_pool_proj.weight": (128, 1024, 1, 1),
        "inception_5b_double_3x3_2_bn.num_batches_tracked": (), "last_linear.weight": (1000, 1024),
        "last_linear.bias": (1000,),
    }
    for key, shape in expected.items():
        assert tuple(sd[key].shape) == shape, key
    assert "inception_3c_1x1.weight" not in sd and "inception_4e_pool_proj.weight" not in sd


def test_bninception_forward_and_input_space_conversion():
    torch.manual_seed(0)
    net = BNInception(num_classes=10, input_space="rgb_imagenet").eval()
    with torch.no_grad():
        assert net.forward_features(torch.randn(2, 3, 32, 32)).shape == (2, 1024, 1, 1)  # smallest input
        assert net(torch.randn(1, 3, 64, 64)).shape == (1, 10)
    rgb01 = torch.rand(1, 3, 32, 32)
    mean, std = torch.tensor([0.485, 0.456, 0.406]).view(1, 3, 1, 1), torch.tensor([0.229, 0.224, 0.225]).view(1, 3, 1, 1)
    caffe = rgb01.flip(1) * 255 - torch.tensor([104.0, 117.0, 128.0]).view(1, 3, 1, 1)
    with torch.no_grad():
        out_rgb = net((rgb01 - mean) / std)
        net.input_space = "bgr255"
        torch.testing.assert_close(out_rgb, net(caffe), rtol=1e-4, atol=1e-4)


def test_bninception_checkpoint_loads_from_path(tmp_path):
    torch.manual_seed(0)
    src = BNInception()
    src.inception_4d_3x3.weight.data.normal_()
    path = tmp_path / "bn_inception.pth"
    torch.save({"state_dict": {"module." + k: v for k, v in src.state_dict().items()}}, path)
    bb = create_backbone("bninception", pretrained_path=path)
    assert bb.num_features == 1024 and bb.body.last_linear is None
    torch.testing.assert_close(bb.body.inception_4d_3x3.weight, src.inception_4d_3x3.weight)
    assert bb(torch.randn(2, 3, 32, 32)).shape == (2, 1024)


def test_timm_pretrained_path(tmp_path):
    import timm

    torch.manual_seed(0)
    src = timm.create_model("resnet18", pretrained=False)
    path = tmp_path / "r18.pth"
    torch.save(src.state_dict(), path)
    bb = create_backbone("resnet18", pretrained_path=str(path))
    torch.testing.assert_close(bb.body.conv1.weight, src.conv1.weight)
    with pytest.raises(FileNotFoundError, match="does not exist"):
        create_backbone("resnet18", pretrained_path=tmp_path / "missing.pth")


# ----------------------------------------------------------------------------------------------- offline behaviour


def test_offline_pretrained_fails_fast(monkeypatch):
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    t0 = time.perf_counter()
    with pytest.raises(FileNotFoundError, match="pretrained_path"):
        create_backbone("resnet18", pretrained=True)
    assert time.perf_counter() - t0 < 5.0
    with pytest.raises(FileNotFoundError, match="pretrained_path"):
        create_backbone("bninception", pretrained=True)


def test_unreachable_hub_fails_fast_without_env(monkeypatch):
    import huggingface_hub.constants as hf_constants

    monkeypatch.setenv("HF_HUB_OFFLINE", "0")
    monkeypatch.setattr(hf_constants, "HF_HUB_OFFLINE", False)
    for v in ("HTTPS_PROXY", "https_proxy", "ALL_PROXY", "all_proxy"):
        monkeypatch.delenv(v, raising=False)
    monkeypatch.setattr(emb_mod, "_hub_reachable", lambda url, timeout: False)
    t0 = time.perf_counter()
    with pytest.raises(FileNotFoundError, match="unreachable"):
        create_backbone("resnet18", pretrained=True)
    assert time.perf_counter() - t0 < 5.0
    assert hf_constants.HF_HUB_OFFLINE is False  # offline mode was only forced during the call


def test_hub_probe_never_blocks(monkeypatch):
    assert emb_mod._hub_reachable("https://192.0.2.1:9", timeout=0.2) is False  # TEST-NET-1, unroutable


# ----------------------------------------------------------------------------------------------- factories


def test_create_embedding_model_and_entrypoints():
    model = create_embedding_model("resnet18", "poincare", 8)
    assert model(torch.randn(2, 3, 32, 32)).shape == (2, 8) and model.manifold is None
    with pytest.raises(ValueError, match="unknown head"):
        create_embedding_model("resnet18", "spherical", 8)
    assert len(EMBEDDING_ENTRYPOINTS) == 15
    fn = EMBEDDING_ENTRYPOINTS["lorentz_embed_dino_vits16"]
    assert fn.__name__ == "lorentz_embed_dino_vits16"
    model = fn(num_classes=1000, img_size=32, embedding_dim=8, depth=1)
    z = model(torch.randn(2, 3, 32, 32))
    assert z.shape == (2, 9)
    model.manifold.check_point_on_manifold(z.detach(), atol=1e-4)


# ----------------------------------------------------------------------------------------------- the paper's neck


def _radius(m: Lorentz) -> float:
    return m.max_distance(torch.float32)  # m·min(1, √k) in float32


@pytest.mark.parametrize("k", [0.5, 10.0])
def test_lorentz_neck_shapes_manifold_and_radius(k):
    """neck='lorentz': lift → LorentzLinear → rescaling; points on H_k within the rescaling radius."""
    torch.manual_seed(0)
    m = Lorentz(k=k, learnable=True)
    head = LorentzHead(m, 64, 16, neck="lorentz")
    from lorentzcv.nn import LorentzLinear

    assert isinstance(head.linear, LorentzLinear) and head.linear.variant == "space"
    w = head.linear.weight.detach()  # (16, 64): HIER's orthogonal init (orthonormal rows), zero bias
    torch.testing.assert_close(w @ w.T, torch.eye(16), atol=1e-5, rtol=0)
    assert torch.equal(head.linear.bias.detach(), torch.zeros(16))
    x = torch.randn(12, 64) * torch.logspace(-2, 3, 12)[:, None]  # tiny to huge features
    z = head(x)
    assert z.shape == (12, 17) and z.dtype == torch.float32
    m.check_point_on_manifold(z.detach(), atol=1e-4 * max(1.0, k))
    d = m.dist0(z.detach())
    assert (d < _radius(m) + 1e-4).all()
    # it is the rescaled output of the Lorentz linear layer on the lifted features
    with torch.no_grad():
        lfc = head.linear(head.to_lorentz(head.norm(x)))
        torch.testing.assert_close(z, m.rescale(lfc))
        assert (m.dist0(lfc) > d - 1e-5).all()  # rescaling only pulls points in
    z.sum().backward()
    assert torch.isfinite(m.k.grad) and head.linear.weight.grad.abs().sum() > 0


def test_lorentz_neck_uses_the_manifolds_rescale_config_and_autocast():
    from lorentzcv.geometry import RescaleConfig

    torch.manual_seed(0)
    x = torch.randn(6, 32) * 5
    outs = {}
    for s in (2.0, 3.0):
        torch.manual_seed(1)
        head = LorentzHead(Lorentz(k=10.0, rescale=RescaleConfig(s=s)), 32, 8, neck="lorentz")
        outs[s] = head(x).detach()
    assert not torch.allclose(outs[2.0], outs[3.0])  # s changes the rescaling curve
    with torch.autocast("cpu", dtype=torch.bfloat16):
        zb = head(x)
    assert zb.dtype == torch.float32
    head.manifold.check_point_on_manifold(zb.detach(), atol=1e-3)
    torch.testing.assert_close(zb.detach(), outs[3.0], rtol=0.05, atol=0.05)


def test_linear_neck_is_still_the_default_and_selectable():
    torch.manual_seed(0)
    head = LorentzHead(None, 32, 8)
    assert head.neck == "linear" and type(head.linear) is torch.nn.Linear
    torch.manual_seed(0)
    explicit = LorentzHead(None, 32, 8, neck="linear")
    x = torch.randn(4, 32)
    torch.testing.assert_close(head(x), explicit(x))
    h = head.project(x)  # Linear(LayerNorm(x)) -> exp0(rescale_euclid(h))
    v = head.manifold.rescale_tangent(h)
    torch.testing.assert_close(head(x), lmath.expmap0(torch.cat([torch.zeros(4, 1), v], 1), head.manifold.k))
    with pytest.raises(ValueError, match="neck"):
        LorentzHead(None, 4, 4, neck="poincare")
    assert "neck='lorentz'" in repr(LorentzHead(None, 4, 4, neck="lorentz"))


def test_create_embedding_model_with_the_lorentz_neck():
    model = create_embedding_model("convnet_small", "lorentz", 16, head_kwargs=dict(neck="lorentz"), width=4)
    z = model(torch.randn(3, 3, 16, 16))
    assert z.shape == (3, 17)
    model.manifold.check_point_on_manifold(z.detach(), atol=1e-3)
