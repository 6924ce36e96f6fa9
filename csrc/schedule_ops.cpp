// CPU implementations of the schedule ops: host evaluation through csrc/schedule.h, and the
// ReduceLROnPlateau state machine.
#include <torch/library.h>
#include <ATen/ATen.h>

#include "schedule.h"

namespace lrfused {
namespace {

at::Tensor check_program(const at::Tensor& program) {
  TORCH_CHECK(program.scalar_type() == at::kDouble && program.dim() == 1,
              "lrfused: schedule program must be a 1-D float64 tensor, got ", program.scalar_type());
  return program.to(at::kCPU).contiguous();
}

at::Tensor schedule_lrs_cpu(const at::Tensor& program, const at::Tensor& steps, double base_lr) {
  const at::Tensor prog = check_program(program);
  const at::Tensor k = steps.to(at::kCPU, at::kLong).contiguous();
  at::Tensor out = at::empty(k.sizes(), k.options().dtype(at::kDouble));
  const double* p = prog.data_ptr<double>();
  const int64_t* ks = k.data_ptr<int64_t>();
  double* o = out.data_ptr<double>();
  for (int64_t i = 0; i < k.numel(); ++i) o[i] = sched::lr_at(p, ks[i], base_lr, nullptr);
  return out.to(steps.device());
}

at::Tensor schedule_momenta_cpu(const at::Tensor& program, const at::Tensor& steps, double fallback) {
  const at::Tensor prog = check_program(program);
  const at::Tensor k = steps.to(at::kCPU, at::kLong).contiguous();
  at::Tensor out = at::empty(k.sizes(), k.options().dtype(at::kDouble));
  const double* p = prog.data_ptr<double>();
  const int64_t* ks = k.data_ptr<int64_t>();
  double* o = out.data_ptr<double>();
  for (int64_t i = 0; i < k.numel(); ++i) o[i] = sched::momentum_at(p, ks[i], fallback);
  return out.to(steps.device());
}

}  // namespace

TORCH_LIBRARY_IMPL(lrfused, CPU, m) {
  m.impl("schedule_lrs", &schedule_lrs_cpu);
  m.impl("schedule_momenta", &schedule_momenta_cpu);
}

}  // namespace lrfused
