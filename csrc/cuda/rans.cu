// CUDA kernels of the rans family: one thread per lane (lanes are independent
// stacks), one thread per table row for validation and quantize_pdf. The
// arithmetic is rans.h's, shared with the CPU, so both write the same bytes.
// As on the CPU, every push validates all of its input before any lane moves.
#include "../rans_args.h"

#include <ATen/Dispatch.h>
#include <ATen/cuda/CUDAContext.h>
#include <ATen/ops/empty.h>
#include <ATen/ops/full.h>
#include <c10/cuda/CUDAGuard.h>
#include <torch/library.h>

#include <algorithm>

namespace flowkernels {
namespace rans {
namespace {

constexpr int kThreads = 128;

unsigned int blocks_for(int64_t n) {
  return static_cast<unsigned int>(std::max<int64_t>(1, std::min<int64_t>((n + kThreads - 1) / kThreads, 1 << 20)));
}

#define FK_RANS_LOOP(i, n)                                                                 \
  for (int64_t i = static_cast<int64_t>(blockIdx.x) * blockDim.x + threadIdx.x; i < (n); \
       i += static_cast<int64_t>(blockDim.x) * gridDim.x)

// A device-side "smallest failing index", kNoError when nothing failed.
struct ErrorIndex {
  at::Tensor slot;
  explicit ErrorIndex(const at::Tensor& like) : slot(at::full({1}, kNoError, like.options().dtype(at::kLong))) {}
  unsigned long long* ptr() { return reinterpret_cast<unsigned long long*>(slot.data_ptr<int64_t>()); }
  int64_t get() const { return slot.item<int64_t>(); }
};

__device__ __forceinline__ void record_error(unsigned long long* slot, int64_t index) {
  atomicMin(slot, static_cast<unsigned long long>(index));
}

__device__ __forceinline__ Lane load_lane(const int64_t* state, int32_t* words, const int64_t* lengths,
                                          int64_t capacity, int64_t n) {
  return {static_cast<uint64_t>(state[n]), reinterpret_cast<uint32_t*>(words) + n * capacity, lengths[n], capacity,
          false};
}

__device__ __forceinline__ void store_lane(const Lane& lane, int64_t* state, int64_t* lengths, int64_t n) {
  state[n] = static_cast<int64_t>(lane.state);
  lengths[n] = lane.length;
}

cudaStream_t stream() { return at::cuda::getCurrentCUDAStream(); }

// ---------------------------------------------------------------------------
// Categorical

__global__ void validate_rows_kernel(const int32_t* cdf, int64_t rows, int64_t K, int64_t total,
                                     unsigned long long* bad) {
  FK_RANS_LOOP(r, rows) {
    const int32_t* c = cdf + r * (K + 1);
    bool ok = c[0] == 0 && c[K] == total;
    for (int64_t i = 0; i < K; ++i) ok &= c[i + 1] > c[i];
    if (!ok) record_error(bad, r);
  }
}

__global__ void validate_symbols_kernel(const int64_t* sym, int64_t count, int64_t L, const int32_t* cdf,
                                        TableLayout table, int64_t total, unsigned long long* bad) {
  FK_RANS_LOOP(i, count) {
    const int64_t s = sym[i];
    const int32_t* c = cdf + (i / L) * table.lane_stride + (i % L) * table.pos_stride;
    if (s < 0 || s >= table.K || c[s] < 0 || c[s + 1] <= c[s] || c[s + 1] > total) record_error(bad, i);
  }
}

__global__ void push_categorical_kernel(int64_t* state, int32_t* words, int64_t* lengths, int64_t capacity,
                                        int64_t lanes, int64_t L, const int64_t* sym, const int32_t* cdf,
                                        TableLayout table, int precision) {
  FK_RANS_LOOP(n, lanes) {
    Lane lane = load_lane(state, words, lengths, capacity, n);
    for (int64_t pos = L - 1; pos >= 0; --pos) {
      const int64_t s = sym[n * L + pos];
      const int32_t* c = cdf + n * table.lane_stride + pos * table.pos_stride;
      lane.push(static_cast<uint32_t>(c[s]), static_cast<uint32_t>(c[s + 1] - c[s]), precision);
    }
    store_lane(lane, state, lengths, n);
  }
}

__global__ void pop_categorical_kernel(int64_t* state, int32_t* words, int64_t* lengths, int64_t capacity,
                                       int64_t lanes, int64_t count, int64_t* sym, const int32_t* cdf,
                                       TableLayout table, int precision, unsigned long long* exhausted) {
  FK_RANS_LOOP(n, lanes) {
    Lane lane = load_lane(state, words, lengths, capacity, n);
    for (int64_t pos = 0; pos < count; ++pos) {
      const int32_t* c = cdf + n * table.lane_stride + pos * table.pos_stride;
      const int64_t s = search_cdf(c, table.K, lane.peek(precision));
      const int32_t lo = c[s], hi = c[s + 1];
      lane.advance(static_cast<uint32_t>(lo), static_cast<uint32_t>(hi > lo ? hi - lo : 1), precision);
      sym[n * count + pos] = s;
    }
    if (lane.exhausted) record_error(exhausted, n);
    store_lane(lane, state, lengths, n);
  }
}

void push_categorical_cuda(at::Tensor& state, at::Tensor& words, at::Tensor& lengths, const at::Tensor& symbols_in,
                           const at::Tensor& cdf_in, int64_t precision, bool validate) {
  const char* op = "rans_push_categorical";
  const TableCall call =
      check_table_call(op, c10::DeviceType::CUDA, state, words, lengths, &symbols_in, 0, cdf_in, precision, false);
  const int64_t lanes = call.lanes, L = call.L;
  const TableLayout table = call.table;
  const c10::cuda::CUDAGuard guard(state.device());
  const at::Tensor symbols = symbols_in.contiguous().to(at::kLong);
  const at::Tensor cdf = cdf_in.contiguous();
  const int64_t total = int64_t(1) << precision;
  if (validate && table.rows > 0) {
    ErrorIndex bad_row(state);
    validate_rows_kernel<<<blocks_for(table.rows), kThreads, 0, stream()>>>(cdf.const_data_ptr<int32_t>(), table.rows,
                                                                           table.K, total, bad_row.ptr());
    C10_CUDA_KERNEL_LAUNCH_CHECK();
    TORCH_CHECK_VALUE(bad_row.get() == kNoError, "flowkernels.", op, ": cdf row ", bad_row.get(),
                      " is not strictly increasing from 0 to 2^precision = ", total);
  }
  if (lanes * L == 0) return;
  ErrorIndex bad_symbol(state);
  validate_symbols_kernel<<<blocks_for(lanes * L), kThreads, 0, stream()>>>(
      symbols.const_data_ptr<int64_t>(), lanes * L, L, cdf.const_data_ptr<int32_t>(), table, total, bad_symbol.ptr());
  C10_CUDA_KERNEL_LAUNCH_CHECK();
  const int64_t i = bad_symbol.get();
  TORCH_CHECK_VALUE(i == kNoError, "flowkernels.", op, ": symbol ", i == kNoError ? 0 : symbols.view(-1)[i].item<int64_t>(),
                    " at lane ", i / L, ", position ", i % L, " is outside the alphabet [0, ", table.K,
                    ") or has an empty or invalid cdf interval; categorical symbols are not escaped "
                    "(use push_logistic for unbounded integers)");
  check_room(op, words, lengths, L);
  push_categorical_kernel<<<blocks_for(lanes), kThreads, 0, stream()>>>(
      state.data_ptr<int64_t>(), words.data_ptr<int32_t>(), lengths.data_ptr<int64_t>(), words.size(1), lanes, L,
      symbols.const_data_ptr<int64_t>(), cdf.const_data_ptr<int32_t>(), table, static_cast<int>(precision));
  C10_CUDA_KERNEL_LAUNCH_CHECK();
}

at::Tensor pop_categorical_cuda(at::Tensor& state, const at::Tensor& words, at::Tensor& lengths,
                                const at::Tensor& cdf_in, int64_t precision, int64_t count) {
  const char* op = "rans_pop_categorical";
  const TableCall call =
      check_table_call(op, c10::DeviceType::CUDA, state, words, lengths, nullptr, count, cdf_in, precision, false);
  const int64_t lanes = call.lanes;
  const TableLayout table = call.table;
  const c10::cuda::CUDAGuard guard(state.device());
  const at::Tensor cdf = cdf_in.contiguous();
  at::Tensor out = at::empty({lanes, count}, state.options());
  if (lanes * count == 0) return out;
  ErrorIndex exhausted(state);
  pop_categorical_kernel<<<blocks_for(lanes), kThreads, 0, stream()>>>(
      state.data_ptr<int64_t>(), const_cast<int32_t*>(words.const_data_ptr<int32_t>()), lengths.data_ptr<int64_t>(),
      words.size(1), lanes, count, out.data_ptr<int64_t>(), cdf.const_data_ptr<int32_t>(), table,
      static_cast<int>(precision), exhausted.ptr());
  C10_CUDA_KERNEL_LAUNCH_CHECK();
  check_not_exhausted(op, exhausted.get());
  return out;
}

// ---------------------------------------------------------------------------
// Discretized logistic mixture

template <typename T>
__global__ void push_logistic_kernel(int64_t* state, int32_t* words, int64_t* lengths, int64_t capacity, int64_t lanes,
                                     int64_t L, const int64_t* sym, const T* mu, const T* log_scale, const T* logit,
                                     int64_t K, LogisticSupport sup) {
  FK_RANS_LOOP(n, lanes) {
    Lane lane = load_lane(state, words, lengths, capacity, n);
    LogisticModel<kMaxComponents> model;
    for (int64_t pos = L - 1; pos >= 0; --pos) {
      const int64_t j = (n * L + pos) * K;
      model.init(mu + j, log_scale + j, logit ? logit + j : nullptr, static_cast<int>(K), sup);
      push_logistic_interval(lane, interval_of(model, static_cast<double>(sym[n * L + pos])), sym[n * L + pos],
                             sup.precision);
    }
    store_lane(lane, state, lengths, n);
  }
}

template <typename T>
__global__ void pop_logistic_kernel(int64_t* state, int32_t* words, int64_t* lengths, int64_t capacity, int64_t lanes,
                                    int64_t L, int64_t* sym, const T* mu, const T* log_scale, const T* logit, int64_t K,
                                    LogisticSupport sup, unsigned long long* exhausted) {
  FK_RANS_LOOP(n, lanes) {
    Lane lane = load_lane(state, words, lengths, capacity, n);
    LogisticModel<kMaxComponents> model;
    for (int64_t pos = 0; pos < L; ++pos) {
      const int64_t j = (n * L + pos) * K;
      model.init(mu + j, log_scale + j, logit ? logit + j : nullptr, static_cast<int>(K), sup);
      sym[n * L + pos] = pop_logistic_symbol(lane, model, sup.precision);
    }
    if (lane.exhausted) record_error(exhausted, n);
    store_lane(lane, state, lengths, n);
  }
}

void push_logistic_cuda(at::Tensor& state, at::Tensor& words, at::Tensor& lengths, const at::Tensor& symbols_in,
                        const at::Tensor& mu_in, const at::Tensor& log_scale_in,
                        const std::optional<at::Tensor>& logit_pi_in, double bin_width, std::optional<int64_t> lower,
                        std::optional<int64_t> upper, int64_t precision) {
  const char* op = "rans_push_logistic";
  const LogisticCall call = check_logistic_call(op, c10::DeviceType::CUDA, state, words, lengths, &symbols_in, mu_in,
                                                log_scale_in, logit_pi_in, bin_width, lower, upper, precision);
  const int64_t lanes = call.lanes, L = call.L, K = call.K;
  const LogisticSupport sup = call.support;
  const c10::cuda::CUDAGuard guard(state.device());
  const at::Tensor symbols = symbols_in.contiguous().to(at::kLong);
  if (lanes * L == 0) return;
  check_room(op, words, lengths, 3 * L);
  const at::Tensor mu = mu_in.contiguous(), log_scale = log_scale_in.contiguous();
  const auto logit_pi = contiguous_opt(logit_pi_in);
  AT_DISPATCH_FLOATING_TYPES(mu.scalar_type(), "rans_push_logistic_cuda", [&] {
    push_logistic_kernel<scalar_t><<<blocks_for(lanes), kThreads, 0, stream()>>>(
        state.data_ptr<int64_t>(), words.data_ptr<int32_t>(), lengths.data_ptr<int64_t>(), words.size(1), lanes, L,
        symbols.const_data_ptr<int64_t>(), mu.const_data_ptr<scalar_t>(), log_scale.const_data_ptr<scalar_t>(),
        logit_pi ? logit_pi->const_data_ptr<scalar_t>() : nullptr, K, sup);
    C10_CUDA_KERNEL_LAUNCH_CHECK();
  });
}

at::Tensor pop_logistic_cuda(at::Tensor& state, const at::Tensor& words, at::Tensor& lengths, const at::Tensor& mu_in,
                             const at::Tensor& log_scale_in, const std::optional<at::Tensor>& logit_pi_in,
                             double bin_width, std::optional<int64_t> lower, std::optional<int64_t> upper,
                             int64_t precision) {
  const char* op = "rans_pop_logistic";
  const LogisticCall call = check_logistic_call(op, c10::DeviceType::CUDA, state, words, lengths, nullptr, mu_in,
                                                log_scale_in, logit_pi_in, bin_width, lower, upper, precision);
  const int64_t lanes = call.lanes, L = call.L, K = call.K;
  const LogisticSupport sup = call.support;
  const c10::cuda::CUDAGuard guard(state.device());
  at::Tensor out = at::empty({lanes, L}, state.options());
  if (lanes * L == 0) return out;
  const at::Tensor mu = mu_in.contiguous(), log_scale = log_scale_in.contiguous();
  const auto logit_pi = contiguous_opt(logit_pi_in);
  ErrorIndex exhausted(state);
  AT_DISPATCH_FLOATING_TYPES(mu.scalar_type(), "rans_pop_logistic_cuda", [&] {
    pop_logistic_kernel<scalar_t><<<blocks_for(lanes), kThreads, 0, stream()>>>(
        state.data_ptr<int64_t>(), const_cast<int32_t*>(words.const_data_ptr<int32_t>()), lengths.data_ptr<int64_t>(),
        words.size(1), lanes, L, out.data_ptr<int64_t>(), mu.const_data_ptr<scalar_t>(),
        log_scale.const_data_ptr<scalar_t>(), logit_pi ? logit_pi->const_data_ptr<scalar_t>() : nullptr, K, sup,
        exhausted.ptr());
    C10_CUDA_KERNEL_LAUNCH_CHECK();
  });
  check_not_exhausted(op, exhausted.get());
  return out;
}

// ---------------------------------------------------------------------------
// Fused categorical coding from float probabilities: intervals in parallel over
// symbols (and validated) before the lanes push them; pops scan each row.

template <typename T>
__device__ __forceinline__ int64_t row_weight_sum(const QuantizedRow& row, const T* in, int64_t begin, int64_t end) {
  int64_t sum = 0;
  for (int64_t i = begin; i < end; ++i) sum += row.weight(static_cast<float>(in[i]));
  return sum;
}

template <typename T>
__global__ void intervals_kernel(const T* probs, TableLayout table, const int64_t* sym, int64_t count, int64_t L,
                                 int precision, uint32_t* interval, unsigned long long* bad) {
  FK_RANS_LOOP(i, count) {
    const T* in = probs + (i / L) * table.lane_stride + (i % L) * table.pos_stride;
    const int64_t s = sym[i];
    QuantizedRow row;
    if (s < 0 || s >= table.K || !row.init(in, table.K, false, precision)) {
      record_error(bad, i);
      continue;
    }
    const int64_t prefix = row_weight_sum(row, in, 0, s);
    const int64_t total = prefix + row_weight_sum(row, in, s, table.K);
    interval_of(row, in, s, prefix, total, &interval[2 * i], &interval[2 * i + 1]);
  }
}

__global__ void push_intervals_kernel(int64_t* state, int32_t* words, int64_t* lengths, int64_t capacity,
                                      int64_t lanes, int64_t L, const uint32_t* interval, int precision) {
  FK_RANS_LOOP(n, lanes) {
    Lane lane = load_lane(state, words, lengths, capacity, n);
    for (int64_t pos = L - 1; pos >= 0; --pos) {
      const uint32_t* iv = interval + 2 * (n * L + pos);
      lane.push(iv[0], iv[1], precision);
    }
    store_lane(lane, state, lengths, n);
  }
}

template <typename T>
__global__ void pop_probs_kernel(int64_t* state, int32_t* words, int64_t* lengths, int64_t capacity, int64_t lanes,
                                 int64_t L, int64_t* sym, const T* probs, TableLayout table, int precision,
                                 unsigned long long* exhausted, unsigned long long* bad) {
  FK_RANS_LOOP(n, lanes) {
    Lane lane = load_lane(state, words, lengths, capacity, n);
    for (int64_t pos = 0; pos < L; ++pos) {
      const T* in = probs + n * table.lane_stride + pos * table.pos_stride;
      QuantizedRow row;
      if (!row.init(in, table.K, false, precision)) {
        record_error(bad, n * L + pos);
        break;
      }
      const int64_t total = row_weight_sum(row, in, 0, table.K);
      const uint32_t slot = lane.peek(precision);
      int64_t prefix = 0;
      int64_t s = 0;
      for (; s + 1 < table.K; ++s) {
        const int64_t next = prefix + row.weight(static_cast<float>(in[s]));
        if (!row.cumulative_at_most(s + 1, next, total, slot)) break;
        prefix = next;
      }
      uint32_t start, freq;
      interval_of(row, in, s, prefix, total, &start, &freq);
      lane.advance(start, freq, precision);
      sym[n * L + pos] = s;
    }
    if (lane.exhausted) record_error(exhausted, n);
    store_lane(lane, state, lengths, n);
  }
}

void push_probs_cuda(at::Tensor& state, at::Tensor& words, at::Tensor& lengths, const at::Tensor& symbols_in,
                     const at::Tensor& probs_in, int64_t precision) {
  const char* op = "rans_push_probs";
  const TableCall call =
      check_table_call(op, c10::DeviceType::CUDA, state, words, lengths, &symbols_in, 0, probs_in, precision, true);
  const int64_t lanes = call.lanes, L = call.L;
  const TableLayout table = call.table;
  if (lanes * L == 0) return;
  const c10::cuda::CUDAGuard guard(state.device());
  const at::Tensor symbols = symbols_in.contiguous().to(at::kLong);
  const at::Tensor probs = probs_in.contiguous();
  at::Tensor intervals = at::empty({2 * lanes * L}, state.options().dtype(at::kInt));
  uint32_t* iv = reinterpret_cast<uint32_t*>(intervals.data_ptr<int32_t>());
  ErrorIndex bad(state);
  AT_DISPATCH_FLOATING_TYPES(probs.scalar_type(), "rans_push_probs_cuda", [&] {
    intervals_kernel<scalar_t><<<blocks_for(lanes * L), kThreads, 0, stream()>>>(
        probs.const_data_ptr<scalar_t>(), table, symbols.const_data_ptr<int64_t>(), lanes * L, L,
        static_cast<int>(precision), iv, bad.ptr());
    C10_CUDA_KERNEL_LAUNCH_CHECK();
  });
  const int64_t i = bad.get();
  TORCH_CHECK_VALUE(i == kNoError, "flowkernels.", op, ": symbol ",
                    i == kNoError ? 0 : symbols.view(-1)[i].item<int64_t>(), " at lane ", i / L, ", position ", i % L,
                    " is outside the alphabet [0, ", table.K, ") or its probability row is not a valid ", kValidProbabilities);
  check_room(op, words, lengths, L);
  push_intervals_kernel<<<blocks_for(lanes), kThreads, 0, stream()>>>(
      state.data_ptr<int64_t>(), words.data_ptr<int32_t>(), lengths.data_ptr<int64_t>(), words.size(1), lanes, L, iv,
      static_cast<int>(precision));
  C10_CUDA_KERNEL_LAUNCH_CHECK();
}

at::Tensor pop_probs_cuda(at::Tensor& state, const at::Tensor& words, at::Tensor& lengths, const at::Tensor& probs_in,
                          int64_t precision, int64_t count) {
  const char* op = "rans_pop_probs";
  const TableCall call =
      check_table_call(op, c10::DeviceType::CUDA, state, words, lengths, nullptr, count, probs_in, precision, true);
  const int64_t lanes = call.lanes;
  const TableLayout table = call.table;
  const c10::cuda::CUDAGuard guard(state.device());
  at::Tensor out = at::empty({lanes, count}, state.options());
  if (lanes * count == 0) return out;
  const at::Tensor probs = probs_in.contiguous();
  ErrorIndex exhausted(state), bad(state);
  AT_DISPATCH_FLOATING_TYPES(probs.scalar_type(), "rans_pop_probs_cuda", [&] {
    pop_probs_kernel<scalar_t><<<blocks_for(lanes), kThreads, 0, stream()>>>(
        state.data_ptr<int64_t>(), const_cast<int32_t*>(words.const_data_ptr<int32_t>()), lengths.data_ptr<int64_t>(),
        words.size(1), lanes, count, out.data_ptr<int64_t>(), probs.const_data_ptr<scalar_t>(), table,
        static_cast<int>(precision), exhausted.ptr(), bad.ptr());
    C10_CUDA_KERNEL_LAUNCH_CHECK();
  });
  const int64_t b = bad.get();
  TORCH_CHECK_VALUE(b == kNoError, "flowkernels.", op, ": the probability row at lane ", b / count, ", position ",
                    b % count, " is not a valid ", kValidProbabilities);
  check_not_exhausted(op, exhausted.get());
  return out;
}

// ---------------------------------------------------------------------------
// quantize_pdf: one thread per row.

template <typename T>
__global__ void quantize_kernel(const T* probs, int32_t* cdf, int64_t rows, int64_t K, bool logits, int precision,
                                unsigned long long* bad) {
  FK_RANS_LOOP(r, rows) {
    if (!quantize_row(probs + r * K, K, logits, precision, cdf + r * (K + 1))) record_error(bad, r);
  }
}

at::Tensor quantize_pdf_cuda(const at::Tensor& probs_in, int64_t precision, bool logits) {
  const char* op = "rans_quantize_pdf";
  const int64_t K = check_quantize_call(op, c10::DeviceType::CUDA, probs_in, precision);
  const c10::cuda::CUDAGuard guard(probs_in.device());
  const at::Tensor probs = probs_in.contiguous();
  std::vector<int64_t> shape(probs.sizes().begin(), probs.sizes().end());
  shape.back() = K + 1;
  at::Tensor cdf = at::empty(shape, probs.options().dtype(at::kInt));
  const int64_t rows = probs.numel() / K;
  if (rows == 0) return cdf;
  ErrorIndex bad_row(probs);
  AT_DISPATCH_FLOATING_TYPES(probs.scalar_type(), "rans_quantize_pdf_cuda", [&] {
    quantize_kernel<scalar_t><<<blocks_for(rows), kThreads, 0, stream()>>>(
        probs.const_data_ptr<scalar_t>(), cdf.mutable_data_ptr<int32_t>(), rows, K, logits,
        static_cast<int>(precision), bad_row.ptr());
    C10_CUDA_KERNEL_LAUNCH_CHECK();
  });
  check_quantized_rows(op, bad_row.get(), logits);
  return cdf;
}

}  // namespace

TORCH_LIBRARY_IMPL(flowkernels, CUDA, m) {
  m.impl("rans_push_categorical", &push_categorical_cuda);
  m.impl("rans_pop_categorical", &pop_categorical_cuda);
  m.impl("rans_push_logistic", &push_logistic_cuda);
  m.impl("rans_pop_logistic", &pop_logistic_cuda);
  m.impl("rans_quantize_pdf", &quantize_pdf_cuda);
  m.impl("rans_push_probs", &push_probs_cuda);
  m.impl("rans_pop_probs", &pop_probs_cuda);
}

}  // namespace rans
}  // namespace flowkernels
