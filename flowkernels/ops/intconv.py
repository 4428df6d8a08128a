"""The intconv family: integer-only convolution, the same bits on every machine.

:func:`int_conv2d` is the building block of integer networks (Ballé, Johnston & Minnen 2019;
IODF, Wang et al. 2022): int16 activations, int8 weights, an exact int32 accumulator and a
fixed-point rescaling to the next layer's integers, with no floating point anywhere. Integer
sums are exact in any order, so the result does not depend on the CPU's instruction set, the
thread count, the library version or the device: a decoder recomputes exactly what the encoder
computed. :mod:`flowkernels.nn.quant` builds layers on it; the IDF codec's networks use it.
"""

from __future__ import annotations

import torch

__all__ = ["int_conv2d", "INT16_MIN", "INT16_MAX"]

_ops = torch.ops.flowkernels

INT16_MIN, INT16_MAX = -(2**15), 2**15 - 1
_RANGES = {torch.int16: (INT16_MIN, INT16_MAX), torch.int32: (-(2**31), 2**31 - 1)}


def int_conv2d(
    x: torch.Tensor,
    weight: torch.Tensor,
    bias: torch.Tensor,
    multiplier: torch.Tensor,
    shift: torch.Tensor,
    *,
    padding: int = 0,
    out_min: int | None = None,
    out_max: int | None = None,
    out_dtype: torch.dtype = torch.int16,
) -> torch.Tensor:
    """Integer convolution with fixed-point rescaling (stride 1, zero padding).

    ``acc[n, o, y, x] = bias[o] + sum_{i, dy, dx} weight[o, i, dy, dx] * x_padded[n, i, y + dy, x + dx]``,
    exact in int32, then ``out = clamp(floor((acc * multiplier[o] + 2^(shift[o] - 1)) / 2^shift[o]),
    out_min, out_max)``: ``acc`` times the real number ``multiplier / 2^shift``, rounded half up.

    Args:
        x: int16 ``[N, I, H, W]``.
        weight: int8 ``[O, I, kh, kw]``. Refused (ValueError-like RuntimeError) when some output
            channel could overflow the int32 accumulator for some int16 input:
            ``sum |weight[o]| * 2^15 + |bias[o]|`` must be below 2^31.
        bias, multiplier: int32 ``[O]``; ``bias`` is in accumulator units.
        shift: int32 ``[O]``, each in ``[0, 62]``.
        padding: zeros added on every side.
        out_min, out_max: the clamp (default: the range of ``out_dtype``; ``out_min = 0`` is a fused ReLU).
        out_dtype: ``torch.int16`` or ``torch.int32``.

    Returns:
        ``[N, O, H + 2 padding - kh + 1, W + 2 padding - kw + 1]`` of ``out_dtype``, on ``x``'s device.

    Example (a 1x1 convolution by 3, bias 10, times 1 / 2^1, rounded half up):
        >>> import torch
        >>> from flowkernels import ops
        >>> x = torch.tensor([[[[100, -200]]]], dtype=torch.int16)
        >>> w = torch.tensor([[[[3]]]], dtype=torch.int8)
        >>> def int32(v):
        ...     return torch.tensor([v], dtype=torch.int32)
        >>> ops.int_conv2d(x, w, int32(10), int32(1), int32(1))
        tensor([[[[ 155, -295]]]], dtype=torch.int16)
    """
    if out_dtype not in _RANGES:
        raise ValueError(f"int_conv2d: out_dtype must be torch.int16 or torch.int32, got {out_dtype}")
    low, high = _RANGES[out_dtype]
    return _ops.int_conv2d(
        x,
        weight,
        bias,
        multiplier,
        shift,
        padding=int(padding),
        out_min=low if out_min is None else int(out_min),
        out_max=high if out_max is None else int(out_max),
        out_dtype=out_dtype,
    )


@torch.library.register_fake("flowkernels::int_conv2d")
def _int_conv2d_fake(x, weight, bias, multiplier, shift, *, padding, out_min, out_max, out_dtype):
    torch._check(x.dtype == torch.int16, lambda: f"int_conv2d: x must be int16, got {x.dtype}")
    torch._check(weight.dtype == torch.int8, lambda: f"int_conv2d: weight must be int8, got {weight.dtype}")
    torch._check(x.dim() == 4 and weight.dim() == 4, lambda: "int_conv2d: x and weight must be 4-D")
    height = x.shape[2] + 2 * padding - weight.shape[2] + 1
    width = x.shape[3] + 2 * padding - weight.shape[3] + 1
    return x.new_empty((x.shape[0], weight.shape[0], height, width), dtype=out_dtype)
