"""Integer layers, and the helpers that turn a trained float conv into one.

:class:`IntConv2d` runs :func:`flowkernels.ops.int_conv2d`: int16 activations in, int8 weights, an
exact int32 accumulator, and a fixed-point rescaling (an integer multiplier and a rounding shift)
to int16 activations or int32 outputs. It holds only integers, so its outputs are the same bits on
every CPU, thread count, torch version and GPU: what a decoder must recompute.

Quantization (symmetric, no zero points): a real tensor ``v`` is represented by integers ``q`` with
``v ~ q * scale``. Weights use one scale per output channel, ``max |w| / 127``
(:func:`weight_scale`); activations one scale per tensor, chosen by the caller (the IDF uses twice
the largest value seen on training data, :mod:`flowkernels.models.idf_integer`). A conv that maps
inputs of scale ``s_in`` to outputs of scale ``s_out`` then computes, in integers,
``q_out = round(acc * s_in * s_w / s_out)``, and ``s_in * s_w / s_out`` is the fixed-point number
``multiplier / 2^shift`` of :func:`quantize_multiplier`.

Quantization-aware training simulates this in float with straight-through rounding:
:func:`fake_quantize` and :func:`fake_quantize_weight`.
"""

from __future__ import annotations

import torch
from torch import nn

from ..ops import int_conv2d
from ..ops.intconv import INT16_MAX, INT16_MIN

__all__ = [
    "WEIGHT_MAX",
    "IntConv2d",
    "quantize_multiplier",
    "weight_scale",
    "fake_quantize",
    "fake_quantize_weight",
    "int16_input",
]

#: int8 weights use the symmetric range [-127, 127]
WEIGHT_MAX = 127
_ACC_LIMIT = 2**31 - 1
_INPUT_LIMIT = 2**15
_MAX_SHIFT = 62


