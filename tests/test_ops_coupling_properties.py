"""Property-based tests of the coupling family (hypothesis)."""

from __future__ import annotations

import pytest
import torch

from flowkernels import ops

from .conftest import every_cpu_isa

pytestmark = every_cpu_isa

hypothesis = pytest.importorskip("hypothesis")
st = hypothesis.strategies


@hypothesis.settings(max_examples=200, deadline=None)
@hypothesis.given(
    values=st.lists(st.integers(-(2**20), 2**20), min_size=1, max_size=64),
    shifts=st.lists(st.floats(-1e5, 1e5, allow_nan=False), min_size=1, max_size=64),
    log2_scale=st.integers(-3, 8),
)
def test_integer_coupling_round_trip_property(values, shifts, log2_scale):
    n = min(len(values), len(shifts))
    scale = 2.0**log2_scale
    x = torch.tensor(values[:n], dtype=torch.float64) / scale
    t = torch.tensor(shifts[:n], dtype=torch.float64)
    y = ops.integer_coupling(x, t, scale=scale)
    assert torch.equal(ops.integer_coupling(y, t, inverse=True, scale=scale), x)


@hypothesis.settings(max_examples=200, deadline=None)
@hypothesis.given(
    x=st.floats(-1e6, 1e6, allow_nan=False, width=32),
    mu=st.floats(-1e6, 1e6, allow_nan=False, width=32),
    log_scale=st.floats(-10, 10, width=32),
    bin_width=st.sampled_from([1.0, 0.5, 1.0 / 256]),
)
def test_logistic_is_finite_and_at_most_zero(x, mu, log_scale, bin_width):
    args = [torch.tensor([v], dtype=torch.float32) for v in (x, mu, log_scale)]
    logp = ops.discretized_logistic_logp(*args, bin_width=bin_width)
    assert torch.isfinite(logp).all() and (logp <= 0).all()
