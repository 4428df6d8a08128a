"""Pure-Python context coder: the specification and oracle of the ``context`` kernel family.

A classical adaptive lossless coder of 8-bit images ``[C, H, W]``, in the line of CALIC (Wu and Memon
1997) and LOCO-I / JPEG-LS (Weinberger et al. 2000), with binary adaptive models and rANS in place of
their arithmetic and Golomb codes. It is the image codec's safety net: it needs no training, so it
works on any image, and the codec picks it where the flow would cost more. ``csrc/cpu/context.cpp``
implements the same algorithm and must produce the same bytes; everything is integer arithmetic, so
streams are identical on every machine.

Per pixel ``x`` of a channel, in raster order
---------------------------------------------
* Value set: when fewer than 256 values occur in the channel, a flag and the 256-bit mask of those that
  occur (each bit in a context of the one before) come first, and the channel is coded as ranks among
  them, ``top`` being the largest rank (255 otherwise). Stretched histograms (e.g. scikit-image's moon)
  and few-level images (digits, line art) cost what their levels need.
* Neighbours ``a`` (W), ``b`` (N), ``c`` (NW), ``d`` (NE), ``e`` (WW), ``f`` (NN), ``g`` (NNE); outside
  the image each is replaced by the nearest that exists (see :func:`_neighbours`; the first pixel
  sees 128).
* Gradient-adjusted prediction (CALIC's GAP) ``p4`` in quarters, from ``dh = |a-e| + |b-c| + |b-d|``
  and ``dv = |a-c| + |b-f| + |d-g|``.
* Channel modes: mode 0 codes the channel alone; mode ``1 + 3 r + k`` links it to the earlier channel
  ``r`` (in its ranks): ``k = 0`` or ``1`` adds half or all of ``r``'s prediction error at the same
  pixel to ``p4``; ``k = 2`` predicts the difference from ``r`` (the neighbours are differences, and
  ``4 r`` at the pixel is added to ``p4``). The encoder tries every mode of each channel and keeps the
  smallest stream (ties: the lower mode).
* Error energy ``dh + dv + 2 |err_W|`` (+ ``2 |err_r|`` when linked) quantized by :data:`ENERGY_THRESHOLDS` into
  12 coding contexts ``k``.
* Bias cancellation: a context of ``k // 3`` and 8 texture bits (is each of b, a, c, d, f, e, 2b-f,
  2a-e below the prediction, before any link is added?) keeps the sum and count of ``4 x - p4``; their
  floor mean corrects ``p4``, and both are halved when the count reaches 64. ``p`` is the corrected
  prediction rounded and clamped to ``[0, top]``.
* The error ``x - p`` is folded onto ``u`` in ``[0, top]`` by distance from ``p`` (the sign that the
  rounding favours first; one-sided beyond the nearer end of the range) and coded as binary decisions
  in contexts of ``k``: is ``u`` zero; the bit length ``n`` of ``u`` in unary (no terminator at 7); the
  ``n`` bits below its leading one (the first two bits in a context of their prefix).

Binary models and rANS
----------------------
A model holds a fast and a slow estimate of ``P(0)`` in units of ``2**-16``, averaged and clamped to
``[32, 65504]``; their rates start at 1/2 and settle at ``2**-4`` and ``2**-7`` (:class:`_BitModel`).
Decisions are coded with rANS (64-bit state in ``[2**32, 2**64)``, 32-bit words), last first.

Stream layout
-------------
``C`` (1 to 85) channels. ``C - 1`` bytes: the modes of channels 1 to C-1; 8 bytes: the final state
(u64, little-endian); then the 32-bit words (little-endian) in the order the decoder reads them.
Decoding ends in the initial state ``2**32`` with every word read, which the decoder checks.
"""

from __future__ import annotations

import numpy as np

__all__ = ["encode", "decode", "ENERGY_THRESHOLDS"]

PROB_BITS = 16
PROB_ONE = 1 << PROB_BITS
MIN_PROB = 32
STATE_LOWER = 1 << 32
ENERGY_THRESHOLDS = (3, 6, 10, 15, 22, 32, 45, 64, 90, 128, 180)
BIAS_RESET = 64
MAGNITUDE_CLASSES = 8
LINKS = 3  # ways a channel can use an earlier one
MAX_CHANNELS = 85  # so that each channel's mode (up to 1 + 3 * 84) fits its byte


