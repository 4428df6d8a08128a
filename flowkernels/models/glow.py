"""A multi-scale Glow with a choice of invertible convolution: 1x1, emerging or periodic.

The model of "Emerging Convolutions for Generative Normalizing Flows" (Hoogeboom, van den Berg & Welling
2019, arXiv:1901.11137), which compares Glow's 1x1 convolutions with its emerging and periodic
convolutions inside the same architecture (Kingma & Dhariwal 2018):

    per level:  Squeeze -> steps x (ActNorm -> invertible conv -> AffineCoupling) -> Split (not at the top)

A Split keeps half of the channels for the next level and factors out the other half, modelled by a
Gaussian whose mean and log-scale a zero-initialised conv computes from the kept half. The top level's
output has a learned per-channel Gaussian. Each Gaussian is written as a standard normal behind an affine
map, so ``forward`` returns standard-normal latents and one log-determinant, and ``log_prob`` is the
change-of-variables sum. The model composes :mod:`flowkernels.nn`; sampling through the emerging kind uses
``flowkernels.ops.ar_conv2d_inverse`` via :class:`~flowkernels.nn.EmergingConv2d`.

Training and sample grids: :mod:`flowkernels.models.glow_training`.
"""

from __future__ import annotations

import math

import torch
from torch import nn

from .._deprecation import renamed_keywords
from ..nn import (
    ActNorm,
    AffineCoupling,
    EmergingConv2d,
    FlowLayer,
    FlowSequential,
    Invertible1x1Conv,
    PeriodicConv2d,
    Squeeze,
)
from .checkpoint import Checkpointable
from .dequantization import UniformDequantizer
from .distributions import standard_normal_log_prob
from .noise import portable_randn
from .training import evaluating, mean_over

__all__ = ["CONV_KINDS", "Glow", "SplitPrior"]

CONV_KINDS = ("1x1", "emerging", "periodic")


def make_invertible_conv(kind: str, channels: int, kernel_size: int) -> FlowLayer:
    """The invertible convolution of one flow step: "1x1", "emerging" or "periodic"."""
    if kind == "1x1":
        return Invertible1x1Conv(channels)
    if kind == "emerging":
        return EmergingConv2d(channels, kernel_size)
    if kind == "periodic":
        return PeriodicConv2d(channels, kernel_size)
    raise ValueError(f"Glow: conv must be one of {CONV_KINDS}, got {kind!r}")


def multiscale_latent_shapes(n: int, channels: int, size: tuple[int, int], num_scales: int) -> list[tuple[int, ...]]:
    """Latent shapes of a multi-scale flow: per level a squeeze (4x channels, half the size), then a split
    that factors out half of the channels, except at the top level, which keeps them all."""
    (height, width), shapes = size, []
    for level in range(num_scales):
        channels, height, width = channels * 4, height // 2, width // 2
        if level < num_scales - 1:
            channels //= 2
        shapes.append((n, channels, height, width))
    return shapes


