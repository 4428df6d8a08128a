// Argument checks and shape bookkeeping of the rans ops, shared by the CPU and
// CUDA kernels (host code only).
#pragma once

#include "common.h"
#include "rans.h"

#include <ATen/Dispatch.h>
#include <ATen/Parallel.h>
#include <ATen/core/Tensor.h>
#include <ATen/ops/aminmax.h>
#include <ATen/ops/max.h>

#include <atomic>
#include <cmath>
#include <limits>
#include <ATen/ops/all.h>
#include <ATen/ops/isfinite.h>

namespace flowkernels {
namespace rans {

constexpr int kMaxComponents = 16;  // mixture components of push/pop_logistic
constexpr double kMinBinWidth = 0x1p-32, kMaxBinWidth = 0x1p32;  // bin_width of push/pop_logistic
constexpr int64_t kNoError = std::numeric_limits<int64_t>::max();  // "no failing index"

// The coder's storage: state int64 [N] (uint64 bits), words int32 [N, capacity]
// (uint32 bits), lengths int64 [N].
inline int64_t check_coder(const char* op, c10::DeviceType device, const at::Tensor& state,
                           const at::Tensor& words, const at::Tensor& lengths) {
  check_device(op, "state", state, device);
  TORCH_CHECK(state.scalar_type() == at::kLong && state.dim() == 1 && state.is_contiguous(), "flowkernels.",
              op, ": 'state' must be a contiguous int64 tensor [lanes]");
  const int64_t lanes = state.size(0);
  TORCH_CHECK(words.scalar_type() == at::kInt && words.dim() == 2 && words.size(0) == lanes &&
                  words.is_contiguous() && words.device() == state.device(),
              "flowkernels.", op, ": 'words' must be a contiguous int32 tensor [lanes, capacity] on ",
              state.device());
  TORCH_CHECK(lengths.scalar_type() == at::kLong && lengths.dim() == 1 && lengths.size(0) == lanes &&
                  lengths.is_contiguous() && lengths.device() == state.device(),
              "flowkernels.", op, ": 'lengths' must be a contiguous int64 tensor [lanes] on ", state.device());
  // Every kernel addresses words[lane, lengths[lane] +- k]: a length outside [0, capacity] (a
  // tampered coder, a raw call) would read or write outside the buffer.
  if (lanes > 0) {
    const auto [shortest, longest] = at::aminmax(lengths);
    const int64_t low = shortest.item<int64_t>(), high = longest.item<int64_t>();
    TORCH_CHECK_VALUE(low >= 0 && high <= words.size(1), "flowkernels.", op,
                      ": 'lengths' must be in [0, ", words.size(1), "] (the words' capacity), got values in [", low,
                      ", ", high, "]");
  }
  return lanes;
}

inline void check_precision(const char* op, int64_t precision, int64_t minimum) {
  TORCH_CHECK_VALUE(precision >= minimum && precision <= kMaxPrecision, "flowkernels.", op,
                    ": 'precision' must be in [", minimum, ", ", kMaxPrecision, "], got ", precision);
}

// symbols: int32/int64 [N, L] on the coder's device.
inline int64_t check_symbols(const char* op, const at::Tensor& symbols, int64_t lanes, const at::Tensor& state) {
  TORCH_CHECK(symbols.scalar_type() == at::kInt || symbols.scalar_type() == at::kLong, "flowkernels.", op,
              ": argument 'symbols' must be int32 or int64, got ", symbols.scalar_type());
  check_same_device(op, "symbols", symbols, state);
  TORCH_CHECK(symbols.dim() == 2 && symbols.size(0) == lanes, "flowkernels.", op,
              ": argument 'symbols' must have shape [lanes, L] = [", lanes, ", L], got ",
              shape_str(symbols.sizes()));
  return symbols.size(1);
}

// Strides (in rows) of a categorical table [N, L, K+1], [L, K+1] or [K+1].
struct TableLayout {
  int64_t K;             // alphabet size
  int64_t lane_stride;   // elements between lanes (0 when shared)
  int64_t pos_stride;    // elements between positions (0 when shared)
  int64_t rows;          // distinct rows
};

inline TableLayout check_cdf(const char* op, const at::Tensor& cdf, int64_t lanes, int64_t L,
                             const at::Tensor& state) {
  TORCH_CHECK(cdf.scalar_type() == at::kInt, "flowkernels.", op, ": argument 'cdf' must be int32, got ",
              cdf.scalar_type());
  check_same_device(op, "cdf", cdf, state);
  TORCH_CHECK(cdf.dim() >= 1 && cdf.dim() <= 3 && cdf.size(-1) >= 2, "flowkernels.", op,
              ": argument 'cdf' must have shape [lanes, L, K+1], [L, K+1] or [K+1] with K >= 1, got ",
              shape_str(cdf.sizes()));
  const int64_t width = cdf.size(-1);
  if (cdf.dim() == 3) {
    TORCH_CHECK(cdf.size(0) == lanes && cdf.size(1) == L, "flowkernels.", op,
                ": argument 'cdf' [lanes, L, K+1] must match symbols [", lanes, ", ", L, "], got ",
                shape_str(cdf.sizes()));
    return {width - 1, L * width, width, lanes * L};
  }
  if (cdf.dim() == 2) {
    TORCH_CHECK(cdf.size(0) == L, "flowkernels.", op, ": argument 'cdf' [L, K+1] must have L = ", L,
                " rows, got ", shape_str(cdf.sizes()));
    return {width - 1, 0, width, L};
  }
  return {width - 1, 0, 0, 1};
}

// Probability tables for the fused coders: [N, L, K], [L, K] or [K] floats.
inline TableLayout check_probs(const char* op, const at::Tensor& probs, int64_t lanes, int64_t L,
                               const at::Tensor& state) {
  check_floating(op, "probs", probs);
  check_same_device(op, "probs", probs, state);
  TORCH_CHECK(probs.dim() >= 1 && probs.dim() <= 3 && probs.size(-1) >= 1, "flowkernels.", op,
              ": argument 'probs' must have shape [lanes, L, K], [L, K] or [K] with K >= 1, got ",
              shape_str(probs.sizes()));
  const int64_t K = probs.size(-1);
  if (probs.dim() == 3) {
    TORCH_CHECK(probs.size(0) == lanes && probs.size(1) == L, "flowkernels.", op,
                ": argument 'probs' [lanes, L, K] must match symbols [", lanes, ", ", L, "], got ",
                shape_str(probs.sizes()));
    return {K, L * K, K, lanes * L};
  }
  if (probs.dim() == 2) {
    TORCH_CHECK(probs.size(0) == L, "flowkernels.", op, ": argument 'probs' [L, K] must have L = ", L,
                " rows, got ", shape_str(probs.sizes()));
    return {K, 0, K, L};
  }
  return {K, 0, 0, 1};
}

// Logistic parameters: mu / log_scale [N, L] or [N, L, K], logit_pi [N, L, K].
inline int64_t check_logistic_params(const char* op, const at::Tensor& mu, const at::Tensor& log_scale,
                                     const std::optional<at::Tensor>& logit_pi, int64_t lanes, int64_t L,
                                     const at::Tensor& state) {
  check_floating(op, "mu", mu);
  check_same_device(op, "mu", mu, state);
  check_same_dtype(op, "log_scale", log_scale, mu);
  check_same_device(op, "log_scale", log_scale, state);
  TORCH_CHECK((mu.dim() == 2 || mu.dim() == 3) && mu.size(0) == lanes && mu.size(1) == L, "flowkernels.", op,
              ": argument 'mu' must have shape [lanes, L] or [lanes, L, K] = [", lanes, ", ", L, ", ...], got ",
              shape_str(mu.sizes()));
  check_shape(op, "log_scale", log_scale, mu.sizes(), "mu.shape");
  const int64_t K = mu.dim() == 3 ? mu.size(2) : 1;
  TORCH_CHECK_VALUE(K >= 1 && K <= kMaxComponents, "flowkernels.", op, ": mixtures of 1 to ", kMaxComponents,
                    " components are supported, got K = ", K);
  if (logit_pi) {
    check_same_dtype(op, "logit_pi", *logit_pi, mu);
    check_same_device(op, "logit_pi", *logit_pi, state);
    TORCH_CHECK(logit_pi->dim() == 3 && mu.dim() == 3, "flowkernels.", op,
                ": with 'logit_pi', 'mu', 'log_scale' and 'logit_pi' must all be [lanes, L, K]");
    check_shape(op, "logit_pi", *logit_pi, mu.sizes(), "mu.shape");
  } else {
    TORCH_CHECK(K == 1, "flowkernels.", op, ": without 'logit_pi' the mixture has one component, got K = ", K);
  }
  return K;
}

// No NaN or inf in t. On the CPU a parallel scan (isfinite().all() would
// allocate and fill a bool tensor as large as t first).
inline void check_finite(const char* op, const char* arg, const at::Tensor& t) {
  bool ok = true;
  if (t.numel() > 0 && t.device().is_cpu() && t.is_contiguous()) {
    std::atomic<bool> finite{true};
    AT_DISPATCH_FLOATING_TYPES(t.scalar_type(), "check_finite", [&] {
      const scalar_t* p = t.const_data_ptr<scalar_t>();
      at::parallel_for(0, t.numel(), 65536, [&](int64_t begin, int64_t end) {
        bool local = true;
        for (int64_t i = begin; i < end; ++i) local &= std::isfinite(p[i]);
        if (!local) finite = false;
      });
    });
    ok = finite.load();
  } else if (t.numel() > 0) {
    ok = at::isfinite(t).all().item<bool>();
  }
  TORCH_CHECK_VALUE(ok, "flowkernels.", op, ": argument '", arg, "' has NaN or infinite entries");
}

// Every symbol is an int32 value (the escape codes 32 bits).
inline void check_int32_symbols(const char* op, const at::Tensor& symbols) {
  if (symbols.numel() == 0 || symbols.scalar_type() == at::kInt) return;
  bool ok = true;
  if (symbols.device().is_cpu() && symbols.is_contiguous()) {
    std::atomic<bool> fits{true};
    const int64_t* p = symbols.const_data_ptr<int64_t>();
    at::parallel_for(0, symbols.numel(), 65536, [&](int64_t begin, int64_t end) {
      bool local = true;
      for (int64_t i = begin; i < end; ++i) local &= p[i] == static_cast<int32_t>(p[i]);
      if (!local) fits = false;
    });
    ok = fits.load();
  } else {
    ok = symbols.min().item<int64_t>() >= std::numeric_limits<int32_t>::min() &&
         symbols.max().item<int64_t>() <= std::numeric_limits<int32_t>::max();
  }
  TORCH_CHECK_VALUE(ok, "flowkernels.", op, ": symbols must be int32 values");
}

inline LogisticSupport check_support(const char* op, double bin_width, std::optional<int64_t> lower,
                                     std::optional<int64_t> upper, int64_t precision) {
  // Bounded away from 0 and inf: the model divides by it and scales by it, and a width like 5e-324
  // made those infinite (the decoder's search then had no finite guess).
  TORCH_CHECK_VALUE(bin_width >= kMinBinWidth && bin_width <= kMaxBinWidth, "flowkernels.", op,
                    ": 'bin_width' must be in [2^-32, 2^32], got ", bin_width);
  constexpr int64_t kMin = -(int64_t(1) << 31), kMax = (int64_t(1) << 31) - 1;
  for (const auto& bound : {lower, upper}) {
    TORCH_CHECK_VALUE(!bound || (*bound >= kMin && *bound <= kMax), "flowkernels.", op,
                      ": bounds must be int32 symbol indices, got ", *bound);
  }
  if (lower && upper) {
    TORCH_CHECK_VALUE(*lower <= *upper, "flowkernels.", op, ": 'lower' (", *lower, ") must not exceed 'upper' (",
                      *upper, ")");
    TORCH_CHECK_VALUE(2 * (*upper - *lower + 1) + 1 <= (int64_t(1) << precision), "flowkernels.", op, ": ",
                      *upper - *lower + 1, " symbols need a precision of at least ",
                      static_cast<int64_t>(std::ceil(std::log2(2.0 * (*upper - *lower + 1) + 1))), ", got ",
                      precision);
  }
  return {lower.has_value(), upper.has_value(), static_cast<double>(lower.value_or(0)),
          static_cast<double>(upper.value_or(0)), bin_width,
          static_cast<int>(precision)};
}

// ---------------------------------------------------------------------------
// The checks each op starts with, on any device. `symbols` is null for pops,
// whose length comes from `count` (tables) or the parameters (logistic).

struct TableCall {
  int64_t lanes, L;
  TableLayout table;
};

// Categorical ops: cdf tables (probs = false) or float probabilities (probs = true).
inline TableCall check_table_call(const char* op, c10::DeviceType device, const at::Tensor& state,
                                  const at::Tensor& words, const at::Tensor& lengths, const at::Tensor* symbols,
                                  int64_t count, const at::Tensor& table, int64_t precision, bool probs) {
  const int64_t lanes = check_coder(op, device, state, words, lengths);
  check_precision(op, precision, 1);
  int64_t L = count;
  if (symbols != nullptr) {
    L = check_symbols(op, *symbols, lanes, state);
  } else {
    TORCH_CHECK_VALUE(count >= 0, "flowkernels.", op, ": 'count' must be >= 0, got ", count);
  }
  const TableLayout layout = probs ? check_probs(op, table, lanes, L, state) : check_cdf(op, table, lanes, L, state);
  TORCH_CHECK_VALUE(layout.K <= (int64_t(1) << precision), "flowkernels.", op, ": ", layout.K,
                    " symbols do not fit in precision ", precision, " (at most 2^precision)");
  return {lanes, L, layout};
}

struct LogisticCall {
  int64_t lanes, L, K;
  LogisticSupport support;
};

inline LogisticCall check_logistic_call(const char* op, c10::DeviceType device, const at::Tensor& state,
                                        const at::Tensor& words, const at::Tensor& lengths,
                                        const at::Tensor* symbols, const at::Tensor& mu, const at::Tensor& log_scale,
                                        const std::optional<at::Tensor>& logit_pi, double bin_width,
                                        std::optional<int64_t> lower, std::optional<int64_t> upper,
                                        int64_t precision) {
  const int64_t lanes = check_coder(op, device, state, words, lengths);
  check_precision(op, precision, 8);
  int64_t L;
  if (symbols != nullptr) {
    L = check_symbols(op, *symbols, lanes, state);
  } else {
    TORCH_CHECK(mu.dim() >= 2, "flowkernels.", op, ": argument 'mu' must be [lanes, L] or [lanes, L, K], got ",
                shape_str(mu.sizes()));
    L = mu.size(1);
  }
  const int64_t K = check_logistic_params(op, mu, log_scale, logit_pi, lanes, L, state);
  const LogisticSupport support = check_support(op, bin_width, lower, upper, precision);
  check_finite(op, "mu", mu);
  check_finite(op, "log_scale", log_scale);
  if (logit_pi) check_finite(op, "logit_pi", *logit_pi);
  if (symbols != nullptr) check_int32_symbols(op, *symbols);
  return {lanes, L, K, support};
}

// quantize_pdf: float [..., K] with 1 <= K <= 2^precision; returns K.
inline int64_t check_quantize_call(const char* op, c10::DeviceType device, const at::Tensor& probs,
                                   int64_t precision) {
  check_floating(op, "probs", probs);
  check_device(op, "probs", probs, device);
  check_precision(op, precision, 1);
  TORCH_CHECK(probs.dim() >= 1 && probs.size(-1) >= 1, "flowkernels.", op,
              ": argument 'probs' must have a last dimension of K >= 1 symbols, got ", shape_str(probs.sizes()));
  const int64_t K = probs.size(-1);
  TORCH_CHECK_VALUE(K <= (int64_t(1) << precision), "flowkernels.", op, ": ", K, " symbols do not fit in precision ",
                    precision, " (at most 2^precision)");
  return K;
}

// What a row of probabilities (or logits) must be, for error messages.
constexpr const char* kValidProbabilities =
    "distribution (NaN, inf or negative entries, no positive entry, or all entries below 2.5e-32: rescale it)";
constexpr const char* kValidLogits = "set of logits (NaN or +inf, or all -inf)";

inline void check_quantized_rows(const char* op, int64_t bad_row, bool logits) {
  TORCH_CHECK_VALUE(bad_row == kNoError, "flowkernels.", op, ": row ", bad_row, " is not a valid ",
                    logits ? kValidLogits : kValidProbabilities);
}

inline void check_room(const char* op, const at::Tensor& words, const at::Tensor& lengths, int64_t needed) {
  const int64_t longest = lengths.numel() ? lengths.max().item<int64_t>() : 0;
  TORCH_CHECK(longest + needed <= words.size(1), "flowkernels.", op, ": 'words' has room for ",
              words.size(1) - longest, " more words per lane, this push may need ", needed,
              " (RansCoder grows it; call the op through flowkernels.rans)");
}

inline void check_not_exhausted(const char* op, int64_t exhausted_lane) {
  TORCH_CHECK_VALUE(exhausted_lane == kNoError, "flowkernels.", op, ": lane ", exhausted_lane,
                    " ran out of data: the stream does not match the model it is decoded with "
                    "(or was truncated)");
}

}  // namespace rans
}  // namespace flowkernels
