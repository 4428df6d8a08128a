// CPU kernels of the coupling family. Elementwise loops run in parallel over
// chunks (at::parallel_for); inside a chunk they are written so that GCC
// vectorises them (contiguous buffers, branch-free math from fastmath.h), and
// FK_ISA_CLONES compiles them for each instruction-set path (../cpu_isa.h).
#include "../coupling.h"
#include "fastmath.h"

#include <ATen/Dispatch.h>
#include <ATen/Parallel.h>
#include <ATen/TensorIterator.h>  // at::internal::GRAIN_SIZE
#include <ATen/ops/empty.h>
#include <ATen/ops/empty_like.h>
#include <torch/library.h>

#include <algorithm>
#include <vector>

namespace flowkernels {
namespace {

// Elements per parallel task for the elementwise ops: torch's own choice, so a
// task is long enough to pay for waking a thread.
constexpr int64_t kGrain = at::internal::GRAIN_SIZE;
// The mixture costs ~20x an elementwise op per element, so its tasks can be shorter.
constexpr int64_t kMixtureGrain = 2048;

template <typename T>
FK_INLINE void round_span(const T* __restrict x, T* __restrict y, int64_t n) {
  for (int64_t i = 0; i < n; ++i) y[i] = round_half_even(x[i]);
}
FK_ISA_CLONES(round_span)

template <typename T>
FK_INLINE void shift_span(const T* __restrict x, const T* __restrict t, T* __restrict y,
                          int64_t n, bool inverse, T scale) {
  if (inverse) {
    for (int64_t i = 0; i < n; ++i) y[i] = integer_shift(x[i], t[i], true, scale);
  } else {
    for (int64_t i = 0; i < n; ++i) y[i] = integer_shift(x[i], t[i], false, scale);
  }
}
FK_ISA_CLONES(shift_span)

at::Tensor round_ste_cpu(const at::Tensor& x_in) {
  check_floating("round_ste", "x", x_in);
  check_device("round_ste", "x", x_in, c10::DeviceType::CPU);
  const at::Tensor x = x_in.contiguous();
  at::Tensor y = at::empty_like(x);
  AT_DISPATCH_FLOATING_TYPES(x.scalar_type(), "round_ste_cpu", [&] {
    const scalar_t* xp = x.const_data_ptr<scalar_t>();
    scalar_t* yp = y.mutable_data_ptr<scalar_t>();
    at::parallel_for(0, x.numel(), kGrain, [&](int64_t begin, int64_t end) {
      FK_ISA_CALL(round_span, xp + begin, yp + begin, end - begin);
    });
  });
  return y;
}

at::Tensor integer_coupling_cpu(const at::Tensor& x_in, const at::Tensor& t_in, bool inverse,
                                double scale) {
  const char* op = "integer_coupling";
  check_integer_coupling_args(op, c10::DeviceType::CPU, x_in, t_in, scale);
  const at::Tensor x = x_in.contiguous();
  const at::Tensor t = t_in.contiguous();
  at::Tensor y = at::empty_like(x);
  AT_DISPATCH_FLOATING_TYPES(x.scalar_type(), "integer_coupling_cpu", [&] {
    const scalar_t* xp = x.const_data_ptr<scalar_t>();
    const scalar_t* tp = t.const_data_ptr<scalar_t>();
    scalar_t* yp = y.mutable_data_ptr<scalar_t>();
    const auto s = static_cast<scalar_t>(scale);
    at::parallel_for(0, x.numel(), kGrain, [&](int64_t begin, int64_t end) {
      FK_ISA_CALL(shift_span, xp + begin, tp + begin, yp + begin, end - begin, inverse, s);
    });
  });
  return y;
}

// ---------------------------------------------------------------------------
// Discretized logistic mixture.
//
// Rows (elements of x) are processed in blocks of kBlock. The [rows, K]
// parameters of a block are first transposed into [K, kBlock] scratch buffers
// so that the transcendental-heavy loops run over contiguous memory and
// vectorise across rows; the mixture (log-sum-exp over K) is then a second
// vectorised pass over the same buffers.

constexpr int64_t kBlock = 64;

template <typename T>
struct LogisticArgs {
  const T* x;
  const T* mu;
  const T* log_scale;
  const T* logit_pi;  // nullptr: a single component
  int64_t K;
  T bin_width;
  BinEdges<T> edges;
};

template <typename T>
struct BlockScratch {
  explicit BlockScratch(int64_t K)
      : mu(K * kBlock), log_scale(K * kBlock), logit(K * kBlock), logp(K * kBlock),
        dmu(K * kBlock), dlog_scale(K * kBlock), max(kBlock), sum(kBlock), logit_lse(kBlock) {}
  std::vector<T> mu, log_scale, logit, logp, dmu, dlog_scale, max, sum, logit_lse;
};

// Copies rows [r0, r0 + n) of a [rows, K] array into a [K, kBlock] buffer.
template <typename T>
FK_INLINE void gather_block(const T* src, T* dst, int64_t r0, int64_t n, int64_t K) {
  for (int64_t i = 0; i < n; ++i)
    for (int64_t k = 0; k < K; ++k) dst[k * kBlock + i] = src[(r0 + i) * K + k];
}

// lse[i] = log sum_k exp(v[k][i]) for the n rows of a [K, kBlock] buffer.
template <typename T>
FK_INLINE void logsumexp_block(const T* v, int64_t n, int64_t K, T* max, T* sum, T* lse) {
  for (int64_t i = 0; i < n; ++i) max[i] = v[i];
  for (int64_t k = 1; k < K; ++k)
    for (int64_t i = 0; i < n; ++i) max[i] = v[k * kBlock + i] > max[i] ? v[k * kBlock + i] : max[i];
  // An all -inf row has no finite maximum to subtract: subtract 0 and get -inf.
  const T neg_inf = -std::numeric_limits<T>::infinity();
  for (int64_t i = 0; i < n; ++i) max[i] = max[i] == neg_inf ? T(0) : max[i];
  for (int64_t i = 0; i < n; ++i) sum[i] = T(0);
  for (int64_t k = 0; k < K; ++k)
    for (int64_t i = 0; i < n; ++i) sum[i] += CpuFastMath::exp(v[k * kBlock + i] - max[i]);
  for (int64_t i = 0; i < n; ++i) lse[i] = max[i] + CpuFastMath::log(sum[i]);
}

// Fills s.logp[k][i] with log pi_k + log p_k(x_i) (unnormalised logits when
// there is a mixture) and, WithGrad, s.dmu / s.dlog_scale with the partials of
// log p_k. Leaves the log-normaliser of the logits in s.logit_lse.
template <bool WithGrad, typename T>
FK_INLINE void component_logp_block(const LogisticArgs<T>& a, BlockScratch<T>& s, int64_t r0,
                                    int64_t n) {
  const int64_t K = a.K;
  gather_block(a.mu, s.mu.data(), r0, n, K);
  gather_block(a.log_scale, s.log_scale.data(), r0, n, K);
  const T* __restrict x = a.x + r0;
  const T bin_width = a.bin_width;
  const BinEdges<T> edges = a.edges;
  for (int64_t k = 0; k < K; ++k) {
    const T* __restrict mu = s.mu.data() + k * kBlock;
    const T* __restrict ls = s.log_scale.data() + k * kBlock;
    T* __restrict lp = s.logp.data() + k * kBlock;
    T* __restrict dmu = s.dmu.data() + k * kBlock;
    T* __restrict dls = s.dlog_scale.data() + k * kBlock;
#pragma omp simd
    for (int64_t i = 0; i < n; ++i)
      lp[i] = logistic_bin_logp<CpuFastMath, WithGrad>(x[i], mu[i], ls[i], bin_width, edges,
                                                      dmu + i, dls + i);
  }
  if (a.logit_pi == nullptr) return;
  gather_block(a.logit_pi, s.logit.data(), r0, n, K);
  logsumexp_block(s.logit.data(), n, K, s.max.data(), s.sum.data(), s.logit_lse.data());
  for (int64_t j = 0; j < K * kBlock; ++j) s.logp[j] += s.logit[j];
}

template <typename T>
FK_INLINE void logistic_forward_rows(const LogisticArgs<T>& a, T* out, int64_t begin,
                                     int64_t end) {
  BlockScratch<T> s(a.K);
  for (int64_t r0 = begin; r0 < end; r0 += kBlock) {
    const int64_t n = std::min(kBlock, end - r0);
    component_logp_block<false>(a, s, r0, n);
    if (a.logit_pi == nullptr) {
      std::copy(s.logp.begin(), s.logp.begin() + n, out + r0);
      continue;
    }
    logsumexp_block(s.logp.data(), n, a.K, s.max.data(), s.sum.data(), out + r0);
    for (int64_t i = 0; i < n; ++i) out[r0 + i] -= s.logit_lse[i];
  }
}
FK_ISA_CLONES(logistic_forward_rows)

template <typename T>
FK_INLINE void logistic_backward_rows(const LogisticArgs<T>& a, const T* grad, T* grad_mu,
                                      T* grad_log_scale, T* grad_logit_pi, int64_t begin,
                                      int64_t end) {
  BlockScratch<T> s(a.K);
  const int64_t K = a.K;
  for (int64_t r0 = begin; r0 < end; r0 += kBlock) {
    const int64_t n = std::min(kBlock, end - r0);
    component_logp_block<true>(a, s, r0, n);
    if (a.logit_pi == nullptr) {
      for (int64_t i = 0; i < n; ++i) {
        grad_mu[r0 + i] = grad[r0 + i] * s.dmu[i];
        grad_log_scale[r0 + i] = grad[r0 + i] * s.dlog_scale[i];
      }
      continue;
    }
    // Responsibilities exp(log pi_k + log p_k - log p) overwrite logp, the
    // mixture weights exp(logit_k - lse) overwrite logit.
    T* lse = s.sum.data();  // logsumexp_block reads sum before writing lse
    logsumexp_block(s.logp.data(), n, K, s.max.data(), s.sum.data(), lse);
    for (int64_t k = 0; k < K; ++k) {
      T* __restrict resp = s.logp.data() + k * kBlock;
      T* __restrict weight = s.logit.data() + k * kBlock;
      for (int64_t i = 0; i < n; ++i) {
        resp[i] = CpuFastMath::exp(resp[i] - lse[i]);
        weight[i] = CpuFastMath::exp(weight[i] - s.logit_lse[i]);
      }
    }
    for (int64_t i = 0; i < n; ++i) {
      const T g = grad[r0 + i];
      for (int64_t k = 0; k < K; ++k) {
        const int64_t j = k * kBlock + i;
        const T g_comp = g * s.logp[j];
        grad_mu[(r0 + i) * K + k] = g_comp * s.dmu[j];
        grad_log_scale[(r0 + i) * K + k] = g_comp * s.dlog_scale[j];
        grad_logit_pi[(r0 + i) * K + k] = g_comp - g * s.logit[j];
      }
    }
  }
}
FK_ISA_CLONES(logistic_backward_rows)

template <typename T>
LogisticArgs<T> make_args(const at::Tensor& x, const at::Tensor& mu, const at::Tensor& log_scale,
                          const std::optional<at::Tensor>& logit_pi, int64_t K, double bin_width,
                          std::optional<double> lower, std::optional<double> upper) {
  return {x.const_data_ptr<T>(),
          mu.const_data_ptr<T>(),
          log_scale.const_data_ptr<T>(),
          logit_pi ? logit_pi->const_data_ptr<T>() : nullptr,
          K,
          static_cast<T>(bin_width),
          make_bin_edges<T>(lower, upper)};
}

at::Tensor discretized_logistic_logp_cpu(const at::Tensor& x_in, const at::Tensor& mu_in,
                                         const at::Tensor& log_scale_in,
                                         const std::optional<at::Tensor>& logit_pi_in,
                                         double bin_width, std::optional<double> lower,
                                         std::optional<double> upper) {
  const auto shape = check_logistic_args("discretized_logistic_logp", c10::DeviceType::CPU, x_in,
                                         mu_in, log_scale_in, logit_pi_in, bin_width);
  const at::Tensor x = x_in.contiguous(), mu = mu_in.contiguous(),
                   log_scale = log_scale_in.contiguous();
  const auto logit_pi = contiguous_opt(logit_pi_in);
  at::Tensor out = at::empty_like(x);
  AT_DISPATCH_FLOATING_TYPES(x.scalar_type(), "discretized_logistic_logp_cpu", [&] {
    const auto args = make_args<scalar_t>(x, mu, log_scale, logit_pi, shape.components, bin_width,
                                          lower, upper);
    scalar_t* outp = out.mutable_data_ptr<scalar_t>();
    at::parallel_for(0, shape.rows, kMixtureGrain / std::max<int64_t>(shape.components, 1),
                     [&](int64_t begin, int64_t end) {
                       FK_ISA_CALL(logistic_forward_rows, args, outp, begin, end);
                     });
  });
  return out;
}

std::tuple<at::Tensor, at::Tensor, at::Tensor> discretized_logistic_logp_backward_cpu(
    const at::Tensor& grad_in, const at::Tensor& x_in, const at::Tensor& mu_in,
    const at::Tensor& log_scale_in, const std::optional<at::Tensor>& logit_pi_in,
    double bin_width, std::optional<double> lower, std::optional<double> upper) {
  const char* op = "discretized_logistic_logp_backward";
  const auto shape = check_logistic_args(op, c10::DeviceType::CPU, x_in, mu_in, log_scale_in,
                                         logit_pi_in, bin_width, &grad_in);
  const at::Tensor grad = grad_in.contiguous(), x = x_in.contiguous(), mu = mu_in.contiguous(),
                   log_scale = log_scale_in.contiguous();
  const auto logit_pi = contiguous_opt(logit_pi_in);
  at::Tensor grad_mu = at::empty_like(mu);
  at::Tensor grad_log_scale = at::empty_like(mu);
  at::Tensor grad_logit_pi = logit_pi ? at::empty_like(mu) : at::empty({0}, mu.options());
  AT_DISPATCH_FLOATING_TYPES(x.scalar_type(), "discretized_logistic_logp_backward_cpu", [&] {
    const auto args = make_args<scalar_t>(x, mu, log_scale, logit_pi, shape.components, bin_width,
                                          lower, upper);
    const scalar_t* gp = grad.const_data_ptr<scalar_t>();
    scalar_t* gmu = grad_mu.mutable_data_ptr<scalar_t>();
    scalar_t* gls = grad_log_scale.mutable_data_ptr<scalar_t>();
    scalar_t* gpi = logit_pi ? grad_logit_pi.mutable_data_ptr<scalar_t>() : nullptr;
    at::parallel_for(0, shape.rows, kMixtureGrain / std::max<int64_t>(shape.components, 1),
                     [&](int64_t begin, int64_t end) {
                       FK_ISA_CALL(logistic_backward_rows, args, gp, gmu, gls, gpi, begin, end);
                     });
  });
  return {grad_mu, grad_log_scale, grad_logit_pi};
}

}  // namespace

TORCH_LIBRARY_IMPL(flowkernels, CPU, m) {
  m.impl("round_ste", &round_ste_cpu);
  m.impl("integer_coupling", &integer_coupling_cpu);
  m.impl("discretized_logistic_logp", &discretized_logistic_logp_cpu);
  m.impl("discretized_logistic_logp_backward", &discretized_logistic_logp_backward_cpu);
}

}  // namespace flowkernels
