"""One checkpoint format for every model family, read safely and validated in one place.

A checkpoint is ``{"config": {...}, "state_dict": {...}, **extra}``: the constructor's keyword
arguments (numbers, strings and lists of numbers), the weights (tensors) and whatever else the writer
records (a training summary). Everything in it is a plain tensor, number or string, so
``torch.load(path, weights_only=True)`` reads it and no code in a file ever runs. A class that mixes in
:class:`Checkpointable` (and has a ``config`` dict of its constructor's arguments) gets
:meth:`~Checkpointable.save`, :meth:`~Checkpointable.from_checkpoint` and :meth:`~Checkpointable.from_state`;
every problem with a file is a one-line ``ValueError`` that names it.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any, ClassVar, TypeVar

import torch
from torch import nn

__all__ = ["Checkpointable", "read_checkpoint"]

_FLOAT_DTYPES = (torch.float32, torch.float64)
Model = TypeVar("Model", bound="Checkpointable")


def _plain(value: Any) -> bool:
    """A config value: a number, a string, or a list or tuple of numbers (an image size)."""
    if isinstance(value, (list, tuple)):
        return all(isinstance(item, (int, float)) for item in value)
    return isinstance(value, (int, float, str))


def read_checkpoint(path: str | os.PathLike, *, map_location: str | torch.device = "cpu") -> dict[str, Any]:
    """The checkpoint at ``path``, read with ``weights_only=True`` and checked to have a ``config`` of numbers and
    strings and a ``state_dict`` of tensors. A missing file raises ``FileNotFoundError``; anything else wrong is a
    one-line ``ValueError`` naming ``path``."""
    try:
        checkpoint = torch.load(path, map_location=map_location, weights_only=True)
    except OSError:
        raise
    except Exception as error:  # unpickling errors of every kind: not a plain-tensor checkpoint
        raise ValueError(
            f"{path} is not a flowkernels checkpoint: torch.load(weights_only=True) cannot read it "
            f"({type(error).__name__})"
        ) from None
    if not isinstance(checkpoint, dict) or not {"config", "state_dict"} <= set(checkpoint):
        raise ValueError(f"{path} is not a model checkpoint: expected a dict with 'config' and 'state_dict'")
    config, state = checkpoint["config"], checkpoint["state_dict"]
    if not isinstance(config, dict) or not all(_plain(value) for value in config.values()):
        raise ValueError(f"{path}: the checkpoint's 'config' must be a dict of numbers, strings and lists of numbers")
    if not isinstance(state, dict) or not all(isinstance(value, torch.Tensor) for value in state.values()):
        raise ValueError(f"{path}: the checkpoint's 'state_dict' must be a dict of tensors")
    return checkpoint


class Checkpointable:
    """Saving and loading in the one checkpoint format (module doc), for an ``nn.Module`` with a ``config``."""

    config: dict[str, Any]
    #: constructor argument -> its key in the stored config, for the names a file format froze (an IDF's config is
    #: hashed into every codec file's model fingerprint); every other argument is stored under its own name
    STORED_NAMES: ClassVar[dict[str, str]] = {}

    @classmethod
    def arguments_from_config(cls, config: dict[str, Any]) -> dict[str, Any]:
        """The constructor's keyword arguments of a stored ``config`` (:attr:`STORED_NAMES` mapped back)."""
        argument_of = {stored: argument for argument, stored in cls.STORED_NAMES.items()}
        return {argument_of.get(key, key): value for key, value in config.items()}

    def save(self, path: str | os.PathLike, **extra: Any) -> Path:
        """Write the checkpoint ``{"config", "state_dict", **extra}`` (weights moved to the CPU) to ``path``."""
        assert isinstance(self, nn.Module)
        path = Path(path)
        path.parent.mkdir(parents=True, exist_ok=True)
        state = {key: value.detach().cpu() for key, value in self.state_dict().items()}
        torch.save({"config": dict(self.config), "state_dict": state, **extra}, path)
        return path

    @classmethod
    def from_state(cls: type[Model], config: dict[str, Any], state_dict: dict[str, torch.Tensor]) -> Model:
        """``cls(**cls.arguments_from_config(config))`` in the dtype of the floating-point weights (float32 or
        float64), with ``state_dict`` loaded, in eval mode; a ValueError if the config or the weights do not
        describe one."""
        name = cls.__name__
        article = "an" if name[0] in "AEFHILMNORSX" else "a"  # as the letters are spoken: an IDF, a Glow
        try:
            model = cls(**cls.arguments_from_config(config))
        except (TypeError, ValueError) as error:
            raise ValueError(f"the checkpoint's config does not describe {article} {name} ({error})") from None
        dtypes = {value.dtype for value in state_dict.values() if value.is_floating_point()}
        odd = sorted(str(dtype) for dtype in dtypes if dtype not in _FLOAT_DTYPES)
        if odd:
            raise ValueError(f"the checkpoint's float weights must be float32 or float64, got {', '.join(odd)}")
        if len(dtypes) > 1:
            raise ValueError(f"the checkpoint's float weights must share one dtype, got {sorted(map(str, dtypes))}")
        assert isinstance(model, nn.Module)
        if dtypes:
            model.to(dtypes.pop())
        try:
            model.load_state_dict(state_dict)
        except RuntimeError as error:
            raise ValueError(f"the checkpoint's weights do not fit its config ({error})") from None
        return model.eval()

    @classmethod
    def from_checkpoint(
        cls: type[Model], path: str | os.PathLike, *, map_location: str | torch.device = "cpu"
    ) -> Model:
        """The model saved at ``path`` (:meth:`save`), in eval mode; a one-line ValueError for a bad file."""
        checkpoint = read_checkpoint(path, map_location=map_location)
        try:
            return cls.from_state(checkpoint["config"], checkpoint["state_dict"])
        except ValueError as error:
            raise ValueError(f"{path}: {error}") from None
