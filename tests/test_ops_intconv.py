"""Tests of the intconv family: int_conv2d.

Bit-exact agreement with the int64 reference on every CPU path (shapes that leave partial
vectors, odd channel counts, 1x1 to 5x5 kernels, padding 0 to 2, both output dtypes, extreme
inputs, weights and multipliers at the accumulator bound), thread-count and batch invariance,
the rescaling's rounding (half up, negative values), clamps, errors, fake kernel and
torch.compile, and CPU vs CUDA (skipped without a GPU).
"""

from __future__ import annotations

import pytest
import torch

from flowkernels import ops
from flowkernels.reference import intconv as ref

from .conftest import HAS_CUDA, every_cpu_isa, requires_cuda

pytestmark = every_cpu_isa

ACC_LIMIT = 2**31 - 1


def make_layer(o: int, i: int, k: int, generator: torch.Generator, *, weight_max: int = 127):
    """Random int8 weights scaled down per channel to respect the accumulator bound, and
    random bias, multipliers and shifts over their whole ranges."""
    w = torch.randint(-weight_max, weight_max + 1, (o, i, k, k), generator=generator, dtype=torch.int64)
    budget = (ACC_LIMIT - 2**20) // 2**15
    total = w.abs().sum((1, 2, 3)).clamp_min(1)
    w = torch.where(total.view(-1, 1, 1, 1) > budget, w * budget // total.view(-1, 1, 1, 1), w).to(torch.int8)
    bias = torch.randint(-(2**20), 2**20, (o,), generator=generator, dtype=torch.int32)
    multiplier = torch.randint(-(2**31), 2**31 - 1, (o,), generator=generator, dtype=torch.int32)
    shift = torch.randint(0, 63, (o,), generator=generator, dtype=torch.int32)
    return w, bias, multiplier, shift


SHAPES = [
    # N, I, H, W, O, k, padding
    (1, 1, 1, 1, 1, 1, 0),
    (2, 3, 5, 7, 5, 3, 1),
    (3, 7, 4, 4, 9, 3, 1),
    (2, 8, 9, 3, 6, 1, 0),
    (1, 5, 6, 6, 3, 3, 0),
    (1, 4, 3, 3, 2, 5, 2),
    (2, 36, 16, 16, 64, 3, 1),
    (1, 64, 33, 2, 13, 3, 1),
]


@pytest.mark.parametrize("shape", SHAPES, ids=lambda s: "x".join(map(str, s)))
@pytest.mark.parametrize("out_dtype", [torch.int16, torch.int32])
def test_matches_reference_bit_for_bit(shape, out_dtype):
    n, i, h, w, o, k, padding = shape
    g = torch.Generator().manual_seed(hash(shape) % 2**31)
    x = torch.randint(-(2**15), 2**15, (n, i, h, w), generator=g, dtype=torch.int16)
    weight, bias, multiplier, shift = make_layer(o, i, k, g)
    got = ops.int_conv2d(x, weight, bias, multiplier, shift, padding=padding, out_dtype=out_dtype)
    want = ref.int_conv2d(x, weight, bias, multiplier, shift, padding=padding, out_dtype=out_dtype)
    assert got.dtype == out_dtype and got.shape == want.shape
    assert torch.equal(got, want)


def test_accumulator_at_its_bound_is_exact():
    # every weight at +-127 and every input at -2^15: the largest |acc| the op accepts
    i, k = 2, 3
    weight = torch.full((2, i, k, k), 127, dtype=torch.int8)
    weight[1] = -127
    taps = i * k * k
    bias = torch.tensor([ACC_LIMIT - taps * 127 * 2**15, -(ACC_LIMIT - taps * 127 * 2**15)], dtype=torch.int32)
    x = torch.full((1, i, 3, 3), -(2**15), dtype=torch.int16)
    ones, zeros = torch.ones(2, dtype=torch.int32), torch.zeros(2, dtype=torch.int32)
    got = ops.int_conv2d(x, weight, bias, ones, zeros, out_dtype=torch.int32)
    want = ref.int_conv2d(x, weight, bias, ones, zeros, out_dtype=torch.int32)
    assert torch.equal(got, want)
    assert got[0, 0, 0, 0] == bias[0] - taps * 127 * 2**15


def test_rescaling_rounds_half_up_and_clamps():
    # 1x1 identity conv: out = round(x * m / 2^s) with ties up, then the clamp
    x = torch.tensor([-5, -3, -2, -1, 0, 1, 2, 3, 5, 7], dtype=torch.int16).view(1, 1, 1, -1)
    weight = torch.ones(1, 1, 1, 1, dtype=torch.int8)
    zero, one = torch.zeros(1, dtype=torch.int32), torch.ones(1, dtype=torch.int32)
    halves = ops.int_conv2d(x, weight, zero, one, one, out_dtype=torch.int32)  # x / 2
    assert halves.flatten().tolist() == [-2, -1, -1, 0, 0, 1, 1, 2, 3, 4]
    relu = ops.int_conv2d(x, weight, zero, one, zero, out_min=0, out_max=4)
    assert relu.flatten().tolist() == [0, 0, 0, 0, 0, 1, 2, 3, 4, 4]


def test_thread_count_and_batch_do_not_change_a_bit():
    g = torch.Generator().manual_seed(3)
    x = torch.randint(-3000, 3000, (9, 12, 8, 8), generator=g, dtype=torch.int16)
    layer = make_layer(20, 12, 3, g)
    threads = torch.get_num_threads()
    try:
        torch.set_num_threads(1)
        one = ops.int_conv2d(x, *layer, padding=1)
        torch.set_num_threads(max(2, threads))
        many = ops.int_conv2d(x, *layer, padding=1)
    finally:
        torch.set_num_threads(threads)
    alone = torch.cat([ops.int_conv2d(x[j : j + 1], *layer, padding=1) for j in range(len(x))])
    assert torch.equal(one, many) and torch.equal(one, alone)


def test_non_contiguous_inputs():
    g = torch.Generator().manual_seed(4)
    x = torch.randint(-100, 100, (2, 6, 7, 5), generator=g, dtype=torch.int16).transpose(2, 3)
    layer = make_layer(4, 6, 3, g)
    assert torch.equal(ops.int_conv2d(x, *layer, padding=1), ops.int_conv2d(x.contiguous(), *layer, padding=1))


def test_empty_batch_and_zero_output_channels():
    g = torch.Generator().manual_seed(5)
    layer = make_layer(3, 2, 3, g)
    assert ops.int_conv2d(torch.zeros(0, 2, 4, 4, dtype=torch.int16), *layer, padding=1).shape == (0, 3, 4, 4)
    empty = (torch.zeros(0, 2, 1, 1, dtype=torch.int8), *(torch.zeros(0, dtype=torch.int32) for _ in range(3)))
    assert ops.int_conv2d(torch.zeros(1, 2, 4, 4, dtype=torch.int16), *empty).shape == (1, 0, 4, 4)


def _args():
    x = torch.zeros(1, 2, 4, 4, dtype=torch.int16)
    w = torch.ones(3, 2, 3, 3, dtype=torch.int8)
    i32 = torch.zeros(3, dtype=torch.int32)
    return x, w, i32, i32.clone(), i32.clone()


@pytest.mark.parametrize(
    "change, message",
    [
        (lambda a: (a[0].int(), *a[1:]), "'x' must be int16"),
        (lambda a: (a[0][0], *a[1:]), r"'x' must be \[N, I, H, W\]"),
        (lambda a: (a[0], a[1].short(), *a[2:]), "'weight' must be int8"),
        (lambda a: (a[0], a[1][:, :1], *a[2:]), r"'weight' must be \[O, I, kh, kw\] with I = 2"),
        (lambda a: (a[0], a[1], a[2].long(), *a[3:]), "'bias' must be int32"),
        (lambda a: (a[0], a[1], a[2][:2], *a[3:]), "'bias' must have shape"),
        (lambda a: (*a[:4], a[4] + 63), r"'shift' must be in \[0, 62\]"),
        (lambda a: (*a[:4], a[4] - 1), r"'shift' must be in \[0, 62\]"),
        (
            lambda a: (a[0].repeat(1, 30, 1, 1), torch.full((3, 60, 3, 3), 127, dtype=torch.int8), *a[2:]),
            "output channel 0 could overflow the int32",
        ),
        (lambda a: (a[0], a[1], torch.full_like(a[2], -(2**31)), *a[3:]), "could overflow the int32"),
    ],
)
def test_errors_name_the_argument(change, message):
    with pytest.raises(RuntimeError, match=message):
        ops.int_conv2d(*change(_args()), padding=1)


def test_errors_on_range_and_geometry():
    args = _args()
    with pytest.raises(RuntimeError, match="out_min <= out_max"):
        ops.int_conv2d(*args, out_min=5, out_max=4)
    with pytest.raises(RuntimeError, match="out_min <= out_max"):
        ops.int_conv2d(*args, out_min=-(2**20))
    with pytest.raises(RuntimeError, match="does not fit"):
        ops.int_conv2d(args[0][:, :, :1, :1], *args[1:])
    with pytest.raises(RuntimeError, match="padding must be >= 0"):
        ops.int_conv2d(*args, padding=-1)
    with pytest.raises(ValueError, match="out_dtype"):
        ops.int_conv2d(*args, out_dtype=torch.int64)


def test_opcheck_and_compile():
    g = torch.Generator().manual_seed(6)
    x = torch.randint(-500, 500, (2, 3, 5, 5), generator=g, dtype=torch.int16)
    layer = make_layer(4, 3, 3, g)
    kwargs = {"padding": 1, "out_min": 0, "out_max": 2**15 - 1, "out_dtype": torch.int16}
    torch.library.opcheck(torch.ops.flowkernels.int_conv2d, (x, *layer), kwargs)
    compiled = torch.compile(lambda v: ops.int_conv2d(v, *layer, padding=1), fullgraph=True, backend="eager")
    assert torch.equal(compiled(x), ops.int_conv2d(x, *layer, padding=1))


@requires_cuda
@pytest.mark.parametrize("shape", SHAPES, ids=lambda s: "x".join(map(str, s)))
def test_cuda_matches_cpu_bit_for_bit(shape):
    assert HAS_CUDA
    n, i, h, w, o, k, padding = shape
    g = torch.Generator().manual_seed(7)
    x = torch.randint(-(2**15), 2**15, (n, i, h, w), generator=g, dtype=torch.int16)
    layer = make_layer(o, i, k, g)
    cpu = ops.int_conv2d(x, *layer, padding=padding, out_dtype=torch.int32)
    cuda = ops.int_conv2d(x.cuda(), *(t.cuda() for t in layer), padding=padding, out_dtype=torch.int32)
    assert torch.equal(cuda.cpu(), cpu)
