// The arconv family: autoregressive (masked) convolutions and their inverse.
//
// ar_conv2d(x, W, b, reverse) = conv2d(x, W * M, b, padding = k / 2), where M
// keeps the top-left quadrant of the k x k kernel and, at the centre tap, the
// connections c_in <= c_out; reverse = true flips M in rows, columns and
// channels. Output pixel (i, j) then depends on input pixels (i', j') with
// i' <= i and j' <= j only, and on its own pixel through a lower-triangular
// C x C block: the inverse is a triangular solve, and every pixel on one
// anti-diagonal i + j = d depends on earlier diagonals only (the wavefront).
//
// Both kernels (CPU and CUDA) solve the *canonical* problem, the forward mask.
// The reverse mask is the forward one after flipping rows, columns and
// channels of the image and of the weight, so a reverse solve reads and writes
// the image through flipped indices and uses a flipped plan.
#pragma once

#include "common.h"

#include <ATen/core/Tensor.h>

#include <optional>
#include <vector>

namespace flowkernels {

// Shape, dtype and device checks of ar_conv2d / ar_conv2d_inverse; returns k.
// `input` names the image argument ('x' or 'y') in messages.
int64_t check_ar_conv_args(const char* op, const char* input, const at::Tensor& image,
                           const at::Tensor& weight, const std::optional<at::Tensor>& bias,
                           std::optional<c10::DeviceType> device = std::nullopt);

// The 0/1 mask M [C, C, k, k] in weight's dtype and on its device.
at::Tensor ar_conv2d_mask(int64_t channels, int64_t kernel_size, bool reverse,
                          const at::TensorOptions& options);

// The non-centre taps of the canonical quadrant, in row-major order of the
// (p + 1) x (p + 1) quadrant with its last cell (the centre) left out:
// tap t sits at offset (t / (p + 1) - p, t % (p + 1) - p) from the pixel.
FK_HOST_DEVICE int64_t ar_conv_num_taps(int64_t p) { return (p + 1) * (p + 1) - 1; }
FK_HOST_DEVICE int64_t ar_conv_tap_dy(int64_t t, int64_t p) { return t / (p + 1) - p; }
FK_HOST_DEVICE int64_t ar_conv_tap_dx(int64_t t, int64_t p) { return t % (p + 1) - p; }

// What the solvers need, computed once per call on the host in float64 from
// the (masked, canonically oriented) weight. One flat array, so the CUDA
// solver uploads it in one copy:
//   [0, T C C)           tap weights, [tap][c_in][c_out]
//   [T C C, T C C + C C) inverse of the centre block (lower triangular), [c_out][c_in]
//   [.., + C)            bias (zeros when none)
struct ArConvPlan {
  int64_t channels = 0;
  int64_t kernel_size = 1;
  int64_t pad = 0;
  int64_t taps = 0;
  std::vector<double> values;

  int64_t tap_weights_offset() const { return 0; }
  int64_t centre_inverse_offset() const { return taps * channels * channels; }
  int64_t bias_offset() const { return centre_inverse_offset() + channels * channels; }
};

// Raises a ValueError naming the channel when a diagonal entry
// weight[c, c, k/2, k/2] is zero or not finite (the map is not invertible), or
// when the centre block's inverse overflows.
ArConvPlan make_ar_conv_plan(const char* op, const at::Tensor& weight,
                             const std::optional<at::Tensor>& bias, bool reverse);

// Raises a ValueError when the solution x of finite y is not finite: a diagonal so small (1e-30
// in float32, say) that the solve overflows the working dtype. Quiet NaN or inf out of finite
// data would be garbage; non-finite y passes through as IEEE arithmetic makes it.
void check_solution_finite(const char* op, const at::Tensor& y, const at::Tensor& x);

}  // namespace flowkernels
