"""Hexagonal lattices: conventions, the symmetry group p6m, and exact rotations and mirrors.

Conventions (HexaConv's axial storage):

* A hexagonal image is a tensor ``[..., H, W]`` whose row ``u`` and column ``v`` sit at the point
  ``(x, y) = (v + u / 2, (sqrt(3) / 2) * u)``. The six neighbours of ``(u, v)`` are ``(u, v +- 1)``,
  ``(u +- 1, v)``, ``(u + 1, v - 1)`` and ``(u - 1, v + 1)``; the hex distance of an offset
  ``(du, dv)`` is ``max(|du|, |dv|, |du + dv|)``.
* A hexagonal filter of radius ``R`` is stored in a ``(2R + 1) x (2R + 1)`` square; the corner cells at
  hex distance > R are always zero (:func:`hex_mask`), leaving ``3R^2 + 3R + 1`` live taps.
* Rotation by 60 degrees is the integer matrix ``ROTATION``: ``(u, v) -> (u + v, -u)``; the mirror is
  ``MIRROR``: ``(u, v) -> (-u - v, v)``. Every permutation in this module is derived from these two
  matrices. As a gather about the centre ``c`` of an odd N x N array, a rotation is
  ``out[c + u, c + v] = in[c - v, c + u + v]`` (zero where the source falls outside).
* Group feature maps are 5-D, ``[B, C, G, H, W]``: ``G = 6`` for p6 (element ``R^r`` at index ``r``) and
  ``G = 12`` for p6m (element ``M^m R^r`` at index ``6 m + r``). Planar (Z2) maps are 4-D.
  Group elements multiply as ``(M^a R^b)(M^c R^d) = M^(a+c) R^((-1)^c b + d)`` (from ``M R M = R^-1``).
* A group element ``g`` acts on a function on the plane by ``(g f)(p) = f(g^-1 p)`` and on a function on
  the plane times the group by ``(g f)(p, h) = f(g^-1 p, g^-1 h)``. So rotating a p6 map rotates space and
  rolls the group axis by +1; on p6m the rotation adds 1 to ``r`` for ``m = 0`` and subtracts 1 for
  ``m = 1``, and the mirror swaps the halves ``m = 0`` and ``m = 1``.

Exactness: rotations and mirrors permute lattice sites (no interpolation), so a hexagonal group
convolution is exactly equivariant on a domain that the group maps onto itself, such as the hexagon
of :func:`hex_domain_mask`.

Around the lattice (data loading, storage formats, pooling):

* Resampling (:func:`square_to_hex`, :func:`hex_to_square`): the axial array is a parallelogram in
  physical space; it is centred on the square image and, by default, scaled so that its
  rectangle-in-hex part (:func:`rectangle_in_hex_mask`) covers the whole image.
* Offset layouts (:func:`axial_to_offset`, :func:`offset_to_axial`): ``"odd-r"`` (rows shifted, odd rows
  half a cell to the right: the same picture as the axial array, sheared back into a rectangle) and
  ``"odd-q"`` (columns shifted, odd columns half a cell down: hexagdly's layout, which is the odd-r array
  transposed, because hexagdly's hexagons are flat-topped where HexaConv's are pointy-topped).
* Pooling (:func:`hex_max_pool2d`, :func:`hex_avg_pool2d`) over the 7-cell hexagon at the sites of the
  sublattice ``stride * (u', v')``, which is again a hexagonal lattice with the same orientation; and
  :func:`group_pool` over the group axis.
"""

from __future__ import annotations

import functools
import math
import operator

import torch
import torch.nn.functional as F

from . import groups
from ._optional import require

__all__ = [
    "ROTATION",
    "MIRROR",
    "GROUP_ORDERS",
    "hex_distance",
    "hex_mask",
    "hex_domain_mask",
    "group_elements",
    "group_multiply",
    "group_inverse",
    "element_matrix",
    "site_permutation",
    "rotate60",
    "mirror",
    "transform_group_map",
    "filter_transform_tables",
    "hex_centres",
    "default_hex_scale",
    "hex_shape_covering",
    "square_to_hex",
    "hex_to_square",
    "rectangle_in_hex_mask",
    "plot_hex",
    "OFFSET_LAYOUTS",
    "axial_to_offset",
    "offset_to_axial",
    "HEX_NEIGHBOURHOOD",
    "hex_max_pool2d",
    "hex_avg_pool2d",
    "group_pool",
]

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


