"""Every registered model: forward/backward, curvature gradients, a Riemannian step, autocast, structure."""

from __future__ import annotations

import pytest
import torch
import torchvision
from torch import nn

from lorentzcv.geometry import Lorentz, ManifoldParameter
from lorentzcv.models import create_model, list_models
from lorentzcv.nn import LorentzBatchNorm2d, LorentzConv2d, LorentzMLR, ManifoldSwap, ToLorentz
from lorentzcv.optim import create_optimizer

SMALL = dict(width=8, layers=(1, 1, 1, 1))
INPUTS = {"rgb16": (3, 16), "digits8": (1, 8)}  # (in_chans, img_size): CIFAR-like and sklearn digits


def _build(name, num_classes=5, in_chans=3, img_size=16, **kw):
    torch.manual_seed(0)
    return create_model(name, num_classes=num_classes, in_chans=in_chans, img_size=img_size, **{**SMALL, **kw})


def _learnable_ks(model):
    return [m.k for m in model.manifolds().values() if m.k.requires_grad]


@pytest.mark.parametrize("inp", list(INPUTS), ids=list(INPUTS))
@pytest.mark.parametrize("name", list_models())
def test_forward_backward(name, inp, device):
    in_chans, size = INPUTS[inp]
    model = _build(name, in_chans=in_chans, img_size=size).to(device)
    x = torch.randn(4, in_chans, size, size, device=device)
    y = torch.tensor([0, 1, 2, 3], device=device)
    logits = model(x)
    assert logits.shape == (4, 5) and logits.dtype == torch.float32
    assert torch.isfinite(logits).all()
    nn.functional.cross_entropy(logits, y).backward()
    for pname, p in model.named_parameters():
        if p.requires_grad:
            assert p.grad is not None, f"no gradient reached {pname}"
            assert torch.isfinite(p.grad).all(), pname
    for k in _learnable_ks(model):
        assert k.grad is not None and k.grad.abs() > 0, "gradient must reach every learnable curvature"


@pytest.mark.parametrize("name", list_models())
def test_one_optimizer_step_stays_on_manifold(name, device):
    model = _build(name).to(device)
    hyperbolic = bool(model.manifolds())
    opt = create_optimizer(model, "rsgd" if hyperbolic else "sgd", lr=0.1, weight_decay=5e-4, momentum=0.9,
                           nesterov=True, curvature_lr=0.05)
    ks_before = [k.detach().clone() for k in _learnable_ks(model)]
    x = torch.randn(4, 3, 16, 16, device=device)
    y = torch.tensor([0, 1, 2, 3], device=device)
    nn.functional.cross_entropy(model(x), y).backward()
    opt.step()
    for k0, k in zip(ks_before, _learnable_ks(model)):
        assert not torch.equal(k0, k.detach()), "a learnable curvature did not move"
    for man in model.manifolds().values():
        assert man.bounds[0] <= man.k.item() <= man.bounds[1]
    mparams = [p for p in model.parameters() if isinstance(p, ManifoldParameter)]
    assert bool(mparams) == (name.startswith("hcnn") or name.startswith("hecnn"))  # Lorentz BN betas
    for p in mparams:
        p.manifold.check_point_on_manifold(p.detach(), dim=-1, atol=1e-4)
    assert torch.isfinite(model(x)).all()


@pytest.mark.parametrize("name", list_models())
def test_autocast_forward_backward(name, device):
    """bfloat16 autocast on CPU, float16 on CUDA: finite logits and gradients (hybrid decoders included)."""
    model = _build(name).to(device)
    x = torch.randn(4, 3, 16, 16, device=device)
    half = torch.float16 if device.type == "cuda" else torch.bfloat16
    with torch.autocast(device.type, dtype=half):
        logits = model(x)
        loss = nn.functional.cross_entropy(logits, torch.tensor([0, 1, 2, 3], device=device))
    assert torch.isfinite(logits).all() and torch.isfinite(loss)
    loss.backward()
    for pname, p in model.named_parameters():
        if p.requires_grad:
            assert p.grad is not None and torch.isfinite(p.grad).all(), pname
    for k in _learnable_ks(model):
        assert k.grad is not None and torch.isfinite(k.grad)