class _BitModel:
    __slots__ = ("fast", "slow", "count")

    def __init__(self) -> None:
        self.fast = self.slow = 1 << 15
        self.count = 0

    def p0(self) -> int:
        return min(max((self.fast + self.slow + 1) >> 1, MIN_PROB), PROB_ONE - MIN_PROB)

    def update(self, bit: int) -> None:
        fast_shift = 1 + self.count // 2 if self.count < 6 else 4
        slow_shift = 1 + self.count // 2 if self.count < 12 else 7
        self.count = min(self.count + 1, 12)
        if bit:
            self.fast -= self.fast >> fast_shift
            self.slow -= self.slow >> slow_shift
        else:
            self.fast += (65535 - self.fast) >> fast_shift
            self.slow += (65535 - self.slow) >> slow_shift


class _Models:
    """A channel's models, created on first use."""

    def __init__(self) -> None:
        self.bits: dict[tuple, _BitModel] = {}
        self.bias_sum: dict[int, int] = {}
        self.bias_count: dict[int, int] = {}

    def bit(self, *key) -> _BitModel:
        model = self.bits.get(key)
        if model is None:
            model = self.bits[key] = _BitModel()
        return model


class _Recorder:
    """Encoding: records (P(0), bit) per decision."""

    encoding = True

    def __init__(self) -> None:
        self.decisions: list[tuple[int, int]] = []

    def code(self, model: _BitModel, bit: int) -> int:
        self.decisions.append((model.p0(), bit))
        model.update(bit)
        return bit


class _Reader:
    """Decoding: pops each decision from the rANS state."""

    encoding = False

    def __init__(self, state: int, words: list[int]) -> None:
        self.state, self.words, self.next = state, words, 0

    def code(self, model: _BitModel, _bit: int) -> int:
        p = model.p0()
        slot = self.state & (PROB_ONE - 1)
        bit = int(slot >= p)
        freq, start = (PROB_ONE - p, p) if bit else (p, 0)
        self.state = freq * (self.state >> PROB_BITS) + slot - start
        if self.state < STATE_LOWER:
            if self.next == len(self.words):
                raise ValueError("context stream ends early (truncated or corrupt)")
            self.state = (self.state << 32) | self.words[self.next]
            self.next += 1
        model.update(bit)
        return bit


def _code_symbol(sink, models: _Models, k: int, u: int) -> int:
    if not sink.code(models.bit("zero", k), int(u != 0)):
        return 0
    n = 0
    if sink.encoding:
        length = u.bit_length() - 1
        while n < length:
            sink.code(models.bit("unary", k, n), 1)
            n += 1
        if n < MAGNITUDE_CLASSES - 1:
            sink.code(models.bit("unary", k, n), 0)
    else:
        while n < MAGNITUDE_CLASSES - 1 and sink.code(models.bit("unary", k, n), 0):
            n += 1
    w, first = 1, 0
    for t in range(n):
        node = 0 if t == 0 else (1 + first if t == 1 else t + 1)
        bit = sink.code(models.bit("mantissa", k, n, node), (u >> (n - 1 - t)) & 1 if sink.encoding else 0)
        if t == 0:
            first = bit
        w = (w << 1) | bit
    return w


def _neighbours(plane: list[list[int]], y: int, x: int, width: int, first: int = 128) -> tuple[int, ...]:
    row = plane[y]
    if y == 0:
        a = row[x - 1] if x > 0 else first
        e = row[x - 2] if x > 1 else a
        return a, a, a, a, e, a, a
    up = plane[y - 1]
    b = up[x]
    c = up[x - 1] if x > 0 else b
    d = up[x + 1] if x + 1 < width else b
    a = row[x - 1] if x > 0 else b
    e = row[x - 2] if x > 1 else a
    if y >= 2:
        f = plane[y - 2][x]
        g = plane[y - 2][x + 1] if x + 1 < width else f
    else:
        f, g = b, d
    return a, b, c, d, e, f, g


