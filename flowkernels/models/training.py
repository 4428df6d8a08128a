"""Small pieces every model's training loop shares."""

from __future__ import annotations

import contextlib
import math
from collections.abc import Callable, Iterator

import torch
from torch import nn

__all__ = ["evaluating", "warmup_cosine"]


@contextlib.contextmanager
def evaluating(model: nn.Module) -> Iterator[None]:
    """Eval mode and no autograd for the duration; the previous mode is restored afterwards."""
    was_training = model.training
    model.eval()
    try:
        with torch.no_grad():
            yield
    finally:
        model.train(was_training)


def warmup_cosine(warmup_steps: int, total_steps: int) -> Callable[[int], float]:
    """Learning-rate factor for ``LambdaLR``: linear warm-up over ``warmup_steps`` (none if 0), then a
    cosine decay to zero at ``total_steps``. The warm-up keeps a freshly initialised flow's first,
    large updates from diverging; the decay makes the final model not a noisy high-rate iterate."""

    def factor(step: int) -> float:
        warmup = 1.0 if warmup_steps <= 0 else min(1.0, (step + 1) / warmup_steps)
        return warmup * 0.5 * (1.0 + math.cos(math.pi * step / total_steps))

    return factor
