// Device-independent parts of the hex family: argument checks, the mask, and
// the square-convolution formulation that both devices fall back on.
#include "hex.h"
#include "conv_fp32.h"

#include <ATen/ATen.h>

namespace flowkernels {

int64_t check_hex_conv_args(const char* op, const at::Tensor& x, const at::Tensor& weight,
                            const std::optional<at::Tensor>& bias,
                            std::optional<c10::DeviceType> device) {
  check_floating(op, "x", x);
  if (device) check_device(op, "x", x, *device);
  TORCH_CHECK(x.dim() == 4, "flowkernels.", op,
              ": argument 'x' must be a 4-D batch of axial hexagonal images [B, C, H, W], got shape ",
              shape_str(x.sizes()));
  check_same_dtype(op, "weight", weight, x);
  check_same_device(op, "weight", weight, x);
  TORCH_CHECK(weight.dim() == 4 && weight.size(1) == x.size(1) && weight.size(2) == weight.size(3),
              "flowkernels.", op, ": argument 'weight' must have shape [O, I, k, k] with I = ",
              x.size(1), " (the channels of 'x'), got ", shape_str(weight.sizes()));
  const int64_t k = weight.size(2);
  TORCH_CHECK(k % 2 == 1, "flowkernels.", op,
              ": argument 'weight' must have an odd kernel size k = 2R + 1 (a hexagonal filter of "
              "radius R has a centre cell), got k = ",
              k);
  if (bias) {
    check_same_dtype(op, "bias", *bias, x);
    check_same_device(op, "bias", *bias, x);
    check_shape(op, "bias", *bias, {weight.size(0)}, "[O]");
  }
  return k;
}

at::Tensor hex_conv_mask(int64_t kernel_size, const at::TensorOptions& options) {
  const int64_t R = kernel_size / 2;
  const auto offsets = at::arange(-R, R + 1, options.dtype(at::kLong));
  const auto du = offsets.view({kernel_size, 1}), dv = offsets.view({1, kernel_size});
  const auto distance = at::maximum(at::maximum(du.abs(), dv.abs()), (du + dv).abs());
  return distance.le(R).to(options.dtype());
}

at::Tensor hex_conv2d_dense(const at::Tensor& x, const at::Tensor& weight,
                            const std::optional<at::Tensor>& bias) {
  const int64_t k = weight.size(2);
  if (x.numel() == 0) {  // no pixels, or no input channels: the vendor library refuses some of these
    at::Tensor y = at::zeros({x.size(0), weight.size(0), x.size(2), x.size(3)}, x.options());
    return bias ? y.add_(bias->view({1, -1, 1, 1})) : y;
  }
  // Contiguous input: the vendor library picks its algorithm, and so the last bits
  // of the result, by the memory layout; the op's result must not depend on it.
  // no TF32 on CUDA: CPU and CUDA agree to float32 rounding
  return conv2d_fp32(x.contiguous(), weight * hex_conv_mask(k, weight.options()), bias, /*padding=*/k / 2);
}

void check_hex_weight_backward_args(const at::Tensor& grad, const at::Tensor& x, int64_t kernel_size,
                                    c10::DeviceType device) {
  const char* op = "hex_conv2d_weight_backward";
  check_floating(op, "x", x);
  check_device(op, "x", x, device);
  check_same_dtype(op, "grad", grad, x);
  check_same_device(op, "grad", grad, x);
  TORCH_CHECK(x.dim() == 4 && grad.dim() == 4 && grad.size(0) == x.size(0) && grad.size(2) == x.size(2) &&
                  grad.size(3) == x.size(3),
              "flowkernels.", op, ": 'grad' [B, O, H, W] and 'x' [B, I, H, W] must agree in B, H and W, got ",
              shape_str(grad.sizes()), " and ", shape_str(x.sizes()));
  TORCH_CHECK(kernel_size >= 1 && kernel_size % 2 == 1, "flowkernels.", op,
              ": 'kernel_size' must be odd and positive (2R + 1), got ", kernel_size);
}

at::Tensor hex_conv2d_weight_backward_dense(const at::Tensor& grad, const at::Tensor& x, int64_t kernel_size) {
  const int64_t k = kernel_size;
  const at::Tensor mask = hex_conv_mask(k, x.options());
  if (grad.numel() == 0 || x.numel() == 0)
    return at::zeros({grad.size(1), x.size(1), k, k}, x.options());
  // Only the weight's shape matters for the weight gradient.
  const at::Tensor weight = at::zeros({grad.size(1), x.size(1), k, k}, x.options());
  auto grads = at::convolution_backward(
      grad.contiguous(), x.contiguous(), weight, /*bias_sizes=*/std::nullopt, /*stride=*/{1, 1},
      /*padding=*/{k / 2, k / 2}, /*dilation=*/{1, 1}, /*transposed=*/false,
      /*output_padding=*/{0, 0}, /*groups=*/1, /*output_mask=*/{false, true, false});
  return std::get<1>(grads) * mask;
}

void check_filter_transform_args(const char* op, const at::Tensor& values, int64_t values_dim,
                                 const at::Tensor& table, const char* table_name,
                                 std::optional<c10::DeviceType> device) {
  const char* name = values_dim == 3 ? "weight" : "grad";
  check_floating(op, name, values);
  if (device) check_device(op, name, values, *device);
  TORCH_CHECK(values.dim() == values_dim, "flowkernels.", op, ": argument '", name, "' must be ",
              values_dim, "-D (", values_dim == 3 ? "[O, I, S]" : "[O, G, I, S]", "), got shape ",
              shape_str(values.sizes()));
  TORCH_CHECK(table.scalar_type() == at::kLong && table.dim() == 2, "flowkernels.", op,
              ": argument '", table_name, "' must be a 2-D int64 table [G, S], got ",
              table.scalar_type(), " of shape ", shape_str(table.sizes()));
  TORCH_CHECK(table.device() == values.device(), "flowkernels.", op, ": argument '", table_name,
              "' must be on ", values.device(), " like '", name, "', got ", table.device());
  TORCH_CHECK(table.size(1) == values.size(-1), "flowkernels.", op, ": argument '", table_name,
              "' must have S = ", values.size(-1), " columns (the last dim of '", name, "'), got ",
              shape_str(table.sizes()));
  if (values_dim == 4)
    TORCH_CHECK(table.size(0) == values.size(1), "flowkernels.", op, ": argument '", table_name,
                "' must have G = ", values.size(1), " rows (dim 1 of 'grad'), got ",
                shape_str(table.sizes()));
  // Out-of-range entries would read outside the weight: refuse them (one
  // reduction over a table of a few hundred entries). On CUDA that check
  // would synchronise every call; the CUDA kernel reads an out-of-range
  // entry as -1 (zero) instead, never outside the weight.
  if (table.device().is_cpu()) {
    const at::Tensor entries = table.contiguous();
    const int64_t* p = entries.const_data_ptr<int64_t>();
    for (int64_t n = 0; n < entries.numel(); ++n)
      TORCH_CHECK_VALUE(p[n] >= -1 && p[n] < values.size(-1), "flowkernels.", op, ": argument '",
                        table_name, "' has entries outside [-1, ", values.size(-1), "): ", p[n],
                        " at flat position ", n);
  }
}

void check_filter_transform_call(const char* op, const at::Tensor& weight, const at::Tensor& index,
                                 const at::Tensor& inverse_index, c10::DeviceType device) {
  check_filter_transform_args(op, weight, 3, index, "index", device);
  check_filter_transform_args(op, weight, 3, inverse_index, "inverse_index", device);
  TORCH_CHECK(inverse_index.size(0) == index.size(0), "flowkernels.", op,
              ": 'index' and 'inverse_index' must have the same shape, got ", shape_str(index.sizes()),
              " and ", shape_str(inverse_index.sizes()));
}

}  // namespace flowkernels
