#!/usr/bin/env bash
# GPU check: every CUDA kernel verified in one run of under 9 minutes on the lent GPU machine
# (python3 with a CUDA build of torch, pytest, pytest-timeout, compute-sanitizer; no network).
#
#   bash scripts/gpu_check.sh             # report in $OUT (or ./gpu-report), written as it goes
#   bash scripts/gpu_check.sh --dry-run   # the same sections on a machine without a GPU (CI runs this)
#
# Sections, each under its own timeout (seconds), each appending its result to report.md as soon as
# it ends, so a run cut short still reports what it did:
#   environment   20   GPU, driver, torch
#   build        180   FORCE_CUDA=1 with every core (dry run: the extension in place must import)
#   cuda-tests   100   pytest -k cuda: the CUDA tests and the CPU-vs-CUDA tests, 60 s per test
#   memcheck      45   compute-sanitizer --tool memcheck on tests/gpu/check_cuda.py smoke
#   synccheck     45   compute-sanitizer --tool synccheck on the same (dry run: the smoke alone, once)
#   sweep         45   tests/gpu/check_cuda.py sweep: CPU vs CUDA bytes, values, determinism, streams
#   benchmarks    80   flowkernels bench --device cuda --no-compile, 0.25 s per contender (dry run: --quick on the CPU)
# At most 515 s in all. Exit status: the number of failed sections.
set -uo pipefail
cd "$(dirname "$0")/.."
dry_run=0
[ "${1:-}" = "--dry-run" ] && dry_run=1
out=${OUT:-./gpu-report}
mkdir -p "$out"
report="$out/report.md"
py=${PYTHON:-python3}
[ "$dry_run" = 1 ] && [ -x .venv/bin/python ] && py=${PYTHON:-.venv/bin/python}
export PYTHONPATH="$PWD${PYTHONPATH:+:$PYTHONPATH}"
[ -z "${CUDA_HOME:-}" ] && [ -x /usr/local/cuda/bin/nvcc ] && export CUDA_HOME=/usr/local/cuda
failed=0
start=$SECONDS

echo "# flowkernels GPU check$([ "$dry_run" = 1 ] && echo ' (dry run, no GPU)')" > "$report"
echo "started $(date -u +%FT%TZ)" >> "$report"

# section NAME TIMEOUT COMMAND...: runs it with output to $out/NAME.log and appends the verdict
# and the log's tail to the report.
section() {
  local name=$1 limit=$2
  shift 2
  local began=$SECONDS
  echo "== $name (at most $limit s)"
  timeout --kill-after=10 "$limit" "$@" > "$out/$name.log" 2>&1
  local rc=$?
  local verdict="ok"
  [ "$rc" -ne 0 ] && verdict="FAILED (exit $rc$([ "$rc" = 124 ] && echo ', timed out'))" && failed=$((failed + 1))
  {
    echo
    echo "## $name: $verdict in $((SECONDS - began)) s"
    echo '```'
    tail -25 "$out/$name.log"
    echo '```'
  } >> "$report"
  echo "   $verdict in $((SECONDS - began)) s"
}

section environment 20 bash -c "nvidia-smi --query-gpu=name,driver_version,memory.total --format=csv 2>&1 || true;
  $py -c 'import torch; print(\"torch\", torch.__version__, \"cuda\", torch.version.cuda,
    torch.cuda.get_device_name() if torch.cuda.is_available() else \"(no GPU)\")'"

if [ "$dry_run" = 1 ]; then
  section build 180 "$py" -c "import flowkernels; print('flowkernels imports; CUDA kernels:', flowkernels.has_cuda_kernels())"
else
  section build 180 env FORCE_CUDA=1 MAX_JOBS="${MAX_JOBS:-$(nproc)}" "$py" setup.py build_ext --inplace
fi

timeout_flag=()
"$py" -c "import pytest_timeout" 2>/dev/null && timeout_flag=(--timeout=60)
section cuda-tests 100 "$py" -m pytest -q -p no:cacheprovider -k cuda "${timeout_flag[@]}" tests

if [ "$dry_run" = 0 ] && command -v compute-sanitizer > /dev/null; then
  section memcheck 45 compute-sanitizer --tool memcheck --error-exitcode 1 "$py" tests/gpu/check_cuda.py smoke
  section synccheck 45 compute-sanitizer --tool synccheck --error-exitcode 1 "$py" tests/gpu/check_cuda.py smoke
else
  [ "$dry_run" = 0 ] && echo "compute-sanitizer not found: the smoke runs without it" >> "$report"
  section smoke 45 "$py" tests/gpu/check_cuda.py smoke
fi

section sweep 45 "$py" tests/gpu/check_cuda.py sweep

if [ "$dry_run" = 1 ]; then
  section benchmarks 80 "$py" -m flowkernels.cli bench --quick --no-compile --min-run-time 0.01 --json "$out/bench.json"
else
  section benchmarks 80 "$py" -m flowkernels.cli bench --device cuda --no-compile --min-run-time 0.25 \
    --json "$out/bench_cuda.json"
fi

echo >> "$report"
echo "finished in $((SECONDS - start)) s, $failed section(s) failed" | tee -a "$report"
exit "$failed"
