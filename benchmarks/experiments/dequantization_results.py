"""The dequantization comparison of arXiv:2001.11235: uniform, variational, iw, Renyi and autoregressive.

Two experiments, same seed for every objective:

1. **Toy**: a 2-D discrete distribution on an 8 x 8 grid with exactly known probabilities (a mixture of
   three discretised Gaussians). A small flow is trained with each objective on the exact expectation
   over the grid (no data sampling noise); then for each model the exact ``E_P[log P_model(x)]`` by
   Gauss-Legendre quadrature over every bin, the importance-weighted bound for K = 1 .. 1000, and the gap
   between them. Every bound must lie above (in bits/dim) the model's exact value, and the iw bound must
   close in on it as K grows. Writes ``dequantization_toy_gap.png``.
2. **Digits**: the Glow of models/glow.py (1x1 convs) on the digits of data.py, trained with uniform,
   variational, iw (K = 8), Renyi (alpha = 0.5, K = 8), autoregressive (the paper's ARD) and the
   ar_conv2d flow dequantization, each evaluated with the iw bound at K = 1000 on the 300 test digits.
   Judges the paper's claims (iw and Renyi improve on the ELBO, learned q on uniform, ARD on the
   variational q) against the spread of the seeds.

Every configuration runs once per seed (``--seeds``, default 0 1 2); the tables give mean ± sample standard
deviation, the figure the first seed.

    python benchmarks/experiments/dequantization_results.py [--quick] [--out benchmarks/results] [--seeds 0 1 2]
        [--skip-toy] [--skip-digits]

``--quick`` is a short smoke run (tiny budgets, seed 0) whose numbers mean nothing. The full run takes about
an hour and a half on 2 CPU cores (half an hour per seed).
"""

from __future__ import annotations

import argparse
import json
import math
import sys
import time
from collections.abc import Sequence
from pathlib import Path

import torch

from flowkernels._optional import require
from flowkernels.benchmarks import machine
from flowkernels.benchmarks.seeds import add_seeds_argument, compare, format_mean_std, runs_by_seed, summarise_seeds
from flowkernels.data import load_digits
from flowkernels.models.dequantization import DequantizedFlow, make_dequantizer, toy_flow
from flowkernels.models.dequantization_training import train_dequantized
from flowkernels.models.training import warmup_cosine

# (label, dequantizer, objective, K): the paper's comparison. Each bound runs with the uniform q (the
# paper's claim: iw and Renyi improve on uniform dequantization) and with the learned variational q.
CONFIGS = (
    ("uniform", "uniform", "elbo", 1),
    ("uniform, iw (K=8)", "uniform", "iw", 8),
    ("uniform, Renyi (alpha=0.5, K=8)", "uniform", "renyi", 8),
    ("variational", "variational", "elbo", 1),
    ("variational, iw (K=8)", "variational", "iw", 8),
    ("variational, Renyi (alpha=0.5, K=8)", "variational", "renyi", 8),
    ("autoregressive (ARD)", "autoregressive", "elbo", 1),
    ("ar_conv2d flow (linear in u_<d)", "arconv", "elbo", 1),
)
ALPHA = 0.5
TOY_LEVELS = 8
FULL = {
    "toy_steps": 1200,
    "toy_repeats": 64,
    "toy_eval_k": (1, 8, 64, 1000),
    "quadrature_nodes": 48,
    "digits_epochs": 40,
    "eval_samples": 1000,
}
QUICK = {
    "toy_steps": 20,
    "toy_repeats": 4,
    "toy_eval_k": (1, 8),
    "quadrature_nodes": 8,
    "digits_epochs": 1,
    "eval_samples": 10,
}
QUICK_MODEL = {"steps_per_scale": 1, "hidden": 8, "dequantizer_hidden": 8, "dequantizer_steps": 1}


def parse_args(argv: Sequence[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--out", type=Path, default=Path("benchmarks/results"), help="folder for figures and JSON")
    parser.add_argument("--quick", action="store_true", help="tiny budgets: a smoke run, not a measurement")
    parser.add_argument("--skip-toy", action="store_true")
    parser.add_argument("--skip-digits", action="store_true")
    parser.add_argument("--digits-epochs", type=int, default=None, help="override the digits budget")
    parser.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2], help="one run per seed (--quick: 0)")
    parser.add_argument("--no-progress", action="store_true", help="no progress bars")
    add_seeds_argument(parser, "dequantization_results.json")
    return parser.parse_args(argv)


