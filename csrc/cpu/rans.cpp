// CPU kernels of the rans family: lanes are independent, so they are coded in
// parallel (at::parallel_for over lanes); within a lane the coder is serial.
// Every push validates all of its input before touching the coder, so a bad
// argument raises and leaves the coder as it was.
#include "../rans_args.h"
#include "fastmath.h"  // FK_INLINE; ../cpu_isa.h: FK_ISA_CLONES, FK_ISA_CALL

#include <ATen/Dispatch.h>
#include <ATen/Parallel.h>
#include <ATen/ops/empty.h>
#include <torch/library.h>

#include <atomic>
#include <cfloat>
#include <cstring>
#include <memory>
#include <limits>
#include <vector>

namespace flowkernels {
namespace rans {
namespace {

// Records the smallest failing index seen by any thread.
void record_error(std::atomic<int64_t>& first, int64_t index) {
  int64_t seen = first.load();
  while (index < seen && !first.compare_exchange_weak(seen, index)) {
  }
}

// Grain for parallel loops over lanes of L symbols each.
int64_t lane_grain(int64_t L) { return std::max<int64_t>(1, 2048 / std::max<int64_t>(L, 1)); }

Lane load_lane(const at::Tensor& state, const at::Tensor& words, const at::Tensor& lengths, int64_t lane) {
  const int64_t capacity = words.size(1);
  return {static_cast<uint64_t>(state.data_ptr<int64_t>()[lane]),
          reinterpret_cast<uint32_t*>(words.data_ptr<int32_t>()) + lane * capacity,
          lengths.data_ptr<int64_t>()[lane], capacity, false};
}

void store_lane(const Lane& l, const at::Tensor& state, const at::Tensor& lengths, int64_t lane) {
  state.data_ptr<int64_t>()[lane] = static_cast<int64_t>(l.state);
  lengths.data_ptr<int64_t>()[lane] = l.length;
}

// Lanes coded in step, position by position: each lane is a chain of dependent
// latencies (a 64-bit division per push; search -> state per pop), and
// interleaving a few independent chains lets the core overlap them.
constexpr int64_t kInterleave = 4;

// Runs code(lane, n, pos) for every lane n in [begin, end) and position pos,
// in reverse position order when pushing (so that pops return positions in order).
template <typename Code>
FK_INLINE void code_lanes(const at::Tensor& state, const at::Tensor& words, const at::Tensor& lengths, int64_t L,
                          int64_t begin, int64_t end, bool reverse, std::atomic<int64_t>* exhausted, Code code) {
  Lane lanes[kInterleave];
  for (int64_t first = begin; first < end; first += kInterleave) {
    const int64_t group = std::min(kInterleave, end - first);
    for (int64_t i = 0; i < group; ++i) lanes[i] = load_lane(state, words, lengths, first + i);
    for (int64_t step = 0; step < L; ++step) {
      const int64_t pos = reverse ? L - 1 - step : step;
      for (int64_t i = 0; i < group; ++i) code(lanes[i], first + i, pos, i);
    }
    for (int64_t i = 0; i < group; ++i) {
      if (exhausted != nullptr && lanes[i].exhausted) record_error(*exhausted, first + i);
      store_lane(lanes[i], state, lengths, first + i);
    }
  }
}

// ---------------------------------------------------------------------------
// Categorical

void push_categorical_cpu(at::Tensor& state, at::Tensor& words, at::Tensor& lengths, const at::Tensor& symbols_in,
                          const at::Tensor& cdf_in, int64_t precision, bool validate) {
  const char* op = "rans_push_categorical";
  const TableCall call =
      check_table_call(op, c10::DeviceType::CPU, state, words, lengths, &symbols_in, 0, cdf_in, precision, false);
  const int64_t lanes = call.lanes, L = call.L;
  const TableLayout table = call.table;
  const at::Tensor symbols = symbols_in.contiguous().to(at::kLong);
  const at::Tensor cdf = cdf_in.contiguous();
  const int64_t* sym = symbols.const_data_ptr<int64_t>();
  const int32_t* table_ptr = cdf.const_data_ptr<int32_t>();
  const int64_t width = table.K + 1, total = int64_t(1) << precision;

  if (validate) {  // every row: 0 = c[0] < c[1] < ... < c[K] = 2^precision
    std::atomic<int64_t> bad_row{kNoError};
    at::parallel_for(0, table.rows, std::max<int64_t>(1, 16384 / width), [&](int64_t begin, int64_t end) {
      for (int64_t r = begin; r < end; ++r) {
        const int32_t* c = table_ptr + r * width;
        bool ok = c[0] == 0 && c[table.K] == total;
        for (int64_t i = 0; i < table.K; ++i) ok &= c[i + 1] > c[i];
        if (!ok) record_error(bad_row, r);
      }
    });
    TORCH_CHECK_VALUE(bad_row.load() == kNoError, "flowkernels.", op, ": cdf row ", bad_row.load(),
                      " is not strictly increasing from 0 to 2^precision = ", total);
  }
  // Every symbol in its alphabet, with a usable interval (even when validate=False).
  std::atomic<int64_t> bad_symbol{kNoError};
  at::parallel_for(0, lanes * L, 4096, [&](int64_t begin, int64_t end) {
    for (int64_t i = begin; i < end; ++i) {
      const int64_t s = sym[i];
      const int32_t* c = table_ptr + (i / std::max<int64_t>(L, 1)) * table.lane_stride + (i % std::max<int64_t>(L, 1)) * table.pos_stride;
      if (s < 0 || s >= table.K || c[s] < 0 || c[s + 1] <= c[s] || c[s + 1] > total) record_error(bad_symbol, i);
    }
  });
  if (bad_symbol.load() != kNoError) {
    const int64_t i = bad_symbol.load();
    TORCH_CHECK_VALUE(false, "flowkernels.", op, ": symbol ", sym[i], " at lane ", i / L, ", position ", i % L,
                      " is outside the alphabet [0, ", table.K, ") or has an empty or invalid cdf interval; "
                      "categorical symbols are not escaped (use push_logistic for unbounded integers)");
  }
  check_room(op, words, lengths, L);
  at::parallel_for(0, lanes, lane_grain(L), [&](int64_t begin, int64_t end) {
    code_lanes(state, words, lengths, L, begin, end, true, nullptr, [&](Lane& lane, int64_t n, int64_t pos, int64_t) FK_LAMBDA_INLINE {
      const int64_t s = sym[n * L + pos];
      const int32_t* c = table_ptr + n * table.lane_stride + pos * table.pos_stride;
      lane.push(static_cast<uint32_t>(c[s]), static_cast<uint32_t>(c[s + 1] - c[s]), static_cast<int>(precision));
    });
  });
}

at::Tensor pop_categorical_cpu(at::Tensor& state, const at::Tensor& words, at::Tensor& lengths,
                               const at::Tensor& cdf_in, int64_t precision, int64_t count) {
  const char* op = "rans_pop_categorical";
  const TableCall call =
      check_table_call(op, c10::DeviceType::CPU, state, words, lengths, nullptr, count, cdf_in, precision, false);
  const int64_t lanes = call.lanes;
  const TableLayout table = call.table;
  const at::Tensor cdf = cdf_in.contiguous();
  const int32_t* table_ptr = cdf.const_data_ptr<int32_t>();
  at::Tensor out = at::empty({lanes, count}, state.options());
  int64_t* sym = out.data_ptr<int64_t>();
  std::atomic<int64_t> exhausted{kNoError};
  at::parallel_for(0, lanes, lane_grain(count), [&](int64_t begin, int64_t end) {
    for (int64_t n = begin; n < end; ++n) {
      Lane lane = load_lane(state, words, lengths, n);
      for (int64_t pos = 0; pos < count; ++pos) {
        const int32_t* c = table_ptr + n * table.lane_stride + pos * table.pos_stride;
        const int64_t s = search_cdf(c, table.K, lane.peek(static_cast<int>(precision)));
        // A table that is not a valid cdf (unvalidated) must not wrap the state: clamp.
        const int32_t lo = c[s], hi = c[s + 1];
        lane.advance(static_cast<uint32_t>(lo), static_cast<uint32_t>(hi > lo ? hi - lo : 1),
                     static_cast<int>(precision));
        sym[n * count + pos] = s;
      }
      if (lane.exhausted) record_error(exhausted, n);
      store_lane(lane, state, lengths, n);
    }
  });
  check_not_exhausted(op, exhausted.load());
  return out;
}

// ---------------------------------------------------------------------------
// Discretized logistic mixture

template <typename T>
struct LogisticParams {
  const T* mu;
  const T* log_scale;
  const T* logit;  // nullptr: one component
  int64_t K;

