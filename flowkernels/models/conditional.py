"""Conditional normalizing flows: p(y | x) for super-resolution and binary segmentation (arXiv:1912.00042).

"Learning Likelihoods with Conditional Normalizing Flows" (Winkler, Worrall, Hoogeboom & Welling 2019) models
the output ``y`` of a structured prediction task given its input ``x`` with a multi-scale Glow whose couplings
and priors see features of ``x``. The likelihood stays exact (a change of variables in ``y`` for every fixed
``x``), samples are diverse, and the "mode-like" sample with all latents zero is a good point prediction:

    features = condition_net(x)                       once; resized to each level's height and width
    per level:  Squeeze -> steps x (ActNorm -> invertible conv -> ConditionalCoupling) -> ConditionalSplitPrior
    top:        ConditionalTopPrior                    a Gaussian whose mean and scale come from the features

Only the couplings, the priors and an optional ``base`` (``y`` is modelled as ``base(x)`` plus a residual, e.g.
the bicubic up-sampling of ``x`` in super-resolution) depend on ``x``, so ``z = f(y; x)`` is invertible in ``y``
and ``log p(y | x) = log N(z; 0, I) + log |det df/dy|``. As in :class:`~flowkernels.models.glow.Glow`, the
priors are written as standard normals behind affine maps, so :meth:`ConditionalFlow.forward` returns
standard-normal latents and one log-determinant; :meth:`ConditionalFlow.sample` scales those latents by a
temperature ``tau`` (``tau = 0``: every latent at its prior mean). All log-scales are soft-clamped
(:func:`soft_clamp`) so that sampling at ``tau`` near 1 cannot overflow.

Two uses of it, as in the paper:

* 8-bit images (super-resolution): uniform dequantization, :meth:`ConditionalFlow.bits_per_dim`.
* binary images (segmentation): :class:`BinaryDequantizer`, a variational dequantization whose continuous
  ``v`` lies above 0.5 exactly where ``y`` is 1, so the flow's density of ``v`` gives a lower bound on the
  probability of the binary ``y``.

Also here: a default conditioning network (:class:`ConditionNet`) and the area down-sampling that defines the
super-resolution task (:func:`downsample`). The factorised baselines the paper compares with are in
:mod:`flowkernels.models.conditional_baselines`; training and evaluation in
:mod:`flowkernels.models.conditional_training`.
"""

from __future__ import annotations

import math
from collections.abc import Callable

import torch
import torch.nn.functional as F
from torch import nn

from .._deprecation import renamed_keywords
from ..nn import ActNorm, FlowSequential, Squeeze
from ..nn.flow import soft_clamp, zero_conv
from .bounds import iw_bound
from .dequantization import UniformDequantizer
from .distributions import standard_normal_log_prob
from .glow import CONV_KINDS, make_invertible_conv, multiscale_latent_shapes
from .noise import portable_randn

__all__ = [
    "BinaryDequantizer",
    "ConditionNet",
    "ConditionalCoupling",
    "ConditionalFlow",
    "ConditionalLoss",
    "ConditionalModel",
    "ConditionalSplitPrior",
    "ConditionalStep",
    "ConditionalTopPrior",
    "check_binary",
    "Upsample",
    "downsample",
    "resize_features",
]

#: A per-sample loss of a conditional model: ``loss(model, y, x, generator)`` -> bits/dim, shape ``[B]``.
ConditionalLoss = Callable[[nn.Module, torch.Tensor, torch.Tensor, torch.Generator], torch.Tensor]


def _check_features(layer: str, y: torch.Tensor, features: torch.Tensor, feature_channels: int) -> None:
    """Raise a ValueError naming ``layer`` unless ``features`` is ``[B, feature_channels, H, W]`` like ``y``."""
    expected = [y.shape[0], feature_channels, *y.shape[2:]]
    if list(features.shape) != expected:
        raise ValueError(
            f"{layer}: features must be {expected} for an input of {list(y.shape)}, got {list(features.shape)}"
        )


def resize_features(features: torch.Tensor, size: tuple[int, int]) -> torch.Tensor:
    """``features`` ``[B, F, h, w]`` resized to ``size`` = ``(H, W)``: area averaging down, bilinear up.

    Averaging (rather than striding) when shrinking keeps every input pixel's evidence at the coarse levels;
    bilinear interpolation when growing gives smooth features rather than nearest-neighbour blocks.
    """
    height, width = features.shape[-2:]
    if (height, width) == tuple(size):
        return features
    if height >= size[0] and width >= size[1]:
        return F.adaptive_avg_pool2d(features, size)
    return F.interpolate(features, size=size, mode="bilinear", align_corners=False)


