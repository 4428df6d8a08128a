"""Microbenchmark harness: time a kernel against its reference and outside peers in one run.

Every case is timed with :mod:`torch.utils.benchmark` in this process,
alternating between the contenders over several rounds and keeping each one's
best median, so that a ratio holds on a noisy machine. Peak memory is the
high-water mark of tensor allocations during one call, read from the PyTorch
profiler's memory events (CPU) or from the CUDA caching allocator (GPU); the
inputs, allocated before the call, are not counted.

Targets are ratios (``speedup >= 3``: reference time / kernel time). The table
says whether each is met; nothing here asserts on time.
"""

from __future__ import annotations

import contextlib
import dataclasses
import math
import os
import sys
from collections.abc import Callable, Iterable, Sequence

import torch
from torch.utils import benchmark as tbench

__all__ = ["Case", "Target", "Result", "run_cases", "format_table", "format_compact_table", "peak_memory_bytes"]


@dataclasses.dataclass(frozen=True)
class Target:
    """A goal for the kernel relative to the reference, measured in the same run."""

    min_speedup: float | None = None  # reference time / kernel time
    min_memory_ratio: float | None = None  # reference peak memory / kernel peak memory
    peer: str | None = None  # a peer that the kernel must outpace...
    min_peer_speedup: float | None = None  # ...by this factor (peer time / kernel time)
    min_rate: float | None = None  # kernel throughput, million items per second (needs Case.items)
    also_peers: tuple[tuple[str, float], ...] = ()  # more (peer, minimum peer time / kernel time) pairs

    def peer_requirements(self) -> list[tuple[str, float]]:
        first = [(self.peer, self.min_peer_speedup)] if self.peer is not None and self.min_peer_speedup else []
        return first + list(self.also_peers)

    def describe(self) -> str:
        parts = []
        if self.min_rate is not None:
            parts.append(f">= {self.min_rate:g} M/s")
        if self.min_speedup is not None:
            parts.append(f"speed >= {self.min_speedup:g}x")
        for peer, speedup in self.peer_requirements():
            parts.append(f">= {speedup:g}x {peer}")
        if self.min_memory_ratio is not None:
            parts.append(f"memory <= 1/{self.min_memory_ratio:g}")
        return ", ".join(parts) or "-"


@dataclasses.dataclass
class Case:
    """One row of the table: the same computation done by the kernel, the reference and peers."""

    family: str
    op: str
    shape: str
    mode: str  # "fwd" or "fwd+bwd"
    kernel: Callable[[], object]
    reference: Callable[[], object]
    peers: dict[str, Callable[[], object]] = dataclasses.field(default_factory=dict)
    target: Target = dataclasses.field(default_factory=Target)
    items: int | None = None  # items (symbols...) per call of kernel and peers: rates are compared
    reference_items: int | None = None  # per call of the reference, when it runs on a subset
    threads: int | None = None  # torch.set_num_threads for this case
    measure_memory: bool = True  # peak memory of one call of the kernel and of the reference
    notes: str = ""  # printed beside the row (e.g. bits over the ideal)


@dataclasses.dataclass
class Result:
    case: Case
    kernel_s: float
    reference_s: float
    peer_s: dict[str, float]
    kernel_peak: int | None
    reference_peak: int | None

    def per_item(self, seconds: float, reference: bool = False) -> float:
        items = (self.case.reference_items or self.case.items) if reference else self.case.items
        return seconds / items if items else seconds

    @property
    def speedup(self) -> float:
        return self.per_item(self.reference_s, reference=True) / self.per_item(self.kernel_s)

    def peer_speedup(self, name: str) -> float:
        return self.per_item(self.peer_s[name]) / self.per_item(self.kernel_s)

    @property
    def memory_ratio(self) -> float | None:
        if not self.kernel_peak or self.reference_peak is None:
            return None
        return self.reference_peak / self.kernel_peak

    def target_met(self) -> bool | None:
        target = self.case.target
        if (
            target.min_speedup is None
            and target.min_memory_ratio is None
            and target.min_rate is None
            and not target.peer_requirements()
        ):
            return None
        ok = True
        if target.min_rate is not None:
            ok &= self.case.items is not None and 1.0 / self.per_item(self.kernel_s) >= target.min_rate * 1e6
        if target.min_speedup is not None:
            ok &= self.speedup >= target.min_speedup
        if target.min_memory_ratio is not None:
            ratio = self.memory_ratio
            ok &= ratio is not None and ratio >= target.min_memory_ratio
        for peer, speedup in target.peer_requirements():
            ok &= peer in self.peer_s and self.peer_speedup(peer) >= speedup
        return ok