def quantize_multiplier(scale: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """Each real ``scale >= 0`` as ``multiplier / 2^shift``: int32 multipliers in ``[2^30, 2^31)`` (31
    significant bits) and shifts in ``[0, 62]``; scales below ``2^-32`` lose bits, zero gives ``(0, 0)``.

    Raises ValueError for a negative, non-finite or too large (``>= 2^31``) scale.
    """
    scale = scale.detach().to(torch.float64).cpu()
    if not bool(torch.isfinite(scale).all()) or bool((scale < 0).any()) or bool((scale >= 2.0**31).any()):
        raise ValueError(f"quantize_multiplier: scales must be finite, >= 0 and < 2^31, got {scale.tolist()}")
    mantissa, exponent = torch.frexp(scale)  # scale = mantissa * 2^exponent, mantissa in [0.5, 1)
    multiplier = torch.round(mantissa * 2.0**31).to(torch.int64)
    carry = multiplier == 2**31
    multiplier = torch.where(carry, multiplier // 2, multiplier)
    shift = 31 - (exponent.to(torch.int64) + carry.to(torch.int64))
    # a scale too small for shift <= 62: drop the multiplier's low bits (rounding)
    excess = (shift - _MAX_SHIFT).clamp(0, 63)
    half = torch.where(excess > 0, torch.ones_like(excess) << (excess - 1).clamp_min(0), torch.zeros_like(excess))
    multiplier = torch.where(excess >= 63, torch.zeros_like(multiplier), (multiplier + half) >> excess)
    shift = shift.clamp_max(_MAX_SHIFT)
    zero = scale == 0
    multiplier = torch.where(zero, torch.zeros_like(multiplier), multiplier).clamp_max(2**31 - 1)
    shift = torch.where(zero, torch.zeros_like(shift), shift)
    return multiplier.to(torch.int32), shift.to(torch.int32)


def weight_scale(weight: torch.Tensor) -> torch.Tensor:
    """Per-output-channel scale of symmetric int8 weights: ``max |w[o]| / 127`` (1 for an all-zero channel)."""
    largest = weight.detach().abs().flatten(1).amax(1)
    return torch.where(largest > 0, largest / WEIGHT_MAX, torch.ones_like(largest))


def fake_quantize(x: torch.Tensor, scale: float, low: int, high: int) -> torch.Tensor:
    """``clamp(round(x / scale), low, high) * scale`` with a straight-through gradient inside the range."""
    clamped = x.clamp(low * scale, high * scale)
    return clamped + (torch.round(clamped / scale) * scale - clamped).detach()


def fake_quantize_weight(weight: torch.Tensor) -> torch.Tensor:
    """The weight as :class:`IntConv2d` will hold it (per-channel int8 grid), straight-through."""
    scale = weight_scale(weight).view(-1, *([1] * (weight.dim() - 1)))
    return weight + (torch.round(weight / scale).clamp(-WEIGHT_MAX, WEIGHT_MAX) * scale - weight).detach()


class IntConv2d(nn.Module):
    """Integer convolution layer (stride 1, zero padding): ``int16 [N, I, H, W] -> out_dtype [N, O, H', W']``.

    Buffers (the whole state): ``weight`` int8 ``[O, I, k, k]``, ``bias`` int32 ``[O]`` (accumulator
    units), ``multiplier`` and ``shift`` int32 ``[O]``. ``out_min = 0`` makes it a conv followed by ReLU.
    Build one from float weights with :meth:`from_float`, or load a state dict into an empty one.
    """

    def __init__(
        self,
        in_channels: int,
        out_channels: int,
        kernel_size: int,
        *,
        padding: int = 0,
        out_min: int | None = None,
        out_max: int | None = None,
        out_dtype: torch.dtype = torch.int16,
    ) -> None:
        super().__init__()
        if out_dtype not in (torch.int16, torch.int32):
            raise ValueError(f"IntConv2d: out_dtype must be torch.int16 or torch.int32, got {out_dtype}")
        info = torch.iinfo(out_dtype)
        self.padding = int(padding)
        self.out_min = info.min if out_min is None else int(out_min)
        self.out_max = info.max if out_max is None else int(out_max)
        self.out_dtype = out_dtype
        self.register_buffer(
            "weight", torch.zeros(out_channels, in_channels, kernel_size, kernel_size, dtype=torch.int8)
        )
        for name in ("bias", "multiplier", "shift"):
            self.register_buffer(name, torch.zeros(out_channels, dtype=torch.int32))

    def extra_repr(self) -> str:
        o, i, k, _ = self.weight.shape
        return (
            f"{i}, {o}, kernel_size={k}, padding={self.padding}, out=[{self.out_min}, {self.out_max}] {self.out_dtype}"
        )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return int_conv2d(
            x,
            self.weight,
            self.bias,
            self.multiplier,
            self.shift,
            padding=self.padding,
            out_min=self.out_min,
            out_max=self.out_max,
            out_dtype=self.out_dtype,
        )

    @torch.no_grad()
    def load_float(
        self,
        weight: torch.Tensor,
        bias: torch.Tensor | None,
        *,
        input_scale: float,
        output_scale: float | torch.Tensor,
    ) -> IntConv2d:
        """Quantize a float conv (``weight`` ``[O, I, k, k]``, ``bias`` ``[O]``) into this layer's buffers.

        Inputs arrive as integers of real value ``q * input_scale``; outputs leave as integers of real value
        ``q * output_scale`` (a number, or one per output channel). Weights get the per-channel scale of
        :func:`weight_scale`, doubled for any channel whose worst case would overflow the int32 accumulator
        (so the layer is always accepted by :func:`flowkernels.ops.int_conv2d`). Returns ``self``.
        """
        weight = weight.detach().to(torch.float64).cpu()
        out_channels = weight.shape[0]
        bias = torch.zeros(out_channels, dtype=torch.float64) if bias is None else bias.detach().double().cpu()
        output_scale = torch.as_tensor(output_scale, dtype=torch.float64).expand(out_channels)
        w_scale = weight_scale(weight)
        for _ in range(64):
            w_int = torch.round(weight / w_scale.view(-1, 1, 1, 1)).clamp(-WEIGHT_MAX, WEIGHT_MAX)
            acc_scale = input_scale * w_scale
            b_int = torch.round(bias / acc_scale).clamp(-_ACC_LIMIT, _ACC_LIMIT)
            worst = w_int.abs().sum((1, 2, 3)) * _INPUT_LIMIT + b_int.abs()
            over = worst > _ACC_LIMIT
            if not bool(over.any()):
                break
            w_scale = torch.where(over, w_scale * 2, w_scale)
        else:  # pragma: no cover - a doubling per round empties any channel within 64 rounds
            raise ValueError("IntConv2d.load_float: could not fit the accumulator bound")
        multiplier, shift = quantize_multiplier(acc_scale / output_scale)
        device = self.weight.device
        self.weight.copy_(w_int.to(torch.int8).to(device))
        self.bias.copy_(b_int.to(torch.int32).to(device))
        self.multiplier.copy_(multiplier.to(device))
        self.shift.copy_(shift.to(device))
        return self


def int16_input(x: torch.Tensor) -> torch.Tensor:
    """Integer-valued floats (or integers) as int16, saturating: the input of an integer network."""
    return x.clamp(INT16_MIN, INT16_MAX).to(torch.int16)
