"""Run one fuzz target of tests/fuzz/targets.py under atheris for a bounded time.

    python tests/fuzz/run.py TARGET SECONDS [WORK_DIR]

Seeds from ``tests/fuzz/corpus/TARGET/``; new interesting inputs go to WORK_DIR (default: that
corpus folder itself). A finding is written to ``tests/fuzz/crashes/TARGET/`` (commit it: the
regression test replays it) and the exit status is non-zero.
"""

from __future__ import annotations

import sys
from pathlib import Path

import atheris

HERE = Path(__file__).resolve().parent

with atheris.instrument_imports(include=["flowkernels"]):
    import flowkernels.codec  # noqa: F401
    import flowkernels.codec.imageio  # noqa: F401
    import flowkernels.ops.rans  # noqa: F401

sys.path.insert(0, str(HERE))
from targets import TARGETS, apply_fuzz_limits  # noqa: E402


def main() -> None:
    name, seconds = sys.argv[1], int(sys.argv[2])
    corpus, crashes = HERE / "corpus" / name, HERE / "crashes" / name
    work = Path(sys.argv[3]) if len(sys.argv) > 3 else corpus
    for folder in (corpus, crashes, work):
        folder.mkdir(parents=True, exist_ok=True)
    target = TARGETS[name]
    apply_fuzz_limits()
    args = [
        sys.argv[0],
        str(work),
        *([str(corpus)] if work != corpus else []),
        f"-max_total_time={seconds}",
        "-max_len=16384",
        "-rss_limit_mb=4096",
        "-timeout=20",
        f"-artifact_prefix={crashes}/",
    ]
    atheris.Setup(args, target)
    atheris.Fuzz()


if __name__ == "__main__":
    main()
