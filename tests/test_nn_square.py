"""The square-lattice group layers (flowkernels.nn.square): exact equivariance of each layer and of a
lift -> pool -> group conv -> group pool chain to every rotation and mirror of p4 / p4m, parameter counts,
and one-line errors."""

from __future__ import annotations

import pytest
import torch

from flowkernels import square
from flowkernels.nn import GroupPool, HexBatchNorm, P4ConvP4, P4ConvZ2, P4MConvP4M, P4MConvZ2, SquareGroupMaxPool2d

LAYERS = [(P4ConvZ2, "z2", "p4"), (P4ConvP4, "p4", "p4"), (P4MConvZ2, "z2", "p4m"), (P4MConvP4M, "p4m", "p4m")]


def _integers(*shape, seed=0) -> torch.Tensor:
    return torch.randint(-4, 5, shape, generator=torch.Generator().manual_seed(seed)).double()


def _integer_weights(layer) -> None:  # integer weights: every sum is exact, so equality is exact
    with torch.no_grad():
        layer.weight.copy_(_integers(*layer.weight.shape, seed=1))
        layer.bias.copy_(_integers(*layer.bias.shape, seed=2))


@pytest.mark.parametrize(("layer_type", "in_group", "out_group"), LAYERS)
@pytest.mark.parametrize("size", [6, 7])
def test_every_layer_is_exactly_equivariant(layer_type, in_group, out_group, size):
    layer = layer_type(3, 2).double()
    _integer_weights(layer)
    g_in = square.GROUP_ORDERS[in_group]
    x = _integers(2, 3, size, size) if g_in == 1 else _integers(2, 3, g_in, size, size)
    for element in square.group_elements(out_group):
        transformed = layer(square.transform_group_map(x, element))
        assert torch.equal(transformed, square.transform_group_map(layer(x), element)), element


@pytest.mark.parametrize(("lift", "conv", "group"), [(P4ConvZ2, P4ConvP4, "p4"), (P4MConvZ2, P4MConvP4M, "p4m")])
def test_a_pooled_network_is_exactly_invariant(lift, conv, group):
    torch.manual_seed(0)
    net = torch.nn.Sequential(lift(1, 4), HexBatchNorm(4), torch.nn.ReLU(), SquareGroupMaxPool2d(), conv(4, 4))
    net = net.double().eval()
    for layer in (net[0], net[4]):
        _integer_weights(layer)
    x = _integers(3, 1, 8, 8)

    def features(t):
        return GroupPool("max")(net(t)).sum(dim=(-2, -1))

    for element in square.group_elements(group):
        torch.testing.assert_close(features(square.transform(x, element)), features(x), rtol=1e-12, atol=0)


def test_pooling_commutes_with_the_group_on_even_sizes():
    x = _integers(2, 3, 8, 6, 6)
    pool = SquareGroupMaxPool2d()
    assert pool(x).shape == (2, 3, 8, 3, 3) and pool(x[:, :, 0]).shape == (2, 3, 3, 3)
    for element in square.group_elements("p4m"):
        assert torch.equal(pool(square.transform_group_map(x, element)), square.transform_group_map(pool(x), element))


def test_parameters_shapes_and_errors():
    layer = P4MConvP4M(3, 5, kernel_size=5)
    assert layer.weight.shape == (5, 3, 8, 5, 5) and layer.free_parameters() == 5 * 3 * 8 * 25 + 5
    assert layer.fan_in == 3 * 8 * 25 and "kernel_size=5, p4m -> p4m" in repr(layer)
    assert P4ConvZ2(2, 3, bias=False).free_parameters() == 3 * 2 * 9
    with pytest.raises(ValueError, match="kernel_size must be a positive odd integer, got 4"):
        P4ConvZ2(1, 2, kernel_size=4)
    with pytest.raises(ValueError, match=r"P4ConvP4: expected a p4 feature map with G = 4 on dim 2, got G = 8"):
        P4ConvP4(2, 2)(torch.zeros(1, 2, 8, 5, 5))
    with pytest.raises(ValueError, match="SquareGroupMaxPool2d: expected a planar"):
        SquareGroupMaxPool2d()(torch.zeros(5, 5))
    x = torch.randn(1, 2, 4, 6, 6, requires_grad=True)
    P4ConvP4(2, 3)(x).square().sum().backward()
    assert x.grad is not None and x.grad.abs().sum() > 0
