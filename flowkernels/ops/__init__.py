"""Typed wrappers of the compiled ops, and their fake kernels (autograd is in C++).

Every function here accepts and returns ordinary tensors, works under
``torch.compile(fullgraph=True)``, and dispatches to the CPU or CUDA kernel by
the device of its inputs.
"""

from . import rans as _rans  # noqa: F401  (the rANS coder: RansCoder, quantize_pdf, and its fake kernels)
from .arconv import ar_conv2d, ar_conv2d_inverse
from .context import context_decode, context_encode
from .coupling import discretized_logistic_logp, integer_coupling, round_ste
from .hex import hex_conv2d, hex_filter_transform, hex_group_conv2d, square_filter_transform, square_group_conv2d
from .intconv import int_conv2d

__all__ = [
    "round_ste",
    "integer_coupling",
    "discretized_logistic_logp",
    "ar_conv2d",
    "ar_conv2d_inverse",
    "hex_conv2d",
    "hex_filter_transform",
    "hex_group_conv2d",
    "square_filter_transform",
    "square_group_conv2d",
    "int_conv2d",
    "context_encode",
    "context_decode",
]
