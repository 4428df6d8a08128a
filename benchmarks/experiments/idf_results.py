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

Then the ``.fkc`` files that ``flowkernels compress`` writes (the smallest of the context coder, PNG,
stored) on the held-out photographs of :mod:`flowkernels.photo_sources` (Debian's
plasma-workspace-wallpapers and scikit-learn's sample images, gray and RGB; never used while developing),
per image, with each shipped photograph flow alone beside them (trained on scikit-image's photographs,
and on those plus the development wallpapers); on images of other kinds (digits, text, line art,
a pixel-doubled image, noise); the encode and decode time of a 768x512 gray photograph; and the issue's
targets judged on those numbers (:func:`flowkernels.benchmarks.heldout.judge`).

    python benchmarks/experiments/idf_results.py [--models DIR] [--out FILE] [--quick]

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

from flowkernels import photo_sources
from flowkernels.benchmarks import heldout
from flowkernels.benchmarks.compression import compression_rows, format_compression_table
from flowkernels.benchmarks.machine import describe, write_results


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--models", type=Path, default=None, help="folder with idf_*.pt (default: shipped)")
    parser.add_argument("--out", type=Path, default=None, help="results JSON (default: benchmarks/results/...)")
    parser.add_argument("--quick", action="store_true", help="the digits only: a smoke run, not a measurement")
    args = parser.parse_args(argv)
    started = describe()  # the machine and commit at the start: the code that runs
    rows = compression_rows(args.models, photos=0 if args.quick else None)
    print(
        f"flowkernels IDF codec vs classical lossless codecs (bits per dimension; torch {torch.__version__}, "
        f"{torch.get_num_threads()} threads)\n"
    )
    print(format_compression_table(rows))
    payload: dict = {"quick": args.quick, "rows": rows}
    if not args.quick:
        payload.update(_heldout())
    out = args.out or (None if args.quick else Path("benchmarks/results/idf_results.json"))
    if out is not None:
        print(f"\nwritten: {write_results(out, payload, machine=started)}")
    return 0


def _heldout() -> dict:
    def say(line: str) -> None:
        print(f"  {line}", file=sys.stderr, flush=True)

    missing = photo_sources.missing_sources()
    for line in missing:
        print(f"held-out source missing: {line}", file=sys.stderr)
    photographs = photo_sources.heldout_photographs()
    if not photographs:
        raise SystemExit("no held-out photographs installed: " + "; ".join(missing))
    others = heldout.other_kind_rows(progress=say)
    rows = heldout.heldout_rows(photographs, flows=heldout.shipped_flows(), progress=say)
    # the speed target's 768x512 gray photograph: a held-out wallpaper downscaled by 2 instead of 4
    larger = photo_sources.load_source("plasma", downscale=2)[:1]
    speed = heldout.speed_row(larger[0]) if larger else None
    verdicts = heldout.judge(rows, others, speed)
    print("\n.fkc files (flowkernels compress) on held-out photographs, bits per subpixel\n")
    print(heldout.format_heldout_table(rows))
    print("\nimages of other kinds\n")
    print(heldout.format_heldout_table(others, means=False))
    print()
    for name, verdict in verdicts.items():
        print(f"{'met    ' if verdict['met'] else 'NOT met'}  {name}")
    sources = {
        name: {
            "package": source.package,
            "licence": source.licence,
            "role": source.role,
            "photographs": sum(p.source == name for p in photographs)
            if source.role == "held-out"
            else len(photo_sources.source_files(name)),
        }
        for name, source in photo_sources.SOURCES.items()
    }
    return {
        "heldout": rows,
        "other_kinds": others,
        "speed": speed,
        "verdicts": verdicts,
        "sources": sources,
        "missing_sources": missing,
    }


if __name__ == "__main__":
    sys.exit(main())
