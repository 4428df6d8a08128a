"""The single-image ``.fkc`` file: the cheapest of several coding methods, tagged, in 17 to 29 bytes of framing.

A learned flow is only as good as the images it was trained on, and its container carries its model's
description; on an image unlike its training set (line art, a screenshot, noise, a tiny icon) it can
cost several times what PNG does. So :func:`encode_image_file` codes the image with each method it is
given and keeps the smallest file; :func:`decode_image_file` follows the method the file names.

Methods (:data:`METHODS`):

* ``"context"``: the classical adaptive coder of the ``context`` kernel family
  (:func:`flowkernels.ops.context_encode`; 1 to 85 channels). No model, no training; on photographs
  it beats PNG and JPEG-LS.
* ``"png"``: PNG at zlib level 9 (1 to 4 channels), stored without its 8-byte signature and its
  12-byte end chunk, which the decoder puts back. It catches what an LZ77 coder does best (exact
  repeats: pixel-doubled images, screenshots, text), so a file is never larger than PNG's own by more
  than the few bytes of this header.
* ``"stored"``: the raw bytes, for incompressible images (noise).
* ``"flow"``: a :class:`~flowkernels.codec.LosslessImageCodec` (an IDF) container of the one image;
  used when a flow codec is given.

Layout, little-endian:

========  ==================================================================================
bytes     content
========  ==================================================================================
4         magic ``b"FKIM"``
1         method: 0 stored, 1 context, 2 png, 3 flow
1         layout the image was read in: 0 ``HW``, 1 ``HWC``, 2 ``CHW`` (how to write it back)
1-5 x 3   C, H, W as unsigned LEB128 varints (1 <= C <= 128, 1 <= H, W < 2**31)
4         CRC-32 of the pixels (uint8, ``[C, H, W]`` order)
...       the method's payload
4         CRC-32 of every byte before it
========  ==================================================================================

Files of the older multi-image container (magic ``b"FKIC"``, :mod:`flowkernels.codec.container`)
are still read by :func:`flowkernels.codec.decompress_file`.
"""

from __future__ import annotations

import dataclasses
import struct
import time
import zlib
from collections.abc import Sequence

import numpy as np
import torch

from ..limits import check_pixels
from ..ops import context_decode, context_encode
from ..ops.context import MAX_CHANNELS as CONTEXT_MAX_CHANNELS
from .container import pixel_crc
from .imageio import LAYOUTS, from_tensor, png_decode, png_encode

__all__ = [
    "MAGIC",
    "METHODS",
    "DEFAULT_METHODS",
    "PNG_FRAMING_BYTES",
    "EncodedImage", "ImageFileHeader", "encode_image_file", "decode_image_file", "read_image_header"]

MAGIC = b"FKIM"
METHODS = ("stored", "context", "png", "flow")
#: the methods tried when none are named: every classical one (the flow only when a codec is given)
DEFAULT_METHODS = ("context", "png", "stored")
MAX_CHANNELS = 128
MAX_SIDE = (1 << 31) - 1
_PNG_SIGNATURE = b"\x89PNG\r\n\x1a\n"
_PNG_END = b"\x00\x00\x00\x00IEND\xaeB`\x82"
#: what a PNG file has beyond a "png" payload
PNG_FRAMING_BYTES = len(_PNG_SIGNATURE) + len(_PNG_END)


@dataclasses.dataclass(frozen=True)
class ImageFileHeader:
    """What a single-image file says about itself."""

    method: str
    layout: str
    channels: int
    height: int
    width: int
    pixel_crc: int
    payload_start: int
    payload_end: int

    @property
    def shape(self) -> tuple[int, int, int]:
        return self.channels, self.height, self.width


def _varint(value: int) -> bytes:
    out = bytearray()
    while True:
        byte, value = value & 0x7F, value >> 7
        out.append(byte | (0x80 if value else 0))
        if not value:
            return bytes(out)


def _read_varint(data: bytes, offset: int, what: str) -> tuple[int, int]:
    value = 0
    for shift in range(0, 35, 7):
        if offset >= len(data):
            raise ValueError(f"corrupt .fkc file: the header ends inside {what} (truncated)")
        byte = data[offset]
        offset += 1
        value |= (byte & 0x7F) << shift
        if not byte & 0x80:
            return value, offset
    raise ValueError(f"corrupt .fkc file: {what} is longer than 5 bytes")


