"""Tests of the arconv family: ar_conv2d and ar_conv2d_inverse.

Round trips in both directions (k = 1, 3, 5; non-square images; odd channel
counts; batch 1 and 2000; both orders), agreement with the pixel-by-pixel
reference and with a dense solve, causality of the mask, the triangular
Jacobian, opcheck, float64 gradcheck, torch.compile(fullgraph=True), errors,
and CPU vs CUDA (skipped without a GPU).
"""

from __future__ import annotations

import math

import pytest
import torch

from flowkernels import ops
from flowkernels.reference import arconv as ref

from .conftest import every_cpu_isa, requires_cuda

pytestmark = every_cpu_isa

OPS = torch.ops.flowkernels
ROUND_TRIP = {torch.float32: 1e-5, torch.float64: 1e-10}


def make_weight(channels: int, k: int, generator: torch.Generator, dtype=torch.float64) -> torch.Tensor:
    """A well-conditioned weight as a flow would hold: diagonal near 1 and +-, small rest."""
    w = torch.randn(channels, channels, k, k, generator=generator, dtype=torch.float64)
    w *= (0.5 / (channels * (k // 2 + 1) ** 2)) ** 0.5
    p = k // 2
    signs = torch.where(torch.rand(channels, generator=generator) < 0.3, -1.0, 1.0).double()
    w[range(channels), range(channels), p, p] = signs * (0.8 + 0.4 * torch.rand(channels, generator=generator))
    return w.to(dtype)


def make_problem(shape, k, generator, dtype, with_bias=True):
    B, C, H, W = shape
    w = make_weight(C, k, generator, dtype)
    b = torch.randn(C, generator=generator, dtype=torch.float64).to(dtype) if with_bias else None
    x = torch.randn(B, C, H, W, generator=generator, dtype=torch.float64).to(dtype)
    return x, w, b


SHAPES = [(2, 3, 5, 7), (1, 5, 6, 4), (3, 1, 4, 4), (2, 4, 1, 6), (9, 2, 3, 3)]


@pytest.mark.parametrize("reverse", [False, True], ids=["forward-order", "reverse-order"])
@pytest.mark.parametrize("k", [1, 3, 5])
@pytest.mark.parametrize("shape", SHAPES, ids=lambda s: "x".join(map(str, s)))
def test_round_trips(device, dtype, generator, shape, k, reverse):
    x, w, b = (t.to(device) if t is not None else None for t in make_problem(shape, k, generator, dtype))
    y = ops.ar_conv2d(x, w, b, reverse=reverse)
    tol = ROUND_TRIP[dtype]
    torch.testing.assert_close(ops.ar_conv2d_inverse(y, w, b, reverse=reverse), x, rtol=0, atol=tol)
    # and the other way: forward(inverse(y)) == y for an arbitrary y
    y2 = torch.randn(shape, generator=generator, dtype=torch.float64).to(dtype).to(device)
    x2 = ops.ar_conv2d_inverse(y2, w, b, reverse=reverse)
    torch.testing.assert_close(ops.ar_conv2d(x2, w, b, reverse=reverse), y2, rtol=0, atol=tol)


@pytest.mark.parametrize("reverse", [False, True])
@pytest.mark.parametrize("batch", [1, 2000])
def test_round_trip_batch_extremes(dtype, generator, batch, reverse):
    # 2000 images: the raster schedule with many tiles and a partial last tile;
    # 1 image: the wavefront schedule.
    x, w, b = make_problem((batch, 3, 8, 6), 3, generator, dtype)
    y = ops.ar_conv2d(x, w, b, reverse=reverse)
    torch.testing.assert_close(ops.ar_conv2d_inverse(y, w, b, reverse=reverse), x, rtol=0, atol=ROUND_TRIP[dtype])


@pytest.mark.parametrize("threads", [1, 2, 3])
@pytest.mark.parametrize("batch", [1, 5, 24])
def test_schedules_agree(generator, threads, batch):
    """The raster and wavefront schedules (chosen by tiles per thread) give the same bits."""
    x, w, b = make_problem((batch, 7, 9, 11), 3, generator, torch.float32)
    y = ops.ar_conv2d(x, w, b)
    before = torch.get_num_threads()
    try:
        torch.set_num_threads(1)
        expected = ops.ar_conv2d_inverse(y, w, b)
        torch.set_num_threads(threads)
        assert torch.equal(ops.ar_conv2d_inverse(y, w, b), expected)
    finally:
        torch.set_num_threads(before)


@pytest.mark.parametrize("reverse", [False, True])
@pytest.mark.parametrize("k", [1, 3, 5])
def test_matches_references(device, generator, k, reverse):
    x, w, b = make_problem((2, 3, 4, 5), k, generator, torch.float64)
    y = ref.ar_conv2d(x, w, b, reverse=reverse)
    w, b, y = w.to(device), b.to(device), y.to(device)
    torch.testing.assert_close(ops.ar_conv2d(x.to(device), w, b, reverse=reverse), y, rtol=1e-12, atol=1e-12)
    solved = ops.ar_conv2d_inverse(y, w, b, reverse=reverse).cpu()
    torch.testing.assert_close(
        solved, ref.ar_conv2d_inverse(y.cpu(), w.cpu(), b.cpu(), reverse=reverse), rtol=0, atol=1e-12
    )
    torch.testing.assert_close(
        solved, ref.ar_conv2d_inverse_dense(y.cpu(), w.cpu(), b.cpu(), reverse=reverse), rtol=0, atol=1e-12
    )


def test_mask_is_the_documented_one():
    m = ref.ar_conv2d_mask(3, 3)
    # top-left quadrant everywhere except the centre
    assert m[:, :, :2, :2].sum() == 9 * 4 - 9 + 6
    assert m[:, :, 2, :].sum() == 0 and m[:, :, :, 2].sum() == 0
    assert torch.equal(m[:, :, 1, 1], torch.ones(3, 3).tril())
    rm = ref.ar_conv2d_mask(3, 3, reverse=True)
    assert torch.equal(rm, m.flip(0, 1, 2, 3))
    assert torch.equal(rm[:, :, 1, 1], torch.ones(3, 3).triu())


@pytest.mark.parametrize("reverse", [False, True])
def test_masked_entries_are_ignored_and_get_zero_gradient(generator, reverse):
    x, w, b = make_problem((2, 3, 5, 4), 3, generator, torch.float64)
    mask = ref.ar_conv2d_mask(3, 3, reverse=reverse, dtype=torch.float64)
    noisy = w + (1 - mask) * torch.randn(w.shape, generator=generator, dtype=torch.float64) * 10
    y = ops.ar_conv2d(x, w, b, reverse=reverse)
    assert torch.equal(ops.ar_conv2d(x, noisy, b, reverse=reverse), y)
    assert torch.equal(
        ops.ar_conv2d_inverse(y, noisy, b, reverse=reverse), ops.ar_conv2d_inverse(y, w, b, reverse=reverse)
    )
    for op in (ops.ar_conv2d, ops.ar_conv2d_inverse):
        weight = noisy.clone().requires_grad_()
        (grad,) = torch.autograd.grad(op(x, weight, b, reverse=reverse).square().sum(), weight)
        assert torch.all(grad[mask == 0] == 0)
        assert torch.all(grad[mask == 1] != 0)


@pytest.mark.parametrize("reverse", [False, True])
def test_causality(generator, reverse):
    """Perturbing one input pixel changes no output before it in the order."""
    B, C, H, W = 1, 3, 6, 7
    x, w, b = make_problem((B, C, H, W), 5, generator, torch.float64)
    i0, j0, c0 = 3, 2, 1
    bumped = x.clone()
    bumped[0, c0, i0, j0] += 1.0
    for op in (ops.ar_conv2d, ops.ar_conv2d_inverse):
        changed = (op(bumped, w, b, reverse=reverse) - op(x, w, b, reverse=reverse)).abs()[0] > 0
        c, i, j = torch.meshgrid(torch.arange(C), torch.arange(H), torch.arange(W), indexing="ij")
        if reverse:
            allowed = (i <= i0) & (j <= j0) & ~((i == i0) & (j == j0) & (c > c0))
        else:
            allowed = (i >= i0) & (j >= j0) & ~((i == i0) & (j == j0) & (c < c0))
        assert not torch.any(changed & ~allowed)
        assert changed[c0, i0, j0]


@pytest.mark.parametrize("reverse", [False, True])
def test_jacobian_is_triangular_with_the_weight_diagonal(generator, reverse):
    x, w, b = make_problem((1, 2, 3, 4), 3, generator, torch.float64)
    n = x.numel()
    jac = torch.autograd.functional.jacobian(lambda v: ops.ar_conv2d(v, w, b, reverse=reverse), x).reshape(n, n)
    # Order the variables pixel-major, channel-minor (reversed for the reverse mask): triangular.
    order = torch.arange(n).view(2, 3, 4).permute(1, 2, 0).reshape(-1)
    if reverse:
        order = order.flip(0)
    permuted = jac[order][:, order]
    assert torch.equal(permuted, permuted.tril())
    _, logabsdet = torch.linalg.slogdet(jac)
    p = 1
    expected = 3 * 4 * torch.log(w[range(2), range(2), p, p].abs()).sum()
    torch.testing.assert_close(logabsdet, expected, rtol=1e-12, atol=1e-12)


@pytest.mark.parametrize("reverse", [False, True])
@pytest.mark.parametrize("k", [1, 3])
def test_gradcheck(device, generator, k, reverse):
    x, w, b = make_problem((2, 3, 3, 4), k, generator, torch.float64)
    args = [t.to(device).requires_grad_() for t in (x, w, b)]
    for op in (ops.ar_conv2d, ops.ar_conv2d_inverse):
        assert torch.autograd.gradcheck(lambda y, w, b, op=op: op(y, w, b, reverse=reverse), args)
    # without a bias too
    assert torch.autograd.gradcheck(lambda y, w: ops.ar_conv2d_inverse(y, w, reverse=reverse), args[:2])


@pytest.mark.parametrize("with_bias", [True, False])
@pytest.mark.parametrize("reverse", [False, True])
def test_opcheck(device, dtype, generator, reverse, with_bias):
    x, w, b = make_problem((2, 3, 4, 5), 3, generator, dtype, with_bias)
    args = [t.to(device).requires_grad_() if t is not None else None for t in (x, w, b)]
    for op in (OPS.ar_conv2d, OPS.ar_conv2d_inverse):
        torch.library.opcheck(op, tuple(args), {"reverse": reverse})


@pytest.mark.parametrize("backend", ["aot_eager", "inductor"])
def test_compile_fullgraph_matches_eager(generator, backend):
    x, w, b = make_problem((2, 3, 6, 5), 3, generator, torch.float32)
    w2 = make_weight(3, 3, generator, torch.float32)

    def emerging_pair_round_trip(x, w, b):
        y = ops.ar_conv2d(ops.ar_conv2d(x, w, b), w2, reverse=True)
        return ops.ar_conv2d_inverse(ops.ar_conv2d_inverse(y, w2, reverse=True), w, b), y

    compiled = torch.compile(emerging_pair_round_trip, fullgraph=True, backend=backend)
    wg = w.clone().requires_grad_()
    eager_x, eager_y = emerging_pair_round_trip(x, wg, b)
    compiled_x, compiled_y = compiled(x, wg, b)
    torch.testing.assert_close(compiled_y, eager_y, rtol=1e-6, atol=1e-6)
    torch.testing.assert_close(compiled_x, eager_x, rtol=1e-6, atol=1e-6)
    torch.testing.assert_close(compiled_x, x, rtol=0, atol=1e-5)
    (eager_grad,) = torch.autograd.grad(eager_y.square().sum() + eager_x.sum(), wg)
    (compiled_grad,) = torch.autograd.grad(compiled_y.square().sum() + compiled_x.sum(), wg)
    torch.testing.assert_close(compiled_grad, eager_grad, rtol=1e-5, atol=1e-5)


def test_noncontiguous_empty_and_meta(generator):
    x, w, b = make_problem((3, 4, 5, 6), 3, generator, torch.float32)
    y = ops.ar_conv2d(x, w, b)
    channels_last = y.contiguous(memory_format=torch.channels_last)
    torch.testing.assert_close(
        ops.ar_conv2d_inverse(channels_last, w, b), ops.ar_conv2d_inverse(y, w, b), rtol=0, atol=0
    )
    strided_weight = w.transpose(0, 1).contiguous().transpose(0, 1)
    assert not strided_weight.is_contiguous()
    assert torch.equal(ops.ar_conv2d_inverse(y, strided_weight, b), ops.ar_conv2d_inverse(y, w, b))
    for shape in [(0, 4, 5, 6), (2, 4, 0, 6), (2, 4, 5, 0)]:
        assert ops.ar_conv2d_inverse(torch.empty(shape), w, b).shape == shape
    meta = ops.ar_conv2d_inverse(y.to("meta"), w.to("meta"), b.to("meta"))
    assert meta.shape == y.shape and meta.device.type == "meta"


@pytest.mark.parametrize("bad", [0.0, math.inf, math.nan])
@pytest.mark.parametrize("reverse", [False, True])
def test_singular_diagonal_raises(generator, bad, reverse):
    x, w, b = make_problem((1, 3, 4, 4), 3, generator, torch.float32)
    w[2, 2, 1, 1] = bad
    with pytest.raises(ValueError, match=r"not invertible: diagonal entry weight\[2, 2, 1, 1\]"):
        ops.ar_conv2d_inverse(x, w, b, reverse=reverse)


def test_numerically_singular_centre_block_raises():
    # Each entry is finite and the diagonal is nonzero, but L^-1[1, 0] = -1e200 / 1e-400 overflows.
    w = torch.zeros(3, 3, 1, 1, dtype=torch.float64)
    w[range(3), range(3), 0, 0] = 1e-200
    w[1, 0, 0, 0] = w[2, 1, 0, 0] = 1e200
    with pytest.raises(ValueError, match="numerically singular"):
        ops.ar_conv2d_inverse(torch.zeros(1, 3, 2, 2, dtype=torch.float64), w)


def test_bad_arguments_raise(generator):
    x, w, b = make_problem((1, 3, 4, 4), 3, generator, torch.float32)
    cases = [
        ((x[0], w, b), "'y' must be a 4-D image batch"),
        ((x, w[:2], b), r"'weight' must have shape \[C, C, k, k\] with C = 3"),
        ((x, torch.zeros(3, 3, 2, 2), b), "odd kernel size"),
        ((x, w.double(), b), "'weight' must have dtype Float like 'y'"),
        ((x, w, b[:2]), r"'bias' must have shape \[C\]"),
        ((x.int(), w, b), "'y' must be float32 or float64"),
    ]
    for args, message in cases:
        with pytest.raises(RuntimeError, match=message):
            ops.ar_conv2d_inverse(*args)
    with pytest.raises(RuntimeError, match="'x' must be a 4-D image batch"):
        ops.ar_conv2d(x[0], w, b)


@pytest.mark.parametrize("reverse", [False, True])
def test_deterministic(generator, reverse):
    x, w, b = make_problem((16, 5, 9, 9), 3, generator, torch.float32)
    first = ops.ar_conv2d_inverse(x, w, b, reverse=reverse)
    for _ in range(3):
        assert torch.equal(ops.ar_conv2d_inverse(x, w, b, reverse=reverse), first)


@requires_cuda
@pytest.mark.parametrize("reverse", [False, True])
@pytest.mark.parametrize("shape,k", [((64, 12, 16, 16), 3), ((3, 5, 17, 9), 5), ((2, 48, 33, 31), 3)])
def test_cpu_and_cuda_agree(generator, dtype, shape, k, reverse):
    x, w, b = make_problem(shape, k, generator, dtype)
    y = ops.ar_conv2d(x, w, b, reverse=reverse)
    cpu = ops.ar_conv2d_inverse(y, w, b, reverse=reverse)
    cuda = ops.ar_conv2d_inverse(y.cuda(), w.cuda(), b.cuda(), reverse=reverse).cpu()
    torch.testing.assert_close(cuda, cpu, rtol=0, atol=ROUND_TRIP[dtype])
    torch.testing.assert_close(cuda, x, rtol=0, atol=ROUND_TRIP[dtype])
    first = ops.ar_conv2d_inverse(y.cuda(), w.cuda(), b.cuda(), reverse=reverse)
    assert torch.equal(ops.ar_conv2d_inverse(y.cuda(), w.cuda(), b.cuda(), reverse=reverse), first)


@requires_cuda
def test_cuda_gradients_match_cpu(generator):
    x, w, b = make_problem((2, 3, 5, 4), 3, generator, torch.float64)
    grads = []
    for device in ("cpu", "cuda"):
        args = [t.to(device).requires_grad_() for t in (x, w, b)]
        out = ops.ar_conv2d_inverse(*args, reverse=True)
        grads.append([g.cpu() for g in torch.autograd.grad(out.square().sum(), args)])
    for a, c in zip(*grads, strict=True):
        torch.testing.assert_close(a, c, rtol=1e-10, atol=1e-10)


@requires_cuda
def test_mixed_devices_raise(generator):
    x, w, b = make_problem((1, 3, 4, 4), 3, generator, torch.float32)
    with pytest.raises(RuntimeError, match="'weight' must be on"):
        ops.ar_conv2d_inverse(x.cuda(), w, b.cuda())


@requires_cuda
def test_cuda_forward_is_float32_whatever_the_tf32_setting(generator):
    # cuDNN's TF32 (torch's default for convolutions) would leave ~1e-3 relative error: the forward
    # must stay float32 so that the inverse undoes it to float32 rounding
    x, w, b = make_problem((4, 16, 24, 24), 3, generator, torch.float32)
    previous = torch.backends.cudnn.allow_tf32
    try:
        torch.backends.cudnn.allow_tf32 = True
        y = ops.ar_conv2d(x.cuda(), w.cuda(), b.cuda())
        back = ops.ar_conv2d_inverse(y, w.cuda(), b.cuda())
    finally:
        torch.backends.cudnn.allow_tf32 = previous
    torch.testing.assert_close(y.cpu(), ops.ar_conv2d(x, w, b), rtol=1e-5, atol=1e-5)
    torch.testing.assert_close(back.cpu(), x, rtol=ROUND_TRIP[torch.float32], atol=ROUND_TRIP[torch.float32])
