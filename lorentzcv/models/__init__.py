"""Model zoo: a timm-style registry of Euclidean, hybrid and hyperbolic ResNets (``docs/design.md`` §2–§3).

>>> from lorentzcv.models import create_model, list_models
>>> list_models("hecnn_*")
['hecnn_resnet18', 'hecnn_resnet50']
>>> model = create_model("hecnn_resnet18", num_classes=10, img_size=32, width=8)
>>> sorted(model.manifolds())
['decoder_manifold', 'encoder_manifold']

Metric-learning embedding models (backbone + Euclidean/Poincaré/Lorentz head, ``docs/method.md`` §7) are built
with :func:`create_embedding_model` (:mod:`.embedding`); they are kept out of the classifier registry because
they return embeddings, not logits (:func:`list_embedding_models` lists the named ones).

The classifiers are also timm models (:mod:`._timm`): after ``import lorentzcv``,
``timm.create_model("hecnn_resnet18", features_only=True)`` or ``timm.create_model("lorentzcv_resnet18")``
(timm's own ``resnet18`` stays timm's) go through :func:`create_model`.
"""

from . import embedding, resnet
from ._registry import create_model, is_model, list_embedding_models, list_models, model_entrypoint, register_model
from ._timm import install as _install_timm
from ._timm import register_timm_models
from .embedding import (
    EmbeddingModel,
    EuclideanHead,
    LorentzHead,
    PoincareHead,
    create_backbone,
    create_embedding_model,
)
from .resnet import ResNet, euclidean_factories, lorentz_factories

__all__ = [
    "create_model", "list_models", "register_model", "is_model", "model_entrypoint", "ResNet",
    "euclidean_factories", "lorentz_factories", "resnet", "embedding", "EmbeddingModel", "EuclideanHead",
    "LorentzHead", "PoincareHead", "create_backbone", "create_embedding_model", "list_embedding_models",
    "register_timm_models",
]

_install_timm()
