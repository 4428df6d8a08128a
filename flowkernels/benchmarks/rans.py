"""Benchmarks of the rans family: symbols per second, encode and decode, against
the pure-Python reference and constriction 0.5.0, with 1 and 2 threads.

Same symbols and distributions for every contender:

- categorical: per-symbol float32 probabilities over 256 symbols (a model's
  softmax output); flowkernels codes them with ``push_probs``/``pop_probs``
  (quantization included in the time), constriction with ``Categorical`` (its
  own quantization included). Probabilities live in L2/L3-sized batches.
- logistic: per-symbol location and scale of a discretized logistic on
  [-128, 127]; constriction has no logistic, so its nearest parametric model,
  ``QuantizedGaussian`` with the same standard deviation, stands in.

The pure-Python reference codes a subset of the symbols (it is ~10^4x slower);
its rate is per symbol like the others. "bits over ideal" compares each coder's
output with the information content of the symbols under the float model it
was given.
"""

from __future__ import annotations

import math

import numpy as np
import torch

from flowkernels import ops
from flowkernels.ops.rans import RansCoder
from flowkernels.reference import rans as ref

from .harness import Case, Target

FAMILY = "rans"
#: lanes the pure-Python reference codes per call (its rate is per symbol, so a subset measures it;
#: all 16384 GPU lanes would take it 10-20 minutes)
REFERENCE_LANES = 64

try:  # an optional peer (pip install flowkernels[bench])
    import constriction
except ImportError:  # pragma: no cover - depends on the environment
    constriction = None


def _overhead(bits: float, ideal: float) -> str:
    return f"{100.0 * (bits / ideal - 1.0):+.3f}%"


def _encode_decode_cases(model, shape, threads, target, items, reference_items, notes, encode, decode) -> list[Case]:
    """The encode and decode rows of one model; ``encode``/``decode`` are (kernel, reference, peers)."""
    return [
        Case(
            FAMILY,
            f"{model} {op}",
            shape,
            "fwd",
            kernel=kernel,
            reference=reference,
            peers=peers,
            target=target,
            items=items,
            reference_items=reference_items,
            threads=threads,
            notes=notes if op == "encode" else "",
            measure_memory=False,
        )
        for op, (kernel, reference, peers) in (("encode", encode), ("decode", decode))
    ]


def _sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def _categorical(lanes: int, L: int, threads: int, gen: torch.Generator, subset: int, device) -> list[Case]:
    K = 256
    probs = torch.softmax(torch.randn(lanes, L, K, generator=gen) * 2.0, dim=-1)
    symbols = torch.multinomial(probs.reshape(-1, K), 1, generator=gen).reshape(lanes, L)
    n = lanes * L
    probs_dev, symbols_dev = probs.to(device), symbols.to(device)

    def encode():
        coder = RansCoder(lanes, device=device)
        coder.push_probs(symbols_dev, probs_dev)
        _sync(device)
        return coder

    def decode():
        out = RansCoder.from_bytes(data, device=device).pop_probs(probs_dev)
        _sync(device)
        return out

    data = encode().to_bytes()
    ideal = float(-probs.double().gather(-1, symbols.unsqueeze(-1)).log2().sum())
    notes = f"bits over ideal: flowkernels {_overhead(encode().num_bits(), ideal)}"

    sub_probs = probs[:REFERENCE_LANES, :subset].double().tolist()
    sub_symbols = symbols[:REFERENCE_LANES, :subset].tolist()

    def reference_encode():
        for lane_symbols, lane_probs in zip(sub_symbols, sub_probs, strict=True):
            tables = [ref.quantize_pdf(row, 16) for row in lane_probs]
            ref.push_categorical(ref.RansLane(), lane_symbols, tables, 16)

    encoded = []
    for lane_symbols, lane_probs in zip(sub_symbols, sub_probs, strict=True):
        lane = ref.RansLane()
        ref.push_categorical(lane, lane_symbols, [ref.quantize_pdf(row, 16) for row in lane_probs], 16)
        encoded.append((lane.state, lane.words))

    def reference_decode():
        for (state, words), lane_probs in zip(encoded, sub_probs, strict=True):
            ref.pop_categorical(ref.RansLane(state, words), [ref.quantize_pdf(row, 16) for row in lane_probs], 16)

    encode_peers, decode_peers = {}, {}
    if constriction is not None:
        family = constriction.stream.model.Categorical(perfect=False)
        flat_probs, flat_symbols = probs.reshape(-1, K).numpy(), symbols.reshape(-1).numpy().astype(np.int32)

        def constriction_encode():
            coder = constriction.stream.stack.AnsCoder()
            coder.encode_reverse(flat_symbols, family, flat_probs)
            return coder

        compressed = constriction_encode().get_compressed()
        notes += f", constriction {_overhead(32 * len(compressed), ideal)}"
        encode_peers["constriction"] = constriction_encode
        decode_peers["constriction"] = lambda: constriction.stream.stack.AnsCoder(compressed).decode(family, flat_probs)
    target = Target(min_speedup=100.0, peer="constriction", min_peer_speedup=2.0 if threads == 1 else None)
    shape = f"{lanes}x{L}, K={K}" + (f" ({device.type})" if device.type != "cpu" else "")
    return _encode_decode_cases(
        "categorical",
        shape,
        threads,
        target,
        n,
        min(lanes, REFERENCE_LANES) * subset,
        notes,
        (encode, reference_encode, encode_peers),
        (decode, reference_decode, decode_peers),
    )


