// The intconv family: integer-only convolution for networks whose outputs must be
// the same bits on every machine (the IDF codec's coupling and prior networks).
//
// int_conv2d(x, W, b, m, s) for x int16 [N, I, H, W], W int8 [O, I, kh, kw],
// b, m, s int32 [O], stride 1, zero padding p:
//
//   acc[n, o, y, x] = b[o] + sum_{i, dy, dx} W[o, i, dy, dx] * x_padded[n, i, y + dy, x + dx]
//   out             = clamp(round(acc * m[o] / 2^s[o]), out_min, out_max)
//
// with round() = floor(v + 1/2) (ties up), computed as (acc * m + 2^(s - 1)) >> s in
// int64. acc is an exact int32: the op refuses weights whose worst case over every
// int16 input could leave int32 (sum |W[o]| * 2^15 + |b[o]| < 2^31), so every partial
// sum is exact in any order. Every result is therefore one number, whatever the
// instruction set, thread count, blocking or device: kernels may vectorise and
// parallelise freely.
#pragma once

#include "common.h"

#include <ATen/core/Tensor.h>

#include <cstdint>

namespace flowkernels {

// The largest |acc| the accumulator may reach: int32.
constexpr int64_t kIntConvAccLimit = (int64_t{1} << 31) - 1;
// The largest |x| of an int16 input.
constexpr int64_t kIntConvInputLimit = int64_t{1} << 15;
constexpr int64_t kIntConvMaxShift = 62;

// Fixed-point rescaling of one accumulator: clamp(floor((acc * m + 2^(s-1)) / 2^s), lo, hi).
// |acc * m| <= 2^62 and s <= 62, so nothing here overflows int64.
FK_HOST_DEVICE int64_t int_conv_requantize(int32_t acc, int32_t m, int32_t s, int64_t lo, int64_t hi) {
  int64_t v = static_cast<int64_t>(acc) * m;
  if (s > 0) v = (v + (int64_t{1} << (s - 1))) >> s;  // arithmetic shift: floor
  return v < lo ? lo : (v > hi ? hi : v);
}

struct IntConvShape {
  int64_t N, I, H, W, O, kh, kw, padding, Ho, Wo;
};

// Checks every argument of int_conv2d (dtypes, shapes, devices, shift range, output
// range, the accumulator bound) and returns the shapes.
IntConvShape check_int_conv_args(const at::Tensor& x, const at::Tensor& weight, const at::Tensor& bias,
                                 const at::Tensor& multiplier, const at::Tensor& shift, int64_t padding,
                                 int64_t out_min, int64_t out_max, at::ScalarType out_dtype,
                                 c10::DeviceType device);

}  // namespace flowkernels
