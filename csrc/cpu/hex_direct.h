// The hex direct convolution and its weight gradient, written once for every SIMD
// instruction set.
//
// Deliberately without include guard or includes: cpu/hex.cpp includes this file
// once per instruction-set path, inside `#pragma GCC target(...)` and a namespace
// that first defines `Simd`, the vector type and the handful of operations used
// here (set1, load, fmadd, store, masked store, column masks). Every function
// defined here is thereby compiled for that path only.
//
// The input comes as padded rows (see PaddedRows in cpu/hex.cpp): every column a
// load can reach exists, zero outside the image, so loads need no masks. An item
// is (image b, block of CB output channels, row u, NV x Simd::kLanes columns).
// Its CB x NV accumulators stay in registers while it walks every live tap and
// input channel: NV row loads and CB broadcast weights make CB x NV fused
// multiply-adds. Tap rows above or below the image are skipped (zero padding).

constexpr int64_t kLanes = Simd::kLanes;

// acc[j][n] += w[ci][j] * x[ci][row + n * kLanes] over the input channels ci of one tap.
template <int CB, int NV>
FK_INLINE void accumulate_tap(typename Simd::Vec (&acc)[CB][NV], const float* row, const float* w_tap,
                              int64_t channels, int64_t channel_stride) {
  for (int64_t ci = 0; ci < channels; ++ci) {
    typename Simd::Vec in[NV];
#pragma GCC unroll 4
    for (int n = 0; n < NV; ++n) in[n] = Simd::load(row + ci * channel_stride + n * kLanes);
    const float* w = w_tap + ci * CB;
#pragma GCC unroll 16
    for (int j = 0; j < CB; ++j) {
      const typename Simd::Vec wj = Simd::set1(w[j]);
#pragma GCC unroll 4
      for (int n = 0; n < NV; ++n) acc[j][n] = Simd::fmadd(wj, in[n], acc[j][n]);
    }
  }
}

// Items [begin, end) of the convolution p, in the order (b, u, block, segment): the
// blocks of output channels of one row follow each other while its input rows are
// in L1.
template <int CB, int NV>
void conv_items(const DirectConv& p, int64_t begin, int64_t end) {
  const int64_t segment = NV * kLanes;
  const int64_t segments = (p.W + segment - 1) / segment;
  const int64_t blocks = (p.O + CB - 1) / CB;
  const int64_t plane = p.H * p.W;
  for (int64_t item = begin; item < end; ++item) {
    int64_t rest = item;
    const int64_t s = rest % segments;
    rest /= segments;
    const int64_t block = rest % blocks;
    rest /= blocks;
    const int64_t u = rest % p.H;
    const int64_t b = rest / p.H;
    const int64_t w0 = s * segment;

    typename Simd::Vec acc[CB][NV];
#pragma GCC unroll 16
    for (int j = 0; j < CB; ++j) {
      const int64_t o = block * CB + j;
      const float init = (p.bias != nullptr && o < p.O) ? p.bias[o] : 0.0f;
#pragma GCC unroll 4
      for (int n = 0; n < NV; ++n) acc[j][n] = Simd::set1(init);
    }
    const float* w_block = p.packed + block * p.taps * p.I * CB;
    for (int64_t t = 0; t < p.taps; ++t) {
      const int64_t su = u + p.du[t];
      if (su < 0 || su >= p.H) continue;
      const float* row = p.rows.at(b, su) + w0 + p.dv[t];
      accumulate_tap<CB, NV>(acc, row, w_block + t * p.I * CB, p.I, p.rows.channel_stride);
    }
    // Masked stores (slow on some CPUs) only where the segment passes the last column.
    float* y_row = p.y + (b * p.O) * plane + u * p.W + w0;
    const bool whole = w0 + segment <= p.W;
    typename Simd::Mask tail[NV];
#pragma GCC unroll 4
    for (int n = 0; n < NV; ++n) tail[n] = Simd::columns(w0 + n * kLanes, p.W);
#pragma GCC unroll 16
    for (int j = 0; j < CB; ++j) {
      const int64_t o = block * CB + j;
      if (o >= p.O) continue;
#pragma GCC unroll 4
      for (int n = 0; n < NV; ++n) {
        float* out = y_row + o * plane + n * kLanes;
        if (whole)
          Simd::store(out, acc[j][n]);
        else
          Simd::store(out, tail[n], acc[j][n]);
      }
    }
  }
}

// ---- weight gradient ----------------------------------------------------------------------
//
// dW[t][o][i] = sum over pixels (b, u, v) of g[b, o, u, v] * x[b, i, u + du[t], v + dv[t]]: per
// tap, a matrix product over the pixels. Both operands come channel-innermost (ChannelsLast in
// cpu/hex.cpp), so at one pixel OV vectors hold kLanes output channels each and IB input channels
// are broadcast: OV x IB accumulators whose every lane is one (o, i) pair. No lane mixes pixels, so
// there are no horizontal sums, and every element adds its pixels in the same order whatever the
// thread count. Items are (tap, block of OV * kLanes output channels, block of IB input channels);
// a call adds the rows [row_begin, row_end) of the flattened (b, u) axis to the items [begin, end)
// of p.dw, whose layout [tap][i][o] makes each accumulator a plain vector load and store.

template <int OV, int IB>
void weight_grad_items(const WeightGrad& p, int64_t row_begin, int64_t row_end, int64_t begin, int64_t end) {
  const int64_t o_blocks = p.g.C / (OV * kLanes);
  const int64_t i_blocks = p.x.C / IB;
  for (int64_t item = begin; item < end; ++item) {
    const int64_t i0 = item % i_blocks * IB;
    const int64_t o0 = item / i_blocks % o_blocks * (OV * kLanes);
    const int64_t t = item / (i_blocks * o_blocks);
    float* dw = p.dw + (t * p.x.C + i0) * p.g.C + o0;
    typename Simd::Vec acc[IB][OV];
#pragma GCC unroll 16
    for (int j = 0; j < IB; ++j)
#pragma GCC unroll 4
      for (int n = 0; n < OV; ++n) acc[j][n] = Simd::load(dw + j * p.g.C + n * kLanes);
    for (int64_t row = row_begin; row < row_end; ++row) {
      const int64_t u = row % p.H;
      if (u + p.du[t] < 0 || u + p.du[t] >= p.H) continue;  // zero padding
      const float* g = p.g.pixel(row, 0) + o0;
      const float* x = p.x.pixel(row + p.du[t], p.dv[t]) + i0;
      for (int64_t v = 0; v < p.W; ++v) {
        typename Simd::Vec a[OV];
#pragma GCC unroll 4
        for (int n = 0; n < OV; ++n) a[n] = Simd::load(g + v * p.g.C + n * kLanes);
        const float* xv = x + v * p.x.C;
#pragma GCC unroll 16
        for (int j = 0; j < IB; ++j) {
          const typename Simd::Vec b = Simd::set1(xv[j]);
#pragma GCC unroll 4
          for (int n = 0; n < OV; ++n) acc[j][n] = Simd::fmadd(a[n], b, acc[j][n]);
        }
      }
    }
#pragma GCC unroll 16
    for (int j = 0; j < IB; ++j)
#pragma GCC unroll 4
      for (int n = 0; n < OV; ++n) Simd::store(dw + j * p.g.C + n * kLanes, acc[j][n]);
  }
}
