"""Datasets that ship inside installed Python packages, so demos and tests need no download.

* ``digits``: the 1797 8x8 handwritten digits of scikit-learn (UCI optdigits test set), 17 grey levels
  (0..16), one channel. :func:`load_digits`.
* ``photos-gray`` and ``photos-rgb``: square patches (8-bit, 256 levels) cut from the photographs that
  ship inside scikit-image (``skimage.data``, no download), split BY IMAGE: the images of
  :data:`PHOTO_TEST_NAMES` are never seen in training. :func:`load_photo_patches`; whole held-out
  photographs (for codec demos) come from :func:`load_photos`.
* ``photos-dev-gray`` and ``photos-dev-rgb``: the same, plus the wallpapers of the development sources
  of :mod:`flowkernels.photo_sources` (Debian's mate-backgrounds), split by image too.
  :func:`load_development_patches`. The held-out sources never appear in any dataset.

Each dataset has a FIXED train/test split that does not depend on any global random state, so
bits/dim reported anywhere in flowkernels are comparable. To add a dataset (e.g. the scikit-image
photograph patches planned next), write a ``load_<name>(split, ...)`` that returns integer images
``[N, C, H, W]``, split it with :func:`fixed_split`, import its package through
:func:`flowkernels._optional.require`, and register it in :data:`DATASETS`.
"""

from __future__ import annotations

import functools
import warnings
from collections.abc import Callable, Iterator

import numpy as np
import torch

from ._deprecation import renamed_keywords
from ._optional import require

__all__ = [
    "DATASETS",
    "PHOTO_LEVELS",
    "PHOTO_TEST_NAMES",
    "fixed_split",
    "iterate_minibatches",
    "load_dataset",
    "load_development_patches",
    "load_rotated_textures",
    "TEXTURE_NAMES",
    "development_photo_names",
    "load_digits",
    "load_photo_patches",
    "load_photos",
    "photo_names",
    "rgb_to_luma",
]

SPLITS = ("train", "test")

#: The digits split: ``numpy.random.default_rng(DIGITS_SPLIT_SEED).permutation(1797)``; its first
#: ``DIGITS_TEST_SIZE`` indices are the test set, the other 1497 the training set (both sorted).
DIGITS_SPLIT_SEED = 0
DIGITS_TEST_SIZE = 300
DIGITS_LEVELS = 17


def fixed_split(n: int, n_test: int, seed: int, split: str) -> np.ndarray:
    """Sorted indices of ``split`` ("train" or "test") in a seeded, reproducible partition of ``range(n)``.

    A permutation from ``numpy.random.default_rng(seed)`` (independent of numpy's and torch's global
    state); its first ``n_test`` entries form the test set. Sorting keeps the original dataset order.
    """
    if split not in SPLITS:
        raise ValueError(f"flowkernels.data: split must be one of {SPLITS}, got {split!r}")
    if not 0 < n_test < n:
        raise ValueError(f"flowkernels.data: n_test must be in (0, {n}), got {n_test}")
    permutation = np.random.default_rng(seed).permutation(n)
    chosen = permutation[:n_test] if split == "test" else permutation[n_test:]
    return np.sort(chosen)


@functools.lru_cache(maxsize=1)
def _digits_images() -> np.ndarray:
    """All 1797 digits as an int64 array [N, 1, 8, 8] (read once per process)."""
    datasets = require("sklearn.datasets", "scikit-learn", "the digits dataset")
    images = datasets.load_digits().images  # float64 [1797, 8, 8], integer values 0..16
    return images.astype(np.int64)[:, None]