  void model_at(int64_t index, LogisticModel<kMaxComponents>& model, const LogisticSupport& sup) const {
    model.init(mu + index * K, log_scale + index * K, logit ? logit + index * K : nullptr, static_cast<int>(K), sup);
  }
};

template <typename T>
LogisticParams<T> logistic_params(const at::Tensor& mu, const at::Tensor& log_scale,
                                  const std::optional<at::Tensor>& logit_pi, int64_t K) {
  return {mu.const_data_ptr<T>(), log_scale.const_data_ptr<T>(), logit_pi ? logit_pi->const_data_ptr<T>() : nullptr,
          K};
}

// The single-component fast path, by chunks of at most kChunk symbols: plain
// loops over doubles that GCC vectorises (fused into one loop, the window's
// selects defeat it). Models of a chunk are kept as arrays.
constexpr int64_t kChunk = 256;

struct SingleLogisticChunk {
  double mu[kChunk], t[kChunk], spread[kChunk], lo[kChunk], hi[kChunk], free[kChunk], escape[kChunk];

  template <bool HasLower, bool HasUpper>
  FK_INLINE void build(const double* mu_in, const double* log_scale, int64_t n, const LogisticSupport& sup_ref) {
    const LogisticSupport sup = sup_ref;  // a local copy: no aliasing with the outputs
    const double inv_w = ddiv(1.0, sup.bin_width);
    double rounded[kChunk];
#pragma omp simd
    for (int64_t j = 0; j < n; ++j) {
      mu[j] = dmul(mu_in[j], inv_w);
      t[j] = logistic_t(log_scale[j], sup.bin_width);
      rounded[j] = logistic_rounded(mu[j]);
      spread[j] = dmax(0.0, ddiv(1.0, t[j]));
    }
#pragma omp simd
    for (int64_t j = 0; j < n; ++j) {
      const LogisticWindow w = logistic_window<HasLower, HasUpper>(rounded[j], rounded[j], rounded[j], spread[j], sup);
      lo[j] = w.lo;
      hi[j] = w.hi;
      free[j] = w.free;
      escape[j] = w.escape;
    }
  }

