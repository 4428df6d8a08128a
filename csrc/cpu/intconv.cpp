// CPU kernel of the intconv family (see ../intconv.h for the op's definition).
//
// A direct convolution on x86's int16 multiply-add (pmaddwd: 2 products summed per
// int32 lane), one copy per instruction-set path (cpu/intconv_direct.h): SSE2 on
// every x86-64 CPU, AVX2, AVX-512 BW. The input is first copied into zero-padded
// planes of channel pairs and the weight into broadcastable pairs (IntConvPlan);
// then each work item keeps a block of output channels x positions in registers.
// All arithmetic is integer and exact, so every path, blocking and thread count
// gives the same bits.
#include "../intconv.h"
#include "../cpu_isa.h"

#include <ATen/ATen.h>
#include <ATen/Parallel.h>
#include <torch/library.h>

#ifdef FK_X86_PATHS
#include <immintrin.h>
#endif

#include <algorithm>
#include <cstring>
#include <vector>

namespace flowkernels {
namespace {

// Output channels per item on every path: 6 x 2 accumulators, 2 inputs and a broadcast fit
// the 16 vector registers of SSE2 and AVX2 (measured on Zen 3, 2 threads, 64 -> 64 channels on
// 16x16: 1x1 conv 1.51 -> 1.32 ms from 4 to 6 channels, 3x3 unchanged).
constexpr int kBlock = 6;
constexpr int kVectors = 2;

struct IntConvPlan {
  const int16_t* x;       // [N][pairs][plane][2], zero-padded
  const int32_t* w;       // [blocks][pairs][taps][kBlock] int16 pairs
  const int32_t* bias;    // [O]
  const int32_t* multiplier;
  const int32_t* shift;
  const int64_t* offsets;  // [taps]: dy * Wp + dx
  int16_t* out16;          // exactly one of out16, out32 is set
  int32_t* out32;
  int64_t out_min, out_max;
  int64_t O, pairs, taps, blocks, segments;
  int64_t Wp, Ho, Wo, plane;
};

// The fixed-point rescaling of ../intconv.h (int_conv_requantize) on every lane: scalar, for the
// paths without 64-bit signed multiplies and comparisons (SSE2, other architectures).
template <int Lanes, class Vec, class Store, class Load>
FK_INLINE Vec requantize_lanes(Vec acc, int32_t m, int32_t s, int64_t lo, int64_t hi, Store store, Load load) {
  alignas(64) int32_t lanes[Lanes];
  store(lanes, acc);
  for (int i = 0; i < Lanes; ++i) lanes[i] = static_cast<int32_t>(int_conv_requantize(lanes[i], m, s, lo, hi));
  return load(lanes);
}

#ifdef FK_X86_PATHS

#pragma GCC push_options
#pragma GCC target("arch=x86-64-v3")
// int_conv_requantize on 8 int32 lanes with AVX2. AVX2 has no arithmetic 64-bit shift, so the
// product x (|x| <= 2^62) is biased by 2^62 to be non-negative, shifted logically and unbiased:
// floor((x + half) / 2^s) = ((x + 2^62 + half) >> s) - 2^(62 - s), exact for s <= 62.
FK_INLINE __m256i requantize8(__m256i acc, int32_t m, int32_t s, int64_t lo, int64_t hi) {
  const __m256i multiplier = _mm256_set1_epi32(m);
  const int64_t half = s > 0 ? (int64_t{1} << (s - 1)) : 0;
  const __m256i bias = _mm256_set1_epi64x((int64_t{1} << 62) + half);
  const __m256i unbias = _mm256_set1_epi64x(int64_t{1} << (62 - s));
  const __m128i count = _mm_cvtsi32_si128(s);
  const __m256i low = _mm256_set1_epi64x(lo), high = _mm256_set1_epi64x(hi);
  const auto rescale = [&](__m256i product) FK_LAMBDA_INLINE {
    __m256i v = _mm256_sub_epi64(_mm256_srl_epi64(_mm256_add_epi64(product, bias), count), unbias);
    v = _mm256_blendv_epi8(v, low, _mm256_cmpgt_epi64(low, v));
    return _mm256_blendv_epi8(v, high, _mm256_cmpgt_epi64(v, high));
  };
  const __m256i even = rescale(_mm256_mul_epi32(acc, multiplier));  // lanes 0, 2, 4, 6 (signed 32 x 32 -> 64)
  const __m256i odd = rescale(_mm256_mul_epi32(_mm256_srli_epi64(acc, 32), multiplier));
  return _mm256_blend_epi32(even, _mm256_slli_epi64(odd, 32), 0xAA);  // values fit int32 after the clamp
}
#pragma GCC pop_options

#pragma GCC push_options
#pragma GCC target("arch=x86-64-v4")
namespace avx512 {
struct Simd {
  using Vec = __m512i;
  static constexpr int64_t kLanes = 16;
  static FK_INLINE Vec set1(int32_t v) { return _mm512_set1_epi32(v); }
  static FK_INLINE Vec load(const int16_t* p) { return _mm512_loadu_si512(p); }
  static FK_INLINE Vec madd(Vec a, Vec b) { return _mm512_madd_epi16(a, b); }
  static FK_INLINE Vec add(Vec a, Vec b) { return _mm512_add_epi32(a, b); }
  static FK_INLINE void store(int32_t* p, Vec v) { _mm512_storeu_si512(p, v); }
  // The AVX2 rescaling on both halves: one code path for the arithmetic on every wide path.
  static FK_INLINE Vec requantize(Vec acc, int32_t m, int32_t s, int64_t lo, int64_t hi) {
    const __m256i first = requantize8(_mm512_castsi512_si256(acc), m, s, lo, hi);
    const __m256i second = requantize8(_mm512_extracti64x4_epi64(acc, 1), m, s, lo, hi);
    return _mm512_inserti64x4(_mm512_castsi256_si512(first), second, 1);
  }
};
#include "intconv_direct.h"
}  // namespace avx512
#pragma GCC pop_options

#pragma GCC push_options
#pragma GCC target("arch=x86-64-v3")
namespace avx2 {
struct Simd {
  using Vec = __m256i;
  static constexpr int64_t kLanes = 8;
  static FK_INLINE Vec set1(int32_t v) { return _mm256_set1_epi32(v); }
  static FK_INLINE Vec load(const int16_t* p) { return _mm256_loadu_si256(reinterpret_cast<const __m256i*>(p)); }
  static FK_INLINE Vec madd(Vec a, Vec b) { return _mm256_madd_epi16(a, b); }
  static FK_INLINE Vec add(Vec a, Vec b) { return _mm256_add_epi32(a, b); }
  static FK_INLINE void store(int32_t* p, Vec v) { _mm256_storeu_si256(reinterpret_cast<__m256i*>(p), v); }
  static FK_INLINE Vec requantize(Vec acc, int32_t m, int32_t s, int64_t lo, int64_t hi) {
    return requantize8(acc, m, s, lo, hi);
  }
};
#include "intconv_direct.h"
}  // namespace avx2
#pragma GCC pop_options

namespace baseline {  // SSE2: part of every x86-64 CPU
struct Simd {
  using Vec = __m128i;
  static constexpr int64_t kLanes = 4;
  static FK_INLINE Vec set1(int32_t v) { return _mm_set1_epi32(v); }
  static FK_INLINE Vec load(const int16_t* p) { return _mm_loadu_si128(reinterpret_cast<const __m128i*>(p)); }
  static FK_INLINE Vec madd(Vec a, Vec b) { return _mm_madd_epi16(a, b); }
  static FK_INLINE Vec add(Vec a, Vec b) { return _mm_add_epi32(a, b); }
  static FK_INLINE void store(int32_t* p, Vec v) { _mm_storeu_si128(reinterpret_cast<__m128i*>(p), v); }
  static FK_INLINE Vec requantize(Vec acc, int32_t m, int32_t s, int64_t lo, int64_t hi) {
    return requantize_lanes<4>(acc, m, s, lo, hi, store, [](const int32_t* p) {
      return _mm_loadu_si128(reinterpret_cast<const __m128i*>(p));
    });
  }
};
#include "intconv_direct.h"
}  // namespace baseline

#else

namespace baseline {  // other architectures: one int32 lane, pmaddwd's arithmetic spelled out
struct Simd {
  struct Vec {
    int32_t v;
  };
  static constexpr int64_t kLanes = 1;
  static FK_INLINE Vec set1(int32_t v) { return {v}; }
  static FK_INLINE Vec load(const int16_t* p) {
    return {static_cast<int32_t>(static_cast<uint16_t>(p[0])) | (static_cast<int32_t>(p[1]) * 65536)};
  }
  static FK_INLINE Vec madd(Vec a, Vec b) {
    const auto lo = [](int32_t v) { return static_cast<int32_t>(static_cast<int16_t>(v & 0xffff)); };
    const auto hi = [](int32_t v) { return static_cast<int32_t>(static_cast<int16_t>(v >> 16)); };
    return {lo(a.v) * lo(b.v) + hi(a.v) * hi(b.v)};
  }
  static FK_INLINE Vec add(Vec a, Vec b) { return {a.v + b.v}; }
  static FK_INLINE void store(int32_t* p, Vec v) { p[0] = v.v; }
  static FK_INLINE Vec requantize(Vec acc, int32_t m, int32_t s, int64_t lo, int64_t hi) {
    return {static_cast<int32_t>(int_conv_requantize(acc.v, m, s, lo, hi))};
  }
};
#include "intconv_direct.h"
}  // namespace baseline

#endif

int64_t lanes_on(CpuIsa isa) {
#ifdef FK_X86_PATHS
  return isa == CpuIsa::kAvx512 ? avx512::kLanes : isa == CpuIsa::kAvx2 ? avx2::kLanes : baseline::kLanes;
#else
  (void)isa;
  return baseline::kLanes;
#endif
}

void run_items(CpuIsa isa, const IntConvPlan& plan, int64_t begin, int64_t end) {
#ifdef FK_X86_PATHS
  if (isa == CpuIsa::kAvx512) return avx512::int_conv_items<kBlock, kVectors>(plan, begin, end);
  if (isa == CpuIsa::kAvx2) return avx2::int_conv_items<kBlock, kVectors>(plan, begin, end);
#endif
  (void)isa;
  baseline::int_conv_items<kBlock, kVectors>(plan, begin, end);
}

// Pairs of int16 as the int32 that pmaddwd reads: low half first (little-endian).
inline int32_t pack_pair(int16_t first, int16_t second) {
  return static_cast<int32_t>(static_cast<uint32_t>(static_cast<uint16_t>(first)) |
                              (static_cast<uint32_t>(static_cast<uint16_t>(second)) << 16));
}

at::Tensor int_conv2d_cpu(const at::Tensor& x_in, const at::Tensor& weight_in, const at::Tensor& bias_in,
                          const at::Tensor& multiplier_in, const at::Tensor& shift_in, int64_t padding,
                          int64_t out_min, int64_t out_max, at::ScalarType out_dtype) {
  const IntConvShape s = check_int_conv_args(x_in, weight_in, bias_in, multiplier_in, shift_in, padding, out_min,
                                             out_max, out_dtype, c10::DeviceType::CPU);
  at::Tensor out = at::empty({s.N, s.O, s.Ho, s.Wo}, x_in.options().dtype(out_dtype));
  if (out.numel() == 0) return out;
  const at::Tensor x = x_in.contiguous(), weight = weight_in.contiguous();
  const at::Tensor bias = bias_in.contiguous(), multiplier = multiplier_in.contiguous();
  const at::Tensor shift = shift_in.contiguous();

  // One path for the whole call: the plan's layout depends on its vector width.
  const CpuIsa isa = cpu_isa();
  const int64_t lanes = lanes_on(isa), segment = kVectors * lanes;
  const int64_t Hp = s.H + 2 * s.padding, Wp = s.W + 2 * s.padding;
  const int64_t pairs = (s.I + 1) / 2, taps = s.kh * s.kw;
  const int64_t positions = s.Ho * Wp;
  const int64_t segments = (positions + segment - 1) / segment;
  // Every load of the last segment at the last tap stays inside the plane.
  const int64_t plane = std::max(Hp * Wp, segments * segment + (s.kh - 1) * Wp + (s.kw - 1));
  const int64_t blocks = (s.O + kBlock - 1) / kBlock;

  // Padded planes of channel pairs (an odd last channel is paired with zeros).
  std::vector<int16_t> packed_x(static_cast<size_t>(s.N * pairs * plane * 2), 0);
  const int16_t* xp = x.const_data_ptr<int16_t>();
  at::parallel_for(0, s.N * pairs, 1, [&](int64_t begin, int64_t end) {
    for (int64_t item = begin; item < end; ++item) {
      const int64_t n = item / pairs, c = item % pairs;
      int16_t* dst = packed_x.data() + item * plane * 2;
      const int16_t* first = xp + (n * s.I + 2 * c) * s.H * s.W;
      const int16_t* second = 2 * c + 1 < s.I ? first + s.H * s.W : nullptr;
      for (int64_t y = 0; y < s.H; ++y) {
        int16_t* __restrict row = dst + ((y + s.padding) * Wp + s.padding) * 2;
        const int16_t* __restrict a = first + y * s.W;
        if (second != nullptr) {  // an interleaving loop, which the compiler vectorises (punpcklwd)
          const int16_t* __restrict b = second + y * s.W;
          for (int64_t col = 0; col < s.W; ++col) row[2 * col] = a[col], row[2 * col + 1] = b[col];
        } else {
          for (int64_t col = 0; col < s.W; ++col) row[2 * col] = a[col];
        }
      }
    }
  });
  // Weight pairs, [blocks][pairs][taps][kBlock]; channels past O or I are zero.
  std::vector<int32_t> packed_w(static_cast<size_t>(blocks * pairs * taps * kBlock), 0);
  const int8_t* wp = weight.const_data_ptr<int8_t>();
  for (int64_t o = 0; o < s.O; ++o)
    for (int64_t c = 0; c < pairs; ++c)
      for (int64_t t = 0; t < taps; ++t) {
        const int16_t first = wp[(o * s.I + 2 * c) * taps + t];
        const int16_t second = 2 * c + 1 < s.I ? wp[(o * s.I + 2 * c + 1) * taps + t] : 0;
        packed_w[((o / kBlock * pairs + c) * taps + t) * kBlock + o % kBlock] = pack_pair(first, second);
      }
  std::vector<int64_t> offsets(static_cast<size_t>(taps));
  for (int64_t dy = 0; dy < s.kh; ++dy)
    for (int64_t dx = 0; dx < s.kw; ++dx) offsets[dy * s.kw + dx] = dy * Wp + dx;

  IntConvPlan plan{};
  plan.x = packed_x.data();
  plan.w = packed_w.data();
  plan.bias = bias.const_data_ptr<int32_t>();
  plan.multiplier = multiplier.const_data_ptr<int32_t>();
  plan.shift = shift.const_data_ptr<int32_t>();
  plan.offsets = offsets.data();
  if (out_dtype == at::kShort)
    plan.out16 = out.mutable_data_ptr<int16_t>();
  else
    plan.out32 = out.mutable_data_ptr<int32_t>();
  plan.out_min = out_min;
  plan.out_max = out_max;
  plan.O = s.O;
  plan.pairs = pairs;
  plan.taps = taps;
  plan.blocks = blocks;
  plan.segments = segments;
  plan.Wp = Wp;
  plan.Ho = s.Ho;
  plan.Wo = s.Wo;
  plan.plane = plane;
  // An item is kBlock x segment outputs over pairs x taps pairs of products.
  const int64_t work = kBlock * segment * pairs * taps;
  const int64_t grain = std::max<int64_t>(1, (int64_t{1} << 16) / std::max<int64_t>(1, work));
  at::parallel_for(0, s.N * blocks * segments, grain,
                   [&](int64_t begin, int64_t end) { run_items(isa, plan, begin, end); });
  return out;
}

}  // namespace

TORCH_LIBRARY_IMPL(flowkernels, CPU, m) { m.impl("int_conv2d", &int_conv2d_cpu); }

}  // namespace flowkernels
