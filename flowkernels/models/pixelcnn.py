"""Autoregressive models (ARMs) for predictive sampling: a gated PixelCNN, forecasting modules, a VQ autoencoder.

The models of "Predictive Sampling with Forecasting Autoregressive Models" (Wiggers & Hoogeboom 2020,
arXiv:2002.09928), scaled down for a CPU. :mod:`flowkernels.sampling` samples them.

* :class:`PixelCNN`: a gated PixelCNN (van den Oord et al. 2016, arXiv:1606.05328) over images
  ``[B, C, H, W]``. Dimensions are ordered in raster order (row by row, left to right), channel plane by
  channel plane, so with one channel dimension ``i`` is pixel ``(i // W, i % W)``. A vertical stack
  sees the rows strictly above, a horizontal stack the pixels to the left in the same row; both are
  built from shifted convolutions (PixelCNN++'s ``down_shifted`` / ``down_right_shifted``), which never
  read a later pixel at all, so the model has no blind spot and no causality leak, and the output at
  pixel ``i`` is computed from ``x_{<i}`` alone, to the last bit, whatever the later pixels hold.
* Output distributions per dimension (:class:`Categorical` for binary and categorical images and for
  discrete latents, :class:`DiscretizedLogisticMixture` for 8-bit images, PixelCNN++'s head on
  ``flowkernels.ops.discretized_logistic_logp``). Each can draw a sample as a deterministic function of
  pre-drawn uniform noise (Gumbel-max; Gumbel-max for the component and the inverse CDF for the value),
  which is what lets predictive sampling verify forecasts and still give exactly the sequential sample.
* :class:`ForecastingModules`: ``T`` small heads on the ARM's features at dimension ``i`` (and the value
  ``x_i``) that predict the distributions of dimensions ``i + 1 .. i + T``, trained by KL to the frozen
  ARM (:func:`train_forecaster`).
* :class:`VQAutoencoder`: a small vector-quantised autoencoder (EMA codebook) whose 8x8 code maps are the
  discrete latents of the paper's second setting; a :class:`PixelCNN` with a :class:`Categorical` head and
  an input embedding models the codes (:func:`train_vq_autoencoder`, :meth:`VQAutoencoder.encode`,
  :meth:`VQAutoencoder.decode`).

All training runs through :func:`flowkernels.models.training.fit` (Adam, warm-up, cosine decay, clipping,
progress bar) and is seeded: models are built under ``torch.manual_seed(seed)`` in a forked RNG state.
"""

from __future__ import annotations

import math
from abc import ABC, abstractmethod

import torch
import torch.nn.functional as F
from torch import nn

from ..data import iterate_minibatches
from ..ops import discretized_logistic_logp
from .figures import save_image_grid
from .noise import portable_rand
from .training import TrainHistory, evaluating, fit

__all__ = [
    "Categorical",
    "DiscretizedLogisticMixture",
    "Distribution",
    "ForecastingModules",
    "GatedLayer",
    "PixelCNN",
    "VQAutoencoder",
    "VectorQuantizer",
    "save_image_grid",
    "train_forecaster",
    "train_pixelcnn",
    "train_vq_autoencoder",
    "uniform_noise",
]

#: What :func:`train_forecaster` can minimise.
FORECAST_OBJECTIVES = ("kl", "draws")
#: PixelCNN++'s floor on the log-scale of a logistic (a scale of about 1e-3 of the [-1, 1] range).
_MIN_LOG_SCALE = -7.0
#: The seed of the noise of test KL estimates: fixed, so that runs and epochs are compared on the same draws.
_TEST_NOISE_SEED = 2020
#: Initial log-scale of the logistics of a head: a scale of 1/8 of the [-1, 1] range.
_INITIAL_LOG_SCALE = -math.log(4.0)


def uniform_noise(
    shape: tuple[int, ...], generator: torch.Generator | None, dtype: torch.dtype, device: torch.device
) -> torch.Tensor:
    """Uniforms in (0, 1) of ``shape``, kept away from 0 and 1 so that Gumbel and logistic transforms stay finite.

    Drawn on the generator's device (CPU by default, so that a seed gives the same noise everywhere), then
    moved to ``device``.
    """
    uniform = portable_rand(shape, generator, dtype=dtype, device=device)
    return uniform.clamp(torch.finfo(dtype).tiny, 1.0 - torch.finfo(dtype).eps)


def _gumbel(uniform: torch.Tensor) -> torch.Tensor:
    """Standard Gumbel noise ``-log(-log u)`` from uniforms in (0, 1)."""
    return -torch.log(-torch.log(uniform))


# ---------------------------------------------------------------------------------------------------
# Output distributions: one per dimension, parameters in the last axis


