// CPU kernels of the context family (see ../context.h and
// flowkernels/reference/context.py, the specification and oracle).
//
// The coder is serial by nature: every pixel's prediction and contexts depend
// on the pixels and errors before it, and the decoder must repeat them. It is
// also cheap (about 20 binary decisions per pixel at most), so one thread codes
// a 768x512 photograph in tens of milliseconds; the encoder spends most of its
// time trying each channel's modes.
#include "../common.h"
#include "../context.h"

#include <ATen/ops/empty.h>
#include <torch/library.h>

#include <algorithm>
#include <cstring>
#include <vector>

namespace flowkernels {
namespace context {
namespace {

constexpr int64_t kMaxSide = int64_t(1) << 31;

// Integer division rounding toward minus infinity (b > 0); C++ truncates.
inline int floor_div(int a, int b) { return a >= 0 ? a / b : -((-a + b - 1) / b); }

// An adaptive binary model: two estimates of P(0) at a fast and a slow rate,
// averaged. The rates start fast (a new context learns from its first bits)
// and settle at 2^-4 and 2^-7.
struct BitModel {
  uint16_t fast = 1 << 15;
  uint16_t slow = 1 << 15;
  uint8_t count = 0;

  uint32_t p0() const {
    const uint32_t p = (uint32_t(fast) + uint32_t(slow) + 1) >> 1;
    return std::min(std::max(p, kMinProb), kProbOne - kMinProb);
  }
  void update(int bit) {
    const int fast_shift = count < 6 ? 1 + count / 2 : 4;
    const int slow_shift = count < 12 ? 1 + count / 2 : 7;
    if (count < 12) ++count;
    if (bit) {
      fast = uint16_t(fast - (fast >> fast_shift));
      slow = uint16_t(slow - (slow >> slow_shift));
    } else {
      fast = uint16_t(fast + ((65535 - fast) >> fast_shift));
      slow = uint16_t(slow + ((65535 - slow) >> slow_shift));
    }
  }
};

// The encoder records each decision (its probability and bit) in coding order;
// rANS then codes them in reverse, so that the decoder reads them in order.
struct Recorder {
  static constexpr bool kEncoding = true;
  std::vector<uint32_t>& decisions;
  int code(BitModel& m, int bit) {
    decisions.push_back((m.p0() << 1) | uint32_t(bit));
    m.update(bit);
    return bit;
  }
};

struct Reader {
  static constexpr bool kEncoding = false;
  uint64_t state;
  const uint8_t* words;  // little-endian u32, in reading order
  int64_t count;
  int64_t next = 0;

