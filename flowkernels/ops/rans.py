"""Fake kernels of the rans ops (the user-facing API is :mod:`flowkernels.rans`).

The ops work on a coder held as three tensors, ``state`` int64 [N], ``words``
int32 [N, capacity] and ``lengths`` int64 [N], which pushes and pops update in
place; :class:`flowkernels.rans.RansCoder` owns them and grows ``words``.
"""

from __future__ import annotations

import torch

__all__: list[str] = []


def _traced_only(op: str, *tensors: torch.Tensor | None) -> None:
    """The fake kernels stand in for the real ones under fake or meta tracing only. A real coder
    called with meta parameters is dispatched here too (meta wins the dispatch), where pretending
    would push nothing or pop uninitialised symbols: refuse it."""
    from torch._subclasses.fake_tensor import is_fake

    real = [t.device for t in tensors if t is not None and t.device.type != "meta" and not is_fake(t)]
    if real:
        raise ValueError(
            f"flowkernels.{op}: arguments on the meta device with a coder on {real[0]}: every tensor must be on "
            "the coder's device"
        )


@torch.library.register_fake("flowkernels::rans_push_categorical")
def _push_categorical_fake(state, words, lengths, symbols, cdf, precision, validate=True):
    _traced_only("rans_push_categorical", state, words, lengths, symbols, cdf)
    return None


@torch.library.register_fake("flowkernels::rans_pop_categorical")
def _pop_categorical_fake(state, words, lengths, cdf, precision, count):
    _traced_only("rans_pop_categorical", state, words, lengths, cdf)
    return state.new_empty((state.shape[0], count))


@torch.library.register_fake("flowkernels::rans_push_logistic")
def _push_logistic_fake(state, words, lengths, symbols, mu, log_scale, logit_pi, bin_width, lower, upper, precision):
    _traced_only("rans_push_logistic", state, words, lengths, symbols, mu, log_scale, logit_pi)
    return None


@torch.library.register_fake("flowkernels::rans_pop_logistic")
def _pop_logistic_fake(state, words, lengths, mu, log_scale, logit_pi, bin_width, lower, upper, precision):
    _traced_only("rans_pop_logistic", state, words, lengths, mu, log_scale, logit_pi)
    return state.new_empty((state.shape[0], mu.shape[1]))


@torch.library.register_fake("flowkernels::rans_quantize_pdf")
def _quantize_pdf_fake(probs, precision, logits):
    return probs.new_empty((*probs.shape[:-1], probs.shape[-1] + 1), dtype=torch.int32)


@torch.library.register_fake("flowkernels::rans_push_probs")
def _push_probs_fake(state, words, lengths, symbols, probs, precision):
    _traced_only("rans_push_probs", state, words, lengths, symbols, probs)
    return None


@torch.library.register_fake("flowkernels::rans_pop_probs")
def _pop_probs_fake(state, words, lengths, probs, precision, count):
    _traced_only("rans_pop_probs", state, words, lengths, probs)
    return state.new_empty((state.shape[0], count))
