"""Hexagonal layers of HexaConv (Hoogeboom, Peters, Cohen & Welling 2018, arXiv:1803.02108).

Conventions are those of :mod:`flowkernels.hex`: axial storage, hexagonal filters of radius ``R`` stored in
``(2R + 1) x (2R + 1)`` squares (corners dead), planar maps ``[B, C, H, W]`` and group maps
``[B, C, G, H, W]`` with ``G = 6`` (p6) or ``G = 12`` (p6m, element ``M^m R^r`` at index ``6 m + r``).

* :class:`HexConv2d`: planar hexagonal convolution (translation equivariant; :func:`flowkernels.ops.hex_conv2d`).
* :class:`P6ConvZ2`, :class:`P6ConvP6`, :class:`P6MConvZ2`, :class:`P6MConvP6M`: group convolutions on
  :func:`flowkernels.ops.hex_group_conv2d`. Compact weights ``[O, I, G_in, k, k]`` and one bias per output
  field, shared over the group axis, so the layers are exactly equivariant to the rotations (and, for
  p6m, mirrors) of :func:`flowkernels.hex.rotate60` / :func:`flowkernels.hex.mirror` on a domain the group
  maps onto itself, such as :func:`flowkernels.hex.hex_domain_mask` (mask the activations to it).
* :class:`GroupPool`, :class:`HexMaxPool2d`, :class:`HexAvgPool2d`: modules around the functions of the same
  purpose in :mod:`flowkernels.hex` (pooling over the group axis; 7-cell hexagon pooling at the stride-2
  axial sublattice, which commutes with rotations and mirrors on odd sizes ``4 m + 1``, given the domain
  as ``mask``).
* :class:`HexBatchNorm`: batch normalisation for planar and group maps whose statistics are shared over the
  group axis (so it is equivariant) and, given a domain mask, count only live cells.

Every convolution takes ``(in_channels, out_channels, radius=1, bias=True)``: a filter of radius R covers
``3 R^2 + 3 R + 1`` cells. ``kernel_size`` is refused with a message (a width here, the radius in hexagdly:
either reading would silently build another filter for someone). ``stride=2`` keeps the outputs at the
axial sublattice ``2 Z^2`` (the sites the hexagonal pooling keeps, ``[.., ceil(H / 2), ceil(W / 2)]``), which
on sizes ``4 m + 1`` keeps the layers exactly equivariant; other strides are refused.

Initialisation: He-style, ``N(0, 2 / fan_in)`` with ``fan_in = I * G_in * (3 R^2 + 3 R + 1)``, the live
taps that feed one output (the dead corners are zeroed and ignored by the ops); biases start at zero.
"""

from __future__ import annotations

import math

import torch
from torch import nn

from .. import hex as _hex
from .. import ops

__all__ = [
    "HexConv2d",
    "P6ConvZ2",
    "P6ConvP6",
    "P6MConvZ2",
    "P6MConvP6M",
    "GroupPool",
    "HexMaxPool2d",
    "HexAvgPool2d",
    "HexBatchNorm",
    "live_taps",
]


def live_taps(radius: int) -> int:
    """Number of live cells of a radius-``R`` hexagonal filter: ``3 R^2 + 3 R + 1``."""
    return 3 * radius * radius + 3 * radius + 1


def _check_positive_int(layer: str, name: str, value) -> int:
    if isinstance(value, bool) or not isinstance(value, int) or value < 1:
        raise ValueError(f"{layer}: {name} must be a positive integer, got {value!r}")
    return value


def _resolve_radius(layer: str, radius, kernel_size) -> int:
    if kernel_size is not None:
        # hexagdly's Conv2d(kernel_size=k) means radius k, a square convolution's kernel_size k means width k:
        # either reading of a number here would silently build another filter for someone.
        raise ValueError(
            f"{layer}: kernel_size={kernel_size!r} is ambiguous for a hexagonal filter (a width 2R + 1 here, "
            f"the radius R in hexagdly): pass radius=R instead (hexagdly's kernel_size={kernel_size!r} is "
            f"radius={kernel_size!r})"
        )
    if isinstance(radius, bool) or not isinstance(radius, int) or radius < 0:
        raise ValueError(f"{layer}: radius must be a non-negative integer (kernel size 2R + 1), got {radius!r}")
    return radius