@renamed_keywords(levels="data_levels")  # the README used load_digits(..., levels=2)
def load_digits(split: str = "train", *, data_levels: int = DIGITS_LEVELS) -> torch.Tensor:
    """scikit-learn's 8x8 digits as an int64 tensor ``[N, 1, 8, 8]`` with values in ``0 .. data_levels - 1``.

    ``split`` is "train" (1497 images) or "test" (300 images); see :data:`DIGITS_SPLIT_SEED` for how the
    fixed split is drawn. ``data_levels`` (2..17) re-quantises the 17 native grey levels into ``data_levels`` equal
    bins (``x * data_levels // 17``); the default keeps the data as is. Needs scikit-learn.
    """
    if not 2 <= data_levels <= DIGITS_LEVELS:
        raise ValueError(f"load_digits: data_levels must be in 2..{DIGITS_LEVELS}, got {data_levels}")
    images = _digits_images()
    chosen = images[fixed_split(len(images), DIGITS_TEST_SIZE, DIGITS_SPLIT_SEED, split)]
    if data_levels != DIGITS_LEVELS:
        chosen = chosen * data_levels // DIGITS_LEVELS
    # A copy, so that callers may modify the tensor without touching the cached array.
    return torch.from_numpy(chosen.copy())


# ---------------------------------------------------------------------------------------------------
# Photographs bundled with scikit-image.

PHOTO_LEVELS = 256

#: Colour photographs of ``skimage.data`` (all load from the installed package, without network access),
#: as ``name -> (loader, index)``: ``getattr(skimage.data, loader)()``, and ``[index]`` of its result when
#: that is a tuple. Left out on purpose: synthetic images (colorwheel, logo, checkerboard, binary_blobs,
#: shepp_logan_phantom, horse), ``cat`` (the same picture as ``chelsea``), ``retina`` and
#: ``hubble_deep_field`` (mostly black background; they would be most of the patches), ``microaneurysms``
#: and ``lfw_subset`` (tiny), and the images that scikit-image downloads on demand (eagle, kidney, ...).
PHOTO_COLOR_SOURCES: dict[str, tuple[str, int | None]] = {
    "astronaut": ("astronaut", None),
    "chelsea": ("chelsea", None),
    "coffee": ("coffee", None),
    "immunohistochemistry": ("immunohistochemistry", None),
    "motorcycle_left": ("stereo_motorcycle", 0),
    "motorcycle_right": ("stereo_motorcycle", 1),
    "rocket": ("rocket", None),
}
#: Grey-level photographs of ``skimage.data`` (same rules as :data:`PHOTO_COLOR_SOURCES`).
PHOTO_GRAY_SOURCES: dict[str, tuple[str, int | None]] = {
    name: (name, None) for name in ("brick", "camera", "clock", "coins", "grass", "gravel", "moon", "page", "text")
}
#: The held-out photographs: never in a training split, colour or grey. A colour photo held out in
#: ``photos-rgb`` is also held out (as its luma) in ``photos-gray``, so no test picture leaks into either
#: training set. Both motorcycle views (a stereo pair of one scene) are training images.
PHOTO_TEST_NAMES = ("astronaut", "camera", "coffee")


def rgb_to_luma(rgb: np.ndarray) -> np.ndarray:
    """8-bit luma of 8-bit RGB pixels ``[..., 3]``: ITU-R BT.601, ``Y = (299 R + 587 G + 114 B + 500) // 1000``.

    Integer arithmetic (the weights sum to 1000, so the result is in 0..255 and rounds half up), hence the
    same bytes on every machine.
    """
    rgb = np.asarray(rgb, dtype=np.int64)
    if rgb.shape[-1] != 3:
        raise ValueError(f"rgb_to_luma: expected [..., 3] pixels, got shape {list(rgb.shape)}")
    return (299 * rgb[..., 0] + 587 * rgb[..., 1] + 114 * rgb[..., 2] + 500) // 1000


def photo_names(split: str, *, color: bool) -> list[str]:
    """Names of the photographs of ``split`` in the order :func:`load_photos` returns them.

    ``color=True``: the colour photographs. ``color=False``: the grey photographs and the colour ones
    (converted by :func:`rgb_to_luma`). Sorted by name; a photograph that fails to load is left out (with
    a warning) by the loaders, not here.
    """
    if split not in SPLITS:
        raise ValueError(f"flowkernels.data: split must be one of {SPLITS}, got {split!r}")
    names = set(PHOTO_COLOR_SOURCES) | (set() if color else set(PHOTO_GRAY_SOURCES))
    return sorted(name for name in names if (name in PHOTO_TEST_NAMES) == (split == "test"))


