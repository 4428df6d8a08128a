#!/usr/bin/env bash
# The C++ kernels under AddressSanitizer and UndefinedBehaviorSanitizer: builds a copy of the tree
# with FLOWKERNELS_SANITIZE=1 (CPU only, outside the source tree) and runs the tests that feed the
# kernels hostile and edge-case input (rANS ops and containers, the codec's golden files and fuzz
# findings, the integer convolution, the couplings). Any memory error or undefined behaviour aborts
# the run with a report.
#
#   bash scripts/sanitize_check.sh           # uses .venv (made by scripts/quickstart.sh)
set -euo pipefail
root=$(cd "$(dirname "$0")/.." && pwd)
py=${PYTHON:-$root/.venv/bin/python}
work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT
git -C "$root" ls-files -z --cached --others --exclude-standard | tar -C "$root" --null -T - -cf - | tar -C "$work" -xf -
echo "== building with ASan + UBSan"
(cd "$work" && FLOWKERNELS_FORCE_CPU=1 FLOWKERNELS_SANITIZE=1 MAX_JOBS=${MAX_JOBS:-2} "$py" setup.py build_ext --inplace \
  > "$work/build.log" 2>&1) || { tail -30 "$work/build.log"; exit 1; }
echo "== tests under the sanitizers"
cd "$work"
# Python and torch are not instrumented: the ASan runtime must be loaded first, leaks of the
# interpreter are not ours, and torch's own containers are not annotated.
LD_PRELOAD="$(gcc -print-file-name=libasan.so):$(gcc -print-file-name=libubsan.so)" \
ASAN_OPTIONS=detect_leaks=0:detect_container_overflow=0:allocator_may_return_null=1:abort_on_error=1 \
UBSAN_OPTIONS=print_stacktrace=1:halt_on_error=1 \
PYTHONPATH="$work" "$py" -m pytest -q -p no:cacheprovider -x \
  tests/test_rans_hostile.py tests/test_rans.py tests/test_rans_fuzz.py tests/test_fuzz_regressions.py \
  tests/test_codec_golden.py tests/test_ops_intconv.py tests/test_ops_coupling.py tests/test_ops_arconv.py \
  tests/test_ops_context.py tests/test_codec_image_file.py \
  -k "not portability and not command_line and not torch_compile"
