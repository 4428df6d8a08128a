"""Pooling on the axial lattice: max and average over the 7-cell hexagon, and pooling over the group axis."""

from __future__ import annotations

import torch
import torch.nn.functional as F

# The 7-cell hexagon: the centre and its six neighbours, as axial offsets (du, dv).
HEX_NEIGHBOURHOOD = ((0, 0), (0, -1), (0, 1), (-1, 0), (1, 0), (1, -1), (-1, 1))


def _check_pool_args(x: torch.Tensor, stride: int, mask: torch.Tensor | None, op: str) -> None:
    if not isinstance(x, torch.Tensor):
        raise TypeError(f"{op}: x must be a torch.Tensor, got {type(x).__name__}")
    if x.dim() not in (4, 5):
        raise ValueError(
            f"{op}: x must be a planar map [B, C, H, W] or a group map [B, C, G, H, W], got {tuple(x.shape)}"
        )
    if isinstance(stride, bool) or not isinstance(stride, int) or stride < 1:
        raise ValueError(f"{op}: stride must be an int >= 1, got {stride!r}")
    if mask is not None:
        if not isinstance(mask, torch.Tensor) or mask.dtype != torch.bool or tuple(mask.shape) != tuple(x.shape[-2:]):
            got = (mask.dtype, tuple(mask.shape)) if isinstance(mask, torch.Tensor) else type(mask).__name__
            raise ValueError(f"{op}: mask must be a bool tensor of shape {tuple(x.shape[-2:])}, got {got}")


def _hex_windows(x: torch.Tensor, stride: int, pad_value) -> list[torch.Tensor]:
    """The 7 strided views ``x[..., stride u' + du, stride v' + dv]`` of the hexagon's cells, out-of-array
    cells reading ``pad_value``; each ``[..., ceil(H / stride), ceil(W / stride)]``.

    One cell of padding on each side suffices: the last site is ``stride (H_o - 1) <= H - 1``."""
    H, W = x.shape[-2:]
    Ho, Wo = -(-H // stride), -(-W // stride)
    padded = F.pad(x, (1, 1, 1, 1), value=pad_value)
    span_h, span_w = stride * (Ho - 1) + 1, stride * (Wo - 1) + 1
    return [
        padded[..., 1 + du : 1 + du + span_h : stride, 1 + dv : 1 + dv + span_w : stride]
        for du, dv in HEX_NEIGHBOURHOOD
    ]


def _live_count(H: int, W: int, stride: int, mask: torch.Tensor | None, device) -> torch.Tensor:
    live = torch.ones(H, W, device=device) if mask is None else mask.to(device=device, dtype=torch.float32)
    return torch.stack(_hex_windows(live, stride, 0.0)).sum(0)


def hex_max_pool2d(x: torch.Tensor, *, stride: int = 2, mask: torch.Tensor | None = None) -> torch.Tensor:
    """Max over the 7-cell hexagon (centre and six neighbours) at the sites ``(stride u', stride v')``.

    ``x``: ``[B, C, H, W]`` or a group map ``[B, C, G, H, W]`` (each group channel pooled spatially).
    Returns ``[..., ceil(H / stride), ceil(W / stride)]``. Cells outside the array, and cells where the
    optional bool ``mask [H, W]`` is False, are padding (``-inf``, never selected); a site with no live cell
    (only possible with a mask) gives 0. Gradients go to the maximum (split evenly between ties).

    The sublattice ``stride * Z^2`` of axial sites is itself a hexagonal lattice, and it is mapped onto
    itself by every element of p6m about the centre of an odd N x N array whenever that centre lies on it,
    i.e. ``N = 2 stride m + 1`` (``N = 4m + 1`` for stride 2; the output is then ``(2m + 1)^2`` with the
    centre on the centre). There ``hex_max_pool2d(rotate60(x)) == rotate60(hex_max_pool2d(x))`` exactly
    (likewise for mirror) if the padding is also symmetric: pass ``mask=hex_domain_mask(N)``, or have
    ``x >= 0`` on ``hex_domain_mask(N)`` and 0 outside it. Without a mask, and with negative values near
    the rim, the unequal treatment of in-array zeros and out-of-array padding breaks the symmetry.
    """
    op = "hex_max_pool2d"
    _check_pool_args(x, stride, mask, op)
    if x.is_floating_point():
        pad_value = float("-inf")
    elif x.dtype == torch.bool:
        pad_value = False
    else:
        pad_value = torch.iinfo(x.dtype).min
    if mask is not None:
        x = torch.where(mask.to(x.device), x, torch.as_tensor(pad_value, dtype=x.dtype, device=x.device))
    out = torch.stack(_hex_windows(x, stride, pad_value)).amax(0)
    if mask is not None:
        empty = _live_count(*x.shape[-2:], stride, mask, x.device) == 0
        out = torch.where(empty, torch.zeros((), dtype=x.dtype, device=x.device), out)
    return out


def hex_avg_pool2d(
    x: torch.Tensor, *, stride: int = 2, count_include_pad: bool = False, mask: torch.Tensor | None = None
) -> torch.Tensor:
    """Mean over the 7-cell hexagon at the sites ``(stride u', stride v')``; shapes as :func:`hex_max_pool2d`.

    Padding cells (outside the array, or where the optional bool ``mask [H, W]`` is False) add 0 to the sum;
    the divisor is the number of live cells (``count_include_pad=False``) or always 7. A site with no live
    cell gives 0. Exact p6m equivariance on ``N = 2 stride m + 1`` arrays (see :func:`hex_max_pool2d`) holds
    for inputs supported on ``hex_domain_mask(N)`` with ``count_include_pad=True``, or with
    ``mask=hex_domain_mask(N)`` either way.
    """
    op = "hex_avg_pool2d"
    _check_pool_args(x, stride, mask, op)
    if not x.is_floating_point():
        raise ValueError(f"{op}: x must be floating point, got {x.dtype}")
    if mask is not None:
        x = torch.where(mask.to(x.device), x, torch.zeros((), dtype=x.dtype, device=x.device))
    total = torch.stack(_hex_windows(x, stride, 0.0)).sum(0)
    if count_include_pad:
        return total / len(HEX_NEIGHBOURHOOD)
    count = _live_count(*x.shape[-2:], stride, mask, x.device).to(x.dtype)
    return total / count.clamp(min=1)  # empty sites have total 0


def group_pool(x: torch.Tensor, mode: str = "max") -> torch.Tensor:
    """Pool a group feature map ``[B, C, G, H, W]`` over its group axis to a planar ``[B, C, H, W]``
    (``mode`` ``"max"`` or ``"mean"``). The result is invariant to the group axis' permutation, so it
    turns a p6/p6m-equivariant map into a rotation-(and mirror-)equivariant planar one."""
    if not isinstance(x, torch.Tensor) or x.dim() != 5:
        shape = tuple(x.shape) if isinstance(x, torch.Tensor) else type(x).__name__
        raise ValueError(f"group_pool: x must be a group feature map [B, C, G, H, W], got {shape}")
    if mode == "max":
        return x.amax(dim=2)
    if mode == "mean":
        if not x.is_floating_point():
            raise ValueError(f"group_pool: mode 'mean' needs a floating point map, got {x.dtype}")
        return x.mean(dim=2)
    raise ValueError(f"group_pool: mode must be 'max' or 'mean', got {mode!r}")
