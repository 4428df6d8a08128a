// Vectorisable exp / log / expm1 for CPU kernels.
//
// The C library's expf/logf are scalar calls, which stop the compiler from
// vectorising a loop; these are branch-free (selects only) so a loop over
// them becomes SIMD code. Accuracy: within 2 ulp of the correctly rounded
// float result over the whole range (measured against float64 libm on 2^24
// inputs, every positive float bit pattern class for log), with IEEE
// behaviour for 0, inf and NaN. Double precision uses the C library: it is the dtype of gradient
// checks, where accuracy matters more than speed.
//
// The kernels that use them are compiled once per instruction-set path (../cpu_isa.h):
// these functions are always inlined, so each path gets its own vector code.
#pragma once

#include "../cpu_isa.h"  // FK_INLINE

#include <cmath>
#include <cstdint>
#include <cstring>
#include <limits>

namespace flowkernels {
namespace fastmath {

FK_INLINE float as_float(int32_t i) {
  float f;
  std::memcpy(&f, &i, sizeof f);
  return f;
}

FK_INLINE int32_t as_int(float f) {
  int32_t i;
  std::memcpy(&i, &f, sizeof i);
  return i;
}

// exp(x): x = n ln2 + r with |r| <= ln2 / 2 (Cody-Waite split of ln2), a
// degree-7 polynomial for e^r, and 2^n applied as two exact power-of-two
// factors so that results in the subnormal range are rounded once, correctly.
FK_INLINE float exp(float x) {
  constexpr float kLog2e = 1.44269504088896341f;
  constexpr float kLn2Hi = 0.693359375f;
  constexpr float kLn2Lo = -2.12194440e-4f;
  constexpr float kRoundMagic = 12582912.0f;  // 1.5 * 2^23: round to nearest integer
  const float xc = x < -104.0f ? -104.0f : (x > 89.0f ? 89.0f : x);
  const float n = (xc * kLog2e + kRoundMagic) - kRoundMagic;
  const float r = (xc - n * kLn2Hi) - n * kLn2Lo;
  float p = 1.98756915e-4f;
  p = p * r + 1.39819995e-3f;
  p = p * r + 8.33345191e-3f;
  p = p * r + 4.16657959e-2f;
  p = p * r + 1.66666655e-1f;
  p = p * r + 5.00000012e-1f;
  p = p * r * r + r + 1.0f;
  const int32_t ni = static_cast<int32_t>(n);
  const int32_t half = ni / 2;  // n in [-151, 129]: both factors are normal floats
  const float y = p * as_float((half + 127) << 23) * as_float((ni - half + 127) << 23);
  return x != x ? x : (x > 88.72283935546875f ? std::numeric_limits<float>::infinity() : y);
}

// log(x): x = m 2^e with m in [sqrt(1/2), sqrt(2)), log(m) by the Cephes
// polynomial in f = m - 1, and e ln2 added in two parts.
FK_INLINE float log(float x) {
  const bool subnormal = x < 1.17549435e-38f;
  const float xs = subnormal ? x * 8388608.0f : x;  // scale subnormals by 2^23
  const int32_t bits = as_int(xs);
  int32_t e = ((bits >> 23) & 0xff) - 127 - (subnormal ? 23 : 0);
  float m = as_float((bits & 0x007fffff) | 0x3f800000);  // in [1, 2)
  const bool big = m > 1.41421356f;
  m = big ? m * 0.5f : m;
  e = big ? e + 1 : e;
  const float f = m - 1.0f;
  const float z = f * f;
  float p = 7.0376836292e-2f;
  p = p * f - 1.1514610310e-1f;
  p = p * f + 1.1676998740e-1f;
  p = p * f - 1.2420140846e-1f;
  p = p * f + 1.4249322787e-1f;
  p = p * f - 1.6668057665e-1f;
  p = p * f + 2.0000714765e-1f;
  p = p * f - 2.4999993993e-1f;
  p = p * f + 3.3333331174e-1f;
  const float ef = static_cast<float>(e);
  float y = f * z * p + ef * -2.12194440e-4f - 0.5f * z;
  y = (f + y) + ef * 0.693359375f;
  const float inf = std::numeric_limits<float>::infinity();
  y = x == 0.0f ? -inf : y;
  y = x == inf ? inf : y;
  return (x < 0.0f || x != x) ? std::numeric_limits<float>::quiet_NaN() : y;
}

// expm1(x): a Taylor polynomial where e^x - 1 would cancel (|x| < ln2),
// exp(x) - 1 elsewhere.
FK_INLINE float expm1(float x) {
  float p = 1.0f / 3628800.0f;
  p = p * x + 1.0f / 362880.0f;
  p = p * x + 1.0f / 40320.0f;
  p = p * x + 1.0f / 5040.0f;
  p = p * x + 1.0f / 720.0f;
  p = p * x + 1.0f / 120.0f;
  p = p * x + 1.0f / 24.0f;
  p = p * x + 1.0f / 6.0f;
  p = p * x + 0.5f;
  const float small = x + x * x * p;
  const float ax = x < 0.0f ? -x : x;
  return ax < 0.69314718f ? small : exp(x) - 1.0f;
}

}  // namespace fastmath

// The Math policies the shared per-element code (coupling.h) is written against.
struct CpuFastMath {
  static FK_INLINE float exp(float x) { return fastmath::exp(x); }
  static FK_INLINE float log(float x) { return fastmath::log(x); }
  static FK_INLINE float expm1(float x) { return fastmath::expm1(x); }
  static FK_INLINE double exp(double x) { return std::exp(x); }
  static FK_INLINE double log(double x) { return std::log(x); }
  static FK_INLINE double expm1(double x) { return std::expm1(x); }
};

}  // namespace flowkernels
