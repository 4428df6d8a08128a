// CUDA kernels of the hex family.
//
// hex_conv2d runs as cuDNN's square convolution with the hexagonal mask
// applied to the weight: on a GPU the two zero corners of a 3x3 cost less
// than a hand-written direct kernel would lose to cuDNN's tuned ones.
// The filter transform and its backward are gathers (one thread per output
// value), the backward summing over the group axis in a fixed order: no
// atomics, deterministic. Table entries outside [-1, S) read as zero.
#include "../hex.h"

#include <ATen/Dispatch.h>
#include <ATen/cuda/CUDAContext.h>
#include <ATen/ops/empty.h>
#include <c10/cuda/CUDAGuard.h>
#include <torch/library.h>

#include <algorithm>

namespace flowkernels {
namespace {

constexpr int kThreads = 256;

inline unsigned int blocks_for(int64_t n) {
  return static_cast<unsigned int>(std::min<int64_t>((n + kThreads - 1) / kThreads, 1 << 20));
}

#define FK_HEX_GRID_STRIDE_LOOP(i, n)                                                   \
  for (int64_t i = static_cast<int64_t>(blockIdx.x) * blockDim.x + threadIdx.x; i < (n); \
       i += static_cast<int64_t>(blockDim.x) * gridDim.x)

template <typename T>
__global__ void filter_transform_kernel(const T* __restrict__ weight, const int64_t* __restrict__ index,
                                        T* __restrict__ out, int64_t O, int64_t G, int64_t I, int64_t S) {
  FK_HEX_GRID_STRIDE_LOOP(n, O * G * I * S) {
    const int64_t t = n % S, i = n / S % I, g = n / (S * I) % G, o = n / (S * I * G);
    const int64_t s = index[g * S + t];
    out[n] = (s >= 0 && s < S) ? weight[(o * I + i) * S + s] : T(0);
  }
}

template <typename T>
__global__ void filter_transform_backward_kernel(const T* __restrict__ grad,
                                                 const int64_t* __restrict__ inverse,
                                                 T* __restrict__ out, int64_t O, int64_t G, int64_t I,
                                                 int64_t S) {
  FK_HEX_GRID_STRIDE_LOOP(n, O * I * S) {
    const int64_t s = n % S, i = n / S % I, o = n / (S * I);
    T sum = 0;
    for (int64_t g = 0; g < G; ++g) {
      const int64_t t = inverse[g * S + s];
      if (t >= 0 && t < S) sum += grad[((o * G + g) * I + i) * S + t];
    }
    out[n] = sum;
  }
}

at::Tensor hex_conv2d_cuda(const at::Tensor& x, const at::Tensor& weight,
                           const std::optional<at::Tensor>& bias) {
  check_hex_conv_args("hex_conv2d", x, weight, bias, c10::DeviceType::CUDA);
  const c10::cuda::CUDAGuard guard(x.device());
  return hex_conv2d_dense(x, weight, bias);
}

at::Tensor hex_conv2d_weight_backward_cuda(const at::Tensor& grad, const at::Tensor& x, int64_t kernel_size) {
  check_hex_weight_backward_args(grad, x, kernel_size, c10::DeviceType::CUDA);
  const c10::cuda::CUDAGuard guard(x.device());
  return hex_conv2d_weight_backward_dense(grad, x, kernel_size);
}

at::Tensor hex_filter_transform_cuda(const at::Tensor& weight_in, const at::Tensor& index_in,
                                     const at::Tensor& inverse_in) {
  const char* op = "hex_filter_transform";
  check_filter_transform_call(op, weight_in, index_in, inverse_in, c10::DeviceType::CUDA);
  const c10::cuda::CUDAGuard guard(weight_in.device());
  const at::Tensor weight = weight_in.contiguous(), index = index_in.contiguous();
  const int64_t O = weight.size(0), I = weight.size(1), S = weight.size(2), G = index.size(0);
  at::Tensor out = at::empty({O, G, I, S}, weight.options());
  if (out.numel() == 0) return out;
  AT_DISPATCH_FLOATING_TYPES(weight.scalar_type(), "hex_filter_transform_cuda", [&] {
    filter_transform_kernel<scalar_t>
        <<<blocks_for(out.numel()), kThreads, 0, at::cuda::getCurrentCUDAStream()>>>(
            weight.const_data_ptr<scalar_t>(), index.const_data_ptr<int64_t>(),
            out.mutable_data_ptr<scalar_t>(), O, G, I, S);
    C10_CUDA_KERNEL_LAUNCH_CHECK();
  });
  return out;
}

at::Tensor hex_filter_transform_backward_cuda(const at::Tensor& grad_in, const at::Tensor& inverse_in) {
  const char* op = "hex_filter_transform_backward";
  check_filter_transform_args(op, grad_in, 4, inverse_in, "inverse_index", c10::DeviceType::CUDA);
  const c10::cuda::CUDAGuard guard(grad_in.device());
  const at::Tensor grad = grad_in.contiguous(), inverse = inverse_in.contiguous();
  const int64_t O = grad.size(0), G = grad.size(1), I = grad.size(2), S = grad.size(3);
  at::Tensor out = at::empty({O, I, S}, grad.options());
  if (out.numel() == 0) return out;
  AT_DISPATCH_FLOATING_TYPES(grad.scalar_type(), "hex_filter_transform_backward_cuda", [&] {
    filter_transform_backward_kernel<scalar_t>
        <<<blocks_for(out.numel()), kThreads, 0, at::cuda::getCurrentCUDAStream()>>>(
            grad.const_data_ptr<scalar_t>(), inverse.const_data_ptr<int64_t>(),
            out.mutable_data_ptr<scalar_t>(), O, G, I, S);
    C10_CUDA_KERNEL_LAUNCH_CHECK();
  });
  return out;
}

}  // namespace

TORCH_LIBRARY_IMPL(flowkernels, CUDA, m) {
  m.impl("hex_conv2d", &hex_conv2d_cuda);
  m.impl("hex_conv2d_weight_backward", &hex_conv2d_weight_backward_cuda);
  m.impl("hex_filter_transform", &hex_filter_transform_cuda);
  m.impl("hex_filter_transform_backward", &hex_filter_transform_backward_cuda);
}

}  // namespace flowkernels
