"""Deprecated home of the rANS coder: it lives in :mod:`flowkernels.ops.rans`, beside every other family's ops.

The README's first examples imported ``RansCoder`` and ``quantize_pdf`` from here, so every public name still
resolves, with a DeprecationWarning.
"""

from __future__ import annotations

import warnings

from .ops import rans as _rans

__all__ = list(_rans.__all__)


def __getattr__(name: str):
    if name in _rans.__all__ or name == "STATE_LOWER":
        warnings.warn(
            f"flowkernels.rans.{name} moved: import it from flowkernels.ops.rans", DeprecationWarning, stacklevel=2
        )
        return getattr(_rans, name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
