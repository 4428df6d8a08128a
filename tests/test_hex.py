"""Hexagonal geometry (flowkernels.hex): the group p6m, filter transforms, rotations, resampling, offset
layouts, pooling and domain masks. Pure PyTorch, CPU (plus CUDA where present), fast."""

from __future__ import annotations

import math

import pytest
import torch

from flowkernels.hex import (
    GROUP_ORDERS,
    HEX_NEIGHBOURHOOD,
    axial_to_offset,
    default_hex_scale,
    element_matrix,
    filter_transform_tables,
    group_elements,
    group_inverse,
    group_multiply,
    group_pool,
    hex_avg_pool2d,
    hex_centres,
    hex_domain_mask,
    hex_mask,
    hex_max_pool2d,
    hex_shape_covering,
    hex_to_square,
    mirror,
    offset_to_axial,
    rectangle_in_hex_mask,
    rotate60,
    site_permutation,
    square_to_hex,
    transform_group_map,
)
from flowkernels.reference.hex import gather_filters, hex_conv2d

from .conftest import DEVICES

P6M = group_elements("p6m")
R = (0, 1)
M = (1, 0)
E = (0, 0)


def _power(element, k):
    out = E
    for _ in range(k):
        out = group_multiply(out, element)
    return out


def _matmul(a, b):
    return tuple(tuple(sum(a[i][k] * b[k][j] for k in range(2)) for j in range(2)) for i in range(2))


# ---------------------------------------------------------------------------
# The group p6m


def test_group_relations():
    assert _power(R, 6) == E
    assert all(_power(R, k) != E for k in range(1, 6))
    assert group_multiply(M, M) == E
    assert group_multiply(group_multiply(M, R), M) == group_inverse(R)
    # The matrices realise the same relations (and the multiplication is a homomorphism to them).
    assert element_matrix(_power(R, 6)) == ((1, 0), (0, 1))
    assert _matmul(_matmul(element_matrix(M), element_matrix(R)), element_matrix(M)) == element_matrix((0, 5))
    for a in P6M:
        assert group_multiply(a, group_inverse(a)) == E
        for b in P6M:
            assert element_matrix(group_multiply(a, b)) == _matmul(element_matrix(a), element_matrix(b))
            for c in P6M[::5]:
                assert group_multiply(group_multiply(a, b), c) == group_multiply(a, group_multiply(b, c))
    assert len({element_matrix(g) for g in P6M}) == 12