def _check_stride(layer: str, stride) -> int:
    if isinstance(stride, bool) or stride not in (1, 2):
        raise ValueError(
            f"{layer}: stride={stride!r}: hexagonal convolutions run at stride 1 or 2 (the axial sublattice 2 Z^2, "
            "itself a hexagonal lattice); downsample further with HexMaxPool2d or HexAvgPool2d"
        )
    return stride


class _HexConv(nn.Module):
    """Shared machinery of the group convolutions, hexagonal (here) and square (:mod:`flowkernels.nn.square`):
    a lattice subclass names its group orders, its live taps and its convolution op."""

    in_group: str = "z2"
    out_group: str = "z2"
    planar: bool = False  # HexConv2d: 4-D weight [O, I, k, k] and ops.hex_conv2d
    group_orders: dict[str, int] = _hex.GROUP_ORDERS
    group_conv = staticmethod(ops.hex_group_conv2d)

    def __init__(
        self,
        in_channels: int,
        out_channels: int,
        radius: int = 1,
        bias: bool = True,
        *,
        kernel_size: int | None = None,
        stride: int = 1,
    ) -> None:
        super().__init__()
        self.stride = _check_stride(type(self).__name__, stride)
        self._build(in_channels, out_channels, _resolve_radius(type(self).__name__, radius, kernel_size), bias)

    def _build(self, in_channels: int, out_channels: int, radius: int, bias: bool) -> None:
        name = type(self).__name__
        self.in_channels = _check_positive_int(name, "in_channels", in_channels)
        self.out_channels = _check_positive_int(name, "out_channels", out_channels)
        self.radius = radius
        self.kernel_size = 2 * self.radius + 1
        self.group_in = self.group_orders[self.in_group]
        self.group_out = self.group_orders[self.out_group]
        k = self.kernel_size
        shape = (out_channels, in_channels, k, k) if self.planar else (out_channels, in_channels, self.group_in, k, k)
        self.weight = nn.Parameter(torch.empty(shape))
        if bias:
            self.bias = nn.Parameter(torch.empty(out_channels))
        else:
            self.register_parameter("bias", None)
        self.reset_parameters()

    def live_taps(self) -> int:
        """Live cells of one filter: ``3 R^2 + 3 R + 1`` on the hexagonal lattice."""
        return live_taps(self.radius)

    def tap_mask(self) -> torch.Tensor:
        """Boolean ``[k, k]``: the live cells of a stored filter."""
        return _hex.hex_mask(self.radius)

    @property
    def fan_in(self) -> int:
        """Live taps feeding one output: ``I * G_in * live_taps()``."""
        return self.in_channels * self.group_in * self.live_taps()

    def reset_parameters(self) -> None:
        """He-normal over the live taps; dead corners and the bias set to zero."""
        with torch.no_grad():
            self.weight.normal_(0.0, math.sqrt(2.0 / self.fan_in))
            self.weight.mul_(self.tap_mask().to(self.weight.dtype))
            if self.bias is not None:
                self.bias.zero_()

    def free_parameters(self) -> int:
        """Trainable degrees of freedom: the live taps of the weight (not its dead corners) plus the bias."""
        count = self.weight.numel() // (self.kernel_size**2) * self.live_taps()
        return count + (0 if self.bias is None else self.bias.numel())

    def extra_repr(self) -> str:
        groups = "" if self.planar else f", {self.in_group} -> {self.out_group}"
        stride = "" if self.stride == 1 else f", stride={self.stride}"
        return (
            f"{self.in_channels}, {self.out_channels}, radius={self.radius}{groups}{stride}, "
            f"bias={self.bias is not None}"
        )

    def _check(self, x: torch.Tensor) -> None:
        name = type(self).__name__
        k = self.weight.shape[-1]
        if k % 2 != 1 or self.weight.shape[-2] != k:
            raise ValueError(f"{name}: the weight needs an odd square hexagonal kernel (2R + 1), got {k}")
        if not isinstance(x, torch.Tensor):
            raise ValueError(f"{name}: expected a tensor, got {type(x).__name__}")
        if self.in_group == "z2":
            if x.dim() != 4:
                raise ValueError(
                    f"{name}: expected a planar input [B, C, H, W] (4-D), got a {x.dim()}-D tensor of shape "
                    f"{tuple(x.shape)}" + ("; group maps go to the G -> G layers" if x.dim() == 5 else "")
                )
        else:
            if x.dim() != 5:
                raise ValueError(
                    f"{name}: expected a {self.in_group} feature map [B, C, {self.group_in}, H, W] (5-D), "
                    f"got a {x.dim()}-D tensor of shape {tuple(x.shape)}"
                )
            if x.shape[2] != self.group_in:
                raise ValueError(
                    f"{name}: expected a {self.in_group} feature map with G = {self.group_in} on dim 2, "
                    f"got G = {x.shape[2]} (shape {tuple(x.shape)})"
                )
        if x.shape[1] != self.in_channels:
            raise ValueError(
                f"{name}: expected {self.in_channels} input channels on dim 1, got {x.shape[1]} "
                f"(shape {tuple(x.shape)})"
            )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        self._check(x)
        if self.planar:
            y = ops.hex_conv2d(x, self.weight, self.bias)
        else:
            y = self.group_conv(x, self.weight, self.bias, in_group=self.in_group, out_group=self.out_group)
        # Stride 2 keeps the sites (2 u', 2 v'), as the hexagonal pooling does: on sizes 4 m + 1 the centre is
        # one of them, so rotations and mirrors about it still commute with the layer. The ops have no strided
        # kernel: this computes the stride-1 map (4x the arithmetic) and keeps a quarter of it.
        return y if self.stride == 1 else y[..., ::2, ::2]


