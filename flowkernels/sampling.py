"""Predictive sampling: exact samples of an autoregressive model (ARM) in fewer network calls.

"Predictive Sampling with Forecasting Autoregressive Models" (Wiggers & Hoogeboom 2020, arXiv:2002.09928).
An ARM such as :class:`~flowkernels.models.pixelcnn.PixelCNN` computes the distributions of all ``d``
dimensions of an image in one call, each from the dimensions before it, but plain sampling needs one call
per dimension. With the noise drawn up front (:func:`draw_noise`) a sample is a deterministic function of
that noise (Gumbel-max for categoricals, inverse CDF for logistic mixtures). Then any guess of the future
dimensions can be checked in one call: in ARM order, every dimension whose distribution was computed from
correct earlier dimensions is correct, so the call confirms the guess up to and including its first
mismatch, which it corrects. Every accepted dimension is exactly what sequential sampling gives; a good
guess accepts many dimensions per call. Jacobi decoding and speculative decoding of language models are
the same idea.

Samplers, one interface ``sampler(arm, noise, ...) -> SamplingResult`` (samples and ARM calls):

* :func:`sequential`: one call per dimension, ``d`` calls: the reference.
* :func:`fixed_point`: ARM fixed-point iteration. The guess for the dimensions not yet accepted is the
  ARM's own sample from the previous call.
* :func:`forecast`: learned forecasting. :class:`~flowkernels.models.pixelcnn.ForecastingModules` read the
  ARM's features at the first mismatch ``m`` (computed from correct dimensions only) and the value the
  call gave ``m``, and propose dimensions ``m + 1 .. m + T``, sampled with the same noise; later
  dimensions fall back on the fixed-point guess.

Acceptance is per example (each example of the batch has its own accepted prefix); the ARM always runs
on the whole batch, because a convolution may round differently for a different batch size (see
``flowkernels.models.idf.run_net``) and exactness needs each example's numbers to be the same in every
call. ``calls`` counts the calls for the batch; ``calls_per_example`` when each example was done, which is
what sampling that example alone would take. The ARM interface: ``distribution`` (a
:class:`~flowkernels.models.distributions.Distribution`), ``event_shape`` ``(C, H, W)`` with dimensions in
row-major order of that shape (raster order, plane by plane), and ``predict(x) -> (params
[B, C, H, W, P], features [B, F, R, width])``, where the parameters at a dimension depend on earlier
dimensions only, and the features of dimension ``i`` sit at ``(i // width, i % width)`` (a
:class:`~flowkernels.models.pixelcnn.PixelCNN` stacks its planes into one tall image, ``R = C H``).
"""

from __future__ import annotations

import math
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Protocol

import torch

from .models.distributions import Distribution, uniform_noise
from .models.training import evaluating

__all__ = [
    "REPORTED_OFFSETS",
    "SAMPLERS",
    "AutoregressiveModel",
    "Forecaster",
    "SamplerRun",
    "SamplingResult",
    "compare_samplers",
    "draw_noise",
    "fixed_point",
    "forecast",
    "sample_arm",
    "sequential",
]


class AutoregressiveModel(Protocol):
    """What the samplers need of an ARM, besides being an ``nn.Module`` (a
    :class:`~flowkernels.models.pixelcnn.PixelCNN` is one); see the module doc."""

    distribution: Distribution

    @property
    def event_shape(self) -> tuple[int, ...]: ...

    def predict(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]: ...


class Forecaster(Protocol):
    """What :func:`forecast` needs of forecasting modules (:class:`~flowkernels.models.pixelcnn.ForecastingModules`).

    ``forecaster(features, x)`` maps ARM features ``[B, F, h, w]`` and the values ``x`` ``[B, C, h, w]`` at the
    same positions to ``[B, horizon, C, h, w, P]``: entry ``[:, t - 1]`` at a dimension ``i`` holds the
    forecast of dimension ``i + t`` from the features at ``i`` and the value of ``i``.
    """

    horizon: int

    def __call__(self, features: torch.Tensor, x: torch.Tensor) -> torch.Tensor: ...