class SplitPrior(nn.Module):
    """Glow's split: ``x = [h, z]``, with ``z ~ N(mean(h), exp(log_scale(h))^2)`` per element.

    ``forward`` returns the kept half ``h``, the standardised ``eps = (z - mean) * exp(-log_scale)`` and
    ``-sum(log_scale)`` (the log-determinant of that standardisation), so the density of ``z`` given ``h``
    is ``N(eps; 0, I)`` times ``exp(logdet)``. The conv is zero-initialised: the prior starts as N(0, I).
    """

    def __init__(self, channels: int) -> None:
        super().__init__()
        if channels < 2 or channels % 2:
            raise ValueError(f"SplitPrior: channels must be even and at least 2, got {channels}")
        self.keep = channels // 2
        self.conv = nn.Conv2d(self.keep, 2 * (channels - self.keep), kernel_size=3, padding=1)
        nn.init.zeros_(self.conv.weight)
        nn.init.zeros_(self.conv.bias)

    def forward(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        h, z = x[:, : self.keep], x[:, self.keep :]
        mean, log_scale = self.conv(h).chunk(2, dim=1)
        eps = (z - mean) * torch.exp(-log_scale)
        return h, eps, -log_scale.flatten(1).sum(1)

    def inverse(self, h: torch.Tensor, eps: torch.Tensor) -> torch.Tensor:
        mean, log_scale = self.conv(h).chunk(2, dim=1)
        return torch.cat([h, eps * torch.exp(log_scale) + mean], dim=1)


# The test-set dequantization noise is fixed (independent of the training seed), so test bits/dim of
# different runs and epochs are measured on the very same continuous points.
_TEST_NOISE_SEED = 2019


class Glow(Checkpointable, nn.Module):
    """A multi-scale Glow: ``num_scales`` x (Squeeze, ``steps_per_scale`` flow steps, Split), see the module doc.

    Args:
        in_channels: channels of the data (1 for the digits).
        num_scales: number of squeeze-and-split scales; H and W must be divisible by ``2 ** num_scales``.
        steps_per_scale: flow steps (ActNorm, invertible conv, affine coupling) per scale.
        hidden: channels of the coupling networks.
        conv: the invertible conv of every step: "1x1", "emerging" or "periodic".
        kernel_size: kernel size of the emerging/periodic convs (odd).
        image_size: the (H, W) that :meth:`sample` draws; other sizes work for ``forward``/``log_prob``.

    For 8x8x1 digits with ``num_scales=2``: 8x8x1 -> squeeze 4x4x4 -> split 2 channels off -> squeeze 2x2x8.

    Example (an untrained Glow is already an exact bijection):
        >>> import torch
        >>> from flowkernels.models.glow import Glow
        >>> _ = torch.manual_seed(0)
        >>> model = Glow(1, num_scales=2, steps_per_scale=1, hidden=8, conv="emerging").eval()
        >>> x = torch.rand(3, 1, 8, 8)
        >>> zs, logdet = model(x)
        >>> [tuple(z.shape) for z in zs]
        [(3, 2, 4, 4), (3, 8, 2, 2)]
        >>> torch.allclose(model.inverse(zs), x, atol=1e-5)
        True
        >>> model.bits_per_dim(torch.randint(0, 17, (3, 1, 8, 8)), data_levels=17).shape
        torch.Size([3])
    """

    @renamed_keywords(levels="num_scales", steps_per_level="steps_per_scale")  # the README used the old names
    def __init__(
        self,
        in_channels: int,
        num_scales: int,
        steps_per_scale: int,
        hidden: int,
        conv: str = "1x1",
        kernel_size: int = 3,
        *,
        image_size: tuple[int, int] = (8, 8),
    ) -> None:
        super().__init__()
        if num_scales < 1 or steps_per_scale < 1:
            raise ValueError(
                f"Glow: num_scales and steps_per_scale must be positive, got {num_scales}, {steps_per_scale}"
            )
        self.in_channels = in_channels
        self.image_size = tuple(image_size)
        self.conv_kind = conv
        # The constructor's arguments: what a checkpoint needs to rebuild the model (Checkpointable).
        self.config = {
            "in_channels": in_channels,
            "num_scales": num_scales,
            "steps_per_scale": steps_per_scale,
            "hidden": hidden,
            "conv": conv,
            "kernel_size": kernel_size,
            "image_size": list(self.image_size),
        }
        self.blocks = nn.ModuleList()
        self.splits = nn.ModuleList()
        channels = in_channels
        for level in range(num_scales):
            channels *= 4
            steps = [
                FlowSequential(
                    ActNorm(channels),
                    make_invertible_conv(conv, channels, kernel_size),
                    AffineCoupling(channels, hidden),
                )
                for _ in range(steps_per_scale)
            ]
            self.blocks.append(FlowSequential(Squeeze(), *steps))
            if level < num_scales - 1:
                self.splits.append(SplitPrior(channels))
                channels //= 2
        # The top prior: a learned per-channel Gaussian, i.e. a standard normal behind a per-channel affine map.
        self.top = ActNorm(channels, data_init=False)

    @property
    def num_scales(self) -> int:
        return len(self.blocks)

    def forward(self, x: torch.Tensor) -> tuple[list[torch.Tensor], torch.Tensor]:
        """Map data ``x`` to standard-normal latents: ``(zs, logdet)``, one latent per split and one at the top."""
        zs = []
        logdet = x.new_zeros(x.shape[0])
        for level, block in enumerate(self.blocks):
            x, block_logdet = block(x)
            logdet = logdet + block_logdet
            if level < len(self.splits):
                x, eps, split_logdet = self.splits[level](x)
                zs.append(eps)
                logdet = logdet + split_logdet
        z, top_logdet = self.top(x)
        zs.append(z)
        return zs, logdet + top_logdet

    def inverse(self, zs: list[torch.Tensor]) -> torch.Tensor:
        """Map the latents of :meth:`forward` back to data."""
        if len(zs) != self.num_scales:
            raise ValueError(f"Glow.inverse: expected {self.num_scales} latents, got {len(zs)}")
        x = self.top.inverse(zs[-1])
        for level in reversed(range(self.num_scales)):
            if level < len(self.splits):
                x = self.splits[level].inverse(x, zs[level])
            x = self.blocks[level].inverse(x)
        return x

    def log_prob(self, x: torch.Tensor) -> torch.Tensor:
        """Natural-log density of continuous data ``x``, shape ``[B]``."""
        zs, logdet = self(x)
        return logdet + sum(standard_normal_log_prob(z) for z in zs)

    def latent_shapes(self, n: int, image_size: tuple[int, int] | None = None) -> list[tuple[int, ...]]:
        """Shapes of the latents :meth:`forward` returns for ``n`` images of ``image_size``."""
        return multiscale_latent_shapes(n, self.in_channels, image_size or self.image_size, self.num_scales)

    def sample(
        self,
        n: int,
        temperature: float = 1.0,
        generator: torch.Generator | None = None,
        *,
        image_size: tuple[int, int] | None = None,
    ) -> torch.Tensor:
        """Draw ``n`` continuous samples: latents from ``N(0, temperature^2 I)`` mapped through :meth:`inverse`.

        A temperature below 1 trades diversity for cleaner samples, as in Glow. The noise is drawn on the
        generator's device (CPU by default) so a seeded generator gives the same samples on any device.
        Runs without autograd; call it in eval mode to let the 1x1 convs reuse their cached inverses.
        """
        parameter = next(self.parameters())
        zs = [
            portable_randn(shape, generator, dtype=parameter.dtype, device=parameter.device) * temperature
            for shape in self.latent_shapes(n, image_size)
        ]
        with torch.no_grad():
            return self.inverse(zs)

    def _uniform(self, data_levels: int) -> UniformDequantizer:
        """The uniform dequantizer of the data, in the flow's dtype."""
        return UniformDequantizer(self.in_channels, data_levels).to(next(self.parameters()).dtype)

    def bits_per_dim(
        self, x_int: torch.Tensor, data_levels: int, generator: torch.Generator | None = None
    ) -> torch.Tensor:
        """Bits per dimension of integer data ``x_int`` (values ``0 .. L - 1``, ``L = data_levels``) by uniform
        dequantization.

        With ``x_cont = (x_int + u) / L``, ``u ~ U[0, 1)``: ``log P(x_int) >= E_u[log p(x_cont)] - D log(L)``
        (D = C*H*W; the ``- D log(L)`` is the Jacobian of the division), so one draw of ``u`` gives an
        unbiased estimate of an upper bound on the bits/dim, ``-(log p(x_cont) - D log(L)) / (D ln 2)``.
        Returns one value per image, shape ``[B]``.
        """
        dims = x_int[0].numel()
        x_cont, _ = self._uniform(data_levels).dequantize(x_int, generator)
        log_p = self.log_prob(x_cont) - dims * math.log(data_levels)
        return -log_p / (dims * math.log(2))

    def evaluate_bpd(self, x_int: torch.Tensor, data_levels: int, *, batch_size: int = 500) -> float:
        """Mean bits/dim of ``x_int`` (values ``0 .. data_levels - 1``), in eval mode, with the fixed test
        dequantization noise (seed ``2019`` whatever the training seed, so every run and epoch is scored on the
        same points)."""
        generator = torch.Generator().manual_seed(_TEST_NOISE_SEED)
        with evaluating(self):
            return mean_over(x_int, lambda batch: self.bits_per_dim(batch, data_levels, generator), batch_size)