def _png_array(image: torch.Tensor) -> np.ndarray:
    return from_tensor(image, "HW" if image.shape[0] == 1 else "HWC")


def _encode_png(image: torch.Tensor) -> bytes:
    data = png_encode(_png_array(image), level=9)
    if not (data.startswith(_PNG_SIGNATURE) and data.endswith(_PNG_END)):
        raise ValueError("the PNG encoder wrote a file without the standard signature and end chunk")
    return data[len(_PNG_SIGNATURE) : -len(_PNG_END)]


def _decode_png(payload: bytes, shape: tuple[int, int, int]) -> torch.Tensor:
    try:
        array = np.asarray(png_decode(_PNG_SIGNATURE + payload + _PNG_END))
    except Exception as error:  # whatever the PNG library raises for a damaged payload
        raise ValueError(f"corrupt .fkc file: its PNG payload does not decode ({error})") from None
    channels, height, width = shape
    expected = (height, width) if channels == 1 else (height, width, channels)
    if array.shape != expected or array.dtype != np.uint8:
        raise ValueError(f"corrupt .fkc file: its PNG payload holds {array.dtype} {array.shape}, not {expected}")
    array = array[None] if channels == 1 else array.transpose(2, 0, 1)
    return torch.from_numpy(np.ascontiguousarray(array))


def _payload(method: str, image: torch.Tensor, flow_codec, progress: bool) -> bytes | None:
    """The method's payload for ``image`` [C, H, W], or None where the method cannot code it."""
    channels = image.shape[0]
    if method == "stored":
        return image.contiguous().numpy().tobytes()
    if method == "context":
        return context_encode(image).numpy().tobytes() if channels <= CONTEXT_MAX_CHANNELS else None
    if method == "png":
        return _encode_png(image) if channels <= 4 else None
    if method == "flow":
        if flow_codec is None or flow_codec.patch_shape[0] != channels:
            return None
        return flow_codec.encode(image.unsqueeze(0), progress=progress)
    raise ValueError(f"unknown coding method {method!r}; use one of {', '.join(METHODS)}")


@dataclasses.dataclass
class EncodedImage:
    """The file, the method chosen, and every method's file size and seconds (None: could not code it)."""

    data: bytes
    method: str
    sizes: dict[str, int | None]
    seconds: dict[str, float]
    overhead: int  # bytes of the file beyond the payload: the header and the checksum


def encode_image_file(
    image: torch.Tensor,
    *,
    layout: str = "HW",
    methods: Sequence[str] = DEFAULT_METHODS,
    flow_codec=None,
    progress: bool = False,
) -> EncodedImage:
    """Code a uint8 image ``[C, H, W]`` (or ``[1, C, H, W]``) with each of ``methods`` and keep the smallest
    file (ties: the earlier method). ``flow_codec``: a :class:`~flowkernels.codec.LosslessImageCodec` for
    the ``"flow"`` method (``progress``: its progress bar). ``layout`` is recorded for writing the image
    back (``"HW"``, ``"HWC"``, ``"CHW"``).

    Example (a flat square on a flat background: the context coder wins, 33 bytes for 1024 pixels):
        >>> import torch
        >>> from flowkernels.codec import decode_image_file, encode_image_file
        >>> image = torch.zeros(1, 32, 32, dtype=torch.uint8)
        >>> image[:, 8:24, 8:24] = 200
        >>> encoded = encode_image_file(image)
        >>> encoded.method, len(encoded.data)
        ('context', 33)
        >>> decoded, header = decode_image_file(encoded.data)
        >>> torch.equal(decoded, image), header.method, (header.channels, header.height, header.width)
        (True, 'context', (1, 32, 32))
    """
    if image.dim() == 4 and image.shape[0] == 1:
        image = image[0]
    if image.dim() != 3 or image.dtype != torch.uint8 or image.device.type != "cpu":
        raise ValueError(f"expected a uint8 CPU image [C, H, W], got {image.dtype} {tuple(image.shape)}")
    channels, height, width = image.shape
    if not 1 <= channels <= MAX_CHANNELS or not (1 <= height <= MAX_SIDE and 1 <= width <= MAX_SIDE):
        raise ValueError(
            f"an image file holds 1 to {MAX_CHANNELS} channels of a non-empty image, got {tuple(image.shape)}"
        )
    if layout not in LAYOUTS:
        raise ValueError(f"layout must be one of {LAYOUTS}, got {layout!r}")
    if not methods:
        raise ValueError("at least one coding method is needed")
    image = image.contiguous()
    head = MAGIC + b"%c%c" % (0, LAYOUTS.index(layout))
    head += _varint(channels) + _varint(height) + _varint(width) + struct.pack("<I", pixel_crc(image))
    sizes: dict[str, int | None] = {}
    seconds: dict[str, float] = {}
    best: tuple[int, str, bytes] | None = None
    for method in methods:
        start = time.perf_counter()
        payload = _payload(method, image, flow_codec, progress)
        seconds[method] = time.perf_counter() - start
        sizes[method] = None if payload is None else len(head) + len(payload) + 4
        if payload is not None and (best is None or len(payload) < best[0]):
            best = (len(payload), method, payload)
    if best is None:
        raise ValueError(f"none of the methods {', '.join(methods)} can code a {channels}-channel image")
    _, method, payload = best
    body = head[:4] + bytes([METHODS.index(method)]) + head[5:] + payload
    return EncodedImage(body + struct.pack("<I", zlib.crc32(body)), method, sizes, seconds, len(head) + 4)


