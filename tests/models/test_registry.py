"""Registry: create_model / list_models / register_model (docs/design.md §3, §5)."""

from __future__ import annotations

import pytest
import torch
from torch import nn

from lorentzcv.models import _registry, create_model, is_model, list_models, model_entrypoint, register_model

EXPECTED = [
    "hcnn_resnet18", "hecnn_resnet18", "hecnn_resnet50", "hybrid_resnet18", "hybrid_resnet50", "resnet18", "resnet50",
]


def test_list_models_all_and_patterns():
    assert list_models() == EXPECTED
    assert list_models("*resnet18") == ["hcnn_resnet18", "hecnn_resnet18", "hybrid_resnet18", "resnet18"]
    assert list_models("hecnn_*") == ["hecnn_resnet18", "hecnn_resnet50"]
    assert list_models(["resnet50", "hybrid*"]) == ["hybrid_resnet18", "hybrid_resnet50", "resnet50"]
    assert list_models("*50", exclude="hybrid*") == ["hecnn_resnet50", "resnet50"]
    assert list_models("nothing*") == []


def test_unknown_model_suggests_close_match():
    with pytest.raises(ValueError, match=r"Unknown model 'hecnn_resnet81'.*Did you mean 'hecnn_resnet18'"):
        create_model("hecnn_resnet81")
    with pytest.raises(ValueError, match="Available models"):
        model_entrypoint("vit_tiny")
    assert is_model("resnet18") and not is_model("resnet19")


def test_unknown_kwarg_is_value_error_with_hint():
    with pytest.raises(ValueError, match=r"'learnk' \(did you mean 'learn_k'\?\)"):
        create_model("hecnn_resnet18", num_classes=3, img_size=8, width=4, learnk=True)
    with pytest.raises(ValueError, match="unknown keyword"):
        create_model("resnet18", num_classes=3, img_size=8, width=4, conv_impl="unfold")


def test_bad_choices_raise():
    with pytest.raises(ValueError, match="conv_impl"):
        create_model("hecnn_resnet18", num_classes=3, img_size=8, width=4, conv_impl="fast")
    with pytest.raises(ValueError, match="bn_variant"):
        create_model("hecnn_resnet50", num_classes=3, img_size=8, width=4, bn_variant="layer")
    with pytest.raises(ValueError, match="lift"):
        create_model("hybrid_resnet18", num_classes=3, img_size=8, width=4, lift="poincare")
    with pytest.raises(ValueError, match="layers"):
        create_model("resnet18", num_classes=3, img_size=8, width=4, layers=[])


def test_pretrained_true_raises():
    with pytest.raises(ValueError, match="no pretrained weights"):
        create_model("resnet18", pretrained=True)


def test_kwargs_pass_through():
    m = create_model("hecnn_resnet18", num_classes=7, in_chans=1, img_size=8, width=4, layers=(1, 2),
                     learn_k=False, k_init=0.5, rescale_s=3.0)
    assert len(m.layer1) == 1 and len(m.layer2) == 2 and not hasattr(m, "layer3")
    assert m.num_features == 8 and m.num_classes == 7
    for man in m.manifolds().values():
        assert not man.k.requires_grad
        assert man.k.item() == pytest.approx(0.5)
        assert man.rescale_config.s == 3.0
    assert m.default_cfg == dict(architecture="hecnn_resnet18", num_classes=7, in_chans=1, img_size=8)
    out = m(torch.randn(2, 1, 8, 8))
    assert out.shape == (2, 7)


def test_register_model_rejects_duplicates_and_cleans_up():
    def my_test_model(*, num_classes=10, in_chans=3, img_size=32):
        return nn.Linear(in_chans, num_classes)

    try:
        register_model(my_test_model)
        assert register_model(my_test_model) is my_test_model  # idempotent for the same function
        assert "my_test_model" in list_models()
        assert create_model("my_test_model", num_classes=4, in_chans=2).out_features == 4

        def my_test_model(*, num_classes=10, in_chans=3, img_size=32):  # noqa: F811 - a different function
            return nn.Identity()

        with pytest.raises(ValueError, match="already registered"):
            register_model(my_test_model)
    finally:
        _registry._model_entrypoints.pop("my_test_model", None)
    assert "my_test_model" not in list_models()


@pytest.mark.parametrize("name", ["resnet18", "hybrid_resnet18", "hecnn_resnet18"])
def test_reset_classifier(name):
    m = create_model(name, num_classes=5, img_size=8, width=4, layers=(1, 1))
    x = torch.randn(3, 3, 8, 8)
    assert m(x).shape == (3, 5)
    m.reset_classifier(2)
    assert m.get_classifier() is m.fc and m.num_classes == 2
    assert m(x).shape == (3, 2)
    m.reset_classifier(0)
    assert isinstance(m.get_classifier(), nn.Identity)
    feats = m(x)
    lorentz = bool(m.manifolds())
    assert feats.shape == (3, m.num_features + int(lorentz))
    # the manifolds survive removing the classifier (they are registered on the model)
    assert set(m.manifolds()) == set(create_model(name, num_classes=5, img_size=8, width=4, layers=(1, 1)).manifolds())
    with pytest.raises(ValueError):
        m.reset_classifier(-1)
