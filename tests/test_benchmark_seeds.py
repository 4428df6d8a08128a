"""The seed helpers of every comparison experiment (flowkernels.benchmarks.seeds): exact means and sample
standard deviations, their formatting, the verdict of a comparison, and the grouping of per-seed rows."""

from __future__ import annotations

import json
import math

import pytest

from flowkernels.benchmarks.seeds import compare, format_mean_std, mean_std, runs_by_seed, summarise_seeds


def test_mean_std_is_the_mean_and_the_sample_standard_deviation():
    assert mean_std([1.0, 2.0, 3.0]) == (2.0, 1.0)
    # by hand: mean 5, squared deviations 9 1 1 1 0 0 4 16 sum to 32, over n - 1 = 7
    mean, std = mean_std([2, 4, 4, 4, 5, 5, 7, 9])
    assert mean == 5.0 and std == pytest.approx(math.sqrt(32 / 7), rel=1e-15)
    assert mean_std((1.0, 3.0)) == (2.0, pytest.approx(math.sqrt(2), rel=1e-15))
    assert mean_std([4.0, 4.0, 4.0]) == (4.0, 0.0)
    assert mean_std([0.25]) == (0.25, None)
    assert all(type(x) is float for x in mean_std([1, 2]))


def test_mean_std_refuses_no_values():
    with pytest.raises(ValueError, match="at least one value"):
        mean_std([])


def test_format_mean_std():
    assert format_mean_std(2.3412, 0.0121) == "2.341 ± 0.012"
    assert format_mean_std(2.3412, None) == "2.341"
    assert format_mean_std(43.04, 1.26, digits=1) == "43.0 ± 1.3"
    assert format_mean_std(0.5, 0.0) == "0.500 ± 0.000"


def test_compare_beyond_the_spread_better_and_worse():
    # lower is better: a difference of -0.03 beyond a spread of 0.02
    assert (
        compare("emerging", 2.31, 0.01, "1x1", 2.34, 0.01, lower_is_better=True, unit="bits/dim")
        == "emerging vs 1x1: -0.030 bits/dim (better, beyond the seeds' spread of 0.020)."
    )
    assert (
        compare("periodic", 2.465, 0.01, "1x1", 2.341, 0.02, lower_is_better=True, unit="bits/dim")
        == "periodic vs 1x1: +0.124 bits/dim (worse, beyond the seeds' spread of 0.030)."
    )
    # higher is better (accuracy): the same signs give the opposite verdicts
    assert (
        compare("p6", 0.9, 0.01, "p4", 0.8, 0.01, False)
        == "p6 vs p4: +0.100 (better, beyond the seeds' spread of 0.020)."
    )
    assert (
        compare("p6", 0.8, 0.01, "p4", 0.9, 0.01, False)
        == "p6 vs p4: -0.100 (worse, beyond the seeds' spread of 0.020)."
    )


def test_compare_within_the_spread():
    assert (
        compare("p6", 0.795, 0.014, "p4", 0.818, 0.009, lower_is_better=False)
        == "p6 vs p4: -0.023 (within the seeds' spread of 0.023)."
    )
    # a gap equal to the spread is within it (the rule is |gap| <= std_a + std_b); zero spread, zero gap too
    assert "within" in compare("a", 1.5, 0.25, "b", 1.0, 0.25, lower_is_better=True)
    assert "within" in compare("a", 1.0, 0.0, "b", 1.0, 0.0, lower_is_better=True)
    assert "worse" in compare("a", 1.5, 0.25, "b", 1.0, 0.125, lower_is_better=True)


def test_compare_with_one_seed_claims_nothing():
    expected = "a vs b: -1.000 nats (one seed: it cannot tell the difference from noise)."
    assert compare("a", 1.0, None, "b", 2.0, 0.5, True, "nats") == expected
    assert compare("a", 1.0, 0.5, "b", 2.0, None, True, "nats") == expected
    assert "noise" in compare("a", 1.0, None, "b", 1.0, None, lower_is_better=False)


