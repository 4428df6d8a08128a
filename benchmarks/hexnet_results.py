"""Train HexNet on the square, hex, p6 and p6m lattices at one parameter budget and compare (HexaConv in miniature).

Every lattice gets the same seed, schedule and parameter budget (free parameters: the dead corners of hexagonal
filters are not counted). Prints a markdown table (parameters, test accuracy, accuracy on the test set rotated
by 60..300 degrees and under the six mirrors, seconds per training epoch) and writes a figure of hex-resampled
test digits, drawn as hexagons, to ``--out``.

    python benchmarks/hexnet_results.py [--quick] [--epochs 30] [--budget 33500] [--out benchmarks/results/]

What the rotated / mirrored columns measure (no augmentation in training on any lattice):

* hex, p6, p6m: the 13 x 13 hexagonal test images rotated by ``rotate60(x, k)``, k = 1..5, and mirrored by
  ``mirror(rotate60(x, k))``, k = 0..5: exact permutations of lattice sites (no interpolation). p6 is
  invariant to the rotations and p6m to both by construction, so their columns equal the test accuracy.
* square: the 8x8 digits rotated by the same angles and reflected across the same six axes (0, 30, .., 150
  degrees) by bilinear resampling (a square lattice has no exact 60-degree rotation), so its numbers also
  include interpolation blur and corners leaving the 8x8 frame. Printed below the table: its mean accuracy
  under the exact quarter turns (``torch.rot90``), and on the hexagonal digits rotated exactly and resampled
  back to 8x8 with ``hex_to_square`` (k = 0..5; k = 0 is the square -> hex -> square round trip alone).

``--quick`` is a seconds-long smoke run (tiny model, one epoch) for CI; its numbers mean nothing.
"""

from __future__ import annotations

import argparse
import dataclasses
import sys
import tempfile
from collections.abc import Sequence
from pathlib import Path

import numpy as np
import torch

from flowkernels import hex as hexlib
from flowkernels._optional import require
from flowkernels.benchmarks.machine import write_results
from flowkernels.models.hexnet import HEX_SIZE, LATTICES, digit_labels, hex_digits, train_hexnet

# The default budget: every lattice lands within 1.2% of 33,500 parameters (widths 30, 34, 14, 10 for square,
# hex, p6, p6m); about 6 minutes for all four on 2 CPU cores.
FULL = {"epochs": 30, "budget": 33_500}
QUICK = {"epochs": 1, "budget": 1_500}


