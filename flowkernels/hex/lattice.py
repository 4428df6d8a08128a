"""The hexagonal lattice and its symmetry group p6m: masks, group algebra, exact rotations and mirrors, and the
filter-transform tables of the group convolutions (conventions: :mod:`flowkernels.hex`)."""

from __future__ import annotations

import functools

import torch

from .. import groups

# Integer matrices acting on axial offsets written as column vectors (u, v).
ROTATION = ((1, 1), (-1, 0))  # (u, v) -> (u + v, -u), 60 degrees counter-clockwise
MIRROR = ((-1, -1), (0, 1))  # (u, v) -> (-u - v, v)

# Group orders by name: the planar group has one element (translations only).
GROUP_ORDERS = {"z2": 1, "p6": 6, "p6m": 12}


def hex_distance(du: torch.Tensor | int, dv: torch.Tensor | int):
    """Hex distance of the axial offset ``(du, dv)``: ``max(|du|, |dv|, |du + dv|)``."""
    if isinstance(du, torch.Tensor) or isinstance(dv, torch.Tensor):
        du, dv = torch.as_tensor(du), torch.as_tensor(dv)
        return torch.maximum(torch.maximum(du.abs(), dv.abs()), (du + dv).abs())
    return max(abs(du), abs(dv), abs(du + dv))


@functools.cache
def _offsets(n: int) -> tuple[torch.Tensor, torch.Tensor]:
    c = n // 2
    u, v = torch.meshgrid(torch.arange(n) - c, torch.arange(n) - c, indexing="ij")
    return u, v


def hex_mask(radius: int) -> torch.Tensor:
    """Boolean ``[2R + 1, 2R + 1]``: the live cells of a radius-``R`` hexagonal filter."""
    if radius < 0:
        raise ValueError(f"hex_mask: radius must be >= 0, got {radius}")
    u, v = _offsets(2 * radius + 1)
    return hex_distance(u, v) <= radius


def hex_domain_mask(size: int, radius: int | None = None) -> torch.Tensor:
    """Boolean ``[size, size]`` (odd size): the hexagon of the given radius (default ``size // 2``)
    about the centre, a domain that every element of p6m maps onto itself."""
    if size % 2 != 1:
        raise ValueError(f"hex_domain_mask: size must be odd (the domain has a centre cell), got {size}")
    radius = size // 2 if radius is None else radius
    u, v = _offsets(size)
    return hex_distance(u, v) <= radius


# ---------------------------------------------------------------------------
# The group p6m: elements M^m R^r as pairs (m, r), index 6 m + r.


def group_elements(group: str) -> list[tuple[int, int]]:
    """The elements ``(m, r)`` of ``"z2"``, ``"p6"`` or ``"p6m"``, in index order."""
    if group not in GROUP_ORDERS:
        raise ValueError(f"unknown group {group!r}; choose from {sorted(GROUP_ORDERS)}")
    if group == "z2":
        return [(0, 0)]
    return [(m, r) for m in range(2 if group == "p6m" else 1) for r in range(6)]


def group_multiply(a: tuple[int, int], b: tuple[int, int]) -> tuple[int, int]:
    """``(M^a0 R^a1)(M^b0 R^b1) = M^(a0+b0) R^((-1)^b0 a1 + b1)`` in p6m (:mod:`flowkernels.groups`)."""
    return groups.group_multiply(a, b, 6)


def group_inverse(a: tuple[int, int]) -> tuple[int, int]:
    """``(M^m R^r)^-1 = R^-r M^m = M^m R^((-1)^(m+1) r)`` in p6m."""
    return groups.group_inverse(a, 6)


def _matmul(a, b):
    return tuple(tuple(sum(a[i][k] * b[k][j] for k in range(2)) for j in range(2)) for i in range(2))


def element_matrix(element: tuple[int, int]) -> tuple[tuple[int, int], tuple[int, int]]:
    """The 2 x 2 integer matrix of ``M^m R^r`` acting on axial offsets."""
    m, r = element
    result = ((1, 0), (0, 1))
    for _ in range(r % 6):
        result = _matmul(ROTATION, result)
    if m % 2:
        result = _matmul(MIRROR, result)
    return result


@functools.cache
def site_permutation(n: int, element: tuple[int, int]) -> torch.Tensor:
    """Flat gather index ``[n * n]`` of the spatial action of ``element`` about the centre of an odd
    n x n array: ``out.flatten()[p] = in.flatten()[index[p]]``, index -1 where the source lies outside."""
    if n % 2 != 1:
        raise ValueError(f"the spatial action needs an odd size (a centre cell), got {n}")
    (a, b), (c, d) = element_matrix(group_inverse(element))
    u, v = _offsets(n)
    su, sv = a * u + b * v, c * u + d * v  # source = g^-1 (u, v)
    half = n // 2
    inside = (su.abs() <= half) & (sv.abs() <= half)
    index = (su + half) * n + (sv + half)
    return torch.where(inside, index, torch.full_like(index, -1)).flatten()


