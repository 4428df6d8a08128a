// The coupling kernel family: round_ste, integer_coupling and the discretized
// logistic mixture likelihood.
//
// This header holds what the CPU and CUDA kernels share: input validation and
// the per-element arithmetic. The arithmetic is written once, templated on a
// `Math` policy (exp/log/expm1), so that both devices evaluate the same
// formulas: CUDA with its libdevice functions, the CPU with the vectorisable
// functions of cpu/fastmath.h (float) or the C library (double).
#pragma once

#include "common.h"

#include <c10/util/Optional.h>

#include <cmath>
#include <limits>


namespace flowkernels {

// ---------------------------------------------------------------------------
// Validation (host only).

// A positive scale that stays a positive normal number, with a finite reciprocal, once converted to
// the working dtype: 5e-324 passes a float64 check but is 0 in float32 (then 1/0, NaN results).
inline void check_positive_in(const char* op, const char* arg, double value, at::ScalarType dtype) {
  const bool single = dtype == at::kFloat;
  const double smallest = single ? std::numeric_limits<float>::min() : std::numeric_limits<double>::min();
  const double largest = single ? std::numeric_limits<float>::max() : std::numeric_limits<double>::max();
  TORCH_CHECK_VALUE(value >= smallest && value <= largest, "flowkernels.", op, ": argument '", arg,
                    "' must be positive, finite and a normal ", dtype, " number (in [", smallest, ", ", largest,
                    "]), got ", value);
}

inline void check_integer_coupling_args(const char* op, c10::DeviceType device, const at::Tensor& x,
                                        const at::Tensor& t, double scale) {
  check_floating(op, "x", x);
  check_device(op, "x", x, device);
  check_same_dtype(op, "t", t, x);
  check_same_device(op, "t", t, x);
  check_shape(op, "t", t, x.sizes(), "x.shape");
  check_positive_in(op, "scale", scale, x.scalar_type());
}

struct LogisticShape {
  int64_t rows;        // number of elements of x
  int64_t components;  // K, the mixture size (last dimension of mu)
};

// Checks the arguments of discretized_logistic_logp (and, with grad, of its
// backward) and returns its sizes. Shapes: x [...], mu / log_scale / logit_pi [..., K].
inline LogisticShape check_logistic_args(const char* op, c10::DeviceType device,
                                         const at::Tensor& x, const at::Tensor& mu,
                                         const at::Tensor& log_scale,
                                         const std::optional<at::Tensor>& logit_pi,
                                         double bin_width, const at::Tensor* grad = nullptr) {
  check_floating(op, "x", x);
  check_device(op, "x", x, device);
  if (grad != nullptr) {  // the backward op's incoming gradient, shaped like x
    check_same_dtype(op, "grad", *grad, x);
    check_same_device(op, "grad", *grad, x);
    check_shape(op, "grad", *grad, x.sizes(), "x.shape");
  }
  const at::Tensor* params[] = {&mu, &log_scale};
  const char* names[] = {"mu", "log_scale"};
  for (int i = 0; i < 2; ++i) {
    check_same_dtype(op, names[i], *params[i], x);
    check_same_device(op, names[i], *params[i], x);
  }
  TORCH_CHECK(mu.dim() == x.dim() + 1, "flowkernels.", op,
              ": argument 'mu' must have shape x.shape + [K] (", x.dim() + 1,
              " dimensions), got ", shape_str(mu.sizes()));
  std::vector<int64_t> expected(x.sizes().begin(), x.sizes().end());
  expected.push_back(mu.size(-1));
  check_shape(op, "mu", mu, expected, "x.shape + [K]");
  check_shape(op, "log_scale", log_scale, expected, "x.shape + [K]");
  if (logit_pi.has_value()) {
    check_same_dtype(op, "logit_pi", *logit_pi, x);
    check_same_device(op, "logit_pi", *logit_pi, x);
    check_shape(op, "logit_pi", *logit_pi, expected, "x.shape + [K]");
  } else {
    TORCH_CHECK(mu.size(-1) == 1, "flowkernels.", op,
                ": without 'logit_pi' the mixture has one component, so 'mu' must have "
                "last dimension 1, got ", mu.size(-1));
  }
  TORCH_CHECK_VALUE(mu.size(-1) >= 1 || x.numel() == 0, "flowkernels.", op,
                    ": the mixture needs at least one component (K >= 1), got K = 0");
  check_positive_in(op, "bin_width", bin_width, x.scalar_type());
  return {x.numel(), mu.size(-1)};
}

// ---------------------------------------------------------------------------
// Per-element arithmetic (host and device).

// Round half to even (IEEE default rounding mode), keeping the sign of zero:
// the same bits as torch.round on every input, NaN and inf included. On the
// CPU's AVX2 clone this is one vroundps.
template <typename T>
FK_HOST_DEVICE T round_half_even(T x) {
#ifdef __CUDA_ARCH__
  return ::rint(x);
#else
  return std::nearbyint(x);
#endif
}

template <typename T>
FK_HOST_DEVICE T integer_shift(T x, T t, bool inverse, T scale) {
  const T shift = round_half_even(t * scale) / scale;
  return inverse ? x - shift : x + shift;
}

// The edge bins of a bounded variable take all the tail mass on their side.
// A bin at x has a lower boundary iff x > lower and an upper one iff x < upper;
// an unbounded side uses -inf / +inf, so the test is branch-free either way.
template <typename T>
struct BinEdges {
  T lower, upper;
};

template <typename T>
inline BinEdges<T> make_bin_edges(const std::optional<double>& lower,
                                  const std::optional<double>& upper) {
  constexpr double inf = std::numeric_limits<double>::infinity();
  return {static_cast<T>(lower.value_or(-inf)), static_cast<T>(upper.value_or(inf))};
}

// Per-component log-probability of the bin [x - w/2, x + w/2) under a logistic
// with location mu and log-scale log_scale, and (with WithGrad) its partial
// derivatives with respect to mu and log_scale.
//
// With a = (x - mu - w/2) / s and b = (x - mu + w/2) / s, the interior bin is
//   log(sigmoid(b) - sigmoid(a)) = log sigmoid(b) + log sigmoid(-a) + log(1 - exp(a - b)),
// a sum of three terms that are each finite for any |x - mu| / s, so far tails
// neither underflow to -inf nor give NaN. The three logarithms are fused into
// one: -log((1 + e^-|a|) (1 + e^-|b|) / (1 - e^-(b - a))) with the linear parts
// of the softplus terms kept outside.
template <class Math, bool WithGrad, typename T>
FK_HOST_DEVICE T logistic_bin_logp(T x, T mu, T log_scale, T bin_width, BinEdges<T> edges,
                                   T* dmu, T* dlog_scale) {
  const T inv_s = Math::exp(-log_scale);
  const T centred = x - mu;
  const T a = (centred - T(0.5) * bin_width) * inv_s;
  const T b = (centred + T(0.5) * bin_width) * inv_s;
  const T r = bin_width * inv_s;  // b - a
  // use_a: the bin has a lower boundary (it is not the lower edge bin); use_b likewise.
  // (& rather than && below keeps the arithmetic free of branches.)
  const bool use_a = x > edges.lower;
  const bool use_b = x < edges.upper;
  const bool interior = use_a & use_b;
  const T ea = Math::exp(-(a < T(0) ? -a : a));
  const T eb = Math::exp(-(b < T(0) ? -b : b));
  const T one_minus_exp = -Math::expm1(-r);  // 1 - e^-(b - a), in (0, 1]
  const T linear = (use_a ? (a > T(0) ? a : T(0)) : T(0)) + (use_b ? (b < T(0) ? -b : T(0)) : T(0));
  const T ratio = (use_a ? T(1) + ea : T(1)) * (use_b ? T(1) + eb : T(1)) /
                  (interior ? one_minus_exp : T(1));
  const T logp = -linear - Math::log(ratio);
  if constexpr (WithGrad) {
    // sigmoid(a) and sigmoid(-b) from the same exponentials.
    const T sig_a = (a >= T(0) ? T(1) : ea) / (T(1) + ea);
    const T sig_neg_b = (b >= T(0) ? eb : T(1)) / (T(1) + eb);
    const T d_da = use_a ? -sig_a : T(0);     // d logp / da, without the coupling term
    const T d_db = use_b ? sig_neg_b : T(0);  // d logp / db, likewise
    // The term log(1 - e^-(b - a)) depends on r alone, so it drops out of the
    // mu derivative and adds -r / expm1(r) (-> -1 as r -> 0) to the log-scale one.
    // r / expm1(r) is 0 once expm1 overflows, as it should be.
    const T expm1_r = Math::expm1(r);  // computed unconditionally: selects vectorise, branches do not
    const T r_term = interior ? (r > T(0) ? r / expm1_r : T(1)) : T(0);
    // A NaN x makes both edge tests false, which would zero every term: NaN must stay NaN.
    *dmu = x != x ? x : -inv_s * (d_da + d_db);
    *dlog_scale = x != x ? x : -(a * d_da + b * d_db) - r_term;
  }
  // A NaN x fails both edge tests (use_a, use_b), which would drop every term and give
  // log-probability 0; the mixture and the reference give NaN. (A NaN mu or log_scale
  // reaches logp through a and b already.) A select, not a branch: it vectorises.
  return x != x ? x : logp;
}

}  // namespace flowkernels
