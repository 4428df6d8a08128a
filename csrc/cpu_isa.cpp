// Run-time choice of the CPU kernels' instruction-set path (see cpu_isa.h).
#include "cpu_isa.h"

#include <algorithm>
#include <atomic>

namespace flowkernels {
namespace {

CpuIsa detect() {
#ifdef FK_X86_PATHS
  __builtin_cpu_init();
  // x86-64-v4 and v3 as GCC's target attributes define them: the wrappers may use
  // any of these instructions.
  const bool v3 = __builtin_cpu_supports("avx2") && __builtin_cpu_supports("fma") &&
                  __builtin_cpu_supports("bmi") && __builtin_cpu_supports("bmi2") &&
                  __builtin_cpu_supports("f16c") && __builtin_cpu_supports("movbe") &&
                  __builtin_cpu_supports("lzcnt");
  const bool v4 = v3 && __builtin_cpu_supports("avx512f") && __builtin_cpu_supports("avx512bw") &&
                  __builtin_cpu_supports("avx512cd") && __builtin_cpu_supports("avx512dq") &&
                  __builtin_cpu_supports("avx512vl");
  return v4 ? CpuIsa::kAvx512 : (v3 ? CpuIsa::kAvx2 : CpuIsa::kBaseline);
#else
  return CpuIsa::kBaseline;
#endif
}

const CpuIsa kSupported = detect();
std::atomic<int> active{static_cast<int>(kSupported)};

}  // namespace

const char* cpu_isa_name(CpuIsa isa) {
  switch (isa) {
    case CpuIsa::kAvx512:
      return "avx512";
    case CpuIsa::kAvx2:
      return "avx2";
    default:
      return "baseline";
  }
}

CpuIsa cpu_isa_supported() { return kSupported; }

CpuIsa cpu_isa() { return static_cast<CpuIsa>(active.load(std::memory_order_relaxed)); }

CpuIsa set_cpu_isa_ceiling(CpuIsa ceiling) {
  const int path = std::min(static_cast<int>(ceiling), static_cast<int>(kSupported));
  active.store(path, std::memory_order_relaxed);
  return static_cast<CpuIsa>(path);
}

}  // namespace flowkernels
