"""``ManifoldParameter`` survives the module/serialisation/distribution machinery."""

from __future__ import annotations

import copy
import io
import pickle

import pytest
import torch
import torch.distributed as dist
from torch import nn

from lorentzcv import Lorentz, ManifoldParameter


class Holder(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.manifold = Lorentz(k=2.0, learnable=True)
        self.points = ManifoldParameter(self.manifold.expmap0(torch.randn(4, 3)), manifold=self.manifold)
        self.lin = nn.Linear(3, 3)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.lin(x) + self.manifold.dist0(self.points).sum()


def test_is_a_parameter_with_manifold() -> None:
    h = Holder()
    assert isinstance(h.points, nn.Parameter) and isinstance(h.points, torch.Tensor)
    assert h.points.manifold is h.manifold
    assert any(p is h.points for p in h.parameters())
    assert type(h.points * 2) is torch.Tensor  # ops return plain tensors
    assert "ManifoldParameter" in repr(h.points)
    with pytest.raises(ValueError, match="manifold"):
        ManifoldParameter(torch.zeros(2, 3))


def test_survives_dtype_and_device_moves() -> None:
    h = Holder().double()
    assert isinstance(h.points, ManifoldParameter) and h.points.dtype == torch.float64
    assert h.points.manifold is h.manifold and h.manifold.k.dtype == torch.float64
    h = h.float().to("cpu")
    assert isinstance(h.points, ManifoldParameter) and h.points.dtype == torch.float32


def test_state_dict_round_trip_weights_only() -> None:
    h, h2 = Holder(), Holder()
    buf = io.BytesIO()
    torch.save(h.state_dict(), buf)
    buf.seek(0)
    h2.load_state_dict(torch.load(buf, weights_only=True))
    assert isinstance(h2.points, ManifoldParameter)
    assert torch.equal(h2.points, h.points) and torch.equal(h2.manifold.k, h.manifold.k)


def test_deepcopy_and_pickle_keep_manifold_links() -> None:
    h = Holder()
    for clone in (copy.deepcopy(h), pickle.loads(pickle.dumps(h))):
        assert isinstance(clone.points, ManifoldParameter)
        assert clone.points.manifold is clone.manifold and clone.manifold is not h.manifold
        assert torch.equal(clone.points, h.points)
        assert clone.points.requires_grad


def test_ddp_wraps_and_keeps_type(tmp_path) -> None:
    if dist.is_initialized():
        pytest.skip("a process group is already initialised")
    dist.init_process_group("gloo", init_method=f"file://{tmp_path}/pg", rank=0, world_size=1)
    try:
        h = Holder()
        ddp = nn.parallel.DistributedDataParallel(h)
        ddp(torch.randn(2, 3)).sum().backward()
        assert isinstance(ddp.module.points, ManifoldParameter)
        assert ddp.module.points.grad is not None and ddp.module.manifold.k.grad is not None
        del ddp
    finally:
        import gc

        gc.collect()
        dist.destroy_process_group()
