"""Dequantization: continuous flows as models of discrete data, with the bounds of arXiv:2001.11235.

A flow has a density ``p(v)`` on continuous ``v``; a discrete ``x`` (integers ``0 .. data_levels - 1``) gets
the probability of its bin, ``P(x) = integral over u in [0, 1)^D of p(x + u) du``. With a dequantizer
``q(u | x)`` whose support is exactly that unit cube, the log weights ``log w = log p(x + u) - log q(u | x)``
(``u ~ q``) have ``E[w] = P(x)``, which gives a family of lower bounds on ``log P(x)`` ("Learning Discrete
Distributions by Dequantization", Hoogeboom, Cohen & Tomczak 2020): the ELBO, the importance-weighted bound
and the Renyi bound of :mod:`flowkernels.models.bounds`.

Dequantizers (all :class:`Dequantizer`): :class:`UniformDequantizer`; :class:`VariationalDequantizer`,
a conditional flow (logistic base, masked affine couplings, sigmoid) whose networks see ``x``;
:class:`AutoregressiveDequantizer`, the paper's ARD, ``q(u | x) = prod_d q(u_d | u_<d, x)`` with every
conditional computed by a masked (PixelCNN-style) network of ``u_<d`` and the features of ``x``; and
:class:`ARConvDequantizer`, triangular in the same order but linear in ``u_<d`` (the autoregressive
convolutions of ``ops.ar_conv2d`` and elementwise maps). :class:`DequantizedFlow` pairs any flow having
``log_prob`` (e.g. the :class:`~flowkernels.models.glow.Glow` of this package, with 1x1, emerging or periodic
convolutions) with a dequantizer and an objective; :mod:`flowkernels.models.dequantization_training` fits
one to the digits.

Data are images ``[B, C, H, W]`` (a vector of D values is ``[B, D, 1, 1]``). The flow sees
``(x + u) / data_levels`` in ``[0, 1)``, so ``log p(x + u) = log p_flow((x + u) / data_levels) - D log(data_levels)``.
"""

from __future__ import annotations

import math
from collections.abc import Callable

import numpy
import torch
import torch.nn.functional as F
from torch import nn

from .. import ops
from .._deprecation import renamed_keywords
from ..nn import ActNorm, AffineCoupling, FlowSequential, Invertible1x1Conv, MaskedConv2d
from ..nn.flow import check_image, soft_clamp, zero_conv
from .bounds import OBJECTIVES, bound, check_alpha
from .distributions import standard_normal_log_prob
from .noise import portable_rand
from .training import evaluating, mean_over

__all__ = [
    "DEQUANTIZERS",
    "ARConvDequantizer",
    "AutoregressiveDequantizer",
    "DequantizedFlow",
    "Dequantizer",
    "NormalPriorFlow",
    "UniformDequantizer",
    "VariationalDequantizer",
    "make_dequantizer",
    "quantize",
    "to_unit_interval",
    "toy_flow",
]

DEQUANTIZERS = ("uniform", "variational", "arconv", "autoregressive")

_LOG2 = math.log(2.0)
# Log-scales of the flow dequantizers are soft-clamped to (-3, 3): no step can blow a scale up.
_MAX_LOG_SCALE = 3.0
# The neural steps' tail parameters log a to (-0.5, 0.5): compounded over the steps, a tail exponent a^steps
# larger than that would overflow float32 in the sinh-arcsinh maps.
_MAX_LOG_TAIL = 0.5


# ---------------------------------------------------------------------------------------------------------
# Dequantizers.


def _check_num_samples(name: str, num_samples: int) -> int:
    if int(num_samples) != num_samples or num_samples < 1:
        raise ValueError(f"{name}: the number of samples K must be an integer >= 1, got {num_samples}")
    return int(num_samples)


