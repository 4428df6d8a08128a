"""Benchmark the coupling family (round_ste, integer_coupling, discretized_logistic_logp).

    python benchmarks/bench_coupling.py [--quick] [--device cuda] [--no-compile] [--json PATH]

The cases live in flowkernels/benchmarks/coupling.py so that the installed
``flowkernels bench coupling`` command runs the same thing.
"""

import sys

from flowkernels.cli import main

if __name__ == "__main__":
    sys.exit(main(["bench", "coupling", *sys.argv[1:]]))
