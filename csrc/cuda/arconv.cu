// CUDA inverse of the autoregressive convolution: one launch sweeps every
// anti-diagonal.
//
// A block owns one image and walks its anti-diagonals d = 0 .. H + W - 2 in
// order; within a diagonal its threads take (pixel, output channel) items:
//
//   phase 1: r[pixel][c_out] = y - bias - sum over non-centre taps and c_in of W x
//            (the sources lie on earlier diagonals, already final)
//   phase 2: x[pixel][c_out] = sum_{c_in <= c_out} L^-1[c_out][c_in] r[pixel][c_in]
//
// with a block barrier after each phase, so the whole solve is one kernel
// launch with 2 (H + W - 1) barriers and no launch per diagonal or channel.
// Threads of one pixel read the same x values (broadcast) and consecutive
// weights [tap][c_in][c_out] (coalesced). The residuals live in a global
// scratch of min(H, W) pixels x C per image, the longest diagonal.
//
// The reverse mask is solved as the forward one on the flipped image: reads
// and writes go through flipped indices, the plan (csrc/arconv.cpp) holds the
// flipped weight.
#include "../arconv.h"

#include <ATen/Dispatch.h>
#include <ATen/cuda/CUDAContext.h>
#include <ATen/ops/empty.h>
#include <ATen/ops/empty_like.h>
#include <ATen/ops/from_blob.h>
#include <c10/cuda/CUDAGuard.h>
#include <torch/library.h>

#include <algorithm>

namespace flowkernels {
namespace {

constexpr int kThreads = 256;

struct Geometry {
  int64_t C, H, W, p, taps;
  int64_t diagonal;  // pixels on the longest anti-diagonal: min(H, W)
  bool reverse;
  // Offset inside one image [C, H, W] of canonical (c, i, j).
  __device__ __forceinline__ int64_t at(int64_t c, int64_t i, int64_t j) const {
    if (reverse) c = C - 1 - c, i = H - 1 - i, j = W - 1 - j;
    return (c * H + i) * W + j;
  }
};

template <typename T>
__global__ void ar_conv2d_inverse_kernel(const T* __restrict__ y, T* __restrict__ x,
                                         T* __restrict__ scratch, const T* __restrict__ plan,
                                         Geometry g) {
  const int64_t C = g.C;
  const int64_t image = static_cast<int64_t>(blockIdx.x) * C * g.H * g.W;
  const T* __restrict__ yb = y + image;
  T* __restrict__ xb = x + image;
  T* __restrict__ r = scratch + static_cast<int64_t>(blockIdx.x) * g.diagonal * C;
  const T* __restrict__ tap_weights = plan;
  const T* __restrict__ centre_inverse = plan + g.taps * C * C;
  const T* __restrict__ bias = centre_inverse + C * C;

  for (int64_t d = 0; d < g.H + g.W - 1; ++d) {
    const int64_t i_first = d - (g.W - 1) > 0 ? d - (g.W - 1) : 0;
    const int64_t i_last = d < g.H - 1 ? d : g.H - 1;
    const int64_t items = (i_last - i_first + 1) * C;

    for (int64_t item = threadIdx.x; item < items; item += blockDim.x) {
      const int64_t q = item / C, co = item % C;
      const int64_t i = i_first + q, j = d - i;
      T acc = yb[g.at(co, i, j)] - bias[co];
      for (int64_t t = 0; t < g.taps; ++t) {
        const int64_t si = i + ar_conv_tap_dy(t, g.p), sj = j + ar_conv_tap_dx(t, g.p);
        if (si < 0 || sj < 0) continue;  // zero padding
        const T* __restrict__ w = tap_weights + t * C * C + co;
        for (int64_t ci = 0; ci < C; ++ci) acc -= w[ci * C] * xb[g.at(ci, si, sj)];
      }
      r[q * C + co] = acc;
    }
    __syncthreads();

    for (int64_t item = threadIdx.x; item < items; item += blockDim.x) {
      const int64_t q = item / C, co = item % C;
      const int64_t i = i_first + q, j = d - i;
      const T* __restrict__ row = centre_inverse + co * C;
      T value = 0;
      for (int64_t ci = 0; ci <= co; ++ci) value += row[ci] * r[q * C + ci];
      xb[g.at(co, i, j)] = value;
    }
    __syncthreads();  // diagonal d is final before d + 1 reads it (and r is reused)
  }
}

at::Tensor ar_conv2d_inverse_cuda(const at::Tensor& y_in, const at::Tensor& weight,
                                  const std::optional<at::Tensor>& bias, bool reverse) {
  const char* op = "ar_conv2d_inverse";
  check_ar_conv_args(op, "y", y_in, weight, bias, c10::DeviceType::CUDA);
  const c10::cuda::CUDAGuard guard(y_in.device());
  ArConvPlan plan = make_ar_conv_plan(op, weight, bias, reverse);
  const at::Tensor y = y_in.contiguous();
  at::Tensor x = at::empty_like(y);
  const int64_t B = y.size(0), C = y.size(1), H = y.size(2), W = y.size(3);
  if (y.numel() == 0) return x;
  TORCH_CHECK(B <= INT32_MAX, "flowkernels.", op, ": at most 2^31 - 1 images per call, got ", B);

  // One blocking copy of the plan (a few KB), converted to the kernel's dtype.
  const at::Tensor plan_values =
      at::from_blob(plan.values.data(), {static_cast<int64_t>(plan.values.size())}, at::kDouble)
          .to(y.device(), y.scalar_type());
  at::Tensor scratch = at::empty({B, std::min(H, W), C}, y.options());
  const Geometry g{C, H, W, plan.pad, plan.taps, std::min(H, W), reverse};
  AT_DISPATCH_FLOATING_TYPES(y.scalar_type(), "ar_conv2d_inverse_cuda", [&] {
    ar_conv2d_inverse_kernel<scalar_t>
        <<<static_cast<unsigned int>(B), kThreads, 0, at::cuda::getCurrentCUDAStream()>>>(
            y.const_data_ptr<scalar_t>(), x.mutable_data_ptr<scalar_t>(),
            scratch.mutable_data_ptr<scalar_t>(), plan_values.const_data_ptr<scalar_t>(), g);
    C10_CUDA_KERNEL_LAUNCH_CHECK();
  });
  check_solution_finite(op, y, x);
  return x;
}

}  // namespace

TORCH_LIBRARY_IMPL(flowkernels, CUDA, m) { m.impl("ar_conv2d_inverse", &ar_conv2d_inverse_cuda); }

}  // namespace flowkernels
