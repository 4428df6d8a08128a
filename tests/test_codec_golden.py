"""Golden files: codec files committed once (scripts/make_golden_files.py) that every machine must
decode to the committed pixels, and re-encode to the same bytes, with the shipped integer models:
across CPUs, instruction sets, thread counts, torch versions and devices. Also what happens to
files this flowkernels cannot read: the previous format with a float model, a future format, a
model that is not shipped."""

from __future__ import annotations

import struct
import subprocess
import sys
import zlib
from pathlib import Path

import numpy as np
import pytest
import torch

from flowkernels import pretrained
from flowkernels.codec import LosslessImageCodec, read_header, resolve_model
from flowkernels.codec.container import canonical_json

from .conftest import requires_cuda

GOLDEN = Path(__file__).resolve().parent / "golden"
#: golden file -> the shipped model that made it
FILES = {"digits": "digits", "photos_gray": "photos-gray", "photos_rgb": "photos-rgb"}

pytestmark = pytest.mark.skipif(
    not set(FILES.values()) <= set(pretrained.available()), reason="the shipped models are not in this installation"
)


def golden(name: str) -> tuple[bytes, torch.Tensor]:
    return (GOLDEN / f"{name}.fkc").read_bytes(), torch.from_numpy(np.load(GOLDEN / f"{name}.npy"))


def patched(data: bytes, *, version: int | None = None, fingerprint: bytes | None = None) -> bytes:
    """``data`` with another version or model fingerprint, its header CRC made right again."""
    header = read_header(data)
    end = (
        64
        + len(canonical_json(header.config))
        + len(canonical_json(header.metadata))
        + 16 * len(header.records)
    )  # fmt: skip
    out = bytearray(data)
    if version is not None:
        struct.pack_into("<H", out, 4, version)
    if fingerprint is not None:
        out[8:24] = fingerprint
    struct.pack_into("<I", out, end, zlib.crc32(bytes(out[:end])))
    return bytes(out)


@pytest.mark.parametrize("name", FILES)
def test_golden_files_decode_and_reencode_to_the_same_bytes(name):
    data, pixels = golden(name)
    header = read_header(data)
    assert header.version == 3 and header.portable
    codec = LosslessImageCodec(resolve_model(FILES[name]))
    assert torch.equal(codec.decode(data), pixels)
    assert codec.encode(pixels, stream=header.stream) == data


@pytest.mark.parametrize("name", ["photos_gray", "photos_rgb"])  # the command line writes one image per file
def test_the_command_line_decodes_golden_files_without_naming_the_model(name, tmp_path):
    data, pixels = golden(name)
    source = tmp_path / f"{name}.fkc"
    source.write_bytes(data)
    target = tmp_path / f"{name}.npy"
    done = subprocess.run(
        [sys.executable, "-m", "flowkernels.cli", "decompress", str(source), "-o", str(target)],
        capture_output=True,
        text=True,
    )
    assert done.returncode == 0, done.stderr
    decoded = np.load(target)  # [H, W] or [H, W, C]: files without a recorded layout are written that way
    decoded = decoded[None] if decoded.ndim == 2 else decoded.transpose(2, 0, 1)
    assert np.array_equal(decoded[None], pixels.numpy())


def test_a_version_2_float_file_decodes_exactly_or_says_why_not():
    data = (GOLDEN / "digits_float_v2.fkc").read_bytes()
    _, pixels = golden("digits")
    header = read_header(data)
    assert header.version == 2 and not header.portable
    codec = LosslessImageCodec(resolve_model("digits-float"))
    try:
        decoded = codec.decode(data)
    except ValueError as error:  # a machine whose float results differ from the one that wrote it
        assert "floating-point model" in str(error)
    else:
        assert torch.equal(decoded, pixels)


def test_a_file_from_a_future_format_or_an_unknown_model_fails_with_a_clear_message(tmp_path):
    data, _ = golden("digits")
    codec = LosslessImageCodec(resolve_model("digits"))
    with pytest.raises(ValueError, match="newer flowkernels .*upgrade flowkernels"):
        codec.decode(patched(data, version=4))
    future = tmp_path / "future.fkc"
    future.write_bytes(patched(data, fingerprint=bytes(range(16))))
    done = subprocess.run(
        [sys.executable, "-m", "flowkernels.cli", "decompress", str(future), "-o", str(tmp_path / "out.npy")],
        capture_output=True,
        text=True,
    )
    assert done.returncode != 0 and "Traceback" not in done.stderr
    assert "not compressed with a shipped model" in done.stderr and len(done.stderr.strip().splitlines()) == 1
    assert not (tmp_path / "out.npy").exists()


@requires_cuda
@pytest.mark.parametrize("name", FILES)
def test_cuda_encodes_the_same_bytes_and_decodes_golden_files(name):
    data, pixels = golden(name)
    model = resolve_model(FILES[name]).cuda()
    codec = LosslessImageCodec(model)
    assert codec.encode(pixels, stream=read_header(data).stream) == data
    assert torch.equal(codec.decode(data), pixels)
