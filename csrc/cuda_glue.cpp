// CUDA implementations of the lrfused ops: argument checks, tensors -> raw pointers, current stream.
// The kernels themselves (csrc/cuda/*.cu) know nothing of torch; see csrc/cuda/launch.h.
// Compiled only in CUDA builds (setup.py adds this file and -DLRFUSED_WITH_CUDA).
#ifdef LRFUSED_WITH_CUDA

#include <torch/library.h>
#include <ATen/ATen.h>
#include <ATen/core/dispatch/Dispatcher.h>
#include <c10/cuda/CUDAGuard.h>
#include <c10/cuda/CUDAStream.h>

#include <optional>
#include <vector>

#include "cuda/launch.h"
#include "lrf_common.h"
#include "op_signatures.h"
#include "optim_cpu.h"
#include "update_math.h"

namespace lrfused {
namespace {

gpu::DType to_gpu_dtype(at::ScalarType t, const char* what) {
  switch (t) {
    case at::kFloat: return gpu::DType::kFloat32;
    case at::kHalf: return gpu::DType::kFloat16;
    case at::kBFloat16: return gpu::DType::kBFloat16;
    case at::kDouble: return gpu::DType::kFloat64;
    default: break;
  }
  TORCH_CHECK(false, "lrfused: ", what, " must be float32, float16, bfloat16 or float64, got ", t);
  return gpu::DType::kFloat32;
}

// Same element order in memory: equal sizes, both dense, equal strides wherever a size exceeds 1.
bool same_layout(const at::Tensor& a, const at::Tensor& b) {
  if (a.sizes() != b.sizes()) return false;
  if (!b.is_non_overlapping_and_dense()) return false;
  for (int64_t d = 0; d < a.dim(); ++d)
    if (a.size(d) > 1 && a.stride(d) != b.stride(d)) return false;
  return true;
}

// Working copies for a parameter whose memory the kernel cannot walk flat (a strided slice, or a grad
// or state whose layout differs from the param's): contiguous copies, copied back after the launch.
// Device copies on the current stream: no sync, and capturable. Rare by construction.
struct DeviceStaging {
  std::vector<std::pair<at::Tensor, at::Tensor>> copies;  // (original, contiguous working copy)
  at::Tensor stage(const at::Tensor& t, bool write_back) {
    at::Tensor c = t.contiguous();
    if (write_back && !c.is_same(t)) copies.emplace_back(t, c);
    return c;
  }
  void write_back() {
    for (auto& c : copies) c.first.copy_(c.second);
  }
};

void check_device(const at::Tensor& t, const at::Device& device, const char* what, size_t i) {
  TORCH_CHECK(t.defined(), "lrfused: ", what, "[", i, "] is undefined");
  TORCH_CHECK(t.device() == device, "lrfused: ", what, "[", i, "] is on ", t.device(),
              " but sched_state is on ", device, " (all tensors of a fused step must share one device)");
}

void check_sched_state(const at::Tensor& sched_state) {
  TORCH_CHECK(sched_state.is_cuda(), "lrfused: sched_state must be a CUDA tensor");
  TORCH_CHECK(sched_state.scalar_type() == at::kDouble && sched_state.dim() == 1 &&
                  sched_state.is_contiguous(),
              "lrfused: sched_state must be a contiguous 1-D float64 tensor, got ", sched_state.scalar_type(),
              " with shape ", sched_state.sizes());
  TORCH_CHECK(sched_num_groups(sched_state.numel()) > 0, "lrfused: sched_state must have ",
              static_cast<int>(SCHED_LAST_LR), " + ", kSchedSlotsPerGroup, " * num_groups elements, got ",
              sched_state.numel());
}

// Optional 1-element float32 device scalar (grad_scale, found_inf, grad_factor) -> pointer or nullptr.
const float* optional_scalar(const std::optional<at::Tensor>& t, const at::Device& device, const char* what) {
  if (!t.has_value() || !t->defined()) return nullptr;
  const at::Tensor& x = *t;
  TORCH_CHECK(x.device() == device, "lrfused: ", what, " is on ", x.device(), " but sched_state is on ", device);
  TORCH_CHECK(x.scalar_type() == at::kFloat && x.numel() == 1, "lrfused: ", what,
              " must be a 1-element float32 tensor, got ", x.scalar_type(), " with shape ", x.sizes());
  return x.const_data_ptr<float>();
}

void check_state(const at::Tensor& s, const at::Device& device, at::ScalarType state_dtype, const char* what,
                 size_t i) {
  check_device(s, device, what, i);
  TORCH_CHECK(s.scalar_type() == state_dtype, "lrfused: ", what, "[", i, "] is ", s.scalar_type(),
              " but the other state tensors are ", state_dtype, " (one state dtype per call)");
}

void fused_step_cuda(at::TensorList params, at::TensorList grads, at::TensorList state1, at::TensorList state2,
                     at::TensorList state3, at::TensorList steps, const at::Tensor& sched_state,
                     const at::Tensor& program, int64_t group_index, int64_t optimizer, int64_t flags,
                     at::ArrayRef<double> hyper, const std::optional<at::Tensor>& grad_scale,
                     const std::optional<at::Tensor>& found_inf, const std::optional<at::Tensor>& grad_factor) {
  check_sched_state(sched_state);
  const at::Device device = sched_state.device();
  const int64_t num_groups = sched_num_groups(sched_state.numel());
  TORCH_CHECK(group_index >= 0 && group_index < num_groups, "lrfused: group_index must be in [0, ",
              num_groups, ") for this sched_state, got ", group_index);
  TORCH_CHECK(program.device() == device, "lrfused: program is on ", program.device(),
              " but sched_state is on ", device);
  check_program(program);  // validated on the host once per program tensor (optim_cpu.h)
  TORCH_CHECK(optimizer == OPT_SGD || optimizer == OPT_ADAM,
              "lrfused: optimizer must be 0 (SGD) or 1 (Adam/AdamW), got ", optimizer);
  TORCH_CHECK(flags >= 0 && flags < 16, "lrfused: flags must be a bit set of lrfused::OptFlags, got ", flags);
  TORCH_CHECK(hyper.size() == HYPER_COUNT, "lrfused: hyper must have ", static_cast<int>(HYPER_COUNT),
              " entries [lr, momentum|beta1, dampening|beta2, eps, weight_decay], got ", hyper.size());

  const size_t n = params.size();
  TORCH_CHECK(grads.size() == n, "lrfused: grads has ", grads.size(), " tensors but params has ", n);
  TORCH_CHECK(steps.size() == n, "lrfused: steps has ", steps.size(), " tensors but params has ", n);
  const bool amsgrad = (flags & FLAG_AMSGRAD) != 0;
  if (optimizer == OPT_SGD) {
    TORCH_CHECK(state1.empty() || state1.size() == n, "lrfused: state1 (momentum buffers) must be empty or have ",
                n, " tensors, got ", state1.size());
    TORCH_CHECK(state2.empty() && state3.empty(), "lrfused: SGD takes no state2/state3, got ", state2.size(),
                " and ", state3.size(), " tensors");
  } else {
    TORCH_CHECK(state1.size() == n, "lrfused: state1 (exp_avg) must have ", n, " tensors, got ", state1.size());
    TORCH_CHECK(state2.size() == n, "lrfused: state2 (exp_avg_sq) must have ", n, " tensors, got ",
                state2.size());
    if (amsgrad) {
      TORCH_CHECK(state3.size() == n, "lrfused: state3 (max_exp_avg_sq) must have ", n,
                  " tensors with amsgrad, got ", state3.size());
    } else {
      TORCH_CHECK(state3.empty() || state3.size() == n, "lrfused: state3 (max_exp_avg_sq) must be empty or have ",
                  n, " tensors, got ", state3.size());
    }
  }

  gpu::FusedStepLaunch a;
  a.optimizer = static_cast<int>(optimizer);
  a.flags = static_cast<int>(flags);
  a.group_index = static_cast<int>(group_index);
  a.num_groups = static_cast<int>(num_groups);
  for (int i = 0; i < HYPER_COUNT; ++i) a.hyper[i] = hyper[i];
  a.num_tensors = static_cast<int64_t>(n);
  a.sched_state = sched_state.mutable_data_ptr<double>();
  a.program = program.const_data_ptr<double>();
  a.grad_scale = optional_scalar(grad_scale, device, "grad_scale");
  a.found_inf = optional_scalar(found_inf, device, "found_inf");
  a.grad_factor = optional_scalar(grad_factor, device, "grad_factor");

  const bool use_state1 = !state1.empty();
  const bool use_state2 = optimizer == OPT_ADAM;
  const bool use_state3 = optimizer == OPT_ADAM && amsgrad;
  const at::ScalarType param_dtype = n > 0 ? real_view(params[0]).scalar_type() : at::kFloat;
  // One state dtype per call: the first state tensor's, or the param dtype when there is no state.
  const at::ScalarType state_dtype = use_state1 ? real_view(state1[0]).scalar_type() : param_dtype;
  a.param_dtype = to_gpu_dtype(param_dtype, "params");
  a.state_dtype = to_gpu_dtype(state_dtype, "state tensors");
  TORCH_CHECK(n == 0 || gpu::supported_dtypes(a.param_dtype, a.state_dtype), "lrfused: ", param_dtype,
              " params cannot have ", state_dtype,
              " state (allowed: the param dtype; float32 for float16/bfloat16 params; bfloat16 for float32)");

  const c10::cuda::CUDAGuard guard(device);  // staging copies below run on this device's current stream
  const bool unscale = a.grad_scale != nullptr;
  DeviceStaging staging;
  std::vector<at::Tensor> keep;  // staged working copies, alive until the kernels are enqueued
  std::vector<void*> p(n), g(n), s1(use_state1 ? n : 0), s2(use_state2 ? n : 0), s3(use_state3 ? n : 0);
  std::vector<float*> st(n);
  std::vector<int64_t> numels(n);
  for (size_t i = 0; i < n; ++i) {
    check_device(params[i], device, "params", i);
    check_device(grads[i], device, "grads", i);
    check_device(steps[i], device, "steps", i);
    TORCH_CHECK(params[i].is_complex() == grads[i].is_complex(), "lrfused: grads[", i, "] is ",
                grads[i].scalar_type(), " but params[", i, "] is ", params[i].scalar_type());
    const at::Tensor param = real_view(params[i]);
    const at::Tensor grad = real_view(grads[i]);
    TORCH_CHECK(param.scalar_type() == param_dtype, "lrfused: params[", i, "] is ", params[i].scalar_type(),
                " but params[0] is ", params[0].scalar_type(), " (one dtype per call)");
    TORCH_CHECK(grad.scalar_type() == param_dtype, "lrfused: grads[", i, "] is ", grads[i].scalar_type(),
                " but params[", i, "] is ", params[i].scalar_type());
    TORCH_CHECK(grad.sizes() == param.sizes(), "lrfused: grads[", i, "] has shape ", grads[i].sizes(),
                " but params[", i, "] has shape ", params[i].sizes());
    check_grad(param, grad, unscale);  // e.g. an expanded gradient cannot take the unscaled write-back
    TORCH_CHECK(steps[i].scalar_type() == at::kFloat && steps[i].numel() == 1, "lrfused: steps[", i,
                "] must be a 1-element float32 tensor, got ", steps[i].scalar_type(), " with shape ",
                steps[i].sizes());
    at::Tensor state[3];
    const bool used[3] = {use_state1, use_state2, use_state3};
    const at::TensorList lists[3] = {state1, state2, state3};
    const char* names[3] = {"state1", "state2", "state3"};
    bool flat = param.is_non_overlapping_and_dense() && same_layout(param, grad);
    for (int j = 0; j < 3; ++j) {
      if (!used[j]) continue;
      check_state(real_view(lists[j][i]), device, state_dtype, names[j], i);
      state[j] = real_view(lists[j][i]);
      TORCH_CHECK(state[j].sizes() == param.sizes(), "lrfused: ", names[j], "[", i, "] has shape ",
                  lists[j][i].sizes(), " but params[", i, "] has shape ", params[i].sizes());
      flat = flat && same_layout(param, state[j]);
    }
    at::Tensor wp = param, wg = grad;
    if (!flat) {
      wp = staging.stage(param, true);
      wg = staging.stage(grad, unscale);  // the unscaled gradient is written back when grad_scale is given
      keep.push_back(wp);
      keep.push_back(wg);
      for (int j = 0; j < 3; ++j) {
        if (!used[j]) continue;
        state[j] = staging.stage(state[j], true);
        keep.push_back(state[j]);
      }
    }
    p[i] = wp.mutable_data_ptr();
    g[i] = wg.mutable_data_ptr();
    if (use_state1) s1[i] = state[0].mutable_data_ptr();
    if (use_state2) s2[i] = state[1].mutable_data_ptr();
    if (use_state3) s3[i] = state[2].mutable_data_ptr();
    st[i] = steps[i].mutable_data_ptr<float>();
    numels[i] = param.numel();
  }
  a.params = p.data();
  a.grads = g.data();
  a.state1 = use_state1 ? s1.data() : nullptr;
  a.state2 = use_state2 ? s2.data() : nullptr;
  a.state3 = use_state3 ? s3.data() : nullptr;
  a.steps = st.data();
  a.numels = numels.data();

  const cudaStream_t stream = c10::cuda::getCurrentCUDAStream(device.index()).stream();
  const char* err = gpu::launch_fused_step(a, stream);
  TORCH_CHECK(err == nullptr, "lrfused::fused_step_: CUDA launch failed: ", err);
  staging.write_back();
}

void advance_cuda(const at::Tensor& sched_state, const std::optional<at::Tensor>& found_inf) {
  check_sched_state(sched_state);
  const at::Device device = sched_state.device();
  const float* inf = optional_scalar(found_inf, device, "found_inf");
  const c10::cuda::CUDAGuard guard(device);
  const cudaStream_t stream = c10::cuda::getCurrentCUDAStream(device.index()).stream();
  const char* err = gpu::launch_advance(sched_state.mutable_data_ptr<double>(), inf, stream);
  TORCH_CHECK(err == nullptr, "lrfused::advance_: CUDA launch failed: ", err);
}

void plateau_report_cuda(const at::Tensor& sched_state, const at::Tensor& metric, at::ArrayRef<double> config,
                         int64_t num_groups) {
  check_sched_state(sched_state);
  const at::Device device = sched_state.device();
  TORCH_CHECK(num_groups >= 1 && num_groups <= gpu::kPlateauMaxGroups,
              "lrfused: plateau_report_ on CUDA supports 1 to ", gpu::kPlateauMaxGroups,
              " param groups, got num_groups=", num_groups);
  TORCH_CHECK(sched_state.numel() == SCHED_LAST_LR + kSchedSlotsPerGroup * num_groups, "lrfused: sched_state has ",
              sched_state.numel(), " elements, too few for num_groups=", num_groups);
  TORCH_CHECK(static_cast<int64_t>(config.size()) == gpu::kPlateauConfigFixed + num_groups,
              "lrfused: plateau config must have ", gpu::kPlateauConfigFixed, " + num_groups = ",
              gpu::kPlateauConfigFixed + num_groups, " entries, got ", config.size());
  TORCH_CHECK(metric.defined() && metric.numel() == 1, "lrfused: metric must be a 1-element tensor, got shape ",
              metric.defined() ? metric.sizes() : at::IntArrayRef{});
  const c10::cuda::CUDAGuard guard(device);
  // A device-side cast (no sync) when the metric is another float dtype; kept alive until the end of
  // this function, which is enough: the caching allocator reuses its memory in stream order.
  const at::Tensor m = metric.to(device, at::kDouble);
  const cudaStream_t stream = c10::cuda::getCurrentCUDAStream(device.index()).stream();
  const char* err = gpu::launch_plateau_report(sched_state.mutable_data_ptr<double>(), static_cast<int>(num_groups),
                                               m.const_data_ptr<double>(), config.data(),
                                               static_cast<int>(config.size()), stream);
  TORCH_CHECK(err == nullptr, "lrfused::plateau_report_: CUDA launch failed: ", err);
}

// Host evaluation of a schedule whose program or steps live on the GPU: the CPU kernel on copies
// (this synchronises; it is for logging and tests, not for the step).
at::Tensor schedule_lrs_cuda(const at::Tensor& program, const at::Tensor& steps, double base_lr) {
  return LRF_OP(schedule_lrs).call(program.cpu(), steps.cpu(), base_lr).to(steps.device());
}

at::Tensor schedule_momenta_cuda(const at::Tensor& program, const at::Tensor& steps, double fallback) {
  return LRF_OP(schedule_momenta).call(program.cpu(), steps.cpu(), fallback).to(steps.device());
}

}  // namespace

// Squared L2 norm of `grads` (one device, one dtype), divided by grad_scale^2 when given, as a 0-dim
// float64 tensor on their device; no sync. The CUDA implementation of lrfused::grad_sq_norm. Accepts what
// the CPU implementation accepts: complex gradients (their real views) and non-dense ones (a contiguous
// copy, read only).
at::Tensor grad_sq_norm_cuda(at::TensorList grads, const std::optional<at::Tensor>& grad_scale) {
  TORCH_CHECK(!grads.empty(), "lrfused: grad_sq_norm needs at least one tensor");
  const at::Device device = grads[0].device();
  TORCH_CHECK(device.is_cuda(), "lrfused: grad_sq_norm: grads[0] must be a CUDA tensor, got ", device);
  const at::ScalarType dtype = real_view(grads[0]).scalar_type();
  std::vector<at::Tensor> flat(grads.size());  // keeps the copies of non-dense gradients alive
  std::vector<const void*> ptrs(grads.size());
  std::vector<int64_t> numels(grads.size());
  for (size_t i = 0; i < grads.size(); ++i) {
    check_device(grads[i], device, "grads", i);
    TORCH_CHECK(!grads[i].is_sparse(), "lrfused: grads[", i, "] is sparse; lrfused does not support sparse gradients");
    const at::Tensor g = real_view(grads[i]);
    TORCH_CHECK(g.scalar_type() == dtype, "lrfused: grads[", i, "] is ", grads[i].scalar_type(),
                " but grads[0] is ", grads[0].scalar_type());
    flat[i] = g.is_non_overlapping_and_dense() ? g : g.contiguous();
    ptrs[i] = flat[i].const_data_ptr();
    numels[i] = flat[i].numel();
  }
  const float* scale = optional_scalar(grad_scale, device, "grad_scale");
  const gpu::DType kernel_dtype = to_gpu_dtype(dtype, "grads");
  const c10::cuda::CUDAGuard guard(device);
  const auto options = at::TensorOptions().device(device).dtype(at::kDouble);
  const int64_t n = static_cast<int64_t>(grads.size());
  const int64_t ws_len = gpu::grad_sq_norm_workspace_size(numels.data(), n);
  at::Tensor workspace = at::empty({ws_len}, options);
  at::Tensor out = at::empty({}, options);
  const cudaStream_t stream = c10::cuda::getCurrentCUDAStream(device.index()).stream();
  const char* err = gpu::launch_grad_sq_norm(ptrs.data(), numels.data(), n, kernel_dtype, scale,
                                             workspace.mutable_data_ptr<double>(), ws_len,
                                             out.mutable_data_ptr<double>(), stream);
  TORCH_CHECK(err == nullptr, "lrfused::grad_sq_norm: CUDA launch failed: ", err);
  return out;
}

TORCH_LIBRARY_IMPL(lrfused, CUDA, m) {
  LRF_IMPL(m, fused_step_, &fused_step_cuda);
  LRF_IMPL(m, advance_, &advance_cuda);
  LRF_IMPL(m, plateau_report_, &plateau_report_cuda);
  LRF_IMPL(m, grad_sq_norm, &grad_sq_norm_cuda);
  LRF_IMPL(m, schedule_lrs, &schedule_lrs_cuda);
  LRF_IMPL(m, schedule_momenta, &schedule_momenta_cuda);
}

}  // namespace lrfused

#endif  // LRFUSED_WITH_CUDA
