"""Metric-learning training (HIER / LHIER / Proxy-Anchor) through the engine, end to end on tiny data.

The fixture is CUB's real on-disk layout (``CUB_200_2011/images/<NNN.Name>/*.png``) holding a class-disjoint
retrieval problem that a random network does not solve and a trained one does: class ``c`` is a hue (train
classes even hues, test classes the odd ones in between) buried in strong per-pixel noise.
"""

from __future__ import annotations

import io
import json
import math
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image
from torch.utils.data import DataLoader

from lorentzcv.cli import main as cli_main
from lorentzcv.geometry import ManifoldParameter
from lorentzcv.geometry import math as lmath
from lorentzcv.train import evaluate_checkpoint, load_checkpoint, load_config, resume_config, train
from lorentzcv.train.common import seed_everything
from lorentzcv.train.metric import (
    MetricTrainer,
    build_metric_datasets,
    build_metric_model,
    build_metric_optimizer,
    build_objective,
    evaluate_retrieval,
)

from ..data import fixtures as fx
from .conftest import DEVICE


def write_noisy_cub(root: Path, num_classes: int = 16, n_per_class: int = 12, size: int = 16,
                    noise: float = 70.0, seed: int = 0) -> Path:
    """CUB layout; class ``c``'s images are its hue ± uniform noise (PNG, lossless)."""
    rng = np.random.default_rng(seed)
    half = num_classes // 2
    for c in range(num_classes):
        h = 2 * c if c < half else 2 * (c - half) + 1
        ang = 2 * math.pi * h / num_classes
        base = np.array([128 + 90 * math.cos(ang), 128 + 90 * math.sin(ang), 128.0])
        folder = root / "CUB_200_2011" / "images" / f"{c + 1:03d}.Bird_{c}"
        folder.mkdir(parents=True, exist_ok=True)
        for j in range(n_per_class):
            img = base + rng.uniform(-noise, noise, size=(size, size, 3))
            Image.fromarray(np.clip(img, 0, 255).astype(np.uint8)).save(folder / f"Bird_{c}_{j:04d}.png")
    return root


