"""Hostile arguments to the rANS coder and its raw ops: lengths outside the buffer, bin widths that
break the model's arithmetic, meta-device parameters with a real coder. Each gets a one-line
ValueError and leaves memory alone; nothing hangs."""

from __future__ import annotations

import subprocess
import sys

import pytest
import torch

from flowkernels.ops.rans import RansCoder

OPS = torch.ops.flowkernels


def coded(lanes: int = 2, length: int = 5) -> tuple[RansCoder, torch.Tensor, torch.Tensor]:
    mu, log_scale = torch.zeros(lanes, length), torch.zeros(lanes, length)
    coder = RansCoder(lanes)
    coder.push_logistic(torch.ones(lanes, length, dtype=torch.long), mu, log_scale)
    return coder, mu, log_scale


@pytest.mark.parametrize("bad", [10**9, 10**10, -(10**6), 2**62, -1])
def test_lengths_outside_the_buffer_are_refused_by_every_op(bad):
    coder, mu, log_scale = coded()
    coder.lengths[0] = bad
    symbols = torch.ones(2, 5, dtype=torch.long)
    message = r"'?lengths'? must be in \[0, "
    with pytest.raises(ValueError, match=message):
        coder.pop_logistic(mu, log_scale)
    with pytest.raises(ValueError, match=message):
        coder.push_logistic(symbols, mu, log_scale)
    cdf = torch.tensor([0, 1 << 15, 1 << 16], dtype=torch.int32)
    raw = (coder.state, coder.words, coder.lengths)
    with pytest.raises(ValueError, match=message):
        OPS.rans_push_logistic(*raw, symbols, mu, log_scale, None, 1.0, None, None, 24)
    with pytest.raises(ValueError, match=message):
        OPS.rans_pop_logistic(*raw, mu, log_scale, None, 1.0, None, None, 24)
    with pytest.raises(ValueError, match=message):
        OPS.rans_push_categorical(*raw, torch.zeros(2, 5, dtype=torch.long), cdf, 16, True)
    with pytest.raises(ValueError, match=message):
        OPS.rans_pop_categorical(*raw, cdf, 16, 5)
    probs = torch.full((2, 5, 2), 0.5)
    with pytest.raises(ValueError, match=message):
        OPS.rans_push_probs(*raw, torch.zeros(2, 5, dtype=torch.long), probs, 16)
    with pytest.raises(ValueError, match=message):
        OPS.rans_pop_probs(*raw, probs, 16, 5)


@pytest.mark.parametrize("bin_width", [5e-324, 1e-300, 2.0**-33, 2.0**33, float("inf"), 0.0, -1.0])
def test_bin_widths_outside_the_model_arithmetic_are_refused(bin_width):
    coder, mu, log_scale = coded()
    with pytest.raises(ValueError, match=r"'bin_width' must be in \[2\^-32, 2\^32\]"):
        coder.pop_logistic(mu, log_scale, bin_width=bin_width)
    with pytest.raises(ValueError, match=r"'bin_width' must be in \[2\^-32, 2\^32\]"):
        coder.push_logistic(torch.ones(2, 5, dtype=torch.long), mu, log_scale, bin_width=bin_width)


def test_the_decoder_search_terminates_at_the_extreme_bin_widths():
    # the hang (a tiny bin width) in a subprocess, so that a regression fails instead of hanging
    script = """
import torch
from flowkernels.ops.rans import RansCoder
for width in (2.0 ** -32, 2.0 ** 32):
    for log_scale in (-30.0, 0.0, 30.0):
        coder = RansCoder(1)
        mu, ls = torch.full((1, 4), 3.0), torch.full((1, 4), log_scale)
        symbols = torch.tensor([[0, 1, -5, 2**31 - 1]])
        coder.push_logistic(symbols, mu, ls, bin_width=width)
        assert torch.equal(coder.pop_logistic(mu, ls, bin_width=width), symbols)
print("ok")
"""
    done = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, timeout=120)
    assert done.returncode == 0 and done.stdout.strip() == "ok", done.stderr[-2000:]


def test_meta_parameters_with_a_real_coder_are_refused():
    coder, mu, log_scale = coded()
    meta = [t.to("meta") for t in (mu, log_scale)]
    before = coder.to_bytes()
    with pytest.raises(ValueError, match="meta device with a coder on cpu"):
        coder.push_logistic(torch.ones(2, 5, dtype=torch.long, device="meta"), *meta)
    with pytest.raises(ValueError, match="meta device with a coder on cpu"):
        coder.pop_logistic(*meta)
    assert coder.to_bytes() == before


def test_meta_tracing_still_works():
    state = torch.empty(2, dtype=torch.int64, device="meta")
    words = torch.empty(2, 8, dtype=torch.int32, device="meta")
    lengths = torch.empty(2, dtype=torch.int64, device="meta")
    mu = torch.empty(2, 5, device="meta")
    out = OPS.rans_pop_logistic(state, words, lengths, mu, mu, None, 1.0, None, None, 24)
    assert out.shape == (2, 5) and out.device.type == "meta"


