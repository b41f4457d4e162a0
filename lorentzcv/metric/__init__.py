"""Hyperbolic metric learning: distances, Recall@K / MAP@R, Proxy-Anchor, HIER and LHIER (``docs/method.md`` §7).

::

    from lorentzcv.metric import LorentzDistance, LHIERLoss, ProxyAnchorLoss, HierarchicalObjective, recall_at_k
    objective = HierarchicalObjective(ProxyAnchorLoss(num_classes, 512), LHIERLoss(manifold, 512, 512))
    recall_at_k(emb, labels, ks=DATASET_KS["cub"], distance=LorentzDistance(manifold))
"""

from .distances import LorentzDistance, PoincareDistance
from .evaluation import DATASET_KS, HIERARCHY_KEYS, hierarchy_metrics, map_at_r, recall_at_k
from .hier import (
    HierarchicalObjective,
    HIERLoss,
    LHIERLoss,
    gumbel_hard,
    hierarchical_triplet_loss,
    reciprocal_triplets,
)
from .poincare import ToPoincare, poincare_dist, poincare_dist_matrix, poincare_expmap0, poincare_project
from .proxy_anchor import ProxyAnchorLoss

__all__ = [
    "LorentzDistance", "PoincareDistance", "recall_at_k", "map_at_r", "hierarchy_metrics", "HIERARCHY_KEYS",
    "DATASET_KS", "ProxyAnchorLoss",
    "HIERLoss", "LHIERLoss", "HierarchicalObjective", "reciprocal_triplets", "hierarchical_triplet_loss",
    "gumbel_hard", "ToPoincare", "poincare_dist", "poincare_dist_matrix", "poincare_expmap0", "poincare_project",
]