def _apply_element(g, f, in_group):
    """``(T_g f)(h, p) = f(g^-1 h, g^-1 p)`` on a compact filter ``f [G_in, k, k]`` (spatial action via
    site_permutation, group action via group_multiply), with the corners outside the hexagon zeroed."""
    G_in, k, _ = f.shape
    live = hex_mask(k // 2)
    f = f * live
    index = site_permutation(k, g)
    flat = f.reshape(G_in, k * k)
    spatial = torch.where(index >= 0, flat[:, index.clamp(min=0)], torch.zeros(())).reshape(G_in, k, k)
    if in_group == "z2":
        return spatial * live
    elements = group_elements(in_group)
    g_inv = group_inverse(g)
    source = [elements.index(group_multiply(g_inv, h)) for h in elements]
    return spatial[source] * live


@pytest.mark.parametrize("k", [3, 5, 7, 9, 11])
@pytest.mark.parametrize("in_group,out_group", [("z2", "p6"), ("p6", "p6"), ("z2", "p6m"), ("p6m", "p6m")])
def test_filter_transform_is_group_action(k, in_group, out_group):
    gen = torch.Generator().manual_seed(k)
    G_in = GROUP_ORDERS[in_group]
    elements = group_elements(out_group)
    index, inverse = filter_transform_tables(in_group, out_group, k)
    f = torch.randn(G_in, k, k, generator=gen, dtype=torch.float64) * hex_mask(k // 2)

    def expand(filt):  # [G_in, k, k] -> [G_out, G_in, k, k] through the tables
        return gather_filters(filt.reshape(1, 1, -1), index)[0, :, 0].reshape(len(elements), G_in, k, k)

    bank = expand(f)
    for gi, g in enumerate(elements):
        assert torch.equal(bank[gi], _apply_element(g, f, in_group)), (g, k)
    assert torch.equal(bank[elements.index(E)], f)  # the identity expands to the filter itself
    # Composition, both as maps on filters and through the tables: T_g T_h = T_gh.
    for g in elements[::2] + elements[1::4]:
        for h in elements:
            gh = elements.index(group_multiply(g, h))
            assert torch.equal(_apply_element(g, _apply_element(h, f, in_group), in_group), bank[gh])
        assert torch.equal(
            expand(_apply_element(g, f, in_group)), bank[[elements.index(group_multiply(h, g)) for h in elements]]
        )
    # `inverse` is the inverse permutation of `index` on the live cells.
    for gi in range(len(elements)):
        live = (index[gi] >= 0).nonzero().flatten()
        assert torch.equal(inverse[gi, index[gi, live]], live)


# ---------------------------------------------------------------------------
# Masks


@pytest.mark.parametrize("radius", range(6))
def test_hex_mask_counts_and_symmetry(radius):
    mask = hex_mask(radius)
    n = 2 * radius + 1
    assert mask.shape == (n, n)
    assert int(mask.sum()) == 3 * radius * radius + 3 * radius + 1
    for g in P6M:
        index = site_permutation(n, g)
        # Every live cell has a live source, and the image of the mask is the mask.
        assert bool((index[mask.flatten()] >= 0).all())
        moved = torch.where(index >= 0, mask.flatten()[index.clamp(min=0)], torch.tensor(False)).reshape(n, n)
        assert torch.equal(moved, mask)
    domain = hex_domain_mask(n)
    assert torch.equal(domain, mask)
    assert torch.equal(rotate60(domain.double()), domain.double())
    assert torch.equal(mirror(domain.double()), domain.double())


def test_hex_domain_mask_radius_and_errors():
    assert int(hex_domain_mask(9, radius=2).sum()) == 19
    assert torch.equal(rotate60(hex_domain_mask(9, 3).float()), hex_domain_mask(9, 3).float())
    with pytest.raises(ValueError, match="odd"):
        hex_domain_mask(8)
    with pytest.raises(ValueError, match="radius"):
        hex_mask(-1)


# ---------------------------------------------------------------------------
# Rotations and mirrors


def _hex_supported(shape, n, gen, dtype=torch.float64):
    return torch.randn(*shape, n, n, generator=gen, dtype=dtype) * hex_domain_mask(n)


def test_rotate60_explicit_gather():
    n, c = 7, 3
    x = torch.arange(n * n, dtype=torch.float64).reshape(1, 1, n, n)
    out = rotate60(x)
    for u, v in [(0, 0), (1, 0), (0, 1), (-1, 1), (2, -1), (-3, 2), (1, 2), (-2, -1)]:
        su, sv = c - v, c + u + v
        expected = x[0, 0, su, sv] if 0 <= su < n and 0 <= sv < n else 0.0
        assert out[0, 0, c + u, c + v] == expected, (u, v)
    # Hand-checked with R (u, v) -> (u + v, -u): the cell at (0, +1) = input[3, 4] = 25 moves to (+1, 0), the
    # cell at (+1, 0) = input[4, 3] = 31 moves to (+1, -1), and (+1, -1) = input[4, 2] = 30 moves to (0, -1).
    assert out[0, 0, c + 1, c] == 25
    assert out[0, 0, c + 1, c - 1] == 31
    assert out[0, 0, c, c - 1] == 30
    assert out[0, 0, c, c] == 24


@pytest.mark.parametrize("device", DEVICES)
def test_rotate_mirror_relations_planar(device):
    gen = torch.Generator().manual_seed(0)
    n = 9
    x = _hex_supported((2, 3), n, gen).to(device)
    assert torch.equal(rotate60(x, 6), x)
    assert torch.equal(rotate60(rotate60(x, 2), 4), x)
    assert torch.equal(mirror(mirror(x)), x)
    assert torch.equal(mirror(rotate60(mirror(x))), rotate60(x, -1))
    assert torch.equal(mirror(rotate60(mirror(x))), rotate60(x, 5))
    assert not torch.equal(rotate60(x), x)


@pytest.mark.parametrize("group", ["p6", "p6m"])
def test_rotate_mirror_relations_group_maps(group):
    gen = torch.Generator().manual_seed(1)
    n, G = 7, GROUP_ORDERS[group]
    x = _hex_supported((2, 3, G), n, gen)
    assert torch.equal(rotate60(x, 6), x)
    r = rotate60(x)
    if group == "p6":
        # p6: the group axis rolls by +1 (out(p, h) = in(R^-1 p, R^-1 h)), space rotates.
        assert torch.equal(r, rotate60(torch.roll(x, shifts=1, dims=2).reshape(-1, 1, n, n)).reshape(x.shape))
    else:
        assert torch.equal(mirror(mirror(x)), x)
        assert torch.equal(mirror(rotate60(mirror(x))), rotate60(x, -1))
        # m = 0 half rolls by +1, m = 1 half by -1.
        expected = torch.cat((torch.roll(x[:, :, :6], 1, 2), torch.roll(x[:, :, 6:], -1, 2)), dim=2)
        assert torch.equal(r, rotate60(expected.reshape(-1, 1, n, n)).reshape(x.shape))
    # transform_group_map composes like the group.
    elements = group_elements(group)
    for g in elements[:3]:
        for h in elements[-3:]:
            lhs = transform_group_map(transform_group_map(x, h), g)
            assert torch.equal(lhs, transform_group_map(x, group_multiply(g, h)))


# ---------------------------------------------------------------------------
# Resampling


def _smooth_image(H, W, dtype=torch.float64):
    y, x = torch.meshgrid(torch.linspace(0, 1, H, dtype=dtype), torch.linspace(0, 1, W, dtype=dtype), indexing="ij")
    return torch.sin(2 * math.pi * x) * torch.cos(3 * y) + y + 0.5


def test_hex_centres():
    c = hex_centres(3, 4, dtype=torch.float64)
    assert c.shape == (3, 4, 2)
    assert torch.allclose(c[2, 1], torch.tensor([1 + 1.0, math.sqrt(3)], dtype=torch.float64))
    # Neighbours are at distance 1.
    for du, dv in HEX_NEIGHBOURHOOD[1:]:
        d = c[1 + du, 1 + dv] - c[1, 1]
        assert math.isclose(float(d.norm()), 1.0, rel_tol=1e-12)
    centred = hex_centres(5, 7, centre=True, dtype=torch.float64)
    assert torch.allclose(centred[2, 3], torch.zeros(2, dtype=torch.float64))
    assert torch.allclose(centred.mean((0, 1)), torch.zeros(2, dtype=torch.float64), atol=1e-12)


@pytest.mark.parametrize("mode,tol", [("bilinear", 0.05), ("bicubic", 0.03)])
def test_resampling_round_trip(mode, tol):
    img = _smooth_image(48, 40)
    hex_size = hex_shape_covering((48, 40), scale=0.8)
    h = square_to_hex(img, hex_size, mode=mode)
    assert h.shape == hex_size
    back = hex_to_square(h, (48, 40), mode=mode)
    assert back.shape == img.shape
    assert float((back - img).norm() / img.norm()) < tol
    # Away from the border (where zero padding blends in) the error is small pointwise.
    assert float((back - img)[3:-3, 3:-3].abs().max()) < 0.05


@pytest.mark.parametrize("mode", ["bilinear", "bicubic"])
def test_resampling_shapes_batches_and_dtypes(mode):
    gen = torch.Generator().manual_seed(2)
    for dtype in (torch.float32, torch.float64):
        imgs = torch.rand(2, 3, 5, 16, 20, generator=gen).to(dtype)
        h = square_to_hex(imgs, (15, 22), mode=mode)
        assert h.shape == (2, 3, 5, 15, 22) and h.dtype == dtype
        # Every plane is sampled on its own.
        assert torch.allclose(h[1, 2, 3], square_to_hex(imgs[1, 2, 3], (15, 22), mode=mode))
        s = hex_to_square(h, (16, 20), mode=mode)
        assert s.shape == imgs.shape and s.dtype == dtype
    assert square_to_hex(torch.rand(0, 8, 8), 9).shape == (0, 9, 9)
    assert square_to_hex(torch.rand(8, 8), 9, scale=0.5).shape == (9, 9)


def test_resampling_gradients():
    gen = torch.Generator().manual_seed(3)
    img = torch.rand(1, 6, 7, generator=gen, dtype=torch.float64, requires_grad=True)
    assert torch.autograd.gradcheck(lambda t: square_to_hex(t, (6, 9)), (img,))
    hx = torch.rand(1, 6, 9, generator=gen, dtype=torch.float64, requires_grad=True)
    assert torch.autograd.gradcheck(lambda t: hex_to_square(t, (6, 7), mode="bicubic"), (hx,))


def test_constant_image_maps_to_constant():
    H, W, hex_size = 30, 26, (25, 35)
    ones = torch.ones(H, W, dtype=torch.float64)
    covered = rectangle_in_hex_mask(*hex_size, image_size=(H, W))
    assert int(covered.sum()) > 0.4 * covered.numel()
    h = square_to_hex(ones, hex_size)
    assert float((h[covered] - 1).abs().max()) < 1e-9
    assert float(h[~covered].max()) < 1  # cells outside the image see (some) zero padding
    # Bicubic reproduces constants where its 4 x 4 support lies inside the image.
    s = default_hex_scale((H, W), hex_size)
    pos = hex_centres(*hex_size, centre=True, dtype=torch.float64) * s
    inner = (pos[..., 0].abs() <= (W - 1) / 2 - 2) & (pos[..., 1].abs() <= (H - 1) / 2 - 2)
    hc = square_to_hex(ones, hex_size, mode="bicubic")
    assert float((hc[inner] - 1).abs().max()) < 1e-9
    # The way back: the square image is inside the rectangle-in-hex part, so a constant hex image comes back
    # constant (bilinear reads cells only inside the parallelogram).
    back = hex_to_square(torch.ones(hex_size, dtype=torch.float64), (H, W))
    assert float((back - 1).abs().max()) < 1e-9


def test_resampling_geometry_is_consistent():
    # A delta at the image centre lands on the hex array's centre cell and comes back to the centre.
    img = torch.zeros(21, 21, dtype=torch.float64)
    img[10, 10] = 1
    h = square_to_hex(img, (21, 31), scale=1.0)
    assert tuple((h == h.max()).nonzero()[0].tolist()) == (10, 15)
    # A feature at physical offset (x, y) in pixels: the cell at centre + (0, 2) sits 2 cells to the right.
    img2 = torch.zeros(21, 21, dtype=torch.float64)
    img2[10, 12] = 1
    assert float(square_to_hex(img2, (21, 31), scale=1.0)[10, 17]) == pytest.approx(1.0)
    # One row down is sqrt(3)/2 pixels down and half a cell to the right.
    y, x = torch.meshgrid(torch.arange(21.0), torch.arange(21.0), indexing="ij")
    ramp_y = (y - 10).double()
    hy = square_to_hex(ramp_y, (21, 31), scale=1.0)
    assert float(hy[11, 15]) == pytest.approx(math.sqrt(3) / 2)
    ramp_x = (x - 10).double()
    assert float(square_to_hex(ramp_x, (21, 31), scale=1.0)[11, 15]) == pytest.approx(0.5)


def test_resampling_errors():
    with pytest.raises(ValueError, match="mode"):
        square_to_hex(torch.rand(8, 8), 8, mode="nearest")
    with pytest.raises(ValueError, match="floating"):
        square_to_hex(torch.zeros(8, 8, dtype=torch.uint8), 8)
    with pytest.raises(ValueError, match="at least 2-D"):
        square_to_hex(torch.rand(8), 8)
    with pytest.raises(ValueError, match="too narrow"):
        square_to_hex(torch.rand(8, 8), (20, 5))
    with pytest.raises(ValueError, match="scale"):
        hex_to_square(torch.rand(8, 8), 8, scale=-1.0)
    with pytest.raises(ValueError, match="at least 2 x 2"):
        square_to_hex(torch.rand(8, 8), (1, 8))


def test_hex_shape_covering():
    for size, scale in [((32, 32), 1.0), ((28, 40), 0.5), ((8, 8), 2.0)]:
        h, w = hex_shape_covering(size, scale)
        assert default_hex_scale(size, (h, w)) <= scale + 1e-12
        # One cell fewer in either direction would not cover at this scale.
        assert default_hex_scale(size, (h - 1, w)) > scale or (w - 1) - (h - 2) / 2 <= 0
        assert (w - 2) - (h - 1) / 2 <= 0 or default_hex_scale(size, (h, w - 1)) > scale


# ---------------------------------------------------------------------------
# Rectangle-in-hex


def test_rectangle_in_hex_mask():
    H, W = 9, 14
    mask = rectangle_in_hex_mask(H, W)
    assert mask.shape == (H, W) and mask.dtype == torch.bool
    x = hex_centres(H, W, centre=True, dtype=torch.float64)[..., 0]
    half = ((W - 1) - (H - 1) / 2) / 2
    assert torch.equal(mask, x.abs() <= half + 1e-9)
    assert bool(mask.any(dim=1).all())  # every row takes part
    assert torch.equal(mask, mask.flip(0, 1))  # the half turn about the centre
    # Each row holds a contiguous run of the same length (W - 1) - (H - 1) / 2 + 1 give or take the parity.
    counts = mask.sum(1)
    assert int(counts.max() - counts.min()) <= 1
    # The image's footprint at the default scale lies inside the rectangle.
    footprint = rectangle_in_hex_mask(H, W, image_size=(20, 24))
    assert bool((footprint <= mask).all()) and footprint.any()
    assert not rectangle_in_hex_mask(9, 4).any()  # too narrow for a rectangle spanning all rows


# ---------------------------------------------------------------------------
# Offset layouts


def _offset_neighbours(r, c, layout):
    """The six neighbours of an offset cell, written from the layout's own definition."""
    if layout == "odd-r":  # odd rows shoved right
        d = [(0, -1), (0, 1), (-1, 0), (1, 0)] + ([(-1, 1), (1, 1)] if r % 2 else [(-1, -1), (1, -1)])
        return {(r + dr, c + dc) for dr, dc in d}
    # odd-q (hexagdly): odd columns shoved down
    d = [(-1, 0), (1, 0), (0, -1), (0, 1)] + ([(1, -1), (1, 1)] if c % 2 else [(-1, -1), (-1, 1)])
    return {(r + dr, c + dc) for dr, dc in d}


@pytest.mark.parametrize("layout", ["odd-r", "odd-q"])
@pytest.mark.parametrize("H,W", [(5, 7), (6, 4), (1, 3), (2, 2), (7, 7)])
def test_offset_round_trip_and_neighbours(layout, H, W):
    ids = torch.arange(1, H * W + 1).reshape(H, W)
    off = axial_to_offset(ids, layout)
    P = (H - 1) // 2
    assert off.shape == ((H, W + P) if layout == "odd-r" else (W + P, H))
    assert torch.equal(offset_to_axial(off, layout), ids)
    # Every axial cell appears exactly once; the rest is fill.
    assert torch.equal(off[off > 0].sort().values, ids.flatten())
    where = {int(off[r, c]): (r, c) for r, c in (off > 0).nonzero().tolist()}
    for u in range(H):
        for v in range(W):
            r, c = where[int(ids[u, v])]
            expected = set()
            for du, dv in HEX_NEIGHBOURHOOD[1:]:
                if 0 <= u + du < H and 0 <= v + dv < W:
                    expected.add(where[int(ids[u + du, v + dv])])
            actual = {p for p in _offset_neighbours(r, c, layout) if p in where.values()}
            assert expected == actual, (u, v)


@pytest.mark.parametrize("layout", ["odd-r", "odd-q"])
def test_offset_full_and_fill(layout):
    gen = torch.Generator().manual_seed(4)
    x = torch.randn(2, 3, 6, 5, generator=gen, dtype=torch.float64)
    off = axial_to_offset(x, layout, fill=float("nan"))
    assert int(off.isnan().sum()) == 2 * 3 * (off.shape[-1] * off.shape[-2] - 30)
    assert torch.equal(offset_to_axial(off, layout), x)
    # full=True keeps every offset cell; converting back places the offset array inside a fill frame.
    y = torch.randn(2, 7, 4, generator=gen, dtype=torch.float64)  # offset array, any content
    a = offset_to_axial(y, layout, full=True, fill=0.0)
    yr = y if layout == "odd-r" else y.transpose(-1, -2)
    P = (yr.shape[-2] - 1) // 2
    assert a.shape[-2:] == (yr.shape[-2], yr.shape[-1] + P)
    again = axial_to_offset(a, layout)
    again_r = again if layout == "odd-r" else again.transpose(-1, -2)
    assert torch.equal(again_r[..., P : P + yr.shape[-1]], yr)
    assert torch.equal(again_r[..., :P], torch.zeros_like(again_r[..., :P]))
    # Gradients flow through the gathers.
    x.requires_grad_(True)
    axial_to_offset(x, layout).sum().backward()
    assert torch.equal(x.grad, torch.ones_like(x))


def test_offset_errors():
    with pytest.raises(ValueError, match="layout"):
        axial_to_offset(torch.zeros(3, 3), "even-q")
    with pytest.raises(ValueError, match="at least 2-D"):
        offset_to_axial(torch.zeros(3), "odd-r")
    with pytest.raises(ValueError, match="full=True"):
        offset_to_axial(torch.zeros(9, 2), "odd-r")


def _hexagdly_to_axial_weight(conv):
    """hexagdly.Conv2d(kernel_size=1) keeps kernel0 [O, I, 3, 1] (own column: rows r - 1, r, r + 1) and
    kernel1 [O, I, 2, 2] (neighbour columns: [upper, lower] x [left, right]). In odd-q, column q = u and
    row r = v + u // 2, so these taps are the axial offsets (du, dv) below."""
    k0, k1 = conv.kernel0.detach(), conv.kernel1.detach()
    w = torch.zeros(*k0.shape[:2], 3, 3, dtype=k0.dtype)
    taps = {
        (0, -1): k0[:, :, 0, 0],
        (0, 0): k0[:, :, 1, 0],
        (0, 1): k0[:, :, 2, 0],
        (-1, 0): k1[:, :, 0, 0],  # left column, upper
        (-1, 1): k1[:, :, 1, 0],  # left column, lower
        (1, -1): k1[:, :, 0, 1],  # right column, upper
        (1, 0): k1[:, :, 1, 1],  # right column, lower
    }
    for (du, dv), tap in taps.items():
        w[:, :, 1 + du, 1 + dv] = tap
    return w


@pytest.mark.parametrize("H,W", [(7, 9), (6, 5)])
def test_matches_hexagdly_conv(H, W):
    hexagdly = pytest.importorskip("hexagdly")
    torch.manual_seed(5)
    conv = hexagdly.Conv2d(3, 4, kernel_size=1, stride=1, bias=True)
    gen = torch.Generator().manual_seed(6)
    x = torch.randn(2, 3, H, W, generator=gen)
    expected = hex_conv2d(x, _hexagdly_to_axial_weight(conv), conv.bias_tensor.detach())
    with torch.no_grad():
        out = offset_to_axial(conv(axial_to_offset(x, "odd-q")), "odd-q")
    # The shear's fill cells are zeros, like hexagdly's and conv2d's zero padding: equal everywhere.
    torch.testing.assert_close(out, expected, rtol=1e-5, atol=1e-5)


def test_matches_hexagdly_max_pool_stride1():
    hexagdly = pytest.importorskip("hexagdly")
    gen = torch.Generator().manual_seed(7)
    x = torch.randn(1, 2, 8, 9, generator=gen)
    ours = hex_max_pool2d(x, stride=1)
    with torch.no_grad():
        theirs = offset_to_axial(hexagdly.MaxPool2d(1, 1)(axial_to_offset(x, "odd-q", fill=-1e30)), "odd-q")
    # hexagdly pads the array with zeros (ours with -inf): compare away from the offset array's border.
    off_ids = axial_to_offset(torch.arange(1, 73).reshape(8, 9), "odd-q")
    interior = torch.zeros_like(off_ids, dtype=torch.bool)
    interior[1:-1, 1:-1] = True
    keep = offset_to_axial(interior.long(), "odd-q").bool()
    assert int(keep.sum()) > 30
    assert torch.equal(ours[..., keep], theirs[..., keep])


# ---------------------------------------------------------------------------
# Pooling


def test_pool_hand_made():
    x = torch.arange(25, dtype=torch.float64).reshape(1, 1, 5, 5)
    mx = hex_max_pool2d(x)
    av = hex_avg_pool2d(x)
    assert mx.shape == av.shape == (1, 1, 3, 3)
    # Site (1, 1) pools input (2, 2) and its neighbours 7, 17, 11, 13, 16, 8.
    cells = [12, 11, 13, 7, 17, 16, 8]
    assert float(mx[0, 0, 1, 1]) == max(cells)
    assert float(av[0, 0, 1, 1]) == pytest.approx(sum(cells) / 7)
    # Site (0, 0): input (0, 0) with live neighbours (0, 1) and (1, 0) only.
    assert float(mx[0, 0, 0, 0]) == 5
    assert float(av[0, 0, 0, 0]) == pytest.approx((0 + 1 + 5) / 3)
    assert float(hex_avg_pool2d(x, count_include_pad=True)[0, 0, 0, 0]) == pytest.approx(6 / 7)
    # Site (0, 2): input (0, 4), neighbours (0, 3), (1, 4), (1, 3).
    assert float(mx[0, 0, 0, 2]) == 9
    assert float(av[0, 0, 0, 2]) == pytest.approx((4 + 3 + 9 + 8) / 4)
    # The corner excluded by the hexagon: (-1, -1) and (+1, +1) never take part.
    y = torch.zeros(1, 1, 3, 3)
    y[0, 0, 0, 0] = y[0, 0, 2, 2] = 5.0
    assert float(hex_max_pool2d(y, stride=1)[0, 0, 1, 1]) == 0.0
    y[0, 0, 0, 2] = 3.0
    assert float(hex_max_pool2d(y, stride=1)[0, 0, 1, 1]) == 3.0
    assert float(hex_max_pool2d(-torch.ones(1, 1, 4, 4), stride=2).max()) == -1.0  # padding never wins


def test_pool_shapes_strides_and_stride1():
    gen = torch.Generator().manual_seed(8)
    x = torch.randn(2, 3, 7, 10, generator=gen)
    for stride in (1, 2, 3):
        assert hex_max_pool2d(x, stride=stride).shape == (2, 3, math.ceil(7 / stride), math.ceil(10 / stride))
    # stride 1 equals a dense 7-tap max / box sum, the latter through the hexagonal conv reference.
    box = hex_conv2d(x.reshape(6, 1, 7, 10), torch.ones(1, 1, 3, 3)).reshape(x.shape)
    assert torch.allclose(hex_avg_pool2d(x, stride=1, count_include_pad=True), box / 7, atol=1e-6)
    counts = hex_conv2d(torch.ones(1, 1, 7, 10), torch.ones(1, 1, 3, 3))
    assert torch.allclose(hex_avg_pool2d(x, stride=1), box / counts, atol=1e-6)
    # A stride-2 pool is the stride-1 pool read at the even sites.
    assert torch.equal(hex_max_pool2d(x, stride=2), hex_max_pool2d(x, stride=1)[..., ::2, ::2])
    assert torch.allclose(hex_avg_pool2d(x, stride=2), hex_avg_pool2d(x, stride=1)[..., ::2, ::2])


def test_pool_5d_and_group_pool():
    gen = torch.Generator().manual_seed(9)
    x = torch.randn(2, 3, 6, 9, 9, generator=gen)
    out = hex_max_pool2d(x)
    assert out.shape == (2, 3, 6, 5, 5)
    assert torch.equal(out, hex_max_pool2d(x.reshape(2, 18, 9, 9)).reshape(out.shape))
    avg = hex_avg_pool2d(x, count_include_pad=True)
    assert torch.allclose(avg, hex_avg_pool2d(x.reshape(2, 18, 9, 9), count_include_pad=True).reshape(avg.shape))
    assert torch.equal(group_pool(x, "max"), x.max(dim=2).values)
    assert torch.allclose(group_pool(x, "mean"), x.mean(dim=2))
    assert group_pool(x).shape == (2, 3, 9, 9)
    # Group pooling makes a p6 map invariant on the group axis: rotating then pooling = pooling then rotating.
    xs = x * hex_domain_mask(9)
    assert torch.equal(group_pool(rotate60(xs)), rotate60(group_pool(xs)))


@pytest.mark.parametrize("m", [1, 2, 3])
@pytest.mark.parametrize("kind", ["max_nonneg", "max_mask", "avg_include_pad", "avg_mask"])
def test_pool_equivariance(m, kind):
    n = 4 * m + 1  # the centre 2m lies on the stride-2 sublattice
    gen = torch.Generator().manual_seed(10 + m)
    domain = hex_domain_mask(n)
    x = _hex_supported((2, 3), n, gen)
    if kind == "max_nonneg":
        x = x.abs()
        pool = hex_max_pool2d
    elif kind == "max_mask":

        def pool(t):
            return hex_max_pool2d(t, mask=domain)
    elif kind == "avg_include_pad":

        def pool(t):
            return hex_avg_pool2d(t, count_include_pad=True)
    else:

        def pool(t):
            return hex_avg_pool2d(t, mask=domain)

    y = pool(x)
    assert y.shape[-2:] == (2 * m + 1, 2 * m + 1)
    for k in range(1, 6):
        assert torch.allclose(pool(rotate60(x, k)), rotate60(y, k), rtol=0, atol=1e-12), k
    assert torch.allclose(pool(mirror(x)), mirror(y), rtol=0, atol=1e-12)
    # Group maps: the group axis permutes, space rotates.
    xg = _hex_supported((1, 2, 12), n, gen)
    if kind == "max_nonneg":
        xg = xg.abs()
    assert torch.allclose(pool(rotate60(xg)), rotate60(pool(xg)), rtol=0, atol=1e-12)
    assert torch.allclose(pool(mirror(xg)), mirror(pool(xg)), rtol=0, atol=1e-12)
    if kind == "max_mask":
        assert torch.equal(pool(rotate60(x)), rotate60(y))  # max only selects: bit-exact


def test_pool_equivariance_needs_centre_on_sublattice():
    # N = 4m + 3: the centre is odd, the output has even size and no centre cell: rotate60 refuses it.
    x = _hex_supported((1, 1), 7, torch.Generator().manual_seed(11)).abs()
    y = hex_max_pool2d(x)
    assert y.shape[-1] == 4
    with pytest.raises(ValueError, match="odd"):
        rotate60(y)


def test_pool_mask_and_empty_sites():
    x = torch.full((1, 1, 9, 9), -3.0)
    mask = hex_domain_mask(9, radius=1)
    y = hex_max_pool2d(x, mask=mask)
    assert float(y[0, 0, 2, 2]) == -3.0
    assert float(y[0, 0, 0, 0]) == 0.0  # no live cell: 0, not -inf
    assert torch.isfinite(hex_avg_pool2d(x, mask=mask)).all()
    assert float(hex_avg_pool2d(x, mask=mask)[0, 0, 2, 2]) == -3.0


def test_pool_gradients_and_dtypes():
    gen = torch.Generator().manual_seed(12)
    x = torch.randn(1, 2, 5, 6, generator=gen, dtype=torch.float64, requires_grad=True)
    assert torch.autograd.gradcheck(lambda t: hex_avg_pool2d(t), (x,))
    assert torch.autograd.gradcheck(lambda t: hex_max_pool2d(t, stride=1), (x,))
    ints = torch.arange(25).reshape(1, 1, 5, 5)
    assert torch.equal(hex_max_pool2d(ints), hex_max_pool2d(ints.double()).long())
    assert hex_max_pool2d(x.float()).dtype == torch.float32


def test_pool_errors():
    with pytest.raises(ValueError, match="stride"):
        hex_max_pool2d(torch.zeros(1, 1, 4, 4), stride=0)
    with pytest.raises(ValueError, match=r"\[B, C, H, W\]"):
        hex_avg_pool2d(torch.zeros(4, 4))
    with pytest.raises(ValueError, match="mask"):
        hex_max_pool2d(torch.zeros(1, 1, 4, 4), mask=torch.ones(3, 3, dtype=torch.bool))
    with pytest.raises(ValueError, match="floating"):
        hex_avg_pool2d(torch.zeros(1, 1, 4, 4, dtype=torch.long))
    with pytest.raises(ValueError, match="group feature map"):
        group_pool(torch.zeros(1, 1, 4, 4))
    with pytest.raises(ValueError, match="mode"):
        group_pool(torch.zeros(1, 1, 6, 4, 4), "sum")


@pytest.mark.parametrize("device", DEVICES)
def test_device_and_dtype_follow_input(device, dtype):
    gen = torch.Generator().manual_seed(13)
    img = torch.rand(2, 12, 12, generator=gen).to(device=device, dtype=dtype)
    h = square_to_hex(img, (13, 19))
    assert h.device.type == device and h.dtype == dtype
    assert hex_to_square(h, 12).device.type == device
    assert axial_to_offset(h, "odd-q").device.type == device
    assert torch.equal(offset_to_axial(axial_to_offset(h, "odd-r"), "odd-r"), h)
    x = torch.rand(1, 2, 9, 9, generator=gen).to(device=device, dtype=dtype)
    assert hex_max_pool2d(x, mask=hex_domain_mask(9).to(device)).device.type == device
    assert hex_avg_pool2d(x).dtype == dtype


def test_plot_hex(tmp_path):
    pytest.importorskip("matplotlib")
    from flowkernels.hex import plot_hex

    img = square_to_hex(_smooth_image(16, 16), (15, 22))
    path = plot_hex(img, str(tmp_path / "hex.png"), mask=rectangle_in_hex_mask(15, 22), title="smooth")
    data = (tmp_path / "hex.png").read_bytes()
    assert path.endswith("hex.png") and data[:8] == b"\x89PNG\r\n\x1a\n"
    with pytest.raises(ValueError, match="2-D"):
        plot_hex(img[None], str(tmp_path / "bad.png"))