def test_allocations_are_sized_before_they_are_made():
    with pytest.raises(ValueError, match="more than the limit"):
        RansCoder(2**40)
    coder, _, _ = coded()
    cdf = torch.tensor([0, 1 << 15, 1 << 16], dtype=torch.int32)
    with pytest.raises(ValueError, match="more than the limit"):
        coder.pop(cdf, count=2**40)
    with pytest.raises(ValueError, match="more than the limit"):
        coder.pop_probs(torch.tensor([0.5, 0.5]), count=2**40)


@pytest.mark.parametrize("dtype", [torch.float32, torch.float64])
@pytest.mark.parametrize("tiny", [5e-324, 1e-300, 1e-45])
def test_scales_that_vanish_in_the_working_dtype_are_refused(dtype, tiny):
    from flowkernels import ops

    x = torch.zeros(3, dtype=dtype)
    if dtype == torch.float64 and tiny >= 2.3e-308:
        ops.integer_coupling(x, x, scale=tiny)  # a normal float64: accepted
        return
    with pytest.raises(ValueError, match="'scale' must be positive, finite and a normal"):
        ops.integer_coupling(x, x, scale=tiny)
    with pytest.raises(ValueError, match="'bin_width' must be positive, finite and a normal"):
        ops.discretized_logistic_logp(x, torch.zeros(3, 1, dtype=dtype), torch.zeros(3, 1, dtype=dtype), bin_width=tiny)


@pytest.mark.parametrize("diagonal", [1e-30, 1e-38, 1e-45])
def test_ar_conv_inverse_of_a_tiny_diagonal_raises_instead_of_returning_inf(diagonal):
    from flowkernels import ops

    weight = torch.zeros(2, 2, 3, 3)
    weight[0, 0, 1, 1], weight[1, 1, 1, 1] = diagonal, 1.0
    weight[1, 0, 1, 1] = 1.0
    y = torch.randn(1, 2, 6, 6, generator=torch.Generator().manual_seed(0)) * 1e10
    with pytest.raises(ValueError, match="overflows|numerically singular|not invertible"):
        ops.ar_conv2d_inverse(y, weight)


@pytest.mark.parametrize("largest", [2.4e-32, 1e-35, 1e-40, 1e-45])
def test_probabilities_too_small_for_float32_raise_instead_of_a_broken_table(largest):
    from flowkernels.ops.rans import quantize_pdf

    probs = torch.tensor([[largest, largest / 2, largest / 4]])
    with pytest.raises(ValueError, match="below 2.5e-32"):
        quantize_pdf(probs)
    coder = RansCoder(1)
    with pytest.raises(ValueError, match="below 2.5e-32"):
        coder.push_probs(torch.tensor([[0]]), probs)
    # just above the limit the table is a proper CDF and the round trip holds
    ok = torch.tensor([[3e-32, 1.5e-32, 0.75e-32]])
    cdf = quantize_pdf(ok)
    assert bool((cdf[..., 1:] > cdf[..., :-1]).all()) and int(cdf[0, -1]) == 1 << 16
    coder.push_probs(torch.tensor([[1]]), ok)
    assert coder.pop_probs(ok).tolist() == [[1]]


def _fresh(lanes: int = 2, room: int = 64) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    coder = RansCoder(lanes)
    coder._reserve(room)
    return coder.state, coder.words, coder.lengths


def _pushed(push) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    state, words, lengths = _fresh()
    push(state, words, lengths)
    return state, words, lengths


def test_every_rans_op_passes_opcheck():
    # the schema's mutation annotations, the fake kernels (shapes under FakeTensor) and the real
    # kernels agree, for every rans op (their fake kernels were never exercised before)
    from flowkernels.ops.rans import quantize_pdf

    mu, log_scale = torch.zeros(2, 5), torch.zeros(2, 5)
    symbols = torch.ones(2, 5, dtype=torch.long)
    probs = torch.full((2, 5, 3), 1 / 3)
    cdf = quantize_pdf(probs)
    logistic = (mu, log_scale, None, 1.0, None, None, 24)
    calls = {
        "rans_push_logistic": (*_fresh(), symbols, *logistic),
        "rans_pop_logistic": (*_pushed(lambda *c: OPS.rans_push_logistic(*c, symbols, *logistic)), *logistic),
        "rans_push_categorical": (*_fresh(), symbols, cdf, 16, True),
        "rans_pop_categorical": (
            *_pushed(lambda *c: OPS.rans_push_categorical(*c, symbols, cdf, 16, True)),
            cdf,
            16,
            5,
        ),
        "rans_push_probs": (*_fresh(), symbols, probs, 16),
        "rans_pop_probs": (*_pushed(lambda *c: OPS.rans_push_probs(*c, symbols, probs, 16)), probs, 16, 5),
        "rans_quantize_pdf": (probs, 16, False),
    }
    for name, args in calls.items():
        torch.library.opcheck(getattr(OPS, name), args)
