"""Square-lattice group convolutions p4 and p4m (Cohen & Welling 2016), the baselines of HexaConv.

Conventions are those of :mod:`flowkernels.square`: group maps ``[B, C, G, H, W]`` with G = 4 (p4) or 8
(p4m, element ``M^m R^r`` at index ``4 m + r``), rotations by 90 degrees about the image centre.

* :class:`P4ConvZ2`, :class:`P4ConvP4`, :class:`P4MConvZ2`, :class:`P4MConvP4M`: group convolutions on
  :func:`flowkernels.ops.square_group_conv2d`, with compact weights ``[O, I, G_in, k, k]`` (every tap live)
  and one bias per output field: exactly equivariant to the rotations (and, for p4m, mirrors) of
  :func:`flowkernels.square.transform_group_map` on any square image.
* :class:`SquareGroupMaxPool2d`: 2x2 max pooling of planar or group maps; on even sizes it commutes with
  the rotations and mirrors exactly (the 2x2 blocks map onto blocks).

:class:`flowkernels.nn.GroupPool` and :class:`flowkernels.nn.HexBatchNorm` (without a mask) serve both
lattices. The layers take ``(in_channels, out_channels, kernel_size=3, bias=True)``, stride 1 and zero
padding ``k // 2``; initialisation is He-normal over ``I * G_in * k^2`` taps, as for the hexagonal layers.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from .. import ops, square
from .hex import _check_rank, _HexConv

__all__ = ["P4ConvZ2", "P4ConvP4", "P4MConvZ2", "P4MConvP4M", "SquareGroupMaxPool2d"]


class _SquareGroupConv(_HexConv):
    """The machinery of :class:`flowkernels.nn.hex._HexConv` with the square lattice's groups, taps and op."""

    group_orders = square.GROUP_ORDERS
    group_conv = staticmethod(ops.square_group_conv2d)

    def __init__(self, in_channels: int, out_channels: int, kernel_size: int = 3, bias: bool = True) -> None:
        nn.Module.__init__(self)
        self.stride = 1
        if isinstance(kernel_size, bool) or not isinstance(kernel_size, int) or kernel_size < 1 or kernel_size % 2 != 1:
            raise ValueError(f"{type(self).__name__}: kernel_size must be a positive odd integer, got {kernel_size!r}")
        self._build(in_channels, out_channels, kernel_size // 2, bias)

    def live_taps(self) -> int:
        return self.kernel_size**2

    def tap_mask(self) -> torch.Tensor:
        return torch.ones(self.kernel_size, self.kernel_size, dtype=torch.bool)

    def extra_repr(self) -> str:
        return (
            f"{self.in_channels}, {self.out_channels}, kernel_size={self.kernel_size}, "
            f"{self.in_group} -> {self.out_group}, bias={self.bias is not None}"
        )


class P4ConvZ2(_SquareGroupConv):
    """Lifting convolution ``Z2 -> p4``: ``[B, I, H, W] -> [B, O, 4, H, W]``; weight ``[O, I, 1, k, k]``.

    Example (pooled over the group and the plane, the features ignore quarter turns):
        >>> import torch
        >>> from flowkernels.nn import GroupPool, P4ConvZ2
        >>> _ = torch.manual_seed(0)
        >>> layer = P4ConvZ2(1, 8)
        >>> x = torch.rand(2, 1, 6, 6)
        >>> layer(x).shape
        torch.Size([2, 8, 4, 6, 6])
        >>> def features(t):
        ...     return GroupPool("max")(layer(t)).amax(dim=(-2, -1))
        >>> torch.allclose(features(torch.rot90(x, 1, (-2, -1))), features(x))
        True
    """

    in_group, out_group = "z2", "p4"


class P4ConvP4(_SquareGroupConv):
    """Group convolution ``p4 -> p4``: ``[B, I, 4, H, W] -> [B, O, 4, H, W]``; weight ``[O, I, 4, k, k]``."""

    in_group, out_group = "p4", "p4"


class P4MConvZ2(_SquareGroupConv):
    """Lifting convolution ``Z2 -> p4m``: ``[B, I, H, W] -> [B, O, 8, H, W]``; weight ``[O, I, 1, k, k]``."""

    in_group, out_group = "z2", "p4m"


class P4MConvP4M(_SquareGroupConv):
    """Group convolution ``p4m -> p4m``: ``[B, I, 8, H, W] -> [B, O, 8, H, W]``; weight ``[O, I, 8, k, k]``."""

    in_group, out_group = "p4m", "p4m"


class SquareGroupMaxPool2d(nn.Module):
    """2x2 max pooling, stride 2, of a planar ``[B, C, H, W]`` or group ``[B, C, G, H, W]`` map (each group
    channel alike). A border row or column of an odd size is dropped, which breaks exact equivariance: use
    even sizes."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        _check_rank("SquareGroupMaxPool2d", x, (4, 5), "a planar [B, C, H, W] or group [B, C, G, H, W] map")
        pooled = F.max_pool2d(x.flatten(1, -3), 2)
        return pooled.reshape(*x.shape[:-2], *pooled.shape[-2:])
