"""timm citizenship: registry names, features_only, drop_rate/drop_path_rate, num_classes=0, local weights."""

from __future__ import annotations

import subprocess
import sys
import warnings

import pytest
import timm
import torch

import lorentzcv  # noqa: F401  (registers the classifiers with timm)
from lorentzcv.geometry import math as lmath
from lorentzcv.models import (
    ResNet,
    create_embedding_model,
    create_model,
    list_embedding_models,
    list_models,
    register_timm_models,
)
from lorentzcv.models._drop import LorentzDropout, LorentzDropPath
from lorentzcv.models._timm import timm_names

SMALL = dict(img_size=16, width=4, layers=(1, 1))


def _on_manifold(x: torch.Tensor, k: torch.Tensor, dim: int) -> bool:
    inner = -lmath.time(x, dim=dim) ** 2 + (lmath.space(x, dim=dim) ** 2).sum(dim, keepdim=True)
    return torch.allclose(inner, -k.expand_as(inner), atol=1e-4, rtol=1e-4)


def test_every_classifier_is_registered_without_shadowing_timm():
    mapping = register_timm_models()
    for name in list_models():
        assert mapping[f"lorentzcv_{name}"] == name
    # timm's own resnet18/resnet50 stay timm's; the hyperbolic names are free and ours
    assert "resnet18" not in mapping and "resnet50" not in mapping
    assert not isinstance(timm.create_model("resnet18", pretrained=False), ResNet)
    assert isinstance(timm.create_model("lorentzcv_resnet18", **SMALL), ResNet)
    for name in ("hybrid_resnet18", "hybrid_resnet50", "hcnn_resnet18", "hecnn_resnet18", "hecnn_resnet50"):
        assert mapping[name] == name and timm.is_model(name)
    assert set(timm.list_models("lorentzcv_*")) == {f"lorentzcv_{n}" for n in list_models()}
    assert timm_names("resnet18", taken=lambda n: True) == ["lorentzcv_resnet18"]
    assert timm_names("x", taken=lambda n: False) == ["lorentzcv_x", "x"]


def test_timm_entrypoint_goes_through_create_model():
    torch.manual_seed(0)
    a = timm.create_model("hecnn_resnet18", num_classes=3, learn_k=False, **SMALL)
    torch.manual_seed(0)
    b = create_model("hecnn_resnet18", num_classes=3, learn_k=False, **SMALL)
    assert a.state_dict().keys() == b.state_dict().keys()
    assert all(torch.equal(a.state_dict()[k], b.state_dict()[k]) for k in a.state_dict())
    assert a.pretrained_cfg["architecture"] == "hecnn_resnet18" and a.pretrained_cfg["url"] == ""
    with pytest.raises(ValueError, match="'learnk' \\(did you mean 'learn_k'\\?\\)"):
        timm.create_model("hecnn_resnet18", learnk=True)
    with pytest.raises(ValueError, match="output_stride"):
        timm.create_model("hecnn_resnet18", output_stride=8, **SMALL)


def test_registration_in_either_import_order():
    code = ("import sys, lorentzcv\n"
            "assert 'timm' not in sys.modules, 'import lorentzcv must not import timm'\n"
            "import timm\n"
            "m = timm.create_model('hecnn_resnet18', num_classes=2, img_size=8, width=2, layers=(1,))\n"
            "print(type(m).__name__)\n")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    assert out.returncode == 0 and out.stdout.strip() == "ResNet", out.stderr


