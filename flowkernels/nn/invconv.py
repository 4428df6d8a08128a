"""Invertible convolutions for normalizing flows: Glow's 1x1, emerging and periodic convolutions.

* :class:`Invertible1x1Conv` (Kingma & Dhariwal 2018): a learned C x C channel mixing, LU-parametrised
  so that its log-determinant is a sum.
* :class:`EmergingConv2d` (Hoogeboom, van den Berg & Welling 2019, arXiv:1901.11137): a d x d
  invertible convolution "emerging" from a 1x1 conv and two autoregressive (masked) convolutions of
  opposite orientation. Each masked conv has a triangular Jacobian, so the log-determinant is cheap; the
  inverse solves the autoregressive system with ``flowkernels.ops.ar_conv2d_inverse``.
* :class:`PeriodicConv2d` (same paper): a convolution with periodic (circular) boundaries. It is
  diagonalised by the 2-D DFT, so the log-determinant is a sum of C x C log-determinants, one per
  frequency, and the inverse is a per-frequency linear solve.

All follow the flow convention: ``z, logdet = layer(x)`` with ``logdet`` of shape ``[B]``, and
``x = layer.inverse(z)``; inputs are ``[B, C, H, W]``.
"""

from __future__ import annotations

from itertools import chain

import torch
import torch.nn.functional as F
from torch import nn

from .. import ops
from .flow import FlowLayer, check_image, per_sample

__all__ = ["Invertible1x1Conv", "EmergingConv2d", "PeriodicConv2d"]


def _random_rotation(channels: int) -> torch.Tensor:
    """A random orthogonal matrix (Glow's initialisation: volume preserving, well conditioned)."""
    q, _ = torch.linalg.qr(torch.randn(channels, channels))
    return q


def _near_identity_kernel(channels: int, kernel_size: int, noise: float) -> torch.Tensor:
    """A ``[C, C, k, k]`` kernel that is the identity at the centre tap plus ``noise``-sized normal entries.

    Starting near the identity keeps the layer well conditioned (all centre diagonals exactly 1, so the
    initial log-determinant is about 0) while the noise breaks the symmetry between taps and channels.
    """
    p = kernel_size // 2
    weight = torch.randn(channels, channels, kernel_size, kernel_size) * noise
    weight[range(channels), range(channels), p, p] = 1.0
    return weight


def _check_odd_kernel(layer: str, kernel_size: int) -> None:
    if kernel_size < 1 or kernel_size % 2 == 0:
        raise ValueError(f"{layer}: kernel_size must be odd and positive, got {kernel_size}")


