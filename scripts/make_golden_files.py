"""Writes the golden codec files of tests/golden/: what every machine must decode, and re-encode
to the same bytes, forever (tests/test_codec_golden.py, tests/test_codec_portability.py).

Each shipped integer model codes a few held-out images (a few KB per file), and the pixels are
saved beside the file (``.npy``, uint8 ``[N, C, H, W]``):

* ``digits.fkc``: the first 30 test digits (scikit-learn), one stream;
* ``photos_gray.fkc``: a 50x70 crop of scikit-image's held-out ``camera`` (gray), 2x3 patches of 32x32 with
  edge padding;
* ``photos_rgb.fkc``: a 40x50 crop of scikit-image's held-out ``astronaut`` (RGB).

Two single-image files of the context coder (``flowkernels compress``'s classical method, no model):
``context_gray.fkc`` and ``context_rgb.fkc``, the same crops (``.npy`` beside them, ``[C, H, W]``).

And one file of the previous format: ``digits_float_v2.fkc``, the same digits coded with the float
model ``digits-float`` as flowkernels wrote version-2 files (it decodes only where the float results
match, so the test accepts a clear error elsewhere).

Golden files change only when a shipped model or the format changes on purpose: rerun this script
then, and say so in the commit.

    python scripts/make_golden_files.py [--out tests/golden]
"""

from __future__ import annotations

import argparse
import struct
import sys
import zlib
from pathlib import Path

import numpy as np
import torch

from flowkernels.codec import LosslessImageCodec, encode_image_file, resolve_model
from flowkernels.codec.container import read_header
from flowkernels.data import load_digits, load_photos, photo_names

#: name -> (shipped model, images, stream)
GOLDEN = ("digits", "photos_gray", "photos_rgb")


def golden_images() -> dict[str, tuple[str, torch.Tensor, bool]]:
    digits = load_digits("test")[:30].to(torch.uint8)
    gray = dict(zip(photo_names("test", color=False), load_photos("test", color=False), strict=True))["camera"]
    rgb = dict(zip(photo_names("test", color=True), load_photos("test", color=True), strict=True))["astronaut"]
    return {
        "digits": ("digits", digits, True),
        "photos_gray": ("photos-gray", gray[None, :, 100:150, 200:270].contiguous(), False),
        "photos_rgb": ("photos-rgb", rgb[None, :, 50:90, 180:230].contiguous(), False),
    }


def as_version(data: bytes, version: int) -> bytes:
    """The file with another format version number and its header CRC made right again."""
    header = read_header(data)
    end = 64 + len(_json(header.config)) + len(_json(header.metadata)) + 16 * len(header.records)
    patched = bytearray(data)
    struct.pack_into("<H", patched, 4, version)
    struct.pack_into("<I", patched, end, zlib.crc32(bytes(patched[:end])))
    return bytes(patched)


def _json(value) -> bytes:
    from flowkernels.codec.container import canonical_json

    return canonical_json(value)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--out", type=Path, default=Path(__file__).resolve().parents[1] / "tests" / "golden")
    args = parser.parse_args(argv)
    args.out.mkdir(parents=True, exist_ok=True)
    for name, (model, images, stream) in golden_images().items():
        codec = LosslessImageCodec(resolve_model(model))
        data = codec.encode(images, stream=stream, verify=True)
        (args.out / f"{name}.fkc").write_bytes(data)
        np.save(args.out / f"{name}.npy", images.numpy())
        print(f"{name}.fkc: {len(data)} bytes, {list(images.shape)} with {model}")
    for name, (_, images, _) in golden_images().items():
        if name.startswith("photos_"):
            image = images[0]
            data = encode_image_file(image, methods=("context",), layout="CHW").data
            target = "context_" + name.removeprefix("photos_")
            (args.out / f"{target}.fkc").write_bytes(data)
            np.save(args.out / f"{target}.npy", image.numpy())
            print(f"{target}.fkc: {len(data)} bytes, {list(image.shape)} with the context coder")
    digits = golden_images()["digits"][1]
    legacy = LosslessImageCodec(resolve_model("digits-float")).encode(digits, stream=True, verify=True)
    (args.out / "digits_float_v2.fkc").write_bytes(as_version(legacy, 2))
    print(f"digits_float_v2.fkc: {len(legacy)} bytes with digits-float (format version 2)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
