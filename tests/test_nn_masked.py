"""Masked convolutions in the raster order (nn/masked.py): exactly the elements before, for 1 and 3 channels."""

from __future__ import annotations

import pytest
import torch

from flowkernels.nn import MaskedConv2d
from flowkernels.nn.masked import raster_mask


def stack(channels: int, hidden: int, kernel_size: int) -> torch.nn.Module:
    """Mask A, then ReLU and two mask-B layers, then a 1x1 mask-B layer back to one value per data channel."""

    def masked(i: int, o: int, k: int, t: str) -> MaskedConv2d:
        return MaskedConv2d(i, o, k, data_channels=channels, mask_type=t)

    return torch.nn.Sequential(
        masked(channels, hidden, kernel_size, "A"),
        torch.nn.ReLU(),
        masked(hidden, hidden, kernel_size, "B"),
        torch.nn.ReLU(),
        masked(hidden, hidden, kernel_size, "B"),
        torch.nn.ReLU(),
        masked(hidden, channels, 1, "B"),
    ).double()


@pytest.mark.parametrize(("channels", "hidden", "kernel_size"), [(1, 8, 3), (3, 12, 3), (3, 7, 5), (2, 16, 1)])
def test_each_output_reads_exactly_the_elements_before_it(channels, hidden, kernel_size):
    torch.manual_seed(0)
    net = stack(channels, hidden, kernel_size)
    height, width = 4, 5
    x = torch.randn(8, channels, height, width, dtype=torch.float64)
    order = [(c, i, j) for i in range(height) for j in range(width) for c in range(channels)]
    reference = net(x)
    for position, (c, i, j) in enumerate(order):
        changed = x.clone()
        changed[:, c, i, j] += 1.0
        out = net(changed)
        for earlier in order[: position + 1]:  # the element itself and those before it: not to the last bit
            assert torch.equal(out[(slice(None), *earlier)], reference[(slice(None), *earlier)]), (position, earlier)
    # And the network does read the earlier elements: the second output depends on the first input.
    first = x.clone()
    first[:, 0, 0, 0] += 1.0
    c, i, j = order[1]
    assert not torch.equal(net(first)[:, c, i, j], reference[:, c, i, j])


def test_mask_a_hides_the_element_itself_and_mask_b_shows_it():
    a = raster_mask(3, 3, 3, data_channels=3, mask_type="A")[:, :, 1, 1]
    b = raster_mask(3, 3, 3, data_channels=3, mask_type="B")[:, :, 1, 1]
    assert torch.equal(a, torch.tensor([[0.0, 0, 0], [1, 0, 0], [1, 1, 0]]))
    assert torch.equal(b, torch.tensor([[1.0, 0, 0], [1, 1, 0], [1, 1, 1]]))


def test_bad_arguments_are_one_line_errors():
    with pytest.raises(ValueError, match="mask_type must be 'A' or 'B'"):
        MaskedConv2d(1, 2, 3, data_channels=1, mask_type="C")
    with pytest.raises(ValueError, match="kernel_size must be a positive odd"):
        raster_mask(1, 1, 4, 1, "A")
    with pytest.raises(ValueError, match="data_channels must be positive"):
        raster_mask(1, 1, 3, 0, "A")
