"""Tests of the coupling family: round_ste, integer_coupling, discretized_logistic_logp.

Follows the checklist of docs/architecture.md: opcheck, float64 gradcheck, equality with the
references, torch.compile(fullgraph=True), non-contiguous and empty inputs,
dtypes, errors, and CPU vs CUDA (skipped without a GPU).
"""

from __future__ import annotations

import math

import pytest
import torch

from flowkernels import ops
from flowkernels.reference import coupling as ref

from .conftest import every_cpu_isa, requires_cuda

pytestmark = every_cpu_isa

OPS = torch.ops.flowkernels


def bits(t: torch.Tensor) -> torch.Tensor:
    """The raw bit patterns, so that equality also distinguishes -0.0 from 0.0."""
    return t.view(torch.int32 if t.dtype == torch.float32 else torch.int64)


def assert_bitwise_equal(a: torch.Tensor, b: torch.Tensor) -> None:
    assert a.shape == b.shape and a.dtype == b.dtype
    nan = torch.isnan(a)
    assert torch.equal(nan, torch.isnan(b))
    assert torch.equal(bits(a)[~nan], bits(b)[~nan])


def tolerance(dtype: torch.dtype) -> dict:
    return {"rtol": 2e-5, "atol": 2e-5} if dtype == torch.float32 else {"rtol": 1e-11, "atol": 1e-11}


# ---------------------------------------------------------------------------
# round_ste


HALVES = [-3.5, -2.5, -1.5, -0.5, -0.3, -0.0, 0.0, 0.3, 0.5, 1.5, 2.5, 3.5, 1e30, -1e30, 8388609.0]


def test_round_ste_hand_made(device, dtype):
    x = torch.tensor(HALVES + [math.inf, -math.inf, math.nan], dtype=dtype, device=device)
    y = ops.round_ste(x)
    expected = torch.tensor(
        [-4.0, -2.0, -2.0, -0.0, -0.0, -0.0, 0.0, 0.0, 0.0, 2.0, 2.0, 4.0, 1e30, -1e30, 8388609.0]
        + [math.inf, -math.inf, math.nan],
        dtype=dtype,
        device=device,
    )
    assert_bitwise_equal(y, expected)


def test_round_ste_matches_torch_round_bitwise(device, dtype, generator):
    x = (torch.randn(10_000, generator=generator, dtype=dtype) * 100).to(device)
    x[::7] = torch.round(x[::7]) + 0.5  # many exact ties
    assert_bitwise_equal(ops.round_ste(x), torch.round(x))
    assert_bitwise_equal(ops.round_ste(x), ref.round_ste(x))


def test_round_ste_gradient_is_identity(device, dtype, generator):
    x = torch.randn(3, 5, generator=generator, dtype=dtype).to(device).requires_grad_()
    upstream = torch.randn(3, 5, generator=generator, dtype=dtype).to(device)
    (grad,) = torch.autograd.grad(ops.round_ste(x), x, upstream)
    assert torch.equal(grad, upstream)


def test_round_ste_noncontiguous_and_empty(device):
    x = torch.randn(6, 8, device=device) * 10
    view = x.t()[::2]
    assert not view.is_contiguous()
    assert torch.equal(ops.round_ste(view), torch.round(view))
    for shape in [(0,), (2, 0, 3)]:
        empty = torch.empty(shape, device=device)
        assert ops.round_ste(empty).shape == shape


@pytest.mark.parametrize("bad", [torch.int32, torch.int64, torch.complex64, torch.float16])
def test_round_ste_rejects_dtype(bad):
    x = torch.zeros(4, dtype=bad)
    with pytest.raises(RuntimeError, match=r"round_ste: argument 'x' must be float32 or float64"):
        ops.round_ste(x)


def test_round_ste_opcheck(device, dtype):
    x = torch.randn(4, 7, dtype=dtype, device=device, requires_grad=True)
    torch.library.opcheck(OPS.round_ste.default, (x,))


