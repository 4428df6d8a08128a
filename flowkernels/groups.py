"""Dihedral groups and the integer tables of group-convolution filter transforms, shared by the
hexagonal lattice (p6, p6m: :mod:`flowkernels.hex`) and the square lattice (p4, p4m:
:mod:`flowkernels.square`).

An element ``(m, r)`` stands for ``M^m R^r``: ``r`` rotations by ``360 / order`` degrees, then a
mirror when ``m = 1``. Since ``M R M = R^-1``,

    (M^a0 R^a1)(M^b0 R^b1) = M^(a0+b0) R^((-1)^b0 a1 + b1).

A lattice supplies its elements in index order and the spatial action of an element on an odd
``k x k`` filter as a flat gather index (``-1`` where the source falls outside); these functions do
the rest.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence

import torch

__all__ = ["group_multiply", "group_inverse", "group_map_source", "filter_transform_tables"]

Element = tuple[int, int]


def group_multiply(a: Element, b: Element, order: int) -> Element:
    """``(M^a0 R^a1)(M^b0 R^b1) = M^(a0+b0) R^((-1)^b0 a1 + b1)`` with rotations modulo ``order``."""
    sign = -1 if b[0] else 1
    return ((a[0] + b[0]) % 2, (sign * a[1] + b[1]) % order)


def group_inverse(a: Element, order: int) -> Element:
    """``(M^m R^r)^-1 = R^-r M^m = M^m R^((-1)^(m+1) r)``."""
    m, r = a
    return (m, r % order if m else (-r) % order)


def group_map_source(elements: Sequence[Element], element: Element, order: int) -> list[int]:
    """For ``out(p, h) = in(g^-1 p, g^-1 h)``: the input index along the group axis that each output
    index ``h`` reads, for ``g = element``."""
    inverse = group_inverse(element, order)
    return [elements.index(group_multiply(inverse, h, order)) for h in elements]


def filter_transform_tables(
    in_elements: Sequence[Element],
    out_elements: Sequence[Element],
    kernel_size: int,
    permutation: Callable[[int, Element], torch.Tensor],
    order: int,
    live: torch.Tensor | None = None,
) -> tuple[torch.Tensor, torch.Tensor]:
    """Integer tables of the filter transform ``expanded[o, g, i, h] = T_g(weight[o, i, g^-1 h])``.

    ``in_elements``: ``[(0, 0)]`` for a planar input. ``permutation(kernel_size, g)``: the flat gather
    index of ``T_g``. ``live``: flat mask of the filter cells that exist (default: all). Returns
    ``(index, inverse)``, int64 ``[G_out, G_in k k]`` over the flattened ``(h, cell)`` axis:
    ``expanded[.., g, .., t] = weight[.., index[g, t]]`` (0 where ``index`` is -1), and ``inverse[g, s]``
    is the ``t`` with ``index[g, t] = s`` (or -1), so the backward is a gather and a sum over ``g``.
    """
    cells = kernel_size * kernel_size
    live = torch.ones(cells, dtype=torch.bool) if live is None else live
    planar = len(in_elements) == 1
    index = torch.full((len(out_elements), len(in_elements) * cells), -1, dtype=torch.long)
    for gi, g in enumerate(out_elements):
        spatial = permutation(kernel_size, g)
        for hi, h in enumerate(in_elements):
            source_h = 0 if planar else in_elements.index(group_multiply(group_inverse(g, order), h, order))
            for t in range(cells):
                s = int(spatial[t])
                if s >= 0 and live[t] and live[s]:
                    index[gi, hi * cells + t] = source_h * cells + s
    inverse = torch.full_like(index, -1)
    for gi in range(index.shape[0]):
        targets = (index[gi] >= 0).nonzero().flatten()
        inverse[gi, index[gi, targets]] = targets
    return index, inverse