def test_summarise_seeds_groups_in_first_seen_order_and_keeps_equal_fields():
    runs = [
        {"task": "t", "conv": "1x1", "seed": 0, "parameters": 10, "time": 1.0, "note": "x", "bpd": 2.0},
        {"task": "t", "conv": "emerging", "seed": 0, "parameters": 12, "time": 9.0, "note": "x", "bpd": 1.0},
        {"task": "t", "conv": "1x1", "seed": 1, "parameters": 10, "time": 3.0, "note": "y", "bpd": 3.0},
        {"task": "t", "conv": "1x1", "seed": 2, "parameters": 10, "time": 2.0, "bpd": 4.0},
        {"task": "u", "conv": "1x1", "seed": 5, "parameters": 10, "time": 2.0, "note": "z", "bpd": 7.0},
    ]
    summary = summarise_seeds(runs, ("task", "conv"), ["bpd", "time"])
    assert [(r["task"], r["conv"]) for r in summary] == [("t", "1x1"), ("t", "emerging"), ("u", "1x1")]
    first, second, third = summary
    # key fields, seeds, the equal fields; "note" differs (and is missing once) in the first group: dropped
    assert first == {
        "task": "t",
        "conv": "1x1",
        "seeds": [0, 1, 2],
        "parameters": 10,
        "bpd": 3.0,
        "bpd_std": 1.0,
        "time": 2.0,
        "time_std": 1.0,
    }
    assert list(first)[:3] == ["task", "conv", "seeds"]
    assert second == {
        "task": "t",
        "conv": "emerging",
        "seeds": [0],
        "parameters": 12,
        "note": "x",
        "bpd": 1.0,
        "bpd_std": None,
        "time": 9.0,
        "time_std": None,
    }
    assert third["seeds"] == [5] and third["note"] == "z" and third["bpd"] == 7.0
    # one key as a string
    by_conv = summarise_seeds(runs, "conv", ["bpd"])
    assert [r["conv"] for r in by_conv] == ["1x1", "emerging"]
    assert by_conv[0]["seeds"] == [0, 1, 2, 5] and by_conv[0]["bpd"] == 4.0 and "task" not in by_conv[0]
    assert "seed" not in by_conv[0]
    assert summarise_seeds([], "conv", ["bpd"]) == []


def test_summarise_seeds_keeps_a_metric_that_a_configuration_lacks_as_none():
    runs = [
        {"method": "bicubic", "seed": 0, "bpd": None, "psnr": 30.0},
        {"method": "bicubic", "seed": 1, "bpd": None, "psnr": 31.0},
    ]
    (row,) = summarise_seeds(runs, "method", ["bpd", "psnr"])
    assert row["bpd"] is None and row["bpd_std"] is None
    assert row["psnr"] == 30.5


def _results_file(tmp_path, budget, quick=False, runs=None, name="results.json"):
    runs = runs if runs is not None else [{"seed": 0, "bpd": 2.5}, {"seed": 3, "bpd": 2.6, "commit": "b", "threads": 2}]
    document = {"machine": {"commit": "a", "threads": 1}, "quick": quick, "sr2": {"runs": runs, "budget": budget}}
    path = tmp_path / name
    path.write_text(json.dumps(document))
    return path


def _sr2(document):
    return document.get("sr2")


def test_runs_by_seed_keeps_each_seed_with_the_commit_and_threads_it_ran_at(tmp_path):
    budget = {"epochs": 4, "net": {"hidden": 8}, "shape": (2, 3)}  # a tuple is written as a list
    path = _results_file(tmp_path, json.loads(json.dumps(budget)))
    kept = runs_by_seed([path, tmp_path / "missing.json"], budget, _sr2)
    assert kept == {
        0: [{"seed": 0, "bpd": 2.5, "commit": "a", "threads": 1}],  # from the file's machine entry
        3: [{"seed": 3, "bpd": 2.6, "commit": "b", "threads": 2}],  # its own
    }
    assert runs_by_seed([path], budget, lambda document: document.get("binary")) == {}  # a section it lacks


def test_runs_by_seed_takes_a_seed_whole_from_the_first_file_that_has_it(tmp_path):
    budget = {"epochs": 4}
    first = _results_file(tmp_path, budget, runs=[{"seed": 1, "bpd": 1.0}], name="first.json")
    second = _results_file(
        tmp_path,
        budget,
        runs=[{"seed": 1, "bpd": 9.0}, {"seed": 1, "bpd": 9.5}, {"seed": 2, "bpd": 2.0}],
        name="2.json",
    )
    kept = runs_by_seed([first, second], budget, _sr2)
    assert [run["bpd"] for run in kept[1]] == [1.0] and [run["bpd"] for run in kept[2]] == [2.0]


def test_runs_by_seed_refuses_another_budget_a_smoke_run_and_a_broken_file(tmp_path):
    path = _results_file(tmp_path, {"epochs": 4})
    with pytest.raises(ValueError, match="another budget"):
        runs_by_seed([path], {"epochs": 5}, _sr2)
    path = _results_file(tmp_path, {"epochs": 4}, quick=True)
    with pytest.raises(ValueError, match="quick smoke run"):
        runs_by_seed([path], {"epochs": 4}, _sr2)
    path.write_text('{"sr2": ')
    with pytest.raises(ValueError, match="cannot read"):
        runs_by_seed([path], {"epochs": 4}, _sr2)
