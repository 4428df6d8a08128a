"""HexNet: one small ResNet classifier on six lattices (square, p4, p4m, hex, p6, p6m), compared at equal
parameters.

The experiment of HexaConv (Hoogeboom, Peters, Cohen & Welling 2018, arXiv:1803.02108) in miniature, on the
scikit-learn digits of :mod:`flowkernels.data`:

    stem conv -> BN -> ReLU -> ceil(blocks / 2) residual blocks -> max-pool (stride 2) -> the other blocks
    -> [group pool over G] -> mean over the (live) cells -> linear

with residual blocks ``x + BN(conv(ReLU(BN(conv(x)))))`` followed by ReLU. The convolutions are:

* ``"square"``: ``nn.Conv2d`` 3x3, ``nn.BatchNorm2d``, ``nn.MaxPool2d(2)``, on the original 8x8 digits.
* ``"p4"`` / ``"p4m"``: the square lattice's group convolutions (:mod:`flowkernels.nn.square`, 3x3), batch
  norm shared over the group axis and 2x2 max pooling, the group pooled (max) before the spatial mean, so
  the logits are invariant to rotations by 90 degrees (and, for p4m, mirrors) on even sizes.
* ``"hex"``: planar :class:`~flowkernels.nn.HexConv2d` (radius 1, 7 taps), :class:`~flowkernels.nn.HexBatchNorm`
  and :class:`~flowkernels.nn.HexMaxPool2d` on digits resampled to a hexagonal lattice (``hex_digits``).
* ``"p6"`` / ``"p6m"``: the lifting convolution Z2 -> G then G -> G convolutions (radius 1), with the group
  pooled (max) before the spatial mean, so the logits are invariant.

On hexagonal lattices the input and every activation are masked to the hexagon
:func:`flowkernels.hex.hex_domain_mask` (after each convolution, batch norm and pooling, as in HexaConv), the
batch norms count only live cells, the stride-2 hex pooling is centred (sizes ``4 m + 1``) and the spatial
mean runs over the live cells. Rotations by 60 degrees and the mirrors of the hexagon then map the domain
onto itself, so p6 logits are exactly invariant to :func:`flowkernels.hex.rotate60` and p6m logits to
rotations and :func:`flowkernels.hex.mirror` (up to float rounding).

Parameters are counted as free parameters (:func:`count_parameters`): the dead corners of the hexagonal
filters (2 of 9 stored entries of a radius-1 filter, zero and without gradient) are not counted, which is
how HexaConv compares lattices. With ``param_budget`` the width is the one whose count is closest to it.

The data (:func:`~flowkernels.models.hexnet_training.hex_digits`, :func:`~flowkernels.models.hexnet_training.task_data`)
and :func:`~flowkernels.models.hexnet_training.train_hexnet`, which trains one lattice and measures test accuracy
on the test set as is, rotated and mirrored, are in :mod:`flowkernels.models.hexnet_training`.
"""

from __future__ import annotations

import torch
from torch import nn

from .. import hex as _hex
from .. import square as _square
from ..nn.hex import (
    GroupPool,
    HexBatchNorm,
    HexConv2d,
    HexMaxPool2d,
    P6ConvP6,
    P6ConvZ2,
    P6MConvP6M,
    P6MConvZ2,
    _HexConv,
    live_taps,
)
from ..nn.square import P4ConvP4, P4ConvZ2, P4MConvP4M, P4MConvZ2, SquareGroupMaxPool2d

__all__ = [
    "LATTICES",
    "SQUARE_LATTICES",
    "HEX_SIZE",
    "HEX_SCALE",
    "DEFAULT_PARAM_BUDGET",
    "HexNet",
    "count_parameters",
    "width_for_budget",
    "TASKS",
]

LATTICES = ("square", "p4", "p4m", "hex", "p6", "p6m")
#: what :func:`~.hexnet_training.train_hexnet` can learn (:func:`~.hexnet_training.task_data`)
TASKS = ("digits", "textures")
#: the lattices whose images are the square 8x8 digits (the others read hexagonal resamplings)
SQUARE_LATTICES = ("square", "p4", "p4m")

