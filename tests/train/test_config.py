"""Typed config: YAML + ``--set`` overrides, strict keys and types, round trip, every shipped config."""

from __future__ import annotations

import dataclasses
from pathlib import Path

import pytest
import yaml

from lorentzcv.train import Config, ConfigError, build_model, build_optimizer, config_to_dict, load_config, save_config
from lorentzcv.train.config import apply_overrides, parse_override

REPO = Path(__file__).resolve().parents[2]
# Metric-learning configs (task: metric) have their own test: tests/metric/test_configs.py.
CONFIGS = sorted(p for p in (REPO / "configs").rglob("*.yaml") if p.relative_to(REPO / "configs").parts[0] != "metric")
DEMO = REPO / "configs" / "demo" / "digits_hecnn.yaml"


# ------------------------------------------------------------------------------------------ overrides
def test_overrides_are_yaml_values():
    cfg = load_config(None, ["optim.lr=1e-3", "schedule.milestones=[1, 2]", "model.kwargs.foo=3",
                             "data.root=/x/y", "model.learn_k=false", "train.grad_clip_norm=null",
                             "optim.curvature_lr=2"])
    assert cfg.optim.lr == 1e-3 and isinstance(cfg.optim.lr, float)
    assert cfg.schedule.milestones == [1, 2]
    assert cfg.model.kwargs == {"foo": 3}
    assert cfg.data.root == "/x/y"
    assert cfg.model.learn_k is False
    assert cfg.train.grad_clip_norm is None
    assert cfg.optim.curvature_lr == 2.0 and isinstance(cfg.optim.curvature_lr, float)  # int -> float


def test_yaml11_exponent_strings_become_floats(tmp_path):
    p = tmp_path / "c.yaml"
    p.write_text("optim:\n  lr: 1e-4\n  weight_decay: 5e-4\n")  # PyYAML reads these as strings
    cfg = load_config(p)
    assert cfg.optim.lr == 1e-4 and cfg.optim.weight_decay == 5e-4


def test_later_overrides_win_and_sections_are_created():
    d = apply_overrides({"optim": {"lr": 0.1}}, ["optim.lr=0.2", "optim.lr=0.3", "train.epochs=4"])
    assert d == {"optim": {"lr": 0.3}, "train": {"epochs": 4}}


@pytest.mark.parametrize("text", ["optim.lr", "=3", "optim..lr=1", "a.=1"])
def test_bad_override_syntax(text):
    with pytest.raises(ConfigError, match="KEY=VALUE"):
        parse_override(text)


def test_unknown_key_lists_valid_keys_and_suggests():
    with pytest.raises(ConfigError) as e:
        load_config(None, ["optim.lrr=0.1"])
    msg = str(e.value)
    assert "unknown config key 'optim.lrr'" in msg and "did you mean 'optim.lr'" in msg
    assert "momentum" in msg and "curvature_lr" in msg  # valid keys listed
    with pytest.raises(ConfigError, match="unknown config key 'modle'.*did you mean 'model'"):
        load_config(None, ["modle.width=3"])


@pytest.mark.parametrize(
    ("override", "expected"),
    [
        ("optim.lr=fast", "'optim.lr' expects float"),
        ("train.epochs=1.5", "'train.epochs' expects int"),
        ("train.epochs=true", "'train.epochs' expects int"),
        ("model.learn_k=3", "'model.learn_k' expects bool | null"),
        ("schedule.milestones=5", "'schedule.milestones' expects list of int"),
        ("schedule.milestones=[a]", r"'schedule.milestones\[0\]' expects int.*--set schedule.milestones="),
        ("optim.name=rsdg", "must be one of 'rsgd'.*did you mean 'rsgd'"),
        ("train.amp=half", "must be one of 'none', 'bf16', 'fp16', 'auto'"),
        ("optim=3", "section 'optim' must be a mapping"),
    ],
)
def test_wrong_types_are_clear_errors(override, expected):
    with pytest.raises(ConfigError, match=expected):
        load_config(None, [override])


@pytest.mark.parametrize(
    ("override", "expected"),
    [
        ("train.epochs=0", "train.epochs must be >= 1"),
        ("data.val_fraction=1.5", "val_fraction"),
        ("schedule.milestones=[3, 1]", "increasing"),
        ("optim.betas=[0.9]", "two entries"),
    ],
)
def test_cross_field_validation(override, expected):
    with pytest.raises(ConfigError, match=expected):
        load_config(None, [override])


