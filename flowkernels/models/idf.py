"""Integer Discrete Flows (Hoogeboom, Peters, van den Berg & Welling 2019, arXiv:1905.07376).

A flow on the integer lattice: every layer maps integers to integers bijectively, so the discrete
likelihood of an image is the likelihood of its latents, and those latents can be entropy coded
(rANS) for lossless compression. The architecture of the paper, scaled down for a CPU::

    x - shift  ->  per scale:  Squeeze -> steps_per_scale x (channel permutation -> integer coupling)
                               -> factor out half the channels (not at the top), with a split prior
               ->  top prior on what is left

* Integer coupling (:class:`IntegerCoupling`): the first 3/4 of the channels ``x_a`` condition the last
  quarter ``x_b``: ``z_b = x_b + round(t(x_a))`` with ``flowkernels.ops.integer_coupling`` (the rounding is
  straight-through in training). ``t`` is a small ResNet or DenseNet with a zero-initialised last conv,
  so every coupling starts as the identity. As in the paper (whose data are ``x / 256``), the network
  sees ``x_a / data_levels`` and its output is multiplied by ``data_levels``.
* Channel permutations (fixed random, or a reversal) between couplings; the 2x2 squeeze of
  :class:`flowkernels.nn.Squeeze`. Permutations and the squeeze move entries around, couplings add
  integers: the whole map is volume preserving on ``Z^d``, so ``log P(x) = sum log P(latents)`` with no
  Jacobian term.
* Priors: each latent has a mixture of ``num_mixtures`` discretized logistics per element
  (``flowkernels.ops.discretized_logistic_logp`` with ``bin_width=1``). A factored-out latent's
  ``(mu, log_scale, logit_pi)`` come from a conv net on the kept channels (:class:`MixtureSplitPrior`); the
  top latent's are learned per channel and position (:class:`TopPrior`).

The map is exact in floating point as long as every intermediate value is an integer below 2^24 in
magnitude (float32; 2^53 in float64): ``model.inverse(model(x))`` returns ``x`` bit for bit.

Integer models: ``IDF(..., arithmetic="integer")`` has integer-only networks (translations and prior
parameters computed exactly, on any machine: :mod:`flowkernels.models.idf_integer`); a float model
becomes one by :meth:`IDF.calibrate`, quantization-aware training and :meth:`IDF.to_integer`.

Checkpoints: :meth:`IDF.save` and :meth:`IDF.from_checkpoint` (:mod:`flowkernels.models.checkpoint`). Training
(single process or DistributedDataParallel under ``torchrun``) and evaluation are in
:mod:`flowkernels.models.idf_training`.
"""

from __future__ import annotations

import contextlib
import math
import os
import warnings
from collections.abc import Callable, Iterator
from pathlib import Path

import torch
from torch import nn

from ..codec.interface import LatentStep  # the codec's contract, which encode_latents returns
from ..nn import FlowLayer, FlowSequential, Squeeze
from ..nn.flow import zero_conv
from ..nn.quant import int16_input
from ..ops import discretized_logistic_logp, integer_coupling
from . import idf_integer
from .checkpoint import Checkpointable
from .idf_integer import FRACTION_BITS, ActivationRanges, IntegerResNet, IntegerTopPrior, resnet_forward
from .training import evaluating, mean_over, sum_over_processes

__all__ = [
    "IDF",
    "LatentStep",
    "IntegerCoupling",
    "ChannelPermutation",
    "MixtureSplitPrior",
    "TopPrior",
    "NETS",
    "PERMUTATIONS",
    "load_idf",
]

NETS = ("resnet", "densenet")
PERMUTATIONS = ("random", "reverse")
#: "float": float networks (trainable); "integer": integer-only networks (:mod:`.idf_integer`), whose
#: coded files decode on every machine
ARITHMETICS = ("float", "integer")

#: Initial scale of every logistic, as a fraction of the data range (``log_scale = log(levels) - 2``:
#: a logistic of scale ``levels / 7.4`` has a standard deviation of about ``levels / 4``).
_LOG_SCALE_OFFSET = -2.0
#: Initial spread of the mixture components' locations, as a fraction of the data range per component.
_MU_SPREAD = 0.1


# ---------------------------------------------------------------------------------------------------
# Networks