@pytest.mark.parametrize("name", ["hecnn_resnet18", "lorentzcv_resnet50", "hybrid_resnet18", "hecnn_resnet50"])
def test_features_only(name):
    model = timm.create_model(name, features_only=True, **SMALL)
    x = torch.randn(2, 3, 16, 16)
    feats = model(x)
    assert len(feats) == 3  # stem + 2 stages
    assert [f.shape[1] for f in feats] == model.feature_info.channels()
    assert [16 // f.shape[-1] for f in feats] == model.feature_info.reduction()
    picked = timm.create_model(name, features_only=True, out_indices=(2,), **SMALL)(x)
    assert len(picked) == 1 and picked[0].shape == feats[2].shape
    if name == "hecnn_resnet18":  # hyperbolic stages: Lorentz points, time at channel 0 (+1 channel)
        ref = create_model(name, num_classes=0, **SMALL)
        assert model.feature_info.channels() == [5, 5, 9]
        k = ref.encoder_manifold.k.detach().view(1, 1, 1, 1)
        assert all(_on_manifold(f.detach(), k, dim=1) for f in feats)


def test_forward_intermediates_and_prune():
    model = create_model("hecnn_resnet18", num_classes=3, **SMALL)
    x = torch.randn(2, 3, 16, 16)
    last, inter = model.forward_intermediates(x, indices=[0, -1])
    assert len(inter) == 2 and torch.equal(last, inter[-1])
    assert torch.allclose(model.forward_features(x), last)
    assert model.prune_intermediate_layers(indices=[1]) == [1]
    assert model.stage_names == ["layer1"] and not hasattr(model, "layer2") and model.num_classes == 0
    with pytest.raises(ValueError, match="NCHW"):
        model.forward_intermediates(x, output_fmt="NHWC")


@pytest.mark.parametrize("name", ["hecnn_resnet18", "lorentzcv_resnet18", "hybrid_resnet18"])
def test_num_classes_zero_gives_pooled_features(name):
    model = timm.create_model(name, num_classes=0, **SMALL).eval()
    z = model(torch.randn(2, 3, 16, 16))
    space = model.num_features
    assert z.shape == ((2, 1 + space) if model.manifolds() else (2, space))
    assert model.get_classifier().__class__.__name__ == "Identity"


@pytest.mark.parametrize("name", list_models())
def test_drop_rate_and_drop_path_rate(name):
    torch.manual_seed(0)
    plain = create_model(name, num_classes=3, **SMALL)
    dropped = create_model(name, num_classes=3, drop_rate=0.5, drop_path_rate=0.5, **SMALL)
    # drop layers add no state: weights move between the two in both directions
    dropped.load_state_dict(plain.state_dict())
    x = torch.randn(4, 3, 16, 16)
    plain.eval(), dropped.eval()
    assert torch.allclose(plain(x), dropped(x), atol=1e-5)  # identity in eval mode
    dropped.train()
    torch.manual_seed(1)
    y = dropped(x)
    assert torch.isfinite(y).all() and y.shape == (4, 3)
    y.sum().backward()
    n_drop_path = sum(type(m).__name__ in ("DropPath", "LorentzDropPath") for m in dropped.modules())
    assert n_drop_path == 1  # linear rule over 2 blocks: rates 0 and 0.5
    with pytest.raises(ValueError, match="drop_rate"):
        create_model(name, num_classes=3, drop_rate=1.0, **SMALL)


def test_lorentz_dropout_and_drop_path_keep_points_on_the_manifold():
    from lorentzcv.geometry import Lorentz

    man = Lorentz(2.0)
    x = lmath.add_time(torch.randn(8, 5), man.k.detach())
    for layer in (LorentzDropout(man, 0.5), LorentzDropPath(man, 0.5)):
        torch.manual_seed(0)
        y = layer.train()(x)
        assert _on_manifold(y, man.k.detach(), dim=-1) and not torch.equal(y, x)
        assert torch.equal(layer.eval()(x), x)
        assert not list(layer.state_dict())  # the manifold is the model's, not the layer's
    torch.manual_seed(0)
    y = LorentzDropPath(man, 0.5).train()(x)
    dropped_rows = (lmath.space(y) == 0).all(-1)
    assert dropped_rows.any() and torch.allclose(lmath.time(y)[dropped_rows], man.k.detach().sqrt())
    with pytest.raises(ValueError, match=r"\[0, 1\)"):
        LorentzDropout(man, 1.0)


def test_pretrained_without_a_file_is_one_clear_error():
    with pytest.raises(ValueError, match=r"no pretrained weights are published for 'hecnn_resnet18'.*"
                                         r"pretrained_cfg_overlay=dict\(file="):
        timm.create_model("hecnn_resnet18", pretrained=True)
    with pytest.raises(FileNotFoundError, match="does not exist"):
        timm.create_model("hecnn_resnet18", pretrained=True, pretrained_cfg_overlay=dict(file="/no/such/file.pt"))


def test_local_weights_through_pretrained_cfg_overlay(tmp_path):
    kw = dict(num_classes=3, **SMALL)
    src = create_model("hecnn_resnet18", **kw).eval()
    path = tmp_path / "best.pt"
    torch.save({"model": src.state_dict(), "epoch": 1}, path)  # a lorentzcv checkpoint layout
    x = torch.randn(2, 3, 16, 16)
    m = timm.create_model("hecnn_resnet18", pretrained=True, pretrained_cfg_overlay=dict(file=str(path)), **kw)
    assert torch.allclose(m.eval()(x), src(x))
    # another class count: the body loads, the classifier stays fresh, one warning says so
    with warnings.catch_warnings(record=True) as w:
        warnings.simplefilter("always")
        m5 = timm.create_model("hecnn_resnet18", pretrained=True, pretrained_cfg_overlay=dict(file=str(path)),
                               **{**kw, "num_classes": 5})
    assert any("classifier is freshly initialised" in str(i.message) for i in w)
    assert torch.allclose(m5.eval().forward_features(x), src.forward_features(x))
    # features_only models load the same weights
    f = timm.create_model("hecnn_resnet18", features_only=True, pretrained=True,
                          pretrained_cfg_overlay=dict(file=str(path)), **kw)
    assert torch.allclose(f.eval()(x)[-1], src.forward_features(x))
    with pytest.raises(ValueError, match=r"do not match 'hecnn_resnet18'.*size mismatch.*pass the model options"):
        timm.create_model("hecnn_resnet18", pretrained=True, pretrained_cfg_overlay=dict(file=str(path)),
                          **{**kw, "width": 8})


def test_pretrained_cfg_input_size_selects_the_stem():
    small = timm.create_model("lorentzcv_resnet18", pretrained_cfg_overlay=dict(input_size=(3, 32, 32)), width=4)
    big = timm.create_model("lorentzcv_resnet18", width=4)
    assert small.feature_info[0]["reduction"] == 1 and big.feature_info[0]["reduction"] == 4


def test_create_embedding_model_accepts_a_built_backbone():
    bb = timm.create_model("resnet18", num_classes=0)
    model = create_embedding_model(bb, "lorentz", 16)
    assert model.backbone.body is bb
    z = model(torch.randn(2, 3, 32, 32))
    assert z.shape == (2, 17) and _on_manifold(z.detach(), model.manifold.k.detach(), dim=-1)
    ours = create_model("hybrid_resnet18", num_classes=0, **SMALL)  # Euclidean maps: GAP+GMP pooling works
    assert create_embedding_model(ours, "euclidean", 8)(torch.randn(2, 3, 16, 16)).shape == (2, 8)
    with pytest.raises(ValueError, match="used as is; pretrained"):
        create_embedding_model(bb, "lorentz", 8, pretrained=True)
    with pytest.raises(ValueError, match="num_classes=0 or call reset_classifier"):
        create_embedding_model(timm.create_model("vit_tiny_patch16_224", img_size=32), "lorentz", 8)
    with pytest.raises(ValueError, match="num_features"):
        create_embedding_model(torch.nn.Linear(3, 4), "lorentz", 8)
    with pytest.raises(ValueError, match="gives Lorentz points"):
        create_embedding_model(create_model("hecnn_resnet18", num_classes=0, **SMALL), "lorentz", 8)


def test_list_embedding_models():
    names = list_embedding_models()
    assert "lorentz_embed_resnet50" in names and "euclidean_embed_bninception" in names
    assert list_embedding_models("lorentz_*") == sorted(n for n in names if n.startswith("lorentz_"))
    assert not set(names) & set(list_models())