@functools.cache
def _photo(name: str) -> np.ndarray | None:
    """Photograph ``name`` as uint8 [H, W] or [H, W, 3], or None (and a warning) if it does not load."""
    skdata = require("skimage.data", "scikit-image", "the photograph datasets")
    loader, index = PHOTO_COLOR_SOURCES.get(name) or PHOTO_GRAY_SOURCES[name]
    try:
        image = getattr(skdata, loader)()
        if index is not None:
            image = image[index]
        image = np.asarray(image)
    except Exception as error:  # a missing file, or one scikit-image would have to download
        warnings.warn(f"flowkernels.data: photograph {name!r} did not load ({error}); skipped", stacklevel=3)
        return None
    expected_dims = 3 if name in PHOTO_COLOR_SOURCES else 2
    if image.dtype != np.uint8 or image.ndim != expected_dims or (expected_dims == 3 and image.shape[2] != 3):
        warnings.warn(f"flowkernels.data: photograph {name!r} is not 8-bit as expected; skipped", stacklevel=3)
        return None
    image.setflags(write=False)
    return image


def _photo_arrays(split: str, color: bool) -> list[tuple[str, np.ndarray]]:
    """``(name, uint8 [C, H, W])`` of each photograph of ``split`` that loads."""
    images = []
    for name in photo_names(split, color=color):
        image = _photo(name)
        if image is None:
            continue
        if image.ndim == 3 and not color:
            image = rgb_to_luma(image).astype(np.uint8)
        images.append((name, image.transpose(2, 0, 1) if image.ndim == 3 else image[None]))
    if not images:
        raise RuntimeError(f"flowkernels.data: none of the {split} photographs of scikit-image could be loaded")
    return images


def load_photos(split: str = "test", *, color: bool = False) -> list[torch.Tensor]:
    """The whole photographs of ``split`` as a list of uint8 tensors ``[C, H, W]`` (C = 3 or 1).

    The order is that of :func:`photo_names`. With ``color=False`` colour photographs come as their luma
    (:func:`rgb_to_luma`). Sizes vary (172x448 to 512x741). Needs scikit-image; no download.
    """
    return [torch.from_numpy(image.copy()) for _, image in _photo_arrays(split, color)]


def load_photo_patches(
    split: str = "train", *, color: bool = False, patch_size: int = 32, stride: int | None = None
) -> torch.Tensor:
    """Square patches of the scikit-image photographs: int64 ``[N, C, p, p]`` with values 0..255.

    Patches are cut on a grid of step ``stride`` from the top-left corner of every photograph of
    ``split`` (:func:`photo_names`), row by row, photograph by photograph; a border narrower than a
    patch is dropped. ``stride`` defaults to ``patch_size // 2`` (overlapping patches: 4x the data) for
    "train" and ``patch_size`` (disjoint patches) for "test". ``color=True`` gives the RGB patches of the
    colour photographs (C = 3); ``color=False`` gives grey patches (C = 1) of all photographs, colour ones
    converted by :func:`rgb_to_luma`. The split is by photograph (:data:`PHOTO_TEST_NAMES` are the test
    photographs), so no test pixel is ever seen in training. Needs scikit-image; no download.
    """
    return _cut_patches(
        "load_photo_patches", [image for _, image in _photo_arrays(split, color)], split, patch_size, stride
    )


def _cut_patches(
    caller: str, images: list[np.ndarray], split: str, patch_size: int, stride: int | None
) -> torch.Tensor:
    """Patches on a grid of step ``stride`` (default: half a patch for "train", a patch for "test") of each
    uint8 ``[C, H, W]`` image, row by row, image by image, as int64 ``[N, C, p, p]``."""
    if patch_size < 1:
        raise ValueError(f"{caller}: patch_size must be positive, got {patch_size}")
    if stride is None:
        stride = patch_size // 2 if split == "train" else patch_size
    if stride < 1:
        raise ValueError(f"{caller}: stride must be positive, got {stride}")
    patches = []
    for image in images:
        _, height, width = image.shape
        for top in range(0, height - patch_size + 1, stride):
            for left in range(0, width - patch_size + 1, stride):
                patches.append(image[:, top : top + patch_size, left : left + patch_size])
    if not patches:
        raise ValueError(f"{caller}: no {patch_size}x{patch_size} patch fits in the {split} photographs")
    return torch.from_numpy(np.stack(patches).astype(np.int64))


