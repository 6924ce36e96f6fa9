#include "optim_cpu.h"

#include <ATen/MemoryOverlap.h>
#include <torch/library.h>

#include <algorithm>
#include <mutex>
#include <unordered_map>

#include "lrf_common.h"
#include "op_signatures.h"
#include "schedule.h"
#include "update_math.h"

namespace lrfused {

cpu::DType to_kernel_dtype(at::ScalarType t, const char* what) {
  switch (t) {
    case at::kFloat: return cpu::DType::F32;
    case at::kDouble: return cpu::DType::F64;
    case at::kBFloat16: return cpu::DType::BF16;
    case at::kHalf: return cpu::DType::F16;
    default:
      TORCH_CHECK_TYPE(false, "lrfused: ", what, " must be float32, float64, bfloat16 or float16, got ", t);
  }
}

double read_cpu_scalar(const at::Tensor& t, const char* name) {
  TORCH_CHECK(t.device().is_cpu(), "lrfused: ", name, " must be on the CPU with CPU parameters, got ", t.device());
  TORCH_CHECK(t.numel() == 1, "lrfused: ", name, " must have one element, got ", t.numel());
  switch (t.scalar_type()) {  // read in place: no conversion tensor per step
    case at::kFloat: return *t.const_data_ptr<float>();
    case at::kDouble: return *t.const_data_ptr<double>();
    default: return t.to(at::kDouble).item<double>();
  }
}

namespace {
// Device programs already validated, by TensorImpl: (data, version). One entry per program tensor ever
// checked (one per group and device of each optimizer); a reused TensorImpl address overwrites its entry.
struct CheckedProgram {
  const void* data = nullptr;
  uint32_t version = 0;
};
std::mutex checked_programs_mutex;
std::unordered_map<const void*, CheckedProgram> checked_programs;
}  // namespace

void check_program(const at::Tensor& program) {
  TORCH_CHECK(program.defined() && program.scalar_type() == at::kDouble && program.dim() == 1 &&
                  program.is_contiguous() && program.numel() >= 2,
              "lrfused: program must be a packed schedule (contiguous 1-D float64 tensor of at least 2 values)");
  if (program.device().is_cpu()) {
    const char* why = sched::validate_program(program.const_data_ptr<double>(), program.numel());
    TORCH_CHECK(why == nullptr, "lrfused: invalid schedule program: ", why);
    return;
  }
  const void* impl = program.unsafeGetTensorImpl();
  const CheckedProgram key{program.const_data_ptr(), program.unsafeGetTensorImpl()->version_counter().current_version()};
  {
    std::lock_guard<std::mutex> lock(checked_programs_mutex);
    const auto it = checked_programs.find(impl);
    if (it != checked_programs.end() && it->second.data == key.data && it->second.version == key.version) return;
  }
  const at::Tensor host = program.cpu();  // once per program tensor, outside the lock: it synchronises
  const char* why = sched::validate_program(host.const_data_ptr<double>(), host.numel());
  TORCH_CHECK(why == nullptr, "lrfused: invalid schedule program: ", why);
  std::lock_guard<std::mutex> lock(checked_programs_mutex);
  checked_programs[impl] = key;
}

void check_group_step(const GroupStep& step) {
  const at::Tensor& state = step.sched_state;
  TORCH_CHECK(state.scalar_type() == at::kDouble && state.dim() == 1 && state.is_contiguous(),
              "lrfused: sched_state must be a contiguous 1-D float64 tensor");
  const int64_t num_groups = sched_num_groups(state.numel());
  TORCH_CHECK(num_groups > 0 && step.group_index >= 0 && step.group_index < num_groups,
              "lrfused: group_index ", step.group_index, " does not fit sched_state of ", state.numel(), " slots");
  check_program(step.program);
  TORCH_CHECK(static_cast<int64_t>(step.hyper.size()) == HYPER_COUNT, "lrfused: hyper must have ", HYPER_COUNT,
              " values, got ", step.hyper.size());
  TORCH_CHECK(step.optimizer == OPT_SGD || step.optimizer == OPT_ADAM, "lrfused: unknown optimizer ", step.optimizer);
}

void cpu_group_step(const GroupStep& step, const cpu::TensorRef* refs, int64_t num_refs,
                    cpu::DType param_dtype, cpu::DType state_dtype) {
  if (step.found_inf && read_cpu_scalar(*step.found_inf, "found_inf") != 0.0) return;
  double* state = step.sched_state.data_ptr<double>();
  const int num_groups = static_cast<int>(sched_num_groups(step.sched_state.numel()));
  const int group = static_cast<int>(step.group_index);
  const double* program = step.program.data_ptr<double>();
  const int64_t k = static_cast<int64_t>(state[SCHED_STEP]);
  const double* plateau_lr = &state[sched_plateau_lr_slot(num_groups, group)];
  const double lr = sched::lr_at(program, k, step.hyper[HYPER_LR], plateau_lr);
  state[SCHED_LAST_LR + group] = lr;
  state[sched_next_lr_slot(num_groups, group)] = sched::lr_at(program, k + 1, step.hyper[HYPER_LR], plateau_lr);
  state[sched_next_momentum_slot(num_groups, group)] = sched::momentum_at(program, k + 1, step.hyper[HYPER_MOMENTUM]);

  cpu::StepConfig cfg;
  cfg.optimizer = static_cast<int>(step.optimizer);
  cfg.flags = static_cast<int>(step.flags);
  cfg.lr = lr;
  cfg.momentum = sched::momentum_at(program, k, step.hyper[HYPER_MOMENTUM]);
  cfg.dampening_beta2 = step.hyper[HYPER_DAMPENING];
  cfg.eps = step.hyper[HYPER_EPS];
  cfg.weight_decay = step.hyper[HYPER_WEIGHT_DECAY];
  cfg.has_grad_scale = step.grad_scale.has_value();
  cfg.grad_scale = cfg.has_grad_scale ? static_cast<float>(read_cpu_scalar(*step.grad_scale, "grad_scale")) : 1.0f;
  cfg.grad_factor = step.grad_factor ? read_cpu_scalar(*step.grad_factor, "grad_factor") : 1.0f;
  cpu::fused_step(refs, num_refs, param_dtype, state_dtype, cfg);
}

at::Tensor real_view(const at::Tensor& t) { return t.is_complex() ? at::view_as_real(t) : t; }

bool flat_compatible(const at::Tensor& t, const at::Tensor& layout) {
  return t.is_non_overlapping_and_dense() && t.sizes() == layout.sizes() &&
         (t.numel() <= 1 || t.strides() == layout.strides());
}

namespace {

// t itself when the kernel can walk it in layout's order, else a copy in that layout: copied back after
// the kernel when write_back, else only kept alive (a gradient the kernel only reads).
at::Tensor working_copy(const at::Tensor& t, const at::Tensor& layout, Staging& staging, bool write_back = true) {
  if (flat_compatible(t, layout)) return t;
  at::Tensor w = at::empty_like(layout, at::MemoryFormat::Preserve).copy_(t);
  if (write_back) {
    staging.copies.emplace_back(t, w);
  } else {
    staging.read_only.push_back(w);
  }
  return w;
}
}  // namespace

cpu::TensorRef make_tensor_ref(const at::Tensor& param, const at::Tensor& grad, const at::Tensor* s1,
                               const at::Tensor* s2, const at::Tensor* s3, const at::Tensor& step,
                               Staging& staging, bool write_grad) {
  const at::Tensor p = real_view(param);
  const at::Tensor pw = working_copy(p, p.is_non_overlapping_and_dense() ? p : p.contiguous(), staging);
  cpu::TensorRef r;
  r.param = pw.data_ptr();
  r.grad = working_copy(real_view(grad), pw, staging, write_grad).data_ptr();
  r.s1 = s1 ? working_copy(real_view(*s1), pw, staging).data_ptr() : nullptr;
  r.s2 = s2 ? working_copy(real_view(*s2), pw, staging).data_ptr() : nullptr;
  r.s3 = s3 ? working_copy(real_view(*s3), pw, staging).data_ptr() : nullptr;
  r.step = step.data_ptr<float>();
  r.numel = p.numel();
  return r;
}

void check_grad(const at::Tensor& p, const at::Tensor& g, bool write_grad) {
  TORCH_CHECK(!g.is_sparse(), "lrfused: a parameter of shape ", p.sizes(),
              " has a sparse gradient; lrfused does not support sparse gradients");
  TORCH_CHECK(g.scalar_type() == p.scalar_type() && g.sizes() == p.sizes() && g.device() == p.device(),
              "lrfused: a gradient (", g.scalar_type(), ", ", g.sizes(), ", ", g.device(),
              ") does not match its parameter (", p.scalar_type(), ", ", p.sizes(), ", ", p.device(), ")");
  TORCH_CHECK(!write_grad || g.is_non_overlapping_and_dense() || at::has_internal_overlap(g) == at::MemOverlap::No,
              "lrfused: a gradient of shape ", g.sizes(), " with strides ", g.strides(),
              " stores several elements in one memory location (an expanded tensor?), so the unscaled gradient "
              "cannot be written back to it (GradScaler); give the parameter a gradient of its own, e.g. "
              "p.grad = g.expand_as(p).clone()");
}

void cpu_advance(const at::Tensor& sched_state, const std::optional<at::Tensor>& found_inf) {
  if (found_inf && read_cpu_scalar(*found_inf, "found_inf") != 0.0) return;
  sched_state.data_ptr<double>()[SCHED_STEP] += 1.0;
}

namespace {

void check_list_lengths(size_t n, at::TensorList list, const char* name) {
  TORCH_CHECK(list.empty() || list.size() == n, "lrfused: ", name, " must be empty or have one tensor per param (",
              n, "), got ", list.size());
}

void fused_step_cpu(at::TensorList params, at::TensorList grads, at::TensorList state1, at::TensorList state2,
                    at::TensorList state3, at::TensorList steps, const at::Tensor& sched_state,
                    const at::Tensor& program, int64_t group_index, int64_t optimizer, int64_t flags,
                    at::ArrayRef<double> hyper, const std::optional<at::Tensor>& grad_scale,
                    const std::optional<at::Tensor>& found_inf, const std::optional<at::Tensor>& grad_factor) {
  GroupStep step{sched_state, program, group_index, optimizer, flags,
                 std::vector<double>(hyper.begin(), hyper.end()), grad_scale, found_inf, grad_factor};
  check_group_step(step);
  const size_t n = params.size();
  TORCH_CHECK(grads.size() == n, "lrfused: grads must have one tensor per param (", n, "), got ", grads.size());
  TORCH_CHECK(steps.size() == n, "lrfused: steps must have one tensor per param (", n, "), got ", steps.size());
  check_list_lengths(n, state1, "state1");
  check_list_lengths(n, state2, "state2");
  check_list_lengths(n, state3, "state3");
  if (n == 0) {  // no parameter of the group has a gradient: the applied lr is still recorded
    cpu_group_step(step, nullptr, 0, cpu::DType::F32, cpu::DType::F32);
    return;
  }
  const at::ScalarType param_type = real_view(params[0]).scalar_type();
  const at::ScalarType state_type = state1.empty() ? param_type : real_view(state1[0]).scalar_type();
  Staging staging;
  std::vector<cpu::TensorRef> refs(n);
  for (size_t i = 0; i < n; ++i) {
    const at::Tensor p = real_view(params[i]);
    const at::Tensor g = real_view(grads[i]);
    TORCH_CHECK(p.device().is_cpu(), "lrfused: params[", i, "] is on ", p.device(), ", expected cpu");
    TORCH_CHECK(p.scalar_type() == param_type, "lrfused: params[", i, "] is ", p.scalar_type(),
                " but the group's params are ", param_type);
    check_grad(p, g, grad_scale.has_value());
    TORCH_CHECK(steps[i].scalar_type() == at::kFloat && steps[i].numel() == 1 && steps[i].device().is_cpu(),
                "lrfused: steps[", i, "] must be a one-element float32 CPU tensor");
    auto state_at = [&](at::TensorList list, const char* name) -> const at::Tensor* {
      if (list.empty()) return nullptr;
      const at::Tensor s = real_view(list[i]);
      TORCH_CHECK(s.scalar_type() == state_type && s.sizes() == p.sizes() && s.device().is_cpu(), "lrfused: ",
                  name, "[", i, "] must be a ", state_type, " CPU tensor of shape ", p.sizes());
      return &list[i];
    };
    refs[i] = make_tensor_ref(params[i], grads[i], state_at(state1, "state1"), state_at(state2, "state2"),
                              state_at(state3, "state3"), steps[i], staging, grad_scale.has_value());
  }
  cpu_group_step(step, refs.data(), static_cast<int64_t>(n), to_kernel_dtype(param_type, "params"),
                 to_kernel_dtype(state_type, "state"));
  staging.write_back();
}

at::Tensor grad_sq_norm_cpu(at::TensorList grads, const std::optional<at::Tensor>& grad_scale) {
  const double inv_scale = grad_scale ? 1.0 / read_cpu_scalar(*grad_scale, "grad_scale") : 1.0;
  double total = 0.0;
  std::vector<cpu::TensorRef> refs;
  Staging staging;  // unused: gradients are only read
  for (size_t i = 0; i < grads.size(); ++i) {
    TORCH_CHECK(grads[i].device().is_cpu() && !grads[i].is_sparse(), "lrfused: grads[", i,
                "] must be a dense CPU tensor");
    const at::Tensor g = real_view(grads[i]);
    TORCH_CHECK(g.scalar_type() == real_view(grads[0]).scalar_type(), "lrfused: grads[", i, "] is ",
                g.scalar_type(), " but grads[0] is ", real_view(grads[0]).scalar_type());
    const at::Tensor flat = g.is_non_overlapping_and_dense() ? g : g.contiguous();
    cpu::TensorRef r{};
    r.grad = flat.data_ptr();
    r.numel = flat.numel();
    refs.push_back(r);
    if (!flat.is_same(g)) staging.read_only.push_back(flat);  // keeps the copy alive
  }
  if (!refs.empty()) {
    total = cpu::grad_sum_of_squares(refs.data(), static_cast<int64_t>(refs.size()),
                                     to_kernel_dtype(real_view(grads[0]).scalar_type(), "grads"), inv_scale);
  }
  return at::scalar_tensor(total, at::TensorOptions().dtype(at::kDouble));
}

void advance_cpu(const at::Tensor& sched_state, const std::optional<at::Tensor>& found_inf) {
  TORCH_CHECK(sched_state.scalar_type() == at::kDouble && sched_state.numel() > SCHED_STEP,
              "lrfused: sched_state must be a float64 tensor");
  cpu_advance(sched_state, found_inf);
}

}  // namespace

TORCH_LIBRARY_IMPL(lrfused, CPU, m) {
  LRF_IMPL(m, fused_step_, &fused_step_cpu);
  LRF_IMPL(m, advance_, &advance_cpu);
  LRF_IMPL(m, grad_sq_norm, &grad_sq_norm_cpu);
}

}  // namespace lrfused
