"""Generic flow layers: ActNorm, Glow's affine coupling, the 2x2 squeeze, and a sequential container.

Every layer follows the convention of docs/architecture.md: ``z, logdet = layer(x)`` maps data to latent and
returns the log-determinant of the Jacobian per sample (shape ``[B]``); ``x = layer.inverse(z)``
undoes it. Inputs are images ``[B, C, H, W]``.

>>> import torch
>>> from flowkernels.nn import ActNorm, AffineCoupling, FlowSequential, Squeeze
>>> _ = torch.manual_seed(0)
>>> flow = FlowSequential(Squeeze(), ActNorm(12), AffineCoupling(12, 16)).double()
>>> x = torch.randn(2, 3, 8, 8, dtype=torch.float64)
>>> z, logdet = flow(x)
>>> tuple(z.shape), tuple(logdet.shape), torch.allclose(flow.inverse(z), x, atol=1e-10)
((2, 12, 4, 4), (2,), True)
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

__all__ = ["FlowLayer", "FlowSequential", "ActNorm", "AffineCoupling", "Squeeze", "soft_clamp", "zero_conv"]


def check_image(layer: str, x: torch.Tensor, channels: int | None = None) -> None:
    """Raise a ValueError naming ``layer`` unless ``x`` is ``[B, channels, H, W]``."""
    if x.dim() != 4 or (channels is not None and x.shape[1] != channels):
        expected = f"[B, {channels}, H, W]" if channels is not None else "[B, C, H, W]"
        raise ValueError(f"{layer}: input must be {expected}, got {list(x.shape)}")


def zero_conv(in_channels: int, out_channels: int, kernel_size: int = 3) -> nn.Conv2d:
    """A zero-initialised conv (padding keeps the size): the last layer of every network that outputs a shift
    or log-scale, so that the transform it parameterises starts as a fixed map (usually the identity)."""
    conv = nn.Conv2d(in_channels, out_channels, kernel_size, padding=kernel_size // 2)
    nn.init.zeros_(conv.weight)
    nn.init.zeros_(conv.bias)
    return conv


def soft_clamp(log_scale: torch.Tensor, bound: float) -> torch.Tensor:
    """``bound * tanh(log_scale / bound)``: the identity near 0, smoothly limited to ``(-bound, bound)``.

    For learned log-scales: an unbounded one can overflow (``exp(88)`` is float32's limit) when a flow is run
    on inputs training rarely saw, such as latents at a sampling temperature near 1, and one ``inf`` turns into
    NaNs that convolutions spread over the whole image. Where the learned scales are moderate it costs nothing
    (FrEIA's soft clamping).
    """
    return bound * torch.tanh(log_scale / bound)


def per_sample(logdet: torch.Tensor, x: torch.Tensor) -> torch.Tensor:
    """Broadcast a log-determinant that is the same for every sample to shape ``[B]``."""
    return logdet.expand(x.shape[0])


class FlowLayer(nn.Module):
    """Base class of invertible layers: ``forward`` returns ``(z, logdet)``, ``inverse`` returns ``x``."""

    def forward(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:  # pragma: no cover - abstract
        raise NotImplementedError

    def inverse(self, z: torch.Tensor) -> torch.Tensor:  # pragma: no cover - abstract
        raise NotImplementedError


class FlowSequential(FlowLayer):
    """A chain of flow layers; log-determinants add, and the inverse runs the chain backwards."""

    def __init__(self, *layers: FlowLayer) -> None:
        super().__init__()
        self.layers = nn.ModuleList(layers)

    def forward(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        logdet = x.new_zeros(x.shape[0])
        for layer in self.layers:
            x, layer_logdet = layer(x)
            logdet = logdet + layer_logdet
        return x, logdet

    def inverse(self, z: torch.Tensor) -> torch.Tensor:
        for layer in reversed(self.layers):
            z = layer.inverse(z)
        return z


class ActNorm(FlowLayer):
    """Per-channel affine map ``z = (x + loc) * exp(log_scale)`` (Glow's activation normalisation).

    With ``data_init=True`` (the default) the first forward pass sets ``loc`` and ``log_scale`` so that
    this batch comes out with zero mean and unit variance per channel, which is what makes deep flows
    trainable from the start without batch statistics at test time. Whether that has happened is a
    buffer, so it survives ``state_dict``/``load_state_dict`` and a loaded model is not re-initialised.
    With ``data_init=False`` the layer starts as the identity (used as a learned per-channel Gaussian).
    The scale is stored as its logarithm, so ``logdet = H * W * sum(log_scale)`` and it never changes sign.
    """

    def __init__(self, channels: int, *, data_init: bool = True, eps: float = 1e-6) -> None:
        super().__init__()
        self.channels = channels
        self.eps = eps
        self.loc = nn.Parameter(torch.zeros(1, channels, 1, 1))
        self.log_scale = nn.Parameter(torch.zeros(1, channels, 1, 1))
        self.register_buffer("initialized", torch.tensor(not data_init))

    @torch.no_grad()
    def initialize(self, x: torch.Tensor) -> None:
        """Set ``loc`` and ``log_scale`` from the batch ``x`` so that the output is standardised per channel."""
        check_image("ActNorm", x, self.channels)
        mean = x.mean(dim=(0, 2, 3), keepdim=True)
        # eps keeps a constant channel (e.g. a blank image border) from getting an infinite scale.
        std = x.std(dim=(0, 2, 3), keepdim=True, unbiased=False) + self.eps
        self.loc.copy_(-mean)
        self.log_scale.copy_(-torch.log(std))
        self.initialized.fill_(True)

    def forward(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        check_image("ActNorm", x, self.channels)
        if not bool(self.initialized):
            self.initialize(x)
        z = (x + self.loc) * torch.exp(self.log_scale)
        logdet = self.log_scale.sum() * (x.shape[2] * x.shape[3])
        return z, per_sample(logdet, x)

    def inverse(self, z: torch.Tensor) -> torch.Tensor:
        check_image("ActNorm", z, self.channels)
        return z * torch.exp(-self.log_scale) - self.loc


class AffineCoupling(FlowLayer):
    """Glow's affine coupling: the first half of the channels conditions a scale and shift of the second.

    ``x = [x_a, x_b]`` with ``x_a`` the first ``C // 2`` channels; a small network
    (3x3 conv, ReLU, 1x1 conv, ReLU, zero-initialised 3x3 conv) maps ``x_a`` to ``shift`` and ``raw``,
    and ``z_b = (x_b + shift) * sigmoid(raw + 2)``. The sigmoid keeps the scale in (0, 1), which Glow
    found more stable than ``exp``; the ``+ 2`` makes it start near 0.88 rather than 0.5; the zero-initialised
    last conv makes the layer start as that fixed scaling, close to the identity. ``logdet`` is the sum of
    ``log(scale)`` over the second half.
    """

    def __init__(self, channels: int, hidden: int) -> None:
        super().__init__()
        if channels < 2:
            raise ValueError(f"AffineCoupling: needs at least 2 channels to split, got {channels}")
        self.channels = channels
        self.split = channels // 2
        transformed = channels - self.split
        out = zero_conv(hidden, 2 * transformed)
        self.net = nn.Sequential(
            nn.Conv2d(self.split, hidden, kernel_size=3, padding=1),
            nn.ReLU(),
            nn.Conv2d(hidden, hidden, kernel_size=1),
            nn.ReLU(),
            out,
        )

    def _shift_and_log_scale(self, x_a: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        shift, raw = self.net(x_a).chunk(2, dim=1)
        # logsigmoid rather than log(sigmoid(.)): exact and finite even where the scale underflows.
        return shift, F.logsigmoid(raw + 2.0)

    def forward(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        check_image("AffineCoupling", x, self.channels)
        x_a, x_b = x[:, : self.split], x[:, self.split :]
        shift, log_scale = self._shift_and_log_scale(x_a)
        z_b = (x_b + shift) * torch.exp(log_scale)
        return torch.cat([x_a, z_b], dim=1), log_scale.flatten(1).sum(1)

    def inverse(self, z: torch.Tensor) -> torch.Tensor:
        check_image("AffineCoupling", z, self.channels)
        z_a, z_b = z[:, : self.split], z[:, self.split :]
        shift, log_scale = self._shift_and_log_scale(z_a)
        return torch.cat([z_a, z_b * torch.exp(-log_scale) - shift], dim=1)


class Squeeze(FlowLayer):
    """Space-to-depth: ``[B, C, H, W] -> [B, 4C, H/2, W/2]``, each 2x2 block becoming 4 channels.

    Output channel ``4c + 2i + j`` holds input channel ``c`` at row offset ``i`` and column offset ``j``
    of every block. A permutation of the entries, so ``logdet = 0``.
    """

    def forward(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        check_image("Squeeze", x)
        B, C, H, W = x.shape
        if H % 2 or W % 2:
            raise ValueError(f"Squeeze: height and width must be even, got {H}x{W}")
        z = x.reshape(B, C, H // 2, 2, W // 2, 2).permute(0, 1, 3, 5, 2, 4).reshape(B, 4 * C, H // 2, W // 2)
        return z, x.new_zeros(B)

    def inverse(self, z: torch.Tensor) -> torch.Tensor:
        check_image("Squeeze", z)
        B, C4, H, W = z.shape
        if C4 % 4:
            raise ValueError(f"Squeeze.inverse: channels must be a multiple of 4, got {C4}")
        C = C4 // 4
        return z.reshape(B, C, 2, 2, H, W).permute(0, 1, 4, 2, 5, 3).reshape(B, C, 2 * H, 2 * W)