# ---------------------------------------------------------------------------
# integer_coupling


@pytest.mark.parametrize("scale", [1.0, 2.0, 256.0, 0.25])
@pytest.mark.parametrize("inverse", [False, True])
def test_integer_coupling_matches_reference_bitwise(device, dtype, generator, scale, inverse):
    x = torch.randint(-1000, 1000, (64, 33), generator=generator).to(dtype).to(device) / scale
    t = (torch.randn(64, 33, generator=generator, dtype=dtype) * 40).to(device)
    got = ops.integer_coupling(x, t, inverse=inverse, scale=scale)
    assert_bitwise_equal(got, ref.integer_coupling(x, t, inverse=inverse, scale=scale))
    assert torch.equal(torch.round(got * scale), got * scale), "output left the lattice 1/scale"


@pytest.mark.parametrize("scale", [1.0, 256.0])
def test_integer_coupling_round_trip_is_exact(device, dtype, generator, scale):
    limit = 2**20 if dtype == torch.float32 else 2**40
    x = torch.randint(-limit, limit, (4096,), generator=generator).to(dtype).to(device) / scale
    t = (torch.randn(4096, generator=generator, dtype=dtype) * 1e3).to(device)
    y = ops.integer_coupling(x, t, scale=scale)
    assert_bitwise_equal(ops.integer_coupling(y, t, inverse=True, scale=scale), x)


@pytest.mark.parametrize("inverse", [False, True])
def test_integer_coupling_gradients(device, dtype, generator, inverse):
    x = torch.randn(5, 4, generator=generator, dtype=dtype).to(device).requires_grad_()
    t = torch.randn(5, 4, generator=generator, dtype=dtype).to(device).requires_grad_()
    upstream = torch.randn(5, 4, generator=generator, dtype=dtype).to(device)
    gx, gt = torch.autograd.grad(ops.integer_coupling(x, t, inverse=inverse, scale=4.0), (x, t), upstream)
    assert torch.equal(gx, upstream)
    assert torch.equal(gt, -upstream if inverse else upstream)


def test_integer_coupling_gradcheck_in_x(device):
    # d/dx is exactly the identity; d/dt is straight-through by design (not the
    # true derivative, which is zero almost everywhere), so only x is checked.
    x = torch.randn(3, 4, dtype=torch.float64, device=device, requires_grad=True)
    t = torch.randn(3, 4, dtype=torch.float64, device=device) * 3
    assert torch.autograd.gradcheck(lambda x: ops.integer_coupling(x, t, scale=2.0), (x,))


def test_integer_coupling_noncontiguous_and_empty(device, generator):
    x = torch.randint(-9, 9, (8, 6), generator=generator).float().to(device).t()
    t = (torch.randn(12, 8, generator=generator) * 5).to(device)[::2]
    assert not x.is_contiguous() and not t.is_contiguous()
    assert torch.equal(ops.integer_coupling(x, t), ref.integer_coupling(x, t))
    empty = torch.empty(0, 3, device=device)
    assert ops.integer_coupling(empty, empty).shape == (0, 3)


def test_integer_coupling_errors():
    x = torch.zeros(3, 4)
    with pytest.raises(
        RuntimeError, match=r"integer_coupling: argument 't' must have shape x.shape = \[3, 4\], got \[4, 3\]"
    ):
        ops.integer_coupling(x, torch.zeros(4, 3))
    with pytest.raises(RuntimeError, match=r"argument 't' must have dtype Float"):
        ops.integer_coupling(x, torch.zeros(3, 4, dtype=torch.float64))
    with pytest.raises(RuntimeError, match=r"argument 'x' must be float32 or float64, got Int"):
        ops.integer_coupling(x.int(), x.int())
    for scale in [0.0, -1.0, math.inf, math.nan]:
        with pytest.raises(ValueError, match=r"argument 'scale' must be positive, finite and a normal"):
            ops.integer_coupling(x, x, scale=scale)


