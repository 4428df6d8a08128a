"""The square lattice's rotation groups p4 and p4m (Cohen and Welling 2016), the baselines that HexaConv
compares p6 and p6m with.

Conventions follow :mod:`flowkernels.hex` and :mod:`flowkernels.groups`: an element ``(m, r)`` is
``M^m R^r``, ``R`` a rotation by 90 degrees counter-clockwise (``torch.rot90`` over the last two
dims) and ``M`` the mirror that reverses the last dim; elements are indexed ``4 m + r``. Group feature
maps are ``[B, C, G, H, W]`` with G = 4 (p4) or 8 (p4m). Rotations act about the centre of the
image, exactly (a permutation of pixels), so square images of any size rotate onto themselves.
"""

from __future__ import annotations

import functools

import torch

from . import groups

__all__ = [
    "GROUP_ORDERS",
    "group_elements",
    "transform",
    "transform_group_map",
    "site_permutation",
    "filter_transform_tables",
]

GROUP_ORDERS = {"z2": 1, "p4": 4, "p4m": 8}
ROTATIONS = 4


def group_elements(group: str) -> list[tuple[int, int]]:
    """The elements ``(m, r)`` of ``"z2"``, ``"p4"`` or ``"p4m"``, in index order."""
    if group not in GROUP_ORDERS:
        raise ValueError(f"unknown group {group!r}; choose from {sorted(GROUP_ORDERS)}")
    if group == "z2":
        return [(0, 0)]
    return [(m, r) for m in range(2 if group == "p4m" else 1) for r in range(ROTATIONS)]


def transform(x: torch.Tensor, element: tuple[int, int]) -> torch.Tensor:
    """The spatial action of ``element`` on the last two dims: rotate ``r`` times, then mirror if ``m``."""
    m, r = element
    out = torch.rot90(x, r % ROTATIONS, dims=(-2, -1))
    return torch.flip(out, dims=(-1,)) if m else out


def transform_group_map(x: torch.Tensor, element: tuple[int, int]) -> torch.Tensor:
    """Apply ``element`` to a planar ``[B, C, H, W]`` or group ``[B, C, G, H, W]`` map:
    ``out(p, h) = in(g^-1 p, g^-1 h)``."""
    out = transform(x, element)
    if x.dim() == 4:
        return out
    if x.dim() != 5 or x.shape[2] not in (4, 8):
        raise ValueError(f"expected [B, C, H, W] or a group map [B, C, 4 or 8, H, W], got {list(x.shape)}")
    group = "p4" if x.shape[2] == 4 else "p4m"
    if element[0] and group == "p4":
        raise ValueError("a mirror does not act on p4 feature maps (p4 has no reflections); use p4m")
    return out[:, :, groups.group_map_source(group_elements(group), element, ROTATIONS)]


def site_permutation(n: int, element: tuple[int, int]) -> torch.Tensor:
    """Flat gather index ``[n * n]`` of ``element``'s action on an ``n x n`` array:
    ``out.flatten()[p] = in.flatten()[index[p]]``."""
    return transform(torch.arange(n * n).reshape(n, n), element).flatten()


@functools.cache
def filter_transform_tables(in_group: str, out_group: str, kernel_size: int) -> tuple[torch.Tensor, torch.Tensor]:
    """Tables of the filter transform ``z2 -> p4``, ``p4 -> p4``, ``z2 -> p4m`` or ``p4m -> p4m``, in the
    format of :func:`flowkernels.groups.filter_transform_tables` (every cell of the square filter lives)."""
    if kernel_size % 2 != 1:
        raise ValueError(f"group filters have odd kernel sizes (a centre cell), got {kernel_size}")
    if in_group not in ("z2", out_group) or out_group not in GROUP_ORDERS:
        raise ValueError(f"unsupported group convolution {in_group} -> {out_group}")
    return groups.filter_transform_tables(
        group_elements(in_group), group_elements(out_group), kernel_size, site_permutation, ROTATIONS
    )
