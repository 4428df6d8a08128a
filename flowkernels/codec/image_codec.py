"""Lossless image compression with an integer discrete flow and rANS.

:class:`LosslessImageCodec` turns uint8 images of any size into bytes and back,
exactly. The model (:class:`~flowkernels.codec.interface.CodecModel`, e.g. IDF)
maps each ``h x w`` patch to integer latents with a discretized logistic prior;
the latents are rANS-coded with :meth:`flowkernels.ops.rans.RansCoder.push_logistic`,
in lanes of up to ``lane_patches`` consecutive patches (about 4096 symbols), so
that small patches do not each pay a lane's framing. Latents are unbounded integers: values outside the coder's
window go through its escape path (any int32 round-trips).

Determinism. Each image's payload is a deterministic function of that image and
the model (and ``lanes``, ``lane_patches``, ``precision``); with
``encode(..., stream=True)`` the one payload is a deterministic function of the
whole batch (and the same settings), never of the thread count:

* the rANS lanes are independent and the coder is integer-exact, so a lane's
  words depend only on its own latents and their prior parameters; which
  patches a lane holds depends only on the image size (or, in a stream, the
  batch size) and ``lane_patches``;
* the model is called on runs of whole lanes, at most ``lanes`` patches. Unless
  the model is declared batch-invariant, a run never spans two images: the
  model never sees two images in one batch, so its floating-point results
  (which for convolutions depend on the batch size, to the last bit) are the
  same whether an image is coded alone or with a thousand others. A
  batch-invariant model (IDF: every network runs on fixed-size chunks) is
  called on runs across images, which is faster for small images and gives
  the same bytes;
* the decoder repeats the encoder's runs exactly (the file records ``lanes``
  and whether runs spanned images);
* the thread count changes nothing: the coder is thread-count invariant, and
  the model runs on one intra-op thread (``MODEL_THREADS``) while the codec
  calls it, whatever ``torch.set_num_threads`` or ``OMP_NUM_THREADS`` say
  elsewhere. Vendor convolutions (oneDNN) split their sums by thread count on
  some CPUs, which changes the last bits of the prior's parameters; on one
  thread they are the same in every process on the machine. The coder's own
  work (rANS, patch tiling) keeps all threads.

Portability. A *portable* model (``model.portable = True``: an integer IDF,
:mod:`flowkernels.models.idf_integer`) computes every number the decoder must
recompute in integer arithmetic, so its files are the same bytes and decode on
every machine: any CPU instruction set, thread count, torch version, CPU or GPU.
The codec then lets it use every thread, and marks the file (flag bit 2). A
float model's file decodes only with a model of the same fingerprint (weights
and config) computing the same floating-point results, i.e. on the same kind of
machine and software. A
corrupt, truncated, forged or mismatched file raises ValueError: every byte is
CRC-protected, each lane must end exactly at the coder's initial state, the
decoded pixels must be integers in 0..255 whose padding replicates the edges,
and their CRC-32 must match the one recorded at encoding.
"""

from __future__ import annotations

import contextlib
import math
from collections.abc import Mapping
from typing import Any

import numpy as np
import torch
from tqdm.auto import tqdm

from .. import limits
from ..ops import discretized_logistic_logp
from ..ops.rans import STATE_LOWER, RansCoder
from . import container
from .container import ContainerHeader, model_fingerprint, read_header
from .interface import CodecModel

__all__ = ["LosslessImageCodec", "default_lanes", "tile", "untile"]

#: pixels per model call that the automatic ``lanes`` aims for
_TARGET_PIXELS = 1 << 18
_MAX_DEFAULT_LANES = 1024
_MAX_COMPONENTS = 16
_INT32_MAX = 2**31 - 1
#: intra-op threads of the model while the codec calls it (see "Determinism" above)
MODEL_THREADS = 1


@contextlib.contextmanager
def _intra_op_threads(count: int):
    """Run the block on ``count`` intra-op threads, then restore the caller's setting."""
    previous = torch.get_num_threads()
    if previous != count:
        torch.set_num_threads(count)
    try:
        yield
    finally:
        if torch.get_num_threads() != previous:
            torch.set_num_threads(previous)


