"""The coupling kernel family: straight-through rounding, integer coupling, and
the discretized logistic mixture likelihood of IDF priors and PixelCNN++ heads.

All three ops run on CPU and CUDA, support float32 and float64, have autograd
and fake kernels (so they trace under ``torch.compile(fullgraph=True)``), and
are deterministic: the same inputs give the same bits on every run, and the
integer-valued outputs of ``round_ste`` and ``integer_coupling`` are identical
on CPU and CUDA.
"""

from __future__ import annotations

import torch

__all__ = ["round_ste", "integer_coupling", "discretized_logistic_logp"]

_ops = torch.ops.flowkernels


def round_ste(x: torch.Tensor) -> torch.Tensor:
    """Round to the nearest integer, ties to even; the gradient passes straight through.

    This is the straight-through estimator IDF uses to train integer couplings:
    the forward pass is ``torch.round(x)`` (bit for bit, sign of zero included),
    the backward pass treats rounding as the identity.

    Args:
        x: float32 or float64 tensor of any shape, on CPU or CUDA.

    Returns:
        A tensor like ``x`` holding integer values.

    Example:
        >>> import torch
        >>> from flowkernels import ops
        >>> ops.round_ste(torch.tensor([0.5, 1.5, -2.5, 2.7]))
        tensor([ 0.,  2., -2.,  3.])
    """
    return _ops.round_ste(x)


def integer_coupling(x: torch.Tensor, t: torch.Tensor, *, inverse: bool = False, scale: float = 1.0) -> torch.Tensor:
    """Additive integer coupling: ``x + round(t * scale) / scale`` (``-`` when ``inverse``).

    The translation is rounded to the lattice ``1 / scale`` with round-half-even,
    so when ``x`` lies on that lattice so does the output, and
    ``integer_coupling(integer_coupling(x, t), t, inverse=True)`` returns ``x``
    bit for bit. Exactness holds whenever the sums are representable, which is
    always the case for a power-of-two ``scale`` (IDF uses 1 or 2^k) and values
    below 2^24 / scale in float32 (2^53 / scale in float64).

    Gradients: identity to ``x``; straight-through (+1, or -1 when ``inverse``) to ``t``.

    Args:
        x: float32 or float64 tensor.
        t: translation, same shape, dtype and device as ``x``.
        inverse: subtract instead of add.
        scale: positive, finite lattice density.

    Example:
        >>> import torch
        >>> from flowkernels import ops
        >>> x, t = torch.tensor([3.0, -1.0, 7.0]), torch.tensor([0.4, 2.6, -1.5])
        >>> z = ops.integer_coupling(x, t)
        >>> z
        tensor([3., 2., 5.])
        >>> torch.equal(ops.integer_coupling(z, t, inverse=True), x)
        True
    """
    return _ops.integer_coupling(x, t, inverse=inverse, scale=float(scale))


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
    """Log-probability (natural log) of ``x`` under a discretized logistic mixture.

    The bin of ``x`` is ``[x - w/2, x + w/2)`` with ``w = bin_width``; component
    ``k`` is a logistic with location ``mu[..., k]`` and scale
    ``exp(log_scale[..., k])``, weighted by ``softmax(logit_pi)[..., k]``.

    Without ``lower``/``upper`` the variable is unbounded (IDF's latents). With
    them, ``lower`` and ``upper`` are the centres of the edge bins: a value
    ``x <= lower`` gets all the mass below ``x + w/2`` and ``x >= upper`` all the
    mass above ``x - w/2`` (PixelCNN++'s bounded pixels).

    The computation stays finite in far tails (``|x - mu| / s`` of 1e4 and
    beyond): it uses ``log sigmoid(b) + log sigmoid(-a) + log(1 - exp(a - b))``
    instead of a difference of CDFs. Gradients flow to ``mu``, ``log_scale`` and
    ``logit_pi`` from a fused backward kernel (and to ``x``, as ``-sum(d/dmu)``).

    Args:
        x: values, float32 or float64, shape ``S``.
        mu, log_scale: shape ``S + [K]``; without ``logit_pi`` (``K = 1``) also ``S``.
        logit_pi: mixture logits, shape ``S + [K]``, or ``None`` for one component.
        bin_width: width of a bin (1 for integers, 1/256 for IDF's scaled data).
        lower, upper: centres of the edge bins of a bounded variable.

    Returns:
        ``log P(x)`` with shape ``S``.

    Example (one logistic of location 0 and scale 1 on the integers, then 8-bit pixels):
        >>> import torch
        >>> from flowkernels import ops
        >>> ops.discretized_logistic_logp(torch.tensor([0.0, 3.0]), torch.zeros(2), torch.zeros(2))
        tensor([-1.4068, -3.0673])
        >>> pixels, mu, log_scale = torch.tensor([0.0, 255.0]), torch.full((2,), 128.0), torch.full((2,), 3.0)
        >>> ops.discretized_logistic_logp(pixels, mu, log_scale, lower=0, upper=255).exp()
        tensor([0.0017, 0.0018])
    """
    if logit_pi is None and mu.dim() == x.dim():
        mu, log_scale = mu.unsqueeze(-1), log_scale.unsqueeze(-1)
    return _ops.discretized_logistic_logp(
        x,
        mu,
        log_scale,
        logit_pi,
        bin_width=float(bin_width),
        lower=None if lower is None else float(lower),
        upper=None if upper is None else float(upper),
    )


# ---------------------------------------------------------------------------
# Fake kernels: output metadata only, so torch.compile can trace the ops.


def _check_params(op: str, x: torch.Tensor, **params: torch.Tensor | None) -> None:
    expected = (*x.shape, next(iter(params.values())).shape[-1])
    for name, value in params.items():
        if value is not None:
            torch._check(
                tuple(value.shape) == expected,
                lambda name=name, value=value: (
                    f"flowkernels.{op}: argument '{name}' must have shape "
                    f"x.shape + [K] = {list(expected)}, got {list(value.shape)}"
                ),
            )


@torch.library.register_fake("flowkernels::round_ste")
def _round_ste_fake(x):
    return torch.empty_like(x, memory_format=torch.contiguous_format)


@torch.library.register_fake("flowkernels::integer_coupling")
def _integer_coupling_fake(x, t, *, inverse=False, scale=1.0):
    torch._check(
        t.shape == x.shape,
        lambda: (
            f"flowkernels.integer_coupling: argument 't' must have shape x.shape = {list(x.shape)}, got {list(t.shape)}"
        ),
    )
    return torch.empty_like(x, memory_format=torch.contiguous_format)


@torch.library.register_fake("flowkernels::discretized_logistic_logp")
def _logistic_fake(x, mu, log_scale, logit_pi, *, bin_width=1.0, lower=None, upper=None):
    _check_params("discretized_logistic_logp", x, mu=mu, log_scale=log_scale, logit_pi=logit_pi)
    return torch.empty_like(x, memory_format=torch.contiguous_format)


@torch.library.register_fake("flowkernels::discretized_logistic_logp_backward")
def _logistic_backward_fake(grad, x, mu, log_scale, logit_pi, *, bin_width=1.0, lower=None, upper=None):
    _check_params("discretized_logistic_logp_backward", x, mu=mu, log_scale=log_scale, logit_pi=logit_pi)
    grad_mu = torch.empty_like(mu, memory_format=torch.contiguous_format)
    grad_log_scale = torch.empty_like(mu, memory_format=torch.contiguous_format)
    grad_logit_pi = (
        torch.empty_like(mu, memory_format=torch.contiguous_format) if logit_pi is not None else mu.new_empty(0)
    )
    return grad_mu, grad_log_scale, grad_logit_pi