#: Every ``DEVELOPMENT_TEST_EVERY``-th wallpaper of the development sources (sorted by label, counting
#: from 1) is a validation photograph of ``photos-dev-*``: with the 12 of mate-backgrounds, FreshFlower,
#: RainDrops and YellowFlower.
DEVELOPMENT_TEST_EVERY = 4


def development_photo_names(split: str) -> list[str]:
    """Labels (``source/name``) of the wallpapers of the development sources in ``split`` of ``photos-dev-*``.

    The scikit-image photographs keep their own split (:func:`photo_names`)."""
    from .photo_sources import SOURCES, source_labels

    if split not in SPLITS:
        raise ValueError(f"flowkernels.data: split must be one of {SPLITS}, got {split!r}")
    development = [name for name, source in SOURCES.items() if source.role == "development"]
    labels = sorted(label for name in development for label in source_labels(name))  # names only, no decoding
    return [label for i, label in enumerate(labels, 1) if (i % DEVELOPMENT_TEST_EVERY == 0) == (split == "test")]


def load_development_patches(
    split: str = "train", *, color: bool = False, patch_size: int = 32, stride: int | None = None
) -> torch.Tensor:
    """Square patches of every development photograph (``photos-dev-gray`` / ``photos-dev-rgb``): int64
    ``[N, C, p, p]``, values 0..255.

    The photographs are scikit-image's (split as in :func:`load_photo_patches`) and the wallpapers of the
    development sources of :mod:`flowkernels.photo_sources` (mate-backgrounds' nature photographs, split by
    :func:`development_photo_names`); the held-out sources are never used. Patches are cut as in
    :func:`load_photo_patches`, scikit-image's photographs first. FileNotFoundError, with the command that
    installs them, when no development wallpaper is installed: a model trained on scikit-image's
    photographs alone is ``photos-gray`` / ``photos-rgb``.
    """
    from .photo_sources import SOURCES, development_photographs

    names = set(development_photo_names(split))
    installed = development_photographs()
    if not installed:
        install = "; ".join(source.install for source in SOURCES.values() if source.role == "development")
        raise FileNotFoundError(f"load_development_patches: no development wallpaper is installed ({install})")
    images = [image for _, image in _photo_arrays(split, color)]
    for photo in sorted((photo for photo in installed if photo.label in names), key=lambda photo: photo.label):
        images.append(photo.rgb.transpose(2, 0, 1) if color else photo.gray()[None])
    return _cut_patches("load_development_patches", images, split, patch_size, stride)


#: The classes of the rotated-texture task (HexaConv's lattices compared where rotation invariance helps):
#: images of ``skimage.data`` that are textures more than scenes; colour ones as their luma.
TEXTURE_NAMES = ("brick", "cell", "grass", "gravel", "immunohistochemistry", "moon")
#: The part of each texture image, from the left, that training crops come from; test crops come from
#: the rest, and no crop of one split overlaps the other's region.
TEXTURE_TRAIN_FRACTION = 0.75


@functools.cache
def _texture(name: str) -> torch.Tensor:
    """Texture ``name`` as float64 ``[H, W]`` in 0..255 (luma for colour images)."""
    image = np.asarray(getattr(require("skimage.data", "scikit-image", "the texture task"), name)())
    if image.ndim == 3:
        image = rgb_to_luma(image)
    return torch.from_numpy(image.astype(np.float64))


