"""Autoregressive models (ARMs) for predictive sampling: a gated PixelCNN and its forecasting modules.

The models of "Predictive Sampling with Forecasting Autoregressive Models" (Wiggers & Hoogeboom 2020,
arXiv:2002.09928), scaled down for a CPU. :mod:`flowkernels.sampling` samples them.

* :class:`PixelCNN`: a gated PixelCNN (van den Oord et al. 2016, arXiv:1606.05328) over images
  ``[B, C, H, W]``. Dimensions are ordered in raster order (row by row, left to right), channel plane by
  channel plane, so with one channel dimension ``i`` is pixel ``(i // W, i % W)``. A vertical stack
  sees the rows strictly above, a horizontal stack the pixels to the left in the same row; both are
  built from shifted convolutions (PixelCNN++'s ``down_shifted`` / ``down_right_shifted``), which never
  read a later pixel at all, so the model has no blind spot and no causality leak, and the output at
  pixel ``i`` is computed from ``x_{<i}`` alone, to the last bit, whatever the later pixels hold. Its
  output distribution per dimension is one of :mod:`flowkernels.models.distributions`.
* :class:`ForecastingModules`: ``T`` small heads on the ARM's features at dimension ``i`` (and the value
  ``x_i``) that predict the distributions of dimensions ``i + 1 .. i + T``, trained by KL to the frozen
  ARM, or on its own draws (:func:`~flowkernels.models.arm_training.train_forecaster`).

The discrete latents of the second setting come from :mod:`flowkernels.models.vq`. Training (seeded, in
:func:`flowkernels.models.training.fit`) is in :mod:`flowkernels.models.arm_training`.
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import nn

from .._deprecation import moved_names
from .distributions import Distribution, uniform_noise

__all__ = ["ForecastingModules", "GatedLayer", "PixelCNN"]


# Categorical moved to distributions and the trainers to arm_training; the README's examples imported them from
# here, so those imports still work, with a DeprecationWarning.
__getattr__ = moved_names(
    __name__,
    {
        "Categorical": "flowkernels.models.distributions",
        "train_pixelcnn": "flowkernels.models.arm_training",
        "train_forecaster": "flowkernels.models.arm_training",
    },
)


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


def _scaled(x: torch.Tensor, data_levels: int, dtype: torch.dtype) -> torch.Tensor:
    """Integer values ``0 .. data_levels - 1`` mapped linearly onto [-1, 1], as network inputs."""
    return x.to(dtype) * (2.0 / (data_levels - 1)) - 1.0


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
            :class:`DiscretizedLogisticMixture`); its ``data_levels`` is the number of values a pixel takes.
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

    Example (a binary ARM on 4x4 images; predictive sampling gives exactly the sequential samples):
        >>> import torch
        >>> from flowkernels.models.distributions import Categorical
        >>> from flowkernels.models.pixelcnn import PixelCNN
        >>> from flowkernels.sampling import draw_noise, fixed_point, sequential
        >>> _ = torch.manual_seed(0)
        >>> arm = PixelCNN(Categorical(2), image_size=(4, 4), hidden=8, layers=2).eval()
        >>> noise = draw_noise(arm, 3, torch.Generator().manual_seed(1))
        >>> slow, fast = sequential(arm, noise), fixed_point(arm, noise)
        >>> torch.equal(slow.samples, fast.samples), slow.calls, fast.calls <= slow.calls
        (True, 16, True)
        >>> arm.log_prob(slow.samples).shape
        torch.Size([3])
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
        self.embed = None if embedding is None else nn.Embedding(distribution.data_levels, embedding)
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
            return _scaled(x, self.distribution.data_levels, self.v_in.weight.dtype).unsqueeze(2)
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
        """Natural-log probability of the images ``x`` (values ``0 .. data_levels - 1``), shape ``[B]``."""
        self._check_input(x, "log_prob")
        data_levels = self.distribution.data_levels
        if x.numel() and (x.min() < 0 or x.max() >= data_levels):
            raise ValueError(
                f"PixelCNN.log_prob: values must be in 0..{data_levels - 1}, got {x.min().item()}..{x.max().item()}"
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
        self.embed = nn.Embedding(distribution.data_levels, embedding)
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
                _scaled(x, self.distribution.data_levels, features.dtype),
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
# Training
