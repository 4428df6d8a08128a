"""Physical positions of lattice sites, and resampling between square images and the axial lattice (and a plot)."""

from __future__ import annotations

import math
import operator

import torch
import torch.nn.functional as F

from .._optional import require

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