def _spatial(x: torch.Tensor, element: tuple[int, int]) -> torch.Tensor:
    H, W = x.shape[-2:]
    if H != W or H % 2 != 1:
        raise ValueError(
            f"rotations and mirrors act about a centre cell: the last two dims must be N x N with N odd, got {H} x {W}"
        )
    index = site_permutation(H, element).to(x.device)
    flat = x.reshape(*x.shape[:-2], H * W)
    gathered = flat.index_select(-1, index.clamp(min=0))
    return torch.where(index >= 0, gathered, torch.zeros((), dtype=x.dtype, device=x.device)).reshape(x.shape)


def _group_of_size(size: int) -> str:
    for name, order in GROUP_ORDERS.items():
        if order == size and name != "z2":
            return name
    raise ValueError(f"a group feature map has G = 6 (p6) or 12 (p6m) on dim 2, got G = {size}")


def transform_group_map(x: torch.Tensor, element: tuple[int, int]) -> torch.Tensor:
    """Apply ``element`` of p6m to a planar ``[B, C, N, N]`` or group ``[B, C, G, N, N]`` map."""
    out = _spatial(x, element)
    if x.dim() == 4:
        return out
    if x.dim() != 5:
        raise ValueError(f"expected a 4-D planar or 5-D group feature map, got {x.dim()}-D")
    group = _group_of_size(x.shape[2])
    if element[0] and group == "p6":
        raise ValueError("a mirror does not act on p6 feature maps (p6 has no reflections); use p6m")
    # out(p, h) = in(g^-1 p, g^-1 h): index h of the output reads index g^-1 h of the input.
    return out[:, :, groups.group_map_source(group_elements(group), element, 6)]


def rotate60(x: torch.Tensor, k: int = 1) -> torch.Tensor:
    """Rotate a hexagonal map by ``k`` x 60 degrees about its centre cell (exact, a permutation of sites).

    Works on planar ``[..., N, N]`` maps (4-D ``[B, C, N, N]`` or any leading dims) and on group maps
    ``[B, C, G, N, N]`` with G = 6 or 12 (space rotates and the group axis permutes). N must be odd.
    """
    element = (0, k % 6)
    if x.dim() == 5:
        return transform_group_map(x, element)
    return _spatial(x, element)


def mirror(x: torch.Tensor) -> torch.Tensor:
    """Mirror a hexagonal map, ``(u, v) -> (-u - v, v)`` about the centre cell (exact).

    Planar ``[..., N, N]`` maps, or p6m maps ``[B, C, 12, N, N]`` (halves m = 0 and m = 1 swap).
    """
    if x.dim() == 5:
        return transform_group_map(x, (1, 0))
    return _spatial(x, (1, 0))


@functools.cache
def filter_transform_tables(in_group: str, out_group: str, kernel_size: int) -> tuple[torch.Tensor, torch.Tensor]:
    """Integer tables of the filter transform of a group convolution ``in_group -> out_group``.

    Compact weights ``[O, I, G_in, k, k]`` expand to ``[O, G_out, I, G_in, k, k]`` with

        expanded[o, g, i, h] = T_g(weight[o, i, g^-1 h])      (T_g: the spatial action of g)

    (for a planar input ``G_in = 1`` and ``h`` is the identity). Returns ``(index, inverse)``, both int64
    ``[G_out, G_in k k]`` over the flattened ``(h, cell)`` axis: ``expanded[.., g, .., t] =
    weight[.., index[g, t]]`` (0 where ``index`` is -1: corners outside the hexagon), and
    ``inverse[g, s]`` is the ``t`` with ``index[g, t] = s`` (or -1), which makes the backward a gather
    followed by a sum over ``g``. Supported: z2 -> p6, p6 -> p6, z2 -> p6m, p6m -> p6m (and z2 -> z2).
    """
    if kernel_size % 2 != 1:
        raise ValueError(f"hexagonal filters have odd kernel sizes (2R + 1), got {kernel_size}")
    if in_group not in ("z2", out_group) or out_group not in GROUP_ORDERS:
        raise ValueError(f"unsupported group convolution {in_group} -> {out_group}")
    live = hex_mask(kernel_size // 2).flatten()
    return groups.filter_transform_tables(
        group_elements(in_group), group_elements(out_group), kernel_size, site_permutation, 6, live
    )
