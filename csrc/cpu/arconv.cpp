// CPU inverse of the autoregressive convolution.
//
// The batch is cut into tiles of kLanes images (one SIMD vector: 8 floats or
// 4 doubles under AVX2). A tile is repacked into a zero-padded buffer laid
// out [row][column][channel][lane], so that every step of the solve is a
// vector operation across the tile's images:
//
//   r   = y(pixel) - bias - sum over non-centre taps t, channels ci of W_t[:, ci] x(pixel + t)[ci]
//   x(pixel) = L^-1 r         (L: the lower-triangular centre block, inverted once per call)
//
// Padding p rows above and p columns left of the image holds zeros, which is
// the convolution's zero padding, so the inner loops have no bounds checks.
//
// Order: raster order (row by row) satisfies the quadrant mask's dependencies,
// so a thread that owns whole tiles solves them without waiting for anyone.
// When there are too few tiles to keep every thread busy (small batches),
// the tiles are solved together in wavefront order: the pixels of one
// anti-diagonal depend only on earlier diagonals, so each diagonal is a
// parallel loop over (pixel, tile), H + W - 1 rounds in all.
#include "../arconv.h"
#include "fastmath.h"

#include <ATen/Dispatch.h>
#include <ATen/Parallel.h>
#include <ATen/ops/empty.h>
#include <ATen/ops/empty_like.h>
#include <ATen/ops/zeros.h>
#include <torch/library.h>

#include <algorithm>
#include <vector>