def run_net(net: nn.Module, x: torch.Tensor, chunk: int | None) -> torch.Tensor:
    """``net(x)``; with ``chunk``, on fixed-size chunks of ``chunk`` samples (the last one zero-padded).

    Convolutions can pick a different algorithm for a different batch size (on CPU, oneDNN computes a
    batch of one differently from larger batches, to the last bit), and a coder must recompute the
    encoder's numbers exactly. With every call seeing the same shape ``[chunk, ...]``, and no layer
    mixing samples, a sample's output no longer depends on how many samples are coded together or
    which; the input is also made contiguous, so its memory layout cannot matter either.
    """
    if chunk is None:
        return net(x)
    n = x.shape[0]
    outputs = []
    for start in range(0, n, chunk):
        part = x[start : start + chunk]
        if part.shape[0] < chunk:
            part = torch.cat([part, part.new_zeros((chunk - part.shape[0], *part.shape[1:]))])
        outputs.append(net(part.contiguous())[: min(chunk, n - start)])
    if not outputs:
        return net(x.contiguous())
    return torch.cat(outputs)


class ResidualBlock(nn.Module):
    """``x + conv1x1(relu(conv3x3(relu(x))))``."""

    def __init__(self, channels: int) -> None:
        super().__init__()
        self.body = nn.Sequential(
            nn.ReLU(),
            nn.Conv2d(channels, channels, kernel_size=3, padding=1),
            nn.ReLU(),
            nn.Conv2d(channels, channels, kernel_size=1),
        )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x + self.body(x)


class DenseLayer(nn.Module):
    """DenseNet layer: ``cat([x, relu(conv3x3(relu(conv1x1(x))))])``, adding ``growth`` channels."""

    def __init__(self, channels: int, growth: int) -> None:
        super().__init__()
        self.body = nn.Sequential(
            nn.Conv2d(channels, growth, kernel_size=1),
            nn.ReLU(),
            nn.Conv2d(growth, growth, kernel_size=3, padding=1),
            nn.ReLU(),
        )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return torch.cat([x, self.body(x)], dim=1)


