"""Predictive sampling (arXiv:2002.09928): ARM calls and wall-clock of fixed-point iteration and learned
forecasting against sequential sampling, with the samples checked to be identical.

Four settings, each with a gated PixelCNN trained here (seeded) and forecasting modules (horizon 8) trained
by KL to the frozen ARM; the ARMs all have d = 64 dimensions (8x8, raster order):

* ``digits-binary``: the scikit-learn digits binarised (``load_digits(data_levels=2)``), a categorical head.
* ``digits``: the digits at their 17 grey levels, a categorical head.
* ``photos``: 8x8 patches (8-bit grey) of the scikit-image photographs, a discretized logistic mixture head.
* ``vq-latents``: the 8x8 code maps (32 codes) of a VQ autoencoder trained on 32x32 grey patches of the
  same photographs, a categorical head over an input embedding; samples are decoded to 32x32 images.

For each, one batch of noise drives ``sequential``, ``fixed_point`` and ``forecast`` with T = 1, 4, 8
(``flowkernels.sampling.compare_samplers``: same process, same noise, warm-up first, best of ``--repeats``).
Prints a markdown table, writes it with the raw numbers to ``--out/predictive_sampling.{md,json}``, and a PNG
grid of each setting's samples to ``--out/predictive_sampling_<setting>.png`` (``--out`` defaults to
benchmarks/results, and with ``--quick`` to a folder in the temporary directory).

    python benchmarks/experiments/predictive_sampling_results.py [--quick] [--out benchmarks/results]
        [--settings digits ...]

``--quick`` is a smoke run (tiny models, a few seconds of training each); its numbers mean nothing.
"""

from __future__ import annotations

import argparse
import sys
import tempfile
import time
from collections.abc import Sequence
from pathlib import Path

import torch

from flowkernels.benchmarks.machine import write_results
from flowkernels.data import DIGITS_LEVELS, PHOTO_LEVELS, load_digits, load_photo_patches
from flowkernels.models.arm_training import train_forecaster, train_pixelcnn, train_vq_autoencoder
from flowkernels.models.distributions import Categorical, DiscretizedLogisticMixture
from flowkernels.models.figures import save_image_grid
from flowkernels.models.training import evaluating
from flowkernels.sampling import compare_samplers, draw_noise

SETTINGS = ("digits-binary", "digits", "photos", "vq-latents")
HORIZONS = (1, 4, 8)

# The default budget: about 12 minutes for all four settings on 2 idle cores.
FULL = {
    "arm": {"hidden": 64, "layers": 5},
    "arm_epochs": {"digits-binary": 20, "digits": 20, "photos": 2, "vq-latents": 5},
    "forecast_epochs": {"digits-binary": 10, "digits": 10, "photos": 1, "vq-latents": 3},
    "forecast_hidden": 64,
    "photo_train_patches": 24_000,
    "vq": {"epochs": 5, "codes": 32, "dim": 16, "hidden": 32},
    "batch": 36,
}
QUICK = {
    "arm": {"hidden": 8, "layers": 1},
    "arm_epochs": dict.fromkeys(SETTINGS, 1),
    "forecast_epochs": dict.fromkeys(SETTINGS, 1),
    "forecast_hidden": 8,
    "photo_train_patches": 1_000,
    "vq": {"epochs": 1, "codes": 8, "dim": 4, "hidden": 8},
    "batch": 4,
}