def _logistic(lanes: int, L: int, threads: int, gen: torch.Generator, subset: int, device) -> list[Case]:
    lower, upper = -128, 127
    mu = torch.rand(lanes, L, generator=gen) * 200 - 100
    log_scale = torch.full((lanes, L), 1.0) + torch.rand(lanes, L, generator=gen) * 0.5
    u = torch.rand(lanes, L, generator=gen).clamp(1e-6, 1 - 1e-6)
    symbols = (mu + log_scale.exp() * torch.log(u / (1 - u))).round().clamp(lower, upper).long()
    bounds = {"lower": float(lower), "upper": float(upper)}
    n = lanes * L
    mu_dev, log_scale_dev, symbols_dev = mu.to(device), log_scale.to(device), symbols.to(device)

    def encode():
        coder = RansCoder(lanes, device=device)
        coder.push_logistic(symbols_dev, mu_dev, log_scale_dev, **bounds)
        _sync(device)
        return coder

    def decode():
        out = RansCoder.from_bytes(data, device=device).pop_logistic(mu_dev, log_scale_dev, **bounds)
        _sync(device)
        return out

    data = encode().to_bytes()
    logp = ops.discretized_logistic_logp(symbols.double(), mu.double(), log_scale.double(), **bounds)
    ideal = float(-logp.sum() / math.log(2))
    notes = f"bits over ideal: flowkernels {_overhead(encode().num_bits(), ideal)}"

    ref_lanes = min(lanes, REFERENCE_LANES)
    sub = [t[:ref_lanes, :subset].double().tolist() for t in (mu, log_scale)]
    sub_symbols = symbols[:ref_lanes, :subset].tolist()

    def reference_encode():
        for i in range(ref_lanes):
            params = ([[m] for m in sub[0][i]], [[s] for s in sub[1][i]], None)
            ref.push_logistic(ref.RansLane(), sub_symbols[i], params, 1.0, lower, upper, 24)

    encoded = []
    for i in range(ref_lanes):
        lane = ref.RansLane()
        params = ([[m] for m in sub[0][i]], [[s] for s in sub[1][i]], None)
        ref.push_logistic(lane, sub_symbols[i], params, 1.0, lower, upper, 24)
        encoded.append((lane.state, lane.words, params))

    def reference_decode():
        for state, words, params in encoded:
            ref.pop_logistic(ref.RansLane(state, words), params, subset, 1.0, lower, upper, 24)

    encode_peers, decode_peers = {}, {}
    if constriction is not None:
        family = constriction.stream.model.QuantizedGaussian(lower, upper)
        means = mu.reshape(-1).double().numpy()
        stds = (log_scale.exp() * math.pi / math.sqrt(3.0)).reshape(-1).double().numpy()  # the logistic's std
        flat_symbols = symbols.reshape(-1).numpy().astype(np.int32)

        def constriction_encode():
            coder = constriction.stream.stack.AnsCoder()
            coder.encode_reverse(flat_symbols, family, means, stds)
            return coder

        compressed = constriction_encode().get_compressed()
        notes += f", constriction (Gaussian) {_overhead(32 * len(compressed), ideal)}"
        encode_peers["constriction"] = constriction_encode
        decode_peers["constriction"] = lambda: constriction.stream.stack.AnsCoder(compressed).decode(
            family, means, stds
        )
    target = Target(min_speedup=100.0, peer="constriction", min_peer_speedup=1.5 if threads == 1 else None)
    shape = f"{lanes}x{L}, [{lower}, {upper}]" + (f" ({device.type})" if device.type != "cpu" else "")
    return _encode_decode_cases(
        "logistic",
        shape,
        threads,
        target,
        n,
        min(lanes, REFERENCE_LANES) * subset,
        notes,
        (encode, reference_encode, encode_peers),
        (decode, reference_decode, decode_peers),
    )


def cases(*, quick: bool = False, device: str = "cpu", compile_peers: bool = True) -> list[Case]:
    """Encode/decode cases. On the CPU: 2 lanes, with 1 and 2 threads (constriction,
    single-threaded, is timed alongside). On a GPU: 16384 lanes."""
    gen = torch.Generator().manual_seed(0)
    device = torch.device(device)
    if device.type == "cuda":
        lanes, categorical_L, logistic_L, subset = (1024, 4, 16, 8) if quick else (16384, 16, 1024, 100)
        return _categorical(lanes, categorical_L, None, gen, subset, device) + _logistic(
            lanes, logistic_L, None, gen, subset, device
        )
    categorical_L, logistic_L, subset = (64, 256, 16) if quick else (4096, 250_000, 200)
    out = []
    for threads in (1, 2):
        out += _categorical(2, categorical_L, threads, gen, subset, device)
        out += _logistic(2, logistic_L, threads, gen, subset, device)
    return out
