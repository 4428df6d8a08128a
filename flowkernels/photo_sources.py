"""Photographs from installed packages, split by source: what codecs are developed on and what they are
judged on.

Nothing is downloaded: every source is a package that ``pip`` or ``apt-get`` installs. Photographs from
the Debian wallpaper packages are JPEG files of 1-5 megapixels; they are downscaled by area averaging
(:func:`area_downscale`, by 4 when the shorter side is at least 1200 pixels, else by 2), which removes
most JPEG artefacts (as L3C did with Open Images), and kept in RGB and as 8-bit luma.

========================  ===========  ==============================================  ===============
source                    role         what (package; licence)                         photographs
========================  ===========  ==============================================  ===============
``skimage``               development  scikit-image ``skimage.data`` (PyPI; BSD-3)     :mod:`flowkernels.data`
``mate``                  development  mate-backgrounds ``nature/*.jpg`` (Debian;        12
                                       GPL-2+ / CC-BY-SA-4.0)
``plasma``                held-out     plasma-workspace-wallpapers, every               12
                                       ``*/contents/images/2560x1600.jpg`` (Debian;
                                       GPL-2+): landscapes, textures, objects
``sklearn``               held-out     scikit-learn ``load_sample_images`` (PyPI;       2
                                       CC-BY 2.0): a temple, a flower
========================  ===========  ==============================================  ===============

*Development* sources are what the context coder's design was tuned on and what flows train on;
*held-out* sources are never looked at while developing, only measured
(``benchmarks/experiments/idf_results.py``). A source whose package is not installed yields no photographs, and
:func:`missing_sources` says how to install it.
"""

from __future__ import annotations

import dataclasses
import glob
import os
from pathlib import Path

import numpy as np

from .data import rgb_to_luma

__all__ = [
    "PhotoSource",
    "SOURCES",
    "Photograph",
    "area_downscale",
    "source_files",
    "source_labels",
    "load_source",
    "heldout_photographs",
    "development_photographs",
    "missing_sources",
]


def _root() -> Path:
    """Where the packages' files are looked for: ``/``, or FLOWKERNELS_DATA_ROOT (tests use a fake root)."""
    return Path(os.environ.get("FLOWKERNELS_DATA_ROOT", "/"))


@dataclasses.dataclass(frozen=True)
class PhotoSource:
    name: str
    role: str  # "development" or "held-out"
    package: str
    install: str
    licence: str
    patterns: tuple[str, ...] = ()  # file globs, relative to the file-system root


SOURCES: dict[str, PhotoSource] = {
    source.name: source
    for source in (
        PhotoSource(
            "mate",
            "development",
            "mate-backgrounds",
            "apt-get install mate-backgrounds",
            "GPL-2+ / CC-BY-SA-4.0",
            ("usr/share/backgrounds/mate/nature/*.jpg",),
        ),
        PhotoSource(
            "plasma",
            "held-out",
            "plasma-workspace-wallpapers",
            "apt-get install plasma-workspace-wallpapers",
            "GPL-2+",
            ("usr/share/wallpapers/*/contents/images/2560x1600.jpg",),
        ),
        PhotoSource("sklearn", "held-out", "scikit-learn", "pip install scikit-learn", "CC-BY 2.0"),
    )
}


@dataclasses.dataclass(frozen=True)
class Photograph:
    """One photograph: ``source/name``, and its pixels as uint8 ``[H, W, 3]``."""

    source: str
    name: str
    rgb: np.ndarray

    @property
    def label(self) -> str:
        return f"{self.source}/{self.name}"

    def gray(self) -> np.ndarray:
        """8-bit luma ``[H, W]`` (:func:`flowkernels.data.rgb_to_luma`)."""
        return rgb_to_luma(self.rgb).astype(np.uint8)


def area_downscale(image: np.ndarray, factor: int) -> np.ndarray:
    """Mean of each ``factor x factor`` block (rounded half up; a border narrower than a block is dropped)."""
    if factor == 1:
        return image
    height, width = image.shape[0] // factor * factor, image.shape[1] // factor * factor
    blocks = image[:height, :width].astype(np.int64)
    blocks = blocks.reshape(height // factor, factor, width // factor, factor, *image.shape[2:])
    n = factor * factor
    return ((blocks.sum(axis=(1, 3)) + n // 2) // n).astype(np.uint8)


def _downscale_factor(shape: tuple[int, ...]) -> int:
    return 4 if min(shape[:2]) >= 1200 else 2


def source_files(name: str) -> list[Path]:
    """The photograph files of source ``name`` that are installed, sorted."""
    source = SOURCES[name]
    found: set[str] = set()
    for pattern in source.patterns:
        found.update(glob.glob(str(_root() / pattern)))
    return sorted(Path(path) for path in found)


def _label(path: Path) -> str:
    parts = path.parts
    if "wallpapers" in parts:  # .../wallpapers/<Name>/contents/images/2560x1600.jpg
        return parts[parts.index("wallpapers") + 1]
    return path.stem


def source_labels(name: str) -> list[str]:
    """The labels (``source/name``) of the installed photographs of a Debian source, found without
    decoding them (the order of :func:`source_files`)."""
    return [f"{name}/{_label(path)}" for path in source_files(name)]


def load_source(name: str, *, downscale: int | None = None) -> list[Photograph]:
    """Every installed photograph of source ``name``, downscaled (by ``downscale``, or as the module's
    description says)."""
    if name == "sklearn":
        try:
            from sklearn.datasets import load_sample_images
        except ImportError:
            return []
        bunch = load_sample_images()
        return [
            Photograph("sklearn", Path(file).stem, area_downscale(image, downscale or _downscale_factor(image.shape)))
            for file, image in zip(bunch.filenames, bunch.images, strict=True)
        ]
    from PIL import Image

    photographs = []
    for path in source_files(name):
        with Image.open(path) as opened:
            rgb = np.asarray(opened.convert("RGB"))
        factor = downscale or _downscale_factor(rgb.shape)
        photographs.append(Photograph(name, _label(path), area_downscale(rgb, factor)))
    return photographs


def _by_role(role: str) -> list[Photograph]:
    return [photo for name, source in SOURCES.items() if source.role == role for photo in load_source(name)]


def heldout_photographs() -> list[Photograph]:
    """The held-out photographs that are installed (plasma, then sklearn)."""
    return _by_role("held-out")


def development_photographs() -> list[Photograph]:
    """The development photographs of the Debian packages that are installed (scikit-image's are in
    :mod:`flowkernels.data`)."""
    return _by_role("development")


def missing_sources() -> list[str]:
    """One line per source with no installed photographs: how to install it."""

    def installed(name: str) -> bool:
        return bool(load_source(name)) if name == "sklearn" else bool(source_files(name))

    return [f"{name}: none installed ({source.install})" for name, source in SOURCES.items() if not installed(name)]
