"""Benchmarks of the coupling family at the shapes IDF uses.

The main shape is IDF on 32x32 RGB images in batches of 64 with a K = 5
discretized logistic mixture prior. Contenders per row:

- kernel: ``flowkernels.ops`` (this library's compiled op)
- reference: ``flowkernels.reference.coupling`` (pure PyTorch, eager)
- peer ``inductor``: the same reference compiled by ``torch.compile`` (what a
  user gets without hand-written kernels), when ``compile_peers`` is set.
"""

from __future__ import annotations

from collections.abc import Callable

import torch

from flowkernels import ops
from flowkernels.reference import coupling as ref

from .harness import Case, Target

FAMILY = "coupling"

# Targets of issue 2, measured against the eager reference in the same run.
LOGISTIC_FWD_BWD = Target(min_speedup=3.0, min_memory_ratio=2.0)
NO_SLOWER = Target(min_speedup=1.0)


def _forward(fn: Callable, *args, **kwargs) -> Callable[[], object]:
    def run():
        with torch.no_grad():
            return fn(*args, **kwargs)

    return run


def _forward_backward(fn: Callable, inputs: list[torch.Tensor], *args, **kwargs) -> Callable[[], object]:
    def run():
        out = fn(*args, **kwargs)
        return torch.autograd.grad(out.sum(), inputs)

    return run


def _compiled(fn: Callable) -> Callable:
    return torch.compile(fn, fullgraph=True, dynamic=False)


def cases(*, quick: bool = False, device: str = "cpu", compile_peers: bool = True) -> list[Case]:
    """Benchmark cases of the family; ``quick`` uses tiny shapes (for tests and smoke runs)."""
    batch, channels, size, K = (4, 3, 8, 5) if quick else (64, 3, 32, 5)
    shape = (batch, channels, size, size)
    label = "x".join(map(str, shape))
    gen = torch.Generator().manual_seed(0)
    dev = torch.device(device)

    x = torch.randint(0, 256, shape, generator=gen).float().to(dev)
    t = (torch.randn(shape, generator=gen) * 20).to(dev).requires_grad_()
    mu = (torch.rand(*shape, K, generator=gen) * 256).to(dev).requires_grad_()
    log_scale = (torch.randn(*shape, K, generator=gen) + 1.0).to(dev).requires_grad_()
    logit_pi = torch.randn(*shape, K, generator=gen).to(dev).requires_grad_()
    bounds = {"lower": 0.0, "upper": 255.0}
    params = [mu, log_scale, logit_pi]

    def peers(make: Callable[[Callable], Callable[[], object]], reference_fn: Callable) -> dict:
        return {"inductor": make(_compiled(reference_fn))} if compile_peers else {}

    out = []
    # discretized logistic mixture (IDF prior / PixelCNN++ head)
    logistic_args = (x, mu, log_scale, logit_pi)
    out.append(
        Case(
            FAMILY,
            "discretized_logistic_logp",
            f"{label}, K={K}",
            "fwd",
            kernel=_forward(ops.discretized_logistic_logp, *logistic_args, **bounds),
            reference=_forward(ref.discretized_logistic_logp, *logistic_args, **bounds),
            peers=peers(lambda f: _forward(f, *logistic_args, **bounds), ref.discretized_logistic_logp),
        )
    )
    out.append(
        Case(
            FAMILY,
            "discretized_logistic_logp",
            f"{label}, K={K}",
            "fwd+bwd",
            kernel=_forward_backward(ops.discretized_logistic_logp, params, *logistic_args, **bounds),
            reference=_forward_backward(ref.discretized_logistic_logp, params, *logistic_args, **bounds),
            peers=peers(
                lambda f: _forward_backward(f, params, *logistic_args, **bounds), ref.discretized_logistic_logp
            ),
            target=LOGISTIC_FWD_BWD,
        )
    )
    # integer coupling (IDF's additive coupling on the lattice 1/256)
    coupling = {"scale": 256.0}
    xs = x / 256.0
    out.append(
        Case(
            FAMILY,
            "integer_coupling",
            label,
            "fwd",
            kernel=_forward(ops.integer_coupling, xs, t, **coupling),
            reference=_forward(ref.integer_coupling, xs, t, **coupling),
            peers=peers(lambda f: _forward(f, xs, t, **coupling), ref.integer_coupling),
            target=NO_SLOWER,
        )
    )
    out.append(
        Case(
            FAMILY,
            "integer_coupling",
            label,
            "fwd+bwd",
            kernel=_forward_backward(ops.integer_coupling, [t], xs, t, **coupling),
            reference=_forward_backward(ref.integer_coupling, [t], xs, t, **coupling),
            peers=peers(lambda f: _forward_backward(f, [t], xs, t, **coupling), ref.integer_coupling),
            target=NO_SLOWER,
        )
    )
    # straight-through rounding
    out.append(
        Case(
            FAMILY,
            "round_ste",
            label,
            "fwd",
            kernel=_forward(ops.round_ste, t),
            reference=_forward(ref.round_ste, t),
            peers=peers(lambda f: _forward(f, t), ref.round_ste),
            target=NO_SLOWER,
        )
    )
    out.append(
        Case(
            FAMILY,
            "round_ste",
            label,
            "fwd+bwd",
            kernel=_forward_backward(ops.round_ste, [t], t),
            reference=_forward_backward(ref.round_ste, [t], t),
            peers=peers(lambda f: _forward_backward(f, [t], t), ref.round_ste),
            target=NO_SLOWER,
        )
    )
    return out
