"""Tests of the flow layers: invertible convs (1x1, emerging, periodic), ActNorm, AffineCoupling, Squeeze.

Every layer is made non-trivial first (parameters perturbed away from their near-identity initialisation),
then checked for exact invertibility in both directions and for its log-determinant against the
log-determinant of the full Jacobian from autograd. The periodic conv is also checked against an explicit
dense circulant matrix, and the 1x1 conv's cached inverse against a fresh one.
"""

from __future__ import annotations

import math
from collections.abc import Callable

import pytest
import torch
import torch.nn.functional as F

from flowkernels.nn import (
    ActNorm,
    AffineCoupling,
    EmergingConv2d,
    FlowLayer,
    FlowSequential,
    Invertible1x1Conv,
    PeriodicConv2d,
    Squeeze,
)

TOLERANCE = {torch.float32: 1e-5, torch.float64: 1e-10}

# name -> factory(channels); kernel sizes 1, 3, 5 where the layer has one.
LAYERS: dict[str, Callable[[int], FlowLayer]] = {
    "1x1-lu": lambda c: Invertible1x1Conv(c),
    "1x1-plain": lambda c: Invertible1x1Conv(c, lu=False),
    "emerging-k1": lambda c: EmergingConv2d(c, 1),
    "emerging-k3": lambda c: EmergingConv2d(c, 3),
    "emerging-k5": lambda c: EmergingConv2d(c, 5),
    "periodic-k1": lambda c: PeriodicConv2d(c, 1),
    "periodic-k3": lambda c: PeriodicConv2d(c, 3),
    "periodic-k5": lambda c: PeriodicConv2d(c, 5),
    "actnorm": lambda c: ActNorm(c),
    "coupling": lambda c: AffineCoupling(c, 8),
}

# (batch, height, width): batch 1 and 2, non-square images.
SHAPES = [(1, 4, 5), (2, 3, 6)]


def make_layer(name: str, channels: int, dtype: torch.dtype, height: int = 4, width: int = 5) -> FlowLayer:
    """A layer of LAYERS in ``dtype`` with every parameter perturbed by seeded noise (so it is not identity).

    ActNorm is first initialised on a shifted, scaled batch so its data-dependent parameters are non-trivial.
    """
    torch.manual_seed(0)
    layer = LAYERS[name](channels).to(dtype)
    if isinstance(layer, ActNorm):
        layer(torch.randn(8, channels, height, width, dtype=dtype) * 3 + 1)
    generator = torch.Generator().manual_seed(1)
    with torch.no_grad():
        for parameter in layer.parameters():
            parameter.add_(torch.randn(parameter.shape, generator=generator, dtype=dtype) * 0.1)
    return layer


def random_input(batch: int, channels: int, height: int, width: int, dtype: torch.dtype) -> torch.Tensor:
    return torch.randn(batch, channels, height, width, generator=torch.Generator().manual_seed(2), dtype=dtype)


@pytest.mark.parametrize("name", LAYERS)
@pytest.mark.parametrize("channels", [3, 5])
@pytest.mark.parametrize("shape", SHAPES, ids=lambda s: "x".join(map(str, s)))
@pytest.mark.parametrize("dtype", [torch.float32, torch.float64], ids=["float32", "float64"])
def test_round_trip(name, channels, shape, dtype):
    batch, height, width = shape
    layer = make_layer(name, channels, dtype, height, width)
    x = random_input(batch, channels, height, width, dtype)
    with torch.no_grad():
        z, logdet = layer(x)
        assert z.shape == x.shape and z.dtype == dtype
        assert logdet.shape == (batch,) and logdet.dtype == dtype
        # Non-trivial: the layer really moves the input.
        assert (z - x).abs().max() > 1e-2
        torch.testing.assert_close(layer.inverse(z), x, rtol=0, atol=TOLERANCE[dtype])
        torch.testing.assert_close(layer(layer.inverse(x))[0], x, rtol=0, atol=TOLERANCE[dtype])