@pytest.mark.parametrize("inverse", [False, True])
def test_integer_coupling_opcheck(device, dtype, inverse):
    x = torch.randint(-5, 5, (6, 3), device=device).to(dtype).requires_grad_()
    t = torch.randn(6, 3, dtype=dtype, device=device, requires_grad=True)
    torch.library.opcheck(OPS.integer_coupling.default, (x, t), {"inverse": inverse, "scale": 2.0})


# ---------------------------------------------------------------------------
# discretized_logistic_logp


def logistic_inputs(shape, K, dtype, device, generator, *, with_pi=True, spread=3.0):
    x = torch.randint(0, 256, shape, generator=generator).to(dtype)
    mu = torch.rand(*shape, K, generator=generator, dtype=dtype) * 300 - 20
    log_scale = torch.randn(*shape, K, generator=generator, dtype=dtype) * 0.8 + spread * 0.5
    logit_pi = torch.randn(*shape, K, generator=generator, dtype=dtype) if with_pi else None
    to = lambda t: None if t is None else t.to(device)  # noqa: E731
    return to(x), to(mu), to(log_scale), to(logit_pi)


BOUNDS = [(None, None), (0.0, 255.0), (0.0, None), (None, 255.0)]


@pytest.mark.parametrize("lower,upper", BOUNDS)
@pytest.mark.parametrize("K,with_pi", [(1, False), (1, True), (5, True)])
def test_logistic_matches_reference(device, dtype, generator, lower, upper, K, with_pi):
    x, mu, ls, pi = logistic_inputs((4, 3, 9, 7), K, dtype, device, generator, with_pi=with_pi)
    got = ops.discretized_logistic_logp(x, mu, ls, pi, lower=lower, upper=upper)
    # The reference in float64 is the oracle for both dtypes.
    want = ref.discretized_logistic_logp(
        x.double(), mu.double(), ls.double(), None if pi is None else pi.double(), lower=lower, upper=upper
    )
    torch.testing.assert_close(got.double(), want, **tolerance(dtype))


def test_logistic_single_component_without_last_dim(device, dtype, generator):
    x, mu, ls, _ = logistic_inputs((5, 6), 1, dtype, device, generator, with_pi=False)
    a = ops.discretized_logistic_logp(x, mu[..., 0], ls[..., 0], bin_width=2.0)
    b = ops.discretized_logistic_logp(x, mu, ls, bin_width=2.0)
    assert torch.equal(a, b)


def test_logistic_hand_made(device, dtype):
    sig = lambda z: 1.0 / (1.0 + math.exp(-z))  # noqa: E731
    x = torch.tensor([3.0, 0.0, 255.0, 10.0], dtype=dtype, device=device)
    mu = torch.tensor([3.0, 1.5, 250.0, 7.0], dtype=dtype, device=device)
    log_scale = torch.tensor([0.0, math.log(2.0), 0.0, math.log(0.5)], dtype=dtype, device=device)
    got = ops.discretized_logistic_logp(x, mu, log_scale, lower=0.0, upper=255.0)
    want = [
        math.log(sig(0.5) - sig(-0.5)),  # centred interior bin
        math.log(sig((0.0 + 0.5 - 1.5) / 2.0)),  # lower edge: all the mass below 0.5
        math.log(1.0 - sig(255.0 - 0.5 - 250.0)),  # upper edge: all the mass above 254.5
        math.log(sig((10.5 - 7.0) / 0.5) - sig((9.5 - 7.0) / 0.5)),
    ]
    torch.testing.assert_close(got.double().cpu(), torch.tensor(want, dtype=torch.float64), **tolerance(dtype))


