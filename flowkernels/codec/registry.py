"""Finding the model a file is (de)compressed with: shipped models by name, or checkpoints by path.

:func:`resolve_model` is what ``flowkernels compress / decompress --model`` call.
Shipped models are factories in :data:`MODELS`, one per model of
:mod:`flowkernels.pretrained` present in the installation (:data:`DEFAULT_MODEL`
will name the one used when ``--model`` is not given). A path loads a checkpoint
``{"config": dict, "state_dict": dict}`` with ``torch.load(weights_only=True)``
and builds the model with :data:`CHECKPOINT_FACTORY` (IDF by default).
Tests inject fake models by patching :data:`MODELS` or :data:`CHECKPOINT_FACTORY`.
"""

from __future__ import annotations

import os
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Any

from .interface import CodecModel

__all__ = [
    "MODELS",
    "DEFAULT_MODEL",
    "CHECKPOINT_FACTORY",
    "resolve_model",
    "load_checkpoint",
    "build_idf",
    "shipped_model_for_channels",
    "shipped_model_with_fingerprint",
]

#: shipped models: name -> factory returning the model in eval mode (filled from
#: flowkernels.pretrained at the end of this module)
MODELS: dict[str, Callable[[], CodecModel]] = {}
#: the name used when no model is given (None: there is no shipped model yet)
DEFAULT_MODEL: str | None = None


def build_idf(config: Mapping[str, Any], state_dict: Mapping[str, Any]) -> CodecModel:
    """:meth:`IDF.from_state <flowkernels.models.checkpoint.Checkpointable.from_state>`: the IDF that a
    checkpoint's config and weights describe, in eval mode."""
    from ..models.idf import IDF  # imported lazily: the model module is optional for the codec

    return IDF.from_state(dict(config), dict(state_dict))


#: builds a model from a checkpoint's config and state dict
CHECKPOINT_FACTORY: Callable[[Mapping[str, Any], Mapping[str, Any]], CodecModel] = build_idf


def load_checkpoint(path: str | os.PathLike) -> CodecModel:
    """The model of the checkpoint at ``path`` (read and validated by
    :func:`flowkernels.models.checkpoint.read_checkpoint`), built by :data:`CHECKPOINT_FACTORY`."""
    from ..models.checkpoint import read_checkpoint

    checkpoint = read_checkpoint(path)
    try:
        return CHECKPOINT_FACTORY(checkpoint["config"], checkpoint["state_dict"])
    except ValueError as error:
        raise ValueError(f"{path}: {error}") from None


def resolve_model(name_or_path: str | os.PathLike | None = None) -> CodecModel:
    """The model called ``name_or_path`` in :data:`MODELS`, else the checkpoint at that path.

    ``None`` means :data:`DEFAULT_MODEL`. Raises ValueError for an unknown name
    that is not an existing file either.
    """
    if name_or_path is None:
        if DEFAULT_MODEL is None:
            raise ValueError(
                "no model given, and flowkernels ships no default compression model yet: "
                "pass --model PATH to a checkpoint ({'config': ..., 'state_dict': ...}, e.g. from train-idf)"
            )
        name_or_path = DEFAULT_MODEL
    name = os.fspath(name_or_path)
    if name in MODELS:
        return MODELS[name]()
    if Path(name).is_file():
        return load_checkpoint(name)
    shipped = ", ".join(sorted(MODELS)) or "none yet"
    raise ValueError(f"unknown model {name!r}: neither a shipped model (shipped: {shipped}) nor a checkpoint file")


#: the shipped models that compress images of a channel count when no model is named, best first: the
#: photos-dev models (64x64 tiles, trained with the development wallpapers) measured 3.567 / 3.733 bits/dim
#: on the photos-dev validation photographs against 3.688 / 4.828 for photos-gray / photos-rgb
_SHIPPED_FOR_CHANNELS = {1: ("photos-dev-gray", "photos-gray"), 3: ("photos-dev-rgb", "photos-rgb")}


def shipped_model_for_channels(channels: int) -> str:
    """The name of the best shipped photograph model for ``channels`` that this installation has
    (ValueError when there is none)."""
    name = next((name for name in _SHIPPED_FOR_CHANNELS.get(channels, ()) if name in MODELS), None)
    if name is None:
        raise ValueError(
            f"no shipped model compresses {channels}-channel images in this installation: pass --model PATH"
        )
    return name


def shipped_model_with_fingerprint(fingerprint: bytes) -> CodecModel:
    """The shipped model whose weights have ``fingerprint`` (the one a file was compressed with)."""
    from .container import model_fingerprint

    for name in sorted(MODELS):
        model = MODELS[name]()
        if model_fingerprint(model) == fingerprint:
            return model
    raise ValueError("the file was not compressed with a shipped model: pass --model with the model it was made with")


def _register_shipped_models() -> None:
    from .. import pretrained

    for name in pretrained.available():
        MODELS[name] = lambda name=name: load_checkpoint(pretrained.checkpoint_path(name))


_register_shipped_models()