@pytest.mark.parametrize("name", ["hybrid_resnet18", "hecnn_resnet18", "hecnn_resnet50"])
def test_autocast_close_to_float32_without_rescaling(name):
    """The hyperbolic lift/swap/decoder upcast (no 'both inputs should have same dtype'), and with rescaling off
    (whose radius legitimately depends on the autocast dtype) bfloat16 logits stay close to float32 ones."""
    model = _build(name, rescale=False)  # train mode: batch statistics, deterministic for a fixed batch
    x = torch.randn(4, 3, 16, 16)
    ref = model(x)
    with torch.autocast("cpu", dtype=torch.bfloat16):
        out = model(x)
    assert out.dtype == torch.float32  # the MLR is a float32 island
    torch.testing.assert_close(out, ref, rtol=0.1, atol=0.1 * ref.abs().max().item())


@pytest.mark.parametrize("name", list_models())
def test_features_head_and_pre_logits(name):
    model = _build(name)
    x = torch.randn(2, 3, 16, 16)
    feats = model.forward_features(x)
    pre = model.forward_head(feats, pre_logits=True)
    assert torch.allclose(model.forward_head(feats), model.fc(pre))
    mans = model.manifolds()
    lorentz_features = name.startswith(("hcnn", "hecnn_resnet18"))
    assert feats.shape[1] == model.num_features + int(lorentz_features)
    if mans:
        assert pre.shape == (2, model.num_features + 1)
        head = model.get_classifier()
        assert isinstance(head, LorentzMLR)
        head.manifold.check_point_on_manifold(pre.detach(), dim=-1, atol=1e-4)
    else:
        assert pre.shape == (2, model.num_features)


def test_manifold_layout_of_variants():
    hecnn = _build("hecnn_resnet18")
    mans = hecnn.manifolds()
    assert list(mans) == ["encoder_manifold", "decoder_manifold"]
    enc, dec = mans["encoder_manifold"], mans["decoder_manifold"]
    assert enc is not dec and enc.learnable and dec.learnable
    assert isinstance(hecnn.neck, ManifoldSwap) and hecnn.neck.src is enc and hecnn.neck.dst is dec
    assert hecnn.fc.manifold is dec
    assert enc.rescale_config.enabled and enc.rescale_config.s == 2.0
    assert hecnn.curvatures() == {"encoder_manifold": -1.0, "decoder_manifold": -1.0}
    convs = [m for m in hecnn.modules() if isinstance(m, LorentzConv2d)]
    assert convs and all(c.impl == "efficient" and c.rescale and c.manifold is enc for c in convs)

    shared = _build("hecnn_resnet18", separate_decoder=False)
    assert list(shared.manifolds()) == ["manifold"] and isinstance(shared.neck, nn.Identity)
    assert shared.fc.manifold is shared.manifold

    hcnn = _build("hcnn_resnet18")
    (man,) = hcnn.manifolds().values()
    assert not man.learnable and man.k.item() == 1.0 and not man.rescale_config.enabled
    convs = [m for m in hcnn.modules() if isinstance(m, LorentzConv2d)]
    assert convs and all(c.impl == "unfold" and not c.rescale for c in convs)
    bns = [m for m in hcnn.modules() if isinstance(m, LorentzBatchNorm2d)]
    assert bns and all(b.variant == "hcnn" for b in bns)

    hyb = _build("hybrid_resnet18")
    assert list(hyb.manifolds()) == ["decoder_manifold"] and hyb.decoder_manifold.learnable
    assert isinstance(hyb.neck, ToLorentz) and hyb.neck.mode == "rescale"
    assert not any(isinstance(m, LorentzConv2d) for m in hyb.modules())
    assert _build("hybrid_resnet18", lift="clip_expmap", clip_r=4.0).neck.clip_r == 4.0

    r50 = _build("hecnn_resnet50")
    assert list(r50.manifolds()) == ["encoder_manifold", "decoder_manifold"]
    cores = [m for m in r50.modules() if isinstance(m, LorentzConv2d)]
    assert len(cores) == 4 and all(c.kernel_size == (3, 3) for c in cores)  # one hyperbolic core per bottleneck
    assert isinstance(r50.stem.conv, nn.Conv2d) and isinstance(r50.neck, ToLorentz)
    assert list(_build("hecnn_resnet50", separate_decoder=False).manifolds()) == ["manifold"]