@pytest.mark.parametrize("bin_width", [1.0, 1.0 / 256])
@pytest.mark.parametrize("K", [1, 3])
def test_logistic_probabilities_sum_to_one(device, K, bin_width, generator):
    # Unbounded: sum over a window of +-4000 bins around the mixture; the tails
    # outside hold less than 1e-9 of the mass.
    mu = (torch.randn(K, generator=generator, dtype=torch.float64) * 20 * bin_width).to(device)
    log_scale = (torch.randn(K, generator=generator, dtype=torch.float64) * 0.3 + math.log(5 * bin_width)).to(device)
    logit_pi = torch.randn(K, generator=generator, dtype=torch.float64).to(device)
    x = torch.arange(-4000, 4001, dtype=torch.float64, device=device) * bin_width
    n = x.numel()
    logp = ops.discretized_logistic_logp(
        x, mu.expand(n, K), log_scale.expand(n, K), logit_pi.expand(n, K), bin_width=bin_width
    )
    assert abs(logp.exp().sum().item() - 1.0) < 1e-6
    # Bounded: the edge bins take the tails, so the 256 bins sum to 1 exactly (to rounding).
    x = torch.arange(256, dtype=torch.float64, device=device)
    mu = torch.full((256, K), 30.0, dtype=torch.float64, device=device)
    logp = ops.discretized_logistic_logp(
        x, mu, log_scale.expand(256, K) * 0 + 3.0, logit_pi.expand(256, K), lower=0.0, upper=255.0
    )
    assert abs(logp.exp().sum().item() - 1.0) < 1e-12


@pytest.mark.parametrize("lower,upper", BOUNDS[:2])
def test_logistic_matches_bruteforce_cdf_difference(device, generator, lower, upper):
    # Moderate tails, where the textbook CDF difference is still accurate in float64.
    x, mu, ls, pi = logistic_inputs((6, 50), 4, torch.float64, device, generator, spread=6.0)
    mu = x.unsqueeze(-1) + torch.randn(mu.shape, generator=generator, dtype=torch.float64).to(device) * 20
    got = ops.discretized_logistic_logp(x, mu, ls, pi, lower=lower, upper=upper)
    want = ref.discretized_logistic_logp_bruteforce(x, mu, ls, pi, lower=lower, upper=upper)
    torch.testing.assert_close(got, want, rtol=1e-9, atol=1e-9)


def test_logistic_far_tails_are_finite(device, dtype):
    # |x - mu| / s from 1e-3 to 1e4 on both sides, and tiny and huge scales.
    ratio = torch.cat([-torch.logspace(-3, 4, 200), torch.logspace(-3, 4, 200)]).to(dtype)
    x = torch.zeros_like(ratio).to(device)
    for log_scale in [-8.0, 0.0, 8.0]:
        s = math.exp(log_scale)
        mu = (-ratio * s).to(device).requires_grad_()
        ls = torch.full_like(mu, log_scale).requires_grad_()
        logp = ops.discretized_logistic_logp(x, mu, ls)
        assert torch.isfinite(logp).all()
        want = ref.discretized_logistic_logp(x.double(), mu.double(), ls.double())
        torch.testing.assert_close(logp.double(), want, rtol=1e-5 if dtype == torch.float32 else 1e-11, atol=1e-6)
        grads = torch.autograd.grad(logp.sum(), (mu, ls))
        assert all(torch.isfinite(g).all() for g in grads)


