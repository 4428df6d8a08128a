"""Integer-only networks for the IDF codec: files that decode on any machine.

A lossless codec must recompute at decoding exactly the numbers it used at encoding. The IDF's
translations ``round(t(x_a))`` and its priors' ``(mu, log_scale, logit_pi)`` come from conv nets;
in floating point their last bits depend on the CPU's instruction set, the thread count, the
oneDNN / cuDNN version and CPU vs GPU, and one changed bit can make a file undecodable. Here the
same networks run in integer arithmetic (Ballé, Johnston & Minnen 2019; IODF, Wang et al. 2022):
:class:`flowkernels.nn.IntConv2d` layers (int16 activations, int8 weights, exact int32 sums,
fixed-point rescaling), saturating int16 residual additions, ReLU as a clamp. Integer results do
not depend on order or hardware, so an integer IDF's files are the same bytes and decode on every
machine. Its outputs:

* a coupling net gives the translation directly as an integer (int32);
* a prior net gives ``(mu, log_scale, logit_pi)`` as fixed-point integers ``q`` (int32, units of
  ``2^-FRACTION_BITS``, ``|q| < 2^24``), which become floats exactly (``q * 2^-FRACTION_BITS``) for
  the rANS coder, whose model quantization is itself IEEE-exact.

Workflow (what ``flowkernels train-idf --qat-epochs`` does): train a float :class:`~.idf.IDF`;
:meth:`~.idf.IDF.calibrate` on training data (records every activation's range, then trains with
fake quantization: weights on their int8 grid, activations on their int16 grid, straight-through);
fine-tune; :meth:`~.idf.IDF.to_integer` converts it into an IDF with ``arithmetic="integer"``,
whose state holds only integers (and one float unit) and which codes and scores
(``log_prob``) with the integer networks.

Only the ``"resnet"`` networks have an integer form.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from ..nn.quant import IntConv2d, fake_quantize, fake_quantize_weight, int16_input
from ..ops.intconv import INT16_MAX, INT16_MIN

__all__ = [
    "FRACTION_BITS",
    "ActivationRanges",
    "resnet_forward",
    "IntegerResNet",
    "IntegerTopPrior",
    "prior_output_units",
    "translation_units",
    "int16_input",
]

#: fixed-point fraction bits of the prior parameters
FRACTION_BITS = 12
#: fixed-point outputs stay below 2^24 in magnitude, so they convert to float32 exactly
FIXED_POINT_LIMIT = 2**24 - 1
#: an activation's int16 range covers this many times the largest value seen in calibration
HEADROOM = 2.0


class ActivationRanges:
    """The largest magnitude of each named activation of one network, over the calibration data,
    and the int16 scales derived from it (``HEADROOM * largest / 32767``)."""

    def __init__(self) -> None:
        self.largest: dict[str, float] = {}

    def observe(self, name: str, x: torch.Tensor) -> None:
        value = float(x.detach().abs().max()) if x.numel() else 0.0
        self.largest[name] = max(self.largest.get(name, 0.0), value)

    def scale(self, name: str) -> float:
        return max(self.largest.get(name, 0.0), 1e-6) * HEADROOM / INT16_MAX


def _parts(net: nn.Sequential) -> tuple[nn.Conv2d, list[tuple[nn.Conv2d, nn.Conv2d]], nn.Conv2d]:
    """``make_net("resnet", ...)``'s convs: the first, (3x3, 1x1) per residual block, the last."""
    blocks = [(block.body[1], block.body[3]) for block in net[1:-2]]
    return net[0], blocks, net[-1]


def resnet_forward(
    net: nn.Sequential,
    x: torch.Tensor,
    ranges: ActivationRanges,
    *,
    observe: bool,
) -> torch.Tensor:
    """A float ``make_net("resnet")`` net, as its integer form computes it.

    ``observe=True`` records the activation ranges (plain float forward); otherwise every weight and
    activation is fake-quantized with the ranges recorded (quantization-aware training). The names
    of the activations are those :meth:`IntegerResNet.load_float` reads.
    """

    def conv(layer: nn.Conv2d, v: torch.Tensor) -> torch.Tensor:
        weight = layer.weight if observe else fake_quantize_weight(layer.weight)
        return F.conv2d(v, weight, layer.bias, padding=layer.padding)

    def act(name: str, v: torch.Tensor, low: int = INT16_MIN) -> torch.Tensor:
        if observe:
            ranges.observe(name, v)
            return v
        return fake_quantize(v, ranges.scale(name), low, INT16_MAX)

    first, blocks, last = _parts(net)
    h = act("stream", conv(first, x))
    for index, (wide, project) in enumerate(blocks):
        u = act(f"block{index}", F.relu(conv(wide, F.relu(h))), 0)
        h = act("stream", h + act("stream", conv(project, u)))
    return conv(last, F.relu(h))


