"""Pure-Python rANS: the oracle of the ``rans`` kernel family.

It implements exactly the coder that ``csrc/rans.h`` implements (same state,
precision, model quantization and word order), one symbol at a time with
Python integers, so tests can require the kernels' bytes to equal these.
The byte container is shared: :mod:`flowkernels.ops.rans` serialises both.

The coder (per lane)
--------------------
* A stack: what is pushed last is popped first.
* State ``x``: an unsigned 64-bit integer kept in ``[2**32, 2**64)``;
  renormalisation moves 32-bit words between the state and the lane's stack.
  A fresh lane starts at ``x = 2**32`` with an empty stack.
* A symbol with cumulative range ``[start, start + freq)`` out of ``2**p``
  (precision ``p`` in ``[1, 24]``) is pushed by::

      if x >> (64 - p) >= freq: stack.append(x & 0xFFFFFFFF); x >>= 32
      x = ((x // freq) << p) + x % freq + start

  and popped by the inverse (``slot = x % 2**p`` selects the symbol).
* ``push`` of positions ``0..L-1`` encodes them in reverse order, so ``pop``
  decodes them in forward order (what autoregressive models need).

The discretized logistic model
------------------------------
Symbols are integers ``s``; symbol ``s`` stands for the value ``s * w``
(``w = bin_width``) and its bin ``[(s - 1/2) w, (s + 1/2) w)``, as in
``ops.discretized_logistic_logp``. The quantized CDF is computed with IEEE
double additions, subtractions, multiplications and divisions only, in a fixed
order, with its own exponential (:func:`det_exp`), so any machine (CPU or GPU)
computes the same integers:

* ``inv_s_k = det_exp(-clamp(log_scale_k, -30, 30))``, mixture weights
  ``softmax(logit_pi)`` via ``det_exp``.
* Support ``[lo, hi]``: the bounds ``lower / w`` and ``upper / w`` where given;
  an unbounded side extends ``H = ceil(16 max_k(s_k) / w)`` bins past the
  outermost rounded ``mu_k / w``. Unbounded windows hold at most ``2**(p-6)``
  bins (around the heaviest component) and stay inside int32.
* ``C(lo) = 0``, ``C(hi + 1) = 2**p - 1``, and for ``lo < b <= hi``
  ``C(b) = floor(F(b - 1/2) * free) + 2 (b - lo)`` with ``free = 2**p - 1 - 2 n``,
  ``n = hi - lo + 1`` and ``F`` the mixture CDF (edge bins take the tails).
  Every bin gets at least 2 counts minus at most 1 of rounding wobble, so no
  bin is ever empty.
* The last count (``[2**p - 1, 2**p)``) is the escape: a symbol outside
  ``[lo, hi]`` is pushed as two raw 16-bit halves (low half first) and then the
  escape, so every int32 value round-trips (at a cost of ~32 bits).
"""

from __future__ import annotations

import math
from collections.abc import Sequence

import numpy as np

__all__ = [
    "STATE_LOWER",
    "RansLane",
    "det_exp",
    "LogisticModel",
    "push_categorical",
    "pop_categorical",
    "push_logistic",
    "pop_logistic",
    "quantize_pdf",
]

WORD_BITS = 32
WORD_MASK = (1 << WORD_BITS) - 1
STATE_LOWER = 1 << 32
MAX_PRECISION = 24
LOG_SCALE_LIMIT = 30.0
WINDOW_SCALES = 16.0
ESCAPE_PRECISION = 16

# det_exp constants (fdlibm's split of ln 2 and the Taylor coefficients 1/n!).
_LOG2E = float.fromhex("0x1.71547652b82fep+0")
_LN2_HI = float.fromhex("0x1.62e42fee00000p-1")
_LN2_LO = float.fromhex("0x1.a39ef35793c76p-33")
# 1/n! for n = 2..7 (degree 7: relative error < 6e-9, far below one count in 2^24).
_C2, _C3, _C4, _C5, _C6, _C7 = (
    float.fromhex(h)
    for h in (
        "0x1.0000000000000p-1",
        "0x1.5555555555555p-3",
        "0x1.5555555555555p-5",
        "0x1.1111111111111p-7",
        "0x1.6c16c16c16c17p-10",
        "0x1.a01a01a01a01ap-13",
    )
)


def det_exp(x: float) -> float:
    """exp(x) from IEEE basic operations only (bit-identical on every device).

    Clamped to [-700, 700] so that every intermediate is a normal double.
    """
    x = min(max(x, -700.0), 700.0)
    k = float(round(x * _LOG2E))  # round half to even, like rint
    r = (x - k * _LN2_HI) - k * _LN2_LO
    r2 = r * r
    r4 = r2 * r2
    low = (1.0 + r) + r2 * (_C2 + _C3 * r)  # Estrin's scheme, in this exact order
    high = (_C4 + _C5 * r) + r2 * (_C6 + _C7 * r)
    p = low + r4 * high
    return math.ldexp(p, int(k))  # exact: the result is a normal double


