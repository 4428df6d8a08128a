"""Benchmark the intconv family (int_conv2d against its int64 reference and float conv2d).

    python benchmarks/bench_intconv.py [--quick] [--device cuda] [--json PATH]

The cases live in flowkernels/benchmarks/intconv.py so that the installed
``flowkernels bench intconv`` command runs the same thing.
"""

import sys

from flowkernels.cli import main

if __name__ == "__main__":
    sys.exit(main(["bench", "intconv", *sys.argv[1:]]))
