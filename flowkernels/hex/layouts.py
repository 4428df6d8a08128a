"""Offset layouts of hexagonal images: odd-r and odd-q arrays to and from the axial storage."""

from __future__ import annotations

import torch

#
# "odd-r" stores row u of the axial array in row u, shifted so that the parallelogram becomes a rectangle:
# offset column c = v + floor(u / 2). Physically the offset cell (r, c) sits at (c + (r & 1) / 2, r sqrt(3)/2),
# which is exactly the axial cell's (v + u / 2, u sqrt(3)/2): odd rows are the ones shoved half a cell right.
#
# "odd-q" is hexagdly's layout: flat-topped hexagons stacked in columns along tensor dim -2 (the zig-zag edge
# runs down dim -2), odd columns (0-based) shifted half a cell down (checked against hexagdly.Conv2d: the
# neighbours of (r, q) in columns q +- 1 are rows r - 1, r for even q and r, r + 1 for odd q). Flat-topped
# hexagons are pointy-topped ones reflected about the diagonal, so odd-q is odd-r transposed: axial row u is
# offset column q = u, and axial column v is offset row r = v + floor(u / 2).

OFFSET_LAYOUTS = ("odd-r", "odd-q")


def _check_layout(layout: str, op: str) -> None:
    if layout not in OFFSET_LAYOUTS:
        raise ValueError(f"{op}: layout must be one of {OFFSET_LAYOUTS}, got {layout!r}")


def _gather_plane(x: torch.Tensor, rows: torch.Tensor, cols: torch.Tensor, valid: torch.Tensor, fill) -> torch.Tensor:
    """``out[..., i, j] = x[..., rows[i, j], cols[i, j]]`` where ``valid``, else ``fill`` (an exact gather)."""
    H, W = x.shape[-2:]
    index = torch.where(valid, rows * W + cols, torch.zeros_like(rows)).flatten().to(x.device)
    flat = x.reshape(*x.shape[:-2], H * W)
    if H * W == 0:  # nothing to gather from: every output cell is padding
        flat = torch.zeros(*x.shape[:-2], 1, dtype=x.dtype, device=x.device)
    gathered = flat.index_select(-1, index).reshape(*x.shape[:-2], *rows.shape)
    fill_value = torch.as_tensor(fill, dtype=x.dtype, device=x.device)
    return torch.where(valid.to(x.device), gathered, fill_value)


def _check_plane(x: torch.Tensor, op: str) -> None:
    if not isinstance(x, torch.Tensor):
        raise TypeError(f"{op}: x must be a torch.Tensor, got {type(x).__name__}")
    if x.dim() < 2:
        raise ValueError(f"{op}: x must have shape [..., H, W] (at least 2-D), got {tuple(x.shape)}")


def axial_to_offset(x: torch.Tensor, layout: str = "odd-q", *, fill: float | int = 0) -> torch.Tensor:
    """Convert an axial array ``[..., H, W]`` to an offset layout, keeping every cell (lossless).

    * ``"odd-r"``: returns ``[..., H, W + (H - 1) // 2]`` with ``out[u, v + u // 2] = x[u, v]``; the two
      triangles left over by the shear (``c < u // 2`` and ``c >= W + u // 2`` in row ``u``) hold ``fill``.
    * ``"odd-q"`` (hexagdly): the odd-r result transposed, ``[..., W + (H - 1) // 2, H]`` with
      ``out[v + u // 2, u] = x[u, v]``.

    Neighbours map to neighbours (see the comment above :data:`OFFSET_LAYOUTS`), so a hexagonal
    convolution commutes with the conversion. Pure integer gathers (exact, any dtype, differentiable);
    :func:`offset_to_axial` with the same layout inverts it exactly.
    """
    op = "axial_to_offset"
    _check_plane(x, op)
    _check_layout(layout, op)
    H, W = x.shape[-2:]
    Wo = W + max(H - 1, 0) // 2
    u, c = torch.meshgrid(torch.arange(H), torch.arange(Wo), indexing="ij")
    v = c - u // 2
    out = _gather_plane(x, u, v.clamp(0, max(W - 1, 0)), (v >= 0) & (v < W), fill)
    return out if layout == "odd-r" else out.transpose(-1, -2)


def offset_to_axial(
    x: torch.Tensor, layout: str = "odd-q", *, full: bool = False, fill: float | int = 0
) -> torch.Tensor:
    """Convert an offset-layout array to axial storage ``[..., H, W]`` (``H`` = number of odd-r rows, i.e.
    odd-q columns; ``H_o x W_o`` below is the offset array in odd-r orientation, transposed for odd-q).

    * ``full=False`` (default): the exact inverse of :func:`axial_to_offset`: ``W = W_o - (H - 1) // 2``
      and ``out[u, v] = x_r[u, v + u // 2]``. The offset cells outside the sheared parallelogram (the
      ``fill`` triangles that ``axial_to_offset`` adds) are dropped, so
      ``offset_to_axial(axial_to_offset(a)) == a`` exactly. Needs ``W_o > (H - 1) // 2``.
    * ``full=True``: keep every offset cell (for data that starts in an offset layout, e.g. hexagdly's):
      ``W = W_o + (H - 1) // 2`` and ``out[u, v] = x_r[u, v - (H - 1) // 2 + u // 2]``, ``fill`` where
      that falls outside. Then ``axial_to_offset(out)`` is ``x`` placed at offset columns
      ``[(H - 1) // 2, (H - 1) // 2 + W_o)`` (odd-r; rows for odd-q) with ``fill`` around it.
    """
    op = "offset_to_axial"
    _check_plane(x, op)
    _check_layout(layout, op)
    xr = x if layout == "odd-r" else x.transpose(-1, -2)
    H, Wo = xr.shape[-2:]
    P = max(H - 1, 0) // 2
    if full:
        W, shift = Wo + P, -P
    else:
        W, shift = Wo - P, 0
        if W < 0:
            raise ValueError(
                f"{op}: an offset array with {H} rows (odd-r orientation) needs at least {P} columns to hold an "
                f"axial array (full=False drops the {P}-cell shear triangles); got {Wo}. Use full=True"
            )
    u, v = torch.meshgrid(torch.arange(H), torch.arange(W), indexing="ij")
    c = v + shift + u // 2
    return _gather_plane(xr, u, c.clamp(0, max(Wo - 1, 0)), (c >= 0) & (c < Wo), fill)