def jacobian_logdets(layer: FlowLayer, x: torch.Tensor) -> torch.Tensor:
    """log|det J| of ``layer`` at each sample of ``x`` separately, from the dense autograd Jacobian."""
    logdets = []
    for i in range(x.shape[0]):
        sample = x[i : i + 1]
        jacobian = torch.autograd.functional.jacobian(lambda t: layer(t)[0], sample)
        logdets.append(torch.linalg.slogdet(jacobian.reshape(sample.numel(), sample.numel())).logabsdet)
    return torch.stack(logdets)


@pytest.mark.parametrize("name", LAYERS)
@pytest.mark.parametrize("channels", [2, 3])
def test_logdet_matches_autograd_jacobian(name, channels):
    layer = make_layer(name, channels, torch.float64, 3, 4)
    x = random_input(2, channels, 3, 4, torch.float64)  # 3x4 with k = 5: periodic taps wrap around
    expected = jacobian_logdets(layer, x)
    assert expected.abs().min() > 1e-2  # a non-trivial Jacobian
    torch.testing.assert_close(layer(x)[1], expected, rtol=1e-10, atol=1e-10)


def test_coupling_logdet_depends_on_the_sample():
    layer = make_layer("coupling", 3, torch.float64, 3, 4)
    x = random_input(2, 3, 3, 4, torch.float64)
    logdet = layer(x)[1]
    assert (logdet[0] - logdet[1]).abs() > 1e-3
    torch.testing.assert_close(logdet, jacobian_logdets(layer, x), rtol=1e-10, atol=1e-10)


def dense_circulant(weight: torch.Tensor, height: int, width: int) -> torch.Tensor:
    """The (C H W) x (C H W) matrix of a periodic cross-correlation, built tap by tap with wrap-around."""
    channels, _, k, _ = weight.shape
    p = k // 2
    matrix = torch.zeros(channels, height, width, channels, height, width, dtype=weight.dtype)
    for co in range(channels):
        for ci in range(channels):
            for i in range(height):
                for j in range(width):
                    for a in range(-p, p + 1):
                        for b in range(-p, p + 1):
                            matrix[co, i, j, ci, (i + a) % height, (j + b) % width] += weight[co, ci, a + p, b + p]
    n = channels * height * width
    return matrix.reshape(n, n)


@pytest.mark.parametrize("kernel_size", [1, 3, 5])
@pytest.mark.parametrize("size", [(3, 4), (4, 4), (2, 3)], ids=lambda s: f"{s[0]}x{s[1]}")
def test_periodic_matches_dense_circulant(kernel_size, size):
    height, width = size
    layer = make_layer(f"periodic-k{kernel_size}", 2, torch.float64, height, width)
    matrix = dense_circulant(layer.weight.detach(), height, width)
    x = random_input(2, 2, height, width, torch.float64)
    z, logdet = layer(x)
    torch.testing.assert_close(z.reshape(2, -1), x.reshape(2, -1) @ matrix.T, rtol=1e-12, atol=1e-12)
    expected = torch.linalg.slogdet(matrix).logabsdet
    torch.testing.assert_close(logdet, expected.expand(2), rtol=1e-10, atol=1e-10)


def test_periodic_forward_is_circular_conv2d():
    layer = make_layer("periodic-k3", 3, torch.float64)
    x = random_input(2, 3, 4, 5, torch.float64)
    expected = F.conv2d(F.pad(x, (1, 1, 1, 1), mode="circular"), layer.weight)
    torch.testing.assert_close(layer(x)[0], expected, rtol=0, atol=1e-14)


def test_periodic_logdet_depends_on_image_size():
    layer = make_layer("periodic-k3", 2, torch.float64)
    small = layer(random_input(1, 2, 3, 4, torch.float64))[1]
    large = layer(random_input(1, 2, 6, 8, torch.float64))[1]
    assert (small - large).abs() > 1e-3
    expected = torch.linalg.slogdet(dense_circulant(layer.weight.detach(), 6, 8)).logabsdet
    torch.testing.assert_close(large, expected[None], rtol=1e-10, atol=1e-10)


