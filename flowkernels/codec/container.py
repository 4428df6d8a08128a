"""The ``.fkc`` container of :class:`flowkernels.codec.LosslessImageCodec`.

A file holds ``N`` images of one shape ``[C, H, W]``, coded with one model. Each
image is tiled into the model's ``h x w`` patches (padded at the right and
bottom edges by edge replication to ``Hp = ceil(H / h) h`` by
``Wp = ceil(W / w) w``); its ``P = (Hp / h) (Wp / w)`` patches are taken in
row-major order of the patch grid, images one after the other.

Payloads. By default each image has its own payload, which depends on that image
and the model only, never on the other images in the file. In a *stream* (flag
bit 1) all ``N P`` patches form one payload, so that many small images share
lanes and table rows; its bytes depend on the whole set of images.

Lanes. A payload's ``T`` patches (``T = P``, or ``N P`` in a stream) are cut into
``k = ceil(T / G)`` rANS lanes of consecutive patches, ``G`` being the header's
*lane patches*: with ``q, r = divmod(T, k)``, the first ``r`` lanes hold ``q + 1``
patches and the others ``q`` (:func:`lane_layout`). A lane codes its patches'
latents one patch after the other within each latent step. ``G`` is at most
``lanes`` and at most ``ceil(4096 / (C h w))`` (:data:`LANE_SYMBOLS`): each lane
holds a bounded number of pixels, which bounds what a file can make the decoder
allocate, while keeping the 12-byte framing of a lane small next to its symbols.

Layout, little-endian:

========  ==========================================================================
bytes     content
========  ==========================================================================
4         magic ``b"FKIC"``
2         format version (3; version 2 files, without bit 2, are read too)
2         flags: bit 0 set when the encoder's model calls spanned several images
          (a batch-invariant model); bit 1 set for a stream; bit 2 set when the
          model is portable (integer arithmetic: the file decodes on any machine);
          other bits 0
16        model fingerprint (:func:`model_fingerprint`)
4         N, the number of images (may be 0)
4         C, channels (>= 1)
4         H, height (>= 1)
4         W, width (>= 1)
4         h, patch height (the model's)
4         w, patch width (the model's)
4         lanes: patches per model call (1 to 65536)
1         padding mode (0: edge replication)
1         rANS precision of the logistic coding (8 to 24)
2         G, lane patches: patches per rANS lane at most (1 to min(lanes,
          ceil(4096 / (C h w))))
4         J, bytes of the model config
4         M, bytes of the metadata
J         model config: canonical JSON object (sorted keys, no spaces, ASCII)
M         metadata: canonical JSON object (the CLI records the array layout)
16 R      payload table, R = N rows (one per image) or 1 (a stream): payload bytes
          (u64), CRC-32 of the payload (u32), CRC-32 of the pixels (u32; uint8, in
          ``[C, H, W]`` order for an image, ``[N, C, H, W]`` for a stream)
4         CRC-32 of everything above (the header)
...       the R payloads, one after the other
========  ==========================================================================

A payload holds its ``k`` lanes as the rANS coder leaves them, stripped of the
``FKRS`` framing of :mod:`flowkernels.ops.rans`: ``k - 1`` word counts (u32; the last
lane's is implied by the payload's length), ``k`` final states (u64, in
``[2**32, 2**64)``), then the words (u32), lane by lane, bottom of each stack
first. The codec pushes the model's latent steps in
reverse decode order, so decoding pops them in order; after the last step every
lane must be back at the coder's initial state (an empty stack and state
``2**32``), which the decoder checks.

The model is called on runs of at most ``lanes`` consecutive patches made of whole
lanes, packed greedily in file order: within one image (flags clear), or across
images (bit 0 or 1 set). The decoder repeats the encoder's runs, so even a model
whose floating-point results depend on the batch decodes exactly.

Every byte is covered by a CRC-32 (header, payloads) and the decoded pixels by
another. :func:`read_header` validates every field, the table and the payload
CRCs before anything sized by the header is allocated: each lane takes at least
8 bytes and holds at most ``max(C h w, 4096 + C h w)`` pixels, so the images a
file can claim are bounded by its size.
"""

from __future__ import annotations

import hashlib
import json
import math
import struct
import zlib
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

import numpy as np
import torch

