"""The hex kernel family: hexagonal convolutions on the axial lattice (HexaConv).

* :func:`hex_conv2d` — planar hexagonal convolution of radius R over the 3R^2 + 3R + 1 live taps
  of a ``(2R + 1) x (2R + 1)`` weight (the corners are ignored and get zero gradient). On CPUs with
  AVX-512 or AVX2 + FMA a direct kernel computes only the live taps (:mod:`flowkernels.cpu` says
  which path runs); elsewhere (float64, the baseline path, layers over 8192 channel pairs, CUDA)
  the op runs the vendor's square convolution with the masked weight.
* :func:`hex_filter_transform` — expands compact group-convolution filters ``[O, I, G_in, k, k]`` into
  the planar filter bank ``[O * G_out, I * G_in, k, k]`` by a gather from precomputed integer tables
  (:func:`flowkernels.hex.filter_transform_tables`); its backward is a gather followed by a sum over
  the group axis (deterministic, no atomics).
* :func:`hex_group_conv2d` — the group convolution: filter transform, then ``hex_conv2d``.
* :func:`square_group_conv2d` — p4 and p4m group convolutions on the square lattice (the baselines of
  HexaConv): the same filter-transform op with the tables of :mod:`flowkernels.square`, then
  ``torch.nn.functional.conv2d``.

Conventions (axial storage, group axis layout) are documented in :mod:`flowkernels.hex`.
"""

from __future__ import annotations

import functools

import torch
import torch.nn.functional as F

from .. import square
from ..hex import GROUP_ORDERS, filter_transform_tables

__all__ = ["hex_conv2d", "hex_filter_transform", "hex_group_conv2d", "square_filter_transform", "square_group_conv2d"]

_ops = torch.ops.flowkernels


def hex_conv2d(x: torch.Tensor, weight: torch.Tensor, bias: torch.Tensor | None = None) -> torch.Tensor:
    """Planar hexagonal convolution: ``conv2d(x, weight * hex_mask(R), bias, padding=R)``, stride 1.

    Args:
        x: axial hexagonal images ``[B, I, H, W]``, float32 or float64.
        weight: ``[O, I, k, k]`` with ``k = 2R + 1`` odd; entries at hex distance > R are ignored.
        bias: optional ``[O]``.

    Returns:
        ``[B, O, H, W]`` (zero padding outside the image).

    Example (all-ones weights: the output counts each cell's live neighbourhood, the 7-cell hexagon):
        >>> import torch
        >>> from flowkernels import ops
        >>> x = torch.zeros(1, 1, 5, 5)
        >>> x[0, 0, 2, 2] = 1.0
        >>> ops.hex_conv2d(x, torch.ones(1, 1, 3, 3))[0, 0]
        tensor([[0., 0., 0., 0., 0.],
                [0., 0., 1., 1., 0.],
                [0., 1., 1., 1., 0.],
                [0., 1., 1., 0., 0.],
                [0., 0., 0., 0., 0.]])
    """
    return _ops.hex_conv2d(x, weight, bias)


@functools.cache
def _cached_tables(in_group: str, out_group: str, kernel_size: int, device: torch.device):
    tables = square.filter_transform_tables if in_group in _SQUARE or out_group in _SQUARE else filter_transform_tables
    index, inverse = tables(in_group, out_group, kernel_size)
    return index.to(device), inverse.to(device)


def _tables(in_group: str, out_group: str, kernel_size: int, device: torch.device):
    return _cached_tables(in_group, out_group, kernel_size, device)


_SQUARE = ("p4", "p4m")


# The tables are constants of (groups, kernel size, device): torch.compile embeds them instead of
# tracing the Python that builds them. This is what torch.compiler.assume_constant_result does,
# without importing torch._dynamo (over 2 s) when flowkernels is imported; the torch.compile tests
# of hex_group_conv2d fail if a torch release changes the mechanism.
_tables._dynamo_marked_constant = True  # type: ignore[attr-defined]


def _group_orders(orders: dict[str, int], family: str, in_group: str, out_group: str) -> tuple[int, int]:
    for argument, name in (("in_group", in_group), ("out_group", out_group)):
        if name not in orders:
            raise ValueError(f"flowkernels.{family}: {argument} must be one of {sorted(orders)}, got {name!r}")
    return orders[in_group], orders[out_group]


