"""flowkernels: fast, exact kernels for invertible and discrete generative models.

Compiled ops live under ``torch.ops.flowkernels``; the typed Python wrappers
under :mod:`flowkernels.ops`; their pure-PyTorch references (the test oracles)
under :mod:`flowkernels.reference`.
"""

from __future__ import annotations

import torch

__version__ = "0.1.0"


def _load_extension():
    try:
        from . import _C
    except ImportError as error:
        raise ImportError(
            "flowkernels: the compiled extension flowkernels._C could not be loaded "
            f"({error}). It is built against one torch and must be rebuilt when torch changes: "
            "`pip install --no-build-isolation -e .` from the source folder."
        ) from error
    built_torch = _C.built_torch_version()
    running_torch = ".".join(torch.__version__.split(".")[:2])
    if built_torch != running_torch:
        raise ImportError(
            f"flowkernels was built against torch {built_torch} but torch {torch.__version__} is "
            "installed; rebuild it with `pip install --no-build-isolation -e .`."
        )
    built_cuda = _C.built_cuda_version()
    if built_cuda and built_cuda != ".".join((torch.version.cuda or "").split(".")[:2]):
        raise ImportError(
            f"flowkernels' CUDA kernels were built with CUDA {built_cuda} but torch uses "
            f"CUDA {torch.version.cuda or 'none (CPU build)'}; rebuild it with "
            "`pip install --no-build-isolation -e .`, or with FLOWKERNELS_FORCE_CPU=1 for CPU only."
        )
    return _C


_C = _load_extension()


def has_cuda_kernels() -> bool:
    """Whether this build of flowkernels contains CUDA kernels."""
    return bool(_C.has_cuda_kernels())


# Imported after the extension is loaded: ops registers the fake kernels.
from . import cpu, ops, rans  # noqa: E402

cpu._apply_environment()

__all__ = ["__version__", "cpu", "has_cuda_kernels", "ops", "rans"]
