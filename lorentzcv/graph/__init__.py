"""Graph embeddings on the Lorentz manifold: Nickel & Kiela's closure reconstruction (``docs/wordnet.md``).

- :class:`LorentzEmbedding`: a table of points (a ``ManifoldParameter``) on a fixed or learned-curvature manifold.
- :func:`train_embedding` with :func:`nk_loss`: the softmax-over-negatives objective, trained by the library's
  ``RiemannianSGD``/``RiemannianAdamW``.
- :func:`reconstruction_metrics`: mean rank and MAP of the closure.
"""

from .embedding import EdgeSet, LorentzEmbedding, TrainConfig, nk_loss, sample_negatives, train_embedding
from .reconstruction import ranks_and_ap, reconstruction_metrics

__all__ = [
    "LorentzEmbedding",
    "EdgeSet",
    "TrainConfig",
    "nk_loss",
    "sample_negatives",
    "train_embedding",
    "reconstruction_metrics",
    "ranks_and_ap",
]
