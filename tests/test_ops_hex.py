"""Tests of the hex family ops: hex_conv2d, hex_filter_transform, hex_group_conv2d.

Equality with the gather + conv2d reference (both the direct AVX-512 kernel in
float32 and the masked dense path in float64), masked corners ignored and
zero-gradient, exact equivariance of group convolutions, the filter transform's
backward as a deterministic gather-reduce, opcheck, float64 gradcheck,
torch.compile(fullgraph=True), errors, and CPU vs CUDA (skipped without a GPU).
"""

from __future__ import annotations

import pytest
import torch

import flowkernels
from flowkernels import hex as hx
from flowkernels import ops
from flowkernels.reference import hex as ref

from .conftest import every_cpu_isa, requires_cuda

pytestmark = every_cpu_isa

OPS = torch.ops.flowkernels
PAIRS = [("z2", "p6"), ("p6", "p6"), ("z2", "p6m"), ("p6m", "p6m"), ("z2", "z2")]


def tolerance(dtype):
    return {"rtol": 1e-5, "atol": 1e-5} if dtype == torch.float32 else {"rtol": 1e-12, "atol": 1e-12}


def make_conv(shape, k, generator, dtype, bias=True):
    batch, n_in, n_out, H, W = shape
    x = torch.randn(batch, n_in, H, W, generator=generator, dtype=torch.float64).to(dtype)
    w = (torch.randn(n_out, n_in, k, k, generator=generator, dtype=torch.float64) / (n_in * 3) ** 0.5).to(dtype)
    b = torch.randn(n_out, generator=generator, dtype=torch.float64).to(dtype) if bias else None
    return x, w, b


CONV_SHAPES = [
    (2, 3, 5, 7, 9),
    (1, 16, 16, 20, 64),
    (2, 4, 20, 17, 33),
    (3, 2, 7, 5, 70),  # several column segments and a partial one
    (2, 1, 1, 1, 1),
    (1, 5, 33, 3, 17),  # output channels not a multiple of the kernel's block
    (1, 96, 100, 5, 6),  # past the direct kernel's channel limit: the masked dense path
]


@pytest.mark.parametrize("k", [1, 3, 5, 7])
@pytest.mark.parametrize("shape", CONV_SHAPES, ids=lambda s: "x".join(map(str, s)))
def test_hex_conv2d_matches_reference(device, dtype, generator, shape, k):
    x, w, b = (t.to(device) for t in make_conv(shape, k, generator, dtype))
    torch.testing.assert_close(ops.hex_conv2d(x, w, b), ref.hex_conv2d(x, w, b), **tolerance(dtype))
    torch.testing.assert_close(ops.hex_conv2d(x, w), ref.hex_conv2d(x, w), **tolerance(dtype))


def test_hex_conv2d_ignores_corners_and_gives_them_zero_gradient(generator):
    x, w, b = make_conv((2, 3, 4, 6, 7), 5, generator, torch.float64)
    live = hx.hex_mask(2).double()
    noisy = w + (1 - live) * 100.0
    assert torch.equal(ops.hex_conv2d(x, noisy, b), ops.hex_conv2d(x, w, b))
    weight = noisy.clone().requires_grad_()
    (grad,) = torch.autograd.grad(ops.hex_conv2d(x, weight, b).square().sum(), weight)
    assert torch.all(grad[:, :, live == 0] == 0) and torch.all(grad[:, :, live == 1] != 0)


def test_hex_conv2d_only_reads_hexagonal_neighbours(generator):
    """One input cell reaches exactly the cells within hex distance R of it."""
    R, N = 2, 11
    w = torch.ones(1, 1, 2 * R + 1, 2 * R + 1)
    x = torch.zeros(1, 1, N, N)
    x[0, 0, 5, 5] = 1.0
    y = ops.hex_conv2d(x, w)[0, 0]
    u, v = torch.meshgrid(torch.arange(N) - 5, torch.arange(N) - 5, indexing="ij")
    assert torch.equal(y != 0, hx.hex_distance(u, v) <= R)


