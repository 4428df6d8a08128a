// CUDA kernels of the coupling family. One thread per element (row of the
// mixture), grid-stride loops with 64-bit indices, launched on the current
// stream under a device guard. The per-element arithmetic is the same code
// the CPU runs (coupling.h); only the exp/log/expm1 implementations differ,
// and round_ste / integer_coupling use no transcendental at all, so their
// outputs are bit-identical to the CPU's.
#include "../coupling.h"

#include <ATen/Dispatch.h>
#include <ATen/cuda/CUDAContext.h>
#include <ATen/ops/empty.h>
#include <ATen/ops/empty_like.h>
#include <c10/cuda/CUDAGuard.h>
#include <torch/library.h>

#include <algorithm>

namespace flowkernels {
namespace {

struct CudaMath {
  static __device__ __forceinline__ float exp(float x) { return ::expf(x); }
  static __device__ __forceinline__ float log(float x) { return ::logf(x); }
  static __device__ __forceinline__ float expm1(float x) { return ::expm1f(x); }
  static __device__ __forceinline__ double exp(double x) { return ::exp(x); }
  static __device__ __forceinline__ double log(double x) { return ::log(x); }
  static __device__ __forceinline__ double expm1(double x) { return ::expm1(x); }
};

constexpr int kThreads = 256;

inline unsigned int blocks_for(int64_t n) {
  const int64_t blocks = (n + kThreads - 1) / kThreads;
  return static_cast<unsigned int>(std::min<int64_t>(blocks, 1 << 20));  // grid-stride covers the rest
}

#define FK_GRID_STRIDE_LOOP(i, n)                                                      \
  for (int64_t i = static_cast<int64_t>(blockIdx.x) * blockDim.x + threadIdx.x; i < (n); \
       i += static_cast<int64_t>(blockDim.x) * gridDim.x)

template <typename T>
__global__ void round_kernel(const T* __restrict__ x, T* __restrict__ y, int64_t n) {
  FK_GRID_STRIDE_LOOP(i, n) { y[i] = round_half_even(x[i]); }
}

template <typename T>
__global__ void shift_kernel(const T* __restrict__ x, const T* __restrict__ t, T* __restrict__ y,
                             int64_t n, bool inverse, T scale) {
  FK_GRID_STRIDE_LOOP(i, n) { y[i] = integer_shift(x[i], t[i], inverse, scale); }
}

at::Tensor round_ste_cuda(const at::Tensor& x_in) {
  check_floating("round_ste", "x", x_in);
  check_device("round_ste", "x", x_in, c10::DeviceType::CUDA);
  const c10::cuda::CUDAGuard guard(x_in.device());
  const at::Tensor x = x_in.contiguous();
  at::Tensor y = at::empty_like(x);
  const int64_t n = x.numel();
  if (n == 0) return y;
  AT_DISPATCH_FLOATING_TYPES(x.scalar_type(), "round_ste_cuda", [&] {
    round_kernel<scalar_t><<<blocks_for(n), kThreads, 0, at::cuda::getCurrentCUDAStream()>>>(
        x.const_data_ptr<scalar_t>(), y.mutable_data_ptr<scalar_t>(), n);
    C10_CUDA_KERNEL_LAUNCH_CHECK();
  });
  return y;
}

at::Tensor integer_coupling_cuda(const at::Tensor& x_in, const at::Tensor& t_in, bool inverse,
                                 double scale) {
  const char* op = "integer_coupling";
  check_integer_coupling_args(op, c10::DeviceType::CUDA, x_in, t_in, scale);
  const c10::cuda::CUDAGuard guard(x_in.device());
  const at::Tensor x = x_in.contiguous();
  const at::Tensor t = t_in.contiguous();
  at::Tensor y = at::empty_like(x);
  const int64_t n = x.numel();
  if (n == 0) return y;
  AT_DISPATCH_FLOATING_TYPES(x.scalar_type(), "integer_coupling_cuda", [&] {
    shift_kernel<scalar_t><<<blocks_for(n), kThreads, 0, at::cuda::getCurrentCUDAStream()>>>(
        x.const_data_ptr<scalar_t>(), t.const_data_ptr<scalar_t>(), y.mutable_data_ptr<scalar_t>(),
        n, inverse, static_cast<scalar_t>(scale));
    C10_CUDA_KERNEL_LAUNCH_CHECK();
  });
  return y;
}

// ---------------------------------------------------------------------------
// Discretized logistic mixture: one thread per row, online log-sum-exp over
// the K components so nothing of size K is stored per thread.

template <typename T>
struct OnlineLogSumExp {
  T max = -INFINITY;
  T sum = 0;
  // A NaN v fails every comparison: it goes to the second branch and makes sum NaN, so the
  // result is NaN as on the CPU (whose two-pass log-sum-exp propagates it) and in torch.
  __device__ __forceinline__ void add(T v) {
    if (v > max) {
      sum = sum * CudaMath::exp(max - v) + T(1);
      max = v;
    } else if (!(v <= -INFINITY)) {
      sum += CudaMath::exp(v - max);
    }
  }
  __device__ __forceinline__ T value() const {
    return max == -INFINITY && sum == T(0) ? max : max + CudaMath::log(sum);
  }
};

template <typename T>
__global__ void logistic_forward_kernel(const T* __restrict__ x, const T* __restrict__ mu,
                                        const T* __restrict__ log_scale,
                                        const T* __restrict__ logit_pi, T* __restrict__ out,
                                        int64_t rows, int64_t K, T bin_width,
                                        BinEdges<T> edges) {
  FK_GRID_STRIDE_LOOP(row, rows) {
    const T xv = x[row];
    OnlineLogSumExp<T> joint, logits;
    for (int64_t k = 0; k < K; ++k) {
      const int64_t j = row * K + k;
      T lp = logistic_bin_logp<CudaMath, false, T>(xv, mu[j], log_scale[j], bin_width, edges,
                                                nullptr, nullptr);
      if (logit_pi != nullptr) {
        lp += logit_pi[j];
        logits.add(logit_pi[j]);
      }
      joint.add(lp);
    }
    out[row] = logit_pi != nullptr ? joint.value() - logits.value() : joint.value();
  }
}

template <typename T>
__global__ void logistic_backward_kernel(const T* __restrict__ grad, const T* __restrict__ x,
                                         const T* __restrict__ mu,
                                         const T* __restrict__ log_scale,
                                         const T* __restrict__ logit_pi, T* __restrict__ grad_mu,
                                         T* __restrict__ grad_log_scale,
                                         T* __restrict__ grad_logit_pi, int64_t rows, int64_t K,
                                         T bin_width, BinEdges<T> edges) {
  FK_GRID_STRIDE_LOOP(row, rows) {
    const T xv = x[row];
    const T g = grad[row];
    T dmu, dls;
    if (logit_pi == nullptr) {
      logistic_bin_logp<CudaMath, true, T>(xv, mu[row], log_scale[row], bin_width, edges, &dmu, &dls);
      grad_mu[row] = g * dmu;
      grad_log_scale[row] = g * dls;
      continue;
    }
    // Pass 1: normalisers of the joint and of the logits. Pass 2: gradients,
    // recomputing each component (cheaper than storing K values per thread).
    OnlineLogSumExp<T> joint, logits;
    for (int64_t k = 0; k < K; ++k) {
      const int64_t j = row * K + k;
      const T lp = logistic_bin_logp<CudaMath, false, T>(xv, mu[j], log_scale[j], bin_width, edges,
                                                      nullptr, nullptr);
      joint.add(lp + logit_pi[j]);
      logits.add(logit_pi[j]);
    }
    const T joint_lse = joint.value(), logit_lse = logits.value();
    for (int64_t k = 0; k < K; ++k) {
      const int64_t j = row * K + k;
      const T lp = logistic_bin_logp<CudaMath, true, T>(xv, mu[j], log_scale[j], bin_width, edges,
                                                     &dmu, &dls);
      const T g_comp = g * CudaMath::exp(lp + logit_pi[j] - joint_lse);
      grad_mu[j] = g_comp * dmu;
      grad_log_scale[j] = g_comp * dls;
      grad_logit_pi[j] = g_comp - g * CudaMath::exp(logit_pi[j] - logit_lse);
    }
  }
}

at::Tensor discretized_logistic_logp_cuda(const at::Tensor& x_in, const at::Tensor& mu_in,
                                          const at::Tensor& log_scale_in,
                                          const std::optional<at::Tensor>& logit_pi_in,
                                          double bin_width, std::optional<double> lower,
                                          std::optional<double> upper) {
  const auto shape = check_logistic_args("discretized_logistic_logp", c10::DeviceType::CUDA, x_in,
                                         mu_in, log_scale_in, logit_pi_in, bin_width);
  const c10::cuda::CUDAGuard guard(x_in.device());
  const at::Tensor x = x_in.contiguous(), mu = mu_in.contiguous(),
                   log_scale = log_scale_in.contiguous();
  const auto logit_pi = contiguous_opt(logit_pi_in);
  at::Tensor out = at::empty_like(x);
  if (shape.rows == 0) return out;
  AT_DISPATCH_FLOATING_TYPES(x.scalar_type(), "discretized_logistic_logp_cuda", [&] {
    logistic_forward_kernel<scalar_t>
        <<<blocks_for(shape.rows), kThreads, 0, at::cuda::getCurrentCUDAStream()>>>(
            x.const_data_ptr<scalar_t>(), mu.const_data_ptr<scalar_t>(),
            log_scale.const_data_ptr<scalar_t>(),
            logit_pi ? logit_pi->const_data_ptr<scalar_t>() : nullptr,
            out.mutable_data_ptr<scalar_t>(), shape.rows, shape.components,
            static_cast<scalar_t>(bin_width), make_bin_edges<scalar_t>(lower, upper));
    C10_CUDA_KERNEL_LAUNCH_CHECK();
  });
  return out;
}

std::tuple<at::Tensor, at::Tensor, at::Tensor> discretized_logistic_logp_backward_cuda(
    const at::Tensor& grad_in, const at::Tensor& x_in, const at::Tensor& mu_in,
    const at::Tensor& log_scale_in, const std::optional<at::Tensor>& logit_pi_in,
    double bin_width, std::optional<double> lower, std::optional<double> upper) {
  const char* op = "discretized_logistic_logp_backward";
  const auto shape = check_logistic_args(op, c10::DeviceType::CUDA, x_in, mu_in, log_scale_in,
                                         logit_pi_in, bin_width, &grad_in);
  const c10::cuda::CUDAGuard guard(x_in.device());
  const at::Tensor grad = grad_in.contiguous(), x = x_in.contiguous(), mu = mu_in.contiguous(),
                   log_scale = log_scale_in.contiguous();
  const auto logit_pi = contiguous_opt(logit_pi_in);
  at::Tensor grad_mu = at::empty_like(mu);
  at::Tensor grad_log_scale = at::empty_like(mu);
  at::Tensor grad_logit_pi = logit_pi ? at::empty_like(mu) : at::empty({0}, mu.options());
  if (shape.rows == 0) return {grad_mu, grad_log_scale, grad_logit_pi};
  AT_DISPATCH_FLOATING_TYPES(x.scalar_type(), "discretized_logistic_logp_backward_cuda", [&] {
    logistic_backward_kernel<scalar_t>
        <<<blocks_for(shape.rows), kThreads, 0, at::cuda::getCurrentCUDAStream()>>>(
            grad.const_data_ptr<scalar_t>(), x.const_data_ptr<scalar_t>(),
            mu.const_data_ptr<scalar_t>(), log_scale.const_data_ptr<scalar_t>(),
            logit_pi ? logit_pi->const_data_ptr<scalar_t>() : nullptr,
            grad_mu.mutable_data_ptr<scalar_t>(), grad_log_scale.mutable_data_ptr<scalar_t>(),
            logit_pi ? grad_logit_pi.mutable_data_ptr<scalar_t>() : nullptr, shape.rows,
            shape.components, static_cast<scalar_t>(bin_width),
            make_bin_edges<scalar_t>(lower, upper));
    C10_CUDA_KERNEL_LAUNCH_CHECK();
  });
  return {grad_mu, grad_log_scale, grad_logit_pi};
}

}  // namespace

TORCH_LIBRARY_IMPL(flowkernels, CUDA, m) {
  m.impl("round_ste", &round_ste_cuda);
  m.impl("integer_coupling", &integer_coupling_cuda);
  m.impl("discretized_logistic_logp", &discretized_logistic_logp_cuda);
  m.impl("discretized_logistic_logp_backward", &discretized_logistic_logp_backward_cuda);
}

}  // namespace flowkernels
