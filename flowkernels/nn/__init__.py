"""Flow layers built on :mod:`flowkernels.ops`.

Convention (docs/architecture.md): ``z, logdet = layer(x)`` maps data to latent, with the log-determinant of the
Jacobian per sample (shape ``[B]``); ``x = layer.inverse(z)`` maps back. Inputs are ``[B, C, H, W]``.

The hexagonal layers of :mod:`flowkernels.nn.hex` (HexaConv) and the square-lattice group layers of
:mod:`flowkernels.nn.square` are ordinary ``y = layer(x)`` modules.
"""

from .flow import ActNorm, AffineCoupling, FlowLayer, FlowSequential, Squeeze
from .hex import (
    GroupPool,
    HexAvgPool2d,
    HexBatchNorm,
    HexConv2d,
    HexMaxPool2d,
    P6ConvP6,
    P6ConvZ2,
    P6MConvP6M,
    P6MConvZ2,
)
from .invconv import EmergingConv2d, Invertible1x1Conv, PeriodicConv2d
from .masked import MaskedConv2d
from .quant import IntConv2d
from .square import P4ConvP4, P4ConvZ2, P4MConvP4M, P4MConvZ2, SquareGroupMaxPool2d

__all__ = [
    "IntConv2d",
    "FlowLayer",
    "FlowSequential",
    "ActNorm",
    "AffineCoupling",
    "Squeeze",
    "Invertible1x1Conv",
    "EmergingConv2d",
    "PeriodicConv2d",
    "HexConv2d",
    "P6ConvZ2",
    "P6ConvP6",
    "P6MConvZ2",
    "P6MConvP6M",
    "GroupPool",
    "HexMaxPool2d",
    "HexAvgPool2d",
    "HexBatchNorm",
    "P4ConvZ2",
    "P4ConvP4",
    "P4MConvZ2",
    "P4MConvP4M",
    "SquareGroupMaxPool2d",
    "MaskedConv2d",
]