class HexConv2d(_HexConv):
    """Planar hexagonal convolution ``[B, I, H, W] -> [B, O, H, W]`` ('same' zero padding; stride 1, or 2 for
    ``[B, O, ceil(H / 2), ceil(W / 2)]``).

    Weight ``[O, I, 2R + 1, 2R + 1]`` (corners dead), bias ``[O]``. Equivariant to translations of the
    axial lattice; rotation-equivariant only for rotation-symmetric filters (use the group layers for that).

    Example:
        >>> import torch
        >>> from flowkernels.nn import HexConv2d
        >>> HexConv2d(3, 4)(torch.rand(1, 3, 9, 9)).shape
        torch.Size([1, 4, 9, 9])
        >>> HexConv2d(3, 4, stride=2)(torch.rand(1, 3, 9, 9)).shape  # the axial sublattice 2Z^2
        torch.Size([1, 4, 5, 5])
    """

    planar = True


class P6ConvZ2(_HexConv):
    """Lifting convolution ``Z2 -> p6``: ``[B, I, H, W] -> [B, O, 6, H, W]``; weight ``[O, I, 1, k, k]``."""

    in_group, out_group = "z2", "p6"


class P6ConvP6(_HexConv):
    """Group convolution ``p6 -> p6``: ``[B, I, 6, H, W] -> [B, O, 6, H, W]``; weight ``[O, I, 6, k, k]``."""

    in_group, out_group = "p6", "p6"


class P6MConvZ2(_HexConv):
    """Lifting convolution ``Z2 -> p6m``: ``[B, I, H, W] -> [B, O, 12, H, W]``; weight ``[O, I, 1, k, k]``."""

    in_group, out_group = "z2", "p6m"


class P6MConvP6M(_HexConv):
    """Group convolution ``p6m -> p6m``: ``[B, I, 12, H, W] -> [B, O, 12, H, W]``; weight ``[O, I, 12, k, k]``."""

    in_group, out_group = "p6m", "p6m"


def _check_rank(layer: str, x: torch.Tensor, ranks: tuple[int, ...], what: str) -> None:
    if not isinstance(x, torch.Tensor) or x.dim() not in ranks:
        got = f"a {x.dim()}-D tensor of shape {tuple(x.shape)}" if isinstance(x, torch.Tensor) else type(x).__name__
        raise ValueError(f"{layer}: expected {what}, got {got}")


_GROUP_SIZES = (_hex.GROUP_ORDERS["p6"], _hex.GROUP_ORDERS["p6m"])
_ALL_GROUP_SIZES = (4, 6, 8, 12)  # p4, p6, p4m, p6m


class GroupPool(nn.Module):
    """Pool a group map over its group axis, ``[B, C, G, H, W] -> [B, C, H, W]`` (``mode`` "max" or "mean"),
    for any of the groups p4, p4m, p6, p6m.

    The result is a planar map that rotates (and mirrors) with the input: the group axis is what a
    rotation permutes, so any symmetric reduction over it is invariant to that permutation.
    """

    MODES = ("max", "mean")

    def __init__(self, mode: str = "max") -> None:
        super().__init__()
        if mode not in self.MODES:
            raise ValueError(f"GroupPool: mode must be one of {self.MODES}, got {mode!r}")
        self.mode = mode

    def extra_repr(self) -> str:
        return f"mode={self.mode!r}"

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        _check_rank("GroupPool", x, (5,), "a group feature map [B, C, G, H, W] (5-D)")
        if x.shape[2] not in _ALL_GROUP_SIZES:
            raise ValueError(
                f"GroupPool: expected G = 4 (p4), 6 (p6), 8 (p4m) or 12 (p6m) on dim 2, got G = {x.shape[2]}"
            )
        return _hex.group_pool(x, mode=self.mode)


