r"""Proxy-Anchor loss (Kim et al. 2020), HIER's base metric loss (``docs/method.md`` §7.1).

With cosine similarities :math:`s(x, p)` between L2-normalised embeddings and class proxies, :math:`P^+` the
proxies of the classes present in the batch, :math:`C` all proxies and :math:`X_p^{+}` / :math:`X_p^{-}` the
batch samples of / not of class ``p``:

.. math::

    L_{PA} = \frac{1}{|P^+|}\sum_{p\in P^+}\log\Big(1 + \sum_{x\in X_p^+} e^{-\alpha(s(x,p)-\delta)}\Big)
           + \frac{1}{|C|}\sum_{p\in C}\log\Big(1 + \sum_{x\in X_p^-} e^{\alpha(s(x,p)+\delta)}\Big)

with :math:`\alpha = 32`, :math:`\delta = 0.1`. pytorch-metric-learning's ``ProxyAnchorLoss`` computes exactly
this (``CosineSimilarity``, ``DivisorReducer`` with divisors :math:`|P^+|` and :math:`|C|`, the ``log(1+Σ)`` via
a stable log-sum-exp, kaiming-normal ``fan_out`` proxy init as HIER's ``PALoss_Angle``), which the tests check
against a literal implementation of the formula. This module only adds a float32 island: PML casts its
proxies to the dtype of the embeddings on every call, which under autocast would silently turn the proxy
parameters into float16/bfloat16; here half-precision embeddings are upcast first.

HIER trains the proxies with a ×1e4 learning-rate multiplier (the training engine's job).
"""

from __future__ import annotations

import torch
from pytorch_metric_learning import losses as pml_losses

from ..geometry.precision import no_autocast, upcast

__all__ = ["ProxyAnchorLoss"]


class ProxyAnchorLoss(pml_losses.ProxyAnchorLoss):
    """PML's ``ProxyAnchorLoss`` run as a float32 island (module docstring).

    Args:
        num_classes: number of classes (labels in ``[0, num_classes)``).
        embedding_size: embedding dimension ``D``.
        margin: δ (HIER: 0.1).
        alpha: α (HIER: 32).
        **kwargs: PML options (``distance``, ``reducer``, ``weight_regularizer`` …); the defaults are the
            formula above.

    Shapes: ``forward(embeddings (B, D), labels (B,)) -> ()``.
    """

    def __init__(self, num_classes: int, embedding_size: int, margin: float = 0.1, alpha: float = 32,
                 **kwargs) -> None:
        super().__init__(num_classes, embedding_size, margin=margin, alpha=alpha, **kwargs)

    def forward(self, embeddings: torch.Tensor, labels: torch.Tensor | None = None, indices_tuple=None,
                ref_emb=None, ref_labels=None) -> torch.Tensor:
        with no_autocast(embeddings):
            return super().forward(upcast(embeddings), labels, indices_tuple, ref_emb, ref_labels)
