"""Predictive sampling (arXiv:2002.09928): ARM calls and wall-clock of fixed-point iteration and learned
forecasting against sequential sampling, with the samples checked to be identical, over several seeds.

Five settings, each with a gated PixelCNN trained here (seeded) and two sets of forecasting modules (horizon 8):
``data``, trained by KL to the frozen ARM on the training data (teacher forcing), and ``draws``, trained on the
ARM's own samples and scored against its draws (``train_forecaster(objective="draws")``), which is what
sampling with the same noise checks a forecast against.

* ``digits-binary``: the scikit-learn digits binarised (``load_digits(data_levels=2)``), a categorical head; d = 64.
* ``digits``: the digits at their 17 grey levels, a categorical head; d = 64.
* ``photos``: 8x8 patches (8-bit grey) of the scikit-image photographs, a discretized logistic mixture head.
* ``photos-rgb``: 8x8 RGB patches of the colour photographs, planes in order (R, G given R, B given both),
  a logistic mixture head; d = 192.
* ``vq-latents``: the 16x16 code maps (32 codes) of a VQ autoencoder trained on 64x64 grey patches of the
  same photographs, a categorical head over an input embedding; d = 256; samples are decoded to 64x64 images.

For each seed and setting, one batch of noise drives ``sequential``, ``fixed_point`` and ``forecast`` with
T = 1, 4, 8 for each set of modules (``flowkernels.sampling.compare_samplers``: same process, same noise,
warm-up first, best of ``--repeats``). Per sampler it records the calls and, per offset t = 1..8 past the
accepted prefix, how often the guess there was right (for a forecast: module t's hit rate). Prints and writes
the tables (mean ± standard deviation over the seeds) to ``--out/predictive_sampling.{md,json}``, and a PNG grid
of each setting's samples (first seed) to ``--out/predictive_sampling_<setting>.png`` (``--out`` defaults to
benchmarks/results, and with ``--quick`` to a folder in the temporary directory).

    python benchmarks/experiments/predictive_sampling_results.py [--quick] [--out benchmarks/results] [--seeds 0 1 2]
        [--settings digits ...]

``--quick`` is a smoke run (tiny models, a few seconds of training each, seed 0); its numbers mean nothing.
"""

from __future__ import annotations

import argparse
import sys
import tempfile
import time
from collections.abc import Sequence
from pathlib import Path

import torch

from flowkernels.benchmarks.machine import describe, write_results
from flowkernels.benchmarks.seeds import add_seeds_argument, compare, format_mean_std, runs_by_seed, summarise_seeds
from flowkernels.data import DIGITS_LEVELS, PHOTO_LEVELS, load_digits, load_photo_patches
from flowkernels.models.arm_training import train_forecaster, train_pixelcnn, train_vq_autoencoder
from flowkernels.models.distributions import Categorical, DiscretizedLogisticMixture
from flowkernels.models.figures import save_image_grid
from flowkernels.models.training import evaluating
from flowkernels.sampling import REPORTED_OFFSETS, compare_samplers, draw_noise, sample_arm

SETTINGS = ("digits-binary", "digits", "photos", "photos-rgb", "vq-latents")
HORIZONS = (1, 4, 8)
# The forecasters: trained on the data by KL, or on the ARM's draws by their likelihood.
FORECASTERS = {"data": "kl", "draws": "draws"}
# The settings where the issue asks forecasting to beat fixed-point iteration.
TARGET_SETTINGS = ("digits-binary", "vq-latents")

