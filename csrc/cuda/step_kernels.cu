// The small kernels around the update: step-counter increment + applied-lr record (after every update
// batch of a fused_step_), the schedule advance, and the ReduceLROnPlateau report. Also the host entry
// launch_fused_step, which picks the optimizer family.
#include <utility>

#include "cuda/fused_step.cuh"

namespace lrfused {
namespace gpu {

bool supported_dtypes(DType param, DType state) {
  switch (param) {
    case DType::kFloat32: return state == DType::kFloat32 || state == DType::kBFloat16;
    case DType::kFloat16: return state == DType::kFloat16 || state == DType::kFloat32;
    case DType::kBFloat16: return state == DType::kBFloat16 || state == DType::kFloat32;
    case DType::kFloat64: return state == DType::kFloat64;
  }
  return false;
}

// ---- finalize: steps += 1 and SCHED_LAST_LR ------------------------------------------------------

template <bool LARGE>
struct FinalizeArgs {
  struct Header {
    double* sched_state;
    const double* program;
    const float* found_inf;
    double base_lr;
    int group_index;
    int num_groups;
    int write_lr;
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
  const auto& h = args.h;
  if (h.found_inf != nullptr && *h.found_inf != 0.0f) return;
  const int i = blockIdx.x * blockDim.x + threadIdx.x;
  if (i < h.count) *args.steps[i] += 1.0f;
  if (h.write_lr && i == 0) {
    const int64_t k = static_cast<int64_t>(h.sched_state[SCHED_STEP]);
    h.sched_state[SCHED_LAST_LR + h.group_index] =
        group_lr(h.sched_state, h.program, k, h.base_lr, h.num_groups, h.group_index);
  }
}

template <bool LARGE>
const char* launch_finalize(const FusedStepLaunch& a, cudaStream_t stream) {
  using Args = FinalizeArgs<LARGE>;
  static_assert(sizeof(Args) <= ParamLimit<LARGE>::bytes, "kernel arguments exceed the parameter limit");
  constexpr int kThreads = 256;
  Args args{};
  args.h.sched_state = a.sched_state;
  args.h.program = a.program;
  args.h.found_inf = a.found_inf;
  args.h.base_lr = a.hyper[HYPER_LR];
  args.h.group_index = a.group_index;
  args.h.num_groups = a.num_groups;
  int64_t next = 0;
  bool first = true;
  // At least one launch, so the lr is recorded even for a group without elements.
  while (first || next < a.num_tensors) {
    const int64_t left = a.num_tensors - next;
    const int count = static_cast<int>(left < Args::kMaxSteps ? left : Args::kMaxSteps);
    for (int i = 0; i < count; ++i) args.steps[i] = a.steps[next + i];
    args.h.count = count;
    args.h.write_lr = first ? 1 : 0;
    const int blocks = count > 0 ? (count + kThreads - 1) / kThreads : 1;
    finalize_step_kernel<LARGE><<<blocks, kThreads, 0, stream>>>(args);
    if (const char* err = last_launch_error()) return err;
    next += count;
    first = false;
  }
  return nullptr;
}

const char* launch_fused_step(const FusedStepLaunch& a, cudaStream_t stream) {
  if (!supported_dtypes(a.param_dtype, a.state_dtype))
    return "lrfused: unsupported (param dtype, state dtype) combination";
  const char* err = nullptr;
  switch (a.optimizer) {
    case OPT_SGD: err = launch_sgd_update(a, stream); break;
    case OPT_ADAM: err = launch_adam_update(a, stream); break;
    default: return "lrfused: optimizer must be 0 (SGD) or 1 (Adam/AdamW)";
  }
  if (err != nullptr) return err;
#if LRF_LARGE_KERNEL_PARAMS
  if (use_large_kernel_params()) return launch_finalize<true>(a, stream);
#endif
  return launch_finalize<false>(a, stream);
}

// ---- advance -------------------------------------------------------------------------------------

__global__ void advance_kernel(double* sched_state, const float* found_inf) {
  if (found_inf != nullptr && *found_inf != 0.0f) return;
  sched_state[SCHED_STEP] += 1.0;
}

const char* launch_advance(double* sched_state, const float* found_inf, cudaStream_t stream) {
  advance_kernel<<<1, 1, 0, stream>>>(sched_state, found_inf);
  return last_launch_error();
}

// ---- ReduceLROnPlateau ---------------------------------------------------------------------------

namespace plateau_detail {
// sched::plateau_step is written in csrc/schedule.h on another branch. Until it is there, this file
// must still compile (CI compile-checks it alone), so the call is found by overload resolution: the
// first overload exists only when `plateau_step(state, num_groups, metric, config)` resolves in
// lrfused::sched; otherwise the launcher reports that the build has no plateau state machine.
using namespace ::lrfused::sched;

template <typename D>
__host__ __device__ auto call(D* state, int num_groups, double metric, const double* config, int)
    -> decltype(plateau_step(state, num_groups, metric, config), bool()) {
  plateau_step(state, num_groups, metric, config);
  return true;
}

template <typename D>
__host__ __device__ bool call(D*, int, double, const double*, long) {
  return false;
}

template <typename D>
struct Available {
  template <typename X>
  static auto test(int) -> decltype(plateau_step(std::declval<X*>(), 0, 0.0, std::declval<const double*>()),
                                    std::true_type());
  template <typename X>
  static std::false_type test(long);
  static constexpr bool value = decltype(test<D>(0))::value;
};
}  // namespace plateau_detail

struct PlateauArgs {
  double config[kPlateauConfigFixed + kPlateauMaxGroups];
  double* sched_state;
  const double* metric;
  int num_groups;
};

__global__ void plateau_kernel(const PlateauArgs args) {
  double config[kPlateauConfigFixed + kPlateauMaxGroups];
  const int n = kPlateauConfigFixed + args.num_groups;
  for (int i = 0; i < n; ++i) config[i] = args.config[i];
  plateau_detail::call<double>(args.sched_state, args.num_groups, *args.metric, config, 0);
}

const char* launch_plateau_report(double* sched_state, int num_groups, const double* metric,
                                  const double* config, int config_len, cudaStream_t stream) {
  if (!plateau_detail::Available<double>::value)
    return "lrfused: this build has no sched::plateau_step (csrc/schedule.h)";
  if (num_groups < 0 || num_groups > kPlateauMaxGroups)
    return "lrfused: plateau_report_ supports at most 64 param groups";
  if (config_len != kPlateauConfigFixed + num_groups)
    return "lrfused: plateau_report_ config must have 7 + num_groups entries";
  PlateauArgs args{};
  for (int i = 0; i < config_len; ++i) args.config[i] = config[i];
  args.sched_state = sched_state;
  args.metric = metric;
  args.num_groups = num_groups;
  plateau_kernel<<<1, 1, 0, stream>>>(args);
  return last_launch_error();
}

}  // namespace gpu
}  // namespace lrfused
