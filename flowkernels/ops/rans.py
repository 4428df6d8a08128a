"""rANS entropy coding straight from PyTorch tensors, on CPU and CUDA: the rans ops, their wrappers and fake kernels.

:class:`RansCoder` is a stack coder (last pushed, first popped) over N
independent lanes coded in parallel: ``symbols`` are ``[N, L]`` tensors (lane,
position). Two kinds of models:

* categorical tables (``push`` / ``pop``): int32 CDFs ``[N, L, K+1]``,
  ``[L, K+1]`` or ``[K+1]``, strictly increasing from 0 to ``2**precision``;
  :func:`quantize_pdf` builds them from float probabilities or logits, and
  ``push_probs`` / ``pop_probs`` code straight from float probabilities with the
  same quantization, without building tables.
  Symbols must lie in ``[0, K)``: anything else raises ``ValueError`` (no escape).
* discretized logistic mixtures (``push_logistic`` / ``pop_logistic``), the
  distribution of :func:`flowkernels.ops.discretized_logistic_logp`, quantized
  on the fly without a table. Symbols outside the model's support go through an
  escape path, so every int32 value round-trips.

The coder state is 64 bits with 32-bit renormalisation words; precision is at
most 24 bits. Model quantization uses only integer and IEEE basic
floating-point operations, so the CPU and the GPU produce the same bytes and a
stream written on one device decodes on the other. The exact algorithm is
documented in :mod:`flowkernels.reference.rans`, its pure-Python oracle.

Example::

    coder = RansCoder(lanes=4)
    cdf = quantize_pdf(torch.tensor([0.5, 0.25, 0.25]))       # one shared table
    coder.push(torch.tensor([[0, 2], [1, 1], [2, 0], [0, 0]]), cdf)
    data = coder.to_bytes()
    assert RansCoder.from_bytes(data).pop(cdf, count=2).tolist() == [[0, 2], [1, 1], [2, 0], [0, 0]]

The container (``to_bytes``), little-endian:

=========  =======================================================
bytes      content
=========  =======================================================
4          magic ``b"FKRS"``
2          format version (1)
2          flags (0)
4          N, the number of lanes (>= 1)
8          W, the total number of 32-bit words
4 N        words per lane
8 N        final state per lane (in ``[2**32, 2**64)``)
4 W        the words, lane by lane, bottom of each stack first
4          CRC-32 of everything before it
=========  =======================================================
"""

from __future__ import annotations

import struct
import zlib
from collections.abc import Sequence

import numpy as np
import torch

from .. import limits

__all__ = ["RansCoder", "quantize_pdf", "pack", "unpack", "FORMAT_VERSION", "MAGIC"]

MAGIC = b"FKRS"
FORMAT_VERSION = 1
STATE_LOWER = 1 << 32
MAX_PRECISION = 24
_HEADER = struct.Struct("<4sHHIQ")
_CRC = struct.Struct("<I")
# from_bytes refuses to expand a stream into more than this many bytes of dense
# [lanes, longest lane] storage per byte of input (hostile headers), plus 16 MiB.
_MAX_EXPANSION = 64

_ops = torch.ops.flowkernels


def quantize_pdf(
    probs: torch.Tensor | None = None, *, logits: torch.Tensor | None = None, precision: int = 16
) -> torch.Tensor:
    """Quantize probabilities (or logits) along the last dimension into int32 CDF tables.

    Every symbol gets a frequency of at least 1, the frequencies sum to
    ``2**precision``, and the result is deterministic and identical on CPU and
    CUDA (integer arithmetic after one IEEE division per entry; logits use an
    exponential built from basic operations). Probabilities need not be
    normalised.

    Args:
        probs: non-negative float tensor ``[..., K]`` (give this or ``logits``).
        logits: float tensor ``[..., K]``, normalised by softmax.
        precision: bits of the table, 1 to 24; ``K <= 2**precision``.

    Returns:
        int32 tensor ``[..., K + 1]``: ``0 = cdf[0] < ... < cdf[K] = 2**precision``.
    """
    if (probs is None) == (logits is None):
        raise ValueError("quantize_pdf: give exactly one of 'probs' and 'logits'")
    return _ops.rans_quantize_pdf(probs if logits is None else logits, int(precision), logits is not None)


