// The rans kernel family: what the CPU and CUDA kernels share.
//
// The coder, the logistic quantization and the byte layout are specified in
// flowkernels/reference/rans.py, whose pure-Python implementation is the test
// oracle; this header is the same algorithm for uint64 states and doubles.
//
// Bit-exactness across devices: every double operation in the model
// quantization goes through dadd/dsub/dmul/ddiv, which on the GPU are the
// round-to-nearest intrinsics (never contracted into FMA) and on the CPU plain
// operators in translation units built with -ffp-contract=off. exp is det_exp,
// built from those operations alone, so CPU and GPU compute the same integers.
#pragma once

#include "common.h"

#include <cmath>
#include <cstdint>
#include <cstring>

namespace flowkernels {
namespace rans {

constexpr uint64_t kStateLower = uint64_t(1) << 32;
constexpr int kWordBits = 32;
constexpr int kMaxPrecision = 24;
constexpr int kEscapePrecision = 16;
constexpr double kLogScaleLimit = 30.0;
constexpr double kWindowScales = 16.0;

// ---------------------------------------------------------------------------
// IEEE basic operations that are never fused.

FK_HOST_DEVICE double dadd(double a, double b) {
#ifdef __CUDA_ARCH__
  return __dadd_rn(a, b);
#else
  return a + b;
#endif
}
FK_HOST_DEVICE double dsub(double a, double b) {
#ifdef __CUDA_ARCH__
  return __dsub_rn(a, b);
#else
  return a - b;
#endif
}
FK_HOST_DEVICE double dmul(double a, double b) {
#ifdef __CUDA_ARCH__
  return __dmul_rn(a, b);
#else
  return a * b;
#endif
}
FK_HOST_DEVICE double ddiv(double a, double b) {
#ifdef __CUDA_ARCH__
  return __ddiv_rn(a, b);
#else
  return a / b;
#endif
}
FK_HOST_DEVICE double drint(double x) {
#ifdef __CUDA_ARCH__
  return ::rint(x);
#else
  return std::nearbyint(x);
#endif
}
FK_HOST_DEVICE double dmin(double a, double b) { return b < a ? b : a; }
FK_HOST_DEVICE double dmax(double a, double b) { return b > a ? b : a; }

// 2^k for an integral double |k| <= 1022, exactly. The exponent bits come from
// the "add 1.5 * 2^52" trick rather than a double -> int64 conversion (which
// AVX2 lacks), so loops over det_exp vectorise.
FK_HOST_DEVICE double pow2(double k) {
  const double shifted = k + 6755399441055744.0;  // 1.5 * 2^52: k lands in the low mantissa bits
  uint64_t bits;
#ifdef __CUDA_ARCH__
  bits = static_cast<uint64_t>(__double_as_longlong(shifted));
#else
  std::memcpy(&bits, &shifted, sizeof bits);
#endif
  bits = (bits - 0x4338000000000000ull + 1023ull) << 52;
#ifdef __CUDA_ARCH__
  return __longlong_as_double(static_cast<long long>(bits));
#else
  double out;
  std::memcpy(&out, &bits, sizeof out);
  return out;
#endif
}

// exp(x) from basic operations only; the same algorithm as reference.det_exp.
FK_HOST_DEVICE double det_exp(double x) {
  constexpr double kLog2e = 0x1.71547652b82fep+0;
  constexpr double kLn2Hi = 0x1.62e42fee00000p-1;
  constexpr double kLn2Lo = 0x1.a39ef35793c76p-33;
  // 1/n!, degree 7 (relative error < 6e-9, far below one count of a 2^24
  // table), evaluated by Estrin's scheme: a dependency chain of 3 multiply-adds
  // instead of Horner's 7, which is what the decoder waits on.
  constexpr double c2 = 0x1.0000000000000p-1, c3 = 0x1.5555555555555p-3, c4 = 0x1.5555555555555p-5,
                   c5 = 0x1.1111111111111p-7, c6 = 0x1.6c16c16c16c17p-10, c7 = 0x1.a01a01a01a01ap-13;
  x = dmin(dmax(x, -700.0), 700.0);
  const double k = drint(dmul(x, kLog2e));
  const double r = dsub(dsub(x, dmul(k, kLn2Hi)), dmul(k, kLn2Lo));
  const double r2 = dmul(r, r), r4 = dmul(r2, r2);
  const double low = dadd(dadd(1.0, r), dmul(r2, dadd(c2, dmul(c3, r))));
  const double high = dadd(dadd(c4, dmul(c5, r)), dmul(r2, dadd(c6, dmul(c7, r))));
  const double p = dadd(low, dmul(r4, high));
  // 2^k in two normal factors; the result (>= e^-700) is normal, so both products are exact.
  const double half = trunc(dmul(k, 0.5));
  return dmul(dmul(p, pow2(half)), pow2(dsub(k, half)));
}

FK_HOST_DEVICE double det_sigmoid(double z) { return ddiv(1.0, dadd(1.0, det_exp(-z))); }

// ---------------------------------------------------------------------------
// One lane of the stack coder.

struct Lane {
  uint64_t state;
  uint32_t* words;  // the lane's stack
  int64_t length;   // words on the stack
  int64_t capacity;
  bool exhausted;   // a pop needed a word the stack did not have

