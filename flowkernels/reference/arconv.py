"""Pure-PyTorch references of the ``arconv`` kernel family (autoregressive convolutions).

``ar_conv2d(x, weight, bias, reverse=False)`` is ``conv2d(x, weight * mask, bias,
padding=k // 2)`` where the mask keeps the top-left quadrant of the k x k kernel
(tap offsets dy <= 0 and dx <= 0 from the centre) and, at the centre tap, only
the connections ``c_in <= c_out``. Output pixel (i, j) therefore depends only on
input pixels (i', j') with i' <= i and j' <= j, and at the pixel itself through
a lower-triangular C x C matrix: the Jacobian is triangular with diagonal
``weight[c, c, k // 2, k // 2]`` at every pixel. ``reverse=True`` flips the
mask in rows, columns and channels (bottom-right quadrant, ``c_in >= c_out``).

The inverse here is the literal definition solved in dependency order: pixel
by pixel in raster order (a valid order for the quadrant mask), and inside a
pixel channel by channel (forward substitution), as the emerging-convolution
paper's Cython inverse does. :func:`ar_conv2d_inverse_dense` is a second,
independent oracle for tiny sizes: it builds the whole linear map as a dense
matrix and calls a generic solver.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F

__all__ = ["ar_conv2d_mask", "ar_conv2d", "ar_conv2d_inverse", "ar_conv2d_inverse_dense"]


def ar_conv2d_mask(
    channels: int,
    kernel_size: int,
    *,
    reverse: bool = False,
    dtype: torch.dtype = torch.float32,
    device: torch.device | str | None = None,
) -> torch.Tensor:
    """The 0/1 mask ``[C, C, k, k]`` that ``ar_conv2d`` multiplies its weight by."""
    if kernel_size < 1 or kernel_size % 2 == 0:
        raise ValueError(f"ar_conv2d_mask: kernel_size must be odd and positive, got {kernel_size}")
    p = kernel_size // 2
    taps = torch.zeros(kernel_size, kernel_size, dtype=torch.bool, device=device)
    taps[: p + 1, : p + 1] = True
    mask = taps.expand(channels, channels, kernel_size, kernel_size).clone()
    # Centre tap: output channel co sees input channels ci <= co only.
    mask[:, :, p, p] = torch.ones(channels, channels, dtype=torch.bool, device=device).tril()
    if reverse:
        mask = mask.flip(0, 1, 2, 3)
    return mask.to(dtype)


def _check(x: torch.Tensor, weight: torch.Tensor) -> int:
    if weight.dim() != 4 or weight.shape[0] != weight.shape[1] or weight.shape[2] != weight.shape[3]:
        raise ValueError(f"ar_conv2d: weight must be [C, C, k, k], got {list(weight.shape)}")
    if weight.shape[2] % 2 == 0:
        raise ValueError(f"ar_conv2d: kernel size must be odd, got {weight.shape[2]}")
    if x.dim() != 4 or x.shape[1] != weight.shape[0]:
        raise ValueError(f"ar_conv2d: input must be [B, {weight.shape[0]}, H, W], got {list(x.shape)}")
    return weight.shape[2]


def ar_conv2d(
    x: torch.Tensor, weight: torch.Tensor, bias: torch.Tensor | None = None, *, reverse: bool = False
) -> torch.Tensor:
    """The masked convolution ``conv2d(x, weight * mask, bias, padding=k // 2)``."""
    k = _check(x, weight)
    mask = ar_conv2d_mask(weight.shape[0], k, reverse=reverse, dtype=weight.dtype, device=weight.device)
    return F.conv2d(x, weight * mask, bias, padding=k // 2)


def ar_conv2d_inverse(
    y: torch.Tensor, weight: torch.Tensor, bias: torch.Tensor | None = None, *, reverse: bool = False
) -> torch.Tensor:
    """Solve ``ar_conv2d(x, weight, bias, reverse=reverse) == y`` for ``x``, one pixel and channel at a time."""
    k = _check(y, weight)
    if reverse:
        # Flipping rows, columns and channels turns the reverse mask into the forward one.
        flipped_bias = None if bias is None else bias.flip(0)
        x = ar_conv2d_inverse(y.flip(1, 2, 3), weight.flip(0, 1, 2, 3), flipped_bias)
        return x.flip(1, 2, 3)
    B, C, H, W = y.shape
    p = k // 2
    w = weight * ar_conv2d_mask(C, k, dtype=weight.dtype, device=weight.device)
    diagonal = w[:, :, p, p].diagonal()
    if not bool(torch.all(torch.isfinite(diagonal) & (diagonal != 0))):
        raise ValueError("ar_conv2d_inverse: every diagonal entry weight[c, c, k//2, k//2] must be finite and nonzero")
    if bias is not None:
        y = y - bias.view(1, C, 1, 1)
    # x_pad[:, :, i + p, j + p] holds x[:, :, i, j]; the zero border is the convolution's padding.
    x_pad = y.new_zeros(B, C, H + p, W + p)
    for i in range(H):
        for j in range(W):
            patch = x_pad[:, :, i : i + p + 1, j : j + p + 1]  # the causal neighbourhood, centre last
            for c in range(C):
                # The centre tap's entry for channel c itself is unknown yet (x_pad holds 0 there).
                known = torch.einsum("bihw,ihw->b", patch, w[c, :, : p + 1, : p + 1])
                x_pad[:, c, i + p, j + p] = (y[:, c, i, j] - known) / diagonal[c]
    return x_pad[:, :, p:, p:].clone()


def ar_conv2d_inverse_dense(
    y: torch.Tensor, weight: torch.Tensor, bias: torch.Tensor | None = None, *, reverse: bool = False
) -> torch.Tensor:
    """The inverse by a dense solve of the whole (C H W) x (C H W) linear map (tiny sizes only)."""
    _check(y, weight)
    B, C, H, W = y.shape
    n = C * H * W
    if n > 4096:
        raise ValueError(f"ar_conv2d_inverse_dense: C*H*W = {n} is too large for a dense solve")
    basis = torch.eye(n, dtype=y.dtype, device=y.device).view(n, C, H, W)
    matrix = ar_conv2d(basis, weight, reverse=reverse).reshape(n, n).T  # column m = image of basis vector m
    rhs = y if bias is None else y - bias.view(1, C, 1, 1)
    return torch.linalg.solve(matrix, rhs.reshape(B, n).T).T.reshape(B, C, H, W)
