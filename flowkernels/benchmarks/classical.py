"""Classical lossless image codecs, as the baselines that learned compression is measured against.

PNG, WebP lossless, JPEG-XL lossless and JPEG-LS come from imagecodecs (an optional dependency:
``pip install imagecodecs``); lzma (the standard library) codes raw pixel bytes. Every encoding is
decoded again and compared with the input, so a reported size is always that of an exact code.

Every codec runs at its best documented setting for size: PNG zlib level 9, WebP lossless level 100
with method 6 (the slowest, smallest search; method 4 is the default), JPEG-XL lossless effort 10
(the highest; 9 was used before, 1-2% larger), JPEG-LS lossless (no setting).

Images are uint8 numpy arrays ``[H, W]`` (grayscale) or ``[H, W, 3]`` (RGB). WebP has no grayscale
mode: grayscale images are given to it as RGB with three equal channels, which its lossless
transforms (subtract-green, cross-colour) code at little cost beyond the grey channel.
"""

from __future__ import annotations

import lzma
from collections.abc import Callable, Sequence

import numpy as np

from .._optional import require

__all__ = ["RoundTripError", "CLASSICAL_CODECS", "encoded_size", "bits_per_dim", "lzma_bits_per_dim"]


def _imagecodecs():
    return require("imagecodecs", "imagecodecs", "the classical codec baselines")


def _png(image: np.ndarray) -> tuple[bytes, Callable[[bytes], np.ndarray]]:
    codecs = _imagecodecs()
    return codecs.png_encode(image, level=9), codecs.png_decode


def _webp(image: np.ndarray) -> tuple[bytes, Callable[[bytes], np.ndarray]]:
    codecs = _imagecodecs()
    rgb = np.repeat(image[..., None], 3, axis=-1) if image.ndim == 2 else image
    grey = image.ndim == 2

    def decode(data: bytes) -> np.ndarray:
        out = codecs.webp_decode(data)
        return out[..., 0] if grey else out[..., :3]

    return codecs.webp_encode(np.ascontiguousarray(rgb), lossless=True, level=100, method=6), decode


def _jpegxl(image: np.ndarray) -> tuple[bytes, Callable[[bytes], np.ndarray]]:
    codecs = _imagecodecs()
    return codecs.jpegxl_encode(image, lossless=True, effort=10), codecs.jpegxl_decode


def _jpegls(image: np.ndarray) -> tuple[bytes, Callable[[bytes], np.ndarray]]:
    codecs = _imagecodecs()
    return codecs.jpegls_encode(image), codecs.jpegls_decode


CLASSICAL_CODECS: dict[str, Callable[[np.ndarray], tuple[bytes, Callable[[bytes], np.ndarray]]]] = {
    "PNG": _png,
    "WebP lossless": _webp,
    "JPEG-XL lossless": _jpegxl,
    "JPEG-LS": _jpegls,
}


class RoundTripError(RuntimeError):
    """A classical codec decoded something other than what it was given."""


def encoded_size(image: np.ndarray, codec: str) -> int:
    """Bytes of ``image`` coded with ``codec`` (checked to decode to the same pixels)."""
    if image.dtype != np.uint8 or image.ndim not in (2, 3) or (image.ndim == 3 and image.shape[2] != 3):
        raise ValueError(f"expected a uint8 [H, W] or [H, W, 3] image, got {image.dtype} {image.shape}")
    data, decode = CLASSICAL_CODECS[codec](np.ascontiguousarray(image))
    if not np.array_equal(decode(data).reshape(image.shape), image):
        raise RoundTripError(f"{codec} did not round-trip this image exactly: its size would not be a lossless size")
    return len(data)


def bits_per_dim(images: Sequence[np.ndarray], codec: str) -> float:
    """Total coded bits over total pixel values, each image coded separately."""
    total_bits = sum(8 * encoded_size(image, codec) for image in images)
    return total_bits / sum(image.size for image in images)


def lzma_bits_per_dim(images: Sequence[np.ndarray]) -> float:
    """lzma (preset 9, extreme) of all images' raw bytes as one stream."""
    raw = b"".join(np.ascontiguousarray(image).tobytes() for image in images)
    return 8 * len(lzma.compress(raw, preset=9 | lzma.PRESET_EXTREME)) / sum(image.size for image in images)
