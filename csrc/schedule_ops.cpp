// CPU implementations of the schedule ops: host evaluation through csrc/schedule.h, and the
// ReduceLROnPlateau state machine.
#include <torch/library.h>
#include <ATen/ATen.h>

#include "op_signatures.h"
#include "optim_cpu.h"
#include "schedule.h"

namespace lrfused {
namespace {

at::Tensor host_program(const at::Tensor& program) {
  TORCH_CHECK(program.scalar_type() == at::kDouble && program.dim() == 1,
              "lrfused: schedule program must be a 1-D float64 tensor, got ", program.scalar_type());
  at::Tensor host = program.to(at::kCPU).contiguous();
  (void)check_program(host);
  return host;
}

// Evaluates `eval(program, k)` at every step of `steps` on the host (float64 results on steps' device).
template <typename Eval>
at::Tensor evaluate_at_steps(const at::Tensor& program, const at::Tensor& steps, Eval eval) {
  const at::Tensor prog = host_program(program);
  const at::Tensor k = steps.to(at::kCPU, at::kLong).contiguous();
  at::Tensor out = at::empty(k.sizes(), k.options().dtype(at::kDouble));
  const double* p = prog.data_ptr<double>();
  const int64_t* ks = k.data_ptr<int64_t>();
  double* o = out.data_ptr<double>();
  for (int64_t i = 0; i < k.numel(); ++i) o[i] = eval(p, ks[i]);
  return out.to(steps.device());
}

at::Tensor schedule_lrs_cpu(const at::Tensor& program, const at::Tensor& steps, double base_lr) {
  return evaluate_at_steps(program, steps,
                           [&](const double* p, int64_t k) { return sched::lr_at(p, k, base_lr, nullptr); });
}

at::Tensor schedule_momenta_cpu(const at::Tensor& program, const at::Tensor& steps, double fallback) {
  return evaluate_at_steps(program, steps,
                           [&](const double* p, int64_t k) { return sched::momentum_at(p, k, fallback); });
}

void plateau_report_cpu(const at::Tensor& sched_state, const at::Tensor& metric, at::ArrayRef<double> config,
                        int64_t num_groups) {
  check_plateau_report(sched_state, metric, config, num_groups);
  TORCH_CHECK(sched_state.device().is_cpu() && metric.device().is_cpu(),
              "lrfused: plateau_report_ on the CPU needs sched_state and metric on the CPU");
  const double value = metric.item<double>();
  sched::plateau_step(sched_state.data_ptr<double>(), static_cast<int>(num_groups), value, config.data());
}

void greedy_report_cpu(const at::Tensor& sched_state, const at::Tensor& greedy_state, const at::Tensor& metric,
                       at::ArrayRef<double> config, int64_t num_groups) {
  check_greedy_report(sched_state, greedy_state, metric, config, num_groups);
  TORCH_CHECK(sched_state.device().is_cpu() && metric.device().is_cpu(),
              "lrfused: greedy_report_ on the CPU needs sched_state, greedy_state and metric on the CPU");
  const double value = metric.item<double>();
  sched::greedy_step(sched_state.data_ptr<double>(), greedy_state.data_ptr<double>(), static_cast<int>(num_groups),
                     value, config.data());
}

}  // namespace

TORCH_LIBRARY_IMPL(lrfused, CPU, m) {
  LRF_IMPL(m, schedule_lrs, &schedule_lrs_cpu);
  LRF_IMPL(m, schedule_momenta, &schedule_momenta_cpu);
  LRF_IMPL(m, plateau_report_, &plateau_report_cpu);
  LRF_IMPL(m, greedy_report_, &greedy_report_cpu);
}

}  // namespace lrfused
