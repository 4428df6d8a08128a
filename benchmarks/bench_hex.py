"""Benchmark the hex family (planar and group hexagonal convolutions, with hexagdly as a peer).

    python benchmarks/bench_hex.py [--quick] [--device cuda] [--no-compile] [--json PATH]

The cases live in flowkernels/benchmarks/hex.py so that the installed
``flowkernels bench hex`` command runs the same thing.
"""

import sys

from flowkernels.cli import main

if __name__ == "__main__":
    sys.exit(main(["bench", "hex", *sys.argv[1:]]))