@pytest.mark.parametrize(
    "override",
    ["optim.lr=nan", "optim.lr=.inf", "optim.weight_decay=nan", "optim.curvature_lr=nan", "optim.manifold_lr=inf",
     "schedule.warmup_start_factor=nan", "schedule.gamma=-.inf", "optim.betas=[0.9, nan]", "model.k_init=inf",
     "train.grad_clip_norm=nan", "train.ddp_timeout_s=inf"],
)
def test_non_finite_numbers_are_refused_anywhere(override):
    key = override.split("=")[0]
    with pytest.raises(ConfigError, match=rf"'{key}(\[1\])?' must be a finite number"):
        load_config(None, [override])


@pytest.mark.parametrize(
    ("override", "expected"),
    [
        ("optim.curvature_lr=-1e-4", "optim.curvature_lr must be >= 0"),
        ("optim.manifold_lr=-0.1", "optim.manifold_lr must be >= 0"),
        ("optim.weight_decay=-1", "weight_decay must be >= 0"),
        ("schedule.min_lr_factor=-5", r"schedule.min_lr_factor must be in \[0, 1\]"),
        ("schedule.warmup_start_factor=-0.1", r"schedule.warmup_start_factor must be in \[0, 1\]"),
        ("train.label_smoothing=2", r"train.label_smoothing must be in \[0, 1\]"),
        ("train.threads=-1", "train.threads must be >= 1"),
        ("train.device=meta", "train.device must be auto, cpu, cuda"),
        ("train.max_skipped_steps=0", "train.max_skipped_steps must be >= 1"),
        ("train.ddp_timeout_s=0", "train.ddp_timeout_s must be > 0"),
        ("optim.betas=[0.9, 1.5]", r"optim.betas must be in \[0, 1\)"),
        ("optim.eps=0", "optim.eps must be > 0"),
    ],
)
def test_values_that_can_only_give_nans_or_crash_are_refused(override, expected):
    with pytest.raises(ConfigError, match=expected):
        load_config(None, [override])