def parse_args(argv: Sequence[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--out", type=Path, default=Path("benchmarks/results"), help="folder for the figure")
    parser.add_argument("--quick", action="store_true", help="tiny budget: a smoke run, not a measurement")
    parser.add_argument("--epochs", type=int, default=None, help="override the number of epochs")
    parser.add_argument("--budget", type=int, default=None, help="override the parameter budget")
    parser.add_argument("--lattices", nargs="+", choices=LATTICES, default=list(LATTICES), help="lattices to train")
    parser.add_argument("--batch-size", type=int, default=64)
    parser.add_argument("--lr", type=float, default=3e-3)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--threads", type=int, default=None, help="torch.set_num_threads (default: torch's choice)")
    parser.add_argument("--no-progress", action="store_true", help="no progress bars")
    return parser.parse_args(argv)


def _tile(images: list, columns: int):
    """Tile equally-typed RGBA arrays [h, w, 4] (possibly of different sizes) on a white background."""
    height = max(image.shape[0] for image in images)
    width = max(image.shape[1] for image in images)
    rows = -(-len(images) // columns)
    grid = np.ones((rows * height, columns * width, 4), dtype=np.float32)
    for index, image in enumerate(images):
        top, left = (index // columns) * height, (index % columns) * width
        grid[top : top + image.shape[0], left : left + image.shape[1]] = image[..., :4]
    return grid


def save_digit_figure(path: Path, n: int = 6, size: int = HEX_SIZE) -> Path:
    """A PNG of hex-resampled test digits drawn as hexagons: the first ``n`` test digits, and below them the
    first digit under the six exact rotations ``rotate60(x, k)``. Each panel is drawn by
    :func:`flowkernels.hex.plot_hex`; the panels are tiled into one image."""
    image = require("matplotlib.image", "matplotlib", "the HexNet digit figure")
    digits, labels = hex_digits("test", size)[:n, 0], digit_labels("test")[:n]
    domain = hexlib.hex_domain_mask(size)
    panels = [(digits[i], f"test digit: {int(labels[i])}") for i in range(n)]
    panels += [(hexlib.rotate60(digits[0], k), f"rotate60(x, {k})") for k in range(6)]
    with tempfile.TemporaryDirectory() as folder:
        pictures = []
        for index, (picture, title) in enumerate(panels):
            file = str(Path(folder) / f"{index}.png")
            # vmin < 0: the empty cells of the hexagonal domain show light grey, the digit dark.
            style = {"cmap": "gray_r", "vmin": -0.12, "vmax": 1.0, "colorbar": False}
            hexlib.plot_hex(picture, file, mask=domain, title=title, **style)
            pictures.append(image.imread(file))
    path.parent.mkdir(parents=True, exist_ok=True)
    image.imsave(path, _tile(pictures, n), format="png")
    return path


def main(argv: Sequence[str] | None = None) -> int:
    args = parse_args(argv)
    if args.threads is not None:
        torch.set_num_threads(args.threads)
    budget = dict(QUICK if args.quick else FULL)
    if args.epochs is not None:
        budget["epochs"] = args.epochs
    if args.budget is not None:
        budget["budget"] = args.budget
    histories = []
    for lattice in args.lattices:
        _, history = train_hexnet(
            lattice,
            epochs=budget["epochs"],
            batch_size=args.batch_size,
            lr=args.lr,
            seed=args.seed,
            param_budget=budget["budget"],
            progress=not args.no_progress,
            device=args.device,
        )
        histories.append(history)

    print(
        f"\nHexNet on the digits (1497 train / 300 test; square 8x8, hexagonal {HEX_SIZE}x{HEX_SIZE} axial), "
        f"budget {budget['budget']:,} parameters, {budget['epochs']} epochs, batch {args.batch_size}, lr {args.lr}, "
        f"seed {args.seed}, torch {torch.__version__}, {torch.get_num_threads()} threads\n"
    )
    print("| lattice | width | parameters | test accuracy | rotated 60..300 deg | mirrored (6 axes) | s / epoch |")
    print("|---|---:|---:|---:|---:|---:|---:|")
    for h in histories:
        print(
            f"| {h.lattice} | {h.width} | {h.parameters:,} | {h.test_accuracy:.3f} | {h.rotation_accuracy:.3f} | "
            f"{h.mirror_accuracy:.3f} | {h.seconds_per_epoch:.2f} |"
        )
    for h in histories:
        rotations = ", ".join(f"{a:.3f}" for a in h.rotation_accuracies)
        mirrors = ", ".join(f"{a:.3f}" for a in h.mirror_accuracies)
        print(f"\n{h.lattice}: per rotation k = 1..5: {rotations}; per mirror k = 0..5: {mirrors}", end="")
        if h.rot90_accuracy is not None:
            print(f"; exact quarter turns (rot90, mean of 90/180/270): {h.rot90_accuracy:.3f}", end="")
        if h.via_hex_accuracies is not None:
            via = ", ".join(f"{a:.3f}" for a in h.via_hex_accuracies)
            print(f"; hex digits rotated exactly by 60 k, k = 0..5, then hex_to_square to 8x8: {via}", end="")
    print(
        "\n\nhex/p6/p6m: exact rotate60 / mirror of the hexagonal test images; square: bilinear rotation and "
        "reflection of the 8x8 digits by the same angles and axes (see the docstring)."
    )
    figure = save_digit_figure(args.out / "hexnet_digits.png")
    print(f"figure of hexagonal digits: {figure}")
    if not args.quick:
        payload = {
            "budget": budget,
            "batch_size": args.batch_size,
            "lr": args.lr,
            "seed": args.seed,
            "rows": [dataclasses.asdict(h) for h in histories],
        }
        print(f"written: {write_results(args.out / 'hexnet_results.json', payload, args.device)}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
