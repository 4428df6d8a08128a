"""The examples in the docstrings of the public ops, layers, models, codec and coder run, seeded and small,
and print what they say (issue: runnable examples). A module listed here must keep at least one example."""

from __future__ import annotations

import doctest
import importlib

import pytest
import torch

MODULES = [
    "flowkernels.ops.coupling",
    "flowkernels.ops.arconv",
    "flowkernels.ops.hex",
    "flowkernels.ops.intconv",
    "flowkernels.ops.context",
    "flowkernels.ops.rans",
    "flowkernels.nn.flow",
    "flowkernels.nn.invconv",
    "flowkernels.nn.hex",
    "flowkernels.nn.square",
    "flowkernels.nn.masked",
    "flowkernels.models.noise",
    "flowkernels.codec.image_file",
    "flowkernels.models.idf",
    "flowkernels.models.dequantization",
    "flowkernels.models.glow",
    "flowkernels.models.conditional",
    "flowkernels.models.pixelcnn",
    "flowkernels.models.hexnet",
    "flowkernels.benchmarks.seeds",
]


@pytest.mark.parametrize("name", MODULES)
def test_docstring_examples_run_as_written(name):
    module = importlib.import_module(name)
    with torch.random.fork_rng(devices=[]):  # examples that seed torch leave the other tests' RNG alone
        result = doctest.testmod(module, optionflags=doctest.NORMALIZE_WHITESPACE, verbose=False)
    assert result.attempted > 0, f"{name} has no docstring example"
    assert result.failed == 0, f"{result.failed} of {result.attempted} examples of {name} failed (output above)"