  FK_HOST_DEVICE void push(uint32_t start, uint32_t freq, int precision) {
    uint64_t x = state;
    // x >= freq * 2^(64 - p), written so that freq = 2^p cannot overflow.
    if ((x >> (64 - precision)) >= freq) {
      // Capacity was reserved by the caller; the check only guards memory.
      if (length < capacity) words[length++] = static_cast<uint32_t>(x);
      x >>= kWordBits;
    }
    state = ((x / freq) << precision) + x % freq + start;
  }

  FK_HOST_DEVICE uint32_t peek(int precision) const {
    return static_cast<uint32_t>(state & ((uint64_t(1) << precision) - 1));
  }

  FK_HOST_DEVICE void advance(uint32_t start, uint32_t freq, int precision) {
    const uint64_t mask = (uint64_t(1) << precision) - 1;
    uint64_t x = static_cast<uint64_t>(freq) * (state >> precision) + (state & mask) - start;
    if (x < kStateLower) {
      if (length > 0) {
        x = (x << kWordBits) | words[--length];
      } else {
        exhausted = true;
        x = kStateLower;  // keep the state valid; the caller reports the error
      }
    }
    state = x;
  }
};

// ---------------------------------------------------------------------------
// Categorical tables: cdf rows of K + 1 int32 values, 0 = c[0] < ... < c[K] = 2^p.

// Binary search for s with cdf[s] <= slot < cdf[s + 1].
FK_HOST_DEVICE int64_t search_cdf(const int32_t* cdf, int64_t K, uint32_t slot) {
  int64_t lo = 0, hi = K - 1;
  while (lo < hi) {
    const int64_t mid = (lo + hi + 1) / 2;
    if (static_cast<uint32_t>(cdf[mid]) <= slot) {
      lo = mid;
    } else {
      hi = mid - 1;
    }
  }
  return lo;
}

// ---------------------------------------------------------------------------
// Discretized logistic mixture, quantized (reference.LogisticModel).

struct LogisticSupport {
  bool has_lower, has_upper;
  double lower, upper;  // in symbols (int32 values, exact as doubles)
  double bin_width;
  int precision;
};

// The model is built from small free functions of scalars, with doubles and
// selects only (every integer here is below 2^53, so exact): LogisticModel
// composes them for any K, and the CPU's single-component fast path calls them
// directly inside a SIMD loop over symbols.

// bin_width / s for a component's log-scale (clamped to +-30).
FK_HOST_DEVICE double logistic_t(double log_scale, double bin_width) {
  return dmul(bin_width, det_exp(-dmin(dmax(log_scale, -kLogScaleLimit), kLogScaleLimit)));
}

FK_HOST_DEVICE double logistic_rounded(double mu_bins) {
  constexpr double kLimit = 1099511627776.0;  // 2^40
  return drint(dmin(dmax(mu_bins, -kLimit), kLimit));
}

// The support [lo, hi] and count budget of a model whose components span the
// rounded locations [rounded_min, rounded_max] with the largest scale `spread`
// (in bins), the heaviest at rounded_heavy.
struct LogisticWindow {
  double lo, hi;  // the support, in symbols
  double free;    // 2^p - 1 - 2 n: the counts distributed by the CDF
  double escape;  // 2^p - 1: the escape's start
};

// Which sides are bounded is a template argument, so that in a SIMD loop over
// symbols (where it is the same for all) no condition on it is left.
template <bool HasLower, bool HasUpper>
FK_HOST_DEVICE LogisticWindow logistic_window(double rounded_min, double rounded_max, double rounded_heavy,
                                              double spread, const LogisticSupport& sup) {
  const double max_window = pow2(static_cast<double>(sup.precision - 6));
  double half = ceil(dmin(dmul(kWindowScales, spread), max_window));
  half = half < 1.0 ? 1.0 : (half > max_window ? max_window : half);
  double a = HasLower ? sup.lower : rounded_min - half;
  double b = HasUpper ? sup.upper : rounded_max + half;
  if (!(HasLower && HasUpper)) {
    // An unbounded window holds at most 2^(p-6) bins (around the heaviest component).
    const bool wide = b - a + 1.0 > max_window;
    const double new_a = HasLower ? a : (HasUpper ? b - max_window + 1.0
                                                  : rounded_heavy - pow2(static_cast<double>(sup.precision - 7)));
    const double new_b = HasUpper ? b : new_a + max_window - 1.0;
    a = wide ? new_a : a;
    b = wide ? new_b : b;
  }
  // Inside int32; a window beyond a given bound collapses onto it.
  constexpr double kMin = -2147483648.0, kMax = 2147483647.0;
  a = dmin(dmax(a, kMin), kMax);
  b = dmin(dmax(b, kMin), kMax);
  const bool crossed = b < a;
  LogisticWindow w;
  w.lo = crossed ? (HasUpper ? b : a) : a;
  w.hi = crossed ? (HasUpper ? b : a) : b;
  const double total = pow2(static_cast<double>(sup.precision));
  w.free = total - 1.0 - 2.0 * (w.hi - w.lo + 1.0);
  w.escape = total - 1.0;
  return w;
}

FK_HOST_DEVICE LogisticWindow logistic_window(double rounded_min, double rounded_max, double rounded_heavy,
                                              double spread, const LogisticSupport& sup) {
  if (sup.has_lower) {
    return sup.has_upper ? logistic_window<true, true>(rounded_min, rounded_max, rounded_heavy, spread, sup)
                         : logistic_window<true, false>(rounded_min, rounded_max, rounded_heavy, spread, sup);
  }
  return sup.has_upper ? logistic_window<false, true>(rounded_min, rounded_max, rounded_heavy, spread, sup)
                       : logistic_window<false, false>(rounded_min, rounded_max, rounded_heavy, spread, sup);
}

// sigmoid((b - 1/2 - mu) t): one component's CDF at the lower edge of bin b.
FK_HOST_DEVICE double logistic_edge_cdf(double b, double mu_bins, double t) {
  return det_sigmoid(dmul(dsub(dsub(b, 0.5), mu_bins), t));
}

// C(b) from the mixture CDF f at b's lower edge.
FK_HOST_DEVICE double logistic_count(double b, double f, const LogisticWindow& w) {
  const double inner = floor(dmul(f, w.free)) + 2.0 * (b - w.lo);
  return b <= w.lo ? 0.0 : (b > w.hi ? w.escape : inner);
}

// log(x) within 2e-4 for normal x > 0: exponent plus a degree-4 fit of
// log2(1 + f). Aims the logistic decoder's search, which then checks exactly.
FK_HOST_DEVICE float rough_log(float x) {
#ifdef __CUDA_ARCH__
  return __logf(x);
#else
  uint32_t bits;
  std::memcpy(&bits, &x, sizeof bits);
  const float exponent = static_cast<float>(static_cast<int32_t>((bits >> 23) & 0xffu) - 127);
  const uint32_t mantissa_bits = (bits & 0x007fffffu) | 0x3f800000u;
  float f;
  std::memcpy(&f, &mantissa_bits, sizeof f);
  f -= 1.0f;
  const float log2 = exponent + f * (1.43854765f + f * (-0.67808746f + f * (0.32364232f - f * 0.08429226f)));
  return log2 * 0.69314718f;
#endif
}

FK_HOST_DEVICE uint32_t to_count(double c) { return static_cast<uint32_t>(static_cast<int32_t>(c)); }

template <int MaxK>
struct LogisticModel {
  double mu[MaxK];  // in bins
  double t[MaxK];   // bin_width / s_k
  double weight[MaxK];
  int K;
  LogisticWindow window;
  double guess_mu, guess_scale;  // the heaviest component's location and scale (bins), for search

