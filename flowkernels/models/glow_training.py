"""Training Glow on the digits and drawing its samples: :func:`train_glow` and :func:`save_sample_grid`.

The architecture lives in :mod:`flowkernels.models.glow`; the loop is :func:`flowkernels.models.training.fit`.
"""

from __future__ import annotations

from pathlib import Path

import torch

from ..data import DIGITS_LEVELS, load_digits
from .dequantization import UniformDequantizer, quantize
from .figures import save_image_grid
from .glow import Glow
from .training import TrainHistory, evaluating, fit, seeded

__all__ = ["save_sample_grid", "train_glow"]


def train_glow(
    conv: str,
    *,
    epochs: int,
    batch_size: int,
    lr: float,
    seed: int,
    device: str | torch.device = "cpu",
    progress: bool = True,
    steps_per_scale: int = 4,
    hidden: int = 64,
    kernel_size: int = 3,
    eval_every: int | None = None,
    warmup_steps: int = 100,
    max_grad_norm: float = 50.0,
) -> tuple[Glow, TrainHistory]:
    """Fit a 2-level Glow with ``conv`` ("1x1", "emerging", "periodic") to the digits' training split.

    Adam on the uniformly dequantized bits/dim, in the loop of :func:`~flowkernels.models.training.fit`
    (learning-rate warm-up over ``warmup_steps`` steps, cosine decay, clipping at ``max_grad_norm``).

    Deterministic for a given ``seed`` on a given machine: the model is built under
    ``torch.manual_seed(seed)`` in a forked RNG state (the caller's global RNG is left alone), and batch
    order and dequantization noise come from a seeded generator. The test bits/dim (fixed 300-image split,
    fixed noise) is measured before training, every ``eval_every`` epochs (default: 5 times in all) and at
    the end.

    Returns the trained model (in eval mode) and a :class:`TrainHistory`.
    """
    data_levels = DIGITS_LEVELS
    device = torch.device(device)
    train = load_digits("train").to(device)
    test = load_digits("test").to(device)
    config = {
        "conv": conv,
        "epochs": epochs,
        "batch_size": batch_size,
        "lr": lr,
        "seed": seed,
        "steps_per_scale": steps_per_scale,
        "hidden": hidden,
        "kernel_size": kernel_size,
    }
    model = seeded(seed, lambda: Glow(1, 2, steps_per_scale, hidden, conv=conv, kernel_size=kernel_size)).to(device)
    generator = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        # ActNorm's data-dependent initialisation, on a larger batch than one step sees for stabler statistics.
        init_batch = train[torch.randperm(len(train), generator=generator)[:512]]
        model.log_prob(UniformDequantizer(1, data_levels).dequantize(init_batch, generator)[0])

    history = TrainHistory(config)
    history.test_bpd.append((0, model.evaluate_bpd(test, data_levels)))
    fit(
        model,
        train,
        lambda batch: model.bits_per_dim(batch, data_levels, generator).mean(),
        lambda: model.evaluate_bpd(test, data_levels),
        history,
        epochs=epochs,
        batch_size=batch_size,
        lr=lr,
        generator=generator,
        warmup_steps=warmup_steps,
        max_grad_norm=max_grad_norm,
        eval_every=eval_every,
        desc=f"glow[{conv}]",
        progress=progress,
    )
    return model, history


def save_sample_grid(
    model: Glow,
    path: str | Path,
    n: int = 64,
    temperature: float = 0.7,
    seed: int = 0,
    *,
    data_levels: int = DIGITS_LEVELS,
    upscale: int = 4,
) -> torch.Tensor:
    """Draw ``n`` samples, quantize them to ``0 .. data_levels - 1`` and write them as a PNG grid to ``path``.

    Images are tiled ``ceil(sqrt(n))`` per row with a one-pixel border, upscaled ``upscale`` times (8x8
    digits are otherwise too small to see) and drawn dark on light like the scikit-learn digits. Written
    with ``matplotlib.image.imsave``, which needs no GUI backend. Returns the quantized samples
    ``[n, C, H, W]``.
    """
    generator = torch.Generator().manual_seed(seed)
    with evaluating(model):
        samples = quantize(model.sample(n, temperature, generator), data_levels).cpu()
    if samples.shape[1] != 1:
        raise ValueError(f"save_sample_grid: grey-level samples expected, got {samples.shape[1]} channels")
    # A light-grey frame separates the digits, whose own background is 0 (white).
    save_image_grid(samples, path, data_levels, upscale=upscale, cmap="gray_r", frame=data_levels // 4)
    return samples
