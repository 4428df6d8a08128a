// CPU kernels of the hex family.
//
// hex_conv2d: a direct convolution over the live hexagonal taps only (7 of
// the 9 cells of a 3x3 square at radius 1, 19 of 25 at radius 2), written once
// (cpu/hex_direct.h) over a small SIMD vocabulary and compiled for AVX-512
// (16 lanes, 32 registers) and AVX2 + FMA (8 lanes, 16 registers); see
// csrc/cpu_isa.h for how the path is chosen. On the baseline path, for float64, and
// for layers with more than kDirectMaxChannelProduct = I * O channel pairs, the op
// runs oneDNN's square convolution with the masked kernel (hex_conv2d_dense).
//
// Why the limit: measured against oneDNN's square 3x3 convolution (float32,
// 2 threads, idle machine, AVX-512), the direct kernel wins while the rows of all
// input channels of a tap stay in L1 (16 -> 16 channels on 64x64 images, 64 -> 64
// on 32x32) and loses from about 192 -> 192 on, where oneDNN's channel blocking
// wins. `flowkernels bench hex` prints the ratios on the machine at hand.
//
// hex_conv2d_weight_backward: the weight gradient over the live taps only, by the
// same rule (direct kernel on the AVX-512 and AVX2 paths, oneDNN otherwise); the
// input gradient is a hex_conv2d (csrc/autograd.cpp).
//
// Results differ from oneDNN's, and between the AVX-512 and AVX2 paths, in the
// last bits (another summation order); each path is deterministic and gives the
// same bits whatever the layout of the input, the batch it is part of (forward),
// or the thread count (every output element is summed by one thread in a fixed
// order).
//
// hex_filter_transform: a gather over the flattened filter cells, and its
// backward, a gather followed by a sum over the group axis (deterministic,
// no atomics).
#include "../hex.h"
#include "../cpu_isa.h"

#include <ATen/ATen.h>
#include <ATen/Dispatch.h>
#include <ATen/Parallel.h>
#include <torch/library.h>

#ifdef FK_X86_PATHS
#include <immintrin.h>
#endif

#include <algorithm>
#include <limits>
#include <vector>

