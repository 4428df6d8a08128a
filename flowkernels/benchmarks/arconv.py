"""Benchmarks of the arconv family: the inverse of the autoregressive convolution.

Rows time ``ops.ar_conv2d_inverse`` at the shapes of issue 4 and report its
throughput in million values (B C H W) per second. Contenders:

- kernel: ``flowkernels.ops.ar_conv2d_inverse``;
- reference: ``flowkernels.reference.arconv.ar_conv2d_inverse``, the literal
  pixel-by-pixel, channel-by-channel solve in PyTorch (the emerging paper's
  Cython design, written with torch ops);
- peer ``forward ar_conv2d``: the forward convolution at the same shape
  (oneDNN / cuDNN behind ``ops.ar_conv2d``), so the table shows what sampling
  costs next to density evaluation. Its ratio is forward time / inverse time:
  the target "inverse at most 10x the forward" is a ratio of at least 0.1.

No other PyTorch library has an invertible k x k convolution to compare with
(normflows, nflows, FrEIA, zuko offer 1x1 convolutions only).
"""

from __future__ import annotations

from collections.abc import Callable

import torch

from flowkernels import ops
from flowkernels.reference import arconv as ref

from .harness import Case, Target

FAMILY = "arconv"

# Issue 4's targets on the 2-core machine, at (64, 12, 16, 16, 3).
INVERSE_TARGET = Target(min_rate=75.0, min_speedup=100.0, peer="forward ar_conv2d", min_peer_speedup=0.1)
# Elsewhere the same ratios, without the throughput floor.
RATIO_TARGET = Target(min_speedup=100.0, peer="forward ar_conv2d", min_peer_speedup=0.1)

CPU_SHAPES = [(64, 12, 16, 16, 3), (16, 3, 32, 32, 3), (8, 48, 32, 32, 3)]
# On a GPU also the size where FInC Flow reported about 2 s for a whole model.
CUDA_SHAPES = CPU_SHAPES + [(128, 12, 64, 64, 3)]
#: rows of each image the reference solves on a GPU
REFERENCE_ROWS = 4
QUICK_SHAPES = [(4, 3, 6, 6, 3)]


def _no_grad(fn: Callable, *args, **kwargs) -> Callable[[], object]:
    def run():
        with torch.no_grad():
            return fn(*args, **kwargs)

    return run


def _weight(channels: int, k: int, gen: torch.Generator) -> torch.Tensor:
    """Near-identity, as a trained emerging convolution's weight is: diagonal 1, small rest."""
    w = torch.randn(channels, channels, k, k, generator=gen) * (0.5 / (channels * (k // 2 + 1) ** 2)) ** 0.5
    w[range(channels), range(channels), k // 2, k // 2] = 1.0
    return w


def cases(*, quick: bool = False, device: str = "cpu", compile_peers: bool = True) -> list[Case]:
    """One case per shape; ``compile_peers`` is unused (no compiled peer: the
    reference's Python loop would unroll into a graph of H W C steps)."""
    del compile_peers
    dev = torch.device(device)
    shapes = QUICK_SHAPES if quick else (CUDA_SHAPES if dev.type == "cuda" else CPU_SHAPES)
    gen = torch.Generator().manual_seed(0)
    out = []
    for index, (B, C, H, W, k) in enumerate(shapes):
        w = _weight(C, k, gen).to(dev)
        b = (torch.randn(C, generator=gen) * 0.1).to(dev)
        x = torch.randn(B, C, H, W, generator=gen).to(dev)
        y = ops.ar_conv2d(x, w, b)
        error = (ops.ar_conv2d_inverse(y, w, b) - x).abs().max().item()
        # On a GPU the reference's H W C small launches would take minutes: it solves the first
        # REFERENCE_ROWS rows only (rows above never depend on rows below), and rates are per value.
        rows = min(H, REFERENCE_ROWS) if dev.type == "cuda" else H
        y_ref = y[:, :, :rows].contiguous()
        out.append(
            Case(
                FAMILY,
                "ar_conv2d_inverse",
                f"B={B} C={C} {H}x{W} k={k}",
                "fwd",
                kernel=_no_grad(ops.ar_conv2d_inverse, y, w, b),
                reference=_no_grad(ref.ar_conv2d_inverse, y_ref, w, b),
                peers={"forward ar_conv2d": _no_grad(ops.ar_conv2d, x, w, b)},
                target=INVERSE_TARGET if index == 0 and not quick else RATIO_TARGET,
                items=B * C * H * W,
                reference_items=B * C * rows * W,
                # Profiling the reference's H W C small ops would take longer than timing them.
                measure_memory=False,
                notes=f"round-trip max error {error:.1e}",
            )
        )
    return out
