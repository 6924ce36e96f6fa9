// The torch-facing argument layer of the optimizer-step ops, shared by the CPU and CUDA implementations.
//
// The ops are named per optimizer family (lrfused::fused_sgd_, lrfused::fused_adam_; schemas in
// lrfused.cpp) and take their hyperparameters by name. Each backend registers the same two kernels,
// fused_sgd_kernel<Run> and fused_adam_kernel<Run>, which check every argument here, once, with one
// message per mistake, and hand the backend's Run a checked StepRequest: a backend only turns tensors
// into pointers. The eager launch plan (plan.cpp) checks its buckets with the same functions.
#pragma once
#include <ATen/ATen.h>

#include <optional>
#include <utility>
#include <vector>

#include "contract.h"

namespace lrfused {

// Everything of one group step that is not a per-parameter buffer.
struct GroupStep {
  at::Tensor sched_state;  // float64, per device: layout in contract.h
  at::Tensor program;      // float64 packed schedule
  int64_t group_index = 0;
  int64_t optimizer = 0;      // OptimizerKind
  int64_t flags = 0;          // OptFlags
  std::vector<double> hyper;  // HyperSlot
  std::optional<at::Tensor> grad_scale;
  std::optional<at::Tensor> found_inf;
  std::optional<at::Tensor> grad_factor;
  // Set by check_group_step: the program schedules weight decay, so the kernel must apply weight decay
  // even when hyper[HYPER_WEIGHT_DECAY] (its base) is 0.
  bool weight_decay_scheduled = false;
  uint64_t sr_seed = 0;  // with FLAG_STOCHASTIC_ROUNDING: the optimizer's seed (math::sr_key)
};

// A checked call of fused_sgd_ / fused_adam_. state[j] is empty when the family (or its options) does not
// use slot j: SGD without momentum buffers, SGD's slots 1 and 2, Adam's slot 2 without amsgrad.
struct StepRequest {
  GroupStep group;
  at::TensorList params, grads, steps;
  at::TensorList state[3];
  at::TensorList masters;         // empty, or an fp32 master per (16-bit) parameter
  at::TensorList absmax[2];       // 8-bit state (state_type kByte): the per-block absmax of state[0] / state[1]
  at::IntArrayRef sr_streams;     // empty, or each parameter's stochastic-rounding stream (with the flag)
  at::ScalarType param_type = at::kFloat;  // of the real views (complex tensors are walked as real pairs)
  at::ScalarType state_type = at::kFloat;
  bool write_grads = false;  // grad_scale given: the unscaled gradient is stored back (torch's fused optimizers)
};

// The kernels' element type of a real dtype; raises for others, naming `what`.
DType kernel_dtype(at::ScalarType t, const char* what);

// Raises unless the kernels implement parameters of param_type with state of state_type (real dtypes).
void check_dtype_pair(at::ScalarType param_type, at::ScalarType state_type);

// A complex tensor's real view (the kernels treat (re, im) as two independent elements, as torch does).
at::Tensor real_view(const at::Tensor& t);

// True when t can be walked as a flat array in the same element order as `layout`: dense, same sizes,
// same strides wherever a size exceeds 1.
bool same_walk_order(const at::Tensor& t, const at::Tensor& layout);

// What the host needs to know about a program to pick a kernel (the program itself may be on the GPU).
struct ProgramInfo {
  bool schedules_weight_decay = false;  // a HYPERS program with a weight decay schedule (or wd_lr_reference)
};

// Raises unless `program` is a contiguous 1-D float64 tensor holding a valid packed schedule
// (sched::validate_program). A program on a GPU is copied to the host and checked the first time it is
// seen (per tensor and version): after that, the check and its ProgramInfo are free and need no
// synchronisation.
ProgramInfo check_program(const at::Tensor& program);

// Raises unless `state` is a sched_state: a contiguous 1-D float64 tensor of sched_size(G) slots for some
// G >= 1 (for G == num_groups when num_groups >= 0). Returns G. Every op and the plan check it here.
int64_t check_sched_state(const at::Tensor& state, int64_t num_groups = -1);

// Raises unless an optional scalar argument (grad_scale, found_inf, grad_factor) is a 1-element
// floating-point tensor on `device`.
void check_scalar_arg(const std::optional<at::Tensor>& t, const c10::Device& device, const char* what);

// The arguments of plateau_report_ that do not depend on the backend: sched_state of num_groups groups,
// the plateau::Config fields plus one min_lr per group, a 1-element metric.
void check_plateau_report(const at::Tensor& state, const at::Tensor& metric, at::ArrayRef<double> config,
                          int64_t num_groups);

// The arguments of greedy_report_ that do not depend on the backend: as plateau_report_'s, with the
// greedy::Config fields and three lists of num_groups values, and greedy_state: a contiguous 1-D float64
// tensor of greedy::state_size(window_size) slots on sched_state's device.
void check_greedy_report(const at::Tensor& state, const at::Tensor& greedy_state, const at::Tensor& metric,
                         at::ArrayRef<double> config, int64_t num_groups);

// grad_sq_norm's gradients, checked (one device, one dtype, dense layouts of any strides) and returned as
// the flat real views the kernels read: a non-dense gradient as a contiguous copy (read only).
std::vector<at::Tensor> flat_grads(at::TensorList grads);

// Validates the group-level arguments (names the argument on error). Cheap; once per group step.
void check_group_step(GroupStep& step);

// Raises, naming the parameter, unless `grad` can be the gradient of `param` in a fused step: dense, same
// dtype, shape and device, and (when the step writes gradients back: write_grad) no element stored twice.
void check_grad(const at::Tensor& param, const at::Tensor& grad, bool write_grad);

// Checks every argument of a step (before anything is written) and returns the request.
StepRequest check_step_request(GroupStep group, at::TensorList params, at::TensorList grads, at::TensorList state1,
                               at::TensorList state2, at::TensorList state3, at::TensorList steps,
                               at::TensorList master_params, at::IntArrayRef sr_streams, at::TensorList absmax1,
                               at::TensorList absmax2);

// Raises unless `master` can be the fp32 master copy of the 16-bit parameter `param` (named params[i]).
void check_master(const at::Tensor& param, const at::Tensor& master, size_t i);

// True when t is walked in the order the kernels walk `param` (its own layout, or for a non-dense parameter
// that of its contiguous staging copy), without making a copy.
bool walks_as_param(const at::Tensor& t, const at::Tensor& param);

// Raises unless the 8-bit state of a step fits (states[j]: the state lists 1 and 2, already checked to hold
// state_type tensors shaped like the params): with state_type kByte each non-empty state list has one absmax
// per param (else none), no amsgrad, real params, codes walked as their parameter, absmax a contiguous
// float32 tensor of quant8::num_blocks values on the parameter's device. The op and the plan check with it.
void check_8bit_state(at::TensorList params, const at::TensorList states[2], const at::TensorList absmax[2],
                      at::ScalarType state_type, bool adam, bool amsgrad);

// Working copies that let a kernel walk a parameter flat when its memory (or its gradient's or state's
// layout) does not allow it: a strided slice, say. Written back after the kernel, on the tensors' device
// and stream (no synchronisation); rare by construction.
struct Staging {
  std::vector<std::pair<at::Tensor, at::Tensor>> copies;  // (original, working copy)
  std::vector<at::Tensor> read_only;                       // copies the kernel only reads
  // t itself when it can be walked in layout's order, else a copy in that layout (copied back after the
  // kernel when write_back, else only kept alive).
  at::Tensor walkable(const at::Tensor& t, const at::Tensor& layout, bool write_back = true);
  void write_back() {
    for (auto& c : copies) c.first.copy_(c.second);
  }
};

// The tensors a kernel walks for parameter i of a request (real views; working copies where needed).
struct FlatParam {
  at::Tensor param, grad, state[3];  // state[j] undefined when the slot is unused
  at::Tensor master;                 // undefined without a master copy
  at::Tensor absmax[2];              // 8-bit state's block scales (contiguous, checked), else undefined
};
FlatParam flat_param(const at::Tensor& param, const at::Tensor& grad, const at::Tensor* const state[3],
                     const at::Tensor* master, bool write_grad, Staging& staging);
FlatParam flat_param(const StepRequest& r, size_t i, Staging& staging);

// The op kernels of a backend whose group step is Run. Run receives a request in which every argument
// has been checked.
using StepRunner = void (*)(const StepRequest&);

GroupStep sgd_group_step(const at::Tensor& sched_state, const at::Tensor& program, int64_t group_index,
                         double base_lr, double momentum, double dampening, double weight_decay, bool nesterov,
                         bool maximize, const std::optional<at::Tensor>& grad_scale,
                         const std::optional<at::Tensor>& found_inf, const std::optional<at::Tensor>& grad_factor,
                         bool stochastic_rounding, int64_t sr_seed);
GroupStep adam_group_step(const at::Tensor& sched_state, const at::Tensor& program, int64_t group_index,
                          double base_lr, double beta1, double beta2, double eps, double weight_decay, bool amsgrad,
                          bool maximize, bool decoupled_weight_decay, const std::optional<at::Tensor>& grad_scale,
                          const std::optional<at::Tensor>& found_inf, const std::optional<at::Tensor>& grad_factor,
                          bool stochastic_rounding, int64_t sr_seed);

// Calls lrfused::fused_sgd_ or lrfused::fused_adam_ (by group.optimizer) through the dispatcher, with the
// group's hyperparameters and flags as the op's named arguments: how C++ reaches another backend's kernel.
void call_step_op(const GroupStep& group, at::TensorList params, at::TensorList grads, at::TensorList state1,
                  at::TensorList state2, at::TensorList state3, at::TensorList steps, at::TensorList master_params,
                  at::IntArrayRef sr_streams, at::TensorList absmax1, at::TensorList absmax2);

template <StepRunner Run>
void fused_sgd_kernel(at::TensorList params, at::TensorList grads, at::TensorList momentum_buffers,
                      at::TensorList steps, const at::Tensor& sched_state, const at::Tensor& program,
                      int64_t group_index, double base_lr, double momentum, double dampening, double weight_decay,
                      bool nesterov, bool maximize, const std::optional<at::Tensor>& grad_scale,
                      const std::optional<at::Tensor>& found_inf, const std::optional<at::Tensor>& grad_factor,
                      at::TensorList master_params, bool stochastic_rounding, int64_t sr_seed,
                      at::IntArrayRef sr_streams, at::TensorList momentum_buffer_absmax) {
  Run(check_step_request(sgd_group_step(sched_state, program, group_index, base_lr, momentum, dampening,
                                        weight_decay, nesterov, maximize, grad_scale, found_inf, grad_factor,
                                        stochastic_rounding, sr_seed),
                         params, grads, momentum_buffers, {}, {}, steps, master_params, sr_streams,
                         momentum_buffer_absmax, {}));
}

template <StepRunner Run>
void fused_adam_kernel(at::TensorList params, at::TensorList grads, at::TensorList exp_avgs,
                       at::TensorList exp_avg_sqs, at::TensorList max_exp_avg_sqs, at::TensorList steps,
                       const at::Tensor& sched_state, const at::Tensor& program, int64_t group_index, double base_lr,
                       double beta1, double beta2, double eps, double weight_decay, bool amsgrad, bool maximize,
                       bool decoupled_weight_decay, const std::optional<at::Tensor>& grad_scale,
                       const std::optional<at::Tensor>& found_inf, const std::optional<at::Tensor>& grad_factor,
                       at::TensorList master_params, bool stochastic_rounding, int64_t sr_seed,
                       at::IntArrayRef sr_streams, at::TensorList exp_avg_absmax, at::TensorList exp_avg_sq_absmax) {
  Run(check_step_request(adam_group_step(sched_state, program, group_index, base_lr, beta1, beta2, eps, weight_decay,
                                         amsgrad, maximize, decoupled_weight_decay, grad_scale, found_inf,
                                         grad_factor, stochastic_rounding, sr_seed),
                         params, grads, exp_avgs, exp_avg_sqs, max_exp_avg_sqs, steps, master_params, sr_streams,
                         exp_avg_absmax, exp_avg_sq_absmax));
}

}  // namespace lrfused
