"""The context family: the classical adaptive coder behind the image codec's safety net.

The kernel must write exactly the bytes of the pure-Python specification (flowkernels.reference.context),
round-trip every image exactly, and turn any stream that is not its own into a one-line ValueError,
never a crash, a hang or a huge allocation.
"""

from __future__ import annotations

import numpy as np
import pytest
import torch

from flowkernels.ops import context_decode, context_encode
from flowkernels.reference import context as reference


def _photo(name: str) -> np.ndarray:
    data = pytest.importorskip("skimage.data")
    image = getattr(data, name)()
    return image[None] if image.ndim == 2 else np.ascontiguousarray(image.transpose(2, 0, 1))


def _shared_noise_image() -> np.ndarray:
    """Two channels with different curved gradients and the same noise: the encoder links channel 1 by
    adding all of channel 0's prediction error (mode 2); found by a seeded search."""
    rng = np.random.default_rng(0)
    y, x = np.mgrid[0:14, 0:15]
    for _ in range(197):
        a, b, c, d = rng.uniform(-8, 8, 4)
        noise = rng.integers(-15, 16, (14, 15))
    first = 128 + a * x + b * y + 0.3 * a * x * y / 5 + noise
    second = 100 + c * x + d * y + 0.8 * (y - 7) ** 2 + noise
    return np.clip(np.stack([first, second]), 0, 255).astype(np.uint8)


