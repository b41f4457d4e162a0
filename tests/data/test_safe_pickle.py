"""The restricted unpickler of the CIFAR reader: crafted files are refused, real batch formats still load."""

from __future__ import annotations

import os
import pickle
from pathlib import Path

import numpy as np
import pytest

from lorentzcv.data import create_dataset
from lorentzcv.data._safe_pickle import UnsafePickleError, load_pickle

from . import fixtures as fx


class _Payload:
    """Unpickling this runs ``os.system("touch MARKER")`` with plain ``pickle.load``."""

    def __init__(self, marker: Path) -> None:
        self.marker = marker

    def __reduce__(self):
        return os.system, (f"touch {self.marker}",)


class _EvalPayload:
    def __init__(self, marker: Path) -> None:
        self.marker = marker

    def __reduce__(self):
        return eval, (f"open({str(self.marker)!r}, 'w').close()",)


@pytest.mark.parametrize("protocol", [0, 2, 4, 5])
@pytest.mark.parametrize("payload", [_Payload, _EvalPayload])
def test_malicious_meta_file_is_refused_without_running_it(tmp_path, protocol: int, payload: type) -> None:
    fx.write_cifar10(tmp_path / "root")
    marker = tmp_path / "pwned"
    meta = tmp_path / "root" / "cifar-10-batches-py" / "batches.meta"
    with open(meta, "wb") as f:
        pickle.dump({"label_names": ["a"] * 10, "x": payload(marker)}, f, protocol=protocol)
    with pytest.raises(UnsafePickleError) as e:
        create_dataset("cifar10", tmp_path / "root")
    assert not marker.exists()
    msg = str(e.value)
    assert "\n" not in msg and str(meta) in msg and "refusing to load" in msg
    assert isinstance(e.value, ValueError)  # the CLI prints ValueErrors as one 'error: ...' line


def test_malicious_batch_is_refused_and_codecs_is_latin1_only(tmp_path) -> None:
    fx.write_cifar100(tmp_path)
    marker = tmp_path / "pwned"
    with open(tmp_path / "cifar-100-python" / "train", "wb") as f:
        pickle.dump([_Payload(marker)], f, protocol=2)
    with pytest.raises(UnsafePickleError, match="posix.system|os.system"):
        create_dataset("cifar100", tmp_path, "train")
    assert not marker.exists()
    # _codecs.encode is only honoured as Python 3's bytes encoding (latin-1)
    crafted = tmp_path / "codec.pkl"
    crafted.write_bytes(b"c_codecs\nencode\n(Vabc\nVrot13\ntR.")
    with pytest.raises(UnsafePickleError, match="latin1"):
        load_pickle(crafted)


def test_numpy1_and_numpy2_array_pickles_load(tmp_path) -> None:
    """Batches written by numpy 2 (``numpy._core``) and numpy 1 / Python 2 (``numpy.core``) both load."""
    arr = np.arange(2 * 3072, dtype=np.uint8).reshape(2, 3072)
    obj = {"data": arr, "labels": [1, 2], "batch_label": "b", "filenames": ["x.png", "y.png"]}
    for protocol in (0, 2, 4):  # protocol 5 stores arrays via numpy._core.numeric._frombuffer: not needed
        path = tmp_path / f"p{protocol}.pkl"
        path.write_bytes(pickle.dumps(obj, protocol=protocol))
        out = load_pickle(path)
        assert out["labels"] == [1, 2] and out["filenames"] == ["x.png", "y.png"]
        np.testing.assert_array_equal(out["data"], arr)
    raw = pickle.dumps(obj, protocol=2)
    assert b"cnumpy._core.multiarray\n_reconstruct\n" in raw
    old = tmp_path / "numpy1.pkl"
    old.write_bytes(raw.replace(b"cnumpy._core.multiarray\n", b"cnumpy.core.multiarray\n"))
    np.testing.assert_array_equal(load_pickle(old)["data"], arr)


def test_real_format_fixtures_still_load(data_root) -> None:
    train = create_dataset("cifar10", data_root, "train", transform=None)
    assert len(train) == 50 and train.classes[0] == "airplane"
    assert len(create_dataset("cifar100", data_root, "test", transform=None)) == 100