class _HexPool(nn.Module):
    def __init__(self, stride: int = 2, *, mask: torch.Tensor | None = None) -> None:
        super().__init__()
        name = type(self).__name__
        self.stride = _check_positive_int(name, "stride", stride)
        if mask is not None and (not isinstance(mask, torch.Tensor) or mask.dim() != 2 or mask.dtype != torch.bool):
            got = (mask.dtype, tuple(mask.shape)) if isinstance(mask, torch.Tensor) else type(mask).__name__
            raise ValueError(f"{name}: mask must be a 2-D boolean tensor [H, W], got {got}")
        self.register_buffer("mask", None if mask is None else mask.clone(), persistent=False)

    def extra_repr(self) -> str:
        mask = "" if self.mask is None else f", mask=[{self.mask.shape[0]}, {self.mask.shape[1]}]"
        return f"stride={self.stride}{mask}"

    def _check(self, x: torch.Tensor) -> None:
        name = type(self).__name__
        _check_rank(name, x, (4, 5), "a planar [B, C, H, W] or group [B, C, G, H, W] map")
        if x.dim() == 5 and x.shape[2] not in _GROUP_SIZES:
            raise ValueError(f"{name}: a 5-D group map needs G = 6 (p6) or 12 (p6m) on dim 2, got G = {x.shape[2]}")
        if self.mask is not None and tuple(self.mask.shape) != tuple(x.shape[-2:]):
            raise ValueError(
                f"{name}: the mask is {tuple(self.mask.shape)} but the input's spatial size is {tuple(x.shape[-2:])}"
            )


class HexMaxPool2d(_HexPool):
    """Max over the 7-cell hexagon at the stride-2 axial sublattice (:func:`flowkernels.hex.hex_max_pool2d`).

    ``[.., H, W] -> [.., ceil(H / 2), ceil(W / 2)]``; planar or group maps (each group channel pooled alike).
    Cells outside the array, and where the optional boolean ``mask [H, W]`` is False, are never selected.
    On an odd size ``4 m + 1`` the centre maps to the centre and, with ``mask=hex_domain_mask(4 m + 1)`` (or
    inputs ``>= 0`` on that domain and 0 outside), the pooling commutes exactly with rotations and mirrors.
    """

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        self._check(x)
        return _hex.hex_max_pool2d(x, stride=self.stride, mask=self.mask)


class HexAvgPool2d(_HexPool):
    """Mean over the 7-cell hexagon at the stride-2 axial sublattice (:func:`flowkernels.hex.hex_avg_pool2d`).

    ``count_include_pad=False`` divides by the live cells (inside the array and, given a ``mask``, inside the
    mask), ``True`` always by 7. Exactly equivariant on sizes ``4 m + 1`` for inputs supported on the hexagonal
    domain with ``count_include_pad=True``, or with ``mask=hex_domain_mask(4 m + 1)`` either way.
    """

    def __init__(self, stride: int = 2, *, count_include_pad: bool = False, mask: torch.Tensor | None = None) -> None:
        super().__init__(stride, mask=mask)
        self.count_include_pad = bool(count_include_pad)

    def extra_repr(self) -> str:
        return f"{super().extra_repr()}, count_include_pad={self.count_include_pad}"

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        self._check(x)
        return _hex.hex_avg_pool2d(x, stride=self.stride, count_include_pad=self.count_include_pad, mask=self.mask)