@pytest.mark.parametrize("lower,upper", [(None, None), (0.0, 255.0)])
@pytest.mark.parametrize("K", [1, 3])
def test_logistic_nan_propagates_like_the_reference(device, dtype, lower, upper, K):
    # a NaN x, mu, log_scale or logit_pi in one element gives NaN there (never probability 1), and
    # its gradients are NaN; every other element is untouched
    bounds = {"lower": lower, "upper": upper}
    for where in ("x", "mu", "log_scale", "logit_pi"):
        x = torch.tensor([3.0, 0.0, 255.0, 7.0], dtype=dtype, device=device)
        mu = torch.full((4, K), 2.0, dtype=dtype, device=device)
        log_scale = torch.zeros(4, K, dtype=dtype, device=device)
        logit_pi = torch.zeros(4, K, dtype=dtype, device=device)
        values = {"x": x, "mu": mu, "log_scale": log_scale, "logit_pi": logit_pi}
        if where == "x":
            x[0] = float("nan")
        else:
            values[where][0, K - 1] = float("nan")
        params = [t.requires_grad_() for t in (mu, log_scale, logit_pi)]
        got = ops.discretized_logistic_logp(x, *params, **bounds)
        want = ref.discretized_logistic_logp(x, mu.detach(), log_scale.detach(), logit_pi.detach(), **bounds)
        assert bool(torch.isnan(got[0])) and bool(torch.isnan(want[0])), where
        torch.testing.assert_close(got[1:], want[1:])
        grads = torch.autograd.grad(got.sum(), params)
        assert all(bool(torch.isnan(g[0]).any()) and bool(torch.isfinite(g[1:]).all()) for g in grads), where
    single = ops.discretized_logistic_logp(
        torch.tensor([float("nan")], dtype=dtype, device=device),
        torch.zeros(1, 1, dtype=dtype, device=device),
        torch.zeros(1, 1, dtype=dtype, device=device),
    )  # the example: was 0.0 (probability 1) on CPU
    assert bool(torch.isnan(single).all())


@pytest.mark.parametrize("lower,upper", BOUNDS[:2])
@pytest.mark.parametrize("K,with_pi", [(1, False), (3, True)])
def test_logistic_gradcheck(device, generator, lower, upper, K, with_pi):
    x, mu, ls, pi = logistic_inputs((2, 5), K, torch.float64, device, generator, with_pi=with_pi)
    # Put the values near the mixture so that every gradient term is sizeable.
    mu = x.unsqueeze(-1) + torch.randn(mu.shape, generator=generator, dtype=torch.float64).to(device) * 3
    ls = ls * 0.2
    x = x.clone().requires_grad_()
    inputs = [x, mu.requires_grad_(), ls.requires_grad_()] + ([pi.requires_grad_()] if with_pi else [])

    def fn(x, mu, ls, pi=None):
        return ops.discretized_logistic_logp(x, mu, ls, pi, lower=lower, upper=upper)

    assert torch.autograd.gradcheck(fn, inputs)


@pytest.mark.parametrize("K,with_pi", [(1, False), (4, True)])
def test_logistic_gradients_match_reference(device, dtype, generator, K, with_pi):
    x, mu, ls, pi = logistic_inputs((3, 8, 8), K, dtype, device, generator, with_pi=with_pi)
    inputs = [t.clone().requires_grad_() for t in (x, mu, ls, pi) if t is not None]
    upstream = torch.randn(x.shape, generator=generator, dtype=dtype).to(device)
    got = torch.autograd.grad(ops.discretized_logistic_logp(*inputs, lower=0.0, upper=255.0), inputs, upstream)
    doubles = [t.detach().double().requires_grad_() for t in inputs]
    want = torch.autograd.grad(
        ref.discretized_logistic_logp(*doubles, lower=0.0, upper=255.0), doubles, upstream.double()
    )
    for g, w in zip(got, want, strict=True):
        torch.testing.assert_close(g.double(), w, rtol=1e-4 if dtype == torch.float32 else 1e-10, atol=1e-6)


@pytest.mark.parametrize("with_pi,lower,upper", [(False, None, None), (True, 0.0, 255.0), (True, None, 10.0)])
def test_logistic_opcheck(device, dtype, generator, with_pi, lower, upper):
    x, mu, ls, pi = logistic_inputs((3, 4), 2 if with_pi else 1, dtype, device, generator, with_pi=with_pi)
    args = (x, mu.requires_grad_(), ls.requires_grad_(), None if pi is None else pi.requires_grad_())
    kwargs = {"bin_width": 1.0, "lower": lower, "upper": upper}
    torch.library.opcheck(OPS.discretized_logistic_logp.default, args, kwargs)
    grad = torch.randn(x.shape, dtype=dtype, device=device)
    torch.library.opcheck(
        OPS.discretized_logistic_logp_backward.default,
        (grad, x, mu.detach(), ls.detach(), None if pi is None else pi.detach()),
        kwargs,
    )


