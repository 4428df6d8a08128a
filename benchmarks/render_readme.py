"""Render the README's result tables from the results files that the benchmark scripts write.

Every table of measured numbers in ``README.md`` sits between two markers::

    <!-- results: RENDERER FILE [FILE ...] -->
    ...generated: a provenance line, the table, sentences whose numbers come from the same files...
    <!-- end results -->

``FILE`` names a JSON file under ``benchmarks/results/``, written by a kernel benchmark (``flowkernels bench``)
or a model experiment (``benchmarks/experiments/``), which records the machine (CPU model, instruction-set
path, threads, torch version, commit, date); ``RENDERER`` is one of :data:`RENDERERS`. Nothing between the
markers is typed by hand: this script replaces it, and ``--check`` (run by ``tests/test_readme.py`` in CI)
fails where the README and its results files disagree.

    python benchmarks/render_readme.py            # rewrite the generated blocks of README.md
    python benchmarks/render_readme.py --check    # exit 1 and print a diff if any block is stale

Targets are judged here by code from the measured ratios (``target_met`` of the benchmark harness):
a ratio below its target is "not met", however close.
"""

from __future__ import annotations

import argparse
import difflib
import importlib.util
import json
import re
import sys
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

from flowkernels.benchmarks.seeds import compare, format_mean_std

ROOT = Path(__file__).resolve().parent.parent
RESULTS = ROOT / "benchmarks" / "results"
README = ROOT / "README.md"

BLOCK = re.compile(
    r"(?P<open><!-- results: (?P<renderer>[\w-]+) (?P<files>[^>]+?) -->\n)(?P<body>.*?)(?P<close><!-- end results -->)",
    re.DOTALL,
)

# Which script writes each results file (named in the provenance line, so a reader can redo it).
WRITERS = {
    "glow_results.json": "python benchmarks/experiments/glow_results.py",
    "hexnet_results.json": "python benchmarks/experiments/hexnet_results.py",
    "idf_results.json": "python benchmarks/experiments/idf_results.py",
    "idf_integer.json": "python benchmarks/experiments/idf_integer_results.py",
    "dequantization_results.json": "python benchmarks/experiments/dequantization_results.py",
    "conditional_results.json": "python benchmarks/experiments/conditional_results.py",
    "predictive_sampling.json": "python benchmarks/experiments/predictive_sampling_results.py",
}


def writer(name: str) -> str:
    if name in WRITERS:
        return WRITERS[name]
    match = re.fullmatch(r"bench_(\w+?)_(\w+)\.json", name)
    if match:
        family, path = match.groups()
        env = "" if path == "avx2" else f"FLOWKERNELS_CPU_ISA={path} "
        return f"{env}flowkernels bench {family} --json benchmarks/results/{name}"
    return f"the script of benchmarks/ that writes {name} (add it to WRITERS in render_readme.py)"


def stale(name: str, what: str) -> ValueError:
    """The error for a results file written before its script recorded ``what``: it names the command to rerun."""
    return ValueError(f"{name} predates {what}; rerun `{writer(name)}`")


def provenance(documents: Sequence[tuple[str, dict]]) -> str:
    """One line per results file: where the numbers come from and the machine they were measured on."""
    lines = []
    for name, document in documents:
        m = document.get("machine")
        if not m:
            raise ValueError(f"{name} records no machine; rerun `{writer(name)}`")
        where = f"GPU {m['gpu']}" if m.get("gpu") else f"{m['cpu']} ({m['cores']} cores, {m['cpu_isa']} path)"
        commit = f" @ {m['commit']}" if m.get("commit") else ""
        command = document.get("command") or writer(name)
        lines.append(
            f"<sub>`benchmarks/results/{name}`, written by `{command}`: {where}, {m['threads']} threads, "
            f"torch {m['torch']}, flowkernels {m['flowkernels']}{commit}, {m.get('date', 'date not recorded')}."
            "</sub>"
        )
    return "<br>\n".join(lines)


def _renamed(mapping: dict, key: str, old_key: str) -> Any:
    """``mapping[key]``, or ``mapping[old_key]`` in a results file written before the README's glossary renamed it
    (issue 22): results stay as their script wrote them."""
    return mapping[key] if key in mapping else mapping[old_key]


