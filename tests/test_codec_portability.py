"""Portability of the integer codec: the golden files' images are encoded in fresh processes under
every combination of OpenMP threads, ATen's CPU capability, oneDNN's instruction-set ceiling and
flowkernels' own CPU path, and every process must write the committed bytes and decode the
committed files (so every configuration decodes every other's files)."""

from __future__ import annotations

import concurrent.futures
import hashlib
import itertools
import os
import subprocess
import sys
from pathlib import Path

import pytest
import torch

from flowkernels import cpu, pretrained

from .test_codec_golden import FILES, GOLDEN

pytestmark = pytest.mark.skipif(
    not set(FILES.values()) <= set(pretrained.available()), reason="the shipped models are not in this installation"
)

SCRIPT = """
import hashlib, sys
from pathlib import Path
import numpy as np, torch
from flowkernels.codec import LosslessImageCodec, read_header, resolve_model
golden = Path(sys.argv[1])
for name, model in zip(sys.argv[2::2], sys.argv[3::2]):
    data = (golden / f"{name}.fkc").read_bytes()
    pixels = torch.from_numpy(np.load(golden / f"{name}.npy"))
    codec = LosslessImageCodec(resolve_model(model))
    assert torch.equal(codec.decode(data), pixels), f"{name}: decoded pixels differ"
    print(name, hashlib.sha256(codec.encode(pixels, stream=read_header(data).stream)).hexdigest())
"""


def configurations() -> list[dict[str, str]]:
    capability = torch.backends.cpu.get_cpu_capability().lower()  # what ATen picked on this CPU
    aten = ["default", "avx2"] + (["avx512"] if capability.startswith("avx512") else [])
    if capability == "default":
        aten = ["default"]
    combos = itertools.product(["1", "2"], aten, ["SSE41", "AVX2", None], cpu.available_isas())
    return [
        {"OMP_NUM_THREADS": omp, "ATEN_CPU_CAPABILITY": capability_, "FLOWKERNELS_CPU_ISA": isa}
        | ({"ONEDNN_MAX_CPU_ISA": onednn} if onednn else {})
        for omp, capability_, onednn, isa in combos
    ]


def run(configuration: dict[str, str]) -> tuple[dict[str, str], subprocess.CompletedProcess]:
    env = {k: v for k, v in os.environ.items() if k not in ("ONEDNN_MAX_CPU_ISA", "DNNL_MAX_CPU_ISA")}
    env.update(configuration)
    arguments = [str(GOLDEN)] + [part for pair in FILES.items() for part in pair]
    done = subprocess.run(
        [sys.executable, "-c", SCRIPT, *arguments], env=env, capture_output=True, text=True, timeout=300
    )
    return configuration, done


def test_every_configuration_writes_and_reads_the_same_bytes():
    expected = {name: hashlib.sha256((Path(GOLDEN) / f"{name}.fkc").read_bytes()).hexdigest() for name in FILES}
    workers = max(2, min(8, os.cpu_count() or 2))
    with concurrent.futures.ThreadPoolExecutor(workers) as pool:
        outcomes = list(pool.map(run, configurations()))
    # at least 2 thread counts x 3 oneDNN ceilings; more ATen capabilities and flowkernels paths where the
    # CPU has them (under ATEN_CPU_CAPABILITY=default or a forced lower path there is one of each)
    assert len(outcomes) >= 6
    for configuration, done in outcomes:
        assert done.returncode == 0, f"{configuration}: {done.stderr[-1500:]}"
        written = dict(line.split() for line in done.stdout.splitlines())
        assert written == expected, f"{configuration} wrote different bytes"
