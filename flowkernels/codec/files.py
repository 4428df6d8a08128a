"""Compressing and decompressing image files: the Python API behind ``flowkernels compress / decompress``.

* :func:`compress_file` / :func:`decompress_file`: one image file to one ``.fkc`` file and back. ``"-"``
  reads standard input or writes standard output. Outputs are written atomically and never onto the input.
* :func:`image_files`: the image files named by paths and folders (optionally recursive), with the
  relative names their outputs get in an output folder.
* :func:`summary_table`: one table for a batch (bytes, bits per pixel and per subpixel, against PNG, time).

Models are cached per name in a :class:`CodecCache`, so a folder of images loads each model once.
"""

from __future__ import annotations

import dataclasses
import os
import sys
import time
from collections.abc import Iterable, Sequence
from pathlib import Path

import torch

from .image_codec import LosslessImageCodec
from .image_file import (
    DEFAULT_METHODS,
    METHODS,
    PNG_FRAMING_BYTES,
    decode_image_file,
    encode_image_file,
    read_image_header,
)
from .image_file import MAGIC as IMAGE_FILE_MAGIC
from .imageio import (
    LOSSY_SUFFIXES,
    SUFFIXES,
    check_output,
    decode_image,
    encode_image,
    from_tensor,
    png_encode,
    read_image,
    replaced_atomically,
)
from .registry import resolve_model, shipped_model_for_channels, shipped_model_with_fingerprint

__all__ = ["FileResult", "CodecCache", "compress_file", "decompress_file", "image_files", "summary_table"]

STDIO = "-"
#: images of at least this many patches show a progress bar
PROGRESS_PATCHES = 64


@dataclasses.dataclass
class FileResult:
    """What one file became: sizes in bytes, the image's shape, seconds, and a note (e.g. for a JPEG)."""

    source: str
    target: str
    channels: int
    height: int
    width: int
    input_bytes: int
    output_bytes: int
    seconds: float
    png_bytes: int | None = None  # the same pixels as a PNG at zlib level 9, for comparison
    note: str = ""
    method: str = ""  # how the .fkc file codes the image (see flowkernels.codec.image_file.METHODS)

    def bits_per_pixel(self, nbytes: int) -> float:
        return 8 * nbytes / (self.height * self.width)

    def bits_per_subpixel(self, nbytes: int) -> float:
        return 8 * nbytes / (self.channels * self.height * self.width)


class CodecCache:
    """Codecs by model name: each model is loaded once per batch."""

    def __init__(self, lanes: int | None = None) -> None:
        self.lanes = lanes
        self._codecs: dict[str, LosslessImageCodec] = {}

    def by_name(self, name: str) -> LosslessImageCodec:
        if name not in self._codecs:
            self._codecs[name] = LosslessImageCodec(resolve_model(name), lanes=self.lanes)
        return self._codecs[name]

    def for_file(self, data: bytes) -> LosslessImageCodec:
        """The codec of the shipped model whose fingerprint the ``.fkc`` file ``data`` holds."""
        from .container import model_fingerprint, read_header

        fingerprint = read_header(data).fingerprint
        for codec in self._codecs.values():
            if model_fingerprint(codec.model) == fingerprint:
                return codec
        codec = LosslessImageCodec(shipped_model_with_fingerprint(fingerprint), lanes=self.lanes)
        self._codecs[fingerprint.hex()] = codec
        return codec


def _read_bytes(source: str | os.PathLike) -> bytes:
    return sys.stdin.buffer.read() if os.fspath(source) == STDIO else Path(source).read_bytes()


def _write_bytes(target: str | os.PathLike, data: bytes) -> None:
    if os.fspath(target) == STDIO:
        sys.stdout.buffer.write(data)
        sys.stdout.buffer.flush()
        return
    with replaced_atomically(target) as temporary:
        temporary.write_bytes(data)


def _load(source_name: str, raw: bytes | None, layout: str | None, channels: int | None = None):
    if raw is not None:
        return decode_image(raw, "<stdin>", layout=layout, channels=channels)
    return read_image(source_name, layout=layout, channels=channels)