  template <typename T>
  FK_HOST_DEVICE void init(const T* mu_in, const T* log_scale_in, const T* logit_in, int K_in,
                           const LogisticSupport& sup) {
    K = K_in;
    const double inv_w = ddiv(1.0, sup.bin_width);
    double spread = 0.0;
    for (int k = 0; k < K; ++k) {
      mu[k] = dmul(static_cast<double>(mu_in[k]), inv_w);
      t[k] = logistic_t(static_cast<double>(log_scale_in[k]), sup.bin_width);
      spread = dmax(spread, ddiv(1.0, t[k]));
    }
    if (logit_in == nullptr) {
      for (int k = 0; k < K; ++k) weight[k] = 1.0;
    } else {
      double top = static_cast<double>(logit_in[0]);
      for (int k = 1; k < K; ++k) top = dmax(top, static_cast<double>(logit_in[k]));
      double z = 0.0;
      for (int k = 0; k < K; ++k) {
        weight[k] = det_exp(dsub(static_cast<double>(logit_in[k]), top));
        z = dadd(z, weight[k]);
      }
      for (int k = 0; k < K; ++k) weight[k] = ddiv(weight[k], z);
    }
    double rounded_min = 0.0, rounded_max = 0.0, rounded_heavy = 0.0, heaviest = -1.0;
    for (int k = 0; k < K; ++k) {
      const double r = logistic_rounded(mu[k]);
      rounded_min = k == 0 ? r : dmin(rounded_min, r);
      rounded_max = k == 0 ? r : dmax(rounded_max, r);
      if (weight[k] > heaviest) {  // the first heaviest component
        rounded_heavy = r;
        guess_mu = mu[k];
        guess_scale = 1.0 / t[k];
      }
      heaviest = dmax(heaviest, weight[k]);
    }
    window = logistic_window(rounded_min, rounded_max, rounded_heavy, spread, sup);
  }

