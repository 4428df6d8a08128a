"""The README as a user meets it: its results tables agree with the committed results files, and every
python block runs as written."""

from __future__ import annotations

import importlib.util
import re
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
README = ROOT / "README.md"

# A python block may be preceded by `<!-- test with: A -> B; C -> D -->`: the test runs it with those
# replacements (smaller budgets), and the README shows the reader what changes.
BLOCK = re.compile(r"(?:<!-- test with: (?P<with>[^\n]*?) -->\n)?```python\n(?P<code>.*?)```", re.DOTALL)


def _renderer():
    spec = importlib.util.spec_from_file_location("render_readme", ROOT / "benchmarks" / "render_readme.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def python_blocks() -> list[tuple[str, str]]:
    """(id, code) of every python block, with its `test with` replacements applied."""
    text = README.read_text()
    blocks = []
    for match in BLOCK.finditer(text):
        code = match["code"]
        for pair in filter(None, (match["with"] or "").split(";")):
            old, new = (part.strip() for part in pair.split("->"))
            if old not in code:
                raise AssertionError(f"`test with: {old} -> {new}` names text that is not in its block")
            code = code.replace(old, new)
        heading = [line for line in text[: match.start()].splitlines() if line.startswith("## ")][-1]
        line = text[: match.start()].count("\n") + 1
        blocks.append((f"line{line}-{heading[3:].split(':')[0].split()[0].lower()}", code))
    return blocks


def test_readme_tables_agree_with_their_results_files(capsys):
    render = _renderer()
    assert render.main(["--check"]) == 0, capsys.readouterr().out[-4000:]
    text = README.read_text()
    blocks = render.BLOCK.findall(text)
    assert len(blocks) >= 15  # every results table of the README is a generated block
    # no hand-typed verdicts outside the generated blocks
    outside = render.BLOCK.sub("", text)
    assert not re.search(r"\|[^|\n]*: (?:met|not met)[^|\n]*\|", outside), "a target verdict typed by hand"


def test_render_check_fails_on_a_changed_number(tmp_path):
    render = _renderer()
    text = README.read_text()
    rendered = render.render(text)
    # change one digit inside a generated table: --check must notice
    match = re.search(r"(<!-- results: glow .*?\n.*?\| )(\d)", rendered, re.DOTALL)
    assert match
    digit = match.group(2)
    tampered = rendered[: match.start(2)] + str((int(digit) + 1) % 10) + rendered[match.end(2) :]
    path = tmp_path / "README.md"
    path.write_text(tampered)
    assert render.main(["--check", "--readme", str(path)]) == 1
    path.write_text(rendered)
    assert render.main(["--check", "--readme", str(path)]) == 0


def test_render_refuses_a_results_file_without_its_machine(tmp_path):
    render = _renderer()
    (tmp_path / "glow_results.json").write_text('{"rows": []}')
    with pytest.raises(ValueError, match="records no machine"):
        render.render_block("glow", ["glow_results.json"], tmp_path)
    with pytest.raises(ValueError, match="missing"):
        render.render_block("glow", ["nothing.json"], tmp_path)


def _glow_document(stds: tuple) -> dict:
    """A glow_results.json of the seeded layout (only what render_glow reads): three convs, the given stds."""
    summary = [
        {
            "conv": conv,
            "seeds": [0, 1, 2],
            "parameters": parameters,
            "test_bpd": bpd,
            "test_bpd_std": std,
            "train_time_s": 40.04,
            "train_time_s_std": 1.0,
            "sample_64_s": 0.0134,
            "sample_64_s_std": 0.001,
        }
        for conv, parameters, bpd, std in zip(
            ("1x1", "emerging", "periodic"), (100, 120, 110), (2.34, 2.30, 2.35), stds, strict=True
        )
    ]
    budget = {"epochs": 60, "steps_per_scale": 4, "hidden": 64}
    return {"budget": budget, "batch_size": 64, "seeds": [0, 1, 2], "summary": summary}


def test_render_glow_shows_the_seeds_spread_and_what_it_allows():
    render = _renderer()
    text = render.render_glow([("glow_results.json", _glow_document((0.01, 0.005, 0.02)))])
    assert "| 1x1 (Glow) | 100 | 2.340 ± 0.010 | 40.0 s | 13 ms |" in text
    assert "| emerging 3x3 | 120 | **2.300 ± 0.005** | 40.0 s | 13 ms |" in text
    assert "| periodic 3x3 | 110 | 2.350 ± 0.020 | 40.0 s | 13 ms |" in text
    assert "batch 64; test bits/dim as mean ± sample standard deviation over seeds 0, 1, 2." in text
    assert "emerging vs 1x1: -0.040 bits/dim (better, beyond the seeds' spread of 0.015)." in text
    assert "periodic vs 1x1: +0.010 bits/dim (within the seeds' spread of 0.030)." in text
    one_seed = render.render_glow([("glow_results.json", _glow_document((None, None, None)))])
    assert "| 1x1 (Glow) | 100 | 2.340 |" in one_seed
    assert one_seed.count("one seed: it cannot tell the difference from noise") == 2


def test_render_glow_counts_the_seeds_on_which_each_conv_beats_the_1x1():
    document = _glow_document((0.01, 0.005, 0.02))
    bpd = {"1x1": (2.33, 2.36, 2.33), "emerging": (2.30, 2.31, 2.34), "periodic": (2.36, 2.37, 2.32)}
    document["runs"] = [
        {"conv": conv, "seed": seed, "test_bpd": value}
        for conv, values in bpd.items()
        for seed, value in enumerate(values)
    ]
    text = _renderer().render_glow([("glow_results.json", document)])
    assert "Seed by seed, emerging is lower on 2 of 3." in text
    assert "Seed by seed, periodic is lower on 1 of 3." in text


def test_render_glow_refuses_the_layout_before_seeds():
    render = _renderer()
    old = {"budget": {}, "batch_size": 64, "seed": 0, "rows": []}
    with pytest.raises(ValueError, match="predates seeds; rerun `python benchmarks/experiments/glow_results.py`"):
        render.render_glow([("glow_results.json", old)])


def _dequantization_document() -> dict:
    """A seeded dequantization results document from made-up runs, summarised by the script's own code."""
    script = _renderer()._script("dequantization_results")
    toy_runs, digit_runs = [], []
    for seed, shift in ((0, 0.0), (1, 0.01), (2, -0.01)):
        for label, q, objective, k, bpd in (
            ("uniform", "uniform", "elbo", 1, 2.60),
            ("variational", "variational", "elbo", 1, 2.50),
            ("autoregressive (ARD)", "autoregressive", "elbo", 1, 2.51),
        ):
            base = {"label": label, "dequantizer": q, "objective": objective, "k": k, "seed": seed}
            toy = {"objective_bpd": bpd + shift + 0.05, "objective_error": 0.001, "exact_bpd": bpd + shift}
            for eval_k, gap in ((1, 0.04), (1000, 0.001)):
                toy[f"iw_bpd_{eval_k}"], toy[f"iw_error_{eval_k}"] = bpd + shift + gap, 0.0005
            toy_runs.append(base | toy | {"train_time_s": 1.0})
            test = {"train_bpd": bpd, "test_bpd": bpd + shift, "train_time_s": 60.0, "eval_time_s": 9.0}
            digit_runs.append(base | test | {"parameters_q": 0 if q == "uniform" else 50_000})
    toy_metrics = ["objective_bpd", "exact_bpd", "iw_bpd_1", "iw_bpd_1000", "train_time_s"]
    digits = {"runs": digit_runs, "summary": script.summarise_seeds(digit_runs, "label", ["train_bpd", "test_bpd"])}
    toy = {"entropy_bpd": 2.4, "eval_k": [1, 1000], "runs": toy_runs}
    toy["summary"] = script.summarise_seeds(toy_runs, "label", toy_metrics)
    return {
        "budget": {"digits_epochs": 40, "eval_samples": 1000},
        "seeds": [0, 1, 2],
        "toy": toy,
        "toy_checks_pass": script.toy_checks(toy),
        "digits": digits,
        "digits_claims": script.digits_claims(digits["summary"]),
    }


def test_render_dequantization_shows_the_seeds_spread_and_judges_claims_by_it():
    render, doc = _renderer(), _dequantization_document()
    assert doc["toy_checks_pass"]
    toy = render.render_dequantization_toy([("dequantization_results.json", doc)])
    row = "| uniform | 2.6500 ± 0.0100 | 2.6400 ± 0.0100 | 2.6010 ± 0.0100 | 2.6000 ± 0.0100 | 0.0400 / 0.0010 |"
    assert row in toy
    assert "over seeds 0, 1, 2" in toy and "hold for every model and seed" in toy
    digits = render.render_dequantization_digits([("dequantization_results.json", doc)])
    assert "| autoregressive (ARD) | 50,000 | 2.510 ± 0.000 | 2.510 ± 0.010 | 60 |" in digits
    # 2.50 vs 2.60 with spreads of 0.01 each: beyond; ARD vs variational (+0.01 within 0.02): not shown.
    assert "- variational improves on uniform: yes. variational vs uniform: -0.100 bits/dim (better" in digits
    assert "- autoregressive (ARD) improves on variational: **no**. autoregressive (ARD) vs variational: " in digits
    assert "(within the seeds' spread of 0.020)" in digits
    one_seed = render.render_dequantization_digits([("dequantization_results.json", doc | {"seeds": [0]})])
    assert "- variational improves on uniform: not judged (one seed)." in one_seed and "**no**" not in one_seed


def test_render_dequantization_refuses_the_layout_before_seeds():
    rerun = "predates seeds; rerun `python benchmarks/experiments/dequantization_results.py`"
    with pytest.raises(ValueError, match=rerun):
        _renderer().render_dequantization_digits([("dequantization_results.json", {"seed": 0, "digits": []})])


BLOCKS = python_blocks()


def test_the_readme_has_its_python_blocks():
    assert len(BLOCKS) >= 9


@pytest.mark.parametrize("code", [code for _, code in BLOCKS], ids=[name for name, _ in BLOCKS])
def test_readme_python_block_runs_as_written(code, tmp_path):
    # A fresh interpreter in an empty folder: a block may use only what it imports and creates itself.
    done = subprocess.run(
        [sys.executable, "-c", code], cwd=tmp_path, capture_output=True, text=True, timeout=300
    )
    assert done.returncode == 0, f"the block failed:\n{code}\n--- stderr ---\n{done.stderr[-3000:]}"
