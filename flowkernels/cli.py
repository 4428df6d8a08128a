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


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="flowkernels", description=__doc__)
    sub = parser.add_subparsers(dest="command", required=True)
    demo = sub.add_parser("demo", help="the main demonstration: runs the microbenchmarks and prints their table")
    _add_bench_arguments(demo)
    demo.set_defaults(handler=_demo)
    bench = sub.add_parser("bench", help="microbenchmarks: kernel vs reference vs peers, with targets")
    _add_bench_arguments(bench)
    bench.set_defaults(handler=_bench)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    return args.handler(args)


if __name__ == "__main__":
    sys.exit(main())
