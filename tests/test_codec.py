"""The lossless image codec (flowkernels.codec) with small fake flows: round trips, code length,
determinism, the container's validation, and the compress / decompress command line."""

from __future__ import annotations

import math
import os
import struct
import subprocess
import sys
import zlib
from pathlib import Path

import numpy as np
import pytest
import torch

from flowkernels import cli
from flowkernels.codec import (
    CodecModel,
    LatentStep,
    LosslessImageCodec,
    default_lanes,
    model_fingerprint,
    read_header,
    read_image_header,
    registry,
)
from flowkernels.codec import container as fkc
from flowkernels.codec.image_codec import tile, untile
from flowkernels.codec.imageio import from_tensor, read_image, to_tensor, write_image

from .codec_fakes import IdentityFlow, TwoStepFlow

FIXED = struct.Struct("<4sHH16sIIIIIIIBBHII")


def random_images(count, channels, height, width, seed=0):
    generator = torch.Generator().manual_seed(seed)
    return torch.randint(0, 256, (count, channels, height, width), generator=generator, dtype=torch.uint8)


def structured_images(count, channels, height, width, seed=0):
    """Smooth gradients plus a little noise, a constant block and a checkerboard stripe."""
    generator = torch.Generator().manual_seed(seed)
    rows = torch.arange(height).view(1, 1, height, 1)
    cols = torch.arange(width).view(1, 1, 1, width)
    phase = torch.arange(count * channels).view(count, channels, 1, 1)
    base = (
        128
        + 60 * torch.sin(0.2 * rows + 0.13 * cols + phase)
        + 8 * torch.randn(count, channels, height, width, generator=generator)
    )
    images = base.round().clamp(0, 255).to(torch.uint8)
    images[..., : height // 3, : width // 3] = 200
    images[..., -1, :] = ((cols.flatten() % 2) * 255).to(torch.uint8)
    return images


def roundtrip(codec, images, **kwargs):
    data = codec.encode(images, **kwargs)
    decoded = codec.decode(data)
    assert decoded.dtype == torch.uint8 and torch.equal(decoded, images)
    return data


def parts(data):
    """(fixed fields, config, metadata, table, header end) of a container."""
    fields = list(FIXED.unpack_from(data))
    config_len, metadata_len = fields[-2], fields[-1]
    images = 1 if fields[2] & fkc.FLAG_STREAM else fields[4]
    table_at = FIXED.size + config_len + metadata_len
    end = table_at + 16 * images
    return (
        fields,
        data[FIXED.size : FIXED.size + config_len],
        data[FIXED.size + config_len : table_at],
        data[table_at:end],
        end + 4,
    )


def forge(data, *, fields=None, config=None, metadata=None, table=None, payload=None, fix_lengths=True):
    """Rebuild a container with some parts replaced, header CRC recomputed (as a forger would)."""
    old_fields, old_config, old_metadata, old_table, end = parts(data)
    fields = list(old_fields if fields is None else fields)
    config = old_config if config is None else config
    metadata = old_metadata if metadata is None else metadata
    table = old_table if table is None else table
    payload = data[end:] if payload is None else payload
    if fix_lengths:
        fields[-2], fields[-1] = len(config), len(metadata)
    head = FIXED.pack(*fields) + config + metadata + table
    return head + struct.pack("<I", zlib.crc32(head)) + payload


def payloads(data):
    header = read_header(data)
    return [data[r.offset : r.offset + r.length] for r in header.records]


# -- the model interface and tiling ---------------------------------------------------------------


def test_fake_models_satisfy_the_protocol():
    assert isinstance(IdentityFlow(), CodecModel)
    assert isinstance(TwoStepFlow(), CodecModel)


@pytest.mark.parametrize("size", [(1, 1), (4, 4), (5, 9), (8, 3)])
def test_tile_pads_by_edge_replication_and_untile_inverts(size):
    image = random_images(1, 2, *size)[0]
    patches = tile(image, 4, 4)
    rows, cols = math.ceil(size[0] / 4), math.ceil(size[1] / 4)
    assert patches.shape == (rows * cols, 2, 4, 4)
    padded = untile(patches, rows, cols)
    assert torch.equal(padded[:, : size[0], : size[1]], image)
    expected = torch.nn.functional.pad(image[None].float(), (0, cols * 4 - size[1], 0, rows * 4 - size[0]), "replicate")
    assert torch.equal(padded.float(), expected[0])


# -- round trips ------------------------------------------------------------------------------------


MODELS = {
    "identity-gray": lambda: IdentityFlow(1, (4, 4)),
    "identity-rgb": lambda: IdentityFlow(3, (5, 3)),
    "two-step-gray": lambda: TwoStepFlow(1, (4, 4), components=2),
    "two-step-rgb": lambda: TwoStepFlow(3, (4, 4)),
}


@pytest.mark.parametrize("name", sorted(MODELS))
@pytest.mark.parametrize("size", [(1, 1), (7, 13), (33, 65)])
@pytest.mark.parametrize("kind", ["random", "structured"])
def test_round_trip_odd_sizes(name, size, kind):
    model = MODELS[name]()
    make = random_images if kind == "random" else structured_images
    images = make(2, model.patch_shape[0], *size, seed=sum(size))
    data = roundtrip(LosslessImageCodec(model), images)
    header = read_header(data)
    assert (header.images, header.channels, header.height, header.width) == (2, model.patch_shape[0], *size)
    assert header.padding == "edge"
    assert header.padding_amounts == ((-size[0]) % model.patch_shape[1], (-size[1]) % model.patch_shape[2])


@pytest.mark.parametrize("name", ["identity-gray", "two-step-rgb"])
def test_round_trip_batch_of_64(name):
    model = MODELS[name]()
    roundtrip(LosslessImageCodec(model), structured_images(64, model.patch_shape[0], 9, 11, seed=3))
    roundtrip(LosslessImageCodec(model), random_images(1, model.patch_shape[0], 9, 11, seed=4))


@pytest.mark.parametrize("lanes", [1, 3, 7, 64])
def test_round_trip_with_short_last_runs(lanes):
    codec = LosslessImageCodec(TwoStepFlow(1, (2, 3)), lanes=lanes)
    data = roundtrip(codec, structured_images(3, 1, 9, 10))  # 5 x 4 = 20 patches per image
    header = read_header(data)
    assert header.lanes == lanes and header.patches_per_image == 20 and not header.spans_images


def test_extreme_images_and_escaped_latents():
    # A prior far too narrow and far off: nearly every latent lies outside the coder's window
    # and goes through the escape path (about 32 bits each) -- it must round-trip, not be lost.
    model = IdentityFlow(1, (4, 4), mu=-1000.0, log_scale=-3.0)
    images = torch.cat(
        [
            random_images(1, 1, 6, 6),
            torch.zeros(1, 1, 6, 6, dtype=torch.uint8),
            torch.full((1, 1, 6, 6), 255, dtype=torch.uint8),
        ]
    )
    codec = LosslessImageCodec(model)
    data = roundtrip(codec, images)
    assert 8 * sum(len(p) for p in payloads(data)) > 30 * images.numel()
    for images in [torch.zeros(2, 3, 5, 5, dtype=torch.uint8), torch.full((2, 3, 5, 5), 255, dtype=torch.uint8)]:
        roundtrip(LosslessImageCodec(TwoStepFlow()), images)


def test_empty_batch_and_metadata():
    codec = LosslessImageCodec(IdentityFlow())
    data = codec.encode(torch.zeros(0, 1, 5, 6, dtype=torch.uint8), metadata={"layout": "HW", "note": "x"})
    decoded = codec.decode(data)
    assert decoded.shape == (0, 1, 5, 6) and decoded.dtype == torch.uint8
    assert read_header(data).metadata == {"layout": "HW", "note": "x"}


def test_model_on_float64_weights():
    model = TwoStepFlow(1, (3, 3)).double()
    roundtrip(LosslessImageCodec(model), structured_images(2, 1, 7, 8))


# -- code length ------------------------------------------------------------------------------------


@pytest.mark.parametrize("name", ["identity-gray", "two-step-rgb"])
def test_coded_size_is_close_to_the_ideal_code_length(name):
    model = MODELS[name]()
    if name == "identity-gray":  # a prior matched to the data: 8 bits per pixel are not the point
        model = IdentityFlow(1, (16, 16), mu=128.0, log_scale=3.0)
    images = structured_images(8, model.patch_shape[0], 40, 48, seed=7)
    codec = LosslessImageCodec(model)
    data = roundtrip(codec, images)
    header = read_header(data)
    lanes = header.lane_count
    # what the rANS coder wrote: words + 64-bit final states (the 32-bit word counts are framing)
    coded = 8 * sum(r.length for r in header.records) - 32 * (lanes - len(header.records))
    ideal = codec.ideal_bits(images)
    assert ideal > 1e4
    assert coded <= 1.005 * ideal + 64 * lanes, (coded, ideal, lanes)
    assert coded >= 0.99 * ideal
    # the container's own overhead is exactly what the format describes
    config = len(fkc.canonical_json(model.config))
    metadata = len(fkc.canonical_json({}))
    assert len(data) == 64 + config + metadata + 16 * header.images + 4 + sum(r.length for r in header.records)


def test_ideal_bits_matches_the_logistic_likelihood():
    model = IdentityFlow(1, (4, 4), mu=100.0, log_scale=2.0)
    images = random_images(2, 1, 4, 8)
    x = images.double()
    s = math.exp(2.0)
    upper = torch.sigmoid((x + 0.5 - 100.0) / s)
    lower = torch.sigmoid((x - 0.5 - 100.0) / s)
    expected = -torch.log2(upper - lower).sum().item()
    assert LosslessImageCodec(model).ideal_bits(images) == pytest.approx(expected, rel=1e-5)


# -- determinism --------------------------------------------------------------------------------------


class BatchSensitiveFlow(IdentityFlow):
    """An identity flow whose prior shifts with the batch size, as conv results do in the last bits."""

    def _params(self, n):
        mu, log_scale, logit_pi = super()._params(n)
        return mu + 0.37 * n, log_scale, logit_pi


@pytest.mark.parametrize("model_class", [TwoStepFlow, BatchSensitiveFlow])
def test_bytes_do_not_depend_on_the_batch_composition(model_class):
    model = model_class(3, (4, 4))
    codec = LosslessImageCodec(model, lanes=4)
    images = structured_images(64, 3, 10, 9, seed=11)  # 9 patches per image: model calls of 4, 4, 1
    together = codec.encode(images)
    per_image = payloads(together)
    for index in [0, 17, 63]:
        alone = codec.encode(images[index : index + 1])
        assert payloads(alone) == [per_image[index]]
    order = torch.randperm(64, generator=torch.Generator().manual_seed(0))
    assert payloads(codec.encode(images[order])) == [per_image[i] for i in order.tolist()]
    assert torch.equal(codec.decode(together), images)


@pytest.mark.parametrize("lanes", [1, 4, 64])
def test_batch_invariant_models_are_called_across_images_with_the_same_bytes(lanes):
    model = IdentityFlow(3, (4, 4), log_scale=4.0)
    images = structured_images(20, 3, 6, 9, seed=12)  # 2 x 3 = 6 patches per image
    calls = []
    original = model.encode_latents
    model.encode_latents = lambda x: calls.append(len(x)) or original(x)
    # one patch per rANS lane: model calls are then packed patch by patch
    per_image = LosslessImageCodec(model, lanes=lanes, lane_patches=1).encode(images)
    per_image_calls, calls[:] = list(calls), []
    across = LosslessImageCodec(model, lanes=lanes, batch_invariant=True, lane_patches=1).encode(images)
    assert payloads(across) == payloads(per_image)
    assert read_header(across).spans_images and not read_header(per_image).spans_images
    assert max(per_image_calls) == min(lanes, 6) and len(calls) == math.ceil(120 / lanes)
    for data in (per_image, across):
        assert torch.equal(LosslessImageCodec(model, lanes=lanes).decode(data), images)
    # a model that claims batch invariance falsely still decodes: the decoder repeats the encoder's calls
    liar = BatchSensitiveFlow(3, (4, 4))
    liar.batch_invariant = True
    roundtrip(LosslessImageCodec(liar, lanes=lanes), images)


def test_bytes_do_not_depend_on_the_thread_count_and_repeat_exactly():
    codec = LosslessImageCodec(TwoStepFlow(3, (4, 4)))
    images = structured_images(4, 3, 21, 19)
    threads = torch.get_num_threads()
    try:
        torch.set_num_threads(1)
        one = codec.encode(images)
        torch.set_num_threads(max(2, threads))
        many = codec.encode(images)
        assert torch.equal(codec.decode(one), images)
    finally:
        torch.set_num_threads(threads)
    assert one == many == codec.encode(images)


def test_fingerprint_covers_weights_and_config():
    base = TwoStepFlow(seed=0)
    assert model_fingerprint(base) == model_fingerprint(TwoStepFlow(seed=0))
    assert len(model_fingerprint(base)) == 16
    nudged = TwoStepFlow(seed=0)
    with torch.no_grad():
        nudged.head.bias[0] = torch.nextafter(nudged.head.bias[0], torch.tensor(1.0))
    assert model_fingerprint(nudged) != model_fingerprint(base)
    renamed = TwoStepFlow(seed=0)
    renamed.config = {**renamed.config, "note": 1}
    assert model_fingerprint(renamed) != model_fingerprint(base)


def test_default_lanes():
    assert default_lanes((3, 32, 32)) == (1 << 18) // 3072
    assert default_lanes((1, 8, 8)) == 1024
    assert default_lanes((3, 512, 512)) == 1


# -- rejecting bad input ------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def sample():
    model = TwoStepFlow(1, (4, 4))
    images = structured_images(3, 1, 9, 7, seed=5)
    return model, images, LosslessImageCodec(model).encode(images)


def test_wrong_model_is_rejected(sample):
    model, images, data = sample
    with pytest.raises(ValueError, match="compressed with a different model"):
        LosslessImageCodec(TwoStepFlow(1, (4, 4), seed=1)).decode(data)
    with pytest.raises(ValueError, match="compressed with a different model"):
        LosslessImageCodec(IdentityFlow(1, (4, 4))).decode(data)


def test_bit_flips_are_detected(sample):
    model, images, data = sample
    codec = LosslessImageCodec(model)
    for position in list(range(0, len(data), max(1, len(data) // 97))) + [len(data) - 1]:
        for bit in (0, 5):
            flipped = bytearray(data)
            flipped[position] ^= 1 << bit
            with pytest.raises(ValueError):
                codec.decode(bytes(flipped))


def test_truncated_and_extended_files_are_detected(sample):
    model, images, data = sample
    codec = LosslessImageCodec(model)
    for cut in [1, 4, 17, len(data) // 2, len(data) - 60, len(data) - 1]:
        with pytest.raises(ValueError, match="truncated|not a flowkernels codec file|CRC"):
            codec.decode(data[: len(data) - cut])
    with pytest.raises(ValueError, match="trailing bytes"):
        codec.decode(data + b"\0")
    with pytest.raises(ValueError, match="trailing bytes"):
        codec.decode(data + data)
    with pytest.raises(ValueError, match="not a flowkernels codec file"):
        codec.decode(b"")
    with pytest.raises(ValueError, match="not a flowkernels codec file"):
        codec.decode(b"PK\x03\x04" + data[4:])
    with pytest.raises(TypeError):
        codec.decode("FKIC")


@pytest.mark.parametrize(
    ("field", "value", "message"),
    [
        (1, 1, "unsupported flowkernels codec format version 1"),
        (1, 4, "written by a newer flowkernels \\(codec format version 4"),
        (1, 0xFFFF, "upgrade flowkernels"),
        (2, 8, "unknown flags"),
        (2, 0x8001, "unknown flags"),
        (4, 2**32 - 1, "truncated"),  # images: the table cannot fit
        (5, 0, "channels = 0"),
        (5, 3, "patch shape|lane patches"),
        (6, 0, "height = 0"),
        (6, 2**32 - 1, "cannot hold"),  # absurd sizes: caught before any allocation
        (7, 2**31, "cannot hold"),
        (8, 2, "patch shape"),
        (9, 0, "patch width = 0"),
        (10, 0, "lanes = 0"),
        (10, 2**20, "lanes = "),
        (11, 9, "unknown padding mode"),
        (12, 25, "precision = 25"),
        (12, 3, "precision = 3"),
        (13, 0, "lane patches = 0"),
        (13, 257, "lane patches = 257"),  # more than LANE_SYMBOLS = 4096 subpixels per lane
    ],
)
def test_forged_headers_are_rejected(sample, field, value, message):
    model, images, data = sample
    fields = parts(data)[0]
    fields[field] = value
    with pytest.raises(ValueError, match=message):
        LosslessImageCodec(model).decode(forge(data, fields=fields))


def test_forged_image_counts_are_rejected(sample):
    model, images, data = sample
    fields, config, metadata, table, end = parts(data)
    fields[4] = 1  # one image, one table row: the other payloads become trailing bytes
    with pytest.raises(ValueError, match="trailing bytes"):
        LosslessImageCodec(model).decode(forge(data, fields=fields, table=table[:16]))
    fields[4] = 4  # a fourth row of zeros: its payload cannot hold the patches
    with pytest.raises(ValueError, match="cannot hold"):
        LosslessImageCodec(model).decode(forge(data, fields=fields, table=table + bytes(16)))


def test_forged_lengths_and_json_are_rejected(sample):
    model, images, data = sample
    codec = LosslessImageCodec(model)
    fields, config, metadata, table, end = parts(data)
    for config_len in [len(config) + 1, 2**16 + 1, 2**32 - 1]:
        forged = list(fields)
        forged[-2] = config_len
        with pytest.raises(ValueError, match="truncated|JSON|CRC"):
            codec.decode(forge(data, fields=forged, fix_lengths=False))
    bombs = [
        b"[" * 30000 + b"]" * 30000,
        b'{"a":' * 10000 + b"1" + b"}" * 10000,
        b'{"x":' + b"9" * 60000 + b"}",
        b'{"a":NaN}',
        b"\xff\xfe",
        b'"just a string"',
        b'{"b": 1, "a": 2}',  # not canonical
        b"x" * (2**16 + 1),
    ]
    for bomb in bombs:
        with pytest.raises(ValueError, match="JSON|canonical|at most"):
            codec.decode(forge(data, config=bomb))
        with pytest.raises(ValueError, match="JSON|canonical|at most"):
            codec.decode(forge(data, metadata=bomb))
    other = fkc.canonical_json({**model.config, "components": 9})
    with pytest.raises(ValueError, match="config differs"):
        codec.decode(forge(data, config=other))


def test_forged_payloads_never_give_wrong_pixels(sample):
    model, images, data = sample
    codec = LosslessImageCodec(model)
    fields, config, metadata, table, end = parts(data)
    records = np.frombuffer(table, dtype=fkc._RECORD).copy()
    bodies = payloads(data)
    generator = np.random.default_rng(0)

    def with_payloads(new_bodies, pixel_crcs=None):
        new = records.copy()
        new["length"] = [len(b) for b in new_bodies]
        new["payload_crc"] = [zlib.crc32(b) for b in new_bodies]
        if pixel_crcs is not None:
            new["pixel_crc"] = pixel_crcs
        return forge(data, table=new.tobytes(), payload=b"".join(new_bodies))

    # swapped payloads (valid streams of the wrong image): caught by the pixel CRC
    with pytest.raises(ValueError, match="pixel CRC"):
        codec.decode(with_payloads([bodies[1], bodies[0], bodies[2]]))
    # random payload words behind a valid lane table, re-signed
    for trial in range(20):
        body = bytearray(bodies[trial % 3])
        lanes = read_header(data).lanes_per_payload
        start = 12 * lanes - 4
        body[start:] = generator.integers(0, 256, len(body) - start, dtype=np.uint8).tobytes()
        if trial % 2:
            body[start - 8 * lanes : start] = generator.integers(0, 256, 8 * lanes, dtype=np.uint8).tobytes()
        new = list(bodies)
        new[trial % 3] = bytes(body)
        with pytest.raises(ValueError):
            codec.decode(with_payloads(new))
    # a payload too short for its patches (one lane: a final state, its word count implied)
    assert read_header(data).lanes_per_payload == 1
    with pytest.raises(ValueError, match="cannot hold"):
        codec.decode(with_payloads([bodies[0][:6], bodies[1], bodies[2]]))
    # data left over after the last step: an extra word at the bottom of the lane
    body = bytearray(bodies[0])
    body[8:8] = b"\1\2\3\4"
    with pytest.raises(ValueError):
        codec.decode(with_payloads([bytes(body), bodies[1], bodies[2]]))


def test_model_contract_violations_are_clear_errors():
    class NonInteger(IdentityFlow):
        def encode_latents(self, x):
            step = super().encode_latents(x)[0]
            return [LatentStep(step.z + 0.5, step.mu, step.log_scale, step.logit_pi)]

    class WrongShape(IdentityFlow):
        def encode_latents(self, x):
            step = super().encode_latents(x)[0]
            return [LatentStep(step.z, step.mu[:, :, :1], step.log_scale, step.logit_pi)]

    images = random_images(1, 1, 4, 4)
    with pytest.raises(ValueError, match="non-integer latents"):
        LosslessImageCodec(NonInteger()).encode(images)
    with pytest.raises(ValueError, match="shape"):
        LosslessImageCodec(WrongShape()).encode(images)
    training = IdentityFlow().train()
    with pytest.raises(ValueError, match="training mode"):
        LosslessImageCodec(training).encode(images)
    codec = LosslessImageCodec(IdentityFlow(1))
    with pytest.raises(ValueError, match="3 channels"):
        codec.encode(random_images(1, 3, 4, 4))
    with pytest.raises(ValueError, match="uint8"):
        codec.encode(images.float())
    with pytest.raises(ValueError, match="uint8"):
        codec.encode(images[0])
    with pytest.raises(ValueError, match="lanes"):
        LosslessImageCodec(IdentityFlow(), lanes=0)


# -- command line ---------------------------------------------------------------------------------------


@pytest.fixture
def fake_models(monkeypatch):
    monkeypatch.setitem(registry.MODELS, "fake-gray", lambda: TwoStepFlow(1, (4, 4)))
    monkeypatch.setitem(registry.MODELS, "fake-rgb", lambda: TwoStepFlow(3, (4, 4), seed=2))


@pytest.mark.parametrize(
    ("suffix", "shape", "layout", "model"),
    [
        (".png", (13, 22), "HW", "fake-gray"),
        (".png", (9, 5, 3), "HWC", "fake-rgb"),
        (".npy", (13, 22), "HW", "fake-gray"),
        (".npy", (9, 5, 3), "HWC", "fake-rgb"),
        (".npy", (3, 9, 5), "CHW", "fake-rgb"),
        (".tif", (13, 22), "HW", "fake-gray"),
        (".tiff", (9, 5, 3), "HWC", "fake-rgb"),
        (".pgm", (13, 22), "HW", "fake-gray"),
        (".ppm", (9, 5, 3), "HWC", "fake-rgb"),
        (".webp", (9, 5, 3), "HWC", "fake-rgb"),
    ],
)
def test_cli_round_trip(tmp_path, fake_models, capsys, suffix, shape, layout, model):
    array = np.random.default_rng(1).integers(0, 256, shape, dtype=np.uint8)
    source, packed, restored = tmp_path / f"in{suffix}", tmp_path / "out.fkc", tmp_path / f"back{suffix}"
    if suffix == ".npy":
        np.save(source, array)
    else:
        write_image(source, to_tensor(array)[0][0], "HW" if array.ndim == 2 else "HWC")
    argv = ["compress", str(source), "-o", str(packed), "--model", model, "--method", "flow", "--verify"]
    assert cli.main(argv) == 0
    out = capsys.readouterr().out
    assert "bits/subpixel" in out and "bits/pixel" in out and "vs PNG" in out
    header = read_image_header(packed.read_bytes())
    assert (header.layout, header.method) == (layout, "flow")
    assert cli.main(["decompress", str(packed), "-o", str(restored), "--model", model]) == 0
    back = np.load(restored) if suffix == ".npy" else from_tensor(read_image(restored)[0][0], layout)
    assert back.shape == array.shape and np.array_equal(back, array)


def test_cli_jpeg_input_compresses_its_decoded_pixels_and_says_so(tmp_path, fake_models, capsys):
    from PIL import Image

    array = np.random.default_rng(3).integers(0, 256, (12, 10, 3), dtype=np.uint8)
    Image.fromarray(array).save(tmp_path / "in.jpg", quality=80)
    decoded = np.asarray(Image.open(tmp_path / "in.jpg"))
    assert cli.main(["compress", str(tmp_path / "in.jpg"), "-o", str(tmp_path / "j.fkc"), "--model", "fake-rgb"]) == 0
    assert "decoded pixels were compressed losslessly" in capsys.readouterr().err
    assert cli.main(["decompress", str(tmp_path / "j.fkc"), "-o", str(tmp_path / "j.png"), "--model", "fake-rgb"]) == 0
    assert np.array_equal(from_tensor(read_image(tmp_path / "j.png")[0][0], "HWC"), decoded)
    # writing a lossy format is refused: the pixels would not come back
    assert cli.main(["decompress", str(tmp_path / "j.fkc"), "-o", str(tmp_path / "j.jpg"), "--model", "fake-rgb"]) == 1
    assert "lossy format" in capsys.readouterr().err and not (tmp_path / "j.jpg").exists()


@pytest.mark.parametrize(
    ("mode", "message"),
    [("I;16", "I;16 images are not supported"), ("F", "F images are not supported"), ("CMYK", "not supported")],
)
def test_images_that_are_not_8_bit_grey_or_rgb_are_refused_with_a_message(tmp_path, mode, message):
    from PIL import Image

    image = Image.new(mode, (5, 4))
    image.save(tmp_path / "x.tif")
    with pytest.raises(ValueError, match=message):
        read_image(tmp_path / "x.tif")


def test_multi_page_tiffs_and_non_images_are_refused(tmp_path):
    from PIL import Image

    pages = [Image.new("L", (4, 4), value) for value in (0, 9)]
    pages[0].save(tmp_path / "pages.tif", save_all=True, append_images=pages[1:])
    with pytest.raises(ValueError, match="holds 2 images"):
        read_image(tmp_path / "pages.tif")
    (tmp_path / "junk.webp").write_bytes(b"RIFF\x10\x00\x00\x00WEBPnonsense")
    with pytest.raises(ValueError, match="junk.webp: not a readable image"):
        read_image(tmp_path / "junk.webp")
    with pytest.raises(ValueError, match="unsupported image file type '.gif'"):
        read_image(tmp_path / "x.gif")


def test_bilevel_and_palette_images_read_as_grey_and_rgb(tmp_path):
    from PIL import Image

    bilevel = Image.fromarray(np.array([[0, 255], [255, 0]], dtype=np.uint8)).convert("1")
    bilevel.save(tmp_path / "b.tif")
    image, layout = read_image(tmp_path / "b.tif")
    assert layout == "HW" and image[0, 0].tolist() == [[0, 255], [255, 0]]
    palette = Image.fromarray(np.full((3, 3, 3), 7, dtype=np.uint8)).convert("P", palette=Image.ADAPTIVE)
    palette.save(tmp_path / "p.tif")
    image, layout = read_image(tmp_path / "p.tif")
    assert layout == "HWC" and image.shape == (1, 3, 3, 3) and int(image.max()) == 7


def test_cli_npy_layout_override_and_png_output(tmp_path, fake_models):
    array = np.random.default_rng(2).integers(0, 256, (3, 4, 3), dtype=np.uint8)  # ambiguous: HWC guessed
    np.save(tmp_path / "a.npy", array)
    assert (
        cli.main(
            [
                "compress",
                str(tmp_path / "a.npy"),
                "-o",
                str(tmp_path / "a.fkc"),
                "--model",
                "fake-rgb",
                "--method",
                "flow",
                "--layout",
                "chw",
            ]
        )
        == 0
    )
    assert read_image_header((tmp_path / "a.fkc").read_bytes()).layout == "CHW"
    assert cli.main(["decompress", str(tmp_path / "a.fkc"), "-o", str(tmp_path / "a.png"), "--model", "fake-rgb"]) == 0
    image, layout = read_image(tmp_path / "a.png")
    assert layout == "HWC" and np.array_equal(image[0].numpy(), array)


def test_cli_checkpoint_path_with_an_injected_factory(tmp_path, monkeypatch, capsys):
    model = TwoStepFlow(1, (4, 4), seed=3)
    torch.save({"config": model.config, "state_dict": model.state_dict()}, tmp_path / "model.pt")

    def factory(config, state_dict):
        built = TwoStepFlow(config["channels"], tuple(config["patch"]), components=config["components"])
        built.load_state_dict(state_dict)
        return built

    monkeypatch.setattr(registry, "CHECKPOINT_FACTORY", factory)
    np.save(tmp_path / "x.npy", np.arange(130, dtype=np.uint8).reshape(10, 13))
    checkpoint = str(tmp_path / "model.pt")
    argv = ["compress", str(tmp_path / "x.npy"), "-o", str(tmp_path / "x.fkc"), "--model", checkpoint]
    argv += ["--method", "flow"]
    assert cli.main(argv) == 0
    assert cli.main(["decompress", str(tmp_path / "x.fkc"), "-o", str(tmp_path / "y.npy"), "--model", checkpoint]) == 0
    assert np.array_equal(np.load(tmp_path / "y.npy"), np.arange(130, dtype=np.uint8).reshape(10, 13))
    # another model: a clear error and exit status 1, nothing written
    monkeypatch.setitem(registry.MODELS, "other", lambda: TwoStepFlow(1, (4, 4), seed=4))
    capsys.readouterr()
    assert cli.main(["decompress", str(tmp_path / "x.fkc"), "-o", str(tmp_path / "z.npy"), "--model", "other"]) == 1
    assert "different model" in capsys.readouterr().err
    assert not (tmp_path / "z.npy").exists()


def test_cli_errors(tmp_path, fake_models, capsys):
    np.save(tmp_path / "f.npy", np.zeros((4, 4), dtype=np.float32))
    np.save(tmp_path / "g.npy", np.zeros((4, 4), dtype=np.uint8))
    (tmp_path / "bad.fkc").write_bytes(b"FKIC\x02" + bytes(100))
    (tmp_path / "junk.pt").write_bytes(b"not a checkpoint")
    cases = [
        (["compress", str(tmp_path / "f.npy"), "-o", str(tmp_path / "o.fkc"), "--model", "fake-gray"], "uint8"),
        (["compress", str(tmp_path / "g.npy"), "-o", str(tmp_path / "o.fkc"), "--model", "nope"], "unknown model"),
        (["compress", str(tmp_path / "g.npy"), "-o", str(tmp_path / "o.fkc"), "--model", "fake-rgb"], "channels"),
        (["compress", str(tmp_path / "g.gif"), "-o", str(tmp_path / "o.fkc"), "--model", "fake-gray"], "unsupported"),
        (
            ["compress", str(tmp_path / "g.npy"), "-o", str(tmp_path / "o.fkc"), "--model", str(tmp_path / "junk.pt")],
            "checkpoint",
        ),
        (["decompress", str(tmp_path / "bad.fkc"), "-o", str(tmp_path / "o.npy"), "--model", "fake-gray"], "corrupt"),
        (
            ["decompress", str(tmp_path / "missing.fkc"), "-o", str(tmp_path / "o.npy"), "--model", "fake-gray"],
            "No such file",
        ),
    ]
    for argv, message in cases:
        assert cli.main(argv) == 1, argv
        assert message in capsys.readouterr().err, argv


@pytest.fixture(scope="module")
def idf_model():
    # no skip: an import error or a changed constructor is an API break, and must fail here
    from flowkernels.models import idf

    model = idf.IDF(1, 8, 8, num_scales=2, steps_per_scale=2, hidden=8, num_mixtures=3, coding_batch=4)
    generator = torch.Generator().manual_seed(0)
    with torch.no_grad():  # the couplings start as the identity: make them do something
        for parameter in model.parameters():
            parameter.add_(0.05 * torch.randn(parameter.shape, generator=generator))
    return model.eval()


def test_real_idf_round_trip_code_length_and_batch_invariance(idf_model):
    assert isinstance(idf_model, CodecModel)
    images = structured_images(6, idf_model.patch_shape[0], 13, 11, seed=21)  # 4 patches per image
    codec = LosslessImageCodec(idf_model, lanes=3)
    per_image = roundtrip(codec, images)
    across = roundtrip(LosslessImageCodec(idf_model, lanes=3, batch_invariant=True), images)
    assert payloads(across) == payloads(per_image)
    assert payloads(codec.encode(images[3:4])) == [payloads(per_image)[3]]
    header = read_header(per_image)
    lanes = header.lane_count
    coded = 8 * sum(r.length for r in header.records) - 32 * (lanes - len(header.records))
    assert coded <= 1.005 * codec.ideal_bits(images) + 64 * lanes


def test_cli_with_the_real_idf_model(tmp_path, capsys):
    from flowkernels.models import idf  # no skip: an API break must fail here

    model = idf.IDF().eval()
    assert isinstance(model, CodecModel)
    checkpoint = tmp_path / "idf.pt"
    torch.save({"config": dict(model.config), "state_dict": model.state_dict()}, checkpoint)
    channels, height, width = model.patch_shape
    array = structured_images(1, channels, height + 3, width + 5)[0].numpy()
    array = array[0] if channels == 1 else array.transpose(1, 2, 0)
    np.save(tmp_path / "x.npy", array)
    argv = ["compress", str(tmp_path / "x.npy"), "-o", str(tmp_path / "x.fkc"), "--model", str(checkpoint), "--verify"]
    assert cli.main(argv) == 0
    argv = ["decompress", str(tmp_path / "x.fkc"), "-o", str(tmp_path / "y.npy"), "--model", str(checkpoint)]
    assert cli.main(argv) == 0
    assert np.array_equal(np.load(tmp_path / "y.npy"), array)
    # checkpoints that do not describe an IDF: clear errors
    torch.save({"config": {"bogus": 1}, "state_dict": {}}, tmp_path / "bad.pt")
    torch.save({"config": dict(model.config), "state_dict": {"top.raw": torch.zeros(1)}}, tmp_path / "worse.pt")
    for path, message in [("bad.pt", "does not describe an IDF"), ("worse.pt", "do not fit")]:
        argv = ["compress", str(tmp_path / "x.npy"), "-o", str(tmp_path / "z.fkc"), "--model", str(tmp_path / path)]
        assert cli.main(argv) == 1
        assert message in capsys.readouterr().err


# -- several patches per lane, and streams ------------------------------------------------------------


@pytest.mark.parametrize("batch_invariant", [False, True])
@pytest.mark.parametrize(("lanes", "lane_patches"), [(1, 1), (3, 3), (5, 3), (7, 2), (64, 7)])
def test_lanes_of_several_patches_round_trip(lanes, lane_patches, batch_invariant):
    model = TwoStepFlow(1, (2, 3))
    codec = LosslessImageCodec(model, lanes=lanes, lane_patches=lane_patches, batch_invariant=batch_invariant)
    images = structured_images(5, 1, 9, 10)  # 5 x 4 = 20 patches per image: lanes of uneven lengths
    for stream in (False, True):
        data = roundtrip(codec, images, stream=stream)
        header = read_header(data)
        assert header.lane_patches == lane_patches and header.stream == stream
        segment = 20 * (5 if stream else 1)
        assert header.lanes_per_payload == -(-segment // lane_patches)
        assert len(header.records) == (1 if stream else 5)
    # per image, a payload depends only on its image: alone or in a batch, the same bytes
    together = payloads(codec.encode(images))
    assert [payloads(codec.encode(images[i : i + 1]))[0] for i in range(5)] == together


def test_default_lane_patches_hold_about_lane_symbols():
    assert LosslessImageCodec(IdentityFlow(1, (8, 8))).lane_patches == 64
    assert LosslessImageCodec(IdentityFlow(3, (4, 4))).lane_patches == 86
    assert LosslessImageCodec(IdentityFlow(3, (4, 4)), lanes=5).lane_patches == 5
    assert LosslessImageCodec(IdentityFlow(3, (64, 64))).lane_patches == 1
    for bad in (0, 87):
        with pytest.raises(ValueError, match="lane_patches"):
            LosslessImageCodec(IdentityFlow(3, (4, 4)), lane_patches=bad)


@pytest.mark.parametrize("name", ["identity-gray", "two-step-rgb"])
@pytest.mark.parametrize("count", [0, 1, 2, 37])
def test_stream_round_trips(name, count):
    model = MODELS[name]()
    images = structured_images(count, model.patch_shape[0], 7, 5, seed=count)
    data = roundtrip(LosslessImageCodec(model), images, stream=True)
    header = read_header(data)
    assert header.stream and header.spans_images and header.images == count and len(header.records) == 1


def test_a_stream_of_many_tiny_images_costs_what_the_model_says():
    model = IdentityFlow(1, (4, 4), mu=128.0, log_scale=3.0)
    images = structured_images(2000, 1, 4, 4, seed=9)
    codec = LosslessImageCodec(model)
    data = roundtrip(codec, images, stream=True)
    header = read_header(data)
    ideal = codec.ideal_bits(images, stream=True)
    assert ideal == pytest.approx(codec.ideal_bits(images), rel=1e-9)
    assert header.lane_count == math.ceil(2000 / 256)
    # the whole file: within 0.5% of the ideal, plus the lanes' framing and the header
    config = len(fkc.canonical_json(model.config))
    metadata = len(fkc.canonical_json({}))
    fixed = 64 + config + metadata + 16 + 4
    assert len(data) == fixed + header.records[0].length
    assert 8 * len(data) <= 1.005 * ideal + 96 * header.lane_count + 8 * fixed + 64, (8 * len(data), ideal)
    # per image, every tiny image pays for its own lane and table row
    assert len(codec.encode(images)) > len(data) + 2000 * (16 + 4)


def test_stream_bytes_do_not_depend_on_the_thread_count():
    codec = LosslessImageCodec(TwoStepFlow(3, (4, 4)), lanes=7)
    images = structured_images(30, 3, 6, 5)
    threads = torch.get_num_threads()
    try:
        torch.set_num_threads(1)
        one = codec.encode(images, stream=True)
        torch.set_num_threads(max(2, threads))
        many = codec.encode(images, stream=True)
        assert torch.equal(codec.decode(one), images)
    finally:
        torch.set_num_threads(threads)
    assert one == many == codec.encode(images, stream=True)
    # a batch-sensitive model: the decoder repeats the encoder's model calls
    roundtrip(LosslessImageCodec(BatchSensitiveFlow(3, (4, 4)), lanes=7), images, stream=True)


# A process that sets its thread counts, then encodes (or decodes) with a model: the shipped RGB
# photograph model, or the test fake TwoStepFlow (whose convolutions give other last bits on
# another thread count on AVX2 CPUs). argv = model, threads, "encode" | "decode", .npy, .fkc
_CODEC_PROCESS = """
import sys
import numpy as np
import torch

torch.set_num_threads(int(sys.argv[2]))
from flowkernels.codec import LosslessImageCodec, resolve_model
from tests.codec_fakes import TwoStepFlow

model = TwoStepFlow(3, (4, 4)) if sys.argv[1] == "fake" else resolve_model(sys.argv[1])
codec = LosslessImageCodec(model, lanes=7) if sys.argv[1] == "fake" else LosslessImageCodec(model)
if sys.argv[3] == "encode":
    open(sys.argv[5], "wb").write(codec.encode(torch.from_numpy(np.load(sys.argv[4])), stream=True))
else:
    decoded = codec.decode(open(sys.argv[5], "rb").read())
    assert torch.equal(decoded, torch.from_numpy(np.load(sys.argv[4]))), "decoded images differ"
print(torch.get_num_threads())
"""


def _codec_process(folder, model: str, threads: int, action: str, **env: str) -> None:
    files = [str(folder / "images.npy"), str(folder / "x.fkc")]
    done = subprocess.run(
        [sys.executable, "-c", _CODEC_PROCESS, model, str(threads), action, *files],
        cwd=Path(__file__).resolve().parents[1],
        env={**os.environ, **env},
        capture_output=True,
        text=True,
        timeout=600,
    )
    assert done.returncode == 0, done.stderr[-2000:]
    assert done.stdout.split()[-1] == str(threads)  # the codec restored the caller's setting


@pytest.mark.parametrize("model", ["fake", "photos-rgb"])
def test_a_stream_decodes_in_processes_with_other_thread_counts_and_cpu_paths(tmp_path, model):
    """Encode in one process and decode in others, where OMP_NUM_THREADS, torch.set_num_threads
    and flowkernels' CPU path differ. The models' convolutions are oneDNN's."""
    np.save(tmp_path / "images.npy", structured_images(2, 3, 40, 56, seed=11).numpy())
    _codec_process(tmp_path, model, 1, "encode", OMP_NUM_THREADS="1")
    first = (tmp_path / "x.fkc").read_bytes()
    _codec_process(tmp_path, model, 2, "decode", OMP_NUM_THREADS="2")
    _codec_process(tmp_path, model, 3, "decode", OMP_NUM_THREADS="1", FLOWKERNELS_CPU_ISA="baseline")
    _codec_process(tmp_path, model, 2, "encode", OMP_NUM_THREADS="2")
    assert (tmp_path / "x.fkc").read_bytes() == first
    _codec_process(tmp_path, model, 1, "decode", OMP_NUM_THREADS="1")


@pytest.fixture(scope="module")
def stream_sample():
    model = TwoStepFlow(1, (2, 2))
    images = structured_images(6, 1, 5, 4, seed=8)  # 6 patches per image, 36 in all
    codec = LosslessImageCodec(model, lanes=5, lane_patches=4)  # 9 lanes of 4
    return codec, images, codec.encode(images, stream=True)


@pytest.mark.parametrize(
    ("field", "value", "message"),
    [
        (2, 0, "CRC|trailing bytes|truncated|cannot hold"),  # no longer a stream: one table row for 6 images
        (2, 8, "unknown flags"),
        (4, 2**32 - 1, "cannot hold"),  # a stream of 2^32 images: caught before any allocation
        (4, 7, "cannot hold|corrupt"),
        (4, 5, "corrupt"),
        (13, 0, "lane patches = 0"),
        (13, 6, "lane patches = 6"),  # more than lanes
        (13, 3, "corrupt"),  # other lanes: the lane table or the coder's checks catch it
        (13, 5, "corrupt"),
        (10, 3, "lane patches = 4"),
    ],
)
def test_forged_stream_headers_are_rejected(stream_sample, field, value, message):
    codec, images, data = stream_sample
    fields = parts(data)[0]
    assert fields[13] == 4 and fields[2] & fkc.FLAG_STREAM
    fields[field] = value
    with pytest.raises(ValueError, match=message):
        codec.decode(forge(data, fields=fields))


def test_forged_stream_payloads_never_give_wrong_pixels(stream_sample):
    codec, images, data = stream_sample
    fields, config, metadata, table, end = parts(data)
    record = np.frombuffer(table, dtype=fkc._RECORD).copy()
    body = data[end:]

    def with_payload(new_body, pixel_crc=None):
        new = record.copy()
        new["length"], new["payload_crc"] = len(new_body), zlib.crc32(new_body)
        if pixel_crc is not None:
            new["pixel_crc"] = pixel_crc
        return forge(data, table=new.tobytes(), payload=new_body)

    assert codec.decode(with_payload(body)).equal(images)
    with pytest.raises(ValueError, match="pixel CRC"):
        codec.decode(with_payload(body, pixel_crc=record["pixel_crc"][0] ^ 1))
    with pytest.raises(ValueError, match="cannot hold"):
        codec.decode(with_payload(body[: 12 * 9 - 8]))
    # lane tables that promise more words than there are
    forged = bytearray(body)
    forged[0:4] = struct.pack("<I", 2**32 - 1)
    with pytest.raises(ValueError, match="lanes hold"):
        codec.decode(with_payload(bytes(forged)))
    generator = np.random.default_rng(1)
    for trial in range(20):
        forged = bytearray(body)
        start = 12 * 9 - 4 if trial % 2 else 4 * 8
        forged[start:] = generator.integers(0, 256, len(forged) - start, dtype=np.uint8).tobytes()
        with pytest.raises(ValueError):
            codec.decode(with_payload(bytes(forged)))
    # swapping two lanes of equal length: valid rANS data in the wrong place, caught by the pixel CRC or the coder
    payload = fkc.parse_lanes(body, 9)
    swapped = payload.take(np.array([1, 0, *range(2, 9)])).to_bytes()
    if swapped != body:
        with pytest.raises(ValueError):
            codec.decode(with_payload(swapped))


def test_shipped_models_are_registered_by_name():
    from flowkernels import pretrained

    names = pretrained.available()
    if not names:
        pytest.skip("no shipped models in this checkout")
    assert set(names) <= set(registry.MODELS)
    model = registry.resolve_model(names[0])
    assert model.patch_shape[0] in (1, 3) and not model.training
    with pytest.raises(ValueError, match="unknown shipped model"):
        pretrained.checkpoint_path("nope")


def test_cli_picks_the_shipped_model_when_none_is_named(tmp_path):
    from flowkernels.codec import registry as reg

    if "photos-gray" not in reg.MODELS:
        pytest.skip("the shipped grayscale model is not in this checkout")
    image = (np.add.outer(np.arange(40), np.arange(37)) * 3 % 256).astype(np.uint8)
    source, packed, back = tmp_path / "in.npy", tmp_path / "in.fkc", tmp_path / "out.npy"
    np.save(source, image)
    assert cli.main(["compress", str(source), "-o", str(packed), "--no-progress"]) == 0
    assert cli.main(["decompress", str(packed), "-o", str(back), "--no-progress"]) == 0
    assert np.array_equal(np.load(back), image)
    with pytest.raises(ValueError, match="not compressed with a shipped model"):
        reg.shipped_model_with_fingerprint(b"\0" * 16)
    with pytest.raises(ValueError, match="no shipped model compresses 2-channel"):
        reg.shipped_model_for_channels(2)


# -- the command line on folders and pipes ------------------------------------------------------------------


def _gray(seed: int, shape=(13, 22)) -> np.ndarray:
    return np.random.default_rng(seed).integers(0, 256, shape, dtype=np.uint8)


def test_cli_compresses_a_folder_recursively_and_prints_one_summary(tmp_path, fake_models, capsys):
    shots = tmp_path / "shots"
    (shots / "sub").mkdir(parents=True)
    images = {"a.png": _gray(1), "b.tif": _gray(2, (7, 9)), "sub/c.npy": _gray(3, (5, 6))}
    for name, array in images.items():
        if name.endswith(".npy"):
            np.save(shots / name, array)
        else:
            write_image(shots / name, torch.from_numpy(array)[None], "HW")
    (shots / "notes.txt").write_text("not an image: skipped")
    packed, restored = tmp_path / "packed", tmp_path / "restored"
    assert cli.main(["compress", str(shots), "-r", "-o", str(packed), "--model", "fake-gray"]) == 0
    table = capsys.readouterr().out
    assert sorted(p.relative_to(packed).as_posix() for p in packed.rglob("*.fkc")) == ["a.fkc", "b.fkc", "sub/c.fkc"]
    assert "bits/pixel" in table and "vs PNG" in table and "total (3 files)" in table
    methods = [line.split()[-2] for line in table.splitlines()[2:5]]
    assert "method" in table.splitlines()[0] and set(methods) <= {"stored", "context", "png", "flow"}, table
    assert cli.main(["decompress", str(packed), "-r", "-o", str(restored), "--model", "fake-gray"]) == 0
    for name, array in images.items():
        back = restored / Path(name).with_suffix(".png")
        assert np.array_equal(read_image(back)[0][0, 0].numpy(), array), name
    # without -r the sub-folder is left alone
    assert cli.main(["compress", str(shots), "-o", str(tmp_path / "flat"), "--model", "fake-gray"]) == 0
    assert sorted(p.name for p in (tmp_path / "flat").rglob("*.fkc")) == ["a.fkc", "b.fkc"]


def test_cli_keeps_going_past_a_bad_file_and_exits_1(tmp_path, fake_models, capsys):
    write_image(tmp_path / "good.png", torch.from_numpy(_gray(4))[None], "HW")
    (tmp_path / "bad.png").write_bytes(b"\x89PNG\r\n\x1a\n" + bytes(40))
    status = cli.main(
        ["compress", str(tmp_path / "good.png"), str(tmp_path / "bad.png"), "-o", str(tmp_path / "out"),
         "--model", "fake-gray"]
    )
    captured = capsys.readouterr()
    assert status == 1 and "bad.png" in captured.err and "1 of 2 files failed" in captured.err
    assert (tmp_path / "out" / "good.fkc").is_file() and not (tmp_path / "out" / "bad.fkc").exists()
    assert "good.png" in captured.out  # the summary lists what was done


def test_cli_compress_and_decompress_through_pipes(tmp_path, fake_models, monkeypatch, capsys):
    import io

    array = _gray(5, (9, 11))
    write_image(tmp_path / "in.png", torch.from_numpy(array)[None], "HW")

    def run_with_pipes(argv: list[str], stdin: bytes) -> bytes:
        out = io.BytesIO()
        monkeypatch.setattr(sys, "stdin", io.TextIOWrapper(io.BytesIO(stdin)))
        monkeypatch.setattr(sys, "stdout", io.TextIOWrapper(out))
        assert cli.main(argv) == 0
        sys.stdout.flush()
        return out.getvalue()

    argv = ["compress", "-", "-o", "-", "--model", "fake-gray", "--method", "flow"]
    packed = run_with_pipes(argv, (tmp_path / "in.png").read_bytes())
    header = read_image_header(packed)
    assert packed.startswith(b"FKIM") and header.method == "flow" and header.height == 9
    assert read_header(packed[header.payload_start : header.payload_end]).height == 9
    png = run_with_pipes(["decompress", "-", "-o", "-", "--model", "fake-gray"], packed)
    assert png.startswith(b"\x89PNG")
    (tmp_path / "back.png").write_bytes(png)
    assert np.array_equal(read_image(tmp_path / "back.png")[0][0, 0].numpy(), array)
    npy = run_with_pipes(["decompress", "-", "-o", "-", "--format", "npy", "--model", "fake-gray"], packed)
    (tmp_path / "back.npy").write_bytes(npy)
    assert np.array_equal(np.load(tmp_path / "back.npy"), array)
    assert "bits/pixel" in capsys.readouterr().err  # the table goes to stderr when stdout carries the data


def test_cli_batch_errors_are_one_line(tmp_path, fake_models, capsys):
    (tmp_path / "x").mkdir()
    (tmp_path / "y").mkdir()
    for folder in ("x", "y"):
        write_image(tmp_path / folder / "same.png", torch.from_numpy(_gray(6))[None], "HW")
    cases = [
        (["compress", str(tmp_path / "x"), str(tmp_path / "y"), "-o", str(tmp_path / "o")], "would both be written"),
        (["compress", str(tmp_path / "x"), "-", "-o", str(tmp_path / "o")], "stands for one file"),
        (["compress", str(tmp_path / "nothing"), str(tmp_path / "x"), "-o", str(tmp_path / "o")], "no such file"),
        (["compress", str(tmp_path / "x" / "same.png"), "-o", str(tmp_path / "o.fkc"), "--threads", "0"], "--threads"),
        (["decompress", str(tmp_path / "x"), "-o", str(tmp_path / "o")], "no .fkc files"),
    ]
    for argv, message in cases:
        assert cli.main([*argv, "--model", "fake-gray"]) == 1, argv
        err = capsys.readouterr().err
        assert message in err and len(err.strip().splitlines()) == 1, (argv, err)


def test_compress_file_and_decompress_file_in_python(tmp_path, fake_models):
    from flowkernels.codec import compress_file, decompress_file

    array = _gray(7, (10, 12))
    write_image(tmp_path / "in.pgm", torch.from_numpy(array)[None], "HW")
    done = compress_file(tmp_path / "in.pgm", tmp_path / "in.fkc", model="fake-gray", compare_png=True)
    assert done.output_bytes == (tmp_path / "in.fkc").stat().st_size and done.png_bytes > 0
    assert (done.channels, done.height, done.width) == (1, 10, 12) and done.input_bytes > 120
    assert done.bits_per_pixel(done.output_bytes) == 8 * done.output_bytes / 120
    with pytest.raises(ValueError, match="exists: pass --force"):
        compress_file(tmp_path / "in.pgm", tmp_path / "in.fkc", model="fake-gray")
    back = decompress_file(tmp_path / "in.fkc", tmp_path / "back.npy", model="fake-gray")
    assert back.input_bytes == done.output_bytes and np.array_equal(np.load(tmp_path / "back.npy"), array)
