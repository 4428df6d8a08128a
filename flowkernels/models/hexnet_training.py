"""The data, evaluation and training of :class:`~flowkernels.models.hexnet.HexNet`.

:func:`task_data` gives each task on each lattice (the digits resampled to the hexagonal lattice by
:func:`hex_digits`, or the rotated textures), :func:`rotated_test_sets` and :func:`mirrored_test_sets` the
transformed test sets, and :func:`train_hexnet` trains one lattice and measures its accuracy on the test set
as is, rotated and mirrored. The architecture lives in :mod:`flowkernels.models.hexnet`.
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
from .hexnet import (
    DEFAULT_PARAM_BUDGET,
    HEX_SCALE,
    HEX_SIZE,
    SQUARE_LATTICES,
    SQUARE_SIZE,
    TASKS,
    HexNet,
    _check_lattice,
    count_parameters,
)
from .training import evaluating, seeded, warmup_cosine

__all__ = [
    "HexNetHistory",
    "digit_labels",
    "evaluate_accuracy",
    "hex_digits",
    "lattice_digits",
    "mirrored_test_sets",
    "rotated_test_sets",
    "square_digits",
    "square_transform",
    "square_via_hex_test_sets",
    "task_data",
    "train_hexnet",
]


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
    side = x_train.shape[-1]  # the lattice's side (8 on the square lattices), not the argument ``size``
    model = seeded(seed, lambda: HexNet(lattice, 1, classes, blocks=blocks, param_budget=budget, size=side)).to(device)
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
