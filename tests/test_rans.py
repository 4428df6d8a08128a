"""Tests of the rans family: round trips, bit-exactness against the pure-Python
reference, rate, the container, bad input, and CPU vs CUDA (skipped without a GPU)."""

from __future__ import annotations

import math

import pytest
import torch

import flowkernels
from flowkernels.ops.rans import RansCoder, pack, quantize_pdf
from flowkernels.reference import rans as ref

from .conftest import every_cpu_isa, requires_cuda

pytestmark = every_cpu_isa


def random_probs(shape, K, generator, *, peaked=False):
    logits = torch.randn(*shape, K, generator=generator, dtype=torch.float64) * (6.0 if peaked else 1.5)
    return torch.softmax(logits, dim=-1)


def reference_bytes_categorical(symbols: torch.Tensor, cdf: torch.Tensor, precision: int) -> bytes:
    N, L = symbols.shape
    full = cdf.expand(N, L, cdf.shape[-1]).tolist()
    lanes = [ref.RansLane() for _ in range(N)]
    for n in range(N):
        ref.push_categorical(lanes[n], symbols[n].tolist(), full[n], precision)
    return pack([lane.state for lane in lanes], [lane.words for lane in lanes])


def ideal_bits_categorical(symbols: torch.Tensor, cdf: torch.Tensor) -> float:
    N, L = symbols.shape
    table = cdf.expand(N, L, cdf.shape[-1]).long()
    s = symbols.long().unsqueeze(-1)
    freq = table.gather(-1, s + 1) - table.gather(-1, s)
    total = table[..., -1:].double()
    return float(-(freq.double() / total).log2().sum())


# ---------------------------------------------------------------------------
# quantize_pdf


@pytest.mark.parametrize("K", [1, 2, 3, 256, 65536])
@pytest.mark.parametrize("precision", [16, 24])
def test_quantize_pdf_is_valid_and_matches_reference(K, precision, generator):
    if K > 1 << precision:
        pytest.skip("alphabet larger than the table")
    probs = random_probs((3,), K, generator, peaked=True)
    if K > 1:
        probs[0, 0] = 0.0  # a zero probability still gets frequency 1
    cdf = quantize_pdf(probs, precision=precision)
    assert cdf.dtype == torch.int32 and cdf.shape == (3, K + 1)
    freqs = cdf.diff(dim=-1)
    assert (cdf[:, 0] == 0).all() and (cdf[:, -1] == 1 << precision).all() and (freqs >= 1).all()
    rows = probs.tolist() if K <= 256 else probs[:1].tolist()
    for row, got in zip(rows, cdf.tolist(), strict=False):
        assert got == ref.quantize_pdf(row, precision)


def test_quantize_pdf_from_logits(generator):
    logits = torch.randn(10, 7, generator=generator, dtype=torch.float32) * 4
    cdf = quantize_pdf(logits=logits, precision=16)
    for row, got in zip(logits.tolist(), cdf.tolist(), strict=True):
        assert got == ref.quantize_pdf(row, 16, logits=True)
    # Close to the probabilities' own table (they differ only by rounding of the exponential).
    from_probs = quantize_pdf(torch.softmax(logits.double(), -1), precision=16)
    assert (cdf - from_probs).abs().max() <= 2


def test_quantize_pdf_is_proportional():
    cdf = quantize_pdf(torch.tensor([1.0, 3.0]), precision=4)  # unnormalised is fine
    assert cdf.tolist() == [0, 4, 16]


@pytest.mark.parametrize(
    "probs,message",
    [
        (torch.tensor([0.5, float("nan")]), "not a valid distribution"),
        (torch.tensor([0.5, -0.1]), "not a valid distribution"),
        (torch.tensor([0.0, 0.0]), "not a valid distribution"),
        (torch.tensor([0.5, float("inf")]), "not a valid distribution"),
    ],
)
def test_quantize_pdf_rejects_bad_rows(probs, message):
    with pytest.raises(ValueError, match=message):
        quantize_pdf(probs)


def test_quantize_pdf_argument_errors():
    with pytest.raises(ValueError, match="do not fit in precision"):
        quantize_pdf(torch.ones(17), precision=4)
    with pytest.raises(ValueError, match="exactly one of"):
        quantize_pdf()
    with pytest.raises(RuntimeError, match="must be float32 or float64"):
        quantize_pdf(torch.ones(4, dtype=torch.int64))


# ---------------------------------------------------------------------------
# categorical coding


