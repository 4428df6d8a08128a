"""Conditional normalizing flows (arXiv:1912.00042) against factorised baselines: super-resolution and binary masks.

Two experiments, each comparing a :class:`~flowkernels.models.conditional.ConditionalFlow` with the paper's
baseline, a factorised model on the features of the same conditioning network (:class:`ConditionNet`, same size):

* Super-resolution x2 (and a smaller x4) of 8-bit grey photographs. ``y``: patches of the scikit-image
  photographs of the ``photos-gray`` training split (:func:`flowkernels.data.load_photo_patches`); ``x``: ``y``
  area-downsampled and rounded to 8 bits (:func:`~flowkernels.models.conditional.downsample`). Tested on the
  held-out WHOLE photographs (astronaut, camera, coffee as 8-bit luma; cropped to a multiple of the flow's
  2**num_scales): test bits/dim (uniform dequantization, the -D log 256 term included, so the flow's number is an
  upper bound on its code length; the baseline's is exact), PSNR and SSIM of the 8-bit outputs at temperature
  0, 0.5, 0.8 and 1, against bicubic up-sampling (``skimage.transform.resize(order=3)``) and the
  factorised discretized logistic (:class:`FactorizedLogistic`, the temperature scales its logistic noise).
* Binary structured prediction with binary dequantization: ``y`` is a scikit-learn digit up-sampled to 16x16
  (bicubic) and thresholded at half intensity; ``x`` is the 8x8 digit plus Gaussian noise (sigma 0.35 of the
  intensity range), four noisy copies of each of the 1497 training digits, one of each of the 300 test digits.
  Flow (:class:`BinaryDequantizer`) against the per-pixel logistic regression (:class:`FactorizedBernoulli`):
  test bits/dim (the flow's as an importance-weighted bound with 16 draws), F1 and IoU of the foreground over
  all test pixels, for the flow's temperature-0 sample, the majority of 16 samples at temperature 1 and one
  sample at temperature 1 (the baseline: its per-pixel argmax and one sample).

Writes the tables to ``--out``/conditional_results.md (and .json) and the figures conditional_sr_x2.png,
conditional_sr_x4.png and conditional_binary.png; prints the tables.

    python benchmarks/experiments/conditional_results.py [--quick] [--out benchmarks/results/] [--threads 2]
        [--seeds 0 1 2] [--add-seeds]

Every model is trained once per seed (the data and its noise are the same for every seed); the tables give mean
± sample standard deviation and judge the flow against its baseline by the seeds' spread. The full run takes
about 20 minutes per seed on 2 CPU cores (1234 s measured for one seed). ``--quick`` (a few seconds, seed 0) is
a smoke run for CI with tiny models, few steps and small test crops; its numbers mean nothing.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from collections.abc import Sequence
from functools import partial
from pathlib import Path

import numpy as np
import torch

from flowkernels._optional import require
from flowkernels.benchmarks.machine import describe, write_results
from flowkernels.benchmarks.seeds import (
    add_seeds_argument,
    compare,
    file_stamp,
    format_mean_std,
    runs_by_seed,
    summarise_seeds,
)
from flowkernels.data import PHOTO_LEVELS, load_digits, load_photo_patches, load_photos, photo_names
from flowkernels.models.conditional import BinaryDequantizer, ConditionalFlow, ConditionNet, Upsample, downsample
from flowkernels.models.conditional_baselines import FactorizedBernoulli, FactorizedLogistic
from flowkernels.models.conditional_training import evaluate_conditional, train_conditional
from flowkernels.models.dequantization import quantize
from flowkernels.models.training import evaluating

TEMPERATURES = (0.0, 0.5, 0.8, 1.0)

# Budgets. "net": the conditioning network (ConditionNet), shared in size by the flow and its baseline.
# Full: about 10 minutes on 2 cores in all (half of it the x2 flow).
FULL = {
    "sr": {
        2: {
            "patch": 32,
            "max_patches": None,
            "net": {"out_channels": 32, "hidden": 48, "blocks": 2},
            "flow": {"num_scales": 3, "steps_per_scale": 4, "hidden": 48, "conv": "1x1"},
            "flow_train": {"epochs": 12, "batch_size": 64, "lr": 1e-3},
            "baseline_train": {"epochs": 8, "batch_size": 64, "lr": 1e-3},
            "test_crop": None,
        },
        4: {
            "patch": 32,
            "max_patches": None,
            "net": {"out_channels": 32, "hidden": 48, "blocks": 2},
            "flow": {"num_scales": 3, "steps_per_scale": 3, "hidden": 48, "conv": "1x1"},
            "flow_train": {"epochs": 5, "batch_size": 64, "lr": 1e-3},
            "baseline_train": {"epochs": 5, "batch_size": 64, "lr": 1e-3},
            "test_crop": None,
        },
    },
    "binary": {
        "copies": 4,
        "train_size": None,
        "net": {"out_channels": 32, "hidden": 48, "blocks": 2},
        "flow": {"num_scales": 2, "steps_per_scale": 4, "hidden": 48, "conv": "1x1"},
        "dequantizer_hidden": 32,
        "flow_train": {"epochs": 25, "batch_size": 64, "lr": 1e-3},
        "baseline_train": {"epochs": 25, "batch_size": 64, "lr": 1e-3},
        "test_size": None,
    },
}
QUICK = {
    "sr": {
        scale: {
            "patch": 16,
            "max_patches": 256,
            "net": {"out_channels": 8, "hidden": 8, "blocks": 1},
            "flow": {"num_scales": 2, "steps_per_scale": 1, "hidden": 8, "conv": "1x1"},
            "flow_train": {"epochs": 1, "batch_size": 64, "lr": 1e-3},
            "baseline_train": {"epochs": 1, "batch_size": 64, "lr": 1e-3},
            "test_crop": 64,
        }
        for scale in (2, 4)
    },
    "binary": {
        "copies": 1,
        "train_size": 256,
        "net": {"out_channels": 8, "hidden": 8, "blocks": 1},
        "flow": {"num_scales": 2, "steps_per_scale": 1, "hidden": 8, "conv": "1x1"},
        "dequantizer_hidden": 8,
        "flow_train": {"epochs": 1, "batch_size": 64, "lr": 1e-3},
        "baseline_train": {"epochs": 1, "batch_size": 64, "lr": 1e-3},
        "test_size": 64,
    },
}

# Binary task: the digits' 17 grey levels as intensities in [0, 1], up-sampled 8x8 -> 16x16, thresholded.
BINARY_UPSCALE = 2
BINARY_THRESHOLD = 0.5
BINARY_NOISE = 0.35
BINARY_VOTES = 16
# Seeds of the data noise (fixed, independent of --seeds, so every run sees the same data).
_TRAIN_NOISE_SEED, _TEST_NOISE_SEED = 11, 12
# Crops (top, left, size at high resolution) of the held-out photographs for the super-resolution figure.
FIGURE_CROPS = {"astronaut": (40, 160, 96), "camera": (60, 200, 96), "coffee": (120, 200, 96)}


def parse_args(argv: Sequence[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--out", type=Path, default=Path("benchmarks/results"), help="folder for tables and figures")
    parser.add_argument("--quick", action="store_true", help="tiny budget: a smoke run, not a measurement")
    parser.add_argument("--experiments", nargs="+", choices=("sr2", "sr4", "binary"), default=["sr2", "sr4", "binary"])
    parser.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2], help="one run per seed (--quick: 0)")
    parser.add_argument("--threads", type=int, default=None, help="torch.set_num_threads (default: torch's choice)")
    parser.add_argument("--no-progress", action="store_true", help="no progress bars")
    add_seeds_argument(parser, "conditional_results.json")
    return parser.parse_args(argv)


def to_input(x_int: torch.Tensor, data_levels: int) -> torch.Tensor:
    """Integer images to the conditioning networks' input range (-0.5, 0.5): bin centres, minus 0.5. So
    ``Upsample(scale, shift=0.5)`` of the input is on the scale of the dequantized ``y`` in [0, 1)."""
    return (x_int.float() + 0.5) / data_levels - 0.5


# ---------------------------------------------------------------------------------------------------
# Super-resolution.


def sr_flow_loss(model: ConditionalFlow, y: torch.Tensor, x: torch.Tensor, generator: torch.Generator) -> torch.Tensor:
    return model.bits_per_dim(y, x, PHOTO_LEVELS, generator)


def exact_loss(model: torch.nn.Module, y: torch.Tensor, x: torch.Tensor, generator: torch.Generator) -> torch.Tensor:
    return model.bits_per_dim(y, x, generator)


def test_photos(multiple: int, crop: int | None) -> list[tuple[str, torch.Tensor]]:
    """The held-out grey photographs ``[1, 1, H, W]`` (int64), cropped to a multiple of ``multiple`` (or to the
    central ``crop`` x ``crop`` square in quick mode)."""
    photos = []
    for name, image in zip(photo_names("test", color=False), load_photos("test"), strict=True):
        height, width = image.shape[1:]
        if crop is not None:
            top, left = (height - crop) // 2, (width - crop) // 2
            image = image[:, top : top + crop, left : left + crop]
        else:
            image = image[:, : height - height % multiple, : width - width % multiple]
        photos.append((name, image.long()[None]))
    return photos


def bicubic(x_int: torch.Tensor, scale: int) -> torch.Tensor:
    """Bicubic up-sampling of 8-bit ``[1, 1, h, w]`` by ``scale``, rounded back to 8 bits."""
    transform = require("skimage.transform", "scikit-image", "the bicubic baseline")
    image = x_int[0, 0].numpy().astype(np.float64)
    up = transform.resize(image, (image.shape[0] * scale, image.shape[1] * scale), order=3, anti_aliasing=False)
    return torch.from_numpy(np.clip(np.round(up), 0, PHOTO_LEVELS - 1).astype(np.int64))[None, None]


def psnr_ssim(prediction: torch.Tensor, target: torch.Tensor) -> tuple[float, float]:
    """PSNR (dB) and SSIM (7x7 Gaussian-free window, scikit-image's defaults) of two 8-bit ``[1, 1, H, W]``."""
    metrics = require("skimage.metrics", "scikit-image", "PSNR and SSIM")
    a = prediction[0, 0].numpy().astype(np.uint8)
    b = target[0, 0].numpy().astype(np.uint8)
    return (
        float(metrics.peak_signal_noise_ratio(b, a, data_range=255)),
        float(metrics.structural_similarity(b, a, data_range=255)),
    )


def run_super_resolution(scale: int, budget: dict, args: argparse.Namespace, seed: int) -> dict:
    """Train the flow and the logistic baseline for x``scale`` and evaluate them and bicubic on the test photos."""
    progress = not args.no_progress
    y_train = load_photo_patches("train", patch_size=budget["patch"])
    if budget["max_patches"] is not None and len(y_train) > budget["max_patches"]:
        # An evenly spaced subset: deterministic and spread over all training photographs.
        y_train = y_train[torch.linspace(0, len(y_train) - 1, budget["max_patches"]).long()]
    y_test = load_photo_patches("test", patch_size=budget["patch"])
    train = (y_train, to_input(downsample(y_train, scale), PHOTO_LEVELS))
    test = (y_test, to_input(downsample(y_test, scale), PHOTO_LEVELS))

    # Both models predict y relative to the bicubic up-sampling of x (torch's, a = -0.75): exact likelihoods
    # either way, but the training budget goes into the detail that interpolation misses.
    def flow() -> ConditionalFlow:
        net = ConditionNet(1, **budget["net"])
        return ConditionalFlow(net, upscale=scale, base=Upsample(scale, shift=0.5), **budget["flow"])

    def logistic() -> FactorizedLogistic:
        net, hidden = ConditionNet(1, **budget["net"]), budget["flow"]["hidden"]
        return FactorizedLogistic(net, upscale=scale, hidden=hidden, base=Upsample(scale, shift=0.5))

    common = {"seed": seed, "progress": progress}
    flow_model, flow_history = train_conditional(
        flow, sr_flow_loss, train, test, desc=f"flow x{scale}", **budget["flow_train"], **common
    )
    logistic_model, logistic_history = train_conditional(
        logistic, exact_loss, train, test, desc=f"logistic x{scale}", **budget["baseline_train"], **common
    )

    photos = test_photos(2 ** budget["flow"]["num_scales"] * scale, budget["test_crop"])
    methods = (
        ["bicubic"]
        + [f"logistic temperature={t}" for t in TEMPERATURES]
        + [f"flow temperature={t}" for t in TEMPERATURES]
    )
    scores: dict[str, list[tuple[float, float]]] = {method: [] for method in methods}
    bits = {"flow": 0.0, "logistic": 0.0}
    dims = 0
    outputs: dict[str, dict[str, torch.Tensor]] = {}
    start = time.perf_counter()
    for name, y in photos:
        x_int = downsample(y, scale)
        x = to_input(x_int, PHOTO_LEVELS)
        dims += y.numel()
        bits["flow"] += y.numel() * evaluate_conditional(flow_model, sr_flow_loss, y, x)
        bits["logistic"] += y.numel() * evaluate_conditional(logistic_model, exact_loss, y, x)
        predictions = {"low-res": x_int, "bicubic": bicubic(x_int, scale), "ground truth": y}
        for temperature in TEMPERATURES:
            generator = torch.Generator().manual_seed(seed)
            with evaluating(flow_model):
                sample = flow_model.sample(x, temperature, generator)
                predictions[f"flow temperature={temperature}"] = quantize(sample, PHOTO_LEVELS)
            with evaluating(logistic_model):
                predictions[f"logistic temperature={temperature}"] = logistic_model.sample(x, temperature, generator)
        for method in methods:
            scores[method].append(psnr_ssim(predictions[method], y))
        outputs[name] = predictions
    evaluation_time = time.perf_counter() - start

    rows = []
    for method in methods:
        psnr, ssim = (float(np.mean(values)) for values in zip(*scores[method], strict=True))
        kind = method.split(" ")[0]
        rows.append({"method": method, "bpd": bits[kind] / dims if kind in bits else None, "psnr": psnr, "ssim": ssim})
    parameters = {
        "flow": sum(p.numel() for p in flow_model.parameters()),
        "logistic": sum(p.numel() for p in logistic_model.parameters()),
    }
    return {
        "scale": scale,
        "rows": rows,
        "photos": [name for name, _ in photos],
        "parameters": parameters,
        "train_time_s": {"flow": flow_history.train_time_s, "logistic": logistic_history.train_time_s},
        "test_patch_bpd": {"flow": flow_history.final_test_bpd, "logistic": logistic_history.final_test_bpd},
        "evaluation_time_s": evaluation_time,
        "train_patches": len(y_train),
        "budget": budget,
        "_outputs": outputs,
    }


def save_sr_figure(result: dict, path: Path, quick: bool) -> None:
    """Rows: held-out photographs (a crop); columns: low-res, bicubic, the logistic's mode, flow samples at each
    temperature (T), ground truth. All 8-bit, shown without interpolation."""
    figure_module = require("matplotlib.figure", "matplotlib", "the super-resolution figure")
    columns = ["low-res", "bicubic", "logistic temperature=0.0"]
    columns += [f"flow temperature={t}" for t in TEMPERATURES] + ["ground truth"]
    titles = ["low-res", "bicubic", "logistic (mode)"] + [f"flow T={t:g}" for t in TEMPERATURES] + ["ground truth"]
    names = list(result["_outputs"])
    figure = figure_module.Figure(figsize=(1.6 * len(columns), 1.7 * len(names)), dpi=110)
    axes = figure.subplots(len(names), len(columns), squeeze=False)
    scale = result["scale"]
    for row, name in enumerate(names):
        outputs = result["_outputs"][name]
        height, width = outputs["ground truth"].shape[2:]
        top, left, size = FIGURE_CROPS.get(name, (0, 0, 96))
        if quick or top + size > height or left + size > width:
            top, left, size = 0, 0, min(height, width)
        top, left = top - top % scale, left - left % scale
        for column, (key, title) in enumerate(zip(columns, titles, strict=True)):
            image = outputs[key][0, 0]
            if key == "low-res":
                crop = image[top // scale : (top + size) // scale, left // scale : (left + size) // scale]
            else:
                crop = image[top : top + size, left : left + size]
            axis = axes[row, column]
            axis.imshow(crop.numpy(), cmap="gray", vmin=0, vmax=PHOTO_LEVELS - 1, interpolation="nearest")
            axis.set_xticks([])
            axis.set_yticks([])
            if row == 0:
                axis.set_title(title, fontsize=8)
        axes[row, 0].set_ylabel(name, fontsize=8)
    figure.suptitle(f"Super-resolution x{scale} of held-out photographs (crops)", fontsize=9)
    figure.tight_layout()
    path.parent.mkdir(parents=True, exist_ok=True)
    figure.savefig(path, format="png")


# ---------------------------------------------------------------------------------------------------
# Binary structured prediction.


def binary_digits(split: str, copies: int, seed: int) -> tuple[torch.Tensor, torch.Tensor]:
    """``(y, x)``: ``y`` binary ``[N * copies, 1, 16, 16]`` (int64), ``x`` the noisy digits ``[N * copies, 1, 8, 8]``.

    ``y`` = 1[bicubic 2x up-sampling of the digit's intensity > 0.5]; ``x`` = intensity + N(0, 0.35^2), drawn
    from a generator seeded with ``seed`` (``copies`` independent noisy versions of each digit).
    """
    transform = require("skimage.transform", "scikit-image", "the binary digits")
    digits = load_digits(split).double() / 16.0
    size = digits.shape[-1] * BINARY_UPSCALE
    up = transform.resize(digits[:, 0].numpy(), (len(digits), size, size), order=3, anti_aliasing=False)
    y = torch.from_numpy(up > BINARY_THRESHOLD).long()[:, None].repeat(copies, 1, 1, 1)
    clean = digits.repeat(copies, 1, 1, 1)
    noise = torch.randn(clean.shape, generator=torch.Generator().manual_seed(seed), dtype=torch.float64)
    x = (clean + BINARY_NOISE * noise - 0.5).float()
    return y, x


def f1_iou(prediction: torch.Tensor, target: torch.Tensor) -> tuple[float, float]:
    """F1 (Dice) and IoU of the foreground (value 1), over all pixels of all images."""
    tp = int((prediction.bool() & target.bool()).sum())
    fp = int((prediction.bool() & ~target.bool()).sum())
    fn = int((~prediction.bool() & target.bool()).sum())
    return 2 * tp / max(2 * tp + fp + fn, 1), tp / max(tp + fp + fn, 1)


def iw_loss(samples: int, model, y, x, generator):
    return model.bits_per_dim(y, x, generator, num_samples=samples)


def run_binary(budget: dict, args: argparse.Namespace, seed: int) -> dict:
    progress = not args.no_progress
    train = binary_digits("train", budget["copies"], _TRAIN_NOISE_SEED)
    if budget["train_size"] is not None:
        train = (train[0][: budget["train_size"]], train[1][: budget["train_size"]])
    y_test, x_test = binary_digits("test", 1, _TEST_NOISE_SEED)
    if budget["test_size"] is not None:
        y_test, x_test = y_test[: budget["test_size"]], x_test[: budget["test_size"]]
    test = (y_test, x_test)

    def flow() -> BinaryDequantizer:
        net = ConditionNet(1, **budget["net"])
        return BinaryDequantizer(
            ConditionalFlow(net, upscale=BINARY_UPSCALE, **budget["flow"]), 1, budget["dequantizer_hidden"]
        )

    def bernoulli() -> FactorizedBernoulli:
        net = ConditionNet(1, **budget["net"])
        return FactorizedBernoulli(net, upscale=BINARY_UPSCALE, hidden=budget["flow"]["hidden"])

    common = {"seed": seed, "progress": progress}
    flow_model, flow_history = train_conditional(
        flow, exact_loss, train, test, desc="flow binary", **budget["flow_train"], **common
    )
    bernoulli_model, bernoulli_history = train_conditional(
        bernoulli, exact_loss, train, test, desc="bernoulli binary", **budget["baseline_train"], **common
    )
    flow_bpd = evaluate_conditional(flow_model, partial(iw_loss, BINARY_VOTES), y_test, x_test, batch_size=64)
    elbo_bpd = flow_history.final_test_bpd
    bernoulli_bpd = bernoulli_history.final_test_bpd

    generator = torch.Generator().manual_seed(seed)
    with evaluating(flow_model), evaluating(bernoulli_model):
        predictions = {
            "bernoulli argmax": bernoulli_model.sample(x_test, 0.0),
            "bernoulli sample": bernoulli_model.sample(x_test, 1.0, generator),
            "flow temperature=0": flow_model.predict(x_test, 0.0),
            f"flow majority of {BINARY_VOTES} (temperature=1)": flow_model.predict(
                x_test, 1.0, generator, num_samples=BINARY_VOTES
            ),
            "flow sample (temperature=1)": flow_model.predict(x_test, 1.0, generator),
            "flow sample (temperature=0.8)": flow_model.predict(x_test, 0.8, generator),
        }
        probabilities = torch.sigmoid(bernoulli_model.logits(x_test[:8]))
        figure_samples = flow_model.predict(x_test[:8].repeat_interleave(3, 0), 1.0, generator).view(8, 3, 16, 16)
    rows = []
    for method, prediction in predictions.items():
        f1, iou = f1_iou(prediction, y_test)
        bpd = bernoulli_bpd if method.startswith("bernoulli") else flow_bpd
        rows.append({"method": method, "bpd": bpd, "f1": f1, "iou": iou})
    return {
        "rows": rows,
        "flow_elbo_bpd": elbo_bpd,
        "parameters": {
            "flow": sum(p.numel() for p in flow_model.parameters()),
            "bernoulli": sum(p.numel() for p in bernoulli_model.parameters()),
        },
        "train_time_s": {"flow": flow_history.train_time_s, "bernoulli": bernoulli_history.train_time_s},
        "train_pairs": len(train[0]),
        "test_pairs": len(y_test),
        "budget": budget,
        "_figure": {
            "x": x_test[:8],
            "y": y_test[:8],
            "probabilities": probabilities,
            "bernoulli sample": predictions["bernoulli sample"][:8],
            "flow temperature=0": predictions["flow temperature=0"][:8],
            "flow samples": figure_samples,
        },
    }


def save_binary_figure(result: dict, path: Path) -> None:
    """Rows: test digits; columns: noisy input, baseline probability and sample, flow at temperature 0 and three
    samples, truth."""
    figure_module = require("matplotlib.figure", "matplotlib", "the binary segmentation figure")
    data = result["_figure"]
    titles = ["noisy 8x8 input", "Bernoulli p(y=1|x)", "Bernoulli sample", "flow T=0"]
    titles += [f"flow sample {i + 1}" for i in range(3)] + ["ground truth"]
    n = len(data["y"])
    figure = figure_module.Figure(figsize=(1.3 * len(titles), 1.3 * n), dpi=100)
    axes = figure.subplots(n, len(titles), squeeze=False)
    for row in range(n):
        panels = [
            (data["x"][row, 0] + 0.5, "gray_r"),
            (data["probabilities"][row, 0], "gray_r"),
            (data["bernoulli sample"][row, 0], "gray_r"),
            (data["flow temperature=0"][row, 0], "gray_r"),
            *[(data["flow samples"][row, i], "gray_r") for i in range(3)],
            (data["y"][row, 0], "gray_r"),
        ]
        for column, (image, cmap) in enumerate(panels):
            axis = axes[row, column]
            axis.imshow(image.float().numpy(), cmap=cmap, vmin=0, vmax=1, interpolation="nearest")
            axis.set_xticks([])
            axis.set_yticks([])
            if row == 0:
                axis.set_title(titles[column], fontsize=7)
    figure.suptitle("Binary 16x16 digits from noisy 8x8 inputs (held-out digits)", fontsize=9)
    figure.tight_layout()
    path.parent.mkdir(parents=True, exist_ok=True)
    figure.savefig(path, format="png")


# ---------------------------------------------------------------------------------------------------
# Seeds and tables.

METRICS = {"sr": ("bpd", "psnr", "ssim"), "binary": ("bpd", "f1", "iou")}
# (column, metric, digits) of the tables; bits/dim and the quality measures, mean ± std over the seeds.
COLUMNS = {
    "sr": (("test bits/dim", "bpd", 3), ("PSNR (dB)", "psnr", 2), ("SSIM", "ssim", 4)),
    "binary": (("test bits/dim", "bpd", 4), ("F1", "f1", 4), ("IoU", "iou", 4)),
}
# The comparisons the paper makes, per task: (flow method, baseline method, metric, lower is better).
CLAIMS = {
    "sr": (
        ("flow temperature=0.0", "logistic temperature=0.0", "bpd", True),
        ("flow temperature=0.0", "logistic temperature=0.0", "psnr", False),
    ),
    "binary": (
        ("flow temperature=0", "bernoulli argmax", "bpd", True),
        ("flow temperature=0", "bernoulli argmax", "f1", False),
    ),
}


# Results written before the README's glossary (issue 22) name the flow's scales "levels" and its steps per scale
# "steps" in their budgets, and the temperature "tau" in their methods. The runs are the same, so kept runs are
# read under today's names: a method's seeds must group together, and a budget must match the one it ran at.
OLD_FLOW_NAMES = {"levels": "num_scales", "steps": "steps_per_scale"}


def _current_budget(budget: dict) -> dict:
    if "flow" not in budget:
        return budget
    return budget | {"flow": {OLD_FLOW_NAMES.get(key, key): value for key, value in budget["flow"].items()}}


def with_current_names(section: dict | None) -> dict | None:
    """An experiment's section of a results file (``"budget"``, ``"runs"``) under the names this script writes."""
    if not section or "runs" not in section:
        return section
    runs = []
    for run in section["runs"]:
        rows = [row | {"method": row["method"].replace("tau=", "temperature=")} for row in run["rows"]]
        runs.append(run | {"rows": rows} | ({"budget": _current_budget(run["budget"])} if "budget" in run else {}))
    return section | {"runs": runs} | ({"budget": _current_budget(section["budget"])} if "budget" in section else {})


def summarise(runs: list[dict], kind: str) -> dict:
    """One experiment over seeds: the per-seed ``runs`` and, per method, the metrics' mean and std; the
    numbers outside the tables (train times, patch bits/dim, the binary flow's one-draw bound) as means."""
    rows = [row | {"seed": run["seed"]} for run in runs for row in run["rows"]]
    first = runs[0]
    shared = {
        key: first[key]
        for key in ("scale", "photos", "parameters", "train_patches", "train_pairs", "test_pairs", "budget")
        if key in first
    }
    means = {}
    for key in ("train_time_s", "test_patch_bpd"):
        if key in first:
            means[key] = {model: float(np.mean([run[key][model] for run in runs])) for model in first[key]}
    if "flow_elbo_bpd" in first:
        means["flow_elbo_bpd"] = float(np.mean([run["flow_elbo_bpd"] for run in runs]))
    summary = summarise_seeds(rows, "method", METRICS[kind])
    claims = []
    by_method = {row["method"]: row for row in summary}
    for flow, baseline, metric, lower in CLAIMS[kind]:
        if flow in by_method and baseline in by_method:
            a, b = by_method[flow], by_method[baseline]
            name = dict((m, c) for c, m, _ in COLUMNS[kind])[metric]
            claims.append(
                compare(
                    f"{flow}, {name}", a[metric], a[metric + "_std"], baseline, b[metric], b[metric + "_std"], lower
                )
            )
    return {
        "seeds": [run["seed"] for run in runs],
        "runs": runs,
        "summary": summary,
        "claims": claims,
        **shared,
        **means,
    }


def format_table(result: dict, kind: str) -> str:
    """Markdown: per method, each metric as mean ± standard deviation over the seeds (the README shows it)."""
    columns = COLUMNS[kind]
    lines = ["| method | " + " | ".join(name for name, _, _ in columns) + " |", "|---|" + "---:|" * len(columns)]
    for row in result["summary"]:
        cells = [
            "—" if row[metric] is None else format_mean_std(row[metric], row[metric + "_std"], digits)
            for _, metric, digits in columns
        ]
        lines.append(f"| {row['method']} | " + " | ".join(cells) + " |")
    return "\n".join(lines)


def sr_table(result: dict) -> str:
    scale, patch = result["scale"], result["budget"]["patch"]
    return (
        f"Super-resolution x{scale}: {result['train_patches']} training patches of {patch}x{patch}; test on the whole "
        f"held-out photographs {', '.join(result['photos'])} (8-bit luma). Flow {result['parameters']['flow']:,} "
        f"parameters ({result['train_time_s']['flow']:.0f} s per seed), logistic {result['parameters']['logistic']:,} "
        f"({result['train_time_s']['logistic']:.0f} s).\n\n"
        + format_table(result, "sr")
        + "\n\n"
        + " ".join(result["claims"])
    )


def binary_table(result: dict) -> str:
    return (
        f"Binary digits (16x16 from noisy 8x8): {result['train_pairs']} training pairs, {result['test_pairs']} test "
        f"digits. Flow + dequantizer {result['parameters']['flow']:,} parameters "
        f"({result['train_time_s']['flow']:.0f} s per seed), Bernoulli {result['parameters']['bernoulli']:,} "
        f"({result['train_time_s']['bernoulli']:.0f} s). Flow bits/dim: importance-weighted bound with "
        f"{BINARY_VOTES} draws (one-draw variational bound: {result['flow_elbo_bpd']:.4f}).\n\n"
        + format_table(result, "binary")
        + "\n\n"
        + " ".join(result["claims"])
    )


def experiment_budget(budgets: dict, experiment: str) -> dict:
    """The budget of ``experiment`` ("sr2", "sr4" or "binary") in ``budgets`` (:data:`FULL` or :data:`QUICK`)."""
    return budgets["sr"][int(experiment[2:])] if experiment.startswith("sr") else budgets["binary"]


def main(argv: Sequence[str] | None = None) -> int:
    args = parse_args(argv)
    if args.threads is not None:
        torch.set_num_threads(args.threads)
    started = describe()  # the machine and commit at the start: the code that runs
    budgets = QUICK if args.quick else FULL
    seeds = [0] if args.quick else args.seeds
    args.out.mkdir(parents=True, exist_ok=True)
    start = time.perf_counter()
    sections, results = [], {}
    mode = "QUICK smoke run, numbers mean nothing" if args.quick else "full run"
    header = (
        f"Conditional flows vs factorised baselines ({mode}; seeds {', '.join(map(str, seeds))}, mean ± sample "
        f"standard deviation, torch {torch.__version__}, {torch.get_num_threads()} threads)"
    )
    earlier = args.out / "conditional_results.json"
    files = [] if args.add_seeds is None else [earlier, *args.add_seeds]
    if files and earlier.exists():  # the experiments this run does not do stay as they are
        previous = json.loads(earlier.read_text())
        # ... with the commit and threads they ran at, which the file's machine entry stops saying once rewritten
        origin = file_stamp(previous)
        for name in ("sr2", "sr4", "binary"):
            if name in previous:
                results[name] = previous[name] | {"runs": [origin | run for run in previous[name].get("runs", [])]}
    stamp = {"commit": started.get("commit"), "threads": torch.get_num_threads()}
    # Every experiment's kept runs are read now, before this run rewrites the files (and their machine entry).
    kept_by_experiment = {}
    for experiment in args.experiments:
        budget = experiment_budget(budgets, experiment)
        try:
            kept_by_experiment[experiment] = runs_by_seed(
                files, budget, lambda document, name=experiment: with_current_names(document.get(name))
            )
        except ValueError as error:
            print(f"conditional_results: {error}", file=sys.stderr)
            return 2
    trained = False
    for experiment in args.experiments:
        budget, kept = experiment_budget(budgets, experiment), kept_by_experiment[experiment]
        runs = []
        for index, seed in enumerate(seeds):
            if seed in kept:
                print(f"{experiment}, seed {seed}: kept (commit {kept[seed][0]['commit']})", flush=True)
                runs += kept[seed]
                continue
            if experiment.startswith("sr"):
                result = run_super_resolution(int(experiment[2:]), budget, args, seed)
                if index == 0:  # the figures show the first seed's models
                    save_sr_figure(result, args.out / f"conditional_sr_x{experiment[2:]}.png", args.quick)
            else:
                result = run_binary(budget, args, seed)
                if index == 0:
                    save_binary_figure(result, args.out / "conditional_binary.png")
            trained = True
            fields = {key: value for key, value in result.items() if not key.startswith("_")}
            runs.append({"seed": seed} | stamp | fields)
        results[experiment] = summarise(runs, "sr" if experiment.startswith("sr") else "binary")
        sections.append(
            sr_table(results[experiment]) if experiment.startswith("sr") else binary_table(results[experiment])
        )
        print(sections[-1] + "\n", flush=True)
        # Written after every experiment, so that a stopped run keeps the experiments it finished.
        footer = (
            f"Total time {time.perf_counter() - start:.0f} s."
            if trained
            else "Nothing trained: every run was kept (--add-seeds); the times per seed are above."
        )
        (args.out / "conditional_results.md").write_text("\n\n".join([header, *sections, footer]) + "\n")
        results |= {"total_time_s": time.perf_counter() - start, "quick": args.quick, "seeds": seeds}
        write_results(args.out / "conditional_results.json", results, machine=started)
    print(footer)
    print(f"tables in {args.out}/conditional_results.md, figures conditional_*.png")
    return 0


if __name__ == "__main__":
    sys.exit(main())
