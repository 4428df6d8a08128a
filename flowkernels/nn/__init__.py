"""Flow layers built on :mod:`flowkernels.ops`.

Convention (DESIGN.md): ``z, logdet = layer(x)`` maps data to latent, with the log-determinant of the
Jacobian per sample (shape ``[B]``); ``x = layer.inverse(z)`` maps back. Inputs are ``[B, C, H, W]``.
"""

from .flow import ActNorm, AffineCoupling, FlowLayer, FlowSequential, Squeeze
from .invconv import EmergingConv2d, Invertible1x1Conv, PeriodicConv2d

__all__ = [
    "FlowLayer",
    "FlowSequential",
    "ActNorm",
    "AffineCoupling",
    "Squeeze",
    "Invertible1x1Conv",
    "EmergingConv2d",
    "PeriodicConv2d",
]
