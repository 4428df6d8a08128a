// Input checks shared by every flowkernels op.
//
// Every message names the op, the argument, what was expected and what was
// given, so a user reading a traceback knows what to change without reading
// kernel code. Checks throw c10::Error, which Python sees as RuntimeError
// (or ValueError for FK_CHECK_VALUE).
#pragma once

#include <ATen/core/Tensor.h>
#include <c10/util/Exception.h>

#include <optional>
#include <sstream>
#include <string>

// Functions shared by CPU and CUDA kernels.
#ifdef __CUDACC__
#define FK_HOST_DEVICE __host__ __device__ __forceinline__
#else
#define FK_HOST_DEVICE inline __attribute__((always_inline))
#endif

namespace flowkernels {

inline std::string shape_str(c10::IntArrayRef sizes) {
  std::ostringstream out;
  out << "[";
  for (size_t i = 0; i < sizes.size(); ++i) out << (i ? ", " : "") << sizes[i];
  out << "]";
  return out.str();
}

// float32 or float64, the dtypes every floating-point op supports.
inline void check_floating(const char* op, const char* arg, const at::Tensor& t) {
  TORCH_CHECK(t.scalar_type() == at::kFloat || t.scalar_type() == at::kDouble,
              "flowkernels.", op, ": argument '", arg,
              "' must be float32 or float64, got ", t.scalar_type());
}

inline void check_same_dtype(const char* op, const char* arg, const at::Tensor& t,
                             const at::Tensor& like, const char* like_name = "x") {
  TORCH_CHECK(t.scalar_type() == like.scalar_type(), "flowkernels.", op, ": argument '", arg,
              "' must have dtype ", like.scalar_type(), " like '", like_name, "', got ",
              t.scalar_type());
}

inline void check_same_device(const char* op, const char* arg, const at::Tensor& t,
                              const at::Tensor& like, const char* like_name = "x") {
  TORCH_CHECK(t.device() == like.device(), "flowkernels.", op, ": argument '", arg,
              "' must be on ", like.device(), " like '", like_name, "', got ", t.device());
}

inline void check_shape(const char* op, const char* arg, const at::Tensor& t,
                        c10::IntArrayRef expected, const char* expected_desc) {
  TORCH_CHECK(t.sizes() == expected, "flowkernels.", op, ": argument '", arg, "' must have shape ",
              expected_desc, " = ", shape_str(expected), ", got ", shape_str(t.sizes()));
}

inline void check_device(const char* op, const char* arg, const at::Tensor& t,
                         c10::DeviceType expected) {
  TORCH_CHECK(t.device().type() == expected, "flowkernels.", op, ": argument '", arg,
              "' must be a ", c10::DeviceTypeName(expected), " tensor for this kernel, got ",
              t.device());
}

inline std::optional<at::Tensor> contiguous_opt(const std::optional<at::Tensor>& t) {
  if (!t) return std::nullopt;
  return t->contiguous();
}

}  // namespace flowkernels