def _small_images() -> dict[str, np.ndarray]:
    rng = np.random.default_rng(7)
    smooth = np.add.outer(np.arange(11), 2 * np.arange(13)).astype(np.uint8)[None]
    return {
        "noise": rng.integers(0, 256, (1, 9, 7), dtype=np.uint8),
        "camera crop": _photo("camera")[:, 100:120, 200:223].copy(),
        "astronaut crop (RGB)": _photo("astronaut")[:, 100:116, 100:113].copy(),
        "constant, 2 channels": np.zeros((2, 5, 6), np.uint8),
        "one pixel": np.full((1, 1, 1), 255, np.uint8),
        "one row": rng.integers(0, 256, (1, 1, 17), dtype=np.uint8),
        "one column": rng.integers(0, 256, (1, 17, 1), dtype=np.uint8),
        "two levels": (rng.random((1, 12, 12)) < 0.3).astype(np.uint8) * 255,
        "gradient, 4 channels": np.concatenate([smooth, 255 - smooth, smooth // 2, smooth * 0 + 9]),
        "every value": np.arange(256, dtype=np.uint8).reshape(1, 16, 16),
        "shared noise, 2 channels": _shared_noise_image(),
    }


def test_the_small_images_use_every_kind_of_channel_link():
    modes = set()
    for image in _small_images().values():
        modes.update(context_encode(torch.from_numpy(image))[: image.shape[0] - 1].tolist())
    assert modes == {0, 1, 2, 3}  # alone; half, all of the reference's error; the difference


@pytest.mark.parametrize("name", list(_small_images()))
def test_kernel_writes_the_specifications_bytes_and_both_decode_them(name):
    image = _small_images()[name]
    stream = context_encode(torch.from_numpy(image))
    expected = reference.encode(image)
    assert stream.numpy().tobytes() == expected
    assert torch.equal(context_decode(stream, image.shape), torch.from_numpy(image))
    assert np.array_equal(reference.decode(expected, *image.shape), image)


@pytest.mark.parametrize("name", ["camera", "moon", "coins", "text", "astronaut", "chelsea"])
def test_round_trip_of_whole_photographs(name):
    image = torch.from_numpy(_photo(name))
    stream = context_encode(image)
    assert torch.equal(context_decode(stream, image.shape), image)


@pytest.mark.parametrize(
    "make",
    [
        lambda rng: np.zeros((1, 64, 64), np.uint8),
        lambda rng: np.full((3, 33, 31), 255, np.uint8),
        lambda rng: (np.indices((40, 40)).sum(0) % 2 * 255).astype(np.uint8)[None],
        lambda rng: rng.integers(0, 256, (3, 50, 40), dtype=np.uint8),
        lambda rng: rng.integers(0, 2, (2, 30, 70), dtype=np.uint8),
        lambda rng: np.ascontiguousarray(rng.integers(0, 256, (1, 300, 1), dtype=np.uint8)),
    ],
    ids=["zeros", "255s", "checkerboard", "noise RGB", "binary 2-channel", "tall column"],
)
def test_round_trip_of_extreme_images(make):
    image = torch.from_numpy(make(np.random.default_rng(3)))
    assert torch.equal(context_decode(context_encode(image), image.shape), image)


def test_non_contiguous_input_is_coded_as_its_values():
    image = torch.from_numpy(_photo("astronaut")[:, :64, :48])
    view = image.permute(0, 2, 1)
    assert torch.equal(context_encode(view), context_encode(view.contiguous()))


def test_compresses_a_photograph_and_noise_costs_about_eight_bits():
    camera = torch.from_numpy(_photo("camera"))
    assert 8 * context_encode(camera).numel() / camera.numel() < 4.0  # PNG takes 4.43 bits/pixel
    noise = torch.randint(0, 256, (1, 128, 128), dtype=torch.uint8, generator=torch.Generator().manual_seed(0))
    # adapting 12 contexts to uniform errors costs about 1.6% (8.125): the codec stores such images raw
    assert 8 * context_encode(noise).numel() / noise.numel() < 8.2


@pytest.mark.parametrize(
    "image, message",
    [
        (torch.zeros(4, 4, dtype=torch.uint8), r"must be \[C, H, W\]"),
        (torch.zeros(1, 4, 4), "must be uint8"),
        (torch.zeros(1, 0, 4, dtype=torch.uint8), r"must be \[C, H, W\]"),
        (torch.zeros(86, 2, 2, dtype=torch.uint8), "1 <= C <= 85"),
        (torch.zeros(1, 4, 4, dtype=torch.uint8, device="meta"), "must be on the CPU|meta"),
    ],
)
def test_encode_rejects_bad_images(image, message):
    with pytest.raises((ValueError, RuntimeError, NotImplementedError), match=message):
        context_encode(image)


def _stream() -> tuple[torch.Tensor, tuple[int, int, int]]:
    image = torch.from_numpy(_photo("astronaut")[:, 200:232, 200:240].copy())
    return context_encode(image), tuple(image.shape)


def test_every_truncation_is_refused():
    stream, shape = _stream()
    for length in range(0, stream.numel(), 7):
        with pytest.raises(ValueError, match="flowkernels.context_decode"):
            context_decode(stream[:length].clone(), shape)


def test_corrupted_streams_raise_or_decode_to_some_image_without_crashing():
    stream, shape = _stream()
    rng = np.random.default_rng(0)
    refused = 0
    for _ in range(200):
        damaged = stream.clone()
        damaged[int(rng.integers(damaged.numel()))] ^= int(rng.integers(1, 256))
        try:
            out = context_decode(damaged, shape)
        except ValueError:
            refused += 1
        else:
            assert out.shape == shape and out.dtype == torch.uint8
    # the final-state check catches nearly every change; the codec's CRC catches the rest
    assert refused >= 190


def test_random_bytes_at_random_shapes_raise_or_decode_never_crash():
    rng = np.random.default_rng(5)
    for _ in range(300):
        shape = tuple(int(v) for v in (rng.integers(1, 4), rng.integers(1, 40), rng.integers(1, 40)))
        data = torch.from_numpy(rng.integers(0, 256, int(rng.integers(0, 200)), dtype=np.uint8))
        try:
            image = context_decode(data, shape)
        except ValueError:
            continue
        assert tuple(image.shape) == shape


def test_decode_rejects_hostile_shapes_and_modes():
    stream, shape = _stream()
    with pytest.raises(ValueError, match="cannot hold"):
        context_decode(stream, (1, 1 << 30, 1 << 30))
    with pytest.raises(ValueError, match="1 <= channels <= 85"):
        context_decode(stream, (0, 4, 4))
    with pytest.raises(ValueError, match="height, width"):
        context_decode(stream, (1, -3, 4))
    bad_mode = stream.clone()
    bad_mode[1] = 7  # channel 2 has modes 0 to 6
    with pytest.raises(ValueError, match="has mode 7"):
        context_decode(bad_mode, shape)
    with pytest.raises(ValueError, match="1-D uint8 CPU tensor"):
        context_decode(stream.to(torch.int32), shape)


def test_a_stream_decodes_only_at_its_own_shape():
    stream, (c, h, w) = _stream()
    for other in [(c, h, w + 1), (c, h - 1, w), (c - 1, h, w)]:
        with pytest.raises(ValueError):
            context_decode(stream, other)


def test_cuda_tensors_are_refused_with_a_message_not_a_dispatch_error(monkeypatch):
    from flowkernels.ops import context as context_ops

    class FakeCuda:  # a stand-in with a CUDA device: the check must not need a GPU to be tested
        device = torch.device("cuda", 0)

    with pytest.raises(ValueError, match="runs on the CPU"):
        context_ops._check_not_cuda("context_encode", "image", FakeCuda())
    assert set(context_ops.CPU_ONLY_OPS) == {"context_encode", "context_decode"}


def test_opcheck():
    image = torch.from_numpy(_small_images()["gradient, 4 channels"])
    stream = context_encode(image)
    torch.library.opcheck(torch.ops.flowkernels.context_encode.default, (image,))
    torch.library.opcheck(torch.ops.flowkernels.context_decode.default, (stream, *image.shape))


def test_fake_kernels_under_torch_compile():
    image = torch.from_numpy(_photo("camera")[:, :32, :32].copy())
    compiled = torch.compile(lambda x: context_decode(context_encode(x), x.shape), fullgraph=False)
    assert torch.equal(compiled(image), image)
    from torch._subclasses.fake_tensor import FakeTensorMode
    from torch.fx.experimental.symbolic_shapes import ShapeEnv

    with FakeTensorMode(shape_env=ShapeEnv()) as mode:
        fake = mode.from_tensor(image)
        assert context_decode(context_encode(fake), (1, 32, 32)).shape == (1, 32, 32)
