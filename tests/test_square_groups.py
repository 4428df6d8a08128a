"""p4 and p4m group convolutions on the square lattice (the baselines of HexaConv): the group law, the
spatial action, the filter transform against a direct construction, and exact equivariance of every
layer type to every rotation and mirror (integer-valued float64 data, so the sums are exact)."""

from __future__ import annotations

import itertools

import pytest
import torch

from flowkernels import groups, square
from flowkernels.ops import square_filter_transform, square_group_conv2d


def _integers(*shape, seed=0) -> torch.Tensor:
    generator = torch.Generator().manual_seed(seed)
    return torch.randint(-4, 5, shape, generator=generator).double()


def test_p4m_is_a_group_and_its_spatial_action_a_homomorphism():
    elements = square.group_elements("p4m")
    identity = (0, 0)
    image = torch.arange(5 * 5).reshape(5, 5)
    for a, b, c in itertools.product(elements, repeat=3):
        ab = groups.group_multiply(a, b, 4)
        assert ab in elements
        assert groups.group_multiply(ab, c, 4) == groups.group_multiply(a, groups.group_multiply(b, c, 4), 4)
    for a in elements:
        assert groups.group_multiply(a, groups.group_inverse(a, 4), 4) == identity
        for b in elements:
            composed = square.transform(square.transform(image, b), a)
            assert torch.equal(composed, square.transform(image, groups.group_multiply(a, b, 4)))
    assert torch.equal(square.transform(image, (0, 1)), torch.rot90(image, 1))
    assert torch.equal(square.transform(image, (1, 0)), torch.flip(image, dims=(-1,)))


@pytest.mark.parametrize(("in_group", "out_group"), [("z2", "p4"), ("p4", "p4"), ("z2", "p4m"), ("p4m", "p4m")])
def test_filter_transform_equals_the_direct_construction(in_group, out_group):
    g_in, g_out = square.GROUP_ORDERS[in_group], square.GROUP_ORDERS[out_group]
    weight = _integers(2, 3, g_in, 3, 3)
    bank = square_filter_transform(weight, in_group, out_group).reshape(2, g_out, 3, g_in, 3, 3)
    in_elements, out_elements = square.group_elements(in_group), square.group_elements(out_group)
    for gi, g in enumerate(out_elements):
        for hi, h in enumerate(in_elements):
            inverse_g = groups.group_inverse(g, 4)
            source = 0 if in_group == "z2" else in_elements.index(groups.group_multiply(inverse_g, h, 4))
            assert torch.equal(bank[:, gi, :, hi], square.transform(weight[:, :, source], g))


@pytest.mark.parametrize(("in_group", "out_group"), [("z2", "p4"), ("p4", "p4"), ("z2", "p4m"), ("p4m", "p4m")])
@pytest.mark.parametrize("size", [7, 8])
def test_every_layer_is_exactly_equivariant_to_every_rotation_and_mirror(in_group, out_group, size):
    g_in = square.GROUP_ORDERS[in_group]
    x = _integers(2, 3, size, size, seed=1) if in_group == "z2" else _integers(2, 3, g_in, size, size, seed=1)
    weight, bias = _integers(4, 3, g_in, 3, 3, seed=2), _integers(4, seed=3)
    y = square_group_conv2d(x, weight, bias, in_group=in_group, out_group=out_group)
    assert y.shape == (2, 4, square.GROUP_ORDERS[out_group], size, size)
    for element in square.group_elements(out_group):
        moved = square_group_conv2d(
            square.transform_group_map(x, element), weight, bias, in_group=in_group, out_group=out_group
        )
        assert torch.equal(moved, square.transform_group_map(y, element)), element


def test_group_pooling_gives_an_invariant_of_rotations():
    x = _integers(1, 2, 9, 9, seed=4)
    weight = _integers(3, 2, 1, 3, 3, seed=5)
    pooled = square_group_conv2d(x, weight, in_group="z2", out_group="p4").amax(dim=2)
    rotated = square_group_conv2d(torch.rot90(x, 1, dims=(-2, -1)), weight, in_group="z2", out_group="p4").amax(dim=2)
    assert torch.equal(rotated, torch.rot90(pooled, 1, dims=(-2, -1)))


def test_gradients_reach_the_compact_filters():
    x = torch.randn(1, 2, 4, 5, 5, dtype=torch.float64)
    weight = torch.randn(2, 2, 4, 3, 3, dtype=torch.float64, requires_grad=True)
    assert torch.autograd.gradcheck(
        lambda w: square_group_conv2d(x, w, in_group="p4", out_group="p4"), (weight,), eps=1e-6, atol=1e-6
    )


def test_compiles_with_fullgraph():
    x, weight = torch.randn(2, 3, 8, 8), torch.randn(4, 3, 1, 3, 3)

    def layer(x, weight):
        return square_group_conv2d(x, weight, in_group="z2", out_group="p4m")

    torch.testing.assert_close(torch.compile(layer, fullgraph=True)(x, weight), layer(x, weight))


def test_bad_arguments_say_what_is_expected():
    with pytest.raises(ValueError, match="in_group must be one of"):
        square_group_conv2d(torch.zeros(1, 1, 5, 5), torch.zeros(1, 1, 1, 3, 3), in_group="p6", out_group="p4")
    with pytest.raises(ValueError, match=r"x must be \[B, I, 4, H, W\]"):
        square_group_conv2d(torch.zeros(1, 1, 5, 5), torch.zeros(1, 1, 4, 3, 3), in_group="p4", out_group="p4")
    with pytest.raises(ValueError, match="k odd"):
        square_group_conv2d(torch.zeros(1, 1, 5, 5), torch.zeros(1, 1, 1, 2, 2), in_group="z2", out_group="p4")
    with pytest.raises(ValueError, match="mirror does not act on p4"):
        square.transform_group_map(torch.zeros(1, 1, 4, 3, 3), (1, 0))
