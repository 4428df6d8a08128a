"""A vector-quantised autoencoder (EMA codebook): the discrete latents of predictive sampling's second setting.

:class:`VQAutoencoder` maps one-channel 8-bit images ``[B, 1, 4h, 4w]`` to code maps ``[B, 1, h, w]`` and back;
a :class:`~flowkernels.models.pixelcnn.PixelCNN` with a :class:`~flowkernels.models.distributions.Categorical`
head and an input embedding models the codes. :func:`train_vq_autoencoder` fits one.
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import nn

from .distributions import DiscretizedLogisticMixture

__all__ = ["VQAutoencoder", "VectorQuantizer"]


class VectorQuantizer(nn.Module):
    """Nearest-neighbour quantisation to a codebook of ``codes`` vectors of size ``dim``, learned by EMA.

    The codebook follows exponential moving averages of the encoder outputs assigned to each code
    (VQ-VAE's appendix, with Laplace smoothing of the counts), which trains faster and more stably than
    a codebook loss; the encoder gets the straight-through gradient and a commitment loss. The codebook
    starts as evenly spaced encoder outputs of the first training batch (deterministic, and no code
    starts far from the data). Updates happen in training mode only.
    """

    def __init__(self, codes: int, dim: int, decay: float = 0.99, eps: float = 1e-5) -> None:
        super().__init__()
        if codes < 2 or dim < 1 or not 0.0 < decay < 1.0:
            raise ValueError(f"VectorQuantizer: need codes >= 2, dim >= 1, 0 < decay < 1, got {codes}, {dim}, {decay}")
        self.codes, self.dim, self.decay, self.eps = codes, dim, decay, eps
        self.register_buffer("codebook", torch.randn(codes, dim))
        self.register_buffer("cluster_size", torch.zeros(codes))
        self.register_buffer("embed_sum", torch.zeros(codes, dim))
        self.register_buffer("initialised", torch.zeros((), dtype=torch.bool))

    def nearest(self, flat: torch.Tensor) -> torch.Tensor:
        """Index of the nearest code of each row of ``flat`` ``[N, dim]``: int64 ``[N]``."""
        distances = flat.square().sum(1, keepdim=True) - 2 * flat @ self.codebook.T + self.codebook.square().sum(1)
        return distances.argmin(1)

    @torch.no_grad()
    def _update(self, flat: torch.Tensor, index: torch.Tensor) -> torch.Tensor:
        """One EMA step of the codebook towards the rows of ``flat`` assigned by ``index``; returns the
        assignment used (recomputed on the batch that initialises the codebook)."""
        if not self.initialised:
            rows = torch.linspace(0, flat.shape[0] - 1, self.codes, device=flat.device).long()
            self.codebook.copy_(flat[rows])
            self.embed_sum.copy_(flat[rows])
            self.cluster_size.fill_(1.0)
            self.initialised.fill_(True)
            index = self.nearest(flat)
        one_hot = F.one_hot(index, self.codes).to(flat.dtype)
        self.cluster_size.mul_(self.decay).add_(one_hot.sum(0), alpha=1 - self.decay)
        self.embed_sum.mul_(self.decay).add_(one_hot.T @ flat, alpha=1 - self.decay)
        total = self.cluster_size.sum()
        smoothed = (self.cluster_size + self.eps) / (total + self.codes * self.eps) * total
        self.codebook.copy_(self.embed_sum / smoothed.unsqueeze(1))
        return index

    def forward(self, z: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """For ``z`` ``[B, dim, h, w]``: (quantized ``z`` with a straight-through gradient, codes, commitment loss)."""
        batch, _, height, width = z.shape
        flat = z.permute(0, 2, 3, 1).reshape(-1, self.dim)
        index = self.nearest(flat.detach())
        if self.training:
            index = self._update(flat.detach(), index)
        quantized = self.lookup(index.view(batch, height, width))
        commitment = F.mse_loss(z, quantized.detach())
        return z + (quantized - z).detach(), index.view(batch, height, width), commitment

    def lookup(self, codes: torch.Tensor) -> torch.Tensor:
        """Code vectors ``[B, dim, h, w]`` of the codes ``[B, h, w]``."""
        return self.codebook[codes].permute(0, 3, 1, 2)


class VQAutoencoder(nn.Module):
    """A small VQ autoencoder for one-channel 8-bit images: ``[B, 1, 4h, 4w]`` <-> codes ``[B, 1, h, w]``.

    Encoder: two stride-2 4x4 convs and a 3x3 conv (ReLU between), a 1x1 conv to ``dim``; decoder: the
    mirror image with transposed convs. The decoder's output is a discretized logistic per pixel
    (mean and log-scale), so the reconstruction loss is a likelihood in bits/dim, like the ARMs' losses;
    :meth:`decode` returns its mode (the rounded mean). ``loss`` adds ``beta`` times the commitment loss.
    """

    def __init__(
        self, data_levels: int = 256, codes: int = 32, dim: int = 16, hidden: int = 64, beta: float = 0.25
    ) -> None:
        super().__init__()
        self.data_levels, self.beta = data_levels, beta
        self.pixel = DiscretizedLogisticMixture(data_levels, 1)
        self.encoder = nn.Sequential(
            nn.Conv2d(1, hidden, 4, stride=2, padding=1),
            nn.ReLU(),
            nn.Conv2d(hidden, hidden, 4, stride=2, padding=1),
            nn.ReLU(),
            nn.Conv2d(hidden, hidden, 3, padding=1),
            nn.ReLU(),
            nn.Conv2d(hidden, dim, 1),
        )
        self.quantizer = VectorQuantizer(codes, dim)
        self.decoder = nn.Sequential(
            nn.Conv2d(dim, hidden, 3, padding=1),
            nn.ReLU(),
            nn.ConvTranspose2d(hidden, hidden, 4, stride=2, padding=1),
            nn.ReLU(),
            nn.ConvTranspose2d(hidden, hidden, 4, stride=2, padding=1),
            nn.ReLU(),
            nn.Conv2d(hidden, 2, 3, padding=1),
        )
        with torch.no_grad():
            self.decoder[-1].bias.copy_(self.pixel.initial_bias()[1:])  # (mu, log_scale) of one component

    @property
    def codes(self) -> int:
        return self.quantizer.codes

    def _pixel_params(self, quantized: torch.Tensor) -> torch.Tensor:
        out = self.decoder(quantized).unsqueeze(-1)
        mu, log_scale = out[:, :1], out[:, 1:]
        return torch.cat([torch.zeros_like(mu), mu, log_scale], dim=-1)  # [B, 1, H, W, 3]: one component

    def _quantize(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        if x.dim() != 4 or x.shape[1] != 1 or x.shape[2] % 4 or x.shape[3] % 4:
            raise ValueError(f"VQAutoencoder: x must be [B, 1, H, W] with H, W divisible by 4, got {list(x.shape)}")
        dtype = self.encoder[0].weight.dtype
        return self.quantizer(self.encoder(self.pixel.to_unit(x, dtype)))

    def loss(self, x: torch.Tensor) -> torch.Tensor:
        """Reconstruction bits/dim plus ``beta`` times the commitment loss, averaged over the batch."""
        quantized, _, commitment = self._quantize(x)
        return self.reconstruction_bpd(x, quantized).mean() + self.beta * commitment

    def reconstruction_bpd(self, x: torch.Tensor, quantized: torch.Tensor | None = None) -> torch.Tensor:
        """``-log2 p(x | codes(x)) / dims`` per image, ``[B]``."""
        if quantized is None:
            quantized = self._quantize(x)[0]
        log_p = self.pixel.log_prob(x, self._pixel_params(quantized))
        return -log_p.flatten(1).sum(1) / (x[0].numel() * math.log(2))

    def encode(self, x: torch.Tensor) -> torch.Tensor:
        """The codes of the images ``x`` ``[B, 1, H, W]``: int64 ``[B, 1, H/4, W/4]``."""
        return self._quantize(x)[1].unsqueeze(1)

    def decode(self, codes: torch.Tensor) -> torch.Tensor:
        """Images (int64 ``[B, 1, 4h, 4w]``, the decoder's most likely pixel values) of the codes ``[B, 1, h, w]``."""
        if codes.dim() != 4 or codes.shape[1] != 1:
            raise ValueError(f"VQAutoencoder.decode: codes must be [B, 1, h, w], got {list(codes.shape)}")
        mu = self._pixel_params(self.quantizer.lookup(codes[:, 0]))[..., 1]
        return torch.floor((mu + 1.0) / self.pixel.bin_width + 0.5).clamp(0, self.data_levels - 1).long()
