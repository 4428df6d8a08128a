"""Shared fixtures: the devices and CPU instruction-set paths to run on, and dtype helpers."""

from __future__ import annotations

from collections.abc import Iterator

import pytest
import torch

import flowkernels

HAS_CUDA = torch.cuda.is_available() and flowkernels.has_cuda_kernels()

requires_cuda = pytest.mark.skipif(not HAS_CUDA, reason="needs a CUDA device and flowkernels' CUDA kernels")

DEVICES = ["cpu"] + (["cuda"] if HAS_CUDA else [])
FLOAT_DTYPES = [torch.float32, torch.float64]


# Every instruction-set path of the CPU kernels that this machine can run (flowkernels.cpu):
# a module marked with `pytestmark = every_cpu_isa` runs all its tests once per path, so an
# AVX-512 machine tests the AVX2 and baseline code too, and an AVX2 machine the baseline code.
CPU_ISAS = flowkernels.cpu.available_isas()


@pytest.fixture(scope="module", params=CPU_ISAS)
def cpu_isa(request) -> Iterator[str]:
    with flowkernels.cpu.isa_ceiling(request.param) as path:
        assert path == request.param
        yield path


every_cpu_isa = pytest.mark.usefixtures("cpu_isa")


@pytest.fixture(params=DEVICES)
def device(request) -> str:
    return request.param


@pytest.fixture(params=FLOAT_DTYPES, ids=["float32", "float64"])
def dtype(request) -> torch.dtype:
    return request.param


@pytest.fixture
def generator() -> torch.Generator:
    return torch.Generator().manual_seed(1234)
