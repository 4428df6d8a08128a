"""Benchmark the rans family (encode and decode throughput vs the reference and constriction).

    python benchmarks/bench_rans.py [--quick] [--device cuda] [--no-compile] [--json PATH]

The cases live in flowkernels/benchmarks/rans.py so that the installed
``flowkernels bench rans`` command runs the same thing.
"""

import sys

from flowkernels.cli import main

if __name__ == "__main__":
    sys.exit(main(["bench", "rans", *sys.argv[1:]]))
