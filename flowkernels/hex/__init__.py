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

from .lattice import (
    GROUP_ORDERS,
    MIRROR,
    ROTATION,
    element_matrix,
    filter_transform_tables,
    group_elements,
    group_inverse,
    group_multiply,
    hex_distance,
    hex_domain_mask,
    hex_mask,
    mirror,
    rotate60,
    site_permutation,
    transform_group_map,
)
from .layouts import OFFSET_LAYOUTS, axial_to_offset, offset_to_axial
from .pooling import HEX_NEIGHBOURHOOD, group_pool, hex_avg_pool2d, hex_max_pool2d
from .resample import (
    default_hex_scale,
    hex_centres,
    hex_shape_covering,
    hex_to_square,
    plot_hex,
    rectangle_in_hex_mask,
    square_to_hex,
)

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
