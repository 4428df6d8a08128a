"""Benchmark the context family (encode and decode throughput vs the specification, JPEG-LS and PNG).

    python benchmarks/bench_context.py [--quick] [--device cuda] [--no-compile] [--json PATH]

The cases live in flowkernels/benchmarks/context.py so that the installed
``flowkernels bench context`` command runs the same thing.
"""

import sys

from flowkernels.cli import main

if __name__ == "__main__":
    sys.exit(main(["bench", "context", *sys.argv[1:]]))
