"""Microbenchmarks of every kernel family against its reference and outside peers.

Run them with ``flowkernels bench`` (or ``python benchmarks/run_all.py`` from a
checkout). Each family module exposes ``cases(quick=..., device=..., compile_peers=...)``.
"""

from __future__ import annotations

import json
from collections.abc import Sequence

from . import arconv, context, coupling, hex, intconv, machine, rans
from .harness import Case, Result, Target, format_compact_table, format_table, run_cases

SUITES = {
    "coupling": coupling,
    "rans": rans,
    "arconv": arconv,
    "hex": hex,
    "intconv": intconv,
    "context": context,
}

__all__ = ["SUITES", "Case", "Result", "Target", "run", "format_table", "format_compact_table", "results_to_json"]


def run(
    families: Sequence[str] | None = None,
    *,
    quick: bool = False,
    device: str = "cpu",
    compile_peers: bool | None = None,
    min_run_time: float | None = None,
    progress: bool = True,
) -> list[Result]:
    """Run the benchmarks of ``families`` (default: all) and return their results."""
    names = list(families or SUITES)
    unknown = [name for name in names if name not in SUITES]
    if unknown:
        raise ValueError(f"unknown benchmark families {unknown}; choose from {sorted(SUITES)}")
    if compile_peers is None:
        compile_peers = not quick
    cases: list[Case] = []
    for name in names:
        cases += SUITES[name].cases(quick=quick, device=device, compile_peers=compile_peers)
    if min_run_time is None:
        min_run_time = 0.05 if quick else 1.0
    return run_cases(cases, min_run_time=min_run_time, device=device, progress=progress)


def _rate(result: Result, seconds: float, reference: bool = False) -> float:
    return 1.0 / result.per_item(seconds, reference) / 1e6


def results_to_json(
    results: Sequence[Result], device: str = "cpu", *, judged: bool = True, command: str | None = None
) -> str:
    """Machine-readable results, with the machine they were measured on (:func:`machine.describe`);
    each row names the path its family's CPU kernel took. ``judged=False`` (quick runs) records no
    verdicts (``target_met`` None). ``command``: the command line that measured them, recorded with them."""
    info = machine.describe(device)
    rows = [
        {
            "family": r.case.family,
            "op": r.case.op,
            "shape": r.case.shape,
            "mode": r.case.mode,
            "threads": r.case.threads or info["threads"],
            "path": info["kernel_paths"].get(r.case.family) if device == "cpu" else device,
            "reference_ms": r.reference_s * 1e3,
            "kernel_ms": r.kernel_s * 1e3,
            "speedup": r.speedup,
            "reference_peak_bytes": r.reference_peak,
            "kernel_peak_bytes": r.kernel_peak,
            "memory_ratio": r.memory_ratio,
            "peers_ms": {k: v * 1e3 for k, v in r.peer_s.items()},
            "peer_speedups": {k: r.peer_speedup(k) for k in r.peer_s},
            # Rates (million items per second) where the case counts items (symbols, values); the
            # reference may code a subset (reference_items), so compare rates, not times.
            "items": r.case.items,
            "reference_items": r.case.reference_items or r.case.items,
            "kernel_rate_mps": _rate(r, r.kernel_s) if r.case.items else None,
            "reference_rate_mps": _rate(r, r.reference_s, reference=True) if r.case.items else None,
            "peer_rates_mps": {k: _rate(r, v) for k, v in r.peer_s.items()} if r.case.items else None,
            "notes": r.case.notes,
            "target": r.case.target.describe(),
            "target_met": r.target_met() if judged else None,
        }
        for r in results
    ]
    document = {"machine": info, "judged": judged, "results": rows}
    if command is not None:
        document["command"] = command  # how to measure it again
    return json.dumps(document, indent=2)
