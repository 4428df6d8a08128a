"""Renamed arguments: the old keyword still works where a published README example used it, with a warning."""

from __future__ import annotations

import functools
import importlib
import warnings
from collections.abc import Callable
from typing import Any, TypeVar

F = TypeVar("F", bound=Callable[..., Any])


def renamed_keywords(**renames: str) -> Callable[[F], F]:
    """Decorator: each old keyword ``old=new`` of ``renames`` is passed on as ``new=`` with a DeprecationWarning.

    For arguments renamed in the one vocabulary (README, "Glossary") that a published README example passed by
    keyword; the signature the decorated function shows is the new one. Giving both names is a one-line
    ValueError.
    """

    def decorate(function: F) -> F:
        owner = function.__qualname__.removesuffix(".__init__")

        @functools.wraps(function)
        def renamed(*args: Any, **kwargs: Any) -> Any:
            for old, new in renames.items():
                if old in kwargs:
                    if new in kwargs:
                        raise ValueError(f"{owner}: give {new}= or its old name {old}=, not both")
                    warnings.warn(f"{owner}: {old}= is deprecated, use {new}=", DeprecationWarning, stacklevel=2)
                    kwargs[new] = kwargs.pop(old)
            return function(*args, **kwargs)

        return renamed  # type: ignore[return-value]

    return decorate


def moved_names(module: str, moves: dict[str, str]) -> Callable[[str], Any]:
    """A module's ``__getattr__`` for names that moved to other modules: ``moves`` maps each old name of
    ``module`` to its new module, which is imported on first use; the access warns (DeprecationWarning) and
    names the new home. Only for names a published README example imported from the old place."""

    def __getattr__(name: str) -> Any:
        if name not in moves:
            raise AttributeError(f"module {module!r} has no attribute {name!r}")
        warnings.warn(f"{module}.{name} moved: import it from {moves[name]}", DeprecationWarning, stacklevel=2)
        return getattr(importlib.import_module(moves[name]), name)

    return __getattr__
