// Autograd for the flowkernels ops, registered once for every device
// (dispatch key Autograd). Each forward redispatches below autograd to the
// CPU/CUDA kernel (or the fake kernel while tracing); each backward calls
// backward ops through the dispatcher, so torch.compile traces them too.
//
// Written in C++ rather than with torch.library.register_autograd because the
// Python route costs ~15-30 us of interpreter work per call, which is longer
// than the whole kernel for the elementwise ops at IDF's sizes.
#include "arconv.h"
#include "hex.h"

#include <ATen/ATen.h>
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

// ---- ar_conv2d_inverse: the backward is the transposed triangular solve -------
//
// x = A^-1 (y - b), where A is the masked convolution. Then
//   dL/dy = A^-T dL/dx, and A^T is itself an autoregressive convolution with
//   the opposite order: weight W^T[c_in, c_out] flipped in space, reverse
//   flipped (its mask maps onto the same entries of W), so it is one more
//   ar_conv2d_inverse call;
//   dL/db = -sum dL/dy over batch and pixels;
//   dL/dW = -(weight gradient of conv2d(x, W * M) for grad_output dL/dy) * M.

using ArConvInverseSignature = at::Tensor(const at::Tensor&, const at::Tensor&,
                                          const std::optional<at::Tensor>&, bool);

class ArConv2dInverse : public torch::autograd::Function<ArConv2dInverse> {
 public:
  static at::Tensor forward(AutogradContext* ctx, const at::Tensor& y, const at::Tensor& weight,
                            const std::optional<at::Tensor>& bias, bool reverse) {
    at::Tensor x;
    {
      at::AutoDispatchBelowADInplaceOrView guard;
      x = inverse_op().call(y, weight, bias, reverse);
    }
    ctx->save_for_backward({x, weight});
    ctx->saved_data["reverse"] = reverse;
    ctx->saved_data["has_bias"] = bias.has_value();
    return x;
  }

  static variable_list backward(AutogradContext* ctx, variable_list grads) {
    const auto saved = ctx->get_saved_variables();
    const at::Tensor &x = saved[0], &weight = saved[1];
    const bool reverse = ctx->saved_data["reverse"].toBool();
    const at::Tensor transposed = weight.transpose(0, 1).flip({2, 3});
    const at::Tensor grad_y = inverse_op().call(grads[0], transposed, std::nullopt, !reverse);
    at::Tensor grad_weight, grad_bias;
    if (ctx->needs_input_grad(1)) {
      const int64_t C = weight.size(0), k = weight.size(2);
      const at::Tensor mask = ar_conv2d_mask(C, k, reverse, weight.options());
      auto grads_conv = at::convolution_backward(
          grad_y, x, weight * mask, /*bias_sizes=*/std::nullopt, /*stride=*/{1, 1},
          /*padding=*/{k / 2, k / 2}, /*dilation=*/{1, 1}, /*transposed=*/false,
          /*output_padding=*/{0, 0}, /*groups=*/1, /*output_mask=*/{false, true, false});
      grad_weight = -std::get<1>(grads_conv) * mask;
    }
    if (ctx->saved_data["has_bias"].toBool() && ctx->needs_input_grad(2))
      grad_bias = -grad_y.sum({0, 2, 3});
    return {grad_y, grad_weight, grad_bias, at::Tensor()};
  }

 private:
  static const c10::TypedOperatorHandle<ArConvInverseSignature>& inverse_op() {
    static const auto op = find_op<ArConvInverseSignature>("flowkernels::ar_conv2d_inverse");
    return op;
  }
};

at::Tensor ar_conv2d_inverse_autograd(const at::Tensor& y, const at::Tensor& weight,
                                      const std::optional<at::Tensor>& bias, bool reverse) {
  return ArConv2dInverse::apply(y, weight, bias, reverse);
}

// ---- hex_conv2d: input gradient is a hex_conv2d, weight gradient an op of its own ----

using HexConvSignature = at::Tensor(const at::Tensor&, const at::Tensor&,
                                    const std::optional<at::Tensor>&);

