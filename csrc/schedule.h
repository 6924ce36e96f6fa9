// Every learning-rate schedule formula, once, as host+device code (see ../shared/SCHEDULES.md).
//
// A schedule is packed by lrfused/schedules.py (Schedule._pack) into a flat float64 "program":
//   node := [kind, node_length_in_doubles, params..., children...]
// Composite nodes (SEQUENTIAL, CHAINED, PER_EPOCH) hold their children inline after their own params.
// Tabulated schedules carry their table inline. The program is self-contained: the CPU kernel, the
// CUDA kernels and Schedule.lr_at all evaluate the same bytes with the functions below.
//
// Plain-nvcc friendly: no std containers, no exceptions, no recursion (composites are walked with an
// explicit stack of kMaxStack frames; schedules.py refuses programs that would need more), and only the
// global double functions of <cmath> (cos, pow, ...), which are __host__ __device__ under nvcc.
#pragma once
#include <cmath>
#include <cstdint>
#include "lrf_common.h"

namespace lrfused {
namespace sched {

// Node kinds and their parameter slots (after [kind, length]). Integers are stored as doubles (exact
// up to 2^53). Keep in sync with lrfused/schedules.py (_K_* constants).
enum Kind : int {
  CONSTANT = 0,              // []                                   lr = b
  TABLE = 1,                 // [n, t_0 .. t_{n-1}]                  lr = b * t[min(k, n-1)]
  STEP = 2,                  // [step_size, gamma]                   lr = b * gamma^floor(k / step_size)
  MULTI_STEP = 3,            // [gamma, n, m_0 .. m_{n-1} (sorted)]  lr = b * gamma^#{m_i <= k}
  CONSTANT_FACTOR = 4,       // [factor, total_iters]                ConstantLR
  LINEAR = 5,                // [start_factor, end_factor, total_iters]
  EXPONENTIAL = 6,           // [gamma]
  POLYNOMIAL = 7,            // [total_iters, power]
  COSINE = 8,                // [T_max, eta_min]
  COSINE_WARM_RESTARTS = 9,  // [T_0, T_mult, eta_min]
  CYCLIC = 10,               // [base_lr, max_lr, total_size, step_ratio, scale(0 tri, 1 tri2, 2 exp_range,
                             //  3 table), gamma, scale_mode(0 cycle, 1 iterations), cycle_momentum,
                             //  base_momentum, max_momentum, n, table_0 .. table_{n-1}]
  ONE_CYCLE = 11,            // [total_steps, anneal(0 cos, 1 linear), cycle_momentum, n_phases,
                             //  n_phases x (end_step, start_lr, end_lr, start_momentum, end_momentum)]
  PLATEAU = 12,              // []                                   lr = *plateau_lr (b on the host)
  SEQUENTIAL = 13,           // [n, milestone_1 .. milestone_{n-1}, child_0 .. child_{n-1}]
  CHAINED = 14,              // [n, child_0 .. child_{n-1}]          lr = child_{n-1}(..child_0(k, b)..)
  PER_EPOCH = 15,            // [steps_per_epoch, child]             lr = child(floor(k / steps_per_epoch))
  // HuggingFace transformers' named schedules (multiplier m(k) of b).
  HF_CONSTANT_WITH_WARMUP = 20,  // [W]
  HF_LINEAR = 21,                // [W, T]
  HF_COSINE = 22,                // [W, T, num_cycles, min_lr_rate, min_lr, use_min_lr]
  HF_COSINE_RESTARTS = 23,       // [W, T, num_cycles]
  HF_POLYNOMIAL = 24,            // [W, T, lr_end, power, lr_init (0: the group's base lr)]
  HF_INVERSE_SQRT = 25,          // [W, timescale]
  HF_COSINE_WARMUP_MIN_LR = 26,  // [W, T, num_cycles, min_lr_rate, min_lr, use_min_lr, has_warmup_rate,
                                 //  warmup_lr_rate]
  HF_WSD = 27,                   // [W, S, D, warmup_type, decay_type (0 linear, 1 cosine, 2 1-sqrt),
                                 //  min_lr_ratio, num_cycles]
};

constexpr int kMaxStack = 32;
constexpr double kPi = 3.141592653589793;  // == Python's math.pi

namespace detail {

struct Frame {
  const double* node;
  int64_t k;
};

LRF_HD int kind_of(const double* n) { return static_cast<int>(n[0]); }
LRF_HD int64_t len_of(const double* n) { return static_cast<int64_t>(n[1]); }
LRF_HD int64_t as_int(double v) { return static_cast<int64_t>(v); }
LRF_HD int64_t min_i64(int64_t a, int64_t b) { return a < b ? a : b; }
// Python's max(a, b): the first argument unless the second is strictly greater.
LRF_HD double max_d(double a, double b) { return b > a ? b : a; }

// Pushes the children of a composite node (so that child 0 is popped first). Returns false for leaves.
LRF_HD bool expand(const double* n, int64_t k, Frame* stack, int& top) {
  const double* p = n + 2;
  switch (kind_of(n)) {
    case SEQUENTIAL: {
      const int64_t count = as_int(p[0]);
      int64_t idx = 0;
      int64_t start = 0;
      for (int64_t i = 1; i < count; ++i) {
        const int64_t m = as_int(p[i]);
        if (m <= k) { idx = i; start = m; }
      }
      const double* child = p + count;  // after n and the count-1 milestones
      for (int64_t i = 0; i < idx; ++i) child += len_of(child);
      if (top < kMaxStack) stack[top++] = Frame{child, k - start};
      return true;
    }
    case CHAINED: {
      const int64_t count = as_int(p[0]);
      const double* child = p + 1;
      const int first = top;
      for (int64_t i = 0; i < count && top < kMaxStack; ++i) {
        stack[top++] = Frame{child, k};
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
      const int64_t spe = as_int(p[0]);
      if (top < kMaxStack) stack[top++] = Frame{p + 1, spe > 0 ? k / spe : k};
      return true;
    }
    default:
      return false;
  }
}

// CyclicLR's position inside the cycle (scale_factor) and amplitude scale (scale_fn), as torch computes
// them (torch/optim/lr_scheduler.py, CyclicLR.get_lr).
LRF_HD void cyclic_factors(const double* p, int64_t k, double* s_out, double* g_out) {
  const double total = p[2], ratio = p[3];
  const double kd = static_cast<double>(k);
  const double cycle = floor(1.0 + kd / total);
  const double x = 1.0 + kd / total - cycle;
  *s_out = x <= ratio ? x / ratio : (x - 1.0) / (ratio - 1.0);
  const int scale = static_cast<int>(p[4]);
  const bool by_cycle = p[6] == 0.0;
  const double arg = by_cycle ? cycle : kd;
  double g = 1.0;
  if (scale == 1) {
    g = 1.0 / pow(2.0, arg - 1.0);
  } else if (scale == 2) {
    g = pow(p[5], arg);
  } else if (scale == 3) {
    const int64_t n = as_int(p[10]);
    // The table holds scale_fn(1), scale_fn(2), ... by cycle, or scale_fn(0), scale_fn(1), ... by step.
    int64_t i = by_cycle ? as_int(cycle) - 1 : k;
    if (i < 0) i = 0;
    g = p[11 + min_i64(i, n - 1)];
  }
  *g_out = g;
}

LRF_HD double anneal(int strategy, double start, double end, double pct) {
  if (strategy == 0) {
    const double cos_out = cos(kPi * pct) + 1.0;
    return end + (start - end) / 2.0 * cos_out;
  }
  return (end - start) * pct + start;
}

// OneCycleLR: which = 0 for lr, 1 for momentum.
LRF_HD double one_cycle(const double* p, int64_t k, int which) {
  const int64_t total = as_int(p[0]);
  const double step = static_cast<double>(k < total ? k : total);  // lr(T) holds past the end
  const int strategy = static_cast<int>(p[1]);
  const int64_t phases = as_int(p[3]);
  double start_step = 0.0;
  for (int64_t i = 0; i < phases; ++i) {
    const double* ph = p + 4 + 5 * i;
    const double end_step = ph[0];
    if (step <= end_step || i == phases - 1) {
      const double pct = (step - start_step) / (end_step - start_step);
      return which == 0 ? anneal(strategy, ph[1], ph[2], pct) : anneal(strategy, ph[3], ph[4], pct);
    }
    start_step = end_step;
  }
  return 0.0;  // unreachable for a valid program (phases >= 1)
}

LRF_HD double hf_warmup(double k, double w) { return k / max_d(1.0, w); }

LRF_HD double hf_lr_factor(int kind, const double* p, int64_t k_int, double b) {
  const double k = static_cast<double>(k_int);
  const double w = p[0];
  switch (kind) {
    case HF_CONSTANT_WITH_WARMUP:
      return k < w ? hf_warmup(k, w) : 1.0;
    case HF_LINEAR: {
      const double t = p[1];
      if (k < w) return hf_warmup(k, w);
      return max_d(0.0, (t - k) / max_d(1.0, t - w));
    }
    case HF_COSINE: {
      const double t = p[1], cycles = p[2];
      if (k < w) return hf_warmup(k, w);
      const double r = p[5] != 0.0 ? p[4] / b : p[3];
      const double progress = (k - w) / max_d(1.0, t - w);
      double f = 0.5 * (1.0 + cos(kPi * cycles * 2.0 * progress));
      f = f * (1.0 - r) + r;
      return max_d(0.0, f);
    }
    case HF_COSINE_RESTARTS: {
      const double t = p[1], cycles = p[2];
      if (k < w) return hf_warmup(k, w);
      const double progress = (k - w) / max_d(1.0, t - w);
      if (progress >= 1.0) return 0.0;
      return max_d(0.0, 0.5 * (1.0 + cos(kPi * fmod(cycles * progress, 1.0))));
    }
    case HF_POLYNOMIAL: {
      const double t = p[1], lr_end = p[2], power = p[3];
      const double lr_init = p[4] > 0.0 ? p[4] : b;
      if (k < w) return hf_warmup(k, w);
      if (k > t) return lr_end / lr_init;
      // t == w: HF divides by zero here; the decay is over, so lr_end (the continuous limit).
      const double pct_remaining = t > w ? 1.0 - (k - w) / (t - w) : 0.0;
      return ((lr_init - lr_end) * pow(pct_remaining, power) + lr_end) / lr_init;
    }
    case HF_INVERSE_SQRT: {
      const double tau = p[1];
      if (k < w) return hf_warmup(k, w);
      return 1.0 / sqrt((k + (tau - w)) / tau);
    }
    case HF_COSINE_WARMUP_MIN_LR: {
      const double t = p[1], cycles = p[2];
      if (k < w) {
        if (p[6] == 0.0) return (k + 1.0) / max_d(1.0, w);
        const double wr = p[7];
        return wr + (1.0 - wr) * k / max_d(1.0, w - 1.0);
      }
      const double r = p[5] != 0.0 ? p[4] / b : p[3];
      const double progress = (k - w + 1.0) / max_d(1.0, t - w);
      double f = 0.5 * (1.0 + cos(kPi * cycles * 2.0 * progress));
      f = f * (1.0 - r) + r;
      return max_d(0.0, f);
    }
    case HF_WSD: {
      const double s = p[1], d = p[2], r = p[5], cycles = p[6];
      const int warm = static_cast<int>(p[3]), decay = static_cast<int>(p[4]);
      if (k < w) {
        const double prog = k / max_d(1.0, w);
        double f = warm == 0 ? prog
                 : warm == 1 ? 0.5 * (1.0 - cos(kPi * prog))
                             : 1.0 - sqrt(1.0 - prog);
        f = f * (1.0 - r) + r;
        return max_d(0.0, f);
      }
      if (k < w + s) return 1.0;
      if (k < w + s + d) {
        const double prog = (k - w - s) / max_d(1.0, d);
        double f = decay == 0 ? 1.0 - prog
                 : decay == 1 ? 0.5 * (1.0 + cos(kPi * cycles * 2.0 * prog))
                              : 1.0 - sqrt(prog);
        f = f * (1.0 - r) + r;
        return max_d(0.0, f);
      }
      return r;
    }
    default:
      return 1.0;
  }
}

// lr of one leaf node at step k, for a group whose (possibly already chained) base lr is b.
LRF_HD double leaf_lr(const double* n, int64_t k, double b, const double* plateau_lr) {
  const double* p = n + 2;
  const int kind = kind_of(n);
  switch (kind) {
    case CONSTANT:
      return b;
    case TABLE: {
      const int64_t count = as_int(p[0]);
      return count > 0 ? b * p[1 + min_i64(k, count - 1)] : b;
    }
    case STEP: {
      const int64_t step_size = as_int(p[0]);
      return b * pow(p[1], static_cast<double>(step_size > 0 ? k / step_size : 0));
    }
    case MULTI_STEP: {
      const int64_t count = as_int(p[1]);
      int64_t passed = 0;
      for (int64_t i = 0; i < count; ++i) passed += as_int(p[2 + i]) <= k ? 1 : 0;
      return b * pow(p[0], static_cast<double>(passed));
    }
    case CONSTANT_FACTOR: {
      const double factor = p[0];
      const double past = k >= as_int(p[1]) ? 1.0 : 0.0;
      return b * (factor + past * (1.0 - factor));
    }
    case LINEAR: {
      const double s = p[0], e = p[1];
      const int64_t total = as_int(p[2]);
      return b * (s + (e - s) * static_cast<double>(min_i64(total, k)) / static_cast<double>(total));
    }
    case EXPONENTIAL:
      return b * pow(p[0], static_cast<double>(k));
    case POLYNOMIAL: {
      const int64_t total = as_int(p[0]);
      const double frac = static_cast<double>(min_i64(total, k)) / static_cast<double>(total);
      return b * pow(1.0 - frac, p[1]);
    }
    case COSINE: {
      const double eta = p[1];
      return eta + (b - eta) * (1.0 + cos(kPi * static_cast<double>(k) / p[0])) / 2.0;
    }
    case COSINE_WARM_RESTARTS: {
      int64_t t_i = as_int(p[0]);
      const int64_t mult = as_int(p[1]);
      const double eta = p[2];
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
      return eta + (b - eta) * (1.0 + cos(kPi * static_cast<double>(t_cur) /
                                               static_cast<double>(t_i))) / 2.0;
    }
    case CYCLIC: {
      double s, g;
      cyclic_factors(p, k, &s, &g);
      const double base_height = (p[1] - p[0]) * s;
      return p[0] + base_height * g;
    }
    case ONE_CYCLE:
      return one_cycle(p, k, 0);
    case PLATEAU:
      return plateau_lr != nullptr ? *plateau_lr : b;
    default:
      if (kind >= HF_CONSTANT_WITH_WARMUP && kind <= HF_WSD) return b * hf_lr_factor(kind, p, k, b);
      return b;
  }
}

// Scheduled momentum of a leaf, if it cycles momentum.
LRF_HD bool leaf_momentum(const double* n, int64_t k, double* out) {
  const double* p = n + 2;
  switch (kind_of(n)) {
    case CYCLIC: {
      if (p[7] == 0.0) return false;
      double s, g;
      cyclic_factors(p, k, &s, &g);
      const double base_height = (p[9] - p[8]) * s;
      *out = p[9] - base_height * g;
      return true;
    }
    case ONE_CYCLE:
      if (p[2] == 0.0) return false;
      *out = one_cycle(p, k, 1);
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
  stack[top++] = detail::Frame{prog, k};
  double v = base_lr;
  while (top > 0) {
    const detail::Frame f = stack[--top];
    if (!detail::expand(f.node, f.k, stack, top)) v = detail::leaf_lr(f.node, f.k, v, plateau_lr);
  }
  return v;
}

// Scheduled momentum (SGD momentum / Adam beta1) at step k, or `fallback` when the schedule does not
// cycle momentum (the last cycling leaf visited wins, as the last torch scheduler to step would).
LRF_HD double momentum_at(const double* prog, int64_t k, double fallback) {
  if (k < 0) k = 0;
  detail::Frame stack[kMaxStack];
  int top = 0;
  stack[top++] = detail::Frame{prog, k};
  double m = fallback;
  while (top > 0) {
    const detail::Frame f = stack[--top];
    if (!detail::expand(f.node, f.k, stack, top)) {
      double leaf_m;
      if (detail::leaf_momentum(f.node, f.k, &leaf_m)) m = leaf_m;
    }
  }
  return m;
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
  switch (kind) {
    case CONSTANT: case PLATEAU: return fixed(0) ? 0 : -1;
    case TABLE:
      if (np < 1 || !counted(p[0], 1, 1)) return -1;
      if (p[0] < 1) { *why = "schedule program: empty table"; return -1; }
      return 0;
    case STEP:
      if (!fixed(2)) return -1;
      if (!is_int_in(p[0], 1, kMaxInt)) { *why = "schedule program: step_size must be a positive integer"; return -1; }
      return 0;
    case MULTI_STEP:
      if (np < 2 || !counted(p[1], 2, 1)) return -1;
      for (int64_t i = 0; i < static_cast<int64_t>(p[1]); ++i)
        if (!is_int_in(p[2 + i], -kMaxInt, kMaxInt)) { *why = "schedule program: milestones must be integers"; return -1; }
      return 0;
    case CONSTANT_FACTOR:
      if (!fixed(2)) return -1;
      if (!is_int_in(p[1], 0, kMaxInt)) { *why = "schedule program: total_iters must be an integer >= 0"; return -1; }
      return 0;
    case POLYNOMIAL: case LINEAR:  // divide by total_iters
      if (!fixed(kind == LINEAR ? 3 : 2)) return -1;
      if (!is_int_in(kind == LINEAR ? p[2] : p[0], 1, kMaxInt)) {
        *why = "schedule program: total_iters must be a positive integer";
        return -1;
      }
      return 0;
    case EXPONENTIAL: return fixed(1) ? 0 : -1;
    case COSINE: return fixed(2) ? 0 : -1;
    case COSINE_WARM_RESTARTS:
      if (!fixed(3)) return -1;
      if (!is_int_in(p[0], 1, kMaxInt) || !is_int_in(p[1], 1, kMaxInt)) {
        *why = "schedule program: T_0 and T_mult must be positive integers";
        return -1;
      }
      return 0;
    case CYCLIC:
      if (np < 11 || !counted(p[10], 11, 1)) return -1;
      if (!is_int_in(p[4], 0, 3) || (p[4] == 3 && p[10] < 1)) { *why = "schedule program: bad CyclicLR scale"; return -1; }
      return 0;
    case ONE_CYCLE:
      if (np < 4 || !counted(p[3], 4, 5)) return -1;
      if (p[3] < 1 || !is_int_in(p[0], 0, kMaxInt)) { *why = "schedule program: OneCycleLR needs a phase and total_steps"; return -1; }
      return 0;
    case SEQUENTIAL: case CHAINED: case PER_EPOCH: {
      int64_t count = 1;
      int64_t first_child = 1;  // PER_EPOCH: [steps_per_epoch, child]
      if (np < 1) { *why = "schedule program: composite without parameters"; return -1; }
      if (kind == PER_EPOCH) {
        if (!is_int_in(p[0], 1, kMaxInt)) { *why = "schedule program: steps_per_epoch must be a positive integer"; return -1; }
      } else {
        // CHAINED pushes all its children at once (kMaxStack bounds them); SEQUENTIAL pushes one.
        if (!is_int_in(p[0], 1, kind == CHAINED ? kMaxStack : kMaxInt) || p[0] > np) {
          *why = "schedule program: bad number of child schedules";
          return -1;
        }
        count = static_cast<int64_t>(p[0]);
        first_child = kind == SEQUENTIAL ? count : 1;  // SEQUENTIAL: [n, n-1 milestones, children]
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
    default:
      if (kind >= HF_CONSTANT_WITH_WARMUP && kind <= HF_WSD) {
        constexpr int64_t kHfParams[] = {1, 2, 6, 3, 5, 2, 8, 7};
        return fixed(kHfParams[kind - HF_CONSTANT_WITH_WARMUP]) ? 0 : -1;
      }
      *why = "schedule program: unknown node kind";
      return -1;
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
// state: the sched_state array (layout in lrf_common.h). While state[SCHED_PLATEAU_EPOCH] == 0 no metric
// has been reported yet and `best` is taken as +inf (mode min) / -inf (mode max) whatever the slot holds,
// so a zero-initialised sched_state is a valid fresh state.
// config: [mode_is_max, factor, patience, threshold, threshold_is_abs, cooldown, eps,
//          min_lr_0 .. min_lr_{num_groups-1}]
LRF_HD void plateau_step(double* state, int num_groups, double metric, const double* config) {
  const bool mode_max = config[0] != 0.0;
  const double factor = config[1], patience = config[2], threshold = config[3];
  const bool thr_abs = config[4] != 0.0;
  const double cooldown = config[5], eps = config[6];
  const double* min_lrs = config + 7;

  double best = state[SCHED_PLATEAU_BEST];
  if (state[SCHED_PLATEAU_EPOCH] == 0.0) best = mode_max ? -HUGE_VAL : HUGE_VAL;
  state[SCHED_PLATEAU_EPOCH] += 1.0;

  bool better;
  if (!mode_max && !thr_abs) better = metric < best * (1.0 - threshold);
  else if (!mode_max) better = metric < best - threshold;
  else if (!thr_abs) better = metric > best * (threshold + 1.0);
  else better = metric > best + threshold;

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
    for (int g = 0; g < num_groups; ++g) {
      double& lr = state[sched_plateau_lr_slot(num_groups, g)];
      const double old_lr = lr;
      const double new_lr = detail::max_d(old_lr * factor, min_lrs[g]);
      if (old_lr - new_lr > eps) lr = new_lr;
    }
    cooldown_counter = cooldown;
    num_bad = 0.0;
  }
  state[SCHED_PLATEAU_BEST] = best;
  state[SCHED_PLATEAU_BAD] = num_bad;
  state[SCHED_PLATEAU_COOLDOWN] = cooldown_counter;
}

}  // namespace sched
}  // namespace lrfused