DRAWS_LARGE = {"train": 1_000, "test": 200, "batch": 200}
FULL = {
    "arm": {"hidden": 64, "layers": 5},
    "arm_epochs": {"digits-binary": 20, "digits": 20, "photos": 2, "photos-rgb": 2, "vq-latents": 8},
    "forecast_epochs": {"digits-binary": 10, "digits": 10, "photos": 1, "photos-rgb": 1, "vq-latents": 4},
    "forecast_hidden": 64,
    "photo_train_patches": 24_000,
    # ARM samples to train the "draws" modules on, and to test them with.
    "draws": {"train": 4_000, "test": 500, "batch": 500},
    # Fewer draws where each costs d = 192 or 256 ARM calls on a larger input, so that a seed of those
    # settings fits in about an hour on one core (the README states it).
    "draws_by_setting": {"photos-rgb": DRAWS_LARGE, "vq-latents": DRAWS_LARGE},
    "vq": {"patch": 64, "epochs": 5, "codes": 32, "dim": 16, "hidden": 32},
    "batch": 36,
}
QUICK = {
    "arm": {"hidden": 8, "layers": 1},
    "arm_epochs": dict.fromkeys(SETTINGS, 1),
    "forecast_epochs": dict.fromkeys(SETTINGS, 1),
    "forecast_hidden": 8,
    "photo_train_patches": 1_000,
    "draws": {"train": 64, "test": 16, "batch": 32},
    "vq": {"patch": 32, "epochs": 1, "codes": 8, "dim": 4, "hidden": 8},
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
    parser.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2], help="one run per seed (--quick: 0)")
    parser.add_argument("--threads", type=int, default=2, help="torch threads (the issue asks for 2 cores)")
    parser.add_argument("--repeats", type=int, default=2, help="timed runs per sampler (the best counts)")
    parser.add_argument("--no-progress", action="store_true", help="no progress bars")
    add_seeds_argument(parser, "predictive_sampling.json")
    parser.add_argument(
        "--join-only",
        action="store_true",
        help="with --add-seeds: run nothing, only write the tables of the runs kept (a (seed, setting) that no file "
        "holds is left out)",
    )
    args = parser.parse_args(argv)
    if args.join_only and args.add_seeds is None:
        parser.error("--join-only needs --add-seeds")
    if args.out is None:
        quick_out = Path(tempfile.gettempdir()) / "flowkernels_predictive_sampling_quick"
        args.out = quick_out if args.quick else Path("benchmarks/results")
    return args


def subset(data: torch.Tensor, size: int, seed: int) -> torch.Tensor:
    """``size`` examples of ``data`` chosen by a seeded permutation (all of them if it has fewer)."""
    if size >= len(data):
        return data
    return data[torch.randperm(len(data), generator=torch.Generator().manual_seed(seed))[:size]]


def setting_data(name: str, budget: dict, quick: bool, seed: int, progress: bool):
    """``(train, test, distribution, arm options, decode, data_levels of the images, colour map, extra report)``."""
    if name in ("digits-binary", "digits"):
        data_levels = 2 if name == "digits-binary" else DIGITS_LEVELS
        train, test = load_digits("train", data_levels=data_levels), load_digits("test", data_levels=data_levels)
        return train, test, Categorical(data_levels), {}, None, data_levels, "gray_r", {}
    if name in ("photos", "photos-rgb"):
        color = name == "photos-rgb"
        train = load_photo_patches("train", patch_size=8, color=color)
        train = subset(train, budget["photo_train_patches"], seed)
        test = subset(load_photo_patches("test", patch_size=8, color=color), 2_000, seed)
        options = {"channels": 3} if color else {}
        return train, test, DiscretizedLogisticMixture(PHOTO_LEVELS, 5), options, None, PHOTO_LEVELS, "gray", {}
    # vq-latents: an autoencoder on grey patches, then its code maps (a quarter of the side) are the ARM's data.
    vq_options = dict(budget["vq"])
    patch = vq_options.pop("patch")
    images_train = load_photo_patches("train", patch_size=patch)
    images_test = load_photo_patches("test", patch_size=patch)
    if quick:
        images_train, images_test = subset(images_train, 512, seed), subset(images_test, 128, seed)
    autoencoder, vq_history = train_vq_autoencoder(
        images_train, images_test, seed=seed, progress=progress, desc="vq-autoencoder", **vq_options
    )
    with evaluating(autoencoder):
        train, test = autoencoder.encode(images_train), autoencoder.encode(images_test)
    extra = {
        "autoencoder_reconstruction_bpd": vq_history.final_test_bpd,
        "autoencoder_codes_used": int(torch.unique(train).numel()),
        "autoencoder_train_time_s": vq_history.train_time_s,
        "image_size": patch,
    }
    distribution = Categorical(autoencoder.codes)
    return train, test, distribution, {"embedding": 16}, autoencoder.decode, PHOTO_LEVELS, "gray", extra


