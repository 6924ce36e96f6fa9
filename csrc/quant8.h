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

// A block's scale: the largest magnitude, floored (a block of zeros keeps a finite scale). A NaN in the
// block makes the scale NaN, so the whole block reads back NaN, as the update would have it propagate.
LRF_HD float block_absmax_step(float running, float x) {
  const float a = x < 0.0f ? -x : x;
  return (a > running || a != a) ? a : running;
}
LRF_HD float finish_absmax(float running) { return running > kAbsmaxFloor || running != running ? running : kAbsmaxFloor; }

// Quantizes one block of len (<= kQuantBlock) values into codes; returns the block's absmax. (The CUDA
// kernel computes the same with a warp per block.)
inline float quantize_block(const float* in, int64_t len, const float* map, uint8_t* codes) {
  float running = 0.0f;
  for (int64_t i = 0; i < len; ++i) running = block_absmax_step(running, in[i]);
  const float absmax = finish_absmax(running);
  for (int64_t i = 0; i < len; ++i) codes[i] = quantize(map, in[i] / absmax);
  return absmax;
}

}  // namespace quant8
}  // namespace lrfused
