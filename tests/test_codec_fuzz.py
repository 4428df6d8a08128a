"""Fuzzing the image codec's container (hypothesis): corrupt, truncated, forged and random files
raise ValueError; a file that decodes at all decodes to exactly the images that were coded."""

from __future__ import annotations

import struct
import zlib

import numpy as np
import pytest
import torch

from flowkernels.codec import LosslessImageCodec
from flowkernels.codec import container as fkc

from .codec_fakes import IdentityFlow, TwoStepFlow

hypothesis = pytest.importorskip("hypothesis")
st = hypothesis.strategies

FIXED = struct.Struct("<4sHH16sIIIIIIIBBHII")
CODECS = {
    "identity": LosslessImageCodec(IdentityFlow(1, (4, 4), log_scale=3.0)),
    "two-step": LosslessImageCodec(TwoStepFlow(1, (3, 3), components=2), lanes=2),
    "spanning": LosslessImageCodec(IdentityFlow(1, (2, 3), log_scale=3.0), lanes=3, batch_invariant=True),
    # several patches per lane, lanes of two lengths, and the images as one stream
    "stream": LosslessImageCodec(TwoStepFlow(1, (2, 2)), lanes=5, lane_patches=3),
}


def make_file(name: str, count: int, height: int, width: int, seed: int) -> tuple[str, torch.Tensor, bytes]:
    generator = torch.Generator().manual_seed(seed)
    images = torch.randint(0, 256, (count, 1, height, width), generator=generator, dtype=torch.uint8)
    if seed % 2:  # smooth images too: small latents, short lanes
        images = (images // 64 * 10 + 100).to(torch.uint8)
    return name, images, CODECS[name].encode(images, stream=name == "stream")


files = st.builds(
    make_file,
    st.sampled_from(sorted(CODECS)),
    st.integers(0, 3),
    st.integers(1, 9),
    st.integers(1, 9),
    st.integers(0, 1000),
)


def split(data: bytes):
    fields = list(FIXED.unpack_from(data))
    records = 1 if fields[2] & fkc.FLAG_STREAM else fields[4]
    end = FIXED.size + fields[-2] + fields[-1] + 16 * records
    return fields, data[FIXED.size : end], data[end + 4 :]


def assemble(fields, middle: bytes, payload: bytes) -> bytes:
    head = FIXED.pack(*fields) + middle
    return head + struct.pack("<I", zlib.crc32(head)) + payload


def decodes_exactly_or_raises(name: str, images: torch.Tensor, data: bytes) -> None:
    try:
        decoded = CODECS[name].decode(data)
    except ValueError:
        return
    if images.numel() == 0:  # no pixels to get wrong (a forged header may change the empty shape)
        assert decoded.numel() == 0
    else:
        assert torch.equal(decoded, images), "a forged file decoded to different pixels"


@hypothesis.settings(max_examples=150, deadline=None)
@hypothesis.given(sample=files, position=st.integers(0, 10**6), bit=st.integers(0, 7))
def test_bit_flips_are_detected(sample, position, bit):
    name, images, data = sample
    flipped = bytearray(data)
    flipped[position % len(data)] ^= 1 << bit
    with pytest.raises(ValueError):
        CODECS[name].decode(bytes(flipped))


@hypothesis.settings(max_examples=100, deadline=None)
@hypothesis.given(sample=files, cut=st.integers(1, 10**6), extra=st.binary(min_size=1, max_size=64))
def test_truncation_and_appended_bytes_are_detected(sample, cut, extra):
    name, images, data = sample
    with pytest.raises(ValueError):
        CODECS[name].decode(data[: len(data) - 1 - cut % len(data)])
    with pytest.raises(ValueError):
        CODECS[name].decode(data + extra)


@hypothesis.settings(max_examples=200, deadline=None)
@hypothesis.given(
    sample=files,
    field=st.sampled_from([1, 2, 4, 5, 6, 7, 8, 9, 10, 11, 12, 13, 14, 15]),
    value=st.one_of(st.integers(0, 16), st.integers(0, 2**32 - 1), st.sampled_from([2**16, 2**31, 2**32 - 1])),
)
def test_forged_header_fields_with_a_valid_crc(sample, field, value):
    name, images, data = sample
    fields, middle, payload = split(data)
    limit = 2**8 if field in (11, 12) else 2**16 if field in (1, 2, 13) else 2**32
    fields[field] = value % limit
    decodes_exactly_or_raises(name, images, assemble(fields, middle, payload))


@hypothesis.settings(max_examples=150, deadline=None)
@hypothesis.given(
    sample=files, garbage=st.binary(min_size=0, max_size=300), image=st.integers(0, 3), keep=st.integers(0, 400)
)
def test_resigned_garbage_payloads(sample, garbage, image, keep):
    # A forger who rewrites an image's payload and fixes every length and CRC: decoding may
    # fail with ValueError, but never returns other pixels, crashes or hangs.
    name, images, data = sample
    header = fkc.read_header(data)
    if not header.records:
        return
    image %= len(header.records)
    fields, middle, _ = split(data)
    config_end = fields[-2] + fields[-1]
    table = np.frombuffer(middle[config_end:], dtype=fkc._RECORD).copy()
    bodies = [data[r.offset : r.offset + r.length] for r in header.records]
    bodies[image] = bodies[image][: keep % (len(bodies[image]) + 1)] + garbage
    table["length"] = [len(b) for b in bodies]
    table["payload_crc"] = [zlib.crc32(b) for b in bodies]
    forged = assemble(fields, middle[:config_end] + table.tobytes(), b"".join(bodies))
    decodes_exactly_or_raises(name, images, forged)


json_values = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats(allow_nan=False, allow_infinity=False) | st.text(max_size=8),
    lambda children: st.lists(children, max_size=4) | st.dictionaries(st.text(max_size=6), children, max_size=4),
    max_leaves=20,
)


@hypothesis.settings(max_examples=150, deadline=None)
@hypothesis.given(
    sample=files,
    raw=st.one_of(st.binary(max_size=200), json_values.map(lambda v: fkc.canonical_json(v))),
    section=st.sampled_from(["config", "metadata"]),
)
def test_forged_json_sections(sample, raw, section):
    name, images, data = sample
    fields, middle, payload = split(data)
    config_len, metadata_len = fields[-2], fields[-1]
    config, rest = middle[:config_len], middle[config_len:]
    metadata, table = rest[:metadata_len], rest[metadata_len:]
    if section == "config":
        config = raw
    else:
        metadata = raw
    fields[-2], fields[-1] = len(config), len(metadata)
    forged = assemble(fields, config + metadata + table, payload)
    if section == "config" and raw != middle[:config_len]:
        with pytest.raises(ValueError):
            CODECS[name].decode(forged)
    else:
        decodes_exactly_or_raises(name, images, forged)


@hypothesis.settings(max_examples=100, deadline=None)
@hypothesis.given(raw=st.binary(min_size=0, max_size=300), magic=st.booleans())
def test_random_bytes_raise_value_error(raw, magic):
    with pytest.raises(ValueError):
        CODECS["identity"].decode((b"FKIC\x02\x00" if magic else b"") + raw)
