"""``Lorentz.repair_on_use``: in the naive-curvature ablation layers use stored points as they are (issue #11 item 2:
a curvature-unaware optimizer's baseline repairs nothing, neither in the optimizer nor on use)."""

from __future__ import annotations

import torch

from lorentzcv.geometry import Lorentz
from lorentzcv.geometry import math as lmath
from lorentzcv.metric.hier import LHIERLoss
from lorentzcv.models import create_model
from lorentzcv.nn import LorentzBatchNorm2d
from lorentzcv.train.common import set_repair_on_use
from lorentzcv.train.config import OptimConfig


def _bn_output(repair: bool) -> tuple[torch.Tensor, torch.Tensor]:
    """A batch norm's output before and after its stored β's time coordinate is pushed off the hyperboloid."""
    torch.manual_seed(0)
    man = Lorentz(1.0, learnable=True)
    man.repair_on_use = repair
    bn = LorentzBatchNorm2d(man, 4)
    with torch.no_grad():
        bn.beta[1:] = 0.3 * torch.randn(4)
        bn.beta[0] = (bn.beta[1:].pow(2).sum() + 1.0).sqrt()
    x = lmath.add_time(torch.randn(3, 4, 2, 2), torch.tensor(1.0), dim=1)
    before = bn(x).detach()
    with torch.no_grad():
        bn.beta[0] *= 1.2  # what a change of k leaves behind when nothing moves or repairs the point
    return before, bn(x).detach()


def test_batch_norm_repairs_beta_on_use_by_default():
    before, after = _bn_output(repair=True)
    torch.testing.assert_close(before, after)


def test_batch_norm_uses_the_stored_beta_without_repair_on_use():
    before, after = _bn_output(repair=False)
    assert (before - after).abs().max() > 1e-3


def test_lhier_lcas_as_stored_without_repair_on_use():
    man = Lorentz(10.0, learnable=True)
    loss = LHIERLoss(man, num_proxies=4, embedding_dim=3)
    with torch.no_grad():
        loss.lcas[:, 0] *= 1.5
    torch.testing.assert_close(loss.lca_points()[:, 0], loss.lcas[:, 0] / 1.5)  # repaired: time from space
    man.repair_on_use = False
    torch.testing.assert_close(loss.lca_points(), loss.lcas.detach())


def test_engine_turns_repair_on_use_off_for_the_naive_ablation_only():
    model = create_model("hecnn_resnet18", num_classes=3, img_size=8, width=4)
    manifolds = list(model.manifolds().values())
    assert manifolds and all(m.repair_on_use for m in manifolds)
    set_repair_on_use(OptimConfig(name="rsgd", curvature_mode="naive"), model)
    assert not any(m.repair_on_use for m in manifolds)
    set_repair_on_use(OptimConfig(name="rsgd", curvature_mode="naive_repaired"), model)
    assert all(m.repair_on_use for m in manifolds)