from ..ops import rans

__all__ = [
    "MAGIC",
    "FORMAT_VERSION",
    "OLDEST_VERSION",
    "FLAG_PORTABLE",
    "PADDING_MODES",
    "ContainerHeader",
    "ImageRecord",
    "canonical_json",
    "model_fingerprint",
    "pack_container",
    "read_header",
    "Lanes",
    "parse_lanes",
    "lane_layout",
    "max_lane_patches",
]

MAGIC = b"FKIC"
#: the version this flowkernels writes; it reads every version from :data:`OLDEST_VERSION` to this one
FORMAT_VERSION = 3
OLDEST_VERSION = 2
#: padding mode byte -> name
PADDING_MODES = {0: "edge"}
#: flags bit 0: the encoder called the model on runs of patches that span images
FLAG_SPANS_IMAGES = 1
#: flags bit 1: the images are coded as one stream (one payload, lanes and model calls span images)
FLAG_STREAM = 2
#: flags bit 2 (version 3): the model computes every number the decoder recomputes in integer arithmetic,
#: so the file decodes on any machine; without it, only where the model's float results are the same
FLAG_PORTABLE = 4
#: the flags each version may set
_VERSION_FLAGS = {2: FLAG_SPANS_IMAGES | FLAG_STREAM, 3: FLAG_SPANS_IMAGES | FLAG_STREAM | FLAG_PORTABLE}
#: symbols a rANS lane holds at most (as whole patches: ``lane_patches <= ceil(LANE_SYMBOLS / (C h w))``)
LANE_SYMBOLS = 4096
MAX_JSON_BYTES = 1 << 16
MAX_LANES = 1 << 16
MIN_PRECISION, MAX_PRECISION = 8, 24
#: bytes every lane takes at least: a word count and a final state (the last lane of a payload
#: has no word count: the payload's length implies it)
LANE_BYTES = 12


def lane_table_bytes(lanes: int) -> int:
    """Bytes of a payload's lane table: ``lanes - 1`` word counts and ``lanes`` final states."""
    return max(0, LANE_BYTES * lanes - 4)


_FIXED = struct.Struct("<4sHH16sIIIIIIIBBHII")
_CRC = struct.Struct("<I")
_RECORD = np.dtype([("length", "<u8"), ("payload_crc", "<u4"), ("pixel_crc", "<u4")])
assert _FIXED.size == 64 and _RECORD.itemsize == 16