def default_lanes(patch_shape: tuple[int, int, int]) -> int:
    """Patches per model call when ``lanes`` is not given: about 2^18 subpixels per model call, at most 1024."""
    return max(1, min(_MAX_DEFAULT_LANES, _TARGET_PIXELS // math.prod(patch_shape)))


def tile(image: torch.Tensor, patch_height: int, patch_width: int) -> torch.Tensor:
    """Cut ``[C, H, W]`` into ``[P, C, h, w]`` patches (row-major grid), padding by edge replication."""
    channels, height, width = image.shape
    rows, cols = -(-height // patch_height), -(-width // patch_width)
    row_index = torch.arange(rows * patch_height).clamp_(max=height - 1)
    col_index = torch.arange(cols * patch_width).clamp_(max=width - 1)
    padded = image.index_select(1, row_index).index_select(2, col_index)
    patches = padded.reshape(channels, rows, patch_height, cols, patch_width).permute(1, 3, 0, 2, 4)
    return patches.reshape(rows * cols, channels, patch_height, patch_width)


def untile(patches: torch.Tensor, rows: int, cols: int) -> torch.Tensor:
    """The inverse of :func:`tile` before cropping: ``[P, C, h, w]`` to ``[C, rows h, cols w]``."""
    _, channels, patch_height, patch_width = patches.shape
    grid = patches.reshape(rows, cols, channels, patch_height, patch_width).permute(2, 0, 3, 1, 4)
    return grid.reshape(channels, rows * patch_height, cols * patch_width)


def _params(step_index: int, mu, log_scale, logit_pi, n: int, *, z_shape=None):
    """Check one step's parameters; return them as ``[n, L, K]`` (``logit_pi`` may stay None) and ``S``."""
    where = f"latent step {step_index}"
    tensors = {"mu": mu, "log_scale": log_scale} | ({} if logit_pi is None else {"logit_pi": logit_pi})
    for name, tensor in tensors.items():
        if not isinstance(tensor, torch.Tensor) or not tensor.is_floating_point():
            raise TypeError(f"{where}: '{name}' must be a floating-point tensor, got {type(tensor).__name__}")
        if tensor.shape != mu.shape or tensor.dtype != mu.dtype or tensor.device != mu.device:
            raise ValueError(
                f"{where}: '{name}' must have the shape, dtype and device of 'mu' "
                f"({list(mu.shape)}, {mu.dtype}, {mu.device}), "
                f"got {list(tensor.shape)}, {tensor.dtype}, {tensor.device}"
            )
    if mu.dim() < 2 or mu.shape[0] != n:
        raise ValueError(f"{where}: parameters must be [n, *S, K] with n = {n}, got {list(mu.shape)}")
    spatial, components = tuple(mu.shape[1:-1]), mu.shape[-1]
    if z_shape is not None and tuple(z_shape) != (n, *spatial):
        raise ValueError(f"{where}: latents {list(z_shape)} do not match parameters {list(mu.shape)} ([n, *S, K])")
    if not 1 <= components <= _MAX_COMPONENTS or (logit_pi is None and components != 1):
        raise ValueError(
            f"{where}: mixtures of 1 to {_MAX_COMPONENTS} components are supported (1 without logit_pi), "
            f"got K = {components}"
        )
    length = math.prod(spatial)

    def flat(t):
        return None if t is None else t.reshape(n, length, components).contiguous()

    return flat(mu), flat(log_scale), flat(logit_pi), spatial


def _layout(
    images: int, patches: int, lane_patches: int, lanes: int, *, stream: bool, spans_images: bool
) -> tuple[np.ndarray, np.ndarray, list[tuple[int, int]]]:
    """The rANS lanes and the model calls of a file.

    Returns ``(starts, sizes, runs)``: lane ``i`` holds the flat patches (image-major)
    ``starts[i] .. starts[i] + sizes[i] - 1``; each payload (an image, or all images in a
    stream) is cut by :func:`container.lane_layout`. ``runs`` are ranges of lanes, each a
    model call of at most ``lanes`` patches: consecutive whole lanes packed greedily, never
    across an image boundary unless ``spans_images``. Everything depends only on these
    arguments, so the decoder repeats it exactly.
    """
    segment, segments = (images * patches, 1) if stream else (patches, images)
    count, base, extra = container.lane_layout(segment, lane_patches)
    if count == 0 or segments == 0:
        empty = np.zeros(0, dtype=np.int64)
        return empty, empty, []
    one = np.full(count, base, dtype=np.int64)
    one[:extra] += 1
    sizes = np.tile(one, segments)
    starts = np.zeros(len(sizes), dtype=np.int64)
    np.cumsum(sizes[:-1], out=starts[1:])
    runs = []
    first, total = 0, 0
    for index, size in enumerate(sizes.tolist()):
        if index > first and (total + size > lanes or (not spans_images and index % count == 0)):
            runs.append((first, index))
            first, total = index, 0
        total += size
    runs.append((first, len(sizes)))
    return starts, sizes, runs


def _groups(sizes: np.ndarray) -> list[tuple[np.ndarray, int, torch.Tensor | None]]:
    """A run's lanes by patch count: ``(lane indices, patches per lane, patch indices or None for all)``."""
    starts = np.zeros(len(sizes), dtype=np.int64)
    np.cumsum(sizes[:-1], out=starts[1:])
    values = np.unique(sizes)
    if len(values) == 1:
        return [(np.arange(len(sizes)), int(values[0]), None)]
    groups = []
    for value in values.tolist():
        ids = np.flatnonzero(sizes == value)
        patch_index = (starts[ids][:, None] + np.arange(value)[None, :]).reshape(-1)
        groups.append((ids, value, torch.from_numpy(patch_index)))
    return groups


def _gather(tensor, index: torch.Tensor | None, lanes: int):
    """Patch-major ``[n, L, ...]`` to lane-major ``[lanes, (n / lanes) L, ...]`` for the patches at ``index``."""
    if tensor is None:
        return None
    if index is not None:
        tensor = tensor.index_select(0, index.to(tensor.device))
    return tensor.reshape(lanes, -1, *tensor.shape[2:])


def _describe(start: int, end: int, patches: int) -> str:
    first, last = start // patches, (end - 1) // patches
    images = f"image {first}" if first == last else f"images {first}..{last}"
    return f"{images} (patches {start - first * patches}..{end - 1 - first * patches} of the first)"


class LosslessImageCodec:
    """Lossless codec for uint8 images ``[N, C, H, W]`` of any size, driven by a :class:`CodecModel`.

    Args:
        model: the flow (e.g. ``flowkernels.models.idf.IDF``), in eval mode.
        lanes: patches per model call at most. ``None`` picks :func:`default_lanes` of
            the model's patch shape. Recorded in the file.
        precision: bits of the rANS model quantization (8 to 24). Recorded in the file.
        batch_invariant: whether the model's results for a patch do not depend on the
            other patches in its batch (nor on their number), so that model calls may
            span images. ``None`` reads ``model.batch_invariant`` (default False).
        lane_patches: patches per rANS lane at most (1 to ``min(lanes, ceil(4096 / (C h w)))``).
            ``None`` picks that maximum: lanes of about 4096 symbols, each costing 12 bytes
            of framing. Recorded in the file.

    The model is called on the device of its weights (CPU if it has none); the
    container format is described in :mod:`flowkernels.codec.container`.
    """

    def __init__(
        self,
        model: CodecModel,
        *,
        lanes: int | None = None,
        precision: int = 24,
        batch_invariant: bool | None = None,
        lane_patches: int | None = None,
    ):
        patch_shape = tuple(int(s) for s in model.patch_shape)
        if len(patch_shape) != 3 or min(patch_shape) < 1:
            raise ValueError(f"model.patch_shape must be (C, h, w) of positive sizes, got {model.patch_shape}")
        if lanes is not None and not 1 <= int(lanes) <= container.MAX_LANES:
            raise ValueError(f"lanes must be in [1, {container.MAX_LANES}], got {lanes}")
        if not container.MIN_PRECISION <= int(precision) <= container.MAX_PRECISION:
            raise ValueError(
                f"precision must be in [{container.MIN_PRECISION}, {container.MAX_PRECISION}], got {precision}"
            )
        self.model = model
        self.patch_shape: tuple[int, int, int] = patch_shape  # type: ignore[assignment]
        self.lanes = default_lanes(patch_shape) if lanes is None else int(lanes)
        self.precision = int(precision)
        if batch_invariant is None:
            batch_invariant = bool(getattr(model, "batch_invariant", False))
        self.batch_invariant = bool(batch_invariant)
        most = min(self.lanes, container.max_lane_patches(math.prod(patch_shape)))
        if lane_patches is not None and not 1 <= int(lane_patches) <= most:
            raise ValueError(
                f"lane_patches must be in [1, {most}] (at most lanes and LANE_SYMBOLS), got {lane_patches}"
            )
        self.lane_patches = most if lane_patches is None else int(lane_patches)

    def __repr__(self) -> str:
        return (
            f"LosslessImageCodec(patch_shape={self.patch_shape}, lanes={self.lanes}, precision={self.precision}, "
            f"batch_invariant={self.batch_invariant}, lane_patches={self.lane_patches})"
        )

    # -- helpers ------------------------------------------------------------------------------

    @property
    def portable(self) -> bool:
        """Whether the model is integer-only (``model.portable``): its files decode on any machine."""
        return bool(getattr(self.model, "portable", False))

    def _model_threads(self):
        """Intra-op threads while the model runs: all for a portable model, else ``MODEL_THREADS``."""
        return contextlib.nullcontext() if self.portable else _intra_op_threads(MODEL_THREADS)

    def _model_placement(self) -> tuple[torch.device, torch.dtype]:
        if getattr(self.model, "training", False):
            raise ValueError("the codec's model is in training mode: call model.eval() (coding must be deterministic)")
        device, dtype = getattr(self.model, "device", None), getattr(self.model, "dtype", None)
        if isinstance(device, torch.device) and isinstance(dtype, torch.dtype) and dtype.is_floating_point:
            return device, dtype
        for value in self.model.state_dict().values():
            if isinstance(value, torch.Tensor) and value.is_floating_point():
                return value.device, value.dtype
        return torch.device("cpu"), torch.float32

    def _check_images(self, images: torch.Tensor) -> torch.Tensor:
        if not isinstance(images, torch.Tensor):
            raise TypeError(f"images must be a uint8 tensor [N, C, H, W], got {type(images).__name__}")
        if images.dtype != torch.uint8 or images.dim() != 4:
            raise ValueError(f"images must be a uint8 tensor [N, C, H, W], got {images.dtype} {list(images.shape)}")
        if images.shape[1] != self.patch_shape[0]:
            raise ValueError(
                f"the model codes {self.patch_shape[0]}-channel images, got {images.shape[1]} channels "
                f"(images {list(images.shape)})"
            )
        if images.shape[2] < 1 or images.shape[3] < 1:
            raise ValueError(f"images must be at least 1x1 pixels, got {list(images.shape)}")
        return images.detach().to("cpu").contiguous()

    def _tiles(self, images: torch.Tensor) -> torch.Tensor:
        """All patches of all images, image-major: uint8 ``[N * P, C, h, w]``."""
        _, patch_height, patch_width = self.patch_shape
        if len(images) == 0:
            return torch.empty((0, *self.patch_shape), dtype=torch.uint8)
        return torch.cat([tile(image, patch_height, patch_width) for image in images])

    def _latents(self, x: torch.Tensor) -> list[tuple[torch.Tensor, Any, Any, Any, tuple[int, ...]]]:
        """Run the model on patches; per step: int64 symbols [n, L], params [n, L, K], S."""
        n = x.shape[0]
        with torch.inference_mode(), self._model_threads():
            steps = list(self.model.encode_latents(x))
        prepared = []
        for index, step in enumerate(steps):
            z = step.z
            if not isinstance(z, torch.Tensor) or not z.is_floating_point():
                raise TypeError(f"latent step {index}: 'z' must be a floating-point tensor of integer values")
            mu, log_scale, logit_pi, spatial = _params(
                index, step.mu, step.log_scale, step.logit_pi, n, z_shape=tuple(z.shape)
            )
            if not torch.equal(z, torch.round(z)):
                raise ValueError(f"latent step {index}: the model returned non-integer latents")
            if z.numel() and float(z.abs().max()) > _INT32_MAX:
                raise ValueError(f"latent step {index}: latents beyond the int32 range cannot be coded")
            symbols = z.reshape(n, -1).to(torch.int64).to(mu.device)
            prepared.append((symbols, mu, log_scale, logit_pi, spatial))
        return prepared

    # -- encoding -----------------------------------------------------------------------------

    def encode(
        self,
        images: torch.Tensor,
        *,
        metadata: Mapping[str, Any] | None = None,
        progress: bool = False,
        verify: bool = False,
        stream: bool = False,
    ) -> bytes:
        """Compress uint8 images ``[N, C, H, W]`` (any ``H``, ``W``) into a container.

        Args:
            images: uint8 tensor; ``C`` must be the model's channel count.
            metadata: a small JSON-serialisable dict stored in the file (the CLI stores the array layout).
            progress: show a tqdm progress bar (over patches).
            verify: decode the result and check that it reproduces ``images`` (twice the time);
                a mismatch means that the model breaks its determinism contract (RuntimeError).
            stream: code all images as one stream: their patches share rANS lanes and model
                calls, and the file holds one payload and one pixel CRC. Much smaller for many
                small images (no per-image lanes and table rows), but the bytes then depend on
                the whole set of images (still not on the thread count); by default each image's
                payload depends only on that image and the model.
        """
        images = self._check_images(images)
        device, dtype = self._model_placement()
        count, channels, height, width = images.shape
        _, patch_height, patch_width = self.patch_shape
        patches = self._tiles(images)
        per_image = -(-height // patch_height) * -(-width // patch_width)
        starts, sizes, runs = _layout(
            count, per_image, self.lane_patches, self.lanes, stream=stream, spans_images=stream or self.batch_invariant
        )
        parts = []
        with tqdm(total=len(patches), unit="patch", desc="compress", disable=not progress) as bar:
            for first, last in runs:
                start, end = int(starts[first]), int(starts[last - 1] + sizes[last - 1])
                x = patches[start:end].to(device=device, dtype=dtype)
                parts.append(self._encode_run(x, sizes[first:last]))
                bar.update(end - start)
        lanes = container.Lanes.concatenate(parts)
        if stream:
            payloads, pixel_crcs = [lanes.to_bytes()], [container.pixel_crc(images)]
        else:
            bounds = lanes.word_bounds()
            per_payload = len(lanes) // max(1, count)
            payloads = [lanes.select(i * per_payload, (i + 1) * per_payload, bounds).to_bytes() for i in range(count)]
            pixel_crcs = [container.pixel_crc(image) for image in images]
        flags = (
            (container.FLAG_SPANS_IMAGES if self.batch_invariant else 0)
            | (container.FLAG_STREAM if stream else 0)
            | (container.FLAG_PORTABLE if self.portable else 0)
        )
        data = container.pack_container(
            fingerprint=model_fingerprint(self.model),
            config=self.model.config,
            metadata=dict(metadata or {}),
            shape=(channels, height, width),
            patch=(patch_height, patch_width),
            lanes=self.lanes,
            precision=self.precision,
            payloads=payloads,
            pixel_crcs=pixel_crcs,
            lane_patches=self.lane_patches,
            images=count,
            flags=flags,
        )
        if verify and not torch.equal(self.decode(data), images):
            raise RuntimeError(
                "LosslessImageCodec: decoding did not reproduce the images; the model's encode_latents and "
                "decode_latents do not compute bit-identical parameters"
            )
        return data

    def _encode_run(self, x: torch.Tensor, sizes: np.ndarray) -> container.Lanes:
        """Code one model call's patches into its lanes (``sizes``: patches per lane, in order)."""
        steps = self._latents(x)
        ids, parts = [], []
        # one coder per lane length: its lanes hold the same number of patches, so every step is one push
        for lane_ids, _, index in _groups(sizes):
            m = len(lane_ids)
            coder = RansCoder(m, device=x.device)
            # rANS is a stack: push the last step first so that decoding pops the steps in order.
            for symbols, mu, log_scale, logit_pi, _ in reversed(steps):
                coder.push_logistic(
                    _gather(symbols, index, m),
                    _gather(mu, index, m),
                    _gather(log_scale, index, m),
                    _gather(logit_pi, index, m),
                    precision=self.precision,
                )
            ids.append(lane_ids)
            parts.append(container.Lanes.from_coder(coder))
        lanes = container.Lanes.concatenate(parts)
        return lanes if len(parts) == 1 else lanes.take(np.argsort(np.concatenate(ids), kind="stable"))

    def ideal_bits(self, images: torch.Tensor, *, stream: bool = False) -> float:
        """The model's code length of ``images`` in bits: the sum over every latent of ``-log2 P``.

        It covers the padded patches exactly as :meth:`encode` codes them; the coded
        payload exceeds it by the rANS overhead (about 64 bits per lane), the 32-bit word
        counts of the lanes, and escapes. ``stream`` as in :meth:`encode`.
        """
        images = self._check_images(images)
        device, dtype = self._model_placement()
        patches = self._tiles(images)
        per_image = len(patches) // max(1, len(images))
        total = 0.0
        starts, sizes, runs = _layout(
            len(images),
            per_image,
            self.lane_patches,
            self.lanes,
            stream=stream,
            spans_images=stream or self.batch_invariant,
        )
        for first, last in runs:
            start, end = int(starts[first]), int(starts[last - 1] + sizes[last - 1])
            x = patches[start:end].to(device=device, dtype=dtype)
            for symbols, mu, log_scale, logit_pi, _ in self._latents(x):
                with torch.inference_mode():
                    logp = discretized_logistic_logp(symbols.to(mu.dtype), mu, log_scale, logit_pi)
                total -= float(logp.double().sum()) / math.log(2.0)
        return total

    # -- decoding -----------------------------------------------------------------------------

    def read_header(self, data: bytes | bytearray | memoryview) -> ContainerHeader:
        """Validate ``data`` and check that it was made with this codec's model; return its header."""
        header = read_header(data)
        fingerprint = model_fingerprint(self.model)
        if header.fingerprint != fingerprint:
            raise ValueError(
                f"this file was compressed with a different model (fingerprint {header.fingerprint.hex()}, "
                f"this model's is {fingerprint.hex()}); "
                f"the file's model config is {container.canonical_json(header.config).decode()[:500]}"
            )
        config = container.canonical_json(dict(self.model.config), "model config")
        if container.canonical_json(header.config) != config:
            raise ValueError(
                "this file's model config differs from this model's: "
                f"{container.canonical_json(header.config).decode()[:500]} (file) vs {config.decode()[:500]} (model)"
            )
        if (header.channels, header.patch_height, header.patch_width) != self.patch_shape:
            raise ValueError(
                f"this file codes {header.channels}-channel images in {header.patch_height}x{header.patch_width} "
                f"patches; the model's patch shape is {self.patch_shape}"
            )
        return header

    def decode(self, data: bytes | bytearray | memoryview, *, progress: bool = False) -> torch.Tensor:
        """Decompress a container made by :meth:`encode` with the same model: uint8 ``[N, C, H, W]``.

        Raises ValueError for a corrupt, truncated or forged file, or one made with another model.
        """
        header = self.read_header(data)
        # the padded patches are the largest thing decoding allocates: bounded before anything is
        # (a forged file of valid CRCs can claim ~340 subpixels per byte)
        limits.check_pixels(header.images * header.patches_per_image * math.prod(self.patch_shape), "this file")
        view = memoryview(data).cast("B")
        device, _ = self._model_placement()
        per_image = header.patches_per_image
        per_payload = header.lanes_per_payload
        lanes = container.Lanes.concatenate(
            [
                container.parse_lanes(view[record.offset : record.offset + record.length], per_payload, image=index)
                for index, record in enumerate(header.records)
            ]
        )
        bounds = lanes.word_bounds()
        patches = torch.empty((header.images * per_image, *self.patch_shape), dtype=torch.uint8)
        starts, sizes, runs = _layout(
            header.images,
            per_image,
            header.lane_patches,
            header.lanes,
            stream=header.stream,
            spans_images=header.spans_images,
        )
        with tqdm(total=len(patches), unit="patch", desc="decompress", disable=not progress) as bar:
            for first, last in runs:
                start, end = int(starts[first]), int(starts[last - 1] + sizes[last - 1])
                where = _describe(start, end, per_image)
                run_lanes = lanes.select(first, last, bounds)
                patches[start:end] = self._decode_run(run_lanes, sizes[first:last], header, device, where)
                bar.update(end - start)
        rows, cols = header.grid
        out = torch.empty((header.images, header.channels, header.height, header.width), dtype=torch.uint8)
        for index in range(header.images):
            record = header.records[0 if header.stream else index]
            image_patches = patches[index * per_image : (index + 1) * per_image]
            image = untile(image_patches, rows, cols)[:, : header.height, : header.width]
            if not torch.equal(tile(image, header.patch_height, header.patch_width), image_patches):
                raise ValueError(f"corrupt flowkernels codec file: image {index}'s padding is not edge replication")
            if not header.stream and container.pixel_crc(image) != record.pixel_crc:
                raise ValueError(f"corrupt flowkernels codec file: pixel CRC-32 mismatch in image {index}")
            out[index] = image
        if header.stream and container.pixel_crc(out) != header.records[0].pixel_crc:
            raise ValueError("corrupt flowkernels codec file: pixel CRC-32 mismatch in the stream")
        return out

    def _decode_run(
        self, lanes: container.Lanes, sizes: np.ndarray, header: ContainerHeader, device: torch.device, where: str
    ) -> torch.Tensor:
        n = int(sizes.sum())
        groups = _groups(sizes)
        bounds = lanes.word_bounds()
        coders = [
            (lanes if index is None else lanes.take(ids, bounds)).to_coder(device=device) for ids, _, index in groups
        ]
        steps = 0
        coder_threads = torch.get_num_threads()

        def pop(mu: torch.Tensor, log_scale: torch.Tensor, logit_pi: torch.Tensor | None = None) -> torch.Tensor:
            with _intra_op_threads(coder_threads):  # the model's calls run on MODEL_THREADS, the coder on all
                return pop_step(mu, log_scale, logit_pi)

        def pop_step(mu: torch.Tensor, log_scale: torch.Tensor, logit_pi: torch.Tensor | None) -> torch.Tensor:
            nonlocal steps
            mu_flat, log_scale_flat, logit_pi_flat, spatial = _params(steps, mu, log_scale, logit_pi, n)
            symbols = torch.empty(mu_flat.shape[:2], dtype=torch.int64, device=mu.device)
            for slot, (ids, _, index) in enumerate(groups):
                m = len(ids)
                if coders[slot].device != mu.device:
                    coders[slot] = coders[slot].to(mu.device)
                try:
                    popped = coders[slot].pop_logistic(
                        _gather(mu_flat, index, m),
                        _gather(log_scale_flat, index, m),
                        _gather(logit_pi_flat, index, m),
                        precision=header.precision,
                    )
                except (ValueError, RuntimeError) as error:
                    raise ValueError(f"corrupt flowkernels codec file: {where}, latent step {steps}: {error}") from None
                popped = popped.reshape(-1, symbols.shape[1])
                if index is None:
                    symbols = popped
                else:
                    symbols[index.to(mu.device)] = popped
            steps += 1
            return symbols.reshape(n, *spatial).to(mu.dtype)

        with torch.inference_mode(), self._model_threads():
            x = self.model.decode_latents(n, pop)
        if not all(bool((c.lengths == 0).all()) and bool((c.state == STATE_LOWER).all()) for c in coders):
            hint = (
                ""
                if header.portable
                else " (or it was made with a floating-point model on a machine or software whose float results "
                "differ from this one's: such files decode only on the same kind of machine; integer models, "
                "the shipped default, make files that decode anywhere)"
            )
            raise ValueError(
                f"corrupt flowkernels codec file: {where}: data left over after the model's {steps} latent steps{hint}"
            )
        if not isinstance(x, torch.Tensor) or tuple(x.shape) != (n, *self.patch_shape):
            got = list(x.shape) if isinstance(x, torch.Tensor) else type(x).__name__
            raise ValueError(f"{where}: model.decode_latents returned {got}, expected [{n}, *{self.patch_shape}]")
        x = x.detach().to("cpu")
        if not bool(((x >= 0) & (x <= 255) & (x == torch.round(x))).all()):
            raise ValueError(f"corrupt flowkernels codec file: {where}: decoded pixels outside the integers 0..255")
        return x.to(torch.uint8)
