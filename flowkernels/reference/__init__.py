"""Pure-PyTorch references of every op: the oracles for tests and benchmarks."""

from . import arconv, coupling, hex

__all__ = ["arconv", "coupling", "hex"]