def max_lane_patches(patch_subpixels: int) -> int:
    """The most patches of ``patch_subpixels`` (``C h w``) one rANS lane may hold: ``ceil(LANE_SYMBOLS / C h w)``."""
    return max(1, -(-LANE_SYMBOLS // int(patch_subpixels)))


def lane_layout(patches: int, lane_patches: int) -> tuple[int, int, int]:
    """How a segment of ``patches`` consecutive patches is cut into lanes of at most ``lane_patches``.

    Returns ``(k, q, r)``: ``k = ceil(patches / lane_patches)`` lanes of contiguous patches, the
    first ``r`` holding ``q + 1`` patches and the others ``q`` (``patches = k q + r``).
    """
    if patches <= 0:
        return 0, 0, 0
    lanes = -(-patches // lane_patches)
    return lanes, patches // lanes, patches % lanes


def pixel_crc(image: torch.Tensor) -> int:
    """CRC-32 of a uint8 image's pixels in ``[C, H, W]`` (or ``[N, C, H, W]``) order."""
    return zlib.crc32(image.contiguous().numpy().tobytes())


def _corrupt(message: str) -> ValueError:
    return ValueError(f"corrupt or invalid flowkernels codec file: {message}")


# -- model fingerprint and JSON ------------------------------------------------------------


def canonical_json(value: Any, what: str = "value") -> bytes:
    """The one JSON encoding the container uses: sorted keys, no spaces, ASCII, no NaN."""
    try:
        return json.dumps(value, sort_keys=True, separators=(",", ":"), ensure_ascii=True, allow_nan=False).encode()
    except (TypeError, ValueError) as error:
        raise ValueError(f"the {what} must be JSON-serialisable (plain numbers and strings): {error}") from None


def _parse_json(raw: bytes, what: str) -> dict:
    def no_constants(name: str):
        raise ValueError(f"{name} is not allowed")

    try:
        value = json.loads(raw.decode("ascii"), parse_constant=no_constants)
    except (UnicodeDecodeError, ValueError, RecursionError) as error:
        raise _corrupt(f"the {what} is not valid JSON ({type(error).__name__}: {str(error)[:200]})") from None
    if not isinstance(value, dict):
        raise _corrupt(f"the {what} must be a JSON object, got {type(value).__name__}")
    if canonical_json(value, what) != raw:
        raise _corrupt(f"the {what} is not in canonical form")
    return value


def model_fingerprint(model) -> bytes:
    """16 bytes identifying a model: SHA-256 of its config, patch shape and weights, truncated.

    The weights are hashed in sorted key order: each entry's name, dtype, shape and
    raw bytes (native, little-endian on every supported platform). Two models with
    the same fingerprint decode each other's files, as long as they compute the
    same floating-point results (same device kind).
    """
    digest = hashlib.sha256(b"flowkernels codec model fingerprint v1\0")
    header = {"config": dict(model.config), "patch_shape": [int(s) for s in model.patch_shape]}
    digest.update(canonical_json(header, "model config"))
    state = model.state_dict()
    for key in sorted(state):
        value = state[key]
        name = str(key).encode()
        digest.update(struct.pack("<Q", len(name)) + name)
        if isinstance(value, torch.Tensor):
            tensor = value.detach().to("cpu").contiguous()
            digest.update(f"{tensor.dtype}{list(tensor.shape)}".encode())
            digest.update(tensor.reshape(-1).view(torch.uint8).numpy())
        else:
            digest.update(b"object:" + repr(value).encode())
    return digest.digest()[:16]


# -- header -------------------------------------------------------------------------------


@dataclass(frozen=True)
class ImageRecord:
    """Where image ``i``'s payload lies in the file, and its checksums."""

    offset: int
    length: int
    payload_crc: int
    pixel_crc: int


@dataclass(frozen=True)
class ContainerHeader:
    """The validated header of a codec file (see the module docstring)."""

    version: int
    flags: int
    fingerprint: bytes
    images: int
    channels: int
    height: int
    width: int
    patch_height: int
    patch_width: int
    lanes: int
    padding: str
    precision: int
    lane_patches: int
    config: dict
    metadata: dict
    records: tuple[ImageRecord, ...]

    @property
    def grid(self) -> tuple[int, int]:
        """Patches per column and per row of an image."""
        return -(-self.height // self.patch_height), -(-self.width // self.patch_width)

    @property
    def patches_per_image(self) -> int:
        rows, cols = self.grid
        return rows * cols

    @property
    def padding_amounts(self) -> tuple[int, int]:
        """Rows added at the bottom and columns added at the right of each image."""
        rows, cols = self.grid
        return rows * self.patch_height - self.height, cols * self.patch_width - self.width

    @property
    def spans_images(self) -> bool:
        """Whether the encoder's model calls spanned images (flag bit 0: a batch-invariant model, or a stream)."""
        return bool(self.flags & (FLAG_SPANS_IMAGES | FLAG_STREAM))

    @property
    def portable(self) -> bool:
        """Whether the model that made the file is integer-only (the file decodes on any machine)."""
        return bool(self.flags & FLAG_PORTABLE)

    @property
    def stream(self) -> bool:
        """Whether the images are coded as one stream (flag bit 1): one payload for all of them."""
        return bool(self.flags & FLAG_STREAM)

    @property
    def segment_patches(self) -> int:
        """Patches per payload: one image's, or all images' in a stream."""
        return self.patches_per_image * (self.images if self.stream else 1)

    @property
    def lanes_per_payload(self) -> int:
        """rANS lanes in each payload (see :func:`lane_layout`)."""
        return lane_layout(self.segment_patches, self.lane_patches)[0]

    @property
    def lane_count(self) -> int:
        """rANS lanes in the file."""
        return self.lanes_per_payload * len(self.records)


def pack_container(
    *,
    fingerprint: bytes,
    config: Mapping[str, Any],
    metadata: Mapping[str, Any],
    shape: tuple[int, int, int],
    patch: tuple[int, int],
    lanes: int,
    precision: int,
    payloads: list[bytes],
    pixel_crcs: list[int],
    lane_patches: int = 1,
    images: int | None = None,
    padding: str = "edge",
    flags: int = 0,
) -> bytes:
    """Assemble a container from the payloads (the inverse of :func:`read_header`).

    ``payloads`` and ``pixel_crcs`` hold one entry per image, or one for all ``images`` in a stream
    (flag :data:`FLAG_STREAM`).
    """
    if flags & FLAG_STREAM:
        if images is None or len(payloads) != 1 or len(pixel_crcs) != 1:
            raise ValueError("a stream has one payload and one pixel CRC, and needs the image count")
    else:
        images = len(payloads)
    channels, height, width = (int(s) for s in shape)
    mode = {name: code for code, name in PADDING_MODES.items()}[padding]
    config_json = canonical_json(dict(config), "model config")
    metadata_json = canonical_json(dict(metadata), "metadata")
    if len(config_json) > MAX_JSON_BYTES or len(metadata_json) > MAX_JSON_BYTES:
        raise ValueError(f"the model config and the metadata must each be at most {MAX_JSON_BYTES} bytes of JSON")
    if len(fingerprint) != 16:
        raise ValueError("the model fingerprint must be 16 bytes")
    for name, value, low, high in [
        ("images", images, 0, 2**32 - 1),
        ("channels", channels, 1, 2**32 - 1),
        ("height", height, 1, 2**32 - 1),
        ("width", width, 1, 2**32 - 1),
        ("patch height", patch[0], 1, 2**32 - 1),
        ("patch width", patch[1], 1, 2**32 - 1),
        ("lanes", lanes, 1, MAX_LANES),
        ("precision", precision, MIN_PRECISION, MAX_PRECISION),
        ("lane patches", lane_patches, 1, min(lanes, max_lane_patches(channels * patch[0] * patch[1]))),
    ]:
        if not low <= value <= high:
            raise ValueError(f"codec container: {name} = {value} is outside [{low}, {high}]")
    table = np.zeros(len(payloads), dtype=_RECORD)
    table["length"] = [len(p) for p in payloads]
    table["payload_crc"] = [zlib.crc32(p) for p in payloads]
    table["pixel_crc"] = pixel_crcs
    head = b"".join(
        [
            _FIXED.pack(
                MAGIC,
                FORMAT_VERSION,
                int(flags),
                fingerprint,
                int(images),
                channels,
                height,
                width,
                int(patch[0]),
                int(patch[1]),
                int(lanes),
                mode,
                int(precision),
                int(lane_patches),
                len(config_json),
                len(metadata_json),
            ),
            config_json,
            metadata_json,
            table.tobytes(),
        ]
    )
    return b"".join([head, _CRC.pack(zlib.crc32(head)), *payloads])


def read_header(data: bytes | bytearray | memoryview, *, check_payloads: bool = True) -> ContainerHeader:
    """Parse and validate a container's header, image table and (by default) payload CRCs.

    Raises ValueError, with a message that says what is wrong, for anything that is
    not an intact file of this format. Needs no model; allocates nothing sized by
    the header beyond the image table, whose size is checked against the data first.
    """
    if not isinstance(data, (bytes, bytearray, memoryview)):
        raise TypeError(f"a flowkernels codec file must be bytes, got {type(data).__name__}")
    data = memoryview(data).cast("B")
    size = len(data)
    if size < 4 or bytes(data[:4]) != MAGIC:
        raise ValueError(f"not a flowkernels codec file (magic {bytes(data[:4])!r}, expected {MAGIC!r})")
    if size < _FIXED.size + _CRC.size:
        raise _corrupt(f"truncated: {size} bytes is shorter than the {_FIXED.size + _CRC.size}-byte header")
    (
        _,
        version,
        flags,
        fingerprint,
        images,
        channels,
        height,
        width,
        patch_height,
        patch_width,
        lanes,
        padding,
        precision,
        lane_patches,
        config_len,
        metadata_len,
    ) = _FIXED.unpack_from(data)
    if version > FORMAT_VERSION:
        raise ValueError(
            f"this file was written by a newer flowkernels (codec format version {version}; this flowkernels reads "
            f"versions {OLDEST_VERSION} to {FORMAT_VERSION}): upgrade flowkernels to decode it"
        )
    if version < OLDEST_VERSION:
        raise ValueError(
            f"unsupported flowkernels codec format version {version} (this flowkernels reads versions "
            f"{OLDEST_VERSION} to {FORMAT_VERSION})"
        )
    if flags & ~_VERSION_FLAGS[version]:
        raise _corrupt(f"unknown flags {flags:#x} for format version {version}")
    records_count = 1 if flags & FLAG_STREAM else images
    if config_len > MAX_JSON_BYTES or metadata_len > MAX_JSON_BYTES:
        raise _corrupt(f"JSON sections of {config_len} and {metadata_len} bytes (at most {MAX_JSON_BYTES} each)")
    table_at = _FIXED.size + config_len + metadata_len
    header_end = table_at + _RECORD.itemsize * records_count + _CRC.size
    if header_end > size:
        raise _corrupt(
            f"truncated: the header describes {images} images and {config_len + metadata_len} bytes of JSON, "
            f"{header_end} bytes in all, but the file has {size}"
        )
    (crc,) = _CRC.unpack_from(data, header_end - _CRC.size)
    if zlib.crc32(data[: header_end - _CRC.size]) != crc:
        raise _corrupt("header CRC-32 mismatch")
    for name, value, low, high in [
        ("channels", channels, 1, None),
        ("height", height, 1, None),
        ("width", width, 1, None),
        ("patch height", patch_height, 1, None),
        ("patch width", patch_width, 1, None),
        ("lanes", lanes, 1, MAX_LANES),
        ("precision", precision, MIN_PRECISION, MAX_PRECISION),
    ]:
        if value < low or (high is not None and value > high):
            raise _corrupt(f"{name} = {value} is outside [{low}, {high if high is not None else 2**32 - 1}]")
    most = min(lanes, max_lane_patches(channels * patch_height * patch_width))
    if not 1 <= lane_patches <= most:
        raise _corrupt(f"lane patches = {lane_patches} is outside [1, {most}]")
    if padding not in PADDING_MODES:
        raise _corrupt(f"unknown padding mode {padding}")
    config = _parse_json(bytes(data[_FIXED.size : _FIXED.size + config_len]), "model config")
    metadata = _parse_json(bytes(data[_FIXED.size + config_len : table_at]), "metadata")
    table = np.frombuffer(data, dtype=_RECORD, count=records_count, offset=table_at)
    lengths = [int(n) for n in table["length"]]
    if sum(lengths) != size - header_end:
        raise _corrupt(
            f"the image table describes {sum(lengths)} bytes of payload, the file has {size - header_end} "
            + ("(truncated)" if sum(lengths) > size - header_end else "(trailing bytes)")
        )
    patches = math.ceil(height / patch_height) * math.ceil(width / patch_width)
    if flags & FLAG_STREAM:
        patches *= images
    # every lane takes at least 8 bytes and holds at most lane_patches patches of bounded size,
    # so this bounds what decoding allocates by a multiple of the file's size
    lanes_per_payload = lane_layout(patches, lane_patches)[0]
    records = []
    offset = header_end
    for index, (length, payload_crc, pixel_crc) in enumerate(
        zip(lengths, table["payload_crc"].tolist(), table["pixel_crc"].tolist(), strict=True)
    ):
        what = "the stream" if flags & FLAG_STREAM else f"image {index}"
        table_bytes = lane_table_bytes(lanes_per_payload)
        if length < table_bytes or (length - table_bytes) % 4:
            raise _corrupt(
                f"{what}'s payload of {length} bytes cannot hold {patches} patches in {lanes_per_payload} lanes"
            )
        if check_payloads and zlib.crc32(data[offset : offset + length]) != payload_crc:
            raise _corrupt(f"payload CRC-32 mismatch in {what}")
        records.append(ImageRecord(offset, length, payload_crc, pixel_crc))
        offset += length
    return ContainerHeader(
        version=version,
        flags=flags,
        fingerprint=bytes(fingerprint),
        images=images,
        channels=channels,
        height=height,
        width=width,
        patch_height=patch_height,
        patch_width=patch_width,
        lanes=lanes,
        padding=PADDING_MODES[padding],
        precision=precision,
        lane_patches=lane_patches,
        config=config,
        metadata=metadata,
        records=tuple(records),
    )


# -- lanes ---------------------------------------------------------------------------------


@dataclass(frozen=True)
class Lanes:
    """rANS lanes: final states (uint64 ``[n]``), word counts (uint32 ``[n]``), words (uint32, lane by lane)."""

    states: np.ndarray
    counts: np.ndarray
    words: np.ndarray

    def __len__(self) -> int:
        return len(self.states)

    def to_bytes(self) -> bytes:
        """The payload form: word counts but the last lane's, final states, words."""
        return (
            self.counts[:-1].astype("<u4").tobytes()
            + self.states.astype("<u8").tobytes()
            + self.words.astype("<u4").tobytes()
        )

    def word_bounds(self) -> np.ndarray:
        """``bounds[i]:bounds[i + 1]`` are lane ``i``'s words."""
        return np.concatenate([[0], np.cumsum(self.counts, dtype=np.int64)])

    def select(self, start: int, end: int, bounds: np.ndarray | None = None) -> Lanes:
        """Lanes ``start .. end - 1``."""
        bounds = self.word_bounds() if bounds is None else bounds
        return Lanes(self.states[start:end], self.counts[start:end], self.words[bounds[start] : bounds[end]])

    def take(self, indices: np.ndarray, bounds: np.ndarray | None = None) -> Lanes:
        """The lanes at ``indices``, in that order."""
        bounds = self.word_bounds() if bounds is None else bounds
        indices = np.asarray(indices, dtype=np.int64)
        words = [self.words[bounds[i] : bounds[i + 1]] for i in indices.tolist()]
        return Lanes(
            self.states[indices],
            self.counts[indices],
            np.concatenate(words) if words else np.zeros(0, dtype=np.uint32),
        )

    @staticmethod
    def concatenate(parts: list[Lanes]) -> Lanes:
        if not parts:
            empty = np.zeros(0, dtype=np.uint32)
            return Lanes(np.zeros(0, dtype=np.uint64), empty, empty)
        return Lanes(*(np.concatenate([getattr(p, f) for p in parts]) for f in ("states", "counts", "words")))

    @staticmethod
    def from_coder(coder: rans.RansCoder) -> Lanes:
        states, counts, words = rans.unpack(coder.to_bytes())
        return Lanes(states, counts, words)

    def to_coder(self, *, device: torch.device | str = "cpu") -> rans.RansCoder:
        """A coder holding these lanes, ready to pop (validated again by ``RansCoder.from_bytes``)."""
        bounds = self.word_bounds()
        lanes = [self.words[bounds[i] : bounds[i + 1]] for i in range(len(self))]
        return rans.RansCoder.from_bytes(rans.pack(self.states.tolist(), lanes), device=device)


def parse_lanes(payload: memoryview | bytes, lanes: int, *, image: int = 0) -> Lanes:
    """A payload as its ``lanes`` lanes, checking every length and state (``image``: for messages)."""
    payload = memoryview(payload).cast("B")
    table_bytes = lane_table_bytes(lanes)
    if table_bytes > len(payload) or (len(payload) - table_bytes) % 4:
        raise _corrupt(f"image {image}: truncated lane table")
    if lanes == 0:
        if len(payload):
            raise _corrupt(f"image {image}: {len(payload)} bytes of payload for no lanes")
        empty = np.zeros(0, dtype=np.uint32)
        return Lanes(np.zeros(0, dtype=np.uint64), empty, empty)
    head = np.frombuffer(payload, dtype="<u4", count=lanes - 1, offset=0)
    states = np.frombuffer(payload, dtype="<u8", count=lanes, offset=4 * (lanes - 1))
    total = (len(payload) - table_bytes) // 4
    listed = int(head.sum(dtype=np.uint64))
    if listed > total or total - listed >= 2**32:
        raise _corrupt(
            f"image {image}: its lanes hold {listed} words or more, {table_bytes + 4 * listed} bytes in all, "
            f"but its payload has {len(payload)} bytes"
        )
    if (states < rans.STATE_LOWER).any():
        raise _corrupt(f"image {image}: a lane state is below 2^32")
    counts = np.concatenate([head, np.array([total - listed], dtype=np.uint32)]).astype(np.uint32)
    words = np.frombuffer(payload, dtype="<u4", count=total, offset=table_bytes)
    return Lanes(states, counts, words)
