"""Tests of flowkernels.data: the fixed digits split and the minibatch iterator."""

from __future__ import annotations

import importlib.util
import sys

import numpy as np
import pytest
import torch

from flowkernels import data

# scikit-learn is an optional dependency (the `models` extra); only the missing-package test runs without it.
needs_sklearn = pytest.mark.skipif(importlib.util.find_spec("sklearn") is None, reason="needs scikit-learn")


@needs_sklearn
def test_digits_split_sizes_values_and_determinism():
    train, test = data.load_digits("train"), data.load_digits("test")
    assert train.shape == (1497, 1, 8, 8) and test.shape == (300, 1, 8, 8)
    assert train.dtype == torch.long and test.dtype == torch.long
    assert train.min() == 0 and train.max() == 16 and test.min() == 0 and test.max() == 16
    assert torch.equal(data.load_digits("train"), train) and torch.equal(data.load_digits("test"), test)


@needs_sklearn
def test_digits_split_is_a_disjoint_cover_of_the_sklearn_digits():
    from sklearn import datasets

    images = torch.from_numpy(datasets.load_digits().images.astype(np.int64))[:, None]
    train_index = data.fixed_split(1797, 300, 0, "train")
    test_index = data.fixed_split(1797, 300, 0, "test")
    assert not set(train_index) & set(test_index)
    assert sorted(set(train_index) | set(test_index)) == list(range(1797))
    assert torch.equal(data.load_digits("train"), images[train_index])
    assert torch.equal(data.load_digits("test"), images[test_index])
    # The split is pinned: published bits/dim refer to it, so it must never change silently.
    assert test_index[:5].tolist() == [2, 12, 20, 28, 44]


@needs_sklearn
def test_digits_requantised_levels():
    full = data.load_digits("test")
    binary = data.load_digits("test", data_levels=2)
    assert set(binary.unique().tolist()) == {0, 1}
    assert torch.equal(binary, (full >= 9).long())  # 0..8 -> 0, 9..16 -> 1
    assert data.load_digits("test", data_levels=5).max() == 4


@needs_sklearn
def test_load_dataset_by_name():
    assert torch.equal(data.load_dataset("digits", "test"), data.load_digits("test"))
    with pytest.raises(ValueError, match="unknown dataset 'cifar'"):
        data.load_dataset("cifar")


@needs_sklearn
@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"split": "valid"}, "split must be one of"),
        ({"data_levels": 1}, "data_levels must be in 2..17"),
        ({"data_levels": 18}, "data_levels must be in 2..17"),
    ],
)
def test_digits_bad_arguments(kwargs, message):
    with pytest.raises(ValueError, match=message):
        data.load_digits(**kwargs)


def test_missing_sklearn_says_how_to_install(monkeypatch):
    data._digits_images.cache_clear()
    monkeypatch.setitem(sys.modules, "sklearn.datasets", None)  # makes the import fail
    try:
        with pytest.raises(ImportError, match=r"pip install scikit-learn.*flowkernels\[models\]"):
            data.load_digits()
    finally:
        data._digits_images.cache_clear()


def test_iterate_minibatches():
    x = torch.arange(10)
    batches = list(data.iterate_minibatches(x, 4, shuffle=False))
    assert [b.tolist() for b in batches] == [[0, 1, 2, 3], [4, 5, 6, 7], [8, 9]]
    assert [len(b) for b in data.iterate_minibatches(x, 4, drop_last=True)] == [4, 4]
    shuffled = list(data.iterate_minibatches(x, 3, generator=torch.Generator().manual_seed(0)))
    assert sorted(torch.cat(shuffled).tolist()) == list(range(10))
    again = list(data.iterate_minibatches(x, 3, generator=torch.Generator().manual_seed(0)))
    assert all(torch.equal(a, b) for a, b in zip(shuffled, again, strict=True))
    assert torch.cat(shuffled).tolist() != list(range(10))
    with pytest.raises(ValueError, match="batch_size must be positive"):
        next(data.iterate_minibatches(x, 0))
