"""Reading and writing the image files of ``flowkernels compress / decompress``.

* ``.png``: 8-bit grayscale, grayscale + alpha, RGB or RGBA (palette images are
  expanded to RGB), read with imagecodecs, or Pillow when imagecodecs is missing.
* ``.npy``: a uint8 array ``[H, W]`` (one channel), ``[H, W, C]`` or ``[C, H, W]``.
  A 3-D array is ``[H, W, C]`` when its last axis has the model's channel count
  and ``[C, H, W]`` when only its first axis has it; ``layout`` overrides the guess.

Images travel as uint8 tensors ``[1, C, H, W]`` plus a layout name (``"HW"``,
``"HWC"`` or ``"CHW"``) that :func:`write_image` uses to write ``.npy`` files in
the layout they were read in.
"""

from __future__ import annotations

import io
import os
from pathlib import Path

import numpy as np
import torch

from .._optional import require

__all__ = ["LAYOUTS", "read_image", "write_image", "to_tensor", "from_tensor"]

LAYOUTS = ("HW", "HWC", "CHW")
SUFFIXES = (".png", ".npy")


def _suffix(path: str | os.PathLike) -> str:
    suffix = Path(path).suffix.lower()
    if suffix not in SUFFIXES:
        raise ValueError(f"{path}: unsupported image file type {suffix or '(none)'!r}; use .png or .npy")
    return suffix


def _png_decode(raw: bytes) -> np.ndarray:
    try:
        import imagecodecs
    except ImportError:
        image = require("PIL.Image", "imagecodecs", "reading PNG files").open(io.BytesIO(raw))
        if image.mode == "P":
            image = image.convert("RGBA" if "transparency" in image.info else "RGB")
        if image.mode not in ("L", "LA", "RGB", "RGBA"):
            raise ValueError(f"only 8-bit PNG images are supported, got mode {image.mode}") from None
        return np.asarray(image)
    return imagecodecs.png_decode(raw)


def _png_encode(array: np.ndarray) -> bytes:
    try:
        import imagecodecs
    except ImportError:
        image_module = require("PIL.Image", "imagecodecs", "writing PNG files")
        buffer = io.BytesIO()
        image_module.fromarray(array).save(buffer, format="PNG")
        return buffer.getvalue()
    return bytes(imagecodecs.png_encode(array))


def to_tensor(array: np.ndarray, *, channels: int | None = None, layout: str | None = None) -> tuple[torch.Tensor, str]:
    """A uint8 array ``[H, W]``, ``[H, W, C]`` or ``[C, H, W]`` as ``[1, C, H, W]``, and its layout."""
    if array.dtype != np.uint8:
        raise ValueError(f"images must be uint8 arrays, got {array.dtype}")
    if array.ndim == 2:
        if layout not in (None, "HW"):
            raise ValueError(f"a 2-D array has layout HW, not {layout}")
        layout = "HW"
    elif array.ndim == 3:
        if layout is None:
            last, first = array.shape[-1] == channels, array.shape[0] == channels
            layout = "CHW" if first and not last else "HWC"
        if layout not in ("HWC", "CHW"):
            raise ValueError(f"a 3-D array has layout HWC or CHW, not {layout}")
    else:
        raise ValueError(f"images must be arrays [H, W], [H, W, C] or [C, H, W], got shape {list(array.shape)}")
    chw = array[None] if layout == "HW" else array.transpose(2, 0, 1) if layout == "HWC" else array
    return torch.from_numpy(np.ascontiguousarray(chw))[None], layout


def from_tensor(image: torch.Tensor, layout: str) -> np.ndarray:
    """The inverse of :func:`to_tensor`: ``[C, H, W]`` uint8 to an array in ``layout``."""
    array = image.numpy()
    if layout == "HW":
        if array.shape[0] != 1:
            raise ValueError(f"layout HW holds one channel, the image has {array.shape[0]}")
        return np.ascontiguousarray(array[0])
    if layout == "HWC":
        return np.ascontiguousarray(array.transpose(1, 2, 0))
    if layout == "CHW":
        return np.ascontiguousarray(array)
    raise ValueError(f"unknown layout {layout!r} (one of {', '.join(LAYOUTS)})")


def read_image(
    path: str | os.PathLike, *, channels: int | None = None, layout: str | None = None
) -> tuple[torch.Tensor, str]:
    """Read a .png or .npy file: uint8 ``[1, C, H, W]`` and the layout it was stored in."""
    if _suffix(path) == ".npy":
        try:
            array = np.load(path, allow_pickle=False)
        except ValueError as error:
            raise ValueError(f"{path}: not a plain .npy array ({error})") from None
        return to_tensor(array, channels=channels, layout=layout)
    array = _png_decode(Path(path).read_bytes())
    if array.dtype != np.uint8:
        raise ValueError(f"{path}: only 8-bit PNG images are supported, got {array.dtype}")
    return to_tensor(array, layout="HW" if array.ndim == 2 else "HWC")


def write_image(path: str | os.PathLike, image: torch.Tensor, layout: str = "HWC") -> None:
    """Write a uint8 ``[C, H, W]`` image as .png (any layout becomes HW / HWC) or .npy (in ``layout``)."""
    if _suffix(path) == ".npy":
        np.save(path, from_tensor(image, layout), allow_pickle=False)
        return
    channels = image.shape[0]
    if channels not in (1, 2, 3, 4):
        raise ValueError(f"{path}: PNG holds 1 to 4 channels, the image has {channels}; write a .npy file instead")
    Path(path).write_bytes(_png_encode(from_tensor(image, "HW" if channels == 1 else "HWC")))
