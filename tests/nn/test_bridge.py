"""Bridges (ToLorentz / ManifoldSwap) and hybrid models under autocast: the rescaling radius follows the dtype
the hyperbolic computation runs in (float32 islands), not the dtype the Euclidean features arrive in (issue 11,
item 5). Curvature convention: ``k > 0``, ``<x,x>_L = -k``, ``K = -1/k``."""

from __future__ import annotations

import pytest
import torch

from lorentzcv.geometry import Lorentz, RescaleConfig
from lorentzcv.geometry import math as lmath
from lorentzcv.geometry.rescale import computation_dtype, max_distance
from lorentzcv.models import create_model
from lorentzcv.nn.bridge import ManifoldSwap, ToLorentz

HALF = (torch.bfloat16, torch.float16)


def _features(scale: float = 300.0) -> torch.Tensor:
    g = torch.Generator().manual_seed(0)
    return torch.randn(16, 32, generator=g) * scale / 32**0.5


@pytest.mark.parametrize("dtype", HALF)
def test_computation_dtype_of_half_inputs_is_float32(dtype):
    assert computation_dtype(torch.zeros(2, dtype=dtype)) == torch.float32
    assert computation_dtype(torch.zeros(2)) == torch.float32
    assert computation_dtype(torch.zeros(2, dtype=torch.float64)) == torch.float64


@pytest.mark.parametrize("dtype", HALF)
@pytest.mark.parametrize("autocast", [False, True])
def test_to_lorentz_half_features_get_the_float32_radius(dtype, autocast):
    """Half features (an autocast encoder's output) are lifted as their float32 values would be."""
    man = Lorentz(1.0, rescale=RescaleConfig(s=2.0))
    lift = ToLorentz(man, mode="rescale", dim=1)
    v = _features().to(dtype)
    ref = lift(v.float())
    ctx = torch.autocast("cpu", dtype=dtype) if autocast else torch.autocast("cpu", enabled=False)
    with ctx:
        out = lift(v)
    assert out.dtype == torch.float32
    torch.testing.assert_close(out, ref)
    # the far features reach beyond the 16-bit radius, within float32's (distances of the rescaled vectors)
    d = lmath.logmap0(out, man.k.detach()).norm(dim=-1)
    assert max_distance(torch.bfloat16) < d.max() <= max_distance(torch.float32) + 1e-4


@pytest.mark.parametrize("dtype", HALF)
def test_manifold_swap_half_input_gets_the_float32_radius(dtype):
    src, dst = Lorentz(1.0), Lorentz(2.0, rescale=RescaleConfig(s=2.0))
    x = lmath.expmap0(torch.cat([torch.zeros(16, 1), _features(8.0)], dim=1), torch.tensor(1.0))  # fp16: x_t < 65504
    swap = ManifoldSwap(src, dst, dim=-1)
    ref = swap(x)
    with torch.autocast("cpu", dtype=dtype):
        out = swap(x.to(dtype))
    assert out.dtype == torch.float32
    torch.testing.assert_close(out, swap(x.to(dtype).float()))
    assert lmath.dist0(out, dst.k.detach()).max() > max_distance(torch.bfloat16)
    torch.testing.assert_close(out, ref, rtol=0.05, atol=0.05)  # only the input rounding differs


def _rel(a: torch.Tensor, b: torch.Tensor) -> float:
    return ((a.float() - b.float()).norm() / b.float().norm()).item()


@pytest.mark.parametrize("name", ["hybrid_resnet18", "hecnn_resnet50"])
@pytest.mark.parametrize("dtype", [torch.bfloat16])
def test_hybrid_models_under_autocast_match_float32(name, dtype):
    """Euclidean encoder features arrive in bfloat16; the neck (and the Lorentz-Core swaps of hecnn_resnet50)
    must rescale them with float32's radius. Before the fix the logits were 0.55 off (relative); torch's own
    ResNet under bfloat16 is ~0.015 off."""
    torch.manual_seed(0)
    model = create_model(name, num_classes=10, img_size=32, width=8, layers=[1, 1, 1, 1]).eval()
    x = torch.randn(8, 3, 32, 32) * 3
    with torch.no_grad():
        ref = model(x)
        with torch.autocast("cpu", dtype=dtype):
            out = model(x)
    assert _rel(out, ref) < 0.05


def test_hybrid_bf16_training_tracks_float32():
    """Three SGD steps of the hybrid ResNet-18 under bfloat16 autocast end at the float32 loss."""
    losses = {}
    for amp in (None, torch.bfloat16):
        torch.manual_seed(0)
        model = create_model("hybrid_resnet18", num_classes=10, img_size=16, width=8, layers=[1, 1, 1, 1])
        opt = torch.optim.SGD(model.parameters(), lr=0.05, momentum=0.9)
        g = torch.Generator().manual_seed(1)
        x, y = torch.randn(32, 3, 16, 16, generator=g) * 3, torch.randint(0, 10, (32,), generator=g)
        for _ in range(4):
            ctx = torch.autocast("cpu", dtype=amp) if amp else torch.autocast("cpu", enabled=False)
            with ctx:
                loss = torch.nn.functional.cross_entropy(model(x).float(), y)
            opt.zero_grad()
            loss.backward()
            opt.step()
        losses[amp] = loss.item()
    assert losses[torch.bfloat16] == pytest.approx(losses[None], rel=0.05)
