"""Benchmarks of the hex family: planar and group hexagonal convolutions.

Planar rows (radius 1, float32) time, side by side:

- kernel: ``flowkernels.ops.hex_conv2d`` (the direct kernel over the 7 live taps on the AVX-512 and
  AVX2 paths, oneDNN on the baseline path: the table's header names the path);
- reference: ``flowkernels.reference.hex.hex_conv2d``, the gather + conv2d formulation (a square
  convolution with the masked kernel, oneDNN / cuDNN);
- peers: ``hexagdly`` (hexagdly 2.0.2's ``Conv2d``, several conv2d calls per layer, in its own
  offset layout at the same tensor shape) when it is installed, and ``square conv2d`` (torch's
  3x3 ``conv2d``: what a square-lattice network pays for the same layer).

Group rows time a p6 -> p6 and a p6m -> p6m layer (filter transform + planar convolution) against
the reference's gather + conv2d, and the filter transform alone against the whole p6 layer.
"""

from __future__ import annotations

from collections.abc import Callable

import torch
import torch.nn.functional as F

from flowkernels import ops
from flowkernels.hex import GROUP_ORDERS, filter_transform_tables
from flowkernels.reference import hex as ref

from .harness import Case, Target

FAMILY = "hex"

# Targets (issues 5 and 14): at least 2x hexagdly; the forward at least 1.2x the square 3x3 conv2d
# (7 taps of 9) and forward+backward no slower than it, on the AVX-512 and AVX2 paths alike; the
# filter transform under 10% of a p6 layer at batch 32.
SQUARE_TARGET = {"fwd": 1.2, "fwd+bwd": 1.0}
TRANSFORM_TARGET = Target(also_peers=(("p6 layer", 10.0),))


def _planar_target(mode: str, with_hexagdly: bool) -> Target:
    square = (("square conv2d", SQUARE_TARGET[mode]),)
    return Target(also_peers=((("hexagdly", 2.0),) if with_hexagdly else ()) + square)

SHAPES = [(32, 16, 16, 64, 64), (8, 64, 64, 32, 32)]  # (B, C_in, C_out, H, W)
QUICK_SHAPES = [(2, 4, 4, 9, 9)]


def _hexagdly_conv(in_channels: int, out_channels: int):
    try:
        import hexagdly
    except ImportError:
        return None
    return hexagdly.Conv2d(in_channels, out_channels, kernel_size=1, stride=1, bias=True)


def _no_grad(fn: Callable, *args) -> Callable[[], object]:
    def run():
        with torch.no_grad():
            return fn(*args)

    return run


def _forward_backward(fn: Callable, inputs: list[torch.Tensor], *args) -> Callable[[], object]:
    def run():
        out = fn(*args)
        return torch.autograd.grad(out.sum(), inputs)

    return run


def _planar_cases(shape, device, gen) -> list[Case]:
    B, n_in, n_out, H, W = shape
    x = torch.randn(B, n_in, H, W, generator=gen).to(device).requires_grad_()
    w = (torch.randn(n_out, n_in, 3, 3, generator=gen) / (7 * n_in) ** 0.5).to(device).requires_grad_()
    b = torch.zeros(n_out).to(device).requires_grad_()
    hexagdly_layer = _hexagdly_conv(n_in, n_out)
    if hexagdly_layer is not None:
        hexagdly_layer = hexagdly_layer.to(device)
    label = f"B={B} {n_in}->{n_out} {H}x{W} R=1"
    out = []
    for mode in ("fwd", "fwd+bwd"):
        if mode == "fwd":
            kernel = _no_grad(ops.hex_conv2d, x, w, b)
            reference = _no_grad(ref.hex_conv2d, x, w, b)
            peers = {"square conv2d": _no_grad(F.conv2d, x, w, b, 1, 1)}
            if hexagdly_layer is not None:
                peers["hexagdly"] = _no_grad(hexagdly_layer, x)
        else:
            kernel = _forward_backward(ops.hex_conv2d, [x, w, b], x, w, b)
            reference = _forward_backward(ref.hex_conv2d, [x, w, b], x, w, b)
            peers = {"square conv2d": _forward_backward(F.conv2d, [x, w, b], x, w, b, 1, 1)}
            if hexagdly_layer is not None:
                peers["hexagdly"] = _forward_backward(hexagdly_layer, [x, *hexagdly_layer.parameters()], x)
        target = _planar_target(mode, hexagdly_layer is not None)
        notes = "" if hexagdly_layer is not None else "hexagdly not installed"
        out.append(Case(FAMILY, "hex_conv2d", label, mode, kernel, reference, peers, target, notes=notes))
    return out


def _group_cases(shape, group: str, device, gen, with_transform: bool) -> list[Case]:
    B, n_in, n_out, H, W = shape
    G = GROUP_ORDERS[group]
    x = torch.randn(B, n_in, G, H, W, generator=gen).to(device)
    w = (torch.randn(n_out, n_in, G, 3, 3, generator=gen) / (7 * n_in * G) ** 0.5).to(device)
    label = f"B={B} {n_in}->{n_out} fields, {H}x{W} R=1"
    layer = _no_grad(lambda: ops.hex_group_conv2d(x, w, in_group=group, out_group=group))
    out = [
        Case(
            FAMILY,
            f"{group} -> {group} group conv",
            label,
            "fwd",
            kernel=layer,
            reference=_no_grad(lambda: ref.hex_group_conv2d(x, w, in_group=group, out_group=group)),
            notes=f"planar equivalent {n_in * G}->{n_out * G} channels",
        )
    ]
    if with_transform:
        index, _ = filter_transform_tables(group, group, 3)
        index = index.to(device)
        flat = w.reshape(n_out, n_in, -1)
        out.append(
            Case(
                FAMILY,
                "hex_filter_transform",
                f"{group} -> {group}, {n_in}->{n_out} fields, k=3",
                "fwd",
                kernel=_no_grad(ops.hex_filter_transform, w, group, group),
                reference=_no_grad(ref.gather_filters, flat, index),
                peers={f"{group} layer": layer},
                target=TRANSFORM_TARGET if group == "p6" else Target(),
                notes="peer ratio = layer time / transform time",
            )
        )
    return out


def cases(*, quick: bool = False, device: str = "cpu", compile_peers: bool = True) -> list[Case]:
    """Planar rows at each shape; group rows (p6, p6m) at the first shape, with the filter transform.
    ``compile_peers`` is unused: the reference is already one vendor convolution."""
    del compile_peers
    dev = torch.device(device)
    gen = torch.Generator().manual_seed(0)
    shapes = QUICK_SHAPES if quick else SHAPES
    out = []
    for shape in shapes:
        out += _planar_cases(shape, dev, gen)
    out += _group_cases(shapes[0], "p6", dev, gen, with_transform=True)
    out += _group_cases(shapes[0], "p6m", dev, gen, with_transform=False)
    return out