def compress_file(
    source: str | os.PathLike,
    target: str | os.PathLike,
    *,
    model: str | None = None,
    method: str | None = None,
    layout: str | None = None,
    verify: bool = False,
    force: bool = False,
    progress: bool = False,
    compare_png: bool = True,
    codecs: CodecCache | None = None,
) -> FileResult:
    """Compress the image file ``source`` (any format of :mod:`flowkernels.codec.imageio`, or ``"-"``) into
    the ``.fkc`` file ``target`` (or ``"-"``) losslessly.

    The file holds the smallest of the methods tried (:mod:`flowkernels.codec.image_file`): by default the
    classical ones (the context coder, PNG, stored); ``model`` (a shipped model's name or a checkpoint
    file) adds its flow; ``method`` (``"context"``, ``"png"``, ``"stored"`` or ``"flow"``) uses that one
    only (``"flow"`` with the shipped photograph model for the image's channels unless ``model`` names
    one). ``verify`` decodes the result and compares it first. Raises ValueError (or OSError) with a
    one-line message; ``target`` is then left as it was.
    """
    start = time.perf_counter()
    codecs = codecs or CodecCache()
    source_name, target_name = os.fspath(source), os.fspath(target)
    if source_name != STDIO and target_name != STDIO:
        check_output(source, target, force=force)
    if method is not None and method not in METHODS:
        raise ValueError(f"unknown method {method!r}; use one of {', '.join(METHODS)}")
    methods = (method,) if method else DEFAULT_METHODS + (("flow",) if model else ())
    raw = _read_bytes(source) if source_name == STDIO else None
    images, found_layout = _load(source_name, raw, layout)
    input_bytes = len(raw) if raw is not None else Path(source).stat().st_size
    codec = None
    if "flow" in methods:
        codec = codecs.by_name(model or shipped_model_for_channels(images.shape[1]))
        if layout is None and found_layout in ("HWC", "CHW") and images.shape[1] != codec.patch_shape[0]:
            # a 3-D .npy: guess its layout from the model's channels
            images, found_layout = _load(source_name, raw, layout, codec.patch_shape[0])
        if images.shape[1] != codec.patch_shape[0]:
            raise ValueError(
                f"{source_name}: the model {model} codes {codec.patch_shape[0]}-channel images, the image has "
                f"{images.shape[1]} channels"
            )
        patches = -(-images.shape[2] // codec.patch_shape[1]) * -(-images.shape[3] // codec.patch_shape[2])
        progress = progress and patches >= PROGRESS_PATCHES
    _, channels, height, width = images.shape
    encoded = encode_image_file(
        images[0], layout=found_layout, methods=methods, flow_codec=codec, progress=progress and codec is not None
    )
    if verify:
        decoded, _ = decode_image_file(encoded.data, flow_codec=codec)
        if not torch.equal(decoded, images[0]):
            raise ValueError(f"{source_name}: the {encoded.method} file does not decode to the image (not written)")
    _write_bytes(target, encoded.data)
    png = None
    if encoded.sizes.get("png") is not None:
        png = encoded.sizes["png"] - encoded.overhead + PNG_FRAMING_BYTES
    elif compare_png and channels <= 4:
        png = len(png_encode(from_tensor(images[0], "HW" if channels == 1 else "HWC"), level=9))
    lossy = source_name != STDIO and Path(source_name).suffix.lower() in LOSSY_SUFFIXES
    note = "JPEG: its decoded pixels were compressed losslessly, not the JPEG file" if lossy else ""
    return FileResult(
        source_name,
        target_name,
        channels,
        height,
        width,
        input_bytes,
        len(encoded.data),
        time.perf_counter() - start,
        png,
        note,
        encoded.method,
    )


def decompress_file(
    source: str | os.PathLike,
    target: str | os.PathLike,
    *,
    model: str | None = None,
    force: bool = False,
    progress: bool = False,
    output_format: str | None = None,
    codecs: CodecCache | None = None,
) -> FileResult:
    """Decompress the ``.fkc`` file ``source`` (or ``"-"``) into the image file ``target`` (or ``"-"``),
    whose suffix (or ``output_format``, e.g. ``".png"``; PNG for standard output) names the format.

    ``model``: the model a flow-coded file was made with (default: the shipped model whose fingerprint it
    holds). Files of the older multi-image container (``FKIC``) are read too.
    """
    start = time.perf_counter()
    codecs = codecs or CodecCache()
    source_name, target_name = os.fspath(source), os.fspath(target)
    if source_name != STDIO and target_name != STDIO:
        check_output(source, target, force=force)
    suffix = output_format or (".png" if target_name == STDIO else Path(target_name).suffix.lower())
    if suffix not in SUFFIXES:
        raise ValueError(f"{target_name}: unsupported image file type {suffix or '(none)'!r}")
    data = _read_bytes(source)
    if data.startswith(IMAGE_FILE_MAGIC):
        header = read_image_header(data)
        codec = None
        if header.method == "flow":
            payload = data[header.payload_start : header.payload_end]
            codec = codecs.by_name(model) if model else codecs.for_file(payload)
        image, _ = decode_image_file(data, flow_codec=codec, progress=progress)
        layout, method = header.layout, header.method
    else:
        codec = codecs.by_name(model) if model else codecs.for_file(data)
        old = codec.read_header(data)
        if old.images != 1:
            raise ValueError(f"{source_name} holds {old.images} images; a file decompresses to one image file")
        image = codec.decode(data, progress=progress and old.patches_per_image >= PROGRESS_PATCHES)[0]
        layout = str(old.metadata.get("layout", "HW" if old.channels == 1 else "HWC"))
        method = "flow"
    output = encode_image(image, suffix, layout, target_name)
    _write_bytes(target, output)
    channels, height, width = image.shape
    return FileResult(
        source_name,
        target_name,
        channels,
        height,
        width,
        len(data),
        len(output),
        time.perf_counter() - start,
        method=method,
    )


def image_files(
    inputs: Sequence[str | os.PathLike], *, recursive: bool = False, suffixes: Iterable[str] = SUFFIXES
) -> list[tuple[Path, Path]]:
    """``(file, relative output name)`` for every file in ``inputs``: files as given (their name), folders
    expanded to the files with one of ``suffixes`` inside them (recursively with ``recursive``; the name
    relative to the folder). Raises ValueError for a missing path or two inputs that would share a name."""
    suffixes = tuple(suffixes)
    found: list[tuple[Path, Path]] = []
    for item in map(Path, inputs):
        if item.is_dir():
            pattern = item.rglob("*") if recursive else item.glob("*")
            files = sorted(p for p in pattern if p.is_file() and p.suffix.lower() in suffixes)
            found += [(file, file.relative_to(item)) for file in files]
        elif item.exists():
            found.append((item, Path(item.name)))
        else:
            raise ValueError(f"{item}: no such file or folder")
    names: dict[Path, Path] = {}
    for file, name in found:
        if name in names:
            raise ValueError(f"{names[name]} and {file} would both be written as {name}: compress them separately")
        names[name] = file
    return found


def summary_table(results: Sequence[FileResult], *, compressed: str = "output") -> str:
    """A plain-text table of a batch, with a total row: bytes in and out, bits per pixel (all channels of a
    pixel) and per subpixel of the ``.fkc`` side, its size against PNG (level 9) of the same pixels, the
    method the ``.fkc`` file codes with, time."""
    header = (
        "file",
        "pixels",
        "input bytes",
        "output bytes",
        "bits/pixel",
        "bits/subpixel",
        "vs PNG",
        "method",
        "seconds",
    )
    rows = []
    for r in results:
        fkc = r.output_bytes if compressed == "output" else r.input_bytes
        rows.append(
            (
                r.source,
                f"{r.height}x{r.width}x{r.channels}",
                f"{r.input_bytes:,}",
                f"{r.output_bytes:,}",
                f"{r.bits_per_pixel(fkc):.3f}",
                f"{r.bits_per_subpixel(fkc):.3f}",
                "-" if not r.png_bytes else f"{fkc / r.png_bytes:.3f}x",
                r.method or "-",
                f"{r.seconds:.2f}",
            )
        )
    if len(results) > 1:
        fkc = sum(r.output_bytes if compressed == "output" else r.input_bytes for r in results)
        pixels = sum(r.height * r.width for r in results)
        subpixels = sum(r.channels * r.height * r.width for r in results)
        png = [r.png_bytes for r in results]
        rows.append(
            (
                f"total ({len(results)} files)",
                f"{subpixels:,} subpixels",
                f"{sum(r.input_bytes for r in results):,}",
                f"{sum(r.output_bytes for r in results):,}",
                f"{8 * fkc / pixels:.3f}",
                f"{8 * fkc / subpixels:.3f}",
                "-" if not all(png) else f"{fkc / sum(png):.3f}x",
                "",
                f"{sum(r.seconds for r in results):.2f}",
            )
        )
    widths = [max(len(row[i]) for row in (header, *rows)) for i in range(len(header))]

    def line(cells: Sequence[str]) -> str:
        pairs = enumerate(zip(cells, widths, strict=True))
        return "  ".join(cell.ljust(width) if i == 0 else cell.rjust(width) for i, (cell, width) in pairs)

    return "\n".join([line(header), line(["-" * w for w in widths]), *map(line, rows)])