def make_net(kind: str, c_in: int, c_out: int, hidden: int, blocks: int) -> nn.Sequential:
    """A small conv net ``c_in -> c_out`` whose last conv is zero-initialised (output 0 at the start).

    ``"resnet"``: 3x3 conv to ``hidden`` channels, ``blocks`` residual blocks, ReLU, 3x3 conv.
    ``"densenet"``: 3x3 conv to ``hidden`` channels, ``blocks`` dense layers of growth ``hidden // 2``,
    then a 1x1 conv back to ``hidden``, ReLU, 3x3 conv (the paper's translation nets are DenseNets).
    No normalisation layers: every sample is processed on its own, in training and in coding alike.
    """
    if kind == "resnet":
        layers = [nn.Conv2d(c_in, hidden, kernel_size=3, padding=1), *(ResidualBlock(hidden) for _ in range(blocks))]
    elif kind == "densenet":
        growth = max(1, hidden // 2)
        layers = [nn.Conv2d(c_in, hidden, kernel_size=3, padding=1), nn.ReLU()]
        layers += [DenseLayer(hidden + i * growth, growth) for i in range(blocks)]
        layers.append(nn.Conv2d(hidden + blocks * growth, hidden, kernel_size=1))
    else:
        raise ValueError(f"IDF: net must be one of {NETS}, got {kind!r}")
    return nn.Sequential(*layers, nn.ReLU(), zero_conv(hidden, c_out))


class _Chunked(nn.Module):
    """Mix-in state of the networks' owners: ``chunk`` is None (nets see the whole batch) or the fixed
    coding batch size; ``ranges`` is None, or the activation ranges of quantization-aware training
    (then ``observing`` says whether they are being recorded rather than used)."""

    chunk: int | None = None
    ranges: ActivationRanges | None = None
    observing: bool = False

    def run_float_net(self, net: nn.Module, x: torch.Tensor) -> torch.Tensor:
        """``net(x)`` of a float net: chunked (see :func:`run_net`), or as its integer form computes it."""
        if self.ranges is not None:
            return resnet_forward(net, x, self.ranges, observe=self.observing)
        return run_net(net, x, self.chunk)


def _make_net(kind: str, c_in: int, c_out: int, hidden: int, blocks: int, arithmetic: str, out_limit: int):
    if arithmetic == "integer":
        return IntegerResNet(c_in, c_out, hidden, blocks, out_limit=out_limit)
    return make_net(kind, c_in, c_out, hidden, blocks)


# ---------------------------------------------------------------------------------------------------
# Flow layers (the FlowLayer convention: z, logdet = layer(x); here logdet is always 0)


class IntegerCoupling(FlowLayer, _Chunked):
    """IDF's additive integer coupling: ``z = [x_a, x_b + round(t(x_a))]``.

    ``x_a`` is the first ``channels - max(1, channels // 4)`` channels (3/4 condition 1/4, the paper's
    split), ``t = data_levels * net(x_a / data_levels)`` with ``net`` from :func:`make_net`. Exactly
    invertible on integers (``inverse`` subtracts the same rounded translation, computed from the same
    ``x_a``); ``logdet`` is 0. Gradients pass the rounding straight through.
    """

    def __init__(
        self, channels: int, hidden: int, blocks: int, net: str, data_levels: int, arithmetic: str = "float"
    ) -> None:
        super().__init__()
        if channels < 2:
            raise ValueError(f"IntegerCoupling: needs at least 2 channels to split, got {channels}")
        self.channels = channels
        self.split = channels - max(1, channels // 4)
        self.data_levels = data_levels
        self.integer = arithmetic == "integer"
        # integer translations saturate at the int16 range (any deterministic map keeps the coupling a bijection)
        self.net = _make_net(net, self.split, channels - self.split, hidden, blocks, arithmetic, 2**15 - 1)

    def translation(self, x_a: torch.Tensor) -> torch.Tensor:
        if self.integer:
            return self.net(int16_input(x_a)).to(x_a.dtype)
        return self.run_float_net(self.net, x_a * (1.0 / self.data_levels)) * self.data_levels

    @torch.no_grad()
    def load_integer(self, source: IntegerCoupling) -> None:
        """Quantize ``source``'s float net (calibrated) into this integer coupling's net."""
        scale, offset = idf_integer.translation_units(self.channels - self.split, self.data_levels)
        self.net.load_float(
            source.net, source.ranges, input_scale=1.0 / self.data_levels, output_scale=scale, output_offset=offset
        )

    def forward(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        x_a, x_b = x[:, : self.split], x[:, self.split :]
        z_b = integer_coupling(x_b, self.translation(x_a))
        return torch.cat([x_a, z_b], dim=1), x.new_zeros(x.shape[0])

    def inverse(self, z: torch.Tensor) -> torch.Tensor:
        z_a, z_b = z[:, : self.split], z[:, self.split :]
        return torch.cat([z_a, integer_coupling(z_b, self.translation(z_a), inverse=True)], dim=1)


class ChannelPermutation(FlowLayer):
    """A fixed permutation of the channels: random (drawn from the global RNG at construction, kept in
    the state dict) or a reversal. ``logdet`` is 0."""

    def __init__(self, channels: int, kind: str = "random") -> None:
        super().__init__()
        if kind == "random":
            permutation = torch.randperm(channels)
        elif kind == "reverse":
            permutation = torch.arange(channels - 1, -1, -1)
        else:
            raise ValueError(f"IDF: permutation must be one of {PERMUTATIONS}, got {kind!r}")
        self.register_buffer("permutation", permutation)
        self.register_buffer("inverse_permutation", torch.argsort(permutation))

    def forward(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        return x[:, self.permutation], x.new_zeros(x.shape[0])

    def inverse(self, z: torch.Tensor) -> torch.Tensor:
        return z[:, self.inverse_permutation]


# ---------------------------------------------------------------------------------------------------
# Priors


def _mixture_bias(factor: int, num_mixtures: int) -> torch.Tensor:
    """Initial raw (mu, log_scale, logit_pi) per (channel, component): components spread apart, since
    identical components would get identical gradients and never separate."""
    offsets = _MU_SPREAD * (torch.arange(num_mixtures, dtype=torch.float64) - (num_mixtures - 1) / 2)
    bias = torch.zeros(3, factor, num_mixtures, dtype=torch.float64)
    bias[0] = offsets
    return bias


def _to_params(raw: torch.Tensor, data_levels: int) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """Raw ``[..., 3, K]``-style triplet (already split) to (mu, log_scale, logit_pi) in integer units."""
    mu, log_scale, logit_pi = raw
    return mu * data_levels, log_scale + (math.log(data_levels) + _LOG_SCALE_OFFSET), logit_pi


class MixtureSplitPrior(_Chunked):
    """The prior of a factored-out latent: ``x = [kept, z]`` along channels, with the first
    ``channels // 2`` kept, and ``(mu, log_scale, logit_pi)`` of ``z``, each ``[N, F, h, w, K]``, computed
    by a conv net (:func:`make_net`) from ``kept / data_levels``. ``mu = data_levels * raw``,
    ``log_scale = raw + log(data_levels) - 2``; the net's last conv has zero weights and a bias that
    spreads the components' locations."""

    def __init__(
        self,
        channels: int,
        hidden: int,
        blocks: int,
        net: str,
        num_mixtures: int,
        data_levels: int,
        arithmetic: str = "float",
    ) -> None:
        super().__init__()
        if channels < 2:
            raise ValueError(f"MixtureSplitPrior: needs at least 2 channels to split, got {channels}")
        self.keep = channels // 2
        self.factor = channels - self.keep
        self.num_mixtures = num_mixtures
        self.data_levels = data_levels
        self.integer = arithmetic == "integer"
        c_out = 3 * self.factor * num_mixtures
        self.net = _make_net(net, self.keep, c_out, hidden, blocks, arithmetic, idf_integer.FIXED_POINT_LIMIT)
        if not self.integer:
            with torch.no_grad():
                self.net[-1].bias.copy_(_mixture_bias(self.factor, num_mixtures).flatten())

    def params(self, kept: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        if self.integer:  # fixed-point (mu, log_scale, logit_pi), exactly as floats
            out = self.net(int16_input(kept)).to(kept.dtype) * 2.0**-FRACTION_BITS
        else:
            out = self.run_float_net(self.net, kept * (1.0 / self.data_levels))
        n, _, height, width = out.shape
        # [N, 3 * F * K, h, w] -> [3, N, F, h, w, K]
        raw = out.reshape(n, 3, self.factor, self.num_mixtures, height, width).permute(1, 0, 2, 4, 5, 3)
        params = raw if self.integer else _to_params(raw, self.data_levels)
        return tuple(p.contiguous() for p in params)

    @torch.no_grad()
    def load_integer(self, source: MixtureSplitPrior) -> None:
        """Quantize ``source``'s float net (calibrated) into this integer prior's net."""
        offset = math.log(self.data_levels) + _LOG_SCALE_OFFSET
        scale, shift = idf_integer.prior_output_units(self.factor, self.num_mixtures, self.data_levels, offset)
        self.net.load_float(
            source.net, source.ranges, input_scale=1.0 / self.data_levels, output_scale=scale, output_offset=shift
        )


class TopPrior(nn.Module):
    """The prior of the top latent ``[C, h, w]``: a mixture of ``K`` discretized logistics with learned
    parameters per channel and position (the same for every image)."""

    def __init__(self, shape: tuple[int, int, int], num_mixtures: int, data_levels: int) -> None:
        super().__init__()
        channels, height, width = shape
        self.data_levels = data_levels
        bias = _mixture_bias(channels, num_mixtures)  # [3, C, K]
        raw = bias[:, :, None, None, :].expand(3, channels, height, width, num_mixtures)
        self.raw = nn.Parameter(raw.to(torch.get_default_dtype()).clone())

    def params(self, n: int) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        return tuple(p.expand(n, *p.shape).contiguous() for p in _to_params(self.raw, self.data_levels))


# ---------------------------------------------------------------------------------------------------
# The model


#: the range of every whole-number argument of :class:`IDF`: a config comes from files (checkpoints, the
#: header of a codec file), and is checked before anything is built from it
ARCHITECTURE_LIMITS: dict[str, tuple[int, int]] = {
    "in_channels": (1, 64),
    "height": (1, 4096),
    "width": (1, 4096),
    "num_scales": (1, 8),
    "steps_per_scale": (1, 64),
    "hidden": (1, 1024),
    "blocks": (0, 16),
    "num_mixtures": (1, 16),
    "data_levels": (2, 1 << 16),
    "coding_batch": (1, 4096),
}
#: the most parameters an IDF may have (about 400 MB in float32)
MAX_PARAMETERS = 10**8


#: the arguments whose names in a stored config are frozen (the config is hashed into every codec file's fingerprint)
_STORED_NAMES = {"num_scales": "levels", "steps_per_scale": "depth", "num_mixtures": "n_mixtures"}


def _check_architecture(arguments: dict) -> None:
    """ValueError, before any module is built, for an argument of the wrong type or outside
    :data:`ARCHITECTURE_LIMITS`, or an architecture of more than :data:`MAX_PARAMETERS` parameters."""
    for argument, (low, high) in ARCHITECTURE_LIMITS.items():
        value = arguments[argument]
        stored = _STORED_NAMES.get(argument)
        name = argument if stored is None else f"{argument} ({stored!r} in a stored config)"
        if isinstance(value, bool) or not isinstance(value, int):
            raise ValueError(f"IDF: {name} must be a whole number, got {value!r}")
        if not low <= value <= high:
            raise ValueError(f"IDF: {name} must be in [{low}, {high}], got {value}")
    hidden, blocks = arguments["hidden"], arguments["blocks"]

    def net(c_in: int, c_out: int) -> int:  # an upper bound of make_net's parameters (either kind)
        return 9 * c_in * hidden + blocks * 10 * (hidden + blocks * hidden) ** 2 + 9 * hidden * c_out + 10 * hidden

    channels, total = arguments["in_channels"], 0
    for level in range(arguments["num_scales"]):
        channels *= 4
        total += arguments["steps_per_scale"] * net(channels, channels)
        if level < arguments["num_scales"] - 1:
            total += net(channels, 3 * channels * arguments["num_mixtures"])
            channels -= channels // 2
    if total > MAX_PARAMETERS:
        raise ValueError(f"IDF: this architecture has up to {total} parameters, more than {MAX_PARAMETERS}")


class IDF(Checkpointable, nn.Module):
    """Integer Discrete Flow on images ``[N, C, H, W]`` of integers ``0 .. data_levels - 1`` (see the module doc).

    Args:
        in_channels, height, width: the patch shape the model is built for (:attr:`patch_shape`); H and W
            must be divisible by ``2 ** num_scales``.
        num_scales: squeeze-and-split scales; a factor-out with a split prior after each but the last.
        steps_per_scale: couplings per scale (each preceded by a channel permutation).
        hidden, blocks: width and number of residual blocks / dense layers of every network.
        num_mixtures: K, logistic components of every prior (at most 16 for ``flowkernels.ops.rans``).
        net: ``"resnet"`` or ``"densenet"`` (translation and split-prior networks).
        permutation: ``"random"`` or ``"reverse"``.
        data_levels: number of grey levels (256 for 8-bit pixels, 17 for the digits); the data are centred by
            subtracting ``data_levels // 2`` (an integer shift, so a bijection) and networks work in units of
            ``data_levels``.
        coding_batch: in eval mode and in the coding methods every network runs on chunks of exactly this
            many samples (:func:`run_net`), so results do not depend on the batch.
        arithmetic: ``"float"`` (trainable) or ``"integer"`` (integer-only ``resnet`` networks, made by
            :meth:`to_integer`; recorded in :attr:`config` only when integer).

    Data go in as integer-valued floats of the model's dtype (or any integer dtype, converted). Map:
    ``latents = model(x)`` (a list in decode order, see below), ``x = model.inverse(latents)``, exact.
    Likelihood: :meth:`log_prob` (natural log, ``[N]``), :meth:`bits_per_dim`.

    **The coding interface** (what ``flowkernels.codec`` relies on):

    * ``encode_latents(x) -> list[LatentStep]``, for ``x`` of shape ``[N, *patch_shape]``, in DECODE ORDER:
      the top latent first, then the latent factored out at the deepest split, ..., the first split's
      latent last. Step ``i`` has ``z`` ``[N, *S_i]`` (integer-valued, model dtype) and ``mu``,
      ``log_scale``, ``logit_pi`` ``[N, *S_i, K]``, contiguous, with ``S_i = (C_i, h_i, w_i)``
      (:meth:`latent_shapes`). ``sum_i discretized_logistic_logp(z_i, mu_i, log_scale_i, logit_pi_i)``,
      summed per image, is :meth:`log_prob` (to the bit in eval mode, which runs the same computation;
      in training mode networks see the whole batch, which changes float results in the last bits).
    * ``decode_latents(n, pop) -> x`` ``[n, *patch_shape]`` (integer-valued, model dtype): for each step in
      the same order it computes ``(mu, log_scale, logit_pi)`` ``[n, *S_i, K]`` (the top prior's are
      constants; a split prior's come from the kept channels that inverting the higher scales produced),
      calls ``z = pop(mu, log_scale, logit_pi)``, which must return the integer latent ``[n, *S_i]`` (any
      float or integer dtype; converted to the model's), and continues.
    * The parameters given to ``pop`` are bit-identical (``torch.equal``) to those ``encode_latents``
      returned for the same images, whatever the batch sizes and the order of images on either side:
      both run under ``torch.no_grad``, through the same functions, with every network on chunks of
      ``coding_batch`` samples. For a float model this holds on one machine and torch build with the
      same dtype and device (float results of convolutions may differ between CPUs, thread libraries
      or a GPU); an integer model (``arithmetic="integer"``, :mod:`.idf_integer`) computes them in
      integers and holds it everywhere (``portable``, ``batch_invariant``).
    * :attr:`patch_shape` ``(C, H, W)``; :attr:`config`, a dict of plain numbers and strings with
      ``IDF(**IDF.arguments_from_config(config))`` rebuilding the architecture (then ``load_state_dict`` the
      weights). Three of its keys keep their first names, ``levels`` (``num_scales``), ``depth``
      (``steps_per_scale``) and ``n_mixtures`` (``num_mixtures``), because the config is hashed into the model
      fingerprint of every codec file.

    Example (an untrained model: the map to latents is a bijection on integers whatever the weights):
        >>> import torch
        >>> from flowkernels.models.idf import IDF
        >>> _ = torch.manual_seed(0)
        >>> model = IDF(1, 8, 8, data_levels=256, num_scales=2, steps_per_scale=1, hidden=8).eval()
        >>> x = torch.randint(0, 256, (2, 1, 8, 8)).float()
        >>> latents = model(x)
        >>> [tuple(z.shape) for z in latents]
        [(2, 8, 2, 2), (2, 2, 4, 4)]
        >>> torch.equal(model.inverse(latents), x)
        True
        >>> model.bits_per_dim(x).shape
        torch.Size([2])
    """

    STORED_NAMES = _STORED_NAMES

    def __init__(
        self,
        in_channels: int = 1,
        height: int = 8,
        width: int = 8,
        *,
        num_scales: int = 2,
        steps_per_scale: int = 4,
        hidden: int = 64,
        blocks: int = 1,
        num_mixtures: int = 5,
        net: str = "resnet",
        permutation: str = "random",
        data_levels: int = 256,
        coding_batch: int = 16,
        arithmetic: str = "float",
    ) -> None:
        super().__init__()
        _check_architecture(locals())
        if height % 2**num_scales or width % 2**num_scales:
            raise ValueError(
                f"IDF: height and width must be divisible by 2**num_scales = {2**num_scales}, got {height}x{width}"
            )
        if data_levels < 2:
            raise ValueError(f"IDF: data_levels must be at least 2, got {data_levels}")
        if net not in NETS:
            raise ValueError(f"IDF: net must be one of {NETS}, got {net!r}")
        if arithmetic not in ARITHMETICS:
            raise ValueError(f"IDF: arithmetic must be one of {ARITHMETICS}, got {arithmetic!r}")
        if arithmetic == "integer" and net != "resnet":
            raise ValueError(
                f"IDF: integer arithmetic needs net='resnet' (the only net with an integer form), got {net!r}"
            )
        self.config = {
            "in_channels": in_channels,
            "height": height,
            "width": width,
            # num_scales, steps_per_scale and num_mixtures keep their first names here (STORED_NAMES): the config
            # is hashed into every codec file's model fingerprint.
            "levels": num_scales,
            "depth": steps_per_scale,
            "hidden": hidden,
            "blocks": blocks,
            "n_mixtures": num_mixtures,
            "net": net,
            "permutation": permutation,
            "data_levels": data_levels,
            "coding_batch": coding_batch,
        }
        if arithmetic != "float":  # float models keep the config (and fingerprint) they always had
            self.config["arithmetic"] = arithmetic
        self.integer = arithmetic == "integer"
        self.shift = data_levels // 2
        self.num_mixtures = num_mixtures
        self.coding_batch = coding_batch
        self.blocks = nn.ModuleList()
        self.splits = nn.ModuleList()
        channels, h, w = in_channels, height, width
        for level in range(num_scales):
            channels, h, w = channels * 4, h // 2, w // 2
            steps = []
            for _ in range(steps_per_scale):
                steps.append(ChannelPermutation(channels, permutation))
                steps.append(IntegerCoupling(channels, hidden, blocks, net, data_levels, arithmetic))
            self.blocks.append(FlowSequential(Squeeze(), *steps))
            if level < num_scales - 1:
                split = MixtureSplitPrior(channels, hidden, blocks, net, num_mixtures, data_levels, arithmetic)
                self.splits.append(split)
                channels = split.keep
        if self.integer:
            self.top = IntegerTopPrior((channels, h, w), num_mixtures)
        else:
            self.top = TopPrior((channels, h, w), num_mixtures, data_levels)

    # -- shapes and modes ---------------------------------------------------------------------------

    @classmethod
    def from_checkpoint(cls, path: str | os.PathLike, *, map_location: str | torch.device = "cpu") -> IDF:
        """The IDF saved at ``path`` (:meth:`save`, :func:`train_idf`), in eval mode; ``path`` may also be the name
        of a shipped model (``"digits"``, ``"photos-gray"``, ...: :data:`flowkernels.pretrained.SHIPPED`), and an
        existing file of that name wins. Read with ``weights_only=True`` and validated
        (:mod:`flowkernels.models.checkpoint`): a bad file is a one-line ValueError."""
        from .. import pretrained

        if isinstance(path, str) and path in pretrained.SHIPPED and not Path(path).exists():
            path = pretrained.checkpoint_path(path)
        return super().from_checkpoint(path, map_location=map_location)

    @property
    def patch_shape(self) -> tuple[int, int, int]:
        return (self.config["in_channels"], self.config["height"], self.config["width"])

    @property
    def num_scales(self) -> int:
        return len(self.blocks)

    def latent_shapes(self) -> list[tuple[int, int, int]]:
        """``S_i`` of each latent, in decode order (top first)."""
        channels, h, w = self.patch_shape
        shapes = []
        for level in range(self.num_scales):
            channels, h, w = channels * 4, h // 2, w // 2
            if level < len(self.splits):
                shapes.append((channels - channels // 2, h, w))
                channels //= 2
        return [(channels, h, w), *reversed(shapes)]

    def _set_chunk(self, chunk: int | None) -> None:
        for module in self.modules():
            if isinstance(module, _Chunked):
                module.chunk = chunk

    def train(self, mode: bool = True) -> IDF:
        """As ``nn.Module.train``; in eval mode networks also run on fixed chunks (see ``coding_batch``)."""
        super().train(mode)
        self._set_chunk(None if mode else self.coding_batch)
        return self

    @contextlib.contextmanager
    def _coding(self) -> Iterator[None]:
        """Chunked networks and no autograd for the duration (whatever the mode)."""
        self._set_chunk(self.coding_batch)
        try:
            with torch.no_grad():
                yield
        finally:
            self._set_chunk(None if self.training else self.coding_batch)

    @property
    def _anchor(self) -> torch.Tensor:
        """The tensor whose dtype and device are the model's: the top prior's (float) parameters."""
        return self.top.unit if self.integer else self.top.raw

    @property
    def dtype(self) -> torch.dtype:
        return self._anchor.dtype

    @property
    def device(self) -> torch.device:
        return self._anchor.device

    @property
    def portable(self) -> bool:
        """Integer networks compute every number a decoder recomputes exactly, on any machine (the codec's
        interface): files coded with an integer IDF decode everywhere."""
        return self.integer

    @property
    def batch_invariant(self) -> bool:
        """Integer networks give every patch the same bits whatever the batch (see the codec's interface)."""
        return self.integer

    def _prepare(self, x: torch.Tensor, name: str, *, patch: bool) -> torch.Tensor:
        if x.dim() != 4 or x.shape[1] != self.patch_shape[0]:
            raise ValueError(f"IDF.{name}: x must be [N, {self.patch_shape[0]}, H, W], got {list(x.shape)}")
        if patch and tuple(x.shape[1:]) != self.patch_shape:
            raise ValueError(f"IDF.{name}: x must be [N, *{self.patch_shape}], got {list(x.shape)}")
        if x.dtype.is_floating_point:
            if x.dtype != self.dtype:
                raise ValueError(f"IDF.{name}: x must be {self.dtype} like the model (or integers), got {x.dtype}")
        elif x.dtype == torch.bool or x.dtype.is_complex:
            raise ValueError(f"IDF.{name}: x must hold integers, got {x.dtype}")
        else:
            x = x.to(self.dtype)
        return x.to(self.device)

    # -- the bijection ------------------------------------------------------------------------------

    def _analyse(self, x: torch.Tensor, with_params: bool) -> list[tuple[torch.Tensor, tuple | None]]:
        """``[(z_i, params_i or None)]`` in decode order, for prepared ``x``."""
        x = x - self.shift
        factored = []
        for level, block in enumerate(self.blocks):
            x, _ = block(x)
            if level < len(self.splits):
                split = self.splits[level]
                kept, z = x[:, : split.keep], x[:, split.keep :]
                factored.append((z, split.params(kept) if with_params else None))
                x = kept
        top = (x, self.top.params(x.shape[0]) if with_params else None)
        return [top, *reversed(factored)]

    def forward(self, x: torch.Tensor) -> list[torch.Tensor]:
        """Map integer images ``x`` ``[N, C, H, W]`` to their integer latents, in decode order (top first)."""
        return [z for z, _ in self._analyse(self._prepare(x, "forward", patch=False), False)]

    def inverse(self, zs: list[torch.Tensor]) -> torch.Tensor:
        """Map the latents of :meth:`forward` back to the images, exactly."""
        if len(zs) != self.num_scales:
            raise ValueError(f"IDF.inverse: expected {self.num_scales} latents, got {len(zs)}")
        x = zs[0]
        for level in reversed(range(self.num_scales)):
            if level < len(self.splits):
                x = torch.cat([x, zs[len(self.splits) - level]], dim=1)
            x = self.blocks[level].inverse(x)
        return x + self.shift

    # -- likelihood ---------------------------------------------------------------------------------

    def log_prob(self, x: torch.Tensor) -> torch.Tensor:
        """Natural-log probability of the integer images ``x`` ``[N, *patch_shape]``: shape ``[N]``.

        The sum over latents of their discretized-logistic log-probabilities (no Jacobian: the map is a
        volume-preserving bijection of ``Z^d``).
        """
        total = 0
        for z, (mu, log_scale, logit_pi) in self._analyse(self._prepare(x, "log_prob", patch=True), True):
            total = total + discretized_logistic_logp(z, mu, log_scale, logit_pi).flatten(1).sum(1)
        return total

    def bits_per_dim(self, x: torch.Tensor) -> torch.Tensor:
        """``-log2 P(x) / (C H W)`` per image, shape ``[N]``: the ideal code length of a lossless coder."""
        return -self.log_prob(x) / (math.prod(self.patch_shape) * math.log(2))

    def evaluate_bpd(self, x: torch.Tensor, *, batch_size: int = 256, rank: int = 0, world_size: int = 1) -> float:
        """Mean bits/dim of the integer images ``x``, in eval mode (exact: IDF needs no dequantization noise).

        With ``world_size > 1`` (an initialised process group) each rank scores ``x[rank::world_size]`` and the
        sums are all-reduced, so every rank returns the same number.
        """
        all_reduce = sum_over_processes(self.device, world_size)
        with evaluating(self):
            return mean_over(x, self.bits_per_dim, batch_size, rank=rank, world_size=world_size, all_reduce=all_reduce)

    # -- integer arithmetic (see flowkernels.models.idf_integer) --------------------------------------

    def _net_owners(self) -> list[_Chunked]:
        return [module for module in self.modules() if isinstance(module, (IntegerCoupling, MixtureSplitPrior))]

    @property
    def quantization_aware(self) -> bool:
        """Whether the float networks run as their integer forms will (after :meth:`calibrate`)."""
        return any(owner.ranges is not None for owner in self._net_owners())

    @torch.no_grad()
    def calibrate(self, x: torch.Tensor, *, batch_size: int = 64) -> IDF:
        """Record every network activation's range on the integer images ``x`` (training data), then run
        the networks with fake quantization from now on (quantization-aware training). Float models only."""
        if self.integer:
            raise ValueError("IDF.calibrate: this model is already integer")
        if self.config["net"] != "resnet":
            raise ValueError(f"IDF.calibrate: only net='resnet' has an integer form, got {self.config['net']!r}")
        owners = self._net_owners()
        for owner in owners:
            owner.ranges, owner.observing = ActivationRanges(), True
        try:
            for start in range(0, x.shape[0], batch_size):
                self.log_prob(x[start : start + batch_size])
        finally:
            for owner in owners:
                owner.observing = False
        return self

    @torch.no_grad()
    def to_integer(self) -> IDF:
        """The integer form of this calibrated float model: a new ``IDF(arithmetic="integer")`` in eval mode
        on this model's device, whose every network is integer-only (see :mod:`.idf_integer`)."""
        if not self.quantization_aware:
            raise ValueError("IDF.to_integer: call calibrate(training images) first (and fine-tune, ideally)")
        integer = IDF(**IDF.arguments_from_config({**self.config, "arithmetic": "integer"})).to(self.device)
        kinds = (ChannelPermutation, IntegerCoupling, MixtureSplitPrior)  # the same sequence in both models
        pairs = zip(
            [m for m in self.modules() if isinstance(m, kinds)],
            [m for m in integer.modules() if isinstance(m, kinds)],
            strict=True,
        )
        for mine, theirs in pairs:
            if isinstance(mine, ChannelPermutation):
                theirs.load_state_dict(mine.state_dict())
            else:
                theirs.load_integer(mine)
        integer.top.load_params(_to_params(self.top.raw, self.config["data_levels"]))
        return integer.to(self.dtype).eval()

    # -- coding -------------------------------------------------------------------------------------

    def encode_latents(self, x: torch.Tensor) -> list[LatentStep]:
        """The latents of ``x`` ``[N, *patch_shape]`` and their priors' parameters, in decode order (class doc)."""
        with self._coding():
            steps = self._analyse(self._prepare(x, "encode_latents", patch=True), True)
        return [LatentStep(z, *params) for z, params in steps]

    def decode_latents(
        self, n: int, pop: Callable[[torch.Tensor, torch.Tensor, torch.Tensor], torch.Tensor]
    ) -> torch.Tensor:
        """Decode ``n`` images by calling ``pop(mu, log_scale, logit_pi) -> z`` once per latent (see the class doc)."""
        if n < 1:
            raise ValueError(f"IDF.decode_latents: n must be positive, got {n}")
        shapes = self.latent_shapes()

        def popped(index: int, params: tuple[torch.Tensor, torch.Tensor, torch.Tensor]) -> torch.Tensor:
            z = pop(*params)
            expected = (n, *shapes[index])
            if not isinstance(z, torch.Tensor) or tuple(z.shape) != expected:
                got = list(z.shape) if isinstance(z, torch.Tensor) else type(z).__name__
                raise ValueError(f"IDF.decode_latents: pop must return a tensor of shape {list(expected)}, got {got}")
            return z.to(device=params[0].device, dtype=self.dtype)

        with self._coding():
            x = popped(0, self.top.params(n))
            for level in reversed(range(self.num_scales)):
                if level < len(self.splits):
                    z = popped(len(self.splits) - level, self.splits[level].params(x))
                    x = torch.cat([x, z], dim=1)
                x = self.blocks[level].inverse(x)
            return x + self.shift


def load_idf(path: str | Path, *, map_location: str | torch.device = "cpu") -> IDF:
    """Deprecated name of :meth:`IDF.from_checkpoint` (the README's first examples used it)."""
    warnings.warn(
        "load_idf is deprecated: use IDF.from_checkpoint(path_or_name)", DeprecationWarning, stacklevel=2
    )
    return IDF.from_checkpoint(path, map_location=map_location)
