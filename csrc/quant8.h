// 8-bit block-quantized optimizer state (optim_bits=8), host+device, shared by the CPU and CUDA kernels and
// the Python conversions (lrfused._C.quantize_blockwise / dequantize_blockwise).
//
// A state tensor of n elements is stored as n uint8 codes and ceil(n / kQuantBlock) float32 absmax values,
// one per block of kQuantBlock consecutive elements (in the parameter's memory order): element i is
// dynamic_map[code_i] * absmax_{i / kQuantBlock}. The map is the dynamic (non-linear, mostly exponent)
// 8-bit data type of Dettmers et al. (arXiv 1511.04561, 2110.02861) that bitsandbytes' and torchao's 8-bit
// optimizers use: signed for Adam's exp_avg and SGD's momentum, unsigned for Adam's exp_avg_sq. A block is
// requantized after every update: its new absmax (at least kAbsmaxFloor), each value divided by it, then
// the nearest code (ties up), as torchao's quantize_8bit_with_qmap.
#pragma once
#include <cstdint>

#include "lrf_common.h"

namespace lrfused {
namespace quant8 {

constexpr int kQuantBlock = 256;
// Tensors with fewer elements keep full-precision state (bitsandbytes' min_8bit_size, torchao's 4096).
constexpr int64_t kMinQuantNumel = 4096;
// torchao: scale = amax(|block|).clip(1e-12)
constexpr float kAbsmaxFloor = 1e-12f;

struct DynamicMaps {
  float map[2][256];  // [signed, unsigned], each sorted ascending
};
enum MapKind : int { SIGNED = 0, UNSIGNED = 1 };

namespace detail {
// bitsandbytes' create_dynamic_map(signed, max_exponent_bits=7, total_bits=8), in float32 as torch computes
// it there: linspace(0.1, 1, k) (torch's two-sided float formula), midpoints, times 10^(i - 6); plus 0 and 1.
constexpr float linspace_at(int idx, int steps) {
  const float start = 0.1f, end = 1.0f;
  const float step = (end - start) / static_cast<float>(steps - 1);
  const int halfway = steps / 2;
  return idx < halfway ? start + step * static_cast<float>(idx) : end - step * static_cast<float>(steps - idx - 1);
}

constexpr void sort(float* v, int n) {
  for (int i = 1; i < n; ++i) {
    const float x = v[i];
    int j = i - 1;
    while (j >= 0 && v[j] > x) {
      v[j + 1] = v[j];
      --j;
    }
    v[j + 1] = x;
  }
}

constexpr void fill_map(float* out, bool is_signed) {
  constexpr double kPow10[7] = {1e-6, 1e-5, 1e-4, 1e-3, 1e-2, 1e-1, 1e0};
  int n = 0;
  for (int i = 0; i < 7; ++i) {
    const int items = is_signed ? (1 << i) + 1 : (1 << (i + 1)) + 1;
    const float scale = static_cast<float>(kPow10[i]);
    for (int j = 0; j + 1 < items; ++j) {
      const float mean = (linspace_at(j, items) + linspace_at(j + 1, items)) / 2.0f;
      out[n++] = scale * mean;
      if (is_signed) out[n++] = -(scale * mean);
    }
  }
  out[n++] = 0.0f;
  out[n++] = 1.0f;
  sort(out, n);
}

constexpr DynamicMaps make_maps() {
  DynamicMaps m{};
  fill_map(m.map[SIGNED], true);
  fill_map(m.map[UNSIGNED], false);
  return m;
}
}  // namespace detail

// The host's copy (device code reads its own __constant__ copy, made from the same function).
constexpr DynamicMaps kMaps = detail::make_maps();

LRF_HD int64_t num_blocks(int64_t numel) { return (numel + kQuantBlock - 1) / kQuantBlock; }

// The nearest code of x (already divided by its block's absmax) in `map`: a branchless binary search
// (the largest code whose value is <= x), then up one code when x is at least halfway to it.
LRF_HD uint8_t quantize(const float* map, float x) {
  int c = x >= map[128] ? 128 : 0;
  c += x >= map[c + 64] ? 64 : 0;
  c += x >= map[c + 32] ? 32 : 0;
  c += x >= map[c + 16] ? 16 : 0;
  c += x >= map[c + 8] ? 8 : 0;
  c += x >= map[c + 4] ? 4 : 0;
  c += x >= map[c + 2] ? 2 : 0;
  c += x >= map[c + 1] ? 1 : 0;
  const int up = c < 255 ? c + 1 : 255;
  const float down_value = map[c], up_value = map[up];
  return static_cast<uint8_t>(x - down_value >= (up_value - down_value) * 0.5f ? up : c);
}

LRF_HD float dequantize(const float* map, uint8_t code, float absmax) { return map[code] * absmax; }

// Widens len codes of one block (scale absmax) into out.
LRF_HD void dequantize_block(const uint8_t* codes, int64_t len, const float* map, float absmax, float* out) {
  for (int64_t i = 0; i < len; ++i) out[i] = dequantize(map, codes[i], absmax);
}

// A block's scale: the largest magnitude, floored (a block of zeros keeps a finite scale). A NaN in the
// block makes the scale NaN, so the whole block reads back NaN, as the update would have it propagate.
LRF_HD float block_absmax_step(float running, float x) {
  const float a = x < 0.0f ? -x : x;
  return (a > running || a != a) ? a : running;
}
LRF_HD float finish_absmax(float running) { return running > kAbsmaxFloor || running != running ? running : kAbsmaxFloor; }

#if !defined(__CUDA_ARCH__)
// quantize() for the CPU without its eight dependent, unpredictable branches (~30 ns an element; and
// gathers are slow on CPUs with the GDS mitigation): quantize is monotone in x, so it is the number of
// thresholds <= x, where threshold[c] is the smallest float that quantizes above c. A float's top 16 bits
// (its bf16 bucket) hold at most one threshold for these maps, so the code is the code of the bucket's
// lowest value, plus one past that code's threshold: two loads and a compare. Built once from quantize()
// itself, and checked over every bucket; `exact` is false if a bucket held two thresholds, and then
// quantize_fast is not used.
struct FastQuantizer {
  float threshold[256];
  uint8_t bucket_code[65536];
  bool exact = true;
};

namespace detail {
inline float float_of(uint32_t u) {
  float f;
  __builtin_memcpy(&f, &u, sizeof(f));
  return f;
}
// Floats in value order as unsigned keys (and back), for the bisection below.
inline uint32_t order_key(float f) {
  uint32_t u;
  __builtin_memcpy(&u, &f, sizeof(u));
  return (u & 0x80000000u) ? ~u : (u | 0x80000000u);
}
inline float from_order_key(uint32_t k) { return float_of((k & 0x80000000u) ? (k & 0x7FFFFFFFu) : ~k); }

inline FastQuantizer build_fast_quantizer(const float* map) {
  FastQuantizer q;
  for (int c = 0; c < 255; ++c) {  // the smallest x in [-2, 2] with quantize(x) > c
    uint32_t lo = order_key(-2.0f), hi = order_key(2.0f);
    while (lo < hi) {
      const uint32_t mid = lo + (hi - lo) / 2;
      if (quantize(map, from_order_key(mid)) > c) hi = mid; else lo = mid + 1;
    }
    q.threshold[c] = from_order_key(lo);
  }
  q.threshold[255] = float_of(0x7F800000u);  // +inf: nothing quantizes above 255
  for (uint32_t b = 0; b < 65536; ++b) {
    const uint32_t first = b << 16, last = first | 0xFFFFu;
    const bool negative = (b & 0x8000u) != 0;
    const float low = float_of(negative ? last : first), high = float_of(negative ? first : last);
    if (low != low || high != high) {  // NaN patterns: quantize_fast tests for NaN itself
      q.bucket_code[b] = 0;
      continue;
    }
    const int code = quantize(map, low);
    q.bucket_code[b] = static_cast<uint8_t>(code);
    if (quantize(map, high) > code + 1) q.exact = false;
  }
  return q;
}
}  // namespace detail

inline const FastQuantizer& fast_quantizer(int kind) {
  static const FastQuantizer q[2] = {detail::build_fast_quantizer(kMaps.map[SIGNED]),
                                     detail::build_fast_quantizer(kMaps.map[UNSIGNED])};
  return q[kind];
}

inline uint8_t quantize_fast(const FastQuantizer& q, float x) {
  uint32_t u;
  __builtin_memcpy(&u, &x, sizeof(u));
  const uint8_t c = q.bucket_code[u >> 16];
  return x != x ? uint8_t(0) : static_cast<uint8_t>(x >= q.threshold[c] ? c + 1 : c);  // quantize(NaN) is 0
}

// Quantizes one block of len (<= kQuantBlock) values into codes with the map of `kind`; returns the block's
// absmax. (The CUDA kernel computes the same with a warp per block and quantize().)
inline float quantize_block(const float* in, int64_t len, int kind, uint8_t* codes) {
  // block_absmax_step over the block as an integer max of the magnitudes' bit patterns, which order as
  // the magnitudes do, NaN patterns above +inf: the same result, and a loop the compiler vectorizes.
  uint32_t running = 0;
  for (int64_t i = 0; i < len; ++i) {
    uint32_t u;
    __builtin_memcpy(&u, &in[i], sizeof(u));
    u &= 0x7FFFFFFFu;
    running = u > running ? u : running;
  }
  const float absmax = finish_absmax(detail::float_of(running));
  const FastQuantizer& fast = fast_quantizer(kind);
  if (fast.exact) {
    for (int64_t i = 0; i < len; ++i) codes[i] = quantize_fast(fast, in[i] / absmax);
  } else {
    for (int64_t i = 0; i < len; ++i) codes[i] = quantize(kMaps.map[kind], in[i] / absmax);
  }
  return absmax;
}
#endif

}  // namespace quant8
}  // namespace lrfused