  int code(BitModel& m, int) {
    const uint32_t p = m.p0();
    const uint32_t slot = uint32_t(state & (kProbOne - 1));
    const int bit = slot >= p;
    const uint64_t freq = bit ? kProbOne - p : p;
    const uint64_t start = bit ? p : 0;
    state = freq * (state >> kProbBits) + slot - start;
    if (state < kStateLower) {
      TORCH_CHECK_VALUE(next < count, "flowkernels.context_decode: the stream ends early (truncated or corrupt)");
      uint32_t word;
      std::memcpy(&word, words + 4 * next, 4);
      ++next;
      state = (state << 32) | word;
    }
    m.update(bit);
    return bit;
  }
};

struct PlaneModel {
  BitModel zero[kEnergyBins];
  BitModel unary[kEnergyBins][kMagnitudeClasses];
  BitModel mantissa[kEnergyBins][kMagnitudeClasses][kMantissaNodes];
  int32_t bias_sum[kBiasContexts] = {};
  int32_t bias_count[kBiasContexts] = {};
};

// Codes u in [0, 255]: a zero flag, then w = u in [1, 255] as its bit length
// n = floor(log2 w) in unary (no terminator at 7) and its n bits below the
// leading one, each decision in a context of the energy bin k.
template <class Sink>
int code_symbol(Sink& sink, PlaneModel& m, int k, int u) {
  if (!sink.code(m.zero[k], u != 0)) return 0;
  int n = 0;
  if constexpr (Sink::kEncoding) {
    const int length = 31 - __builtin_clz(uint32_t(u));
    for (; n < length; ++n) sink.code(m.unary[k][n], 1);
    if (n < kMagnitudeClasses - 1) sink.code(m.unary[k][n], 0);
  } else {
    while (n < kMagnitudeClasses - 1 && sink.code(m.unary[k][n], 0)) ++n;
  }
  int w = 1;
  int first = 0;
  for (int t = 0; t < n; ++t) {
    const int node = t == 0 ? 0 : (t == 1 ? 1 + first : t + 1);
    const int bit = sink.code(m.mantissa[k][n][node], Sink::kEncoding ? (u >> (n - 1 - t)) & 1 : 0);
    if (t == 0) first = bit;
    w = (w << 1) | bit;
  }
  return w;
}

int energy_bin(int energy) {
  int k = 0;
  while (k < kEnergyBins - 1 && energy >= kEnergyThresholds[k]) ++k;
  return k;
}

// How a channel uses an earlier one (its reference): not at all, by adding
// half or all of the reference's prediction error at the same pixel to the
// prediction, or by predicting the difference from the reference.
enum class Link { kNone, kHalfError, kFullError, kDifference };

struct Reference {
  Link link = Link::kNone;
  const uint8_t* plane = nullptr;  // the reference's values (ranks)
  const int16_t* error = nullptr;  // its prediction errors
};

// Codes (encodes or decodes) one channel. `plane` holds the channel's pixels
// (read when encoding, written when decoding); `error` receives each pixel's
// prediction error.
template <class Sink>
void code_plane(Sink& sink, uint8_t* plane, int16_t* error, const Reference& ref, int top, int64_t H, int64_t W) {
  PlaneModel m;
  const bool difference = ref.link == Link::kDifference;
  // The values predicted: the channel's own, or its difference from the reference.
  auto at = [&](int64_t i) { return difference ? int(plane[i]) - int(ref.plane[i]) : int(plane[i]); };
  for (int64_t y = 0; y < H; ++y) {
    const int64_t row = y * W;
    for (int64_t x = 0; x < W; ++x) {
      const int64_t index = row + x;
      // Neighbours: W a, N b, NW c, NE d, WW e, NN f, NNE g; outside the
      // image, the nearest of them that exists.
      int a, b, c, d, e, f, g;
      if (y == 0) {
        a = x > 0 ? at(index - 1) : (difference ? 0 : 128);
        e = x > 1 ? at(index - 2) : a;
        b = c = d = f = g = a;
      } else {
        b = at(index - W);
        c = x > 0 ? at(index - W - 1) : b;
        d = x + 1 < W ? at(index - W + 1) : b;
        a = x > 0 ? at(index - 1) : b;
        e = x > 1 ? at(index - 2) : a;
        if (y >= 2) {
          f = at(index - 2 * W);
          g = x + 1 < W ? at(index - 2 * W + 1) : f;
        } else {
          f = b;
          g = d;
        }
      }
      // Gradient-adjusted prediction (CALIC), in quarters.
      const int dh = std::abs(a - e) + std::abs(b - c) + std::abs(b - d);
      const int dv = std::abs(a - c) + std::abs(b - f) + std::abs(d - g);
      const int slope = dv - dh;
      int p4;
      if (slope > 80) {
        p4 = 4 * a;
      } else if (slope < -80) {
        p4 = 4 * b;
      } else {
        p4 = 2 * (a + b) + (d - c);
        if (slope > 32) p4 = floor_div(p4 + 4 * a, 2);
        else if (slope > 8) p4 = floor_div(3 * p4 + 4 * a, 4);
        else if (slope < -32) p4 = floor_div(p4 + 4 * b, 2);
        else if (slope < -8) p4 = floor_div(3 * p4 + 4 * b, 4);
      }
      const int texture = (4 * b < p4) | (4 * a < p4) << 1 | (4 * c < p4) << 2 | (4 * d < p4) << 3 |
                          (4 * f < p4) << 4 | (4 * e < p4) << 5 | (4 * (2 * b - f) < p4) << 6 |
                          (4 * (2 * a - e) < p4) << 7;
      const int west_error = x > 0 ? error[index - 1] : (y > 0 ? error[index - W] : 0);
      int energy = dh + dv + 2 * std::abs(west_error);
      if (ref.link != Link::kNone) {
        const int r = ref.error[index];
        if (ref.link == Link::kHalfError) p4 += 2 * r;
        else if (ref.link == Link::kFullError) p4 += 4 * r;
        else p4 += 4 * int(ref.plane[index]);
        energy += 2 * std::abs(r);
      }
      const int k = energy_bin(energy);
      const int bias_context = ((k / 3) << kTextureBits) | texture;
      const int count = m.bias_count[bias_context];
      const int corrected = p4 + (count ? floor_div(m.bias_sum[bias_context], count) : 0);
      const int p = std::min(std::max(floor_div(corrected + 2, 4), 0), top);
      // Fold the error e in [-p, top - p] onto u in [0, top] by distance
      // from p, the likelier sign first.
      const bool flip = corrected - 4 * p < 0;
      const int below = flip ? top - p : p;  // room on the negative side of e' = flip ? -e : e
      const int above = flip ? p : top - p;
      const int both = std::min(below, above);
      int u = 0;
      if constexpr (Sink::kEncoding) {
        const int signed_error = flip ? p - plane[index] : plane[index] - p;
        const int magnitude = std::abs(signed_error);
        u = magnitude > both ? both + magnitude : (signed_error > 0 ? 2 * signed_error - 1 : -2 * signed_error);
      }
      u = code_symbol(sink, m, k, u);
      int signed_error;
      if (u <= 2 * both) {
        signed_error = (u & 1) ? (u + 1) / 2 : -(u / 2);
      } else {
        signed_error = below > above ? -(u - both) : u - both;
      }
      const int value = flip ? p - signed_error : p + signed_error;
      if constexpr (!Sink::kEncoding) plane[index] = uint8_t(value);
      error[index] = int16_t(value - p);
      m.bias_sum[bias_context] += 4 * value - p4;
      if (++m.bias_count[bias_context] >= kBiasReset) {
        m.bias_sum[bias_context] = floor_div(m.bias_sum[bias_context], 2);
        m.bias_count[bias_context] /= 2;
      }
    }
  }
}

// A channel's values: packed (flag 1, then the 256-bit mask of the values
// that occur, each bit in a context of the one before) when fewer than 256
// occur, so that the pixels are coded as ranks among them.
struct Palette {
  int top = 255;                    // largest rank
  uint8_t value_of[256];            // rank -> value
  uint8_t rank_of[256];             // value -> rank (values that occur)
};

template <class Sink>
Palette code_palette(Sink& sink, const uint8_t* plane, int64_t pixels) {
  bool used[256] = {};
  if constexpr (Sink::kEncoding)
    for (int64_t i = 0; i < pixels; ++i) used[plane[i]] = true;
  BitModel flag, mask[2];
  int count = 0;
  for (int v = 0; v < 256; ++v) count += used[v];
  Palette palette;
  if (!sink.code(flag, count < 256)) {
    for (int v = 0; v < 256; ++v) palette.value_of[v] = palette.rank_of[v] = uint8_t(v);
    return palette;
  }
  int rank = 0, previous = 0;
  for (int v = 0; v < 256; ++v) {
    previous = sink.code(mask[previous], used[v]);
    if (previous) {
      palette.value_of[rank] = uint8_t(v);
      palette.rank_of[v] = uint8_t(rank);
      ++rank;
    }
  }
  TORCH_CHECK_VALUE(rank > 0 && rank < 256, "flowkernels.context_decode: a channel's value set is empty or full "
                    "(corrupt stream)");
  palette.top = rank - 1;
  return palette;
}

// Mode 0: no reference; mode 1 + 3 r + k: channel r linked by Link(k + 1).
Reference reference_of(int mode, const uint8_t* ranks, const int16_t* errors, int64_t pixels) {
  if (mode == 0) return {};
  const int r = (mode - 1) / kLinks;
  return {Link((mode - 1) % kLinks + 1), ranks + r * pixels, errors + r * pixels};
}

// rANS over recorded decisions, last first. Returns the words in the order
// the decoder reads them, and the final state.
std::vector<uint32_t> rans_encode(const std::vector<uint32_t>& decisions, uint64_t& state) {
  std::vector<uint32_t> words;
  uint64_t x = kStateLower;
  for (size_t i = decisions.size(); i-- > 0;) {
    const uint32_t p = decisions[i] >> 1;
    const int bit = decisions[i] & 1;
    const uint64_t freq = bit ? kProbOne - p : p;
    const uint64_t start = bit ? p : 0;
    if (x >= (freq << (64 - kProbBits))) {
      words.push_back(uint32_t(x));
      x >>= 32;
    }
    x = ((x / freq) << kProbBits) + (x % freq) + start;
  }
  std::reverse(words.begin(), words.end());
  state = x;
  return words;
}

void check_image(const at::Tensor& image) {
  TORCH_CHECK_VALUE(image.device().is_cpu(), "flowkernels.context_encode: argument 'image' must be on the CPU, got ",
                    image.device());
  TORCH_CHECK_VALUE(image.scalar_type() == at::kByte,
                    "flowkernels.context_encode: argument 'image' must be uint8, got ", image.scalar_type());
  TORCH_CHECK_VALUE(image.dim() == 3 && image.size(0) >= 1 && image.size(0) <= kMaxChannels && image.size(1) >= 1 &&
                        image.size(2) >= 1,
                    "flowkernels.context_encode: argument 'image' must be [C, H, W] with 1 <= C <= 85 and H, W >= "
                    "1, got ",
                    shape_str(image.sizes()));
}

at::Tensor context_encode_cpu(const at::Tensor& image_in) {
  check_image(image_in);
  const at::Tensor image = image_in.contiguous();
  const int64_t C = image.size(0), H = image.size(1), W = image.size(2);
  const int64_t pixels = H * W;
  std::vector<uint8_t> ranks(C * pixels);
  std::vector<int16_t> errors(C * pixels);
  std::vector<int16_t> candidate_error(pixels);
  std::vector<uint32_t> all_decisions;
  std::vector<uint8_t> modes;
  std::vector<uint32_t> candidate;
  std::vector<uint32_t> best;
  const uint8_t* source = image.data_ptr<uint8_t>();
  std::vector<uint32_t> palette_decisions;
  for (int64_t ch = 0; ch < C; ++ch) {
    const uint8_t* values = source + ch * pixels;
    palette_decisions.clear();
    Recorder palette_recorder{palette_decisions};
    const Palette palette = code_palette(palette_recorder, values, pixels);
    uint8_t* plane = ranks.data() + ch * pixels;
    for (int64_t i = 0; i < pixels; ++i) plane[i] = palette.rank_of[values[i]];
    int best_mode = 0;
    size_t best_words = SIZE_MAX;
    for (int mode = 0; mode < mode_count(int(ch)); ++mode) {
      candidate.assign(palette_decisions.begin(), palette_decisions.end());
      Recorder recorder{candidate};
      const Reference reference = reference_of(mode, ranks.data(), errors.data(), pixels);
      code_plane(recorder, plane, candidate_error.data(), reference, palette.top, H, W);
      uint64_t unused;
      const size_t words = rans_encode(candidate, unused).size();
      if (words < best_words) {  // ties keep the simpler mode
        best_words = words;
        best_mode = mode;
        best.swap(candidate);
        std::copy(candidate_error.begin(), candidate_error.end(), errors.begin() + ch * pixels);
      }
    }
    if (ch > 0) modes.push_back(uint8_t(best_mode));
    all_decisions.insert(all_decisions.end(), best.begin(), best.end());
  }
  uint64_t state;
  const std::vector<uint32_t> words = rans_encode(all_decisions, state);
  at::Tensor out = at::empty({int64_t(modes.size() + 8 + 4 * words.size())}, image.options());
  uint8_t* o = out.data_ptr<uint8_t>();
  for (const uint8_t mode : modes) *o++ = mode;
  for (int i = 0; i < 8; ++i) *o++ = uint8_t(state >> (8 * i));
  for (const uint32_t w : words)
    for (int i = 0; i < 4; ++i) *o++ = uint8_t(w >> (8 * i));
  return out;
}

at::Tensor context_decode_cpu(const at::Tensor& data_in, int64_t C, int64_t H, int64_t W) {
  TORCH_CHECK_VALUE(data_in.device().is_cpu() && data_in.scalar_type() == at::kByte && data_in.dim() == 1,
                    "flowkernels.context_decode: argument 'data' must be a 1-D uint8 CPU tensor, got ",
                    data_in.scalar_type(), " ", shape_str(data_in.sizes()), " on ", data_in.device());
  TORCH_CHECK_VALUE(C >= 1 && C <= kMaxChannels && H >= 1 && W >= 1 && H <= kMaxSide && W <= kMaxSide,
                    "flowkernels.context_decode: the shape must have 1 <= channels <= 85 and 1 <= height, width <= 2^31, "
                    "got [",
                    C, ", ", H, ", ", W, "]");
  const at::Tensor data = data_in.contiguous();
  const int64_t n = data.numel();
  const uint8_t* in = data.data_ptr<uint8_t>();
  TORCH_CHECK_VALUE(n >= C - 1 + 8 && (n - (C - 1) - 8) % 4 == 0,
                    "flowkernels.context_decode: a stream of ", n, " bytes cannot hold ", C,
                    " channels (truncated or corrupt)");
  // Every pixel costs at least one decision of at least -log2(1 - 2^-11) bits
  // (0.0007), so n bytes hold at most 8 n / 0.0007 < 11400 n pixels: a header
  // that claims more is corrupt, caught before anything that large is made.
  TORCH_CHECK_VALUE(C * H <= kMaxPixelsPerByte * n / W,
                    "flowkernels.context_decode: a stream of ", n, " bytes cannot hold [", C, ", ", H, ", ", W,
                    "] pixels (corrupt header or stream)");
  for (int64_t ch = 1; ch < C; ++ch)
    TORCH_CHECK_VALUE(in[ch - 1] < mode_count(int(ch)), "flowkernels.context_decode: channel ", ch, " has mode ",
                      int(in[ch - 1]), ", which is not one of its ", mode_count(int(ch)), " (corrupt stream)");
  uint64_t state = 0;
  for (int i = 0; i < 8; ++i) state |= uint64_t(in[C - 1 + i]) << (8 * i);
  TORCH_CHECK_VALUE(state >= kStateLower, "flowkernels.context_decode: invalid coder state (corrupt stream)");
  Reader reader{state, in + C - 1 + 8, (n - (C - 1) - 8) / 4};
  at::Tensor out = at::empty({C, H, W}, data.options());
  uint8_t* pixels = out.data_ptr<uint8_t>();
  std::vector<int16_t> errors(C * H * W);
  std::vector<Palette> palettes(C);
  for (int64_t ch = 0; ch < C; ++ch) {
    const int mode = ch > 0 ? in[ch - 1] : 0;
    const Reference reference = reference_of(mode, pixels, errors.data(), H * W);
    uint8_t* plane = pixels + ch * H * W;
    palettes[ch] = code_palette(reader, plane, H * W);
    code_plane(reader, plane, errors.data() + ch * H * W, reference, palettes[ch].top, H, W);
  }
  // Ranks to values only now: later channels' references are ranks.
  for (int64_t ch = 0; ch < C; ++ch) {
    uint8_t* plane = pixels + ch * H * W;
    if (palettes[ch].top < 255)
      for (int64_t i = 0; i < H * W; ++i) plane[i] = palettes[ch].value_of[plane[i]];
  }
  TORCH_CHECK_VALUE(reader.state == kStateLower && reader.next == reader.count,
                    "flowkernels.context_decode: the stream does not end where the image does (corrupt stream)");
  return out;
}

}  // namespace

TORCH_LIBRARY_IMPL(flowkernels, CPU, m) {
  m.impl("context_encode", &context_encode_cpu);
  m.impl("context_decode", &context_decode_cpu);
}

}  // namespace context
}  // namespace flowkernels