def downsample(y_int: torch.Tensor, scale: int, data_levels: int = 256) -> torch.Tensor:
    """The low-resolution input of super-resolution: ``y_int`` averaged over ``scale x scale`` blocks, rounded.

    Area down-sampling followed by quantisation to ``data_levels`` integer levels (``torch.round``, half to even),
    so the input is itself an 8-bit image. Returns int64 ``[B, C, H / scale, W / scale]``.
    """
    if y_int.dim() != 4 or y_int.shape[2] % scale or y_int.shape[3] % scale:
        raise ValueError(
            f"downsample: y must be [B, C, H, W] with H and W divisible by {scale}, got {list(y_int.shape)}"
        )
    return torch.round(F.avg_pool2d(y_int.double(), scale)).clamp(0, data_levels - 1).long()


class ConditionNet(nn.Module):
    """The default conditioning network: a small residual CNN at the resolution of ``x``.

    ``conv3x3(in -> hidden)``, ``blocks`` residual blocks ``h + conv3x3(relu(conv3x3(relu(h))))``, then
    ``conv3x3(relu(h)) -> out_channels``. The flow resizes its output to every level
    (:func:`resize_features`), so the net itself needs no knowledge of the flow. ``in_channels`` and
    ``out_channels`` are attributes that :class:`ConditionalFlow` and the baselines read.
    """

    def __init__(self, in_channels: int, out_channels: int, hidden: int = 32, blocks: int = 2) -> None:
        super().__init__()
        if min(in_channels, out_channels, hidden) < 1 or blocks < 0:
            raise ValueError(
                f"ConditionNet: channels must be positive and blocks non-negative, got in_channels={in_channels}, "
                f"out_channels={out_channels}, hidden={hidden}, blocks={blocks}"
            )
        self.in_channels = in_channels
        self.out_channels = out_channels
        self.stem = nn.Conv2d(in_channels, hidden, kernel_size=3, padding=1)
        self.blocks = nn.ModuleList(
            nn.Sequential(
                nn.ReLU(),
                nn.Conv2d(hidden, hidden, kernel_size=3, padding=1),
                nn.ReLU(),
                nn.Conv2d(hidden, hidden, kernel_size=3, padding=1),
            )
            for _ in range(blocks)
        )
        self.head = nn.Sequential(nn.ReLU(), nn.Conv2d(hidden, out_channels, kernel_size=3, padding=1))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        h = self.stem(x)
        for block in self.blocks:
            h = h + block(h)
        return self.head(h)


class Upsample(nn.Module):
    """``x`` interpolated ``scale`` times (``F.interpolate``, bicubic by default) plus ``shift``: a ``base`` for
    super-resolution models. ``shift`` undoes a centring of the input (0.5 for inputs in [-0.5, 0.5])."""

    def __init__(self, scale: int, mode: str = "bicubic", shift: float = 0.0) -> None:
        super().__init__()
        if scale < 1:
            raise ValueError(f"Upsample: scale must be positive, got {scale}")
        self.scale, self.mode, self.shift = scale, mode, shift

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if self.scale == 1:
            return x + self.shift
        align = None if self.mode in ("nearest", "area") else False
        return F.interpolate(x, scale_factor=self.scale, mode=self.mode, align_corners=align) + self.shift