def _synchronize() -> None:
    if torch.cuda.is_available():
        torch.cuda.synchronize()


@contextlib.contextmanager
def _native_stderr_silenced():
    """Kineto (the profiler behind the CPU memory figure) logs each start and stop
    from C++ straight to file descriptor 2; hide those lines, nothing else runs here."""
    sys.stderr.flush()
    saved = os.dup(2)
    try:
        with open(os.devnull, "w") as devnull:
            os.dup2(devnull.fileno(), 2)
            yield
    finally:
        os.dup2(saved, 2)
        os.close(saved)


def peak_memory_bytes(fn: Callable[[], object], device: torch.device | str = "cpu") -> int | None:
    """Peak bytes of tensor memory allocated while ``fn()`` runs (None if not measurable)."""
    device = torch.device(device)
    if device.type == "cuda":
        _synchronize()
        torch.cuda.reset_peak_memory_stats(device)
        base = torch.cuda.memory_allocated(device)
        fn()
        _synchronize()
        return torch.cuda.max_memory_allocated(device) - base
    from torch.profiler import ProfilerActivity, profile

    with _native_stderr_silenced(), profile(activities=[ProfilerActivity.CPU], profile_memory=True) as prof:
        fn()
    try:
        events = prof.profiler.kineto_results.events()
        deltas = sorted((e.start_ns(), e.nbytes()) for e in events if e.name() == "[memory]")
    except AttributeError:  # the profiler's result API moved
        return None
    live = peak = 0
    for _, nbytes in deltas:
        live += nbytes
        peak = max(peak, live)
    return peak


def _time_round(fn: Callable[[], object], min_run_time: float) -> float:
    # Timer runs single-threaded unless told otherwise: pass the current setting.
    timer = tbench.Timer(stmt="fn()", globals={"fn": fn}, num_threads=torch.get_num_threads())
    return timer.blocked_autorange(min_run_time=min_run_time).median


def run_cases(
    cases: Iterable[Case],
    *,
    min_run_time: float = 0.5,
    rounds: int = 3,
    device: str = "cpu",
    progress: bool = True,
    measure_memory: bool = True,
) -> list[Result]:
    """Time every case: contenders alternate over ``rounds``, each keeps its best median."""
    cases = list(cases)
    results = []
    iterator: Iterable[Case] = cases
    if progress:
        try:
            from tqdm.auto import tqdm
        except ImportError:  # a bare GPU machine: no bar, same numbers
            tqdm = None
        if tqdm is not None:
            iterator = tqdm(cases, desc="benchmarks", unit="case", leave=False)
    for case in iterator:
        threads = torch.get_num_threads()
        if case.threads is not None:
            torch.set_num_threads(case.threads)
        try:
            measure = measure_memory and case.measure_memory
            contenders = {"kernel": case.kernel, "reference": case.reference, **case.peers}
            for fn in contenders.values():  # warm up (first-call allocations, compilation)
                fn()
            best = dict.fromkeys(contenders, math.inf)
            for _ in range(rounds):
                for name, fn in contenders.items():
                    best[name] = min(best[name], _time_round(fn, min_run_time / rounds))
            results.append(
                Result(
                    case=case,
                    kernel_s=best.pop("kernel"),
                    reference_s=best.pop("reference"),
                    peer_s=best,
                    kernel_peak=peak_memory_bytes(case.kernel, device) if measure else None,
                    reference_peak=peak_memory_bytes(case.reference, device) if measure else None,
                )
            )
        finally:
            torch.set_num_threads(threads)
    return results


def _ms(seconds: float) -> str:
    return f"{seconds * 1e3:.3f}"


def _mib(nbytes: int | None) -> str:
    return "n/a" if nbytes is None else f"{nbytes / 2**20:.1f}"


def _rate(r: Result, seconds: float, reference: bool = False) -> str:
    return f"{1.0 / r.per_item(seconds, reference) / 1e6:.2f}"


