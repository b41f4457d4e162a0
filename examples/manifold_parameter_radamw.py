"""Your own module with a ``ManifoldParameter``, trained by ``RiemannianAdamW`` with a learnable curvature.

A hyperbolic prototype classifier on scikit-learn's bundled 8×8 digits (offline, no download): a linear
encoder maps each image to a point of the Lorentz model (``expmap0`` at the origin), every class has a
prototype point — a ``ManifoldParameter`` on the same manifold — and the logits are negative geodesic
distances. ``RiemannianAdamW`` moves the prototypes along the manifold (centroid weight decay toward the
origin), updates the curvature last and carries the prototypes onto the new hyperboloid
(``docs/method.md`` §3.2 and §4).

Curvature convention: the manifold holds ``k > 0``, points satisfy ``<x,x>_L = -k`` (time at index 0), and the
sectional curvature is ``K = -1/k`` (``manifold.curvature``).

Run: ``python examples/manifold_parameter_radamw.py`` (a few seconds on a CPU).
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from sklearn.datasets import load_digits
from torch import nn

from lorentzcv import Lorentz, ManifoldParameter
from lorentzcv.optim import RiemannianAdamW, param_groups


class HyperbolicPrototypes(nn.Module):
    """``(B, in_features) -> (B, num_classes)`` logits ``-d(z, p_c)`` with ``z = exp0(W x + b)`` on ``H^dim_k``."""

    def __init__(self, in_features: int, dim: int, num_classes: int) -> None:
        super().__init__()
        self.manifold = Lorentz(k=1.0, learnable=True)  # k is a parameter; optimizers clamp it to manifold.bounds
        self.encoder = nn.Linear(in_features, dim)
        start = self.manifold.expmap0(0.5 * torch.randn(num_classes, 1 + dim))  # the time entry of u is ignored
        self.prototypes = ManifoldParameter(start, manifold=self.manifold)  # (num_classes, 1 + dim) points

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        z = self.manifold.expmap0(F.pad(self.encoder(x), (1, 0)))  # (B, 1 + dim): a zero time entry, then exp0
        return -self.manifold.dist(z[:, None, :], self.prototypes[None, :, :])


def main(steps: int = 150, seed: int = 0) -> dict[str, float]:
    torch.manual_seed(seed)
    digits = load_digits()
    x = torch.tensor(digits.data, dtype=torch.float32) / 16.0
    y = torch.tensor(digits.target)
    perm = torch.randperm(len(y))
    train, test = perm[:1200], perm[1200:]

    model = HyperbolicPrototypes(64, dim=8, num_classes=10)
    # groups by type: Euclidean weights (decay / no_decay), the ManifoldParameter, and the curvature (last)
    groups = param_groups(model, lr=0.02, weight_decay=1e-4, curvature_lr=0.02)
    opt = RiemannianAdamW(groups, lr=0.02)
    print("parameter groups:", [(g["name"], len(g["params"])) for g in groups])

    for step in range(steps):
        loss = F.cross_entropy(model(x[train]), y[train])
        opt.zero_grad()
        loss.backward()
        opt.step()
        if step % 50 == 0 or step == steps - 1:
            print(f"step {step:3d}  loss {loss.item():.3f}  curvature K {model.manifold.curvature.item():+.3f}")

    with torch.no_grad():
        acc = (model(x[test]).argmax(1) == y[test]).float().mean().item()
        p, k = model.prototypes, model.manifold.k
        off_manifold = (model.manifold.inner(p, p) + k).abs().max().item()  # |<p,p>_L + k|, 0 on the manifold
    print(f"test accuracy {100 * acc:.1f} %, learned curvature K = {model.manifold.curvature.item():.3f}, "
          f"prototypes off the hyperboloid by at most {off_manifold:.1e}")
    return {"accuracy": acc, "k": k.item(), "off_manifold": off_manifold}


if __name__ == "__main__":
    main()
