"""Pure-PyTorch references of every op: the oracles for tests and benchmarks."""

from . import coupling

__all__ = ["coupling"]