class ConditionalCoupling(nn.Module):
    """Glow's affine coupling whose network also sees features of ``x``: ``z_b = (y_b + shift) * scale``.

    ``y = [y_a, y_b]`` with ``y_a`` the first ``C // 2`` channels; ``(shift, raw) = net([y_a, features])`` with the
    network of :class:`~flowkernels.nn.AffineCoupling` (zero-initialised last conv, so the layer starts as the
    identity) and ``log scale = soft_clamp(raw, 2)``. Bounded both ways rather than Glow's ``sigmoid(raw + 2)``,
    which bounds the forward scale by 1 but lets the inverse (sampling) expand without limit: see
    :func:`soft_clamp`. ``y_a`` passes unchanged, so for a fixed ``x`` the layer is invertible in ``y`` with
    ``logdet = sum(log scale)`` however the features depend on ``x``.
    ``z, logdet = layer(y, features)`` and ``y = layer.inverse(z, features)``; ``features`` must have the
    height and width of ``y``.
    """

    #: The bound of the log-scale: each coupling scales by a factor in (exp(-2), exp(2)).
    max_log_scale = 2.0

    def __init__(self, channels: int, feature_channels: int, hidden: int) -> None:
        super().__init__()
        if channels < 2:
            raise ValueError(f"ConditionalCoupling: needs at least 2 channels to split, got {channels}")
        self.channels = channels
        self.feature_channels = feature_channels
        self.split = channels // 2
        self.net = nn.Sequential(
            nn.Conv2d(self.split + feature_channels, hidden, kernel_size=3, padding=1),
            nn.ReLU(),
            nn.Conv2d(hidden, hidden, kernel_size=1),
            nn.ReLU(),
            zero_conv(hidden, 2 * (channels - self.split)),
        )

    def _shift_and_log_scale(self, y_a: torch.Tensor, features: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        shift, raw = self.net(torch.cat([y_a, features], dim=1)).chunk(2, dim=1)
        return shift, soft_clamp(raw, self.max_log_scale)

    def _check(self, y: torch.Tensor, features: torch.Tensor) -> None:
        if y.dim() != 4 or y.shape[1] != self.channels:
            raise ValueError(f"ConditionalCoupling: input must be [B, {self.channels}, H, W], got {list(y.shape)}")
        _check_features("ConditionalCoupling", y, features, self.feature_channels)

    def forward(self, y: torch.Tensor, features: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        self._check(y, features)
        y_a, y_b = y[:, : self.split], y[:, self.split :]
        shift, log_scale = self._shift_and_log_scale(y_a, features)
        return torch.cat([y_a, (y_b + shift) * torch.exp(log_scale)], dim=1), log_scale.flatten(1).sum(1)

    def inverse(self, z: torch.Tensor, features: torch.Tensor) -> torch.Tensor:
        self._check(z, features)
        z_a, z_b = z[:, : self.split], z[:, self.split :]
        shift, log_scale = self._shift_and_log_scale(z_a, features)
        return torch.cat([z_a, z_b * torch.exp(-log_scale) - shift], dim=1)


class ConditionalStep(nn.Module):
    """One flow step: ActNorm, an invertible conv ("1x1", "emerging" or "periodic"), a conditional coupling.

    The first two do not depend on ``x`` and are the layers of :mod:`flowkernels.nn` as they are.
    """

    def __init__(self, channels: int, feature_channels: int, hidden: int, conv: str, kernel_size: int) -> None:
        super().__init__()
        self.mix = FlowSequential(ActNorm(channels), make_invertible_conv(conv, channels, kernel_size))
        self.coupling = ConditionalCoupling(channels, feature_channels, hidden)

    def forward(self, y: torch.Tensor, features: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        h, logdet = self.mix(y)
        z, coupling_logdet = self.coupling(h, features)
        return z, logdet + coupling_logdet

    def inverse(self, z: torch.Tensor, features: torch.Tensor) -> torch.Tensor:
        return self.mix.inverse(self.coupling.inverse(z, features))


class ConditionalModelGaussian(nn.Module):
    """A diagonal Gaussian whose mean and log-scale a small network computes from ``inputs``.

    ``net = conv3x3 -> ReLU -> zero-initialised conv3x3``: it starts as N(0, I) whatever the inputs, like
    Glow's split prior. :meth:`standardise` returns ``eps = (z - mean) * exp(-log_scale)`` and its
    log-determinant ``-sum(log_scale)``; :meth:`unstandardise` maps ``eps`` back. The log-scale is
    :func:`soft_clamp`-ed to ``(-6, 6)``: room for sharp conditionals, no overflow when sampling.
    """

    max_log_scale = 6.0

    def __init__(self, in_channels: int, out_channels: int, hidden: int) -> None:
        super().__init__()
        self.net = nn.Sequential(
            nn.Conv2d(in_channels, hidden, kernel_size=3, padding=1), nn.ReLU(), zero_conv(hidden, 2 * out_channels)
        )

    def _mean_and_log_scale(self, inputs: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        mean, raw = self.net(inputs).chunk(2, dim=1)
        return mean, soft_clamp(raw, self.max_log_scale)

    def standardise(self, z: torch.Tensor, inputs: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        mean, log_scale = self._mean_and_log_scale(inputs)
        return (z - mean) * torch.exp(-log_scale), -log_scale.flatten(1).sum(1)

    def unstandardise(self, eps: torch.Tensor, inputs: torch.Tensor) -> torch.Tensor:
        mean, log_scale = self._mean_and_log_scale(inputs)
        return eps * torch.exp(log_scale) + mean


class ConditionalSplitPrior(ConditionalModelGaussian):
    """Glow's split with a conditional prior: ``y = [h, z]``, ``z ~ N(mean, exp(log_scale)^2)`` from ``[h, features]``.

    The interface of :class:`~flowkernels.models.glow.SplitPrior` with the features as an extra argument:
    ``h, eps, logdet = prior(y, features)`` (``eps`` standard normal under the prior) and
    ``y = prior.inverse(h, eps, features)``. At ``eps = 0`` the factored-out half is the prior mean given the
    kept half and ``x``, which is what the mode-like sample of :meth:`ConditionalFlow.sample` uses.
    """

    def __init__(self, channels: int, feature_channels: int, hidden: int) -> None:
        if channels < 2 or channels % 2:
            raise ValueError(f"ConditionalSplitPrior: channels must be even and at least 2, got {channels}")
        self.keep = channels // 2
        super().__init__(self.keep + feature_channels, channels - self.keep, hidden)
        self.channels = channels
        self.feature_channels = feature_channels

    def forward(self, y: torch.Tensor, features: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        if y.dim() != 4 or y.shape[1] != self.channels:
            raise ValueError(f"ConditionalSplitPrior: input must be [B, {self.channels}, H, W], got {list(y.shape)}")
        _check_features("ConditionalSplitPrior", y, features, self.feature_channels)
        h, z = y[:, : self.keep], y[:, self.keep :]
        eps, logdet = self.standardise(z, torch.cat([h, features], dim=1))
        return h, eps, logdet

    def inverse(self, h: torch.Tensor, eps: torch.Tensor, features: torch.Tensor) -> torch.Tensor:
        _check_features("ConditionalSplitPrior.inverse", h, features, self.feature_channels)
        return torch.cat([h, self.unstandardise(eps, torch.cat([h, features], dim=1))], dim=1)


class ConditionalTopPrior(ConditionalModelGaussian):
    """The prior of the top level: ``z ~ N(mean(features), exp(log_scale(features))^2)`` per element.

    Nothing is kept at the top, so the mean and scale come from the features of ``x`` alone (the
    unconditional Glow's learned per-channel Gaussian is the special case of constant features).
    ``eps, logdet = prior(z, features)`` and ``z = prior.inverse(eps, features)``.
    """

    def __init__(self, channels: int, feature_channels: int, hidden: int) -> None:
        super().__init__(feature_channels, channels, hidden)
        self.channels = channels
        self.feature_channels = feature_channels

    def forward(self, z: torch.Tensor, features: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        if z.dim() != 4 or z.shape[1] != self.channels:
            raise ValueError(f"ConditionalTopPrior: input must be [B, {self.channels}, H, W], got {list(z.shape)}")
        _check_features("ConditionalTopPrior", z, features, self.feature_channels)
        return self.standardise(z, features)

    def inverse(self, eps: torch.Tensor, features: torch.Tensor) -> torch.Tensor:
        _check_features("ConditionalTopPrior.inverse", eps, features, self.feature_channels)
        return self.unstandardise(eps, features)


def _feature_channels(condition_net: nn.Module, feature_channels: int | None, owner: str) -> int:
    """``feature_channels`` if given, else ``condition_net.out_channels``; a ValueError if neither exists."""
    if feature_channels is None:
        feature_channels = getattr(condition_net, "out_channels", None)
    if not isinstance(feature_channels, int) or feature_channels < 1:
        raise ValueError(
            f"{owner}: feature_channels must be a positive int (or condition_net must have an int out_channels), "
            f"got {feature_channels!r}"
        )
    return feature_channels


class ConditionalModel(nn.Module):
    """What every model of p(y | x) here shares: the conditioning network and the checks of ``x`` against ``y``.

    ``y`` is ``[B, in_channels, H, W]`` and ``x`` is ``[B, C_x, H / upscale, W / upscale]`` (``C_x`` checked
    when the net has an ``in_channels`` attribute), so a mismatch fails with a message naming both shapes
    rather than somewhere inside a convolution, or worse, silently through the resizing of features.

    ``base`` (optional) is a fixed or learned function of ``x`` alone, shaped like ``y``, that the model
    predicts ``y`` relative to (see :meth:`base_of`).
    """

    def __init__(
        self,
        condition_net: nn.Module,
        in_channels: int,
        upscale: int,
        feature_channels: int | None,
        base: nn.Module | None = None,
    ) -> None:
        super().__init__()
        name = type(self).__name__
        if in_channels < 1 or upscale < 1:
            raise ValueError(f"{name}: in_channels and upscale must be positive, got {in_channels}, {upscale}")
        self.condition_net = condition_net
        self.in_channels = in_channels
        self.upscale = upscale
        self.feature_channels = _feature_channels(condition_net, feature_channels, name)
        self.base = base

    def base_of(self, x: torch.Tensor, like: torch.Tensor) -> torch.Tensor | None:
        """``base(x)``, checked to have the shape of ``like`` (a ``y``); None without a base."""
        if self.base is None:
            return None
        base = self.base(x)
        if base.shape != like.shape:
            raise ValueError(
                f"{type(self).__name__}: base must map x {list(x.shape)} to the shape of y {list(like.shape)}, "
                f"got {list(base.shape)}"
            )
        return base.to(like.dtype)

    def check_condition(self, x: torch.Tensor, size: tuple[int, int], batch: int | None = None) -> None:
        """Raise a ValueError unless ``x`` is the input for outputs of height and width ``size`` (and ``batch``)."""
        name = type(self).__name__
        x_channels = getattr(self.condition_net, "in_channels", None)
        expected_size = [size[0] // self.upscale, size[1] // self.upscale]
        if (
            x.dim() != 4
            or (batch is not None and x.shape[0] != batch)
            or (isinstance(x_channels, int) and x.shape[1] != x_channels)
            or list(x.shape[2:]) != expected_size
            or size[0] % self.upscale
            or size[1] % self.upscale
        ):
            channels = x_channels if isinstance(x_channels, int) else "C_x"
            raise ValueError(
                f"{name}: x must be [{batch if batch is not None else 'B'}, {channels}, {size[0]}/{self.upscale}, "
                f"{size[1]}/{self.upscale}] for y of height and width {list(size)} (upscale {self.upscale}), "
                f"got x of shape {list(x.shape)}"
            )

    def check_pair(self, y: torch.Tensor, x: torch.Tensor) -> None:
        """Raise a ValueError unless ``y`` and ``x`` are a valid (output, input) pair."""
        if y.dim() != 4 or y.shape[1] != self.in_channels:
            raise ValueError(f"{type(self).__name__}: y must be [B, {self.in_channels}, H, W], got {list(y.shape)}")
        self.check_condition(x, (y.shape[2], y.shape[3]), y.shape[0])

    def condition(self, x: torch.Tensor) -> torch.Tensor:
        """The conditioning network's features of ``x``, checked to have ``feature_channels`` channels."""
        features = self.condition_net(x)
        if features.dim() != 4 or features.shape[:2] != (x.shape[0], self.feature_channels):
            raise ValueError(
                f"{type(self).__name__}: condition_net must map x {list(x.shape)} to "
                f"[{x.shape[0]}, {self.feature_channels}, h, w], got {list(features.shape)}"
            )
        return features


class ConditionalFlow(ConditionalModel):
    """A multi-scale conditional Glow modelling ``p(y | x)``; see the module docstring for the architecture.

    Args:
        condition_net: maps ``x`` to features ``[B, feature_channels, h, w]`` (any ``h, w``: the flow resizes
            them to each level with :func:`resize_features`). :class:`ConditionNet` is the default choice.
        num_scales: squeeze-and-split scales; the height and width of ``y`` must be divisible by ``2 ** num_scales``.
        steps_per_scale: flow steps per scale (ActNorm, invertible conv, conditional coupling).
        in_channels: channels of ``y``.
        hidden: channels of the coupling and prior networks.
        conv: the invertible conv of every step, one of :data:`~flowkernels.models.glow.CONV_KINDS`.
        kernel_size: kernel size of the emerging/periodic convs.
        upscale: ``y`` is ``upscale`` times as high and wide as ``x`` (2 for super-resolution x2, 1 when ``x``
            and ``y`` share a grid). Checked on every call, so mismatched shapes fail clearly.
        feature_channels: channels of the features; defaults to ``condition_net.out_channels``.
        base: optional module mapping ``x`` to a tensor shaped like ``y`` (e.g. :class:`Upsample`): the flow
            then models the residual ``y - base(x)``. A shift by a function of ``x`` alone has Jacobian 1, so
            ``log p(y | x)`` stays exact; for super-resolution it starts the flow at the interpolated image, so
            training is spent on the detail that interpolation misses.

    ``y`` is continuous here; :meth:`bits_per_dim` handles integer images by uniform dequantization.

    Example (x2 super-resolution, untrained: ``y`` given ``x`` and back):
        >>> import torch
        >>> from flowkernels.models.conditional import ConditionalFlow, ConditionNet
        >>> _ = torch.manual_seed(0)
        >>> flow = ConditionalFlow(ConditionNet(1, 8), num_scales=2, steps_per_scale=1, hidden=8, upscale=2).eval()
        >>> x, y = torch.rand(2, 1, 4, 4), torch.rand(2, 1, 8, 8)
        >>> flow.log_prob(y, x).shape
        torch.Size([2])
        >>> zs, _ = flow(y, x)
        >>> torch.allclose(flow.inverse(zs, x), y, atol=1e-5)
        True
        >>> flow.sample(x, temperature=0.0).shape  # the "mode-like" sample
        torch.Size([2, 1, 8, 8])
    """

    @renamed_keywords(levels="num_scales", steps="steps_per_scale")  # the README used the old names
    def __init__(
        self,
        condition_net: nn.Module,
        num_scales: int,
        steps_per_scale: int,
        *,
        in_channels: int = 1,
        hidden: int = 64,
        conv: str = "1x1",
        kernel_size: int = 3,
        upscale: int = 1,
        feature_channels: int | None = None,
        base: nn.Module | None = None,
    ) -> None:
        super().__init__(condition_net, in_channels, upscale, feature_channels, base)
        if num_scales < 1 or steps_per_scale < 1:
            raise ValueError(
                f"ConditionalFlow: num_scales and steps_per_scale must be positive, got {num_scales}, {steps_per_scale}"
            )
        if conv not in CONV_KINDS:
            raise ValueError(f"ConditionalFlow: conv must be one of {CONV_KINDS}, got {conv!r}")
        self.conv_kind = conv
        self.squeeze = Squeeze()
        self.blocks = nn.ModuleList()
        self.splits = nn.ModuleList()
        channels = in_channels
        for level in range(num_scales):
            channels *= 4
            self.blocks.append(
                nn.ModuleList(
                    ConditionalStep(channels, self.feature_channels, hidden, conv, kernel_size)
                    for _ in range(steps_per_scale)
                )
            )
            if level < num_scales - 1:
                self.splits.append(ConditionalSplitPrior(channels, self.feature_channels, hidden))
                channels //= 2
        self.top = ConditionalTopPrior(channels, self.feature_channels, hidden)

    @property
    def num_scales(self) -> int:
        return len(self.blocks)

    def _check_y(self, y: torch.Tensor, x: torch.Tensor) -> None:
        self.check_pair(y, x)
        multiple = 2**self.num_scales
        if y.shape[2] % multiple or y.shape[3] % multiple:
            raise ValueError(
                f"ConditionalFlow: height and width of y must be divisible by 2**num_scales = {multiple}, "
                f"got {list(y.shape)}"
            )

    def level_features(self, x: torch.Tensor, size: tuple[int, int]) -> list[torch.Tensor]:
        """The features of ``x`` resized to each level of an output of height and width ``size``."""
        features = self.condition(x)
        return [
            resize_features(features, (size[0] >> (level + 1), size[1] >> (level + 1)))
            for level in range(self.num_scales)
        ]

    def forward(self, y: torch.Tensor, x: torch.Tensor) -> tuple[list[torch.Tensor], torch.Tensor]:
        """Map ``y`` given ``x`` to standard-normal latents ``(zs, logdet)``: one latent per split, one at the top."""
        self._check_y(y, x)
        features = self.level_features(x, (y.shape[2], y.shape[3]))
        base = self.base_of(x, y)
        if base is not None:
            y = y - base
        zs = []
        logdet = y.new_zeros(y.shape[0])
        for level, steps in enumerate(self.blocks):
            y, _ = self.squeeze(y)
            for step in steps:
                y, step_logdet = step(y, features[level])
                logdet = logdet + step_logdet
            if level < len(self.splits):
                y, eps, split_logdet = self.splits[level](y, features[level])
                zs.append(eps)
                logdet = logdet + split_logdet
        z, top_logdet = self.top(y, features[-1])
        zs.append(z)
        return zs, logdet + top_logdet

    def latent_shapes(self, n: int, size: tuple[int, int]) -> list[tuple[int, ...]]:
        """Shapes of the latents :meth:`forward` returns for ``n`` outputs of height and width ``size``."""
        return multiscale_latent_shapes(n, self.in_channels, size, self.num_scales)

    def inverse(self, zs: list[torch.Tensor], x: torch.Tensor) -> torch.Tensor:
        """Map the latents of :meth:`forward` back to ``y`` (given the same ``x``)."""
        if len(zs) != self.num_scales:
            raise ValueError(f"ConditionalFlow.inverse: expected {self.num_scales} latents, got {len(zs)}")
        top = zs[-1]
        size = (top.shape[2] << self.num_scales, top.shape[3] << self.num_scales)
        expected = self.latent_shapes(top.shape[0], size)
        if [tuple(z.shape) for z in zs] != expected:
            raise ValueError(
                f"ConditionalFlow.inverse: latents must have shapes {expected}, got {[list(z.shape) for z in zs]}"
            )
        self.check_condition(x, size, top.shape[0])
        features = self.level_features(x, size)
        y = self.top.inverse(top, features[-1])
        for level in reversed(range(self.num_scales)):
            if level < len(self.splits):
                y = self.splits[level].inverse(y, zs[level], features[level])
            for step in reversed(self.blocks[level]):
                y = step.inverse(y, features[level])
            y = self.squeeze.inverse(y)
        base = self.base_of(x, y)
        return y if base is None else y + base

    def log_prob(self, y: torch.Tensor, x: torch.Tensor) -> torch.Tensor:
        """Natural-log density of continuous ``y`` given ``x``, shape ``[B]``."""
        zs, logdet = self(y, x)
        return logdet + sum(standard_normal_log_prob(z) for z in zs)

    def bits_per_dim(
        self, y_int: torch.Tensor, x: torch.Tensor, data_levels: int, generator: torch.Generator | None = None
    ) -> torch.Tensor:
        """Bits per dimension of integer ``y_int`` (values ``0 .. L - 1``, ``L = data_levels``) given ``x``, by
        uniform dequantization.

        ``y = (y_int + u) / L`` with ``u ~ U[0, 1)``, so ``log P(y_int | x) >= E_u[log p(y | x)] - D log(L)``:
        the ``- D log(L)`` (``D = C H W``) is the Jacobian of the division by ``L`` and is what makes the
        number a code length of the 8-bit image rather than a density of a rescaled one. One draw of ``u`` gives
        an unbiased estimate of this upper bound on the bits/dim. Returns one value per image, shape ``[B]``.
        """
        dims = y_int[0].numel()
        uniform = UniformDequantizer(self.in_channels, data_levels).to(next(self.parameters()).dtype)
        y, _ = uniform.dequantize(y_int, generator)
        return -(self.log_prob(y, x) - dims * math.log(data_levels)) / (dims * math.log(2))

    @renamed_keywords(tau="temperature", samples="num_samples")  # the README's examples used the old names
    def sample(
        self,
        x: torch.Tensor,
        temperature: float = 1.0,
        generator: torch.Generator | None = None,
        *,
        num_samples: int = 1,
    ) -> torch.Tensor:
        """Draw ``y ~ p(y | x)`` at ``temperature`` (the paper's tau): latents from ``N(0, temperature^2 I)`` mapped
        through :meth:`inverse`.

        ``temperature = 0`` puts every latent at its prior's mean, the paper's "mode-like" sample; it is
        deterministic and draws no noise. ``num_samples > 1`` draws that many outputs per input, ordered
        input-major: ``[B * num_samples, C, H, W]`` (the inputs repeated with ``repeat_interleave``). The noise is
        drawn on the generator's device so a seeded generator gives the same samples on any device. Runs without
        autograd. ``tau=`` and ``samples=`` are the deprecated names of ``temperature=`` and ``num_samples=``.
        """
        tau, samples = temperature, num_samples
        if tau < 0:
            raise ValueError(f"ConditionalFlow.sample: temperature must be non-negative, got {tau}")
        if samples < 1:
            raise ValueError(f"ConditionalFlow.sample: num_samples must be positive, got {samples}")
        if x.dim() != 4:
            raise ValueError(f"ConditionalFlow.sample: x must be [B, C_x, h, w], got {list(x.shape)}")
        x = x.repeat_interleave(samples, dim=0) if samples > 1 else x
        parameter = next(self.parameters())
        size = (x.shape[2] * self.upscale, x.shape[3] * self.upscale)
        shapes = self.latent_shapes(x.shape[0], size)
        if tau == 0:
            zs = [torch.zeros(shape, device=parameter.device, dtype=parameter.dtype) for shape in shapes]
        else:
            zs = [
                portable_randn(shape, generator, dtype=parameter.dtype, device=parameter.device) * tau
                for shape in shapes
            ]
        with torch.no_grad():
            return self.inverse(zs, x.to(device=parameter.device))


def check_binary(owner: str, y: torch.Tensor) -> None:
    """Raise a one-line ValueError naming ``owner`` unless ``y`` is a binary image batch ``[B, C, H, W]``."""
    if y.dim() != 4:
        raise ValueError(f"{owner}: y must be [B, C, H, W], got {list(y.shape)}")
    if y.dtype == torch.bool:
        return
    if not bool(((y == 0) | (y == 1)).all()):
        values = torch.unique(y)[:8].tolist()
        raise ValueError(f"{owner}: y must be binary (0 or 1), got values {values}")


class BinaryDequantizer(nn.Module):
    """Variational dequantization of binary images: a lower bound on ``log P(y | x)`` from a flow on continuous ``v``.

    A binary ``y`` is the event ``v in R(y)`` of a continuous ``v`` with density ``p(v | x)`` (the ``flow``),
    where ``R(y)`` is the orthant ``v_i > 0.5`` where ``y_i = 1`` and ``v_i < 0.5`` where ``y_i = 0``. So
    ``P(y | x) = integral over R(y) of p(v | x) dv``, and for any ``q(v | y, x)`` supported in ``R(y)``

        log P(y | x) >= E_q[log p(v | x) - log q(v | y, x)]          (Jensen; the bound is <= log P <= 0)

    ``q`` is ``v = 0.5 + (2y - 1) * (softplus(r) + margin)`` with ``r ~ N(mean, exp(log_scale)^2)``, ``mean`` and
    ``log_scale`` from a small CNN on ``[2y - 1, x]`` (``x`` resized to ``y``'s grid). ``softplus`` maps onto the
    whole half-line, so ``v > 0.5`` exactly when ``y = 1``; the ``margin`` (at least twice the dtype's machine
    epsilon) keeps that strict after rounding even where ``softplus(r)`` underflows. Rather than uniform
    noise in a fixed box, ``q`` learns to put ``v`` where the flow puts its mass, which is what makes the bound
    tight (the paper's choice for retinal vessel segmentation).

    ``log q(v) = log N(r; mean, s^2) - sum(log sigmoid(r))``: ``dv/dr = +-sigmoid(r)`` per pixel. Predictions
    threshold the flow's samples: ``y_hat = 1[v > 0.5]``, ``v ~ p(v | x)`` (:meth:`predict`).

    Args:
        flow: a model of ``v`` given ``x`` with ``log_prob(v, x)`` and (for :meth:`predict`) ``sample(x, tau,
            generator, samples=...)``, e.g. a :class:`ConditionalFlow` with ``in_channels`` equal to ``y``'s.
        condition_channels: channels of ``x``.
        hidden: channels of the dequantizer's CNN.
        margin: the smallest distance of ``v`` from 0.5.
    """

    def __init__(self, flow: nn.Module, condition_channels: int, hidden: int = 32, *, margin: float = 1e-6) -> None:
        super().__init__()
        in_channels = getattr(flow, "in_channels", None)
        if not isinstance(in_channels, int) or in_channels < 1:
            raise ValueError(f"BinaryDequantizer: flow must have a positive int in_channels, got {in_channels!r}")
        if condition_channels < 1 or hidden < 1 or not margin > 0:
            raise ValueError(
                f"BinaryDequantizer: condition_channels and hidden must be positive and margin > 0, got "
                f"{condition_channels}, {hidden}, {margin}"
            )
        self.flow = flow
        self.in_channels = in_channels
        self.condition_channels = condition_channels
        self.margin = margin
        self.net = nn.Sequential(
            nn.Conv2d(in_channels + condition_channels, hidden, kernel_size=3, padding=1),
            nn.ReLU(),
            nn.Conv2d(hidden, hidden, kernel_size=3, padding=1),
            nn.ReLU(),
            zero_conv(hidden, 2 * in_channels),
        )

    def _check(self, y: torch.Tensor, x: torch.Tensor) -> None:
        check_binary("BinaryDequantizer", y)
        if y.shape[1] != self.in_channels or x.dim() != 4 or x.shape[:2] != (y.shape[0], self.condition_channels):
            raise ValueError(
                f"BinaryDequantizer: y must be [B, {self.in_channels}, H, W] and x "
                f"[B, {self.condition_channels}, h, w] with the same B, got y {list(y.shape)} and x {list(x.shape)}"
            )

    def dequantize(
        self, y: torch.Tensor, x: torch.Tensor, generator: torch.Generator | None = None
    ) -> tuple[torch.Tensor, torch.Tensor]:
        """Draw ``v ~ q(v | y, x)``: returns ``v`` (shaped like ``y``, float) and ``log q(v | y, x)``, shape ``[B]``."""
        self._check(y, x)
        parameter = next(self.net.parameters())
        sign = 2.0 * y.to(parameter.dtype) - 1.0
        x_on_y = resize_features(x.to(parameter.dtype), (y.shape[2], y.shape[3]))
        mean, log_scale = self.net(torch.cat([sign, x_on_y], dim=1)).chunk(2, dim=1)
        eps = portable_randn(y.shape, generator, dtype=parameter.dtype, device=parameter.device)
        r = mean + torch.exp(log_scale) * eps
        margin = max(self.margin, 2 * torch.finfo(parameter.dtype).eps)
        v = 0.5 + sign * (F.softplus(r) + margin)
        log_q = standard_normal_log_prob(eps) - log_scale.flatten(1).sum(1) - F.logsigmoid(r).flatten(1).sum(1)
        return v, log_q

    @renamed_keywords(samples="num_samples")  # the README's example used samples=
    def log_prob_bound(
        self,
        y: torch.Tensor,
        x: torch.Tensor,
        generator: torch.Generator | None = None,
        *,
        num_samples: int = 1,
    ) -> torch.Tensor:
        """A lower bound on ``log P(y | x)`` (natural log), shape ``[B]``, from ``num_samples`` draws of ``q``.

        ``num_samples = 1``: the variational bound ``log p(v | x) - log q(v | y, x)`` of one draw (what training
        maximises; unbiased for the bound). ``num_samples = K > 1``: the importance-weighted bound
        ``log mean_k exp(log p(v_k | x) - log q(v_k | y, x))``, tighter and still <= log P in expectation.
        ``samples=`` is the deprecated name of ``num_samples=``.
        """
        owner, samples = "BinaryDequantizer.log_prob_bound", num_samples
        if samples < 1:
            raise ValueError(f"{owner}: num_samples must be positive, got {samples}")
        y_k, x_k = y.repeat_interleave(samples, dim=0), x.repeat_interleave(samples, dim=0)
        v, log_q = self.dequantize(y_k, x_k, generator)
        log_weights = (self.flow.log_prob(v, x_k) - log_q).view(y.shape[0], samples)
        return iw_bound(log_weights.T)

    def bits_per_dim(
        self, y: torch.Tensor, x: torch.Tensor, generator: torch.Generator | None = None, *, num_samples: int = 1
    ) -> torch.Tensor:
        """``-log_prob_bound / (D ln 2)``: an upper bound on the bits per dimension of binary ``y``, shape ``[B]``."""
        return -self.log_prob_bound(y, x, generator, num_samples=num_samples) / (y[0].numel() * math.log(2))

    def predict(
        self,
        x: torch.Tensor,
        temperature: float = 0.0,
        generator: torch.Generator | None = None,
        *,
        num_samples: int = 1,
    ) -> torch.Tensor:
        """Binary predictions (int64 ``[B, C, H, W]``): ``1[v > 0.5]`` for ``v ~ p(v | x)`` at ``temperature``.

        With ``num_samples > 1`` the per-pixel majority over that many samples (ties count as 1), an estimate
        of the per-pixel most probable value. ``temperature = 0`` thresholds the flow's mode-like sample
        (deterministic).
        """
        v = self.flow.sample(x, temperature, generator, num_samples=num_samples)
        votes = (v > 0.5).view(x.shape[0], num_samples, *v.shape[1:]).sum(1)
        return (2 * votes >= num_samples).long()

    def sample(
        self, x: torch.Tensor, temperature: float = 1.0, generator: torch.Generator | None = None
    ) -> torch.Tensor:
        """One binary sample per input: ``1[v > 0.5]``, ``v ~ p(v | x)`` at ``temperature``."""
        return self.predict(x, temperature, generator)
