"""Lorentz layers: fully-connected, convolution, batch norm, MLR, activation, pooling, manifold swappers."""

from . import functional
from .activation import LorentzActivation, LorentzReLU, LorentzResidual
from .blocks import BasicBlock, Bottleneck, ConvNormAct, LorentzCoreBottleneck
from .bridge import FromLorentz, ManifoldSwap, ToLorentz
from .conv import LorentzConv2d
from .functional import lorentz_residual
from .linear import LorentzLinear
from .mlr import LorentzMLR
from .norm import LorentzBatchNorm1d, LorentzBatchNorm2d
from .pooling import LorentzGlobalAvgPool2d, LorentzMaxPool2d

__all__ = [
    "functional", "LorentzLinear", "LorentzConv2d", "LorentzMLR", "LorentzActivation", "LorentzReLU",
    "LorentzResidual", "lorentz_residual", "LorentzGlobalAvgPool2d", "LorentzMaxPool2d", "ToLorentz",
    "FromLorentz", "ManifoldSwap", "LorentzBatchNorm1d", "LorentzBatchNorm2d",
    "BasicBlock", "Bottleneck", "ConvNormAct", "LorentzCoreBottleneck",
]