@pytest.mark.parametrize("K", [1, 2, 256, 65536])
@pytest.mark.parametrize("lanes,L", [(1, 0), (1, 1), (7, 6), (7, 8), (64, 33)])
@pytest.mark.parametrize("layout", ["shared", "per_position", "full"])
def test_categorical_round_trip(K, lanes, L, layout, generator):
    precision = 16 if K <= 256 else 24
    shape = {"shared": (), "per_position": (L,), "full": (lanes, L)}[layout]
    if K == 65536 and layout == "full":
        lanes, L, shape = 3, 4, (3, 4)  # keep the table small; the other layouts cover the sizes
    cdf = quantize_pdf(random_probs(shape, K, generator), precision=precision)
    symbols = sample(cdf, lanes, L, generator)
    coder = RansCoder(lanes)
    coder.push(symbols, cdf)
    data = coder.to_bytes()
    decoded = RansCoder.from_bytes(data).pop(cdf, count=L)
    assert torch.equal(decoded, symbols)
    if lanes * L * K <= 600_000:
        assert data == reference_bytes_categorical(symbols, cdf, precision)
    # the rate: within 0.1% + 64 bits per lane of the ideal code length under the quantized model
    assert coder.num_bits() <= 1.001 * ideal_bits_categorical(symbols, cdf) + 64 * lanes


def sample(cdf: torch.Tensor, lanes: int, L: int, generator) -> torch.Tensor:
    """Symbols [lanes, L] drawn exactly from the quantized tables (uniform slot, then search)."""
    if cdf.numel() == 0 or L == 0:
        return torch.zeros(lanes, L, dtype=torch.int64)
    total = int(cdf.reshape(-1)[-1])
    slots = torch.randint(0, total, (lanes, L), generator=generator, dtype=torch.int64).to(torch.int32)
    if cdf.dim() == 1:
        return torch.searchsorted(cdf, slots, right=True).long() - 1
    if cdf.dim() == 2:
        return (torch.searchsorted(cdf, slots.t().contiguous(), right=True).long() - 1).t()
    return torch.searchsorted(cdf, slots.unsqueeze(-1), right=True).long().squeeze(-1) - 1


@pytest.mark.parametrize("K", [1, 2, 17, 256, 5000])
@pytest.mark.parametrize("layout", ["shared", "per_position", "full"])
@pytest.mark.parametrize("dtype", [torch.float32, torch.float64])
def test_push_probs_equals_push_of_quantized_tables(K, layout, dtype, generator):
    lanes, L, precision = 3, 20, 16
    shape = {"shared": (), "per_position": (L,), "full": (lanes, L)}[layout]
    probs = random_probs(shape, K, generator, peaked=True).to(dtype)
    if K > 1:
        probs[..., 0] = 0.0
    cdf = quantize_pdf(probs, precision=precision)
    symbols = sample(cdf, lanes, L, generator)
    tables, fused = RansCoder(lanes), RansCoder(lanes)
    tables.push(symbols, cdf)
    fused.push_probs(symbols, probs, precision=precision)
    assert fused.to_bytes() == tables.to_bytes()
    assert torch.equal(RansCoder.from_bytes(fused.to_bytes()).pop_probs(probs, precision=precision, count=L), symbols)


def test_push_probs_bad_input_raises_and_loses_nothing():
    coder = RansCoder(2)
    probs = torch.tensor([0.2, 0.3, 0.5])
    coder.push_probs(torch.tensor([[0], [2]]), probs)
    before = coder.to_bytes()
    with pytest.raises(ValueError, match=r"symbol 3 at lane 1, position 0 is outside the alphabet \[0, 3\)"):
        coder.push_probs(torch.tensor([[0], [3]]), probs)
    with pytest.raises(ValueError, match="not a valid distribution"):
        coder.push_probs(torch.tensor([[0], [1]]), torch.tensor([[[0.2, float("nan"), 0.1]], [[1.0, 0.0, 0.0]]]))
    with pytest.raises(ValueError, match="not a valid distribution"):
        coder.pop_probs(torch.tensor([[[0.2, -1.0, 0.1]], [[1.0, 0.0, 0.0]]]))
    assert coder.to_bytes() == before
    assert torch.equal(coder.pop_probs(probs, count=1), torch.tensor([[0], [2]]))


