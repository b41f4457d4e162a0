"""create_optimizer: parameter groups by type; state_dict round trip."""

from __future__ import annotations

import copy
import io

import pytest
import torch
from torch import nn

from lorentzcv.geometry import Lorentz, ManifoldParameter
from lorentzcv.geometry import math as lmath
from lorentzcv.optim import RiemannianAdamW, RiemannianSGD, create_optimizer

from ._optim_helpers import DEVICE


class TinyModel(nn.Module):
    def __init__(self, hook: bool = False) -> None:
        super().__init__()
        self.conv = nn.Conv2d(3, 4, 3)
        self.bn = nn.BatchNorm2d(4)
        self.linear = nn.Linear(4, 3)
        self.manifold = Lorentz(k=1.0, learnable=True, bounds=(0.1, 5.0))
        self.head_manifold = self.manifold  # shared: its k must appear once
        self.fixed = Lorentz(k=2.0)  # not learnable: no curvature entry
        self.proxies = ManifoldParameter(self.manifold.origin(5, 4), manifold=self.manifold)
        self.frozen = nn.Parameter(torch.ones(2, 2), requires_grad=False)
        self._hook = hook

    def no_weight_decay(self):
        return {"linear.weight"} if self._hook else set()

    def forward(self, img: torch.Tensor) -> torch.Tensor:
        h = self.linear(self.bn(self.conv(img)).mean(dim=(2, 3)))  # (B, 3)
        x = lmath.expmap0(torch.cat([torch.zeros_like(h[:, :1]), h], dim=-1), self.manifold.k)
        return lmath.dist(x[:, None], self.proxies[None], self.manifold.k)  # (B, 5)


def _names(groups):
    return {g["name"]: g for g in groups}


@pytest.mark.parametrize("name", ["rsgd", "radamw", "sgd", "adamw", "RAdamW"])
def test_groups_by_type(name: str) -> None:
    model = TinyModel()
    if name in ("sgd", "adamw"):
        with pytest.warns(UserWarning, match="Euclidean optimizer"):
            opt = create_optimizer(model, name, lr=0.1, weight_decay=5e-4, curvature_lr=1e-3, manifold_lr=0.02)
    else:
        opt = create_optimizer(model, name, lr=0.1, weight_decay=5e-4, curvature_lr=1e-3, manifold_lr=0.02)
    expected_cls = {"rsgd": RiemannianSGD, "radamw": RiemannianAdamW, "sgd": torch.optim.SGD,
                    "adamw": torch.optim.AdamW}[name.lower()]
    assert type(opt) is expected_cls
    g = _names(opt.param_groups)
    assert list(g) == ["decay", "no_decay", "manifold", "curvature"]
    ids = lambda grp: {id(p) for p in grp["params"]}  # noqa: E731
    assert ids(g["decay"]) == {id(model.conv.weight), id(model.linear.weight)}
    assert ids(g["no_decay"]) == {id(model.conv.bias), id(model.bn.weight), id(model.bn.bias),
                                  id(model.linear.bias)}
    assert ids(g["manifold"]) == {id(model.proxies)}
    assert ids(g["curvature"]) == {id(model.manifold.k)}
    assert (g["decay"]["lr"], g["decay"]["weight_decay"]) == (0.1, 5e-4)
    assert (g["no_decay"]["lr"], g["no_decay"]["weight_decay"]) == (0.1, 0.0)
    assert (g["manifold"]["lr"], g["manifold"]["weight_decay"]) == (0.02, 5e-4)
    assert (g["curvature"]["lr"], g["curvature"]["weight_decay"]) == (1e-3, 0.0)
    assert g["curvature"]["curvature"] is True and list(map(tuple, g["curvature"]["bounds"])) == [(0.1, 5.0)]
    # every trainable parameter in exactly one group, nothing else
    all_ids = [id(p) for grp in opt.param_groups for p in grp["params"]]
    assert len(all_ids) == len(set(all_ids))
    assert set(all_ids) == {id(p) for p in model.parameters() if p.requires_grad}


def test_no_weight_decay_hook_and_defaults() -> None:
    model = TinyModel(hook=True)
    opt = create_optimizer(model, "radamw", lr=1e-3, weight_decay=0.05)
    g = _names(opt.param_groups)
    assert {id(p) for p in g["decay"]["params"]} == {id(model.conv.weight)}
    assert id(model.linear.weight) in {id(p) for p in g["no_decay"]["params"]}
    assert g["manifold"]["lr"] == 1e-3  # manifold_lr defaults to lr
    assert (g["curvature"]["lr"], g["curvature"]["weight_decay"]) == (1e-4, 0.0)


