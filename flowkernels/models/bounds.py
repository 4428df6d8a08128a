"""Lower bounds on ``log P(x)`` from importance log weights ``[K, B]`` (arXiv:2001.11235).

With a dequantizer ``q(u | x)`` whose support is the bin of ``x``, the weights ``w = p(x + u) / q(u | x)``
(``u ~ q``) have ``E[w] = P(x)``, which gives a family of lower bounds (:mod:`flowkernels.models.dequantization`):

* :func:`elbo`: ``E[log w]`` (uniform dequantization is the ELBO with ``q = 1``);
* :func:`iw_bound`: ``log (1/K) sum_k w_k``, tighter as K grows and exact as ``K -> infinity``;
* :func:`renyi_bound`: ``1/(1 - alpha) log (1/K) sum_k w_k^(1 - alpha)``, between the two: the iw bound at
  ``alpha = 0`` and the ELBO as ``alpha -> 1``.

On the same K samples the three are ordered for every draw, not just in expectation: they are the logarithms of
power means of the weights (order ``1 - alpha``), and power means grow with the order.
"""

from __future__ import annotations

import math

import torch

__all__ = ["OBJECTIVES", "bound", "check_alpha", "elbo", "iw_bound", "renyi_bound"]

OBJECTIVES = ("elbo", "iw", "renyi")


def _check_log_weights(name: str, log_weights: torch.Tensor) -> None:
    if log_weights.dim() != 2:
        raise ValueError(f"{name}: log_weights must be [K, B] (K samples per example), got {list(log_weights.shape)}")
    if log_weights.shape[0] < 1:
        raise ValueError(f"{name}: needs K >= 1 samples per example, got K = {log_weights.shape[0]}")


def check_alpha(name: str, alpha: float) -> float:
    """``alpha`` as a float in [0, 1] (the Renyi bound's order), else a one-line ValueError naming ``name``."""
    alpha = float(alpha)
    if not 0.0 <= alpha <= 1.0:  # also rejects NaN
        raise ValueError(
            f"{name}: alpha must be in [0, 1] (0 is the iw bound, 1 the ELBO; outside, the Renyi objective "
            f"is not a lower bound between them), got {alpha}"
        )
    return alpha


def elbo(log_weights: torch.Tensor) -> torch.Tensor:
    """The evidence lower bound ``mean_k log w_k`` per example: ``[K, B] -> [B]`` (natural log)."""
    _check_log_weights("elbo", log_weights)
    return log_weights.mean(0)


def iw_bound(log_weights: torch.Tensor) -> torch.Tensor:
    """The importance-weighted bound ``log (1/K) sum_k w_k`` per example: ``[K, B] -> [B]``.

    A logsumexp, so log weights of -1e4 (far below what ``exp`` can represent) are fine. With ``K = 1`` it
    is the ELBO; its expectation grows with K towards ``log P(x)``.
    """
    _check_log_weights("iw_bound", log_weights)
    return torch.logsumexp(log_weights, 0) - math.log(log_weights.shape[0])


def renyi_bound(log_weights: torch.Tensor, alpha: float) -> torch.Tensor:
    """The Renyi bound ``1/(1 - alpha) log (1/K) sum_k w_k^(1 - alpha)`` per example: ``[K, B] -> [B]``.

    ``alpha = 0`` is :func:`iw_bound`, ``alpha = 1`` (the limit) :func:`elbo`; for ``0 < alpha < 1`` it lies
    between them on the same samples. Written as ``m + 1/(1 - alpha) log mean exp((1 - alpha)(log w - m))``
    with ``m`` the mean log weight: near ``alpha = 1`` the log-mean-exp is then ``O(1 - alpha)`` and is
    computed as ``log1p(mean(expm1(t)))``, which keeps its relative precision where a logsumexp minus
    ``log K`` would cancel catastrophically before the division by ``1 - alpha``.
    """
    _check_log_weights("renyi_bound", log_weights)
    alpha = check_alpha("renyi_bound", alpha)
    if alpha == 1.0:
        return elbo(log_weights)
    mean = log_weights.mean(0)
    t = (1.0 - alpha) * (log_weights - mean)
    by_logsumexp = torch.logsumexp(t, 0) - math.log(t.shape[0])
    # The clamp only keeps the branch that is not selected finite (a NaN gradient would leak through where).
    by_expm1 = torch.log1p(torch.expm1(t.clamp(max=30.0)).mean(0))
    small = t.abs().amax(0) < 1.0
    return mean + torch.where(small, by_expm1, by_logsumexp) / (1.0 - alpha)


def bound(log_weights: torch.Tensor, objective: str, alpha: float = 0.5) -> torch.Tensor:
    """``elbo``, ``iw`` or ``renyi`` (with ``alpha``) of ``log_weights`` ``[K, B]``, per example."""
    if objective == "elbo":
        return elbo(log_weights)
    if objective == "iw":
        return iw_bound(log_weights)
    if objective == "renyi":
        return renyi_bound(log_weights, alpha)
    raise ValueError(f"dequantization: objective must be one of {OBJECTIVES}, got {objective!r}")
