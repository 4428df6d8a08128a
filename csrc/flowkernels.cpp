// The flowkernels operator library: every op schema in one greppable place,
// plus the small Python module that reports how the extension was built.
//
// Kernels register themselves per dispatch key in cpu/<family>.cpp and
// cuda/<family>.cu, autograd (for every device) in autograd.cpp; fake (meta)
// kernels are registered from Python in flowkernels/ops/<family>.py.
#include "cpu_isa.h"

#include <torch/extension.h>
#include <torch/library.h>

#include <string>

// Versions arrive from setup.py as numbers (strings do not survive the build
// tools' quoting).
#define FK_STR2(x) #x
#define FK_STR(x) FK_STR2(x)

TORCH_LIBRARY(flowkernels, m) {
  // ---- coupling family -----------------------------------------------------
  m.def("round_ste(Tensor x) -> Tensor");
  m.def("integer_coupling(Tensor x, Tensor t, *, bool inverse=False, float scale=1.0) -> Tensor");
  m.def(
      "discretized_logistic_logp(Tensor x, Tensor mu, Tensor log_scale, Tensor? logit_pi, *, "
      "float bin_width=1.0, float? lower=None, float? upper=None) -> Tensor");
  m.def(
      "discretized_logistic_logp_backward(Tensor grad, Tensor x, Tensor mu, Tensor log_scale, "
      "Tensor? logit_pi, *, float bin_width=1.0, float? lower=None, float? upper=None) "
      "-> (Tensor grad_mu, Tensor grad_log_scale, Tensor grad_logit_pi)");

  // ---- context family ----------------------------------------------------------
  // A classical adaptive coder of uint8 images [C, H, W] to bytes and back (CPU).
  m.def("context_encode(Tensor image) -> Tensor");
  m.def("context_decode(Tensor data, int channels, int height, int width) -> Tensor");

  // ---- rans family ------------------------------------------------------------
  // A coder is (state int64 [N], words int32 [N, capacity], lengths int64 [N]);
  // pushes and pops update it in place (flowkernels.rans.RansCoder owns one).
  m.def(
      "rans_push_categorical(Tensor(a!) state, Tensor(b!) words, Tensor(c!) lengths, Tensor symbols, "
      "Tensor cdf, int precision, bool validate=True) -> ()");
  m.def(
      "rans_pop_categorical(Tensor(a!) state, Tensor words, Tensor(c!) lengths, Tensor cdf, int precision, "
      "int count) -> Tensor");
  m.def(
      "rans_push_logistic(Tensor(a!) state, Tensor(b!) words, Tensor(c!) lengths, Tensor symbols, Tensor mu, "
      "Tensor log_scale, Tensor? logit_pi, float bin_width, int? lower, int? upper, int precision) -> ()");
  m.def(
      "rans_pop_logistic(Tensor(a!) state, Tensor words, Tensor(c!) lengths, Tensor mu, Tensor log_scale, "
      "Tensor? logit_pi, float bin_width, int? lower, int? upper, int precision) -> Tensor");
  m.def("rans_quantize_pdf(Tensor probs, int precision, bool logits) -> Tensor");
  // Fused: quantize float probabilities [N, L, K] / [L, K] / [K] exactly like
  // rans_quantize_pdf and code with them, without materialising the tables.
  m.def(
      "rans_push_probs(Tensor(a!) state, Tensor(b!) words, Tensor(c!) lengths, Tensor symbols, Tensor probs, "
      "int precision) -> ()");
  m.def(
      "rans_pop_probs(Tensor(a!) state, Tensor words, Tensor(c!) lengths, Tensor probs, int precision, int count) "
      "-> Tensor");
  // ---- arconv family -----------------------------------------------------------
  // ar_conv2d is CompositeImplicitAutograd (a masked torch conv2d, csrc/arconv.cpp);
  // its inverse is a triangular solve with CPU and CUDA kernels.
  m.def("ar_conv2d(Tensor x, Tensor weight, Tensor? bias=None, *, bool reverse=False) -> Tensor");
  m.def("ar_conv2d_inverse(Tensor y, Tensor weight, Tensor? bias=None, *, bool reverse=False) -> Tensor");

  // ---- hex family --------------------------------------------------------------
  // Planar hexagonal convolution over the live taps of a [O, I, 2R+1, 2R+1] weight.
  m.def("hex_conv2d(Tensor x, Tensor weight, Tensor? bias=None) -> Tensor");
  // Its weight gradient [O, I, k, k] for grad [B, O, H, W] and x [B, I, H, W] (zero at the corners).
  m.def("hex_conv2d_weight_backward(Tensor grad, Tensor x, int kernel_size) -> Tensor");
  // Group-convolution filter expansion: weight [O, I, S] -> [O, G, I, S] by the
  // table index [G, S] (-1: zero); inverse_index [G, S] drives the backward.
  m.def("hex_filter_transform(Tensor weight, Tensor index, Tensor inverse_index) -> Tensor");
  m.def("hex_filter_transform_backward(Tensor grad, Tensor inverse_index) -> Tensor");

  // ---- intconv family --------------------------------------------------------------
  // Integer convolution with fixed-point rescaling (csrc/intconv.h): x int16, weight int8,
  // bias / multiplier / shift int32 [O]; out = clamp(round(acc * m / 2^s), out_min, out_max).
  m.def(
      "int_conv2d(Tensor x, Tensor weight, Tensor bias, Tensor multiplier, Tensor shift, *, int padding, "
      "int out_min, int out_max, ScalarType out_dtype) -> Tensor");
}

