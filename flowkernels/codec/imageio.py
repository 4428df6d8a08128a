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

import contextlib
import io
import os
import tempfile
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import torch

from .. import limits
from .._optional import require

__all__ = [
    "LAYOUTS",
    "read_image",
    "write_image",
    "to_tensor",
    "from_tensor",
    "check_output",
    "replaced_atomically",
]

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


#: channels of each PNG colour type (palette images are expanded to RGB or RGBA: counted as 4)
_PNG_CHANNELS = {0: 1, 2: 3, 3: 4, 4: 2, 6: 4}


def _check_png_header(raw: bytes, path) -> None:
    """The size a PNG declares (IHDR), checked before the decoder allocates anything."""
    if len(raw) < 33 or raw[:8] != b"\x89PNG\r\n\x1a\n" or raw[12:16] != b"IHDR":
        raise ValueError(f"{path}: not a PNG file (no PNG signature and IHDR header)")
    width, height = int.from_bytes(raw[16:20], "big"), int.from_bytes(raw[20:24], "big")
    if width < 1 or height < 1:
        raise ValueError(f"{path}: the PNG declares a {width}x{height} image")
    limits.check_pixels(width * height * _PNG_CHANNELS.get(raw[25], 4), str(path))


def _load_npy(path) -> np.ndarray:
    """A .npy array, its header (shape, dtype) checked against the limits and the file's size first."""
    with open(path, "rb") as file:
        try:
            version = np.lib.format.read_magic(file)
            reader = np.lib.format.read_array_header_1_0 if version == (1, 0) else np.lib.format.read_array_header_2_0
            shape, fortran, dtype = reader(file)
        except Exception as error:  # numpy's header parser raises ValueError, SyntaxError, TokenError...
            raise ValueError(f"{path}: not a plain .npy array ({type(error).__name__}: {error})") from None
        if dtype != np.uint8:
            raise ValueError(f"{path}: the array must be uint8, got {dtype}")
        count = int(np.prod(shape, dtype=object))
        limits.check_pixels(count, str(path))
        if os.fstat(file.fileno()).st_size - file.tell() < count:
            raise ValueError(f"{path}: truncated: the header declares {list(shape)} but the data is shorter")
        array = np.fromfile(file, dtype=np.uint8, count=count)
    return array.reshape(shape, order="F" if fortran else "C")


def read_image(
    path: str | os.PathLike, *, channels: int | None = None, layout: str | None = None
) -> tuple[torch.Tensor, str]:
    """Read a .png or .npy file: uint8 ``[1, C, H, W]`` and the layout it was stored in.

    The size the file declares is checked against :data:`flowkernels.limits.MAX_PIXELS` (and a .npy
    header against the file's length) before anything is decoded; unreadable files raise ValueError.
    """
    if _suffix(path) == ".npy":
        return to_tensor(_load_npy(path), channels=channels, layout=layout)
    raw = Path(path).read_bytes()
    _check_png_header(raw, path)
    try:
        array = _png_decode(raw)
    except Exception as error:  # the decoders raise their own types (PngError, UnicodeDecodeError...)
        raise ValueError(f"{path}: not a readable PNG image ({type(error).__name__}: {error})") from None
    if array.dtype != np.uint8:
        raise ValueError(f"{path}: only 8-bit PNG images are supported, got {array.dtype}")
    return to_tensor(array, layout="HW" if array.ndim == 2 else "HWC")


def write_image(path: str | os.PathLike, image: torch.Tensor, layout: str = "HWC") -> None:
    """Write a uint8 ``[C, H, W]`` image as .png (any layout becomes HW / HWC) or .npy (in ``layout``),
    atomically (:func:`replaced_atomically`)."""
    if _suffix(path) == ".npy":
        array = from_tensor(image, layout)
        with replaced_atomically(path) as temporary, open(temporary, "wb") as file:
            np.save(file, array, allow_pickle=False)
        return
    channels = image.shape[0]
    if channels not in (1, 2, 3, 4):
        raise ValueError(f"{path}: PNG holds 1 to 4 channels, the image has {channels}; write a .npy file instead")
    data = _png_encode(from_tensor(image, "HW" if channels == 1 else "HWC"))
    with replaced_atomically(path) as temporary:
        temporary.write_bytes(data)


def check_output(source: str | os.PathLike, output: str | os.PathLike, *, force: bool = False) -> None:
    """Refuse (ValueError) to write ``output`` when it is ``source`` (the same file, by any path), or
    when it exists and ``force`` is not set."""
    target = Path(output)
    if not target.exists():
        return
    if Path(source).exists() and os.path.samefile(source, target):
        raise ValueError(f"the output {output} is the input: choose another output file")
    if not force:
        raise ValueError(f"{output} exists: pass --force to replace it")
    if target.is_dir():
        raise ValueError(f"{output} is a folder, not a file")


@contextlib.contextmanager
def replaced_atomically(path: str | os.PathLike) -> Iterator[Path]:
    """Yield a temporary file beside ``path`` (same suffix) to write; when the block succeeds it replaces
    ``path`` in one rename, when it fails it is removed: ``path`` is never left half written."""
    target = Path(path)
    handle, name = tempfile.mkstemp(prefix=f".{target.name}.", suffix=target.suffix, dir=target.parent)
    os.close(handle)
    temporary = Path(name)
    umask = os.umask(0)  # mkstemp makes the file private: give it the permissions a plain open() would
    os.umask(umask)
    os.chmod(temporary, 0o666 & ~umask)
    try:
        yield temporary
        os.replace(temporary, target)
    except BaseException:
        with contextlib.suppress(OSError):
            temporary.unlink()
        raise
