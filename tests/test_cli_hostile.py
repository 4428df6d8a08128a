"""The command line against hostile inputs and careless outputs: one line and a non-zero exit for
every error (the traceback only with --debug), outputs never overwrite the input or an existing file
without --force, and a failed write leaves the previous file as it was."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from flowkernels.codec.imageio import replaced_atomically, write_image


def run(*args: str) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "flowkernels.cli", *args], capture_output=True, text=True)


def one_line_error(done: subprocess.CompletedProcess) -> str:
    assert done.returncode == 1, done.stdout + done.stderr
    assert "Traceback" not in done.stderr
    lines = [line for line in done.stderr.splitlines() if line.strip()]
    assert len(lines) == 1, done.stderr
    return lines[0]


@pytest.fixture
def image(tmp_path) -> Path:
    path = tmp_path / "image.npy"
    np.save(path, np.random.default_rng(0).integers(0, 256, (20, 30), dtype=np.uint8))
    return path


def test_unreadable_inputs_give_one_line(tmp_path):
    cut = tmp_path / "cut.png"
    cut.write_bytes(b"\x89PNG\r\n\x1a\n" + bytes(52))  # a PNG cut after 60 bytes
    npz = tmp_path / "archive.npy"
    np.savez(npz.with_suffix(".npz"), a=np.zeros(3))
    npz.write_bytes(npz.with_suffix(".npz").read_bytes())  # an .npz renamed .npy
    for bad in (cut, npz):
        line = one_line_error(run("compress", str(bad), "-o", str(tmp_path / "out.fkc")))
        assert line.startswith("flowkernels compress: error:")
        assert not (tmp_path / "out.fkc").exists()


def test_debug_shows_the_traceback(tmp_path):
    cut = tmp_path / "cut.png"
    cut.write_bytes(b"\x89PNG\r\n\x1a\n" + bytes(52))
    done = run("--debug", "compress", str(cut), "-o", str(tmp_path / "out.fkc"))
    assert done.returncode != 0 and "Traceback" in done.stderr


def test_the_input_is_never_overwritten(image, tmp_path):
    before = image.read_bytes()
    line = one_line_error(run("compress", str(image), "-o", str(image), "--force"))
    assert "is the input" in line and image.read_bytes() == before
    data = tmp_path / "image.fkc"
    assert run("compress", str(image), "-o", str(data)).returncode == 0
    coded = data.read_bytes()
    line = one_line_error(run("decompress", str(data), "-o", str(data), "--force"))
    assert "is the input" in line and data.read_bytes() == coded


def test_an_existing_output_needs_force(image, tmp_path):
    out = tmp_path / "out.fkc"
    out.write_bytes(b"keep me")
    line = one_line_error(run("compress", str(image), "-o", str(out)))
    assert "exists: pass --force" in line and out.read_bytes() == b"keep me"
    assert run("compress", str(image), "-o", str(out), "--force").returncode == 0
    assert out.read_bytes()[:4] == b"FKIM"
    back = tmp_path / "back.npy"
    assert run("decompress", str(out), "-o", str(back)).returncode == 0
    assert np.array_equal(np.load(back), np.load(image))
    assert "exists" in one_line_error(run("decompress", str(out), "-o", str(back)))


def test_a_failed_write_leaves_the_previous_file_and_no_temporary(tmp_path):
    target = tmp_path / "out.fkc"
    target.write_bytes(b"previous")
    with pytest.raises(OSError), replaced_atomically(target) as temporary:
        temporary.write_bytes(b"half of the new file")
        raise OSError("disk full")
    assert target.read_bytes() == b"previous"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["out.fkc"]
    image = np.zeros((1, 4, 4), dtype=np.uint8)
    import torch

    write_image(tmp_path / "new.png", torch.from_numpy(image), "HW")
    assert (tmp_path / "new.png").stat().st_mode & 0o777 == 0o666 & ~_umask()
    assert sorted(p.name for p in tmp_path.iterdir()) == ["new.png", "out.fkc"]


def _umask() -> int:
    import os

    mask = os.umask(0)
    os.umask(mask)
    return mask


def _png_declaring(width: int, height: int) -> bytes:
    import struct
    import zlib

    ihdr = struct.pack(">IIBBBBB", width, height, 8, 0, 0, 0, 0)
    chunk = struct.pack(">I", 13) + b"IHDR" + ihdr + struct.pack(">I", zlib.crc32(b"IHDR" + ihdr))
    return b"\x89PNG\r\n\x1a\n" + chunk + bytes(16)


@pytest.mark.parametrize("width,height", [(100_000, 100_000), (300_000, 300_000), (0, 5)])
def test_image_headers_are_checked_before_decoding(tmp_path, width, height):
    from flowkernels.codec.imageio import read_image

    path = tmp_path / "huge.png"
    path.write_bytes(_png_declaring(width, height))
    with pytest.raises(ValueError, match="declares"):
        read_image(path)


@pytest.mark.parametrize("shape", [(10**6, 10**6), (2**20, 2**10)])
def test_npy_headers_are_checked_before_loading(tmp_path, shape):
    from flowkernels.codec.imageio import read_image

    path = tmp_path / "huge.npy"
    header = np.lib.format.header_data_from_array_1_0(np.zeros((1, 1), dtype=np.uint8))
    header["shape"] = shape
    with open(path, "wb") as file:
        np.lib.format.write_array_header_1_0(file, header)
    with pytest.raises(ValueError, match="declares|truncated"):
        read_image(path)


def test_npy_that_is_not_uint8_or_truncated_is_refused(tmp_path):
    from flowkernels.codec.imageio import read_image

    np.save(tmp_path / "f.npy", np.zeros((4, 4), dtype=np.float32))
    with pytest.raises(ValueError, match="must be uint8"):
        read_image(tmp_path / "f.npy")
    np.save(tmp_path / "t.npy", np.zeros((40, 40), dtype=np.uint8))
    (tmp_path / "t.npy").write_bytes((tmp_path / "t.npy").read_bytes()[:-100])
    with pytest.raises(ValueError, match="truncated"):
        read_image(tmp_path / "t.npy")
    np.save(tmp_path / "ok.npy", np.arange(12, dtype=np.uint8).reshape(3, 4))
    assert read_image(tmp_path / "ok.npy")[0].flatten().tolist() == list(range(12))


def test_a_codec_file_claiming_too_many_pixels_is_refused_before_decoding(monkeypatch):
    import torch

    from flowkernels import limits
    from flowkernels.codec import LosslessImageCodec

    from .codec_fakes import IdentityFlow

    codec = LosslessImageCodec(IdentityFlow())
    data = codec.encode(torch.zeros(1, 1, 40, 40, dtype=torch.uint8))
    monkeypatch.setattr(limits, "MAX_PIXELS", 1000)
    with pytest.raises(ValueError, match="more than the limit of 1000"):
        codec.decode(data)


@pytest.mark.parametrize(
    "change, message",
    [
        ({"in_channels": -1}, r"in_channels must be in \[1, 64\]"),
        ({"hidden": 10**6}, r"hidden must be in \[1, 1024\]"),
        ({"coding_batch": 2**62}, r"coding_batch must be in"),
        ({"levels": 60}, r"num_scales \('levels' in a stored config\) must be in \[1, 8\]"),
        ({"depth": 10**6}, r"steps_per_scale \('depth' in a stored config\) must be in \[1, 64\]"),
        ({"depth": 64, "hidden": 1024, "blocks": 16}, "parameters, more than"),
        ({"hidden": "64"}, "hidden must be a whole number"),
        ({"levels": True}, r"num_scales \('levels' in a stored config\) must be a whole number"),
    ],
)
def test_hostile_checkpoint_configs_are_refused_before_building(tmp_path, change, message):
    import time

    import torch

    from flowkernels.models.idf import IDF

    model = torch.load(_shipped("digits"), weights_only=True)
    model["config"].update(change)
    path = tmp_path / "hostile.pt"
    torch.save(model, path)
    start = time.perf_counter()
    with pytest.raises(ValueError, match=message):
        IDF.from_checkpoint(path)
    assert time.perf_counter() - start < 5  # refused, not built
    line = one_line_error(run("compress", str(_png(tmp_path)), "-o", str(tmp_path / "o.fkc"), "--model", str(path)))
    assert "config" in line


def test_half_precision_weights_are_refused(tmp_path):
    import torch

    from flowkernels.models.idf import IDF

    checkpoint = torch.load(_shipped("digits-float"), weights_only=True)
    state = checkpoint["state_dict"]
    checkpoint["state_dict"] = {k: v.half() if v.is_floating_point() else v for k, v in state.items()}
    path = tmp_path / "half.pt"
    torch.save(checkpoint, path)
    with pytest.raises(ValueError, match="float32 or float64, got torch.float16"):
        IDF.from_checkpoint(path)
    line = one_line_error(run("compress", str(_png(tmp_path)), "-o", str(tmp_path / "o.fkc"), "--model", str(path)))
    assert "float32 or float64" in line


def _shipped(name: str) -> Path:
    from flowkernels import pretrained

    if name not in pretrained.available():
        pytest.skip(f"the shipped model {name} is not in this installation")
    return pretrained.checkpoint_path(name)


def _png(tmp_path) -> Path:
    path = tmp_path / "digit.npy"
    np.save(path, np.zeros((8, 8), dtype=np.uint8))
    return path