def _sigmoid(z: float) -> float:
    return 1.0 / (1.0 + det_exp(-z))


class RansLane:
    """One lane: a 64-bit state and a stack of 32-bit words."""

    def __init__(self, state: int = STATE_LOWER, words: Sequence[int] = ()):
        self.state = state
        self.words = list(words)

    def push(self, start: int, freq: int, precision: int) -> None:
        x = self.state
        if x >> (64 - precision) >= freq:
            self.words.append(x & WORD_MASK)
            x >>= WORD_BITS
        self.state = ((x // freq) << precision) + x % freq + start

    def peek(self, precision: int) -> int:
        return self.state & ((1 << precision) - 1)

    def advance(self, start: int, freq: int, precision: int) -> None:
        """Finish popping the symbol whose range ``[start, start + freq)`` holds the slot."""
        x = self.state
        x = freq * (x >> precision) + (x & ((1 << precision) - 1)) - start
        if x < STATE_LOWER:
            if not self.words:
                raise ValueError("rans: a lane ran out of data (the stream does not match the model)")
            x = (x << WORD_BITS) | self.words.pop()
        self.state = x

    def num_bits(self) -> int:
        return WORD_BITS * (len(self.words) + 2)


# ---------------------------------------------------------------------------
# Categorical


def push_categorical(lane: RansLane, symbols: Sequence[int], cdfs: Sequence[Sequence[int]], precision: int) -> None:
    """Push ``symbols[i]`` with table ``cdfs[i]`` (in reverse order, see module docstring)."""
    for s, cdf in zip(reversed(symbols), reversed(cdfs), strict=True):
        if not 0 <= s < len(cdf) - 1:
            raise ValueError(f"rans: symbol {s} is outside the alphabet [0, {len(cdf) - 1})")
        lane.push(cdf[s], cdf[s + 1] - cdf[s], precision)


def _search(cdf: Sequence[int], slot: int) -> int:
    lo, hi = 0, len(cdf) - 2  # the answer s satisfies cdf[s] <= slot < cdf[s + 1]
    while lo < hi:
        mid = (lo + hi + 1) // 2
        if cdf[mid] <= slot:
            lo = mid
        else:
            hi = mid - 1
    return lo


def pop_categorical(lane: RansLane, cdfs: Sequence[Sequence[int]], precision: int) -> list[int]:
    out = []
    for cdf in cdfs:
        s = _search(cdf, lane.peek(precision))
        lane.advance(cdf[s], cdf[s + 1] - cdf[s], precision)
        out.append(s)
    return out


# ---------------------------------------------------------------------------
# Discretized logistic mixture


class LogisticModel:
    """The quantized CDF of one symbol's discretized logistic mixture (see module docstring)."""

    def __init__(
        self,
        mu: Sequence[float],
        log_scale: Sequence[float],
        logit_pi: Sequence[float] | None,
        bin_width: float,
        lower: int | None,
        upper: int | None,
        precision: int,
    ):
        K = len(mu)
        self.precision = precision
        total = 1 << precision
        inv_w = 1.0 / bin_width
        self.mu = [m * inv_w for m in mu]  # in bins
        self.t = []  # bin_width / s_k
        spread = 0.0
        for ls in log_scale:
            inv_s = det_exp(-min(max(ls, -LOG_SCALE_LIMIT), LOG_SCALE_LIMIT))
            t = bin_width * inv_s
            self.t.append(t)
            spread = max(spread, 1.0 / t)  # s_k in bins
        if logit_pi is None:
            self.weights = [1.0] * K
        else:
            top = max(logit_pi)
            e = [det_exp(v - top) for v in logit_pi]
            z = 0.0
            for v in e:
                z += v
            self.weights = [v / z for v in e]
        heaviest = max(range(K), key=lambda k: (self.weights[k], -k))
        limit = float(1 << 40)
        rounded = [round(min(max(m, -limit), limit)) for m in self.mu]
        max_window = 1 << (precision - 6)
        half = math.ceil(min(WINDOW_SCALES * spread, float(max_window)))
        half = max(1, min(half, max_window))
        lo = lower if lower is not None else min(rounded) - half
        hi = upper if upper is not None else max(rounded) + half
        if hi - lo + 1 > max_window and (lower is None or upper is None):
            if lower is None and upper is None:
                lo = rounded[heaviest] - max_window // 2
                hi = lo + max_window - 1
            elif lower is None:
                lo = hi - max_window + 1
            else:
                hi = lo + max_window - 1
        # Stay inside int32, and keep at least one bin when the window fell
        # entirely beyond a given bound (then it collapses onto that bound).
        lo = min(max(lo, -(1 << 31)), (1 << 31) - 1)
        hi = min(max(hi, -(1 << 31)), (1 << 31) - 1)
        if hi < lo:
            if upper is None:
                hi = lo
            else:
                lo = hi
        self.lo, self.hi = lo, hi
        self.n = self.hi - self.lo + 1
        self.free = total - 1 - 2 * self.n
        self.escape = total - 1

    def cdf(self, b: int) -> int:
        """C(b) for lo <= b <= hi + 1."""
        if b <= self.lo:
            return 0
        if b > self.hi:
            return self.escape
        edge = float(b) - 0.5
        f = 0.0
        for mu, t, w in zip(self.mu, self.t, self.weights, strict=True):
            f += w * _sigmoid((edge - mu) * t)
        return math.floor(f * self.free) + 2 * (b - self.lo)

    def search(self, slot: int) -> int:
        lo, hi = self.lo, self.hi
        while lo < hi:
            mid = (lo + hi + 1) // 2
            if self.cdf(mid) <= slot:
                lo = mid
            else:
                hi = mid - 1
        return lo


def _model(params, i, bin_width, lower, upper, precision) -> LogisticModel:
    mu, log_scale, logit_pi = params
    return LogisticModel(
        mu[i], log_scale[i], None if logit_pi is None else logit_pi[i], bin_width, lower, upper, precision
    )


def push_logistic(
    lane: RansLane,
    symbols: Sequence[int],
    params,
    bin_width: float,
    lower: int | None,
    upper: int | None,
    precision: int,
) -> None:
    """Push symbols under per-position logistic mixtures; ``params = (mu, log_scale, logit_pi)``,
    each a list over positions of lists over the K components (``logit_pi`` may be None)."""
    for i in reversed(range(len(symbols))):
        model = _model(params, i, bin_width, lower, upper, precision)
        s = symbols[i]
        if model.lo <= s <= model.hi:
            start = model.cdf(s)
            lane.push(start, model.cdf(s + 1) - start, precision)
        else:
            raw = s & 0xFFFFFFFF
            lane.push(raw & 0xFFFF, 1, ESCAPE_PRECISION)
            lane.push(raw >> 16, 1, ESCAPE_PRECISION)
            lane.push(model.escape, 1, precision)


def pop_logistic(
    lane: RansLane, params, count: int, bin_width: float, lower: int | None, upper: int | None, precision: int
) -> list[int]:
    out = []
    for i in range(count):
        model = _model(params, i, bin_width, lower, upper, precision)
        slot = lane.peek(precision)
        if slot >= model.escape:
            lane.advance(model.escape, 1, precision)
            high = lane.peek(ESCAPE_PRECISION)
            lane.advance(high, 1, ESCAPE_PRECISION)
            low = lane.peek(ESCAPE_PRECISION)
            lane.advance(low, 1, ESCAPE_PRECISION)
            raw = (high << 16) | low
            out.append(raw - (1 << 32) if raw >= 1 << 31 else raw)
        else:
            s = model.search(slot)
            start = model.cdf(s)
            lane.advance(start, model.cdf(s + 1) - start, precision)
            out.append(s)
    return out


# ---------------------------------------------------------------------------
# quantize_pdf


def quantize_shift(K: int) -> int:
    """Bits of the fixed-point weights: K of them sum below 2^31."""
    return min(23, 30 - (K - 1).bit_length())  # (K - 1).bit_length() = ceil(log2 K)


def quantize_weights(row: Sequence[float], logits: bool = False) -> list[int]:
    """q_i = floor(v_i * (2^shift / max v)) in float32 arithmetic, v_i = float32(row[i]);
    for logits floor(det_exp(l_i - max l) * 2^shift) in float64."""
    values = np.asarray(row, dtype=np.float64).astype(np.float32)
    shift = quantize_shift(len(row))
    top = values.max()
    if logits:
        return [math.floor(det_exp(float(v) - float(top)) * float(1 << shift)) for v in values]
    scale = np.float32(1 << shift) / top  # float32 division
    return [int(w) for w in np.floor(values * scale)]  # float32 products


def quantize_pdf(row: Sequence[float], precision: int, logits: bool = False) -> list[int]:
    """One row of probabilities (or logits) to a CDF of ``len(row) + 1`` integers.

    ``C(i) = i + floor(Q_i (2^p - K) / Q_K)`` with ``Q_i`` the prefix sums of the
    fixed-point weights: every symbol gets at least 1, ``C(K) = 2^p`` exactly, and
    a symbol's interval needs only two prefix sums (the fused coders use that).
    """
    q = quantize_weights(row, logits)
    total, spare = sum(q), (1 << precision) - len(row)
    cdf, prefix = [0], 0
    for i, v in enumerate(q):
        prefix += v
        cdf.append(i + 1 + prefix * spare // total)
    return cdf
