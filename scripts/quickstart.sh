#!/usr/bin/env bash
# From a fresh machine (Python 3.10+ and a C++ compiler) to a working flowkernels,
# in one command:
#
#   bash scripts/quickstart.sh demo   # set up, then run `flowkernels demo`
#   bash scripts/quickstart.sh test   # set up, then run the whole test suite
#
# Set-up: a virtual environment in .venv, torch 2.13.0 (the CPU build on this
# project's machines), the build tools, and flowkernels installed editable with
# its compiled kernels (CUDA kernels too when torch has CUDA and nvcc is found).
# Idempotent: a second run reuses the environment, and rebuilds only when the
# C++/CUDA sources or the build files changed. Extra arguments go to the demo
# or to pytest.
#
#   FLOWKERNELS_VENV   environment folder (default .venv)
#   FLOWKERNELS_TORCH  torch requirement (default torch==2.13.0)
#   PYTHON             interpreter to create the environment with (default python3)
set -euo pipefail
cd "$(dirname "$0")/.."

command=${1:-demo}
shift || true
case "$command" in
  demo|test) ;;
  *) echo "usage: bash scripts/quickstart.sh demo|test [arguments for the demo or pytest]" >&2; exit 2 ;;
esac

venv=${FLOWKERNELS_VENV:-.venv}
torch_requirement=${FLOWKERNELS_TORCH:-torch==2.13.0}
step() { printf '== %s\n' "$*"; }

if [ ! -x "$venv/bin/python" ]; then
  step "creating the virtual environment $venv"
  "${PYTHON:-python3}" -m venv "$venv"
fi
# shellcheck disable=SC1091
. "$venv/bin/activate"

if ! python -c "import torch" 2>/dev/null; then
  step "installing $torch_requirement"
  pip install --quiet "$torch_requirement"
fi
build_tools=(numpy pybind11 ninja "setuptools>=64" wheel)
if ! python -c "import numpy, pybind11, ninja, setuptools, wheel" 2>/dev/null; then
  step "installing the build tools"
  pip install --quiet "${build_tools[@]}"
fi

# Rebuild only when what the build reads has changed (or the package is missing).
stamp="$venv/.flowkernels-build-stamp"
fingerprint=$( { python -c "import torch; print(torch.__version__)"; cat setup.py pyproject.toml;
                 find csrc -type f | LC_ALL=C sort | xargs cat; } | sha256sum | cut -d' ' -f1)
if [ "$(cat "$stamp" 2>/dev/null)" != "$fingerprint" ] || ! python -c "import flowkernels" 2>/dev/null; then
  log="$venv/flowkernels-build.log"
  step "building and installing flowkernels (3-6 minutes on 2 cores; one line per compiled file, log: $log)"
  # pip -v shows ninja's "[i/n] compiler ... -c SOURCE" lines: print their step and source file as they come,
  # so a long build shows progress; the whole output goes to the log, whose tail is shown on failure.
  if ! MAX_JOBS=${MAX_JOBS:-$(nproc)} pip install -v --no-build-isolation -e ".[test,bench,models]" 2>&1 \
      | tee "$log" | awk '/^ *\[[0-9]+\/[0-9]+\] / { source = "";
            for (i = 2; i < NF; i++) if ($i == "-c") source = $(i + 1);
            sub(/.*\/csrc\//, "csrc/", source); print "   " $1 " " (source ? source : "linking"); fflush() }'; then
    echo "quickstart: the build failed; the end of $log:" >&2
    tail -n 40 "$log" >&2
    exit 1
  fi
  echo "$fingerprint" > "$stamp"
fi
# hexagdly (the hexagonal-convolution peer of the benchmarks and of one test) declares
# torchvision as a dependency, which would replace torch; it needs only torch, so it is
# installed without dependencies.
if ! python -c "import hexagdly" 2>/dev/null; then
  step "installing hexagdly 2.0.2 (benchmark peer, without its dependencies)"
  pip install --quiet --no-deps hexagdly==2.0.2
fi

case "$command" in
  demo) step "flowkernels demo"; exec flowkernels demo "$@" ;;
  test) step "pytest"; exec python -m pytest "$@" ;;
esac