def test_ablation_kwargs_reach_layers():
    m = _build("hecnn_resnet18", conv_impl="unfold", bn_variant="rhl", rescale=False, learn_k=False)
    assert all(c.impl == "unfold" for c in m.modules() if isinstance(c, LorentzConv2d))
    assert all(b.variant == "rhl" for b in m.modules() if isinstance(b, LorentzBatchNorm2d))
    assert all(not man.learnable and not man.rescale_config.enabled for man in m.manifolds().values())
    assert m.neck.rescale is False


@pytest.mark.parametrize("name", list_models())
def test_stem_follows_img_size(name):
    small = _build(name, img_size=32)
    large = _build(name, img_size=96)
    stem_small = small.stem
    stem_large = large.stem[0] if isinstance(large.stem, nn.Sequential) else large.stem
    assert stem_small.conv.kernel_size == (3, 3) and stem_small.conv.stride == (1, 1)
    assert stem_large.conv.kernel_size == (7, 7) and stem_large.conv.stride == (2, 2)
    euclidean_stem = isinstance(stem_large.conv, nn.Conv2d)
    assert isinstance(large.stem, nn.Sequential) == euclidean_stem  # max-pool only for Euclidean stems
    if euclidean_stem:
        assert isinstance(large.stem[1], nn.MaxPool2d)
    out = large(torch.randn(2, 3, 96, 96))
    assert out.shape == (2, 5) and torch.isfinite(out).all()


@pytest.mark.parametrize("name, tv", [("resnet18", "resnet18"), ("resnet50", "resnet50")])
def test_euclidean_matches_torchvision_architecture(name, tv):
    ours = create_model(name, num_classes=1000, img_size=224)
    ref = getattr(torchvision.models, tv)(weights=None)
    assert [p.shape for p in ours.parameters()] == [p.shape for p in ref.parameters()]
    # and the same function once the weights are shared (key renaming only)
    sd = ref.state_dict()
    mapped = {}
    for key, val in sd.items():
        new = key.replace("conv1.", "stem.0.conv.", 1) if key.startswith("conv1.") else key
        new = new.replace("bn1.", "stem.0.bn.", 1) if key.startswith("bn1.") else new
        new = new.replace(".conv2.", ".core.conv.").replace(".bn2.", ".core.bn.") if name == "resnet50" else new
        mapped[new] = val
    ours.load_state_dict(mapped)
    ours.eval(), ref.eval()
    x = torch.randn(1, 3, 32, 32)
    torch.testing.assert_close(ours(x), ref(x), rtol=1e-4, atol=1e-4)


@pytest.mark.parametrize("name", ["hcnn_resnet18", "hecnn_resnet18", "hecnn_resnet50", "hybrid_resnet18"])
def test_state_dict_round_trip_and_eval(name):
    a = _build(name)
    x = torch.randn(4, 3, 16, 16)
    a(x)  # update running statistics
    a.eval()
    with torch.no_grad():
        a.manifolds()[next(iter(a.manifolds()))].k.fill_(0.7)
    b = _build(name)
    b.load_state_dict(a.state_dict())
    b.eval()
    assert next(iter(b.manifolds().values())).k.item() == pytest.approx(0.7)
    ya, yb = a(x), b(x)
    assert torch.isfinite(ya).all()
    torch.testing.assert_close(ya, yb)


def test_float64_model():
    model = _build("hecnn_resnet18").double()
    out = model(torch.randn(2, 3, 8, 8, dtype=torch.float64))
    assert out.dtype == torch.float64 and torch.isfinite(out).all()
    assert all(isinstance(m, Lorentz) and m.k.dtype == torch.float64 for m in model.manifolds().values())
