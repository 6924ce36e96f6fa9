// The CPU implementation below both entry points: the registered op lrfused::fused_step_ (traced by
// torch.compile, tensors as arguments) and the eager Plan (cached tensors, grads gathered in C++).
#pragma once
#include <ATen/ATen.h>

#include <optional>
#include <vector>

#include "cpu/kernels.h"

namespace lrfused {

// Everything of one group step that is not a per-parameter buffer.
struct GroupStep {
  at::Tensor sched_state;  // float64, per device: see SchedSlot in lrf_common.h
  at::Tensor program;      // float64 packed schedule
  int64_t group_index = 0;
  int64_t optimizer = 0;
  int64_t flags = 0;
  std::vector<double> hyper;  // HyperSlot
  std::optional<at::Tensor> grad_scale;
  std::optional<at::Tensor> found_inf;
  std::optional<at::Tensor> grad_factor;
};

cpu::DType to_kernel_dtype(at::ScalarType t, const char* what);

// Raises unless `program` is a contiguous 1-D float64 tensor holding a valid packed schedule
// (sched::validate_program). A program on a GPU is copied to the host and checked the first time it is
// seen (per tensor and version): after that, the check is free and needs no synchronisation.
void check_program(const at::Tensor& program);

// Validates the group-level arguments (names the argument on error). Cheap; called once per group step.
void check_group_step(const GroupStep& step);

// Reads a 1-element float tensor on the CPU (found_inf, grad_scale, grad_factor).
double read_cpu_scalar(const at::Tensor& t, const char* name);

// Runs one group step on the CPU: evaluates the schedule at k, records the applied lr, updates every
// parameter in `refs` (all of dtype param_dtype, state of state_dtype). No-op when found_inf is set.
void cpu_group_step(const GroupStep& step, const cpu::TensorRef* refs, int64_t num_refs,
                    cpu::DType param_dtype, cpu::DType state_dtype);

// Copies that let the kernel walk a parameter flat when its memory (or its gradient's or state's
// layout) does not allow it: a strided slice, say. Written back after the kernel; rare by construction.
struct Staging {
  std::vector<std::pair<at::Tensor, at::Tensor>> copies;  // (original, contiguous working copy)
  std::vector<at::Tensor> read_only;                       // copies the kernel only reads
  void write_back() {
    for (auto& c : copies) c.first.copy_(c.second);
  }
};

// The kernel's view of one parameter (complex tensors as real views). s1..s3 may be null. A staged
// gradient is copied back only when the kernel writes it (write_grad: GradScaler's unscaled gradient);
// otherwise it is only read, so an expanded or otherwise overlapping gradient works as it does in torch.
cpu::TensorRef make_tensor_ref(const at::Tensor& param, const at::Tensor& grad, const at::Tensor* s1,
                               const at::Tensor* s2, const at::Tensor* s3, const at::Tensor& step,
                               Staging& staging, bool write_grad);

// Raises, naming the parameter, unless `grad` can be the gradient of `param` in a fused step: dense, same
// dtype, shape and device, and (when the step writes gradients back: write_grad) no element stored twice.
// Called for every gradient before anything is written.
void check_grad(const at::Tensor& param, const at::Tensor& grad, bool write_grad);

at::Tensor real_view(const at::Tensor& t);

// True when t can be walked as a flat array in the same element order as `layout`.
bool flat_compatible(const at::Tensor& t, const at::Tensor& layout);

// k += 1 unless found_inf is set.
void cpu_advance(const at::Tensor& sched_state, const std::optional<at::Tensor>& found_inf);

}  // namespace lrfused