  // Loads parameters [c, c + n) as doubles and builds their models.
  template <typename T>
  FK_INLINE void load(const T* mu_in, const T* log_scale_in, int64_t c, int64_t n, const LogisticSupport& sup) {
    double m[kChunk], ls[kChunk];
    for (int64_t j = 0; j < n; ++j) {
      m[j] = static_cast<double>(mu_in[c + j]);
      ls[j] = static_cast<double>(log_scale_in[c + j]);
    }
    if (sup.has_lower) {
      sup.has_upper ? build<true, true>(m, ls, n, sup) : build<true, false>(m, ls, n, sup);
    } else {
      sup.has_upper ? build<false, true>(m, ls, n, sup) : build<false, false>(m, ls, n, sup);
    }
  }

  LogisticWindow window(int64_t j) const { return {lo[j], hi[j], free[j], escape[j]}; }

  LogisticModel<1> model(int64_t j) const {
    LogisticModel<1> out;
    out.mu[0] = mu[j];
    out.t[0] = t[j];
    out.weight[0] = 1.0;
    out.K = 1;
    out.window = window(j);
    out.guess_mu = mu[j];
    out.guess_scale = spread[j];
    return out;
  }

  // Intervals of symbols sym[0, n) under the chunk's models.
  FK_INLINE void intervals(const double* sym, int64_t n, LogisticInterval* out) const {
    double below[kChunk], above[kChunk];  // C(s) and C(s + 1)
#pragma omp simd
    for (int64_t j = 0; j < n; ++j) {
      const LogisticWindow w{lo[j], hi[j], free[j], escape[j]};
      below[j] = logistic_count(sym[j], logistic_edge_cdf(sym[j], mu[j], t[j]), w);
      above[j] = logistic_count(sym[j] + 1.0, logistic_edge_cdf(sym[j] + 1.0, mu[j], t[j]), w);
    }
    for (int64_t j = 0; j < n; ++j) out[j] = logistic_interval(sym[j], below[j], above[j], window(j));
  }
};

// Intervals of symbols [begin, end) (models do not depend on the coder, so this
// runs in parallel over all symbols before the serial pushes). A single
// component without logits, the common case, takes the SIMD path above.
template <typename T>
FK_INLINE void logistic_intervals(const LogisticParams<T>& params, const LogisticSupport& sup, const int64_t* sym,
                                  int64_t begin, int64_t end, SingleLogisticChunk& chunk, LogisticInterval* out) {
  if (params.K == 1 && params.logit == nullptr) {
    double symbol[kChunk];
    for (int64_t c = begin; c < end; c += kChunk) {
      const int64_t n = std::min(kChunk, end - c);
      chunk.load(params.mu, params.log_scale, c, n, sup);
      for (int64_t j = 0; j < n; ++j) symbol[j] = static_cast<double>(static_cast<int32_t>(sym[c + j]));
      chunk.intervals(symbol, n, out + (c - begin));
    }
    return;
  }
  LogisticModel<kMaxComponents> model;
  for (int64_t i = begin; i < end; ++i) {
    params.model_at(i, model, sup);
    out[i - begin] = interval_of(model, static_cast<double>(sym[i]));
  }
}

// Pushes lanes [begin, end), from the last position back, a chunk of positions
// at a time: the chunk's intervals (models do not depend on the coder; SIMD for
// single components), then their pushes, kInterleave lanes in step. Nothing
// here can fail: the arguments were all checked before.
template <typename T>
FK_INLINE void push_logistic_lanes(const LogisticParams<T>& params, const LogisticSupport& sup,
                                   const int64_t* sym, int64_t L, const at::Tensor& state,
                                   const at::Tensor& words, const at::Tensor& lengths, int64_t begin,
                                   int64_t end) {
  const std::unique_ptr<SingleLogisticChunk> chunk(new SingleLogisticChunk);
  LogisticInterval buffer[kInterleave][kChunk];
  Lane lanes[kInterleave];
  for (int64_t first = begin; first < end; first += kInterleave) {
    const int64_t group = std::min(kInterleave, end - first);
    for (int64_t i = 0; i < group; ++i) lanes[i] = load_lane(state, words, lengths, first + i);
    for (int64_t stop = L; stop > 0; stop -= kChunk) {
      const int64_t start = std::max<int64_t>(0, stop - kChunk);
      for (int64_t i = 0; i < group; ++i)
        logistic_intervals(params, sup, sym, (first + i) * L + start, (first + i) * L + stop, *chunk, buffer[i]);
      for (int64_t pos = stop - 1; pos >= start; --pos)
        for (int64_t i = 0; i < group; ++i)
          push_logistic_interval(lanes[i], buffer[i][pos - start], sym[(first + i) * L + pos], sup.precision);
    }
    for (int64_t i = 0; i < group; ++i) store_lane(lanes[i], state, lengths, first + i);
  }
}
FK_ISA_CLONES(push_logistic_lanes)

void push_logistic_cpu(at::Tensor& state, at::Tensor& words, at::Tensor& lengths, const at::Tensor& symbols_in,
                       const at::Tensor& mu_in, const at::Tensor& log_scale_in,
                       const std::optional<at::Tensor>& logit_pi_in, double bin_width, std::optional<int64_t> lower,
                       std::optional<int64_t> upper, int64_t precision) {
  const char* op = "rans_push_logistic";
  const LogisticCall call = check_logistic_call(op, c10::DeviceType::CPU, state, words, lengths, &symbols_in, mu_in,
                                                log_scale_in, logit_pi_in, bin_width, lower, upper, precision);
  const int64_t lanes = call.lanes, L = call.L, K = call.K;
  const LogisticSupport sup = call.support;
  const at::Tensor symbols = symbols_in.contiguous().to(at::kLong);
  const at::Tensor mu = mu_in.contiguous(), log_scale = log_scale_in.contiguous();
  const auto logit_pi = contiguous_opt(logit_pi_in);
  check_room(op, words, lengths, 3 * L);  // an escaped symbol takes up to 3 words
  const int64_t* sym = symbols.const_data_ptr<int64_t>();
  AT_DISPATCH_FLOATING_TYPES(mu.scalar_type(), "rans_push_logistic_cpu", [&] {
    const auto params = logistic_params<scalar_t>(mu, log_scale, logit_pi, K);
    at::parallel_for(0, lanes, lane_grain(L), [&](int64_t begin, int64_t end) {
      FK_ISA_CALL(push_logistic_lanes, params, sup, sym, L, state, words, lengths, begin, end);
    });
  });
}

template <typename T>
FK_INLINE void pop_logistic_lanes(const LogisticParams<T>& params, const LogisticSupport& sup, int64_t* sym,
                                  int64_t L, const at::Tensor& state, const at::Tensor& words,
                                  const at::Tensor& lengths, int64_t begin, int64_t end,
                                  std::atomic<int64_t>& exhausted) {
  const bool single = params.K == 1 && params.logit == nullptr;
  std::unique_ptr<SingleLogisticChunk[]> chunks(single ? new SingleLogisticChunk[kInterleave] : nullptr);
  LogisticModel<kMaxComponents> model;
  code_lanes(state, words, lengths, L, begin, end, false, &exhausted,
             [&](Lane& lane, int64_t n, int64_t pos, int64_t slot_in_group) FK_LAMBDA_INLINE {
               const int64_t index = n * L + pos;
               if (single) {  // models of the next chunk of positions, built with SIMD
                 SingleLogisticChunk& chunk = chunks[slot_in_group];
                 if (pos % kChunk == 0) chunk.load(params.mu, params.log_scale, index, std::min(kChunk, L - pos), sup);
                 sym[index] = pop_logistic_symbol(lane, chunk.model(pos % kChunk), sup.precision);
               } else {
                 params.model_at(index, model, sup);
                 sym[index] = pop_logistic_symbol(lane, model, sup.precision);
               }
             });
}
FK_ISA_CLONES(pop_logistic_lanes)

at::Tensor pop_logistic_cpu(at::Tensor& state, const at::Tensor& words, at::Tensor& lengths, const at::Tensor& mu_in,
                            const at::Tensor& log_scale_in, const std::optional<at::Tensor>& logit_pi_in,
                            double bin_width, std::optional<int64_t> lower, std::optional<int64_t> upper,
                            int64_t precision) {
  const char* op = "rans_pop_logistic";
  const LogisticCall call = check_logistic_call(op, c10::DeviceType::CPU, state, words, lengths, nullptr, mu_in,
                                                log_scale_in, logit_pi_in, bin_width, lower, upper, precision);
  const int64_t lanes = call.lanes, L = call.L, K = call.K;
  const LogisticSupport sup = call.support;
  const at::Tensor mu = mu_in.contiguous(), log_scale = log_scale_in.contiguous();
  const auto logit_pi = contiguous_opt(logit_pi_in);
  at::Tensor out = at::empty({lanes, L}, state.options());
  int64_t* sym = out.data_ptr<int64_t>();
  std::atomic<int64_t> exhausted{kNoError};
  AT_DISPATCH_FLOATING_TYPES(mu.scalar_type(), "rans_pop_logistic_cpu", [&] {
    const auto params = logistic_params<scalar_t>(mu, log_scale, logit_pi, K);
    at::parallel_for(0, lanes, lane_grain(8 * L), [&](int64_t begin, int64_t end) {
      FK_ISA_CALL(pop_logistic_lanes, params, sup, sym, L, state, words, lengths, begin, end, exhausted);
    });
  });
  check_not_exhausted(op, exhausted.load());
  return out;
}

// ---------------------------------------------------------------------------
// Fused categorical coding from float probabilities (quantize_pdf's tables,
// never materialised). Each row is read twice while it sits in L1: a SIMD pass
// for its maximum (and validity), a SIMD pass for the prefix sums. Both are
// exact (a maximum, and sums of integers held in doubles), so the
// vectorised summation order cannot change a bit.

template <typename T>
FK_INLINE bool row_scale(const T* in, int64_t K, int precision, QuantizedRow& row) {
  // One unsigned maximum over the bit patterns gives both the maximum and the
  // validity: +0 .. FLT_MAX are exactly the patterns 0 .. 0x7f7fffff in the
  // same order, and a negative, inf or NaN entry pushes the maximum above.
  // (-0.0 counts as 0.)
  uint32_t top_bits = 0;
#pragma omp simd reduction(max : top_bits)
  for (int64_t i = 0; i < K; ++i) {
    const float v = static_cast<float>(in[i]);
    uint32_t bits;
    std::memcpy(&bits, &v, sizeof bits);
    bits = bits == 0x80000000u ? 0u : bits;
    top_bits = bits > top_bits ? bits : top_bits;
  }
  float top;
  std::memcpy(&top, &top_bits, sizeof top);
  return row.finish(top, top_bits > 0x7f7fffffu, K, false, precision);
}

// The weight of one entry: v * scale >= 0, so truncation is the floor (one
// instruction fewer than floorf, same value on every device).
FK_INLINE int32_t weight_of(float v, float scale) { return static_cast<int32_t>(v * scale); }

// Sum of the weights of entries [begin, end): int32 lanes suffice (quantize_shift).
template <typename T>
FK_INLINE int64_t weight_sum(const T* in, int64_t begin, int64_t end, float scale) {
  int32_t sum = 0;
#pragma omp simd reduction(+ : sum)
  for (int64_t i = begin; i < end; ++i) sum += weight_of(static_cast<float>(in[i]), scale);
  return sum;
}

// Asks for a row two symbols ahead: the row passes are short, so the memory
// latency of the next rows would otherwise sit between them.
template <typename T>
FK_INLINE void prefetch_row(const T* row, int64_t K) {
  const char* bytes = reinterpret_cast<const char*>(row);
  for (int64_t offset = 0; offset < K * static_cast<int64_t>(sizeof(T)); offset += 64) __builtin_prefetch(bytes + offset);
}

template <typename T>
struct ProbsArgs {
  const T* probs;
  TableLayout table;
  int precision;