def _gap(a: int, b: int, c: int, d: int, e: int, f: int, g: int) -> tuple[int, int, int]:
    """CALIC's gradient-adjusted prediction in quarters, and the gradients dh, dv."""
    dh = abs(a - e) + abs(b - c) + abs(b - d)
    dv = abs(a - c) + abs(b - f) + abs(d - g)
    slope = dv - dh
    if slope > 80:
        return 4 * a, dh, dv
    if slope < -80:
        return 4 * b, dh, dv
    p4 = 2 * (a + b) + (d - c)
    if slope > 32:
        p4 = (p4 + 4 * a) // 2
    elif slope > 8:
        p4 = (3 * p4 + 4 * a) // 4
    elif slope < -32:
        p4 = (p4 + 4 * b) // 2
    elif slope < -8:
        p4 = (3 * p4 + 4 * b) // 4
    return p4, dh, dv


def _code_palette(sink, plane: list[list[int]] | None) -> list[int]:
    """Codes which values occur in a channel; returns them in increasing order (the ranks' values)."""
    used = [False] * 256
    if sink.encoding:
        for row in plane:
            for value in row:
                used[value] = True
    if not sink.code(_BitModel(), int(sum(used) < 256)):
        return list(range(256))
    masks, previous, values = (_BitModel(), _BitModel()), 0, []
    for value in range(256):
        previous = sink.code(masks[previous], int(used[value]))
        if previous:
            values.append(value)
    if not 0 < len(values) < 256:
        raise ValueError("context stream is corrupt (a channel's value set is empty or full)")
    return values