def table(header: Sequence[str], rows: Sequence[Sequence[Any]], align: str | None = None) -> str:
    """A markdown table; ``align`` is one character per column, ``l`` or ``r`` (default: first left)."""
    align = align or "l" + "r" * (len(header) - 1)
    rule = "|" + "|".join("---" if a == "l" else "---:" for a in align) + "|"
    lines = ["| " + " | ".join(header) + " |", rule]
    lines += ["| " + " | ".join(str(cell) for cell in row) + " |" for row in rows]
    return "\n".join(lines)


def bold_best(values: Sequence[float | None], text: Sequence[str], lowest: bool = True) -> list[str]:
    """``text`` with the best of ``values`` in bold (ties all bold)."""
    present = [v for v in values if v is not None]
    if not present:
        return list(text)
    best = min(present) if lowest else max(present)
    return [f"**{t}**" if v is not None and v == best else t for v, t in zip(values, text, strict=True)]


def verdict(row: dict, judged: bool) -> str:
    """The target and whether the measured ratios meet it (decided by the harness's code)."""
    if row["target"] in ("-", "", None):
        return ""
    if not judged or row["target_met"] is None:
        return f"{row['target']}: not judged"
    return f"{row['target']}: {'met' if row['target_met'] else '**not met**'}"


# ---------------------------------------------------------------------------------------------------------
# Kernel benchmarks (flowkernels bench --json): one renderer for every family.


def _time_or_rate(row: dict, ms: float, rate: float | None) -> str:
    if row.get("items"):
        return f"{rate:.3g} M/s" if rate >= 1 else f"{rate:.2g} M/s"
    return f"{ms:.3g} ms" if ms >= 0.01 else f"{ms * 1e3:.3g} us"


def _ratio(value: float) -> str:
    return f"{value:.0f}x" if value >= 100 else f"{value:.3g}x"


def render_kernels(documents: Sequence[tuple[str, dict]]) -> str:
    """Rows of one or more ``flowkernels bench --json`` files. Times in ms (rates in million items per
    second where a case counts items); ratios are reference / kernel and peer / kernel for the same work."""
    rows = [(doc, row) for _, doc in documents for row in doc["results"]]
    peers = list(dict.fromkeys(peer for _, row in rows for peer in row["peers_ms"]))
    several_paths = len({row["path"] for _, row in rows}) > 1
    memory = any(row["memory_ratio"] is not None for _, row in rows)
    notes = any(row.get("notes") for _, row in rows)
    header = ["op", "mode", "shape", "threads"] + (["CPU path"] if several_paths else [])
    header += ["reference", "kernel", "vs reference"] + (["memory vs reference"] if memory else [])
    for peer in peers:
        header += [peer, f"vs {peer}"]
    header += ["target"] + (["notes"] if notes else [])
    body = []
    for doc, row in rows:
        rates = row.get("peer_rates_mps") or {}
        cells = [f"`{row['op']}`", row["mode"], row["shape"], row["threads"]]
        cells += [row["path"].split()[0]] if several_paths else []
        cells += [
            _time_or_rate(row, row["reference_ms"], row.get("reference_rate_mps")),
            _time_or_rate(row, row["kernel_ms"], row.get("kernel_rate_mps")),
            _ratio(row["speedup"]),
        ]
        if memory:
            cells.append("" if row["memory_ratio"] is None else f"{row['memory_ratio']:.2g}x")
        for peer in peers:
            if peer in row["peers_ms"]:
                cells += [
                    _time_or_rate(row, row["peers_ms"][peer], rates.get(peer)),
                    _ratio(row["peer_speedups"][peer]),
                ]
            else:
                cells += ["", ""]
        cells.append(verdict(row, doc.get("judged", True)))
        if notes:
            cells.append(row.get("notes", ""))
        body.append(cells)
    align = "lll" + "r" + ("l" if several_paths else "") + "rrr" + ("r" if memory else "") + "rr" * len(peers) + "l"
    met = [row["target_met"] for doc, row in rows if doc.get("judged", True) and row["target"] not in ("-", "")]
    summary = f"Targets met: {sum(1 for m in met if m)} of {len(met)}." if met else ""
    return "\n\n".join(part for part in (table(header, body, align + ("l" if notes else "")), summary) if part)