def run_setting(name: str, budget: dict, args: argparse.Namespace, seed: int, out: Path | None) -> dict:
    """Train the ARM and both forecasters of ``name`` with ``seed``, compare the samplers on one batch of noise;
    write the sample grid to ``out`` (when given). One row per sampler."""
    progress = not args.no_progress
    train, test, distribution, arm_options, decode, data_levels, cmap, extra = setting_data(
        name, budget, args.quick, seed, progress
    )
    arm, arm_history = train_pixelcnn(
        train,
        test,
        distribution,
        epochs=budget["arm_epochs"][name],
        seed=seed,
        progress=progress,
        desc=f"arm[{name}]",
        **budget["arm"],
        **arm_options,
    )
    draws_budget = setting_draws(budget, name)
    start = time.perf_counter()
    draws = sample_arm(
        arm,
        draws_budget["train"] + draws_budget["test"],
        batch_size=draws_budget["batch"],
        generator=torch.Generator().manual_seed(10_000 + seed),  # not the noise of the comparison below
    )
    sampling_time = time.perf_counter() - start
    inputs = {"data": (train, test), "draws": (draws[: draws_budget["train"]], draws[draws_budget["train"] :])}
    forecasters, forecast_reports = {}, {}
    for label, objective in FORECASTERS.items():
        forecasters[label], history = train_forecaster(
            arm,
            *inputs[label],
            horizon=max(HORIZONS),
            epochs=budget["forecast_epochs"][name],
            hidden=budget["forecast_hidden"],
            seed=seed,
            progress=progress,
            desc=f"forecast[{name}, {label}]",
            objective=objective,
        )
        forecast_reports[label] = {"test_loss_bits": history.final_test_bpd, "train_time_s": history.train_time_s}
    noise = draw_noise(arm, budget["batch"], torch.Generator().manual_seed(seed))
    runs = compare_samplers(arm, noise, forecaster=forecasters, horizons=HORIZONS, repeats=args.repeats)
    grid = None
    if out is not None:
        samples = runs[0].result.samples
        if decode is not None:
            with evaluating(arm):
                samples = decode(samples)
        grid = str(save_image_grid(samples, out / f"predictive_sampling_{name}.png", data_levels, cmap=cmap))
    sequential_time = runs[0].seconds
    rows = []
    for run in runs:
        row = {
            "setting": name,
            "sampler": run.name,
            "seed": seed,
            "calls": run.result.calls,
            "calls_percent": 100 * run.result.call_fraction,
            "mean_calls_per_example_percent": 100 * run.result.mean_call_fraction,
            "seconds": run.seconds,
            "speedup": sequential_time / run.seconds,
            "identical": run.identical,
        }
        for offset, rate in enumerate(run.result.offset_hit_rates, start=1):
            row[f"hit_rate_{offset}"] = rate
        rows.append(row)
    return {
        "setting": name,
        "seed": seed,
        "dims": arm.dims,
        "event_shape": list(arm.event_shape),
        "data_levels": distribution.data_levels,
        "distribution": repr(distribution),
        "train_size": len(train),
        "arm_test_bpd": arm_history.final_test_bpd,
        "arm_train_time_s": arm_history.train_time_s,
        "arm_draws": len(draws),
        "arm_draws_time_s": sampling_time,
        "forecasters": forecast_reports,
        "grid": grid,
        "rows": rows,
        **extra,
    }


METRICS = ["calls_percent", "mean_calls_per_example_percent", "seconds", "speedup"]
METRICS += [f"hit_rate_{t}" for t in range(1, REPORTED_OFFSETS + 1)]


def summarise(results: list[dict]) -> list[dict]:
    """Per (setting, sampler): mean and std over the seeds; ``identical`` only if every seed's samples were."""
    rows = [row for result in results for row in result["rows"]]
    summary = summarise_seeds(rows, ("setting", "sampler"), METRICS)
    for entry in summary:
        group = [r for r in rows if (r["setting"], r["sampler"]) == (entry["setting"], entry["sampler"])]
        entry["identical"] = all(r["identical"] for r in group)
    return summary


