"""Figures shared by the model systems: integer images as one PNG grid."""

from __future__ import annotations

import math
from pathlib import Path

import torch

from .._optional import require

__all__ = ["save_image_grid"]


def save_image_grid(
    images: torch.Tensor,
    path: str | Path,
    data_levels: int,
    *,
    upscale: int = 4,
    cmap: str = "gray",
    frame: float | None = None,
) -> Path:
    """Write integer images ``[N, C, H, W]`` (values ``0 .. data_levels - 1``; C = 1, or 3 for RGB) as one PNG grid.

    ``ceil(sqrt(N))`` images per row with a one-pixel frame of value ``frame`` (default mid-grey),
    upscaled ``upscale`` times (8x8 images are otherwise too small to see); ``cmap="gray_r"`` draws dark
    on light like the digits (one channel only: RGB images are drawn as their colours).
    Written with ``matplotlib.image.imsave`` (no GUI backend needed).
    """
    image = require("matplotlib.image", "matplotlib", "save_image_grid")
    if images.dim() != 4 or images.shape[1] not in (1, 3) or images.shape[0] < 1:
        raise ValueError(f"save_image_grid: images must be [N, 1 or 3, H, W] with N >= 1, got {list(images.shape)}")
    n, channels, height, width = images.shape
    columns = math.ceil(math.sqrt(n))
    rows = math.ceil(n / columns)
    grid = torch.full(
        (channels, rows * (height + 1) + 1, columns * (width + 1) + 1),
        (data_levels - 1) / 2 if frame is None else frame,
        dtype=torch.float64,
    )
    for index in range(n):
        top, left = 1 + (index // columns) * (height + 1), 1 + (index % columns) * (width + 1)
        grid[:, top : top + height, left : left + width] = images[index].cpu()
    grid = grid.repeat_interleave(upscale, 1).repeat_interleave(upscale, 2)
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    if channels == 1:
        image.imsave(path, grid[0].numpy(), cmap=cmap, vmin=0, vmax=data_levels - 1, format="png")
    else:
        image.imsave(path, (grid / (data_levels - 1)).clamp(0, 1).permute(1, 2, 0).numpy(), format="png")
    return path
