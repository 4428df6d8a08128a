"""Pure-PyTorch references of every op: the oracles for tests and benchmarks."""

from . import arconv, coupling, hex, intconv

__all__ = ["arconv", "coupling", "hex", "intconv"]
