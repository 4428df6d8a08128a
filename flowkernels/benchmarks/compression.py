"""Lossless compression with IDF models against classical codecs: the evaluation behind
``benchmarks/experiments/idf_results.py`` and ``flowkernels demo``.

Each row codes held-out images with :class:`flowkernels.codec.LosslessImageCodec`, decodes them
and checks the pixels, and reports the coded size, the model's ideal code length, throughput and
the share of time spent in rANS, next to PNG, WebP lossless, JPEG-XL lossless, JPEG-LS and lzma
(:mod:`flowkernels.benchmarks.classical`).
"""

from __future__ import annotations

import math
import sys
import time
from collections.abc import Callable, Sequence
from contextlib import contextmanager
from pathlib import Path

import numpy as np
import torch

from .. import pretrained
from ..codec import LosslessImageCodec
from ..codec.registry import load_checkpoint
from ..data import load_digits, load_photos, photo_names
from ..ops.rans import RansCoder
from . import classical

__all__ = ["rans_timer", "code", "code_each", "mosaic", "compression_rows", "format_compression_table"]


@contextmanager
def rans_timer():
    """Accumulates the wall time spent inside RansCoder's logistic push and pop."""
    spent = [0.0]
    originals = {name: getattr(RansCoder, name) for name in ("push_logistic", "pop_logistic")}

    def timed(original):
        def wrapper(*args, **kwargs):
            start = time.perf_counter()
            try:
                return original(*args, **kwargs)
            finally:
                spent[0] += time.perf_counter() - start

        return wrapper

    for name, original in originals.items():
        setattr(RansCoder, name, timed(original))
    try:
        yield spent
    finally:
        for name, original in originals.items():
            setattr(RansCoder, name, original)


def code(codec: LosslessImageCodec, images: torch.Tensor, *, stream: bool = False) -> dict:
    """Coded bits per dimension, the model's ideal, and timings of one encode and one decode."""
    with rans_timer() as rans_encode:
        start = time.perf_counter()
        data = codec.encode(images, stream=stream)
        encode_s = time.perf_counter() - start
    with rans_timer() as rans_decode:
        start = time.perf_counter()
        decoded = codec.decode(data)
        decode_s = time.perf_counter() - start
    if not torch.equal(decoded, images):
        raise RuntimeError("the codec did not return the input pixels")
    dims = images.numel()
    return {
        "coded": 8 * len(data) / dims,
        "ideal": codec.ideal_bits(images, stream=stream) / dims,
        "encode_px_s": dims / encode_s,
        "decode_px_s": dims / decode_s,
        "rans_share": (rans_encode[0] + rans_decode[0]) / (encode_s + decode_s),
    }


def mosaic(images: np.ndarray, columns: int = 20) -> np.ndarray:
    """[N, H, W] -> one image of ``columns`` tiles per row (zero tiles fill the last row)."""
    n, h, w = images.shape
    rows = math.ceil(n / columns)
    canvas = np.zeros((rows * h, columns * w), dtype=images.dtype)
    for i, image in enumerate(images):
        r, c = divmod(i, columns)
        canvas[r * h : (r + 1) * h, c * w : (c + 1) * w] = image
    return canvas


def classical_row(images: Sequence[np.ndarray]) -> dict:
    return {name: classical.bits_per_dim(images, name) for name in classical.CLASSICAL_CODECS}


def to_numpy_image(image: torch.Tensor) -> np.ndarray:
    """uint8 [C, H, W] -> [H, W] or [H, W, 3]."""
    array = image.numpy()
    return array[0] if array.shape[0] == 1 else np.ascontiguousarray(array.transpose(1, 2, 0))


def load_model(name: str, folder: Path | None):
    path = (folder / pretrained.SHIPPED[name]) if folder else pretrained.checkpoint_path(name)
    return load_checkpoint(path)


def code_each(codec: LosslessImageCodec, images: torch.Tensor) -> float:
    """Bits per dimension when every image is its own ``.fkc`` file (header, table and final rANS state
    each), as every classical file is; each file is decoded and checked."""
    total_bytes = 0
    for image in images:
        data = codec.encode(image[None])
        if not torch.equal(codec.decode(data), image[None]):
            raise RuntimeError("the codec did not return the input pixels")
        total_bytes += len(data)
    return 8 * total_bytes / images.numel()


