"""Package-level behaviour: build information and the import-time version checks."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch

import flowkernels


def test_build_information():
    assert isinstance(flowkernels.has_cuda_kernels(), bool)
    assert flowkernels._C.built_torch_version() == ".".join(torch.__version__.split(".")[:2])
    if flowkernels.has_cuda_kernels():
        assert flowkernels._C.built_cuda_version() == ".".join(torch.version.cuda.split(".")[:2])
    else:
        assert flowkernels._C.built_cuda_version() == ""


def test_every_op_has_cpu_autograd_and_fake_kernels():
    for op in ["round_ste", "integer_coupling", "discretized_logistic_logp"]:
        name = f"flowkernels::{op}"
        for key in ["CPU", "Autograd", "Meta"]:
            assert torch._C._dispatch_has_kernel_for_dispatch_key(name, key), (name, key)
    if flowkernels.has_cuda_kernels():
        assert torch._C._dispatch_has_kernel_for_dispatch_key("flowkernels::round_ste", "CUDA")


def test_torch_version_mismatch_is_a_clear_error(monkeypatch):
    monkeypatch.setattr(torch, "__version__", "1.0.0")
    with pytest.raises(ImportError, match=r"built against torch .* but torch 1.0.0 is installed; rebuild"):
        flowkernels._load_extension()


def test_cuda_version_mismatch_is_a_clear_error(monkeypatch):
    monkeypatch.setattr(flowkernels._C, "built_cuda_version", lambda: "99.9", raising=False)
    with pytest.raises(ImportError, match=r"built with CUDA 99.9 but torch uses CUDA"):
        flowkernels._load_extension()


def test_the_architecture_document_is_in_the_repository_and_is_what_comments_cite():
    root = Path(__file__).resolve().parents[1]
    assert (root / "docs" / "architecture.md").is_file()
    citing = [
        path
        for folder in ("flowkernels", "tests", "csrc", "scripts")
        for path in (root / folder).rglob("*")
        if path.suffix in (".py", ".h", ".cpp", ".cu", ".sh")
        and path != Path(__file__).resolve()  # this test names the old file
        and "DESIGN.md" in path.read_text(errors="ignore")
    ]
    assert citing == [], "cite docs/architecture.md, which is in the repository"
