"""TensorBoard asked for but not installed: one warning, not silence (issue: "TensorBoard is silently skipped")."""

from __future__ import annotations

import sys
import warnings

import pytest

from lorentzcv.train.recorder import RunRecorder


@pytest.fixture
def no_tensorboard(monkeypatch):
    monkeypatch.setitem(sys.modules, "torch.utils.tensorboard", None)  # import raises ImportError


def test_missing_tensorboard_warns_once(tmp_path, no_tensorboard):
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        rec = RunRecorder(tmp_path, tensorboard=True)
        rec.add({"epoch": 1, "train_loss": 1.0})
        rec.add({"epoch": 2, "train_loss": 0.5})
        rec.close()
    msgs = [str(w.message) for w in caught if "tensorboard" in str(w.message)]
    assert len(msgs) == 1 and "not installed" in msgs[0] and "output.tensorboard=false" in msgs[0]


def test_no_warning_when_not_asked_or_not_rank_zero(tmp_path, no_tensorboard):
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        RunRecorder(tmp_path, tensorboard=False).close()
        RunRecorder(tmp_path, enabled=False, tensorboard=True).close()
    assert not [w for w in caught if "tensorboard" in str(w.message)]
