"""Seeded experiments: mean and spread over seeds, and comparisons that say what the spread allows.

Every experiment whose claim is a comparison runs each configuration under several seeds (one result row
per seed), summarises the rows with :func:`summarise_seeds`, prints ``mean ± std`` with
:func:`format_mean_std`, and states each comparison with :func:`compare`. The spread is the sample
standard deviation (``ddof=1``); a difference counts as real only when it exceeds the sum of the two
configurations' standard deviations, a deliberately plain rule (no test of significance is claimed).

>>> mean, std = mean_std([2.30, 2.32, 2.34])
>>> format_mean_std(mean, std)
'2.320 ± 0.020'
>>> compare("emerging", 2.31, 0.01, "1x1", 2.34, 0.01, lower_is_better=True, unit="bits/dim")
"emerging vs 1x1: -0.030 bits/dim (better, beyond the seeds' spread of 0.020)."
"""

from __future__ import annotations

import argparse
import json
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import numpy as np

__all__ = [
    "mean_std",
    "format_mean_std",
    "compare",
    "summarise_seeds",
    "runs_by_seed",
    "file_stamp",
    "add_seeds_argument",
]


def mean_std(values: Sequence[float]) -> tuple[float, float | None]:
    """The mean of ``values`` and their sample standard deviation (``ddof=1``); ``None`` for one value.

    >>> mean_std([1.0, 2.0, 3.0])
    (2.0, 1.0)
    >>> mean_std([0.5])
    (0.5, None)
    """
    if len(values) == 0:
        raise ValueError("mean_std needs at least one value")
    mean = float(np.mean(values))
    std = float(np.std(values, ddof=1)) if len(values) > 1 else None
    return mean, std


def format_mean_std(mean: float, std: float | None, digits: int = 3) -> str:
    """``"2.341 ± 0.012"``, or ``"2.341"`` when ``std`` is ``None`` (one seed).

    >>> format_mean_std(2.3412, 0.0121)
    '2.341 ± 0.012'
    >>> format_mean_std(2.3412, None, digits=2)
    '2.34'
    """
    text = f"{mean:.{digits}f}"
    return text if std is None else f"{text} ± {std:.{digits}f}"


def compare(
    name_a: str,
    mean_a: float,
    std_a: float | None,
    name_b: str,
    mean_b: float,
    std_b: float | None,
    lower_is_better: bool,
    unit: str = "",
    digits: int = 3,
) -> str:
    """One sentence: the difference ``mean_a - mean_b`` and what the seeds' spread allows of it.

    The spread is ``std_a + std_b``. A difference whose magnitude is at most the spread is "within the
    seeds' spread" (no claim either way); a larger one makes ``a`` better or worse than ``b`` according to
    ``lower_is_better``. When either standard deviation is ``None`` (a single seed), the sentence says that
    one seed cannot tell the difference from noise.

    >>> compare("p6", 0.795, 0.014, "p4", 0.818, 0.009, lower_is_better=False)
    "p6 vs p4: -0.023 (within the seeds' spread of 0.023)."
    >>> compare("p6m", 0.764, 0.022, "p4m", 0.843, 0.018, lower_is_better=False)
    "p6m vs p4m: -0.079 (worse, beyond the seeds' spread of 0.040)."
    >>> compare("periodic", 2.465, None, "1x1", 2.341, None, lower_is_better=True, unit="bits/dim")
    'periodic vs 1x1: +0.124 bits/dim (one seed: it cannot tell the difference from noise).'
    """
    gap = mean_a - mean_b
    difference = f"{gap:+.{digits}f}" + (f" {unit}" if unit else "")
    if std_a is None or std_b is None:
        verdict = "one seed: it cannot tell the difference from noise"
    else:
        spread = std_a + std_b
        if abs(gap) <= spread:
            verdict = f"within the seeds' spread of {spread:.{digits}f}"
        else:
            better = gap < 0 if lower_is_better else gap > 0
            verdict = f"{'better' if better else 'worse'}, beyond the seeds' spread of {spread:.{digits}f}"
    return f"{name_a} vs {name_b}: {difference} ({verdict})."