#: Side of the hexagonal images: 13 = 4 * 3 + 1, a hexagon of radius 6 about the centre cell, which the stride-2
#: pooling maps to the centred hexagon of radius 3 on a 7 x 7 array.
HEX_SIZE = 13
#: Image pixels per lattice spacing in ``hex_digits``: the lattice is as fine as the pixel grid along x. The
#: 8x8 digit's pixel centres (+-3.5 pixels) then lie inside the radius-6 hexagon (an axis-aligned square of
#: half-side up to 6 / (1 + 1 / sqrt(3)) = 3.80 cells fits in it): 67 cells sample the image, none outside the
#: domain. (square_to_hex's default scale, chosen for the whole parallelogram, would be a coarser 7/6.)
HEX_SCALE = 1.0
SQUARE_SIZE = 8

#: Width when neither ``width`` nor ``param_budget`` is given: the width closest to this many parameters.
DEFAULT_PARAM_BUDGET = 20_000

_GROUP = {"square": "z2", "p4": "p4", "p4m": "p4m", "hex": "z2", "p6": "p6", "p6m": "p6m"}
_GROUP_ORDERS = {**_hex.GROUP_ORDERS, **_square.GROUP_ORDERS}
_LIFT = {"p4": P4ConvZ2, "p4m": P4MConvZ2, "p6": P6ConvZ2, "p6m": P6MConvZ2}
_GCONV = {"p4": P4ConvP4, "p4m": P4MConvP4M, "p6": P6ConvP6, "p6m": P6MConvP6M}


def _check_lattice(lattice: str, who: str) -> None:
    if lattice not in LATTICES:
        raise ValueError(f"{who}: lattice must be one of {LATTICES}, got {lattice!r}")


def count_parameters(module: nn.Module, *, free_only: bool = True) -> int:
    """Trainable parameters of ``module``; with ``free_only`` the dead corners of hexagonal filters are not counted."""
    total = 0
    counted: set[int] = set()
    if free_only:
        for sub in module.modules():
            if isinstance(sub, _HexConv):
                total += sub.free_parameters()
                counted.update(id(p) for p in sub.parameters(recurse=False))
    return total + sum(p.numel() for p in module.parameters() if p.requires_grad and id(p) not in counted)


def _expected_parameters(lattice: str, in_channels: int, num_classes: int, width: int, blocks: int) -> int:
    """Closed form of ``count_parameters(HexNet(...))`` (no conv biases: every conv is followed by a batch norm)."""
    taps = 9 if lattice in SQUARE_LATTICES else live_taps(1)
    group = _GROUP_ORDERS[_GROUP[lattice]]
    convs = in_channels * width * taps + 2 * blocks * width * width * group * taps
    norms = 2 * width * (1 + 2 * blocks)
    return convs + norms + width * num_classes + num_classes


def width_for_budget(
    lattice: str, param_budget: int, *, in_channels: int = 1, num_classes: int = 10, blocks: int = 2
) -> int:
    """The width whose :class:`HexNet` parameter count is closest to ``param_budget`` (ties: the smaller width)."""
    _check_lattice(lattice, "width_for_budget")
    if isinstance(param_budget, bool) or not isinstance(param_budget, int) or param_budget < 1:
        raise ValueError(f"width_for_budget: param_budget must be a positive integer, got {param_budget!r}")

    def count(w: int) -> int:
        return _expected_parameters(lattice, in_channels, num_classes, w, blocks)

    low, high = 1, 1
    while count(high) < param_budget:  # the count grows with the width: bracket, then bisect
        low, high = high, high * 2
    while high - low > 1:
        middle = (low + high) // 2
        low, high = (middle, high) if count(middle) < param_budget else (low, middle)
    return min((low, high), key=lambda w: (abs(count(w) - param_budget), w))


