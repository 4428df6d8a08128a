"""Tests of the scikit-image photograph datasets of flowkernels.data: split by image, patches, luma."""

from __future__ import annotations

import importlib.util
import sys

import numpy as np
import pytest
import torch

from flowkernels import data

needs_skimage = pytest.mark.skipif(importlib.util.find_spec("skimage") is None, reason="needs scikit-image")


def test_luma_formula():
    rgb = np.array([[0, 0, 0], [255, 255, 255], [255, 0, 0], [0, 255, 0], [0, 0, 255], [10, 20, 30], [1, 1, 2]])
    # BT.601 weights in thousandths, rounded half up: e.g. 0.299 * 255 = 76.245 -> 76.
    assert data.rgb_to_luma(rgb).tolist() == [0, 255, 76, 150, 29, 18, 1]
    with pytest.raises(ValueError, match=r"expected \[\.\.\., 3\] pixels"):
        data.rgb_to_luma(np.zeros((2, 4)))


def test_photo_names_split_by_image():
    for color in (False, True):
        train, test = data.photo_names("train", color=color), data.photo_names("test", color=color)
        assert not set(train) & set(test) and train == sorted(train) and test == sorted(test)
        assert set(test) <= set(data.PHOTO_TEST_NAMES)
    assert data.photo_names("test", color=True) == ["astronaut", "coffee"]
    assert data.photo_names("test", color=False) == ["astronaut", "camera", "coffee"]
    # Every colour photograph is also a grey one (as its luma), in the same split.
    for split in data.SPLITS:
        assert set(data.photo_names(split, color=True)) <= set(data.photo_names(split, color=False))
    with pytest.raises(ValueError, match="split must be one of"):
        data.photo_names("valid", color=False)


@needs_skimage
def test_photo_patches_shapes_values_and_split():
    from skimage import data as skdata

    gray_test = data.load_photo_patches("test", color=False)
    # Disjoint 32x32 patches of astronaut (512x512), camera (512x512) and coffee (400x600).
    assert gray_test.shape == (256 + 256 + 12 * 18, 1, 32, 32) and gray_test.dtype == torch.int64
    assert gray_test.min() >= 0 and gray_test.max() <= 255
    astronaut = torch.from_numpy(data.rgb_to_luma(skdata.astronaut()))
    assert torch.equal(gray_test[0, 0], astronaut[:32, :32])
    assert torch.equal(gray_test[17, 0], astronaut[32:64, 32:64])  # row by row: 16 patches per row
    camera = torch.from_numpy(skdata.camera()).long()
    assert torch.equal(gray_test[256, 0], camera[:32, :32])

    rgb_test = data.load_dataset("photos-rgb", "test", patch_size=16)
    assert rgb_test.shape == (32 * 32 + 25 * 37, 3, 16, 16)
    assert torch.equal(rgb_test[1], torch.from_numpy(skdata.astronaut()[:16, 16:32]).permute(2, 0, 1).long())

    # Training patches overlap by default (stride p/2) and come from the training photographs only.
    train = data.load_dataset("photos-gray", "train", patch_size=32)
    assert torch.equal(train, data.load_photo_patches("train", color=False, patch_size=32, stride=16))
    brick = torch.from_numpy(skdata.brick()).long()  # the first training photograph by name
    assert torch.equal(train[1, 0], brick[:32, 16:48])
    test_patches = {patch.numpy().tobytes() for patch in gray_test}
    assert not any(patch.numpy().tobytes() in test_patches for patch in train)
    with pytest.raises(ValueError, match="stride must be positive"):
        data.load_photo_patches("train", stride=0)
    with pytest.raises(ValueError, match="no 4096x4096 patch fits"):
        data.load_photo_patches("test", patch_size=4096)


@needs_skimage
def test_load_photos_returns_whole_held_out_images():
    from skimage import data as skdata

    gray = data.load_photos("test", color=False)
    assert [tuple(image.shape) for image in gray] == [(1, 512, 512), (1, 512, 512), (1, 400, 600)]
    assert all(image.dtype == torch.uint8 for image in gray)
    assert torch.equal(gray[1][0], torch.from_numpy(skdata.camera()))
    rgb = data.load_photos("test", color=True)
    assert torch.equal(rgb[1], torch.from_numpy(skdata.coffee()).permute(2, 0, 1))
    rgb[0].fill_(0)  # a copy: the cached photograph is untouched
    assert data.load_photos("test", color=True)[0].any()


@needs_skimage
def test_a_photograph_that_fails_to_load_is_skipped_with_a_warning(monkeypatch):
    from skimage import data as skdata

    data._photo.cache_clear()

    def broken():
        raise ModuleNotFoundError("requires the installation of an optional dependency, pooch")

    monkeypatch.setattr(skdata, "camera", broken)
    try:
        with pytest.warns(UserWarning, match="photograph 'camera' did not load"):
            images = data.load_photos("test", color=False)
        assert [tuple(image.shape) for image in images] == [(1, 512, 512), (1, 400, 600)]
    finally:
        data._photo.cache_clear()


def test_missing_skimage_says_how_to_install(monkeypatch):
    data._photo.cache_clear()
    monkeypatch.setitem(sys.modules, "skimage.data", None)
    try:
        with pytest.raises(ImportError, match=r"pip install scikit-image"):
            data.load_photos("test")
    finally:
        data._photo.cache_clear()
