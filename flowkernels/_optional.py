"""Imports of optional dependencies, with an error message that says how to install them."""

from __future__ import annotations

import importlib
from types import ModuleType

__all__ = ["require"]


def require(module: str, pip_name: str, purpose: str) -> ModuleType:
    """Import ``module``, or raise an ImportError naming ``purpose`` and the ``pip install`` that fixes it."""
    try:
        return importlib.import_module(module)
    except ImportError as error:
        raise ImportError(
            f"flowkernels: {purpose} needs {pip_name}, which is not installed. Install it with "
            f"`pip install {pip_name}` (or all model extras with `pip install flowkernels[models]`)."
        ) from error