def test_probability_one_and_frequency_one_symbols():
    precision = 24
    M = 1 << precision
    # symbol 1 has probability (M - 2) / M, symbols 0 and 2 frequency 1
    cdf = torch.tensor([0, 1, M - 1, M], dtype=torch.int32)
    symbols = torch.tensor([[1] * 50 + [0, 2, 0, 2] + [1] * 10, [0, 2] * 32])
    coder = RansCoder(2)
    coder.push(symbols, cdf)
    assert coder.to_bytes() == reference_bytes_categorical(symbols, cdf, precision)
    assert torch.equal(coder.pop(cdf, count=64), symbols)
    # a one-symbol alphabet costs nothing
    certain = torch.tensor([0, M], dtype=torch.int32)
    coder = RansCoder(3)
    coder.push(torch.zeros(3, 1000, dtype=torch.int64), certain)
    assert coder.num_bits() == 64 * 3


@pytest.mark.parametrize("precision", [1, 8, 24])
def test_every_renormalisation_boundary(precision):
    # States at, just below and just above the push threshold of each frequency,
    # and the extremes of the state range: push one symbol, compare with the reference, pop it back.
    M = 1 << precision
    freqs = sorted({1, 2, M // 2 or 1, M - 1 or 1, M})
    for freq in freqs:
        cdf = torch.tensor([0, freq, M] if freq < M else [0, M], dtype=torch.int32)
        threshold = freq << (64 - precision)
        for state in {1 << 32, (1 << 32) + 1, threshold - 1, threshold, threshold + 1, (1 << 64) - 1}:
            if not (1 << 32) <= state < 1 << 64:
                continue
            coder = RansCoder(1)
            coder.state[0] = state - (1 << 64) if state >= 1 << 63 else state
            coder.push(torch.zeros(1, 1, dtype=torch.int64), cdf)
            lane = ref.RansLane(state)
            ref.push_categorical(lane, [0], [cdf.tolist()], precision)
            assert coder.to_bytes() == pack([lane.state], [lane.words]), (freq, state)
            assert coder.pop(cdf, count=1).item() == 0
            assert int(coder.state[0]) % (1 << 64) == state and int(coder.lengths[0]) == 0


def test_pushes_and_pops_nest_like_a_stack(generator):
    a_cdf = quantize_pdf(random_probs((), 5, generator))
    b_cdf = quantize_pdf(random_probs((), 300, generator), precision=20)
    a = torch.randint(0, 5, (4, 10), generator=generator)
    b = torch.randint(0, 300, (4, 3), generator=generator)
    coder = RansCoder(4)
    coder.push(a, a_cdf)
    coder.push(b, b_cdf)
    restored = RansCoder.from_bytes(coder.to_bytes())
    assert torch.equal(restored.pop(b_cdf, count=3), b)
    assert torch.equal(restored.pop(a_cdf, count=10), a)
    assert restored.num_bits() == 64 * 4


# ---------------------------------------------------------------------------
# logistic coding


def logistic_case(lanes, L, K, generator, *, spread=20.0, dtype=torch.float32):
    mu = (torch.randn(lanes, L, K, generator=generator, dtype=torch.float64) * spread).to(dtype)
    log_scale = (torch.randn(lanes, L, K, generator=generator, dtype=torch.float64) * 0.7 + 1.0).to(dtype)
    logit_pi = torch.randn(lanes, L, K, generator=generator, dtype=torch.float64).to(dtype) if K > 1 else None
    if K == 1:
        mu, log_scale = mu[..., 0], log_scale[..., 0]
    return mu, log_scale, logit_pi


def reference_logistic(symbols, mu, log_scale, logit_pi, bin_width, lower, upper, precision):
    N, L = symbols.shape
    as_lists = lambda t: None if t is None else (t if t.dim() == 3 else t.unsqueeze(-1)).double().tolist()  # noqa: E731
    params = [as_lists(t) for t in (mu, log_scale, logit_pi)]
    lanes = [ref.RansLane() for _ in range(N)]
    models_bits = 0.0
    for n in range(N):
        lane_params = tuple(None if p is None else p[n] for p in params)
        ref.push_logistic(lanes[n], symbols[n].tolist(), lane_params, bin_width, lower, upper, precision)
        for i, s in enumerate(symbols[n].tolist()):
            model = ref._model(lane_params, i, bin_width, lower, upper, precision)
            if model.lo <= s <= model.hi:
                models_bits -= math.log2((model.cdf(s + 1) - model.cdf(s)) / (1 << precision))
            else:
                models_bits += 32 - math.log2(1 / (1 << precision))
    return pack([lane.state for lane in lanes], [lane.words for lane in lanes]), models_bits


@pytest.mark.parametrize("K", [1, 3])
@pytest.mark.parametrize(
    "bin_width,lower,upper",
    [(1.0, None, None), (1.0, 0.0, 255.0), (1.0 / 256, 0.0, 255.0 / 256), (0.5, -10.0, None), (2.0, None, 64.0)],
)
@pytest.mark.parametrize("precision", [12, 24])
def test_logistic_round_trip_matches_reference(K, bin_width, lower, upper, precision, generator):
    lanes, L = 5, 40
    mu, log_scale, logit_pi = logistic_case(lanes, L, K, generator)
    if lower is not None and upper is not None:
        mu = mu.abs() * 3 * bin_width + 10 * bin_width  # inside (mostly) the bounded range
        symbols = torch.randint(int(lower / bin_width), int(upper / bin_width) + 1, (lanes, L), generator=generator)
    else:
        symbols = (mu if mu.dim() == 2 else mu[..., 0]).div(bin_width).round().long()
        symbols += torch.randint(-4, 5, symbols.shape, generator=generator)
    symbols[0, :3] = torch.tensor([2**31 - 1, -(2**31), 123456789])  # escapes
    kwargs = {"bin_width": bin_width, "lower": lower, "upper": upper, "precision": precision}
    if lower is not None and upper is not None and 2 * (upper - lower) / bin_width + 3 > 2**precision:
        with pytest.raises(ValueError, match="need a precision of at least"):
            RansCoder(lanes).push_logistic(symbols, mu, log_scale, logit_pi, **kwargs)
        return
    coder = RansCoder(lanes)
    coder.push_logistic(symbols, mu, log_scale, logit_pi, **kwargs)
    data = coder.to_bytes()
    assert torch.equal(RansCoder.from_bytes(data).pop_logistic(mu, log_scale, logit_pi, **kwargs), symbols)
    lo = None if lower is None else round(lower / bin_width)
    hi = None if upper is None else round(upper / bin_width)
    expected, ideal_bits = reference_logistic(symbols, mu, log_scale, logit_pi, bin_width, lo, hi, precision)
    assert data == expected
    assert coder.num_bits() <= 1.001 * ideal_bits + 64 * lanes


def test_logistic_float64_parameters_and_extreme_scales(generator):
    lanes, L = 3, 64
    mu = torch.randn(lanes, L, generator=generator, dtype=torch.float64) * 1e6
    log_scale = torch.linspace(-40, 40, lanes * L, dtype=torch.float64).reshape(lanes, L)  # clamped to +-30
    symbols = mu.round().long() + torch.randint(-3, 4, (lanes, L), generator=generator)
    coder = RansCoder(lanes)
    coder.push_logistic(symbols, mu, log_scale)
    assert torch.equal(RansCoder.from_bytes(coder.to_bytes()).pop_logistic(mu, log_scale), symbols)


def test_logistic_rate_close_to_the_likelihood(generator):
    # Symbols drawn from the model: the code length approaches -log2 P from ops.discretized_logistic_logp.
    lanes, L = 8, 2000
    mu = torch.rand(lanes, L, generator=generator) * 200 + 20
    log_scale = torch.full((lanes, L), 1.5)
    u = torch.rand(lanes, L, generator=generator).clamp(1e-6, 1 - 1e-6)
    symbols = (mu + log_scale.exp() * torch.log(u / (1 - u))).round().clamp(0, 255).long()
    coder = RansCoder(lanes)
    coder.push_logistic(symbols, mu, log_scale, lower=0.0, upper=255.0)
    logp = flowkernels.ops.discretized_logistic_logp(symbols.float(), mu, log_scale, lower=0.0, upper=255.0)
    ideal = float(-logp.double().sum() / math.log(2))
    assert coder.num_bits() <= 1.002 * ideal + 64 * lanes  # quantization costs a little over the float model
    assert torch.equal(coder.pop_logistic(mu, log_scale, lower=0.0, upper=255.0), symbols)


# ---------------------------------------------------------------------------
# bad input


def test_categorical_bad_input_raises_and_loses_nothing(generator):
    cdf = quantize_pdf(torch.tensor([0.2, 0.3, 0.5]))
    coder = RansCoder(2)
    coder.push(torch.tensor([[0, 1], [2, 2]]), cdf)
    before = coder.to_bytes()
    bad_pushes = [
        ((torch.tensor([[0, 3], [0, 0]]), cdf), ValueError, r"symbol 3 at lane 0, position 1 is outside"),
        ((torch.tensor([[0, -1], [0, 0]]), cdf), ValueError, r"outside the alphabet"),
        ((torch.tensor([[0.0, 1.0], [0.0, 0.0]]), cdf), RuntimeError, r"'symbols' must be int32 or int64"),
        ((torch.tensor([[0, 1, 1]]), cdf), RuntimeError, r"'symbols' must have shape \[lanes, L\] = \[2, L\]"),
        (
            (torch.zeros(2, 2, dtype=torch.long), torch.tensor([0, 30000, 20000, 65536], dtype=torch.int32)),
            ValueError,
            r"not strictly increasing",
        ),
        (
            (torch.zeros(2, 2, dtype=torch.long), torch.tensor([0, 3, 7], dtype=torch.int32)),
            ValueError,
            r"must end at 2\*\*precision",
        ),
        ((torch.zeros(2, 2, dtype=torch.long), cdf.long()), ValueError, r"must be an int32 tensor"),
        ((torch.zeros(2, 2, dtype=torch.long), cdf.expand(3, 3, 4)), RuntimeError, r"must match symbols"),
    ]
    for (symbols, table), error, message in bad_pushes:
        with pytest.raises(error, match=message):
            coder.push(symbols, table)
        assert coder.to_bytes() == before
    # the full-table check can be skipped, but a symbol's own empty interval still raises
    with pytest.raises(ValueError, match="empty or invalid cdf interval"):
        coder.push(torch.ones(2, 1, dtype=torch.long), torch.tensor([0, 5, 5, 16], dtype=torch.int32), validate=False)
    assert coder.to_bytes() == before


def test_logistic_bad_input_raises():
    coder = RansCoder(2)
    s = torch.zeros(2, 3, dtype=torch.long)
    mu, ls = torch.zeros(2, 3), torch.zeros(2, 3)
    with pytest.raises(ValueError, match="'mu' has NaN or infinite entries"):
        coder.push_logistic(s, torch.full((2, 3), float("nan")), ls)
    with pytest.raises(RuntimeError, match=r"'mu' must have shape \[lanes, L\]"):
        coder.push_logistic(s, torch.zeros(2, 4), torch.zeros(2, 4))
    with pytest.raises(RuntimeError, match="'log_scale' must have shape mu.shape"):
        coder.push_logistic(s, mu, torch.zeros(2, 3, 1))
    with pytest.raises(ValueError, match="not a multiple of bin_width"):
        coder.push_logistic(s, mu, ls, lower=0.3)
    with pytest.raises(ValueError, match="must not exceed 'upper'"):
        coder.push_logistic(s, mu, ls, lower=5.0, upper=1.0)
    with pytest.raises(ValueError, match=r"mixtures of 1 to 16 components"):
        coder.push_logistic(s, torch.zeros(2, 3, 17), torch.zeros(2, 3, 17), torch.zeros(2, 3, 17))
    with pytest.raises(ValueError, match=r"'precision' must be in \[8, 24\]"):
        coder.push_logistic(s, mu, ls, precision=30)
    with pytest.raises(RuntimeError, match="'log_scale' must have dtype Float"):
        coder.push_logistic(s, mu, ls.double())
    assert coder.num_bits() == 64 * 2


def test_decoding_with_the_wrong_model_never_crashes(generator):
    coder = RansCoder(4)
    coder.push(torch.randint(0, 256, (4, 200), generator=generator), quantize_pdf(torch.ones(256)))
    data = coder.to_bytes()
    wrong = quantize_pdf(random_probs((), 7, generator, peaked=True))
    for count in [10, 200, 5000]:
        victim = RansCoder.from_bytes(data)
        try:
            out = victim.pop(wrong, count=count)
            assert out.shape == (4, count) and ((out >= 0) & (out < 7)).all()
        except ValueError as error:
            assert "ran out of data" in str(error)
            assert victim.to_bytes() == data  # unchanged after the failed pop
    # the logistic decoder too, on a stream of categorical symbols
    victim = RansCoder.from_bytes(data)
    try:
        victim.pop_logistic(torch.zeros(4, 3000), torch.zeros(4, 3000))
    except ValueError as error:
        assert "ran out of data" in str(error)


# ---------------------------------------------------------------------------
# container


def test_container_layout_and_num_bits(generator):
    coder = RansCoder(3)
    coder.push(torch.randint(0, 10, (3, 100), generator=generator), quantize_pdf(torch.ones(10)))
    data = coder.to_bytes()
    assert data[:4] == b"FKRS" and int.from_bytes(data[4:6], "little") == 1
    assert len(data) == 20 + 4 * 3 + 4 + coder.num_bits() // 8


@pytest.mark.parametrize(
    "mutate,message",
    [
        (lambda d: d[:10], "truncated"),
        (lambda d: d[:-1], "header describes"),
        (lambda d: d + b"\0", "header describes"),
        (lambda d: b"XKRS" + d[4:], "not a flowkernels rANS stream"),
        (lambda d: d[:4] + (2).to_bytes(2, "little") + d[6:], "unsupported rANS stream version 2"),
        (lambda d: d[:8] + (10**9).to_bytes(4, "little") + d[12:], "header describes"),
        (lambda d: d[:12] + (2**60).to_bytes(8, "little") + d[20:], "header describes"),
        (lambda d: d[:30] + bytes([d[30] ^ 1]) + d[31:], "CRC-32 mismatch"),
        (lambda d: d[:8] + (0).to_bytes(4, "little") + d[12:], "zero lanes"),
    ],
)
def test_from_bytes_rejects_corrupt_streams(mutate, message, generator):
    coder = RansCoder(2)
    coder.push(torch.randint(0, 10, (2, 50), generator=generator), quantize_pdf(torch.ones(10)))
    with pytest.raises(ValueError, match=message):
        RansCoder.from_bytes(mutate(coder.to_bytes()))


def test_from_bytes_refuses_hostile_expansion():
    # Valid CRC and sizes, but 100000 lanes with one lane of 100000 words.
    lanes = 100_000
    data = pack([1 << 32] * lanes, [[]] * (lanes - 1) + [[7] * 100_000])
    with pytest.raises(ValueError, match="too unbalanced"):
        RansCoder.from_bytes(data)


def test_from_bytes_rejects_invalid_states():
    with pytest.raises(ValueError, match="state is below 2\\^32"):
        RansCoder.from_bytes(pack([5], [[1, 2]]))
    with pytest.raises(TypeError):
        RansCoder.from_bytes("not bytes")


# ---------------------------------------------------------------------------
# devices


@requires_cuda
def test_cpu_and_cuda_write_identical_bytes_and_read_each_other(generator):
    lanes, L = 64, 300
    probs = random_probs((lanes, L), 100, generator)
    cdf_cpu = quantize_pdf(probs)
    cdf_gpu = quantize_pdf(probs.cuda())
    assert torch.equal(cdf_gpu.cpu(), cdf_cpu)
    assert torch.equal(quantize_pdf(logits=probs.log().cuda()).cpu(), quantize_pdf(logits=probs.log()))
    symbols = sample(cdf_cpu, lanes, L, generator)
    cpu, gpu = RansCoder(lanes), RansCoder(lanes, device="cuda")
    cpu.push(symbols, cdf_cpu)
    gpu.push(symbols.cuda(), cdf_gpu)
    assert cpu.to_bytes() == gpu.to_bytes()
    fused = RansCoder(lanes, device="cuda")
    fused.push_probs(symbols.cuda(), probs.cuda())
    assert fused.to_bytes() == cpu.to_bytes()
    assert torch.equal(RansCoder.from_bytes(cpu.to_bytes(), device="cuda").pop_probs(probs.cuda()).cpu(), symbols)
    assert torch.equal(RansCoder.from_bytes(cpu.to_bytes(), device="cuda").pop(cdf_gpu).cpu(), symbols)
    mu, log_scale, logit_pi = logistic_case(lanes, L, 4, generator)
    sym = mu[..., 0].round().long()
    cpu, gpu = RansCoder(lanes), RansCoder(lanes, device="cuda")
    cpu.push_logistic(sym, mu, log_scale, logit_pi)
    gpu.push_logistic(sym.cuda(), mu.cuda(), log_scale.cuda(), logit_pi.cuda())
    assert cpu.to_bytes() == gpu.to_bytes()
    decoded = RansCoder.from_bytes(gpu.to_bytes()).pop_logistic(mu, log_scale, logit_pi)
    assert torch.equal(decoded, sym)


@requires_cuda
def test_tensors_on_different_devices_raise():
    coder = RansCoder(2)
    with pytest.raises(RuntimeError, match="must be on cpu"):
        coder.push(torch.zeros(2, 1, dtype=torch.long, device="cuda"), quantize_pdf(torch.ones(3)))