# ---------------------------------------------------------------------------
# Physical positions, and resampling between square images and the axial lattice.

_SQRT3_2 = math.sqrt(3.0) / 2.0  # row spacing of the lattice in units of the cell spacing
_RESAMPLE_MODES = ("bilinear", "bicubic")


def _size_pair(size: tuple[int, int] | int, op: str, arg: str) -> tuple[int, int]:
    if not isinstance(size, bool):
        try:
            n = operator.index(size)  # int, numpy integer, 0-d integer tensor
            size = (n, n)
        except TypeError:
            pass
    try:
        h, w = (int(s) for s in size)
    except (TypeError, ValueError):
        raise ValueError(f"{op}: {arg} must be an int or a pair of ints (height, width), got {size!r}") from None
    if h < 2 or w < 2:
        # grid_sample with align_corners=True maps a whole axis of length 1 onto its single pixel, so there
        # would be no "outside" on that axis; and a lattice needs two cells per axis to have a spacing.
        raise ValueError(f"{op}: {arg} must be at least 2 x 2, got {h} x {w}")
    return h, w


def hex_centres(
    H: int,
    W: int,
    *,
    centre: bool = False,
    dtype: torch.dtype = torch.float32,
    device: torch.device | str | None = None,
) -> torch.Tensor:
    """Physical positions ``[H, W, 2]`` (last axis ``(x, y)``) of the cells of an ``H x W`` axial array.

    Cell ``(u, v)`` sits at ``(v + u / 2, (sqrt(3) / 2) u)`` in units of the cell spacing (the distance
    between neighbouring cells); ``y`` grows with the row index, like an image's row axis. With
    ``centre=True`` the position of the array's centre ``((H - 1) / 2, (W - 1) / 2)`` is subtracted, which is
    the frame :func:`square_to_hex` and :func:`hex_to_square` align with the image centre.
    """
    if H < 0 or W < 0:
        raise ValueError(f"hex_centres: H and W must be >= 0, got {H} x {W}")
    u = torch.arange(H, dtype=torch.float64, device=device)
    v = torch.arange(W, dtype=torch.float64, device=device)
    if centre:
        u, v = u - (H - 1) / 2, v - (W - 1) / 2
    uu, vv = torch.meshgrid(u, v, indexing="ij")
    return torch.stack((vv + uu / 2, _SQRT3_2 * uu), dim=-1).to(dtype)


def _inscribed_rectangle(h: int, w: int) -> tuple[float, float]:
    """Width and height (cell units) of the rectangle-in-hex part of an ``h x w`` axial array: the largest
    centred axis-aligned rectangle that spans all rows. Row ``u`` covers ``x`` in ``[u/2, w - 1 + u/2]``;
    the rows' common part has width ``(w - 1) - (h - 1) / 2``."""
    return (w - 1) - (h - 1) / 2, _SQRT3_2 * (h - 1)


def default_hex_scale(image_size: tuple[int, int] | int, hex_size: tuple[int, int] | int) -> float:
    """The scale (image pixels per cell spacing) that :func:`square_to_hex` and :func:`hex_to_square` use
    when ``scale`` is None: the smallest one at which the rectangle-in-hex part of the ``hex_size`` axial
    array covers the whole ``image_size`` image (pixel centres, corner to corner).

    The smallest such scale samples the image as finely as the lattice allows without losing any of it;
    along one axis the lattice then ends exactly on the image's border pixels, along the other it
    overhangs (those cells sample zeros). Raises ValueError if the axial array is too narrow to hold a
    rectangle at all (``w - 1 <= (h - 1) / 2``).
    """
    H, W = _size_pair(image_size, "default_hex_scale", "image_size")
    h, w = _size_pair(hex_size, "default_hex_scale", "hex_size")
    rect_w, rect_h = _inscribed_rectangle(h, w)
    if rect_w <= 0:
        raise ValueError(
            f"default_hex_scale: a {h} x {w} axial array is a parallelogram too narrow to contain a rectangle "
            f"spanning its rows (needs w - 1 > (h - 1) / 2); use a wider array (see hex_shape_covering) "
            f"or pass scale explicitly"
        )
    return max((W - 1) / rect_w, (H - 1) / rect_h)


