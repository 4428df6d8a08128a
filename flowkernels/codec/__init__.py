"""Lossless image compression: an integer discrete flow (IDF) plus rANS, and its file container.

* :class:`LosslessImageCodec`: uint8 images ``[N, C, H, W]`` of any size to bytes and back.
* :class:`CodecModel`: the model interface it codes with (IDF implements it).
* :mod:`flowkernels.codec.container`: the ``.fkc`` byte layout and its validation.
* :func:`resolve_model`: shipped models by name, checkpoints by path (the CLI's ``--model``).
* :func:`encode_image_file` / :func:`decode_image_file`: one image to a single-image ``.fkc`` file, coded
  with the cheapest of the classical context coder, PNG, stored bytes and a flow
  (:mod:`flowkernels.codec.image_file`).
* :func:`compress_file` / :func:`decompress_file`: image files to ``.fkc`` files and back (the CLI's work).
"""

from __future__ import annotations

from .container import ContainerHeader, model_fingerprint, read_header
from .files import compress_file, decompress_file
from .image_codec import LosslessImageCodec, default_lanes
from .image_file import ImageFileHeader, decode_image_file, encode_image_file, read_image_header
from .interface import CodecModel, LatentStep, LatentStepLike, PopFn
from .registry import resolve_model

__all__ = [
    "LosslessImageCodec",
    "default_lanes",
    "CodecModel",
    "LatentStep",
    "LatentStepLike",
    "PopFn",
    "ContainerHeader",
    "read_header",
    "model_fingerprint",
    "resolve_model",
    "encode_image_file",
    "decode_image_file",
    "read_image_header",
    "ImageFileHeader",
    "compress_file",
    "decompress_file",
]
