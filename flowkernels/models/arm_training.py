"""Training the models of predictive sampling: the ARM (:func:`train_pixelcnn`), its forecasting modules
(:func:`train_forecaster`) and the VQ autoencoder whose codes an ARM can model (:func:`train_vq_autoencoder`).

The architectures live in :mod:`flowkernels.models.pixelcnn` and :mod:`flowkernels.models.vq`; the loop is
:func:`flowkernels.models.training.fit`.
"""

from __future__ import annotations

import math

import torch

from .distributions import Distribution
from .pixelcnn import ForecastingModules, PixelCNN
from .training import TrainHistory, evaluating, fit, fit_options, mean_over, seeded
from .vq import VQAutoencoder

__all__ = ["FORECAST_OBJECTIVES", "train_forecaster", "train_pixelcnn", "train_vq_autoencoder"]

#: What :func:`train_forecaster` can minimise.
FORECAST_OBJECTIVES = ("kl", "draws")
#: The seed of the noise of test KL estimates: fixed, so that runs and epochs are compared on the same draws.
_TEST_NOISE_SEED = 2020


def train_pixelcnn(
    train: torch.Tensor,
    test: torch.Tensor,
    distribution: Distribution,
    *,
    epochs: int,
    batch_size: int = 64,
    lr: float = 2e-3,
    seed: int = 0,
    progress: bool = True,
    desc: str = "pixelcnn",
    **model_options,
) -> tuple[PixelCNN, TrainHistory]:
    """Fit a :class:`PixelCNN` with ``distribution`` to the integer images ``train`` ``[N, 1, H, W]``.

    Maximum likelihood (bits/dim) in the loop of :func:`~flowkernels.models.training.fit`; ``test`` is
    evaluated 5 times and at the end (``history.test_bpd``). ``model_options`` go to :class:`PixelCNN`
    (``image_size`` defaults to the data's). Deterministic for a given ``seed`` on a given machine.
    Returns the model in eval mode and its :class:`~flowkernels.models.training.TrainHistory`.
    """
    model_options.setdefault("image_size", tuple(train.shape[-2:]))
    model = seeded(seed, lambda: PixelCNN(distribution, **model_options))
    config = {"distribution": repr(distribution), "epochs": epochs, "batch_size": batch_size, "lr": lr, "seed": seed}
    history = TrainHistory({**config, **model_options})

    def evaluate() -> float:
        with evaluating(model):
            return mean_over(test, model.bits_per_dim)

    history.test_bpd.append((0, evaluate()))
    options = fit_options(train, epochs, batch_size, lr, seed, progress, desc)
    fit(model, train, lambda batch: model.bits_per_dim(batch).mean(), evaluate, history, **options)
    return model, history


def train_forecaster(
    arm: PixelCNN,
    train: torch.Tensor,
    test: torch.Tensor,
    *,
    horizon: int,
    epochs: int,
    hidden: int = 64,
    batch_size: int = 64,
    lr: float = 2e-3,
    seed: int = 0,
    progress: bool = True,
    desc: str = "forecast",
    objective: str = "kl",
) -> tuple[ForecastingModules, TrainHistory]:
    """Train :class:`ForecastingModules` on the frozen ``arm``, on the images ``train`` (data, or the ARM's samples).

    One ARM call per batch gives the ARM's distributions of every dimension and its features; the modules
    forecast from the features. ``objective``:

    * ``"kl"``: minimise ``sum_t KL(ARM_{i+t} || module_t at i)``, averaged over dimensions (each module's
      KL is its own term: the modules share no weights); for logistic mixtures a one-sample estimate of it
      (:meth:`DiscretizedLogisticMixture.kl`). On the data this is teacher forcing, as the ARM was trained.
    * ``"draws"``: ``train`` and ``test`` are samples of the ARM (e.g. :func:`flowkernels.sampling.sample_arm`),
      and module ``t`` at ``i`` is scored by the log-probability it gives the ARM's own draw ``x_{i+t}``:
      what sampling with the same noise will check it against. (In expectation over the draws this is the
      KL plus the ARM's entropy, so the optimum is the same; the inputs are what sampling feeds the modules.)

    Losses are in bits. The ARM is not changed. ``history.test_bpd`` holds the test loss in bits (summed over
    modules) where the ARMs hold bits/dim.
    """
    if objective not in FORECAST_OBJECTIVES:
        raise ValueError(f"train_forecaster: objective must be one of {FORECAST_OBJECTIVES}, got {objective!r}")
    forecaster = seeded(seed, lambda: ForecastingModules(arm.hidden, arm.distribution, horizon, hidden))
    arm.eval()
    for parameter in arm.parameters():
        parameter.requires_grad_(False)

    def loss_bits(batch: torch.Tensor, generator: torch.Generator) -> torch.Tensor:
        with torch.no_grad():
            params, features = arm.predict(batch)
        forecasts = forecaster(features, arm.positions(batch))
        if objective == "draws":
            return forecaster.draws_nll(batch, forecasts).sum() / math.log(2)
        return forecaster.kl_to(params, forecasts, generator).sum() / math.log(2)

    # The KL estimates of logistic mixtures draw noise: training noise from the seed, test noise fixed.
    train_generator = torch.Generator().manual_seed(seed + 1)

    def evaluate() -> float:
        generator = torch.Generator().manual_seed(_TEST_NOISE_SEED)
        with evaluating(forecaster):
            return mean_over(test, lambda batch: loss_bits(batch, generator).expand(batch.shape[0]))

    config = {"horizon": horizon, "hidden": hidden, "epochs": epochs, "batch_size": batch_size, "lr": lr, "seed": seed}
    history = TrainHistory(config | {"objective": objective})
    history.test_bpd.append((0, evaluate()))
    options = fit_options(train, epochs, batch_size, lr, seed, progress, desc)
    try:
        fit(forecaster, train, lambda batch: loss_bits(batch, train_generator), evaluate, history, **options)
    finally:
        for parameter in arm.parameters():
            parameter.requires_grad_(True)
    return forecaster, history


def train_vq_autoencoder(
    train: torch.Tensor,
    test: torch.Tensor,
    *,
    epochs: int,
    batch_size: int = 64,
    lr: float = 2e-3,
    seed: int = 0,
    progress: bool = True,
    desc: str = "vq-ae",
    **model_options,
) -> tuple[VQAutoencoder, TrainHistory]:
    """Fit a :class:`VQAutoencoder` to 8-bit images ``[N, 1, H, W]``; ``history.test_bpd`` is the test
    reconstruction bits/dim (given the codes, so not a likelihood of the images)."""
    model = seeded(seed, lambda: VQAutoencoder(**model_options))
    history = TrainHistory({"epochs": epochs, "batch_size": batch_size, "lr": lr, "seed": seed, **model_options})

    def evaluate() -> float:
        with evaluating(model):
            return mean_over(test, model.reconstruction_bpd)

    history.test_bpd.append((0, evaluate()))
    options = fit_options(train, epochs, batch_size, lr, seed, progress, desc)
    fit(model, train, model.loss, evaluate, history, **options)
    return model, history