@dataclass
class SamplingResult:
    """The output of a sampler.

    ``samples``: int64 ``[B, *event_shape]``. ``calls``: ARM calls made for the batch. ``calls_per_example``:
    int64 ``[B]``, the call after which each example was complete. ``accepted``: int64 ``[calls, B]``, each
    example's accepted prefix (number of dimensions known to be correct) after each call. ``offset_hits`` and
    ``offset_trials``: int64 ``[REPORTED_OFFSETS]``; entry ``t - 1`` counts, over the calls and the examples
    not yet complete, the guesses for the dimension ``t`` places past the accepted prefix (offset ``t``: what
    forecasting module ``t`` proposes) that exist and that turned out right (equal to the final sample).
    """

    samples: torch.Tensor
    calls: int
    calls_per_example: torch.Tensor
    accepted: torch.Tensor
    offset_hits: torch.Tensor
    offset_trials: torch.Tensor

    @property
    def dims(self) -> int:
        """Dimensions per example: the calls of :func:`sequential`."""
        return math.prod(self.samples.shape[1:])

    @property
    def call_fraction(self) -> float:
        """``calls / dims``: the batch's calls as a fraction of sequential sampling's."""
        return self.calls / self.dims

    @property
    def mean_call_fraction(self) -> float:
        """The mean over examples of ``calls_per_example / dims`` (sampling one example at a time)."""
        return self.calls_per_example.double().mean().item() / self.dims

    @property
    def offset_hit_rates(self) -> list[float | None]:
        """Per offset ``t = 1 .. REPORTED_OFFSETS``: the fraction of the guesses ``t`` places past the accepted
        prefix that were right (``None`` where there was none). At offset 1 this is the chance that a call
        accepts more than the one dimension it corrects; a guess at offset ``t`` is accepted when it and
        the ``t - 1`` before it are right."""
        return [
            hits / trials if trials else None
            for hits, trials in zip(self.offset_hits.tolist(), self.offset_trials.tolist(), strict=True)
        ]


def _parameter(arm: AutoregressiveModel) -> torch.Tensor:
    return next(iter(arm.parameters()))


def draw_noise(arm: AutoregressiveModel, batch: int, generator: torch.Generator | None = None) -> torch.Tensor:
    """Uniform noise in (0, 1) for ``batch`` samples of ``arm``: ``[batch, *event_shape, noise_size]``.

    Drawn on the generator's device (CPU by default, so a seed gives the same noise everywhere) in the
    ARM's dtype, then moved to the ARM's device. Values are kept away from 0 and 1 so that Gumbel and
    logistic transforms stay finite.
    """
    if isinstance(batch, bool) or not isinstance(batch, int) or batch < 1:
        raise ValueError(f"draw_noise: batch must be a positive integer, got {batch!r}")
    parameter = _parameter(arm)
    shape = (batch, *arm.event_shape, arm.distribution.noise_size)
    return uniform_noise(shape, generator, parameter.dtype, parameter.device)


def _check_noise(arm: AutoregressiveModel, noise: torch.Tensor, op: str) -> int:
    """Validate ``noise`` for ``arm`` (shape, dtype, device, values in (0, 1)); return the batch size."""
    batch = noise.shape[0] if isinstance(noise, torch.Tensor) and noise.dim() > 0 else 0
    arm.distribution.check_noise(noise, (batch, *arm.event_shape), op)
    if batch < 1:
        raise ValueError(f"{op}: noise must hold at least one example, got shape {list(noise.shape)}")
    device = _parameter(arm).device
    if noise.device != device:
        raise ValueError(f"{op}: noise must be on the ARM's device {device}, got {noise.device}")
    if not bool(((noise > 0) & (noise < 1)).all()):
        raise ValueError(f"{op}: noise must hold uniforms strictly inside (0, 1) (see draw_noise)")
    return batch


#: Offsets past the accepted prefix at which :class:`SamplingResult` counts right guesses.
REPORTED_OFFSETS = 8


def _offset_counts(
    guesses: list[tuple[torch.Tensor, torch.Tensor]], final: torch.Tensor
) -> tuple[torch.Tensor, torch.Tensor]:
    """``(hits, trials)`` per offset 1 .. REPORTED_OFFSETS of the guesses after each call (see SamplingResult).

    ``guesses`` holds ``(accepted [B], guess [B, d])`` after each call; ``final`` the samples ``[B, d]``.
    """
    batch, dims = final.shape
    hits = torch.zeros(REPORTED_OFFSETS, dtype=torch.long, device=final.device)
    trials = torch.zeros_like(hits)
    offsets = torch.arange(REPORTED_OFFSETS, device=final.device)
    for accepted, guess in guesses:
        position = accepted.unsqueeze(1) + offsets  # [B, T]: offset t is position accepted + t - 1
        exists = position < dims
        index = position.clamp(max=dims - 1)
        right = (guess.gather(1, index) == final.gather(1, index)) & exists
        hits += right.sum(0)
        trials += exists.sum(0)
    return hits, trials