  // C(b) for lo <= b <= hi + 1 (an integer below 2^24, as a double).
  FK_HOST_DEVICE double cdf(double b) const {
    double f = 0.0;
    const int components = MaxK == 1 ? 1 : K;  // a constant for single components: no loop left
    for (int k = 0; k < components; ++k) f = dadd(f, dmul(weight[k], logistic_edge_cdf(b, mu[k], t[k])));
    return logistic_count(b, f, window);
  }

  FK_HOST_DEVICE uint32_t cdf_at(int64_t b) const { return to_count(cdf(static_cast<double>(b))); }

  // The b in [lo, hi] with C(b) <= slot < C(b + 1) (slot below the escape),
  // with C(b) and C(b + 1) (the interval to advance by). Starts from the
  // heaviest component's inverse CDF (usually right, so two evaluations), then
  // gallops and bisects: the guess only steers the search, the answer is exact,
  // so an approximate log in the guess cannot matter.
  struct Found {
    int64_t symbol;
    uint32_t start, end;
  };

  FK_HOST_DEVICE Found search(uint32_t slot) const {
    Bracket br{static_cast<int64_t>(window.lo), static_cast<int64_t>(window.hi) + 1, 0, to_count(window.escape)};
    // logit((slot + 1/2) / 2^p), without a division; only a guess, so rough logs do.
    const float below_slot = static_cast<float>(slot) + 0.5f;
    const float above_slot = static_cast<float>(window.escape + 1.0) - below_slot;
    const double logit = rough_log(below_slot) - rough_log(above_slot);
    double guess = guess_mu + logit * guess_scale + 0.5;
    // Termination for every input: a NaN guess (which no valid argument produces, but a guess
    // must never decide termination) fails both tests below, so the first test is negated and
    // NaN goes to lo. Then lo <= g <= hi, the bracket [below, above] lies in [lo, hi + 1], which
    // is less than 2^33 wide (the window is within the int32 symbols), so each gallop doubles
    // its step at most 33 times before leaving it, and the bisection halves it at most 33 times.
    guess = !(guess >= window.lo) ? window.lo : (guess > window.hi ? window.hi : guess);
    const int64_t g = static_cast<int64_t>(floor(guess));
    // C(g) and C(g + 1) are independent: evaluated side by side, they overlap
    // (and usually are the answer: g + 1 <= hi + 1, so both are in range).
    double pair[2];
#pragma omp simd
    for (int k = 0; k < 2; ++k) pair[k] = cdf(static_cast<double>(g + k));
    const uint32_t at_g = to_count(pair[0]), after_g = to_count(pair[1]);
    if (at_g <= slot && slot < after_g) return {g, at_g, after_g};
    if (at_g > slot) {  // below g: gallop down from g
      br.above = g;
      br.at_above = at_g;
      for (int64_t step = 1; br.above - step > br.below && !probe(br, br.above - step, slot); step *= 2) {
      }
    } else {  // above g + 1: gallop up from g + 1
      br.below = g + 1;
      br.at_below = after_g;
      for (int64_t step = 1; br.below + step < br.above && probe(br, br.below + step, slot); step *= 2) {
      }
    }
    while (br.above - br.below > 1) probe(br, br.below + (br.above - br.below) / 2, slot);
    return {br.below, br.at_below, br.at_above};
  }

