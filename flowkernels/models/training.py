"""Small pieces every model's training loop shares."""

from __future__ import annotations

import contextlib
import math
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field

import torch
from torch import nn

from .._optional import require
from ..data import iterate_minibatches

__all__ = ["TrainHistory", "evaluating", "fit", "warmup_cosine"]


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


@dataclass
class TrainHistory:
    """What a training run measured.

    ``train_bpd`` has one mean training bits/dim per epoch; ``test_bpd`` holds ``(epoch, bits/dim)`` pairs,
    epoch 0 being the model before training; ``train_time_s`` is the wall time of the optimisation alone
    (evaluations excluded).
    """

    config: dict
    train_bpd: list[float] = field(default_factory=list)
    test_bpd: list[tuple[int, float]] = field(default_factory=list)
    train_time_s: float = 0.0

    @property
    def final_test_bpd(self) -> float:
        return self.test_bpd[-1][1]


def fit(
    model: nn.Module,
    train: torch.Tensor,
    loss_fn: Callable[[torch.Tensor], torch.Tensor],
    evaluate: Callable[[], float] | None,
    history: TrainHistory,
    *,
    epochs: int,
    batch_size: int,
    lr: float,
    generator: torch.Generator,
    warmup_steps: int,
    max_grad_norm: float,
    eval_every: int | None,
    desc: str,
    progress: bool,
) -> None:
    """The training loop of the likelihood models: Adam on ``loss_fn(batch)`` (a scalar in bits/dim).

    A linear learning-rate warm-up over ``warmup_steps`` steps (Glow's recipe: it keeps the first, large
    updates of a freshly ActNorm-initialised flow from diverging), a cosine decay to zero over the whole
    run (so the final model is not a snapshot of a noisy high-learning-rate iterate) and gradient-norm
    clipping at ``max_grad_norm``. Batches of ``train`` (data, or indices into data that ``loss_fn``
    looks up) are drawn with ``generator``. ``evaluate()`` (the test bits/dim; ``None`` for none) runs every
    ``eval_every`` epochs (default: 5 times in all) and after the last; its time is not counted as
    training time. Appends to ``history`` and leaves ``model`` in eval mode.
    """
    eval_every = eval_every or max(1, epochs // 5)
    optimizer = torch.optim.Adam(model.parameters(), lr=lr)
    total_steps = epochs * math.ceil(len(train) / batch_size)
    scheduler = torch.optim.lr_scheduler.LambdaLR(optimizer, warmup_cosine(warmup_steps, total_steps))
    tqdm = require("tqdm", "tqdm", "the training progress bar").tqdm
    bar = tqdm(total=total_steps, desc=desc, disable=not progress, leave=False)
    start = time.perf_counter()
    for epoch in range(1, epochs + 1):
        model.train()
        epoch_total = 0.0
        for batch in iterate_minibatches(train, batch_size, generator=generator):
            loss = loss_fn(batch)
            optimizer.zero_grad(set_to_none=True)
            loss.backward()
            nn.utils.clip_grad_norm_(model.parameters(), max_grad_norm)
            optimizer.step()
            scheduler.step()
            epoch_total += loss.item() * batch.shape[0]
            bar.update()
            bar.set_postfix(bpd=f"{loss.item():.3f}")
        history.train_bpd.append(epoch_total / len(train))
        if evaluate is not None and (epoch % eval_every == 0 or epoch == epochs):
            paused = time.perf_counter()
            history.test_bpd.append((epoch, evaluate()))
            if progress:
                train_bpd, test_bpd = history.train_bpd[-1], history.final_test_bpd
                bar.write(f"{desc} epoch {epoch}: train {train_bpd:.3f}, test {test_bpd:.3f} bits/dim")
            start += time.perf_counter() - paused
    history.train_time_s = time.perf_counter() - start
    bar.close()
    model.eval()