def test_kwargs_pass_through_and_empty_groups_are_dropped() -> None:
    model = nn.Linear(3, 2)
    opt = create_optimizer(model, "rsgd", lr=0.1, weight_decay=1e-4, momentum=0.9, nesterov=True, stabilize=10)
    assert [g["name"] for g in opt.param_groups] == ["decay", "no_decay"]
    assert opt.param_groups[0]["nesterov"] and opt.param_groups[0]["stabilize"] == 10
    opt = create_optimizer(model, "radamw", lr=0.1, weight_decay=1e-4, betas=(0.5, 0.6), amsgrad=True)
    assert opt.param_groups[0]["betas"] == (0.5, 0.6) and opt.param_groups[0]["amsgrad"]


def test_plain_parameter_list_finds_curvature_through_manifold_parameters() -> None:
    model = TinyModel()
    opt = create_optimizer(list(model.parameters()), "radamw", lr=0.1, weight_decay=0.1)
    g = _names(opt.param_groups)
    assert [id(p) for p in g["curvature"]["params"]] == [id(model.manifold.k)]
    assert [id(p) for p in g["manifold"]["params"]] == [id(model.proxies)]


def test_unknown_name_lists_valid_names() -> None:
    with pytest.raises(ValueError, match=r"adamw.*radamw.*rsgd.*sgd"):
        create_optimizer(nn.Linear(2, 2), "adam", lr=0.1, weight_decay=0.0)


def _train(model: TinyModel, opt, steps: int, seed: int) -> None:
    g = torch.Generator().manual_seed(seed)
    for _ in range(steps):
        img = torch.randn(4, 3, 5, 5, generator=g).to(DEVICE)
        labels = torch.randint(0, 5, (4,), generator=g).to(DEVICE)
        opt.zero_grad()
        nn.functional.cross_entropy(-model(img), labels).backward()
        opt.step()


@pytest.mark.parametrize("name,kw", [
    ("radamw", dict(amsgrad=True)),
    ("rsgd", dict(momentum=0.9, nesterov=True, stabilize=3)),
    ("rsgd", dict(momentum=0.9, curvature_move="scale")),
])
def test_state_dict_round_trip(name: str, kw: dict) -> None:
    torch.manual_seed(0)
    model = TinyModel().to(DEVICE)
    opt = create_optimizer(model, name, lr=0.05, weight_decay=1e-2, curvature_lr=0.05, **kw)
    _train(model, opt, 5, seed=1)
    buf = io.BytesIO()
    torch.save({"model": model.state_dict(), "opt": opt.state_dict()}, buf)
    _train(model, opt, 5, seed=2)  # uninterrupted

    torch.manual_seed(123)  # a fresh model with different initial weights
    fresh = TinyModel().to(DEVICE)
    buf.seek(0)
    ckpt = torch.load(buf, weights_only=True)
    fresh.load_state_dict(ckpt["model"])
    opt2 = create_optimizer(fresh, name, lr=0.05, weight_decay=1e-2, curvature_lr=0.05, **kw)
    opt2.load_state_dict(ckpt["opt"])
    _train(fresh, opt2, 5, seed=2)
    for (n, a), (_, b) in zip(model.named_parameters(), fresh.named_parameters()):
        assert torch.equal(a, b), n
    assert float(model.manifold.k.detach()) != 1.0  # the curvature was learned along the way


def test_deepcopy_model_and_optimizer_state() -> None:
    model = TinyModel().to(DEVICE)
    opt = create_optimizer(model, "radamw", lr=0.05, weight_decay=1e-2, curvature_lr=0.05)
    _train(model, opt, 3, seed=1)
    twin = copy.deepcopy(model)
    opt2 = create_optimizer(twin, "radamw", lr=0.05, weight_decay=1e-2, curvature_lr=0.05)
    opt2.load_state_dict(copy.deepcopy(opt.state_dict()))
    assert twin.proxies.manifold is twin.manifold  # the copy's manifold parameter follows the copy's k
    _train(model, opt, 3, seed=4)
    _train(twin, opt2, 3, seed=4)
    for a, b in zip(model.parameters(), twin.parameters()):
        assert torch.equal(a, b)


@pytest.mark.parametrize("mode", ["aware", "naive", "naive_repaired"])
@pytest.mark.parametrize("name", ["rsgd", "radamw"])
def test_factory_and_config_accept_every_curvature_mode(name: str, mode: str) -> None:
    from lorentzcv.train.common import optimizer_kwargs
    from lorentzcv.train.config import load_config

    opt = create_optimizer(TinyModel(), name, lr=0.1, curvature_mode=mode)
    assert all(g["curvature_mode"] == mode for g in opt.param_groups)
    cfg = load_config(None, [f"optim.name={name}", f"optim.curvature_mode={mode}"])
    assert optimizer_kwargs(cfg.optim)["curvature_mode"] == mode


def test_unknown_curvature_mode_in_factory_and_config() -> None:
    from lorentzcv.train import ConfigError
    from lorentzcv.train.config import load_config

    with pytest.raises(ValueError, match="curvature_mode must be one of.*'naive_repaired'"):
        create_optimizer(TinyModel(), "rsgd", lr=0.1, curvature_mode="repaired")
    with pytest.raises(ConfigError, match="naive_repaired"):
        load_config(None, ["optim.curvature_mode=repaired"])