def hex_shape_covering(image_size: tuple[int, int] | int, scale: float = 1.0) -> tuple[int, int]:
    """The smallest axial array ``(h, w)`` whose rectangle-in-hex part covers an ``image_size`` image at
    ``scale`` image pixels per cell spacing (at ``scale = 1`` the lattice is as fine as the pixel grid
    horizontally). :func:`default_hex_scale` of the pair is then ``<= scale``."""
    H, W = _size_pair(image_size, "hex_shape_covering", "image_size")
    if not (math.isfinite(scale) and scale > 0):
        raise ValueError(f"hex_shape_covering: scale must be a positive finite number, got {scale}")
    eps = 1e-9  # keep exact fits (e.g. 31 / 31) from rounding up to one cell more
    h = max(2, math.ceil((H - 1) / (scale * _SQRT3_2) - eps) + 1)
    w = max(2, math.ceil((W - 1) / scale + (h - 1) / 2 - eps) + 1)
    return h, w


def _resolve_scale(scale: float | None, image_hw: tuple[int, int], hex_hw: tuple[int, int], op: str) -> float:
    if scale is None:
        return default_hex_scale(image_hw, hex_hw)
    scale = float(scale)
    if not (math.isfinite(scale) and scale > 0):
        raise ValueError(f"{op}: scale (image pixels per cell spacing) must be a positive finite number, got {scale}")
    return scale


def _check_resample_input(x: torch.Tensor, mode: str, op: str, arg: str) -> None:
    if not isinstance(x, torch.Tensor):
        raise TypeError(f"{op}: {arg} must be a torch.Tensor, got {type(x).__name__}")
    if x.dim() < 2:
        raise ValueError(f"{op}: {arg} must have shape [..., H, W] (at least 2-D), got {tuple(x.shape)}")
    if not x.is_floating_point():
        raise ValueError(f"{op}: {arg} must be floating point (interpolation), got {x.dtype}; convert with .float()")
    if mode not in _RESAMPLE_MODES:
        raise ValueError(f"{op}: mode must be one of {_RESAMPLE_MODES}, got {mode!r}")


def _grid_sample_all(x: torch.Tensor, grid: torch.Tensor, mode: str) -> torch.Tensor:
    """Sample every ``[H, W]`` plane of ``x [..., H, W]`` at the normalised positions ``grid [h, w, 2]``.

    The leading dims are folded into grid_sample's channel axis, so one grid serves every plane (no copy of
    the grid per image)."""
    lead = x.shape[:-2]
    planes = x.reshape(1, -1, *x.shape[-2:])
    grid = grid.to(device=x.device, dtype=x.dtype).unsqueeze(0)
    out = F.grid_sample(planes, grid, mode=mode, padding_mode="zeros", align_corners=True)
    return out.reshape(*lead, *grid.shape[1:3])


def square_to_hex(
    images: torch.Tensor,
    size: tuple[int, int] | int,
    *,
    mode: str = "bilinear",
    scale: float | None = None,
) -> torch.Tensor:
    """Resample square images ``[..., H, W]`` onto an axial hexagonal array ``[..., size_h, size_w]``.

    Cell ``(u, v)`` samples the image at its physical position ``(v + u / 2, (sqrt(3) / 2) u)``
    (:func:`hex_centres`) measured from the centre of the axial array, times ``scale``, plus the centre
    of the image: the image's pixel centres are the points ``(column, row)``, and the two centres coincide.
    ``scale`` is in image pixels per cell spacing; by default (:func:`default_hex_scale`) the smallest scale
    at which the rectangle-in-hex part of the lattice (:func:`rectangle_in_hex_mask`) covers the image, so
    no part of the image is lost. Cells whose position falls outside the image read 0.

    Interpolation is ``torch.nn.functional.grid_sample`` (``align_corners=True``, zero padding) with
    ``mode`` ``"bilinear"`` or ``"bicubic"``; differentiable with respect to ``images``.
    """
    op = "square_to_hex"
    _check_resample_input(images, mode, op, "images")
    image_hw = _size_pair(tuple(images.shape[-2:]), op, "images' last two dims")
    h, w = _size_pair(size, op, "size")
    s = _resolve_scale(scale, image_hw, (h, w), op)
    H, W = image_hw
    pos = hex_centres(h, w, centre=True, dtype=torch.float64)
    # Pixel coordinates (column, row) = image centre + s * position; align_corners=True normalises the
    # first and last pixel centres to -1 and +1.
    grid = torch.stack((2 * s * pos[..., 0] / (W - 1), 2 * s * pos[..., 1] / (H - 1)), dim=-1)
    return _grid_sample_all(images, grid, mode)


