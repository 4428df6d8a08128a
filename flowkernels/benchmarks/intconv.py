"""Benchmarks of the intconv family at the shapes of the integer IDF's networks.

The main shape is the widest conv of the shipped photograph models: 64 -> 64 channels, 3x3, on the
16x16 maps of the first level, for a batch of 64 patches. Contenders per row:

- kernel: ``flowkernels.ops.int_conv2d`` (this library's integer kernel);
- reference: ``flowkernels.reference.intconv`` (pure PyTorch, int64);
- peer ``float conv2d``: ``torch.nn.functional.conv2d`` in float32 at the same shape (oneDNN on CPU,
  cuDNN on GPU), the float computation the integer network replaces; its bits depend on the
  machine, the kernel's do not. Target: no slower than it (``>= 1x``), on the same threads.

Every shape runs on one thread and on all of them: with 2 threads on a shared machine, OpenMP
regions stall now and then, and the ratios of the short calls move by 2x between runs.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F

from flowkernels import ops
from flowkernels.reference import intconv as ref

from .harness import Case, Target

FAMILY = "intconv"
AS_FAST_AS_FLOAT = Target(peer="float conv2d", min_peer_speedup=1.0)


def cases(*, quick: bool = False, device: str = "cpu", compile_peers: bool = True) -> list[Case]:
    """Benchmark cases of the family; ``quick`` uses tiny shapes (for tests and smoke runs)."""
    del compile_peers  # the reference is int64 einsums: torch.compile has nothing to fuse
    batch, size = (2, 8) if quick else (64, 16)
    gen = torch.Generator().manual_seed(0)
    dev = torch.device(device)
    out = []
    shapes = [(64, 64, 3), (64, 64, 1), (12, 64, 3)]
    # every shape on one thread (stable timings on a shared machine) and on all of them
    for (c_in, c_out, k), threads in [(shape, threads) for threads in (1, None) for shape in shapes]:
        x = torch.randint(0, 2**13, (batch, c_in, size, size), generator=gen, dtype=torch.int16).to(dev)
        w = torch.randint(-60, 61, (c_out, c_in, k, k), generator=gen, dtype=torch.int8).to(dev)
        bias = torch.randint(-1000, 1000, (c_out,), generator=gen, dtype=torch.int32).to(dev)
        multiplier = torch.full((c_out,), 2**30, dtype=torch.int32, device=dev)
        shift = torch.full((c_out,), 44, dtype=torch.int32, device=dev)
        xf, wf, bf = x.float(), w.float(), bias.float()
        args = (x, w, bias, multiplier, shift)
        # the int64 reference runs on the CPU: on a GPU it convolves a 2-image subset (rates are per output)
        ref_batch = min(batch, 2) if dev.type == "cuda" else batch
        ref_args = (x[:ref_batch], *args[1:])
        kwargs = {"padding": k // 2, "out_min": 0}
        out.append(
            Case(
                FAMILY,
                "int_conv2d",
                f"{batch}x{c_in}x{size}x{size} -> {c_out}, {k}x{k}",
                "fwd",
                kernel=lambda args=args, kwargs=kwargs: ops.int_conv2d(*args, **kwargs),
                reference=lambda args=ref_args, kwargs=kwargs: ref.int_conv2d(*args, **kwargs),
                peers={"float conv2d": lambda xf=xf, wf=wf, bf=bf, k=k: F.conv2d(xf, wf, bf, padding=k // 2)},
                target=AS_FAST_AS_FLOAT,
                threads=threads,
                items=batch * c_out * size * size,  # output values
                reference_items=ref_batch * c_out * size * size,
                measure_memory=False,
            )
        )
    return out