def test_logistic_noncontiguous_and_empty(device, generator):
    x, mu, ls, pi = logistic_inputs((6, 5), 3, torch.float32, device, generator)
    # Same values, laid out transposed in memory.
    mu_t = mu.permute(2, 1, 0).contiguous().permute(2, 1, 0)
    x_t = x.t().contiguous().t()
    assert not mu_t.is_contiguous() and not x_t.is_contiguous()
    assert torch.equal(ops.discretized_logistic_logp(x_t, mu_t, ls, pi), ops.discretized_logistic_logp(x, mu, ls, pi))
    empty = torch.empty(0, 4, device=device)
    params = torch.empty(0, 4, 3, device=device, requires_grad=True)
    out = ops.discretized_logistic_logp(empty, params, params, params)
    assert out.shape == (0, 4)
    (grad,) = torch.autograd.grad(out.sum(), params)
    assert grad.shape == params.shape


def test_logistic_is_deterministic(device, generator):
    x, mu, ls, pi = logistic_inputs((64, 3, 8, 8), 5, torch.float32, device, generator)
    inputs = [t.requires_grad_() for t in (mu, ls, pi)]
    first = ops.discretized_logistic_logp(x, *inputs)
    first_grads = torch.autograd.grad(first.sum(), inputs)
    second = ops.discretized_logistic_logp(x, *inputs)
    second_grads = torch.autograd.grad(second.sum(), inputs)
    assert_bitwise_equal(first.detach(), second.detach())
    for a, b in zip(first_grads, second_grads, strict=True):
        assert_bitwise_equal(a, b)


def test_logistic_errors():
    x = torch.zeros(2, 3)
    mu = torch.zeros(2, 3, 4)
    with pytest.raises(
        RuntimeError, match=r"argument 'mu' must have shape x.shape \+ \[K\] = \[2, 3, 4\], got \[2, 4, 4\]"
    ):
        ops.discretized_logistic_logp(x, torch.zeros(2, 4, 4), mu, mu)
    with pytest.raises(RuntimeError, match=r"argument 'log_scale' must have shape"):
        ops.discretized_logistic_logp(x, mu, torch.zeros(2, 3, 5), mu)
    with pytest.raises(RuntimeError, match=r"argument 'logit_pi' must have shape"):
        ops.discretized_logistic_logp(x, mu, mu, torch.zeros(2, 3, 1))
    with pytest.raises(RuntimeError, match=r"without 'logit_pi' the mixture has one component"):
        ops.discretized_logistic_logp(x, mu, mu)
    with pytest.raises(RuntimeError, match=r"argument 'mu' must have dtype Float like 'x', got Double"):
        ops.discretized_logistic_logp(x, mu.double(), mu, mu)
    with pytest.raises(RuntimeError, match=r"argument 'x' must be float32 or float64, got Long"):
        ops.discretized_logistic_logp(x.long(), mu.long(), mu.long(), mu.long())
    with pytest.raises(ValueError, match=r"argument 'bin_width' must be positive, finite and a normal"):
        ops.discretized_logistic_logp(x, mu, mu, mu, bin_width=0.0)
    with pytest.raises(ValueError, match=r"at least one component"):
        ops.discretized_logistic_logp(x, torch.zeros(2, 3, 0), torch.zeros(2, 3, 0), torch.zeros(2, 3, 0))


# ---------------------------------------------------------------------------
# torch.compile and devices


def _all_three(x, t, mu, log_scale, logit_pi):
    z = ops.integer_coupling(x, t, scale=2.0)
    z = ops.round_ste(z * 2.0) / 2.0
    return ops.discretized_logistic_logp(z, mu, log_scale, logit_pi, bin_width=0.5, lower=-64.0, upper=64.0)


