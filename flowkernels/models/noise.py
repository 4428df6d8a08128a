"""Seeded noise that is the same on every device.

Every sampler of the models draws its noise on the generator's device (the CPU for a default
``torch.Generator()``) and only then moves it to where the model lives: a CPU seed then gives the same
samples on a GPU as on the CPU, because the CPU and CUDA random streams differ for the same seed.
Without a generator the noise comes from the global RNG of ``device``.
"""

from __future__ import annotations

import torch

__all__ = ["portable_rand", "portable_randn"]


def _device(generator: torch.Generator | None, device: torch.device | str) -> torch.device | str:
    return generator.device if generator is not None else device


def portable_rand(
    shape: tuple[int, ...] | torch.Size,
    generator: torch.Generator | None,
    *,
    dtype: torch.dtype,
    device: torch.device | str,
) -> torch.Tensor:
    """Uniforms in [0, 1) of ``shape``, drawn on ``generator``'s device and moved to ``device``.

    >>> a = portable_rand((2,), torch.Generator().manual_seed(0), dtype=torch.float64, device="cpu")
    >>> b = portable_rand((2,), torch.Generator().manual_seed(0), dtype=torch.float64, device="cpu")
    >>> torch.equal(a, b) and bool(((a >= 0) & (a < 1)).all())
    True
    """
    return torch.rand(shape, generator=generator, device=_device(generator, device), dtype=dtype).to(device)


def portable_randn(
    shape: tuple[int, ...] | torch.Size,
    generator: torch.Generator | None,
    *,
    dtype: torch.dtype,
    device: torch.device | str,
) -> torch.Tensor:
    """Standard normals of ``shape``, drawn on ``generator``'s device and moved to ``device``."""
    return torch.randn(shape, generator=generator, device=_device(generator, device), dtype=dtype).to(device)
