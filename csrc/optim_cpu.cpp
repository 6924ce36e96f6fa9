// The CPU implementation below both entry points: the registered ops lrfused::fused_sgd_ / fused_adam_
// (traced by torch.compile; arguments checked by the shared layer, step_args.h) and the eager Plan.
#include "optim_cpu.h"

#include <torch/library.h>

#include "contract.h"
#include "op_signatures.h"
#include "schedule.h"

namespace lrfused {

double read_cpu_scalar(const at::Tensor& t, const char* name) {
  TORCH_CHECK(t.device().is_cpu(), "lrfused: ", name, " must be on the CPU with CPU parameters, got ", t.device());
  TORCH_CHECK(t.numel() == 1, "lrfused: ", name, " must have one element, got ", t.numel());
  switch (t.scalar_type()) {  // read in place: no conversion tensor per step
    case at::kFloat: return *t.const_data_ptr<float>();
    case at::kDouble: return *t.const_data_ptr<double>();
    default: return t.to(at::kDouble).item<double>();
  }
}

void cpu_group_step(const GroupStep& step, const cpu::TensorRef* refs, int64_t num_refs,
                    DType param_dtype, DType state_dtype) {
  if (step.found_inf && read_cpu_scalar(*step.found_inf, "found_inf") != 0.0) return;
  double* state = step.sched_state.data_ptr<double>();
  const int num_groups = static_cast<int>(sched_num_groups(step.sched_state.numel()));
  const int group = static_cast<int>(step.group_index);
  const double* program = step.program.data_ptr<double>();
  const int64_t k = static_cast<int64_t>(state[SCHED_STEP]);
  const double* plateau_lr = &state[sched_slot(REGION_PLATEAU_LR, num_groups, group)];
  const double lr = sched::lr_at(program, k, step.hyper[HYPER_LR], plateau_lr);
  state[sched_slot(REGION_LAST_LR, num_groups, group)] = lr;
  state[sched_slot(REGION_NEXT_LR, num_groups, group)] = sched::lr_at(program, k + 1, step.hyper[HYPER_LR], plateau_lr);
  state[sched_slot(REGION_NEXT_MOMENTUM, num_groups, group)] = sched::momentum_at(program, k + 1, step.hyper[HYPER_MOMENTUM_BETA1]);

  cpu::StepConfig cfg;
  cfg.optimizer = static_cast<int>(step.optimizer);
  cfg.flags = static_cast<int>(step.flags);
  cfg.lr = lr;
  cfg.momentum = sched::momentum_at(program, k, step.hyper[HYPER_MOMENTUM_BETA1]);
  cfg.dampening_beta2 = sched::hyper_at(program, HYPER_DAMPENING_BETA2, k, step.hyper[HYPER_DAMPENING_BETA2], lr);
  cfg.eps = sched::hyper_at(program, HYPER_EPS, k, step.hyper[HYPER_EPS], lr);
  cfg.weight_decay = sched::hyper_at(program, HYPER_WEIGHT_DECAY, k, step.hyper[HYPER_WEIGHT_DECAY], lr);
  cfg.has_grad_scale = step.grad_scale.has_value();
  cfg.grad_scale = cfg.has_grad_scale ? static_cast<float>(read_cpu_scalar(*step.grad_scale, "grad_scale")) : 1.0f;
  cfg.grad_factor = step.grad_factor ? read_cpu_scalar(*step.grad_factor, "grad_factor") : 1.0f;
  cfg.sr_seed = step.sr_seed;
  cpu::fused_step(refs, num_refs, param_dtype, state_dtype, cfg);
}

cpu::TensorRef make_tensor_ref(const FlatParam& f, const at::Tensor& step, int64_t sr_stream) {
  cpu::TensorRef r;
  r.param = f.param.data_ptr();
  r.grad = f.grad.data_ptr();
  r.s1 = f.state[0].defined() ? f.state[0].data_ptr() : nullptr;
  r.s2 = f.state[1].defined() ? f.state[1].data_ptr() : nullptr;
  r.s3 = f.state[2].defined() ? f.state[2].data_ptr() : nullptr;
  r.step = step.data_ptr<float>();
  r.numel = f.param.numel();
  r.master = f.master.defined() ? f.master.data_ptr<float>() : nullptr;
  r.s1_absmax = f.absmax[0].defined() ? f.absmax[0].data_ptr<float>() : nullptr;
  r.s2_absmax = f.absmax[1].defined() ? f.absmax[1].data_ptr<float>() : nullptr;
  r.sr_stream = static_cast<uint64_t>(sr_stream);
  return r;
}

void cpu_advance(const at::Tensor& sched_state, const std::optional<at::Tensor>& found_inf) {
  if (found_inf && read_cpu_scalar(*found_inf, "found_inf") != 0.0) return;
  sched_state.data_ptr<double>()[SCHED_STEP] += 1.0;
}

void run_step_cpu(const StepRequest& r) {
  const size_t n = r.params.size();
  Staging staging;
  std::vector<cpu::TensorRef> refs(n);
  for (size_t i = 0; i < n; ++i)
    refs[i] = make_tensor_ref(flat_param(r, i, staging), r.steps[i], r.sr_streams.empty() ? 0 : r.sr_streams[i]);
  // Also with no parameter (none of the group has a gradient): the applied lr is still recorded.
  cpu_group_step(r.group, refs.data(), static_cast<int64_t>(n), kernel_dtype(r.param_type, "params"),
                 kernel_dtype(r.state_type, "state"));
  staging.write_back();
}

namespace {

at::Tensor grad_sq_norm_cpu(at::TensorList grads, const std::optional<at::Tensor>& grad_scale) {
  const double inv_scale = grad_scale ? 1.0 / read_cpu_scalar(*grad_scale, "grad_scale") : 1.0;
  const std::vector<at::Tensor> flat = flat_grads(grads);  // holds the copies of non-dense gradients
  TORCH_CHECK(flat.empty() || flat[0].device().is_cpu(), "lrfused: grad_sq_norm on the CPU needs CPU gradients");
  std::vector<cpu::TensorRef> refs(flat.size(), cpu::TensorRef{});
  for (size_t i = 0; i < flat.size(); ++i) {
    refs[i].grad = flat[i].data_ptr();
    refs[i].numel = flat[i].numel();
  }
  double total = 0.0;
  if (!refs.empty()) {
    total = cpu::grad_sum_of_squares(refs.data(), static_cast<int64_t>(refs.size()),
                                     kernel_dtype(flat[0].scalar_type(), "grads"), inv_scale);
  }
  return at::scalar_tensor(total, at::TensorOptions().dtype(at::kDouble));
}

void advance_cpu(const at::Tensor& sched_state, const std::optional<at::Tensor>& found_inf) {
  check_sched_state(sched_state);
  cpu_advance(sched_state, found_inf);
}

}  // namespace

TORCH_LIBRARY_IMPL(lrfused, CPU, m) {
  LRF_IMPL(m, fused_sgd_, &fused_sgd_kernel<&run_step_cpu>);
  LRF_IMPL(m, fused_adam_, &fused_adam_kernel<&run_step_cpu>);
  LRF_IMPL(m, advance_, &advance_cpu);
  LRF_IMPL(m, grad_sq_norm, &grad_sq_norm_cpu);
}

}  // namespace lrfused
