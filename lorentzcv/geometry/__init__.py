"""Lorentz geometry: pure kernels (:mod:`.math`), the :class:`Lorentz` module, rescaling and ``ManifoldParameter``."""

from . import math
from .lorentz import Lorentz, named_manifolds
from .precision import float32_island, no_autocast, upcast
from .rescale import (
    RescaleConfig,
    clip_to_max_distance,
    computation_dtype,
    max_distance,
    max_rapidity_radius,
    rescale,
    rescale_euclid,
)
from .tensor import ManifoldParameter

__all__ = [
    "math", "Lorentz", "named_manifolds", "ManifoldParameter", "RescaleConfig", "rescale", "rescale_euclid", "max_distance",
    "clip_to_max_distance", "max_rapidity_radius", "computation_dtype", "float32_island", "no_autocast", "upcast",
]
