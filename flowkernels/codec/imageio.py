"""Reading and writing the image files of ``flowkernels compress / decompress``.

* ``.png``: 8-bit grayscale, grayscale + alpha, RGB or RGBA (palette images are
  expanded to RGB), read with imagecodecs, or Pillow when imagecodecs is missing.
* ``.npy``: a uint8 array ``[H, W]`` (one channel), ``[H, W, C]`` or ``[C, H, W]``.
  A 3-D array is ``[H, W, C]`` when its last axis has the model's channel count
  and ``[C, H, W]`` when only its first axis has it; ``layout`` overrides the guess.
* ``.tif`` / ``.tiff``, ``.pgm`` / ``.ppm`` / ``.pnm``, ``.webp`` (read and written, WebP losslessly)
  and ``.jpg`` / ``.jpeg`` (read only: a lossy format, whose decoded pixels are what gets
  compressed), through Pillow. 8-bit samples only: a 16-bit or floating-point image is refused
  with a message, as is a multi-page TIFF.

Images travel as uint8 tensors ``[1, C, H, W]`` plus a layout name (``"HW"``,
``"HWC"`` or ``"CHW"``) that :func:`write_image` uses to write ``.npy`` files in
the layout they were read in.
"""

from __future__ import annotations

import contextlib
import io
import os
import sys
import tempfile
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import torch

from .. import limits
from .._optional import require

__all__ = [
    "LAYOUTS",
    "SUFFIXES",
    "LOSSY_SUFFIXES",
    "read_image",
    "decode_image",
    "sniff_suffix",
    "png_encode",
    "write_image",
    "encode_image",
    "to_tensor",
    "from_tensor",
    "check_output",
    "replaced_atomically",
]

LAYOUTS = ("HW", "HWC", "CHW")
#: suffixes handled by Pillow, and the format Pillow writes them in (None: read only)
_PILLOW_FORMATS = {
    ".tif": "TIFF",
    ".tiff": "TIFF",
    ".pgm": "PPM",
    ".ppm": "PPM",
    ".pnm": "PPM",
    ".webp": "WEBP",
    ".jpg": None,
    ".jpeg": None,
}
#: lossy formats: flowkernels compresses their decoded pixels (and never writes them)
LOSSY_SUFFIXES = (".jpg", ".jpeg")
SUFFIXES = (".png", ".npy", *_PILLOW_FORMATS)


def _suffix(path: str | os.PathLike) -> str:
    suffix = Path(path).suffix.lower()
    if suffix not in SUFFIXES:
        raise ValueError(
            f"{path}: unsupported image file type {suffix or '(none)'!r}; use one of {', '.join(SUFFIXES)}"
        )
    return suffix


def _pillow():
    return require("PIL.Image", "Pillow", "reading and writing TIFF, PNM, WebP and JPEG images")


#: Pillow modes of 8-bit images, and what they become ('1': bilevel, read as 0 / 255 grey levels)
_PILLOW_MODES = {"L": "L", "LA": "LA", "RGB": "RGB", "RGBA": "RGBA", "1": "L", "P": None}


def _pillow_decode(raw: bytes, path) -> np.ndarray:
    """An 8-bit image file Pillow reads, its size checked against the limits before its pixels are decoded."""
    image_module = _pillow()
    try:
        image = image_module.open(io.BytesIO(raw))
        width, height = image.size
        limits.check_pixels(width * height * max(1, len(image.getbands())), str(path))
        if getattr(image, "n_frames", 1) > 1:
            raise ValueError(f"{path}: the file holds {image.n_frames} images (pages or frames); give one")
        if image.mode not in _PILLOW_MODES:
            raise ValueError(
                f"{path}: {image.mode} images are not supported: flowkernels compresses 8-bit grey or RGB(A) "
                "samples (16-bit and floating-point images have no model yet)"
            )
        if image.mode == "P":
            image = image.convert("RGBA" if "transparency" in image.info else "RGB")
        image = image.convert(_PILLOW_MODES[image.mode]) if _PILLOW_MODES[image.mode] != image.mode else image
        return np.array(image)  # a writable copy (Pillow's buffer is read-only)
    except ValueError as error:
        raise ValueError(str(error) if str(path) in str(error) else f"{path}: {error}") from None
    except Exception as error:  # Pillow raises UnidentifiedImageError, OSError, SyntaxError, ...
        raise ValueError(f"{path}: not a readable image ({type(error).__name__}: {error})") from None


def _pillow_encode(array: np.ndarray, suffix: str, path) -> bytes:
    fmt = _PILLOW_FORMATS[suffix]
    if fmt is None:
        raise ValueError(f"{path}: {suffix} is a lossy format; write .png, .tif, .webp or .npy for exact pixels")
    channels = 1 if array.ndim == 2 else array.shape[-1]
    if fmt == "PPM" and channels not in (1, 3):
        raise ValueError(f"{path}: PGM/PPM hold 1 or 3 channels, the image has {channels}; write .png or .tif")
    if fmt == "WEBP":
        if channels == 1:  # WebP has no grey mode: three equal channels, which its lossless transforms code cheaply
            array = np.repeat(array[..., None], 3, axis=-1)
        elif channels not in (3, 4):
            raise ValueError(f"{path}: WebP holds grey, RGB or RGBA images, the image has {channels} channels")
    buffer = io.BytesIO()
    options = {"lossless": True, "quality": 100, "method": 6} if fmt == "WEBP" else {}
    _pillow().fromarray(array).save(buffer, format=fmt, **options)
    return buffer.getvalue()


def png_decode(raw: bytes) -> np.ndarray:
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