def read_image_header(data: bytes | bytearray | memoryview) -> ImageFileHeader:
    """Validate a single-image file's header and checksum; ValueError (one line) when anything is wrong."""
    data = bytes(data)
    if not data.startswith(MAGIC):
        raise ValueError("not a flowkernels single-image file (bad magic)")
    if len(data) < len(MAGIC) + 2 + 3 + 8:
        raise ValueError("corrupt .fkc file: shorter than its header (truncated)")
    if zlib.crc32(data[:-4]) != struct.unpack("<I", data[-4:])[0]:
        raise ValueError("corrupt .fkc file: checksum mismatch (damaged or truncated)")
    method_code, layout_code = data[4], data[5]
    if method_code >= len(METHODS):
        raise ValueError(f"corrupt .fkc file: unknown method {method_code}")
    if layout_code >= len(LAYOUTS):
        raise ValueError(f"corrupt .fkc file: unknown layout {layout_code}")
    offset = 6
    dims = []
    for what in ("channels", "height", "width"):
        value, offset = _read_varint(data, offset, what)
        dims.append(value)
    channels, height, width = dims
    if not 1 <= channels <= MAX_CHANNELS or not (1 <= height <= MAX_SIDE and 1 <= width <= MAX_SIDE):
        raise ValueError(f"corrupt .fkc file: impossible image shape {tuple(dims)}")
    check_pixels(channels * height * width, "the .fkc file")
    if offset + 8 > len(data):
        raise ValueError("corrupt .fkc file: shorter than its header (truncated)")
    (crc,) = struct.unpack("<I", data[offset : offset + 4])
    return ImageFileHeader(METHODS[method_code], LAYOUTS[layout_code], channels, height, width, crc, offset + 4,
                           len(data) - 4)


def decode_image_file(
    data: bytes | bytearray | memoryview, *, flow_codec=None, progress: bool = False
) -> tuple[torch.Tensor, ImageFileHeader]:
    """The image ``[C, H, W]`` (uint8) of a single-image file, and its header. ``flow_codec``: the codec of a
    ``"flow"`` file's model (see :meth:`flowkernels.codec.CodecCache.for_file`)."""
    data = bytes(data)
    header = read_image_header(data)
    payload = data[header.payload_start : header.payload_end]
    shape = header.shape
    if header.method == "stored":
        if len(payload) != header.channels * header.height * header.width:
            raise ValueError(f"corrupt .fkc file: {len(payload)} stored bytes for an image of shape {shape}")
        image = torch.frombuffer(bytearray(payload), dtype=torch.uint8).reshape(shape)
    elif header.method == "context":
        image = context_decode(torch.frombuffer(bytearray(payload), dtype=torch.uint8), shape)
    elif header.method == "png":
        image = _decode_png(payload, shape)
    else:
        if flow_codec is None:
            raise ValueError("this .fkc file was coded with a flow model: give its codec")
        images = flow_codec.decode(payload, progress=progress)
        if tuple(images.shape) != (1, *shape):
            raise ValueError(f"corrupt .fkc file: its flow payload holds {tuple(images.shape)}, not {shape}")
        image = images[0]
    if pixel_crc(image) != header.pixel_crc:
        raise ValueError("corrupt .fkc file: the decoded pixels fail their checksum")
    return image, header