class Distribution(ABC):
    """The distribution of one discrete dimension with values ``0 .. levels - 1``.

    Parameters come as a tensor ``[..., params_per_dim]``; noise as uniforms in (0, 1), ``[..., noise_size]``.
    :meth:`sample` is a deterministic function of ``(params, noise)`` whose output, for noise drawn
    uniformly, is distributed as the model says: the reparametrisation predictive sampling needs.
    """

    levels: int
    params_per_dim: int
    noise_size: int

    @abstractmethod
    def log_probs(self, params: torch.Tensor) -> torch.Tensor:
        """Natural-log probabilities of every value: ``[..., levels]``."""

    @abstractmethod
    def sample(self, params: torch.Tensor, noise: torch.Tensor) -> torch.Tensor:
        """The value (int64 ``[...]``) that ``noise`` ``[..., noise_size]`` selects under ``params``."""

    def initial_bias(self) -> torch.Tensor:
        """The bias ``[params_per_dim]`` of a head's last layer at initialisation (zeros unless overridden)."""
        return torch.zeros(self.params_per_dim)

    def log_prob(self, x: torch.Tensor, params: torch.Tensor) -> torch.Tensor:
        """Natural-log probability of the integer values ``x`` ``[...]``: ``[...]``."""
        return self.log_probs(params).gather(-1, x.unsqueeze(-1)).squeeze(-1)

    def kl(self, p_params: torch.Tensor, q_params: torch.Tensor, noise: torch.Tensor) -> torch.Tensor:
        """``KL(p || q)`` in nats, ``[...]``: exact, a sum over the ``levels`` values (``noise`` is unused).

        Subclasses whose sum is costly estimate it from the sample that ``noise`` selects under ``p``.
        """
        log_p, log_q = self.log_probs(p_params), self.log_probs(q_params)
        return (log_p.exp() * (log_p - log_q)).sum(-1)

    def check_noise(self, noise: torch.Tensor, shape: tuple[int, ...], op: str) -> None:
        """Raise a ValueError naming ``op`` unless ``noise`` is floating point of ``shape + (noise_size,)``."""
        expected = (*shape, self.noise_size)
        if not isinstance(noise, torch.Tensor) or not noise.is_floating_point():
            kind = noise.dtype if isinstance(noise, torch.Tensor) else type(noise).__name__
            raise ValueError(f"{op}: noise must be a floating-point tensor of uniforms in (0, 1), got {kind}")
        if tuple(noise.shape) != expected:
            raise ValueError(
                f"{op}: noise must have shape {list(expected)} ([batch, channels, height, width, noise per "
                f"dimension of {self!r}]), got {list(noise.shape)}"
            )

    def _check_levels(self, levels: int) -> None:
        if isinstance(levels, bool) or not isinstance(levels, int) or levels < 2:
            raise ValueError(f"{type(self).__name__}: levels must be an integer >= 2, got {levels!r}")


class Categorical(Distribution):
    """A categorical over ``levels`` values, parametrised by logits (``params_per_dim = levels``).

    Sampling is Gumbel-max: ``argmax(logits + g)`` with ``g = -log(-log u)``, one uniform per value
    (``noise_size = levels``); ``argmax`` picks the first maximum, so ties (of probability zero) are
    broken the same way every time.
    """

    def __init__(self, levels: int) -> None:
        self._check_levels(levels)
        self.levels = self.params_per_dim = self.noise_size = levels

    def __repr__(self) -> str:
        return f"Categorical({self.levels})"

    def log_probs(self, params: torch.Tensor) -> torch.Tensor:
        return torch.log_softmax(params, dim=-1)

    def sample(self, params: torch.Tensor, noise: torch.Tensor) -> torch.Tensor:
        return torch.argmax(params + _gumbel(noise), dim=-1)


