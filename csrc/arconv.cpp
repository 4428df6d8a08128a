// Device-independent parts of the arconv family: argument checks, the mask,
// the host-side plan of the inverse, and ar_conv2d itself, which is a masked
// torch convolution registered as CompositeImplicitAutograd (so it uses
// oneDNN / cuDNN, and autograd and tracing come from the ops it is built of).
#include "arconv.h"
#include "conv_fp32.h"

#include <ATen/ATen.h>
#include <torch/library.h>

#include <cmath>

namespace flowkernels {

int64_t check_ar_conv_args(const char* op, const char* input, const at::Tensor& image,
                           const at::Tensor& weight, const std::optional<at::Tensor>& bias,
                           std::optional<c10::DeviceType> device) {
  check_floating(op, input, image);
  if (device) check_device(op, input, image, *device);
  TORCH_CHECK(image.dim() == 4, "flowkernels.", op, ": argument '", input,
              "' must be a 4-D image batch [B, C, H, W], got shape ", shape_str(image.sizes()));
  check_same_dtype(op, "weight", weight, image, input);
  check_same_device(op, "weight", weight, image, input);
  const int64_t C = image.size(1);
  TORCH_CHECK(weight.dim() == 4 && weight.size(0) == C && weight.size(1) == C &&
                  weight.size(2) == weight.size(3),
              "flowkernels.", op, ": argument 'weight' must have shape [C, C, k, k] with C = ", C,
              " (the channels of '", input, "'), got ", shape_str(weight.sizes()));
  const int64_t k = weight.size(2);
  TORCH_CHECK(k % 2 == 1, "flowkernels.", op,
              ": argument 'weight' must have an odd kernel size k (the mask is defined about a "
              "centre tap), got k = ",
              k);
  if (bias) {
    check_same_dtype(op, "bias", *bias, image, input);
    check_same_device(op, "bias", *bias, image, input);
    check_shape(op, "bias", *bias, {C}, "[C]");
  }
  return k;
}

at::Tensor ar_conv2d_mask(int64_t channels, int64_t kernel_size, bool reverse,
                          const at::TensorOptions& options) {
  const int64_t p = kernel_size / 2;
  const auto index = at::arange(kernel_size, options.dtype(at::kLong));
  const auto kept = reverse ? index.ge(p) : index.le(p);  // rows (and columns) of the quadrant
  const auto centre_line = index.eq(p);
  const auto quadrant = kept.unsqueeze(1).logical_and(kept.unsqueeze(0));
  const auto centre = centre_line.unsqueeze(1).logical_and(centre_line.unsqueeze(0));
  const auto ones = at::ones({channels, channels}, options.dtype(at::kBool));
  // [c_out, c_in]: forward keeps c_in <= c_out (tril), reverse c_in >= c_out (triu).
  const auto triangle = (reverse ? ones.triu() : ones.tril()).view({channels, channels, 1, 1});
  const auto mask =
      quadrant.logical_and(centre.logical_not()).logical_or(centre.logical_and(triangle));
  return mask.expand({channels, channels, kernel_size, kernel_size}).to(options.dtype());
}

ArConvPlan make_ar_conv_plan(const char* op, const at::Tensor& weight,
                             const std::optional<at::Tensor>& bias, bool reverse) {
  ArConvPlan plan;
  const int64_t C = weight.size(0), k = weight.size(2), p = k / 2;
  plan.channels = C;
  plan.kernel_size = k;
  plan.pad = p;
  plan.taps = ar_conv_num_taps(p);

  at::Tensor w = weight.detach().to(at::kCPU, at::kDouble).contiguous();
  const auto original = w.accessor<double, 4>();
  for (int64_t c = 0; c < C; ++c) {
    const double d = original[c][c][p][p];
    TORCH_CHECK_VALUE(std::isfinite(d) && d != 0.0, "flowkernels.", op,
                      ": the convolution is not invertible: diagonal entry weight[", c, ", ", c,
                      ", ", p, ", ", p, "] = ", d, " (it must be finite and nonzero)");
  }
  if (reverse) w = w.flip({0, 1, 2, 3});  // canonical orientation: the forward mask
  w = w.contiguous();
  const auto W = w.accessor<double, 4>();

  plan.values.assign(plan.bias_offset() + C, 0.0);
  double* tap_weights = plan.values.data() + plan.tap_weights_offset();
  for (int64_t t = 0; t < plan.taps; ++t) {
    const int64_t ty = ar_conv_tap_dy(t, p) + p, tx = ar_conv_tap_dx(t, p) + p;
    for (int64_t ci = 0; ci < C; ++ci)
      for (int64_t co = 0; co < C; ++co) tap_weights[(t * C + ci) * C + co] = W[co][ci][ty][tx];
  }

  // Inverse of the lower-triangular centre block L[co][ci] = W[co][ci][p][p]
  // (ci <= co), column by column with forward substitution in float64.
  double* inverse = plan.values.data() + plan.centre_inverse_offset();
  for (int64_t col = 0; col < C; ++col) {
    for (int64_t row = col; row < C; ++row) {
      double sum = row == col ? 1.0 : 0.0;
      for (int64_t m = col; m < row; ++m) sum -= W[row][m][p][p] * inverse[m * C + col];
      const double value = sum / W[row][row][p][p];
      TORCH_CHECK_VALUE(std::isfinite(value), "flowkernels.", op,
                        ": the convolution is numerically singular: the inverse of the centre "
                        "tap's triangular channel block overflows");
      inverse[row * C + col] = value;
    }
  }

  if (bias) {
    at::Tensor b = bias->detach().to(at::kCPU, at::kDouble);
    if (reverse) b = b.flip({0});
    b = b.contiguous();
    std::copy(b.const_data_ptr<double>(), b.const_data_ptr<double>() + C,
              plan.values.begin() + plan.bias_offset());
  }
  return plan;
}

void check_solution_finite(const char* op, const at::Tensor& y, const at::Tensor& x) {
  if (x.numel() == 0 || at::isfinite(x).all().item<bool>() || !at::isfinite(y).all().item<bool>()) return;
  TORCH_CHECK_VALUE(false, "flowkernels.", op, ": the solution overflows ", x.scalar_type(),
                    " (the convolution is numerically singular: a diagonal entry weight[c, c, k/2, k/2] is tiny "
                    "next to the rest); use float64 or a better-conditioned weight");
}

namespace {

at::Tensor ar_conv2d(const at::Tensor& x, const at::Tensor& weight,
                     const std::optional<at::Tensor>& bias, bool reverse) {
  const int64_t k = check_ar_conv_args("ar_conv2d", "x", x, weight, bias);
  const at::Tensor mask = ar_conv2d_mask(weight.size(0), k, reverse, weight.options());
  return conv2d_fp32(x, weight * mask, bias, /*padding=*/k / 2);  // no TF32: the inverse must undo it
}

}  // namespace

TORCH_LIBRARY_IMPL(flowkernels, CompositeImplicitAutograd, m) { m.impl("ar_conv2d", &ar_conv2d); }

}  // namespace flowkernels