def claims(summary: list[dict]) -> list[dict]:
    """Per setting: the forecast with the fewest mean calls per example against fixed-point iteration (fewer is
    better), judged by the seeds' spread; ``target`` marks the settings where the issue asks for a win."""
    out = []
    for setting in dict.fromkeys(row["setting"] for row in summary):
        rows = {row["sampler"]: row for row in summary if row["setting"] == setting}
        forecasts = [row for name, row in rows.items() if name.startswith("forecast")]
        if "fixed_point" not in rows or not forecasts:
            continue
        best, fixed = min(forecasts, key=lambda r: r["mean_calls_per_example_percent"]), rows["fixed_point"]
        key = "mean_calls_per_example_percent"
        spread = None if best[key + "_std"] is None else best[key + "_std"] + fixed[key + "_std"]
        out.append(
            {
                "setting": setting,
                "target": setting in TARGET_SETTINGS,
                "best_forecast": best["sampler"],
                # None with one seed: no spread, so nothing is judged (the README says "not judged")
                "beats_fixed_point": None if spread is None else best[key] < fixed[key] - spread,
                "verdict": compare(
                    best["sampler"],
                    best[key],
                    best[key + "_std"],
                    "fixed_point",
                    fixed[key],
                    fixed[key + "_std"],
                    lower_is_better=True,
                    unit="% of d",
                ),
            }
        )
    return out


def format_calls(summary: list[dict], dims: dict[str, int], batch: int) -> str:
    """Markdown: calls per sampler and setting (mean ± std over seeds), speed-up, identical samples."""
    lines = [
        f"| setting | sampler | ARM calls, batch of {batch} (% of sequential) | mean calls per example (% of d) "
        "| speed-up | samples identical |",
        "|---|---|---:|---:|---:|:---:|",
    ]
    for row in summary:
        lines.append(
            f"| {row['setting']} (d={dims[row['setting']]}) | {row['sampler']} | "
            f"{format_mean_std(row['calls_percent'], row['calls_percent_std'], 1)}% | "
            f"{format_mean_std(row['mean_calls_per_example_percent'], row['mean_calls_per_example_percent_std'], 1)}% "
            f"| {row['speedup']:.2f}x | {'yes' if row['identical'] else 'NO'} |"
        )
    return "\n".join(lines)


def format_hit_rates(summary: list[dict]) -> str:
    """Markdown: per setting, how often the guess t places past the accepted prefix was right (mean over seeds),
    for fixed-point iteration and for each forecaster's 8 modules."""
    offsets = range(1, REPORTED_OFFSETS + 1)
    lines = [
        "| setting | guesses of | " + " | ".join(f"t={t}" for t in offsets) + " |",
        "|---|---|" + "---:|" * REPORTED_OFFSETS,
    ]
    for row in summary:
        if row["sampler"] != "fixed_point" and not row["sampler"].endswith(f"T={max(HORIZONS)}"):
            continue
        rates = [row[f"hit_rate_{t}"] for t in offsets]
        cells = " | ".join("—" if rate is None else f"{rate:.2f}" for rate in rates)
        lines.append(f"| {row['setting']} | {row['sampler']} | {cells} |")
    return "\n".join(lines)


def setting_budget(budget: dict, name: str) -> dict:
    """The part of ``budget`` that the runs of setting ``name`` depend on. Runs are kept per setting when it is
    unchanged, so that one setting's budget can change without rerunning the others."""
    part = {
        "arm": budget["arm"],
        "arm_epochs": budget["arm_epochs"][name],
        "forecast_epochs": budget["forecast_epochs"][name],
        "forecast_hidden": budget["forecast_hidden"],
        "draws": setting_draws(budget, name),
        "batch": budget["batch"],
    }
    if name in ("photos", "photos-rgb"):
        part["photo_train_patches"] = budget["photo_train_patches"]
    if name == "vq-latents":
        part["vq"] = budget["vq"]
    return part