namespace flowkernels {
namespace {

template <typename T>
constexpr int64_t kLanes = 32 / sizeof(T);

// Everything a pixel solve reads, in the kernel's dtype.
template <typename T>
struct Solver {
  int64_t C;                 // channels
  int64_t taps;              // non-centre taps of the quadrant
  const int64_t* tap_shift;  // per tap: offset of its source pixel in the padded buffer, in values
  const T* tap_weights;      // [tap][c_in][c_out]
  const T* centre_inverse;   // [c_out][c_in], lower triangular
  const T* bias;             // [C]
};

// Residuals of CB consecutive output channels co0.. of one pixel: the
// accumulators stay in registers across all taps and input channels.
template <typename T, int CB>
FK_INLINE void residual_block(const Solver<T>& s, const T* __restrict pixel, int64_t co0,
                              T* __restrict r) {
  constexpr int64_t L = kLanes<T>;
  const int64_t C = s.C;
  T acc[CB][L];
  for (int j = 0; j < CB; ++j)
    for (int64_t l = 0; l < L; ++l) acc[j][l] = pixel[(co0 + j) * L + l] - s.bias[co0 + j];
  for (int64_t t = 0; t < s.taps; ++t) {
    const T* __restrict source = pixel + s.tap_shift[t];
    const T* __restrict weights = s.tap_weights + t * C * C + co0;
    for (int64_t ci = 0; ci < C; ++ci) {
      const T* __restrict value = source + ci * L;
      const T* __restrict w = weights + ci * C;
#pragma GCC unroll 8
      for (int j = 0; j < CB; ++j)
#pragma omp simd
        for (int64_t l = 0; l < L; ++l) acc[j][l] -= w[j] * value[l];
    }
  }
  for (int j = 0; j < CB; ++j)
    for (int64_t l = 0; l < L; ++l) r[(co0 + j) * L + l] = acc[j][l];
}

// Solves one pixel of one tile in place: `pixel` holds y on entry and x on exit.
// `r` is scratch of C * kLanes values.
template <typename T>
FK_INLINE void solve_pixel(const Solver<T>& s, T* __restrict pixel, T* __restrict r) {
  constexpr int64_t L = kLanes<T>;
  const int64_t C = s.C;
  int64_t co = 0;
  for (; co + 8 <= C; co += 8) residual_block<T, 8>(s, pixel, co, r);
  if (co + 4 <= C) residual_block<T, 4>(s, pixel, co, r), co += 4;
  if (co + 2 <= C) residual_block<T, 2>(s, pixel, co, r), co += 2;
  if (co < C) residual_block<T, 1>(s, pixel, co, r);
  for (int64_t c = 0; c < C; ++c) {
    T out[L] = {};
    const T* __restrict row = s.centre_inverse + c * C;
    for (int64_t ci = 0; ci <= c; ++ci)
#pragma omp simd
      for (int64_t l = 0; l < L; ++l) out[l] += row[ci] * r[ci * L + l];
    for (int64_t l = 0; l < L; ++l) pixel[c * L + l] = out[l];
  }
}
FK_ISA_CLONES(solve_pixel)

// Geometry of the packed buffer: tiles of [H + p][W + p][C][kLanes].
struct Packing {
  int64_t B, C, H, W, p;
  bool reverse;
  int64_t lanes;
  int64_t padded_width() const { return W + p; }
  int64_t pixel_values() const { return C * lanes; }
  int64_t tile_values() const { return (H + p) * (W + p) * pixel_values(); }
  int64_t pixel_offset(int64_t i, int64_t j) const {
    return ((i + p) * padded_width() + (j + p)) * pixel_values();
  }
  // Flat index in the [B, C, H, W] image of canonical (b, c, i, j).
  int64_t image_index(int64_t b, int64_t c, int64_t i, int64_t j) const {
    if (reverse) c = C - 1 - c, i = H - 1 - i, j = W - 1 - j;
    return ((b * C + c) * H + i) * W + j;
  }
};

// Copies the tile's images into (to_tile) or out of the packed buffer.
template <typename T>
void transfer_tile(const Packing& g, int64_t tile, T* image, T* packed, bool to_tile) {
  const int64_t b0 = tile * g.lanes;
  const int64_t lanes = std::min(g.lanes, g.B - b0);
  for (int64_t l = 0; l < lanes; ++l)
    for (int64_t c = 0; c < g.C; ++c)
      for (int64_t i = 0; i < g.H; ++i)
        for (int64_t j = 0; j < g.W; ++j) {
          T& cell = packed[g.pixel_offset(i, j) + c * g.lanes + l];
          T& pixel = image[g.image_index(b0 + l, c, i, j)];
          if (to_tile)
            cell = pixel;
          else
            pixel = cell;
        }
}

// Whether each thread can own whole tiles (raster order, no synchronisation)
// without leaving threads idle; otherwise the solve goes by wavefront.
bool tiles_keep_threads_busy(int64_t tiles) {
  const int64_t threads = at::get_num_threads();
  return tiles % threads == 0 || tiles >= 4 * threads;
}

template <typename T>
void solve_cpu(const ArConvPlan& plan, const at::Tensor& y, at::Tensor& x, bool reverse) {
  constexpr int64_t L = kLanes<T>;
  const Packing g{y.size(0), y.size(1), y.size(2), y.size(3), plan.pad, reverse, L};
  const int64_t tiles = (g.B + L - 1) / L;

  std::vector<T> values(plan.values.begin(), plan.values.end());
  std::vector<int64_t> tap_shift(plan.taps);
  for (int64_t t = 0; t < plan.taps; ++t)
    tap_shift[t] = (ar_conv_tap_dy(t, g.p) * g.padded_width() + ar_conv_tap_dx(t, g.p)) *
                   g.pixel_values();
  const Solver<T> solver{g.C,
                         plan.taps,
                         tap_shift.data(),
                         values.data() + plan.tap_weights_offset(),
                         values.data() + plan.centre_inverse_offset(),
                         values.data() + plan.bias_offset()};

  at::Tensor packed = at::zeros({tiles, g.tile_values()}, y.options());
  T* packed_base = packed.mutable_data_ptr<T>();
  T* y_data = const_cast<T*>(y.const_data_ptr<T>());  // only read (to_tile = true)
  T* x_data = x.mutable_data_ptr<T>();
  auto tile_buffer = [&](int64_t tile) { return packed_base + tile * g.tile_values(); };

  if (tiles_keep_threads_busy(tiles)) {
    at::parallel_for(0, tiles, 1, [&](int64_t begin, int64_t end) {
      std::vector<T> r(g.pixel_values());
      for (int64_t tile = begin; tile < end; ++tile) {
        T* buffer = tile_buffer(tile);
        transfer_tile(g, tile, y_data, buffer, true);
        for (int64_t i = 0; i < g.H; ++i)
          for (int64_t j = 0; j < g.W; ++j)
            FK_ISA_CALL(solve_pixel, solver, buffer + g.pixel_offset(i, j), r.data());
        transfer_tile(g, tile, x_data, buffer, false);
      }
    });
    return;
  }

  at::parallel_for(0, tiles, 1, [&](int64_t begin, int64_t end) {
    for (int64_t tile = begin; tile < end; ++tile) transfer_tile(g, tile, y_data, tile_buffer(tile), true);
  });
  // About 32k multiply-adds per parallel task, so a task outlasts waking a thread.
  const int64_t work_per_item = std::max<int64_t>(1, g.C * g.C * (plan.taps + 1) * L);
  const int64_t grain = std::max<int64_t>(1, 32768 / work_per_item);
  for (int64_t d = 0; d < g.H + g.W - 1; ++d) {
    const int64_t i_first = std::max<int64_t>(0, d - (g.W - 1));
    const int64_t i_last = std::min<int64_t>(d, g.H - 1);
    const int64_t items = (i_last - i_first + 1) * tiles;
    at::parallel_for(0, items, grain, [&](int64_t begin, int64_t end) {
      std::vector<T> r(g.pixel_values());
      for (int64_t item = begin; item < end; ++item) {
        const int64_t i = i_first + item / tiles, tile = item % tiles;
        FK_ISA_CALL(solve_pixel, solver, tile_buffer(tile) + g.pixel_offset(i, d - i), r.data());
      }
    });
  }
  at::parallel_for(0, tiles, 1, [&](int64_t begin, int64_t end) {
    for (int64_t tile = begin; tile < end; ++tile) transfer_tile(g, tile, x_data, tile_buffer(tile), false);
  });
}

at::Tensor ar_conv2d_inverse_cpu(const at::Tensor& y_in, const at::Tensor& weight,
                                 const std::optional<at::Tensor>& bias, bool reverse) {
  const char* op = "ar_conv2d_inverse";
  check_ar_conv_args(op, "y", y_in, weight, bias, c10::DeviceType::CPU);
  const ArConvPlan plan = make_ar_conv_plan(op, weight, bias, reverse);
  const at::Tensor y = y_in.contiguous();
  at::Tensor x = at::empty_like(y);
  if (y.numel() == 0) return x;
  AT_DISPATCH_FLOATING_TYPES(y.scalar_type(), "ar_conv2d_inverse_cpu",
                             [&] { solve_cpu<scalar_t>(plan, y, x, reverse); });
  check_solution_finite(op, y, x);
  return x;
}

}  // namespace

TORCH_LIBRARY_IMPL(flowkernels, CPU, m) { m.impl("ar_conv2d_inverse", &ar_conv2d_inverse_cpu); }

}  // namespace flowkernels
