"""Deprecated home of the rANS coder: it lives in :mod:`flowkernels.ops.rans`, beside every other family's ops.

The README's first examples imported ``RansCoder`` and ``quantize_pdf`` from here, so every public name still
resolves, with a DeprecationWarning.
"""

from __future__ import annotations

from ._deprecation import moved_names
from .ops import rans as _rans

__all__ = list(_rans.__all__)

__getattr__ = moved_names(__name__, dict.fromkeys([*_rans.__all__, "STATE_LOWER"], "flowkernels.ops.rans"))
