"""Training a dequantized flow on the digits (arXiv:2001.11235): :func:`train_dequantized`."""

from __future__ import annotations

import torch

from ..data import DIGITS_LEVELS, load_digits
from .dequantization import DequantizedFlow, make_dequantizer
from .glow import CONV_KINDS, Glow
from .training import TrainHistory, fit, seeded

__all__ = ["train_dequantized"]


def train_dequantized(
    dequantizer: str,
    objective: str = "elbo",
    *,
    num_samples: int = 1,
    alpha: float = 0.5,
    conv: str = "1x1",
    epochs: int = 40,
    batch_size: int = 64,
    lr: float = 1e-3,
    seed: int = 0,
    steps_per_scale: int = 4,
    hidden: int = 64,
    dequantizer_hidden: int = 32,
    dequantizer_steps: int = 4,
    eval_samples: int = 16,
    eval_every: int | None = None,
    warmup_steps: int = 100,
    max_grad_norm: float = 50.0,
    device: str | torch.device = "cpu",
    progress: bool = True,
) -> tuple[DequantizedFlow, TrainHistory]:
    """Fit a 2-level :class:`Glow` (``conv``: 1x1, emerging or periodic) with a dequantizer to the digits.

    ``dequantizer`` is one of :data:`DEQUANTIZERS`; ``objective`` "elbo", "iw" or "renyi"
    with ``num_samples`` (K) and ``alpha``. Trained by :func:`~flowkernels.models.training.fit`; the test
    bits/dim logged during training is the iw bound with ``eval_samples`` samples (the final large-K
    evaluation is :meth:`DequantizedFlow.evaluate_bpd`). Deterministic for a given ``seed`` on a given
    machine; the caller's global RNG is left alone. Returns the model (eval mode) and its history.
    """
    if conv not in CONV_KINDS:
        raise ValueError(f"train_dequantized: conv must be one of {CONV_KINDS}, got {conv!r}")
    data_levels = DIGITS_LEVELS
    device = torch.device(device)
    train = load_digits("train").to(device)
    test = load_digits("test").to(device)
    config = {
        "dequantizer": dequantizer,
        "objective": objective,
        "num_samples": num_samples,
        "alpha": alpha,
        "conv": conv,
        "epochs": epochs,
        "batch_size": batch_size,
        "lr": lr,
        "seed": seed,
        "steps_per_scale": steps_per_scale,
        "hidden": hidden,
        "dequantizer_hidden": dequantizer_hidden,
        "dequantizer_steps": dequantizer_steps,
    }
    deq_kwargs = {} if dequantizer == "uniform" else {"hidden": dequantizer_hidden, "steps": dequantizer_steps}

    def build() -> DequantizedFlow:
        flow = Glow(1, 2, steps_per_scale, hidden, conv=conv)
        dequantizer_module = make_dequantizer(dequantizer, 1, data_levels, **deq_kwargs)
        return DequantizedFlow(flow, dequantizer_module, objective=objective, num_samples=num_samples, alpha=alpha)

    model = seeded(seed, build).to(device)
    generator = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        # ActNorm's data-dependent initialisation on a large batch, dequantized by the (untrained) q.
        model.log_weights(train[torch.randperm(len(train), generator=generator)[:512]], 1, generator)

    def evaluate() -> float:
        return model.evaluate_bpd(test, eval_samples, chunk=eval_samples)

    history = TrainHistory(config)
    history.test_bpd.append((0, evaluate()))
    name = f"{dequantizer}/{objective}" + (f"(K={num_samples})" if num_samples > 1 else "")
    fit(
        model,
        train,
        lambda batch: model(batch, generator),
        evaluate,
        history,
        epochs=epochs,
        batch_size=batch_size,
        lr=lr,
        generator=generator,
        warmup_steps=warmup_steps,
        max_grad_norm=max_grad_norm,
        eval_every=eval_every,
        desc=name,
        progress=progress,
    )
    return model, history
