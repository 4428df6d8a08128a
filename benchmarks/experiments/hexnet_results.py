"""Train HexNet on the square, p4, p4m, hex, p6 and p6m lattices at one parameter budget and compare (HexaConv in
miniature), on two tasks and several seeds.

Every lattice gets the same seeds, schedule and parameter budget (free parameters: the dead corners of hexagonal
filters are not counted). Tasks (:func:`flowkernels.models.hexnet_training.task_data`): the upright digits, and crops of
six scikit-image textures rotated by random angles (a task whose labels are rotation invariant, where the
group lattices can show an advantage). Prints a markdown table per task and lattice (parameters; test accuracy,
accuracy on the test set rotated by 60..300 degrees and under the six mirrors, as mean ± standard deviation over
the seeds; seconds per training epoch) and writes a figure of hex-resampled test digits to ``--out``.

    python benchmarks/experiments/hexnet_results.py [--quick] [--epochs 15] [--budget 33500] [--seeds 0 1 2]
        [--tasks digits textures] [--out benchmarks/results/]

What the rotated / mirrored columns measure (no augmentation in training on any lattice):

* hex, p6, p6m: the 13 x 13 hexagonal test images rotated by ``rotate60(x, k)``, k = 1..5, and mirrored by
  ``mirror(rotate60(x, k))``, k = 0..5: exact permutations of lattice sites (no interpolation). p6 is
  invariant to the rotations and p6m to both by construction, so their columns equal the test accuracy.
* square, p4, p4m: the square images rotated by the same angles and reflected across the same six axes
  (0, 30, .., 150 degrees) by bilinear resampling (a square lattice has no exact 60-degree rotation), so
  their numbers also include interpolation blur and corners leaving the frame. Printed below the table:
  each run's accuracy under the exact quarter turns (``torch.rot90``), to which p4 and p4m are invariant.
* On the texture task every crop is already at a random angle, so the rotated columns there show only
  how the models take a second rotation (and its resampling), not a shift of distribution.

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
from flowkernels.benchmarks.machine import describe, write_results
from flowkernels.benchmarks.seeds import format_mean_std, mean_std, summarise_seeds
from flowkernels.models.hexnet import HEX_SIZE, LATTICES, TASKS
from flowkernels.models.hexnet_training import digit_labels, hex_digits, train_hexnet

# The default budget: 33,500 parameters, where square, hex, p6 and p6m land within 1.2% (widths 30, 34, 14,
# 10) and p4, p4m within 5% (p4m's widths step by 288 (2 w + 1) parameters); 15 epochs (30 before the
# seeds and the texture task multiplied the runs by 9), about 35 minutes for 2 tasks x 3 seeds x 6 lattices
# on 2 CPU cores.
FULL = {"epochs": 15, "budget": 33_500}
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
    parser.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2], help="one run per seed (--quick: 0)")
    parser.add_argument("--tasks", nargs="+", choices=TASKS, default=list(TASKS), help="digits and/or textures")
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


def summarise(histories: Sequence) -> list[dict]:
    """One row per (task, lattice): mean and sample standard deviation over the seeds of each accuracy
    (:func:`flowkernels.benchmarks.seeds.summarise_seeds`), and the mean accuracy under exact quarter turns
    where the lattice records one."""
    runs = [
        {
            "task": h.config["task"],
            "lattice": h.lattice,
            "seed": h.config["seed"],
            "width": h.width,
            "parameters": h.parameters,
            "test_accuracy": h.test_accuracy,
            "rotation_accuracy": h.rotation_accuracy,
            "mirror_accuracy": h.mirror_accuracy,
            "seconds_per_epoch": h.seconds_per_epoch,
        }
        for h in histories
    ]
    metrics = ["test_accuracy", "rotation_accuracy", "mirror_accuracy", "seconds_per_epoch"]
    rows = summarise_seeds(runs, ("task", "lattice"), metrics)
    for row in rows:
        rot90 = [
            h.rot90_accuracy
            for h in histories
            if (h.config["task"], h.lattice) == (row["task"], row["lattice"]) and h.rot90_accuracy is not None
        ]
        row["rot90_accuracy"] = mean_std(rot90)[0] if rot90 else None
    return rows


def _with_std(row: dict, name: str) -> str:
    return format_mean_std(row[name], row[name + "_std"])


def format_table(rows: Sequence[dict]) -> str:
    """Markdown: per task and lattice, parameters and accuracies as mean ± standard deviation over seeds."""
    lines = [
        "| task | lattice | width | parameters | test accuracy | rotated 60..300 deg | mirrored (6 axes) | s / epoch |",
        "|---|---|---:|---:|---:|---:|---:|---:|",
    ]
    for r in rows:
        lines.append(
            f"| {r['task']} | {r['lattice']} | {r['width']} | {r['parameters']:,} | {_with_std(r, 'test_accuracy')} | "
            f"{_with_std(r, 'rotation_accuracy')} | {_with_std(r, 'mirror_accuracy')} | {r['seconds_per_epoch']:.2f} |"
        )
    return "\n".join(lines)


def main(argv: Sequence[str] | None = None) -> int:
    args = parse_args(argv)
    if args.threads is not None:
        torch.set_num_threads(args.threads)
    started = describe(args.device)  # the machine and commit at the start: the code that runs
    budget = dict(QUICK if args.quick else FULL)
    if args.epochs is not None:
        budget["epochs"] = args.epochs
    if args.budget is not None:
        budget["budget"] = args.budget
    seeds = [0] if args.quick else args.seeds
    histories = []
    for task in args.tasks:
        for seed in seeds:
            for lattice in args.lattices:
                _, history = train_hexnet(
                    lattice,
                    epochs=budget["epochs"],
                    batch_size=args.batch_size,
                    lr=args.lr,
                    seed=seed,
                    param_budget=budget["budget"],
                    progress=not args.no_progress,
                    device=args.device,
                    task=task,
                )
                histories.append(history)
    summary = summarise(histories)
    print(
        f"\nHexNet at {budget['budget']:,} parameters, {budget['epochs']} epochs, batch {args.batch_size}, "
        f"lr {args.lr}, seeds {seeds} (mean ± standard deviation), torch {torch.__version__}, "
        f"{torch.get_num_threads()} threads\n"
    )
    print(format_table(summary))
    for h in histories:
        if h.rot90_accuracy is not None:
            print(f"{h.config['task']} {h.lattice} seed {h.config['seed']}: exact quarter turns {h.rot90_accuracy:.3f}")
    print(
        "\nhex/p6/p6m: exact rotate60 / mirror of the hexagonal test images; square/p4/p4m: bilinear rotation and "
        "reflection by the same angles and axes (see the docstring)."
    )
    figure = save_digit_figure(args.out / "hexnet_digits.png")
    print(f"figure of hexagonal digits: {figure}")
    if not args.quick:
        payload = {
            "budget": budget,
            "batch_size": args.batch_size,
            "lr": args.lr,
            "seeds": seeds,
            "tasks": args.tasks,
            "summary": summary,
            "rows": [dataclasses.asdict(h) for h in histories],
        }
        print(f"written: {write_results(args.out / 'hexnet_results.json', payload, machine=started)}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
