"""A pytorch-metric-learning loss and miner on the Lorentz model, through ``LorentzDistance``.

``LorentzDistance(manifold)`` is a PML ``BaseDistance`` (the geodesic distance
``d(x, y) = sqrt(k) * arcosh(-<x,y>_L / k)``, smaller is closer), so any PML loss, miner or kNN accepts it in
place of the Euclidean ``LpDistance``. Here a small encoder maps scikit-learn's bundled 8×8 digits (offline)
onto the hyperboloid and PML's ``TripletMarginLoss`` with a ``TripletMarginMiner`` trains it; Recall@K is
measured with the same distance before and after (``docs/method.md`` §7.4).

Curvature convention: ``k > 0``, points satisfy ``<x,x>_L = -k`` with time at index 0, sectional curvature
``K = -1/k``. The curvature is fixed here (``learnable=False``); see ``manifold_parameter_radamw.py`` for a learned one.

Run: ``python examples/pml_loss_lorentz_distance.py`` (a few seconds on a CPU).
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from pytorch_metric_learning import losses, miners
from sklearn.datasets import load_digits
from torch import nn

from lorentzcv import Lorentz
from lorentzcv.metric import LorentzDistance, recall_at_k


class LorentzEncoder(nn.Module):
    """``(B, 64) -> (B, 1 + dim)`` points of ``H^dim_k``: an MLP, then ``exp0`` at the origin."""

    def __init__(self, manifold: Lorentz, dim: int = 8) -> None:
        super().__init__()
        self.manifold = manifold
        self.mlp = nn.Sequential(nn.Linear(64, 64), nn.ReLU(), nn.Linear(64, dim))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.manifold.expmap0(F.pad(self.mlp(x), (1, 0)))  # the time entry of the tangent vector is 0


def main(steps: int = 200, seed: int = 0) -> dict[str, float]:
    torch.manual_seed(seed)
    digits = load_digits()
    x = torch.tensor(digits.data, dtype=torch.float32) / 16.0
    y = torch.tensor(digits.target)
    perm = torch.randperm(len(y))
    train, test = perm[:1200], perm[1200:]

    manifold = Lorentz(k=1.0)  # K = -1
    model = LorentzEncoder(manifold)
    distance = LorentzDistance(manifold)
    loss_fn = losses.TripletMarginLoss(margin=0.5, distance=distance)
    miner = miners.TripletMarginMiner(margin=0.5, type_of_triplets="semihard", distance=distance)
    opt = torch.optim.AdamW(model.parameters(), lr=3e-3)  # only Euclidean parameters: torch's optimizer is enough

    def recall() -> dict[int, float]:
        with torch.no_grad():  # leave-one-out retrieval on the test images, ranked by the geodesic distance
            return recall_at_k(model(x[test]), y[test], ks=(1, 2, 4, 8), distance=distance)

    before = recall()
    for step in range(steps):
        idx = train[torch.randint(len(train), (128,))]
        emb = model(x[idx])
        loss = loss_fn(emb, y[idx], miner(emb, y[idx]))
        opt.zero_grad()
        loss.backward()
        opt.step()
        if step % 50 == 0 or step == steps - 1:
            print(f"step {step:3d}  triplet loss {loss.item():.3f}")
    after = recall()
    print("Recall@K before:", {k: round(v, 3) for k, v in before.items()})
    print("Recall@K after: ", {k: round(v, 3) for k, v in after.items()})
    return {"recall1_before": before[1], "recall1_after": after[1]}


if __name__ == "__main__":
    main()
