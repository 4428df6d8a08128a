"""Fuzz targets over everything that parses untrusted bytes: the rANS stream container
(``RansCoder.from_bytes``), the ``.fkc`` codec container (``read_header`` and a full decode with a
small model), the single-image ``.fkc`` file (``decode_image_file``), the context coder's streams
(``context_decode`` at a shape taken from the first bytes, so that the fuzzer reaches the decoder
without a checksum in the way) and the image readers (.png, .npy).

A target gets arbitrary bytes and must either succeed or raise ValueError: any other exception, a
crash, a hang or a runaway allocation is a finding. ``scripts/fuzz.sh`` runs them under atheris
(coverage-guided) for a bounded time, seeded from ``tests/fuzz/corpus/<target>/``; every input that
ever failed is kept in ``tests/fuzz/crashes/<target>/`` and replayed by ``tests/test_fuzz_regressions.py``.
"""

from __future__ import annotations

import os
import tempfile
from collections.abc import Callable
from pathlib import Path

import torch

from flowkernels import limits

#: the limits the targets run under (set by the runner and the regression test): findings must show
#: as crashes, not as a machine out of memory
FUZZ_LIMITS = {"MAX_PIXELS": 1 << 22, "MAX_SYMBOLS": 1 << 22}


def apply_fuzz_limits() -> None:
    for name, value in FUZZ_LIMITS.items():
        setattr(limits, name, value)


def rans_from_bytes(data: bytes) -> None:
    from flowkernels.ops.rans import RansCoder

    try:
        coder = RansCoder.from_bytes(data)
    except ValueError:
        return
    coder.to_bytes()
    mu = torch.zeros(coder.lanes, 4)
    try:
        coder.pop_logistic(mu, mu)
    except ValueError:
        pass


_CODEC = None


def _codec():
    global _CODEC
    if _CODEC is None:
        from flowkernels.codec import LosslessImageCodec, resolve_model

        _CODEC = LosslessImageCodec(resolve_model("digits"))
    return _CODEC


def fkc_decode(data: bytes) -> None:
    from flowkernels.codec import read_header

    try:
        read_header(data)
        _codec().decode(data)
    except ValueError:
        pass


def image_file_decode(data: bytes) -> None:
    from flowkernels.codec import decode_image_file

    try:
        decode_image_file(data)
    except ValueError:
        pass


def context_stream(data: bytes) -> None:
    from flowkernels.ops import context_decode

    if len(data) < 3:
        return
    shape = (1 + data[0] % 3, 1 + data[1] % 32, 1 + data[2] % 32)
    try:
        image = context_decode(torch.frombuffer(bytearray(data[3:]), dtype=torch.uint8), shape)
    except ValueError:
        return
    assert tuple(image.shape) == shape and image.dtype == torch.uint8


def _read_file(suffix: str) -> Callable[[bytes], None]:
    def target(data: bytes) -> None:
        from flowkernels.codec.imageio import read_image

        handle, name = tempfile.mkstemp(suffix=suffix)
        try:
            with os.fdopen(handle, "wb") as file:
                file.write(data)
            read_image(name)
        except ValueError:
            pass
        finally:
            Path(name).unlink()

    return target


TARGETS: dict[str, Callable[[bytes], None]] = {
    "rans_from_bytes": rans_from_bytes,
    "fkc_decode": fkc_decode,
    "image_file_decode": image_file_decode,
    "context_stream": context_stream,
    "png": _read_file(".png"),
    "npy": _read_file(".npy"),
}
