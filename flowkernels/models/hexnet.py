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
  and :class:`~flowkernels.nn.HexMaxPool2d` on digits resampled to a hexagonal lattice (:func:`hex_digits`).
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

Also here: :func:`hex_digits` / :func:`square_digits` / :func:`digit_labels` (the data) and
:func:`train_hexnet`, which trains one lattice and measures test accuracy on the test set as is, rotated and
mirrored (see :func:`train_hexnet` for exactly what each lattice is shown).
"""

from __future__ import annotations

import functools
import math
import time
from dataclasses import dataclass, field

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from .. import hex as _hex
from .. import square as _square
from .._optional import require
from ..data import (
    DIGITS_LEVELS,
    DIGITS_SPLIT_SEED,
    DIGITS_TEST_SIZE,
    SPLITS,
    TEXTURE_NAMES,
    fixed_split,
    load_digits,
    load_rotated_textures,
)
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
from .training import evaluating, warmup_cosine

__all__ = [
    "LATTICES",
    "SQUARE_LATTICES",
    "HEX_SIZE",
    "HEX_SCALE",
    "DEFAULT_PARAM_BUDGET",
    "HexNet",
    "HexNetHistory",
    "count_parameters",
    "width_for_budget",
    "hex_digits",
    "square_digits",
    "digit_labels",
    "lattice_digits",
    "task_data",
    "TASKS",
    "square_transform",
    "square_via_hex_test_sets",
    "evaluate_accuracy",
    "train_hexnet",
]

LATTICES = ("square", "p4", "p4m", "hex", "p6", "p6m")
#: what :func:`train_hexnet` can learn (:func:`task_data`)
TASKS = ("digits", "textures")
#: the lattices whose images are the square 8x8 digits (the others read hexagonal resamplings)
SQUARE_LATTICES = ("square", "p4", "p4m")

#: Side of the hexagonal images: 13 = 4 * 3 + 1, a hexagon of radius 6 about the centre cell, which the stride-2
#: pooling maps to the centred hexagon of radius 3 on a 7 x 7 array.
HEX_SIZE = 13
#: Image pixels per lattice spacing in :func:`hex_digits`: the lattice is as fine as the pixel grid along x. The
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


def digit_labels(split: str = "train") -> torch.Tensor:
    """The class (0..9, int64 ``[N]``) of each image of ``flowkernels.data.load_digits(split)``, in the same order."""
    return torch.from_numpy(_labels(split).copy())


@functools.lru_cache(maxsize=2)
def _labels(split: str) -> np.ndarray:
    digits = require("sklearn.datasets", "scikit-learn", "the digits labels").load_digits()
    return digits.target[fixed_split(len(digits.target), DIGITS_TEST_SIZE, DIGITS_SPLIT_SEED, split)].astype(np.int64)


def square_digits(split: str = "train") -> torch.Tensor:
    """The original 8x8 digits as float32 ``[N, 1, 8, 8]`` in ``[0, 1]`` (grey level / 16)."""
    return load_digits(split).float() / (DIGITS_LEVELS - 1)


def hex_digits(
    split: str = "train", size: int = HEX_SIZE, *, mode: str = "bilinear", scale: float = HEX_SCALE
) -> torch.Tensor:
    """The digits resampled to an axial hexagonal lattice: float32 ``[N, 1, size, size]`` in ``[0, 1]``.

    :func:`flowkernels.hex.square_to_hex` resamples the 8x8 images of ``load_digits(split)`` (grey level / 16)
    at ``scale`` image pixels per lattice spacing (:data:`HEX_SCALE`, one, by default), centred on the centre
    cell; the result is clamped to ``[0, 1]`` and masked to the hexagon
    :func:`flowkernels.hex.hex_domain_mask` ``(size)``, which for ``size >= 13`` at scale 1 contains every
    sample that falls inside the image. ``size`` must be odd; ``4 m + 1`` (13, 17) keeps the stride-2 pooling
    centred.
    """
    if isinstance(size, bool) or not isinstance(size, int) or size < 3 or size % 2 != 1:
        raise ValueError(f"hex_digits: size must be an odd integer >= 3, got {size!r}")
    images = _hex.square_to_hex(square_digits(split), size, mode=mode, scale=scale).float().clamp(0.0, 1.0)
    return images * _hex.hex_domain_mask(size).to(images.dtype)


def lattice_digits(lattice: str, split: str = "train", *, size: int = HEX_SIZE) -> torch.Tensor:
    """What :class:`HexNet` on ``lattice`` reads: :func:`square_digits` on the square lattices, else
    :func:`hex_digits`."""
    _check_lattice(lattice, "lattice_digits")
    return square_digits(split) if lattice in SQUARE_LATTICES else hex_digits(split, size)


#: Side of the square-lattice texture crops: 144 pixels, about the 127 cells of the size-13 hexagon.
TEXTURE_SQUARE_SIZE = 12
#: Training and test crops per texture class.
TEXTURE_CROPS = {"train": 200, "test": 100}


def task_data(
    task: str, lattice: str, split: str = "train", *, size: int = HEX_SIZE
) -> tuple[torch.Tensor, torch.Tensor]:
    """The images ``[N, 1, S, S]`` that :class:`HexNet` on ``lattice`` reads for ``task``, and their labels.

    * ``"digits"``: :func:`lattice_digits` and :func:`digit_labels` (10 classes, upright digits).
    * ``"textures"``: :func:`flowkernels.data.load_rotated_textures` (6 classes, every crop rotated by a
      random angle: a task whose labels do not change under rotation). Square lattices read the central
      :data:`TEXTURE_SQUARE_SIZE` x :data:`TEXTURE_SQUARE_SIZE` pixels of each 20x20 crop; hexagonal ones
      the crop resampled (:func:`flowkernels.hex.square_to_hex`, one cell per pixel spacing) onto the
      ``size`` x ``size`` hexagon, which lies inside the crop.
    """
    _check_lattice(lattice, "task_data")
    if task == "digits":
        return lattice_digits(lattice, split, size=size), digit_labels(split)
    if task != "textures":
        raise ValueError(f"task_data: task must be one of {TASKS}, got {task!r}")
    crops, labels = load_rotated_textures(split, per_class=TEXTURE_CROPS[split], crop=20)
    if lattice in SQUARE_LATTICES:
        start = (crops.shape[-1] - TEXTURE_SQUARE_SIZE) // 2
        return crops[..., start : start + TEXTURE_SQUARE_SIZE, start : start + TEXTURE_SQUARE_SIZE].contiguous(), labels
    images = _hex.square_to_hex(crops, size, scale=1.0).float()
    return images * _hex.hex_domain_mask(size).to(images.dtype), labels


def square_transform(images: torch.Tensor, *, angle_deg: float = 0.0, reflect_axis_deg: float | None = None):
    """Rotate (by ``angle_deg``) or reflect (across the axis at ``reflect_axis_deg``) square images about their
    centre by bilinear resampling (``grid_sample``, zero outside). Used to show a square-lattice model the
    geometric transformations that are exact permutations on the hexagonal lattice; flips (axes at 0 and 90
    degrees) and rotations by 90 degrees land on pixel centres and are exact up to rounding."""
    if reflect_axis_deg is None:
        t = math.radians(angle_deg)
        matrix = [[math.cos(t), -math.sin(t)], [math.sin(t), math.cos(t)]]
    else:
        t = 2 * math.radians(reflect_axis_deg)
        matrix = [[math.cos(t), math.sin(t)], [math.sin(t), -math.cos(t)]]
    theta = torch.tensor([[*matrix[0], 0.0], [*matrix[1], 0.0]], dtype=images.dtype).expand(images.shape[0], 2, 3)
    grid = F.affine_grid(theta, list(images.shape), align_corners=False)
    return F.grid_sample(images, grid, mode="bilinear", padding_mode="zeros", align_corners=False)


# ---------------------------------------------------------------------------
# Training and evaluation


def evaluate_accuracy(model: nn.Module, images: torch.Tensor, labels: torch.Tensor, *, batch_size: int = 500) -> float:
    """Fraction of ``images`` that ``model`` (in eval mode) classifies as ``labels``."""
    correct = 0
    with evaluating(model):
        for start in range(0, images.shape[0], batch_size):
            logits = model(images[start : start + batch_size])
            correct += (logits.argmax(-1) == labels[start : start + batch_size]).sum().item()
    return correct / images.shape[0]


def rotated_test_sets(lattice: str, images: torch.Tensor) -> list[torch.Tensor]:
    """The test images rotated by 60, 120, .., 300 degrees: exact :func:`flowkernels.hex.rotate60` on hexagonal
    lattices, bilinear :func:`square_transform` on the square lattices."""
    if lattice in SQUARE_LATTICES:
        return [square_transform(images, angle_deg=60.0 * k) for k in range(1, 6)]
    return [_hex.rotate60(images, k) for k in range(1, 6)]


def mirrored_test_sets(lattice: str, images: torch.Tensor) -> list[torch.Tensor]:
    """The test images under the six reflections of the hexagon, whose axes lie at 0, 30, .., 150 degrees:
    exact ``mirror(rotate60(x, k))`` for k = 0..5 on hexagonal lattices, bilinear :func:`square_transform`
    across the same six axes on the square lattices (exact flips for the axes at 0 and 90 degrees)."""
    if lattice in SQUARE_LATTICES:
        return [square_transform(images, reflect_axis_deg=30.0 * k) for k in range(6)]
    return [_hex.mirror(_hex.rotate60(images, k)) for k in range(6)]


def square_via_hex_test_sets(split: str = "test", size: int = HEX_SIZE) -> list[torch.Tensor]:
    """A second view of rotations for the square lattice: the hexagonal digits rotated exactly by 60 k degrees
    (k = 0..5) and resampled back to 8x8 with :func:`flowkernels.hex.hex_to_square` (same scale). k = 0 is the
    round trip alone, which shows how much the two resamplings cost before any rotation."""
    images = hex_digits(split, size)
    return [_hex.hex_to_square(_hex.rotate60(images, k), SQUARE_SIZE, scale=HEX_SCALE) for k in range(6)]


@dataclass
class HexNetHistory:
    """What :func:`train_hexnet` measured.

    * ``test_accuracy``: the test set as is.
    * ``rotation_accuracies`` (k = 1..5) and their mean ``rotation_accuracy``: the test set rotated by 60 k
      degrees; ``mirror_accuracies`` (the six reflections) and their mean ``mirror_accuracy``. Exact
      permutations of the hexagonal images on "hex", "p6", "p6m"; bilinear resampling of the 8x8 digits on
      the square lattices (:func:`rotated_test_sets`, :func:`mirrored_test_sets`).
    * ``rot90_accuracy``: square lattices only, the mean over the exact ``torch.rot90`` rotations (90, 180, 270).
    * ``via_hex_accuracies``: square lattices only, k = 0..5: :func:`square_via_hex_test_sets` (exact hexagonal
      rotation, then ``hex_to_square``; k = 0 is the resampling round trip without rotation).
    * ``parameters``: free parameters (:func:`count_parameters`); ``stored_parameters`` counts the dead corners too.
    * ``seconds_per_epoch``: optimisation wall time (evaluation excluded) / epochs.
    """

    lattice: str
    config: dict
    width: int = 0
    parameters: int = 0
    stored_parameters: int = 0
    train_loss: list[float] = field(default_factory=list)
    train_accuracy: list[float] = field(default_factory=list)
    test_accuracy: float = float("nan")
    rotation_accuracies: list[float] = field(default_factory=list)
    mirror_accuracies: list[float] = field(default_factory=list)
    rot90_accuracy: float | None = None
    via_hex_accuracies: list[float] | None = None
    train_time_s: float = 0.0
    seconds_per_epoch: float = 0.0

    @property
    def rotation_accuracy(self) -> float:
        return float(np.mean(self.rotation_accuracies)) if self.rotation_accuracies else float("nan")

    @property
    def mirror_accuracy(self) -> float:
        return float(np.mean(self.mirror_accuracies)) if self.mirror_accuracies else float("nan")


def train_hexnet(
    lattice: str,
    *,
    epochs: int,
    batch_size: int,
    lr: float,
    seed: int,
    param_budget: int | None,
    progress: bool = True,
    blocks: int = 2,
    size: int = HEX_SIZE,
    weight_decay: float = 1e-4,
    device: str | torch.device = "cpu",
    task: str = "digits",
) -> tuple[HexNet, HexNetHistory]:
    """Train a :class:`HexNet` on ``lattice`` to classify ``task``: the digits (1497 train / 300 test, fixed
    split) or the rotated textures (1200 / 600), see :func:`task_data`.

    Digit inputs: :func:`square_digits` (8x8) on the square lattices, :func:`hex_digits` (``size`` x ``size``)
    otherwise.
    AdamW (``lr``, ``weight_decay``) with a cosine decay to zero, cross-entropy, no data augmentation: any
    robustness to rotations comes from the architecture. Deterministic for a given ``seed`` on a given machine
    (the model is built under ``torch.manual_seed(seed)`` in a forked RNG state; batches come from a seeded
    generator). ``param_budget=None`` uses :data:`DEFAULT_PARAM_BUDGET`.

    Returns the trained model (eval mode) and a :class:`HexNetHistory`.
    """
    _check_lattice(lattice, "train_hexnet")
    if isinstance(epochs, bool) or not isinstance(epochs, int) or epochs < 1:
        raise ValueError(f"train_hexnet: epochs must be a positive integer, got {epochs!r}")
    device = torch.device(device)
    (x_train, y_train), (x_test, y_test) = (task_data(task, lattice, split, size=size) for split in SPLITS)
    x_train, y_train, x_test, y_test = (t.to(device) for t in (x_train, y_train, x_test, y_test))
    classes = 10 if task == "digits" else len(TEXTURE_NAMES)
    budget = DEFAULT_PARAM_BUDGET if param_budget is None else param_budget
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        model = HexNet(lattice, 1, classes, blocks=blocks, param_budget=budget, size=x_train.shape[-1]).to(device)
    config = {"task": task, "epochs": epochs, "batch_size": batch_size, "lr": lr, "seed": seed}
    config["param_budget"] = budget
    config.update({"blocks": blocks, "size": x_train.shape[-1], "weight_decay": weight_decay})
    history = HexNetHistory(lattice, config, width=model.width)
    history.parameters = count_parameters(model)
    history.stored_parameters = count_parameters(model, free_only=False)

    optimizer = torch.optim.AdamW(model.parameters(), lr=lr, weight_decay=weight_decay)
    steps_per_epoch = math.ceil(len(x_train) / batch_size)
    total_steps = epochs * steps_per_epoch
    scheduler = torch.optim.lr_scheduler.LambdaLR(optimizer, warmup_cosine(0, total_steps))
    generator = torch.Generator().manual_seed(seed)
    tqdm = require("tqdm", "tqdm", "train_hexnet's progress bar").tqdm
    bar = tqdm(total=total_steps, desc=f"hexnet[{lattice}]", disable=not progress, leave=False)
    start = time.perf_counter()
    for _ in range(epochs):
        model.train()
        loss_total, correct = 0.0, 0
        for index in torch.randperm(len(x_train), generator=generator).split(batch_size):
            index = index.to(device)
            logits = model(x_train[index])
            loss = F.cross_entropy(logits, y_train[index])
            optimizer.zero_grad(set_to_none=True)
            loss.backward()
            optimizer.step()
            scheduler.step()
            loss_total += loss.item() * len(index)
            correct += (logits.argmax(-1) == y_train[index]).sum().item()
            bar.update()
            bar.set_postfix(loss=f"{loss.item():.3f}")
        history.train_loss.append(loss_total / len(x_train))
        history.train_accuracy.append(correct / len(x_train))
    history.train_time_s = time.perf_counter() - start
    history.seconds_per_epoch = history.train_time_s / epochs
    bar.close()

    model.eval()
    history.test_accuracy = evaluate_accuracy(model, x_test, y_test)
    history.rotation_accuracies = [evaluate_accuracy(model, x, y_test) for x in rotated_test_sets(lattice, x_test)]
    history.mirror_accuracies = [evaluate_accuracy(model, x, y_test) for x in mirrored_test_sets(lattice, x_test)]
    if lattice in SQUARE_LATTICES:
        rot90 = [evaluate_accuracy(model, torch.rot90(x_test, k, dims=(-2, -1)), y_test) for k in (1, 2, 3)]
        history.rot90_accuracy = float(np.mean(rot90))
    if lattice in SQUARE_LATTICES and task == "digits":
        via_hex = square_via_hex_test_sets("test", size)
        history.via_hex_accuracies = [evaluate_accuracy(model, x.to(device), y_test) for x in via_hex]
    if progress:
        print(
            f"hexnet[{task}, {lattice}] width {model.width}, {history.parameters:,} parameters: "
            f"test {history.test_accuracy:.3f}, "
            f"rotated {history.rotation_accuracy:.3f}, mirrored {history.mirror_accuracy:.3f}, "
            f"{history.seconds_per_epoch:.2f} s/epoch"
        )
    return model, history
