"""Atomic ``weights_only`` checkpoints and RNG capture/restore."""

from __future__ import annotations

import random

import numpy as np
import pytest
import torch

from lorentzcv.train import CheckpointError, load_checkpoint, save_checkpoint
from lorentzcv.train.checkpoint import CHECKPOINT_FORMAT, capture_rng_state, find_checkpoint, restore_rng_state


def test_save_is_atomic_and_loads_weights_only(tmp_path):
    state = {"format": CHECKPOINT_FORMAT, "epoch": 3, "model": {"w": torch.arange(4.0)}, "history": [{"a": 1.5}],
             "rng": capture_rng_state()}
    path = save_checkpoint(state, tmp_path / "run" / "last.pt")
    assert sorted(p.name for p in path.parent.iterdir()) == ["last.pt"]  # no temporary file left behind
    loaded = torch.load(path, weights_only=True)
    assert loaded["epoch"] == 3 and torch.equal(loaded["model"]["w"], torch.arange(4.0))
    assert load_checkpoint(path.parent, required=())["history"] == [{"a": 1.5}]  # a run directory resolves to last.pt


def test_failed_save_keeps_the_previous_file(tmp_path, monkeypatch):
    path = save_checkpoint({"format": CHECKPOINT_FORMAT, "epoch": 1}, tmp_path / "last.pt")

    def boom(*args, **kwargs):
        raise OSError("disk full")

    monkeypatch.setattr(torch, "save", boom)
    with pytest.raises(OSError, match="disk full"):
        save_checkpoint({"format": CHECKPOINT_FORMAT, "epoch": 2}, path)
    monkeypatch.undo()
    assert load_checkpoint(path, required=())["epoch"] == 1
    assert sorted(p.name for p in tmp_path.iterdir()) == ["last.pt"]


def test_corrupt_and_foreign_checkpoints(tmp_path):
    bad = tmp_path / "last.pt"
    bad.write_bytes(b"this is not a checkpoint")
    with pytest.raises(CheckpointError, match="corrupt or not a lorentzcv checkpoint"):
        load_checkpoint(bad)
    torch.save({"state_dict": {}}, tmp_path / "foreign.pt")
    with pytest.raises(CheckpointError, match="not a lorentzcv training checkpoint"):
        load_checkpoint(tmp_path / "foreign.pt")
    with pytest.raises(CheckpointError, match="does not exist"):
        load_checkpoint(tmp_path / "nope.pt")
    (tmp_path / "empty").mkdir()
    with pytest.raises(CheckpointError, match="no checkpoint in run directory"):
        find_checkpoint(tmp_path / "empty")


def test_rng_state_round_trip(tmp_path):
    torch.manual_seed(5)
    np.random.seed(5)
    random.seed(5)
    torch.rand(3), np.random.rand(2), random.random(), np.random.randn()  # has_gauss / cached values in play
    save_checkpoint({"format": CHECKPOINT_FORMAT, "rng": capture_rng_state()}, tmp_path / "c.pt")
    expected = (torch.rand(4), np.random.rand(3), random.random(), np.random.randn())
    torch.manual_seed(0)
    np.random.seed(0)
    random.seed(0)
    restore_rng_state(load_checkpoint(tmp_path / "c.pt", required=())["rng"])
    got = (torch.rand(4), np.random.rand(3), random.random(), np.random.randn())
    assert torch.equal(got[0], expected[0]) and np.array_equal(got[1], expected[1])
    assert got[2] == expected[2] and got[3] == expected[3]