def pack(states: Sequence[int], words: Sequence[Sequence[int]]) -> bytes:
    """Serialise lanes (final states and word stacks, bottom first) into the container."""
    counts = np.array([len(w) for w in words], dtype="<u4")
    body = b"".join(
        [
            _HEADER.pack(MAGIC, FORMAT_VERSION, 0, len(states), int(counts.sum(dtype=np.uint64))),
            counts.tobytes(),
            np.array(states, dtype="<u8").tobytes(),
            b"".join(np.asarray(w, dtype="<u4").tobytes() for w in words),
        ]
    )
    return body + _CRC.pack(zlib.crc32(body))


def unpack(data: bytes) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Validate and parse a container: (states uint64 [N], counts uint32 [N], words uint32 [W]).

    Raises ValueError for anything that is not an intact stream of this format,
    before allocating anything sized by the header.
    """
    if not isinstance(data, (bytes, bytearray, memoryview)):
        raise TypeError(f"RansCoder.from_bytes expects bytes, got {type(data).__name__}")
    data = bytes(data)
    if len(data) < _HEADER.size + _CRC.size:
        raise ValueError(f"rANS stream truncated: {len(data)} bytes is shorter than the header")
    magic, version, flags, lanes, total_words = _HEADER.unpack_from(data)
    if magic != MAGIC:
        raise ValueError(f"not a flowkernels rANS stream (magic {magic!r}, expected {MAGIC!r})")
    if version != FORMAT_VERSION:
        raise ValueError(f"unsupported rANS stream version {version} (this flowkernels reads {FORMAT_VERSION})")
    if flags != 0:
        raise ValueError(f"unsupported rANS stream flags {flags:#x}")
    if lanes < 1:
        raise ValueError("corrupt rANS stream: zero lanes")
    expected = _HEADER.size + 12 * lanes + 4 * total_words + _CRC.size
    if expected != len(data):
        raise ValueError(
            f"corrupt rANS stream: the header describes {expected} bytes ({lanes} lanes, {total_words} words), "
            f"the data has {len(data)}"
        )
    (crc,) = _CRC.unpack_from(data, len(data) - _CRC.size)
    if zlib.crc32(data[: -_CRC.size]) != crc:
        raise ValueError("corrupt rANS stream: CRC-32 mismatch")
    offset = _HEADER.size
    counts = np.frombuffer(data, dtype="<u4", count=lanes, offset=offset)
    offset += 4 * lanes
    states = np.frombuffer(data, dtype="<u8", count=lanes, offset=offset)
    offset += 8 * lanes
    if int(counts.sum(dtype=np.uint64)) != total_words:
        raise ValueError("corrupt rANS stream: lane sizes do not add up to the word count")
    if (states < STATE_LOWER).any():
        raise ValueError("corrupt rANS stream: a lane state is below 2^32")
    words = np.frombuffer(data, dtype="<u4", count=total_words, offset=offset)
    return states, counts, words


class RansCoder:
    """A stack of rANS-coded symbols in ``lanes`` independent lanes (see the module docstring).

    Args:
        lanes: number of independent lanes N (each push/pop codes ``[N, L]`` symbols).
        device: where the coder lives and codes (``"cpu"`` or a CUDA device).

    Example (a stack: symbols come back in the order they were pushed, after a trip through bytes):
        >>> import torch
        >>> from flowkernels.ops.rans import RansCoder
        >>> coder = RansCoder(2)
        >>> symbols, probs = torch.tensor([[0, 2, 1], [1, 1, 0]]), torch.tensor([0.5, 0.3, 0.2])
        >>> coder.push_probs(symbols, probs)
        >>> data = coder.to_bytes()
        >>> RansCoder.from_bytes(data).pop_probs(probs, count=3)
        tensor([[0, 2, 1],
                [1, 1, 0]])
    """

    def __init__(self, lanes: int, *, device: torch.device | str = "cpu"):
        if int(lanes) < 1:
            raise ValueError(f"RansCoder needs at least one lane, got {lanes}")
        limits.check_symbols(16 * int(lanes), f"RansCoder({lanes})")
        device = torch.device(device)
        self.state = torch.full((int(lanes),), STATE_LOWER, dtype=torch.int64, device=device)
        self.words = torch.zeros((int(lanes), 16), dtype=torch.int32, device=device)
        self.lengths = torch.zeros(int(lanes), dtype=torch.int64, device=device)

    # -- properties -------------------------------------------------------------

    @property
    def lanes(self) -> int:
        return self.state.shape[0]

    @property
    def device(self) -> torch.device:
        return self.state.device

    def num_bits(self) -> int:
        """Exact size of the compressed data so far: the container's payload (words and states), in bits."""
        return 32 * (int(self.lengths.sum()) + 2 * self.lanes)

    def __repr__(self) -> str:
        return f"RansCoder(lanes={self.lanes}, device={self.device}, bits={self.num_bits()})"

    # -- storage -----------------------------------------------------------------

    def _reserve(self, words_per_lane: int) -> None:
        if self.lanes == 0:
            return
        shortest, longest = (int(v) for v in torch.aminmax(self.lengths))
        if shortest < 0 or longest > self.words.shape[1]:  # a tampered coder: never size memory by it
            raise ValueError(
                f"RansCoder: lengths must be in [0, {self.words.shape[1]}] (the words' capacity), "
                f"got values in [{shortest}, {longest}]"
            )
        needed = longest + words_per_lane
        capacity = self.words.shape[1]
        if needed > capacity:
            # Words beyond a lane's length are never read, so the new room stays uninitialised.
            grown = torch.empty((self.lanes, max(needed, 2 * capacity)), dtype=torch.int32, device=self.device)
            grown[:, :capacity] = self.words
            self.words = grown

    def _snapshot(self):
        return self.state.clone(), self.lengths.clone()

    def _restore(self, snapshot) -> None:
        self.state, self.lengths = snapshot

    def to(self, device: torch.device | str) -> RansCoder:
        """A copy of this coder on ``device`` (streams are device-independent)."""
        other = RansCoder.__new__(RansCoder)
        other.state, other.words, other.lengths = (
            t.to(device, copy=True) for t in (self.state, self.words, self.lengths)
        )
        return other

    # -- categorical ---------------------------------------------------------------

    @staticmethod
    def _table_precision(cdf: torch.Tensor) -> int:
        if cdf.dtype != torch.int32 or cdf.dim() < 1 or cdf.shape[-1] < 2:
            raise ValueError(f"cdf must be an int32 tensor [..., K+1] with K >= 1, got {cdf.dtype} {list(cdf.shape)}")
        if cdf.numel() == 0:  # no positions (L = 0): nothing is coded, any precision will do
            return MAX_PRECISION
        total = int(cdf.reshape(-1, cdf.shape[-1])[0, -1])
        if total < 2 or total & (total - 1) or total > 1 << MAX_PRECISION:
            raise ValueError(f"cdf must end at 2**precision with precision in [1, {MAX_PRECISION}], got {total}")
        return total.bit_length() - 1

    def push(self, symbols: torch.Tensor, cdf: torch.Tensor, *, validate: bool = True) -> None:
        """Push ``symbols`` [N, L] (values in ``[0, K)``) under categorical tables ``cdf``.

        ``cdf`` is int32 ``[N, L, K+1]``, ``[L, K+1]`` or ``[K+1]``; its precision is
        read from its last entry. ``validate=False`` skips the full monotonicity check
        of every table row (use it for tables made by :func:`quantize_pdf`); each
        pushed symbol's own interval is checked regardless.
        """
        precision = self._table_precision(cdf)
        self._reserve(symbols.shape[1] if symbols.dim() == 2 else 0)
        _ops.rans_push_categorical(self.state, self.words, self.lengths, symbols, cdf, precision, validate)

    def pop(self, cdf: torch.Tensor, *, count: int | None = None) -> torch.Tensor:
        """Pop ``count`` symbols per lane under ``cdf`` (the model they were pushed with).

        Returns int64 ``[N, count]`` in the order they were pushed; ``count`` defaults
        to the table's L (give it for a shared ``[K+1]`` table). On a stream that does
        not match the model, raises ValueError and leaves the coder unchanged.
        """
        precision = self._table_precision(cdf)
        if count is None:
            if cdf.dim() == 1:
                raise ValueError("pop with a shared [K+1] table needs 'count'")
            count = cdf.shape[-2]
        limits.check_symbols(self.lanes * int(count), f"pop(count={count}) on {self.lanes} lanes")
        snapshot = self._snapshot()
        try:
            return _ops.rans_pop_categorical(self.state, self.words, self.lengths, cdf, precision, int(count))
        except Exception:
            self._restore(snapshot)
            raise

    def push_probs(self, symbols: torch.Tensor, probs: torch.Tensor, *, precision: int = 16) -> None:
        """Push ``symbols`` [N, L] under float probabilities ``probs`` ([N, L, K], [L, K] or [K]).

        Exactly ``push(symbols, quantize_pdf(probs, precision=precision))`` (the same
        bytes), but the tables are never materialised: each symbol's interval comes from
        two prefix sums of the fixed-point weights. This is the fast path for models that
        output probabilities.
        """
        self._reserve(symbols.shape[1] if symbols.dim() == 2 else 0)
        _ops.rans_push_probs(self.state, self.words, self.lengths, symbols, probs, int(precision))

    def pop_probs(self, probs: torch.Tensor, *, precision: int = 16, count: int | None = None) -> torch.Tensor:
        """Pop symbols pushed by :meth:`push_probs` (int64 ``[N, count]``, in push order)."""
        if count is None:
            if probs.dim() == 1:
                raise ValueError("pop_probs with a shared [K] distribution needs 'count'")
            count = probs.shape[-2]
        limits.check_symbols(self.lanes * int(count), f"pop_probs(count={count}) on {self.lanes} lanes")
        snapshot = self._snapshot()
        try:
            return _ops.rans_pop_probs(self.state, self.words, self.lengths, probs, int(precision), int(count))
        except Exception:
            self._restore(snapshot)
            raise

    # -- discretized logistic ------------------------------------------------------------

    @staticmethod
    def _symbol_bound(value: float | None, bin_width: float, name: str) -> int | None:
        if value is None:
            return None
        index = value / bin_width
        if index != round(index):
            raise ValueError(f"'{name}' = {value} is not a multiple of bin_width = {bin_width}")
        return int(round(index))

    def push_logistic(
        self,
        symbols: torch.Tensor,
        mu: torch.Tensor,
        log_scale: torch.Tensor,
        logit_pi: torch.Tensor | None = None,
        *,
        bin_width: float = 1.0,
        lower: float | None = None,
        upper: float | None = None,
        precision: int = 24,
    ) -> None:
        """Push integer ``symbols`` [N, L] under discretized logistic (mixture) models.

        Symbol ``s`` stands for the value ``s * bin_width``, so the parameters are
        those of ``ops.discretized_logistic_logp(symbols * bin_width, mu, log_scale,
        logit_pi, bin_width=..., lower=..., upper=...)``: ``mu``/``log_scale`` are
        ``[N, L]`` or ``[N, L, K]`` (with ``logit_pi`` ``[N, L, K]``, K <= 16), and
        ``lower``/``upper`` are values (multiples of ``bin_width``). Any int32 symbol
        round-trips; symbols outside the model's support cost about 32 extra bits.
        ``precision`` is 8 to 24 bits; ``bin_width`` is in ``[2^-32, 2^32]``.
        """
        lo = self._symbol_bound(lower, bin_width, "lower")
        hi = self._symbol_bound(upper, bin_width, "upper")
        self._reserve(3 * (symbols.shape[1] if symbols.dim() == 2 else 0))
        _ops.rans_push_logistic(
            self.state,
            self.words,
            self.lengths,
            symbols,
            mu,
            log_scale,
            logit_pi,
            float(bin_width),
            lo,
            hi,
            int(precision),
        )

    def pop_logistic(
        self,
        mu: torch.Tensor,
        log_scale: torch.Tensor,
        logit_pi: torch.Tensor | None = None,
        *,
        bin_width: float = 1.0,
        lower: float | None = None,
        upper: float | None = None,
        precision: int = 24,
    ) -> torch.Tensor:
        """Pop symbols [N, L] pushed by :meth:`push_logistic` with the same parameters (int64)."""
        lo = self._symbol_bound(lower, bin_width, "lower")
        hi = self._symbol_bound(upper, bin_width, "upper")
        snapshot = self._snapshot()
        try:
            return _ops.rans_pop_logistic(
                self.state, self.words, self.lengths, mu, log_scale, logit_pi, float(bin_width), lo, hi, int(precision)
            )
        except Exception:
            self._restore(snapshot)
            raise

    # -- serialisation ------------------------------------------------------------------

    def to_bytes(self) -> bytes:
        """The self-describing container (see the module docstring); the coder is unchanged."""
        states = self.state.cpu().numpy().view(np.uint64)
        lengths = self.lengths.cpu().numpy()
        words = self.words.cpu().numpy().view(np.uint32)
        return pack(states.tolist(), [words[n, : lengths[n]] for n in range(self.lanes)])

    @classmethod
    def from_bytes(cls, data: bytes, *, device: torch.device | str = "cpu") -> RansCoder:
        """Load a coder from :meth:`to_bytes` output; ValueError for corrupt or hostile data."""
        states, counts, words = unpack(data)
        lanes, longest = len(states), int(counts.max())
        if lanes * max(longest, 1) * 4 > _MAX_EXPANSION * len(data) + (1 << 24):
            raise ValueError(
                f"rANS stream too unbalanced to load: {lanes} lanes with up to {longest} words each would need "
                f"{lanes * longest * 4} bytes of storage for {len(data)} bytes of data"
            )
        coder = cls(lanes, device="cpu")
        dense = np.zeros((lanes, max(longest, 16)), dtype=np.uint32)
        # Scatter each lane's words into its row: row n holds words[starts[n] : starts[n] + counts[n]].
        starts = np.concatenate([[0], np.cumsum(counts, dtype=np.int64)[:-1]])
        rows = np.repeat(np.arange(lanes), counts)
        cols = np.arange(len(words)) - np.repeat(starts, counts)
        dense[rows, cols] = words
        coder.state = torch.from_numpy(states.astype(np.uint64).view(np.int64).copy())
        coder.words = torch.from_numpy(dense.view(np.int32))
        coder.lengths = torch.from_numpy(counts.astype(np.int64))
        return coder.to(device) if torch.device(device).type != "cpu" else coder


