"""Float vs integer IDF models: what integer-only networks cost and how fast they code.

For each shipped model (digits, photos-gray, photos-rgb) and its float original (``*-float``):

* bits/dim on the model's whole test split (``flowkernels.data``; photographs as 32x32 patches),
  the number quantization-aware training must keep within 1% of the float model's;
* the codec on the same held-out images in the same run, float and integer alternating (best of
  ``--rounds``): coded bits/dim (whole files), encode and decode megapixels per second, and the share
  of the codec's time spent in rANS. The digits are the 300 test digits as one stream; the
  photographs are scikit-image's held-out astronaut, camera and coffee.

Writes ``benchmarks/results/idf_integer.json`` and ``.md`` (the README's table comes from them).

    python benchmarks/experiments/idf_integer_results.py [--rounds 2] [--out benchmarks/results]
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from collections.abc import Sequence
from pathlib import Path

import torch

from flowkernels import pretrained
from flowkernels.benchmarks import machine
from flowkernels.benchmarks.compression import code
from flowkernels.codec import LosslessImageCodec
from flowkernels.codec.registry import load_checkpoint
from flowkernels.data import load_dataset, load_digits, load_photos

MODELS = {
    "digits": ("digits", {}),
    "photos-gray": ("photos-gray", {"patch_size": 32}),
    "photos-rgb": ("photos-rgb", {"patch_size": 32}),
}


def coding_images(name: str) -> tuple[list[torch.Tensor], bool]:
    """The held-out images each model codes, and whether they are one stream."""
    if name == "digits":
        return [load_digits("test").to(torch.uint8)], True
    return [image[None] for image in load_photos("test", color=name == "photos-rgb")], False


def measure(name: str, rounds: int) -> dict:
    dataset, kwargs = MODELS[name]
    models = {
        "float": load_checkpoint(pretrained.checkpoint_path(f"{name}-float")),
        "integer": load_checkpoint(pretrained.checkpoint_path(name)),
    }
    test = load_dataset(dataset, "test", **kwargs).float()
    row: dict = {"model": name, "test_images": int(test.shape[0])}
    for kind, model in models.items():
        row[f"{kind}_test_bpd"] = model.evaluate_bpd(test)
    row["test_bpd_change"] = row["integer_test_bpd"] / row["float_test_bpd"] - 1
    images, stream = coding_images(name)
    pixels = sum(image.numel() for image in images)
    best: dict[str, dict] = {}
    for _ in range(rounds):
        for kind, model in models.items():  # alternating, so that both see the same machine state
            codec = LosslessImageCodec(model)
            results = [code(codec, image, stream=stream) for image in images]
            weights = [image.numel() / pixels for image in images]
            total = {
                "coded_bpd": sum(w * r["coded"] for w, r in zip(weights, results, strict=True)),
                "encode_s": sum(image.numel() / r["encode_px_s"] for image, r in zip(images, results, strict=True)),
                "decode_s": sum(image.numel() / r["decode_px_s"] for image, r in zip(images, results, strict=True)),
                "rans_share": sum(w * r["rans_share"] for w, r in zip(weights, results, strict=True)),
            }
            previous = best.get(kind)
            if previous is None or total["encode_s"] + total["decode_s"] < previous["encode_s"] + previous["decode_s"]:
                best[kind] = total
    row["coded_pixels"] = pixels
    for kind, total in best.items():
        row[f"{kind}_coded_bpd"] = total["coded_bpd"]
        row[f"{kind}_encode_mpx_s"] = pixels / total["encode_s"] / 1e6
        row[f"{kind}_decode_mpx_s"] = pixels / total["decode_s"] / 1e6
        row[f"{kind}_rans_share"] = total["rans_share"]
    return row


def format_table(rows: Sequence[dict]) -> str:
    columns = [
        "model",
        "test bits/dim float",
        "integer",
        "change",
        "coded bits/dim float",
        "integer",
        "encode Mpx/s float",
        "integer",
        "decode Mpx/s float",
        "integer",
        "rANS share float",
        "integer",
    ]
    lines = ["| " + " | ".join(columns) + " |", "|---|" + "---:|" * (len(columns) - 1)]
    for r in rows:
        cells = [
            f"{r['float_test_bpd']:.4f}",
            f"{r['integer_test_bpd']:.4f}",
            f"{100 * r['test_bpd_change']:+.2f}%",
            f"{r['float_coded_bpd']:.3f}",
            f"{r['integer_coded_bpd']:.3f}",
            f"{r['float_encode_mpx_s']:.3f}",
            f"{r['integer_encode_mpx_s']:.3f}",
            f"{r['float_decode_mpx_s']:.3f}",
            f"{r['integer_decode_mpx_s']:.3f}",
            f"{100 * r['float_rans_share']:.1f}%",
            f"{100 * r['integer_rans_share']:.1f}%",
        ]
        lines.append(f"| {r['model']} | " + " | ".join(cells) + " |")
    return "\n".join(lines)


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--rounds", type=int, default=2, help="codec timings: best of this many rounds")
    parser.add_argument("--out", type=Path, default=Path(__file__).resolve().parent / "results")
    parser.add_argument("--models", nargs="*", default=list(MODELS), choices=list(MODELS))
    args = parser.parse_args(argv)
    start = time.perf_counter()
    rows = []
    for name in args.models:
        rows.append(measure(name, args.rounds))
        print(format_table(rows[-1:]).splitlines()[-1], flush=True)
    info = machine.describe()
    header = f"Float vs integer IDF models, {machine.summary(info)}, {time.perf_counter() - start:.0f} s in all"
    table = format_table(rows)
    args.out.mkdir(parents=True, exist_ok=True)
    (args.out / "idf_integer.json").write_text(
        json.dumps({"header": header, "machine": info, "rounds": args.rounds, "rows": rows}, indent=2) + "\n"
    )
    (args.out / "idf_integer.md").write_text(f"{header}\n\n{table}\n")
    print(f"\n{header}\n\n{table}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
