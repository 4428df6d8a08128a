"""Run every microbenchmark and print one table (same as ``flowkernels bench``).

python benchmarks/run_all.py [--quick] [--device cuda] [--no-compile] [--json PATH]
"""

import sys

from flowkernels.cli import main

if __name__ == "__main__":
    sys.exit(main(["bench", *sys.argv[1:]]))
