"""Riemannian optimizers with curvature-aware updates (``docs/method.md`` §3–4, ``docs/design.md`` §4.4–4.6).

- :class:`RiemannianSGD`: torch SGD on Euclidean parameters, RSGD (exp-map retraction, transported momentum)
  on :class:`~lorentzcv.geometry.ManifoldParameter`.
- :class:`RiemannianAdamW`: torch AdamW on Euclidean parameters, Riemannian AdamW with centroid weight decay
  toward the origin on manifold parameters.
- Both update curvatures (groups flagged ``"curvature": True``) after everything else, clamp them to their
  bounds and move the manifold parameters (and first moments) living on a changed ``k`` onto the new manifold.
- :func:`create_optimizer`: parameter groups by type (``decay``/``no_decay``/``manifold``/``curvature``).
"""

from .curvature import CURVATURE_MODES, CURVATURE_MOVES, CurvatureAwareOptimizer, move_to_curvature
from .factory import OPTIMIZERS, create_optimizer, param_groups
from .radamw import RiemannianAdamW
from .rsgd import RiemannianSGD

__all__ = [
    "RiemannianSGD", "RiemannianAdamW", "create_optimizer", "param_groups", "OPTIMIZERS", "move_to_curvature",
    "CurvatureAwareOptimizer", "CURVATURE_MODES", "CURVATURE_MOVES",
]
