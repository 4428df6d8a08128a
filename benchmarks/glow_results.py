"""Train Glow with each invertible convolution (1x1, emerging, periodic) on the digits and compare.

Every kind gets the same seed and budget. Prints a markdown table (parameters, test bits/dim with uniform
dequantization, training time, time to draw 64 samples) and writes a sample grid per kind to ``--out``.

    python benchmarks/glow_results.py [--quick] [--out benchmarks/results/] [--epochs 60] [--kinds 1x1 emerging]

``--quick`` is a seconds-long smoke run (tiny model, one epoch) for CI; its numbers mean nothing.
"""

from __future__ import annotations

import argparse
import sys
import time
from collections.abc import Sequence
from pathlib import Path

import torch

from flowkernels.benchmarks.machine import write_results
from flowkernels.models.glow import CONV_KINDS, save_sample_grid, train_glow

# The default budget: about half a minute per kind on 2 CPU cores (emerging somewhat more).
FULL = {"epochs": 60, "steps_per_level": 4, "hidden": 64}
QUICK = {"epochs": 1, "steps_per_level": 1, "hidden": 8}


def parse_args(argv: Sequence[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--out", type=Path, default=Path("benchmarks/results"), help="folder for the sample grids")
    parser.add_argument("--quick", action="store_true", help="tiny budget: a smoke run, not a measurement")
    parser.add_argument("--kinds", nargs="+", choices=CONV_KINDS, default=list(CONV_KINDS), help="convs to train")
    parser.add_argument("--epochs", type=int, default=None, help="override the budget's number of epochs")
    parser.add_argument("--batch-size", type=int, default=64)
    parser.add_argument("--lr", type=float, default=2e-3)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--no-progress", action="store_true", help="no progress bars")
    return parser.parse_args(argv)


def main(argv: Sequence[str] | None = None) -> int:
    args = parse_args(argv)
    budget = dict(QUICK if args.quick else FULL)
    if args.epochs is not None:
        budget["epochs"] = args.epochs
    rows = []
    for kind in args.kinds:
        model, history = train_glow(
            kind,
            batch_size=args.batch_size,
            lr=args.lr,
            seed=args.seed,
            device=args.device,
            progress=not args.no_progress,
            **budget,
        )
        # train_glow returns the model in eval mode, as sampling runs (the 1x1 convs cache their inverses).
        start = time.perf_counter()
        model.sample(64, temperature=0.7, generator=torch.Generator().manual_seed(args.seed))
        sample_time = time.perf_counter() - start
        save_sample_grid(model, args.out / f"glow_{kind}_samples.png", n=64, seed=args.seed)
        parameters = sum(p.numel() for p in model.parameters())
        rows.append(
            {
                "conv": kind,
                "parameters": parameters,
                "test_bpd": history.final_test_bpd,
                "train_time_s": history.train_time_s,
                "sample_64_s": sample_time,
            }
        )

    print(
        f"Glow on the digits (8x8, 17 levels; 1497 train / 300 test), {budget}, batch {args.batch_size}, "
        f"lr {args.lr}, seed {args.seed}, torch {torch.__version__}, {torch.get_num_threads()} threads"
    )
    print("| conv | parameters | test bits/dim | train time (s) | sampling 64 (s) |")
    print("|---|---:|---:|---:|---:|")
    for row in rows:
        print(
            f"| {row['conv']} | {row['parameters']:,} | {row['test_bpd']:.3f} | {row['train_time_s']:.1f} | "
            f"{row['sample_64_s']:.3f} |"
        )
    print(f"sample grids in {args.out}/")
    if not args.quick:
        payload = {"budget": budget, "batch_size": args.batch_size, "lr": args.lr, "seed": args.seed, "rows": rows}
        print(f"written: {write_results(args.out / 'glow_results.json', payload, args.device)}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
