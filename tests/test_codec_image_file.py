"""The single-image .fkc file: every method round-trips, the smallest is kept, it is never much larger than
PNG on images of any kind (the safety net), and damaged or hostile files are refused with one line."""

from __future__ import annotations

import struct
import zlib
from pathlib import Path

import numpy as np
import pytest
import torch

from flowkernels.codec import LosslessImageCodec, decode_image_file, encode_image_file, read_image_header
from flowkernels.codec.image_file import METHODS, PNG_FRAMING_BYTES
from flowkernels.codec.imageio import from_tensor, png_encode, to_tensor

from .codec_fakes import TwoStepFlow


def _chw(array: np.ndarray) -> torch.Tensor:
    return to_tensor(np.ascontiguousarray(array, dtype=np.uint8))[0][0]


def _png_bytes(image: torch.Tensor) -> int:
    return len(png_encode(from_tensor(image, "HW" if image.shape[0] == 1 else "HWC"), level=9))


def _text_image() -> np.ndarray:
    from PIL import Image, ImageDraw

    canvas = Image.new("L", (320, 120), 255)
    draw = ImageDraw.Draw(canvas)
    for line in range(8):
        draw.text((6, 4 + 14 * line), f"line {line}: the quick brown fox jumps over 13 lazy dogs", fill=0)
    return np.asarray(canvas)


def _screenshot() -> np.ndarray:
    from PIL import Image, ImageDraw

    canvas = Image.new("RGB", (300, 200), (236, 236, 236))
    draw = ImageDraw.Draw(canvas)
    draw.rectangle((0, 0, 299, 22), fill=(48, 63, 159))
    draw.text((8, 5), "flowkernels - settings", fill=(255, 255, 255))
    for row in range(6):
        y = 34 + 26 * row
        draw.rectangle((10, y, 289, y + 20), outline=(180, 180, 180), fill=(255, 255, 255))
        draw.text((16, y + 4), f"option {row}   value {row * 17}", fill=(20, 20, 20))
    draw.ellipse((250, 170, 290, 196), fill=(0, 150, 136))
    return np.asarray(canvas)


def _images_of_every_kind() -> dict[str, np.ndarray]:
    data = pytest.importorskip("skimage.data")
    from sklearn.datasets import load_digits

    rng = np.random.default_rng(0)
    digits = (load_digits().images[:4] * 255 / 16).round().astype(np.uint8)
    ramp = np.add.outer(np.arange(96), np.arange(128)).astype(np.uint8)
    return {
        "photograph (gray)": data.camera(),
        "photograph (RGB)": data.astronaut()[::2, ::2],
        "pixel-doubled (moon)": data.moon(),
        "scanned text": data.text(),
        "rendered text": _text_image(),
        "screenshot": _screenshot(),
        "line art (horse)": (data.horse() * 255).astype(np.uint8),
        "digit 8x8": digits[0],
        "digits 8x32": np.concatenate(list(digits), axis=1),
        "flat": np.full((64, 80), 77, np.uint8),
        "flat RGB": np.full((40, 50, 3), (10, 200, 30), np.uint8),
        "gradient": ramp,
        "noise": rng.integers(0, 256, (64, 64), dtype=np.uint8),
        "noise RGB": rng.integers(0, 256, (48, 40, 3), dtype=np.uint8),
        "binary noise": (rng.random((64, 64)) < 0.5).astype(np.uint8) * 255,
        "one pixel": np.array([[200]], np.uint8),
    }


@pytest.mark.parametrize("kind", list(_images_of_every_kind()))
def test_never_more_than_three_percent_above_png_on_images_of_any_kind(kind):
    image = _chw(_images_of_every_kind()[kind])
    encoded = encode_image_file(image)
    assert len(encoded.data) == min(size for size in encoded.sizes.values() if size is not None)
    assert len(encoded.data) <= 1.03 * _png_bytes(image), (kind, encoded.method, encoded.sizes)
    back, header = decode_image_file(encoded.data)
    assert torch.equal(back, image) and header.method == encoded.method


def test_photographs_are_coded_by_the_context_coder_and_beat_png():
    data = pytest.importorskip("skimage.data")
    for photo in (data.camera(), data.coffee()):
        image = _chw(photo)
        encoded = encode_image_file(image)
        assert encoded.method == "context"
        assert len(encoded.data) < 0.9 * _png_bytes(image)


