// Every learning-rate schedule formula, once, as host+device code (formulas: docs/schedules.md).
//
// A schedule is packed by lrfused/schedules (through lrfused/contract.py) into a flat float64 "program";
// the node kinds and the names and slots of their fields are the contract's (csrc/contract.h):
//   node := [kind, node_length_in_doubles, fields..., tail..., children...]
// Composite nodes (SEQUENTIAL, CHAINED, PER_EPOCH) hold their children inline after their own fields.
// Tabulated schedules carry their table inline. The program is self-contained: the CPU kernel, the
// CUDA kernels and Schedule.lr_at all evaluate the same bytes with the functions below.
//
// Plain-nvcc friendly: no std containers, no exceptions, no recursion (composites are walked with an
// explicit stack of kMaxStack frames; the schedules refuse programs that would need more), and only the
// global double functions of <cmath> (cos, pow, ...), which are __host__ __device__ under nvcc.
#pragma once
#include <cmath>
#include <cstdint>
#include "contract.h"

namespace lrfused {
namespace sched {

constexpr double kPi = 3.141592653589793;  // == Python's math.pi

namespace detail {

struct Frame {
  const double* node;
  int64_t k;
  bool post;  // a wrapper's second visit (CLAMP, NOISE): applied to the lr its child left
};

LRF_HD int kind_of(const double* n) { return static_cast<int>(n[0]); }
LRF_HD int64_t len_of(const double* n) { return static_cast<int64_t>(n[1]); }
LRF_HD const double* fields_of(const double* n) { return n + 2; }
LRF_HD int64_t as_int(double v) { return static_cast<int64_t>(v); }
LRF_HD int64_t min_i64(int64_t a, int64_t b) { return a < b ? a : b; }
// Python's max(a, b): the first argument unless the second is strictly greater.
LRF_HD double max_d(double a, double b) { return b > a ? b : a; }

// ---- primitives --------------------------------------------------------------------------------------
// The falling half-cosine (1 + cos(angle)) / 2: 1 at angle 0, 0 at pi. Every cosine schedule goes through
// it; (x * (1 + c)) / 2 and x * ((1 + c) / 2) round identically (halving is exact), so torch's and HF's
// spellings of the same formula give the same bits.
LRF_HD double half_cos(double angle) { return 0.5 * (1.0 + cos(angle)); }
// The rising half-cosine (1 - cos(angle)) / 2 (HF's cosine warmup).
LRF_HD double half_cos_rising(double angle) { return 0.5 * (1.0 - cos(angle)); }
// Interpolation from value v (at 1) to end (at 0): end + (v - end) * f.
LRF_HD double toward(double end, double v, double f) { return end + (v - end) * f; }
// HF's floor: a multiplier f in [0, 1] rescaled to [floor, 1], never below 0.
LRF_HD double above_floor(double f, double floor_ratio) { return max_d(0.0, f * (1.0 - floor_ratio) + floor_ratio); }
// HF's linear warmup: k / max(1, W).
LRF_HD double hf_warmup(double k, double w) { return k / max_d(1.0, w); }
// HF's progress after warmup: (k - W) / max(1, T - W).
LRF_HD double hf_progress(double k_after, double w, double t) { return k_after / max_d(1.0, t - w); }

// Python's float floor division a // b (Objects/floatobject.c, float_floor_div), for b != 0.
LRF_HD double py_floordiv(double a, double b) {
  double mod = fmod(a, b);
  double div = (a - mod) / b;
  if (mod != 0.0 && ((b < 0.0) != (mod < 0.0))) div -= 1.0;
  if (div == 0.0) return copysign(0.0, a / b);
  double floordiv = floor(div);
  if (div - floordiv > 0.5) floordiv += 1.0;
  return floordiv;
}

// Where a wrapper's one child starts.
LRF_HD const double* wrapped_child(const double* n) {
  const double* p = fields_of(n);
  switch (kind_of(n)) {
    case CLAMP: return p + field::CLAMP::kFixed;
    case RESTART: return p + field::RESTART::kFixed;
    default: return p + field::NOISE::kFixed + as_int(p[field::NOISE::count]);  // NOISE
  }
}

// A wrapper's second visit: what it does to the lr v its child left.
LRF_HD double after_child(const double* n, int64_t k, double v) {
  const double* p = fields_of(n);
  if (kind_of(n) == CLAMP) {
    namespace f = field::CLAMP;
    if (v < p[f::min_lr]) v = p[f::min_lr];
    if (v > p[f::max_lr]) v = p[f::max_lr];
    return v;
  }
  namespace f = field::NOISE;  // timm's _add_noise: v + v * noise
  const int64_t start = as_int(p[f::start]);
  if (k >= start && k - start < as_int(p[f::count])) return v + v * p[f::kFixed + (k - start)];
  return v;
}

// Pushes the children of a composite node (so that child 0 is popped first). Returns false for leaves.
LRF_HD bool expand(const double* n, int64_t k, Frame* stack, int& top) {
  const double* p = fields_of(n);
  switch (kind_of(n)) {
    case CLAMP:
    case NOISE:
      // the second visit waits under the child, so it runs once the child's leaves have
      if (top + 1 < kMaxStack) {
        stack[top++] = Frame{n, k, true};
        stack[top++] = Frame{wrapped_child(n), k, false};
      }
      return true;
    case HYPERS:  // the lr (and momentum) come from the first child, the lr schedule
      if (top < kMaxStack) stack[top++] = Frame{p + field::HYPERS::kFixed + as_int(p[field::HYPERS::count]), k, false};
      return true;
    case RESTART: {
      const int64_t period = as_int(p[field::RESTART::period]);
      if (top < kMaxStack) stack[top++] = Frame{wrapped_child(n), period > 0 ? k % period : k, false};
      return true;
    }
    case SEQUENTIAL: {
      namespace f = field::SEQUENTIAL;
      const int64_t count = as_int(p[f::count]);
      const double* milestones = p + f::kFixed - 1;  // milestone i (i >= 1) starts child i
      int64_t idx = 0;
      int64_t start = 0;
      for (int64_t i = 1; i < count; ++i) {
        const int64_t m = as_int(milestones[i]);
        if (m <= k) { idx = i; start = m; }
      }
      const double* child = p + f::kFixed + (count - 1);
      for (int64_t i = 0; i < idx; ++i) child += len_of(child);
      if (top < kMaxStack) stack[top++] = Frame{child, k - start, false};
      return true;
    }
    case CHAINED: {
      namespace f = field::CHAINED;
      const int64_t count = as_int(p[f::count]);
      const double* child = p + f::kFixed;
      const int first = top;
      for (int64_t i = 0; i < count && top < kMaxStack; ++i) {
        stack[top++] = Frame{child, k, false};
        child += len_of(child);
      }
      for (int lo = first, hi = top - 1; lo < hi; ++lo, --hi) {
        const Frame t = stack[lo];
        stack[lo] = stack[hi];
        stack[hi] = t;
      }
      return true;
    }
    case PER_EPOCH: {
      namespace f = field::PER_EPOCH;
      const int64_t spe = as_int(p[f::steps_per_epoch]);
      if (top < kMaxStack) stack[top++] = Frame{p + f::kFixed, spe > 0 ? k / spe : k, false};
      return true;
    }
    default:
      return false;
  }
}

// CyclicLR's position inside the cycle (scale_factor) and amplitude scale (scale_fn), as torch computes
// them (torch/optim/lr_scheduler.py, CyclicLR.get_lr).
LRF_HD void cyclic_factors(const double* p, int64_t k, double* s_out, double* g_out) {
  namespace f = field::CYCLIC;
  const double total = p[f::total_size], ratio = p[f::step_ratio];
  const double kd = static_cast<double>(k);
  const double cycle = floor(1.0 + kd / total);
  const double x = 1.0 + kd / total - cycle;
  *s_out = x <= ratio ? x / ratio : (x - 1.0) / (ratio - 1.0);
  const int scale = static_cast<int>(p[f::scale]);
  const bool by_cycle = p[f::scale_mode] == 0.0;
  const double arg = by_cycle ? cycle : kd;
  double g = 1.0;
  if (scale == cyclic::TRIANGULAR2) {
    g = 1.0 / pow(2.0, arg - 1.0);
  } else if (scale == cyclic::EXP_RANGE) {
    g = pow(p[f::gamma], arg);
  } else if (scale == cyclic::TABLE) {
    const int64_t n = as_int(p[f::count]);
    // The table holds scale_fn(1), scale_fn(2), ... by cycle, or scale_fn(0), scale_fn(1), ... by step.
    int64_t i = by_cycle ? as_int(cycle) - 1 : k;
    if (i < 0) i = 0;
    g = p[f::kFixed + min_i64(i, n - 1)];
  }
  *g_out = g;
}

// OneCycleLR's annealing from start (pct 0) to end (pct 1).
LRF_HD double anneal_between(int strategy, double start, double end, double pct) {
  if (strategy == anneal::COS) return toward(end, start, half_cos(kPi * pct));
  return (end - start) * pct + start;
}

// OneCycleLR: which = 0 for lr, 1 for momentum.
LRF_HD double one_cycle(const double* p, int64_t k, int which) {
  namespace f = field::ONE_CYCLE;
  namespace ph = field::ONE_CYCLE_PHASE;
  const int64_t total = as_int(p[f::total_steps]);
  const double step = static_cast<double>(k < total ? k : total);  // lr(T) holds past the end
  const int strategy = static_cast<int>(p[f::anneal]);
  const int64_t phases = as_int(p[f::count]);
  double start_step = 0.0;
  for (int64_t i = 0; i < phases; ++i) {
    const double* phase = p + f::kFixed + ph::kFixed * i;
    const double end_step = phase[ph::end_step];
    if (step <= end_step || i == phases - 1) {
      const double pct = (step - start_step) / (end_step - start_step);
      return which == 0 ? anneal_between(strategy, phase[ph::start_lr], phase[ph::end_lr], pct)
                        : anneal_between(strategy, phase[ph::start_momentum], phase[ph::end_momentum], pct);
    }
    start_step = end_step;
  }
  return 0.0;  // unreachable for a valid program (phases >= 1)
}

// Whether an HF kind warms up with hf_warmup (the others have warmups of their own).
LRF_HD bool hf_linear_warmup(int kind) { return kind != HF_COSINE_WARMUP_MIN_LR && kind != HF_WSD; }

// HF's cosine floor ratio: min_lr / b when min_lr is given, else min_lr_rate.
// (HF_COSINE and HF_COSINE_WARMUP_MIN_LR share these fields' slots: static_asserts below.)
LRF_HD double hf_min_lr_ratio(const double* p, double b) {
  namespace f = field::HF_COSINE;
  return p[f::use_min_lr] != 0.0 ? p[f::min_lr] / b : p[f::min_lr_rate];
}
static_assert(field::HF_COSINE::use_min_lr == field::HF_COSINE_WARMUP_MIN_LR::use_min_lr &&
                  field::HF_COSINE::min_lr == field::HF_COSINE_WARMUP_MIN_LR::min_lr &&
                  field::HF_COSINE::min_lr_rate == field::HF_COSINE_WARMUP_MIN_LR::min_lr_rate,
              "hf_min_lr_ratio reads both kinds' floor fields at the same slots");

LRF_HD double wsd_shape(int shape, double prog, double cycles, bool rising) {
  if (shape == wsd::LINEAR) return rising ? prog : 1.0 - prog;
  if (shape == wsd::COSINE) return rising ? half_cos_rising(kPi * prog) : half_cos(kPi * cycles * 2.0 * prog);
  return rising ? 1.0 - sqrt(1.0 - prog) : 1.0 - sqrt(prog);
}

static_assert(field::HF_CONSTANT_WITH_WARMUP::warmup == 0 && field::HF_LINEAR::warmup == 0 &&
                  field::HF_COSINE::warmup == 0 && field::HF_COSINE_RESTARTS::warmup == 0 &&
                  field::HF_POLYNOMIAL::warmup == 0 && field::HF_INVERSE_SQRT::warmup == 0 &&
                  field::HF_COSINE_WARMUP_MIN_LR::warmup == 0 && field::HF_WSD::warmup == 0,
              "hf_lr_factor reads the warmup of every HF kind from its first field");

LRF_HD double hf_lr_factor(int kind, const double* p, int64_t k_int, double b) {
  const double k = static_cast<double>(k_int);
  const double w = p[field::HF_LINEAR::warmup];  // every HF kind's first field (static_assert above)
  if (k < w && hf_linear_warmup(kind)) return hf_warmup(k, w);
  switch (kind) {
    case HF_CONSTANT_WITH_WARMUP:
      return 1.0;
    case HF_LINEAR: {
      const double t = p[field::HF_LINEAR::total];
      return max_d(0.0, (t - k) / max_d(1.0, t - w));
    }
    case HF_COSINE: {
      namespace f = field::HF_COSINE;
      const double progress = hf_progress(k - w, w, p[f::total]);
      return above_floor(half_cos(kPi * p[f::num_cycles] * 2.0 * progress), hf_min_lr_ratio(p, b));
    }
    case HF_COSINE_RESTARTS: {
      namespace f = field::HF_COSINE_RESTARTS;
      const double progress = hf_progress(k - w, w, p[f::total]);
      if (progress >= 1.0) return 0.0;
      return max_d(0.0, half_cos(kPi * fmod(p[f::num_cycles] * progress, 1.0)));
    }
    case HF_POLYNOMIAL: {
      namespace f = field::HF_POLYNOMIAL;
      const double t = p[f::total], lr_end = p[f::lr_end], power = p[f::power];
      const double lr_init = p[f::lr_init] > 0.0 ? p[f::lr_init] : b;
      if (k > t) return lr_end / lr_init;
      // t == w: HF divides by zero here; the decay is over, so lr_end (the continuous limit).
      const double pct_remaining = t > w ? 1.0 - (k - w) / (t - w) : 0.0;
      return ((lr_init - lr_end) * pow(pct_remaining, power) + lr_end) / lr_init;
    }
    case HF_INVERSE_SQRT: {
      const double tau = p[field::HF_INVERSE_SQRT::timescale];
      return 1.0 / sqrt((k + (tau - w)) / tau);
    }
    case HF_COSINE_WARMUP_MIN_LR: {
      namespace f = field::HF_COSINE_WARMUP_MIN_LR;
      if (k < w) {
        if (p[f::has_warmup_rate] == 0.0) return (k + 1.0) / max_d(1.0, w);
        const double wr = p[f::warmup_lr_rate];
        return wr + (1.0 - wr) * k / max_d(1.0, w - 1.0);
      }
      const double progress = hf_progress(k - w + 1.0, w, p[f::total]);
      return above_floor(half_cos(kPi * p[f::num_cycles] * 2.0 * progress), hf_min_lr_ratio(p, b));
    }
    case HF_WSD: {
      namespace f = field::HF_WSD;
      const double s = p[f::stable], d = p[f::decay], r = p[f::min_lr_ratio];
      if (k < w) return above_floor(wsd_shape(static_cast<int>(p[f::warmup_type]), k / max_d(1.0, w), 0.0, true), r);
      if (k < w + s) return 1.0;
      if (k < w + s + d) {
        const double prog = (k - w - s) / max_d(1.0, d);
        return above_floor(wsd_shape(static_cast<int>(p[f::decay_type]), prog, p[f::num_cycles], false), r);
      }
      return r;
    }
    default:
      return 1.0;
  }
}

// ---- timm (timm/scheduler/*_lr.py, _get_lr) -------------------------------------------------------------
// bisect.bisect_right(a, x) over the n values as stored (timm bisects decay_t as the caller gave it).
LRF_HD int64_t bisect_right(const double* a, int64_t n, double x) {
  int64_t lo = 0, hi = n;
  while (lo < hi) {
    const int64_t mid = (lo + hi) / 2;
    if (x < a[mid]) hi = mid; else lo = mid + 1;
  }
  return lo;
}

// The lr after warmup at timm's t (already shifted by warmup_t when warmup_prefix), base value b.
LRF_HD double timm_after_warmup(const double* p, double t, double b) {
  namespace f = field::TIMM;
  const int shape = static_cast<int>(p[f::shape]);
  if (shape == timm::STEP) return b * pow(p[f::decay_rate], py_floordiv(t, p[f::decay_t]));
  if (shape == timm::MULTI_STEP) {
    const int64_t passed = bisect_right(p + f::kFixed, as_int(p[f::count]), t + 1.0);
    return b * pow(p[f::decay_rate], static_cast<double>(passed));
  }
  const double t_initial = p[f::t_initial], mul = p[f::cycle_mul], lr_min = p[f::lr_min];
  double i, t_i, t_curr;
  if (mul != 1.0) {
    i = floor(log(1.0 - t / t_initial * (1.0 - mul)) / log(mul));  // math.log(x, mul)
    t_i = pow(mul, i) * t_initial;
    t_curr = t - (1.0 - pow(mul, i)) / (1.0 - mul) * t_initial;
  } else {
    i = py_floordiv(t, t_initial);
    t_i = t_initial;
    t_curr = t - t_initial * i;
  }
  if (!(i < p[f::cycle_limit])) return lr_min;
  const double lr_max = b * pow(p[f::cycle_decay], i);
  if (shape == timm::TANH) {
    const double tr = t_curr / t_i;
    return lr_min + 0.5 * (lr_max - lr_min) * (1.0 - tanh(p[f::lb] * (1.0 - tr) + p[f::ub] * tr));
  }
  const double k = p[f::k_decay];
  const double frac = pow(t_curr, k) / pow(t_i, k);
  if (shape == timm::POLY) return lr_min + (lr_max - lr_min) * pow(1.0 - frac, p[f::power]);
  return toward(lr_min, lr_max, half_cos(kPi * pow(t_curr, k) / pow(t_i, k)));  // COSINE
}

LRF_HD double timm_lr(const double* p, int64_t k, double b) {
  namespace f = field::TIMM;
  const double t = static_cast<double>(k), w = p[f::warmup_t], init = p[f::warmup_lr_init];
  const bool prefix = p[f::warmup_prefix] != 0.0;
  if (k == 0) return w > 0.0 ? init : b;  // what timm's constructor leaves in the group, not _get_lr(0)
  if (t < w) {
    // timm warms up towards the base value; TanhLRScheduler without warmup_prefix towards its lr at warmup_t
    const double target = static_cast<int>(p[f::shape]) == timm::TANH && !prefix ? timm_after_warmup(p, w, b) : b;
    return init + t * ((target - init) / w);
  }
  return timm_after_warmup(p, prefix ? t - w : t, b);
}

// timm's WSDLRScheduler._get_lr (timm/scheduler/wsd_lr.py): warmup, then a stable phase (constant or an
// inverse power of time), then the last decay_t of t_initial decaying to lr_min.
LRF_HD double timm_wsd_lr(const double* p, int64_t k, double b) {
  namespace f = field::TIMM_WSD;
  const double t = static_cast<double>(k), w = p[f::warmup_t], init = p[f::warmup_lr_init];
  if (k == 0) return w > 0.0 ? init : b;  // what timm's constructor leaves in the group
  if (t < w) return init + t * ((b - init) / w);
  const double t_s = t - w;
  double stable = 1.0;
  if (static_cast<int>(p[f::stable_fn]) != timm_wsd::CONSTANT) {
    const double power = static_cast<int>(p[f::stable_fn]) == timm_wsd::RSQRT ? 0.5 : p[f::stable_power];
    stable = pow(1.0 + t_s / p[f::stable_timescale], -power);
  }
  const double lr_min = p[f::lr_min];
  const double stable_lr = max_d(b * stable, lr_min);
  const double decay_t = p[f::decay_t];
  const double t_decay = t_s - (p[f::t_initial] - decay_t);
  if (t_decay <= 0.0) return stable_lr;
  const double ratio = t_decay / decay_t;
  const double frac = 1.0 < ratio ? 1.0 : ratio;  // Python's min(ratio, 1.)
  double decay;
  switch (static_cast<int>(p[f::decay_fn])) {
    case timm_wsd::decay::LINEAR: decay = 1.0 - frac; break;
    case timm_wsd::decay::ONE_MINUS_SQRT: decay = 1.0 - sqrt(frac); break;
    case timm_wsd::decay::COSINE: decay = half_cos(kPi * frac); break;
    case timm_wsd::decay::POWER: decay = 1.0 - pow(frac, p[f::decay_power]); break;
    case timm_wsd::decay::EXP: {
      const double r = p[f::decay_ratio];
      decay = (pow(r, frac) - r) / (1.0 - r);
      break;
    }
    default: {  // TABLE: decay_fn(t_decay / decay_t) for t_decay = 1 .. count, the last held
      const int64_t n = as_int(p[f::count]);
      const int64_t i = static_cast<int64_t>(t_decay) < n ? static_cast<int64_t>(t_decay) : n;
      decay = p[f::kFixed + (i < 1 ? 1 : i) - 1];
    }
  }
  return lr_min + (stable_lr - lr_min) * decay;
}

// ---- DeepSpeed (deepspeed/runtime/lr_schedules.py) ------------------------------------------------------
// DeepSpeed steps its scheduler after each optimizer step, so step k applies get_lr() at
// last_batch_iteration i = k - 1 (i = -1: what the constructor set).
LRF_HD double ds_warmup_ratio(const double* p, double i) {  // _get_gamma / get_lr_ratio's warmup part
  namespace f = field::DS_WARMUP;
  const double w = p[f::warmup_num_steps];
  return p[f::log_warmup] != 0.0 ? (1.0 / log(w)) * log(i + 1.0) : i / w;
}

LRF_HD double ds_warmup_lr(const double* p, int64_t k, double b) {
  namespace f = field::DS_WARMUP;
  const double i = static_cast<double>(k) - 1.0, w = p[f::warmup_num_steps], total = p[f::total_num_steps];
  const int variant = static_cast<int>(p[f::variant]);
  if (variant == ds::WARMUP_COSINE_LR) {
    if (i < 0.0) return 0.0;
    double ratio;
    if (i < w) {
      ratio = p[f::warmup_min_ratio] + ds_warmup_ratio(p, i) * (1.0 - p[f::warmup_min_ratio]);
    } else {
      const double real_total = total - w > 1.0 ? total - w : 1.0;
      const double progress = (i - w + 1.0) / real_total;
      const double c = p[f::cos_min_ratio];
      ratio = max_d(0.0, c + (1.0 - c) * half_cos(kPi * (progress < 1.0 ? progress : 1.0)));
    }
    return b * ratio;
  }
  const double min_lr = p[f::min_lr], max_lr = p[f::max_is_base] != 0.0 ? b : p[f::max_lr];
  if (i < 0.0) return min_lr;
  double gamma = 1.0;
  if (i < w) gamma = ds_warmup_ratio(p, i);
  else if (variant == ds::WARMUP_DECAY_LR) gamma = max_d(0.0, (total - i) / max_d(1.0, total - w));
  return min_lr + (max_lr - min_lr) * gamma;
}

LRF_HD double ds_range_test_lr(const double* p, int64_t k) {
  namespace f = field::DS_RANGE_TEST;
  double interval = static_cast<double>(k) / p[f::step_size];
  if (p[f::staircase] != 0.0) interval = floor(interval);
  return p[f::min_lr] * (1.0 + p[f::step_rate] * interval);
}

// OneCycle's _get_scale_factor at batch_iteration = last_batch_iteration + 1 = k.
LRF_HD double ds_one_cycle_scale(const double* p, int64_t k) {
  namespace f = field::DS_ONE_CYCLE;
  const double first = p[f::first_step_size], second = p[f::second_step_size];
  const double total = first + second, ratio = first / total, it = static_cast<double>(k);
  const double cycle = floor(1.0 + it / total);
  const double x = 1.0 + it / total - cycle;
  double scale, stairs;
  if (x <= ratio) {
    scale = x / ratio;
    stairs = p[f::first_stair_count];
  } else {
    scale = (x - 1.0) / (ratio - 1.0);
    stairs = p[f::second_stair_count];
  }
  if (stairs > 0.0) {
    const double at = fmod(it, total);
    const double position = at <= first ? at * stairs / first : (total - at) * stairs / second;
    scale = floor(position) / stairs;
  }
  return scale;
}

// which = 0: lr, 1: momentum (beta1).
LRF_HD double ds_one_cycle(const double* p, int64_t k, int which) {
  namespace f = field::DS_ONE_CYCLE;
  const double total = p[f::first_step_size] + p[f::second_step_size];
  const double lo = which == 0 ? p[f::min_lr] : p[f::min_mom], hi = which == 0 ? p[f::max_lr] : p[f::max_mom];
  if (which == 1 && k == 0) return lo;  // the constructor sets cycle_min_mom, whatever the cycle says
  if (static_cast<double>(k) - 1.0 < total) {
    const double height = (hi - lo) * ds_one_cycle_scale(p, k);
    return which == 0 ? lo + height : hi - height;
  }
  const double decay_interval = (static_cast<double>(k) - total) / p[f::decay_step_size];
  if (which == 0) return p[f::skip_lr_decay] != 0.0 ? lo : lo / (1.0 + p[f::decay_lr_rate] * decay_interval);
  return p[f::skip_mom_decay] != 0.0 ? hi : hi * (1.0 + p[f::decay_mom_rate] * decay_interval);
}

// ---- optax (optax/schedules/_schedule.py), at count = k ----------------------------------------------
LRF_HD double optax_lr(int kind, const double* p, int64_t k) {
  const double count = static_cast<double>(k);
  switch (kind) {
    case OPTAX_POLYNOMIAL: {
      namespace f = field::OPTAX_POLYNOMIAL;
      const double steps = p[f::transition_steps], init = p[f::init_value], end = p[f::end_value];
      if (steps <= 0.0) return init;
      double c = count - p[f::transition_begin];
      c = c < 0.0 ? 0.0 : (c > steps ? steps : c);
      return toward(end, init, pow(1.0 - c / steps, p[f::power]));
    }
    case OPTAX_EXPONENTIAL: {
      namespace f = field::OPTAX_EXPONENTIAL;
      const double steps = p[f::transition_steps], rate = p[f::decay_rate], init = p[f::init_value];
      if (steps <= 0.0 || rate == 0.0) return init;
      const double decreased = count - p[f::transition_begin];
      double e = decreased / steps;
      if (p[f::staircase] != 0.0) e = floor(e);
      double v = decreased <= 0.0 ? init : init * pow(rate, e);
      if (p[f::has_end] != 0.0) {
        const double end = p[f::end_value];
        v = rate < 1.0 ? (v > end ? v : end) : (v < end ? v : end);
      }
      return v;
    }
    case OPTAX_COSINE: {
      namespace f = field::OPTAX_COSINE;
      const double steps = p[f::decay_steps], alpha = p[f::alpha];
      const double c = count < steps ? count : steps;
      return p[f::init_value] * ((1.0 - alpha) * pow(half_cos(kPi * c / steps), p[f::exponent]) + alpha);
    }
    case OPTAX_PIECEWISE_CONSTANT: {
      namespace f = field::OPTAX_PIECEWISE_CONSTANT;
      double v = p[f::init_value];
      const int64_t n = as_int(p[f::count]);
      for (int64_t i = 0; i < n; ++i)
        if (count >= p[f::kFixed + 2 * i]) v = p[f::kFixed + 2 * i + 1] * v;
      return v;
    }
    default: {  // OPTAX_PIECEWISE_INTERPOLATE
      namespace f = field::OPTAX_PIECEWISE_INTERPOLATE;
      const int64_t n = as_int(p[f::count]);
      const double* bounds = p + f::kFixed;  // bounds[-1] is 0
      const double* values = bounds + n;     // values[-1] is init_value
      double sum = 0.0;
      for (int64_t i = 0; i < n; ++i) {
        const double lo = i == 0 ? 0.0 : bounds[i - 1], hi = bounds[i];
        if (!(lo <= count && count < hi)) continue;
        const double start = i == 0 ? p[f::init_value] : values[i - 1], end = values[i];
        const double pct = (count - lo) / (hi - lo > 1.0 ? hi - lo : 1.0);
        sum += anneal_between(static_cast<int>(p[f::interpolate]), start, end, pct);  // optax's two interpolations
      }
      const double last_bound = n > 0 ? bounds[n - 1] : 0.0, last_value = n > 0 ? values[n - 1] : p[f::init_value];
      if (last_bound <= count) sum += last_value;
      return sum;
    }
  }
}

LRF_HD double cosine_between(double eta, double b, double k, double period) {
  return toward(eta, b, half_cos(kPi * k / period));
}

// lr of one leaf node at step k, for a group whose (possibly already chained) base lr is b.
LRF_HD double leaf_lr(const double* n, int64_t k, double b, const double* plateau_lr) {
  const double* p = fields_of(n);
  const int kind = kind_of(n);
  switch (kind) {
    case CONSTANT:
      return b;
    case TABLE: {
      const int64_t count = as_int(p[field::TABLE::count]);
      return count > 0 ? b * p[field::TABLE::kFixed + min_i64(k, count - 1)] : b;
    }
    case STEP: {
      namespace f = field::STEP;
      const int64_t step_size = as_int(p[f::step_size]);
      return b * pow(p[f::gamma], static_cast<double>(step_size > 0 ? k / step_size : 0));
    }
    case MULTI_STEP: {
      namespace f = field::MULTI_STEP;
      const int64_t count = as_int(p[f::count]);
      int64_t passed = 0;
      for (int64_t i = 0; i < count; ++i) passed += as_int(p[f::kFixed + i]) <= k ? 1 : 0;
      return b * pow(p[f::gamma], static_cast<double>(passed));
    }
    case CONSTANT_FACTOR: {
      namespace f = field::CONSTANT_FACTOR;
      const double factor = p[f::factor];
      const double past = k >= as_int(p[f::total_iters]) ? 1.0 : 0.0;
      return b * (factor + past * (1.0 - factor));
    }
    case LINEAR: {
      namespace f = field::LINEAR;
      const double s = p[f::start_factor], e = p[f::end_factor];
      const int64_t total = as_int(p[f::total_iters]);
      return b * (s + (e - s) * static_cast<double>(min_i64(total, k)) / static_cast<double>(total));
    }
    case EXPONENTIAL:
      return b * pow(p[field::EXPONENTIAL::gamma], static_cast<double>(k));
    case POLYNOMIAL: {
      namespace f = field::POLYNOMIAL;
      const int64_t total = as_int(p[f::total_iters]);
      const double frac = static_cast<double>(min_i64(total, k)) / static_cast<double>(total);
      return b * pow(1.0 - frac, p[f::power]);
    }
    case COSINE: {
      namespace f = field::COSINE;
      return cosine_between(p[f::eta_min], b, static_cast<double>(k), p[f::T_max]);
    }
    case COSINE_WARM_RESTARTS: {
      namespace f = field::COSINE_WARM_RESTARTS;
      int64_t t_i = as_int(p[f::T_0]);
      const int64_t mult = as_int(p[f::T_mult]);
      int64_t t_cur = k;
      if (t_i < 1 || mult < 1) return b;  // refused by validate_program; never a division by 0 or an endless loop
      if (mult == 1) {
        t_cur = k % t_i;
      } else {
        // t_i at least doubles per restart, so a step below 2^63 takes fewer than 63 rounds; t_i never
        // overflows (once it exceeds INT64_MAX / mult, it already exceeds every step).
        for (int round = 0; round < 64 && t_cur >= t_i; ++round) {
          t_cur -= t_i;
          if (t_i > INT64_MAX / mult) break;
          t_i *= mult;
        }
      }
      return cosine_between(p[f::eta_min], b, static_cast<double>(t_cur), static_cast<double>(t_i));
    }
    case CYCLIC: {
      namespace f = field::CYCLIC;
      double s, g;
      cyclic_factors(p, k, &s, &g);
      const double base_height = (p[f::max_lr] - p[f::base_lr]) * s;
      return p[f::base_lr] + base_height * g;
    }
    case ONE_CYCLE:
      return one_cycle(p, k, 0);
    case PLATEAU:
      return plateau_lr != nullptr ? *plateau_lr : b;
    case TIMM:
      return timm_lr(p, k, b);
    case TIMM_WSD:
      return timm_wsd_lr(p, k, b);
    case DS_WARMUP:
      return ds_warmup_lr(p, k, b);
    case DS_RANGE_TEST:
      return ds_range_test_lr(p, k);
    case DS_ONE_CYCLE:
      return ds_one_cycle(p, k, 0);
    case OPTAX_POLYNOMIAL: case OPTAX_EXPONENTIAL: case OPTAX_COSINE: case OPTAX_PIECEWISE_CONSTANT:
    case OPTAX_PIECEWISE_INTERPOLATE:
      return optax_lr(kind, p, k);
    default:
      if (kind >= HF_CONSTANT_WITH_WARMUP && kind <= HF_WSD) return b * hf_lr_factor(kind, p, k, b);
      return b;
  }
}

// Scheduled momentum of a leaf, if it cycles momentum.
LRF_HD bool leaf_momentum(const double* n, int64_t k, double* out) {
  const double* p = fields_of(n);
  switch (kind_of(n)) {
    case CYCLIC: {
      namespace f = field::CYCLIC;
      if (p[f::cycle_momentum] == 0.0) return false;
      double s, g;
      cyclic_factors(p, k, &s, &g);
      const double base_height = (p[f::max_momentum] - p[f::base_momentum]) * s;
      *out = p[f::max_momentum] - base_height * g;
      return true;
    }
    case ONE_CYCLE:
      if (p[field::ONE_CYCLE::cycle_momentum] == 0.0) return false;
      *out = one_cycle(p, k, 1);
      return true;
    case DS_ONE_CYCLE:
      if (p[field::DS_ONE_CYCLE::cycle_momentum] == 0.0) return false;
      *out = ds_one_cycle(p, k, 1);
      return true;
    default:
      return false;
  }
}

}  // namespace detail

// lr at optimizer step k for a group whose base lr is base_lr. plateau_lr points at the group's current
// ReduceLROnPlateau lr (nullptr outside an optimizer: the plateau leaf then returns base_lr).
// Leaves are visited depth first in program order; each maps the running lr v (initially base_lr) to
// leaf(k', v), so a CHAINED node multiplies its (multiplicative) children's factors.
LRF_HD double lr_at(const double* prog, int64_t k, double base_lr, const double* plateau_lr) {
  if (k < 0) k = 0;  // steps count from 0; a negative one would index before a table
  detail::Frame stack[kMaxStack];
  int top = 0;
  stack[top++] = detail::Frame{prog, k, false};
  double v = base_lr;
  while (top > 0) {
    const detail::Frame f = stack[--top];
    if (f.post) v = detail::after_child(f.node, f.k, v);
    else if (!detail::expand(f.node, f.k, stack, top)) v = detail::leaf_lr(f.node, f.k, v, plateau_lr);
  }
  return v;
}

// Scheduled momentum (SGD momentum / Adam beta1) at step k, or `fallback` when the schedule does not
// cycle momentum (the last cycling leaf visited wins, as the last torch scheduler to step would).
LRF_HD double momentum_at(const double* prog, int64_t k, double fallback) {
  if (k < 0) k = 0;
  detail::Frame stack[kMaxStack];
  int top = 0;
  stack[top++] = detail::Frame{prog, k, false};
  double m = fallback;
  while (top > 0) {
    const detail::Frame f = stack[--top];
    if (f.post) continue;  // wrappers change the lr only
    if (!detail::expand(f.node, f.k, stack, top)) {
      double leaf_m;
      if (detail::leaf_momentum(f.node, f.k, &leaf_m)) m = leaf_m;
    }
  }
  return m;
}

// Hyperparameter `slot` (HYPER_*) at step k for a group whose value of it is `base`: the program's schedule
// for that slot when its root is a HYPERS node with one, else `base` (weight decay: base * lr_k / reference
// with a wd_lr_reference; lr_k is the step's lr).
LRF_HD double hyper_at(const double* prog, int slot, int64_t k, double base, double lr_k) {
  if (detail::kind_of(prog) != HYPERS) return base;
  namespace f = field::HYPERS;
  const double* p = detail::fields_of(prog);
  const int64_t count = detail::as_int(p[f::count]);
  const double* child = p + f::kFixed + count;
  child += detail::len_of(child);  // past the lr schedule
  for (int64_t i = 0; i < count; ++i) {
    if (detail::as_int(p[f::kFixed + i]) == slot) return lr_at(child, k, base, nullptr);
    child += detail::len_of(child);
  }
  if (slot == HYPER_WEIGHT_DECAY && p[f::wd_lr_reference] > 0.0) return base * (lr_k / p[f::wd_lr_reference]);
  return base;
}

// Whether hyperparameter `slot` has a schedule in `prog` (a HYPERS root scheduling it; weight decay also with
// wd_lr_reference): then its value may differ from the group's base, which may be 0.
LRF_HD bool schedules_hyper(const double* prog, int slot) {
  if (detail::kind_of(prog) != HYPERS) return false;
  namespace f = field::HYPERS;
  const double* p = detail::fields_of(prog);
  if (slot == HYPER_WEIGHT_DECAY && p[f::wd_lr_reference] > 0.0) return true;
  for (int64_t i = 0; i < detail::as_int(p[f::count]); ++i)
    if (detail::as_int(p[f::kFixed + i]) == slot) return true;
  return false;
}

// Whether `prog` (len doubles) is a program the evaluators above can run: known kinds, node lengths that
// match their kind's parameters and stay inside the program, integer slots that are integers in range,
// positive divisors (STEP's step_size, PER_EPOCH's steps_per_epoch, CosineAnnealingWarmRestarts' T_0 and
// T_mult), and nesting that fits kMaxStack frames. Returns nullptr, or what is wrong. Host code: it runs
// at the C++ op boundary and where a program is packed, before any kernel sees the program.
namespace detail {
inline bool is_int_in(double v, double lo, double hi) { return v == floor(v) && v >= lo && v <= hi; }

// Validates the node at prog[at .. end) and returns its frame need (peak stack height while evaluating it,
// counted from the height after it was popped), or -1 with *why set.
inline int64_t check_node(const double* prog, int64_t at, int64_t end, int depth, const char** why) {
  constexpr double kMaxInt = 9007199254740992.0;  // 2^53: integers stored as doubles are exact below
  // Nesting itself costs the evaluators no frames (a SEQUENTIAL child replaces its parent); the bound only
  // keeps this recursive host check's own stack small.
  if (depth > 4096) { *why = "schedule program nests too deep"; return -1; }
  if (end - at < 2) { *why = "schedule program: node header past the end"; return -1; }
  const double* n = prog + at;
  if (!is_int_in(n[0], 0, 1000) || !is_int_in(n[1], 2, static_cast<double>(end - at))) {
    *why = "schedule program: bad node kind or length";
    return -1;
  }
  const int kind = kind_of(n);
  const int64_t len = len_of(n);
  const double* p = n + 2;
  const int64_t np = len - 2;  // parameter (and child) doubles
  auto fixed = [&](int64_t count) {
    if (np != count) *why = "schedule program: node length does not match its kind";
    return np == count;
  };
  auto counted = [&](double count, int64_t before, int64_t per) {  // [.. before .., count x per]
    if (!is_int_in(count, 0, kMaxInt) || np != before + per * static_cast<int64_t>(count)) {
      *why = "schedule program: table length does not match its count";
      return false;
    }
    return true;
  };
  const int fixed_count = fixed_field_count(kind);
  if (fixed_count < 0) { *why = "schedule program: unknown node kind"; return -1; }
  if (np < fixed_count) { *why = "schedule program: node shorter than its kind's fields"; return -1; }
  switch (kind) {
    case TABLE: {
      namespace f = field::TABLE;
      if (!counted(p[f::count], f::kFixed, 1)) return -1;
      if (p[f::count] < 1) { *why = "schedule program: empty table"; return -1; }
      return 0;
    }
    case STEP:
      if (!fixed(field::STEP::kFixed)) return -1;
      if (!is_int_in(p[field::STEP::step_size], 1, kMaxInt)) { *why = "schedule program: step_size must be a positive integer"; return -1; }
      return 0;
    case MULTI_STEP: {
      namespace f = field::MULTI_STEP;
      if (!counted(p[f::count], f::kFixed, 1)) return -1;
      for (int64_t i = 0; i < static_cast<int64_t>(p[f::count]); ++i)
        if (!is_int_in(p[f::kFixed + i], -kMaxInt, kMaxInt)) { *why = "schedule program: milestones must be integers"; return -1; }
      return 0;
    }
    case CONSTANT_FACTOR:
      if (!fixed(field::CONSTANT_FACTOR::kFixed)) return -1;
      if (!is_int_in(p[field::CONSTANT_FACTOR::total_iters], 0, kMaxInt)) { *why = "schedule program: total_iters must be an integer >= 0"; return -1; }
      return 0;
    case POLYNOMIAL: case LINEAR:  // divide by total_iters
      if (!fixed(fixed_count)) return -1;
      if (!is_int_in(kind == LINEAR ? p[field::LINEAR::total_iters] : p[field::POLYNOMIAL::total_iters], 1, kMaxInt)) {
        *why = "schedule program: total_iters must be a positive integer";
        return -1;
      }
      return 0;
    case COSINE_WARM_RESTARTS: {
      namespace f = field::COSINE_WARM_RESTARTS;
      if (!fixed(f::kFixed)) return -1;
      if (!is_int_in(p[f::T_0], 1, kMaxInt) || !is_int_in(p[f::T_mult], 1, kMaxInt)) {
        *why = "schedule program: T_0 and T_mult must be positive integers";
        return -1;
      }
      return 0;
    }
    case CYCLIC: {
      namespace f = field::CYCLIC;
      if (!counted(p[f::count], f::kFixed, 1)) return -1;
      if (!is_int_in(p[f::scale], cyclic::TRIANGULAR, cyclic::TABLE) || (p[f::scale] == cyclic::TABLE && p[f::count] < 1)) {
        *why = "schedule program: bad CyclicLR scale";
        return -1;
      }
      return 0;
    }
    case ONE_CYCLE: {
      namespace f = field::ONE_CYCLE;
      if (!counted(p[f::count], f::kFixed, field::ONE_CYCLE_PHASE::kFixed)) return -1;
      if (p[f::count] < 1 || !is_int_in(p[f::total_steps], 0, kMaxInt)) { *why = "schedule program: OneCycleLR needs a phase and total_steps"; return -1; }
      return 0;
    }
    case SEQUENTIAL: case CHAINED: case PER_EPOCH: {
      // Composites' fixed fields: PER_EPOCH [steps_per_epoch]; SEQUENTIAL and CHAINED [count].
      static_assert(field::SEQUENTIAL::count == 0 && field::CHAINED::count == 0 && field::PER_EPOCH::steps_per_epoch == 0 &&
                        field::SEQUENTIAL::kFixed == 1 && field::CHAINED::kFixed == 1 && field::PER_EPOCH::kFixed == 1,
                    "composites keep their one fixed field first");
      int64_t count = 1;
      int64_t first_child = 1;
      if (kind == PER_EPOCH) {
        if (!is_int_in(p[0], 1, kMaxInt)) { *why = "schedule program: steps_per_epoch must be a positive integer"; return -1; }
      } else {
        // CHAINED pushes all its children at once (kMaxStack bounds them); SEQUENTIAL pushes one.
        if (!is_int_in(p[0], 1, kind == CHAINED ? kMaxStack : kMaxInt) || p[0] > np) {
          *why = "schedule program: bad number of child schedules";
          return -1;
        }
        count = static_cast<int64_t>(p[0]);
        first_child = kind == SEQUENTIAL ? count : 1;  // SEQUENTIAL: [count, count-1 milestones, children]
        if (np < first_child) { *why = "schedule program: composite node too short"; return -1; }
        for (int64_t i = 1; kind == SEQUENTIAL && i < count; ++i)
          if (!is_int_in(p[i], -kMaxInt, kMaxInt)) { *why = "schedule program: milestones must be integers"; return -1; }
      }
      int64_t child = at + 2 + first_child;
      int64_t need = kind == CHAINED ? count : 1;
      for (int64_t i = 0; i < count; ++i) {
        const int64_t child_need = check_node(prog, child, at + len, depth + 1, why);
        if (child_need < 0) return -1;
        const int64_t below = kind == CHAINED ? count - 1 - i : 0;  // frames still waiting under it
        if (below + child_need > need) need = below + child_need;
        child += len_of(prog + child);
      }
      if (child != at + len) { *why = "schedule program: children do not fill their parent"; return -1; }
      return need;
    }
    case HYPERS: {
      namespace f = field::HYPERS;
      if (!is_int_in(p[f::count], 0, 3) || np < f::kFixed + p[f::count]) {
        *why = "schedule program: bad HYPERS node";
        return -1;
      }
      const int64_t count = static_cast<int64_t>(p[f::count]);
      for (int64_t i = 0; i < count; ++i) {
        const double s = p[f::kFixed + i];
        if (s != HYPER_DAMPENING_BETA2 && s != HYPER_EPS && s != HYPER_WEIGHT_DECAY) {
          *why = "schedule program: HYPERS schedules dampening|beta2, eps and weight_decay only";
          return -1;
        }
        for (int64_t j = 0; j < i; ++j)
          if (p[f::kFixed + j] == s) { *why = "schedule program: a HYPERS slot twice"; return -1; }
      }
      int64_t child = at + 2 + f::kFixed + count;
      int64_t need = 1;
      for (int64_t i = 0; i <= count; ++i) {
        if (child >= at + len) { *why = "schedule program: HYPERS without its schedules"; return -1; }
        const int64_t child_need = check_node(prog, child, at + len, depth + 1, why);
        if (child_need < 0) return -1;
        if (child_need > need) need = child_need;
        child += len_of(prog + child);
      }
      if (child != at + len) { *why = "schedule program: children do not fill their parent"; return -1; }
      return need;
    }
    case CLAMP: case RESTART: case NOISE: {
      // [fields (NOISE: then count noise values)] then one child; CLAMP and NOISE keep a frame under it
      int64_t before = fixed_count;
      if (kind == RESTART && !is_int_in(p[field::RESTART::period], 1, kMaxInt)) {
        *why = "schedule program: RESTART period must be a positive integer";
        return -1;
      }
      if (kind == NOISE) {
        namespace f = field::NOISE;
        if (!is_int_in(p[f::start], -kMaxInt, kMaxInt) || !is_int_in(p[f::count], 0, static_cast<double>(np - f::kFixed))) {
          *why = "schedule program: bad NOISE range";
          return -1;
        }
        before += static_cast<int64_t>(p[f::count]);
      }
      if (np <= before) { *why = "schedule program: wrapper without its schedule"; return -1; }
      const int64_t child = at + 2 + before;
      const int64_t child_need = check_node(prog, child, at + len, depth + 1, why);
      if (child_need < 0) return -1;
      if (child + len_of(prog + child) != at + len) { *why = "schedule program: children do not fill their parent"; return -1; }
      if (kind == RESTART) return child_need;
      // the second visit waits under the child: two frames while a leaf child is pushed, one under a composite's
      return child_need + 1 > 2 ? child_need + 1 : 2;
    }
    case TIMM: {
      namespace f = field::TIMM;
      if (!counted(p[f::count], f::kFixed, 1)) return -1;
      if (!is_int_in(p[f::shape], timm::COSINE, timm::MULTI_STEP) || !(p[f::t_initial] > 0.0) ||
          (p[f::shape] == timm::STEP && p[f::decay_t] == 0.0)) {
        *why = "schedule program: bad timm schedule (shape, t_initial > 0, decay_t != 0)";
        return -1;
      }
      return 0;
    }
    case TIMM_WSD: {
      namespace f = field::TIMM_WSD;
      if (!counted(p[f::count], f::kFixed, 1)) return -1;
      const bool table = p[f::decay_fn] == timm_wsd::decay::TABLE;
      if (!(p[f::decay_t] > 0.0) || !is_int_in(p[f::stable_fn], timm_wsd::CONSTANT, timm_wsd::POWER) ||
          !is_int_in(p[f::decay_fn], timm_wsd::decay::LINEAR, timm_wsd::decay::TABLE) || (table && p[f::count] < 1)) {
        *why = "schedule program: bad timm WSD schedule (decay_t > 0, stable_fn, decay_fn)";
        return -1;
      }
      return 0;
    }
    case DS_WARMUP:
      if (!fixed(fixed_count)) return -1;
      if (!is_int_in(p[field::DS_WARMUP::variant], ds::WARMUP_LR, ds::WARMUP_COSINE_LR) ||
          !(p[field::DS_WARMUP::warmup_num_steps] >= 2.0)) {
        *why = "schedule program: bad DeepSpeed warmup (variant, warmup_num_steps >= 2)";
        return -1;
      }
      return 0;
    case DS_RANGE_TEST:
      if (!fixed(fixed_count)) return -1;
      if (!is_int_in(p[field::DS_RANGE_TEST::step_size], 1, kMaxInt)) {
        *why = "schedule program: lr_range_test_step_size must be a positive integer";
        return -1;
      }
      return 0;
    case DS_ONE_CYCLE: {
      namespace f = field::DS_ONE_CYCLE;
      if (!fixed(fixed_count)) return -1;
      const bool decays = p[f::skip_lr_decay] == 0.0 || (p[f::cycle_momentum] != 0.0 && p[f::skip_mom_decay] == 0.0);
      if (!(p[f::first_step_size] > 0.0) || !(p[f::second_step_size] >= 0.0) || (decays && p[f::decay_step_size] == 0.0)) {
        *why = "schedule program: bad DeepSpeed OneCycle step sizes";
        return -1;
      }
      return 0;
    }
    case OPTAX_COSINE:
      if (!fixed(fixed_count)) return -1;
      if (!(p[field::OPTAX_COSINE::decay_steps] > 0.0)) { *why = "schedule program: decay_steps must be positive"; return -1; }
      return 0;
    case OPTAX_PIECEWISE_CONSTANT:
      return counted(p[field::OPTAX_PIECEWISE_CONSTANT::count], field::OPTAX_PIECEWISE_CONSTANT::kFixed, 2) ? 0 : -1;
    case OPTAX_PIECEWISE_INTERPOLATE: {
      namespace f = field::OPTAX_PIECEWISE_INTERPOLATE;
      if (!counted(p[f::count], f::kFixed, 2)) return -1;
      if (!is_int_in(p[f::interpolate], anneal::COS, anneal::LINEAR)) { *why = "schedule program: bad interpolation"; return -1; }
      return 0;
    }
    default:  // every other kind is its fixed fields and nothing else
      return fixed(fixed_count) ? 0 : -1;
  }
}
}  // namespace detail

inline const char* validate_program(const double* prog, int64_t len) {
  const char* why = nullptr;
  const int64_t need = detail::check_node(prog, 0, len, 1, &why);
  if (need < 0) return why;
  if (detail::len_of(prog) != len) return "schedule program: trailing values after the root node";
  if (need > kMaxStack) return "schedule program needs more than kMaxStack evaluation frames";
  return nullptr;
}

// ReduceLROnPlateau: one reported metric (torch.optim.lr_scheduler.ReduceLROnPlateau.step, exactly).
// state: the sched_state array (layout in contract.h). While state[SCHED_PLATEAU_EPOCH] == 0 no metric
// has been reported yet and `best` is taken as +inf (mode min) / -inf (mode max) whatever the slot holds,
// so a zero-initialised sched_state is a valid fresh state.
// config: the plateau::Config fields (contract.h), then min_lr_0 .. min_lr_{num_groups-1}
namespace detail {
// ReduceLROnPlateau's is_better (GreedyLR's too): metric against the best so far, by mode and threshold mode.
LRF_HD bool metric_is_better(double metric, double best, bool mode_max, bool thr_abs, double threshold) {
  if (!mode_max && !thr_abs) return metric < best * (1.0 - threshold);
  if (!mode_max) return metric < best - threshold;
  if (!thr_abs) return metric > best * (threshold + 1.0);
  return metric > best + threshold;
}

// ReduceLROnPlateau's _reduce_lr (GreedyLR's too): every group's lr to max(lr * factor, min_lr), unless that
// changes it by eps or less.
LRF_HD void reduce_plateau_lrs(double* state, int num_groups, double factor, const double* min_lrs, double eps) {
  for (int g = 0; g < num_groups; ++g) {
    double& lr = state[sched_slot(REGION_PLATEAU_LR, num_groups, g)];
    const double new_lr = max_d(lr * factor, min_lrs[g]);
    if (lr - new_lr > eps) lr = new_lr;
  }
}
}  // namespace detail

LRF_HD void plateau_step(double* state, int num_groups, double metric, const double* config) {
  const bool mode_max = config[plateau::mode_is_max] != 0.0;
  const double factor = config[plateau::factor], patience = config[plateau::patience];
  const double threshold = config[plateau::threshold];
  const bool thr_abs = config[plateau::threshold_is_abs] != 0.0;
  const double cooldown = config[plateau::cooldown], eps = config[plateau::eps];
  const double* min_lrs = config + plateau::kFixed;

  double best = state[SCHED_PLATEAU_BEST];
  if (state[SCHED_PLATEAU_EPOCH] == 0.0) best = mode_max ? -HUGE_VAL : HUGE_VAL;
  state[SCHED_PLATEAU_EPOCH] += 1.0;

  const bool better = detail::metric_is_better(metric, best, mode_max, thr_abs, threshold);

  double num_bad = state[SCHED_PLATEAU_BAD];
  double cooldown_counter = state[SCHED_PLATEAU_COOLDOWN];
  if (better) {
    best = metric;
    num_bad = 0.0;
  } else {
    num_bad += 1.0;
  }
  if (cooldown_counter > 0.0) {
    cooldown_counter -= 1.0;
    num_bad = 0.0;
  }
  if (num_bad > patience) {
    detail::reduce_plateau_lrs(state, num_groups, factor, min_lrs, eps);
    cooldown_counter = cooldown;
    num_bad = 0.0;
  }
  state[SCHED_PLATEAU_BEST] = best;
  state[SCHED_PLATEAU_BAD] = num_bad;
  state[SCHED_PLATEAU_COOLDOWN] = cooldown_counter;
}

// HuggingFace's GreedyLR: one reported metric (transformers.optimization.GreedyLR.step, exactly). state: the
// sched_state (the lrs and the plateau header slots); gs: greedy_state (contract.h); config: the
// greedy::Config fields, then min_lrs, max_lrs and initial lrs (num_groups each). A zero-initialised
// greedy_state with a fresh sched_state is a fresh scheduler.
LRF_HD void greedy_step(double* state, double* gs, int num_groups, double metric, const double* config) {
  namespace c = greedy;
  const bool mode_max = config[c::mode_is_max] != 0.0;
  const double factor = config[c::factor], patience = config[c::patience], threshold = config[c::threshold];
  const bool thr_abs = config[c::threshold_is_abs] != 0.0;
  const double eps = config[c::eps];
  const double* min_lrs = config + c::kFixed;
  const double* max_lrs = min_lrs + num_groups;
  const double* init_lrs = max_lrs + num_groups;
  const double worst = mode_max ? -HUGE_VAL : HUGE_VAL;

  double current = metric;
  if (config[c::smooth] != 0.0) {  // StreamingAverage.streamavg: append, then drop the oldest past the window
    const int64_t window = static_cast<int64_t>(config[c::window_size]);
    double* ring = gs + c::RING;
    const double count_d = gs[c::AVG_COUNT], head_d = gs[c::AVG_HEAD];
    int64_t count = 0, head = 0;
    double sum = 0.0;
    // The window's position indexes memory: one outside the window (a state no report can leave) starts a
    // fresh window rather than reading or writing past it (checkpoints are checked on load).
    if (count_d >= 0.0 && count_d <= static_cast<double>(window) && head_d >= 0.0 && head_d < static_cast<double>(window)) {
      count = static_cast<int64_t>(count_d);
      head = static_cast<int64_t>(head_d);
      sum = gs[c::AVG_SUM];
    }
    sum += metric;
    if (count < window) {
      ring[(head + count) % window] = metric;
      count += 1;
    } else {
      const double removed = ring[head];
      ring[head] = metric;
      head = (head + 1) % window;
      sum -= removed;
    }
    gs[c::AVG_COUNT] = static_cast<double>(count);
    gs[c::AVG_HEAD] = static_cast<double>(head);
    gs[c::AVG_SUM] = sum;
    current = sum / static_cast<double>(count);
  }

  double best = state[SCHED_PLATEAU_EPOCH] == 0.0 ? worst : state[SCHED_PLATEAU_BEST];
  state[SCHED_PLATEAU_EPOCH] += 1.0;
  double bad = state[SCHED_PLATEAU_BAD], good = gs[c::GOOD];
  if (state[SCHED_PLATEAU_COOLDOWN] > 0.0) {
    state[SCHED_PLATEAU_COOLDOWN] -= 1.0;
    bad = good = 0.0;
  } else if (gs[c::WARMUP] > 0.0) {
    gs[c::WARMUP] -= 1.0;
    bad = good = 0.0;
  } else {
    if (detail::metric_is_better(current, best, mode_max, thr_abs, threshold)) {
      best = current;
      bad = 0.0;
      good += 1.0;
    } else {
      bad += 1.0;
      good = 0.0;
    }
    if (good > patience) {  // _increase_lr
      for (int g = 0; g < num_groups; ++g) {
        double& lr = state[sched_slot(REGION_PLATEAU_LR, num_groups, g)];
        const double old_lr = lr;
        const double up = old_lr / factor;
        const double new_lr = max_lrs[g] < up ? max_lrs[g] : up;  // Python's min(up, max_lr)
        if (new_lr - old_lr > eps) lr = new_lr;
      }
      gs[c::AT_MIN] = 0.0;
      gs[c::WARMUP] = config[c::warmup];
      good = 0.0;
    } else if (bad > patience) {  // _reduce_lr
      detail::reduce_plateau_lrs(state, num_groups, factor, min_lrs, eps);
      bool all_at_min = true;
      for (int g = 0; g < num_groups; ++g)
        if (state[sched_slot(REGION_PLATEAU_LR, num_groups, g)] > min_lrs[g]) all_at_min = false;
      if (all_at_min) {
        gs[c::AT_MIN] += 1.0;
        if (config[c::reset_start] - gs[c::AT_MIN] <= 0.0) {  // _reset
          for (int g = 0; g < num_groups; ++g) state[sched_slot(REGION_PLATEAU_LR, num_groups, g)] = init_lrs[g];
          best = worst;
          bad = good = 0.0;
          gs[c::WARMUP] = 0.0;
          gs[c::AT_MIN] = 0.0;
          gs[c::AVG_COUNT] = gs[c::AVG_SUM] = gs[c::AVG_HEAD] = 0.0;
        }
      }
      state[SCHED_PLATEAU_COOLDOWN] = config[c::cooldown];  // after a reset too, as GreedyLR.step does
      bad = 0.0;
    }
  }
  state[SCHED_PLATEAU_BEST] = best;
  state[SCHED_PLATEAU_BAD] = bad;
  gs[c::GOOD] = good;
}

}  // namespace sched
}  // namespace lrfused
