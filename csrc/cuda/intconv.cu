// CUDA kernel of the intconv family (see ../intconv.h for the op's definition).
//
// One thread per output value, its int32 sum over input channels and taps in a
// fixed order; the fixed-point rescaling is the same function as on the CPU
// (int_conv_requantize). Integer arithmetic: the bits equal the CPU kernel's.
#include "../intconv.h"

#include <ATen/ATen.h>
#include <ATen/cuda/CUDAContext.h>
#include <c10/cuda/CUDAGuard.h>
#include <torch/library.h>

#include <algorithm>

namespace flowkernels {
namespace {

constexpr int kThreads = 256;

template <typename Out>
__global__ void int_conv2d_kernel(const int16_t* __restrict__ x, const int8_t* __restrict__ w,
                                  const int32_t* __restrict__ bias, const int32_t* __restrict__ multiplier,
                                  const int32_t* __restrict__ shift, Out* __restrict__ out, IntConvShape s,
                                  int64_t out_min, int64_t out_max) {
  const int64_t total = s.N * s.O * s.Ho * s.Wo;
  for (int64_t index = static_cast<int64_t>(blockIdx.x) * blockDim.x + threadIdx.x; index < total;
       index += static_cast<int64_t>(blockDim.x) * gridDim.x) {
    const int64_t col = index % s.Wo, row = index / s.Wo % s.Ho;
    const int64_t o = index / (s.Wo * s.Ho) % s.O, n = index / (s.Wo * s.Ho * s.O);
    int32_t acc = bias[o];
    for (int64_t i = 0; i < s.I; ++i) {
      const int16_t* plane = x + (n * s.I + i) * s.H * s.W;
      const int8_t* taps = w + (o * s.I + i) * s.kh * s.kw;
      for (int64_t dy = 0; dy < s.kh; ++dy) {
        const int64_t y = row + dy - s.padding;
        if (y < 0 || y >= s.H) continue;
        for (int64_t dx = 0; dx < s.kw; ++dx) {
          const int64_t xx = col + dx - s.padding;
          if (xx < 0 || xx >= s.W) continue;
          acc += static_cast<int32_t>(taps[dy * s.kw + dx]) * static_cast<int32_t>(plane[y * s.W + xx]);
        }
      }
    }
    out[index] = static_cast<Out>(int_conv_requantize(acc, multiplier[o], shift[o], out_min, out_max));
  }
}

at::Tensor int_conv2d_cuda(const at::Tensor& x_in, const at::Tensor& weight_in, const at::Tensor& bias_in,
                           const at::Tensor& multiplier_in, const at::Tensor& shift_in, int64_t padding,
                           int64_t out_min, int64_t out_max, at::ScalarType out_dtype) {
  const IntConvShape s = check_int_conv_args(x_in, weight_in, bias_in, multiplier_in, shift_in, padding, out_min,
                                             out_max, out_dtype, c10::DeviceType::CUDA);
  const c10::cuda::CUDAGuard guard(x_in.device());
  at::Tensor out = at::empty({s.N, s.O, s.Ho, s.Wo}, x_in.options().dtype(out_dtype));
  if (out.numel() == 0) return out;
  const at::Tensor x = x_in.contiguous(), weight = weight_in.contiguous();
  const at::Tensor bias = bias_in.contiguous(), multiplier = multiplier_in.contiguous();
  const at::Tensor shift = shift_in.contiguous();
  const unsigned int blocks =
      static_cast<unsigned int>(std::min<int64_t>((out.numel() + kThreads - 1) / kThreads, 1 << 20));
  const auto stream = at::cuda::getCurrentCUDAStream();
  if (out_dtype == at::kShort) {
    int_conv2d_kernel<int16_t><<<blocks, kThreads, 0, stream>>>(
        x.const_data_ptr<int16_t>(), weight.const_data_ptr<int8_t>(), bias.const_data_ptr<int32_t>(),
        multiplier.const_data_ptr<int32_t>(), shift.const_data_ptr<int32_t>(), out.mutable_data_ptr<int16_t>(), s,
        out_min, out_max);
  } else {
    int_conv2d_kernel<int32_t><<<blocks, kThreads, 0, stream>>>(
        x.const_data_ptr<int16_t>(), weight.const_data_ptr<int8_t>(), bias.const_data_ptr<int32_t>(),
        multiplier.const_data_ptr<int32_t>(), shift.const_data_ptr<int32_t>(), out.mutable_data_ptr<int32_t>(), s,
        out_min, out_max);
  }
  C10_CUDA_KERNEL_LAUNCH_CHECK();
  return out;
}

}  // namespace

TORCH_LIBRARY_IMPL(flowkernels, CUDA, m) { m.impl("int_conv2d", &int_conv2d_cuda); }

}  // namespace flowkernels