# A proposal maps (the call's sample [B, d], the current guess [B, d], the last accepted dimension
# [B], the call's features) to the guess [B, d] for the dimensions not yet accepted.
Proposal = Callable[[torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor], torch.Tensor]


def _run(arm: AutoregressiveModel, noise: torch.Tensor, op: str, propose: Proposal, *, verify: bool) -> SamplingResult:
    """The loop every sampler shares: call the ARM on the guess, accept, propose, until all is accepted.

    The call's sample ``s`` is correct on the accepted prefix and at the first dimension after it (their
    distributions were computed from correct dimensions only). With ``verify`` the prefix grows through
    the first dimension where ``s`` differs from the guess (that dimension is now correct too), otherwise
    by exactly that one dimension (sequential sampling). The new guess is ``s`` on the prefix and
    ``propose(...)`` after it.
    """
    batch = _check_noise(arm, noise, op)
    event_shape = tuple(arm.event_shape)
    dims = math.prod(event_shape)
    position = torch.arange(dims, device=noise.device)
    guess = torch.zeros(batch, dims, dtype=torch.long, device=noise.device)
    accepted = torch.zeros(batch, dtype=torch.long, device=noise.device)
    calls_per_example = torch.zeros(batch, dtype=torch.long, device=noise.device)
    history, guesses = [], []
    with evaluating(arm):
        while bool((accepted < dims).any()):
            params, features = arm.predict(guess.view(batch, *event_shape))
            sample = arm.distribution.sample(params, noise).view(batch, dims)
            if verify:
                wrong = (sample != guess) & (position >= accepted.unsqueeze(1))
                first_wrong = torch.where(wrong.any(1), wrong.int().argmax(1), dims)
                new_accepted = (first_wrong + 1).clamp(max=dims)
            else:
                new_accepted = (accepted + 1).clamp(max=dims)
            proposal = propose(sample, guess, new_accepted - 1, features)
            guess = torch.where(position < new_accepted.unsqueeze(1), sample, proposal)
            history.append(new_accepted)
            guesses.append((new_accepted, guess))
            calls_per_example[(new_accepted == dims) & (accepted < dims)] = len(history)
            accepted = new_accepted
    offset_hits, offset_trials = _offset_counts(guesses, guess)
    return SamplingResult(
        samples=guess.view(batch, *event_shape),
        calls=len(history),
        calls_per_example=calls_per_example,
        accepted=torch.stack(history) if history else accepted.new_zeros(0, batch),
        offset_hits=offset_hits,
        offset_trials=offset_trials,
    )


def sequential(arm: AutoregressiveModel, noise: torch.Tensor) -> SamplingResult:
    """Ancestral sampling: one ARM call per dimension (``d`` calls), dimensions not yet sampled held at 0."""
    return _run(arm, noise, "sequential", lambda sample, guess, last, features: guess, verify=False)


def fixed_point(arm: AutoregressiveModel, noise: torch.Tensor) -> SamplingResult:
    """ARM fixed-point iteration: guess every dimension not yet accepted as the ARM's latest sample of it.

    Starts from all zeros; each call accepts at least one dimension, so at most ``d`` calls, and an ARM
    whose output ignores its input needs 2 (the second only verifies). Same samples as :func:`sequential`.
    """
    return _run(arm, noise, "fixed_point", lambda sample, guess, last, features: sample, verify=True)


