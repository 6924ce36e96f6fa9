// Per-element SGD / Adam / AdamW math, host+device, shared by the CPU and CUDA kernels.
//
// The order of operations follows torch's single-tensor and fused paths (torch/optim/sgd.py,
// torch/optim/adam.py, aten/src/ATen/native/cpu/FusedAdamKernel.cpp) so that fp32 results agree to an
// ulp or so and fp64 to ~1e-15. Step-dependent scalars are computed once per step (and per distinct
// per-parameter step count) in double by make_*_scalars, then converted to the compute type C.
#pragma once
#include <cmath>
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

}  // namespace math
}  // namespace lrfused