# ---------------------------------------------------------------------------------------------------------
# Model experiments.


def render_glow(documents: Sequence[tuple[str, dict]]) -> str:
    """Glow's invertible convolutions: mean ± standard deviation over seeds, and each conv against the 1x1."""
    doc = documents[0][1]
    if "summary" not in doc:
        raise stale("glow_results.json", "seeds")
    rows, budget = doc["summary"], doc["budget"]
    bpd = bold_best([r["test_bpd"] for r in rows], [format_mean_std(r["test_bpd"], r["test_bpd_std"]) for r in rows])
    names = {"1x1": "1x1 (Glow)", "emerging": "emerging 3x3", "periodic": "periodic 3x3"}
    body = [
        [
            names.get(r["conv"], r["conv"]),
            f"{r['parameters']:,}",
            b,
            f"{r['train_time_s']:.1f} s",
            f"{r['sample_64_s'] * 1e3:.0f} ms",
        ]
        for r, b in zip(rows, bpd, strict=True)
    ]
    header = ["invertible conv", "parameters", "test bits/dim", "training time (mean)", "64 samples (mean)"]
    text = table(header, body)
    sentences = [
        f"Budget: {budget['epochs']} epochs, {_renamed(budget, 'steps_per_scale', 'steps_per_level')} steps per scale, "
        f"coupling width "
        f"{budget['hidden']}, batch {doc['batch_size']}; test bits/dim as mean ± sample standard deviation over "
        f"seeds {', '.join(map(str, doc['seeds']))}."
    ]
    by = {r["conv"]: r for r in rows}
    pairs = [kind for kind in ("emerging", "periodic") if kind in by and "1x1" in by]
    if pairs:
        sentences.append(
            "Test bits/dim, each 3x3 convolution minus the 1x1 (lower is better; beyond or within the seeds' "
            "spread, the sum of the two standard deviations):"
        )
    # Seed by seed too: every conv of a seed starts from that seed, so the runs pair up.
    per_seed = {(run["conv"], run["seed"]): run["test_bpd"] for run in doc.get("runs", [])}
    for kind in pairs:
        a, b = by[kind], by["1x1"]
        sentence = compare(
            kind, a["test_bpd"], a["test_bpd_std"], "1x1", b["test_bpd"], b["test_bpd_std"], True, "bits/dim"
        )
        paired = [(per_seed[(kind, s)], per_seed[("1x1", s)]) for s in doc["seeds"] if (kind, s) in per_seed]
        if len(paired) > 1 and ("1x1", doc["seeds"][0]) in per_seed:
            lower = sum(ours < theirs for ours, theirs in paired)
            sentence += f" Seed by seed, {kind} is lower on {lower} of {len(paired)}."
        sentences.append(sentence)
    return text + "\n\n" + " ".join(sentences)


def _mean(values: Sequence[float]) -> float:
    return sum(values) / len(values)


def render_hexnet(documents: Sequence[tuple[str, dict]]) -> str:
    doc = documents[0][1]
    if "summary" not in doc:
        raise stale("hexnet_results.json", "seeds and tasks")
    names = {"square": "square (3x3 conv2d)", "hex": "hex (planar)"}

    def spread(row: dict, name: str) -> str:
        return format_mean_std(row[name], row[name + "_std"])

    body = [
        [
            r["task"],
            names.get(r["lattice"], r["lattice"]),
            f"{r['parameters']:,}",
            spread(r, "test_accuracy"),
            spread(r, "rotation_accuracy"),
            spread(r, "mirror_accuracy"),
            f"{r['seconds_per_epoch']:.2f}",
        ]
        for r in doc["summary"]
    ]
    header = ["task", "lattice", "parameters", "test accuracy", "rotated by 60°..300°", "mirrored (6 axes)"]
    header.append("s / epoch")
    text = table(header, body)
    budget = doc["budget"]
    sentences = [
        f"Budget: {budget['budget']:,} parameters, {budget['epochs']} epochs, batch {doc['batch_size']}, "
        f"no augmentation; mean ± sample standard deviation over seeds {', '.join(map(str, doc['seeds']))}."
    ]
    for r in doc["summary"]:
        if r.get("rot90_accuracy") is not None:
            sentences.append(f"{r['task']}, {r['lattice']} under exact quarter turns: {r['rot90_accuracy']:.3f}.")
    claims = [
        "HexaConv's claim is hexagonal groups above their square counterparts at equal parameters. Test accuracy, "
        "hexagonal minus square (beyond or within the seeds' spread, the sum of the two standard deviations):"
    ]
    by = {(r["task"], r["lattice"]): r for r in doc["summary"]}
    for task in dict.fromkeys(r["task"] for r in doc["summary"]):
        for hexagonal, square in (("p6", "p4"), ("p6m", "p4m"), ("hex", "square")):
            if (task, hexagonal) not in by or (task, square) not in by:
                continue
            h, q = by[(task, hexagonal)], by[(task, square)]
            claims.append(
                compare(
                    f"{task}, {hexagonal}",
                    h["test_accuracy"],
                    h["test_accuracy_std"],
                    square,
                    q["test_accuracy"],
                    q["test_accuracy_std"],
                    lower_is_better=False,
                )
            )
    return text + "\n\n" + " ".join(sentences) + "\n\n" + " ".join(claims)


