"""The context coder: a classical adaptive lossless coder of 8-bit images (CPU), and its fake kernels.

It is the image codec's safety net (see :mod:`flowkernels.reference.context` for the algorithm and
the stream layout): no training, no model file, and streams that are identical on every machine.

Example::

    >>> import torch
    >>> from flowkernels.ops import context_decode, context_encode
    >>> image = torch.arange(64, dtype=torch.uint8).reshape(1, 8, 8)
    >>> stream = context_encode(image)
    >>> bool(torch.equal(context_decode(stream, (1, 8, 8)), image))
    True
"""

from __future__ import annotations

from collections.abc import Sequence

import torch

from .. import _C  # noqa: F401  (registers the ops)

__all__ = ["context_encode", "context_decode", "MAX_CHANNELS", "CPU_ONLY_OPS"]

#: the ops of this family, which have no CUDA kernel by design: the coder is serial, pixel by pixel
CPU_ONLY_OPS = ("context_encode", "context_decode")

#: channels a stream holds at most (kMaxChannels in csrc/context.h: each channel's mode fits a byte)
MAX_CHANNELS = 85


def context_encode(image: torch.Tensor) -> torch.Tensor:
    """Code a uint8 CPU image ``[C, H, W]`` (1 <= C <= 85) losslessly; returns the stream as uint8 ``[n]``.

    Example:
        >>> import torch
        >>> from flowkernels import ops
        >>> image = torch.arange(64, dtype=torch.uint8).reshape(1, 8, 8)
        >>> stream = ops.context_encode(image)
        >>> stream.dtype, stream.numel()
        (torch.uint8, 20)
        >>> torch.equal(ops.context_decode(stream, (1, 8, 8)), image)
        True
    """
    _check_not_cuda("context_encode", "image", image)
    return torch.ops.flowkernels.context_encode(image)


def context_decode(data: torch.Tensor, shape: Sequence[int]) -> torch.Tensor:
    """Decode a stream of :func:`context_encode` into the uint8 image of ``shape = (C, H, W)``.

    Raises ValueError for a stream that is truncated, corrupt or too short for ``shape``.
    """
    _check_not_cuda("context_decode", "data", data)
    channels, height, width = (int(s) for s in shape)
    return torch.ops.flowkernels.context_decode(data, channels, height, width)


def _check_not_cuda(op: str, argument: str, tensor: torch.Tensor) -> None:
    if tensor.device.type == "cuda":
        raise ValueError(
            f"flowkernels.{op}: argument '{argument}' is on {tensor.device}; the context coder runs on the CPU "
            "(it is serial, pixel by pixel): pass tensor.cpu()"
        )


@torch.library.register_fake("flowkernels::context_encode")
def _context_encode_fake(image):
    size = torch.library.get_ctx().new_dynamic_size()
    return image.new_empty((size,))


@torch.library.register_fake("flowkernels::context_decode")
def _context_decode_fake(data, channels, height, width):
    return data.new_empty((channels, height, width))
