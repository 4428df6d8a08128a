"""Small pieces every model's training loop shares."""

from __future__ import annotations

import contextlib
import math
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from typing import Any

import torch
from torch import nn

from .._optional import require
from ..data import iterate_minibatches

__all__ = ["TrainHistory", "evaluating", "fit", "fit_options", "mean_over", "seeded", "warmup_cosine"]


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


def _identity(values: list[float]) -> list[float]:
    return values


def sum_over_processes(device: torch.device | str, world_size: int) -> Callable[[list[float]], list[float]]:
    """The ``all_reduce`` of :func:`fit` and :func:`mean_over`: sums a list of floats over the processes of the
    initialised process group (in float64, on ``device``, which NCCL needs to be the process's GPU); with
    ``world_size`` 1 it returns the list as it is and needs no process group."""
    if world_size <= 1:
        return _identity

    def reduce(values: list[float]) -> list[float]:
        import torch.distributed as dist  # only distributed runs need it

        tensor = torch.tensor(values, dtype=torch.float64, device=device)
        dist.all_reduce(tensor)
        return tensor.tolist()

    return reduce


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
    rank: int = 0,
    world_size: int = 1,
    all_reduce: Callable[[list[float]], list[float]] = _identity,
    first_epoch: int = 0,
    state: dict | None = None,
    after_evaluation: Callable[[int], None] | None = None,
    after_epoch: Callable[[int, torch.optim.Optimizer, torch.optim.lr_scheduler.LRScheduler, float], None]
    | None = None,
    bar: Any = None,
) -> float:
    """The training loop of every likelihood model: Adam on ``loss_fn(batch)`` (a scalar in bits/dim).

    A linear learning-rate warm-up over ``warmup_steps`` steps (Glow's recipe: it keeps the first, large
    updates of a freshly ActNorm-initialised flow from diverging), a cosine decay to zero over the whole
    run (so the final model is not a snapshot of a noisy high-learning-rate iterate) and gradient-norm
    clipping at ``max_grad_norm``. Batches of ``train`` (data, or indices into data that ``loss_fn``
    looks up) are drawn with ``generator``. ``evaluate()`` (the test bits/dim; ``None`` for none) runs every
    ``eval_every`` epochs (default: 5 times in all) and after the last; its time is not counted as
    training time. Appends to ``history``, adds the optimisation time to ``history.train_time_s``, returns
    that time and leaves ``model`` in eval mode.

    The hooks of data-parallel and resumable training (:func:`~flowkernels.models.idf_training.train_idf`):

    * ``rank`` / ``world_size``: every process draws the same global batch order and trains on its share
      ``batch[rank::world_size]`` (``loss_fn`` may be a ``DistributedDataParallel`` module, which averages the
      gradients); a last batch smaller than ``world_size`` is dropped so every process has a share.
      ``all_reduce`` sums a list of floats over the processes (for the epoch's mean loss).
    * ``first_epoch``: the epochs are numbered ``first_epoch + 1 ..`` (a second phase continues the count).
    * ``state``: continue a run from ``{"optimizer", "scheduler", "epoch", "train_time_s"}`` (what
      ``after_epoch`` saw); ``generator`` and ``history`` must be restored by the caller.
    * ``after_evaluation(epoch)`` runs after each evaluation (a checkpoint), ``after_epoch(epoch, optimizer,
      scheduler, train_time_s)`` after each epoch (a resume file).
    * ``bar``: a tqdm bar to advance (one per step) instead of a bar of its own.
    """
    eval_every = eval_every or max(1, epochs // 5)
    n = len(train)
    steps_per_epoch = n // batch_size + (1 if n % batch_size >= world_size else 0)
    optimizer = torch.optim.Adam(model.parameters(), lr=lr)
    total_steps = max(1, epochs * steps_per_epoch)
    scheduler = torch.optim.lr_scheduler.LambdaLR(optimizer, warmup_cosine(warmup_steps, total_steps))
    done, elapsed = first_epoch, 0.0
    if state is not None:
        optimizer.load_state_dict(state["optimizer"])
        scheduler.load_state_dict(state["scheduler"])
        done, elapsed = int(state["epoch"]), float(state["train_time_s"])
    own_bar = bar is None
    if own_bar:
        tqdm = require("tqdm", "tqdm", "the training progress bar").tqdm
        bar = tqdm(total=total_steps, desc=desc, disable=not progress, leave=False)
    bar.update((done - first_epoch) * steps_per_epoch)
    start = time.perf_counter() - elapsed
    for epoch in range(done + 1, first_epoch + epochs + 1):
        model.train()
        order = torch.randperm(n, generator=generator)
        epoch_total, epoch_count = 0.0, 0
        for step in range(steps_per_epoch):
            batch = train[order[step * batch_size : (step + 1) * batch_size][rank::world_size].to(train.device)]
            loss = loss_fn(batch)
            optimizer.zero_grad(set_to_none=True)
            loss.backward()
            nn.utils.clip_grad_norm_(model.parameters(), max_grad_norm)
            optimizer.step()
            scheduler.step()
            epoch_total += loss.item() * batch.shape[0]
            epoch_count += batch.shape[0]
            bar.update()
            bar.set_postfix(bpd=f"{loss.item():.3f}")
        epoch_total, epoch_count = all_reduce([epoch_total, float(epoch_count)])
        history.train_bpd.append(epoch_total / epoch_count)
        local = epoch - first_epoch
        if evaluate is not None and (local % eval_every == 0 or local == epochs):
            paused = time.perf_counter()  # evaluation time is not training time
            history.test_bpd.append((epoch, evaluate()))
            if progress:
                train_bpd, test_bpd = history.train_bpd[-1], history.final_test_bpd
                bar.write(f"{desc} epoch {epoch}: train {train_bpd:.3f}, test {test_bpd:.3f} bits/dim")
            if after_evaluation is not None:
                after_evaluation(epoch)
            start += time.perf_counter() - paused
        if after_epoch is not None:
            after_epoch(epoch, optimizer, scheduler, time.perf_counter() - start)
    elapsed = time.perf_counter() - start
    history.train_time_s += elapsed
    if own_bar:
        bar.close()
    model.eval()
    return elapsed


def mean_over(
    data: torch.Tensor,
    per_batch: Callable[[torch.Tensor], torch.Tensor],
    batch_size: int = 500,
    *,
    rank: int = 0,
    world_size: int = 1,
    all_reduce: Callable[[list[float]], list[float]] = _identity,
    progress: Callable[[int], None] | None = None,
) -> float:
    """The mean of ``per_batch(batch)`` (a per-example ``[B]`` tensor) over ``data``, in order, in batches of
    ``batch_size``: the one evaluation loop behind every model's ``evaluate_bpd``. Call it inside
    :func:`evaluating` (eval mode, no autograd).

    With ``world_size > 1`` each process scores ``data[rank::world_size]`` and ``all_reduce`` sums the totals and
    counts over the processes, so every process returns the same mean. ``progress(n)`` is told each batch's size.
    """
    total = 0.0
    shard = data[rank::world_size] if world_size > 1 else data
    for batch in iterate_minibatches(shard, batch_size, shuffle=False):
        total += per_batch(batch).double().sum().item()
        if progress is not None:
            progress(batch.shape[0])
    total, count = all_reduce([total, float(shard.shape[0])])
    return total / count


def seeded(seed: int, build):
    """``build()`` under ``torch.manual_seed(seed)``, leaving the caller's global RNG state alone."""
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        return build()


def fit_options(train: torch.Tensor, epochs: int, batch_size: int, lr: float, seed: int, progress: bool, desc: str):
    """The keyword arguments of :func:`fit` of the short runs of the ARMs, their forecasting modules and the VQ
    autoencoder: batches from a generator seeded ``seed``, a warm-up of 50 steps (at most a tenth of the run),
    clipping at a norm of 100; epochs and batch size checked (one-line errors naming ``desc``)."""
    if isinstance(epochs, bool) or not isinstance(epochs, int) or epochs < 1:
        raise ValueError(f"{desc}: epochs must be a positive integer, got {epochs!r}")
    if isinstance(batch_size, bool) or not isinstance(batch_size, int) or batch_size < 1:
        raise ValueError(f"{desc}: batch_size must be a positive integer, got {batch_size!r}")
    total_steps = epochs * math.ceil(len(train) / batch_size)
    return {
        "epochs": epochs,
        "batch_size": batch_size,
        "lr": lr,
        "generator": torch.Generator().manual_seed(seed),
        "warmup_steps": min(50, total_steps // 10),
        "max_grad_norm": 100.0,
        "eval_every": None,
        "desc": desc,
        "progress": progress,
    }
