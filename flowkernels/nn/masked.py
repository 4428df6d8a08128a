"""Masked (autoregressive) convolutions over images with several channels, in the raster order.

The order is PixelCNN's (van den Oord et al. 2016, arXiv:1601.06759): pixels row by row, left to right, and the
channels of one pixel innermost (R before G before B). Every feature channel ``k`` of a layer belongs to the
data channel ``k % data_channels``; a masked convolution's output at pixel ``p`` in group ``g`` reads

* every channel of the pixels before ``p`` (rows above, and the same row to the left), and
* at ``p`` itself, the channels of the groups before ``g`` (mask ``"A"``, the first layer: a data channel
  never sees itself) or up to ``g`` (mask ``"B"``, the layers after it).

A stack of one ``"A"`` layer and any number of ``"B"`` layers therefore computes, at element ``(g, p)``, a
function of the elements before it alone. The masked weights are exact zeros, so the output does not depend on
later elements to the last bit (a later ``inf`` or ``nan`` aside), which is what lets the fixed-point
iterations of :class:`flowkernels.models.dequantization.AutoregressiveDequantizer` stop at exact agreement.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

__all__ = ["MaskedConv2d", "raster_mask"]

MASK_TYPES = ("A", "B")


def raster_mask(
    out_channels: int, in_channels: int, kernel_size: int, data_channels: int, mask_type: str
) -> torch.Tensor:
    """The 0/1 mask ``[out_channels, in_channels, k, k]`` of a :class:`MaskedConv2d` (module doc).

    >>> mask = raster_mask(2, 2, 3, data_channels=2, mask_type="A")
    >>> mask[:, :, 1, 1]  # at the pixel itself, output group 1 (G) reads input group 0 (R) only
    tensor([[0., 0.],
            [1., 0.]])
    >>> mask[0, 0]  # every channel reads the pixels above and to the left
    tensor([[1., 1., 1.],
            [1., 0., 0.],
            [0., 0., 0.]])
    """
    if mask_type not in MASK_TYPES:
        raise ValueError(f"raster_mask: mask_type must be 'A' or 'B', got {mask_type!r}")
    if kernel_size < 1 or kernel_size % 2 == 0:
        raise ValueError(f"raster_mask: kernel_size must be a positive odd integer, got {kernel_size}")
    if data_channels < 1:
        raise ValueError(f"raster_mask: data_channels must be positive, got {data_channels}")
    centre = kernel_size // 2
    mask = torch.zeros(out_channels, in_channels, kernel_size, kernel_size)
    mask[:, :, :centre] = 1
    mask[:, :, centre, :centre] = 1
    out_group = torch.arange(out_channels).view(-1, 1) % data_channels
    in_group = torch.arange(in_channels).view(1, -1) % data_channels
    earlier = in_group < out_group if mask_type == "A" else in_group <= out_group
    mask[:, :, centre, centre] = earlier.float()
    return mask


class MaskedConv2d(nn.Conv2d):
    """A ``k x k`` convolution (stride 1, zero padding ``k // 2``) masked to the raster order (module doc).

    Args:
        in_channels, out_channels: channel counts; channel ``k`` belongs to data channel ``k % data_channels``.
        kernel_size: odd.
        data_channels: channels of the modelled image (1 for grey, 3 for RGB).
        mask_type: ``"A"`` for the layer that reads the data, ``"B"`` for the layers after it.

    >>> _ = torch.manual_seed(0)
    >>> conv = MaskedConv2d(1, 4, 3, data_channels=1, mask_type="A")
    >>> x = torch.randn(1, 1, 4, 4)
    >>> later = x.clone(); later[0, 0, 2:] = 5.0  # change rows 2 and 3 only
    >>> torch.equal(conv(x)[..., :2, :], conv(later)[..., :2, :])  # rows 0 and 1 never read a later row
    True
    >>> torch.equal(conv(x)[..., 2, 1], conv(later)[..., 2, 1])  # pixel (2, 1) reads pixel (2, 0)
    False
    """

    def __init__(
        self, in_channels: int, out_channels: int, kernel_size: int, *, data_channels: int, mask_type: str
    ) -> None:
        super().__init__(in_channels, out_channels, kernel_size, padding=kernel_size // 2)
        self.mask_type = mask_type
        self.data_channels = data_channels
        self.register_buffer(
            "mask", raster_mask(out_channels, in_channels, kernel_size, data_channels, mask_type), persistent=False
        )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return F.conv2d(x, self.weight * self.mask, self.bias, padding=self.padding)

    def extra_repr(self) -> str:
        return f"{super().extra_repr()}, data_channels={self.data_channels}, mask_type={self.mask_type!r}"
