"""Pure-PyTorch reference of :func:`flowkernels.ops.int_conv2d`: int64 arithmetic throughout.

The oracle of the tests and the benchmark's baseline. It follows the op's definition literally:
int64 products summed tap by tap, then ``(acc * multiplier + 2^(shift - 1)) >> shift`` and the
clamp. It does not check the int32 accumulator bound (int64 cannot overflow here).
"""

from __future__ import annotations

import torch
import torch.nn.functional as F

__all__ = ["int_conv2d", "requantize"]


def requantize(acc: torch.Tensor, multiplier: torch.Tensor, shift: torch.Tensor, low: int, high: int) -> torch.Tensor:
    """``clamp(floor((acc * m + 2^(s - 1)) / 2^s), low, high)`` per output channel (dim 1), in int64."""
    m = multiplier.to(torch.int64).view(1, -1, 1, 1)
    s = shift.to(torch.int64).view(1, -1, 1, 1)
    half = torch.where(s > 0, torch.ones_like(s) << (s - 1).clamp_min(0), torch.zeros_like(s))
    return torch.bitwise_right_shift(acc * m + half, s).clamp(low, high)


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
    """See :func:`flowkernels.ops.int_conv2d`. Computed on the CPU (int64 matrix products exist there
    only) and returned on ``x``'s device."""
    device = x.device
    x, weight, bias, multiplier, shift = (t.cpu() for t in (x, weight, bias, multiplier, shift))
    info = torch.iinfo(out_dtype)
    low = info.min if out_min is None else out_min
    high = info.max if out_max is None else out_max
    xp = F.pad(x.to(torch.int64), (padding,) * 4)
    w = weight.to(torch.int64)
    _, _, kh, kw = w.shape
    height, width = xp.shape[2] - kh + 1, xp.shape[3] - kw + 1
    acc = bias.to(torch.int64).view(1, -1, 1, 1).expand(x.shape[0], -1, height, width).clone()
    for dy in range(kh):
        for dx in range(kw):
            window = xp[:, :, dy : dy + height, dx : dx + width]
            acc += torch.einsum("oi,nihw->nohw", w[:, :, dy, dx], window)
    return requantize(acc, multiplier, shift, low, high).to(out_dtype).to(device)