def test_refused_values_leave_no_run_directory(tmp_path, capsys):
    from lorentzcv.cli import main

    run = tmp_path / "run"
    for override in ("train.label_smoothing=2", "train.threads=-1", "train.device=meta", "optim.lr=nan"):
        assert main(["train", "--set", override, "--set", f"output.dir={run}"]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 4 and all(line.startswith("error: ") for line in err)
    assert "must be a finite number" in err[3]
    assert not run.exists()


def test_reliability_defaults():
    t, o = Config().train, Config().output
    assert t.max_skipped_steps == 10 and t.ddp_timeout_s == 300.0 and o.overwrite is False
    assert load_config(None, ["train.max_skipped_steps=null"]).train.max_skipped_steps is None


def test_bad_files(tmp_path):
    with pytest.raises(ConfigError, match="not found"):
        load_config(tmp_path / "missing.yaml")
    bad = tmp_path / "bad.yaml"
    bad.write_text("model: [unclosed\n")
    with pytest.raises(ConfigError, match="not valid YAML at line"):
        load_config(bad)
    lst = tmp_path / "list.yaml"
    lst.write_text("- 1\n- 2\n")
    with pytest.raises(ConfigError, match="must hold a mapping"):
        load_config(lst)


def test_round_trip_through_yaml(tmp_path):
    cfg = load_config(None, ["optim.lr=0.03", "schedule.name=multistep", "model.kwargs.x=[1, 2]"])
    save_config(cfg, tmp_path / "config.yaml")
    assert load_config(tmp_path / "config.yaml") == cfg
    assert yaml.safe_load((tmp_path / "config.yaml").read_text()) == config_to_dict(cfg)


def test_create_kwargs_leave_out_none():
    cfg = load_config(None, ["model.name=resnet18", "model.width=8", "model.layers=null"])
    assert cfg.model.create_kwargs() == {"width": 8}
    cfg = load_config(None, ["model.learn_k=false", "model.kwargs.lift=rescale"])
    assert cfg.model.create_kwargs() == {"width": 16, "layers": [1, 1, 1, 1], "learn_k": False, "lift": "rescale"}


# ------------------------------------------------------------------------------------ shipped configs
def test_demo_yaml_is_the_builtin_default():
    assert load_config(DEMO) == Config()
    assert load_config(None) == Config()


def test_expected_config_files_exist():
    names = {p.relative_to(REPO / "configs").as_posix() for p in CONFIGS}
    for ds in ("cifar10", "cifar100", "miniimagenet"):
        for m in ("resnet18", "hybrid_resnet18", "hybrid_plus_resnet18", "hcnn_resnet18", "hecnn_resnet18"):
            assert f"classification/table2/{ds}_{m}.yaml" in names
    for ds in ("cifar10", "cifar100", "tinyimagenet"):
        for m in ("resnet50", "hybrid_resnet50", "hecnn_resnet50"):
            assert f"classification/table3/{ds}_{m}.yaml" in names
    for a in ("full", "no_curvature_learning", "naive_curvature", "no_rescaling", "unfold_conv", "radamw",
              "shared_curvature"):
        assert f"ablation/table5/cifar100_hecnn_resnet50_{a}.yaml" in names  # Table 5: ResNet-50 on CIFAR-100
    assert "demo/digits_hecnn.yaml" in names


@pytest.mark.parametrize("path", CONFIGS, ids=lambda p: p.relative_to(REPO / "configs").as_posix())
def test_every_config_loads_and_builds(path):
    from lorentzcv.data import get_dataset_info

    cfg = load_config(path)
    text = path.read_text()
    assert text.startswith("#")  # every file says what it is and where its values come from
    info = get_dataset_info(cfg.data.name)
    model = build_model(cfg, info.num_classes, info.in_chans, info.img_size)
    opt = build_optimizer(cfg, model)
    groups = {g["name"] for g in opt.param_groups}
    learns_k = any(m.k.requires_grad for m in _manifolds(model))
    assert ("curvature" in groups) == learns_k
    if path.parent.name in ("table2", "table3", "table5"):
        # §8 protocol values in every paper row
        assert (cfg.train.epochs, cfg.data.batch_size, cfg.train.seed) == (200, 128, 1)
        assert cfg.schedule.name == "multistep" and cfg.schedule.milestones == [60, 120, 160]
        assert cfg.schedule.gamma == 0.2
        if cfg.optim.name in ("sgd", "rsgd"):
            assert (cfg.optim.lr, cfg.optim.momentum, cfg.optim.nesterov, cfg.optim.weight_decay) == (0.1, 0.9, True, 5e-4)
        assert (cfg.optim.curvature_lr, cfg.optim.curvature_weight_decay) == (1e-4, 0.0)
        assert cfg.data.val_fraction == 0.0 or cfg.data.val_fraction > 0  # never selects on test by construction
    if cfg.model.name.startswith("hecnn") and "ablation" not in path.parts:
        # the paper's HECNN+ (issue #4, docs/design.md §4.7): separate learnable encoder/decoder curvatures,
        # rescaling with s = 2, curvature-aware Riemannian SGD
        mans = _manifolds(model)
        assert len(mans) == 2 and all(m.k.requires_grad for m in mans)
        assert all(m.rescale_config.enabled and m.rescale_config.s == 2.0 for m in mans)
        assert cfg.optim.name == "rsgd" and cfg.optim.curvature_mode == "aware"


def _manifolds(model):
    from lorentzcv.geometry import named_manifolds

    return list(named_manifolds(model).values())


def _flat(d, prefix=""):
    out = {}
    for k, v in d.items():
        if isinstance(v, dict) and k != "kwargs":
            out.update(_flat(v, f"{prefix}{k}."))
        else:
            out[f"{prefix}{k}"] = v
    return out


ABLATIONS = {
    "no_curvature_learning": {"model.learn_k": False},
    "naive_curvature": {"optim.curvature_mode": "naive"},
    "no_rescaling": {"model.rescale": False},
    "unfold_conv": {"model.conv_impl": "unfold"},
    "radamw": {"optim.name": "radamw"},
    "shared_curvature": {"model.separate_decoder": False},
}


@pytest.mark.parametrize("ablation", sorted(ABLATIONS))
def test_ablations_change_only_their_component(ablation):
    base = REPO / "configs" / "ablation" / "table5"
    full = _flat(config_to_dict(load_config(base / "cifar100_hecnn_resnet50_full.yaml")))
    abl = _flat(config_to_dict(load_config(base / f"cifar100_hecnn_resnet50_{ablation}.yaml")))
    diff = {k: abl[k] for k in full if abl[k] != full[k] and k != "output.name"}
    expected = ABLATIONS[ablation]
    assert {k: diff[k] for k in expected} == expected
    if ablation == "radamw":  # the optimizer's own hyper-parameters may differ too, nothing else
        assert all(k.startswith("optim.") for k in diff)
    else:
        assert diff == expected
    table3 = REPO / "configs" / "classification" / "table3" / "cifar100_hecnn_resnet50.yaml"
    t3 = _flat(config_to_dict(load_config(table3)))
    assert {k: v for k, v in t3.items() if k != "output.name"} == {k: v for k, v in full.items() if k != "output.name"}


def test_config_dataclasses_have_no_mutable_sharing():
    a, b = Config(), Config()
    a.schedule.milestones.append(7)
    assert b.schedule.milestones == [60, 120, 160]
    assert dataclasses.asdict(Config()) == config_to_dict(Config())