def parse_args(argv: Sequence[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument(
        "--out",
        type=Path,
        default=None,
        help="folder for the table and grids (default: benchmarks/results; "
        "with --quick a folder in the temporary directory, so that a smoke run never overwrites the results)",
    )
    parser.add_argument("--quick", action="store_true", help="tiny budget: a smoke run, not a measurement")
    parser.add_argument("--settings", nargs="+", choices=SETTINGS, default=list(SETTINGS))
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--threads", type=int, default=2, help="torch threads (the issue asks for 2 cores)")
    parser.add_argument("--repeats", type=int, default=2, help="timed runs per sampler (the best counts)")
    parser.add_argument("--no-progress", action="store_true", help="no progress bars")
    args = parser.parse_args(argv)
    if args.out is None:
        quick_out = Path(tempfile.gettempdir()) / "flowkernels_predictive_sampling_quick"
        args.out = quick_out if args.quick else Path("benchmarks/results")
    return args


def subset(data: torch.Tensor, size: int, seed: int) -> torch.Tensor:
    """``size`` examples of ``data`` chosen by a seeded permutation (all of them if it has fewer)."""
    if size >= len(data):
        return data
    return data[torch.randperm(len(data), generator=torch.Generator().manual_seed(seed))[:size]]


def setting_data(name: str, budget: dict, args: argparse.Namespace, progress: bool):
    """``(train, test, distribution, arm options, decode, data_levels of the images, colour map, extra report)``."""
    if name in ("digits-binary", "digits"):
        data_levels = 2 if name == "digits-binary" else DIGITS_LEVELS
        train, test = load_digits("train", data_levels=data_levels), load_digits("test", data_levels=data_levels)
        return train, test, Categorical(data_levels), {}, None, data_levels, "gray_r", {}
    if name == "photos":
        train = subset(load_photo_patches("train", patch_size=8), budget["photo_train_patches"], args.seed)
        test = subset(load_photo_patches("test", patch_size=8), 2_000, args.seed)
        return train, test, DiscretizedLogisticMixture(PHOTO_LEVELS, 5), {}, None, PHOTO_LEVELS, "gray", {}
    # vq-latents: an autoencoder on 32x32 patches, then its 8x8 code maps are the data of the ARM.
    images_train = load_photo_patches("train", patch_size=32)
    images_test = load_photo_patches("test", patch_size=32)
    if args.quick:
        images_train, images_test = subset(images_train, 512, args.seed), subset(images_test, 128, args.seed)
    vq_options = dict(budget["vq"])
    autoencoder, vq_history = train_vq_autoencoder(
        images_train, images_test, seed=args.seed, progress=progress, desc="vq-autoencoder", **vq_options
    )
    with evaluating(autoencoder):
        train, test = autoencoder.encode(images_train), autoencoder.encode(images_test)
    used = int(torch.unique(train).numel())
    extra = {
        "autoencoder_reconstruction_bpd": vq_history.final_test_bpd,
        "autoencoder_codes_used": used,
        "autoencoder_train_time_s": vq_history.train_time_s,
    }
    distribution = Categorical(autoencoder.codes)
    return train, test, distribution, {"embedding": 16}, autoencoder.decode, PHOTO_LEVELS, "gray", extra


def run_setting(name: str, budget: dict, args: argparse.Namespace) -> dict:
    progress = not args.no_progress
    train, test, distribution, arm_options, decode, data_levels, cmap, extra = setting_data(
        name, budget, args, progress
    )
    arm, arm_history = train_pixelcnn(
        train,
        test,
        distribution,
        epochs=budget["arm_epochs"][name],
        seed=args.seed,
        progress=progress,
        desc=f"arm[{name}]",
        **budget["arm"],
        **arm_options,
    )
    forecaster, forecast_history = train_forecaster(
        arm,
        train,
        test,
        horizon=max(HORIZONS),
        epochs=budget["forecast_epochs"][name],
        hidden=budget["forecast_hidden"],
        seed=args.seed,
        progress=progress,
        desc=f"forecast[{name}]",
    )
    noise = draw_noise(arm, budget["batch"], torch.Generator().manual_seed(args.seed))
    runs = compare_samplers(arm, noise, forecaster=forecaster, horizons=HORIZONS, repeats=args.repeats)
    samples = runs[0].result.samples
    if decode is not None:
        with evaluating(arm):
            samples = decode(samples)
    grid = save_image_grid(samples, args.out / f"predictive_sampling_{name}.png", data_levels, cmap=cmap)
    sequential_time = runs[0].seconds
    rows = [
        {
            "sampler": run.name,
            "calls": run.result.calls,
            "calls_percent": 100 * run.result.call_fraction,
            "mean_calls_per_example_percent": 100 * run.result.mean_call_fraction,
            "seconds": run.seconds,
            "speedup": sequential_time / run.seconds,
            "identical": run.identical,
        }
        for run in runs
    ]
    return {
        "setting": name,
        "dims": arm.dims,
        "data_levels": distribution.data_levels,
        "distribution": repr(distribution),
        "train_size": len(train),
        "arm_test_bpd": arm_history.final_test_bpd,
        "arm_train_time_s": arm_history.train_time_s,
        "forecast_test_kl_bits": forecast_history.final_test_bpd,
        "forecast_train_time_s": forecast_history.train_time_s,
        "grid": str(grid),
        "rows": rows,
        **extra,
    }


def markdown(results: list[dict], batch: int) -> str:
    lines = [
        f"| setting | sampler | ARM calls, batch of {batch} (% of sequential) | mean calls per example (% of d) "
        "| time (s) | speed-up | samples identical |",
        "|---|---|---:|---:|---:|---:|:---:|",
    ]
    for result in results:
        for row in result["rows"]:
            lines.append(
                f"| {result['setting']} (d={result['dims']}) | {row['sampler']} | {row['calls']} "
                f"({row['calls_percent']:.1f}%) | {row['mean_calls_per_example_percent']:.1f}% | {row['seconds']:.3f} "
                f"| {row['speedup']:.2f}x | {'yes' if row['identical'] else 'NO'} |"
            )
    lines += [
        "",
        "| setting | ARM test bits/dim | forecast test KL (bits, 8 modules) | train time ARM + forecast (s) |",
    ]
    lines.append("|---|---:|---:|---:|")
    for result in results:
        train_time = result["arm_train_time_s"] + result["forecast_train_time_s"]
        lines.append(
            f"| {result['setting']} | {result['arm_test_bpd']:.3f} | {result['forecast_test_kl_bits']:.3f} "
            f"| {train_time:.0f} |"
        )
    return "\n".join(lines)


def main(argv: Sequence[str] | None = None) -> int:
    args = parse_args(argv)
    torch.set_num_threads(args.threads)
    budget = QUICK if args.quick else FULL
    start = time.perf_counter()
    results = [run_setting(name, budget, args) for name in args.settings]
    total = time.perf_counter() - start
    header = (
        f"Predictive sampling, {'QUICK smoke run' if args.quick else 'full budget'}, seed {args.seed}, "
        f"batch {budget['batch']}, torch {torch.__version__}, {torch.get_num_threads()} threads, {total:.0f} s in all"
    )
    table = markdown(results, budget["batch"])
    print(header)
    print(table)
    for result in results:
        if "autoencoder_reconstruction_bpd" in result:
            print(
                f"{result['setting']}: VQ autoencoder reconstruction {result['autoencoder_reconstruction_bpd']:.3f} "
                f"bits/dim given the codes, {result['autoencoder_codes_used']} codes used"
            )
    args.out.mkdir(parents=True, exist_ok=True)
    (args.out / "predictive_sampling.md").write_text(f"{header}\n\n{table}\n")
    payload = {"header": header, "quick": args.quick, "seed": args.seed, "budget": budget, "results": results}
    write_results(args.out / "predictive_sampling.json", payload)
    print(f"table and sample grids in {args.out}/")
    return 0 if all(row["identical"] for result in results for row in result["rows"]) else 1


if __name__ == "__main__":
    sys.exit(main())