class HexBatchNorm(nn.Module):
    """Batch normalisation of planar ``[B, C, H, W]`` and group ``[B, C, G, H, W]`` maps.

    One mean and variance per channel, over the batch, the group axis and the live spatial cells: sharing the
    statistics over the group axis keeps the layer equivariant (a rotation only permutes the values it
    averages). ``mask`` (boolean ``[H, W]``, e.g. :func:`flowkernels.hex.hex_domain_mask`) restricts the
    statistics to the cells where it is True; the output is 0 elsewhere. Without a mask every cell counts.

    Like :class:`torch.nn.BatchNorm2d`: in training mode the batch statistics normalise (biased variance)
    and update the running estimates (unbiased variance, ``momentum``, or a cumulative average when
    ``momentum`` is None); in eval mode the running estimates normalise. Affine ``weight``/``bias`` per channel.
    """

    def __init__(
        self,
        num_features: int,
        mask: torch.Tensor | None = None,
        *,
        eps: float = 1e-5,
        momentum: float | None = 0.1,
    ) -> None:
        super().__init__()
        self.num_features = _check_positive_int("HexBatchNorm", "num_features", num_features)
        if mask is not None:
            if not isinstance(mask, torch.Tensor) or mask.dim() != 2:
                shape = tuple(mask.shape) if isinstance(mask, torch.Tensor) else type(mask).__name__
                raise ValueError(f"HexBatchNorm: mask must be a 2-D boolean tensor [H, W], got {shape}")
            if mask.dtype != torch.bool:
                raise ValueError(f"HexBatchNorm: mask must be boolean, got {mask.dtype}")
            if not bool(mask.any()):
                raise ValueError("HexBatchNorm: mask has no live cell")
            mask = mask.clone()
        # Configuration, not learned state: not saved in state_dict.
        self.register_buffer("mask", mask, persistent=False)
        self.eps = float(eps)
        self.momentum = momentum
        self.weight = nn.Parameter(torch.ones(num_features))
        self.bias = nn.Parameter(torch.zeros(num_features))
        self.register_buffer("running_mean", torch.zeros(num_features))
        self.register_buffer("running_var", torch.ones(num_features))
        self.register_buffer("num_batches_tracked", torch.tensor(0, dtype=torch.long))

    def reset_running_stats(self) -> None:
        self.running_mean.zero_()
        self.running_var.fill_(1.0)
        self.num_batches_tracked.zero_()

    def extra_repr(self) -> str:
        mask = (
            "None"
            if self.mask is None
            else f"[{self.mask.shape[0]}, {self.mask.shape[1]}] ({int(self.mask.sum())} live)"
        )
        return f"{self.num_features}, mask={mask}, eps={self.eps}, momentum={self.momentum}"

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        _check_rank("HexBatchNorm", x, (4, 5), "a planar [B, C, H, W] or group [B, C, G, H, W] map")
        if x.shape[1] != self.num_features:
            raise ValueError(
                f"HexBatchNorm: expected {self.num_features} channels on dim 1, got {x.shape[1]} "
                f"(shape {tuple(x.shape)})"
            )
        mask = self.mask
        if mask is not None and tuple(mask.shape) != tuple(x.shape[-2:]):
            raise ValueError(
                f"HexBatchNorm: the mask is {tuple(mask.shape)} but the input's spatial size is {tuple(x.shape[-2:])}"
            )
        # Every dim but the channel one is reduced; statistics broadcast back as [C, 1, ..].
        dims = [0] + list(range(2, x.dim()))
        view = [1, -1] + [1] * (x.dim() - 2)
        if self.training:
            cells = x.numel() // max(x.shape[1], 1)
            if mask is not None:
                cells = cells // (mask.shape[0] * mask.shape[1]) * int(mask.sum())
            if cells <= 1:
                raise ValueError(
                    f"HexBatchNorm: training needs more than 1 value per channel, got {cells} (shape {tuple(x.shape)})"
                )
            if mask is None:
                mean = x.mean(dim=dims)
                var = (x - mean.view(view)).square().mean(dim=dims)
            else:
                live = mask.to(x.dtype)
                mean = (x * live).sum(dim=dims) / cells
                var = ((x - mean.view(view)).square() * live).sum(dim=dims) / cells
            with torch.no_grad():
                self.num_batches_tracked.add_(1)
                factor = 1.0 / float(self.num_batches_tracked) if self.momentum is None else self.momentum
                self.running_mean.lerp_(mean.detach().to(self.running_mean.dtype), factor)
                unbiased = var.detach() * (cells / (cells - 1))
                self.running_var.lerp_(unbiased.to(self.running_var.dtype), factor)
        else:
            mean, var = self.running_mean.to(x.dtype), self.running_var.to(x.dtype)
        scale = self.weight * torch.rsqrt(var + self.eps)
        shift = self.bias - mean * scale
        y = x * scale.view(view) + shift.view(view)
        if mask is not None:
            y = torch.where(mask, y, torch.zeros((), dtype=y.dtype, device=y.device))
        return y