class HexConv2d : public torch::autograd::Function<HexConv2d> {
 public:
  static at::Tensor forward(AutogradContext* ctx, const at::Tensor& x, const at::Tensor& weight,
                            const std::optional<at::Tensor>& bias) {
    at::AutoDispatchBelowADInplaceOrView guard;
    ctx->save_for_backward({x, weight});
    ctx->saved_data["has_bias"] = bias.has_value();
    return conv_op().call(x, weight, bias);
  }

  static variable_list backward(AutogradContext* ctx, variable_list grads) {
    const auto saved = ctx->get_saved_variables();
    const at::Tensor &x = saved[0], &weight = saved[1], &grad = grads[0];
    const int64_t k = weight.size(2);
    at::Tensor grad_x, grad_weight, grad_bias;
    // The hexagonal mask is symmetric under (du, dv) -> (-du, -dv): the
    // transposed convolution is a hex_conv2d with the flipped, transposed weight.
    if (ctx->needs_input_grad(0))
      grad_x = conv_op().call(grad, weight.transpose(0, 1).flip({2, 3}), std::nullopt);
    if (ctx->needs_input_grad(1)) grad_weight = weight_backward_op().call(grad, x, k);
    if (ctx->saved_data["has_bias"].toBool() && ctx->needs_input_grad(2))
      grad_bias = grad.sum({0, 2, 3});
    return {grad_x, grad_weight, grad_bias};
  }

 private:
  static const c10::TypedOperatorHandle<HexConvSignature>& conv_op() {
    static const auto op = find_op<HexConvSignature>("flowkernels::hex_conv2d");
    return op;
  }
  static const c10::TypedOperatorHandle<at::Tensor(const at::Tensor&, const at::Tensor&, int64_t)>&
  weight_backward_op() {
    static const auto op = find_op<at::Tensor(const at::Tensor&, const at::Tensor&, int64_t)>(
        "flowkernels::hex_conv2d_weight_backward");
    return op;
  }
};

at::Tensor hex_conv2d_autograd(const at::Tensor& x, const at::Tensor& weight,
                               const std::optional<at::Tensor>& bias) {
  return HexConv2d::apply(x, weight, bias);
}

// ---- hex_filter_transform: the backward is a gather-reduce op -------------------

class HexFilterTransform : public torch::autograd::Function<HexFilterTransform> {
 public:
  static at::Tensor forward(AutogradContext* ctx, const at::Tensor& weight, const at::Tensor& index,
                            const at::Tensor& inverse_index) {
    at::AutoDispatchBelowADInplaceOrView guard;
    static const auto op =
        find_op<at::Tensor(const at::Tensor&, const at::Tensor&, const at::Tensor&)>(
            "flowkernels::hex_filter_transform");
    ctx->save_for_backward({inverse_index});
    return op.call(weight, index, inverse_index);
  }

  static variable_list backward(AutogradContext* ctx, variable_list grads) {
    static const auto op = find_op<at::Tensor(const at::Tensor&, const at::Tensor&)>(
        "flowkernels::hex_filter_transform_backward");
    return {op.call(grads[0], ctx->get_saved_variables()[0]), at::Tensor(), at::Tensor()};
  }
};

at::Tensor hex_filter_transform_autograd(const at::Tensor& weight, const at::Tensor& index,
                                         const at::Tensor& inverse_index) {
  return HexFilterTransform::apply(weight, index, inverse_index);
}

}  // namespace

TORCH_LIBRARY_IMPL(flowkernels, Autograd, m) {
  m.impl("round_ste", &round_ste_autograd);
  m.impl("integer_coupling", &integer_coupling_autograd);
  m.impl("discretized_logistic_logp", &discretized_logistic_logp_autograd);
  m.impl("ar_conv2d_inverse", &ar_conv2d_inverse_autograd);
  m.impl("hex_conv2d", &hex_conv2d_autograd);
  m.impl("hex_filter_transform", &hex_filter_transform_autograd);
}

}  // namespace flowkernels
