"""Datasets that ship inside installed Python packages, so demos and tests need no download.

* ``digits``: the 1797 8x8 handwritten digits of scikit-learn (UCI optdigits test set), 17 grey levels
  (0..16), one channel. :func:`load_digits`.

Each dataset has a FIXED train/test split that does not depend on any global random state, so
bits/dim reported anywhere in flowkernels are comparable. To add a dataset (e.g. the scikit-image
photograph patches planned next), write a ``load_<name>(split, ...)`` that returns integer images
``[N, C, H, W]``, split it with :func:`fixed_split`, import its package through
:func:`flowkernels._optional.require`, and register it in :data:`DATASETS`.
"""

from __future__ import annotations

import functools
from collections.abc import Callable, Iterator

import numpy as np
import torch

from ._optional import require

__all__ = ["DATASETS", "load_dataset", "load_digits", "fixed_split", "iterate_minibatches"]

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


def load_digits(split: str = "train", *, levels: int = DIGITS_LEVELS) -> torch.Tensor:
    """scikit-learn's 8x8 digits as an int64 tensor ``[N, 1, 8, 8]`` with values in ``0 .. levels - 1``.

    ``split`` is "train" (1497 images) or "test" (300 images); see :data:`DIGITS_SPLIT_SEED` for how the
    fixed split is drawn. ``levels`` (2..17) re-quantises the 17 native grey levels into ``levels`` equal
    bins (``x * levels // 17``); the default keeps the data as is. Needs scikit-learn.
    """
    if not 2 <= levels <= DIGITS_LEVELS:
        raise ValueError(f"load_digits: levels must be in 2..{DIGITS_LEVELS}, got {levels}")
    images = _digits_images()
    chosen = images[fixed_split(len(images), DIGITS_TEST_SIZE, DIGITS_SPLIT_SEED, split)]
    if levels != DIGITS_LEVELS:
        chosen = chosen * levels // DIGITS_LEVELS
    # A copy, so that callers may modify the tensor without touching the cached array.
    return torch.from_numpy(chosen.copy())


DATASETS: dict[str, Callable[..., torch.Tensor]] = {"digits": load_digits}


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