def _expand(
    function: str, orders: dict[str, int], family: str, weight: torch.Tensor, in_group: str, out_group: str
) -> torch.Tensor:
    """The filter transform of either lattice: validate, look the tables up, gather (``function`` names
    the public wrapper in messages)."""
    g_in, g_out = _group_orders(orders, family, in_group, out_group)
    if weight.dim() != 5 or weight.shape[2] != g_in or weight.shape[3] != weight.shape[4]:
        raise ValueError(
            f"flowkernels.{function}: weight must be [O, I, G_in = {g_in}, k, k] for a {in_group} input, "
            f"got {list(weight.shape)}"
        )
    n_out, n_in, _, k, _ = weight.shape
    index, inverse = _tables(in_group, out_group, k, weight.device)
    bank = _ops.hex_filter_transform(weight.reshape(n_out, n_in, g_in * k * k), index, inverse)
    return bank.reshape(n_out * g_out, n_in * g_in, k, k)


def _group_conv(
    function: str,
    orders: dict[str, int],
    family: str,
    planar_conv,
    x: torch.Tensor,
    weight: torch.Tensor,
    bias: torch.Tensor | None,
    in_group: str,
    out_group: str,
) -> torch.Tensor:
    """The group convolution of either lattice: validate the group layout of ``x``, expand the filters, run
    the lattice's planar convolution ``planar_conv(x, bank, bias)`` over the flattened group axis."""
    g_in, g_out = _group_orders(orders, family, in_group, out_group)
    expected_dim = 4 if in_group == "z2" else 5
    if x.dim() != expected_dim or (expected_dim == 5 and x.shape[2] != g_in):
        layout = "[B, I, H, W]" if in_group == "z2" else f"[B, I, {g_in}, H, W]"
        raise ValueError(f"flowkernels.{function}: x must be {layout} for a {in_group} input, got {list(x.shape)}")
    if weight.dim() != 5 or weight.shape[1] != x.shape[1] or weight.shape[-1] % 2 != 1:
        raise ValueError(
            f"flowkernels.{function}: weight must be [O, I = {x.shape[1]}, G_in, k, k] with k odd, "
            f"got {list(weight.shape)}"
        )
    B, H, W = x.shape[0], x.shape[-2], x.shape[-1]
    bank = _expand(function, orders, family, weight, in_group, out_group)
    full_bias = None if bias is None else bias.repeat_interleave(g_out)
    y = planar_conv(x.reshape(B, -1, H, W), bank, full_bias)
    return y.reshape(B, weight.shape[0], g_out, H, W)


def hex_filter_transform(weight: torch.Tensor, in_group: str, out_group: str) -> torch.Tensor:
    """Expand compact group-convolution filters into a planar filter bank.

    ``expanded[o, g, i, h] = T_g(weight[o, i, g^-1 h])`` where ``T_g`` rotates (and mirrors) a hexagonal
    filter exactly, as a permutation of its cells.

    Args:
        weight: ``[O, I, G_in, k, k]``; ``G_in = 1`` for a planar (``"z2"``) input.
        in_group, out_group: ``"z2" -> "p6"``, ``"p6" -> "p6"``, ``"z2" -> "p6m"``, ``"p6m" -> "p6m"``
            (or ``"z2" -> "z2"``).

    Returns:
        ``[O * G_out, I * G_in, k, k]``, the weight of the equivalent planar ``hex_conv2d``.
    """
    return _expand("hex_filter_transform", GROUP_ORDERS, "hex", weight, in_group, out_group)


def hex_group_conv2d(
    x: torch.Tensor,
    weight: torch.Tensor,
    bias: torch.Tensor | None = None,
    *,
    in_group: str,
    out_group: str,
) -> torch.Tensor:
    """Hexagonal group convolution (Z2 -> p6, p6 -> p6, Z2 -> p6m, p6m -> p6m).

    Args:
        x: ``[B, I, H, W]`` for a ``"z2"`` input, ``[B, I, G_in, H, W]`` otherwise.
        weight: compact filters ``[O, I, G_in, k, k]``, k odd.
        bias: ``[O]``, one per output field, shared over the group axis.

    Returns:
        ``[B, O, G_out, H, W]``: rotating the input (:func:`flowkernels.hex.rotate60`) rotates the output.

    Example:
        >>> import torch
        >>> from flowkernels import hex, ops
        >>> generator = torch.Generator().manual_seed(0)
        >>> domain = hex.hex_domain_mask(9)  # a hexagon, which rotations map onto itself
        >>> x = torch.randn(1, 1, 9, 9, dtype=torch.float64, generator=generator) * domain
        >>> weight = torch.randn(4, 1, 1, 3, 3, dtype=torch.float64, generator=generator)
        >>> y = ops.hex_group_conv2d(x, weight, in_group="z2", out_group="p6") * domain
        >>> y.shape
        torch.Size([1, 4, 6, 9, 9])
        >>> rotated = ops.hex_group_conv2d(hex.rotate60(x), weight, in_group="z2", out_group="p6") * domain
        >>> torch.allclose(rotated, hex.rotate60(y))
        True
    """
    return _group_conv("hex_group_conv2d", GROUP_ORDERS, "hex", hex_conv2d, x, weight, bias, in_group, out_group)