def _script(name: str):
    """An experiment script (``experiments/<name>.py``) as a module: its table formatter is the one the README
    shows."""
    spec = importlib.util.spec_from_file_location(name, Path(__file__).resolve().parent / "experiments" / f"{name}.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def render_idf_integer(documents: Sequence[tuple[str, dict]]) -> str:
    doc = documents[0][1]
    rows = doc["rows"]
    changes = [100 * r["test_bpd_change"] for r in rows]
    # Codec speed-up: float time / integer time over one encode and one decode of the same pixels.
    speedups = [
        (1 / r["float_encode_mpx_s"] + 1 / r["float_decode_mpx_s"])
        / (1 / r["integer_encode_mpx_s"] + 1 / r["integer_decode_mpx_s"])
        for r in rows
    ]
    better = all(c < 0 for c in changes)
    sentence = (
        f"Test bits/dim of the integer models against the float models they came from: "
        f"{min(changes):+.2f}% to {max(changes):+.2f}% ({'all better' if better else 'not all better'}; "
        f"the issue allowed 1% worse). Encode plus decode with the integer models: "
        f"{min(speedups):.2f}x to {max(speedups):.2f}x the float models' speed (best of {doc['rounds']} rounds)."
    )
    return _script("idf_integer_results").format_table(rows) + "\n\n" + sentence


def render_idf_codec(documents: Sequence[tuple[str, dict]]) -> str:
    doc = documents[0][1]
    if doc.get("quick"):
        raise ValueError("idf_results.json is a --quick run; rerun `python benchmarks/experiments/idf_results.py`")
    rows = doc["rows"]
    codecs = list(rows[0]["classical"])
    header = [
        "data",
        "IDF model",
        "IDF coded",
        *codecs,
        "lzma",
        "classical codecs given",
        "encode Mpx/s",
        "decode Mpx/s",
        "rANS share",
    ]
    body = []
    for r in rows:
        sizes = [r["idf"]["coded"], *(r["classical"][c] for c in codecs), r["lzma"]]
        text = [f"{v:.3f}" if v is not None else "-" for v in sizes]
        best = bold_best(sizes, text)
        body.append(
            [
                r["label"],
                f"{r['idf']['ideal']:.3f}",
                *best,
                r["compared"],
                f"{r['idf']['encode_px_s'] / 1e6:.2f}",
                f"{r['idf']['decode_px_s'] / 1e6:.2f}",
                f"{100 * r['idf']['rans_share']:.1f}%",
            ]
        )
    align = "l" + "r" * (3 + len(codecs)) + "l" + "rrr"
    beats = []
    for r in rows:
        won = [c for c in codecs if r["idf"]["coded"] < r["classical"][c]]
        lost = [c for c in codecs if r["idf"]["coded"] >= r["classical"][c]]
        beats.append(
            f"{r['label']}: smaller than {', '.join(won) if won else 'none'}"
            + (f"; not smaller than {', '.join(lost)}" if lost else "")
        )
    shares = [r["idf"]["rans_share"] * 100 for r in rows]
    return (
        table(header, body, align)
        + "\n\nWhole IDF files against each classical codec (bold: the smallest in the row):\n\n"
        + "\n".join(f"- {line}." for line in beats)
        + f"\n\nrANS takes {min(shares):.1f}% to {max(shares):.1f}% of the codec's time."
    )


def render_codec_heldout(documents: Sequence[tuple[str, dict]]) -> str:
    """The .fkc files of ``flowkernels compress`` on the held-out photographs and on other kinds of image,
    the 768x512 speed, the codec issue's targets as judged by ``heldout.judge``, and the data's sources."""
    from flowkernels.benchmarks import heldout

    doc = documents[0][1]
    if "heldout" not in doc:
        raise ValueError("idf_results.json has no held-out rows; rerun `python benchmarks/experiments/idf_results.py`")
    sources = "\n".join(
        f"- `{name}`: {s['package']} ({s['licence']}), {s['role']}, {s['photographs']} photographs"
        for name, s in doc["sources"].items()
    )
    methods = sorted({r["method"] for r in doc["heldout"]})
    speed = doc["speed"]
    lines = [heldout.format_heldout_table(doc["heldout"])]
    lines.append(f"\nMethods chosen on the held-out photographs: {', '.join(methods)}.")
    rows = doc["heldout"]
    for peer in ("JPEG-XL lossless", "WebP lossless"):
        smaller = [r for r in rows if r["classical"][peer] is not None and r["classical"][peer] < r["fkc"]]
        lines.append(f"{peer} is smaller than the .fkc file on {len(smaller)} of the {len(rows)} held-out images.")
    for column in dict.fromkeys(c for r in rows for c in r["flows"]):
        coded = [r for r in rows if r["flows"].get(column) is not None]
        beaten = sum(r["flows"][column] < r["fkc"] for r in coded)
        lines.append(f"The shipped {column} flow alone is smaller than the .fkc file on {beaten} of {len(coded)}.")
    lines.append("\nImages of other kinds (the safety net):\n")
    lines.append(heldout.format_heldout_table(doc["other_kinds"], means=False))
    if speed is not None:
        lines.append(
            f"\n{speed['label']}: encode {speed['encode_s']:.3f} s, decode {speed['decode_s']:.3f} s "
            f"({speed['fkc']:.3f} bits/pixel, {speed['method']}; best of 3)."
        )
    lines.append("\nTargets (decided by `heldout.judge` on the rows above):\n")
    for name, verdict in doc["verdicts"].items():
        numbers = ", ".join(
            f"{key} {value:.3f}" if isinstance(value, float) else f"{key}: {', '.join(value) or 'none'}"
            for key, value in verdict.items()
            if key != "met" and value is not None
        )
        lines.append(f"- {name}: **{'met' if verdict['met'] else 'not met'}** ({numbers})")
    lines.append("\nPhotograph sources:\n\n" + sources)
    return "\n".join(lines)


def _seeded_dequantization(documents: Sequence[tuple[str, dict]]) -> dict:
    doc = documents[0][1]
    if "seeds" not in doc:
        raise stale("dequantization_results.json", "seeds")
    return doc


def render_dequantization_toy(documents: Sequence[tuple[str, dict]]) -> str:
    doc = _seeded_dequantization(documents)
    toy, ks = doc["toy"], doc["toy"]["eval_k"]
    checks = "hold" if doc["toy_checks_pass"] else "**do not hold**"
    return (
        f"Data entropy {toy['entropy_bpd']:.4f} bits/dim; mean ± sample standard deviation over seeds "
        f"{', '.join(map(str, doc['seeds']))}.\n\n"
        + _script("dequantization_results").format_toy(toy)
        + f"\n\nThe checks (every estimate above the exact value to three standard errors of its Monte-Carlo "
        f"estimate, and the iw bound at K={ks[-1]} below K={ks[0]}) {checks} for every model and seed."
    )


def render_dequantization_digits(documents: Sequence[tuple[str, dict]]) -> str:
    doc = _seeded_dequantization(documents)
    single = len(doc["seeds"]) < 2  # one seed: no spread, so no claim is judged (files before holds=None said no)

    def judged(claim: dict) -> str:
        if single or claim["holds"] is None:
            return "not judged (one seed)"
        return "yes" if claim["holds"] else "**no**"

    claims = "\n".join(f"- {c['claim']}: {judged(c)}. {c['verdict']}" for c in doc["digits_claims"])
    budget = doc["budget"]
    return (
        _script("dequantization_results").format_digits(doc["digits"]["summary"])
        + f"\n\n{budget['digits_epochs']} epochs, test bits/dim by the iw bound with K = {budget['eval_samples']}, "
        f"mean ± sample standard deviation over seeds {', '.join(map(str, doc['seeds']))}. The paper's claims, "
        "judged on these rows (lower is better; a claim holds when it is better by more than the seeds' spread, "
        "the sum of the two standard deviations):\n\n" + claims
    )


def render_conditional(documents: Sequence[tuple[str, dict]], experiment: str) -> str:
    doc = documents[0][1]
    if "seeds" not in doc:
        raise stale("conditional_results.json", "seeds")
    result, script = doc[experiment], _script("conditional_results")
    seeds = f"mean ± sample standard deviation over seeds {', '.join(map(str, doc['seeds']))}"
    claims = "Flow against baseline (beyond or within the seeds' spread, the sum of the two standard deviations): "
    claims += " ".join(result["claims"])
    if experiment == "binary":
        times = result["train_time_s"]
        return (
            script.format_table(result, "binary")
            + f"\n\nFlow + dequantizer: {result['parameters']['flow']:,} parameters, "
            f"{result['budget']['flow_train']['epochs']} epochs ({times['flow']:.0f} s per seed); Bernoulli: "
            f"{result['parameters']['bernoulli']:,} parameters ({times['bernoulli']:.0f} s). The flow's one-draw "
            f"bound: {result['flow_elbo_bpd']:.4f} bits/dim (mean). {seeds[0].upper() + seeds[1:]}.\n\n" + claims
        )
    params, times, budget = result["parameters"], result["train_time_s"], result["budget"]
    flow = budget["flow"]
    return (
        script.format_table(result, "sr")
        + f"\n\nFlow: {_renamed(flow, 'num_scales', 'levels')} scales x {_renamed(flow, 'steps_per_scale', 'steps')} "
        f"steps, {flow['conv']} convs, {params['flow']:,} "
        f"parameters, {budget['flow_train']['epochs']} epochs ({times['flow']:.0f} s per seed); logistic: "
        f"{params['logistic']:,} parameters, {budget['baseline_train']['epochs']} epochs ({times['logistic']:.0f} s). "
        f"Test patches: {result['test_patch_bpd']['flow']:.3f} bits/dim (flow) against "
        f"{result['test_patch_bpd']['logistic']:.3f} (logistic), means. {seeds[0].upper() + seeds[1:]}.\n\n" + claims
    )


def render_predictive(documents: Sequence[tuple[str, dict]]) -> str:
    doc = documents[0][1]
    if "summary" not in doc:
        raise stale("predictive_sampling.json", "seeds")
    script = _script("predictive_sampling_results")
    first_seed = [result for result in doc["results"] if result["seed"] == doc["seeds"][0]]
    dims = {result["setting"]: result["dims"] for result in first_seed}
    text = script.format_calls(doc["summary"], dims, doc["budget"]["batch"])
    text += (
        "\n\nHow often the guess t places past the accepted prefix was right (mean over the seeds): for "
        "fixed-point iteration the ARM's own sample from the call before, for a forecaster its module t.\n\n"
    )
    text += script.format_hit_rates(doc["summary"])
    arms = ", ".join(f"{result['setting']} {result['arm_test_bpd']:.3f}" for result in first_seed)
    text += f"\n\nARM test bits/dim (seed {doc['seeds'][0]}): {arms}."
    for result in first_seed:
        if "autoencoder_reconstruction_bpd" in result:
            text += (
                f" The autoencoder of the {result['image_size']}x{result['image_size']} patches reconstructs the test "
                f"patches at {result['autoencoder_reconstruction_bpd']:.2f} bits/dim given the codes and uses "
                f"{result['autoencoder_codes_used']} codes."
            )

    def outcome(claim: dict) -> str:
        if claim["beats_fixed_point"] is None:  # one seed: no spread to judge by
            return "not judged (one seed) against"
        return "**fewer calls** than" if claim["beats_fixed_point"] else "not fewer calls than"

    verdicts = "\n".join(
        f"- {c['setting']}{' (a target setting)' if c['target'] else ''}: {outcome(c)} fixed-point iteration. "
        + c["verdict"]
        for c in doc["claims"]
    )
    seeds = ", ".join(map(str, doc["seeds"]))
    return (
        text
        + "\n\n"
        + predictive_budget(doc, script)
        + f"\n\nThe best forecast per setting against fixed-point iteration, in mean calls per example over "
        f"seeds {seeds} (fewer is better; a win must be beyond the seeds' spread):\n\n" + verdicts
    )


def predictive_budget(doc: dict, script: Any) -> str:
    """The predictive-sampling budget in a sentence: what each setting trained on, and the seeds it ran."""
    budget = doc["budget"]
    settings = list(dict.fromkeys(result["setting"] for result in doc["results"]))
    arm = budget["arm"]
    epochs = ", ".join(f"{name} {budget['arm_epochs'][name]} + {budget['forecast_epochs'][name]}" for name in settings)
    draws = {}
    for name in settings:
        part = script.setting_draws(budget, name)
        draws.setdefault(f"{part['train']:,} + {part['test']:,}", []).append(name)
    draw_text = "; ".join(f"{count} for {', '.join(names)}" for count, names in draws.items())
    seeds = {}
    for result in doc["results"]:
        seeds.setdefault(result["setting"], []).append(str(result["seed"]))
    seed_text = "; ".join(f"{name} {', '.join(seeds[name])}" for name in settings)
    return (
        f"Budget: ARMs of {arm['layers']} layers, {arm['hidden']} channels; epochs (ARM + each forecaster) "
        f"{epochs}; ARM draws to train and test the `draws` forecasters on: {draw_text}. Seeds: {seed_text}."
    )


RENDERERS: dict[str, Callable[[Sequence[tuple[str, dict]]], str]] = {
    "kernels": render_kernels,
    "glow": render_glow,
    "hexnet": render_hexnet,
    "idf-integer": render_idf_integer,
    "idf-codec": render_idf_codec,
    "codec-heldout": render_codec_heldout,
    "dequantization-toy": render_dequantization_toy,
    "dequantization-digits": render_dequantization_digits,
    "conditional-sr2": lambda docs: render_conditional(docs, "sr2"),
    "conditional-sr4": lambda docs: render_conditional(docs, "sr4"),
    "conditional-binary": lambda docs: render_conditional(docs, "binary"),
    "predictive-sampling": render_predictive,
}


def render_block(renderer: str, files: Sequence[str], results: Path = RESULTS) -> str:
    """The generated text of one block: provenance, then what the renderer makes of the files."""
    if renderer not in RENDERERS:
        raise ValueError(f"unknown renderer {renderer!r}; choose from {sorted(RENDERERS)}")
    documents = []
    for name in files:
        path = results / name
        if not path.is_file():
            raise ValueError(f"results file {path} is missing; write it with `{writer(name)}`")
        documents.append((name, json.loads(path.read_text())))
    return provenance(documents) + "\n\n" + RENDERERS[renderer](documents).rstrip() + "\n"


def render(text: str, results: Path = RESULTS) -> str:
    """``text`` (a README) with every results block regenerated."""

    def replace(match: re.Match) -> str:
        body = render_block(match["renderer"], match["files"].split(), results)
        return match["open"] + body + match["close"]

    return BLOCK.sub(replace, text)


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--check", action="store_true", help="change nothing; exit 1 if a block is stale")
    parser.add_argument("--readme", type=Path, default=README)
    args = parser.parse_args(argv)
    text = args.readme.read_text()
    blocks = len(BLOCK.findall(text))
    try:
        rendered = render(text)
    except ValueError as error:
        print(f"render_readme: {error}", file=sys.stderr)
        return 1
    if args.check:
        if rendered != text:
            diff = difflib.unified_diff(
                text.splitlines(), rendered.splitlines(), "README.md", "rendered from benchmarks/results", lineterm=""
            )
            print("\n".join(diff))
            print("README.md disagrees with its results files: run `python benchmarks/render_readme.py`")
            return 1
        print(f"README.md: {blocks} results blocks agree with their files")
        return 0
    args.readme.write_text(rendered)
    print(f"README.md: {blocks} results blocks rendered")
    return 0


if __name__ == "__main__":
    sys.exit(main())
