"""What protects 16-bit training of HECNN+ (issue 11, item 5): a stress test at ResNet-18 depth.

Batch-norm scales γ driven to 10 push the encoder's points far from the origin. Without maximum distance
rescaling the space coordinates entering the 16-bit convolutions exceed float16's range (65504; ≈3.9e5 at width 16) and
the float16 forward is non-finite, while float32 and bfloat16 (float32's range) stay finite; with rescaling every
dtype stays finite. Every rescaling under autocast uses **float32's** radius (the layers are float32 islands):
it bounds the space coordinates by :math:`\\sqrt{k}\\sinh(9.57) \\approx 7.1\\cdot10^3`, which float16 holds.
"""

from __future__ import annotations

import sys

import pytest
import torch

import lorentzcv.nn.functional as LF
import lorentzcv.nn.norm as LN
from lorentzcv.models import create_model
from lorentzcv.nn.norm import LorentzBatchNorm2d

_RESCALE = sys.modules["lorentzcv.geometry.rescale"]


def _forward(rescale: bool, amp: torch.dtype | None, monkeypatch) -> tuple[torch.Tensor, set[torch.dtype]]:
    torch.manual_seed(0)
    model = create_model("hecnn_resnet18", num_classes=10, img_size=16, width=8, rescale=rescale)
    for m in model.modules():
        if isinstance(m, LorentzBatchNorm2d):
            m.gamma.data.fill_(10.0)
    radii: set[torch.dtype] = set()
    orig = _RESCALE.max_distance

    def spy(dtype: torch.dtype, r: float = 1.2) -> float:
        radii.add(dtype)
        return orig(dtype, r)

    for mod in (LF, LN, _RESCALE):
        monkeypatch.setattr(mod, "max_distance", spy)
    x = torch.randn(4, 3, 16, 16, generator=torch.Generator().manual_seed(0))
    ctx = torch.autocast("cpu", dtype=amp) if amp is not None else torch.autocast("cpu", enabled=False)
    with ctx, torch.no_grad():
        out = model(x)
    monkeypatch.undo()
    return out, radii


@pytest.mark.parametrize("amp", [None, torch.float16, torch.bfloat16], ids=["fp32", "fp16", "bf16"])
def test_rescaling_keeps_16bit_training_finite(amp, monkeypatch):
    out, radii = _forward(True, amp, monkeypatch)
    assert torch.isfinite(out).all()
    assert radii == {torch.float32}  # the 16-bit radii are never used by the layers


def test_without_rescaling_float16_overflows(monkeypatch):
    out, _ = _forward(False, torch.float16, monkeypatch)
    assert not torch.isfinite(out).all()
    for amp in (None, torch.bfloat16):  # a range problem of float16, not of the geometry
        out, _ = _forward(False, amp, monkeypatch)
        assert torch.isfinite(out).all()