# ---------------------------------------------------------------------------------------------------------
# The toy.


def toy_distribution() -> tuple[torch.Tensor, torch.Tensor]:
    """Every cell of the 8 x 8 grid ``[64, 2, 1, 1]`` and its exact probability ``[64]`` (float64).

    ``P(x) proportional to sum_m w_m exp(-|x - c_m|^2 / (2 s_m^2))``: three modes of different weights and
    widths, one of them straddling cells, so the flow's density varies inside the bins.
    """
    side = torch.arange(TOY_LEVELS)
    cells = torch.cartesian_prod(side, side)
    centres = torch.tensor([[1.5, 1.5], [5.0, 5.5], [1.8, 5.6]], dtype=torch.float64)
    widths = torch.tensor([0.9, 1.2, 0.6], dtype=torch.float64)
    weights = torch.tensor([0.45, 0.35, 0.20], dtype=torch.float64)
    squared = (cells.double().unsqueeze(1) - centres).square().sum(-1)
    unnormalised = (weights * torch.exp(-squared / (2 * widths.square()))).sum(1)
    return cells.view(-1, 2, 1, 1), unnormalised / unnormalised.sum()


def train_toy(
    dequantizer: str,
    objective: str,
    k: int,
    cells: torch.Tensor,
    probabilities: torch.Tensor,
    steps: int,
    seed: int,
    bar,
) -> DequantizedFlow:
    """Fit a toy flow on the exact expectation ``-sum_x P(x) bound(x)`` (Adam, warm-up and cosine decay)."""
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        deq_kwargs = {} if dequantizer == "uniform" else {"hidden": 32, "steps": 4}
        model = DequantizedFlow(
            toy_flow(2, steps=6, hidden=64),
            make_dequantizer(dequantizer, 2, TOY_LEVELS, **deq_kwargs),
            objective=objective,
            num_samples=k,
            alpha=ALPHA,
        )
    generator = torch.Generator().manual_seed(seed)
    weights = probabilities.float()
    with torch.no_grad():
        model.log_weights(cells[torch.multinomial(weights, 512, True, generator=generator)], 1, generator)
    optimizer = torch.optim.Adam(model.parameters(), lr=2e-3)
    scheduler = torch.optim.lr_scheduler.LambdaLR(optimizer, warmup_cosine(50, steps))
    model.train()
    for _ in range(steps):
        loss = (weights * model.bits_per_dim(cells, generator=generator)).sum()
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        torch.nn.utils.clip_grad_norm_(model.parameters(), 50.0)
        optimizer.step()
        scheduler.step()
        bar.update()
    return model.eval()


def _section(document: dict, name: str) -> dict:
    """The ``name`` ("toy" or "digits") section of a results file, with the file's budget (shared by both)."""
    return {"runs": document.get(name, {}).get("runs", []), "budget": document.get("budget")}


def toy_experiment(
    args: argparse.Namespace, budget: dict, seeds: Sequence[int], tqdm, kept: dict[int, list[dict]]
) -> dict:
    """Every configuration of :data:`CONFIGS` trained on the toy once per seed (``kept`` seeds' runs are
    reused): one row per run."""
    cells, probabilities = toy_distribution()
    entropy_bpd = -(probabilities * probabilities.log()).sum().item() / (2 * math.log(2))
    total = budget["toy_steps"] * len(CONFIGS) * len(seeds)
    bar = tqdm(total=total, desc="toy", disable=args.no_progress, leave=False)
    runs = []
    stamp = {"commit": args.commit, "threads": torch.get_num_threads()}
    for seed in seeds:
        if seed in kept:
            runs += kept[seed]
            bar.update(budget["toy_steps"] * len(CONFIGS))
            continue
        for label, dequantizer, objective, k in CONFIGS:
            start = time.perf_counter()
            model = train_toy(dequantizer, objective, k, cells, probabilities, budget["toy_steps"], seed, bar)
            train_time = time.perf_counter() - start
            run = {"label": label, "dequantizer": dequantizer, "objective": objective, "k": k, "seed": seed} | stamp
            runs.append(
                run | evaluate_toy(model.double(), cells, probabilities, budget, seed) | {"train_time_s": train_time}
            )
    bar.close()
    metrics = ["objective_bpd", "exact_bpd", *(f"iw_bpd_{k}" for k in budget["toy_eval_k"]), "train_time_s"]
    return {
        "entropy_bpd": entropy_bpd,
        "eval_k": budget["toy_eval_k"],
        "runs": runs,
        "summary": summarise_seeds(runs, "label", metrics),
    }


