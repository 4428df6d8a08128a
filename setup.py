"""Build flowkernels._C: C++ (CPU) kernels always, CUDA kernels when possible.

Install with ``pip install --no-build-isolation -e .`` so that the extension is
compiled against the torch already in the environment (an isolated build would
fetch a second, possibly different, torch).

Environment:
  FORCE_CUDA=1             build CUDA kernels even without a visible GPU (needs a CUDA
                           build of torch and nvcc; TORCH_CUDA_ARCH_LIST defaults to 9.0)
  FLOWKERNELS_FORCE_CPU=1  never build CUDA kernels
  FLOWKERNELS_SANITIZE=1   build the C++ kernels with AddressSanitizer and UndefinedBehaviorSanitizer
                           (scripts/sanitize_check.sh; needs LD_PRELOAD of libasan to import)
  MAX_JOBS=N               parallel compile jobs (ninja)
"""

from __future__ import annotations

import glob
import os
import sys

from setuptools import find_packages, setup

try:
    import torch
    from torch.utils.cpp_extension import CUDA_HOME, BuildExtension, CppExtension, CUDAExtension
except ImportError:
    sys.exit(
        "flowkernels: building needs PyTorch installed first, e.g. `pip install torch==2.13.0`, "
        "then `pip install --no-build-isolation -e .` (without --no-build-isolation pip would "
        "build against a different torch in an isolated environment)."
    )

ROOT = os.path.dirname(os.path.abspath(__file__))


def cuda_decision() -> tuple[bool, str]:
    """Whether to compile the CUDA sources, and why."""
    if os.environ.get("FLOWKERNELS_FORCE_CPU") == "1":
        return False, "FLOWKERNELS_FORCE_CPU=1"
    forced = os.environ.get("FORCE_CUDA") == "1"
    nvcc = CUDA_HOME is not None and os.path.exists(os.path.join(CUDA_HOME, "bin", "nvcc"))
    if torch.version.cuda is None:
        if forced:
            sys.exit(
                f"flowkernels: FORCE_CUDA=1 needs a CUDA build of torch; this torch is {torch.__version__} (CPU only)."
            )
        return False, f"torch {torch.__version__} is a CPU build"
    if not nvcc:
        if forced:
            sys.exit(
                "flowkernels: FORCE_CUDA=1 but no CUDA toolkit was found; set CUDA_HOME to the folder holding bin/nvcc."
            )
        return False, "no CUDA toolkit (nvcc) found; set CUDA_HOME to build CUDA kernels"
    why = "FORCE_CUDA=1" if forced else f"torch has CUDA {torch.version.cuda} and nvcc is at {CUDA_HOME}"
    return True, why


def nvidia_wheel_includes() -> list[str]:
    """Header folders of the nvidia-* wheels a CUDA torch depends on (cuda_runtime.h, cub...)."""
    try:
        import nvidia  # namespace package installed with CUDA builds of torch
    except ImportError:
        return []
    found = []
    for base in getattr(nvidia, "__path__", []):
        found += sorted(glob.glob(os.path.join(base, "*", "include")))
    return found


def torch_version_numbers() -> list[tuple[str, str]]:
    major, minor = torch.__version__.split(".")[:2]
    return [("FLOWKERNELS_TORCH_MAJOR", major), ("FLOWKERNELS_TORCH_MINOR", minor)]


def make_extension():
    with_cuda, why = cuda_decision()
    print(f"flowkernels: CUDA kernels {'ON' if with_cuda else 'OFF'} ({why})", flush=True)
    sources = sorted(glob.glob("csrc/*.cpp")) + sorted(glob.glob("csrc/cpu/*.cpp"))
    # -fopenmp at compile time only: at::parallel_for is an inline OpenMP loop, and
    # its runtime comes from the libgomp that torch itself loads.
    # -ffp-contract=off: no a*b+c fused into FMA behind our back, so floating-point
    # results are the same on every x86 level and match the GPU (rANS models must).
    # -fno-trapping-math lets GCC turn the kernels' selects into SIMD blends (we never
    # read floating-point exception flags); it does not change any result.
    cxx = [
        "-O3",
        "-ffp-contract=off",
        "-fno-trapping-math",
        "-fno-math-errno",
        "-fopenmp",
        "-Wall",
        "-Wno-unknown-pragmas",
    ]
    macros = torch_version_numbers()
    include_dirs = [os.path.join(ROOT, "csrc")]
    if not with_cuda:
        link = []
        if os.environ.get("FLOWKERNELS_SANITIZE") == "1":
            sanitize = ["-fsanitize=address,undefined", "-fno-sanitize-recover=undefined", "-fno-omit-frame-pointer"]
            cxx = [flag for flag in cxx if flag != "-O3"] + ["-O1", "-g", *sanitize]
            link = sanitize
            print("flowkernels: building with AddressSanitizer and UndefinedBehaviorSanitizer", flush=True)
        return CppExtension(
            "flowkernels._C",
            sources,
            include_dirs=include_dirs,
            define_macros=macros,
            extra_compile_args={"cxx": cxx},
            extra_link_args=link,
        )
    if "TORCH_CUDA_ARCH_LIST" not in os.environ and not torch.cuda.is_available():
        os.environ["TORCH_CUDA_ARCH_LIST"] = "9.0"
        print("flowkernels: no GPU visible, TORCH_CUDA_ARCH_LIST=9.0 (H100/H200)", flush=True)
    cuda_major, cuda_minor = torch.version.cuda.split(".")[:2]
    macros += [
        ("FLOWKERNELS_WITH_CUDA", "1"),
        ("FLOWKERNELS_CUDA_MAJOR", cuda_major),
        ("FLOWKERNELS_CUDA_MINOR", cuda_minor),
    ]
    sources += sorted(glob.glob("csrc/cuda/*.cu"))
    return CUDAExtension(
        "flowkernels._C",
        sources,
        include_dirs=include_dirs + nvidia_wheel_includes(),
        define_macros=macros,
        extra_compile_args={"cxx": cxx, "nvcc": ["-O3", "-lineinfo"]},
    )


setup(
    packages=find_packages(include=["flowkernels", "flowkernels.*"]),
    package_data={"flowkernels": ["pretrained/*.pt", "py.typed"]},
    # the float originals of the photos-dev models are build products of scripts/train_pretrained.sh
    exclude_package_data={"flowkernels": ["pretrained/idf_photos_dev_*_float.pt"]},
    ext_modules=[make_extension()],
    cmdclass={"build_ext": BuildExtension.with_options(use_ninja=True)},
)