def _sigmoid(z: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """``u = sigmoid(z)`` and ``log du/dz`` per element."""
    return torch.sigmoid(z), F.logsigmoid(z) + F.logsigmoid(-z)


def _module_dtype(module: nn.Module) -> torch.dtype:
    """The floating dtype of a module's parameters or buffers (the default dtype if it has none)."""
    for tensor in [*module.parameters(), *module.buffers()]:
        if tensor.is_floating_point():
            return tensor.dtype
    return torch.get_default_dtype()


def _logit(u: torch.Tensor) -> torch.Tensor:
    return torch.log(u) - torch.log1p(-u)


class Dequantizer(nn.Module):
    """``q(u | x)`` with support exactly ``[0, 1)^D``: ``sample`` draws ``u`` with ``log q``, ``log_prob`` scores.

    Subclasses implement ``_sample(x, num_samples, generator) -> (u, log_q)``, with ``u`` ``[K * B, C, H, W]``
    (sample-major: row ``k * B + b`` is draw ``k`` for example ``b``) and ``log_q`` ``[K * B]``, and
    ``log_prob(u, x) -> [B]``.
    """

    def __init__(self, channels: int, data_levels: int) -> None:
        super().__init__()
        if data_levels < 2:
            raise ValueError(f"{type(self).__name__}: data_levels must be at least 2, got {data_levels}")
        self.channels = channels
        self.data_levels = data_levels

    def _check_x(self, x: torch.Tensor) -> None:
        check_image(type(self).__name__, x, self.channels)

    def sample(
        self, x: torch.Tensor, num_samples: int = 1, generator: torch.Generator | None = None
    ) -> tuple[torch.Tensor, torch.Tensor]:
        """``num_samples`` draws ``u ~ q(. | x)``: ``u`` ``[K, B, C, H, W]`` in ``[0, 1)`` and ``log q`` ``[K, B]``.

        The noise is drawn on the generator's device (CPU by default), so a seed gives the same ``u`` on
        any device.
        """
        self._check_x(x)
        k = _check_num_samples(f"{type(self).__name__}.sample", num_samples)
        batch = x.shape[0]
        u, log_q = self._sample(x, k, generator)
        # x + u must stay in the bin of x in floating point too: where u is within rounding of 1 (a sigmoid
        # of a large logit, or a uniform draw next to 1), x + u could round up to x + 1. Clamping u to
        # 1 - data_levels * eps keeps every x + u < data_levels below the next integer. It moves only the draws in
        # the last data_levels * eps of the bin (3e-5 of it for 256 levels in float32) and leaves their log q.
        u = u.clamp(max=1.0 - self.data_levels * torch.finfo(u.dtype).eps)
        return u.view(k, *x.shape), log_q.view(k, batch)

    def dequantize(
        self, x: torch.Tensor, generator: torch.Generator | None = None
    ) -> tuple[torch.Tensor, torch.Tensor]:
        """One draw per example: the continuous ``(x + u) / data_levels`` in ``[0, 1)`` with ``u ~ q(. | x)``, and
        ``log q(u | x)`` ``[B]``. :func:`quantize` maps it back to ``x``."""
        u, log_q = self.sample(x, 1, generator)
        return to_unit_interval(x, u[0], self.data_levels), log_q[0]

    def _sample(
        self, x: torch.Tensor, num_samples: int, generator: torch.Generator | None
    ) -> tuple[torch.Tensor, torch.Tensor]:
        raise NotImplementedError  # pragma: no cover - abstract

    def log_prob(self, u: torch.Tensor, x: torch.Tensor) -> torch.Tensor:  # pragma: no cover - abstract
        """``log q(u | x)`` per example, ``u`` and ``x`` both ``[B, C, H, W]``."""
        raise NotImplementedError

    def _check_u(self, u: torch.Tensor, x: torch.Tensor) -> None:
        self._check_x(x)
        if u.shape != x.shape:
            raise ValueError(
                f"{type(self).__name__}.log_prob: u must have the shape of x {list(x.shape)}, got {list(u.shape)}"
            )


def to_unit_interval(x: torch.Tensor, u: torch.Tensor, data_levels: int) -> torch.Tensor:
    """The dequantized point ``(x + u) / data_levels`` in ``[0, 1)`` of integers ``x`` (``0 .. data_levels - 1``)
    and noise ``u`` in ``[0, 1)``, in ``u``'s dtype."""
    return (x.to(u.dtype) + u) / data_levels


def quantize(x_cont: torch.Tensor, data_levels: int) -> torch.Tensor:
    """Back from ``[0, 1)`` to integers ``0 .. data_levels - 1``: the bin ``[k, k + 1) / data_levels`` that
    ``x_cont`` is in.

    ``floor`` rather than ``round`` because dequantization adds noise in ``[0, 1)``; values a sample puts
    outside ``[0, 1)`` are clamped.

    >>> x = torch.tensor([[[[0, 3], [16, 9]]]])
    >>> y, log_q = UniformDequantizer(1, 17).dequantize(x, torch.Generator().manual_seed(0))
    >>> bool(((y >= 0) & (y < 1)).all()), torch.equal(quantize(y, 17), x), log_q.tolist()
    (True, True, [0.0])
    """
    return torch.floor(x_cont * data_levels).clamp(0, data_levels - 1).long()


class UniformDequantizer(Dequantizer):
    """``u ~ U[0, 1)^D`` whatever ``x``: ``log q = 0``. No parameters."""

    def __init__(self, channels: int, data_levels: int) -> None:
        super().__init__(channels, data_levels)
        # Carries the dtype and device of the samples through .to(), .double() and the like.
        self.register_buffer("_like", torch.empty(0), persistent=False)

    def _sample(
        self, x: torch.Tensor, num_samples: int, generator: torch.Generator | None
    ) -> tuple[torch.Tensor, torch.Tensor]:
        shape = (num_samples * x.shape[0], *x.shape[1:])
        u = portable_rand(shape, generator, dtype=self._like.dtype, device=x.device)
        return u, u.new_zeros(shape[0])

    def log_prob(self, u: torch.Tensor, x: torch.Tensor) -> torch.Tensor:
        self._check_u(u, x)
        inside = ((u >= 0) & (u < 1)).flatten(1).all(1)
        return torch.where(inside, 0.0, -math.inf).to(u.dtype)


class ImageFeatures(nn.Module):
    """Features of the integer image ``x`` for a dequantizer: two 3x3 convs with ReLUs, ``hidden`` channels.
    (The conditional flows' conditioning network is :class:`flowkernels.models.conditional.ConditionNet`.)"""

    def __init__(self, channels: int, data_levels: int, hidden: int) -> None:
        super().__init__()
        self.data_levels = data_levels
        self.net = nn.Sequential(
            nn.Conv2d(channels, hidden, 3, padding=1),
            nn.ReLU(),
            nn.Conv2d(hidden, hidden, 3, padding=1),
            nn.ReLU(),
        )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        dtype = self.net[0].weight.dtype
        return self.net(x.to(dtype) * (2.0 / (self.data_levels - 1)) - 1.0)


def _logistic_log_density(eps: torch.Tensor) -> torch.Tensor:
    return F.logsigmoid(eps) + F.logsigmoid(-eps)


class _ConditionalLogistic(nn.Module):
    """``z = mean(h) + exp(log_scale(h)) * eps``, ``eps`` standard logistic: the base of the flow dequantizers.

    Logistic rather than Gaussian because ``sigmoid(eps)`` is then exactly uniform: with the zero-initialised
    mean and log-scale and identity-initialised transforms after it, an untrained flow dequantizer IS
    uniform dequantization, and training can only move it towards a tighter bound.
    """

    def __init__(self, channels: int, hidden: int) -> None:
        super().__init__()
        self.params = zero_conv(hidden, 2 * channels, 1)

    @staticmethod
    def noise(shape: torch.Size, dtype: torch.dtype, device: torch.device, generator: torch.Generator | None):
        """Standard logistic noise ``logit(U)``, drawn on the generator's device (portable seeds)."""
        uniform = portable_rand(shape, generator, dtype=dtype, device=device)
        return _logit(uniform.clamp(min=torch.finfo(dtype).tiny))

    def forward(self, eps: torch.Tensor, h: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """``(z, log density of z)`` per element."""
        mean, raw = self.params(h).chunk(2, 1)
        log_scale = soft_clamp(raw, _MAX_LOG_SCALE)
        return mean + torch.exp(log_scale) * eps, _logistic_log_density(eps) - log_scale

    def inverse(self, z: torch.Tensor, h: torch.Tensor) -> torch.Tensor:
        """The per-element log density of ``z`` (``eps`` recovered from ``z``)."""
        mean, raw = self.params(h).chunk(2, 1)
        log_scale = soft_clamp(raw, _MAX_LOG_SCALE)
        return _logistic_log_density((z - mean) * torch.exp(-log_scale)) - log_scale


class _MaskedCoupling(nn.Module):
    """Affine coupling with a checkerboard mask over (channel, row, column), conditioned on features ``h``.

    Elements with ``(c + i + j) % 2 == parity`` pass unchanged and, with ``h``, give the scale and shift of
    the others. A checkerboard rather than a channel split works for one-channel images and for vectors
    ``[B, D, 1, 1]`` alike.
    """

    def __init__(self, channels: int, hidden: int, parity: int) -> None:
        super().__init__()
        self.parity = parity
        self.net = nn.Sequential(
            nn.Conv2d(channels + hidden, hidden, 3, padding=1),
            nn.ReLU(),
            zero_conv(hidden, 2 * channels),
        )

    def _mask(self, z: torch.Tensor) -> torch.Tensor:
        c, h, w = z.shape[1:]
        index = (
            torch.arange(c, device=z.device).view(c, 1, 1)
            + torch.arange(h, device=z.device).view(1, h, 1)
            + torch.arange(w, device=z.device).view(1, 1, w)
        )
        return (index % 2 == self.parity).to(z.dtype)

    def _params(self, z: torch.Tensor, h: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        mask = self._mask(z)
        shift, raw = self.net(torch.cat([z * mask, h], 1)).chunk(2, 1)
        return mask, shift * (1 - mask), soft_clamp(raw, _MAX_LOG_SCALE) * (1 - mask)

    def forward(self, z: torch.Tensor, h: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """``(z', log|dz'/dz|)``, the log-derivative per element."""
        _, shift, log_scale = self._params(z, h)
        return z * torch.exp(log_scale) + shift, log_scale

    def inverse(self, z: torch.Tensor, h: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        _, shift, log_scale = self._params(z, h)  # the kept half is unchanged, so its params are too
        return (z - shift) * torch.exp(-log_scale), log_scale


class _FlowDequantizer(Dequantizer):
    """A dequantizer that is a conditional flow: logistic base, ``transforms`` conditioned on ``x``, sigmoid.

    Every transform maps ``(z, h) -> (z', log-derivative per element)`` and has the matching ``inverse``;
    ``h`` are the features of ``x`` (:class:`ImageFeatures`). Sampling runs the flow forward once; scoring a
    given ``u`` runs it backwards from ``logit(u)``.
    """

    def __init__(
        self, channels: int, data_levels: int, hidden: int, make_transforms: Callable[[], list[nn.Module]]
    ) -> None:
        super().__init__(channels, data_levels)
        # Built in this order (conditioning net, base, transforms) so that a seed gives the same weights.
        self.condition = ImageFeatures(channels, data_levels, hidden)
        self.base = _ConditionalLogistic(channels, hidden)
        self.transforms = nn.ModuleList(make_transforms())

    def _sample(
        self, x: torch.Tensor, num_samples: int, generator: torch.Generator | None
    ) -> tuple[torch.Tensor, torch.Tensor]:
        # The features of x once, shared by its K draws (not K passes of the network over copies of x).
        h = self.condition(x).repeat(num_samples, 1, 1, 1)
        z, log_density = self.base(self.base.noise(h.shape[:1] + x.shape[1:], h.dtype, x.device, generator), h)
        for transform in self.transforms:
            z, log_derivative = transform(z, h)
            log_density = log_density - log_derivative
        u, log_derivative = _sigmoid(z)
        return u, (log_density - log_derivative).flatten(1).sum(1)

    def _log_prob_terms(self, u: torch.Tensor, x: torch.Tensor) -> torch.Tensor:
        """Per-element terms of ``log q(u | x)``: base log density minus the element's log-derivatives."""
        self._check_u(u, x)
        h = self.condition(x)
        z = _logit(u)
        log_derivatives = F.logsigmoid(z) + F.logsigmoid(-z)
        for transform in reversed(self.transforms):
            z, log_derivative = transform.inverse(z, h)
            log_derivatives = log_derivatives + log_derivative
        return self.base.inverse(z, h) - log_derivatives

    def log_prob(self, u: torch.Tensor, x: torch.Tensor) -> torch.Tensor:
        return self._log_prob_terms(u, x).flatten(1).sum(1)


class VariationalDequantizer(_FlowDequantizer):
    """Flow++-style variational dequantization: a conditional flow from a logistic onto the unit cube.

    ``eps ~ Logistic(0, 1)``, ``z = mean(h) + exp(s(h)) eps`` with ``h`` the features of ``x``
    (:class:`ImageFeatures`), ``steps`` checkerboard affine couplings whose networks see ``h``, then
    ``u = sigmoid(z)``. Every transform starts as the identity, so an untrained ``q`` is exactly uniform.
    ``log q(u | x) = log Logistic(eps) - sum of the log-derivatives``.
    """

    def __init__(self, channels: int, data_levels: int, *, hidden: int = 32, steps: int = 4) -> None:
        super().__init__(
            channels,
            data_levels,
            hidden,
            lambda: [_MaskedCoupling(channels, hidden, parity=i % 2) for i in range(steps)],
        )


def _sinh_arcsinh(y: torch.Tensor, log_a: torch.Tensor, b: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """``(sinh(a asinh(y) + b), log of its derivative at y)`` with ``a = exp(log_a)``: monotone for any ``a > 0``,
    smooth, with the closed-form inverse :func:`_sinh_arcsinh_inverse`; ``b`` skews it, ``a`` sets the tails."""
    inner = torch.exp(log_a) * torch.asinh(y) + b
    log_cosh = inner.abs() + torch.log1p(torch.exp(-2 * inner.abs())) - _LOG2
    return torch.sinh(inner), log_a + log_cosh - 0.5 * torch.log1p(y.square())


def _sinh_arcsinh_inverse(z: torch.Tensor, log_a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
    return torch.sinh((torch.asinh(z) - b) * torch.exp(-log_a))


class _ARStep(nn.Module):
    """One triangular step of :class:`ARConvDequantizer`, every map in the raster order.

    ``z -> ar_conv2d(z, w)`` (an autoregressive convolution: pixel (i, j) mixes in pixels up and to the
    left, channel c the channels ``<= c`` of its own pixel; diagonal ``w[c, c, p, p]``), then
    ``z -> z * exp(s(h)) + t(h)`` per element, then the sinh-arcsinh map
    ``z -> sinh(a * asinh(z) + b)`` (``a > 0`` per channel: monotone, smooth, with a closed-form inverse)
    that makes the conditionals non-Gaussian. Each map's Jacobian is triangular, so its log-derivative is
    a per-element quantity that depends only on the element and those before it.
    """

    def __init__(self, channels: int, hidden: int, kernel_size: int) -> None:
        super().__init__()
        self.kernel_size = kernel_size
        weight = torch.zeros(channels, channels, kernel_size, kernel_size)
        weight[:, :, kernel_size // 2, kernel_size // 2] = torch.eye(channels)
        self.weight = nn.Parameter(weight + 0.01 * torch.randn_like(weight))
        self.bias = nn.Parameter(torch.zeros(channels))
        self.affine = zero_conv(hidden, 2 * channels, 1)
        self.log_a = nn.Parameter(torch.zeros(1, channels, 1, 1))
        self.b = nn.Parameter(torch.zeros(1, channels, 1, 1))

    def _log_abs_diagonal(self) -> torch.Tensor:
        p = self.kernel_size // 2
        return torch.log(self.weight[:, :, p, p].diagonal().abs()).view(1, -1, 1, 1)

    def _affine(self, h: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        shift, raw = self.affine(h).chunk(2, 1)
        return shift, soft_clamp(raw, _MAX_LOG_SCALE)

    def forward(self, z: torch.Tensor, h: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        log_derivative = self._log_abs_diagonal().expand_as(z)
        z = ops.ar_conv2d(z, self.weight, self.bias)
        shift, log_scale = self._affine(h)
        z, sinh_arcsinh_log_derivative = _sinh_arcsinh(z * torch.exp(log_scale) + shift, self.log_a, self.b)
        return z, log_derivative + log_scale + sinh_arcsinh_log_derivative

    def inverse(self, z: torch.Tensor, h: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        z = _sinh_arcsinh_inverse(z, self.log_a, self.b)
        log_derivative = _sinh_arcsinh(z, self.log_a, self.b)[1]
        shift, log_scale = self._affine(h)
        z = (z - shift) * torch.exp(-log_scale)
        # The triangular solve of the autoregressive convolution (the kernel of ops.ar_conv2d_inverse).
        z = ops.ar_conv2d_inverse(z, self.weight, self.bias)
        return z, log_derivative + log_scale + self._log_abs_diagonal()


class _ConditionalLogProbs:
    """``conditional_log_prob`` of the dequantizers whose flow is triangular in the raster order."""

    def conditional_log_prob(self, u: torch.Tensor, x: torch.Tensor) -> torch.Tensor:
        """``log q(u_d | u_<d, x)`` for every element ``d``: ``[B, C, H, W]``, summing to :meth:`log_prob`.

        Each factor is the base density of the element's ``eps`` plus the element's own log-derivatives,
        which the triangular structure makes functions of ``u_<=d`` alone.
        """
        return self._log_prob_terms(u, x)


class ARConvDequantizer(_ConditionalLogProbs, _FlowDequantizer):
    """A triangular flow dequantizer built on ``ops.ar_conv2d``: ``q(u | x) = prod_d q(u_d | u_<d, x)``.

    ``eps ~ Logistic(0, 1)``, ``z = mean(h) + exp(s(h)) eps`` (``h``: features of ``x``), ``steps`` triangular steps
    (:class:`_ARStep`: autoregressive convolution, conditional affine, sinh-arcsinh), then
    ``u = sigmoid(z)``. Every map is triangular in the same order (pixels in raster order, channels
    innermost; the autoregressive convolutions only look up and to the left), so sampling is one parallel
    pass, and scoring any ``u`` inverts the convolutions with ``ops.ar_conv2d_inverse``.

    The conditionals are autoregressive but not neural: ``u_<d`` enters ``q(u_d | u_<d, x)`` through linear
    maps only (the convolutions), while ``x`` enters through a network. The paper's ARD, with a network on
    ``u_<d``, is :class:`AutoregressiveDequantizer`.
    """

    def __init__(
        self, channels: int, data_levels: int, *, hidden: int = 32, steps: int = 4, kernel_size: int = 3
    ) -> None:
        if kernel_size < 1 or kernel_size % 2 == 0:
            raise ValueError(f"ARConvDequantizer: kernel_size must be odd and positive, got {kernel_size}")
        super().__init__(
            channels, data_levels, hidden, lambda: [_ARStep(channels, hidden, kernel_size) for _ in range(steps)]
        )


class _MaskedNet(nn.Module):
    """Per-element parameters from the elements before it (raster order) and the features ``h`` of ``x``.

    A PixelCNN-style stack (:class:`~flowkernels.nn.MaskedConv2d`): a mask-A convolution of the input, plus a
    1x1 convolution of ``h`` (unmasked: ``x`` is known in full), then ``layers`` residual ReLU mask-B
    convolutions and a zero-initialised mask-B 1x1 convolution to ``params`` values per data channel, laid out
    ``[B, params * C, H, W]`` so that ``chunk(params, 1)`` gives one ``[B, C, H, W]`` tensor per parameter.
    """

    def __init__(self, channels: int, hidden: int, params: int, layers: int, kernel_size: int) -> None:
        super().__init__()

        def masked(in_channels: int, out_channels: int, size: int, mask_type: str) -> MaskedConv2d:
            return MaskedConv2d(in_channels, out_channels, size, data_channels=channels, mask_type=mask_type)

        self.input = masked(channels, hidden, kernel_size, "A")
        self.condition = nn.Conv2d(hidden, hidden, 1)
        self.layers = nn.ModuleList(masked(hidden, hidden, kernel_size, "B") for _ in range(layers))
        self.out = masked(hidden, params * channels, 1, "B")
        nn.init.zeros_(self.out.weight)
        nn.init.zeros_(self.out.bias)

    def forward(self, v: torch.Tensor, h: torch.Tensor) -> torch.Tensor:
        a = self.input(v) + self.condition(h)
        for layer in self.layers:
            a = a + layer(torch.relu(a))
        return self.out(torch.relu(a))


class _AutoregressiveStep(nn.Module):
    """One inverse-autoregressive step: ``z_d -> sinh(a_d asinh(m_d + exp(s_d) z_d) + b_d)`` for every element.

    ``(m_d, s_d, log a_d, b_d)`` come from a :class:`_MaskedNet` on ``sigmoid(z)`` (bounded inputs) at the
    elements before ``d`` and the features ``h`` of ``x``, so the step is triangular in the raster order with
    a neural dependence on the earlier elements. Forward (sampling) is one pass of the network. The inverse
    solves the triangular system by fixed-point iteration, ``z <- T^-1(z'; params(z))``: after pass ``t`` the
    first ``t`` elements are exact, so it ends after at most ``C H W`` passes, and earlier when a pass changes
    nothing, which (the masked weights being exact zeros) is the exact solution too.
    """

    def __init__(self, channels: int, hidden: int, layers: int, kernel_size: int) -> None:
        super().__init__()
        self.net = _MaskedNet(channels, hidden, 4, layers, kernel_size)

    def _params(self, z: torch.Tensor, h: torch.Tensor) -> tuple[torch.Tensor, ...]:
        mean, raw_scale, raw_a, b = self.net(torch.sigmoid(z), h).chunk(4, 1)
        return mean, soft_clamp(raw_scale, _MAX_LOG_SCALE), soft_clamp(raw_a, _MAX_LOG_TAIL), b

    def forward(self, z: torch.Tensor, h: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        mean, log_scale, log_a, b = self._params(z, h)
        out, log_derivative = _sinh_arcsinh(mean + torch.exp(log_scale) * z, log_a, b)
        return out, log_scale + log_derivative

    def inverse(self, out: torch.Tensor, h: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        z = torch.zeros_like(out)
        for _ in range(out[0].numel()):
            # Parameters of the last pass: they read only elements that were already exact before it.
            mean, log_scale, log_a, b = self._params(z, h)
            y = _sinh_arcsinh_inverse(out, log_a, b)
            solved = (y - mean) * torch.exp(-log_scale)
            if torch.equal(solved, z):
                break
            z = solved
        return z, log_scale + _sinh_arcsinh(y, log_a, b)[1]


class AutoregressiveDequantizer(_ConditionalLogProbs, _FlowDequantizer):
    """Autoregressive dequantization (the paper's ARD): ``q(u | x) = prod_d q(u_d | u_<d, x)``, neural in ``u_<d``.

    ``eps ~ Logistic(0, 1)``, ``z = mean(h) + exp(s(h)) eps`` (``h``: features of ``x``), then ``steps``
    :class:`_AutoregressiveStep` (an inverse autoregressive flow whose per-element shift, scale and
    sinh-arcsinh shape come from a masked PixelCNN-style network of the earlier elements and ``h``), then
    ``u = sigmoid(z)``. The order is the raster order with channels innermost (:mod:`flowkernels.nn.masked`).

    Sampling ``u`` with its ``log q`` is one pass of each step's network, which is all that training and the
    bounds need (they score q's own samples). Scoring a given ``u`` (:meth:`log_prob`,
    :meth:`conditional_log_prob`) inverts each step by fixed-point iteration: at most ``C H W`` passes,
    usually far fewer. An untrained one is uniform dequantization (zero-initialised outputs).
    """

    @renamed_keywords(levels="data_levels")  # the README's example passed levels=17
    def __init__(
        self,
        channels: int,
        data_levels: int,
        *,
        hidden: int = 32,
        steps: int = 4,
        layers: int = 1,
        kernel_size: int = 3,
    ) -> None:
        if kernel_size < 1 or kernel_size % 2 == 0:
            raise ValueError(f"AutoregressiveDequantizer: kernel_size must be odd and positive, got {kernel_size}")
        if layers < 0 or steps < 1:
            raise ValueError(f"AutoregressiveDequantizer: need steps >= 1 and layers >= 0, got {steps}, {layers}")
        super().__init__(
            channels,
            data_levels,
            hidden,
            lambda: [_AutoregressiveStep(channels, hidden, layers, kernel_size) for _ in range(steps)],
        )


_DEQUANTIZER_CLASSES = {
    "variational": VariationalDequantizer,
    "arconv": ARConvDequantizer,
    "autoregressive": AutoregressiveDequantizer,
}


def make_dequantizer(kind: str, channels: int, data_levels: int, **kwargs) -> Dequantizer:
    """One of :data:`DEQUANTIZERS` (``kwargs``: hidden, steps, ... of the flow dequantizers)."""
    if kind == "uniform":
        return UniformDequantizer(channels, data_levels)
    if kind not in _DEQUANTIZER_CLASSES:
        raise ValueError(f"make_dequantizer: kind must be one of {DEQUANTIZERS}, got {kind!r}")
    return _DEQUANTIZER_CLASSES[kind](channels, data_levels, **kwargs)


# ---------------------------------------------------------------------------------------------------------
# Flows with a prior, and the dequantized flow.


class NormalPriorFlow(nn.Module):
    """A flow layer with a standard-normal prior: ``log_prob(y) = log N(z) + logdet`` for ``z, logdet = layer(y)``.

    Turns any :class:`~flowkernels.nn.FlowLayer` (e.g. a :class:`~flowkernels.nn.FlowSequential` of ActNorm,
    invertible 1x1 convs and couplings) into a density for :class:`DequantizedFlow`; Glow has its own.
    """

    def __init__(self, flow: nn.Module) -> None:
        super().__init__()
        self.flow = flow

    def log_prob(self, y: torch.Tensor) -> torch.Tensor:
        z, logdet = self.flow(y)
        return standard_normal_log_prob(z) + logdet


class DequantizedFlow(nn.Module):
    """A flow (anything with ``log_prob(y) -> [B]``) trained on discrete data through a dequantizer.

    Args:
        flow: density of the continuous ``y = (x + u) / data_levels``, e.g. a :class:`Glow`.
        dequantizer: the ``q(u | x)``; its ``data_levels`` is the data's.
        objective: the training bound: "elbo", "iw" or "renyi".
        num_samples: K, the samples of ``u`` per example for the bound.
        alpha: the Renyi order (used by "renyi").

    ``forward(x)`` is the training loss: the mean bits/dim of the bound. :meth:`bound` and
    :meth:`bits_per_dim` give it per example for any objective and K; :meth:`evaluate_bpd` the large-K
    importance-weighted estimate of the test bits/dim.
    """

    def __init__(
        self,
        flow: nn.Module,
        dequantizer: Dequantizer,
        *,
        objective: str = "elbo",
        num_samples: int = 1,
        alpha: float = 0.5,
    ) -> None:
        super().__init__()
        if objective not in OBJECTIVES:
            raise ValueError(f"DequantizedFlow: objective must be one of {OBJECTIVES}, got {objective!r}")
        self.flow = flow
        self.dequantizer = dequantizer
        self.objective = objective
        self.num_samples = _check_num_samples("DequantizedFlow", num_samples)
        self.alpha = check_alpha("DequantizedFlow", alpha)

    @property
    def data_levels(self) -> int:
        return self.dequantizer.data_levels

    def _check_data(self, x: torch.Tensor) -> None:
        self.dequantizer._check_x(x)
        if x.is_floating_point() or x.is_complex():
            raise ValueError(f"DequantizedFlow: x must be an integer tensor, got {x.dtype}")
        if x.numel() and (x.min() < 0 or x.max() >= self.data_levels):
            low, high = x.min().item(), x.max().item()
            raise ValueError(
                f"DequantizedFlow: x must lie in 0 .. {self.data_levels - 1}, got values in {low} .. {high}"
            )

    def log_joint(self, x: torch.Tensor, u: torch.Tensor) -> torch.Tensor:
        """``log p(x + u)`` (density of the dequantized data, scale included): ``u`` ``[..., B, C, H, W]``."""
        dims = x[0].numel()
        y = to_unit_interval(x, u, self.data_levels)
        log_p = self.flow.log_prob(y.reshape(-1, *x.shape[1:])).view(u.shape[:-3])
        return log_p - dims * math.log(self.data_levels)

    def log_weights(
        self, x: torch.Tensor, num_samples: int | None = None, generator: torch.Generator | None = None
    ) -> torch.Tensor:
        """``log p(x + u_k) - log q(u_k | x)`` for K fresh ``u_k ~ q``: ``[K, B]``."""
        self._check_data(x)
        k = self.num_samples if num_samples is None else num_samples
        u, log_q = self.dequantizer.sample(x, k, generator)
        return self.log_joint(x, u) - log_q

    def bound(
        self,
        x: torch.Tensor,
        objective: str | None = None,
        num_samples: int | None = None,
        alpha: float | None = None,
        generator: torch.Generator | None = None,
    ) -> torch.Tensor:
        """A lower bound on ``log P(x)`` per example (natural log), by default the training objective."""
        log_weights = self.log_weights(x, num_samples, generator)
        return bound(log_weights, objective or self.objective, self.alpha if alpha is None else alpha)

    def bits_per_dim(self, x: torch.Tensor, *args, **kwargs) -> torch.Tensor:
        """``-bound / (D ln 2)`` per example: an upper bound (in expectation) on the bits/dim; see :meth:`bound`."""
        return -self.bound(x, *args, **kwargs) / (x[0].numel() * _LOG2)

    def forward(self, x: torch.Tensor, generator: torch.Generator | None = None) -> torch.Tensor:
        """The training loss: mean bits/dim of the configured bound."""
        return self.bits_per_dim(x, generator=generator).mean()

    @torch.no_grad()
    def quadrature_log_prob(self, x: torch.Tensor, nodes: int = 48) -> torch.Tensor:
        """``log P(x) = log integral_bin p(x + u) du`` by Gauss-Legendre quadrature, per example (D <= 3).

        The exact discrete log-likelihood of the flow, up to the quadrature error (``nodes`` per dimension,
        ``nodes ** D`` evaluations per example): the number every bound is below. For toys; run the flow in
        float64 for a meaningful comparison.
        """
        self._check_data(x)
        dims = x[0].numel()
        if dims > 3:
            raise ValueError(f"DequantizedFlow.quadrature_log_prob: needs D <= 3 dimensions, got {dims}")
        dtype = _module_dtype(self.flow)
        points, weights = (torch.from_numpy(a).to(dtype) for a in numpy.polynomial.legendre.leggauss(nodes))
        points, log_weights = (points + 1) / 2, torch.log(weights / 2)  # from [-1, 1] to [0, 1)
        grid = torch.cartesian_prod(*[points] * dims).view(-1, dims)
        log_grid_weights = torch.cartesian_prod(*[log_weights] * dims).view(-1, dims).sum(1)
        u = grid.view(-1, 1, *x.shape[1:]).expand(-1, *x.shape).to(x.device)
        return torch.logsumexp(self.log_joint(x, u) + log_grid_weights.to(x.device).unsqueeze(1), 0)

    @torch.no_grad()
    def iw_log_likelihood(
        self,
        x: torch.Tensor,
        num_samples: int = 1000,
        *,
        chunk: int = 100,
        generator: torch.Generator | None = None,
    ) -> torch.Tensor:
        """The importance-weighted bound with a large K, per example, in chunks of ``chunk`` samples.

        The chunks' logsumexps combine exactly (a logsumexp of logsumexps), so memory stays that of
        ``chunk`` samples while the result is the K-sample bound.
        """
        self._check_data(x)
        k = _check_num_samples("DequantizedFlow.iw_log_likelihood", num_samples)
        partial = []
        for start in range(0, k, chunk):
            log_weights = self.log_weights(x, min(chunk, k - start), generator)
            partial.append(torch.logsumexp(log_weights, 0))
        return torch.logsumexp(torch.stack(partial), 0) - math.log(k)

    def evaluate_bpd(
        self,
        x: torch.Tensor,
        num_samples: int = 1000,
        *,
        batch_size: int = 100,
        chunk: int = 100,
        seed: int = 2020,
        progress: Callable[[int], None] | None = None,
    ) -> float:
        """Mean test bits/dim by the K-sample importance-weighted bound (fixed noise ``seed``), in eval mode."""
        generator = torch.Generator().manual_seed(seed)

        def bits(batch: torch.Tensor) -> torch.Tensor:
            log_likelihood = self.iw_log_likelihood(batch, num_samples, chunk=chunk, generator=generator)
            return -log_likelihood / (batch[0].numel() * _LOG2)

        with evaluating(self):
            return mean_over(x, bits, batch_size, progress=progress)


def toy_flow(channels: int = 2, steps: int = 6, hidden: int = 64) -> NormalPriorFlow:
    """A small flow for vectors ``[B, channels, 1, 1]``: ``steps`` x (ActNorm, 1x1 conv, affine coupling)."""
    layers = []
    for _ in range(steps):
        layers += [ActNorm(channels), Invertible1x1Conv(channels), AffineCoupling(channels, hidden)]
    return NormalPriorFlow(FlowSequential(*layers))