@pytest.fixture(scope="module")
def cub_root(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return write_noisy_cub(tmp_path_factory.mktemp("noisy_cub"))


def tiny(root: Path) -> list[str]:
    """Overrides turning any metric config into a seconds-long CPU run on the fixture."""
    return ["task=metric", "data.name=cub", f"data.root={root}", "data.img_size=16", f"train.device={DEVICE}",
            "output.progress=false", "output.tensorboard=false", "data.batch_size=16", "model.pretrained=false",
            "model.backbone=convnet_small", "model.backbone_kwargs.width=8", "model.embedding_dim=16",
            "loss.num_proxies=16", "loss.topk=8", "loss.num_triplets=10", "train.epochs=4",
            "metric.recall_ks=[1, 2]", "optim.lr=3e-3", "metric.proxy_lr_scale=100", "optim.curvature_lr=0.05"]


MODES = {
    "euclidean": ["model.head=euclidean", "loss.name=proxy_anchor", "optim.name=adamw"],
    "hier": ["model.head=poincare", "loss.name=hier", "optim.name=adamw"],
    "lhier": ["model.head=lorentz", "loss.name=hier", "optim.name=radamw"],
}


def _cfg(root: Path, run_dir: Path, mode: str, extra=()):
    return load_config(None, [*tiny(root), *MODES[mode], f"output.dir={run_dir}", *extra])


def _run(cfg, resume=None, cls=MetricTrainer):
    return cls(cfg, resume=resume, stream=io.StringIO()).run()


def _initial_model(cfg):
    """The model exactly as the trainer builds it (same seed), before any step."""
    data = build_metric_datasets(cfg, splits=("eval",))
    seed_everything(cfg.train.seed)
    return build_metric_model(cfg, data["in_chans"], data["img_size"]), data


# ---------------------------------------------------------------------------------------------- learning
@pytest.mark.parametrize("mode", list(MODES))
def test_training_raises_recall_above_initialisation(tmp_path, cub_root, mode):
    cfg = _cfg(cub_root, tmp_path / "run", mode)
    model0, data = _initial_model(cfg)
    loaders = {s: DataLoader(d, batch_size=64) for s, d in data["eval"].items()}
    r0 = evaluate_retrieval(model0, loaders, torch.device(DEVICE), (1, 2))
    s = _run(cfg)
    assert s["recall"][1] > r0["R@1"] and s["recall"][1] >= 0.95, (r0, s["recall"])
    assert s["map_at_r"] > r0["MAP@R"] + 0.2
    rows = [json.loads(line) for line in (tmp_path / "run" / "metrics.jsonl").read_text().splitlines()]
    assert [r["epoch"] for r in rows] == [1, 2, 3, 4]
    for key in ("train_loss", "loss_pa", "R@1", "R@2", "MAP@R", "lr", "lr/backbone", "lr/head", "lr/proxies",
                "throughput", "epoch_time"):
        assert key in rows[-1]
    assert ("loss_hier" in rows[-1]) == (mode != "euclidean") and ("lr/lcas" in rows[-1]) == (mode != "euclidean")
    assert ("K/head.manifold" in rows[-1]) == (mode == "lhier")
    assert rows[0]["train_loss"] > rows[-1]["train_loss"]


# ------------------------------------------------------------------------------------------------ LHIER
@pytest.fixture(scope="module")
def lhier_runs(tmp_path_factory, cub_root):
    """An uninterrupted 2-epoch LHIER run and the same run stopped after epoch 1 and resumed."""
    base = tmp_path_factory.mktemp("lhier")
    full = _cfg(cub_root, base / "full", "lhier", ["train.epochs=2"])
    s_full = _run(full)
    half = _cfg(cub_root, base / "resumed", "lhier", ["train.epochs=1"])
    _run(half)
    s_res = _run(resume_config(base / "resumed", ["train.epochs=2"]), resume=base / "resumed")
    return {"full": base / "full", "resumed": base / "resumed", "s_full": s_full, "s_res": s_res, "cfg": full}


def test_lhier_curvature_learns_and_lcas_stay_on_the_manifold(lhier_runs):
    state = torch.load(lhier_runs["full"] / "last.pt", weights_only=True)  # plain tensors/containers only
    k = state["model"]["head.manifold.k"]
    assert state["objective"]["hier_loss.manifold.k"].item() == k.item()  # one shared curvature
    assert abs(k.item() - 10.0) > 1e-3  # learned (init 10 = HIER's c = 0.1)
    assert lhier_runs["s_full"]["curvatures"]["head.manifold"] == pytest.approx(-1 / k.item())
    lcas = state["objective"]["hier_loss.lcas"].double()
    assert lcas.shape == (16, 17)
    inner = lmath.inner(lcas, lcas, dim=-1)
    assert torch.allclose(inner, -k.double().expand_as(inner), rtol=1e-4)  # <x,x>_L = -k after the k moves
    assert (lcas[:, 0] > 0).all()


def test_lhier_resume_is_exact(lhier_runs):
    a = load_checkpoint(lhier_runs["full"] / "last.pt")
    b = load_checkpoint(lhier_runs["resumed"] / "last.pt")
    assert a["epoch"] == b["epoch"] == 2
    for part in ("model", "objective"):
        assert a[part].keys() == b[part].keys()
        for key in a[part]:
            assert torch.equal(a[part][key], b[part][key]), f"{part}.{key} differs after resume"
    assert a["history"][-1]["R@1"] == b["history"][-1]["R@1"]
    log = (lhier_runs["resumed"] / "log.txt").read_text()
    assert "resuming" in log and len((lhier_runs["resumed"] / "metrics.jsonl").read_text().splitlines()) == 2


def test_lhier_checkpoint_eval_matches_training_and_cli(lhier_runs, capsys):
    r = evaluate_checkpoint(lhier_runs["full"])  # dispatches on task: metric
    assert r["task"] == "metric" and r["split"] == "test" and r["protocol"] == "leave-one-out"
    assert r["recall"][1] == pytest.approx(lhier_runs["s_full"]["recall"][1])
    assert r["map_at_r"] == pytest.approx(lhier_runs["s_full"]["map_at_r"])
    assert cli_main(["eval", str(lhier_runs["full"]), "--json", "--device", DEVICE]) == 0
    out = json.loads(capsys.readouterr().out)
    assert out["recall"]["1"] == pytest.approx(r["recall"][1])
    assert cli_main(["eval", str(lhier_runs["full"]), "--device", DEVICE]) == 0
    assert "R@1" in capsys.readouterr().out


# ------------------------------------------------------------------------------------- model selection
def test_val_split_holds_out_training_classes_and_selects_best(tmp_path, cub_root):
    cfg = _cfg(cub_root, tmp_path / "run", "euclidean",
               ["data.val_fraction=0.25", "train.epochs=3", "train.eval_test_every=1"])
    data = build_metric_datasets(cfg)
    train_files = {Path(f).parent.name for f in data["train"].items}
    val_files = {Path(f).parent.name for f in data["val"].items}
    test_files = {Path(f).parent.name for f in data["eval"]["test"].items}
    assert len(train_files) == 6 and len(val_files) == 2 and len(test_files) == 8  # 2 of 8 train classes held out
    assert not train_files & val_files and not (train_files | val_files) & test_files
    assert data["num_classes"] == 6 and sorted(set(data["train"].targets)) == list(range(6))
    assert len(data["val"]) == 24

    s = _run(cfg)
    rows = [json.loads(line) for line in (tmp_path / "run" / "metrics.jsonl").read_text().splitlines()]
    vals = [r["val_R@1"] for r in rows]
    best = max(range(3), key=lambda i: (vals[i], -i))  # first epoch with the highest val Recall@1
    assert s["best"]["epoch"] == best + 1 and s["best"]["val_recall_1"] == vals[best]
    assert s["best"]["recall"][1] == rows[best]["R@1"] and s["val_recall"][1] == vals[-1]
    assert load_checkpoint(tmp_path / "run" / "best.pt")["epoch"] == best + 1
    r = evaluate_checkpoint(tmp_path / "run", split="val")  # the run directory's best.pt
    assert r["split"] == "val" and r["n"] == 24 and r["recall"][1] == pytest.approx(vals[best])
    assert "best val Recall@1" in (tmp_path / "run" / "log.txt").read_text()


def test_resume_keeps_the_best_validation_epoch(tmp_path, cub_root):
    """The best-so-far validation Recall@1 survives a resume, so best.pt is only replaced by a better epoch."""
    extra = ["data.val_fraction=0.25", "train.eval_test_every=1"]
    full = _run(_cfg(cub_root, tmp_path / "full", "euclidean", [*extra, "train.epochs=3"]))
    _run(_cfg(cub_root, tmp_path / "res", "euclidean", [*extra, "train.epochs=2"]))
    assert load_checkpoint(tmp_path / "res" / "last.pt")["best"]["epoch"] in (1, 2)
    resumed = _run(resume_config(tmp_path / "res", ["train.epochs=3"]), resume=tmp_path / "res")
    assert resumed["best"] == full["best"]
    assert load_checkpoint(tmp_path / "res" / "best.pt")["epoch"] == full["best"]["epoch"]


def test_val_split_needs_val_fraction_to_evaluate(tmp_path, cub_root):
    from lorentzcv.train import ConfigError

    cfg = _cfg(cub_root, tmp_path / "run", "euclidean", ["train.epochs=1"])
    s = _run(cfg)
    assert "best" not in s and "val_recall" not in s and not (tmp_path / "run" / "best.pt").exists()
    with pytest.raises(ConfigError, match="no validation split"):
        evaluate_checkpoint(tmp_path / "run", split="val")
    with pytest.raises(ConfigError, match=r"data.val_fraction must be in \[0, 1\)"):
        _cfg(cub_root, tmp_path / "r", "euclidean", ["data.val_fraction=1.0"])


def test_fp16_trains_with_a_grad_scaler(tmp_path, cub_root):
    """HIER's float16 + GradScaler path (on the CPU here: slow but the same code as on CUDA)."""
    cfg = _cfg(cub_root, tmp_path / "run", "lhier", ["train.epochs=3", "train.amp=fp16"])  # 6 steps per epoch
    if DEVICE == "cpu":
        with pytest.warns(UserWarning, match="fp16 on CPU is slow"):
            s = _run(cfg)
    else:
        s = _run(cfg)
    state = load_checkpoint(tmp_path / "run")
    assert state["scaler"] is not None
    assert state["scaler"]["scale"] == 65536.0 * 0.5 ** s["skipped_steps"]  # every inf/NaN step backed off
    # the scaler starts at 2^16 and backs off on the first steps' float16 overflows, then training proceeds
    assert 0 < s["skipped_steps"] < 18 and math.isfinite(s["train_loss"])
    assert "float16 gradient overflow at epoch 1 step 1 at loss scale 65536" in (tmp_path / "run" / "log.txt").read_text()
    assert math.isfinite(s["recall"][1]) and math.isfinite(s["curvatures"]["head.manifold"])
    for part in ("model", "objective"):
        assert all(torch.isfinite(v).all() for v in state[part].values() if v.is_floating_point())


def test_inshop_is_evaluated_query_to_gallery(tmp_path):
    """In-Shop's real layout: Recall@K of query against gallery, nothing masked (``docs/method.md`` §7.4, ``docs/design.md`` §4.9)."""
    from lorentzcv.metric import recall_at_k
    from lorentzcv.train import config_from_dict

    root = fx.write_inshop(tmp_path / "data", n_train_items=4, n_test_items=4, n_per_item=3, gallery_only_items=1)
    cfg = load_config(None, [*tiny(root), *MODES["lhier"], "data.name=inshop", "data.batch_size=8", "train.epochs=1",
                             "metric.recall_ks=[1, 10, 20, 30]", f"output.dir={tmp_path / 'run'}"])
    s = _run(cfg)
    r = evaluate_checkpoint(tmp_path / "run")
    assert r["protocol"] == "query->gallery" and r["n"] == 3  # one query image for each of 3 items
    assert r["recall"][1] == pytest.approx(s["recall"][1]) and r["recall"][30] == 1.0
    state = load_checkpoint(tmp_path / "run" / "last.pt")
    model = build_metric_model(config_from_dict(state["config"]), 3, 16, pretrained=False)
    model.load_state_dict(state["model"])
    data = build_metric_datasets(cfg, splits=("eval",))
    (q, qy), (g, gy) = [evaluate_embeddings(model, data["eval"][split]) for split in ("query", "gallery")]
    assert recall_at_k(q, qy, g, gy, ks=(1,), distance=model.distance())[1] == pytest.approx(r["recall"][1])


def evaluate_embeddings(model, ds):
    from lorentzcv.train.metric import compute_embeddings

    return compute_embeddings(model, DataLoader(ds, batch_size=64), torch.device(DEVICE))


# -------------------------------------------------------------------------------------- protocol pieces
@pytest.mark.parametrize("mode", ["hier", "lhier"])
def test_lr_multipliers_land_on_the_right_groups(tmp_path, cub_root, mode):
    cfg = _cfg(cub_root, tmp_path / "run", mode,
               ["optim.lr=1e-4", "metric.fc_lr_scale=7", "metric.lca_lr_scale=50", "metric.proxy_lr_scale=1e4",
                "optim.curvature_lr=2e-3", "metric.lr_reference_batch=8"])  # batch 16 / 8: lr x2
    model, _ = _initial_model(cfg)
    objective = build_objective(cfg, model, 8)
    opt = build_metric_optimizer(cfg, model, objective)
    lr = 2e-4
    expected = {"backbone": lr, "head": 7 * lr, "lcas": 50 * lr, "proxies": 1e4 * lr, "curvature": 2e-3}
    owner = {}
    for g in opt.param_groups:
        assert g["lr"] == pytest.approx(expected[g["role"]]), g["name"]
        for p in g["params"]:
            assert id(p) not in owner, f"parameter in two groups ({owner.get(id(p))}, {g['name']})"
            owner[id(p)] = g["role"]
    assert all(owner[id(p)] == "backbone" for p in model.backbone.parameters())
    assert owner[id(model.head.linear.weight)] == owner[id(model.head.linear.bias)] == "head"
    assert owner[id(objective.pa_loss.proxies)] == "proxies"
    assert owner[id(objective.hier_loss.lcas)] == "lcas"
    n_params = len({id(p) for p in [*model.parameters(), *objective.parameters()] if p.requires_grad})
    assert len(owner) == n_params  # every trainable parameter exactly once
    types = {g["role"]: g["type"] for g in opt.param_groups if g["role"] in ("lcas", "curvature")}
    if mode == "lhier":
        assert isinstance(objective.hier_loss.lcas, ManifoldParameter) and types["lcas"] == "manifold"
        assert objective.hier_loss.manifold is model.manifold and owner[id(model.manifold.k)] == "curvature"
        assert type(opt).__name__ == "RiemannianAdamW"
    else:
        assert types["lcas"] == "decay" and "curvature" not in types
        assert type(opt).__name__ == "AdamW"


def test_warmup_freezes_the_backbone(tmp_path, cub_root):
    cfg = _cfg(cub_root, tmp_path / "run", "lhier", ["train.epochs=1", "metric.warmup_epochs=1"])
    model0, _ = _initial_model(cfg)
    _run(cfg)
    state = load_checkpoint(tmp_path / "run" / "last.pt")
    for name, p in model0.named_parameters():
        after = state["model"][name]
        if name.startswith("backbone."):
            assert torch.equal(after, p.detach()), f"{name} moved during the warm-up"
        elif name == "head.linear.weight":
            assert not torch.equal(after, p.detach())  # the rest trains
    row = state["history"][0]
    assert row["lr/backbone"] == pytest.approx(3e-3)  # back to its lr once the warm-up epoch is over


def test_gradients_are_clamped_element_wise(tmp_path, cub_root):
    seen = []

    class Spy(MetricTrainer):
        def _setup(self):
            super()._setup()
            step = self.optimizer.step

            def spy_step(*args, **kwargs):
                g = torch.cat([p.grad.flatten() for p in self.params if p.grad is not None])
                seen.append((g.abs().max().item(), g.norm().item()))
                return step(*args, **kwargs)

            self.optimizer.step = spy_step

    clip = 1e-4
    cfg = _cfg(cub_root, tmp_path / "run", "lhier", ["train.epochs=1", f"train.grad_clip_value={clip}"])
    _run(cfg, cls=Spy)
    assert seen
    for gmax, gnorm in seen:
        assert gmax == pytest.approx(clip, rel=1e-6)  # some element hit the bound, none beyond it
        assert gnorm > 10 * clip  # clamped per element, not rescaled by the norm


def test_config_errors_are_clear(tmp_path, cub_root):
    from lorentzcv.train import ConfigError

    with pytest.raises(ConfigError, match="loss.name=hier needs a hyperbolic head"):
        _cfg(cub_root, tmp_path / "r", "euclidean", ["loss.name=hier"])
    with pytest.raises(ConfigError, match="unknown config key 'metric.fc_lr'.*did you mean 'metric.fc_lr_scale'"):
        _cfg(cub_root, tmp_path / "r", "lhier", ["metric.fc_lr=3"])
    with pytest.raises(ConfigError, match="unknown config key 'metric'"):
        load_config(None, ["metric.fc_lr_scale=3"])  # classification configs have no metric section
    with pytest.raises(ConfigError, match="classification dataset"):
        train(_cfg(cub_root, tmp_path / "r", "lhier", ["data.name=digits"]))
    assert not (tmp_path / "r").exists()
    with pytest.raises(ConfigError, match="multiple of metric.images_per_class"):
        _cfg(cub_root, tmp_path / "r", "lhier", ["data.batch_size=15"])


# -------------------------------------------------------------------------------------------------- DDP
def test_ddp_two_processes_match_one_process(tmp_path):
    """2 gloo ranks x 16 images with the loss on the gathered batch = 1 process x 32 images (frozen BN)."""
    common = ["--set", "task=metric", "--set", "data.name=digits_dml", "--set", "data.batch_size=32",
              "--set", "data.train_subset=128", "--set", "data.eval_subset=64", "--set", "model.bn_freeze=true",
              "--set", "model.backbone_kwargs.width=8", "--set", "model.embedding_dim=16", "--set",
              "loss.num_proxies=16", "--set", "loss.topk=8", "--set", "loss.num_triplets=10", "--set",
              "train.epochs=2", "--set", "output.progress=false", "--set", "output.tensorboard=false", "--set",
              "train.device=cpu", "--set", "optim.curvature_lr=0.05"]
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    cmd = [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node=2", "-m", "lorentzcv",
           "train", *common, "--set", f"output.dir={tmp_path / 'ddp'}"]
    proc = subprocess.run(cmd, capture_output=True, text=True, timeout=240, env=env)
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    summary = json.loads((tmp_path / "ddp" / "summary.json").read_text())
    assert summary["world_size"] == 2 and summary["ddp"]["params_identical"]
    assert proc.stdout.count("lorentzcv train: summary") == 1 and "x2 (gloo)" in proc.stdout

    overrides = [v for i, v in enumerate(common) if i % 2 == 1]
    single = _run(load_config(None, [*overrides, f"output.dir={tmp_path / 'one'}"]))
    a = load_checkpoint(tmp_path / "ddp" / "last.pt")
    b = load_checkpoint(tmp_path / "one" / "last.pt")
    for part in ("model", "objective"):
        for key, va in a[part].items():
            if va.is_floating_point():
                assert torch.allclose(va, b[part][key], rtol=1e-3, atol=1e-4), f"{part}.{key}"
    assert summary["recall"]["1"] == pytest.approx(single["recall"][1], abs=1 / 64 + 1e-9)
