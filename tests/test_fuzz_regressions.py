"""Replays every input the fuzzers of tests/fuzz/ keep: the seed corpus and every finding ever made
(``tests/fuzz/crashes/``). Each must succeed or raise ValueError, in this process, on every machine."""

from __future__ import annotations

import sys
from pathlib import Path

import pytest

from flowkernels import limits

FUZZ = Path(__file__).resolve().parent / "fuzz"
sys.path.insert(0, str(FUZZ))
from targets import FUZZ_LIMITS, TARGETS  # noqa: E402

CASES = sorted(
    (kind, target.name, path)
    for kind in ("corpus", "crashes")
    for target in (FUZZ / kind).iterdir()
    if target.is_dir()
    for path in target.iterdir()
    if path.is_file()
)


def test_every_target_has_seeds():
    assert {target for kind, target, _ in CASES if kind == "corpus"} == set(TARGETS)


@pytest.mark.parametrize("kind, target, path", CASES, ids=[f"{k}/{t}/{p.name[:16]}" for k, t, p in CASES])
def test_kept_input_succeeds_or_raises_value_error(kind, target, path, monkeypatch):
    for name, value in FUZZ_LIMITS.items():
        monkeypatch.setattr(limits, name, value)
    TARGETS[target](path.read_bytes())  # the targets swallow ValueError: anything else fails here