  // C(below) = at_below <= slot < at_above = C(above).
  struct Bracket {
    int64_t below, above;
    uint32_t at_below, at_above;
  };

  // Narrows the bracket with C(b); true when C(b) <= slot.
  FK_HOST_DEVICE bool probe(Bracket& br, int64_t b, uint32_t slot) const {
    const uint32_t c = cdf_at(b);
    const bool low = c <= slot;
    if (low) {
      br.below = b;
      br.at_below = c;
    } else {
      br.above = b;
      br.at_above = c;
    }
    return low;
  }
};

// The interval of symbol s under the model; s outside [lo, hi] gets the
// escape interval (and is then pushed raw, see push_logistic_interval).
struct LogisticInterval {
  uint32_t start, freq;
  bool escaped;
};

// From C(s) and C(s + 1).
FK_HOST_DEVICE LogisticInterval logistic_interval(double s, double start, double end, const LogisticWindow& w) {
  const bool inside = s >= w.lo && s <= w.hi;
  return {to_count(inside ? start : w.escape), to_count(inside ? end - start : 1.0), !inside};
}

template <int MaxK>
FK_HOST_DEVICE LogisticInterval interval_of(const LogisticModel<MaxK>& model, double s) {
  return logistic_interval(s, model.cdf(s), model.cdf(s + 1.0), model.window);
}

FK_HOST_DEVICE void push_logistic_interval(Lane& lane, const LogisticInterval& iv, int64_t s, int precision) {
  if (iv.escaped) {
    const uint32_t raw = static_cast<uint32_t>(static_cast<int32_t>(s));
    lane.push(raw & 0xFFFFu, 1, kEscapePrecision);
    lane.push(raw >> 16, 1, kEscapePrecision);
  }
  lane.push(iv.start, iv.freq, precision);
}

template <int MaxK>
FK_HOST_DEVICE int64_t pop_logistic_symbol(Lane& lane, const LogisticModel<MaxK>& model, int precision) {
  const uint32_t slot = lane.peek(precision);
  const uint32_t escape = to_count(model.window.escape);
  if (slot >= escape) {
    lane.advance(escape, 1, precision);
    const uint32_t high = lane.peek(kEscapePrecision);
    lane.advance(high, 1, kEscapePrecision);
    const uint32_t low = lane.peek(kEscapePrecision);
    lane.advance(low, 1, kEscapePrecision);
    return static_cast<int32_t>((high << 16) | low);
  }
  const auto found = model.search(slot);
  lane.advance(found.start, found.end - found.start, precision);
  return found.symbol;
}

// ---------------------------------------------------------------------------
// Quantizing float probabilities (reference.quantize_pdf). Entries are taken
// as float32 v_i. Fixed-point weights q_i = floor(v_i * (2^shift / max v)) in
// float32 arithmetic (IEEE, so every device agrees; 8 lanes per AVX2
// instruction), or floor(det_exp(l_i - max l) * 2^shift) for logits; prefix sums
// Q_i in integers (any summation order gives the same value); and
// C(i) = i + floor(Q_i (2^p - K) / Q_K): every symbol gets at least 1 and
// C(K) = 2^p exactly. One symbol's interval needs only Q_s and q_s.

FK_HOST_DEVICE float fmul_rn(float a, float b) {
#ifdef __CUDA_ARCH__
  return __fmul_rn(a, b);
#else
  return a * b;
#endif
}
FK_HOST_DEVICE float fdiv_rn(float a, float b) {
#ifdef __CUDA_ARCH__
  return __fdiv_rn(a, b);
#else
  return a / b;
#endif
}

// Bits of the weights: q_i <= 2^shift + 1, so that K of them sum below 2^31
// (int32 accumulators) and Q * (2^p - K) stays below 2^63.
FK_HOST_DEVICE int quantize_shift(int64_t K) {
  int bits = 0;
  while ((int64_t(1) << bits) < K) ++bits;
  return 30 - bits < 23 ? 30 - bits : 23;
}

struct QuantizedRow {
  float top;    // the row's maximum (as float32)
  float scale;  // 2^shift / top (probabilities)
  double unit;  // 2^shift (logits)
  bool logits;
  int64_t spare;  // 2^p - K