def png_encode(array: np.ndarray, level: int = 6) -> bytes:
    """A uint8 ``[H, W]`` or ``[H, W, C]`` array as PNG bytes (zlib ``level`` 0-9)."""
    try:
        import imagecodecs
    except ImportError:
        image_module = require("PIL.Image", "imagecodecs", "writing PNG files")
        buffer = io.BytesIO()
        image_module.fromarray(array).save(buffer, format="PNG", compress_level=level)
        return buffer.getvalue()
    return bytes(imagecodecs.png_encode(array, level=level))


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


def _load_npy(file: io.IOBase, available: int, path) -> np.ndarray:
    """A .npy array from ``file`` (``available`` bytes left in it), its header (shape, dtype) checked against
    the limits and the bytes available before the data is read."""
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
    if available - file.tell() < count:
        raise ValueError(f"{path}: truncated: the header declares {list(shape)} but the data is shorter")
    array = np.frombuffer(file.read(count), dtype=np.uint8, count=count).copy()
    return array.reshape(shape, order="F" if fortran else "C")


#: leading bytes of each format, to read an image from a pipe (no file name to go by)
_SIGNATURES = (
    (b"\x89PNG\r\n\x1a\n", ".png"),
    (b"\x93NUMPY", ".npy"),
    (b"II*\x00", ".tif"),
    (b"MM\x00*", ".tif"),
    (b"\xff\xd8\xff", ".jpg"),
    (b"P5", ".pnm"),
    (b"P6", ".pnm"),
    (b"P4", ".pnm"),
    (b"P2", ".pnm"),
    (b"P3", ".pnm"),
)


def sniff_suffix(raw: bytes, name: str = "<stdin>") -> str:
    """The suffix of the format whose signature ``raw`` starts with (ValueError when none)."""
    if raw[:4] == b"RIFF" and raw[8:12] == b"WEBP":
        return ".webp"
    for signature, suffix in _SIGNATURES:
        if raw.startswith(signature):
            return suffix
    raise ValueError(f"{name}: not an image this reader knows (PNG, NPY, TIFF, JPEG, WebP, PGM/PPM)")


def read_image(
    path: str | os.PathLike, *, channels: int | None = None, layout: str | None = None
) -> tuple[torch.Tensor, str]:
    """Read an image file (see the module's formats): uint8 ``[1, C, H, W]`` and the layout it was stored in.

    The size the file declares is checked against :data:`flowkernels.limits.MAX_PIXELS` (and a .npy
    header against the file's length) before anything is decoded; unreadable files raise ValueError.
    """
    if os.fspath(path) == "-":  # standard input: the format from its first bytes
        return decode_image(sys.stdin.buffer.read(), "<stdin>", channels=channels, layout=layout)
    suffix = _suffix(path)
    if suffix == ".npy":
        with open(path, "rb") as file:
            array = _load_npy(file, os.fstat(file.fileno()).st_size, path)
        return to_tensor(array, channels=channels, layout=layout)
    return decode_image(Path(path).read_bytes(), path, suffix, channels=channels, layout=layout)


def decode_image(
    raw: bytes, name, suffix: str | None = None, *, channels: int | None = None, layout: str | None = None
) -> tuple[torch.Tensor, str]:
    """:func:`read_image` of bytes already read (``suffix``: the format; None: from the bytes' signature)."""
    suffix = suffix or sniff_suffix(raw, str(name))
    if suffix == ".npy":
        return to_tensor(_load_npy(io.BytesIO(raw), len(raw), name), channels=channels, layout=layout)
    if suffix in _PILLOW_FORMATS:
        array = _pillow_decode(raw, name)
        return to_tensor(array, layout="HW" if array.ndim == 2 else "HWC")
    _check_png_header(raw, name)
    try:
        array = png_decode(raw)
    except Exception as error:  # the decoders raise their own types (PngError, UnicodeDecodeError...)
        raise ValueError(f"{name}: not a readable PNG image ({type(error).__name__}: {error})") from None
    if array.dtype != np.uint8:
        raise ValueError(f"{name}: only 8-bit PNG images are supported, got {array.dtype}")
    return to_tensor(array, layout="HW" if array.ndim == 2 else "HWC")


def encode_image(image: torch.Tensor, suffix: str, layout: str = "HWC", name="<image>") -> bytes:
    """A uint8 ``[C, H, W]`` image as the bytes of a ``suffix`` file: .npy (in ``layout``), or .png, .tif,
    .pgm / .ppm or lossless .webp (any layout becomes HW / HWC)."""
    if suffix not in SUFFIXES:
        raise ValueError(f"{name}: unsupported image file type {suffix!r}; use one of {', '.join(SUFFIXES)}")
    if suffix == ".npy":
        buffer = io.BytesIO()
        np.save(buffer, from_tensor(image, layout), allow_pickle=False)
        return buffer.getvalue()
    channels = image.shape[0]
    if suffix in _PILLOW_FORMATS:
        return _pillow_encode(from_tensor(image, "HW" if channels == 1 else "HWC"), suffix, name)
    if channels not in (1, 2, 3, 4):
        raise ValueError(f"{name}: PNG holds 1 to 4 channels, the image has {channels}; write a .npy file instead")
    return png_encode(from_tensor(image, "HW" if channels == 1 else "HWC"))


def write_image(path: str | os.PathLike, image: torch.Tensor, layout: str = "HWC") -> None:
    """Write a uint8 ``[C, H, W]`` image in the format of ``path``'s suffix (:func:`encode_image`),
    atomically (:func:`replaced_atomically`)."""
    data = encode_image(image, _suffix(path), layout, path)
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