@pytest.mark.parametrize("backend", ["aot_eager", "inductor"])
def test_compile_fullgraph_matches_eager(device, generator, backend):
    x = (torch.randint(-50, 50, (4, 10), generator=generator) / 2.0).to(device)
    t = torch.randn(4, 10, generator=generator).to(device).requires_grad_()
    mu, ls, pi = (torch.randn(4, 10, 3, generator=generator).to(device).requires_grad_() for _ in range(3))
    compiled = torch.compile(_all_three, fullgraph=True, backend=backend)
    eager_out = _all_three(x, t, mu, ls, pi)
    compiled_out = compiled(x, t, mu, ls, pi)
    torch.testing.assert_close(compiled_out, eager_out, rtol=0, atol=0)
    eager_grads = torch.autograd.grad(eager_out.sum(), (t, mu, ls, pi))
    compiled_grads = torch.autograd.grad(compiled_out.sum(), (t, mu, ls, pi))
    for a, b in zip(compiled_grads, eager_grads, strict=True):
        torch.testing.assert_close(a, b, rtol=1e-6, atol=1e-6)


def test_meta_tensors_give_shapes():
    x = torch.empty(3, 4, device="meta")
    assert ops.round_ste(x).shape == (3, 4)
    assert ops.integer_coupling(x, x).device.type == "meta"
    mu = torch.empty(3, 4, 2, device="meta")
    assert ops.discretized_logistic_logp(x, mu, mu, mu).shape == (3, 4)


@requires_cuda
def test_cpu_and_cuda_agree(generator):
    x = torch.randn(100_000, generator=generator) * 50
    x[::3] = torch.round(x[::3]) + 0.5
    assert_bitwise_equal(ops.round_ste(x.cuda()).cpu(), ops.round_ste(x))
    t = torch.randn(100_000, generator=generator) * 50
    for scale in [1.0, 256.0]:
        lattice = torch.round(x * scale) / scale
        assert_bitwise_equal(
            ops.integer_coupling(lattice.cuda(), t.cuda(), scale=scale).cpu(),
            ops.integer_coupling(lattice, t, scale=scale),
        )
    for dtype in (torch.float32, torch.float64):
        xs, mu, ls, pi = logistic_inputs((16, 3, 16, 16), 5, dtype, "cpu", generator)
        cpu = ops.discretized_logistic_logp(xs, mu, ls, pi, lower=0.0, upper=255.0)
        gpu = ops.discretized_logistic_logp(xs.cuda(), mu.cuda(), ls.cuda(), pi.cuda(), lower=0.0, upper=255.0)
        torch.testing.assert_close(gpu.cpu(), cpu, **tolerance(dtype))
        g = torch.ones_like(xs)
        cpu_grads = OPS.discretized_logistic_logp_backward(g, xs, mu, ls, pi, lower=0.0, upper=255.0)
        gpu_grads = OPS.discretized_logistic_logp_backward(
            g.cuda(), xs.cuda(), mu.cuda(), ls.cuda(), pi.cuda(), lower=0.0, upper=255.0
        )
        for a, b in zip(gpu_grads, cpu_grads, strict=True):
            torch.testing.assert_close(a.cpu(), b, rtol=1e-4 if dtype == torch.float32 else 1e-10, atol=1e-6)


@requires_cuda
def test_mixed_devices_raise():
    x = torch.zeros(3, device="cuda")
    with pytest.raises(RuntimeError, match=r"argument 't' must be on cuda:0 like 'x', got cpu"):
        ops.integer_coupling(x, torch.zeros(3))
    mu = torch.zeros(3, 1)
    with pytest.raises(RuntimeError, match=r"argument 'mu' must be on cuda:0 like 'x', got cpu"):
        ops.discretized_logistic_logp(x, mu, mu.cuda())