def hex_to_square(
    hex_images: torch.Tensor,
    size: tuple[int, int] | int,
    *,
    mode: str = "bilinear",
    scale: float | None = None,
) -> torch.Tensor:
    """Resample axial hexagonal images ``[..., h, w]`` onto square images ``[..., size_h, size_w]``.

    The inverse geometry of :func:`square_to_hex` (same centring, same ``scale`` and the same default):
    the square pixel at ``(column, row)`` lies at ``(x, y) = ((column, row) - image centre) / scale`` in cell
    units from the centre of the axial array, i.e. at the fractional axial coordinates
    ``u = y / (sqrt(3) / 2)``, ``v = x - u / 2`` (relative to the array's centre), where the axial array is
    interpolated (``"bilinear"`` or ``"bicubic"`` in the axial coordinates ``(u, v)``). Pixels outside the
    parallelogram read 0. So ``hex_to_square(square_to_hex(img, hex_size), img_size)`` approximates ``img``.
    """
    op = "hex_to_square"
    _check_resample_input(hex_images, mode, op, "hex_images")
    h, w = _size_pair(tuple(hex_images.shape[-2:]), op, "hex_images' last two dims")
    H, W = _size_pair(size, op, "size")
    s = _resolve_scale(scale, (H, W), (h, w), op)
    rows = torch.arange(H, dtype=torch.float64) - (H - 1) / 2
    cols = torch.arange(W, dtype=torch.float64) - (W - 1) / 2
    y, x = torch.meshgrid(rows / s, cols / s, indexing="ij")
    u = y / _SQRT3_2  # relative to the axial centre ((h - 1) / 2, (w - 1) / 2)
    v = x - u / 2
    grid = torch.stack((2 * v / (w - 1), 2 * u / (h - 1)), dim=-1)
    return _grid_sample_all(hex_images, grid, mode)


def rectangle_in_hex_mask(
    H: int,
    W: int,
    *,
    image_size: tuple[int, int] | int | None = None,
    scale: float | None = None,
) -> torch.Tensor:
    """Boolean ``[H, W]``: the rectangle-shaped part of an ``H x W`` axial array (HexaConv's "rectangle in hex").

    The axial array is a parallelogram in physical space (row ``u`` is shifted by ``u / 2`` cells). Without
    ``image_size`` the mask keeps the cells inside the largest centred rectangle that spans all rows,
    ``|x - x_c| <= ((W - 1) - (H - 1) / 2) / 2`` (decided in exact integer arithmetic, so the mask is
    symmetric under the half turn about the centre); it is empty when ``W - 1 < (H - 1) / 2``.

    With ``image_size = (H_img, W_img)`` the mask keeps exactly the cells that :func:`square_to_hex` (with
    the same ``scale``, default :func:`default_hex_scale`) samples inside the image (pixel centres corner to
    corner, up to 1e-9 of a pixel); with the default scale this is a subset of the rectangle above.
    """
    if H < 0 or W < 0:
        raise ValueError(f"rectangle_in_hex_mask: H and W must be >= 0, got {H} x {W}")
    if image_size is None:
        if scale is not None:
            raise ValueError("rectangle_in_hex_mask: scale only applies together with image_size")
        u, v = torch.meshgrid(torch.arange(H), torch.arange(W), indexing="ij")
        # 4 (x - x_c) = 4 (v - v_c) + 2 (u - u_c) with 4 v_c = 2 (W - 1) and 2 u_c = H - 1: all integers.
        four_dx = 4 * v - 2 * (W - 1) + 2 * u - (H - 1)
        return four_dx.abs() <= 2 * (W - 1) - (H - 1)
    op = "rectangle_in_hex_mask"
    Hi, Wi = _size_pair(image_size, op, "image_size")
    h, w = _size_pair((H, W), op, "(H, W)")
    s = _resolve_scale(scale, (Hi, Wi), (h, w), op)
    pos = hex_centres(h, w, centre=True, dtype=torch.float64) * s
    tol = 1e-9
    return (pos[..., 0].abs() <= (Wi - 1) / 2 + tol) & (pos[..., 1].abs() <= (Hi - 1) / 2 + tol)