namespace flowkernels {
namespace {

constexpr int64_t kDirectMaxChannelProduct = 8192;  // in_channels * out_channels

// Live taps of a radius-R filter: their offsets, and their cell in the k x k square.
struct Taps {
  std::vector<int> du, dv, cell;
  explicit Taps(int64_t R) {
    const int64_t k = 2 * R + 1;
    for (int64_t a = -R; a <= R; ++a)
      for (int64_t b = -R; b <= R; ++b)
        if (hex_cell_is_live(a, b, R)) {
          du.push_back(static_cast<int>(a));
          dv.push_back(static_cast<int>(b));
          cell.push_back(static_cast<int>((a + R) * k + (b + R)));
        }
  }
  int64_t size() const { return static_cast<int64_t>(du.size()); }
};

// The input of the direct kernel: for each (image b, row u), the rows of all input
// channels one after another, `channel_stride` floats each: `left` >= R zeros, the
// W pixels, then zeros up to the last column a segment of the blocking can read.
// So every load of the kernel is in bounds and needs no mask; the centre tap's
// loads are aligned (`left` and the strides are whole vectors);
// and the channels a tap walks through sit next to each other (in [B, I, H, W]
// they are a whole plane apart, and planes of 4 KiB multiples, 32x32 and 64x64
// images, put every channel's row in the same L1 set).
struct PaddedRows {
  const float* data;
  int64_t left, channel_stride, row_stride, image_stride;
  // Column 0 (after the left zeros) of channel 0 of row u of image b.
  const float* at(int64_t b, int64_t u) const { return data + b * image_stride + u * row_stride + left; }
};

struct DirectConv {
  PaddedRows rows;
  const float* packed;  // [ceil(O / CB)][taps][I][CB], zero-padded output channels
  const float* bias;    // [O] or nullptr
  float* y;             // [B, O, H, W]
  int64_t B, I, O, H, W;
  const int* du;
  const int* dv;
  int64_t taps;
};

// An image batch stored channel-innermost, [B][H][cols][C] with C padded to whole
// blocks (padding channels are 0): the operands of the direct weight gradient.
// Image column 0 sits at column `left`; columns around the image are 0.
struct ChannelsLast {
  const float* data;
  int64_t C, cols, left;
  // Channel 0 of column v (may be -left..) of the flattened row (b * H + u).
  const float* pixel(int64_t row, int64_t v) const { return data + (row * cols + left + v) * C; }
};

// The direct weight gradient: g [B, O, H, W] and x [B, I, H, W] channels-last, and
// the sums dw [taps][x.C][g.C].
struct WeightGrad {
  ChannelsLast g, x;
  float* dw;
  int64_t H, W;
  const int* du;
  const int* dv;
  int64_t taps;
};

// One register blocking of the direct weight gradient: OV vectors of output
// channels x IB broadcast input channels.
struct WeightGradBlocking {
  int OV, IB;
  int64_t lanes;
  void (*items)(const WeightGrad&, int64_t, int64_t, int64_t, int64_t);
};

// One register blocking of the direct kernel on one path: CB output channels x
// NV vectors of `lanes` columns per item.
struct Blocking {
  int CB, NV;
  int64_t lanes;
  void (*items)(const DirectConv&, int64_t, int64_t);
};

#ifdef FK_X86_PATHS

#pragma GCC push_options
#pragma GCC target("arch=x86-64-v4")
namespace avx512 {
struct Simd {
  using Vec = __m512;
  using Mask = __mmask16;
  static constexpr int64_t kLanes = 16;
  // Lanes l with 0 <= start + l < width.
  static FK_INLINE Mask columns(int64_t start, int64_t width) {
    const int64_t lo = start < 0 ? -start : 0;
    const int64_t hi = width - start < kLanes ? width - start : kLanes;
    if (hi <= lo) return 0;
    const uint32_t upto = hi >= 32 ? 0xffffffffu : ((1u << hi) - 1u);
    return static_cast<Mask>(upto & ~((1u << lo) - 1u));
  }
  static FK_INLINE Vec set1(float v) { return _mm512_set1_ps(v); }
  static FK_INLINE Vec load(const float* p) { return _mm512_loadu_ps(p); }
  static FK_INLINE Vec fmadd(Vec a, Vec b, Vec c) { return _mm512_fmadd_ps(a, b, c); }
  static FK_INLINE void store(float* p, Vec v) { _mm512_storeu_ps(p, v); }
  static FK_INLINE void store(float* p, Mask m, Vec v) { _mm512_mask_storeu_ps(p, m, v); }
};
#include "hex_direct.h"
}  // namespace avx512
#pragma GCC pop_options

#pragma GCC push_options
#pragma GCC target("arch=x86-64-v3")
namespace avx2 {
struct Simd {
  using Vec = __m256;
  using Mask = __m256i;  // lane on: all bits set
  static constexpr int64_t kLanes = 8;
  // Lanes l with 0 <= start + l < width (both fit in int32: checked by the caller).
  static FK_INLINE Mask columns(int64_t start, int64_t width) {
    const __m256i column = _mm256_add_epi32(_mm256_set1_epi32(static_cast<int>(start)),
                                            _mm256_setr_epi32(0, 1, 2, 3, 4, 5, 6, 7));
    return _mm256_and_si256(_mm256_cmpgt_epi32(column, _mm256_set1_epi32(-1)),
                            _mm256_cmpgt_epi32(_mm256_set1_epi32(static_cast<int>(width)), column));
  }
  static FK_INLINE Vec set1(float v) { return _mm256_set1_ps(v); }
  static FK_INLINE Vec load(const float* p) { return _mm256_loadu_ps(p); }
  static FK_INLINE Vec fmadd(Vec a, Vec b, Vec c) { return _mm256_fmadd_ps(a, b, c); }
  static FK_INLINE void store(float* p, Vec v) { _mm256_storeu_ps(p, v); }
  static FK_INLINE void store(float* p, Mask m, Vec v) { _mm256_maskstore_ps(p, m, v); }
};
#include "hex_direct.h"

// dst[v * dst_stride + c] = src[c * src_stride + v] for an 8 x 8 block (8 channels x 8 columns).
void transpose_8x8(const float* src, int64_t src_stride, float* dst, int64_t dst_stride) {
  __m256 r[8], t[8], q[8];
  for (int k = 0; k < 8; ++k) r[k] = _mm256_loadu_ps(src + k * src_stride);
  for (int k = 0; k < 8; k += 2) {
    t[k] = _mm256_unpacklo_ps(r[k], r[k + 1]);
    t[k + 1] = _mm256_unpackhi_ps(r[k], r[k + 1]);
  }
  for (int k = 0; k < 8; k += 4) {
    q[k] = _mm256_shuffle_ps(t[k], t[k + 2], _MM_SHUFFLE(1, 0, 1, 0));
    q[k + 1] = _mm256_shuffle_ps(t[k], t[k + 2], _MM_SHUFFLE(3, 2, 3, 2));
    q[k + 2] = _mm256_shuffle_ps(t[k + 1], t[k + 3], _MM_SHUFFLE(1, 0, 1, 0));
    q[k + 3] = _mm256_shuffle_ps(t[k + 1], t[k + 3], _MM_SHUFFLE(3, 2, 3, 2));
  }
  for (int k = 0; k < 4; ++k) {
    _mm256_storeu_ps(dst + k * dst_stride, _mm256_permute2f128_ps(q[k], q[k + 4], 0x20));
    _mm256_storeu_ps(dst + (k + 4) * dst_stride, _mm256_permute2f128_ps(q[k], q[k + 4], 0x31));
  }
}
}  // namespace avx2
#pragma GCC pop_options

// The blockings of each path, by preference. AVX-512 has 32 registers: 16
// accumulators, NV inputs and a weight. AVX2 has 16: 12 accumulators where the
// shape allows (6 x 2 measured fastest), else 8.
constexpr Blocking kAvx512Blockings[] = {{4, 4, 16, avx512::conv_items<4, 4>},
                                         {8, 2, 16, avx512::conv_items<8, 2>},
                                         {16, 1, 16, avx512::conv_items<16, 1>}};
constexpr Blocking kAvx2Blockings[] = {{6, 2, 8, avx2::conv_items<6, 2>},
                                       {4, 3, 8, avx2::conv_items<4, 3>},
                                       {12, 1, 8, avx2::conv_items<12, 1>},
                                       {4, 2, 8, avx2::conv_items<4, 2>},
                                       {8, 1, 8, avx2::conv_items<8, 1>}};

// The weight gradient's blockings: OV x IB accumulators, OV vectors of g and a broadcast.
constexpr WeightGradBlocking kAvx512WeightGradBlockings[] = {{1, 16, 16, avx512::weight_grad_items<1, 16>},
                                                             {2, 8, 16, avx512::weight_grad_items<2, 8>},
                                                             {1, 12, 16, avx512::weight_grad_items<1, 12>}};
constexpr WeightGradBlocking kAvx2WeightGradBlockings[] = {{2, 6, 8, avx2::weight_grad_items<2, 6>},
                                                           {1, 12, 8, avx2::weight_grad_items<1, 12>}};

#endif  // FK_X86_PATHS

// The weight gradient's blocking that pads the channels least (earlier ones win ties).
template <size_t N>
const WeightGradBlocking& choose_weight_grad_blocking(const WeightGradBlocking (&options)[N], int64_t O,
                                                      int64_t I) {
  const WeightGradBlocking* best = &options[0];
  int64_t least = std::numeric_limits<int64_t>::max();
  for (const WeightGradBlocking& option : options) {
    const int64_t o_block = option.OV * option.lanes;
    const int64_t padded = (O + o_block - 1) / o_block * o_block * ((I + option.IB - 1) / option.IB * option.IB);
    if (padded < least) best = &option, least = padded;
  }
  return *best;
}

// The blocking with the least cost = padded work / register use: output channels
// are rounded up to CB and columns to NV vectors, and fewer accumulators than the
// path's best blocking leave the FMA units waiting on their latency (on AVX2, 8
// accumulators run at about 0.7 of the speed of 12). Earlier blockings win ties.
template <size_t N>
const Blocking& choose_blocking(const Blocking (&options)[N], int64_t O, int64_t W) {
  const Blocking* best = &options[0];
  double best_cost = std::numeric_limits<double>::infinity();
  int most_accumulators = 0;
  for (const Blocking& option : options) most_accumulators = std::max(most_accumulators, option.CB * option.NV);
  for (const Blocking& option : options) {
    const int64_t segment = option.NV * option.lanes;
    const double padded = static_cast<double>((O + option.CB - 1) / option.CB * option.CB) *
                          static_cast<double>((W + segment - 1) / segment * segment);
    const double use = static_cast<double>(option.CB * option.NV) / most_accumulators;
    const double cost = padded / (static_cast<double>(O * W) * use);
    if (cost < best_cost - 1e-9) best = &option, best_cost = cost;
  }
  return *best;
}

// Weights [O, I, k, k] -> [ceil(O / CB)][taps][I][CB] (live taps only; padded channels are 0).
at::Tensor pack_weights(const at::Tensor& weight, const Taps& taps, int64_t CB) {
  const int64_t O = weight.size(0), I = weight.size(1), k = weight.size(2);
  const int64_t blocks = (O + CB - 1) / CB;
  at::Tensor packed = at::zeros({blocks, taps.size(), I, CB}, weight.options());
  const at::Tensor w = weight.contiguous();
  const float* src = w.const_data_ptr<float>();
  float* dst = packed.mutable_data_ptr<float>();
  for (int64_t o = 0; o < O; ++o)
    for (int64_t t = 0; t < taps.size(); ++t)
      for (int64_t i = 0; i < I; ++i)
        dst[((o / CB * taps.size() + t) * I + i) * CB + o % CB] = src[(o * I + i) * k * k + taps.cell[t]];
  return packed;
}

// `floats` rounded up to whole vectors; strides that are multiples of 1 KiB map
// rows that the kernel reads together to the same L1 sets: one more vector breaks
// the pattern.
int64_t unaliased_stride(int64_t floats, int64_t lanes) {
  const int64_t vectors = (floats + lanes - 1) / lanes * lanes;
  return vectors % 256 == 0 ? vectors + lanes : vectors;
}

// x [B, I, H, W] as PaddedRows for radius R, vectors of `lanes` floats, and
// columns read up to `readable` (excluded).
at::Tensor pad_rows(const at::Tensor& x, int64_t R, int64_t lanes, int64_t readable, PaddedRows& rows) {
  const int64_t B = x.size(0), I = x.size(1), H = x.size(2), W = x.size(3);
  const int64_t left = (R + lanes - 1) / lanes * lanes;
  rows.left = left;
  rows.channel_stride = unaliased_stride(left + readable + R, lanes);
  rows.row_stride = unaliased_stride(I * rows.channel_stride, lanes);
  rows.image_stride = H * rows.row_stride;
  at::Tensor padded = at::empty({B * rows.image_stride}, x.options());
  const float* src = x.const_data_ptr<float>();
  float* dst = padded.mutable_data_ptr<float>();
  const int64_t cs = rows.channel_stride, rs = rows.row_stride;
  at::parallel_for(0, B * H, std::max<int64_t>(1, 16384 / std::max<int64_t>(1, rs)), [&](int64_t begin, int64_t end) {
    for (int64_t bu = begin; bu < end; ++bu) {
      const int64_t b = bu / H, u = bu % H;
      float* row = dst + bu * rs;
      for (int64_t c = 0; c < I; ++c) {
        float* out = row + c * cs;
        std::fill(out, out + left, 0.0f);
        std::copy_n(src + ((b * I + c) * H + u) * W, W, out + left);
        std::fill(out + left + W, out + cs, 0.0f);
      }
      std::fill(row + I * cs, row + rs, 0.0f);
    }
  });
  rows.data = padded.const_data_ptr<float>();
  return padded;
}

at::Tensor hex_conv2d_direct(const at::Tensor& x_in, const at::Tensor& weight,
                             const std::optional<at::Tensor>& bias, const Blocking& blocking) {
  const at::Tensor x = x_in.contiguous();
  const int64_t B = x.size(0), I = x.size(1), H = x.size(2), W = x.size(3), O = weight.size(0);
  const int64_t R = weight.size(2) / 2;
  const Taps taps(R);
  at::Tensor y = at::empty({B, O, H, W}, x.options());
  if (y.numel() == 0) return y;
  const int64_t segment = blocking.NV * blocking.lanes;
  const int64_t segments = (W + segment - 1) / segment;
  PaddedRows rows;
  const at::Tensor padded = pad_rows(x, R, blocking.lanes, segments * segment, rows);
  const at::Tensor packed = pack_weights(weight, taps, blocking.CB);
  const at::Tensor b = bias ? bias->contiguous() : at::Tensor();
  const DirectConv p{rows,
                     packed.const_data_ptr<float>(),
                     bias ? b.const_data_ptr<float>() : nullptr,
                     y.mutable_data_ptr<float>(),
                     B, I, O, H, W,
                     taps.du.data(),
                     taps.dv.data(),
                     taps.size()};
  const int64_t items = B * ((O + blocking.CB - 1) / blocking.CB) * H * segments;
  // ~8k multiply-adds (CB x NV vectors each) per task at least.
  const int64_t per_item = std::max<int64_t>(1, taps.size() * I * blocking.CB * blocking.NV);
  const int64_t grain = std::max<int64_t>(1, 8192 / per_item);
  at::parallel_for(0, items, grain, [&](int64_t begin, int64_t end) { blocking.items(p, begin, end); });
  return y;
}

// The direct kernel's blocking for this call on the path in effect, or nullptr
// where the call goes to oneDNN.
const Blocking* direct_blocking(const at::Tensor& x, const at::Tensor& weight) {
#ifdef FK_X86_PATHS
  constexpr int64_t kMaxColumns = std::numeric_limits<int>::max() / 2;  // column masks are int32
  if (x.scalar_type() != at::kFloat || weight.size(0) * weight.size(1) > kDirectMaxChannelProduct ||
      x.size(3) > kMaxColumns || weight.size(2) / 2 > kMaxColumns)
    return nullptr;
  switch (cpu_isa()) {
    case CpuIsa::kAvx512:
      return &choose_blocking(kAvx512Blockings, weight.size(0), x.size(3));
    case CpuIsa::kAvx2:
      return &choose_blocking(kAvx2Blockings, weight.size(0), x.size(3));
    default:
      return nullptr;
  }
#else
  (void)x, (void)weight;
  return nullptr;
#endif
}

at::Tensor hex_conv2d_cpu(const at::Tensor& x, const at::Tensor& weight,
                          const std::optional<at::Tensor>& bias) {
  check_hex_conv_args("hex_conv2d", x, weight, bias, c10::DeviceType::CPU);
  if (const Blocking* blocking = direct_blocking(x, weight))
    return hex_conv2d_direct(x, weight, bias, *blocking);
  return hex_conv2d_dense(x, weight, bias);
}

// ---- weight gradient ----------------------------------------------------------------

// x [B, C, H, W] (contiguous) as ChannelsLast with `pad` zero columns on each side
// and C rounded up to a multiple of `block`; the storage is returned, `out` set.
at::Tensor to_channels_last(const at::Tensor& x, int64_t pad, int64_t block, ChannelsLast& out) {
  const int64_t B = x.size(0), C = x.size(1), H = x.size(2), W = x.size(3);
  out.C = (C + block - 1) / block * block;
  out.cols = W + 2 * pad;
  out.left = pad;
  at::Tensor storage = at::zeros({B * H * out.cols * out.C}, x.options());
  const float* src = x.const_data_ptr<float>();
  float* dst = storage.mutable_data_ptr<float>();
  const int64_t plane = H * W, Cp = out.C, cols = out.cols;
#ifdef FK_X86_PATHS
  const bool simd = cpu_isa() != CpuIsa::kBaseline;  // the AVX-512 path runs the AVX2 transpose too
#else
  const bool simd = false;
#endif
  at::parallel_for(0, B * H, std::max<int64_t>(1, 65536 / std::max<int64_t>(1, C * W)), [&](int64_t begin, int64_t end) {
    for (int64_t row = begin; row < end; ++row) {
      const int64_t b = row / H, u = row % H;
      const float* in = src + b * C * plane + u * W;  // channel c at in + c * plane
      float* o = dst + (row * cols + pad) * Cp;       // column v at o + v * Cp
      int64_t c0 = 0, v0 = 0;
#ifdef FK_X86_PATHS
      if (simd) {
        for (; c0 + 8 <= C; c0 += 8)
          for (int64_t v = 0; v + 8 <= W; v += 8) avx2::transpose_8x8(in + c0 * plane + v, plane, o + v * Cp + c0, Cp);
        v0 = W / 8 * 8;
      }
#endif
      // What the 8 x 8 blocks left: channels from c0 on, and (for the others) columns from v0 on.
      for (int64_t c = 0; c < C; ++c)
        for (int64_t v = c < c0 ? v0 : 0; v < W; ++v) o[v * Cp + c] = in[c * plane + v];
    }
  });
  out.data = storage.const_data_ptr<float>();
  return storage;
}

// The direct weight gradient's blocking on the path in effect, or nullptr (oneDNN):
// float32 layers where the forward runs the direct kernel.
const WeightGradBlocking* direct_weight_grad_blocking(const at::Tensor& x, int64_t O) {
#ifdef FK_X86_PATHS
  if (x.scalar_type() != at::kFloat || O * x.size(1) > kDirectMaxChannelProduct) return nullptr;
  switch (cpu_isa()) {
    case CpuIsa::kAvx512:
      return &choose_weight_grad_blocking(kAvx512WeightGradBlockings, O, x.size(1));
    case CpuIsa::kAvx2:
      return &choose_weight_grad_blocking(kAvx2WeightGradBlockings, O, x.size(1));
    default:
      return nullptr;
  }
#else
  (void)x, (void)O;
  return nullptr;
#endif
}

at::Tensor hex_conv2d_weight_backward_direct(const at::Tensor& grad, const at::Tensor& x, int64_t k,
                                             const WeightGradBlocking& blocking) {
  const int64_t B = x.size(0), I = x.size(1), H = x.size(2), W = x.size(3), O = grad.size(1);
  const int64_t R = k / 2;
  const Taps taps(R);
  const int64_t o_block = blocking.OV * blocking.lanes;
  WeightGrad p{};
  const at::Tensor g_storage = to_channels_last(grad, 0, o_block, p.g);
  const at::Tensor x_storage = to_channels_last(x, R, blocking.IB, p.x);
  at::Tensor dw = at::zeros({taps.size(), p.x.C, p.g.C}, x.options());
  p.dw = dw.mutable_data_ptr<float>();
  p.H = H, p.W = W, p.du = taps.du.data(), p.dv = taps.dv.data(), p.taps = taps.size();
  // The pixels go by chunks of rows whose two operands fit in about 256 KiB (a
  // core's L2), so each item reads them from cache; the items of a chunk are split
  // between the threads, and chunk by chunk each item adds its rows in order.
  const int64_t rows = B * H;
  const int64_t row_bytes = W * (p.g.C + p.x.C) * static_cast<int64_t>(sizeof(float));
  const int64_t chunk = std::max<int64_t>(1, (256 << 10) / std::max<int64_t>(1, row_bytes));
  const int64_t items = taps.size() * (p.g.C / o_block) * (p.x.C / blocking.IB);
  const int64_t per_item = std::max<int64_t>(1, chunk * W * blocking.OV * blocking.IB);
  const int64_t grain = std::max<int64_t>(1, 8192 / per_item);
  for (int64_t r0 = 0; r0 < rows; r0 += chunk) {
    const int64_t r1 = std::min(rows, r0 + chunk);
    at::parallel_for(0, items, grain, [&](int64_t begin, int64_t end) { blocking.items(p, r0, r1, begin, end); });
  }
  // dw [taps][i][o] -> [O, I, k, k], zero at the dead corners.
  at::Tensor out = at::zeros({O, I, k, k}, x.options());
  float* dst = out.mutable_data_ptr<float>();
  const float* sums = dw.const_data_ptr<float>();
  for (int64_t t = 0; t < taps.size(); ++t)
    for (int64_t i = 0; i < I; ++i)
      for (int64_t o = 0; o < O; ++o) dst[(o * I + i) * k * k + taps.cell[t]] = sums[(t * p.x.C + i) * p.g.C + o];
  return out;
}

at::Tensor hex_conv2d_weight_backward_cpu(const at::Tensor& grad, const at::Tensor& x, int64_t kernel_size) {
  check_hex_weight_backward_args(grad, x, kernel_size, c10::DeviceType::CPU);
  if (grad.numel() != 0 && x.numel() != 0)
    if (const WeightGradBlocking* blocking = direct_weight_grad_blocking(x, grad.size(1)))
      return hex_conv2d_weight_backward_direct(grad.contiguous(), x.contiguous(), kernel_size, *blocking);
  return hex_conv2d_weight_backward_dense(grad, x, kernel_size);
}

// ---- filter transform ---------------------------------------------------------

at::Tensor hex_filter_transform_cpu(const at::Tensor& weight_in, const at::Tensor& index_in,
                                    const at::Tensor& inverse_in) {
  const char* op = "hex_filter_transform";
  check_filter_transform_call(op, weight_in, index_in, inverse_in, c10::DeviceType::CPU);
  const at::Tensor weight = weight_in.contiguous(), index = index_in.contiguous();
  const int64_t O = weight.size(0), I = weight.size(1), S = weight.size(2), G = index.size(0);
  at::Tensor out = at::empty({O, G, I, S}, weight.options());
  AT_DISPATCH_FLOATING_TYPES(weight.scalar_type(), "hex_filter_transform_cpu", [&] {
    const scalar_t* w = weight.const_data_ptr<scalar_t>();
    const int64_t* table = index.const_data_ptr<int64_t>();
    scalar_t* dst = out.mutable_data_ptr<scalar_t>();
    at::parallel_for(0, O * G * I, 64, [&](int64_t begin, int64_t end) {
      for (int64_t row = begin; row < end; ++row) {
        const int64_t i = row % I, g = row / I % G, o = row / (I * G);
        const scalar_t* src = w + (o * I + i) * S;
        const int64_t* idx = table + g * S;
        for (int64_t t = 0; t < S; ++t) dst[row * S + t] = idx[t] >= 0 ? src[idx[t]] : scalar_t(0);
      }
    });
  });
  return out;
}

at::Tensor hex_filter_transform_backward_cpu(const at::Tensor& grad_in, const at::Tensor& inverse_in) {
  const char* op = "hex_filter_transform_backward";
  check_filter_transform_args(op, grad_in, 4, inverse_in, "inverse_index", c10::DeviceType::CPU);
  const at::Tensor grad = grad_in.contiguous(), inverse = inverse_in.contiguous();
  const int64_t O = grad.size(0), G = grad.size(1), I = grad.size(2), S = grad.size(3);
  at::Tensor out = at::empty({O, I, S}, grad.options());
  AT_DISPATCH_FLOATING_TYPES(grad.scalar_type(), "hex_filter_transform_backward_cpu", [&] {
    const scalar_t* src = grad.const_data_ptr<scalar_t>();
    const int64_t* table = inverse.const_data_ptr<int64_t>();
    scalar_t* dst = out.mutable_data_ptr<scalar_t>();
    at::parallel_for(0, O * I, 16, [&](int64_t begin, int64_t end) {
      for (int64_t row = begin; row < end; ++row) {
        const int64_t o = row / I, i = row % I;
        for (int64_t s = 0; s < S; ++s) {
          scalar_t sum = 0;  // fixed order over g: deterministic
          for (int64_t g = 0; g < G; ++g) {
            const int64_t t = table[g * S + s];
            if (t >= 0) sum += src[((o * G + g) * I + i) * S + t];
          }
          dst[row * S + s] = sum;
        }
      }
    });
  });
  return out;
}

}  // namespace

TORCH_LIBRARY_IMPL(flowkernels, CPU, m) {
  m.impl("hex_conv2d", &hex_conv2d_cpu);
  m.impl("hex_conv2d_weight_backward", &hex_conv2d_weight_backward_cpu);
  m.impl("hex_filter_transform", &hex_filter_transform_cpu);
  m.impl("hex_filter_transform_backward", &hex_filter_transform_backward_cpu);
}

}  // namespace flowkernels
