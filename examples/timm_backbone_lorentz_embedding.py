"""A timm backbone feeding a hyperbolic (Lorentz) embedding, trained with LHIER and Riemannian AdamW.

Any timm model built with ``num_classes=0`` returns pooled features; ``LorentzHead`` maps them onto the Lorentz
model (LayerNorm → Linear → maximum distance rescaling → ``exp0``, ``docs/method.md`` §7.2), on a manifold with a
learnable curvature that starts at ``k = 10`` (HIER's Poincaré ``c = 0.1``). The LHIER loss keeps its
hierarchical proxies (LCAs) as ``ManifoldParameter``s on the same manifold, and ``create_optimizer(...,
"radamw")`` groups everything by type: Euclidean weights, manifold points, and the curvature, updated last.
``create_embedding_model("resnet18", head="lorentz")`` builds the same model in one line.

Offline and quick: random initial weights (``pretrained=False``; pass ``pretrained=True`` or a local checkpoint
with ``pretrained_cfg_overlay=dict(file=...)`` for real training), and scikit-learn's 8×8 digits upsampled to
32×32 RGB as images.

Curvature convention: ``k > 0``, points satisfy ``<x,x>_L = -k`` with time at index 0, ``K = -1/k``.

Run: ``python examples/timm_backbone_lorentz_embedding.py`` (well under a minute on a CPU).
"""

from __future__ import annotations

import timm
import torch
import torch.nn.functional as F
from sklearn.datasets import load_digits
from torch import nn

from lorentzcv import Lorentz
from lorentzcv.metric import HierarchicalObjective, LHIERLoss, ProxyAnchorLoss, recall_at_k
from lorentzcv.models import EmbeddingModel, LorentzHead
from lorentzcv.models.embedding import Backbone
from lorentzcv.optim import create_optimizer


def digits_as_images(size: int = 32) -> tuple[torch.Tensor, torch.Tensor]:
    """scikit-learn's digits as ``(N, 3, size, size)`` images in [0, 1] and ``(N,)`` labels."""
    digits = load_digits()
    x = torch.tensor(digits.images, dtype=torch.float32)[:, None] / 16.0
    x = F.interpolate(x, size=(size, size), mode="bilinear", align_corners=False)
    return x.expand(-1, 3, -1, -1).contiguous(), torch.tensor(digits.target)


def main(steps: int = 12, embedding_dim: int = 16, seed: int = 0) -> dict[str, float]:
    torch.manual_seed(seed)
    images, labels = digits_as_images()
    perm = torch.randperm(len(labels))
    train, test = perm[:1200], perm[1200:1500]

    body = timm.create_model("resnet18", pretrained=False, num_classes=0)  # (B, 3, H, W) -> (B, 512)
    manifold = Lorentz(k=10.0, learnable=True)  # K = -0.1
    model = EmbeddingModel(Backbone(body, body.num_features),
                           LorentzHead(manifold, body.num_features, embedding_dim))
    objective = HierarchicalObjective(ProxyAnchorLoss(10, embedding_dim),
                                      LHIERLoss(manifold, num_proxies=32, embedding_dim=embedding_dim))
    # one container, so the shared curvature k is counted once; the LCAs land in the "manifold" group
    opt = create_optimizer(nn.ModuleList([model, objective]), "radamw", lr=1e-3, weight_decay=1e-4,
                           curvature_lr=1e-2)

    def recall() -> float:
        model.eval()
        with torch.no_grad():
            r = recall_at_k(model(images[test]), labels[test], ks=(1,), distance=model.distance())[1]
        model.train()
        return r

    for step in range(steps):
        idx = train[torch.randint(len(train), (64,))]
        emb = model(images[idx])  # (64, 1 + embedding_dim) Lorentz points
        loss = objective(emb, labels[idx])
        opt.zero_grad()
        loss.backward()
        opt.step()
        if step % 5 == 0 or step == steps - 1:
            parts = ", ".join(f"{n} {v.item():.3f}" for n, v in objective.last.items())
            print(f"step {step:2d}  loss {loss.item():.3f} ({parts})  K {manifold.curvature.item():+.4f}")
    r1 = recall()
    with torch.no_grad():
        z = model(images[test[:8]])
        off = (manifold.inner(z, z) + manifold.k).abs().max().item()
    print(f"embeddings: {tuple(z.shape)} Lorentz points, off the hyperboloid by at most {off:.1e}")
    print(f"test Recall@1 (leave-one-out, ranked by the geodesic distance) after {steps} steps: {r1:.3f}")
    return {"recall1": r1, "off_manifold": off, "k": manifold.k.item()}


if __name__ == "__main__":
    main()
