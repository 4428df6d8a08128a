"""Resource limits that flowkernels checks before it allocates memory for untrusted input.

A file's header may claim any size; these limits (and the file's own size, where the format allows)
are checked against it first, so a hostile or broken file gets a one-line ValueError, never an
allocator failure or a machine out of memory.

``MAX_PIXELS``: the most subpixels (``images x channels x height x width``) an image file may declare
or a codec file may decode to. Default 2^28 (a 16384 x 16384 image); set the environment variable
``FLOWKERNELS_MAX_PIXELS`` (read at import) or assign ``flowkernels.limits.MAX_PIXELS`` to change it.

``MAX_SYMBOLS``: the most symbols one rANS call may size memory for (``lanes x count`` of a pop, 16
words per lane of a new coder). Default 2^30 (8 GiB of int64 symbols); ``FLOWKERNELS_MAX_SYMBOLS``.
"""

from __future__ import annotations

import os

__all__ = ["MAX_PIXELS", "MAX_SYMBOLS", "check_pixels", "check_symbols"]


def _from_environment(name: str, default: int) -> int:
    value = os.environ.get(name, "").strip()
    if not value:
        return default
    try:
        number = int(value)
    except ValueError:
        raise ImportError(f"flowkernels: {name}={value!r} is not a whole number") from None
    if number < 1:
        raise ImportError(f"flowkernels: {name}={value!r} must be positive")
    return number


MAX_PIXELS = _from_environment("FLOWKERNELS_MAX_PIXELS", 1 << 28)
MAX_SYMBOLS = _from_environment("FLOWKERNELS_MAX_SYMBOLS", 1 << 30)


def check_pixels(count: int, what: str) -> None:
    """ValueError when ``what`` declares more than :data:`MAX_PIXELS` subpixels."""
    if count > MAX_PIXELS:
        raise ValueError(
            f"{what} declares {count} subpixels, more than the limit of {MAX_PIXELS} "
            "(FLOWKERNELS_MAX_PIXELS raises it)"
        )


def check_symbols(count: int, what: str) -> None:
    """ValueError when ``what`` would size memory for more than :data:`MAX_SYMBOLS` symbols."""
    if count > MAX_SYMBOLS:
        raise ValueError(
            f"{what} needs room for {count} symbols, more than the limit of {MAX_SYMBOLS} "
            "(FLOWKERNELS_MAX_SYMBOLS raises it)"
        )