# ---------------------------------------------------------------------------------------------------
# Fake kernels. The ops work on a coder held as three tensors, ``state`` int64 [N], ``words`` int32
# [N, capacity] and ``lengths`` int64 [N], which pushes and pops update in place; :class:`RansCoder` owns them
# and grows ``words``.


def _traced_only(op: str, *tensors: torch.Tensor | None) -> None:
    """The fake kernels stand in for the real ones under fake or meta tracing only. A real coder
    called with meta parameters is dispatched here too (meta wins the dispatch), where pretending
    would push nothing or pop uninitialised symbols: refuse it."""
    from torch._subclasses.fake_tensor import is_fake

    real = [t.device for t in tensors if t is not None and t.device.type != "meta" and not is_fake(t)]
    if real:
        raise ValueError(
            f"flowkernels.{op}: arguments on the meta device with a coder on {real[0]}: every tensor must be on "
            "the coder's device"
        )


@torch.library.register_fake("flowkernels::rans_push_categorical")
def _push_categorical_fake(state, words, lengths, symbols, cdf, precision, validate=True):
    _traced_only("rans_push_categorical", state, words, lengths, symbols, cdf)
    return None


@torch.library.register_fake("flowkernels::rans_pop_categorical")
def _pop_categorical_fake(state, words, lengths, cdf, precision, count):
    _traced_only("rans_pop_categorical", state, words, lengths, cdf)
    return state.new_empty((state.shape[0], count))