@pytest.mark.parametrize("method", ["stored", "context", "png"])
@pytest.mark.parametrize("shape", [(1, 1, 1), (1, 7, 300), (2, 9, 5), (3, 31, 17), (4, 8, 8), (6, 5, 4)])
def test_every_method_round_trips(method, shape):
    image = torch.randint(0, 256, shape, dtype=torch.uint8, generator=torch.Generator().manual_seed(sum(shape)))
    image[:, : shape[1] // 2] //= 16  # some structure, some noise
    if method == "png" and shape[0] > 4:
        with pytest.raises(ValueError, match="none of the methods png"):
            encode_image_file(image, methods=(method,))
        return
    encoded = encode_image_file(image, methods=(method,), layout="CHW")
    back, header = decode_image_file(encoded.data)
    assert torch.equal(back, image)
    assert (header.method, header.layout, header.shape) == (method, "CHW", shape)


def test_png_payload_is_the_png_file_less_its_framing():
    image = _chw(np.add.outer(np.arange(20), np.arange(30)).astype(np.uint8))
    encoded = encode_image_file(image, methods=("png",))
    assert encoded.sizes["png"] - encoded.overhead + PNG_FRAMING_BYTES == _png_bytes(image)
    assert encoded.overhead == 4 + 2 + 3 + 4 + 4  # magic, method and layout, C H W, pixel CRC, file CRC


def test_the_flow_competes_when_given_and_round_trips():
    model = TwoStepFlow(1, (4, 4), seed=3)
    codec = LosslessImageCodec(model)
    image = _chw(np.add.outer(np.arange(12), 3 * np.arange(10)).astype(np.uint8))
    encoded = encode_image_file(image, methods=METHODS, flow_codec=codec)
    assert set(encoded.sizes) == set(METHODS) and all(size is not None for size in encoded.sizes.values())
    flow_only = encode_image_file(image, methods=("flow",), flow_codec=codec)
    assert read_image_header(flow_only.data).method == "flow"
    back, _ = decode_image_file(flow_only.data, flow_codec=codec)
    assert torch.equal(back, image)
    with pytest.raises(ValueError, match="give its codec"):
        decode_image_file(flow_only.data)
    rgb = torch.zeros(3, 8, 8, dtype=torch.uint8)
    assert encode_image_file(rgb, methods=("context", "flow"), flow_codec=codec).sizes["flow"] is None


def test_files_are_the_same_bytes_every_time():
    data = pytest.importorskip("skimage.data")
    image = _chw(data.chelsea()[:100, :120])
    assert encode_image_file(image).data == encode_image_file(image.clone()).data


@pytest.mark.parametrize(
    ("image", "kwargs", "message"),
    [
        (torch.zeros(2, 2), {}, "uint8"),
        (torch.zeros(1, 0, 3, dtype=torch.uint8), {}, "non-empty"),
        (torch.zeros(129, 1, 1, dtype=torch.uint8), {}, "1 to 128 channels"),
        (torch.zeros(1, 2, 2, dtype=torch.uint8), {"layout": "WH"}, "layout"),
        (torch.zeros(1, 2, 2, dtype=torch.uint8), {"methods": ()}, "at least one"),
        (torch.zeros(1, 2, 2, dtype=torch.uint8), {"methods": ("gzip",)}, "unknown coding method"),
    ],
)
def test_bad_arguments_are_refused(image, kwargs, message):
    with pytest.raises(ValueError, match=message):
        encode_image_file(image, **kwargs)


def _file(method: str = "context") -> bytes:
    data = pytest.importorskip("skimage.data")
    return encode_image_file(_chw(data.astronaut()[:40, :48]), methods=(method,)).data


def _resealed(body: bytes) -> bytes:
    return body + struct.pack("<I", zlib.crc32(body))


@pytest.mark.parametrize("method", ["stored", "context", "png"])
def test_every_truncation_and_every_damaged_byte_is_refused(method):
    data = _file(method)
    for length in range(0, len(data), max(1, len(data) // 97)):
        with pytest.raises(ValueError):
            decode_image_file(data[:length])
    rng = np.random.default_rng(1)
    for position in rng.choice(len(data), size=60, replace=False):
        damaged = bytearray(data)
        damaged[position] ^= 1 << int(rng.integers(8))
        with pytest.raises(ValueError):
            decode_image_file(bytes(damaged))


def test_hostile_headers_with_valid_checksums_are_refused():
    data = _file()
    body = data[:-4]
    header = read_image_header(data)
    payload = body[header.payload_start :]
    crc = body[header.payload_start - 4 : header.payload_start]

    def forged(method: int = 1, layout: int = 1, dims: bytes = b"\x03\x28\x30", rest: bytes = crc + payload) -> bytes:
        return _resealed(b"FKIM" + bytes([method, layout]) + dims + rest)

    assert torch.equal(decode_image_file(forged())[0], decode_image_file(data)[0])  # the forgery works as is
    cases = [
        (forged(method=9), "unknown method"),
        (forged(layout=7), "unknown layout"),
        (forged(dims=b"\x00\x28\x30"), "impossible image shape"),
        (forged(dims=b"\x03\xff\xff\xff\xff\x0f\x30"), "impossible image shape"),
        (forged(dims=b"\x03\xff\xff\xff\xff\xff\xff"), "longer than 5 bytes"),
        (forged(dims=b"\x03\x80\x80\x80\x04\x80\x80\x80\x04"), "subpixels"),  # 2^29 x 2^29: over the limit
        (forged(dims=b"\x03\xa8\x01\x30"), "cannot hold|truncated|corrupt"),  # a taller image than the stream
        (forged(method=0), "stored bytes"),
        (forged(method=2), "PNG payload"),
        (b"FKIC" + data[4:], "bad magic"),
    ]
    for bad, message in cases:
        with pytest.raises(ValueError, match=message):
            decode_image_file(bad)


def test_a_png_payload_of_another_shape_is_refused():
    small = encode_image_file(torch.zeros(1, 4, 4, dtype=torch.uint8), methods=("png",)).data
    header = read_image_header(small)
    body = small[:4] + small[4:6] + b"\x01\x05\x04" + small[header.payload_start - 4 : -4]
    with pytest.raises(ValueError, match="PNG payload holds"):
        decode_image_file(_resealed(body))


@pytest.mark.parametrize("name", ["context_gray", "context_rgb"])
def test_golden_context_files_decode_and_reencode_to_the_same_bytes(name):
    """Committed once (scripts/make_golden_files.py): every machine, instruction set and library version
    must read them and write them again byte for byte."""
    golden = Path(__file__).resolve().parent / "golden"
    data, pixels = (golden / f"{name}.fkc").read_bytes(), torch.from_numpy(np.load(golden / f"{name}.npy"))
    image, header = decode_image_file(data)
    assert torch.equal(image, pixels) and (header.method, header.layout) == ("context", "CHW")
    assert encode_image_file(pixels, methods=("context",), layout="CHW").data == data