class DiscretizedLogisticMixture(Distribution):
    """PixelCNN++'s head: a mixture of ``mixtures`` logistics, discretized to ``levels`` bins with open edges.

    Values ``k`` live at ``-1 + 2k / (levels - 1)`` in [-1, 1] (bin width ``2 / (levels - 1)``); the
    lowest and highest bins take the mass of the tails. ``params = [logit_pi, mu, raw_log_scale]`` each
    ``[..., mixtures]`` (``log_scale`` is floored at -7, as in PixelCNN++). Likelihoods come from
    ``flowkernels.ops.discretized_logistic_logp``. Sampling uses ``mixtures + 1`` uniforms: Gumbel-max over
    the components with the first ``mixtures``, then the inverse CDF ``mu + s * logit(u)`` of the chosen
    logistic with the last, quantized to its bin; that gives exactly the discretized distribution.
    """

    def __init__(self, levels: int, mixtures: int = 5) -> None:
        self._check_levels(levels)
        if isinstance(mixtures, bool) or not isinstance(mixtures, int) or mixtures < 1:
            raise ValueError(f"DiscretizedLogisticMixture: mixtures must be a positive integer, got {mixtures!r}")
        self.levels, self.mixtures = levels, mixtures
        self.params_per_dim = 3 * mixtures
        self.noise_size = mixtures + 1
        self.bin_width = 2.0 / (levels - 1)

    def __repr__(self) -> str:
        return f"DiscretizedLogisticMixture({self.levels}, mixtures={self.mixtures})"

    def initial_bias(self) -> torch.Tensor:
        """Components spread over [-0.5, 0.5] with a scale of 1/8 of the range: identical components would get
        identical gradients and never separate, and narrow ones start closer to a trained model."""
        mu = torch.linspace(-0.5, 0.5, self.mixtures) if self.mixtures > 1 else torch.zeros(1)
        return torch.cat([torch.zeros(self.mixtures), mu, torch.full((self.mixtures,), _INITIAL_LOG_SCALE)])

    def split(self, params: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """``(logit_pi, mu, log_scale)``, each ``[..., mixtures]``, from ``params`` ``[..., 3 * mixtures]``."""
        logit_pi, mu, log_scale = params.unflatten(-1, (3, self.mixtures)).unbind(-2)
        return logit_pi, mu, log_scale.clamp(min=_MIN_LOG_SCALE)

    def to_unit(self, x: torch.Tensor, dtype: torch.dtype) -> torch.Tensor:
        """Integer values ``0 .. levels - 1`` to their bin centres in [-1, 1]."""
        return x.to(dtype) * self.bin_width - 1.0

    def _logp(self, x_unit: torch.Tensor, params: torch.Tensor) -> torch.Tensor:
        logit_pi, mu, log_scale = self.split(params)
        return discretized_logistic_logp(
            x_unit, mu, log_scale, logit_pi, bin_width=self.bin_width, lower=-1.0, upper=1.0
        )

    def log_prob(self, x: torch.Tensor, params: torch.Tensor) -> torch.Tensor:
        return self._logp(self.to_unit(x, params.dtype), params)

    def kl(self, p_params: torch.Tensor, q_params: torch.Tensor, noise: torch.Tensor) -> torch.Tensor:
        """A one-sample estimate of ``KL(p || q)``: ``log p(x) - log q(x)`` with ``x = sample(p_params, noise)``.

        Unbiased, and so is its gradient with respect to ``q`` (``-grad log q(x)``, maximum likelihood on
        samples of ``p``). The exact sum over 256 values costs ``256 * mixtures`` likelihood evaluations
        per dimension, which made training forecasting modules for 8-bit data 50 times slower.
        """
        x = self.sample(p_params.detach(), noise)
        return self.log_prob(x, p_params) - self.log_prob(x, q_params)

    def log_probs(self, params: torch.Tensor) -> torch.Tensor:
        grid = self.to_unit(torch.arange(self.levels, device=params.device), params.dtype)
        batch = params.shape[:-1]
        x_unit = grid.expand(*batch, self.levels)
        return self._logp(x_unit, params.unsqueeze(-2).expand(*batch, self.levels, self.params_per_dim))

    def sample(self, params: torch.Tensor, noise: torch.Tensor) -> torch.Tensor:
        logit_pi, mu, log_scale = self.split(params)
        component = torch.argmax(logit_pi + _gumbel(noise[..., : self.mixtures]), dim=-1, keepdim=True)
        mu, log_scale = mu.gather(-1, component).squeeze(-1), log_scale.gather(-1, component).squeeze(-1)
        u = noise[..., self.mixtures]
        value = mu + torch.exp(log_scale) * (torch.log(u) - torch.log1p(-u))
        # Bin k is [c_k - w/2, c_k + w/2) around its centre c_k = -1 + k w, as in the likelihood op.
        return torch.floor((value + 1.0) / self.bin_width + 0.5).clamp(0, self.levels - 1).long()


# ---------------------------------------------------------------------------------------------------
# The gated PixelCNN


class DownShiftedConv2d(nn.Conv2d):
    """A ``(kh, kw)`` convolution whose output at ``(r, c)`` reads rows ``r - kh + 1 .. r``, columns
    ``c - kw // 2 .. c + kw // 2`` (zero padding above and at the sides): it never reads a lower row."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        kh, kw = self.kernel_size
        return super().forward(F.pad(x, (kw // 2, kw // 2, kh - 1, 0)))


class DownRightShiftedConv2d(nn.Conv2d):
    """A ``(kh, kw)`` convolution whose output at ``(r, c)`` reads rows ``r - kh + 1 .. r``, columns
    ``c - kw + 1 .. c``: it never reads a lower row or a column to the right."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        kh, kw = self.kernel_size
        return super().forward(F.pad(x, (kw - 1, 0, kh - 1, 0)))


def _scaled(x: torch.Tensor, levels: int, dtype: torch.dtype) -> torch.Tensor:
    """Integer values ``0 .. levels - 1`` mapped linearly onto [-1, 1], as network inputs."""
    return x.to(dtype) * (2.0 / (levels - 1)) - 1.0


def _down_shift(x: torch.Tensor) -> torch.Tensor:
    """Move every row one down (a zero row on top): output row ``r`` holds input row ``r - 1``."""
    return F.pad(x, (0, 0, 1, 0))[:, :, :-1]


def _right_shift(x: torch.Tensor) -> torch.Tensor:
    """Move every column one right (a zero column on the left)."""
    return F.pad(x, (1, 0))[:, :, :, :-1]


def _gate(x: torch.Tensor) -> torch.Tensor:
    a, b = x.chunk(2, dim=1)
    return torch.tanh(a) * torch.sigmoid(b)


class GatedLayer(nn.Module):
    """One gated PixelCNN layer on a vertical stack ``v`` (rows above) and a horizontal stack ``h`` (left).

    ``v' = v + gate(conv_v(v))`` with a ``(k//2 + 1) x k`` down-shifted conv; ``h' = h + W gate(conv_h(h) +
    V conv_v(v))`` with a ``1 x (k//2 + 1)`` down-right-shifted conv and 1x1 convs ``V``, ``W``; ``gate(a, b)
    = tanh(a) sigmoid(b)``. Since ``v`` only ever holds rows strictly above (the first layer shifts it
    down) and ``h`` pixels strictly to the left, both invariants survive the layer: no blind spot, no leak.
    """

    def __init__(self, channels: int, kernel_size: int) -> None:
        super().__init__()
        self.v_conv = DownShiftedConv2d(channels, 2 * channels, (kernel_size // 2 + 1, kernel_size))
        self.h_conv = DownRightShiftedConv2d(channels, 2 * channels, (1, kernel_size // 2 + 1))
        self.link = nn.Conv2d(2 * channels, 2 * channels, 1)
        self.h_out = nn.Conv2d(channels, channels, 1)

    def forward(self, v: torch.Tensor, h: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        v_pre = self.v_conv(v)
        h_pre = self.h_conv(h) + self.link(v_pre)
        return v + _gate(v_pre), h + self.h_out(_gate(h_pre))


class PixelCNN(nn.Module):
    """A gated PixelCNN over integer images ``[B, C, H, W]``, in raster order (module doc), plane by plane.

    With ``C > 1`` the order is that of the ``(C, H, W)`` array: every pixel of channel 0 (R), then channel 1
    given all of channel 0, and so on. The network runs on the planes stacked into one tall image
    ``[C H, W]``, whose raster order is exactly that order (:meth:`positions`), and each plane also sees
    the earlier planes at every position through a convolution of its own (they all come earlier). The
    dimensions after a channel's pixel are its plane's next pixels, so forecasting works as for one channel.

    Args:
        distribution: the output distribution of every pixel (:class:`Categorical` or
            :class:`DiscretizedLogisticMixture`); its ``levels`` is the number of values a pixel takes.
        image_size: the ``(H, W)`` that samplers draw (the network itself is fully convolutional).
        hidden: channels of both stacks, and of the features :meth:`predict` returns.
        layers: gated layers after the input layer.
        kernel_size: odd kernel size of the gated layers.
        input_kernel: odd kernel size of the input layer (PixelCNN's 7x7: a wide first receptive field).
        embedding: ``None`` feeds a pixel as its value scaled to [-1, 1] (ordinal data: grey levels);
            an integer feeds it as a learned embedding of that size (unordered data: codebook indices).

    The input layer reads the pixels strictly above (vertical stack) and strictly to the left (horizontal
    stack), plus a constant channel that tells real pixels from the zero padding. The head is PixelCNN's
    ``1x1 conv -> ReLU -> 1x1 conv`` on ``ReLU(h)``; the features it starts from, ``h`` at pixel ``i``, depend
    on ``x_{<i}`` only, which is what the forecasting modules build on.
    """

    def __init__(
        self,
        distribution: Distribution,
        *,
        image_size: tuple[int, int] = (8, 8),
        hidden: int = 64,
        layers: int = 5,
        kernel_size: int = 3,
        input_kernel: int = 7,
        embedding: int | None = None,
        channels: int = 1,
    ) -> None:
        super().__init__()
        if isinstance(channels, bool) or not isinstance(channels, int) or channels < 1:
            raise ValueError(f"PixelCNN: channels must be a positive integer, got {channels!r}")
        if not isinstance(distribution, Distribution):
            raise ValueError(f"PixelCNN: distribution must be a Distribution, got {type(distribution).__name__}")
        for name, value in (("kernel_size", kernel_size), ("input_kernel", input_kernel)):
            if value < 1 or value % 2 == 0:
                raise ValueError(f"PixelCNN: {name} must be a positive odd integer, got {value}")
        if hidden < 1 or layers < 0 or len(image_size) != 2 or min(image_size) < 1:
            raise ValueError(
                f"PixelCNN: need hidden >= 1, layers >= 0 and a positive (H, W), got {hidden}, {layers}, {image_size}"
            )
        self.distribution = distribution
        self.image_size = (int(image_size[0]), int(image_size[1]))
        self.hidden = hidden
        self.embed = None if embedding is None else nn.Embedding(distribution.levels, embedding)
        in_channels = (1 if embedding is None else embedding) + 1
        self.v_in = DownShiftedConv2d(in_channels, hidden, (input_kernel // 2 + 1, input_kernel))
        self.h_in = DownRightShiftedConv2d(in_channels, hidden, (1, input_kernel // 2 + 1))
        self.h_link = nn.Conv2d(hidden, hidden, 1)
        self.layers = nn.ModuleList(GatedLayer(hidden, kernel_size) for _ in range(layers))
        self.head = nn.Sequential(
            nn.ReLU(), nn.Conv2d(hidden, hidden, 1), nn.ReLU(), nn.Conv2d(hidden, distribution.params_per_dim, 1)
        )
        with torch.no_grad():
            self.head[-1].bias.copy_(distribution.initial_bias())
        self.channels = channels
        # Planes after the first also see the earlier planes at every position (all of them come earlier):
        # their values and the plane's one-hot index, through a convolution run on each plane separately.
        if channels > 1:
            represented = 1 if embedding is None else embedding
            self.plane_context = nn.Conv2d(channels * represented + channels, hidden, input_kernel, padding="same")

    @property
    def event_shape(self) -> tuple[int, int, int]:
        """``(C, H, W)``: the shape of one image that samplers draw."""
        return (self.channels, *self.image_size)

    @property
    def dims(self) -> int:
        """Dimensions of one image, ``C * H * W``: the number of calls of sequential sampling."""
        return self.channels * self.image_size[0] * self.image_size[1]

    def _check_input(self, x: torch.Tensor, op: str) -> None:
        shape = f"[B, {self.channels}, H, W]"
        if not isinstance(x, torch.Tensor) or x.dtype.is_floating_point or x.dtype.is_complex or x.dtype == torch.bool:
            kind = x.dtype if isinstance(x, torch.Tensor) else type(x).__name__
            raise ValueError(f"PixelCNN.{op}: x must be an integer tensor {shape}, got {kind}")
        if x.dim() != 4 or x.shape[1] != self.channels:
            raise ValueError(
                f"PixelCNN.{op}: x must have shape {shape} ({self.channels} channel(s)), got {list(x.shape)}"
            )

    def positions(self, x: torch.Tensor) -> torch.Tensor:
        """The images ``[B, C, H, W]`` laid out as the features are, ``[B, 1, C H, W]``: the planes stacked into
        one tall image, whose raster order is the ARM's order (see the class doc)."""
        return x.reshape(x.shape[0], 1, -1, x.shape[-1])

    def _represent(self, x: torch.Tensor) -> torch.Tensor:
        """Network inputs for the values ``[B, C, H, W]``: ``[B, C, R, H, W]`` (scaled values, or embeddings)."""
        if self.embed is None:
            return _scaled(x, self.distribution.levels, self.v_in.weight.dtype).unsqueeze(2)
        return self.embed(x).permute(0, 1, 4, 2, 3)

    def _plane_context(self, represented: torch.Tensor) -> torch.Tensor:
        """``[B, hidden, C H, W]``: for plane ``c``, a convolution of planes ``0 .. c - 1`` and of ``c``'s index."""
        batch, channels, size, height, width = represented.shape
        earlier = torch.ones(channels, channels, device=represented.device).tril(-1)  # [c, k]: k before c
        seen = represented.unsqueeze(1) * earlier.view(1, channels, channels, 1, 1, 1).to(represented.dtype)
        index = torch.eye(channels, dtype=represented.dtype, device=represented.device)
        index = index.view(1, channels, channels, 1, 1).expand(batch, -1, -1, height, width)
        inputs = torch.cat([seen.reshape(batch, channels, channels * size, height, width), index], dim=2)
        context = self.plane_context(inputs.flatten(0, 1)).view(batch, channels, -1, height, width)
        return context.transpose(1, 2).reshape(batch, -1, channels * height, width)

    def features(self, x: torch.Tensor) -> torch.Tensor:
        """The features ``h`` ``[B, hidden, C H, W]`` of the last layer (planes stacked as :meth:`positions`); at
        dimension ``i`` they depend on ``x_{<i}`` only."""
        self._check_input(x, "features")
        represented = self._represent(x.contiguous())
        tall = represented.transpose(1, 2).reshape(x.shape[0], represented.shape[2], -1, x.shape[-1])
        inputs = torch.cat([tall, torch.ones_like(tall[:, :1])], dim=1)
        v = _down_shift(self.v_in(inputs))
        h = _right_shift(self.h_in(inputs)) + self.h_link(v)
        if self.channels > 1:
            context = self._plane_context(represented)
            v, h = v + context, h + context
        for layer in self.layers:
            v, h = layer(v, h)
        return h

    def params_from_features(self, features: torch.Tensor) -> torch.Tensor:
        """The distribution parameters ``[B, C, H, W, params_per_dim]`` the head computes from :meth:`features`."""
        params = self.head(features).permute(0, 2, 3, 1)  # [B, C H, W, P]
        return params.reshape(params.shape[0], self.channels, -1, *params.shape[2:])

    def predict(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """One ARM call: ``(params [B, C, H, W, P], features [B, hidden, C H, W])`` for the images ``x``."""
        features = self.features(x)
        return self.params_from_features(features), features

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """The distribution parameters of every dimension given the dimensions before it: ``[B, C, H, W, P]``."""
        return self.predict(x)[0]

    def log_prob(self, x: torch.Tensor) -> torch.Tensor:
        """Natural-log probability of the images ``x`` (values ``0 .. levels - 1``), shape ``[B]``."""
        self._check_input(x, "log_prob")
        levels = self.distribution.levels
        if x.numel() and (x.min() < 0 or x.max() >= levels):
            raise ValueError(
                f"PixelCNN.log_prob: values must be in 0..{levels - 1}, got {x.min().item()}..{x.max().item()}"
            )
        return self.distribution.log_prob(x, self(x)).flatten(1).sum(1)

    def bits_per_dim(self, x: torch.Tensor) -> torch.Tensor:
        """``-log2 P(x) / (H W)`` per image, shape ``[B]``."""
        return -self.log_prob(x) / (x[0].numel() * math.log(2))


class ForecastingModules(nn.Module):
    """``horizon`` forecasting heads on a :class:`PixelCNN`'s features (the paper's learned forecasting).

    Module ``t`` (``t = 1 .. horizon``) predicts the distribution of dimension ``i + t`` (raster order, so it
    wraps to the next row) from what is known at dimension ``i`` once an ARM call has fixed it: the ARM's
    features there, which depend on ``x_{<i}`` only, and the value ``x_i`` itself (scaled to [-1, 1] and
    embedded). The value is our addition to the paper's modules, which read the features alone: it is
    known when the forecasts are made (the call just sampled it) and without it module 1 has to average
    over every ``x_i``, which on 8-bit images leaves its forecasts almost never exactly right.
    Each module is ``1x1 conv -> ReLU -> 1x1 conv``, like the ARM's own head. The heads share no weights
    (the first conv's outputs are per module, the second conv is grouped), so the first ``T`` modules of a
    trained forecaster are a trained ``T``-module forecaster: one training run serves every horizon.
    """

    def __init__(
        self, features: int, distribution: Distribution, horizon: int, hidden: int = 64, embedding: int = 16
    ) -> None:
        super().__init__()
        if isinstance(horizon, bool) or not isinstance(horizon, int) or horizon < 1:
            raise ValueError(f"ForecastingModules: horizon must be a positive integer, got {horizon!r}")
        self.distribution = distribution
        self.horizon = horizon
        self.embed = nn.Embedding(distribution.levels, embedding)
        self.net = nn.Sequential(
            nn.Conv2d(features + 1 + embedding, horizon * hidden, 1),
            nn.ReLU(),
            nn.Conv2d(horizon * hidden, horizon * distribution.params_per_dim, 1, groups=horizon),
        )
        with torch.no_grad():
            self.net[-1].bias.copy_(distribution.initial_bias().repeat(horizon))

    def forward(self, features: torch.Tensor, x: torch.Tensor) -> torch.Tensor:
        """Forecasts ``[B, horizon, 1, H, W, P]`` from the ARM's ``features`` ``[B, F, H, W]`` and the values
        ``x`` laid out as the features (:meth:`PixelCNN.positions`, ``[B, 1, C H, W]``); entry ``[:, t - 1]`` at
        dimension ``i`` forecasts dimension ``i + t``."""
        inputs = torch.cat(
            [
                torch.relu(features),
                _scaled(x, self.distribution.levels, features.dtype),
                self.embed(x[:, 0]).permute(0, 3, 1, 2),
            ],
            dim=1,
        )
        out = self.net(inputs)
        batch, _, height, width = out.shape
        return out.view(batch, self.horizon, -1, height, width).permute(0, 1, 3, 4, 2).unsqueeze(2)

    def kl_to(
        self, arm_params: torch.Tensor, forecast_params: torch.Tensor, generator: torch.Generator | None = None
    ) -> torch.Tensor:
        """Mean ``KL(ARM || module t)`` in nats per module, shape ``[horizon]``, over the batch and the dimensions.

        ``arm_params`` ``[B, 1, H, W, P]`` are the ARM's distributions of the data's dimensions; module ``t``'s
        forecast at dimension ``i`` is compared with the ARM at ``i + t`` (dimensions past the end drop out).
        The KL is :meth:`Distribution.kl`: exact for categoricals, estimated with noise from ``generator``
        (one draw per dimension, shared by the modules) for logistic mixtures.
        """
        arm = arm_params.flatten(1, -2)  # [B, d, P]
        forecast = forecast_params.flatten(2, -2)  # [B, T, d, P]
        batch, dims, _ = arm.shape
        noise = uniform_noise((batch, dims, self.distribution.noise_size), generator, arm.dtype, arm.device)
        kls = [
            self.distribution.kl(arm[:, t:], forecast[:, t - 1, : dims - t], noise[:, t:]).mean()
            if t < dims
            else arm.new_zeros(())
            for t in range(1, self.horizon + 1)
        ]
        return torch.stack(kls)

    def draws_nll(self, x: torch.Tensor, forecast_params: torch.Tensor) -> torch.Tensor:
        """Mean ``-log P_module_t(x_{i+t})`` in nats per module, shape ``[horizon]``: each module's forecast at
        dimension ``i`` scored on the value ``x`` holds ``t`` dimensions later (dimensions past the end drop out)."""
        values = x.flatten(1)  # [B, d]
        forecast = forecast_params.flatten(2, -2)  # [B, T, d, P]
        dims = values.shape[1]
        nlls = [
            -self.distribution.log_prob(values[:, t:], forecast[:, t - 1, : dims - t]).mean()
            if t < dims
            else forecast.new_zeros(())
            for t in range(1, self.horizon + 1)
        ]
        return torch.stack(nlls)


# ---------------------------------------------------------------------------------------------------
# A vector-quantised autoencoder: the discrete latents of the second setting


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

    def __init__(self, levels: int = 256, codes: int = 32, dim: int = 16, hidden: int = 64, beta: float = 0.25) -> None:
        super().__init__()
        self.levels, self.beta = levels, beta
        self.pixel = DiscretizedLogisticMixture(levels, 1)
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
        return torch.floor((mu + 1.0) / self.pixel.bin_width + 0.5).clamp(0, self.levels - 1).long()


# ---------------------------------------------------------------------------------------------------
# Training


def _mean_over(data: torch.Tensor, per_batch, batch_size: int = 500) -> float:
    """The mean of ``per_batch(batch)`` (a per-example ``[B]`` tensor) over ``data``, without autograd."""
    total = 0.0
    for batch in iterate_minibatches(data, batch_size, shuffle=False):
        total += per_batch(batch).sum().item()
    return total / data.shape[0]


def _seeded(seed: int, build):
    """``build()`` under ``torch.manual_seed(seed)``, leaving the caller's global RNG state alone."""
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        return build()


def _fit_options(train: torch.Tensor, epochs: int, batch_size: int, lr: float, seed: int, progress: bool, desc: str):
    """The keyword arguments of :func:`fit` shared by the trainers here: batches from a generator seeded
    ``seed``, a warm-up of 50 steps (at most a tenth of the run), clipping at a norm of 100."""
    if isinstance(epochs, bool) or not isinstance(epochs, int) or epochs < 1:
        raise ValueError(f"{desc}: epochs must be a positive integer, got {epochs!r}")
    if isinstance(batch_size, bool) or not isinstance(batch_size, int) or batch_size < 1:
        raise ValueError(f"{desc}: batch_size must be a positive integer, got {batch_size!r}")
    total_steps = epochs * math.ceil(len(train) / batch_size)
    return {
        "epochs": epochs,
        "batch_size": batch_size,
        "lr": lr,
        "generator": torch.Generator().manual_seed(seed),
        "warmup_steps": min(50, total_steps // 10),
        "max_grad_norm": 100.0,
        "eval_every": None,
        "desc": desc,
        "progress": progress,
    }


def train_pixelcnn(
    train: torch.Tensor,
    test: torch.Tensor,
    distribution: Distribution,
    *,
    epochs: int,
    batch_size: int = 64,
    lr: float = 2e-3,
    seed: int = 0,
    progress: bool = True,
    desc: str = "pixelcnn",
    **model_options,
) -> tuple[PixelCNN, TrainHistory]:
    """Fit a :class:`PixelCNN` with ``distribution`` to the integer images ``train`` ``[N, 1, H, W]``.

    Maximum likelihood (bits/dim) in the loop of :func:`~flowkernels.models.training.fit`; ``test`` is
    evaluated 5 times and at the end (``history.test_bpd``). ``model_options`` go to :class:`PixelCNN`
    (``image_size`` defaults to the data's). Deterministic for a given ``seed`` on a given machine.
    Returns the model in eval mode and its :class:`~flowkernels.models.training.TrainHistory`.
    """
    model_options.setdefault("image_size", tuple(train.shape[-2:]))
    model = _seeded(seed, lambda: PixelCNN(distribution, **model_options))
    config = {"distribution": repr(distribution), "epochs": epochs, "batch_size": batch_size, "lr": lr, "seed": seed}
    history = TrainHistory({**config, **model_options})

    def evaluate() -> float:
        with evaluating(model):
            return _mean_over(test, model.bits_per_dim)

    history.test_bpd.append((0, evaluate()))
    options = _fit_options(train, epochs, batch_size, lr, seed, progress, desc)
    fit(model, train, lambda batch: model.bits_per_dim(batch).mean(), evaluate, history, **options)
    return model, history


def train_forecaster(
    arm: PixelCNN,
    train: torch.Tensor,
    test: torch.Tensor,
    *,
    horizon: int,
    epochs: int,
    hidden: int = 64,
    batch_size: int = 64,
    lr: float = 2e-3,
    seed: int = 0,
    progress: bool = True,
    desc: str = "forecast",
    objective: str = "kl",
) -> tuple[ForecastingModules, TrainHistory]:
    """Train :class:`ForecastingModules` on the frozen ``arm``, on the images ``train`` (data, or the ARM's samples).

    One ARM call per batch gives the ARM's distributions of every dimension and its features; the modules
    forecast from the features. ``objective``:

    * ``"kl"``: minimise ``sum_t KL(ARM_{i+t} || module_t at i)``, averaged over dimensions (each module's
      KL is its own term: the modules share no weights); for logistic mixtures a one-sample estimate of it
      (:meth:`DiscretizedLogisticMixture.kl`). On the data this is teacher forcing, as the ARM was trained.
    * ``"draws"``: ``train`` and ``test`` are samples of the ARM (e.g. :func:`flowkernels.sampling.sample_arm`),
      and module ``t`` at ``i`` is scored by the log-probability it gives the ARM's own draw ``x_{i+t}``:
      what sampling with the same noise will check it against. (In expectation over the draws this is the
      KL plus the ARM's entropy, so the optimum is the same; the inputs are what sampling feeds the modules.)

    Losses are in bits. The ARM is not changed. ``history.test_bpd`` holds the test loss in bits (summed over
    modules) where the ARMs hold bits/dim.
    """
    if objective not in FORECAST_OBJECTIVES:
        raise ValueError(f"train_forecaster: objective must be one of {FORECAST_OBJECTIVES}, got {objective!r}")
    forecaster = _seeded(seed, lambda: ForecastingModules(arm.hidden, arm.distribution, horizon, hidden))
    arm.eval()
    for parameter in arm.parameters():
        parameter.requires_grad_(False)

    def loss_bits(batch: torch.Tensor, generator: torch.Generator) -> torch.Tensor:
        with torch.no_grad():
            params, features = arm.predict(batch)
        forecasts = forecaster(features, arm.positions(batch))
        if objective == "draws":
            return forecaster.draws_nll(batch, forecasts).sum() / math.log(2)
        return forecaster.kl_to(params, forecasts, generator).sum() / math.log(2)

    # The KL estimates of logistic mixtures draw noise: training noise from the seed, test noise fixed.
    train_generator = torch.Generator().manual_seed(seed + 1)

    def evaluate() -> float:
        generator = torch.Generator().manual_seed(_TEST_NOISE_SEED)
        with evaluating(forecaster):
            return _mean_over(test, lambda batch: loss_bits(batch, generator).expand(batch.shape[0]))

    config = {"horizon": horizon, "hidden": hidden, "epochs": epochs, "batch_size": batch_size, "lr": lr, "seed": seed}
    history = TrainHistory(config | {"objective": objective})
    history.test_bpd.append((0, evaluate()))
    options = _fit_options(train, epochs, batch_size, lr, seed, progress, desc)
    try:
        fit(forecaster, train, lambda batch: loss_bits(batch, train_generator), evaluate, history, **options)
    finally:
        for parameter in arm.parameters():
            parameter.requires_grad_(True)
    return forecaster, history


def train_vq_autoencoder(
    train: torch.Tensor,
    test: torch.Tensor,
    *,
    epochs: int,
    batch_size: int = 64,
    lr: float = 2e-3,
    seed: int = 0,
    progress: bool = True,
    desc: str = "vq-ae",
    **model_options,
) -> tuple[VQAutoencoder, TrainHistory]:
    """Fit a :class:`VQAutoencoder` to 8-bit images ``[N, 1, H, W]``; ``history.test_bpd`` is the test
    reconstruction bits/dim (given the codes, so not a likelihood of the images)."""
    model = _seeded(seed, lambda: VQAutoencoder(**model_options))
    history = TrainHistory({"epochs": epochs, "batch_size": batch_size, "lr": lr, "seed": seed, **model_options})

    def evaluate() -> float:
        with evaluating(model):
            return _mean_over(test, model.reconstruction_bpd)

    history.test_bpd.append((0, evaluate()))
    options = _fit_options(train, epochs, batch_size, lr, seed, progress, desc)
    fit(model, train, model.loss, evaluate, history, **options)
    return model, history


# ---------------------------------------------------------------------------------------------------
# Figures
