"""Pure-PyTorch references of the ``coupling`` kernel family.

These are the oracles that tests compare the compiled kernels against and the
baselines that ``benchmarks/bench_coupling.py`` times. They are written for
clarity and numerical care, built only from differentiable PyTorch ops, so
autograd supplies their gradients.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F

__all__ = ["round_ste", "integer_coupling", "discretized_logistic_logp"]


class _RoundSTE(torch.autograd.Function):
    @staticmethod
    def forward(ctx, x: torch.Tensor) -> torch.Tensor:  # noqa: D102
        return torch.round(x)  # torch.round rounds half to even

    @staticmethod
    def backward(ctx, grad: torch.Tensor) -> torch.Tensor:  # noqa: D102
        return grad


def round_ste(x: torch.Tensor) -> torch.Tensor:
    """Round half to even; the gradient passes straight through."""
    return _RoundSTE.apply(x)


def integer_coupling(x: torch.Tensor, t: torch.Tensor, *, inverse: bool = False, scale: float = 1.0) -> torch.Tensor:
    """``x + round(t * scale) / scale`` (minus when ``inverse``), straight-through in ``t``."""
    shift = round_ste(t * scale) / scale
    return x - shift if inverse else x + shift


def _log_sigmoid_difference(upper: torch.Tensor, width: torch.Tensor) -> torch.Tensor:
    """log(sigmoid(upper) - sigmoid(upper - width)) for width > 0, stable in both tails.

    Uses sigmoid(b) - sigmoid(a) = sigmoid(b) * sigmoid(-a) * (1 - exp(a - b)).
    """
    lower = upper - width
    return F.logsigmoid(upper) + F.logsigmoid(-lower) + torch.log(-torch.expm1(-width))


def discretized_logistic_logp(
    x: torch.Tensor,
    mu: torch.Tensor,
    log_scale: torch.Tensor,
    logit_pi: torch.Tensor | None = None,
    *,
    bin_width: float = 1.0,
    lower: float | None = None,
    upper: float | None = None,
) -> torch.Tensor:
    """Log-probability of ``x`` under a discretized logistic mixture (see ``flowkernels.ops``)."""
    if logit_pi is None and mu.shape == x.shape:
        mu, log_scale = mu.unsqueeze(-1), log_scale.unsqueeze(-1)
    xk = x.unsqueeze(-1)
    inv_scale = torch.exp(-log_scale)
    centred = xk - mu
    plus = (centred + 0.5 * bin_width) * inv_scale
    minus = (centred - 0.5 * bin_width) * inv_scale
    logp = _log_sigmoid_difference(plus, bin_width * inv_scale)
    if lower is not None:
        logp = torch.where(xk <= lower, F.logsigmoid(plus), logp)
    if upper is not None:
        logp = torch.where(xk >= upper, F.logsigmoid(-minus), logp)
    if lower is not None and upper is not None:
        logp = torch.where((xk <= lower) & (xk >= upper), torch.zeros_like(logp), logp)
    if logit_pi is None:
        return logp.sum(-1)
    return torch.logsumexp(logp + torch.log_softmax(logit_pi, dim=-1), dim=-1)


def discretized_logistic_logp_bruteforce(
    x: torch.Tensor,
    mu: torch.Tensor,
    log_scale: torch.Tensor,
    logit_pi: torch.Tensor | None = None,
    *,
    bin_width: float = 1.0,
    lower: float | None = None,
    upper: float | None = None,
) -> torch.Tensor:
    """The textbook CDF difference in float64, for moderate tails only (a second oracle)."""
    x, mu, log_scale = x.double(), mu.double(), log_scale.double()
    if logit_pi is None:
        if mu.shape == x.shape:
            mu, log_scale = mu.unsqueeze(-1), log_scale.unsqueeze(-1)
        weights = torch.ones_like(mu)
    else:
        weights = torch.softmax(logit_pi.double(), dim=-1)
    xk = x.unsqueeze(-1)
    scale = torch.exp(log_scale)
    cdf_plus = torch.sigmoid((xk + 0.5 * bin_width - mu) / scale)
    cdf_minus = torch.sigmoid((xk - 0.5 * bin_width - mu) / scale)
    if lower is not None:
        cdf_minus = torch.where(xk <= lower, torch.zeros_like(cdf_minus), cdf_minus)
    if upper is not None:
        cdf_plus = torch.where(xk >= upper, torch.ones_like(cdf_plus), cdf_plus)
    return torch.log((weights * (cdf_plus - cdf_minus)).sum(-1))