PYBIND11_MODULE(TORCH_EXTENSION_NAME, module) {
  module.doc() = "flowkernels compiled kernels (ops are under torch.ops.flowkernels)";
  module.def(
      "has_cuda_kernels", [] {
#ifdef FLOWKERNELS_WITH_CUDA
        return true;
#else
        return false;
#endif
      },
      "Whether CUDA kernels were compiled into this build.");
  module.def(
      "built_cuda_version",
      [] {
#ifdef FLOWKERNELS_WITH_CUDA
        return std::string(FK_STR(FLOWKERNELS_CUDA_MAJOR) "." FK_STR(FLOWKERNELS_CUDA_MINOR));
#else
        return std::string();
#endif
      },
      "torch.version.cuda of the torch this extension was built against ('' for CPU builds).");
  module.def(
      "built_torch_version",
      [] { return std::string(FK_STR(FLOWKERNELS_TORCH_MAJOR) "." FK_STR(FLOWKERNELS_TORCH_MINOR)); },
      "major.minor of the torch this extension was built against.");
  module.def(
      "cpu_isa_supported", [] { return std::string(flowkernels::cpu_isa_name(flowkernels::cpu_isa_supported())); },
      "The highest instruction-set path of the CPU kernels that this CPU can run.");
  module.def(
      "cpu_isa", [] { return std::string(flowkernels::cpu_isa_name(flowkernels::cpu_isa())); },
      "The instruction-set path the CPU kernels use now.");
  module.def(
      "set_cpu_isa",
      [](const std::string& ceiling) {
        using flowkernels::CpuIsa;
        for (const CpuIsa isa : {CpuIsa::kBaseline, CpuIsa::kAvx2, CpuIsa::kAvx512})
          if (ceiling == flowkernels::cpu_isa_name(isa))
            return std::string(flowkernels::cpu_isa_name(flowkernels::set_cpu_isa_ceiling(isa)));
        throw pybind11::value_error("unknown CPU instruction-set path '" + ceiling +
                                    "': expected baseline, avx2 or avx512");
      },
      "Caps the CPU kernels' instruction-set path at `ceiling` (baseline, avx2 or avx512); returns the path now "
      "in effect, min(ceiling, cpu_isa_supported()).");
}
