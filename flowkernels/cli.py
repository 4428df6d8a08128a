"""The ``flowkernels`` command line."""

from __future__ import annotations

import argparse
import sys
from collections.abc import Sequence

import torch


def _add_bench_arguments(parser: argparse.ArgumentParser) -> None:
    from .benchmarks import SUITES

    parser.add_argument(
        "families",
        nargs="*",
        metavar="FAMILY",
        help=f"kernel families to benchmark (default: all of {', '.join(sorted(SUITES))})",
    )
    parser.add_argument("--quick", action="store_true", help="tiny shapes and short timings (a smoke run)")
    parser.add_argument("--device", default="cpu", help="device to benchmark on (cpu or cuda)")
    parser.add_argument(
        "--no-compile", action="store_true", help="skip the torch.compile peers (they take a minute to compile)"
    )
    parser.add_argument("--min-run-time", type=float, default=None, help="seconds of timing per contender and case")
    parser.add_argument("--json", metavar="PATH", help="also write the results as JSON to PATH")


def _bench(args: argparse.Namespace) -> int:
    from . import benchmarks

    if args.device.startswith("cuda") and not (torch.cuda.is_available() and _has_cuda_kernels()):
        print("flowkernels bench: --device cuda needs a GPU and a build with CUDA kernels", file=sys.stderr)
        return 2
    results = benchmarks.run(
        args.families or None,
        quick=args.quick,
        device=args.device,
        compile_peers=False if args.no_compile else None,
        min_run_time=args.min_run_time,
    )
    print(
        f"flowkernels microbenchmarks: torch {torch.__version__}, device {args.device}, "
        f"{torch.get_num_threads()} threads; ratio = reference time / kernel time"
    )
    print(benchmarks.format_table(results))
    if args.json:
        with open(args.json, "w") as handle:
            handle.write(benchmarks.results_to_json(results))
        print(f"wrote {args.json}")
    return 0


def _has_cuda_kernels() -> bool:
    import flowkernels

    return flowkernels.has_cuda_kernels()


def _demo(args: argparse.Namespace) -> int:
    print(
        "flowkernels demo: the kernels against their pure-PyTorch references "
        "(the compression demo arrives with the IDF codec)\n"
    )
    return _bench(args)


def _train_glow(args: argparse.Namespace) -> int:
    from pathlib import Path

    from .models.glow import save_sample_grid, train_glow

    model, history = train_glow(
        args.conv,
        epochs=args.epochs,
        batch_size=args.batch_size,
        lr=args.lr,
        seed=args.seed,
        device=args.device,
        steps_per_level=args.steps_per_level,
        hidden=args.hidden,
        kernel_size=args.kernel_size,
        progress=not args.no_progress,
    )
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    checkpoint = out / f"glow_{args.conv}.pt"
    # Plain tensors and a dict of numbers and strings: loadable with torch.load(..., weights_only=True).
    torch.save({"config": history.config, "state_dict": model.state_dict()}, checkpoint)
    grid = out / f"glow_{args.conv}_samples.png"
    save_sample_grid(model, grid, n=64, seed=args.seed)
    print(
        f"glow[{args.conv}]: test {history.final_test_bpd:.3f} bits/dim after {args.epochs} epochs "
        f"({history.train_time_s:.1f} s); wrote {checkpoint} and {grid}"
    )
    return 0


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="flowkernels", description=__doc__)
    sub = parser.add_subparsers(dest="command", required=True)
    demo = sub.add_parser("demo", help="the main demonstration: runs the microbenchmarks and prints their table")
    _add_bench_arguments(demo)
    demo.set_defaults(handler=_demo)
    bench = sub.add_parser("bench", help="microbenchmarks: kernel vs reference vs peers, with targets")
    _add_bench_arguments(bench)
    bench.set_defaults(handler=_bench)
    glow = sub.add_parser(
        "train-glow",
        help="train a Glow (1x1, emerging or periodic convolutions) on the digits; save it and a sample grid",
    )
    from .models.glow import CONV_KINDS

    glow.add_argument("--conv", choices=CONV_KINDS, default="emerging")
    glow.add_argument("--epochs", type=int, default=60)
    glow.add_argument("--batch-size", type=int, default=64)
    glow.add_argument("--lr", type=float, default=2e-3)
    glow.add_argument("--seed", type=int, default=0)
    glow.add_argument("--steps-per-level", type=int, default=4)
    glow.add_argument("--hidden", type=int, default=64, help="channels of the coupling networks")
    glow.add_argument("--kernel-size", type=int, default=3, help="of the emerging / periodic convolutions")
    glow.add_argument("--device", default="cpu")
    glow.add_argument("--out", default="glow-run", help="folder for the checkpoint and the sample grid")
    glow.add_argument("--no-progress", action="store_true", help="no progress bar")
    glow.set_defaults(handler=_train_glow)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    return args.handler(args)


if __name__ == "__main__":
    sys.exit(main())