def plot_hex(
    image: torch.Tensor,
    path: str,
    *,
    cmap: str = "viridis",
    vmin: float | None = None,
    vmax: float | None = None,
    mask: torch.Tensor | None = None,
    title: str | None = None,
    colorbar: bool = True,
    dpi: int = 100,
) -> str:
    """Draw an axial image ``[H, W]`` as pointy-topped hexagons at :func:`hex_centres` and save it as a PNG.

    Row 0 is drawn at the top (as an image viewer shows the square image that :func:`square_to_hex` came
    from). Cells where ``mask`` is False are left out. Needs matplotlib (an optional dependency); returns
    ``path``.
    """
    require("matplotlib", "matplotlib", "plot_hex (drawing hexagonal images)")
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.collections import PolyCollection
    from matplotlib.figure import Figure

    if not isinstance(image, torch.Tensor) or image.dim() != 2:
        shape = tuple(image.shape) if isinstance(image, torch.Tensor) else type(image).__name__
        raise ValueError(f"plot_hex: image must be a 2-D tensor [H, W] in axial layout, got {shape}")
    H, W = image.shape
    values = image.detach().to("cpu", torch.float64)
    keep = torch.ones(H, W, dtype=torch.bool) if mask is None else mask.to("cpu", torch.bool)
    if keep.shape != (H, W):
        raise ValueError(f"plot_hex: mask must have shape {(H, W)}, got {tuple(keep.shape)}")
    centres = hex_centres(H, W, dtype=torch.float64)[keep]  # [n, 2]
    # Pointy-topped hexagon with neighbour distance 1: circumradius 1 / sqrt(3), vertices at 30 + 60 k deg.
    angles = torch.deg2rad(torch.arange(6, dtype=torch.float64) * 60 + 30)
    corners = torch.stack((angles.cos(), angles.sin()), dim=-1) / math.sqrt(3.0)
    polygons = (centres[:, None, :] + corners[None]).numpy()

    fig = Figure(figsize=(max(3.0, 0.25 * (W + H / 2)) + (1.0 if colorbar else 0.0), max(3.0, 0.25 * H * _SQRT3_2)))
    FigureCanvasAgg(fig)
    ax = fig.add_subplot(1, 1, 1)
    collection = PolyCollection(polygons, array=values[keep].numpy(), cmap=cmap, edgecolors="face")
    collection.set_clim(vmin, vmax)
    ax.add_collection(collection)
    if len(polygons):  # frame the drawn cells (a mask may leave out a large part of the parallelogram)
        low, high = polygons.reshape(-1, 2).min(0) - 0.5, polygons.reshape(-1, 2).max(0) + 0.5
        ax.set_xlim(low[0], high[0])
        ax.set_ylim(high[1], low[1])  # inverted: row 0 at the top
    ax.set_aspect("equal")
    ax.set_axis_off()
    if title:
        ax.set_title(title)
    if colorbar:
        fig.colorbar(collection, ax=ax)
    fig.savefig(path, dpi=dpi, bbox_inches="tight")
    return path


# ---------------------------------------------------------------------------
# Offset layouts.
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


# ---------------------------------------------------------------------------
# Pooling on the axial lattice.

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