def square_filter_transform(weight: torch.Tensor, in_group: str, out_group: str) -> torch.Tensor:
    """Expand compact p4 / p4m filters ``[O, I, G_in, k, k]`` into the planar bank ``[O * G_out, I * G_in,
    k, k]``: ``expanded[o, g, i, h] = T_g(weight[o, i, g^-1 h])``, ``T_g`` the exact rotation (and mirror)
    of the square filter (:mod:`flowkernels.square`). Groups: ``"z2" -> "p4"``, ``"p4" -> "p4"``,
    ``"z2" -> "p4m"``, ``"p4m" -> "p4m"``."""
    return _expand("square_filter_transform", square.GROUP_ORDERS, "square", weight, in_group, out_group)


def _square_conv(x: torch.Tensor, bank: torch.Tensor, bias: torch.Tensor | None) -> torch.Tensor:
    return F.conv2d(x, bank, bias, padding=bank.shape[-1] // 2)


def square_group_conv2d(
    x: torch.Tensor,
    weight: torch.Tensor,
    bias: torch.Tensor | None = None,
    *,
    in_group: str,
    out_group: str,
) -> torch.Tensor:
    """Square-lattice group convolution (Z2 -> p4, p4 -> p4, Z2 -> p4m, p4m -> p4m), stride 1, zero padding
    ``k // 2``.

    Args:
        x: ``[B, I, H, W]`` for a ``"z2"`` input, ``[B, I, G_in, H, W]`` otherwise.
        weight: compact filters ``[O, I, G_in, k, k]``, k odd.
        bias: ``[O]``, one per output field, shared over the group axis.

    Returns:
        ``[B, O, G_out, H, W]``: rotating or mirroring the input (:func:`flowkernels.square.transform_group_map`)
        does the same to the output, exactly.

    Example:
        >>> import torch
        >>> from flowkernels import ops, square
        >>> generator = torch.Generator().manual_seed(0)
        >>> x = torch.randn(2, 3, 6, 6, dtype=torch.float64, generator=generator)
        >>> weight = torch.randn(5, 3, 1, 3, 3, dtype=torch.float64, generator=generator)
        >>> y = ops.square_group_conv2d(x, weight, in_group="z2", out_group="p4")
        >>> y.shape
        torch.Size([2, 5, 4, 6, 6])
        >>> turned = ops.square_group_conv2d(torch.rot90(x, 1, (-2, -1)), weight, in_group="z2", out_group="p4")
        >>> torch.allclose(turned, square.transform_group_map(y, (0, 1)))
        True
    """
    return _group_conv(
        "square_group_conv2d", square.GROUP_ORDERS, "square", _square_conv, x, weight, bias, in_group, out_group
    )


# ---------------------------------------------------------------------------
# Fake kernels.


@torch.library.register_fake("flowkernels::hex_conv2d")
def _hex_conv2d_fake(x, weight, bias=None):
    torch._check(x.dim() == 4, lambda: f"flowkernels.hex_conv2d: argument 'x' must be 4-D, got {x.dim()}-D")
    torch._check(
        weight.dim() == 4 and weight.shape[1] == x.shape[1],
        lambda: (
            f"flowkernels.hex_conv2d: argument 'weight' must be [O, I, k, k] with I = {x.shape[1]}, "
            f"got {list(weight.shape)}"
        ),
    )
    return x.new_empty(x.shape[0], weight.shape[0], x.shape[2], x.shape[3])


@torch.library.register_fake("flowkernels::hex_conv2d_weight_backward")
def _hex_conv2d_weight_backward_fake(grad, x, kernel_size):
    torch._check(
        grad.dim() == 4 and x.dim() == 4,
        lambda: f"flowkernels.hex_conv2d_weight_backward: 'grad' and 'x' must be 4-D, got {grad.dim()}-D, {x.dim()}-D",
    )
    return x.new_empty(grad.shape[1], x.shape[1], kernel_size, kernel_size)


@torch.library.register_fake("flowkernels::hex_filter_transform")
def _hex_filter_transform_fake(weight, index, inverse_index):
    n_out, n_in, cells = weight.shape
    return weight.new_empty(n_out, index.shape[0], n_in, cells)


@torch.library.register_fake("flowkernels::hex_filter_transform_backward")
def _hex_filter_transform_backward_fake(grad, inverse_index):
    n_out, _, n_in, cells = grad.shape
    return grad.new_empty(n_out, n_in, cells)
