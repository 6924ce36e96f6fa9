// The small kernels around the update: the schedule (lr and momentum of the step, once per launch), the
// step-counter increment (after every update batch of a fused step), the schedule advance, and the
// ReduceLROnPlateau report. Also the host entry launch_fused_step, which picks the optimizer family.
#include "cuda/fused_step.cuh"
#include "schedule.h"

namespace lrfused {
namespace gpu {

namespace {

// ---- schedule: lr and momentum of this step --------------------------------------------------------

struct ScheduleArgs {
  double* sched_state;
  const double* program;
  const float* found_inf;
  double hyper[HYPER_COUNT];  // the group's values (HyperSlot), the schedules' bases
  int group_index;
  int num_groups;
};

// One thread evaluates the group's schedule at k = sched_state[SCHED_STEP] with sched::lr_at /
// sched::momentum_at (the same code as the CPU kernel and Schedule.lr_at) and stores the lr as the
// applied lr (REGION_LAST_LR of the group) and the momentum in the scratch slot, where every block of the update
// kernel that follows in stream order reads them. A skipped step (found_inf) writes nothing.
__global__ void schedule_kernel(const ScheduleArgs a) {
  if (a.found_inf != nullptr && *a.found_inf != 0.0f) return;
  const int64_t k = static_cast<int64_t>(a.sched_state[SCHED_STEP]);
  const double* plateau_lr = a.sched_state + sched_slot(REGION_PLATEAU_LR, a.num_groups, a.group_index);
  const double base_lr = a.hyper[HYPER_LR], base_momentum = a.hyper[HYPER_MOMENTUM_BETA1];
  const double lr = sched::lr_at(a.program, k, base_lr, plateau_lr);
  a.sched_state[sched_slot(REGION_LAST_LR, a.num_groups, a.group_index)] = lr;
  a.sched_state[SCHED_SCHEDULED_MOMENTUM] = sched::momentum_at(a.program, k, base_momentum);
  for (int h = kFirstScheduledHyper; h < HYPER_COUNT; ++h)
    a.sched_state[scheduled_hyper_slot(h)] = sched::hyper_at(a.program, h, k, a.hyper[h], lr);
  // What param_groups[g]["lr"] shows: the lr of the next step (torch's value after opt.step(); sched.step()).
  a.sched_state[sched_slot(REGION_NEXT_LR, a.num_groups, a.group_index)] = sched::lr_at(a.program, k + 1, base_lr, plateau_lr);
  a.sched_state[sched_slot(REGION_NEXT_MOMENTUM, a.num_groups, a.group_index)] =
      sched::momentum_at(a.program, k + 1, base_momentum);
}

// ---- finalize: steps += 1 ------------------------------------------------------------------------

template <bool LARGE>
struct FinalizeArgs {
  struct Header {
    const float* found_inf;
    int count;
  };
  static constexpr int kMaxSteps =
      (ParamLimit<LARGE>::bytes - static_cast<int>(sizeof(Header)) - 64) / static_cast<int>(sizeof(float*));
  Header h;
  float* steps[kMaxSteps];
};

// Runs after every update batch of the step (stream order), so no block can see an incremented count.
template <bool LARGE>
__global__ void finalize_step_kernel(const FinalizeArgs<LARGE> args) {
  if (args.h.found_inf != nullptr && *args.h.found_inf != 0.0f) return;
  const int i = blockIdx.x * blockDim.x + threadIdx.x;
  if (i < args.h.count) *args.steps[i] += 1.0f;
}

// Increments steps[first, first + count) in launches of at most kMaxSteps pointers.
template <bool LARGE>
const char* launch_finalize(const FusedStepLaunch& a, int64_t first, int64_t count, cudaStream_t stream) {
  using Args = FinalizeArgs<LARGE>;
  static_assert(sizeof(Args) <= ParamLimit<LARGE>::bytes, "kernel arguments exceed the parameter limit");
  constexpr int kThreads = 256;
  Args args{};
  args.h.found_inf = a.found_inf;
  for (int64_t next = first; next < first + count;) {
    const int64_t left = first + count - next;
    const int n = static_cast<int>(left < Args::kMaxSteps ? left : Args::kMaxSteps);
    for (int i = 0; i < n; ++i) args.steps[i] = a.steps[next + i];
    args.h.count = n;
    if (const char* err = launch_kernel(&finalize_step_kernel<LARGE>, (n + kThreads - 1) / kThreads, kThreads,
                                        stream, args)) {
      return err;
    }
    next += n;
  }
  return nullptr;
}

// The kernel parameters are copied whole at every launch: the 4 KB table unless the tensors need more.
const char* launch_finalize_all(const FusedStepLaunch& a, cudaStream_t stream) {
#if LRF_LARGE_KERNEL_PARAMS
  if (a.num_tensors > FinalizeArgs<false>::kMaxSteps && use_large_kernel_params())
    return launch_finalize<true>(a, 0, a.num_tensors, stream);
#endif
  return launch_finalize<false>(a, 0, a.num_tensors, stream);
}

}  // namespace

const char* launch_fused_step(const FusedStepLaunch& a, cudaStream_t stream) {
  if (a.num_tensors > 0 && !supported_dtype_pair(a.param_dtype, a.state_dtype))
    return "lrfused: unsupported (param dtype, state dtype) combination";
  if (a.optimizer != OPT_SGD && a.optimizer != OPT_ADAM) return "lrfused: optimizer must be 0 (SGD) or 1 (Adam/AdamW)";
  ScheduleArgs s;
  s.sched_state = a.sched_state;
  s.program = a.program;
  s.found_inf = a.found_inf;
  for (int i = 0; i < HYPER_COUNT; ++i) s.hyper[i] = a.hyper[i];
  s.group_index = a.group_index;
  s.num_groups = a.num_groups;
  // Always, also for a group without tensors this step: the applied lr is recorded as on the CPU.
  if (const char* err = launch_kernel(&schedule_kernel, 1, 1, stream, s)) return err;
  if (a.num_tensors == 0) return nullptr;
  const char* err = a.optimizer == OPT_SGD ? launch_sgd_update(a, stream) : launch_adam_update(a, stream);
  if (err != nullptr) return err;
  return launch_finalize_all(a, stream);
}

// ---- advance -------------------------------------------------------------------------------------

namespace {
__global__ void advance_kernel(double* sched_state, const float* found_inf) {
  if (found_inf != nullptr && *found_inf != 0.0f) return;
  sched_state[SCHED_STEP] += 1.0;
}
}  // namespace

const char* launch_advance(double* sched_state, const float* found_inf, cudaStream_t stream) {
  return launch_kernel(&advance_kernel, 1, 1, stream, sched_state, found_inf);
}

// ---- ReduceLROnPlateau and GreedyLR --------------------------------------------------------------

namespace {
// Checks a report's group count and config length (fixed + per_group * num_groups doubles), copies the config
// into the kernel's arguments (by value: no host-to-device copy) and launches the one-thread kernel.
template <typename Args>
const char* launch_report(void (*kernel)(Args), Args& args, const double* config, int config_len, int fixed,
                          int per_group, int num_groups, const char* groups_error, const char* config_error,
                          cudaStream_t stream) {
  if (num_groups < 1 || num_groups > plateau::kMaxGroupsCuda) return groups_error;
  if (config_len != fixed + per_group * num_groups) return config_error;
  for (int i = 0; i < config_len; ++i) args.config[i] = config[i];
  args.num_groups = num_groups;
  return launch_kernel(kernel, 1, 1, stream, args);
}


struct PlateauArgs {
  double config[plateau::kFixed + plateau::kMaxGroupsCuda];
  double* sched_state;
  const double* metric;
  int num_groups;
};

__global__ void plateau_kernel(const PlateauArgs args) {
  double config[plateau::kFixed + plateau::kMaxGroupsCuda];
  const int n = plateau::kFixed + args.num_groups;
  for (int i = 0; i < n; ++i) config[i] = args.config[i];
  sched::plateau_step(args.sched_state, args.num_groups, *args.metric, config);
}
}  // namespace

const char* launch_plateau_report(double* sched_state, int num_groups, const double* metric,
                                  const double* config, int config_len, cudaStream_t stream) {
  PlateauArgs args{};
  args.sched_state = sched_state;
  args.metric = metric;
  return launch_report(&plateau_kernel, args, config, config_len, plateau::kFixed, 1, num_groups,
                       "lrfused: plateau_report_ supports 1 to 64 param groups",
                       "lrfused: plateau_report_ config must have plateau::kFixed + num_groups entries", stream);
}

namespace {
struct GreedyArgs {
  double config[greedy::kFixed + 3 * plateau::kMaxGroupsCuda];
  double* sched_state;
  double* greedy_state;
  const double* metric;
  int num_groups;
};

__global__ void greedy_kernel(const GreedyArgs args) {
  double config[greedy::kFixed + 3 * plateau::kMaxGroupsCuda];
  const int n = greedy::kFixed + 3 * args.num_groups;
  for (int i = 0; i < n; ++i) config[i] = args.config[i];
  sched::greedy_step(args.sched_state, args.greedy_state, args.num_groups, *args.metric, config);
}
}  // namespace

const char* launch_greedy_report(double* sched_state, double* greedy_state, int num_groups, const double* metric,
                                 const double* config, int config_len, cudaStream_t stream) {
  GreedyArgs args{};
  args.sched_state = sched_state;
  args.greedy_state = greedy_state;
  args.metric = metric;
  return launch_report(&greedy_kernel, args, config, config_len, greedy::kFixed, 3, num_groups,
                       "lrfused: greedy_report_ supports 1 to 64 param groups",
                       "lrfused: greedy_report_ config must have greedy::kFixed + 3 * num_groups entries", stream);
}

}  // namespace gpu
}  // namespace lrfused