class _Masked(nn.Module):
    """Multiply by a fixed boolean spatial mask (identity when there is none)."""

    def __init__(self, mask: torch.Tensor | None) -> None:
        super().__init__()
        self.register_buffer("mask", mask, persistent=False)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if self.mask is None:
            return x
        return torch.where(self.mask, x, torch.zeros((), dtype=x.dtype, device=x.device))


class _ResidualBlock(nn.Module):
    """``ReLU(x + mask(BN(conv(ReLU(mask(BN(conv(x))))))))``; the masks are identities on the square lattice."""

    def __init__(self, conv1: nn.Module, norm1: nn.Module, conv2: nn.Module, norm2: nn.Module, mask: _Masked) -> None:
        super().__init__()
        self.conv1, self.norm1, self.conv2, self.norm2, self.mask = conv1, norm1, conv2, norm2, mask

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        h = torch.relu(self.mask(self.norm1(self.mask(self.conv1(x)))))
        h = self.mask(self.norm2(self.mask(self.conv2(h))))
        return torch.relu(x + h)


class HexNet(nn.Module):
    """A small residual classifier on the ``"square"``, ``"p4"``, ``"p4m"``, ``"hex"``, ``"p6"`` or ``"p6m"``
    lattice.

    Args:
        lattice: which convolutions (see the module docstring).
        in_channels, num_classes: input channels and number of logits.
        width: channels of every layer (for group lattices: fields, each with G = 4, 8, 6 or 12 orientation
            channels).
        blocks: residual blocks (two convolutions each); ``ceil(blocks / 2)`` before the pooling stage.
        param_budget: instead of ``width``, the parameter count to match (:func:`width_for_budget`).
            With neither, :data:`DEFAULT_PARAM_BUDGET`.
        size: side of the (square) input: default 8 for the square lattices and :data:`HEX_SIZE` (13) for the hexagonal
            lattices, which need ``size = 4 m + 1`` (a centre cell that the stride-2 pooling keeps central).

    ``forward`` takes ``[B, in_channels, size, size]`` and returns logits ``[B, num_classes]``. On hexagonal
    lattices the input is first masked to :func:`flowkernels.hex.hex_domain_mask` (cells outside are ignored).

    Example (p6m logits do not change when the input hexagon is rotated by 60 degrees):
        >>> import torch
        >>> from flowkernels import hex
        >>> from flowkernels.models.hexnet import HexNet
        >>> _ = torch.manual_seed(0)
        >>> model = HexNet("p6m", param_budget=20_000).eval()
        >>> model.width
        8
        >>> x = torch.rand(2, 1, 13, 13)
        >>> torch.allclose(model(hex.rotate60(x)), model(x), atol=1e-5)
        True
    """

    def __init__(
        self,
        lattice: str = "square",
        in_channels: int = 1,
        num_classes: int = 10,
        width: int | None = None,
        blocks: int = 2,
        param_budget: int | None = None,
        *,
        size: int | None = None,
    ) -> None:
        super().__init__()
        _check_lattice(lattice, "HexNet")
        for name, value, low in (
            ("in_channels", in_channels, 1),
            ("num_classes", num_classes, 1),
            ("blocks", blocks, 0),
        ):
            if isinstance(value, bool) or not isinstance(value, int) or value < low:
                raise ValueError(f"HexNet: {name} must be an integer >= {low}, got {value!r}")
        if width is not None and param_budget is not None:
            raise ValueError("HexNet: give width or param_budget, not both")
        if width is None:
            budget = DEFAULT_PARAM_BUDGET if param_budget is None else param_budget
            width = width_for_budget(lattice, budget, in_channels=in_channels, num_classes=num_classes, blocks=blocks)
        elif isinstance(width, bool) or not isinstance(width, int) or width < 1:
            raise ValueError(f"HexNet: width must be a positive integer, got {width!r}")
        hexagonal = lattice not in SQUARE_LATTICES
        size = (HEX_SIZE if hexagonal else SQUARE_SIZE) if size is None else size
        if isinstance(size, bool) or not isinstance(size, int) or size < 1:
            raise ValueError(f"HexNet: size must be a positive integer, got {size!r}")
        if hexagonal and size % 4 != 1:
            raise ValueError(
                f"HexNet: hexagonal lattices need size = 4 m + 1 (a centre cell the stride-2 pooling keeps "
                f"central, so rotations stay exact), got {size}"
            )
        self.lattice, self.in_channels, self.num_classes = lattice, in_channels, num_classes
        self.width, self.blocks, self.size, self.param_budget = width, blocks, size, param_budget
        self.pooled_size = (size + 1) // 2 if hexagonal else size // 2

        full = _hex.hex_domain_mask(size) if hexagonal else None
        half = _hex.hex_domain_mask(self.pooled_size) if hexagonal else None
        self.mask_full, self.mask_half = _Masked(full), _Masked(half)

        self.stem = self._conv(in_channels, width, lift=True)
        self.stem_norm = self._norm(width, full)
        before = (blocks + 1) // 2
        self.blocks_full = nn.ModuleList(self._block(width, full, self.mask_full) for _ in range(before))
        self.pool = HexMaxPool2d(2, mask=full) if hexagonal else SquareGroupMaxPool2d()
        self.blocks_half = nn.ModuleList(self._block(width, half, self.mask_half) for _ in range(blocks - before))
        self.group_pool = GroupPool("max") if lattice in _GCONV else None
        self.head = nn.Linear(width, num_classes)

    def _conv(self, i: int, o: int, *, lift: bool = False) -> nn.Module:
        if self.lattice == "square":
            return nn.Conv2d(i, o, 3, padding=1, bias=False)
        if self.lattice == "hex":
            return HexConv2d(i, o, 1, bias=False)
        extent = 3 if self.lattice in SQUARE_LATTICES else 1  # a 3x3 square filter, a radius-1 hexagon
        return (_LIFT if lift else _GCONV)[self.lattice](i, o, extent, bias=False)

    def _norm(self, channels: int, mask: torch.Tensor | None) -> nn.Module:
        return nn.BatchNorm2d(channels) if self.lattice == "square" else HexBatchNorm(channels, mask)

    def _block(self, width: int, mask: torch.Tensor | None, masking: _Masked) -> _ResidualBlock:
        return _ResidualBlock(
            self._conv(width, width),
            self._norm(width, mask),
            self._conv(width, width),
            self._norm(width, mask),
            masking,
        )

    def extra_repr(self) -> str:
        return f"lattice={self.lattice!r}, width={self.width}, blocks={self.blocks}, size={self.size}"

    def features(self, x: torch.Tensor) -> torch.Tensor:
        """The invariant features ``[B, width]`` that the linear head reads."""
        expected = (self.in_channels, self.size, self.size)
        if not isinstance(x, torch.Tensor) or x.dim() != 4 or tuple(x.shape[1:]) != expected:
            shape = tuple(x.shape) if isinstance(x, torch.Tensor) else type(x).__name__
            raise ValueError(
                f"HexNet[{self.lattice}]: expected input [B, {', '.join(map(str, expected))}], got {shape}"
            )
        h = self.mask_full(x)
        h = torch.relu(self.mask_full(self.stem_norm(self.mask_full(self.stem(h)))))
        for block in self.blocks_full:
            h = block(h)
        h = self.mask_half(self.pool(h))
        for block in self.blocks_half:
            h = block(h)
        if self.group_pool is not None:
            h = self.group_pool(h)
        if self.mask_half.mask is None:
            return h.mean(dim=(-2, -1))
        live = self.mask_half.mask.to(h.dtype)
        return (h * live).sum(dim=(-2, -1)) / live.sum()

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.head(self.features(x))


# ---------------------------------------------------------------------------
# Data


# ---------------------------------------------------------------------------
# Training and evaluation


