// The torch-facing argument layer of the optimizer-step ops (see step_args.h).
#include "step_args.h"

#include <ATen/MemoryOverlap.h>
#include <ATen/core/dispatch/Dispatcher.h>

#include <mutex>
#include <unordered_map>

#include "op_signatures.h"
#include "quant8.h"
#include "schedule.h"

namespace lrfused {

DType kernel_dtype(at::ScalarType t, const char* what) {
  switch (t) {
    case at::kFloat: return DType::F32;
    case at::kDouble: return DType::F64;
    case at::kBFloat16: return DType::BF16;
    case at::kHalf: return DType::F16;
    case at::kByte: return DType::Q8;  // 8-bit block-quantized state (check_dtype_pair: a state dtype only)
    default:
      TORCH_CHECK_TYPE(false, "lrfused: ", what, " must be float32, float64, bfloat16 or float16, got ", t);
  }
}

void check_dtype_pair(at::ScalarType param_type, at::ScalarType state_type) {
  const DType p = kernel_dtype(param_type, "params");
  const DType s = kernel_dtype(state_type, "state");
  TORCH_CHECK(supported_dtype_pair(p, s), "lrfused: ", param_type, " params cannot have ", state_type,
              " state (supported: the param dtype; float32 for float16/bfloat16 params; bfloat16 for float32; "
              "8-bit (uint8 codes) for float32/bfloat16/float16)");
}

at::Tensor real_view(const at::Tensor& t) { return t.is_complex() ? at::view_as_real(t) : t; }

bool same_walk_order(const at::Tensor& t, const at::Tensor& layout) {
  if (t.sizes() != layout.sizes() || !t.is_non_overlapping_and_dense()) return false;
  for (int64_t d = 0; d < t.dim(); ++d)
    if (t.size(d) > 1 && t.stride(d) != layout.stride(d)) return false;
  return true;
}

namespace {
// Device programs already validated, by TensorImpl: (data, version). One entry per program tensor ever
// checked (one per group and device of each optimizer); a reused TensorImpl address overwrites its entry.
struct CheckedProgram {
  const void* data = nullptr;
  uint32_t version = 0;
  ProgramInfo info;
};
std::mutex checked_programs_mutex;
std::unordered_map<const void*, CheckedProgram> checked_programs;
}  // namespace

namespace {
ProgramInfo validated_info(const double* program, int64_t len) {
  const char* why = sched::validate_program(program, len);
  TORCH_CHECK(why == nullptr, "lrfused: invalid schedule program: ", why);
  return ProgramInfo{sched::schedules_hyper(program, HYPER_WEIGHT_DECAY)};
}
}  // namespace

ProgramInfo check_program(const at::Tensor& program) {
  TORCH_CHECK(program.defined() && program.scalar_type() == at::kDouble && program.dim() == 1 &&
                  program.is_contiguous() && program.numel() >= 2,
              "lrfused: program must be a packed schedule (contiguous 1-D float64 tensor of at least 2 values)");
  if (program.device().is_cpu()) return validated_info(program.const_data_ptr<double>(), program.numel());
  const void* impl = program.unsafeGetTensorImpl();
  CheckedProgram key{program.const_data_ptr(), program.unsafeGetTensorImpl()->version_counter().current_version()};
  {
    std::lock_guard<std::mutex> lock(checked_programs_mutex);
    const auto it = checked_programs.find(impl);
    if (it != checked_programs.end() && it->second.data == key.data && it->second.version == key.version)
      return it->second.info;
  }
  const at::Tensor host = program.cpu();  // once per program tensor, outside the lock: it synchronises
  key.info = validated_info(host.const_data_ptr<double>(), host.numel());
  std::lock_guard<std::mutex> lock(checked_programs_mutex);
  checked_programs[impl] = key;
  return key.info;
}

int64_t check_sched_state(const at::Tensor& state, int64_t num_groups) {
  TORCH_CHECK(state.defined() && state.scalar_type() == at::kDouble && state.dim() == 1 && state.is_contiguous(),
              "lrfused: sched_state must be a contiguous 1-D float64 tensor");
  if (num_groups >= 0) {
    TORCH_CHECK(state.numel() == sched_size(num_groups), "lrfused: sched_state has ", state.numel(),
                " slots, expected ", sched_size(num_groups), " for ", num_groups, " groups");
  }
  const int64_t groups = sched_num_groups(state.numel());
  TORCH_CHECK(groups > 0, "lrfused: sched_state must have ", static_cast<int>(SCHED_HEADER), " + ",
              static_cast<int>(kSchedSlotsPerGroup), " * num_groups slots, got ", state.numel());
  return groups;
}

void check_scalar_arg(const std::optional<at::Tensor>& t, const c10::Device& device, const char* what) {
  if (!t.has_value()) return;
  TORCH_CHECK(t->defined() && t->numel() == 1 && t->is_floating_point(), "lrfused: ", what,
              " must be a 1-element floating-point tensor, got ",
              t->defined() ? c10::str(t->scalar_type(), " of shape ", t->sizes()) : std::string("an undefined tensor"));
  TORCH_CHECK(t->device() == device, "lrfused: ", what, " is on ", t->device(), " but sched_state is on ", device);
}

void check_plateau_report(const at::Tensor& state, const at::Tensor& metric, at::ArrayRef<double> config,
                          int64_t num_groups) {
  // the upper bound keeps sched_size(num_groups) and the config length far from overflowing
  TORCH_CHECK(num_groups >= 1 && num_groups <= 1000000, "lrfused: plateau_report_ needs 1 to 1000000 groups, got ",
              num_groups);
  check_sched_state(state, num_groups);
  TORCH_CHECK(static_cast<int64_t>(config.size()) == plateau::kFixed + num_groups,
              "lrfused: plateau_report_ config must hold ", static_cast<int>(plateau::kFixed),
              " + num_groups = ", plateau::kFixed + num_groups, " values, got ", config.size());
  TORCH_CHECK(metric.defined() && metric.numel() == 1, "lrfused: plateau_report_ metric must be a 1-element tensor");
}

void check_greedy_report(const at::Tensor& state, const at::Tensor& greedy_state, const at::Tensor& metric,
                         at::ArrayRef<double> config, int64_t num_groups) {
  TORCH_CHECK(num_groups >= 1 && num_groups <= 1000000, "lrfused: greedy_report_ needs 1 to 1000000 groups, got ",
              num_groups);
  check_sched_state(state, num_groups);
  TORCH_CHECK(static_cast<int64_t>(config.size()) == greedy::kFixed + 3 * num_groups,
              "lrfused: greedy_report_ config must hold ", static_cast<int>(greedy::kFixed),
              " + 3 * num_groups = ", greedy::kFixed + 3 * num_groups, " values, got ", config.size());
  const bool smooth = config[greedy::smooth] != 0.0;
  const double window = config[greedy::window_size];
  TORCH_CHECK(!smooth || (window >= 1 && window <= 1e7 && window == static_cast<double>(static_cast<int64_t>(window))),
              "lrfused: greedy_report_ window_size must be an integer in [1, 1e7] with smooth, got ", window);
  const int64_t size = greedy::state_size(smooth, static_cast<int64_t>(window));
  TORCH_CHECK(greedy_state.defined() && greedy_state.scalar_type() == at::kDouble && greedy_state.dim() == 1 &&
                  greedy_state.is_contiguous() && greedy_state.numel() == size,
              "lrfused: greedy_state must be a contiguous 1-D float64 tensor of ", size, " values (",
              static_cast<int>(greedy::RING), ", plus window_size with smooth)");
  TORCH_CHECK(greedy_state.device() == state.device(), "lrfused: greedy_state is on ", greedy_state.device(),
              " but sched_state is on ", state.device());
  TORCH_CHECK(metric.defined() && metric.numel() == 1, "lrfused: greedy_report_ metric must be a 1-element tensor");
}

std::vector<at::Tensor> flat_grads(at::TensorList grads) {
  std::vector<at::Tensor> flat(grads.size());
  for (size_t i = 0; i < grads.size(); ++i) {
    TORCH_CHECK(grads[i].defined() && !grads[i].is_sparse(), "lrfused: grads[", i,
                "] must be a dense tensor; lrfused does not support sparse gradients");
    TORCH_CHECK(grads[i].device() == grads[0].device(), "lrfused: grads[", i, "] is on ", grads[i].device(),
                " but grads[0] is on ", grads[0].device(), " (one device per call)");
    const at::Tensor g = real_view(grads[i]);
    TORCH_CHECK(g.scalar_type() == real_view(grads[0]).scalar_type(), "lrfused: grads[", i, "] is ",
                grads[i].scalar_type(), " but grads[0] is ", grads[0].scalar_type(), " (one dtype per call)");
    flat[i] = g.is_non_overlapping_and_dense() ? g : g.contiguous();
  }
  if (!flat.empty()) kernel_dtype(flat[0].scalar_type(), "grads");
  return flat;
}

void check_group_step(GroupStep& step) {
  const at::Tensor& state = step.sched_state;
  const int64_t num_groups = check_sched_state(state);
  TORCH_CHECK(step.group_index >= 0 && step.group_index < num_groups, "lrfused: group_index must be in [0, ",
              num_groups, ") for this sched_state, got ", step.group_index);
  TORCH_CHECK(step.program.defined() && step.program.device() == state.device(), "lrfused: program is on ",
              step.program.defined() ? c10::str(step.program.device()) : std::string("no device"),
              " but sched_state is on ", state.device());
  step.weight_decay_scheduled = check_program(step.program).schedules_weight_decay;
  TORCH_CHECK(step.optimizer == OPT_SGD || step.optimizer == OPT_ADAM, "lrfused: unknown optimizer ", step.optimizer);
  TORCH_CHECK(step.flags >= 0 && (step.flags & ~static_cast<int64_t>(kAllFlags)) == 0,
              "lrfused: flags must be a bit set of lrfused::OptFlags, got ", step.flags);
  TORCH_CHECK(static_cast<int64_t>(step.hyper.size()) == HYPER_COUNT, "lrfused: hyper must have ", HYPER_COUNT,
              " values, got ", step.hyper.size());
  check_scalar_arg(step.grad_scale, state.device(), "grad_scale");
  check_scalar_arg(step.found_inf, state.device(), "found_inf");
  check_scalar_arg(step.grad_factor, state.device(), "grad_factor");
}

void check_grad(const at::Tensor& p, const at::Tensor& g, bool write_grad) {
  TORCH_CHECK(g.defined(), "lrfused: a parameter of shape ", p.sizes(), " has an undefined gradient");
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

bool walks_as_param(const at::Tensor& t, const at::Tensor& p) {
  // A non-dense parameter is walked through a contiguous staging copy (flat_param).
  return p.is_non_overlapping_and_dense() ? same_walk_order(t, p) : t.sizes() == p.sizes() && t.is_contiguous();
}

void check_8bit_state(at::TensorList params, const at::TensorList states[2], const at::TensorList absmax[2],
                      at::ScalarType state_type, bool adam, bool amsgrad) {
  static const char* const kCodesNames[2][2] = {{"momentum_buffers", "(none)"}, {"exp_avgs", "exp_avg_sqs"}};
  static const char* const kAbsmaxNames[2][2] = {{"momentum_buffer_absmax", "(none)"},
                                                 {"exp_avg_absmax", "exp_avg_sq_absmax"}};
  const size_t n = params.size();
  const bool quantized = n > 0 && state_type == at::kByte;
  TORCH_CHECK(!quantized || !amsgrad, "lrfused: 8-bit state does not support amsgrad");
  for (int j = 0; j < 2; ++j) {
    const size_t want = quantized && !states[j].empty() ? n : 0;
    TORCH_CHECK(absmax[j].size() == want, "lrfused: ", kAbsmaxNames[adam][j], " must have ",
                want == 0 ? "no tensors (the state is not 8-bit)" : "one tensor per param", ", got ",
                absmax[j].size());
    for (size_t i = 0; i < absmax[j].size(); ++i) {
      const at::Tensor& p = params[i];
      const at::Tensor& a = absmax[j][i];
      const int64_t blocks = quant8::num_blocks(p.numel());
      TORCH_CHECK(!p.is_complex(), "lrfused: 8-bit state is for real parameters, params[", i, "] is complex");
      // No staging copy for codes: their block scales follow their memory order.
      TORCH_CHECK(walks_as_param(states[j][i], p), "lrfused: ", kCodesNames[adam][j], "[", i,
                  "] (8-bit codes) must have the memory layout of params[", i, "]: its block scales follow that order");
      TORCH_CHECK(a.defined() && a.scalar_type() == at::kFloat && a.dim() == 1 && a.is_contiguous() &&
                      a.numel() == blocks && a.device() == p.device(),
                  "lrfused: ", kAbsmaxNames[adam][j], "[", i, "] must be a contiguous float32 tensor of ", blocks,
                  " values (one per ", quant8::kQuantBlock, " elements) on ", p.device());
    }
  }
}

void check_master(const at::Tensor& p, const at::Tensor& master, size_t i) {
  TORCH_CHECK(!p.is_complex() && (p.scalar_type() == at::kBFloat16 || p.scalar_type() == at::kHalf),
              "lrfused: params[", i, "] is ", p.scalar_type(),
              ": master weights are for bfloat16 and float16 parameters only");
  TORCH_CHECK(master.defined() && master.scalar_type() == at::kFloat && master.sizes() == p.sizes() &&
                  master.device() == p.device(),
              "lrfused: master_params[", i, "] must be a float32 tensor of shape ", p.sizes(), " on ", p.device());
}

StepRequest check_step_request(GroupStep group, at::TensorList params, at::TensorList grads, at::TensorList state1,
                               at::TensorList state2, at::TensorList state3, at::TensorList steps,
                               at::TensorList master_params, at::IntArrayRef sr_streams, at::TensorList absmax1,
                               at::TensorList absmax2) {
  check_group_step(group);
  StepRequest r;
  const c10::Device device = group.sched_state.device();
  const size_t n = params.size();
  const bool adam = group.optimizer == OPT_ADAM;
  const bool amsgrad = adam && (group.flags & FLAG_AMSGRAD) != 0;
  static const char* const kSgdNames[3] = {"momentum_buffers", "state2", "state3"};
  static const char* const kAdamNames[3] = {"exp_avgs", "exp_avg_sqs", "max_exp_avg_sqs"};
  const char* const* names = adam ? kAdamNames : kSgdNames;
  TORCH_CHECK(grads.size() == n, "lrfused: grads has ", grads.size(), " tensors but params has ", n);
  TORCH_CHECK(steps.size() == n, "lrfused: steps has ", steps.size(), " tensors but params has ", n);
  TORCH_CHECK(master_params.empty() || master_params.size() == n, "lrfused: master_params must be empty or have one "
              "tensor per param (", n, "), got ", master_params.size());
  const bool stochastic = (group.flags & FLAG_STOCHASTIC_ROUNDING) != 0;
  TORCH_CHECK(sr_streams.size() == (stochastic ? n : 0), "lrfused: sr_streams must have one stream per param (", n,
              ") with stochastic_rounding and be empty without, got ", sr_streams.size());
  for (size_t i = 0; i < sr_streams.size(); ++i)
    TORCH_CHECK(sr_streams[i] >= 0, "lrfused: sr_streams[", i, "] must be >= 0, got ", sr_streams[i]);
  const at::TensorList lists[3] = {state1, state2, state3};
  // Which state lists the family uses: SGD its momentum buffers when given; Adam both moments, and the
  // max with amsgrad (a max list without amsgrad is ignored, as torch ignores it).
  const bool required[3] = {adam, adam, amsgrad};
  const bool allowed[3] = {true, adam, adam};
  for (int j = 0; j < 3; ++j) {
    const size_t got = lists[j].size();
    TORCH_CHECK(allowed[j] || got == 0, "lrfused: ", names[j], " must be empty, got ", got, " tensors");
    TORCH_CHECK(got == n || (!required[j] && got == 0), "lrfused: ", names[j], " must ",
                required[j] ? "" : "be empty or ", "have one tensor per param (", n, "), got ", got);
    r.state[j] = (j == 2 && !amsgrad) ? at::TensorList() : lists[j];
  }
  r.params = params;
  r.grads = grads;
  r.steps = steps;
  r.masters = master_params;
  r.sr_streams = sr_streams;
  r.absmax[0] = absmax1;
  r.absmax[1] = absmax2;
  r.write_grads = group.grad_scale.has_value();
  r.param_type = n > 0 ? real_view(params[0]).scalar_type() : at::kFloat;
  r.state_type = !r.state[0].empty() ? real_view(r.state[0][0]).scalar_type() : r.param_type;
  if (n > 0) check_dtype_pair(r.param_type, r.state_type);
  for (size_t i = 0; i < n; ++i) {
    const at::Tensor& p = params[i];
    TORCH_CHECK(p.defined(), "lrfused: params[", i, "] is undefined");
    TORCH_CHECK(p.device() == device, "lrfused: params[", i, "] is on ", p.device(), " but sched_state is on ", device,
                " (all tensors of a fused step share one device)");
    TORCH_CHECK(real_view(p).scalar_type() == r.param_type, "lrfused: params[", i, "] is ", p.scalar_type(),
                " but params[0] is ", params[0].scalar_type(), " (one dtype per call)");
    check_grad(p, grads[i], r.write_grads);
    if (!master_params.empty()) check_master(p, master_params[i], i);
    const at::Tensor& st = steps[i];
    TORCH_CHECK(st.defined() && st.scalar_type() == at::kFloat && st.numel() == 1 && st.device() == device,
                "lrfused: steps[", i, "] must be a 1-element float32 tensor on ", device);
    for (int j = 0; j < 3; ++j) {
      if (r.state[j].empty()) continue;
      const at::Tensor& s = r.state[j][i];
      TORCH_CHECK(s.defined() && s.device() == device && s.is_complex() == p.is_complex() &&
                      real_view(s).scalar_type() == r.state_type && s.sizes() == p.sizes(),
                  "lrfused: ", names[j], "[", i, "] must be a ", r.state_type, p.is_complex() ? " (complex)" : "",
                  " tensor of shape ", p.sizes(), " on ", device, " (one state dtype per call)");
    }
  }
  const at::TensorList absmax[2] = {absmax1, absmax2};
  check_8bit_state(params, r.state, absmax, r.state_type, adam, amsgrad);
  r.group = std::move(group);
  return r;
}

at::Tensor Staging::walkable(const at::Tensor& t, const at::Tensor& layout, bool write_back) {
  if (same_walk_order(t, layout)) return t;
  // layout's order, t's dtype (a state or master copy is not the parameter's dtype)
  at::Tensor w = at::empty_like(layout, layout.options().dtype(t.scalar_type()), at::MemoryFormat::Preserve).copy_(t);
  if (write_back) {
    copies.emplace_back(t, w);
  } else {
    read_only.push_back(w);
  }
  return w;
}

FlatParam flat_param(const at::Tensor& param, const at::Tensor& grad, const at::Tensor* const state[3],
                     const at::Tensor* master, bool write_grad, Staging& staging) {
  FlatParam f;
  const at::Tensor p = real_view(param);
  if (p.is_non_overlapping_and_dense()) {
    f.param = p;
  } else {
    f.param = p.contiguous();
    staging.copies.emplace_back(p, f.param);
  }
  f.grad = staging.walkable(real_view(grad), f.param, write_grad);
  for (int j = 0; j < 3; ++j)
    if (state[j] != nullptr) f.state[j] = staging.walkable(real_view(*state[j]), f.param);
  if (master != nullptr) f.master = staging.walkable(*master, f.param);
  return f;
}

FlatParam flat_param(const StepRequest& r, size_t i, Staging& staging) {
  const at::Tensor* state[3];
  for (int j = 0; j < 3; ++j) state[j] = r.state[j].empty() ? nullptr : &r.state[j][i];
  FlatParam f = flat_param(r.params[i], r.grads[i], state, r.masters.empty() ? nullptr : &r.masters[i],
                           r.write_grads, staging);
  for (int j = 0; j < 2; ++j)
    if (!r.absmax[j].empty()) f.absmax[j] = r.absmax[j][i];
  return f;
}

namespace {
int64_t flags_of(std::initializer_list<std::pair<bool, OptFlags>> set) {
  int64_t flags = 0;
  for (const auto& [on, flag] : set) flags |= on ? flag : 0;
  return flags;
}
}  // namespace

GroupStep sgd_group_step(const at::Tensor& sched_state, const at::Tensor& program, int64_t group_index,
                         double base_lr, double momentum, double dampening, double weight_decay, bool nesterov,
                         bool maximize, const std::optional<at::Tensor>& grad_scale,
                         const std::optional<at::Tensor>& found_inf, const std::optional<at::Tensor>& grad_factor,
                         bool stochastic_rounding, int64_t sr_seed) {
  std::vector<double> hyper(HYPER_COUNT, 0.0);
  hyper[HYPER_LR] = base_lr;
  hyper[HYPER_MOMENTUM_BETA1] = momentum;
  hyper[HYPER_DAMPENING_BETA2] = dampening;
  hyper[HYPER_WEIGHT_DECAY] = weight_decay;
  return GroupStep{sched_state, program, group_index, OPT_SGD,
                   flags_of({{nesterov, FLAG_NESTEROV}, {maximize, FLAG_MAXIMIZE},
                             {stochastic_rounding, FLAG_STOCHASTIC_ROUNDING}}),
                   std::move(hyper), grad_scale, found_inf, grad_factor, false, static_cast<uint64_t>(sr_seed)};
}

GroupStep adam_group_step(const at::Tensor& sched_state, const at::Tensor& program, int64_t group_index,
                          double base_lr, double beta1, double beta2, double eps, double weight_decay, bool amsgrad,
                          bool maximize, bool decoupled_weight_decay, const std::optional<at::Tensor>& grad_scale,
                          const std::optional<at::Tensor>& found_inf, const std::optional<at::Tensor>& grad_factor,
                          bool stochastic_rounding, int64_t sr_seed) {
  std::vector<double> hyper(HYPER_COUNT, 0.0);
  hyper[HYPER_LR] = base_lr;
  hyper[HYPER_MOMENTUM_BETA1] = beta1;
  hyper[HYPER_DAMPENING_BETA2] = beta2;
  hyper[HYPER_EPS] = eps;
  hyper[HYPER_WEIGHT_DECAY] = weight_decay;
  return GroupStep{sched_state, program, group_index, OPT_ADAM,
                   flags_of({{amsgrad, FLAG_AMSGRAD}, {maximize, FLAG_MAXIMIZE},
                             {decoupled_weight_decay, FLAG_DECOUPLED_WD},
                             {stochastic_rounding, FLAG_STOCHASTIC_ROUNDING}}),
                   std::move(hyper), grad_scale, found_inf, grad_factor, false, static_cast<uint64_t>(sr_seed)};
}

void call_step_op(const GroupStep& g, at::TensorList params, at::TensorList grads, at::TensorList state1,
                  at::TensorList state2, at::TensorList state3, at::TensorList steps, at::TensorList master_params,
                  at::IntArrayRef sr_streams, at::TensorList absmax1, at::TensorList absmax2) {
  const double* h = g.hyper.data();
  const bool maximize = (g.flags & FLAG_MAXIMIZE) != 0;
  const bool stochastic = (g.flags & FLAG_STOCHASTIC_ROUNDING) != 0;
  const auto seed = static_cast<int64_t>(g.sr_seed);
  if (g.optimizer == OPT_SGD) {
    LRF_OP(fused_sgd_).call(params, grads, state1, steps, g.sched_state, g.program, g.group_index, h[HYPER_LR],
                            h[HYPER_MOMENTUM_BETA1], h[HYPER_DAMPENING_BETA2], h[HYPER_WEIGHT_DECAY],
                            (g.flags & FLAG_NESTEROV) != 0, maximize, g.grad_scale, g.found_inf, g.grad_factor,
                            master_params, stochastic, seed, sr_streams, absmax1);
  } else {
    LRF_OP(fused_adam_).call(params, grads, state1, state2, state3, steps, g.sched_state, g.program, g.group_index,
                             h[HYPER_LR], h[HYPER_MOMENTUM_BETA1], h[HYPER_DAMPENING_BETA2], h[HYPER_EPS],
                             h[HYPER_WEIGHT_DECAY], (g.flags & FLAG_AMSGRAD) != 0, maximize,
                             (g.flags & FLAG_DECOUPLED_WD) != 0, g.grad_scale, g.found_inf, g.grad_factor,
                             master_params, stochastic, seed, sr_streams, absmax1, absmax2);
  }
}

}  // namespace lrfused