def forecast(
    arm: AutoregressiveModel, noise: torch.Tensor, forecaster: Forecaster, horizon: int | None = None
) -> SamplingResult:
    """Predictive sampling with learned forecasting modules (the first ``horizon`` of ``forecaster``'s).

    After each call, with ``m`` the last accepted dimension (the first mismatch, just corrected), module
    ``t`` proposes dimension ``m + t`` from the ARM's features at ``m`` and the value of ``m``, sampled with
    that dimension's own noise; dimensions past ``m + horizon`` get the fixed-point guess. Same samples as
    :func:`sequential`.
    """
    modules = forecaster.horizon
    horizon = modules if horizon is None else horizon
    if isinstance(horizon, bool) or not isinstance(horizon, int) or not 1 <= horizon <= modules:
        raise ValueError(f"forecast: horizon must be an integer in 1..{modules} (the forecaster's), got {horizon!r}")
    distribution = arm.distribution

    def propose(sample: torch.Tensor, guess: torch.Tensor, last: torch.Tensor, features: torch.Tensor) -> torch.Tensor:
        batch, dims = sample.shape
        width = features.shape[-1]
        rows = torch.arange(batch, device=sample.device)
        offsets = torch.arange(1, horizon + 1, device=sample.device)
        flat_noise = noise.view(batch, dims, -1)
        # The features and the value at the last accepted dimension only (the modules are 1x1 convs).
        anchor = features[rows, :, last // width, last % width][..., None, None]  # [B, F, 1, 1]
        value = sample[rows, last].view(batch, 1, 1, 1)
        params = forecaster(anchor, value)[:, :horizon].reshape(batch, horizon, -1)  # [B, T, P]
        target = last.unsqueeze(1) + offsets  # [B, T], may run past the end
        values = distribution.sample(params, flat_noise[rows.unsqueeze(1), target.clamp(max=dims - 1)])
        # Scatter into a copy with room past the end, so proposals beyond the last dimension fall away.
        padded = torch.cat([sample, sample.new_zeros(batch, horizon)], dim=1)
        return padded.scatter(1, target, values)[:, :dims]

    return _run(arm, noise, "forecast", propose, verify=True)


def sample_arm(
    arm: AutoregressiveModel, count: int, *, batch_size: int = 256, generator: torch.Generator | None = None
) -> torch.Tensor:
    """``count`` samples of ``arm``, int64 ``[count, *event_shape]``, e.g. to train forecasting modules on.

    Drawn in batches of ``batch_size`` by :func:`fixed_point` (the samples of :func:`sequential` in fewer
    calls) with noise from ``generator``: a seed gives the same samples on a given machine.
    """
    for name, value in (("count", count), ("batch_size", batch_size)):
        if isinstance(value, bool) or not isinstance(value, int) or value < 1:
            raise ValueError(f"sample_arm: {name} must be a positive integer, got {value!r}")
    batches = []
    with torch.no_grad():
        for start in range(0, count, batch_size):
            noise = draw_noise(arm, min(batch_size, count - start), generator)
            batches.append(fixed_point(arm, noise).samples)
    return torch.cat(batches)


SAMPLERS: dict[str, Callable[..., SamplingResult]] = {
    "sequential": sequential,
    "fixed_point": fixed_point,
    "forecast": forecast,
}


@dataclass
class SamplerRun:
    """One sampler in :func:`compare_samplers`: its result, its best wall-clock time, and whether its
    samples equal the sequential ones (``torch.equal``)."""

    name: str
    result: SamplingResult
    seconds: float
    identical: bool


def compare_samplers(
    arm: AutoregressiveModel,
    noise: torch.Tensor,
    *,
    forecaster: Forecaster | Mapping[str, Forecaster] | None = None,
    horizons: tuple[int, ...] = (1, 4, 8),
    repeats: int = 1,
) -> list[SamplerRun]:
    """Run :func:`sequential`, :func:`fixed_point` and :func:`forecast` (each horizon) on the same noise.

    ``forecaster`` is one (runs named ``forecast T=t``) or several by name (``forecast[name] T=t``).
    Times each with ``time.perf_counter`` (best of ``repeats``) after one warm-up ARM call, in eval mode
    without autograd, in this process, so the ratios hold on a busy machine. The first run is sequential.
    """
    if repeats < 1:
        raise ValueError(f"compare_samplers: repeats must be positive, got {repeats}")
    samplers: list[tuple[str, Callable[[], SamplingResult]]] = [
        ("sequential", lambda: sequential(arm, noise)),
        ("fixed_point", lambda: fixed_point(arm, noise)),
    ]
    named = {"": forecaster} if forecaster is not None and not isinstance(forecaster, Mapping) else forecaster or {}
    for name, modules in named.items():
        label = f"forecast[{name}]" if name else "forecast"
        samplers += [(f"{label} T={t}", lambda t=t, m=modules: forecast(arm, noise, m, t)) for t in horizons]
    with evaluating(arm):
        arm.predict(torch.zeros(noise.shape[0], *arm.event_shape, dtype=torch.long, device=noise.device))
    runs = []
    for name, run in samplers:
        best, result = math.inf, None
        for _ in range(repeats):
            start = time.perf_counter()
            result = run()
            best = min(best, time.perf_counter() - start)
        identical = torch.equal(result.samples, runs[0].result.samples) if runs else True
        runs.append(SamplerRun(name, result, best, identical))
    return runs
