"""Hexagonal layers (flowkernels.nn.hex) and the HexNet classifier (flowkernels.models.hexnet).

Equivariance is checked exactly (to rounding) on the hexagonal domain of flowkernels.hex.hex_domain_mask, with
biases, ReLUs and several layers, in float32 (1e-5) and float64 (1e-10).
"""

from __future__ import annotations

import importlib.util
from pathlib import Path

import pytest
import torch
from torch import nn

from flowkernels import ops
from flowkernels.hex import hex_domain_mask, hex_mask, mirror, rectangle_in_hex_mask, rotate60
from flowkernels.models.hexnet import (
    HEX_SCALE,
    LATTICES,
    SQUARE_LATTICES,
    HexNet,
    _expected_parameters,
    count_parameters,
    width_for_budget,
)
from flowkernels.models.hexnet_training import (
    digit_labels,
    hex_digits,
    square_digits,
    square_transform,
    task_data,
    train_hexnet,
)
from flowkernels.nn import (
    GroupPool,
    HexAvgPool2d,
    HexBatchNorm,
    HexConv2d,
    HexMaxPool2d,
    P6ConvP6,
    P6ConvZ2,
    P6MConvP6M,
    P6MConvZ2,
)

from .conftest import every_cpu_isa

pytestmark = every_cpu_isa

TOLERANCE = {torch.float32: 1e-5, torch.float64: 1e-10}
needs_sklearn = pytest.mark.skipif(importlib.util.find_spec("sklearn") is None, reason="needs scikit-learn")

# (lifting layer, G -> G layer, G, has mirrors)
GROUPS = {"p6": (P6ConvZ2, P6ConvP6, 6, False), "p6m": (P6MConvZ2, P6MConvP6M, 12, True)}


def assert_close(actual: torch.Tensor, expected: torch.Tensor, dtype: torch.dtype) -> None:
    torch.testing.assert_close(actual, expected, atol=TOLERANCE[dtype], rtol=0)


def randomise(module: nn.Module, seed: int = 7) -> nn.Module:
    """Give every bias and batch-norm affine parameter a non-trivial value (they start at 0 / 1)."""
    generator = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for name, parameter in module.named_parameters():
            if parameter.dim() == 1:
                parameter.copy_(torch.randn(parameter.shape, generator=generator, dtype=parameter.dtype) * 0.5)
                if name.endswith("weight"):  # batch-norm scale: keep away from 0
                    parameter.add_(1.0)
    return module


def domain_input(shape, dtype, seed: int = 0) -> torch.Tensor:
    """Random values supported on the hexagonal domain of the last two dims."""
    x = torch.randn(shape, generator=torch.Generator().manual_seed(seed), dtype=dtype)
    return x * hex_domain_mask(shape[-1]).to(dtype)


def shift(x: torch.Tensor, du: int, dv: int) -> torch.Tensor:
    """Translate by the axial offset (du, dv): ``out[.., u, v] = x[.., u - du, v - dv]``, zero where vacated."""
    out = torch.zeros_like(x)
    H, W = x.shape[-2:]
    out[..., max(du, 0) : H + min(du, 0), max(dv, 0) : W + min(dv, 0)] = x[
        ..., max(-du, 0) : H + min(-du, 0), max(-dv, 0) : W + min(-dv, 0)
    ]
    return out


def interior(x: torch.Tensor, margin: int) -> torch.Tensor:
    return x[..., margin:-margin, margin:-margin]


# ---------------------------------------------------------------------------
# Convolutions


@pytest.mark.parametrize("radius", [1, 2])
def test_hex_conv2d_layer_is_translation_equivariant(dtype, radius):
    torch.manual_seed(0)
    layers = nn.Sequential(HexConv2d(3, 5, radius), nn.ReLU(), HexConv2d(5, 4, radius)).to(dtype)
    randomise(layers)
    x = torch.randn(2, 3, 15, 15, dtype=dtype)
    for du, dv in [(1, 0), (0, -2), (1, -1), (-2, 1)]:
        margin = 2 * radius + max(abs(du), abs(dv))
        assert_close(interior(layers(shift(x, du, dv)), margin), interior(shift(layers(x), du, dv), margin), dtype)