@torch.library.register_fake("flowkernels::rans_push_logistic")
def _push_logistic_fake(state, words, lengths, symbols, mu, log_scale, logit_pi, bin_width, lower, upper, precision):
    _traced_only("rans_push_logistic", state, words, lengths, symbols, mu, log_scale, logit_pi)
    return None


@torch.library.register_fake("flowkernels::rans_pop_logistic")
def _pop_logistic_fake(state, words, lengths, mu, log_scale, logit_pi, bin_width, lower, upper, precision):
    _traced_only("rans_pop_logistic", state, words, lengths, mu, log_scale, logit_pi)
    return state.new_empty((state.shape[0], mu.shape[1]))


@torch.library.register_fake("flowkernels::rans_quantize_pdf")
def _quantize_pdf_fake(probs, precision, logits):
    return probs.new_empty((*probs.shape[:-1], probs.shape[-1] + 1), dtype=torch.int32)


@torch.library.register_fake("flowkernels::rans_push_probs")
def _push_probs_fake(state, words, lengths, symbols, probs, precision):
    _traced_only("rans_push_probs", state, words, lengths, symbols, probs)
    return None


@torch.library.register_fake("flowkernels::rans_pop_probs")
def _pop_probs_fake(state, words, lengths, probs, precision, count):
    _traced_only("rans_pop_probs", state, words, lengths, probs)
    return state.new_empty((state.shape[0], count))