def _code_plane(sink, plane: list[list[int]], reference, top: int) -> list[list[int]]:
    """Codes one channel; ``plane`` is read (encoding) or filled (decoding). ``reference``: None, or
    ``(link, its values, its errors)`` with link 0 (add half its error), 1 (all of it) or 2 (predict
    the difference). Returns the channel's prediction errors."""
    height, width = len(plane), len(plane[0])
    link, ref_plane, ref_error = reference if reference else (None, None, None)
    difference = link == 2
    models = _Models()
    error = [[0] * width for _ in range(height)]
    for y in range(height):
        for x in range(width):
            if difference:
                # rows y-2 (where it exists) to y of the differences
                rows = range(max(0, y - 2), y + 1)
                values = [[plane[i][j] - ref_plane[i][j] for j in range(width)] for i in rows]
                neighbours = _neighbours(values, min(y, 2), x, width, first=0)
            else:
                neighbours = _neighbours(plane, y, x, width)
            a, b, c, d, e, f, g = neighbours
            p4, dh, dv = _gap(a, b, c, d, e, f, g)
            texture = 0
            for bit, value in enumerate((b, a, c, d, f, e, 2 * b - f, 2 * a - e)):
                texture |= int(4 * value < p4) << bit
            west_error = error[y][x - 1] if x > 0 else (error[y - 1][x] if y > 0 else 0)
            energy = dh + dv + 2 * abs(west_error)
            if reference:
                r = ref_error[y][x]
                p4 += (2 * r, 4 * r, 4 * ref_plane[y][x])[link]
                energy += 2 * abs(r)
            k = sum(energy >= t for t in ENERGY_THRESHOLDS)
            context = (k // 3) << 8 | texture
            count = models.bias_count.get(context, 0)
            corrected = p4 + (models.bias_sum.get(context, 0) // count if count else 0)
            p = min(max((corrected + 2) // 4, 0), top)
            flip = corrected - 4 * p < 0
            below, above = (top - p, p) if flip else (p, top - p)
            both = min(below, above)
            u = 0
            if sink.encoding:
                signed = p - plane[y][x] if flip else plane[y][x] - p
                if abs(signed) > both:
                    u = both + abs(signed)
                else:
                    u = 2 * signed - 1 if signed > 0 else -2 * signed
            u = _code_symbol(sink, models, k, u)
            if u <= 2 * both:
                signed = (u + 1) // 2 if u & 1 else -(u // 2)
            else:
                signed = -(u - both) if below > above else u - both
            value = p - signed if flip else p + signed
            plane[y][x] = value
            error[y][x] = value - p
            models.bias_sum[context] = models.bias_sum.get(context, 0) + 4 * value - p4
            models.bias_count[context] = count + 1
            if count + 1 >= BIAS_RESET:
                models.bias_sum[context] //= 2
                models.bias_count[context] = (count + 1) // 2
    return error


def _reference(mode: int, ranks: list, errors: list):
    """Mode 0: None; mode ``1 + 3 r + k``: ``(k, ranks of channel r, its errors)``."""
    if mode == 0:
        return None
    return (mode - 1) % LINKS, ranks[(mode - 1) // LINKS], errors[(mode - 1) // LINKS]


def _rans_encode(decisions: list[tuple[int, int]]) -> tuple[int, list[int]]:
    """Codes the decisions last first; returns the final state and the words in reading order."""
    x, words = STATE_LOWER, []
    for p, bit in reversed(decisions):
        freq, start = (PROB_ONE - p, p) if bit else (p, 0)
        if x >> (64 - PROB_BITS) >= freq:
            words.append(x & 0xFFFFFFFF)
            x >>= 32
        x = ((x // freq) << PROB_BITS) + x % freq + start
    return x, words[::-1]


def encode(image: np.ndarray) -> bytes:
    """Encodes a uint8 array ``[C, H, W]`` into a context stream (slow: tens of microseconds per pixel)."""
    image = np.asarray(image)
    if image.dtype != np.uint8 or image.ndim != 3:
        raise ValueError(f"context.encode: expected a uint8 [C, H, W] array, got {image.dtype} {image.shape}")
    errors: list[list[list[int]]] = []
    ranks: list[list[list[int]]] = []
    modes: list[int] = []
    decisions: list[tuple[int, int]] = []
    if not 1 <= image.shape[0] <= MAX_CHANNELS:
        raise ValueError(f"context.encode: expected 1 to {MAX_CHANNELS} channels, got {image.shape[0]}")
    for channel in range(image.shape[0]):
        palette_recorder = _Recorder()
        values = _code_palette(palette_recorder, image[channel].tolist())
        ranks.append(np.searchsorted(values, image[channel]).tolist())
        best = None
        for mode in range(1 + LINKS * channel):
            recorder = _Recorder()
            recorder.decisions = list(palette_recorder.decisions)
            error = _code_plane(recorder, ranks[channel], _reference(mode, ranks, errors), len(values) - 1)
            size = len(_rans_encode(recorder.decisions)[1])
            if best is None or size < best[0]:
                best = (size, mode, recorder.decisions, error)
        _, mode, chosen, error = best
        errors.append(error)
        if channel > 0:
            modes.append(mode)
        decisions += chosen
    state, words = _rans_encode(decisions)
    return bytes(modes) + state.to_bytes(8, "little") + np.asarray(words, dtype="<u4").tobytes()


def decode(data: bytes, channels: int, height: int, width: int) -> np.ndarray:
    """Decodes a context stream into a uint8 array ``[channels, height, width]``."""
    head = channels - 1 + 8
    if len(data) < head or (len(data) - head) % 4:
        raise ValueError("context stream has the wrong length (truncated or corrupt)")
    modes = list(data[: channels - 1])
    state = int.from_bytes(data[channels - 1 : head], "little")
    if state < STATE_LOWER or any(mode >= 1 + LINKS * channel for channel, mode in enumerate(modes, 1)):
        raise ValueError("context stream is corrupt")
    reader = _Reader(state, np.frombuffer(data[head:], dtype="<u4").tolist())
    planes, ranks, errors = [], [], []
    for channel in range(channels):
        plane = [[0] * width for _ in range(height)]
        mode = modes[channel - 1] if channel > 0 else 0
        values = _code_palette(reader, None)
        ranks.append(plane)
        errors.append(_code_plane(reader, plane, _reference(mode, ranks, errors), len(values) - 1))
        planes.append(np.asarray(values)[np.asarray(plane)])
    if reader.state != STATE_LOWER or reader.next != len(reader.words):
        raise ValueError("context stream does not end where the image does (corrupt)")
    return np.asarray(planes, dtype=np.uint8)
