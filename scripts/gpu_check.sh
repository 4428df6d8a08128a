#!/usr/bin/env bash
# GPU check, for a machine with an NVIDIA GPU whose python3 already has a CUDA
# build of torch, pybind11, ninja and pytest (no package registry needed):
# builds the extension in place with CUDA kernels, runs the test suite (every
# device-parametrised test then also runs on CUDA, plus the CPU-vs-CUDA
# equality tests), runs the benchmarks on the GPU, and writes a short report.
#
#   bash scripts/gpu_check.sh            # report in $OUT, or ./gpu-report when OUT is unset
#
# Optional wheels (hypothesis, expecttest, tqdm) in ./.whl are installed first
# when present; tests needing a missing one are skipped, not failed.
set -uo pipefail
cd "$(dirname "$0")/.."
out=${OUT:-./gpu-report}
mkdir -p "$out"
py=${PYTHON:-python3}
if [ -d .whl ] && ls .whl/*.whl >/dev/null 2>&1; then
  "$py" -m pip install -q --no-index --no-deps --target /tmp/fk-site .whl/*.whl && export PYTHONPATH=/tmp/fk-site
fi
export PYTHONPATH="$PWD${PYTHONPATH:+:$PYTHONPATH}"
[ -z "${CUDA_HOME:-}" ] && [ -x /usr/local/cuda/bin/nvcc ] && export CUDA_HOME=/usr/local/cuda

{
  date -u
  nvidia-smi --query-gpu=name,driver_version,memory.total --format=csv 2>&1
  "$py" -c "import torch; print('torch', torch.__version__, 'cuda', torch.version.cuda, torch.cuda.get_device_name())"
} > "$out/environment.txt" 2>&1

echo "== build (FORCE_CUDA=1)"
if ! FORCE_CUDA=1 MAX_JOBS=${MAX_JOBS:-16} "$py" setup.py build_ext --inplace > "$out/build.log" 2>&1; then
  tail -40 "$out/build.log"
  echo "build FAILED (see $out/build.log)" | tee "$out/report.md"
  exit 1
fi

echo "== tests"
"$py" -m pytest -q -p no:cacheprovider tests > "$out/tests.log" 2>&1
tests_rc=$?
tail -3 "$out/tests.log"

echo "== benchmarks on cuda (coupling kernels; rANS with 16384 lanes; arconv inverse up to 128x12x64x64)"
"$py" -m flowkernels.cli bench --device cuda --json "$out/bench_cuda.json" > "$out/bench_cuda.txt" 2>&1
bench_rc=$?
cat "$out/bench_cuda.txt"

{
  echo "# flowkernels GPU check"
  echo
  echo '```'
  cat "$out/environment.txt"
  echo '```'
  echo
  echo "## Tests (exit $tests_rc)"
  echo '```'
  tail -15 "$out/tests.log"
  echo '```'
  echo
  echo "## Benchmarks on CUDA (exit $bench_rc)"
  echo '```'
  cat "$out/bench_cuda.txt"
  echo '```'
} > "$out/report.md"
echo "report: $out/report.md"
[ "$tests_rc" -eq 0 ] && [ "$bench_rc" -eq 0 ]