def compression_rows(
    models: Path | None = None, *, photos: int | None = None, progress: Callable[[str], None] | None = None
) -> list[dict]:
    """Rows for the digits and the held-out photographs, each comparing like with like.

    Every row is a dict: ``label``, ``idf`` (:func:`code`), ``classical`` (bits per dimension per
    codec), ``lzma`` (or None) and ``compared`` (what the classical codecs were given). The digits get
    three rows: every image its own file on both sides; the 300 images as separate payloads of one
    ``.fkc`` (one shared header) against the per-image classical files; and the codec's one-stream mode
    against a mosaic of all digits (and lzma on their raw bytes).

    ``models``: a folder with ``idf_*.pt`` (default: the shipped models); ``photos``: how many
    held-out photographs per colour mode (default: all); ``progress``: called with a line per row done.
    """
    rows: list[dict] = []
    started = [time.perf_counter()]

    def add(row: dict) -> None:
        rows.append(row)
        if progress is not None:
            now = time.perf_counter()
            progress(f"{row['label']}: coded, decoded and checked ({now - started[0]:.1f} s)")
            started[0] = now

    digits = load_digits("test").to(torch.uint8)
    codec = LosslessImageCodec(load_model("digits", models))
    arrays = [image[0] for image in digits.numpy()]
    each = classical_row(arrays)
    payloads = code(codec, digits)
    standalone = dict(payloads, coded=code_each(codec, digits))
    add(
        {
            "label": "digits, every image its own file",
            "idf": standalone,
            "classical": each,
            "lzma": None,
            "compared": "one file per image on both sides",
        }
    )
    add(
        {
            "label": "digits, one .fkc of 300 payloads",
            "idf": payloads,
            "classical": each,
            "lzma": None,
            "compared": "the per-image classical files (one shared .fkc header against 300)",
        }
    )
    add(
        {
            "label": "digits, one stream",
            "idf": code(codec, digits, stream=True),
            "classical": classical_row([mosaic(np.stack(arrays))]),
            "lzma": classical.lzma_bits_per_dim(arrays),
            "compared": "one mosaic image of all 300 digits; lzma: their raw bytes",
        }
    )
    for color, model_name in ((False, "photos-gray"), (True, "photos-rgb")):
        try:
            codec = LosslessImageCodec(load_model(model_name, models))
        except (ValueError, OSError) as error:
            print(f"skipping {model_name}: {error}", file=sys.stderr)
            continue
        pairs = list(zip(photo_names("test", color=color), load_photos("test", color=color), strict=True))
        for name, image in pairs[:photos]:
            label = f"{name} ({'RGB' if color else 'gray'}, {image.shape[1]}x{image.shape[2]})"
            add(
                {
                    "label": label,
                    "idf": code(codec, image[None]),
                    "classical": classical_row([to_numpy_image(image)]),
                    "lzma": None,
                    "compared": "one file each",
                }
            )
    return rows


def format_compression_table(rows: Sequence[dict], *, compact: bool = False) -> str:
    """A markdown table of :func:`compression_rows` (bits per dimension; IDF coded in bold). ``compact``:
    the coded sizes only, short names, under 100 columns (the demo's terminal table)."""
    names = list(classical.CLASSICAL_CODECS)
    if compact:
        short = [name.replace(" lossless", "") for name in names]
        lines = ["| data | IDF | " + " | ".join(short) + " |", "|---|" + "---:|" * (1 + len(names))]
        for row in rows:
            cells = [f"**{row['idf']['coded']:.3f}**", *(f"{row['classical'][n]:.3f}" for n in names)]
            lines.append(f"| {row['label']} | " + " | ".join(cells) + " |")
        return "\n".join(lines)
    columns = ["data", "IDF model", "IDF coded", *names, "lzma", "encode Mpx/s", "decode Mpx/s", "rANS share"]
    lines = ["| " + " | ".join(columns) + " |", "|---|" + "---:|" * (len(columns) - 1)]
    for row in rows:
        result = row["idf"]
        cells = [f"{result['ideal']:.3f}", f"**{result['coded']:.3f}**"]
        cells += [f"{row['classical'][n]:.3f}" for n in names]
        cells.append("-" if row["lzma"] is None else f"{row['lzma']:.3f}")
        cells += [
            f"{result['encode_px_s'] / 1e6:.2f}",
            f"{result['decode_px_s'] / 1e6:.2f}",
            f"{100 * result['rans_share']:.1f}%",
        ]
        lines.append(f"| {row['label']} | " + " | ".join(cells) + " |")
    return "\n".join(lines)
