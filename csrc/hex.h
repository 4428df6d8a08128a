// The hex family: hexagonal convolutions on the axial lattice (HexaConv).
//
// hex_conv2d(x, W, b) = conv2d(x, W * hex_mask, b, padding = R) for a
// [O, I, 2R + 1, 2R + 1] weight, where hex_mask keeps the 3R^2 + 3R + 1 cells
// (du, dv) with max(|du|, |dv|, |du + dv|) <= R. The mask is symmetric under
// the point reflection (du, dv) -> (-du, -dv), so the input gradient is again
// a hex_conv2d (with the weight transposed and flipped).
//
// hex_filter_transform expands a group convolution's compact filters into the
// planar filter bank by an index gather; the tables come from
// flowkernels/hex.py (filter_transform_tables), -1 meaning "zero".
#pragma once

#include "common.h"

#include <ATen/core/Tensor.h>

#include <optional>

namespace flowkernels {

// Checks of hex_conv2d's arguments; returns the kernel size k.
int64_t check_hex_conv_args(const char* op, const at::Tensor& x, const at::Tensor& weight,
                            const std::optional<at::Tensor>& bias,
                            std::optional<c10::DeviceType> device = std::nullopt);

// The 0/1 hexagonal mask [k, k] in the weight's dtype and on its device.
at::Tensor hex_conv_mask(int64_t kernel_size, const at::TensorOptions& options);

// hex_conv2d as a square convolution with the masked weight (oneDNN, cuDNN).
at::Tensor hex_conv2d_dense(const at::Tensor& x, const at::Tensor& weight,
                            const std::optional<at::Tensor>& bias);

// Checks of hex_conv2d_weight_backward's arguments: grad [B, O, H, W], x [B, I, H, W],
// an odd kernel size.
void check_hex_weight_backward_args(const at::Tensor& grad, const at::Tensor& x, int64_t kernel_size,
                                    c10::DeviceType device);

// hex_conv2d's weight gradient [O, I, k, k] through the vendor's convolution backward
// (oneDNN, cuDNN), zero at the dead corners.
at::Tensor hex_conv2d_weight_backward_dense(const at::Tensor& grad, const at::Tensor& x, int64_t kernel_size);

// All checks of a hex_filter_transform call: weight [O, I, S], index and
// inverse_index [G, S] int64 tables of the same shape.
void check_filter_transform_call(const char* op, const at::Tensor& weight, const at::Tensor& index,
                                 const at::Tensor& inverse_index, c10::DeviceType device);

// Checks of hex_filter_transform's arguments (weight [O, I, S], tables [G, S] int64).
void check_filter_transform_args(const char* op, const at::Tensor& values, int64_t values_dim,
                                 const at::Tensor& table, const char* table_name,
                                 std::optional<c10::DeviceType> device);

FK_HOST_DEVICE bool hex_cell_is_live(int64_t du, int64_t dv, int64_t radius) {
  const int64_t a = du < 0 ? -du : du, b = dv < 0 ? -dv : dv, s = du + dv < 0 ? -(du + dv) : du + dv;
  return a <= radius && b <= radius && s <= radius;
}

}  // namespace flowkernels