class Invertible1x1Conv(FlowLayer):
    """Glow's invertible 1x1 convolution ``z[:, :, i, j] = W @ x[:, :, i, j]``.

    With ``lu=True``, ``W = P L (U + diag(sign_s * exp(log_s)))``: ``P`` a fixed permutation, ``L`` unit
    lower triangular, ``U`` strictly upper triangular, ``sign_s`` fixed; ``L``, ``U`` and ``log_s`` learn.
    Then ``log|det W| = sum(log_s)`` costs O(C) instead of O(C^3), and ``W`` stays invertible. With
    ``lu=False``, ``W`` is a plain matrix and ``log|det W|`` comes from ``torch.linalg.slogdet``. Either way
    ``logdet = H * W * log|det W|`` and ``W`` starts as a random rotation.

    In eval mode the inverse matrix is cached and reused while the parameters are unchanged, which makes
    repeated sampling cheap. The cache is keyed on each parameter's ``data_ptr`` and autograd version
    counter, which every in-place update through the tensor itself bumps (optimizer steps,
    ``load_state_dict``, ``with torch.no_grad(): p.add_(...)``). Edits through ``p.data`` bypass the
    counter: call :meth:`invalidate_cache` after those. Entering training mode (``train()``) also clears it.
    """

    def __init__(self, channels: int, lu: bool = True) -> None:
        super().__init__()
        self.channels = channels
        self.lu = lu
        rotation = _random_rotation(channels)
        if lu:
            permutation, lower, upper = torch.linalg.lu(rotation)
            diagonal = upper.diagonal()
            self.register_buffer("permutation", permutation)
            self.register_buffer("sign_s", torch.sign(diagonal))
            # Only the strictly triangular parts are used; the rest is kept zero for clarity.
            self.lower = nn.Parameter(torch.tril(lower, -1))
            self.upper = nn.Parameter(torch.triu(upper, 1))
            self.log_s = nn.Parameter(torch.log(diagonal.abs()))
        else:
            self.weight = nn.Parameter(rotation)
        self._inverse_cache: tuple[tuple, torch.Tensor] | None = None

    def matrix(self) -> torch.Tensor:
        """The C x C matrix ``W``."""
        if not self.lu:
            return self.weight
        eye = torch.eye(self.channels, dtype=self.lower.dtype, device=self.lower.device)
        lower = torch.tril(self.lower, -1) + eye
        upper = torch.triu(self.upper, 1) + torch.diag(self.sign_s * torch.exp(self.log_s))
        return self.permutation @ lower @ upper

    def log_abs_det(self) -> torch.Tensor:
        """``log|det W|`` (a scalar)."""
        if self.lu:
            return self.log_s.sum()
        return torch.linalg.slogdet(self.weight).logabsdet

    def _parameter_key(self) -> tuple:
        return tuple((t.data_ptr(), t._version, t.dtype, t.device) for t in chain(self.parameters(), self.buffers()))

    def invalidate_cache(self) -> None:
        """Forget the cached inverse (needed only after editing parameters through ``.data``)."""
        self._inverse_cache = None

    def train(self, mode: bool = True) -> Invertible1x1Conv:
        # Training is where parameters change, possibly through .data; eval() keeps a still-valid cache.
        if mode:
            self.invalidate_cache()
        return super().train(mode)

    def inverse_matrix(self) -> torch.Tensor:
        """``W^-1``; cached in eval mode when no gradient is being recorded (see the class docstring)."""
        # A cached tensor must not carry an autograd graph (a second backward through it would fail),
        # so the cache is used only when no graph is being recorded: sampling under torch.no_grad().
        use_cache = not self.training and not torch.is_grad_enabled()
        if not use_cache:
            return torch.linalg.inv(self.matrix())
        key = self._parameter_key()
        if self._inverse_cache is None or self._inverse_cache[0] != key:
            self._inverse_cache = (key, torch.linalg.inv(self.matrix()))
        return self._inverse_cache[1]

    def _apply_matrix(self, x: torch.Tensor, matrix: torch.Tensor) -> torch.Tensor:
        return F.conv2d(x, matrix.view(self.channels, self.channels, 1, 1))

    def forward(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        check_image("Invertible1x1Conv", x, self.channels)
        logdet = self.log_abs_det() * (x.shape[2] * x.shape[3])
        return self._apply_matrix(x, self.matrix()), per_sample(logdet, x)

    def inverse(self, z: torch.Tensor) -> torch.Tensor:
        check_image("Invertible1x1Conv", z, self.channels)
        return self._apply_matrix(z, self.inverse_matrix())


class EmergingConv2d(FlowLayer):
    """The emerging convolution of arXiv:1901.11137: a 1x1 conv, then two opposite autoregressive convs.

    ``h = conv1x1(x)``, ``h = ar_conv2d(h, w1, b1)``, ``z = ar_conv2d(h, w2, b2, reverse=True)``. The masked
    convs (the mask is applied by the op: the top-left quadrant of the kernel, lower triangular at the
    centre; ``reverse`` flips it) see complementary halves of the neighbourhood, so together they have a
    full k x k receptive field. Each has a triangular Jacobian whose diagonal is ``w[c, c, k//2, k//2]`` at
    every pixel, hence ``logdet = H * W * sum_c (log|w1[c, c, p, p]| + log|w2[c, c, p, p]|) + logdet_1x1``.
    Kernel entries outside the mask are ignored by the op (and get zero gradient).

    The inverse solves the two triangular systems in reverse order with ``ops.ar_conv2d_inverse`` (a
    sequential solve over pixels) and then applies the 1x1 conv's inverse.

    >>> import torch
    >>> from flowkernels.nn import EmergingConv2d, PeriodicConv2d
    >>> _ = torch.manual_seed(0)
    >>> x = torch.randn(2, 3, 8, 8, dtype=torch.float64)
    >>> for layer in (EmergingConv2d(3, kernel_size=3).double(), PeriodicConv2d(3, kernel_size=3).double()):
    ...     z, logdet = layer(x)
    ...     print(tuple(logdet.shape), torch.allclose(layer.inverse(z), x, atol=1e-10))
    (2,) True
    (2,) True
    """

    def __init__(self, channels: int, kernel_size: int = 3, *, init_noise: float = 0.02) -> None:
        super().__init__()
        _check_odd_kernel("EmergingConv2d", kernel_size)
        self.channels = channels
        self.kernel_size = kernel_size
        self.conv1x1 = Invertible1x1Conv(channels)
        self.w1 = nn.Parameter(_near_identity_kernel(channels, kernel_size, init_noise))
        self.b1 = nn.Parameter(torch.zeros(channels))
        self.w2 = nn.Parameter(_near_identity_kernel(channels, kernel_size, init_noise))
        self.b2 = nn.Parameter(torch.zeros(channels))

    def _masked_log_abs_det(self) -> torch.Tensor:
        """``sum_c log|w1[c, c, p, p]| + log|w2[c, c, p, p]|``: both masked convs, per pixel."""
        p = self.kernel_size // 2
        diagonals = torch.cat([self.w1[:, :, p, p].diagonal(), self.w2[:, :, p, p].diagonal()])
        return torch.log(diagonals.abs()).sum()

    def forward(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        check_image("EmergingConv2d", x, self.channels)
        h, logdet = self.conv1x1(x)
        h = ops.ar_conv2d(h, self.w1, self.b1, reverse=False)
        z = ops.ar_conv2d(h, self.w2, self.b2, reverse=True)
        return z, logdet + self._masked_log_abs_det() * (x.shape[2] * x.shape[3])

    def inverse(self, z: torch.Tensor) -> torch.Tensor:
        check_image("EmergingConv2d", z, self.channels)
        h = ops.ar_conv2d_inverse(z, self.w2, self.b2, reverse=True)
        h = ops.ar_conv2d_inverse(h, self.w1, self.b1, reverse=False)
        return self.conv1x1.inverse(h)


class PeriodicConv2d(FlowLayer):
    """A k x k convolution with periodic boundaries, inverted in the Fourier domain (arXiv:1901.11137).

    ``z = conv2d(circular_pad(x, k // 2), weight)`` (cross-correlation, wrap-around at every border). A
    circular convolution is diagonalised by the 2-D DFT: ``z_hat(f) = G(f) x_hat(f)`` for each of the H*W
    frequencies ``f``, with ``G(f)`` the C x C DFT of the kernel embedded in an H x W array (see
    :meth:`kernel_dft`). Hence ``logdet = sum_f log|det G(f)|`` and ``x = ifft2(solve(G(f), z_hat(f)))``.
    Both depend on H and W, so they are computed per call. The Fourier-domain maths runs in complex128 for
    float64 inputs and complex64 otherwise. Odd kernel sizes only (so the kernel has a centre); a kernel
    larger than the image is fine, its taps wrap around and accumulate.
    """

    def __init__(self, channels: int, kernel_size: int = 3, *, init_noise: float = 0.02) -> None:
        super().__init__()
        _check_odd_kernel("PeriodicConv2d", kernel_size)
        self.channels = channels
        self.kernel_size = kernel_size
        self.weight = nn.Parameter(_near_identity_kernel(channels, kernel_size, init_noise))

    def _wrap_indices(self, size: int, device: torch.device) -> torch.Tensor:
        p = self.kernel_size // 2
        return torch.arange(-p, size + p, device=device) % size

    def _circular_pad(self, x: torch.Tensor) -> torch.Tensor:
        # Indexing with wrapped indices instead of F.pad(mode="circular"): F.pad refuses a padding larger
        # than the image, which a kernel larger than the image needs.
        rows = self._wrap_indices(x.shape[2], x.device)
        cols = self._wrap_indices(x.shape[3], x.device)
        return x.index_select(2, rows).index_select(3, cols)

    def kernel_dft(self, height: int, width: int, dtype: torch.dtype) -> torch.Tensor:
        """``G``, shape ``[H, W, C, C]``: the 2-D DFT of the kernel as a circular convolution on H x W.

        Tap ``(a, b)`` (offsets in ``[-p, p]`` from the centre) reads input pixel ``(i + a, j + b)``, which
        as a circular convolution ``z = g * x`` is ``g[(-a) mod H, (-b) mod W] += weight[:, :, a + p, b + p]``.
        Accumulation makes taps that wrap onto the same position add up. ``dtype`` is the real dtype of the
        input; the result is complex128 for float64 and complex64 otherwise.
        """
        real = torch.float64 if dtype == torch.float64 else torch.float32
        k, p = self.kernel_size, self.kernel_size // 2
        offsets = torch.arange(k, device=self.weight.device) - p
        rows = ((-offsets) % height).view(k, 1).expand(k, k)
        cols = ((-offsets) % width).view(1, k).expand(k, k)
        taps = self.weight.to(real).permute(2, 3, 0, 1)  # [k, k, C, C]
        g = taps.new_zeros(height, width, self.channels, self.channels)
        g = g.index_put((rows, cols), taps, accumulate=True)
        return torch.fft.fft2(g, dim=(0, 1))

    def log_abs_det(self, height: int, width: int, dtype: torch.dtype = torch.float32) -> torch.Tensor:
        """``sum_f log|det G(f)|`` for an H x W image (a real scalar of the input's dtype)."""
        logdet = torch.linalg.slogdet(self.kernel_dft(height, width, dtype)).logabsdet.sum()
        return logdet.to(dtype)

    def forward(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        check_image("PeriodicConv2d", x, self.channels)
        z = F.conv2d(self._circular_pad(x), self.weight)
        return z, per_sample(self.log_abs_det(x.shape[2], x.shape[3], x.dtype), x)

    def inverse(self, z: torch.Tensor) -> torch.Tensor:
        check_image("PeriodicConv2d", z, self.channels)
        B, C, H, W = z.shape
        G = self.kernel_dft(H, W, z.dtype)  # [H, W, C, C]
        z_hat = torch.fft.fft2(z.to(G.dtype), dim=(2, 3)).permute(2, 3, 1, 0)  # [H, W, C, B]
        x_hat = torch.linalg.solve(G, z_hat).permute(3, 2, 0, 1)  # [B, C, H, W]
        return torch.fft.ifft2(x_hat, dim=(2, 3)).real.to(z.dtype)
