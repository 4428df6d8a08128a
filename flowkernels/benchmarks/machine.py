"""The machine a benchmark ran on, recorded with every result: a ratio means little without it."""

from __future__ import annotations

import json
import os
import platform
import subprocess
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

import torch

import flowkernels

__all__ = ["cpu_model", "describe", "summary", "write_results"]


def cpu_model() -> str:
    """The CPU's marketing name (``/proc/cpuinfo``; ``platform.processor()`` elsewhere)."""
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine() or "unknown"


def _commit() -> str | None:
    """The source checkout's commit, when flowkernels runs from one (an editable install), with ``+changes``
    when tracked files differ from it."""
    folder = Path(flowkernels.__file__).resolve().parent.parent
    if not (folder / ".git").exists():
        return None
    try:
        done = subprocess.run(
            ["git", "-C", str(folder), "rev-parse", "--short", "HEAD"], capture_output=True, text=True, timeout=10
        )
    except (OSError, subprocess.SubprocessError):
        return None
    commit = done.stdout.strip()
    if not commit:
        return None
    # A run from a checkout with uncommitted changes is not the commit alone: say so.
    try:
        status = subprocess.run(
            ["git", "-C", str(folder), "status", "--porcelain", "--untracked-files=no"],
            capture_output=True,
            text=True,
            timeout=10,
        )
    except (OSError, subprocess.SubprocessError):
        return commit
    return f"{commit}+changes" if status.stdout.strip() else commit


def describe(device: str = "cpu") -> dict[str, Any]:
    """CPU model and core count, the CPU kernels' instruction-set path per family, threads, versions, date."""
    cuda = torch.cuda.get_device_name() if device.startswith("cuda") and torch.cuda.is_available() else None
    return {
        "cpu": cpu_model(),
        "cores": os.cpu_count(),
        "cpu_isa_supported": flowkernels.cpu.supported_isa(),
        "cpu_isa": flowkernels.cpu.isa(),
        "kernel_paths": flowkernels.cpu.kernel_paths(),
        "threads": torch.get_num_threads(),
        "device": device,
        "gpu": cuda,
        "torch": torch.__version__,
        "flowkernels": flowkernels.__version__,
        "commit": _commit(),
        "python": platform.python_version(),
        "date": datetime.now(timezone.utc).strftime("%Y-%m-%d %H:%M UTC"),
    }


def summary(info: dict[str, Any]) -> str:
    """Two lines for the top of a printed table."""
    paths = ", ".join(f"{family} {path}" for family, path in info["kernel_paths"].items())
    where = f"GPU {info['gpu']}" if info.get("gpu") else f"{info['cpu']} ({info['cores']} cores)"
    return (
        f"{where}; {info['threads']} threads; torch {info['torch']}; flowkernels {info['flowkernels']}"
        f"{' @ ' + info['commit'] if info.get('commit') else ''}\n"
        f"CPU kernel paths (this CPU supports {info['cpu_isa_supported']}): {paths}"
    )


def write_results(
    path: Path, payload: dict[str, Any], device: str = "cpu", *, machine: dict[str, Any] | None = None
) -> Path:
    """Write ``payload`` as JSON to ``path`` with the machine it was measured on under ``"machine"``: the results
    files under ``benchmarks/results/`` that the README's tables are rendered from (``benchmarks/render_readme.py``).

    ``machine`` is :func:`describe` taken when the run started (pass it: a long run's source checkout may move on
    while it runs, and the commit recorded must be the one whose code ran); ``None`` describes it now."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    document = {"machine": describe(device) if machine is None else machine, **payload}
    path.write_text(json.dumps(document, indent=1, default=str) + "\n")
    return path
