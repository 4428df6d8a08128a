"""The arconv kernel family: autoregressive (masked) convolutions and their inverse.

``ar_conv2d`` is the convolution of emerging convolutions (arXiv:1901.11137): a
k x k convolution whose kernel is masked to the top-left quadrant, with a
lower-triangular centre tap, so its Jacobian is triangular and its log-determinant
is ``H * W * sum(log |weight[c, c, k//2, k//2]|)``. ``ar_conv2d_inverse`` solves it
exactly, which is what sampling from such a flow needs.

The inverse kernels sweep the image in wavefronts: the pixels of one
anti-diagonal depend only on earlier diagonals, so an H x W image needs
H + W - 1 sequential rounds (FInC Flow's observation), and each round is
vectorised over channels and images. On CPU, batches large enough to give
every thread its own images are solved in raster order per thread instead,
which needs no synchronisation at all. Both ops work on CPU and CUDA, in
float32 and float64, under autograd and ``torch.compile(fullgraph=True)``.
"""

from __future__ import annotations

import torch

__all__ = ["ar_conv2d", "ar_conv2d_inverse"]

_ops = torch.ops.flowkernels


def ar_conv2d(
    x: torch.Tensor, weight: torch.Tensor, bias: torch.Tensor | None = None, *, reverse: bool = False
) -> torch.Tensor:
    """Autoregressive convolution: ``conv2d(x, weight * M, bias, padding=k // 2)``.

    The mask ``M`` keeps the top-left quadrant of the kernel (tap offsets
    ``dy <= 0`` and ``dx <= 0`` from the centre) and, at the centre tap, only the
    connections ``c_in <= c_out``. Output pixel ``(i, j)`` thus depends on input
    pixels ``(i', j')`` with ``i' <= i`` and ``j' <= j``, and the Jacobian is
    triangular with diagonal ``weight[c, c, k//2, k//2]``. ``reverse=True`` flips
    the mask in rows, columns and channels (bottom-right quadrant, ``c_in >= c_out``),
    the second convolution of an emerging pair. The op applies the mask itself:
    masked-out entries of ``weight`` are ignored and get zero gradient.
    ``flowkernels.reference.arconv.ar_conv2d_mask`` returns ``M``.

    Args:
        x: images ``[B, C, H, W]``, float32 or float64.
        weight: ``[C, C, k, k]`` with ``k`` odd, same dtype and device as ``x``.
        bias: optional ``[C]``.
        reverse: use the flipped (bottom-right, reversed channel order) mask.

    Returns:
        ``[B, C, H, W]``.
    """
    return _ops.ar_conv2d(x, weight, bias, reverse=reverse)


def ar_conv2d_inverse(
    y: torch.Tensor, weight: torch.Tensor, bias: torch.Tensor | None = None, *, reverse: bool = False
) -> torch.Tensor:
    """Solve ``ar_conv2d(x, weight, bias, reverse=reverse) == y`` for ``x``.

    Exact up to floating-point rounding: ``ar_conv2d(ar_conv2d_inverse(y, ...), ...)``
    equals ``y`` to about 1e-6 relative in float32 for well-conditioned weights.
    Differentiable with respect to ``y``, ``weight`` and ``bias``; the backward
    pass is one more triangular solve (with the transposed system), not an
    unrolled loop.

    Raises:
        ValueError: a diagonal entry ``weight[c, c, k//2, k//2]`` is zero or not
            finite (the convolution is not invertible).
        RuntimeError: shapes, dtypes or devices do not fit (the message names the argument).

    Example:
        >>> import torch
        >>> from flowkernels import ops
        >>> generator = torch.Generator().manual_seed(0)
        >>> x = torch.randn(1, 2, 5, 5, dtype=torch.float64, generator=generator)
        >>> weight = torch.randn(2, 2, 3, 3, dtype=torch.float64, generator=generator)
        >>> weight[:, :, 1, 1] = 2 * torch.eye(2)  # the diagonal: the map is invertible
        >>> y = ops.ar_conv2d(x, weight)
        >>> torch.allclose(ops.ar_conv2d_inverse(y, weight), x)
        True
    """
    return _ops.ar_conv2d_inverse(y, weight, bias, reverse=reverse)


# ---------------------------------------------------------------------------
# Fake kernel (ar_conv2d is CompositeImplicitAutograd and needs none).


@torch.library.register_fake("flowkernels::ar_conv2d_inverse")
def _ar_conv2d_inverse_fake(y, weight, bias=None, *, reverse=False):
    torch._check(y.dim() == 4, lambda: f"flowkernels.ar_conv2d_inverse: argument 'y' must be 4-D, got {y.dim()}-D")
    C = y.shape[1]
    torch._check(
        weight.dim() == 4 and weight.shape[0] == C and weight.shape[1] == C and weight.shape[2] == weight.shape[3],
        lambda: (
            f"flowkernels.ar_conv2d_inverse: argument 'weight' must be [C, C, k, k] with C = {C}, "
            f"got {list(weight.shape)}"
        ),
    )
    if bias is not None:
        torch._check(
            tuple(bias.shape) == (C,),
            lambda: f"flowkernels.ar_conv2d_inverse: argument 'bias' must have shape [{C}], got {list(bias.shape)}",
        )
    return torch.empty_like(y, memory_format=torch.contiguous_format)
