#!/usr/bin/env bash
# Coverage-guided fuzzing (atheris) of everything that parses untrusted bytes, for a bounded time:
#
#   bash scripts/fuzz.sh [SECONDS_PER_TARGET]     # default 30; targets in tests/fuzz/targets.py
#
# Each target starts from its committed seeds (tests/fuzz/corpus/); new inputs go to a temporary
# folder, so a run leaves the checkout as it was, except for findings: an input that makes a target
# raise anything but ValueError, crash or hang is written to tests/fuzz/crashes/<target>/, and the run
# fails. Commit the finding with its fix: tests/test_fuzz_regressions.py replays it from then on.
set -uo pipefail
cd "$(dirname "$0")/.."
seconds=${1:-30}
py=${PYTHON:-.venv/bin/python}
"$py" -c "import atheris" 2>/dev/null || "$py" -m pip install -q atheris
work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT
failed=0
for target in $("$py" -c "import sys; sys.path.insert(0, 'tests/fuzz'); from targets import TARGETS; print(*TARGETS)"); do
  if "$py" tests/fuzz/run.py "$target" "$seconds" "$work/$target" > "$work/$target.log" 2>&1; then
    echo "fuzz $target: $(grep -E 'DONE' "$work/$target.log" | tail -1)"
  else
    echo "fuzz $target: FINDING (see tests/fuzz/crashes/$target/)"
    grep -vE '^#|^INFO|^WARNING' "$work/$target.log" | tail -20
    failed=$((failed + 1))
  fi
done
exit "$failed"