def test_hex_conv2d_layer_calls_the_op_with_its_parameters():
    torch.manual_seed(0)
    layer = randomise(HexConv2d(3, 4, 2))
    x = torch.randn(2, 3, 9, 9)
    torch.testing.assert_close(layer(x), ops.hex_conv2d(x, layer.weight, layer.bias), atol=0, rtol=0)
    assert layer.weight.shape == (4, 3, 5, 5) and layer.bias.shape == (4,)


@pytest.mark.parametrize("group", ["p6", "p6m"])
def test_group_layers_are_rotation_equivariant_on_the_hex_domain(dtype, group):
    lift, gconv, G, has_mirror = GROUPS[group]
    torch.manual_seed(0)
    N = 11
    mask = hex_domain_mask(N).to(dtype)
    stack = [lift(3, 4), gconv(4, 4), gconv(4, 3, radius=2)]
    for layer in stack:
        randomise(layer.to(dtype))

    def net(x):  # Z2 -> G -> G -> G with bias, ReLU and the domain mask after every layer
        h = x
        for i, layer in enumerate(stack):
            h = layer(h) * mask
            if i < len(stack) - 1:
                h = torch.relu(h)
        return h

    x = domain_input((2, 3, N, N), dtype)
    y = net(x)
    assert y.shape == (2, 3, G, N, N)
    for k in range(1, 6):
        assert_close(net(rotate60(x, k)), rotate60(y, k), dtype)
    if has_mirror:
        assert_close(net(mirror(x)), mirror(y), dtype)
        assert_close(net(mirror(rotate60(x, 2))), mirror(rotate60(y, 2)), dtype)
    # The single G -> G layer on a group input, too.
    g = domain_input((2, 4, G, N, N), dtype, seed=1)
    assert_close(stack[1](rotate60(g)) * mask, rotate60(stack[1](g) * mask), dtype)


@pytest.mark.parametrize("group", ["p6", "p6m"])
def test_group_layers_are_translation_equivariant(dtype, group):
    lift, gconv, G, _ = GROUPS[group]
    torch.manual_seed(1)
    first, second = randomise(lift(2, 3).to(dtype)), randomise(gconv(3, 2).to(dtype))

    def net(x):
        return second(torch.relu(first(x)))

    x = torch.randn(2, 2, 14, 12, dtype=dtype)
    for du, dv in [(1, 0), (0, 1), (-1, 2), (2, -1)]:
        margin = 2 + max(abs(du), abs(dv))
        assert_close(interior(net(shift(x, du, dv)), margin), interior(shift(net(x), du, dv), margin), dtype)


@pytest.mark.parametrize("layer_cls", [HexConv2d, P6ConvZ2, P6ConvP6, P6MConvZ2, P6MConvP6M])
def test_conv_layer_parameters_and_he_init(layer_cls):
    torch.manual_seed(0)
    layer = layer_cls(16, 24, radius=2)
    g_in = {HexConv2d: 1, P6ConvZ2: 1, P6MConvZ2: 1, P6ConvP6: 6, P6MConvP6M: 12}[layer_cls]
    expected = (24, 16, 5, 5) if layer_cls is HexConv2d else (24, 16, g_in, 5, 5)
    assert layer.weight.shape == expected and layer.bias.shape == (24,)
    assert torch.count_nonzero(layer.bias) == 0
    live = hex_mask(2)
    assert torch.count_nonzero(layer.weight[..., ~live]) == 0  # dead corners start at zero
    fan_in = 16 * g_in * 19  # 3 R^2 + 3 R + 1 = 19 live taps
    assert layer.fan_in == fan_in
    std = layer.weight[..., live].std().item()
    assert abs(std - (2.0 / fan_in) ** 0.5) < 0.05 * (2.0 / fan_in) ** 0.5
    assert layer.free_parameters() == layer.weight.numel() // 25 * 19 + 24
    assert HexConv2d(3, 4, bias=False).bias is None


