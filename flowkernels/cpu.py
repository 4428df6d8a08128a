"""Which instruction-set path flowkernels' CPU kernels run, and how to force a lower one.

Every hand-written CPU kernel is compiled for three x86-64 levels and picks one at run time:

==========  =====================================================================
``avx512``  x86-64-v4: AVX-512 F/BW/CD/DQ/VL (Intel Skylake-SP and later, AMD Zen 4 and later)
``avx2``    x86-64-v3: AVX2 + FMA + BMI1/2 (Intel Haswell and later, AMD Zen 1 and later)
``baseline`` x86-64 with SSE2: every 64-bit x86 CPU, and the only path on other architectures
==========  =====================================================================

The path in effect is the highest one the CPU supports, capped by a ceiling:

* the environment variable ``FLOWKERNELS_CPU_ISA`` (``avx512``, ``avx2`` or ``baseline``), read when
  flowkernels is imported, makes the process behave as on a CPU without the higher paths
  (:func:`supported_isa` reports the lower path too, so the tests then run only the paths such a CPU
  has); together with ``ATEN_CPU_CAPABILITY`` and ``ONEDNN_MAX_CPU_ISA`` it simulates an older CPU;
* :func:`set_isa` and :func:`isa_ceiling` change the path at run time, within that; the test suite
  uses them to run every path the machine supports.

A ceiling above what the CPU can run is no error: the CPU's best path runs (as with oneDNN's
``ONEDNN_MAX_CPU_ISA``).

What each family does on each path (:func:`kernel_paths`):

* ``coupling``, ``rans``, ``arconv``: the same C++ compiled three times (auto-vectorised). Their
  results are bit-identical on every path (no FMA contraction, IEEE basic operations only): an rANS
  stream written on one path decodes on any other.
* ``hex``: ``hex_conv2d`` (forward, input gradient) and its weight gradient run direct kernels over
  the live hexagonal taps, hand-written with AVX-512 or AVX2 + FMA intrinsics, for float32 layers with
  ``in * out <= 8192`` channel pairs; on the baseline path, for float64 and for larger layers they run
  oneDNN's square convolution with the masked kernel. The paths agree to float32 rounding, not bit
  for bit (another summation order); each direct kernel is deterministic and independent of the
  input's memory layout, its batch and the thread count.
"""

from __future__ import annotations

import contextlib
import os
from collections.abc import Iterator

from . import _C

__all__ = ["ISA_PATHS", "ENV_VAR", "isa", "supported_isa", "available_isas", "set_isa", "isa_ceiling", "kernel_paths"]

ISA_PATHS = ("baseline", "avx2", "avx512")  # lowest to highest
ENV_VAR = "FLOWKERNELS_CPU_ISA"


def isa() -> str:
    """The instruction-set path the CPU kernels use now: ``"baseline"``, ``"avx2"`` or ``"avx512"``."""
    return _C.cpu_isa()


# Lowered by FLOWKERNELS_CPU_ISA at import (see the module docstring).
_process_ceiling = ISA_PATHS[-1]


def _lower(a: str, b: str) -> str:
    return min(a, b, key=ISA_PATHS.index)


def supported_isa() -> str:
    """The highest path this CPU (and this build of flowkernels) can run, within FLOWKERNELS_CPU_ISA."""
    return _lower(_C.cpu_isa_supported(), _process_ceiling)


def available_isas() -> tuple[str, ...]:
    """Every path this machine can run, lowest first (what the tests parametrise over)."""
    return ISA_PATHS[: ISA_PATHS.index(supported_isa()) + 1]


def set_isa(ceiling: str) -> str:
    """Cap the CPU kernels' path at ``ceiling``; returns the path now in effect.

    Process-wide, for every thread; meant for tests and benchmarks. Raises ValueError for a name
    that is not one of :data:`ISA_PATHS`.
    """
    if ceiling not in ISA_PATHS:
        raise ValueError(f"flowkernels.cpu.set_isa: unknown path {ceiling!r}; expected one of {', '.join(ISA_PATHS)}")
    return _C.set_cpu_isa(_lower(ceiling, supported_isa()))


@contextlib.contextmanager
def isa_ceiling(ceiling: str) -> Iterator[str]:
    """``with isa_ceiling("avx2"):`` runs the block on at most the AVX2 path, then restores the
    previous path; yields the path in effect inside."""
    previous = isa()
    try:
        yield set_isa(ceiling)
    finally:
        set_isa(previous)


def kernel_paths() -> dict[str, str]:
    """The path each kernel family takes now, for benchmark records and bug reports."""
    path = isa()
    hex_path = f"{path} direct kernel (float32, in*out <= 8192; oneDNN otherwise)" if path != "baseline" else "oneDNN"
    return {"coupling": path, "rans": path, "arconv": path, "hex": hex_path, "intconv": path}


def _apply_environment() -> None:
    """Honour FLOWKERNELS_CPU_ISA at import; a bad value stops the import with one clear line."""
    value = os.environ.get(ENV_VAR, "").strip().lower()
    if not value:
        return
    if value not in ISA_PATHS:
        raise ImportError(f"flowkernels: {ENV_VAR}={os.environ[ENV_VAR]!r} is not one of {', '.join(ISA_PATHS)}")
    global _process_ceiling
    _process_ceiling = value
    set_isa(value)