def evaluate_toy(model: DequantizedFlow, cells: torch.Tensor, probabilities: torch.Tensor, budget: dict, seed: int):
    """The model's exact expected bits/dim (quadrature), and Monte-Carlo estimates of its objective and of
    the iw bound at each K, each with the standard error of the estimate."""
    generator = torch.Generator().manual_seed(seed + 1)

    def expected_bpd(log_likelihood: torch.Tensor) -> float:
        return -(probabilities * log_likelihood).sum().item() / (2 * math.log(2))

    def mean_and_error(draws: list[float]) -> tuple[float, float]:
        values = torch.tensor(draws, dtype=torch.float64)
        error = values.std().item() / math.sqrt(len(values)) if len(values) > 1 else math.nan
        return values.mean().item(), error

    with torch.no_grad():
        row = {"exact_bpd": expected_bpd(model.quadrature_log_prob(cells, nodes=budget["quadrature_nodes"]))}
        repeats = budget["toy_repeats"]
        draws = [expected_bpd(model.bound(cells, generator=generator)) for _ in range(repeats)]
        row["objective_bpd"], row["objective_error"] = mean_and_error(draws)
        for eval_k in budget["toy_eval_k"]:
            # Independent draws of the K-sample bound: their mean estimates its expectation, with an error.
            draws = [
                expected_bpd(model.iw_log_likelihood(cells, eval_k, chunk=1000, generator=generator))
                for _ in range(max(4, repeats * 16 // eval_k))
            ]
            row[f"iw_bpd_{eval_k}"], row[f"iw_error_{eval_k}"] = mean_and_error(draws)
    return row


def toy_checks(result: dict) -> bool:
    """Whether, for every run, every estimate lies above the model's exact value (to three standard errors of
    the estimate, plus 1e-5 for the quadrature) and the iw bound at the largest K lies below K = 1."""
    eval_k = result["eval_k"]
    ok = True
    for run in result["runs"]:
        exact = run["exact_bpd"]
        estimates = [(run["objective_bpd"], run["objective_error"])]
        estimates += [(run[f"iw_bpd_{k}"], run[f"iw_error_{k}"]) for k in eval_k]
        ok &= all(value >= exact - 3 * error - 1e-5 for value, error in estimates)
        ok &= run[f"iw_bpd_{eval_k[-1]}"] <= run[f"iw_bpd_{eval_k[0]}"]
    return bool(ok)


def format_toy(result: dict) -> str:
    """Markdown: per configuration, mean ± standard deviation over the seeds (the README shows this table)."""
    eval_k = result["eval_k"]
    header = " | ".join(f"iw K={k}" for k in eval_k)
    lines = [
        f"| trained with | its objective | {header} | exact (quadrature) | gap at K={eval_k[0]} / K={eval_k[-1]} |",
        "|---|---:|" + "---:|" * len(eval_k) + "---:|---:|",
    ]
    for row in result["summary"]:

        def cell(name: str, row: dict = row) -> str:
            return format_mean_std(row[name], row[name + "_std"], 4)

        first, last = (row[f"iw_bpd_{k}"] - row["exact_bpd"] for k in (eval_k[0], eval_k[-1]))
        gaps = f"{first:.4f} / {last:.4f}"
        iw = " | ".join(cell(f"iw_bpd_{k}") for k in eval_k)
        lines.append(f"| {row['label']} | {cell('objective_bpd')} | {iw} | {cell('exact_bpd')} | {gaps} |")
    return "\n".join(lines)


def print_toy(result: dict) -> bool:
    """Print the toy table; return whether the checks of :func:`toy_checks` hold for every run."""
    print(
        f"\nToy: 2-D, {TOY_LEVELS}x{TOY_LEVELS} cells, exact data entropy {result['entropy_bpd']:.4f} bits/dim. "
        "Expected bits/dim under the exact P (lower is better; every bound >= the model's exact value):"
    )
    print(format_toy(result))
    ok = toy_checks(result)
    eval_k = result["eval_k"]
    print(
        f"every bound >= exact (to 3 standard errors of its estimate) and iw K={eval_k[-1]} <= K={eval_k[0]}, for "
        f"every model and seed: {'yes' if ok else 'NO'}"
    )
    return ok


def plot_toy(result: dict, path: Path) -> None:
    """The iw bound's gap to the exact value against K, per trained model of the first seed, with 3-standard-
    error bars.

    A linear gap axis, because at large K the Monte-Carlo error is as large as the gap and an estimate
    can fall a little below zero, which a log axis would hide.
    """
    plt = require("matplotlib.pyplot", "matplotlib", "the toy figure")
    eval_k = result["eval_k"]
    first_seed = result["runs"][0]["seed"]
    figure, axes = plt.subplots(figsize=(6.4, 4))
    for index, row in enumerate(run for run in result["runs"] if run["seed"] == first_seed):
        gaps = [row[f"iw_bpd_{k}"] - row["exact_bpd"] for k in eval_k]
        errors = [3 * row[f"iw_error_{k}"] for k in eval_k]
        shifted = [k * 1.06**index for k in eval_k]  # side by side, so the error bars do not overlap
        axes.errorbar(shifted, gaps, yerr=errors, marker="o", capsize=3, label=row["label"])
    axes.axhline(0.0, color="black", linewidth=0.8)
    axes.set_xscale("log")
    axes.set_xlabel("K (samples of the importance-weighted bound)")
    axes.set_ylabel("E[iw bound] - exact (bits/dim)")
    axes.set_title(f"Toy: the iw bound closes in on the exact log P (seed {first_seed}; bars: 3 s.e.)")
    axes.legend(fontsize=8)
    figure.tight_layout()
    path.parent.mkdir(parents=True, exist_ok=True)
    figure.savefig(path, dpi=120)
    plt.close(figure)


# ---------------------------------------------------------------------------------------------------------
# The digits.


def digits_experiment(
    args: argparse.Namespace, budget: dict, seeds: Sequence[int], tqdm, kept: dict[int, list[dict]]
) -> dict:
    """Every configuration of :data:`CONFIGS` trained on the digits once per seed (``kept`` seeds' runs are
    reused); runs and their summary."""
    test = load_digits("test")
    runs = []
    stamp = {"commit": args.commit, "threads": torch.get_num_threads()}
    for seed in seeds:
        if seed in kept:
            runs += kept[seed]
            continue
        for label, dequantizer, objective, k in CONFIGS:
            model, history = train_dequantized(
                dequantizer,
                objective,
                num_samples=k,
                alpha=ALPHA,
                epochs=budget["digits_epochs"],
                seed=seed,
                progress=not args.no_progress,
                **(QUICK_MODEL if args.quick else {}),
            )
            desc = f"{label}, seed {seed}: iw K={budget['eval_samples']}"
            bar = tqdm(total=len(test), desc=desc, disable=args.no_progress, leave=False)
            start = time.perf_counter()
            test_bpd = model.evaluate_bpd(test, budget["eval_samples"], progress=bar.update)
            bar.close()
            runs.append(
                {
                    "label": label,
                    "dequantizer": dequantizer,
                    "objective": objective,
                    "k": k,
                    "seed": seed,
                    **stamp,
                    "train_bpd": history.train_bpd[-1],
                    "test_bpd": test_bpd,
                    "train_time_s": history.train_time_s,
                    "eval_time_s": time.perf_counter() - start,
                    "parameters_q": sum(p.numel() for p in model.dequantizer.parameters()),
                }
            )
    metrics = ["train_bpd", "test_bpd", "train_time_s", "eval_time_s"]
    return {"runs": runs, "summary": summarise_seeds(runs, "label", metrics)}


def format_digits(summary: Sequence[dict]) -> str:
    """Markdown: per configuration, mean ± standard deviation over the seeds."""
    lines = [
        "| dequantization | q parameters | final train objective (bits/dim) | test bits/dim | train time (s) |",
        "|---|---:|---:|---:|---:|",
    ]
    for row in summary:
        lines.append(
            f"| {row['label']} | {row['parameters_q']:,} | {format_mean_std(row['train_bpd'], row['train_bpd_std'])} | "
            f"{format_mean_std(row['test_bpd'], row['test_bpd_std'])} | {row['train_time_s']:.0f} |"
        )
    return "\n".join(lines)


def print_digits(digits: dict, budget: dict) -> list[dict]:
    """Print the digits table and the judged claims; return the claims."""
    print(
        f"\nDigits (8x8, 17 levels; 1497 train / 300 test): 2-level Glow (1x1 convs), {budget['digits_epochs']} "
        f"epochs, test bits/dim by the iw bound with K = {budget['eval_samples']}:"
    )
    print(format_digits(digits["summary"]))
    claims = digits_claims(digits["summary"])
    for claim in claims:
        print(f"claim: {claim['claim']}: {claim['verdict']}")
    return claims


def digits_claims(summary: Sequence[dict]) -> list[dict]:
    """The paper's claims, judged on the summary rows: each bound (iw, Renyi) against the ELBO with the same q,
    every learned q against uniform dequantization, and ARD against the variational q and the linear one.
    Lower test bits/dim is better; a claim holds when its side is better beyond the seeds' spread (the sum of
    the two standard deviations, :func:`flowkernels.benchmarks.seeds.compare`)."""
    by_config = {(row["dequantizer"], row["objective"]): row for row in summary}
    pairs = []
    for dequantizer in ("uniform", "variational"):
        for objective in ("iw", "renyi"):
            pairs.append(((dequantizer, objective), (dequantizer, "elbo")))
    for dequantizer in ("variational", "autoregressive", "arconv"):
        pairs.append(((dequantizer, "elbo"), ("uniform", "elbo")))
    pairs += [(("autoregressive", "elbo"), ("variational", "elbo")), (("autoregressive", "elbo"), ("arconv", "elbo"))]
    claims = []
    for config, baseline in pairs:
        if config not in by_config or baseline not in by_config:
            continue
        row, base = by_config[config], by_config[baseline]
        gap = row["test_bpd"] - base["test_bpd"]
        spread = (
            None
            if row["test_bpd_std"] is None or base["test_bpd_std"] is None
            else row["test_bpd_std"] + base["test_bpd_std"]
        )
        claims.append(
            {
                "claim": f"{row['label']} improves on {base['label']}",
                "bpd": row["test_bpd"],
                "baseline_bpd": base["test_bpd"],
                # None: one seed, no spread to judge by.
                "holds": None if spread is None else bool(gap < -spread),
                "verdict": compare(
                    row["label"],
                    row["test_bpd"],
                    row["test_bpd_std"],
                    base["label"],
                    base["test_bpd"],
                    base["test_bpd_std"],
                    lower_is_better=True,
                    unit="bits/dim",
                ),
            }
        )
    return claims


def main(argv: Sequence[str] | None = None) -> int:
    args = parse_args(argv)
    budget = dict(QUICK if args.quick else FULL)
    if args.digits_epochs is not None:
        budget["digits_epochs"] = args.digits_epochs
    seeds = [0] if args.quick else args.seeds
    tqdm = require("tqdm", "tqdm", "the progress bars").tqdm
    print(f"torch {torch.__version__}, {torch.get_num_threads()} threads, seeds {seeds}, budget {budget}")
    results: dict = {"machine": machine.describe(), "budget": budget, "seeds": seeds, "quick": args.quick}
    args.commit = results["machine"].get("commit")
    kept: dict[str, dict[int, list[dict]]] = {"toy": {}, "digits": {}}
    if args.add_seeds is not None:
        files = [args.out / "dequantization_results.json", *args.add_seeds]
        try:
            kept = {name: runs_by_seed(files, budget, lambda d, name=name: _section(d, name)) for name in kept}
        except ValueError as error:
            print(f"dequantization_results: {error}", file=sys.stderr)
            return 2
    start = time.perf_counter()
    if not args.skip_toy:
        results["toy"] = toy_experiment(args, budget, seeds, tqdm, kept["toy"])
        results["toy_checks_pass"] = print_toy(results["toy"])
        plot_toy(results["toy"], args.out / "dequantization_toy_gap.png")
    if not args.skip_digits:
        results["digits"] = digits_experiment(args, budget, seeds, tqdm, kept["digits"])
        results["digits_claims"] = print_digits(results["digits"], budget)
    results["total_time_s"] = time.perf_counter() - start
    print(f"\ntotal {results['total_time_s'] / 60:.1f} min")
    if not args.quick:
        args.out.mkdir(parents=True, exist_ok=True)
        (args.out / "dequantization_results.json").write_text(json.dumps(results, indent=1, default=str))
    return 0


if __name__ == "__main__":
    sys.exit(main())