def summarise_seeds(
    rows: Sequence[dict[str, Any]], key: str | Sequence[str], metrics: Sequence[str]
) -> list[dict[str, Any]]:
    """One row per configuration from result rows that each hold one seed's run.

    Rows are grouped by the field(s) ``key``, in the order the groups are first seen. Each summary row holds
    the key fields, ``"seeds"`` (the groups' ``"seed"`` values, in order), the other fields whose values are
    equal across the group (parameters, widths; fields that differ are dropped), and for each metric ``m``
    its mean ``m`` and sample standard deviation ``m + "_std"`` (``None`` for one seed; both ``None`` for a
    metric that is ``None`` in every run of the group).

    >>> runs = [
    ...     {"conv": "1x1", "seed": 0, "parameters": 10, "bpd": 2.0},
    ...     {"conv": "emerging", "seed": 0, "parameters": 12, "bpd": 1.5},
    ...     {"conv": "1x1", "seed": 1, "parameters": 10, "bpd": 3.0},
    ... ]
    >>> for row in summarise_seeds(runs, "conv", ["bpd"]):
    ...     print(row)
    {'conv': '1x1', 'seeds': [0, 1], 'parameters': 10, 'bpd': 2.5, 'bpd_std': 0.7071067811865476}
    {'conv': 'emerging', 'seeds': [0], 'parameters': 12, 'bpd': 1.5, 'bpd_std': None}
    """
    keys = (key,) if isinstance(key, str) else tuple(key)
    groups: dict[tuple, list[dict[str, Any]]] = {}
    for row in rows:
        groups.setdefault(tuple(row[k] for k in keys), []).append(row)
    skip = set(keys) | {"seed"} | set(metrics)
    summary = []
    for values, group in groups.items():
        out: dict[str, Any] = dict(zip(keys, values, strict=True))
        out["seeds"] = [row["seed"] for row in group]
        first = group[0]
        for field, value in first.items():
            if field not in skip and all(field in row and row[field] == value for row in group[1:]):
                out[field] = value
        for metric in metrics:
            values = [row[metric] for row in group]
            # A metric a configuration does not have (None in every run, e.g. no likelihood) stays None.
            missing = all(value is None for value in values)
            out[metric], out[metric + "_std"] = (None, None) if missing else mean_std(values)
        summary.append(out)
    return summary


def runs_by_seed(
    files: Sequence[Path], budget: Any, section: Callable[[dict[str, Any]], dict[str, Any] | None]
) -> dict[int, list[dict[str, Any]]]:
    """The runs that earlier results files hold for one experiment, by seed, so that a script can add seeds to
    them without rerunning the seeds they have (the experiments' ``--add-seeds``), and join seeds run in
    separate processes.

    ``section(document)`` picks the experiment out of a results file: a dict with its ``"runs"`` (each with its
    ``"seed"``) and the ``"budget"`` they ran at, or ``None``. A seed's runs come whole from the first file that
    has the seed; files that do not exist are skipped. Every run is returned with the ``"commit"`` and
    ``"threads"`` it ran at (its own, else those of its file's ``machine`` entry). A ``ValueError`` says why a
    file cannot be used: unreadable, a quick smoke run, or another budget than ``budget`` (compared as JSON,
    the way both were written).
    """
    kept: dict[int, list[dict[str, Any]]] = {}
    for path in files:
        if not path.exists():
            continue
        try:
            document = json.loads(path.read_text())
        except (OSError, ValueError) as error:
            raise ValueError(f"cannot read {path}: {error}") from None
        if document.get("quick"):
            raise ValueError(f"{path} is a quick smoke run; its runs are not measurements to keep")
        entry = section(document)
        if not entry or not entry.get("runs"):
            continue
        if entry.get("budget") != json.loads(json.dumps(budget)):
            raise ValueError(f"{path} ran at another budget ({entry.get('budget')}); rerun every seed")
        stamp = file_stamp(document)
        mine: dict[int, list[dict[str, Any]]] = {}
        for run in entry["runs"]:
            mine.setdefault(run["seed"], []).append(stamp | run)
        for seed, runs in mine.items():
            kept.setdefault(seed, runs)
    return kept


def file_stamp(document: dict[str, Any]) -> dict[str, Any]:
    """The ``"commit"`` and ``"threads"`` of a results file's ``machine`` entry: what its runs that carry no stamp
    of their own ran at. A script that rewrites the file must stamp such runs first, or they would take the new
    machine entry's commit.

    >>> file_stamp({"machine": {"commit": "abc1234", "threads": 2, "cpu": "AMD EPYC"}})
    {'commit': 'abc1234', 'threads': 2}
    """
    machine = document.get("machine", {})
    return {"commit": machine.get("commit"), "threads": machine.get("threads")}


def add_seeds_argument(parser: argparse.ArgumentParser, results_file: str) -> None:
    """The experiments' ``--add-seeds [FILE ...]``: keep the runs of ``OUT/results_file`` and of each FILE (see
    :func:`runs_by_seed`) and run only the seeds they lack."""
    parser.add_argument(
        "--add-seeds",
        nargs="*",
        type=Path,
        default=None,
        metavar="FILE",
        help=f"keep the runs (same budget) that OUT/{results_file} and any FILE hold for the seeds asked and run "
        "only the others; lets seeds run in separate processes (each with its own --out) and be joined",
    )
