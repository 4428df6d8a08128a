"""Benchmark the arconv family (the inverse of the autoregressive convolution).

    python benchmarks/bench_arconv.py [--quick] [--device cuda] [--no-compile] [--json PATH]

The cases live in flowkernels/benchmarks/arconv.py so that the installed
``flowkernels bench arconv`` command runs the same thing.
"""

import sys

from flowkernels.cli import main

if __name__ == "__main__":
    sys.exit(main(["bench", "arconv", *sys.argv[1:]]))