def format_table(results: Sequence[Result], *, judge: bool = True) -> str:
    """A plain-text table. Rows with ``items`` show rates (million items per second)
    instead of times; ratios always compare the same amount of work. ``judge=False`` (quick runs on
    smoke-sized shapes, where the ratios mean nothing) prints the ratios but no verdicts."""
    header = [
        "op",
        "shape",
        "mode",
        "threads",
        "reference",
        "kernel",
        "speedup",
        "ref MiB",
        "kernel MiB",
        "mem ratio",
        "peers (kernel speed-up over each)",
        "target",
        "met",
        "notes",
    ]
    rows = []
    for r in results:
        if r.case.items:
            ref, kernel = _rate(r, r.reference_s, True) + " M/s", _rate(r, r.kernel_s) + " M/s"
            peers = "; ".join(f"{name} {_rate(r, t)} M/s ({r.peer_speedup(name):.2f}x)" for name, t in r.peer_s.items())
        else:
            ref, kernel = _ms(r.reference_s) + " ms", _ms(r.kernel_s) + " ms"
            peers = "; ".join(f"{name} {_ms(t)} ms ({r.peer_speedup(name):.2f}x)" for name, t in r.peer_s.items())
        met = r.target_met()
        mem = r.memory_ratio
        rows.append(
            [
                r.case.op,
                r.case.shape,
                r.case.mode,
                str(r.case.threads or torch.get_num_threads()),
                ref,
                kernel,
                f"{r.speedup:.2f}x",
                _mib(r.reference_peak),
                _mib(r.kernel_peak),
                "n/a" if mem is None else f"{mem:.2f}x",
                peers or "-",
                r.case.target.describe(),
                "-" if met is None else (("yes" if met else "NO") if judge else "not judged"),
                r.case.notes,
            ]
        )
    widths = [max(len(str(x)) for x in col) for col in zip(header, *rows, strict=True)]
    line = lambda cells: "  ".join(str(c).ljust(w) for c, w in zip(cells, widths, strict=True)).rstrip()  # noqa: E731
    return "\n".join([line(header), line(["-" * w for w in widths])] + [line(row) for row in rows])


def format_compact_table(results: Sequence[Result], *, judge: bool = True) -> str:
    """The table for a terminal of 100 columns: op, mode, threads, the kernel's time or rate, its ratio to
    the reference and to each peer, and the verdict (``flowkernels bench`` prints every column)."""
    header = ["op", "mode", "thr", "kernel", "vs ref", "vs peers", "target"]
    rows = []
    for r in results:
        rate = 1.0 / r.per_item(r.kernel_s) / 1e6
        kernel = f"{rate:.3g} M/s" if r.case.items else f"{r.kernel_s * 1e3:.2g} ms"
        # peers by the first word of their name ("square conv2d" -> "square")
        peers = [f"{name.split()[0][:8]} {r.peer_speedup(name):.3g}x" for name in r.peer_s]
        met = r.target_met()
        verdict = "-" if met is None else (("met" if met else "NOT MET") if judge else "not judged")
        threads = str(r.case.threads or torch.get_num_threads())
        ratio = f"{r.speedup:.0f}x" if r.speedup >= 100 else f"{r.speedup:.3g}x"
        rows.append([r.case.op[:25], r.case.mode, threads, kernel, ratio, peers or ["-"], verdict])
    return _fit_columns(header, rows, wrap=5, width=_COMPACT_WIDTH)


#: the compact table's width: a 100-column terminal
_COMPACT_WIDTH = 100


def _fit_columns(header: list[str], rows: list[list], *, wrap: int, width: int) -> str:
    """A plain-text table whose cells are strings, except column ``wrap``, a list of parts joined by ", ". Where
    the table would be wider than ``width`` (the parts' lengths follow the measured numbers), that column's
    parts go on continuation lines, so every line fits whatever was measured."""
    others = [max(len(row[i]) for row in [header, *rows]) for i in range(len(header)) if i != wrap]
    room = max(width - sum(others) - 2 * (len(header) - 1), max(len(p) for row in rows for p in row[wrap]))
    lines_of = []
    for row in rows:
        chunks: list[str] = []
        for part in row[wrap]:
            if chunks and len(chunks[-1]) + 2 + len(part) <= room:
                chunks[-1] += ", " + part
            else:
                chunks.append(part)
        lines_of.append([row[:wrap] + [chunks[0]] + row[wrap + 1 :]])
        lines_of[-1] += [[""] * wrap + [chunk] + [""] * (len(header) - wrap - 1) for chunk in chunks[1:]]
    cells = [header, *(line for lines in lines_of for line in lines)]
    widths = [max(len(c[i]) for c in cells) for i in range(len(header))]
    line = lambda cells: "  ".join(c.ljust(w) for c, w in zip(cells, widths, strict=True)).rstrip()  # noqa: E731
    return "\n".join([line(header), line(["-" * w for w in widths])] + [line(c) for c in cells[1:]])
