"""What the image codec needs from a model: the :class:`CodecModel` protocol.

A codec model is a bijection between integer images and integer latents (an
integer discrete flow, :mod:`flowkernels.models.idf`), together with a
discretized logistic mixture prior for every latent. The latents are produced
in *steps* (IDF's multi-scale levels): the prior of a step may depend on the
latents of the steps before it, so decoding has to go step by step.

The codec never looks inside the model; it only uses the members below.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from typing import Any, NamedTuple, Protocol, runtime_checkable

import torch

__all__ = ["LatentStep", "LatentStepLike", "PopFn", "CodecModel"]


class LatentStep(NamedTuple):
    """One step of latents and the prior they are coded under.

    ``z`` holds integer values as floats, shape ``[N, *S]``; ``mu``, ``log_scale``
    and ``logit_pi`` are ``[N, *S, K]``: component ``k`` of the prior of
    ``z[i, s]`` is a logistic of location ``mu[i, s, k]`` and scale
    ``exp(log_scale[i, s, k])`` discretized into bins of width 1, weighted by
    ``softmax(logit_pi[i, s])`` -- exactly the distribution of
    ``flowkernels.ops.discretized_logistic_logp(z, mu, log_scale, logit_pi)``
    (unbounded). ``K`` is 1 to 16; ``logit_pi`` may be ``None`` when ``K == 1``.
    """

    z: torch.Tensor
    mu: torch.Tensor
    log_scale: torch.Tensor
    logit_pi: torch.Tensor | None


@runtime_checkable
class LatentStepLike(Protocol):
    """Anything with the four fields of :class:`LatentStep` (a model may return its own class)."""

    @property
    def z(self) -> torch.Tensor: ...

    @property
    def mu(self) -> torch.Tensor: ...

    @property
    def log_scale(self) -> torch.Tensor: ...

    @property
    def logit_pi(self) -> torch.Tensor | None: ...


#: ``pop(mu, log_scale, logit_pi) -> z``: decodes one step. The parameters are
#: ``[n, *S, K]``; the result is ``[n, *S]`` integer values in ``mu``'s dtype and device.
PopFn = Callable[[torch.Tensor, torch.Tensor, "torch.Tensor | None"], torch.Tensor]


@runtime_checkable
class CodecModel(Protocol):
    """The model interface of :class:`flowkernels.codec.LosslessImageCodec`.

    * ``patch_shape``: ``(C, h, w)``, the size of the patches the model codes.
    * ``config``: a dict of plain numbers, strings (and lists of them) that, with
      the weights, determines the model. It is stored in compressed files.
    * ``state_dict()``: the weights; with ``config`` they make the model's fingerprint.
    * ``encode_latents(x)``: ``x`` is ``[N, C, h, w]``, pixel values 0..255 as
      integer-valued floats (the model does its own centring); returns the
      latent steps in *decode order*.
    * ``decode_latents(n, pop)``: calls ``pop(mu, log_scale, logit_pi)`` once per
      step, in the same order, with parameters bit-identical to those
      ``encode_latents`` gave for the same ``n`` patches, and returns ``x``
      (``[n, C, h, w]``, integer-valued floats).

    Determinism contract: for a given batch of patches, ``encode_latents`` and
    ``decode_latents`` must compute bit-identical parameters, on every run. The
    codec runs them on ``image_codec.MODEL_THREADS`` intra-op threads, so the
    model need not be invariant to the thread count. The codec calls the model on batches
    whose composition depends only on one image (never on the other images
    coded with it), so the model need not be invariant to the batch size
    (except in a stream, ``encode(..., stream=True)``, whose bytes depend on
    the whole batch anyway).
    Models with dropout or batch statistics must be in eval mode.

    Optional: ``portable = True`` declares that the model computes every number
    the decoder recomputes in integer arithmetic (an integer IDF), so that its
    results are the same on every machine, thread count and device: the codec
    then runs it on every thread and marks its files as decodable anywhere.

    Optional: ``batch_invariant = True`` declares that a patch's results do not
    depend on the other patches in the batch nor on their number (IDF runs its
    networks on fixed-size chunks for this). The codec then calls the model on
    batches that span images, which is much faster for small images and gives
    the same bytes.
    """

    @property
    def patch_shape(self) -> tuple[int, int, int]: ...

    @property
    def config(self) -> Mapping[str, Any]: ...

    def state_dict(self) -> Mapping[str, Any]: ...

    def encode_latents(self, x: torch.Tensor) -> Sequence[LatentStepLike]: ...

    def decode_latents(self, n: int, pop: PopFn) -> torch.Tensor: ...