def test_group_conv_layer_output_matches_the_op():
    torch.manual_seed(0)
    layer = randomise(P6MConvP6M(2, 3))
    x = torch.randn(2, 2, 12, 7, 7)
    expected = ops.hex_group_conv2d(x, layer.weight, layer.bias, in_group="p6m", out_group="p6m")
    torch.testing.assert_close(layer(x), expected, atol=0, rtol=0)


# ---------------------------------------------------------------------------
# Pooling


@pytest.mark.parametrize("N", [5, 9, 13])
@pytest.mark.parametrize("shape", [(2, 3), (2, 3, 6), (2, 2, 12)], ids=["planar", "p6", "p6m"])
def test_hex_pools_commute_with_rotations_and_mirrors(dtype, N, shape):
    domain = hex_domain_mask(N)
    signed = domain_input((*shape, N, N), dtype, seed=N)
    out_mask = hex_domain_mask((N + 1) // 2).to(dtype)
    cases = [
        (HexMaxPool2d(mask=domain), signed),
        (HexAvgPool2d(mask=domain), signed),
        (HexAvgPool2d(count_include_pad=True), signed),
        # Without a mask the max pool's out-of-array padding (-inf) and the zeros outside the domain inside
        # the array must not differ: true for maps >= 0 on the domain, such as ReLU outputs.
        (HexMaxPool2d(), signed.abs()),
    ]
    for pool, x in cases:
        y = pool(x) * out_mask
        assert y.shape == (*shape, (N + 1) // 2, (N + 1) // 2)
        for k in range(1, 6):
            assert_close(pool(rotate60(x, k)) * out_mask, rotate60(y, k), dtype)
        if len(shape) == 2 or shape[2] == 12:
            assert_close(pool(mirror(x)) * out_mask, mirror(y), dtype)
            assert_close(pool(mirror(rotate60(x, 3))) * out_mask, mirror(rotate60(y, 3)), dtype)


@pytest.mark.parametrize("layer_type", [HexConv2d, P6ConvZ2, P6MConvZ2])
def test_stride_2_keeps_the_even_sublattice_and_commutes_with_rotations(dtype, layer_type):
    torch.manual_seed(0)
    strided = layer_type(2, 3, stride=2).to(dtype)
    dense = layer_type(2, 3).to(dtype)
    dense.load_state_dict(strided.state_dict())
    x = domain_input((2, 2, 9, 9), dtype)
    y = strided(x)
    assert y.shape[-2:] == (5, 5) and "stride=2" in repr(strided)
    assert torch.equal(y, dense(x)[..., ::2, ::2])
    if layer_type is not HexConv2d:  # the group layers rotate their output with the input
        assert_close(strided(rotate60(x, 1)), rotate60(y, 1), dtype)


def test_hex_pools_reduce_the_hexagon_around_each_even_cell():
    """An impulse at (u, v) reaches exactly the outputs (a, b) with (u - 2a, v - 2b) a hex offset of length <= 1."""
    offsets = {(0, 0), (0, 1), (0, -1), (1, 0), (-1, 0), (1, -1), (-1, 1)}
    for u in range(7):
        for v in range(7):
            x = torch.zeros(1, 1, 7, 7, dtype=torch.float64)
            x[0, 0, u, v] = 7.0
            expected = torch.zeros(1, 1, 4, 4, dtype=torch.float64)
            for a in range(4):
                for b in range(4):
                    if (u - 2 * a, v - 2 * b) in offsets:
                        expected[0, 0, a, b] = 7.0
            torch.testing.assert_close(HexMaxPool2d()(x), expected, atol=0, rtol=0)
            torch.testing.assert_close(HexAvgPool2d(count_include_pad=True)(x), expected / 7, atol=1e-15, rtol=0)


@pytest.mark.parametrize("mode", ["max", "mean"])
def test_group_pool_gives_a_rotating_planar_map(dtype, mode):
    for G in (6, 12):
        x = domain_input((2, 3, G, 9, 9), dtype, seed=G)
        pool = GroupPool(mode)
        y = pool(x)
        reduce = x.amax(2) if mode == "max" else x.mean(2)
        assert_close(y, reduce, dtype)
        assert_close(pool(rotate60(x, 2)), rotate60(y, 2), dtype)
        if G == 12:
            assert_close(pool(mirror(x)), mirror(y), dtype)


# ---------------------------------------------------------------------------
# Batch norm


def test_hex_batch_norm_statistics_ignore_masked_cells(dtype):
    N, C = 9, 3
    mask = hex_domain_mask(N)
    bn = randomise(HexBatchNorm(C, mask, momentum=0.25).to(dtype))
    x = torch.randn(4, C, 6, N, N, dtype=dtype) * 2 + 1
    x_outside = torch.where(mask, x, torch.full_like(x, 1e6))  # garbage outside the domain must not matter
    y = bn(x_outside)
    # Manual: one mean / variance per channel over batch, group and live cells.
    live = x.permute(1, 0, 2, 3, 4)[..., mask].reshape(C, -1)
    mean, var = live.mean(1), live.var(1, unbiased=False)
    view = (1, C, 1, 1, 1)
    expected = (x - mean.view(view)) / torch.sqrt(var.view(view) + bn.eps) * bn.weight.view(view) + bn.bias.view(view)
    expected = torch.where(mask, expected, torch.zeros_like(expected))
    assert_close(y, expected, dtype)
    assert torch.count_nonzero(y[..., ~mask]) == 0
    # Running estimates: unbiased variance, momentum 0.25 from (0, 1).
    assert_close(bn.running_mean, 0.25 * mean, dtype)
    assert_close(bn.running_var, 0.75 + 0.25 * live.var(1, unbiased=True), dtype)
    assert int(bn.num_batches_tracked) == 1
    # Eval mode normalises with the running estimates.
    bn.eval()
    scale = bn.weight / torch.sqrt(bn.running_var + bn.eps)
    expected = (x - bn.running_mean.view(view)) * scale.view(view) + bn.bias.view(view)
    assert_close(bn(x_outside), torch.where(mask, expected, torch.zeros_like(expected)), dtype)


def test_hex_batch_norm_without_mask_matches_torch_batch_norm(dtype):
    torch.manual_seed(0)
    for x, reference in [
        (torch.randn(4, 3, 7, 7, dtype=dtype), nn.BatchNorm2d(3)),
        (torch.randn(2, 3, 6, 5, 5, dtype=dtype), nn.BatchNorm3d(3)),  # shares statistics over G like ours
    ]:
        ours = randomise(HexBatchNorm(3).to(dtype))
        reference = reference.to(dtype)
        reference.load_state_dict(ours.state_dict())
        for _ in range(2):
            assert_close(ours(x), reference(x), dtype)
        assert_close(ours.running_var, reference.running_var, dtype)
        ours.eval(), reference.eval()
        assert_close(ours(x * 2), reference(x * 2), dtype)


def test_hex_batch_norm_momentum_none_is_a_cumulative_average():
    bn = HexBatchNorm(2, momentum=None).double()
    xs = [torch.randn(3, 2, 5, 5, dtype=torch.float64) + i for i in range(3)]
    for x in xs:
        bn(x)
    torch.testing.assert_close(bn.running_mean, torch.stack([x.mean((0, 2, 3)) for x in xs]).mean(0))


@pytest.mark.parametrize("G", [6, 12])
def test_hex_batch_norm_is_equivariant(dtype, G):
    N = 9
    bn = randomise(HexBatchNorm(3, hex_domain_mask(N)).to(dtype))
    x = domain_input((4, 3, G, N, N), dtype) * 3 + domain_input((4, 3, G, N, N), dtype, 1).abs()
    for training in (True, False):
        bn.train(training)
        y = bn(x)
        assert_close(bn(rotate60(x, 1)), rotate60(y, 1), dtype)
        if G == 12:
            assert_close(bn(mirror(x)), mirror(y), dtype)


# ---------------------------------------------------------------------------
# HexNet


def trained_like(model: HexNet, dtype: torch.dtype) -> HexNet:
    """Random affine parameters and non-trivial running statistics (a few training-mode passes)."""
    model = randomise(model.to(dtype))
    with torch.no_grad():
        for seed in range(3):
            shape = (8, 1, model.size, model.size)
            if model.lattice in SQUARE_LATTICES:  # every cell of a square image is live
                x = torch.rand(shape, dtype=dtype, generator=torch.Generator().manual_seed(100 + seed))
            else:
                x = domain_input(shape, dtype, seed=100 + seed).abs()
            model(x)
    return model.eval()


@pytest.mark.parametrize("lattice", ["p6", "p6m"])
def test_hexnet_logits_are_invariant(dtype, lattice):
    torch.manual_seed(0)
    model = trained_like(HexNet(lattice, width=3, blocks=2), dtype)
    x = domain_input((4, 1, 13, 13), dtype, seed=5).abs()
    with torch.no_grad():
        logits = model(x)
        assert logits.shape == (4, 10) and logits.abs().max() > 0.1
        for k in range(1, 6):
            assert_close(model(rotate60(x, k)), logits, dtype)
        if lattice == "p6m":
            for k in range(6):
                assert_close(model(mirror(rotate60(x, k))), logits, dtype)
        model.train()  # batch statistics of a rotated batch are those of the batch
        assert_close(model(rotate60(x, 2)), model(x), dtype)


@pytest.mark.parametrize("lattice", ["p4", "p4m"])
def test_square_group_hexnet_logits_are_invariant(dtype, lattice):
    torch.manual_seed(0)
    model = trained_like(HexNet(lattice, width=3, blocks=2), dtype)
    x = torch.rand(4, 1, 8, 8, dtype=dtype, generator=torch.Generator().manual_seed(5))
    with torch.no_grad():
        logits = model(x)
        assert logits.shape == (4, 10) and logits.abs().max() > 0.1
        for k in range(1, 4):
            assert_close(model(torch.rot90(x, k, dims=(-2, -1))), logits, dtype)
        mirrored = model(torch.flip(x, dims=(-1,)))
        if lattice == "p4m":
            assert_close(mirrored, logits, dtype)
        else:  # p4 has no reflections
            assert (mirrored - logits).abs().max() > 1e-3


def test_planar_hexnet_is_not_rotation_invariant():
    torch.manual_seed(0)
    model = trained_like(HexNet("hex", width=4, blocks=1), torch.float64)
    x = domain_input((4, 1, 13, 13), torch.float64, seed=5).abs()
    with torch.no_grad():
        assert (model(rotate60(x)) - model(x)).abs().max() > 1e-3


def test_hexnet_ignores_cells_outside_the_domain():
    torch.manual_seed(0)
    model = trained_like(HexNet("p6", width=2, blocks=1), torch.float32)
    x = domain_input((2, 1, 13, 13), torch.float32).abs()
    noisy = torch.where(hex_domain_mask(13), x, torch.full_like(x, 50.0))
    with torch.no_grad():
        assert_close(model(noisy), model(x), torch.float32)


def test_hexnet_shapes_and_square_lattice():
    torch.manual_seed(0)
    square = HexNet("square", width=4)
    assert square(torch.rand(3, 1, 8, 8)).shape == (3, 10)
    assert HexNet("hex", width=4, in_channels=2, num_classes=3)(torch.rand(3, 2, 13, 13)).shape == (3, 3)
    assert HexNet("p6m", width=2, blocks=3, size=9)(torch.rand(2, 1, 9, 9)).shape == (2, 10)
    assert HexNet("p6", width=2, blocks=0, size=5)(torch.rand(2, 1, 5, 5)).shape == (2, 10)
    assert not any(isinstance(m, (HexBatchNorm, HexConv2d)) for m in square.modules())


@pytest.mark.parametrize("lattice", LATTICES)
def test_parameter_budget_is_matched(lattice):
    budget = 33_500
    model = HexNet(lattice, param_budget=budget)
    count = count_parameters(model)
    assert count == _expected_parameters(lattice, 1, 10, model.width, 2)
    # p4m has the coarsest steps: 2 blocks x 2 convs x 8 orientations x 9 taps = 288 (2 w + 1) parameters from
    # one width to the next, 6,000 (18%) near this budget, so the nearest width can be 9% away.
    assert abs(count - budget) <= (0.09 if lattice == "p4m" else 0.02) * budget
    # The closest width: one more or one less is farther from the budget.
    for other in (model.width - 1, model.width + 1):
        assert abs(count_parameters(HexNet(lattice, width=other)) - budget) >= abs(count - budget)
    # Stored parameters include the dead corners of the hexagonal filters (2 of 9 entries at radius 1).
    stored = sum(p.numel() for p in model.parameters())
    if lattice in SQUARE_LATTICES:  # every tap of a square filter is live
        assert stored == count
    else:
        conv_stored = sum(m.weight.numel() for m in model.modules() if hasattr(m, "fan_in"))
        assert stored - count == conv_stored * 2 // 9


def test_width_for_budget_is_monotone_and_picks_the_nearest():
    assert width_for_budget("p6", 1) == 1
    widths = [width_for_budget("p6m", b) for b in range(1000, 60_000, 1000)]
    assert widths == sorted(widths)
    w = width_for_budget("hex", 10_000)
    counts = {v: _expected_parameters("hex", 1, 10, v, 2) for v in (w - 1, w, w + 1)}
    assert min(counts, key=lambda v: abs(counts[v] - 10_000)) == w


# ---------------------------------------------------------------------------
# Errors


def test_layers_raise_clear_errors():
    with pytest.raises(ValueError, match=r"P6ConvP6: .*G = 6.*got G = 12"):
        P6ConvP6(2, 3)(torch.zeros(1, 2, 12, 5, 5))
    with pytest.raises(ValueError, match=r"P6MConvP6M: .*5-D.*got a 4-D"):
        P6MConvP6M(2, 3)(torch.zeros(1, 2, 5, 5))
    with pytest.raises(ValueError, match=r"P6ConvZ2: expected a planar input .*got a 5-D"):
        P6ConvZ2(2, 3)(torch.zeros(1, 2, 6, 5, 5))
    with pytest.raises(ValueError, match=r"HexConv2d: expected 2 input channels on dim 1, got 3"):
        HexConv2d(2, 3)(torch.zeros(1, 3, 5, 5))
    for layer in (HexConv2d, P6MConvZ2, P6ConvP6):
        for kernel_size in (1, 2, 3):  # hexagdly's kernel_size is the radius: any number here is ambiguous
            with pytest.raises(ValueError, match=rf"{layer.__name__}: kernel_size={kernel_size} is ambiguous.*"
                               rf"pass radius=R.*hexagdly's kernel_size={kernel_size} is radius={kernel_size}"):
                layer(2, 3, kernel_size=kernel_size)
        with pytest.raises(ValueError, match=rf"{layer.__name__}: stride=3: .*HexMaxPool2d or HexAvgPool2d"):
            layer(2, 3, stride=3)
    assert P6ConvP6(2, 3, radius=2).radius == 2 and HexConv2d(1, 4, stride=1).weight.shape == (4, 1, 3, 3)
    with pytest.raises(ValueError, match=r"HexConv2d: radius must be a non-negative integer"):
        HexConv2d(2, 3, radius=-1)
    with pytest.raises(ValueError, match=r"P6ConvP6: in_channels must be a positive integer"):
        P6ConvP6(0, 3)
    layer = HexConv2d(2, 3)
    layer.weight = nn.Parameter(torch.zeros(3, 2, 4, 4))
    with pytest.raises(ValueError, match=r"HexConv2d: .*odd square hexagonal kernel"):
        layer(torch.zeros(1, 2, 5, 5))
    with pytest.raises(ValueError, match=r"GroupPool: mode"):
        GroupPool("sum")
    with pytest.raises(ValueError, match=r"GroupPool: expected G = 4 .* or 12 .*got G = 5"):
        GroupPool()(torch.zeros(1, 2, 5, 5, 5))
    with pytest.raises(ValueError, match=r"GroupPool: expected a group feature map"):
        GroupPool()(torch.zeros(1, 2, 5, 5))
    with pytest.raises(ValueError, match=r"HexMaxPool2d: expected a planar"):
        HexMaxPool2d()(torch.zeros(2, 5, 5))
    with pytest.raises(ValueError, match=r"HexAvgPool2d: a 5-D group map needs G = 6"):
        HexAvgPool2d()(torch.zeros(1, 2, 3, 5, 5))
    with pytest.raises(ValueError, match=r"HexBatchNorm: expected 3 channels on dim 1, got 2"):
        HexBatchNorm(3)(torch.zeros(2, 2, 5, 5))
    with pytest.raises(ValueError, match=r"HexBatchNorm: the mask is \(5, 5\) but .* \(7, 7\)"):
        HexBatchNorm(2, hex_domain_mask(5))(torch.zeros(2, 2, 7, 7))
    with pytest.raises(ValueError, match=r"HexBatchNorm: mask must be boolean"):
        HexBatchNorm(2, hex_domain_mask(5).float())
    with pytest.raises(ValueError, match=r"HexBatchNorm: expected a planar"):
        HexBatchNorm(2)(torch.zeros(2, 2, 5))
    with pytest.raises(ValueError, match=r"HexBatchNorm: training needs more than 1 value"):
        HexBatchNorm(2)(torch.zeros(1, 2, 1, 1))


def test_hexnet_raises_clear_errors():
    with pytest.raises(ValueError, match=r"HexNet: lattice must be one of"):
        HexNet("triangle")
    with pytest.raises(ValueError, match=r"HexNet: hexagonal lattices need size = 4 m \+ 1"):
        HexNet("p6", width=2, size=11)
    with pytest.raises(ValueError, match=r"HexNet: give width or param_budget, not both"):
        HexNet("hex", width=4, param_budget=1000)
    with pytest.raises(ValueError, match=r"HexNet\[p6m\]: expected input \[B, 1, 13, 13\], got \(2, 1, 9, 9\)"):
        HexNet("p6m", width=2)(torch.zeros(2, 1, 9, 9))


# ---------------------------------------------------------------------------
# Data, transforms and training


@needs_sklearn
def test_digit_data():
    labels, square = digit_labels("test"), square_digits("test")
    assert labels.shape == (300,) and labels.dtype == torch.int64 and set(labels.tolist()) == set(range(10))
    assert square.shape == (300, 1, 8, 8) and 0 <= square.min() and square.max() == 1.0
    hexes = hex_digits("test", 13)
    assert hexes.shape == (300, 1, 13, 13) and hexes.dtype == torch.float32
    assert hexes.min() >= 0 and hexes.max() <= 1
    assert torch.count_nonzero(hexes[..., ~hex_domain_mask(13)]) == 0
    # The digit is covered: the ink seen on the hexagon is about that of the 8x8 image per unit area
    # (a hexagonal lattice of unit spacing has 2 / sqrt(3) sites per square pixel).
    ratio = hexes.sum() / (square.sum() * 2 / 3**0.5)
    assert 0.9 < ratio < 1.1
    # Every lattice site that samples inside the 8x8 image lies in the hexagonal domain: nothing is cut off.
    inside = rectangle_in_hex_mask(13, 13, image_size=8, scale=HEX_SCALE)
    assert inside.sum() > 60 and not (inside & ~hex_domain_mask(13)).any()
    with pytest.raises(ValueError, match="hex_digits: size must be an odd integer >= 3"):
        hex_digits("test", 12)


def test_square_transform_is_exact_for_flips_and_quarter_turns():
    x = torch.rand(3, 1, 8, 8, dtype=torch.float64)
    torch.testing.assert_close(square_transform(x, reflect_axis_deg=0.0), x.flip(-2), atol=1e-12, rtol=0)
    torch.testing.assert_close(square_transform(x, reflect_axis_deg=90.0), x.flip(-1), atol=1e-12, rtol=0)
    quarter = square_transform(x, angle_deg=90.0)
    assert any(torch.allclose(quarter, torch.rot90(x, k, dims=(-2, -1)), atol=1e-12) for k in (1, 3))
    torch.testing.assert_close(square_transform(x, angle_deg=0.0), x, atol=1e-12, rtol=0)


@needs_sklearn
def test_train_hexnet_smoke_and_exact_invariance_of_p6m():
    model, history = train_hexnet(
        "p6m", epochs=1, batch_size=128, lr=3e-3, seed=0, param_budget=1500, progress=False, blocks=1, size=9
    )
    assert not model.training and history.width == model.width
    assert history.parameters == count_parameters(model) and abs(history.parameters - 1500) < 400
    assert len(history.train_loss) == 1 and history.seconds_per_epoch > 0
    assert 0.0 <= history.test_accuracy <= 1.0
    # An invariant model classifies each rotated and mirrored copy exactly as the original.
    assert history.rotation_accuracies == [history.test_accuracy] * 5
    assert history.mirror_accuracies == [history.test_accuracy] * 6
    assert history.rot90_accuracy is None and history.via_hex_accuracies is None


@needs_sklearn
@pytest.mark.skipif(importlib.util.find_spec("matplotlib") is None, reason="needs matplotlib")
def test_benchmark_script_quick(tmp_path, capsys):
    """benchmarks/experiments/hexnet_results.py --quick: the smoke run of the comparison table and the digit figure."""
    script = Path(__file__).resolve().parents[1] / "benchmarks" / "experiments" / "hexnet_results.py"
    spec = importlib.util.spec_from_file_location("hexnet_results", script)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    assert module.main(["--quick", "--no-progress", "--out", str(tmp_path)]) == 0
    table = capsys.readouterr().out
    for lattice in LATTICES:
        assert f"| {lattice} |" in table
    assert (tmp_path / "hexnet_digits.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


@needs_sklearn
def test_rotated_textures_are_fixed_standardised_and_balanced():
    from flowkernels.data import TEXTURE_NAMES, load_rotated_textures

    pytest.importorskip("skimage")
    crops, labels = load_rotated_textures("test", per_class=5, crop=10)
    again, _ = load_rotated_textures("test", per_class=5, crop=10)
    assert crops.shape == (5 * len(TEXTURE_NAMES), 1, 10, 10) and torch.equal(crops, again)
    assert labels.bincount().tolist() == [5] * len(TEXTURE_NAMES)
    torch.testing.assert_close(crops.mean(dim=(-2, -1)), torch.zeros(len(labels), 1), atol=1e-5, rtol=0)
    torch.testing.assert_close(crops.std(dim=(-2, -1)), torch.ones(len(labels), 1), atol=1e-4, rtol=0)
    train, _ = load_rotated_textures("train", per_class=5, crop=10)
    assert not torch.equal(train, crops)
    with pytest.raises(ValueError, match="split must be one of"):
        load_rotated_textures("validation")


@needs_sklearn
def test_texture_task_feeds_every_lattice_and_trains():
    pytest.importorskip("skimage")
    for lattice in LATTICES:
        images, labels = task_data("textures", lattice, "test")
        side = 12 if lattice in SQUARE_LATTICES else 13
        assert images.shape == (600, 1, side, side) and labels.shape == (600,)
        if lattice not in SQUARE_LATTICES:
            assert (images[..., ~hex_domain_mask(13)] == 0).all()
    with pytest.raises(ValueError, match="task must be one of"):
        task_data("faces", "p4")
    model, history = train_hexnet(
        "p4", epochs=1, batch_size=256, lr=3e-3, seed=0, param_budget=1500, progress=False, blocks=1, task="textures"
    )
    assert model.head.out_features == 6 and history.config["task"] == "textures"
    assert history.rot90_accuracy == history.test_accuracy  # p4 is invariant to quarter turns, exactly
    assert history.via_hex_accuracies is None
