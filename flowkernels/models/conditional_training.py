"""Training and evaluating the models of p(y | x): the conditional flows and their factorised baselines."""

from __future__ import annotations

from collections.abc import Callable

import torch
from torch import nn

from .conditional import ConditionalLoss
from .training import TrainHistory, evaluating, fit, mean_over, seeded

__all__ = ["evaluate_conditional", "train_conditional"]


# The test-set noise (dequantization, variational draws) is fixed, so test bits/dim of different runs and
# epochs are measured with the very same draws.
_TEST_NOISE_SEED = 2019


def evaluate_conditional(
    model: nn.Module,
    loss: ConditionalLoss,
    y: torch.Tensor,
    x: torch.Tensor,
    *,
    batch_size: int = 256,
    seed: int = _TEST_NOISE_SEED,
) -> float:
    """Mean of ``loss`` (bits/dim per sample) over the pairs ``(y, x)``, in eval mode, with seeded noise."""
    generator = torch.Generator().manual_seed(seed)
    with evaluating(model):
        return mean_over(torch.arange(len(y)), lambda index: loss(model, y[index], x[index], generator), batch_size)


def train_conditional(
    build: Callable[[], nn.Module],
    loss: ConditionalLoss,
    train: tuple[torch.Tensor, torch.Tensor],
    test: tuple[torch.Tensor, torch.Tensor] | None = None,
    *,
    epochs: int,
    batch_size: int,
    lr: float,
    seed: int,
    device: str | torch.device = "cpu",
    progress: bool = True,
    desc: str = "conditional",
    eval_every: int | None = None,
    warmup_steps: int = 100,
    max_grad_norm: float = 50.0,
    init_size: int = 512,
    config: dict | None = None,
) -> tuple[nn.Module, TrainHistory]:
    """Fit ``build()`` to the pairs ``train = (y, x)`` by minimising ``loss`` (bits/dim) with Adam.

    The recipe of :func:`~flowkernels.models.glow.train_glow`, for any model of ``p(y | x)`` here (flows,
    the binary dequantizer, the factorised baselines): a linear warm-up and cosine decay of the learning rate
    (:func:`~flowkernels.models.training.warmup_cosine`), gradient-norm clipping, and ActNorm's data-dependent
    initialisation on ``init_size`` random training pairs before the first step.

    Deterministic for a given ``seed`` on a given machine: the model is built under ``torch.manual_seed(seed)``
    in a forked RNG state (the caller's global RNG is left alone) and batch order and noise come from a seeded
    generator. With ``test`` pairs the test bits/dim (fixed noise) is measured before training, every
    ``eval_every`` epochs (default: only at the end) and at the end. Returns the model in eval mode and a
    :class:`~flowkernels.models.training.TrainHistory` (``train_time_s`` excludes evaluation).
    """
    y_train, x_train = train
    if len(y_train) != len(x_train) or len(y_train) == 0:
        raise ValueError(
            f"train_conditional: train needs as many y as x (and some), got {len(y_train)}, {len(x_train)}"
        )
    device = torch.device(device)
    y_train, x_train = y_train.to(device), x_train.to(device)
    if test is not None:
        test = (test[0].to(device), test[1].to(device))
    model = seeded(seed, build).to(device)
    generator = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        index = torch.randperm(len(y_train), generator=generator)[:init_size]
        loss(model, y_train[index], x_train[index], generator)

    history = TrainHistory({"epochs": epochs, "batch_size": batch_size, "lr": lr, "seed": seed, **(config or {})})
    if test is not None:
        history.test_bpd.append((0, evaluate_conditional(model, loss, *test)))
    fit(
        model,
        torch.arange(len(y_train), device=device),
        lambda index: loss(model, y_train[index], x_train[index], generator).mean(),
        None if test is None else lambda: evaluate_conditional(model, loss, *test),
        history,
        epochs=epochs,
        batch_size=batch_size,
        lr=lr,
        generator=generator,
        warmup_steps=warmup_steps,
        max_grad_norm=max_grad_norm,
        eval_every=eval_every or epochs,
        desc=desc,
        progress=progress,
    )
    return model, history
