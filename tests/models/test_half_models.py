"""Models cast with ``.half()``/``.bfloat16()`` (not autocast) run forward, backward and an optimizer step: the
convolutions run in the weights' dtype, the hyperbolic parts as float32 islands (issue #10 item 9)."""

from __future__ import annotations

import pytest
import torch

from lorentzcv.models import create_model, list_models
from lorentzcv.optim import create_optimizer


@pytest.mark.parametrize("dtype", [torch.bfloat16, torch.float16], ids=["bf16", "fp16"])
@pytest.mark.parametrize("name", list_models())
def test_cast_model_trains_and_stays_close_to_float32(name, dtype):
    torch.manual_seed(0)
    ref = create_model(name, num_classes=5, img_size=16, width=4).eval()
    model = create_model(name, num_classes=5, img_size=16, width=4)
    model.load_state_dict(ref.state_dict())
    model = model.to(dtype).eval()
    x = torch.randn(4, 3, 16, 16)
    with torch.no_grad():
        y_ref, y = ref(x), model(x.to(dtype))
    assert torch.isfinite(y).all()
    rel = float((y.float() - y_ref).norm() / y_ref.norm())
    assert rel < 0.1, rel  # bf16 has 8 mantissa bits: a few percent after a ResNet
    model.train()
    opt = create_optimizer(model, "rsgd" if model.manifolds() else "sgd", lr=0.01, momentum=0.9)
    for _ in range(2):
        opt.zero_grad()
        torch.nn.functional.cross_entropy(model(x.to(dtype)).float(), torch.tensor([0, 1, 2, 3])).backward()
        opt.step()
    assert all(torch.isfinite(p).all() for p in model.parameters())
