// Float convolutions that stay float32 on GPUs whatever torch's TF32 setting.
//
// at::conv2d lets cuDNN use TensorFloat-32 for float32 when torch.backends.cudnn.allow_tf32
// is on (the default): about 1e-3 relative error, which would break the promises of the ops
// built on it (ar_conv2d's inverse undoes it to float32 rounding; hex_conv2d agrees between CPU
// and CUDA to float32 rounding). at::_convolution takes the TF32 switch as an argument, so these
// ops pass false and leave the global setting alone. On the CPU the switch means nothing: the
// results are at::conv2d's. (Gradients of these convolutions go through torch's
// convolution_backward, which follows the global setting.)
#pragma once

#include <ATen/Context.h>
#include <ATen/core/Tensor.h>
#include <ATen/ops/_convolution.h>

#include <optional>

namespace flowkernels {

// conv2d(x, weight, bias, stride 1, zero padding `padding`), float32 without TF32 on CUDA.
inline at::Tensor conv2d_fp32(const at::Tensor& x, const at::Tensor& weight, const std::optional<at::Tensor>& bias,
                              int64_t padding) {
  const auto& context = at::globalContext();
  return at::_convolution(x, weight, bias, /*stride=*/{1, 1}, /*padding=*/{padding, padding}, /*dilation=*/{1, 1},
                          /*transposed=*/false, /*output_padding=*/{0, 0}, /*groups=*/1, context.benchmarkCuDNN(),
                          context.deterministicCuDNN(), context.userEnabledCuDNN(), /*allow_tf32=*/false);
}

}  // namespace flowkernels