class IntegerResNet(nn.Module):
    """The integer form of ``make_net("resnet", c_in, c_out, hidden, blocks)``: int16 in, int32 out.

    ``h = conv(x)``; per block ``h = sat16(h + conv1x1(relu(conv3x3(relu(h)))))``; output
    ``clamp(conv(relu(h)) + offset, out_min, out_max)``, with every conv an :class:`IntConv2d` and the
    residual stream on one int16 scale.
    """

    def __init__(self, c_in: int, c_out: int, hidden: int, blocks: int, *, out_limit: int) -> None:
        super().__init__()
        self.out_limit = int(out_limit)
        self.first = IntConv2d(c_in, hidden, 3, padding=1)
        self.wide = nn.ModuleList(IntConv2d(hidden, hidden, 3, padding=1, out_min=0) for _ in range(blocks))
        self.project = nn.ModuleList(IntConv2d(hidden, hidden, 1) for _ in range(blocks))
        self.last = IntConv2d(hidden, c_out, 3, padding=1, out_dtype=torch.int32)
        self.register_buffer("offset", torch.zeros(c_out, dtype=torch.int32))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        h = self.first(x)
        for wide, project in zip(self.wide, self.project, strict=True):
            v = project(wide(h.clamp_min(0)))
            h = (h.to(torch.int32) + v).clamp_(INT16_MIN, INT16_MAX).to(torch.int16)
        out = self.last(h.clamp_min(0)) + self.offset.view(1, -1, 1, 1)
        return out.clamp_(-self.out_limit, self.out_limit)

    @torch.no_grad()
    def load_float(
        self,
        net: nn.Sequential,
        ranges: ActivationRanges,
        *,
        input_scale: float,
        output_scale: torch.Tensor,
        output_offset: torch.Tensor,
    ) -> IntegerResNet:
        """Quantize the float net (trained with :func:`resnet_forward`'s ranges) into this one.

        ``input_scale``: the real value of one input unit; ``output_scale`` ``[c_out]``: of one output unit;
        ``output_offset`` ``[c_out]``: real numbers added to the output (rounded to output units).
        """
        first, blocks, last = _parts(net)
        stream = ranges.scale("stream")
        self.first.load_float(first.weight, first.bias, input_scale=input_scale, output_scale=stream)
        for index, (wide, project) in enumerate(blocks):
            inner = ranges.scale(f"block{index}")
            self.wide[index].load_float(wide.weight, wide.bias, input_scale=stream, output_scale=inner)
            self.project[index].load_float(project.weight, project.bias, input_scale=inner, output_scale=stream)
        self.last.load_float(last.weight, last.bias, input_scale=stream, output_scale=output_scale)
        offset = torch.round(output_offset.double().cpu() / output_scale.double().cpu())
        self.offset.copy_(offset.clamp(-self.out_limit, self.out_limit).to(torch.int32))
        return self


class IntegerTopPrior(nn.Module):
    """The top prior of an integer IDF: fixed-point ``(mu, log_scale, logit_pi)`` per channel, position
    and component (int32 ``[3, C, h, w, K]``), and ``unit`` = ``2^-FRACTION_BITS`` in the model's dtype."""

    def __init__(self, shape: tuple[int, int, int], num_mixtures: int) -> None:
        super().__init__()
        self.register_buffer("fixed", torch.zeros(3, *shape, num_mixtures, dtype=torch.int32))
        self.register_buffer("unit", torch.tensor(2.0**-FRACTION_BITS))

    def params(self, n: int) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        values = self.fixed.to(self.unit.dtype) * self.unit
        return tuple(p.expand(n, *p.shape).contiguous() for p in values)

    @torch.no_grad()
    def load_params(self, params: tuple[torch.Tensor, torch.Tensor, torch.Tensor]) -> IntegerTopPrior:
        """Round float ``(mu, log_scale, logit_pi)`` ``[C, h, w, K]`` to the fixed-point grid."""
        stacked = torch.stack([p.detach().double().cpu() for p in params])
        fixed = torch.round(stacked * 2.0**FRACTION_BITS).clamp(-FIXED_POINT_LIMIT, FIXED_POINT_LIMIT)
        self.fixed.copy_(fixed.to(torch.int32))
        return self


def prior_output_units(factor: int, num_mixtures: int, data_levels: int, log_scale_offset: float):
    """Output scales and offsets of a split prior's last conv, whose channels are ``[3, F, K]``
    (raw mu, raw log_scale, logit_pi): fixed-point ``mu = data_levels * raw``,
    ``log_scale = raw + log_scale_offset``, ``logit_pi = raw``, all in units of ``2^-FRACTION_BITS``."""
    unit = 2.0**-FRACTION_BITS
    per_kind = torch.tensor([unit / data_levels, unit, unit], dtype=torch.float64)
    scale = per_kind.repeat_interleave(factor * num_mixtures)
    offset = torch.zeros(3, factor * num_mixtures, dtype=torch.float64)
    offset[1] = log_scale_offset
    return scale, offset.flatten()


def translation_units(c_out: int, data_levels: int) -> tuple[torch.Tensor, torch.Tensor]:
    """A coupling net's output is ``t = data_levels * net``, rounded: one output unit is ``1 / data_levels``."""
    return torch.full((c_out,), 1.0 / data_levels, dtype=torch.float64), torch.zeros(c_out, dtype=torch.float64)
