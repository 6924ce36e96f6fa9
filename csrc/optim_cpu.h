// The CPU implementation below both entry points: the registered ops (lrfused::fused_sgd_ / fused_adam_,
// traced by torch.compile, tensors as arguments) and the eager Plan (cached tensors, grads gathered in C++).
#pragma once
#include <ATen/ATen.h>

#include <optional>
#include <vector>

#include "cpu/kernels.h"
#include "step_args.h"

namespace lrfused {

// Reads a 1-element float tensor on the CPU (found_inf, grad_scale, grad_factor).
double read_cpu_scalar(const at::Tensor& t, const char* name);

// Runs one group step on the CPU: evaluates the schedule at k, records the applied lr (and the next
// step's lr and momentum), updates every parameter in `refs` (all of dtype param_dtype, state of
// state_dtype). No-op when found_inf is set.
void cpu_group_step(const GroupStep& step, const cpu::TensorRef* refs, int64_t num_refs, DType param_dtype,
                    DType state_dtype);

// The CPU kernel's view of one parameter's flat buffers (flat_param), its step counter and its
// stochastic-rounding stream.
cpu::TensorRef make_tensor_ref(const FlatParam& flat, const at::Tensor& step, int64_t sr_stream);

// The CPU backend of the step ops: a checked request (step_args.h) run through cpu_group_step.
void run_step_cpu(const StepRequest& request);

// k += 1 unless found_inf is set.
void cpu_advance(const at::Tensor& sched_state, const std::optional<at::Tensor>& found_inf);

}  // namespace lrfused