def test_translation_equivariance_by_axial_shifts(generator):
    x, w, b = make_conv((1, 3, 4, 16, 16), 3, generator, torch.float32)
    x[..., -3:, :] = 0
    x[..., :, -4:] = 0
    shifted = torch.roll(x, shifts=(2, 3), dims=(2, 3))  # what rolls around is zero: a pure shift
    y = ops.hex_conv2d(x, w, b)
    torch.testing.assert_close(ops.hex_conv2d(shifted, w, b)[..., 2:, 3:], y[..., :-2, :-3], rtol=0, atol=1e-6)


@pytest.mark.parametrize("in_group,out_group", PAIRS)
@pytest.mark.parametrize("k", [3, 5])
def test_filter_transform_matches_reference_and_backward_is_its_adjoint(dtype, generator, in_group, out_group, k):
    g_in = hx.GROUP_ORDERS[in_group]
    w = torch.randn(4, 3, g_in, k, k, generator=generator, dtype=torch.float64).to(dtype).requires_grad_()
    bank = ops.hex_filter_transform(w, in_group, out_group)
    index, inverse = hx.filter_transform_tables(in_group, out_group, k)
    expected = ref.hex_filter_transform(w, in_group, out_group)
    assert torch.equal(bank, expected)  # a gather: exact
    upstream = torch.randn(bank.shape, generator=generator, dtype=torch.float64).to(dtype)
    (grad,) = torch.autograd.grad(bank, w, upstream)
    (expected_grad,) = torch.autograd.grad(expected, w, upstream)
    torch.testing.assert_close(grad, expected_grad, **tolerance(dtype))
    # every live compact cell is used by every output element exactly once
    uses = OPS.hex_filter_transform_backward(torch.ones(1, len(index), 1, index.shape[1], dtype=dtype), inverse)
    live = hx.hex_mask(k // 2).flatten().repeat(g_in).to(dtype)
    assert torch.equal(uses.flatten(), live * len(index))


def test_filter_transform_backward_is_deterministic(generator):
    w = torch.randn(8, 6, 12, 5, 5, generator=generator, requires_grad=True)
    upstream = torch.randn(8 * 12, 6 * 12, 5, 5, generator=generator)
    grads = [torch.autograd.grad(ops.hex_filter_transform(w, "p6m", "p6m"), w, upstream)[0] for _ in range(3)]
    assert all(torch.equal(g, grads[0]) for g in grads)


@pytest.mark.parametrize("in_group,out_group", PAIRS[:4])
def test_group_conv_is_exactly_equivariant(generator, in_group, out_group):
    N = 9
    domain = hx.hex_domain_mask(N).double()
    g_in, g_out = hx.GROUP_ORDERS[in_group], hx.GROUP_ORDERS[out_group]
    shape = (2, 3, N, N) if in_group == "z2" else (2, 3, g_in, N, N)
    x = torch.randn(shape, generator=generator, dtype=torch.float64) * domain
    w1 = torch.randn(4, 3, g_in, 3, 3, generator=generator, dtype=torch.float64)
    w2 = torch.randn(2, 4, g_out, 5, 5, generator=generator, dtype=torch.float64)
    b1 = torch.randn(4, generator=generator, dtype=torch.float64)

    def net(x):
        y = torch.relu(ops.hex_group_conv2d(x, w1, b1, in_group=in_group, out_group=out_group)) * domain
        return ops.hex_group_conv2d(y, w2, in_group=out_group, out_group=out_group) * domain

    y = net(x)
    for k in range(1, 6):
        torch.testing.assert_close(net(hx.rotate60(x, k)), hx.rotate60(y, k), rtol=0, atol=1e-11)
    if out_group == "p6m":
        torch.testing.assert_close(net(hx.mirror(x)), hx.mirror(y), rtol=0, atol=1e-11)
    torch.testing.assert_close(
        ops.hex_group_conv2d(x, w1, b1, in_group=in_group, out_group=out_group),
        ref.hex_group_conv2d(x, w1, b1, in_group=in_group, out_group=out_group),
        rtol=1e-12,
        atol=1e-12,
    )


def test_gradcheck(generator):
    x, w, b = make_conv((2, 3, 4, 5, 6), 5, generator, torch.float64)
    args = [t.requires_grad_() for t in (x, w, b)]
    assert torch.autograd.gradcheck(ops.hex_conv2d, args)
    xg = torch.randn(1, 2, 6, 4, 4, generator=generator, dtype=torch.float64, requires_grad=True)
    wg = torch.randn(3, 2, 6, 3, 3, generator=generator, dtype=torch.float64, requires_grad=True)
    assert torch.autograd.gradcheck(lambda x, w: ops.hex_group_conv2d(x, w, in_group="p6", out_group="p6"), (xg, wg))


def test_float32_gradients_match_reference(generator):
    x, w, b = make_conv((2, 16, 8, 12, 20), 3, generator, torch.float32)
    grads = []
    for fn in (ops.hex_conv2d, ref.hex_conv2d):
        args = [t.clone().requires_grad_() for t in (x, w, b)]
        grads.append(torch.autograd.grad(fn(*args).square().sum(), args))
    for a, r in zip(*grads, strict=True):
        torch.testing.assert_close(a, r, rtol=1e-4, atol=1e-4)


@pytest.mark.parametrize("k", [1, 3, 5])
@pytest.mark.parametrize("shape", CONV_SHAPES, ids=lambda s: "x".join(map(str, s)))
def test_weight_gradient_matches_reference(device, dtype, generator, shape, k):
    """hex_conv2d_weight_backward (the direct kernel on the AVX-512 and AVX2 paths) against the
    float64 autograd of the reference; zero at the dead corners."""
    x, w, _ = make_conv(shape, k, generator, dtype, bias=False)
    grad = torch.randn(shape[0], shape[2], shape[3], shape[4], generator=generator, dtype=torch.float64)
    w64 = w.double().requires_grad_()
    (exact,) = torch.autograd.grad((ref.hex_conv2d(x.double(), w64) * grad).sum(), [w64])
    got = OPS.hex_conv2d_weight_backward(grad.to(dtype).to(device), x.to(device), k)
    scale = max(1.0, (shape[0] * shape[3] * shape[4]) ** 0.5)  # sums over B * H * W pixels
    tol = 2e-6 * scale if dtype == torch.float32 else 1e-12 * scale
    torch.testing.assert_close(got.double().cpu(), exact, rtol=tol, atol=tol)
    assert not bool(got.cpu()[..., ~hx.hex_mask(k // 2)].any())


def test_an_image_gives_the_same_result_alone_or_in_a_batch(generator):
    """Bit for bit on the direct kernel's paths (every output element is one fixed sum); oneDNN on the
    baseline path picks its algorithm by batch size, so there it holds to float32 rounding only."""
    x, w, b = make_conv((5, 16, 12, 9, 37), 3, generator, torch.float32)
    batch = ops.hex_conv2d(x, w, b)
    for index in (0, 3):
        alone = ops.hex_conv2d(x[index : index + 1], w, b)[0]
        if flowkernels.cpu.isa() == "baseline":
            torch.testing.assert_close(alone, batch[index], **tolerance(torch.float32))
        else:
            assert torch.equal(alone, batch[index])


def test_weight_gradient_does_not_depend_on_the_thread_count(generator):
    """Bit for bit on the direct kernel's paths; the baseline path's vendor convolution (oneDNN)
    splits its sums by thread count on some CPUs, so there it holds to float32 rounding only."""
    x, _, _ = make_conv((3, 16, 16, 12, 40), 3, generator, torch.float32)
    grad = torch.randn(3, 16, 12, 40, generator=generator)
    threads = torch.get_num_threads()
    try:
        torch.set_num_threads(1)
        one = OPS.hex_conv2d_weight_backward(grad, x, 3)
        torch.set_num_threads(max(2, threads))
        many = OPS.hex_conv2d_weight_backward(grad, x, 3)
    finally:
        torch.set_num_threads(threads)
    if flowkernels.cpu.isa() == "baseline":
        torch.testing.assert_close(one, many, rtol=1e-5, atol=1e-4)
    else:
        assert torch.equal(one, many)


@pytest.mark.parametrize("with_bias", [True, False])
def test_opcheck(device, dtype, generator, with_bias):
    x, w, b = make_conv((2, 3, 4, 5, 6), 3, generator, dtype, with_bias)
    args = tuple(t.to(device).requires_grad_() if t is not None else None for t in (x, w, b))
    torch.library.opcheck(OPS.hex_conv2d, args)
    index, inverse = hx.filter_transform_tables("p6", "p6", 3)
    weight = torch.randn(2, 3, 54, generator=generator, dtype=dtype).to(device).requires_grad_()
    torch.library.opcheck(OPS.hex_filter_transform, (weight, index.to(device), inverse.to(device)))
    grad = torch.randn(2, 6, 3, 54, generator=generator, dtype=dtype).to(device)
    torch.library.opcheck(OPS.hex_filter_transform_backward, (grad, inverse.to(device)))
    conv_grad = torch.randn(2, 4, 5, 6, generator=generator, dtype=dtype).to(device)
    torch.library.opcheck(OPS.hex_conv2d_weight_backward, (conv_grad, x.detach().to(device), 3))


@pytest.mark.parametrize("backend", ["aot_eager", "inductor"])
def test_compile_fullgraph_matches_eager(generator, backend):
    x = torch.randn(2, 3, 9, 9, generator=generator)
    w1 = torch.randn(4, 3, 1, 3, 3, generator=generator, requires_grad=True)
    w2 = torch.randn(2, 4, 12, 3, 3, generator=generator, requires_grad=True)

    def net(x, w1, w2):
        y = torch.relu(ops.hex_group_conv2d(x, w1, in_group="z2", out_group="p6m"))
        return ops.hex_group_conv2d(y, w2, in_group="p6m", out_group="p6m")

    eager = net(x, w1, w2)
    compiled = torch.compile(net, fullgraph=True, backend=backend)(x, w1, w2)
    torch.testing.assert_close(compiled, eager, rtol=1e-5, atol=1e-5)
    eager_grads = torch.autograd.grad(eager.square().sum(), (w1, w2))
    compiled_grads = torch.autograd.grad(compiled.square().sum(), (w1, w2))
    for a, c in zip(eager_grads, compiled_grads, strict=True):
        torch.testing.assert_close(c, a, rtol=1e-4, atol=1e-3)


def test_noncontiguous_empty_and_meta(generator):
    x, w, b = make_conv((2, 4, 6, 8, 10), 3, generator, torch.float32)
    channels_last = x.contiguous(memory_format=torch.channels_last)
    torch.testing.assert_close(ops.hex_conv2d(channels_last, w, b), ops.hex_conv2d(x, w, b), rtol=0, atol=0)
    assert ops.hex_conv2d(torch.empty(0, 4, 8, 10), w, b).shape == (0, 6, 8, 10)
    assert ops.hex_conv2d(torch.empty(2, 4, 0, 10), w, b).shape == (2, 6, 0, 10)
    no_channels = ops.hex_conv2d(torch.empty(2, 0, 8, 10), torch.empty(6, 0, 3, 3), b)
    assert torch.equal(no_channels, b.view(1, 6, 1, 1).expand(2, 6, 8, 10))
    meta = ops.hex_conv2d(x.to("meta"), w.to("meta"), b.to("meta"))
    assert meta.shape == (2, 6, 8, 10) and meta.device.type == "meta"


def test_errors(generator):
    x, w, b = make_conv((1, 3, 5, 6, 6), 3, generator, torch.float32)
    with pytest.raises(RuntimeError, match="odd kernel size"):
        ops.hex_conv2d(x, torch.zeros(5, 3, 2, 2))
    with pytest.raises(RuntimeError, match=r"'weight' must have shape \[O, I, k, k\] with I = 3"):
        ops.hex_conv2d(x, w[:, :2])
    with pytest.raises(RuntimeError, match="'x' must be a 4-D batch"):
        ops.hex_conv2d(x[0], w)
    with pytest.raises(RuntimeError, match="must agree in B, H and W"):
        OPS.hex_conv2d_weight_backward(torch.zeros(1, 5, 6, 7), x, 3)
    with pytest.raises(RuntimeError, match="'kernel_size' must be odd"):
        OPS.hex_conv2d_weight_backward(torch.zeros(1, 5, 6, 6), x, 4)
    with pytest.raises(RuntimeError, match=r"'bias' must have shape \[O\]"):
        ops.hex_conv2d(x, w, b[:2])
    with pytest.raises(RuntimeError, match="'weight' must have dtype Float like 'x'"):
        ops.hex_conv2d(x, w.double())
    with pytest.raises(ValueError, match="must be one of"):
        ops.hex_filter_transform(torch.zeros(2, 3, 1, 3, 3), "z2", "p4")
    with pytest.raises(ValueError, match=r"G_in = 6"):
        ops.hex_filter_transform(torch.zeros(2, 3, 12, 3, 3), "p6", "p6")
    with pytest.raises(ValueError, match="odd kernel sizes"):
        ops.hex_filter_transform(torch.zeros(2, 3, 1, 4, 4), "z2", "p6")
    with pytest.raises(ValueError, match=r"x must be \[B, I, 6, H, W\]"):
        ops.hex_group_conv2d(torch.zeros(1, 3, 12, 5, 5), torch.zeros(2, 3, 6, 3, 3), in_group="p6", out_group="p6")
    index, inverse = hx.filter_transform_tables("z2", "p6", 3)
    bad = index.clone()
    bad[0, 0] = 9
    with pytest.raises(ValueError, match="entries outside"):
        OPS.hex_filter_transform(torch.zeros(2, 3, 9), bad, inverse)
    with pytest.raises(RuntimeError, match="int64 table"):
        OPS.hex_filter_transform(torch.zeros(2, 3, 9), index.int(), inverse)


@requires_cuda
@pytest.mark.parametrize("in_group,out_group", PAIRS[:4])
def test_cpu_and_cuda_agree(generator, dtype, in_group, out_group):
    g_in = hx.GROUP_ORDERS[in_group]
    shape = (2, 3, 17, 17) if in_group == "z2" else (2, 3, g_in, 17, 17)
    x = torch.randn(shape, generator=generator, dtype=dtype)
    w = torch.randn(4, 3, g_in, 3, 3, generator=generator, dtype=dtype, requires_grad=True)
    b = torch.randn(4, generator=generator, dtype=dtype)
    outputs, grads = [], []
    for device in ("cpu", "cuda"):
        wd = w.detach().to(device).requires_grad_()
        y = ops.hex_group_conv2d(x.to(device), wd, b.to(device), in_group=in_group, out_group=out_group)
        outputs.append(y.detach().cpu())
        grads.append(torch.autograd.grad(y.square().sum(), wd)[0].cpu())
    torch.testing.assert_close(outputs[1], outputs[0], **tolerance(dtype))
    torch.testing.assert_close(grads[1], grads[0], rtol=1e-4 if dtype == torch.float32 else 1e-10, atol=1e-3)


@requires_cuda
def test_cuda_forward_is_float32_whatever_the_tf32_setting(generator):
    x = torch.randn(4, 32, 20, 20, generator=generator)
    w = torch.randn(32, 32, 5, 5, generator=generator) / 20
    previous = torch.backends.cudnn.allow_tf32
    try:
        torch.backends.cudnn.allow_tf32 = True
        y = ops.hex_conv2d(x.cuda(), w.cuda())
    finally:
        torch.backends.cudnn.allow_tf32 = previous
    want = ref.hex_conv2d(x.double(), w.double()).float()
    torch.testing.assert_close(y.cpu(), want, rtol=1e-5, atol=1e-5)