  FK_INLINE const T* row(int64_t n, int64_t pos) const {
    return probs + n * table.lane_stride + pos * table.pos_stride;
  }
};

// Phase 1 of a push: every symbol's interval, in parallel over symbols, so
// that invalid input raises before any lane moves. interval[2 i] = start,
// interval[2 i + 1] = freq; failures are recorded by symbol index.
template <typename T>
FK_INLINE void intervals_of(const ProbsArgs<T>& a, const int64_t* sym, int64_t L, int64_t begin, int64_t end,
                            uint32_t* interval, std::atomic<int64_t>& bad) {
  const int64_t K = a.table.K;
  for (int64_t i = begin; i < end; ++i) {
    const T* in = a.row(i / L, i % L);
    if (i + 2 < end) prefetch_row(a.row((i + 2) / L, (i + 2) % L), K);
    const int64_t s = sym[i];
    QuantizedRow row;
    if (s < 0 || s >= K || !row_scale(in, K, a.precision, row)) {
      record_error(bad, i);
      continue;
    }
    const int64_t prefix = weight_sum(in, 0, s, row.scale);
    const int64_t total = prefix + weight_sum(in, s, K, row.scale);
    interval_of(row, in, s, prefix, total, &interval[2 * i], &interval[2 * i + 1]);
  }
}
FK_ISA_CLONES(intervals_of)

template <typename T>
FK_INLINE void pop_probs_lanes(const ProbsArgs<T>& a, int64_t* sym, int64_t L, const at::Tensor& state,
                               const at::Tensor& words, const at::Tensor& lengths, int64_t begin, int64_t end,
                               std::atomic<int64_t>& exhausted, std::atomic<int64_t>& bad) {
  constexpr int64_t kBlock = 16;
  const int64_t K = a.table.K, blocks = (K + kBlock - 1) / kBlock;
  std::vector<int32_t> weights(blocks * kBlock, 0);  // one row's weights (padded to whole blocks)
  std::vector<int64_t> block_sum(blocks);
  code_lanes(state, words, lengths, L, begin, end, false, &exhausted,
             [&](Lane& lane, int64_t n, int64_t pos, int64_t) FK_LAMBDA_INLINE {
               const T* in = a.row(n, pos);
               if (pos + 1 < L) prefetch_row(a.row(n, pos + 1), K);
               QuantizedRow row;
               if (!row_scale(in, K, a.precision, row)) {
                 record_error(bad, n * L + pos);
                 sym[n * L + pos] = 0;
                 return;
               }
               int32_t* w = weights.data();
               const float scale = row.scale;
#pragma omp simd
               for (int64_t i = 0; i < K; ++i) w[i] = weight_of(static_cast<float>(in[i]), scale);
               int64_t total = 0;
               for (int64_t b = 0; b < blocks; ++b) {
                 int32_t acc = 0;
#pragma omp simd reduction(+ : acc)
                 for (int64_t i = 0; i < kBlock; ++i) acc += w[b * kBlock + i];
                 block_sum[b] = acc;
                 total += acc;
               }
               // The symbol s has C(s) <= slot < C(s + 1): find its block, then walk the block.
               const uint32_t slot = lane.peek(a.precision);
               int64_t prefix = 0, b = 0;
               for (; b + 1 < blocks && row.cumulative_at_most((b + 1) * kBlock, prefix + block_sum[b], total, slot);
                    ++b)
                 prefix += block_sum[b];
               int64_t s = b * kBlock;
               for (const int64_t last = std::min(K, (b + 1) * kBlock) - 1; s < last; ++s) {
                 if (!row.cumulative_at_most(s + 1, prefix + w[s], total, slot)) break;
                 prefix += w[s];
               }
               const int64_t lo = row.cumulative(s, prefix, total);
               const int64_t hi = row.cumulative(s + 1, prefix + w[s], total);
               lane.advance(static_cast<uint32_t>(lo), static_cast<uint32_t>(hi - lo), a.precision);
               sym[n * L + pos] = s;
             });
}
FK_ISA_CLONES(pop_probs_lanes)

void push_probs_cpu(at::Tensor& state, at::Tensor& words, at::Tensor& lengths, const at::Tensor& symbols_in,
                    const at::Tensor& probs_in, int64_t precision) {
  const char* op = "rans_push_probs";
  const TableCall call =
      check_table_call(op, c10::DeviceType::CPU, state, words, lengths, &symbols_in, 0, probs_in, precision, true);
  const int64_t lanes = call.lanes, L = call.L;
  const TableLayout table = call.table;
  if (lanes * L == 0) return;
  const at::Tensor symbols = symbols_in.contiguous().to(at::kLong);
  const at::Tensor probs = probs_in.contiguous();
  const int64_t* sym = symbols.const_data_ptr<int64_t>();
  const std::unique_ptr<uint32_t[]> intervals(new uint32_t[2 * lanes * L]);  // filled by phase 1
  std::atomic<int64_t> bad{kNoError};
  AT_DISPATCH_FLOATING_TYPES(probs.scalar_type(), "rans_push_probs_cpu", [&] {
    const ProbsArgs<scalar_t> args{probs.const_data_ptr<scalar_t>(), table, static_cast<int>(precision)};
    at::parallel_for(0, lanes * L, std::max<int64_t>(1, 65536 / table.K), [&](int64_t begin, int64_t end) {
      FK_ISA_CALL(intervals_of, args, sym, L, begin, end, intervals.get(), bad);
    });
  });
  if (bad.load() != kNoError) {
    const int64_t i = bad.load();
    TORCH_CHECK_VALUE(false, "flowkernels.", op, ": symbol ", sym[i], " at lane ", i / L, ", position ", i % L,
                      " is outside the alphabet [0, ", table.K, ") or its probability row is not a valid ", kValidProbabilities);
  }
  check_room(op, words, lengths, L);
  at::parallel_for(0, lanes, lane_grain(L), [&](int64_t begin, int64_t end) {
    code_lanes(state, words, lengths, L, begin, end, true, nullptr, [&](Lane& lane, int64_t n, int64_t pos, int64_t) FK_LAMBDA_INLINE {
      const uint32_t* iv = &intervals[2 * (n * L + pos)];
      lane.push(iv[0], iv[1], static_cast<int>(precision));
    });
  });
}

at::Tensor pop_probs_cpu(at::Tensor& state, const at::Tensor& words, at::Tensor& lengths, const at::Tensor& probs_in,
                         int64_t precision, int64_t count) {
  const char* op = "rans_pop_probs";
  const TableCall call =
      check_table_call(op, c10::DeviceType::CPU, state, words, lengths, nullptr, count, probs_in, precision, true);
  const int64_t lanes = call.lanes;
  const TableLayout table = call.table;
  const at::Tensor probs = probs_in.contiguous();
  at::Tensor out = at::empty({lanes, count}, state.options());
  if (lanes * count == 0) return out;
  std::atomic<int64_t> exhausted{kNoError}, bad{kNoError};
  AT_DISPATCH_FLOATING_TYPES(probs.scalar_type(), "rans_pop_probs_cpu", [&] {
    const ProbsArgs<scalar_t> args{probs.const_data_ptr<scalar_t>(), table, static_cast<int>(precision)};
    at::parallel_for(0, lanes, lane_grain(count * std::max<int64_t>(1, table.K / 16)),
                     [&](int64_t begin, int64_t end) {
                       FK_ISA_CALL(pop_probs_lanes, args, out.data_ptr<int64_t>(), count, state, words, lengths, begin, end,
                                       exhausted, bad);
                     });
  });
  TORCH_CHECK_VALUE(bad.load() == kNoError, "flowkernels.", op, ": the probability row at lane ",
                    bad.load() / std::max<int64_t>(count, 1), ", position ", bad.load() % std::max<int64_t>(count, 1),
                    " is not a valid ", kValidProbabilities);
  check_not_exhausted(op, exhausted.load());
  return out;
}

// ---------------------------------------------------------------------------
// quantize_pdf

at::Tensor quantize_pdf_cpu(const at::Tensor& probs_in, int64_t precision, bool logits) {
  const char* op = "rans_quantize_pdf";
  const int64_t K = check_quantize_call(op, c10::DeviceType::CPU, probs_in, precision);
  const at::Tensor probs = probs_in.contiguous();
  std::vector<int64_t> shape(probs.sizes().begin(), probs.sizes().end());
  shape.back() = K + 1;
  at::Tensor cdf = at::empty(shape, probs.options().dtype(at::kInt));
  const int64_t rows = probs.numel() / K;
  std::atomic<int64_t> bad_row{kNoError};
  AT_DISPATCH_FLOATING_TYPES(probs.scalar_type(), "rans_quantize_pdf_cpu", [&] {
    const scalar_t* in = probs.const_data_ptr<scalar_t>();
    int32_t* out = cdf.mutable_data_ptr<int32_t>();
    at::parallel_for(0, rows, std::max<int64_t>(1, 16384 / K), [&](int64_t begin, int64_t end) {
      for (int64_t r = begin; r < end; ++r)
        if (!quantize_row(in + r * K, K, logits, static_cast<int>(precision), out + r * (K + 1)))
          record_error(bad_row, r);
    });
  });
  check_quantized_rows(op, bad_row.load(), logits);
  return cdf;
}

}  // namespace

TORCH_LIBRARY_IMPL(flowkernels, CPU, m) {
  m.impl("rans_push_categorical", &push_categorical_cpu);
  m.impl("rans_pop_categorical", &pop_categorical_cpu);
  m.impl("rans_push_logistic", &push_logistic_cpu);
  m.impl("rans_pop_logistic", &pop_logistic_cpu);
  m.impl("rans_quantize_pdf", &quantize_pdf_cpu);
  m.impl("rans_push_probs", &push_probs_cpu);
  m.impl("rans_pop_probs", &pop_probs_cpu);
}

}  // namespace rans
}  // namespace flowkernels
