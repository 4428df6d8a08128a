"""Pure-PyTorch references of the ``hex`` kernel family, named and shaped like the ops they check.

* :func:`hex_conv2d`: the planar hexagonal convolution as a square ``conv2d`` whose kernel is
  multiplied by the hexagonal mask (the gather + conv2d formulation of HexaConv).
* :func:`hex_filter_transform`: the group convolution's filter expansion, ``[O, I, G_in, k, k]`` to the
  planar bank ``[O * G_out, I * G_in, k, k]``, as :func:`gather_filters` through the tables of
  :func:`flowkernels.hex.filter_transform_tables`; autograd supplies its backward.
* :func:`gather_filters`: that gather alone, with zeros where a table says -1: the reference of the raw
  ``torch.ops.flowkernels.hex_filter_transform`` kernel, which takes the tables.
* :func:`hex_group_conv2d`: compact weights -> expanded filter bank -> planar convolution, the whole group
  convolution (Z2 -> p6, p6 -> p6, Z2 -> p6m, p6m -> p6m).

Conventions (axial storage, group axis layout) are those of :mod:`flowkernels.hex`.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F

from ..hex import GROUP_ORDERS, filter_transform_tables, hex_mask

__all__ = ["gather_filters", "hex_conv2d", "hex_filter_transform", "hex_group_conv2d"]


def hex_conv2d(x: torch.Tensor, weight: torch.Tensor, bias: torch.Tensor | None = None) -> torch.Tensor:
    """``conv2d(x, weight * hex_mask, bias, padding=R)`` for a ``[O, I, 2R + 1, 2R + 1]`` weight."""
    k = weight.shape[-1]
    mask = hex_mask(k // 2).to(device=weight.device, dtype=weight.dtype)
    return F.conv2d(x, weight * mask, bias, padding=k // 2)


def gather_filters(weight: torch.Tensor, index: torch.Tensor) -> torch.Tensor:
    """``[O, I, S]`` -> ``[O, G_out, I, S]`` with ``out[o, g, i, t] = weight[o, i, index[g, t]]`` (0 where -1)."""
    gathered = weight[:, :, index.clamp(min=0)]  # [O, I, G_out, S]
    gathered = torch.where(index >= 0, gathered, torch.zeros((), dtype=weight.dtype, device=weight.device))
    return gathered.permute(0, 2, 1, 3)


def hex_filter_transform(weight: torch.Tensor, in_group: str, out_group: str) -> torch.Tensor:
    """``ops.hex_filter_transform``: compact filters ``[O, I, G_in, k, k]`` -> ``[O * G_out, I * G_in, k, k]``."""
    n_out, n_in, g_in, k, _ = weight.shape
    index, _ = filter_transform_tables(in_group, out_group, k)
    bank = gather_filters(weight.reshape(n_out, n_in, g_in * k * k), index.to(weight.device))
    return bank.reshape(n_out * GROUP_ORDERS[out_group], n_in * g_in, k, k)


def hex_group_conv2d(
    x: torch.Tensor, weight: torch.Tensor, bias: torch.Tensor | None = None, *, in_group: str, out_group: str
) -> torch.Tensor:
    """``ops.hex_group_conv2d``: a hexagonal group convolution.

    Args:
        x: ``[B, I, H, W]`` (planar input) or ``[B, I, G_in, H, W]``.
        weight: compact ``[O, I, G_in, k, k]`` (``G_in = 1`` for a planar input).
        bias: ``[O]`` (one per output field, shared over the group axis) or None.
    Returns:
        ``[B, O, G_out, H, W]``.
    """
    n_out, g_out = weight.shape[0], GROUP_ORDERS[out_group]
    bank = hex_filter_transform(weight, in_group, out_group)
    planar = x.reshape(x.shape[0], bank.shape[1], *x.shape[-2:])
    full_bias = None if bias is None else bias.repeat_interleave(g_out)
    y = hex_conv2d(planar, bank, full_bias)
    return y.reshape(x.shape[0], n_out, g_out, *x.shape[-2:])