def load_rotated_textures(
    split: str = "train", *, per_class: int = 200, crop: int = 20
) -> tuple[torch.Tensor, torch.Tensor]:
    """Randomly rotated, standardised crops of the scikit-image textures of :data:`TEXTURE_NAMES`.

    For each class, ``per_class`` crops of ``crop x crop`` pixels, each at a uniformly random centre and
    angle, resampled bilinearly from the left :data:`TEXTURE_TRAIN_FRACTION` of the image ("train") or
    the rest ("test"); centres keep a margin of half the crop's diagonal from the split line and the
    border, so no crop reads the other split's pixels or outside the image. Each crop is standardised
    (zero mean, unit variance), so the classes differ by texture, not brightness. The draws come from
    ``numpy.random.default_rng`` seeded by the split, so the data are fixed.

    Returns float32 ``[N, 1, crop, crop]`` and int64 labels ``[N]`` (indices into :data:`TEXTURE_NAMES`).
    """
    if split not in SPLITS:
        raise ValueError(f"flowkernels.data: split must be one of {SPLITS}, got {split!r}")
    if per_class < 1 or crop < 2:
        raise ValueError(f"load_rotated_textures: need per_class >= 1 and crop >= 2, got {per_class}, {crop}")
    rng = np.random.default_rng(SPLITS.index(split))
    margin = crop / 2**0.5 / 2 + 1
    half = torch.arange(crop, dtype=torch.float64) - (crop - 1) / 2
    dy, dx = torch.meshgrid(half, half, indexing="ij")
    crops, labels = [], []
    for label, name in enumerate(TEXTURE_NAMES):
        image = _texture(name)
        height, width = image.shape
        line = TEXTURE_TRAIN_FRACTION * width
        low, high = (margin, line - margin) if split == "train" else (line + margin, width - 1 - margin)
        cx = torch.from_numpy(rng.uniform(low, high, per_class))
        cy = torch.from_numpy(rng.uniform(margin, height - 1 - margin, per_class))
        angle = torch.from_numpy(rng.uniform(0, 2 * np.pi, per_class))
        cos, sin = angle.cos()[:, None, None], angle.sin()[:, None, None]
        x = cx[:, None, None] + cos * dx - sin * dy  # pixel coordinates of every sample
        y = cy[:, None, None] + sin * dx + cos * dy
        grid = torch.stack((2 * x / (width - 1) - 1, 2 * y / (height - 1) - 1), dim=-1)
        # one image, all crops' samples in one grid (no per-crop copy of the image)
        sampled = torch.nn.functional.grid_sample(
            image[None, None], grid.reshape(1, per_class * crop, crop, 2), mode="bilinear", align_corners=True
        ).reshape(per_class, 1, crop, crop)
        mean = sampled.mean(dim=(-2, -1), keepdim=True)
        std = sampled.std(dim=(-2, -1), keepdim=True).clamp_min(1e-6)
        crops.append(((sampled - mean) / std).float())
        labels.append(torch.full((per_class,), label, dtype=torch.int64))
    return torch.cat(crops), torch.cat(labels)


DATASETS: dict[str, Callable[..., torch.Tensor]] = {
    "digits": load_digits,
    "photos-gray": functools.partial(load_photo_patches, color=False),
    "photos-rgb": functools.partial(load_photo_patches, color=True),
    "photos-dev-gray": functools.partial(load_development_patches, color=False),
    "photos-dev-rgb": functools.partial(load_development_patches, color=True),
}


def load_dataset(name: str, split: str = "train", **kwargs) -> torch.Tensor:
    """Load a dataset of :data:`DATASETS` by name (the entry point for the command line and benchmarks)."""
    if name not in DATASETS:
        raise ValueError(f"flowkernels.data: unknown dataset {name!r}; known: {sorted(DATASETS)}")
    return DATASETS[name](split, **kwargs)


def iterate_minibatches(
    data: torch.Tensor,
    batch_size: int,
    *,
    shuffle: bool = True,
    generator: torch.Generator | None = None,
    drop_last: bool = False,
) -> Iterator[torch.Tensor]:
    """Yield ``data`` in minibatches along the first dimension (one epoch).

    With ``shuffle`` the order is a permutation drawn from ``generator`` (a seeded generator makes epochs
    reproducible). ``drop_last`` skips a final batch smaller than ``batch_size``, for steps whose statistics
    should not depend on a ragged last batch.
    """
    if batch_size < 1:
        raise ValueError(f"iterate_minibatches: batch_size must be positive, got {batch_size}")
    n = data.shape[0]
    order = torch.randperm(n, generator=generator) if shuffle else torch.arange(n)
    stop = n - n % batch_size if drop_last else n
    for start in range(0, stop, batch_size):
        yield data[order[start : start + batch_size]]