def test_emerging_mask_and_logdet():
    """The centre diagonals of both masked convs enter the logdet; other masked-out entries change nothing."""
    layer = make_layer("emerging-k3", 3, torch.float64)
    x = random_input(1, 3, 4, 5, torch.float64)
    z, logdet = layer(x)
    with torch.no_grad():
        layer.w1[:, :, 2, :] += 5.0  # the bottom row is outside the forward mask
        layer.w2[:, :, 0, :] += 5.0  # the top row is outside the reverse mask
        layer.w2[1, 1, 1, 1] *= 2.0  # a centre diagonal: changes the logdet by H * W * log 2
    z2, logdet2 = layer(x)
    assert (z2 - z).abs().max() > 1e-3
    torch.testing.assert_close(logdet2 - logdet, torch.full((1,), 4 * 5 * math.log(2.0), dtype=torch.float64))
    torch.testing.assert_close(layer.inverse(z2), x, rtol=0, atol=1e-10)


@pytest.mark.parametrize("lu", [True, False], ids=["lu", "plain"])
def test_1x1_cached_inverse_in_eval_mode(lu):
    torch.manual_seed(0)
    layer = Invertible1x1Conv(4, lu=lu)
    x = torch.randn(2, 4, 3, 5)
    with torch.no_grad():
        fresh = layer.inverse(x)  # training mode: no cache
    assert layer._inverse_cache is None
    layer.eval()
    with torch.no_grad():
        cached = layer.inverse(x)
        first = layer.inverse_matrix()
        assert layer.inverse_matrix() is first  # reused while the parameters are unchanged
    torch.testing.assert_close(cached, fresh, rtol=0, atol=0)

    # An optimizer step in eval mode bumps the parameters' version counters: the cache must refresh.
    optimizer = torch.optim.SGD(layer.parameters(), lr=0.05)
    z, logdet = layer(x)
    (z.square().mean() - logdet.mean() / z[0].numel()).backward()
    optimizer.step()
    with torch.no_grad():
        updated = layer.inverse_matrix()
        assert updated is not first
        torch.testing.assert_close(updated, torch.linalg.inv(layer.matrix()), rtol=0, atol=0)
        assert (updated - first).abs().max() > 1e-3
        torch.testing.assert_close(layer.inverse(layer(x)[0]), x, rtol=0, atol=1e-5)
    layer.eval()  # staying in eval mode keeps a valid cache; entering training mode drops it
    assert layer._inverse_cache is not None
    layer.train()
    assert layer._inverse_cache is None


def test_1x1_cache_follows_dtype_and_explicit_invalidation():
    torch.manual_seed(0)
    layer = Invertible1x1Conv(3).eval()
    with torch.no_grad():
        first = layer.inverse_matrix()
        layer.double()
        assert layer.inverse_matrix().dtype == torch.float64
        # Edits through .data bypass the version counter; invalidate_cache is the documented remedy.
        layer.log_s.data += 0.5
        layer.invalidate_cache()
        torch.testing.assert_close(layer.inverse_matrix(), torch.linalg.inv(layer.matrix()), rtol=0, atol=0)
    assert (layer.inverse_matrix().float() - first).abs().max() > 1e-2


def test_1x1_inverse_with_grad_is_not_cached():
    torch.manual_seed(0)
    layer = Invertible1x1Conv(3).eval()
    z = torch.randn(1, 3, 2, 2)
    for _ in range(2):  # a cached tensor with a graph would fail the second backward
        layer.inverse(z).sum().backward()
    assert layer._inverse_cache is None
    assert layer.log_s.grad is not None


def test_1x1_lu_starts_as_a_rotation():
    torch.manual_seed(0)
    layer = Invertible1x1Conv(5)
    matrix = layer.matrix().detach()
    torch.testing.assert_close(matrix @ matrix.T, torch.eye(5), rtol=0, atol=1e-5)
    assert layer.log_abs_det().abs() < 1e-5


