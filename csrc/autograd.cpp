// Autograd for the flowkernels ops, registered once for every device
// (dispatch key Autograd). Each forward redispatches below autograd to the
// CPU/CUDA kernel (or the fake kernel while tracing); each backward calls
// backward ops through the dispatcher, so torch.compile traces them too.
//
// Written in C++ rather than with torch.library.register_autograd because the
// Python route costs ~15-30 us of interpreter work per call, which is longer
// than the whole kernel for the elementwise ops at IDF's sizes.
#include <ATen/core/dispatch/Dispatcher.h>
#include <torch/autograd.h>
#include <torch/library.h>

namespace flowkernels {
namespace {

using torch::autograd::AutogradContext;
using torch::autograd::variable_list;

template <typename Signature>
c10::TypedOperatorHandle<Signature> find_op(const char* name) {
  return c10::Dispatcher::singleton().findSchemaOrThrow(name, "").typed<Signature>();
}

// ---- round_ste: identity gradient (straight-through estimator) --------------

class RoundSTE : public torch::autograd::Function<RoundSTE> {
 public:
  static at::Tensor forward(AutogradContext*, const at::Tensor& x) {
    at::AutoDispatchBelowADInplaceOrView guard;
    static const auto op = find_op<at::Tensor(const at::Tensor&)>("flowkernels::round_ste");
    return op.call(x);
  }
  static variable_list backward(AutogradContext*, variable_list grads) { return {grads[0]}; }
};

at::Tensor round_ste_autograd(const at::Tensor& x) { return RoundSTE::apply(x); }

// ---- integer_coupling: identity to x, straight-through (+-1) to t -----------

class IntegerCoupling : public torch::autograd::Function<IntegerCoupling> {
 public:
  static at::Tensor forward(AutogradContext* ctx, const at::Tensor& x, const at::Tensor& t,
                            bool inverse, double scale) {
    at::AutoDispatchBelowADInplaceOrView guard;
    static const auto op = find_op<at::Tensor(const at::Tensor&, const at::Tensor&, bool, double)>(
        "flowkernels::integer_coupling");
    ctx->saved_data["inverse"] = inverse;
    return op.call(x, t, inverse, scale);
  }
  static variable_list backward(AutogradContext* ctx, variable_list grads) {
    const at::Tensor& grad = grads[0];
    const bool inverse = ctx->saved_data["inverse"].toBool();
    return {grad, inverse ? -grad : grad, at::Tensor(), at::Tensor()};
  }
};

at::Tensor integer_coupling_autograd(const at::Tensor& x, const at::Tensor& t, bool inverse,
                                     double scale) {
  return IntegerCoupling::apply(x, t, inverse, scale);
}

// ---- discretized_logistic_logp: fused backward op ----------------------------

using LogisticSignature = at::Tensor(const at::Tensor&, const at::Tensor&, const at::Tensor&,
                                     const std::optional<at::Tensor>&, double,
                                     std::optional<double>, std::optional<double>);
using LogisticBackwardSignature = std::tuple<at::Tensor, at::Tensor, at::Tensor>(
    const at::Tensor&, const at::Tensor&, const at::Tensor&, const at::Tensor&,
    const std::optional<at::Tensor>&, double, std::optional<double>, std::optional<double>);

class DiscretizedLogistic : public torch::autograd::Function<DiscretizedLogistic> {
 public:
  static at::Tensor forward(AutogradContext* ctx, const at::Tensor& x, const at::Tensor& mu,
                            const at::Tensor& log_scale, const std::optional<at::Tensor>& logit_pi,
                            double bin_width, std::optional<double> lower,
                            std::optional<double> upper) {
    at::AutoDispatchBelowADInplaceOrView guard;
    static const auto op = find_op<LogisticSignature>("flowkernels::discretized_logistic_logp");
    ctx->save_for_backward({x, mu, log_scale, logit_pi.value_or(at::Tensor())});
    ctx->saved_data["bin_width"] = bin_width;
    ctx->saved_data["lower"] = lower;
    ctx->saved_data["upper"] = upper;
    return op.call(x, mu, log_scale, logit_pi, bin_width, lower, upper);
  }

  static variable_list backward(AutogradContext* ctx, variable_list grads) {
    static const auto op =
        find_op<LogisticBackwardSignature>("flowkernels::discretized_logistic_logp_backward");
    const auto saved = ctx->get_saved_variables();
    const at::Tensor &x = saved[0], &mu = saved[1], &log_scale = saved[2], &logit_pi = saved[3];
    const std::optional<at::Tensor> pi =
        logit_pi.defined() ? std::optional<at::Tensor>(logit_pi) : std::nullopt;
    auto [grad_mu, grad_log_scale, grad_logit_pi] =
        op.call(grads[0], x, mu, log_scale, pi, ctx->saved_data["bin_width"].toDouble(),
                ctx->saved_data["lower"].toOptional<double>(),
                ctx->saved_data["upper"].toOptional<double>());
    // The bin is centred at x, so moving x moves every component like -mu.
    at::Tensor grad_x = ctx->needs_input_grad(0) ? -grad_mu.sum(-1) : at::Tensor();
    return {grad_x,
            grad_mu,
            grad_log_scale,
            pi ? grad_logit_pi : at::Tensor(),
            at::Tensor(),
            at::Tensor(),
            at::Tensor()};
  }
};

at::Tensor discretized_logistic_logp_autograd(const at::Tensor& x, const at::Tensor& mu,
                                              const at::Tensor& log_scale,
                                              const std::optional<at::Tensor>& logit_pi,
                                              double bin_width, std::optional<double> lower,
                                              std::optional<double> upper) {
  return DiscretizedLogistic::apply(x, mu, log_scale, logit_pi, bin_width, lower, upper);
}

}  // namespace

TORCH_LIBRARY_IMPL(flowkernels, Autograd, m) {
  m.impl("round_ste", &round_ste_autograd);
  m.impl("integer_coupling", &integer_coupling_autograd);
  m.impl("discretized_logistic_logp", &discretized_logistic_logp_autograd);
}

}  // namespace flowkernels
