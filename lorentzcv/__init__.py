"""lorentzcv: hyperbolic deep learning for computer vision on the Lorentz model."""

from . import models as models  # registers the classifiers with timm (timm.create_model("hecnn_resnet18"))
from .geometry import Lorentz, ManifoldParameter

__version__ = "0.1.0"
__all__ = ["Lorentz", "ManifoldParameter", "__version__"]