def setting_draws(budget: dict, name: str) -> dict:
    """How many ARM draws setting ``name`` trains and tests its ``draws`` forecasters on, and in what batches."""
    return budget.get("draws_by_setting", {}).get(name, budget["draws"])


def kept_runs(files: Sequence[Path], budget: dict, settings: Sequence[str]) -> dict[int, dict[str, dict]]:
    """Per seed and setting asked, the runs that earlier results ``files`` hold at the same budget for that
    setting (:func:`setting_budget`; :func:`~flowkernels.benchmarks.seeds.runs_by_seed`: a seed's runs of a
    setting come from one file), so that a stopped run goes on from its last finished setting."""
    kept: dict[int, dict[str, dict]] = {}
    for name in settings:

        def section(document: dict, name: str = name) -> dict:
            runs = [run for run in document.get("results", []) if run["setting"] == name]
            return {"runs": runs, "budget": runs and setting_budget(document["budget"], name)}

        for seed, runs in runs_by_seed(files, setting_budget(budget, name), section).items():
            kept.setdefault(seed, {})[name] = runs[0]
    return kept


def main(argv: Sequence[str] | None = None) -> int:
    args = parse_args(argv)
    torch.set_num_threads(args.threads)
    started = describe()  # the machine and commit at the start: the code that runs
    budget = QUICK if args.quick else FULL
    seeds = [0] if args.quick else args.seeds
    start = time.perf_counter()
    kept = {}
    if args.add_seeds is not None:
        try:
            kept = kept_runs([args.out / "predictive_sampling.json", *args.add_seeds], budget, args.settings)
        except ValueError as error:
            print(f"predictive_sampling_results: {error}", file=sys.stderr)
            return 2
    stamp = {"commit": started.get("commit"), "threads": torch.get_num_threads()}
    results = []
    for index, seed in enumerate(seeds):
        for name in args.settings:
            if name in kept.get(seed, {}):
                print(f"seed {seed}, {name}: kept ({kept[seed][name]['commit']})", flush=True)
                results.append(kept[seed][name])
                continue
            if args.join_only:
                continue
            # The grids show the first seed's ARMs.
            results.append(stamp | run_setting(name, budget, args, seed, args.out if index == 0 else None))
            write(args, started, budget, results, time.perf_counter() - start)  # a stopped run keeps it
    if not results:
        print("predictive_sampling_results: no runs to write (--join-only kept none)", file=sys.stderr)
        return 2
    return write(args, started, budget, results, time.perf_counter() - start)


def write(args: argparse.Namespace, started: dict, budget: dict, results: list[dict], total: float) -> int:
    """The tables, the JSON results and the claims of the runs so far; 0 if every sampler's samples were exact."""
    seeds = list(dict.fromkeys(run["seed"] for run in results))
    summary = summarise(results)
    judged = claims(summary)
    dims = {result["setting"]: result["dims"] for result in results}
    header = (
        f"Predictive sampling, {'QUICK smoke run' if args.quick else 'full budget'}, seeds {seeds} (mean ± standard "
        f"deviation), batch {budget['batch']}, torch {torch.__version__}, {torch.get_num_threads()} threads, "
        + ("joined from kept runs (nothing trained)" if args.join_only else f"{total:.0f} s in all")
    )
    tables = format_calls(summary, dims, budget["batch"]) + "\n\n" + format_hit_rates(summary)
    verdicts = "\n".join(f"- {c['setting']}: {c['verdict']}" for c in judged)
    print(header, tables, verdicts, sep="\n\n")
    args.out.mkdir(parents=True, exist_ok=True)
    (args.out / "predictive_sampling.md").write_text(f"{header}\n\n{tables}\n\n{verdicts}\n")
    payload = {
        "header": header,
        "quick": args.quick,
        "seeds": seeds,
        "budget": budget,
        "results": results,
        "summary": summary,
        "claims": judged,
    }
    write_results(args.out / "predictive_sampling.json", payload, machine=started)
    print(f"table and sample grids in {args.out}/")
    return 0 if all(row["identical"] for row in summary) else 1


if __name__ == "__main__":
    sys.exit(main())
