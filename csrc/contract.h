// The contract floor: every number that crosses the Python/C++ boundary, defined once, torch-free,
// host+device.
//
// The tables below are X-macros. The C++ reads them as typed names (field::STEP::gamma, SCHED_STEP,
// FLAG_AMSGRAD, DType::BF16 ...); lrfused/contract.py reads the same tables from the extension at import
// (contract_tables.cpp turns them into Python dicts), so neither side copies a number from the other, and
// tests/test_contract.py proves that every kind packs and round-trips.
#pragma once
#include <cstdint>

#include "lrf_common.h"

namespace lrfused {

// ---- schedule programs ---------------------------------------------------------------------------
// A schedule is packed into a flat float64 "program": node := [kind, node_length_in_doubles, fields...,
// tail..., children...]. Integers are stored as doubles (exact up to 2^53). Per kind: its id, its fixed
// fields in slot order, and what follows them (the tail, counted by the field named `count`):
//   TABLE        count values                 MULTI_STEP  count milestones (sorted)
//   CYCLIC       count scale_fn values        ONE_CYCLE   count phases of ONE_CYCLE_PHASE fields
//   SEQUENTIAL   count - 1 milestones, then count child nodes
//   CHAINED      count child nodes            PER_EPOCH   one child node
//   CLAMP, RESTART  one child node            NOISE       count noise values, then one child node
//   HYPERS       count hyperparameter slots, then count + 1 child nodes (the lr schedule first)
//   TIMM         count milestones (MULTI_STEP shape)      TIMM_WSD  count decay_fn values (TABLE)
//   OPTAX_PIECEWISE_CONSTANT     count (boundary, scale) pairs
//   OPTAX_PIECEWISE_INTERPOLATE  count boundaries, then count values
#define LRF_FIELDS_CONSTANT(F)
#define LRF_FIELDS_TABLE(F) F(count)
#define LRF_FIELDS_STEP(F) F(step_size) F(gamma)
#define LRF_FIELDS_MULTI_STEP(F) F(gamma) F(count)
#define LRF_FIELDS_CONSTANT_FACTOR(F) F(factor) F(total_iters)
#define LRF_FIELDS_LINEAR(F) F(start_factor) F(end_factor) F(total_iters)
#define LRF_FIELDS_EXPONENTIAL(F) F(gamma)
#define LRF_FIELDS_POLYNOMIAL(F) F(total_iters) F(power)
#define LRF_FIELDS_COSINE(F) F(T_max) F(eta_min)
#define LRF_FIELDS_COSINE_WARM_RESTARTS(F) F(T_0) F(T_mult) F(eta_min)
// scale: CYCLIC_SCALE_*; scale_mode: 0 by cycle, 1 by iteration; base/max_momentum used when cycle_momentum
#define LRF_FIELDS_CYCLIC(F)                                                                             \
  F(base_lr) F(max_lr) F(total_size) F(step_ratio) F(scale) F(gamma) F(scale_mode) F(cycle_momentum)     \
  F(base_momentum) F(max_momentum) F(count)
// anneal: 0 cos, 1 linear
#define LRF_FIELDS_ONE_CYCLE(F) F(total_steps) F(anneal) F(cycle_momentum) F(count)
#define LRF_FIELDS_PLATEAU(F)
#define LRF_FIELDS_SEQUENTIAL(F) F(count)
#define LRF_FIELDS_CHAINED(F) F(count)
#define LRF_FIELDS_PER_EPOCH(F) F(steps_per_epoch)
// Generic wrappers of one child node. CLAMP: the child's lr kept inside [min_lr, max_lr] (+-inf: no bound).
// RESTART: the child evaluated at k mod period. NOISE: lr + lr * noise[k - start] for start <= k < start +
// count (the count noise values follow the fields, then the child).
#define LRF_FIELDS_CLAMP(F) F(min_lr) F(max_lr)
#define LRF_FIELDS_RESTART(F) F(period)
#define LRF_FIELDS_NOISE(F) F(start) F(count)
// A group's lr schedule together with schedules of its other hyperparameters: count hyperparameter slots
// (HYPER_*) follow, then the lr schedule, then one schedule per slot, each evaluated with the group's value
// of that hyperparameter as its base. wd_lr_reference > 0: weight decay scaled by lr_k / wd_lr_reference
// (timm's corrected_weight_decay, whose reference is the optimizer's lr) when it has no schedule of its own.
#define LRF_FIELDS_HYPERS(F) F(count) F(wd_lr_reference)
// timm's schedulers (timm.scheduler), one leaf: shape TIMM_SHAPE_*; the base value is the group's lr.
// MULTI_STEP: count milestones (decay_t) follow, in the caller's order (timm bisects them as given).
#define LRF_FIELDS_TIMM(F)                                                                               \
  F(shape) F(t_initial) F(lr_min) F(cycle_mul) F(cycle_decay) F(cycle_limit) F(k_decay) F(lb) F(ub)      \
  F(power) F(decay_t) F(decay_rate) F(warmup_t) F(warmup_lr_init) F(warmup_prefix) F(count)
// timm's WSDLRScheduler: stable_fn TIMM_WSD_STABLE_*, decay_fn TIMM_WSD_DECAY_* (TABLE: a Python callable,
// tabulated at t_decay = 1 .. count, the count values following the fields).
#define LRF_FIELDS_TIMM_WSD(F)                                                                           \
  F(t_initial) F(decay_t) F(lr_min) F(stable_fn) F(stable_timescale) F(stable_power) F(decay_fn)          \
  F(decay_power) F(decay_ratio) F(warmup_t) F(warmup_lr_init) F(count)
// DeepSpeed's lr_schedules, evaluated at last_batch_iteration = k - 1. DS_WARMUP: variant DS_WARMUP_*;
// max_is_base: warmup_max_lr is the group's lr (WarmupLR's default); log_warmup: warmup_type "log".
#define LRF_FIELDS_DS_WARMUP(F)                                                                          \
  F(variant) F(min_lr) F(max_lr) F(max_is_base) F(warmup_num_steps) F(log_warmup) F(total_num_steps)     \
  F(warmup_min_ratio) F(cos_min_ratio)
#define LRF_FIELDS_DS_RANGE_TEST(F) F(min_lr) F(step_size) F(step_rate) F(staircase)
#define LRF_FIELDS_DS_ONE_CYCLE(F)                                                                       \
  F(min_lr) F(max_lr) F(first_step_size) F(second_step_size) F(first_stair_count) F(second_stair_count)  \
  F(decay_step_size) F(decay_lr_rate) F(skip_lr_decay) F(cycle_momentum) F(min_mom) F(max_mom)           \
  F(decay_mom_rate) F(skip_mom_decay)
// optax's schedules (optax.schedules): absolute values, the group's lr is not read.
#define LRF_FIELDS_OPTAX_POLYNOMIAL(F) F(init_value) F(end_value) F(power) F(transition_steps) F(transition_begin)
#define LRF_FIELDS_OPTAX_EXPONENTIAL(F)                                                                  \
  F(init_value) F(transition_steps) F(decay_rate) F(transition_begin) F(staircase) F(has_end) F(end_value)
#define LRF_FIELDS_OPTAX_COSINE(F) F(init_value) F(decay_steps) F(alpha) F(exponent)
// count (boundary, scale) pairs follow, sorted by boundary
#define LRF_FIELDS_OPTAX_PIECEWISE_CONSTANT(F) F(init_value) F(count)
// interpolate: ANNEAL_*; count boundaries (sorted) follow, then the count values after them (the running
// products of the scales times init_value)
#define LRF_FIELDS_OPTAX_PIECEWISE_INTERPOLATE(F) F(init_value) F(interpolate) F(count)
// HuggingFace transformers' named schedules: multipliers m(k) of the group's base lr.
#define LRF_FIELDS_HF_CONSTANT_WITH_WARMUP(F) F(warmup)
#define LRF_FIELDS_HF_LINEAR(F) F(warmup) F(total)
// use_min_lr: 1 when min_lr (absolute) is given, 0 when min_lr_rate is
#define LRF_FIELDS_HF_COSINE(F) F(warmup) F(total) F(num_cycles) F(min_lr_rate) F(min_lr) F(use_min_lr)
#define LRF_FIELDS_HF_COSINE_RESTARTS(F) F(warmup) F(total) F(num_cycles)
// lr_init 0: the group's base lr
#define LRF_FIELDS_HF_POLYNOMIAL(F) F(warmup) F(total) F(lr_end) F(power) F(lr_init)
#define LRF_FIELDS_HF_INVERSE_SQRT(F) F(warmup) F(timescale)
#define LRF_FIELDS_HF_COSINE_WARMUP_MIN_LR(F)                                                           \
  F(warmup) F(total) F(num_cycles) F(min_lr_rate) F(min_lr) F(use_min_lr) F(has_warmup_rate) F(warmup_lr_rate)
// warmup_type / decay_type: WSD_SHAPE_*
#define LRF_FIELDS_HF_WSD(F)                                                                             \
  F(warmup) F(stable) F(decay) F(warmup_type) F(decay_type) F(min_lr_ratio) F(num_cycles)

// X(NAME, id)
#define LRF_SCHEDULE_KINDS(X)                                                                            \
  X(CONSTANT, 0) X(TABLE, 1) X(STEP, 2) X(MULTI_STEP, 3) X(CONSTANT_FACTOR, 4) X(LINEAR, 5)               \
  X(EXPONENTIAL, 6) X(POLYNOMIAL, 7) X(COSINE, 8) X(COSINE_WARM_RESTARTS, 9) X(CYCLIC, 10)                \
  X(ONE_CYCLE, 11) X(PLATEAU, 12) X(SEQUENTIAL, 13) X(CHAINED, 14) X(PER_EPOCH, 15)                       \
  X(HF_CONSTANT_WITH_WARMUP, 20) X(HF_LINEAR, 21) X(HF_COSINE, 22) X(HF_COSINE_RESTARTS, 23)              \
  X(HF_POLYNOMIAL, 24) X(HF_INVERSE_SQRT, 25) X(HF_COSINE_WARMUP_MIN_LR, 26) X(HF_WSD, 27)                \
  X(CLAMP, 16) X(RESTART, 17) X(NOISE, 18) X(HYPERS, 19) X(TIMM, 30) X(TIMM_WSD, 31)                                                     \
  X(DS_WARMUP, 40) X(DS_RANGE_TEST, 41) X(DS_ONE_CYCLE, 42)                                                \
  X(OPTAX_POLYNOMIAL, 50) X(OPTAX_EXPONENTIAL, 51) X(OPTAX_COSINE, 52) X(OPTAX_PIECEWISE_CONSTANT, 53)     \
  X(OPTAX_PIECEWISE_INTERPOLATE, 54)

// Records inside a tail.
#define LRF_FIELDS_ONE_CYCLE_PHASE(F) F(end_step) F(start_lr) F(end_lr) F(start_momentum) F(end_momentum)

// Enumerations stored in fields. X(NAME, value)
#define LRF_CYCLIC_SCALES(X) X(TRIANGULAR, 0) X(TRIANGULAR2, 1) X(EXP_RANGE, 2) X(TABLE, 3)
#define LRF_WSD_SHAPES(X) X(LINEAR, 0) X(COSINE, 1) X(ONE_MINUS_SQRT, 2)
#define LRF_ANNEALS(X) X(COS, 0) X(LINEAR, 1)
#define LRF_TIMM_SHAPES(X) X(COSINE, 0) X(TANH, 1) X(POLY, 2) X(STEP, 3) X(MULTI_STEP, 4)
#define LRF_TIMM_WSD_STABLES(X) X(CONSTANT, 0) X(RSQRT, 1) X(POWER, 2)
#define LRF_TIMM_WSD_DECAYS(X) X(LINEAR, 0) X(ONE_MINUS_SQRT, 1) X(COSINE, 2) X(POWER, 3) X(EXP, 4) X(TABLE, 5)
#define LRF_DS_WARMUPS(X) X(WARMUP_LR, 0) X(WARMUP_DECAY_LR, 1) X(WARMUP_COSINE_LR, 2)

namespace sched {
#define LRF_KIND_ENUM(NAME, ID) NAME = ID,
enum Kind : int { LRF_SCHEDULE_KINDS(LRF_KIND_ENUM) };
#undef LRF_KIND_ENUM

// field::<KIND>::<name> is the slot of a field after [kind, length]; field::<KIND>::kFixed the number of
// fixed fields (the tail starts there).
namespace field {
#define LRF_FIELD_ENUM(name) name,
#define LRF_KIND_FIELDS(NAME, ID) \
  namespace NAME { enum : int { LRF_FIELDS_##NAME(LRF_FIELD_ENUM) kFixed }; }
LRF_SCHEDULE_KINDS(LRF_KIND_FIELDS)
namespace ONE_CYCLE_PHASE { enum : int { LRF_FIELDS_ONE_CYCLE_PHASE(LRF_FIELD_ENUM) kFixed }; }
#undef LRF_KIND_FIELDS
#undef LRF_FIELD_ENUM
}  // namespace field

#define LRF_VALUE_ENUM(NAME, V) NAME = V,
namespace cyclic { enum Scale : int { LRF_CYCLIC_SCALES(LRF_VALUE_ENUM) }; }
namespace wsd { enum Shape : int { LRF_WSD_SHAPES(LRF_VALUE_ENUM) }; }
namespace anneal { enum Anneal : int { LRF_ANNEALS(LRF_VALUE_ENUM) }; }
namespace timm { enum Shape : int { LRF_TIMM_SHAPES(LRF_VALUE_ENUM) }; }
namespace ds { enum Warmup : int { LRF_DS_WARMUPS(LRF_VALUE_ENUM) }; }
namespace timm_wsd {
enum Stable : int { LRF_TIMM_WSD_STABLES(LRF_VALUE_ENUM) };
namespace decay { enum Decay : int { LRF_TIMM_WSD_DECAYS(LRF_VALUE_ENUM) }; }
}  // namespace timm_wsd
#undef LRF_VALUE_ENUM

// Number of fixed fields of a kind, or -1 for an unknown kind.
LRF_HD int fixed_field_count(int kind) {
  switch (kind) {
#define LRF_KIND_COUNT(NAME, ID) case NAME: return field::NAME::kFixed;
    LRF_SCHEDULE_KINDS(LRF_KIND_COUNT)
#undef LRF_KIND_COUNT
    default: return -1;
  }
}

// Composites are walked with an explicit stack of this many frames (no recursion on a GPU).
constexpr int kMaxStack = 32;
}  // namespace sched

// ---- ReduceLROnPlateau's configuration: fixed fields, then one min_lr per param group -----------------
#define LRF_PLATEAU_CONFIG(F) F(mode_is_max) F(factor) F(patience) F(threshold) F(threshold_is_abs) F(cooldown) F(eps)
namespace plateau {
#define LRF_FIELD_ENUM(name) name,
enum Config : int { LRF_PLATEAU_CONFIG(LRF_FIELD_ENUM) kFixed };
#undef LRF_FIELD_ENUM
// The CUDA report kernel takes the configuration by value: at most this many groups.
constexpr int kMaxGroupsCuda = 64;
}  // namespace plateau

// ---- HuggingFace's GreedyLR (transformers.optimization.GreedyLR): fixed fields, then the min_lrs, max_lrs
// and initial lrs of the param groups (num_groups each). Its lr per group is REGION_PLATEAU_LR, its best /
// bad / cooldown / report count the plateau header slots; the rest of its state is greedy_state.
#define LRF_GREEDY_CONFIG(F)                                                                             \
  F(mode_is_max) F(factor) F(patience) F(threshold) F(threshold_is_abs) F(cooldown) F(warmup) F(eps)     \
  F(reset_start) F(smooth) F(window_size)
namespace greedy {
#define LRF_FIELD_ENUM(name) name,
enum Config : int { LRF_GREEDY_CONFIG(LRF_FIELD_ENUM) kFixed };
#undef LRF_FIELD_ENUM
// greedy_state: these slots, then (with smooth) window_size slots holding the smoothing window (a ring).
// X(NAME, slot, python name)
#define LRF_GREEDY_SLOTS(X)                                                                              \
  X(GOOD, 0, num_good_epochs) X(WARMUP, 1, warmup_counter)                                               \
  X(AT_MIN, 2, at_min_reductions) /* reductions with every group at min_lr since the last increase/reset */ \
  X(AVG_COUNT, 3, window_count) X(AVG_SUM, 4, window_sum) X(AVG_HEAD, 5, window_head) X(RING, 6, ring)
#define LRF_SLOT_ENUM(NAME, V, PY) NAME = V,
enum Slot : int { LRF_GREEDY_SLOTS(LRF_SLOT_ENUM) };
#undef LRF_SLOT_ENUM
LRF_HD int64_t state_size(bool smooth, int64_t window_size) { return RING + (smooth ? window_size : 0); }
}  // namespace greedy

// ---- sched_state: the per-device float64 schedule state ----------------------------------------------
// SCHED_HEADER header slots, then kSchedSlotsPerGroup regions of G slots each (G param groups).
// X(NAME, slot, python name)
#define LRF_SCHED_SLOTS(X)                                                                               \
  X(SCHED_STEP, 0, step)                       /* k: number of applied (not skipped) steps */            \
  X(SCHED_PLATEAU_BEST, 1, plateau_best)       /* best metric so far (+-inf before the first report) */  \
  X(SCHED_PLATEAU_BAD, 2, plateau_bad)         /* num_bad_epochs */                                      \
  X(SCHED_PLATEAU_COOLDOWN, 3, plateau_cooldown) /* cooldown_counter */                                  \
  X(SCHED_PLATEAU_EPOCH, 4, plateau_epoch)     /* number of metrics reported */                          \
  X(SCHED_SCHEDULED_MOMENTUM, 5, scheduled_momentum) /* CUDA scratch: momentum|beta1 of the launch */    \
  X(SCHED_SCHEDULED_DAMPENING_BETA2, 6, scheduled_dampening_beta2) /* CUDA scratch: the launch's ... */  \
  X(SCHED_SCHEDULED_EPS, 7, scheduled_eps)     /* ... scheduled hyperparameters (HYPERS programs) */     \
  X(SCHED_SCHEDULED_WEIGHT_DECAY, 8, scheduled_weight_decay)                                             \
  X(SCHED_HEADER, 12, header)                  /* first per-group slot (9-11 reserved) */
// The per-group regions, in order. X(NAME, region, python name)
#define LRF_SCHED_REGIONS(X)                                                                             \
  X(REGION_LAST_LR, 0, last_lr)             /* lr applied by the latest step */                          \
  X(REGION_PLATEAU_LR, 1, plateau_lr)       /* ReduceLROnPlateau's current lr (starts at the base lr) */ \
  X(REGION_NEXT_LR, 2, next_lr)             /* lr the next step applies (param_groups[g]["lr"]) */       \
  X(REGION_NEXT_MOMENTUM, 3, next_momentum) /* momentum|beta1 the next step applies */

#define LRF_SLOT_ENUM(NAME, V, PY) NAME = V,
enum SchedSlot : int { LRF_SCHED_SLOTS(LRF_SLOT_ENUM) };
enum SchedRegion : int { LRF_SCHED_REGIONS(LRF_SLOT_ENUM) kSchedSlotsPerGroup };
#undef LRF_SLOT_ENUM

LRF_HD int64_t sched_slot(SchedRegion region, int64_t num_groups, int64_t group) {
  return SCHED_HEADER + region * num_groups + group;
}
LRF_HD int64_t sched_size(int64_t num_groups) { return SCHED_HEADER + kSchedSlotsPerGroup * num_groups; }
// Number of groups of a sched_state of `numel` slots, or -1 when numel is not a valid size.
LRF_HD int64_t sched_num_groups(int64_t numel) {
  const int64_t per_group = numel - SCHED_HEADER;
  return per_group >= kSchedSlotsPerGroup && per_group % kSchedSlotsPerGroup == 0 ? per_group / kSchedSlotsPerGroup
                                                                                  : -1;
}

// ---- the optimizer step ----------------------------------------------------------------------------
#define LRF_OPTIMIZERS(X) X(OPT_SGD, 0, SGD) X(OPT_ADAM, 1, ADAM)
#define LRF_OPT_FLAGS(X) X(FLAG_AMSGRAD, 1, amsgrad) X(FLAG_NESTEROV, 2, nesterov) X(FLAG_MAXIMIZE, 4, maximize) \
  X(FLAG_DECOUPLED_WD, 8, decoupled_weight_decay) /* AdamW: p *= 1 - lr_k * weight_decay */            \
  X(FLAG_STOCHASTIC_ROUNDING, 16, stochastic_rounding) /* bf16 stores round stochastically (math::sr) */
// Per-step hyperparameters of a group, by slot: X(NAME, slot, SGD's name, Adam's name)
#define LRF_HYPERS(X)                                                                                    \
  X(HYPER_LR, 0, lr, lr) X(HYPER_MOMENTUM_BETA1, 1, momentum, beta1)                                      \
  X(HYPER_DAMPENING_BETA2, 2, dampening, beta2) X(HYPER_EPS, 3, unused, eps)                             \
  X(HYPER_WEIGHT_DECAY, 4, weight_decay, weight_decay)

#define LRF_VALUE_ENUM3(NAME, V, PY) NAME = V,
#define LRF_VALUE_ENUM4(NAME, V, A, B) NAME = V,
enum OptimizerKind : int { LRF_OPTIMIZERS(LRF_VALUE_ENUM3) };
enum OptFlags : int { LRF_OPT_FLAGS(LRF_VALUE_ENUM3) };
#define LRF_FLAG_OR(NAME, V, PY) | V
constexpr int kAllFlags = 0 LRF_OPT_FLAGS(LRF_FLAG_OR);
#undef LRF_FLAG_OR
enum HyperSlot : int { LRF_HYPERS(LRF_VALUE_ENUM4) HYPER_COUNT };
// The hyperparameters a HYPERS program may schedule besides the lr and momentum: the slots
// kFirstScheduledHyper .. HYPER_COUNT - 1 (loops over them need no array, which device code could not read).
constexpr int kFirstScheduledHyper = HYPER_DAMPENING_BETA2;
static_assert(HYPER_EPS == kFirstScheduledHyper + 1 && HYPER_WEIGHT_DECAY == kFirstScheduledHyper + 2 &&
                  HYPER_COUNT == kFirstScheduledHyper + 3,
              "the scheduled hyperparameters are the last three slots");
// The sched_state scratch slot where the CUDA schedule kernel leaves a launch's value of hyperparameter h.
LRF_HD int scheduled_hyper_slot(int h) {
  switch (h) {
    case HYPER_MOMENTUM_BETA1: return SCHED_SCHEDULED_MOMENTUM;
    case HYPER_DAMPENING_BETA2: return SCHED_SCHEDULED_DAMPENING_BETA2;
    case HYPER_EPS: return SCHED_SCHEDULED_EPS;
    case HYPER_WEIGHT_DECAY: return SCHED_SCHEDULED_WEIGHT_DECAY;
    default: return -1;  // the lr has its per-group regions
  }
}
#undef LRF_VALUE_ENUM3
#undef LRF_VALUE_ENUM4

// Element types the kernels take (one enum for the CPU and CUDA kernels). X(NAME, value, torch name)
// Q8: block-quantized 8-bit state (uint8 codes and a float32 absmax per block; quant8.h), a state dtype only.
#define LRF_DTYPES(X) X(F32, 0, float32) X(F64, 1, float64) X(BF16, 2, bfloat16) X(F16, 3, float16) X(Q8, 4, uint8)
#define LRF_DTYPE_ENUM(NAME, V, PY) NAME = V,
enum class DType : int { LRF_DTYPES(LRF_DTYPE_ENUM) };
#undef LRF_DTYPE_ENUM
// (parameter dtype, state dtype) pairs with kernels. Math is fp32, or fp64 for fp64 parameters.
#define LRF_DTYPE_PAIRS(X) X(F32, F32) X(F32, BF16) X(F64, F64) X(BF16, BF16) X(BF16, F32) X(F16, F16) X(F16, F32) \
  X(F32, Q8) X(BF16, Q8) X(F16, Q8)
LRF_HD bool supported_dtype_pair(DType param, DType state) {
#define LRF_PAIR_TEST(P, S) if (param == DType::P && state == DType::S) return true;
  LRF_DTYPE_PAIRS(LRF_PAIR_TEST)
#undef LRF_PAIR_TEST
  return false;
}

// torch.nn.utils.clip_grad_norm_: clip_coef = max_norm / (total_norm + kClipEps), clamped to 1.
constexpr double kClipEps = 1e-6;

}  // namespace lrfused
