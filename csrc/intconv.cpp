// Argument checks of the intconv family, shared by the CPU and CUDA kernels.
#include "intconv.h"

#include <ATen/ATen.h>

#include <limits>

namespace flowkernels {

IntConvShape check_int_conv_args(const at::Tensor& x, const at::Tensor& weight, const at::Tensor& bias,
                                 const at::Tensor& multiplier, const at::Tensor& shift, int64_t padding,
                                 int64_t out_min, int64_t out_max, at::ScalarType out_dtype,
                                 c10::DeviceType device) {
  const char* op = "int_conv2d";
  TORCH_CHECK(x.scalar_type() == at::kShort, "flowkernels.int_conv2d: argument 'x' must be int16, got ",
              x.scalar_type());
  TORCH_CHECK(x.dim() == 4, "flowkernels.int_conv2d: argument 'x' must be [N, I, H, W], got ",
              shape_str(x.sizes()));
  TORCH_CHECK(weight.scalar_type() == at::kChar,
              "flowkernels.int_conv2d: argument 'weight' must be int8, got ", weight.scalar_type());
  TORCH_CHECK(weight.dim() == 4 && weight.size(1) == x.size(1) && weight.size(2) >= 1 && weight.size(3) >= 1,
              "flowkernels.int_conv2d: argument 'weight' must be [O, I, kh, kw] with I = ", x.size(1),
              " (the channels of 'x'), got ", shape_str(weight.sizes()));
  const int64_t O = weight.size(0);
  for (const auto& [name, t] : {std::pair<const char*, const at::Tensor&>{"bias", bias},
                                {"multiplier", multiplier},
                                {"shift", shift}}) {
    TORCH_CHECK(t.scalar_type() == at::kInt, "flowkernels.int_conv2d: argument '", name,
                "' must be int32, got ", t.scalar_type());
    check_shape(op, name, t, {O}, "[O]");
    check_same_device(op, name, t, x);
  }
  check_same_device(op, "weight", weight, x);
  check_device(op, "x", x, device);
  TORCH_CHECK(padding >= 0, "flowkernels.int_conv2d: padding must be >= 0, got ", padding);
  TORCH_CHECK(out_dtype == at::kShort || out_dtype == at::kInt,
              "flowkernels.int_conv2d: out_dtype must be int16 or int32, got ", out_dtype);
  const int64_t type_min = out_dtype == at::kShort ? std::numeric_limits<int16_t>::min()
                                                   : std::numeric_limits<int32_t>::min();
  const int64_t type_max = out_dtype == at::kShort ? std::numeric_limits<int16_t>::max()
                                                   : std::numeric_limits<int32_t>::max();
  TORCH_CHECK(type_min <= out_min && out_min <= out_max && out_max <= type_max,
              "flowkernels.int_conv2d: need ", type_min, " <= out_min <= out_max <= ", type_max, " for ",
              out_dtype, ", got out_min = ", out_min, ", out_max = ", out_max);
  const int64_t kh = weight.size(2), kw = weight.size(3);
  const int64_t Ho = x.size(2) + 2 * padding - kh + 1, Wo = x.size(3) + 2 * padding - kw + 1;
  TORCH_CHECK(Ho >= 0 && Wo >= 0, "flowkernels.int_conv2d: a ", kh, "x", kw, " kernel with padding ", padding,
              " does not fit the ", x.size(2), "x", x.size(3), " input");
  if (O > 0) {
    const auto [shift_min, shift_max] = at::aminmax(shift);
    TORCH_CHECK(shift_min.item<int64_t>() >= 0 && shift_max.item<int64_t>() <= kIntConvMaxShift,
                "flowkernels.int_conv2d: argument 'shift' must be in [0, ", kIntConvMaxShift, "], got values in [",
                shift_min.item<int64_t>(), ", ", shift_max.item<int64_t>(), "]");
    // The worst case of |acc| per output channel over every int16 input.
    const at::Tensor worst = weight.to(at::kLong).abs().sum({1, 2, 3}) * kIntConvInputLimit + bias.to(at::kLong).abs();
    const auto [value, index] = worst.max(0);
    TORCH_CHECK(value.item<int64_t>() <= kIntConvAccLimit,
                "flowkernels.int_conv2d: output channel ", index.item<int64_t>(),
                " could overflow the int32 accumulator (sum |weight| * 2^15 + |bias| = ", value.item<int64_t>(),
                " > 2^31 - 1): use smaller weights or bias");
  }
  return {x.size(0), x.size(1), x.size(2), x.size(3), O, kh, kw, padding, Ho, Wo};
}

}  // namespace flowkernels
