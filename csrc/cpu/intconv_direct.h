// The integer direct convolution, written once for every SIMD instruction set.
//
// Deliberately without include guard or includes: cpu/intconv.cpp includes this file
// once per instruction-set path, inside `#pragma GCC target(...)` and a namespace
// that first defines `Simd`: an int32 vector of kLanes lanes, and `madd`, which
// multiplies 2 kLanes int16 pairs and adds each pair into one int32 lane (x86's
// pmaddwd). Every function defined here is thereby compiled for that path only.
//
// Layout (IntConvPlan in cpu/intconv.cpp): the input comes as zero-padded planes of
// channel pairs, [N][I/2][plane][2] int16, so one load gives kLanes consecutive
// positions of two channels; positions run over the flattened padded plane, so an
// output row's right border and the next row's left border are computed too and
// dropped at the store (this keeps every load unmasked however narrow the image).
// The weight comes as [O/CB][I/2][taps][CB] int32, each the pair (W[o, 2c], W[o,
// 2c + 1]) to broadcast. An item is (image, block of CB output channels, segment of
// NV kLanes positions); its CB x NV accumulators stay in registers over every
// channel pair and tap. Integer sums are exact, so the order is free.

constexpr int64_t kLanes = Simd::kLanes;

template <int CB, int NV>
void int_conv_items(const IntConvPlan& p, int64_t begin, int64_t end) {
  constexpr int64_t kSegment = NV * kLanes;
  alignas(64) int32_t sums[CB][kSegment];
  for (int64_t item = begin; item < end; ++item) {
    const int64_t segment = item % p.segments;
    const int64_t block = item / p.segments % p.blocks;
    const int64_t n = item / (p.segments * p.blocks);
    const int64_t q0 = segment * kSegment;

    typename Simd::Vec acc[CB][NV];
#pragma GCC unroll 16
    for (int j = 0; j < CB; ++j) {
      const int64_t o = block * CB + j;
      const typename Simd::Vec init = Simd::set1(o < p.O ? p.bias[o] : 0);
#pragma GCC unroll 4
      for (int v = 0; v < NV; ++v) acc[j][v] = init;
    }
    const int16_t* image = p.x + n * p.pairs * p.plane * 2;
    const int32_t* w_block = p.w + block * p.pairs * p.taps * CB;
    for (int64_t c = 0; c < p.pairs; ++c) {
      const int16_t* plane = image + (c * p.plane + q0) * 2;
      const int32_t* w_pair = w_block + c * p.taps * CB;
      for (int64_t t = 0; t < p.taps; ++t) {
        const int16_t* at = plane + p.offsets[t] * 2;
        typename Simd::Vec in[NV];
#pragma GCC unroll 4
        for (int v = 0; v < NV; ++v) in[v] = Simd::load(at + v * kLanes * 2);
        const int32_t* w = w_pair + t * CB;
#pragma GCC unroll 16
        for (int j = 0; j < CB; ++j) {
          const typename Simd::Vec wj = Simd::set1(w[j]);
#pragma GCC unroll 4
          for (int v = 0; v < NV; ++v) acc[j][v] = Simd::add(acc[j][v], Simd::madd(in[v], wj));
        }
      }
    }
    // Rescale in registers (one channel per vector: one multiplier and shift), then copy the
    // positions that are outputs: position q of the padded plane is output (q / Wp, q % Wp) when
    // that column exists, so the outputs of a row are one contiguous run.
    const int64_t q_end = std::min<int64_t>(q0 + kSegment, p.Ho * p.Wp);
#pragma GCC unroll 16
    for (int j = 0; j < CB; ++j) {
      const int64_t o = block * CB + j;
      if (o >= p.O) break;
#pragma GCC unroll 4
      for (int v = 0; v < NV; ++v)
        Simd::store(&sums[j][v * kLanes],
                    Simd::requantize(acc[j][v], p.multiplier[o], p.shift[o], p.out_min, p.out_max));
      const int64_t out_base = (n * p.O + o) * p.Ho * p.Wo;
      int64_t y = q0 / p.Wp, x = q0 - y * p.Wp;
      for (int64_t q = q0; q < q_end; q += p.Wp - x, x = 0, ++y) {
        const int64_t run = std::min<int64_t>(std::max<int64_t>(p.Wo - x, 0), q_end - q);
        const int32_t* from = &sums[j][q - q0];
        const int64_t at = out_base + y * p.Wo + x;
        if (p.out16 != nullptr) {
          for (int64_t i = 0; i < run; ++i) p.out16[at + i] = static_cast<int16_t>(from[i]);
        } else {
          for (int64_t i = 0; i < run; ++i) p.out32[at + i] = from[i];
        }
      }
    }
  }
}