def test_actnorm_data_init_standardises_and_persists():
    torch.manual_seed(0)
    x = torch.randn(16, 3, 4, 5) * torch.tensor([0.5, 2.0, 7.0]).view(1, 3, 1, 1) + 3.0
    layer = ActNorm(3)
    z, logdet = layer(x)
    torch.testing.assert_close(z.mean(dim=(0, 2, 3)), torch.zeros(3), rtol=0, atol=1e-5)
    torch.testing.assert_close(z.std(dim=(0, 2, 3), unbiased=False), torch.ones(3), rtol=0, atol=1e-5)
    # A second batch does not re-initialise; a loaded state does not either.
    layer(x * 10)
    torch.testing.assert_close(layer(x)[0], z)
    restored = ActNorm(3)
    restored.load_state_dict(layer.state_dict())
    torch.testing.assert_close(restored(x * 10)[0], layer(x * 10)[0])


def test_actnorm_without_data_init_starts_as_identity():
    layer = ActNorm(3, data_init=False)
    x = torch.randn(2, 3, 4, 4)
    z, logdet = layer(x)
    assert torch.equal(z, x) and torch.equal(logdet, torch.zeros(2))


def test_coupling_starts_as_a_fixed_scaling():
    torch.manual_seed(0)
    layer = AffineCoupling(5, 8)  # 2 channels condition, 3 are scaled
    x = torch.randn(2, 5, 3, 4)
    z, logdet = layer(x)
    scale = torch.sigmoid(torch.tensor(2.0))
    assert torch.equal(z[:, :2], x[:, :2])
    torch.testing.assert_close(z[:, 2:], x[:, 2:] * scale)
    torch.testing.assert_close(logdet, torch.full((2,), 3 * 3 * 4 * torch.log(scale).item()))


def test_squeeze_layout_and_round_trip():
    x = torch.arange(2 * 3 * 4 * 6, dtype=torch.float32).reshape(2, 3, 4, 6)
    z, logdet = Squeeze()(x)
    assert z.shape == (2, 12, 2, 3) and torch.equal(logdet, torch.zeros(2))
    for c in range(3):
        for i in range(2):
            for j in range(2):
                assert torch.equal(z[:, 4 * c + 2 * i + j], x[:, c, i::2, j::2])
    assert torch.equal(Squeeze().inverse(z), x)


def test_flow_sequential_adds_logdets_and_inverts():
    torch.manual_seed(0)
    chain = FlowSequential(ActNorm(4), Invertible1x1Conv(4), PeriodicConv2d(4), Squeeze(), AffineCoupling(16, 8))
    x = torch.randn(2, 4, 4, 6, dtype=torch.float64)
    chain = chain.double()
    z, logdet = chain(x)
    expected, h = torch.zeros(2, dtype=torch.float64), x
    for layer in chain.layers:
        h, layer_logdet = layer(h)
        expected = expected + layer_logdet
    torch.testing.assert_close(logdet, expected, rtol=0, atol=0)
    torch.testing.assert_close(chain.inverse(z), x, rtol=0, atol=1e-10)


@pytest.mark.parametrize(
    ("make", "shape", "message"),
    [
        (lambda: EmergingConv2d(3, 4), None, "kernel_size must be odd"),
        (lambda: PeriodicConv2d(3, 2), None, "kernel_size must be odd"),
        (lambda: AffineCoupling(1, 8), None, "at least 2 channels"),
        (lambda: Invertible1x1Conv(3), (1, 4, 2, 2), r"Invertible1x1Conv: input must be \[B, 3, H, W\]"),
        (lambda: EmergingConv2d(3), (1, 3, 2), r"EmergingConv2d: input must be \[B, 3, H, W\]"),
        (lambda: PeriodicConv2d(3), (1, 2, 2, 2), r"PeriodicConv2d: input must be \[B, 3, H, W\]"),
        (lambda: ActNorm(3), (1, 4, 2, 2), r"ActNorm: input must be \[B, 3, H, W\]"),
        (lambda: Squeeze(), (1, 1, 3, 4), "height and width must be even"),
    ],
)
def test_bad_arguments_raise(make, shape, message):
    with pytest.raises(ValueError, match=message):
        layer = make()
        layer(torch.zeros(shape))
