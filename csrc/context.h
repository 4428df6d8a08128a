// The context family: a classical adaptive lossless coder for 8-bit images
// (CALIC-style gradient-adjusted prediction, bias cancellation, error-energy
// contexts, binary adaptive models, rANS), the safety net of the image codec.
//
// The algorithm and the stream layout are specified in
// flowkernels/reference/context.py, a pure-Python implementation that is the
// test oracle: the C++ kernel must produce the same bytes. Every quantity is an
// integer, so a stream decodes bit-identically on any instruction set, thread
// count, compiler or library version: nothing here may introduce floating
// point.
#pragma once

#include <cstdint>

namespace flowkernels {
namespace context {

// Binary probabilities are 16-bit: p0 = P(bit == 0) * 2^16, kept inside
// [kMinProb, 2^16 - kMinProb] so that each outcome costs at most 11 bits.
constexpr int kProbBits = 16;
constexpr uint32_t kProbOne = 1u << kProbBits;
constexpr uint32_t kMinProb = 32;
// The most pixels a stream of one byte can describe (see context_decode).
constexpr int64_t kMaxPixelsPerByte = 11400;
// rANS: 64-bit state in [2^32, 2^64), 32-bit words.
constexpr uint64_t kStateLower = uint64_t(1) << 32;

// Error-energy bins (coding contexts) and bias-cancellation contexts.
constexpr int kEnergyBins = 12;
constexpr int kEnergyThresholds[kEnergyBins - 1] = {3, 6, 10, 15, 22, 32, 45, 64, 90, 128, 180};
constexpr int kBiasEnergyBins = 4;  // energy bin / 3
constexpr int kTextureBits = 8;
constexpr int kBiasContexts = kBiasEnergyBins << kTextureBits;
// A bias context's statistics are halved when its count reaches this.
constexpr int kBiasReset = 64;
// Mantissa contexts per (energy bin, magnitude class).
constexpr int kMantissaNodes = 8;
constexpr int kMagnitudeClasses = 8;  // floor(log2(w)) for w in [1, 255]

// Plane modes: 0 codes a channel on its own; 1 + 3 r + k links it to the
// earlier channel r: k = 0 adds half of r's prediction error to the
// prediction, k = 1 all of it, k = 2 predicts the difference from r.
// At most kMaxChannels channels, so that a mode fits the stream's byte.
constexpr int kLinks = 3;
inline int mode_count(int channel) { return 1 + kLinks * channel; }
constexpr int64_t kMaxChannels = 85;

}  // namespace context
}  // namespace flowkernels
