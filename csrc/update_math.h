// Per-element SGD / Adam / AdamW math, host+device, shared by the CPU and CUDA kernels.
//
// The order of operations follows torch's single-tensor and fused paths (torch/optim/sgd.py,
// torch/optim/adam.py, aten/src/ATen/native/cpu/FusedAdamKernel.cpp) so that fp32 results agree to an
// ulp or so and fp64 to ~1e-15. Step-dependent scalars are computed once per step (and per distinct
// per-parameter step count) in double by make_*_scalars, then converted to the compute type C.
#pragma once
#include <cmath>
#include <cstdint>
#include "contract.h"

namespace lrfused {

namespace math {

// Type-exact sqrt/fabs: a bare sqrt(float) may resolve to the double C function, which both changes
// the rounding and stops the CPU loops from vectorizing.
LRF_HD float lrf_sqrt(float x) { return sqrtf(x); }
LRF_HD double lrf_sqrt(double x) { return sqrt(x); }

// GradScaler's unscale as torch's fused optimizers do it: the gradient divided by the float32 scale in
// the compute type (not multiplied by a reciprocal, which differs by an ulp unless the scale is a power of 2).
template <typename C>
LRF_HD C unscale(C grad, C grad_scale) { return grad / grad_scale; }

// torch.maximum semantics: NaN in either operand propagates.
template <typename C>
LRF_HD C nan_propagating_max(C a, C b) {
  C larger = a > b ? a : b;
  larger = (b != b) ? b : larger;
  return (a != a) ? a : larger;
}

template <typename C>
struct AdamScalars {
  C param_keep;       // 1 - lr * weight_decay (decoupled), 1 otherwise
  C weight_decay;     // coupled (L2) weight decay added to the gradient; 0 = none
  C lerp_weight;      // 1 - beta1: exp_avg.lerp_(grad, 1 - beta1)
  C lerp_weight_c;    // lerp_weight - 1 (torch's lerp uses the far end when |weight| >= 0.5)
  C beta2;
  C one_minus_beta2;
  C bias_correction2_sqrt;
  C eps;
  C neg_step_size;    // -lr / (1 - beta1^t)
};

// lr, beta1, beta2 already scheduled for this step; t is the parameter's step count after increment.
template <typename C>
LRF_HD AdamScalars<C> make_adam_scalars(double lr, double beta1, double beta2, double eps, double wd,
                                        bool decoupled, double t) {
  AdamScalars<C> s;
  const double bias_correction1 = 1.0 - pow(beta1, t);
  const double bias_correction2 = 1.0 - pow(beta2, t);
  s.param_keep = static_cast<C>(decoupled ? 1.0 - lr * wd : 1.0);
  s.weight_decay = static_cast<C>(decoupled ? 0.0 : wd);
  s.lerp_weight = static_cast<C>(1.0 - beta1);
  s.lerp_weight_c = s.lerp_weight - C(1);
  s.beta2 = static_cast<C>(beta2);
  s.one_minus_beta2 = static_cast<C>(1.0 - beta2);
  s.bias_correction2_sqrt = static_cast<C>(sqrt(bias_correction2));
  s.eps = static_cast<C>(eps);
  s.neg_step_size = static_cast<C>(-(lr / bias_correction1));
  return s;
}

// Weight decay of an Adam-family update: none, L2 added to the gradient (Adam), decoupled (AdamW).
enum WeightDecayMode : int { WD_NONE = 0, WD_COUPLED = 1, WD_DECOUPLED = 2 };

// One Adam/AdamW element. g is the gradient after unscaling/clipping/maximize. near_lerp is
// |1 - beta1| < 0.5 (constant per step): torch's lerp is self + w * (end - self) then, and
// end + (w - 1) * (end - self) otherwise; written as a select so that the CPU loop stays vectorizable.
template <typename C, bool AMSGRAD, int WD>
LRF_HD void adam_update(C& p, C g, C& exp_avg, C& exp_avg_sq, C& max_exp_avg_sq,
                        const AdamScalars<C>& s, bool near_lerp) {
  if (WD == WD_COUPLED) g = g + s.weight_decay * p;
  if (WD == WD_DECOUPLED) p = p * s.param_keep;
  const C lerp_base = near_lerp ? exp_avg : g;
  const C lerp_coeff = near_lerp ? s.lerp_weight : s.lerp_weight_c;
  exp_avg = lerp_base + lerp_coeff * (g - exp_avg);
  exp_avg_sq = exp_avg_sq * s.beta2 + s.one_minus_beta2 * g * g;
  C second = exp_avg_sq;
  if (AMSGRAD) {
    max_exp_avg_sq = nan_propagating_max(max_exp_avg_sq, exp_avg_sq);
    second = max_exp_avg_sq;
  }
  const C denom = lrf_sqrt(second) / s.bias_correction2_sqrt + s.eps;
  p = p + s.neg_step_size * exp_avg / denom;
}

LRF_HD bool adam_near_lerp(double beta1) { return fabs(1.0 - beta1) < 0.5; }

template <typename C>
struct SgdScalars {
  C weight_decay;
  C momentum;
  C one_minus_dampening;
  C neg_lr;
};

template <typename C>
LRF_HD SgdScalars<C> make_sgd_scalars(double lr, double momentum, double dampening, double wd) {
  SgdScalars<C> s;
  s.weight_decay = static_cast<C>(wd);
  s.momentum = static_cast<C>(momentum);
  s.one_minus_dampening = static_cast<C>(1.0 - dampening);
  s.neg_lr = static_cast<C>(-lr);
  return s;
}

// One SGD element. first_step: the momentum buffer is initialised to the gradient (torch: clone(grad)).
template <typename C, bool NESTEROV>
LRF_HD void sgd_update(C& p, C g, C& momentum_buffer, const SgdScalars<C>& s, bool has_wd,
                       bool has_momentum, bool first_step) {
  if (has_wd) g = g + s.weight_decay * p;
  if (has_momentum) {
    momentum_buffer = first_step ? g : momentum_buffer * s.momentum + s.one_minus_dampening * g;
    g = NESTEROV ? g + s.momentum * momentum_buffer : momentum_buffer;
  }
  p = p + s.neg_lr * g;
}

// ---- stochastic rounding ---------------------------------------------------------------------------
// A bf16 value stored from an fp32 result x rounds up in magnitude with probability (the 16 bits bf16
// drops) / 2^16, else truncates, so E[stored] = x: updates smaller than half an ulp survive on average
// (torchao's bf16 stochastic rounding draws the same distribution). The 16 random bits of an element
// come from a counter-based generator, a hash of (seed, stream, step, buffer, element index): no RNG state
// in memory, the same bits on the CPU and the GPU, and a resumed run (same seed, same per-parameter step
// counts) repeats exactly.

// splitmix64's finalizer: a bijection of 64-bit words that mixes every input bit into every output bit.
LRF_HD uint64_t sr_mix64(uint64_t z) {
  z = (z ^ (z >> 30)) * 0xBF58476D1CE4E5B9ull;
  z = (z ^ (z >> 27)) * 0x94D049BB133111EBull;
  return z ^ (z >> 31);
}

// Wellons' lowbias32: a bijection of 32-bit words with low bias; 32-bit multiplies, so the CPU loops
// vectorize it.
LRF_HD uint32_t sr_mix32(uint32_t x) {
  x ^= x >> 16;
  x *= 0x21F0AAADu;
  x ^= x >> 15;
  x *= 0x735A2D97u;
  x ^= x >> 15;
  return x;
}

// The buffers one element stores, each with a stream of its own: the parameter (or its bf16 copy of a
// master), then the state slots.
enum SrBuffer : int { SR_PARAM = 0, SR_STATE1 = 1, SR_STATE2 = 2, SR_STATE3 = 3 };

// The key of one buffer of one parameter at one step: seed (the optimizer's), stream (the parameter's
// index in the optimizer), step (the parameter's step count after this step's increment).
LRF_HD uint64_t sr_key(uint64_t seed, uint64_t stream, uint32_t step, int buffer) {
  return sr_mix64(sr_mix64(sr_mix64(seed) ^ stream) ^ ((static_cast<uint64_t>(buffer) << 32) | step));
}

// 16 random bits for element `index` of the stream `key`. For a fixed key the inner map is a bijection of
// the element index (within 2^32 elements), so no two elements share an input to the outer mix.
LRF_HD uint32_t sr_random16(uint64_t key, uint64_t index) {
  const uint32_t lo = static_cast<uint32_t>(index) ^ static_cast<uint32_t>(key);
  const uint32_t hi = static_cast<uint32_t>(index >> 32) ^ static_cast<uint32_t>(key >> 32);
  return sr_mix32(sr_mix32(lo) + hi) >> 16;
}

// The bf16 bit pattern of an fp32 bit pattern u rounded with the 16 random bits r: a carry out of the
// dropped bits (probability (u & 0xFFFF) / 2^16) rounds the magnitude up. A NaN becomes bf16's canonical
// NaN, as c10::BFloat16's round to nearest makes it; an infinity has no dropped bits and stays itself.
LRF_HD uint16_t bf16_bits_stochastic(uint32_t u, uint32_t r) {
  const bool nan = (u & 0x7FFFFFFFu) > 0x7F800000u;
  return static_cast<uint16_t>(nan ? 0x7FC0u : (u + r) >> 16);
}

}  // namespace math
}  // namespace lrfused
