"""Train Glow with each invertible convolution (1x1, emerging, periodic) on the digits and compare, over seeds.

Every kind gets the same seeds and budget. Prints a markdown table per kind (parameters, test bits/dim with
uniform dequantization, training time, time to draw 64 samples; each as mean ± sample standard deviation over
the seeds) and writes a sample grid per kind (first seed's model) to ``--out``. The results file keeps one
row per run (``runs``, with its ``seed``) and one per kind (``summary``, from
:func:`flowkernels.benchmarks.seeds.summarise_seeds`).

    python benchmarks/experiments/glow_results.py [--quick] [--out benchmarks/results/] [--epochs 60]
        [--kinds 1x1 emerging]
        [--seeds 0 1 2]

``--quick`` is a seconds-long smoke run (tiny model, one epoch, seed 0) for CI; its numbers mean nothing.
"""

from __future__ import annotations

import argparse
import sys
import time
from collections.abc import Sequence
from pathlib import Path

import torch

from flowkernels.benchmarks.machine import describe, write_results
from flowkernels.benchmarks.seeds import format_mean_std, summarise_seeds
from flowkernels.models.glow import CONV_KINDS
from flowkernels.models.glow_training import save_sample_grid, train_glow

# The default budget: about half a minute per kind and seed on 2 CPU cores (emerging somewhat more), so about
# 8 minutes for 3 kinds x 3 seeds.
FULL = {"epochs": 60, "steps_per_scale": 4, "hidden": 64}
QUICK = {"epochs": 1, "steps_per_scale": 1, "hidden": 8}


def parse_args(argv: Sequence[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--out", type=Path, default=Path("benchmarks/results"), help="folder for the sample grids")
    parser.add_argument("--quick", action="store_true", help="tiny budget: a smoke run, not a measurement")
    parser.add_argument("--kinds", nargs="+", choices=CONV_KINDS, default=list(CONV_KINDS), help="convs to train")
    parser.add_argument("--epochs", type=int, default=None, help="override the budget's number of epochs")
    parser.add_argument("--batch-size", type=int, default=64)
    parser.add_argument("--lr", type=float, default=2e-3)
    parser.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2], help="one run per seed (--quick: 0)")
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--no-progress", action="store_true", help="no progress bars")
    return parser.parse_args(argv)


METRICS = ("test_bpd", "train_time_s", "sample_64_s")


def format_table(summary: Sequence[dict]) -> str:
    """Markdown: per conv, parameters and each metric as mean ± standard deviation over the seeds."""
    lines = [
        "| conv | parameters | test bits/dim | train time (s) | sampling 64 (s) |",
        "|---|---:|---:|---:|---:|",
    ]
    for r in summary:
        lines.append(
            f"| {r['conv']} | {r['parameters']:,} | {format_mean_std(r['test_bpd'], r['test_bpd_std'])} | "
            f"{format_mean_std(r['train_time_s'], r['train_time_s_std'], 1)} | "
            f"{format_mean_std(r['sample_64_s'], r['sample_64_s_std'])} |"
        )
    return "\n".join(lines)


def main(argv: Sequence[str] | None = None) -> int:
    args = parse_args(argv)
    started = describe(args.device)  # the machine and commit at the start: the code that runs
    budget = dict(QUICK if args.quick else FULL)
    if args.epochs is not None:
        budget["epochs"] = args.epochs
    seeds = [0] if args.quick else args.seeds
    runs = []
    for index, seed in enumerate(seeds):
        for kind in args.kinds:
            model, history = train_glow(
                kind,
                batch_size=args.batch_size,
                lr=args.lr,
                seed=seed,
                device=args.device,
                progress=not args.no_progress,
                **budget,
            )
            # train_glow returns the model in eval mode, as sampling runs (the 1x1 convs cache their inverses).
            start = time.perf_counter()
            model.sample(64, temperature=0.7, generator=torch.Generator().manual_seed(seed))
            sample_time = time.perf_counter() - start
            if index == 0:  # the sample grids show the first seed's models
                save_sample_grid(model, args.out / f"glow_{kind}_samples.png", n=64, seed=seed)
            runs.append(
                {
                    "conv": kind,
                    "seed": seed,
                    "parameters": sum(p.numel() for p in model.parameters()),
                    "test_bpd": history.final_test_bpd,
                    "train_time_s": history.train_time_s,
                    "sample_64_s": sample_time,
                }
            )
    summary = summarise_seeds(runs, "conv", METRICS)

    print(
        f"Glow on the digits (8x8, 17 levels; 1497 train / 300 test), {budget}, batch {args.batch_size}, "
        f"lr {args.lr}, seeds {seeds} (mean ± standard deviation), torch {torch.__version__}, "
        f"{torch.get_num_threads()} threads"
    )
    print(format_table(summary))
    print(f"sample grids (seed {seeds[0]}) in {args.out}/")
    if not args.quick:
        payload = {
            "budget": budget,
            "batch_size": args.batch_size,
            "lr": args.lr,
            "seeds": seeds,
            "summary": summary,
            "runs": runs,
        }
        print(f"written: {write_results(args.out / 'glow_results.json', payload, machine=started)}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
