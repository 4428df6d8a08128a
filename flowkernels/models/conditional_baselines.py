"""The factorised baselines of the conditional flows (arXiv:1912.00042): p(y | x) as independent pixels.

Both read the same conditioning features as the flows (:class:`~flowkernels.models.conditional.ConditionNet`)
through one sub-pixel convolution head: :class:`FactorizedLogistic` (a discretized logistic per pixel of an
8-bit image, on ``ops.discretized_logistic_logp``; exact bits/dim) and :class:`FactorizedBernoulli` (per-pixel
logistic regression for binary images).
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import nn

from .. import ops
from .conditional import ConditionalModel, check_binary, resize_features
from .noise import portable_rand

__all__ = ["FactorizedBernoulli", "FactorizedLogistic"]


class _PixelHead(ConditionalModel):
    """Baselines' output layer: the conditioning features, at the grid of ``x``, to per-pixel parameters of ``y``.

    ``conv3x3(features -> hidden) -> ReLU -> conv3x3(hidden -> params * C * upscale^2) -> pixel shuffle``:
    one sub-pixel convolution (ESPCN), the cheapest way from ``x``'s grid to ``y``'s that can still give every
    output pixel its own parameters.
    """

    def __init__(
        self,
        condition_net: nn.Module,
        params: int,
        *,
        in_channels: int,
        upscale: int,
        hidden: int,
        feature_channels: int | None,
        base: nn.Module | None = None,
    ) -> None:
        super().__init__(condition_net, in_channels, upscale, feature_channels, base)
        self.params = params
        self.head = nn.Sequential(
            nn.Conv2d(self.feature_channels, hidden, kernel_size=3, padding=1),
            nn.ReLU(),
            nn.Conv2d(hidden, params * in_channels * upscale**2, kernel_size=3, padding=1),
            nn.PixelShuffle(upscale),
        )

    def pixel_parameters(self, x: torch.Tensor) -> tuple[torch.Tensor, ...]:
        """``params`` tensors of shape ``[B, C, H, W]`` (``H = upscale * h``), one per parameter of a pixel."""
        features = resize_features(self.condition(x), (x.shape[2], x.shape[3]))
        return self.head(features).chunk(self.params, dim=1)


class FactorizedLogistic(_PixelHead):
    """The paper's baseline for 8-bit outputs: independent discretized logistics per pixel, given ``x``.

    ``P(y | x) = prod_i DLogistic(y_i; mu_i(x), s_i(x))`` over 256 bins of width 1/256 on [0, 1], with edge bins
    that take the tails (PixelCNN++'s bounded pixels), computed by :func:`flowkernels.ops.discretized_logistic_logp`.
    Its bits/dim are an exact code length, directly comparable with the flow's dequantized bound. ``mu`` and
    ``log s`` come from the same conditioning network as the flow's, through :class:`_PixelHead`; with a
    ``base``, ``mu = base(x) + head`` (as the flow models ``y - base(x)``), else ``mu = 0.5 + head``.
    """

    def __init__(
        self,
        condition_net: nn.Module,
        *,
        in_channels: int = 1,
        upscale: int = 1,
        hidden: int = 64,
        data_levels: int = 256,
        feature_channels: int | None = None,
        base: nn.Module | None = None,
    ) -> None:
        super().__init__(
            condition_net,
            2,
            in_channels=in_channels,
            upscale=upscale,
            hidden=hidden,
            feature_channels=feature_channels,
            base=base,
        )
        if data_levels < 2:
            raise ValueError(f"FactorizedLogistic: data_levels must be at least 2, got {data_levels}")
        self.data_levels = data_levels

    def _mu_log_scale(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        raw_mu, raw_log_scale = self.pixel_parameters(x)
        base = self.base_of(x, raw_mu)
        # Centred on the base, or on mid-grey with a scale of about 1/8 (the spread of a photograph's grey
        # data_levels), so the first steps are not spent moving the distribution to the data.
        return (0.5 if base is None else base) + raw_mu, raw_log_scale - math.log(8.0)

    def bits_per_dim(
        self, y_int: torch.Tensor, x: torch.Tensor, generator: torch.Generator | None = None
    ) -> torch.Tensor:
        """Bits per dimension of integer ``y_int`` (``0 .. data_levels - 1``) given ``x``: exact, no dequantization.

        ``generator`` is unused (it keeps the signature of the flow's losses)."""
        del generator
        self.check_pair(y_int, x)
        mu, log_scale = self._mu_log_scale(x)
        width = 1.0 / self.data_levels
        centres = (y_int.to(mu.dtype) + 0.5) * width
        log_p = ops.discretized_logistic_logp(
            centres, mu, log_scale, bin_width=width, lower=0.5 * width, upper=1.0 - 0.5 * width
        )
        return -log_p.flatten(1).sum(1) / (y_int[0].numel() * math.log(2))

    def sample(
        self, x: torch.Tensor, temperature: float = 1.0, generator: torch.Generator | None = None
    ) -> torch.Tensor:
        """Integer samples ``0 .. data_levels - 1``: ``mu + temperature * s * logistic noise``, binned (values
        beyond the edges go to the edge bins). ``temperature = 0`` gives the bin of each pixel's ``mu``, the mode of its
        continuous logistic (an edge bin, which also holds a tail, can have more mass)."""
        tau = temperature
        if tau < 0:
            raise ValueError(f"FactorizedLogistic.sample: temperature must be non-negative, got {tau}")
        with torch.no_grad():
            mu, log_scale = self._mu_log_scale(x)
            value = mu
            if tau > 0:
                u = portable_rand(mu.shape, generator, dtype=mu.dtype, device=mu.device).clamp(1e-6, 1 - 1e-6)
                value = mu + tau * torch.exp(log_scale) * (torch.log(u) - torch.log1p(-u))
            return torch.floor(value * self.data_levels).clamp(0, self.data_levels - 1).long()


class FactorizedBernoulli(_PixelHead):
    """The baseline for binary outputs: independent Bernoullis per pixel, ``P(y_i = 1 | x) = sigmoid(logit_i(x))``.

    The per-pixel logistic regression on the features of the same conditioning network as the flow's: what a
    segmentation network trained with binary cross-entropy is. Its bits/dim are exact.
    """

    def __init__(
        self,
        condition_net: nn.Module,
        *,
        in_channels: int = 1,
        upscale: int = 1,
        hidden: int = 64,
        feature_channels: int | None = None,
    ) -> None:
        super().__init__(
            condition_net,
            1,
            in_channels=in_channels,
            upscale=upscale,
            hidden=hidden,
            feature_channels=feature_channels,
        )

    def logits(self, x: torch.Tensor) -> torch.Tensor:
        return self.pixel_parameters(x)[0]

    def bits_per_dim(self, y: torch.Tensor, x: torch.Tensor, generator: torch.Generator | None = None) -> torch.Tensor:
        """Bits per dimension of binary ``y`` given ``x`` (``generator`` is unused, see :class:`FactorizedLogistic`)."""
        del generator
        check_binary("FactorizedBernoulli", y)
        self.check_pair(y, x)
        logits = self.logits(x)
        nll = F.binary_cross_entropy_with_logits(logits, y.to(logits.dtype), reduction="none")
        return nll.flatten(1).sum(1) / (y[0].numel() * math.log(2))

    def sample(
        self, x: torch.Tensor, temperature: float = 1.0, generator: torch.Generator | None = None
    ) -> torch.Tensor:
        """Binary samples (int64); ``temperature = 0`` gives the most probable value of each pixel, 1 a draw from
        the model. In between, each pixel is drawn from its Bernoulli with logits divided by ``temperature``."""
        tau = temperature
        if tau < 0:
            raise ValueError(f"FactorizedBernoulli.sample: temperature must be non-negative, got {tau}")
        with torch.no_grad():
            logits = self.logits(x)
            if tau == 0:
                return (logits > 0).long()
            u = portable_rand(logits.shape, generator, dtype=logits.dtype, device=logits.device)
            return (u < torch.sigmoid(logits / tau)).long()
