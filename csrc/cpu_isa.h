// Instruction-set paths of the hand-written CPU kernels, chosen at run time.
//
// Every hot CPU kernel is compiled for three x86-64 levels:
//
//   avx512    x86-64-v4: AVX-512 F/BW/CD/DQ/VL (Skylake-SP and later, Zen 4 and later)
//   avx2      x86-64-v3: AVX2 + FMA + BMI1/2 (Haswell and later, Zen 1 and later)
//   baseline  x86-64 (SSE2): every 64-bit x86 CPU; also the only path on other architectures
//
// The path in effect is min(what this CPU supports, a ceiling that can be lowered):
// FLOWKERNELS_CPU_ISA (read at import by flowkernels/cpu.py) or set_cpu_isa_ceiling
// (flowkernels.cpu.set_isa, used by the tests to run every path on any machine).
// Reading it costs one relaxed atomic load, so kernels ask once per parallel chunk.
//
// How a kernel gets its paths: its body is an always-inline function template
// (FK_INLINE); FK_ISA_CLONES(body) defines three thin wrappers around it, each
// compiled with one level's target attribute, so the inlined body is compiled
// (vectorised) once per level; FK_ISA_CALL(body, args...) calls the wrapper of the
// path in effect. Everything the body calls must be inlined into it (FK_INLINE,
// FK_LAMBDA_INLINE) to be compiled for the wrapper's level; a call that is not
// inlined runs baseline code, which is correct, only slower.
//
// Per-function target attributes, not per-file -mavx2 flags: a translation unit
// compiled with -mavx2 would emit AVX2 copies of inline functions from torch's
// headers, and the linker may keep those copies for baseline callers too.
//
// Results: the auto-vectorised kernels are bit-identical on every path, because
// the build forbids FMA contraction (-ffp-contract=off) and the math is written in
// IEEE basic operations (fastmath.h); the rANS coder depends on that. The hex
// direct kernel uses explicit FMAs and lane-parallel sums, so its float results
// differ between paths in the last bits (each path is deterministic, and matches
// the reference to float32 rounding).
#pragma once

#include <cstdint>
#include <utility>

#if defined(__GNUC__) && !defined(__clang__) && defined(__x86_64__) && defined(__linux__)
#define FK_X86_PATHS 1
#define FK_TARGET_AVX512 __attribute__((target("arch=x86-64-v4")))
#define FK_TARGET_AVX2 __attribute__((target("arch=x86-64-v3")))
#else
#define FK_TARGET_AVX512
#define FK_TARGET_AVX2
#endif

#define FK_INLINE inline __attribute__((always_inline))
// For lambdas called from an FK_INLINE body: inlined, they are compiled for the
// caller's instruction set (and cost no call per element).
#define FK_LAMBDA_INLINE __attribute__((always_inline))

namespace flowkernels {

enum class CpuIsa : int { kBaseline = 0, kAvx2 = 1, kAvx512 = 2 };

// "baseline", "avx2" or "avx512".
const char* cpu_isa_name(CpuIsa isa);
// The highest path this CPU (and this build) can run.
CpuIsa cpu_isa_supported();
// The path in effect: min(cpu_isa_supported(), the ceiling).
CpuIsa cpu_isa();
// Lowers (or raises back) the ceiling; returns the path now in effect.
CpuIsa set_cpu_isa_ceiling(CpuIsa ceiling);

}  // namespace flowkernels

// Three wrappers of the always-inline function template `body`, one per path.
#define FK_ISA_CLONES(body)                                                   \
  template <class... Args>                                                    \
  FK_TARGET_AVX512 auto body##_on_avx512(Args&&... args) {                    \
    return body(std::forward<Args>(args)...);                                 \
  }                                                                           \
  template <class... Args>                                                    \
  FK_TARGET_AVX2 auto body##_on_avx2(Args&&... args) {                        \
    return body(std::forward<Args>(args)...);                                 \
  }                                                                           \
  template <class... Args>                                                    \
  auto body##_on_baseline(Args&&... args) {                                   \
    return body(std::forward<Args>(args)...);                                 \
  }

// Calls `body` (defined with FK_ISA_CLONES) on the path in effect; an expression.
#define FK_ISA_CALL(body, ...)                                                               \
  (::flowkernels::cpu_isa() == ::flowkernels::CpuIsa::kAvx512  ? body##_on_avx512(__VA_ARGS__) \
   : ::flowkernels::cpu_isa() == ::flowkernels::CpuIsa::kAvx2 ? body##_on_avx2(__VA_ARGS__)   \
                                                                : body##_on_baseline(__VA_ARGS__))
