// Torch-free entry points of the CUDA kernels (csrc/cuda/*.cu), called by csrc/cuda_glue.cpp.
//
// Everything here is raw pointers, sizes and a cudaStream_t, so the kernels compile with plain nvcc
// (DESIGN.md principle 2). Every launcher is asynchronous on `stream`: no host-device synchronisation,
// no host-to-device copy (pointer tables travel as kernel arguments), nothing allocated. Each returns
// nullptr on success or a static error message (the glue TORCH_CHECKs it).
#pragma once
#include <cstdint>
#include <cuda_runtime_api.h>

#include "contract.h"

namespace lrfused {
namespace gpu {

using ::lrfused::DType;  // the contract's (contract.h); pairs with kernels: supported_dtype_pair

// One fused optimizer step over the tensors of one param group on one device (see the fused_sgd_ /
// fused_adam_ schemas in csrc/lrfused.cpp). The per-tensor arrays have num_tensors entries; a state array is nullptr
// when its list is empty (SGD without momentum buffers: state1; SGD: state2/state3; Adam without
// amsgrad: state3). All tensors are dense, and each state/grad tensor has its param's layout.
struct FusedStepLaunch {
  int optimizer = 0;        // lrfused::OPT_SGD / OPT_ADAM
  int flags = 0;            // lrfused::OptFlags
  int group_index = 0;
  int num_groups = 0;       // G: sched_state has sched_size(G) slots
  double hyper[HYPER_COUNT] = {};  // lrfused::HyperSlot
  bool weight_decay_scheduled = false;  // the program schedules weight decay (GroupStep::weight_decay_scheduled)
  DType param_dtype = DType::F32;  // params and grads
  DType state_dtype = DType::F32;  // every state tensor
  int64_t num_tensors = 0;
  void* const* params = nullptr;
  void* const* grads = nullptr;
  void* const* state1 = nullptr;
  void* const* state2 = nullptr;
  void* const* state3 = nullptr;
  float* const* steps = nullptr;  // per-tensor 0-dim float32 step counters (count before this step)
  const int64_t* numels = nullptr;
  double* sched_state = nullptr;
  const double* program = nullptr;
  const float* grad_scale = nullptr;   // optional 1-element
  const float* found_inf = nullptr;    // optional 1-element
  const float* grad_factor = nullptr;  // optional 1-element
  float* const* masters = nullptr;     // per tensor: the fp32 master of a 16-bit parameter; nullptr: none
  const int64_t* sr_streams = nullptr; // per tensor, with FLAG_STOCHASTIC_ROUNDING: its stream (math::sr_key)
  uint64_t sr_seed = 0;
  // 8-bit state (state_dtype Q8: the state arrays hold uint8 codes): per tensor, the float32 absmax of each
  // quant8::kQuantBlock elements of state1 / state2 (nullptr for a list that is not given).
  float* const* absmax1 = nullptr;
  float* const* absmax2 = nullptr;
};

// Launches the one-thread schedule kernel (the lr of this step goes to the group's REGION_LAST_LR
// slot, also when num_tensors is 0), the update kernel (as many batches as the argument tables
// need), then a small kernel that increments every step counter. Nothing runs past a found_inf.
const char* launch_fused_step(const FusedStepLaunch& args, cudaStream_t stream);

// sched_state[SCHED_STEP] += 1 unless *found_inf != 0 (found_inf may be nullptr).
const char* launch_advance(double* sched_state, const float* found_inf, cudaStream_t stream);

// Kernels are launched with cudaLaunchKernel, whose result is that launch's own error.

// ReduceLROnPlateau: one thread runs sched::plateau_step(sched_state, num_groups, *metric, config).
// config (host memory, config_len = plateau::kFixed + num_groups doubles, num_groups at most
// plateau::kMaxGroupsCuda) is passed by value.
const char* launch_plateau_report(double* sched_state, int num_groups, const double* metric,
                                  const double* config, int config_len, cudaStream_t stream);

// GreedyLR: one thread runs sched::greedy_step(sched_state, greedy_state, num_groups, *metric, config), config
// (greedy::kFixed + 3 * num_groups doubles, num_groups at most plateau::kMaxGroupsCuda) passed by value.
const char* launch_greedy_report(double* sched_state, double* greedy_state, int num_groups, const double* metric,
                                 const double* config, int config_len, cudaStream_t stream);

// Squared L2 norm of many tensors (fused gradient clipping): *out = sum_i sum_j g_ij^2, divided by
// (*grad_scale)^2 when grad_scale is given. Deterministic: one partial per chunk in `workspace`
// (float64, at least grad_sq_norm_workspace_size(...) entries), reduced in a fixed order; squares are
// accumulated in float64 whatever the gradients' dtype.
int64_t grad_sq_norm_workspace_size(const int64_t* numels, int64_t num_tensors);
const char* launch_grad_sq_norm(const void* const* grads, const int64_t* numels, int64_t num_tensors,
                                DType dtype, const float* grad_scale, double* workspace,
                                int64_t workspace_len, double* out, cudaStream_t stream);

}  // namespace gpu
}  // namespace lrfused
