"""Shared fixtures: the devices to run on, and dtype helpers."""

from __future__ import annotations

import pytest
import torch

import flowkernels

HAS_CUDA = torch.cuda.is_available() and flowkernels.has_cuda_kernels()

requires_cuda = pytest.mark.skipif(not HAS_CUDA, reason="needs a CUDA device and flowkernels' CUDA kernels")

DEVICES = ["cpu"] + (["cuda"] if HAS_CUDA else [])
FLOAT_DTYPES = [torch.float32, torch.float64]


@pytest.fixture(params=DEVICES)
def device(request) -> str:
    return request.param


@pytest.fixture(params=FLOAT_DTYPES, ids=["float32", "float64"])
def dtype(request) -> torch.dtype:
    return request.param


@pytest.fixture
def generator() -> torch.Generator:
    return torch.Generator().manual_seed(1234)
