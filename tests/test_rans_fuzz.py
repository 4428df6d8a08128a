"""Fuzzing the rANS container and decoder (hypothesis): corrupt, truncated and hostile
streams raise ValueError, and nothing crashes or reads out of bounds."""

from __future__ import annotations

import struct
import zlib

import pytest
import torch

from flowkernels.ops.rans import RansCoder, quantize_pdf

from .conftest import every_cpu_isa

pytestmark = every_cpu_isa

hypothesis = pytest.importorskip("hypothesis")
st = hypothesis.strategies

CDF = quantize_pdf(torch.tensor([0.6, 0.2, 0.1, 0.05, 0.05]))


def make_stream(lanes: int, length: int, seed: int) -> bytes:
    generator = torch.Generator().manual_seed(seed)
    coder = RansCoder(lanes)
    coder.push(torch.randint(0, 5, (lanes, length), generator=generator), CDF)
    coder.push_logistic(
        torch.randint(-1000, 1000, (lanes, length), generator=generator),
        torch.zeros(lanes, length),
        torch.full((lanes, length), 2.0),
    )
    return coder.to_bytes()


def resign(data: bytes) -> bytes:
    """Recompute the CRC, as an attacker who forges a header would."""
    body = data[:-4]
    return body + struct.pack("<I", zlib.crc32(body))


def decode_everything(data: bytes) -> None:
    """Load and decode as much as the models allow: must raise ValueError or succeed."""
    try:
        coder = RansCoder.from_bytes(data)
    except ValueError:
        return
    lanes = coder.lanes
    for _ in range(3):
        try:
            coder.pop_logistic(torch.zeros(lanes, 50), torch.full((lanes, 50), 2.0))
            coder.pop(CDF, count=50)
        except ValueError:
            return


streams = st.builds(make_stream, st.integers(1, 6), st.integers(0, 40), st.integers(0, 1000))


@hypothesis.settings(max_examples=150, deadline=None)
@hypothesis.given(data=streams, position=st.integers(0, 10**6), bit=st.integers(0, 7))
def test_bit_flips_are_detected(data, position, bit):
    position %= len(data)
    flipped = bytearray(data)
    flipped[position] ^= 1 << bit
    with pytest.raises(ValueError):
        RansCoder.from_bytes(bytes(flipped))


@hypothesis.settings(max_examples=100, deadline=None)
@hypothesis.given(data=streams, cut=st.integers(1, 10**6), extra=st.binary(min_size=1, max_size=64))
def test_truncation_and_appended_bytes_are_detected(data, cut, extra):
    with pytest.raises(ValueError):
        RansCoder.from_bytes(data[: len(data) - 1 - cut % len(data)])
    with pytest.raises(ValueError):
        RansCoder.from_bytes(data + extra)


@hypothesis.settings(max_examples=150, deadline=None)
@hypothesis.given(
    data=streams,
    version=st.integers(0, 2**16 - 1),
    lanes=st.integers(0, 2**32 - 1),
    words=st.integers(0, 2**64 - 1),
)
def test_forged_headers_with_valid_crc_are_rejected(data, version, lanes, words):
    magic, old_version, flags, old_lanes, old_words = struct.unpack_from("<4sHHIQ", data)
    hypothesis.assume((version, lanes, words) != (old_version, old_lanes, old_words))
    forged = resign(struct.pack("<4sHHIQ", magic, version, flags, lanes, words) + data[20:])
    with pytest.raises(ValueError):
        RansCoder.from_bytes(forged)


@hypothesis.settings(max_examples=200, deadline=None)
@hypothesis.given(data=streams, payload=st.binary(min_size=0, max_size=400), keep=st.integers(0, 10**6))
def test_resigned_garbage_never_crashes(data, payload, keep):
    # A valid header followed by arbitrary bytes, re-signed: loading or decoding may
    # fail with ValueError, but nothing may crash, hang or read out of bounds.
    body = data[: 20 + keep % max(1, len(data) - 23)] + payload
    decode_everything(resign(body + b"\0\0\0\0"))
    decode_everything(resign(data[:20] + payload + b"\0\0\0\0"))


@hypothesis.settings(max_examples=100, deadline=None)
@hypothesis.given(raw=st.binary(min_size=0, max_size=200))
def test_random_bytes_raise_value_error(raw):
    with pytest.raises(ValueError):
        RansCoder.from_bytes(raw)