  // Validates the row (no NaN or +inf; probabilities >= 0 with one > 0; logits
  // not all -inf) and prepares the weights.
  template <typename T>
  FK_HOST_DEVICE bool init(const T* in, int64_t K, bool is_logits, int precision) {
    float m = -INFINITY;
    bool bad = false;
    for (int64_t i = 0; i < K; ++i) {
      const float v = static_cast<float>(in[i]);
      bad |= (v != v) | (v == INFINITY) | (!is_logits & (v < 0.0f));
      m = v > m ? v : m;
    }
    return finish(m, bad, K, is_logits, precision);
  }

  FK_HOST_DEVICE bool finish(float m, bool bad, int64_t K, bool is_logits, int precision) {
    top = m;
    logits = is_logits;
    spare = (int64_t(1) << precision) - K;
    unit = pow2(static_cast<double>(quantize_shift(K)));
    scale = logits ? 1.0f : fdiv_rn(static_cast<float>(unit), top);
    // A row whose largest probability is below 2^23 / FLT_MAX (about 2.5e-32) has no finite float32
    // scale: its weights would be inf (and their conversion to integers undefined). Refused, like a
    // row with no positive entry, rather than quantized into a table that is not a CDF.
    return !bad && top > (logits ? -INFINITY : 0.0f) && (logits || scale < INFINITY);
  }

  FK_HOST_DEVICE int64_t weight(float v) const {
    if (logits) return static_cast<int64_t>(floor(dmul(det_exp(dsub(v, static_cast<double>(top))), unit)));
    return static_cast<int64_t>(fmul_rn(v, scale));  // >= 0: truncation is the floor
  }

  // C(i) from the prefix sum Q_i and the total Q_K.
  FK_HOST_DEVICE int64_t cumulative(int64_t i, int64_t prefix, int64_t total) const {
    return i + prefix * spare / total;
  }

  // C(i) <= slot, without a division: Q_i (2^p - K) < (slot - i + 1) Q_K (both sides < 2^63).
  FK_HOST_DEVICE bool cumulative_at_most(int64_t i, int64_t prefix, int64_t total, uint32_t slot) const {
    const int64_t room = static_cast<int64_t>(slot) - i + 1;
    return room > 0 && prefix * spare < room * total;
  }
};

// The interval of symbol s of a row of probabilities (the same as quantize_row's table).
template <typename T>
FK_HOST_DEVICE void interval_of(const QuantizedRow& row, const T* in, int64_t s, int64_t prefix, int64_t total,
                                uint32_t* start, uint32_t* freq) {
  const int64_t lo = row.cumulative(s, prefix, total);
  const int64_t hi = row.cumulative(s + 1, prefix + row.weight(static_cast<float>(in[s])), total);
  *start = static_cast<uint32_t>(lo);
  *freq = static_cast<uint32_t>(hi - lo);
}

// The whole table of one row (quantize_pdf).
template <typename T>
FK_HOST_DEVICE bool quantize_row(const T* in, int64_t K, bool logits, int precision, int32_t* cdf) {
  QuantizedRow row;
  if (!row.init(in, K, logits, precision)) return false;
  int64_t total = 0;
  for (int64_t i = 0; i < K; ++i) total += row.weight(static_cast<float>(in[i]));
  int64_t prefix = 0;
  cdf[0] = 0;
  for (int64_t i = 0; i < K; ++i) {
    prefix += row.weight(static_cast<float>(in[i]));
    cdf[i + 1] = static_cast<int32_t>(row.cumulative(i + 1, prefix, total));
  }
  return true;
}

}  // namespace rans
}  // namespace flowkernels
