"""Renamed arguments: the old keyword still works where a published README example used it, with a warning."""

from __future__ import annotations

import warnings
from typing import TypeVar

T = TypeVar("T")


def renamed_argument(owner: str, new_name: str, new_value: T, default: T, old_name: str, old_value: T | None) -> T:
    """The value of the argument ``new_name``, which used to be called ``old_name``.

    ``old_value`` (the old keyword, ``None`` when not given) wins with a DeprecationWarning; giving both the old
    keyword and a non-default new one is a one-line ValueError.
    """
    if old_value is None:
        return new_value
    if new_value != default:
        raise ValueError(f"{owner}: give {new_name}= or its old name {old_name}=, not both")
    warnings.warn(f"{owner}: {old_name}= is deprecated, use {new_name}=", DeprecationWarning, stacklevel=3)
    return old_value
