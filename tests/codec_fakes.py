"""Small models that implement flowkernels.codec.CodecModel, for the codec tests.

* :class:`IdentityFlow`: one step, the pixels themselves, under a per-channel
  discretized logistic (one component).
* :class:`TwoStepFlow`: the flattened patch is split in two halves. Step 1 is the
  first half under a learned per-position mixture of K logistics; step 2 is the
  second half minus a rounded prediction from the first (an additive integer
  coupling), under a mixture whose parameters a linear layer computes from the
  first half's decoded values, so decoding must go step by step.
"""

from __future__ import annotations

import math

import torch
from torch import nn

from flowkernels.codec import LatentStep


class IdentityFlow(nn.Module):
    def __init__(self, channels: int = 1, patch: tuple[int, int] = (4, 4), mu: float = 127.5, log_scale: float = 3.5):
        super().__init__()
        self.patch_shape = (channels, *patch)
        self.config = {"kind": "identity", "channels": channels, "patch": list(patch)}
        self.mu = nn.Parameter(torch.full((channels,), float(mu)))
        self.log_scale = nn.Parameter(torch.full((channels,), float(log_scale)))
        self.eval()

    def _params(self, n: int):
        channels, h, w = self.patch_shape
        mu = self.mu.detach().view(1, channels, 1, 1, 1).expand(n, channels, h, w, 1)
        log_scale = self.log_scale.detach().view(1, channels, 1, 1, 1).expand(n, channels, h, w, 1)
        return mu, log_scale, torch.zeros_like(mu)

    def encode_latents(self, x: torch.Tensor) -> list[LatentStep]:
        return [LatentStep(x.clone(), *self._params(x.shape[0]))]

    def decode_latents(self, n: int, pop) -> torch.Tensor:
        return pop(*self._params(n))


class TwoStepFlow(nn.Module):
    def __init__(self, channels: int = 3, patch: tuple[int, int] = (4, 4), components: int = 3, seed: int = 0):
        super().__init__()
        self.patch_shape = (channels, *patch)
        self.config = {"kind": "two-step", "channels": channels, "patch": list(patch), "components": components}
        size = channels * patch[0] * patch[1]
        if size < 2:
            raise ValueError("TwoStepFlow needs patches of at least 2 values")
        self.first, self.second, self.components = (size + 1) // 2, size // 2, components
        generator = torch.Generator().manual_seed(seed)
        self.prior_mu = nn.Parameter(120 + 20 * torch.randn(self.first, components, generator=generator))
        self.prior_log_scale = nn.Parameter(3.0 + 0.3 * torch.randn(self.first, components, generator=generator))
        self.prior_logit_pi = nn.Parameter(torch.randn(self.first, components, generator=generator))
        self.shift = nn.Linear(self.first, self.second)
        self.head = nn.Linear(self.first, 3 * self.second * components)
        with torch.no_grad():
            for layer in (self.shift, self.head):
                layer.weight.copy_(torch.randn(layer.weight.shape, generator=generator) / math.sqrt(self.first))
                layer.bias.copy_(0.1 * torch.randn(layer.bias.shape, generator=generator))
        self.eval()

    def _first_params(self, n: int):
        return tuple(p.detach().expand(n, *p.shape) for p in (self.prior_mu, self.prior_log_scale, self.prior_logit_pi))

    def _second(self, z1: torch.Tensor):
        h = (z1 - 127.5) / 64.0
        shift = torch.round(60.0 * torch.tanh(self.shift(h)))
        mu, log_scale, logit_pi = self.head(h).view(-1, self.second, self.components, 3).unbind(-1)
        # predict the second half near the first half's mean (neighbouring pixels are alike)
        center = (z1.mean(dim=1, keepdim=True) - shift).unsqueeze(-1)
        return shift, (center + 4.0 * mu, 3.0 + 0.5 * torch.tanh(log_scale), logit_pi)

    def encode_latents(self, x: torch.Tensor) -> list[LatentStep]:
        flat = x.reshape(x.shape[0], -1)
        z1, x2 = flat[:, : self.first], flat[:, self.first :]
        shift, params = self._second(z1)
        return [LatentStep(z1, *self._first_params(x.shape[0])), LatentStep(x2 - shift, *params)]

    def decode_latents(self, n: int, pop) -> torch.Tensor:
        z1 = pop(*self._first_params(n))
        shift, params = self._second(z1)
        x2 = pop(*params) + shift
        return torch.cat([z1, x2], dim=1).reshape(n, *self.patch_shape)
