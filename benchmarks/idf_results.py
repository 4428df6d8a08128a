"""Lossless compression with the shipped IDF models against classical codecs, on held-out data.

For each data set: the model's ideal code length (its test bits per dimension), what the codec
actually writes (the whole ``.fkc`` file), and PNG, WebP lossless, JPEG-XL lossless and JPEG-LS
(imagecodecs), plus lzma. Every code is decoded again and checked to give the same pixels.

* digits (scikit-learn, 300 test images of 8x8, 17 levels): each image coded on its own, and the
  whole test set as one stream (the codec's ``stream=True``; the classical codecs get one mosaic
  image of all digits, lzma the raw bytes of all of them).
* held-out photographs (scikit-image's astronaut, camera, coffee; never seen in training), 8-bit
  grayscale with the ``photos-gray`` model and RGB with ``photos-rgb``.

Also the codec's throughput (pixels per second) and the share of it spent in rANS coding.

    python benchmarks/idf_results.py [--models DIR] [--out FILE] [--quick]

``--models``: default the models shipped in flowkernels/pretrained. Writes the rows with the machine to
``--out`` (default ``benchmarks/results/idf_results.json``), which the README's table is rendered from.
``--quick``: the digits only, written nowhere unless ``--out`` is given (a smoke run for CI).
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Sequence
from pathlib import Path

import torch

from flowkernels.benchmarks.compression import compression_rows, format_compression_table
from flowkernels.benchmarks.machine import write_results


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--models", type=Path, default=None, help="folder with idf_*.pt (default: shipped)")
    parser.add_argument("--out", type=Path, default=None, help="results JSON (default: benchmarks/results/...)")
    parser.add_argument("--quick", action="store_true", help="the digits only: a smoke run, not a measurement")
    args = parser.parse_args(argv)
    rows = compression_rows(args.models, photos=0 if args.quick else None)
    print(
        f"flowkernels IDF codec vs classical lossless codecs (bits per dimension; torch {torch.__version__}, "
        f"{torch.get_num_threads()} threads)\n"
    )
    print(format_compression_table(rows))
    out = args.out or (None if args.quick else Path("benchmarks/results/idf_results.json"))
    if out is not None:
        print(f"\nwritten: {write_results(out, {'quick': args.quick, 'rows': rows})}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
