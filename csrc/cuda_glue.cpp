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
#include "contract.h"
#include "op_signatures.h"
#include "step_args.h"
#include "update_math.h"

namespace lrfused {
namespace {

// A 1-element device scalar as float32 (what the kernels read): the tensor itself, or a device-side cast
// kept alive in `keep` (no sync; the caching allocator reuses its memory in stream order).
const float* float_scalar(const std::optional<at::Tensor>& t, std::vector<at::Tensor>& keep) {
  if (!t.has_value()) return nullptr;
  if (t->scalar_type() == at::kFloat) return t->const_data_ptr<float>();
  keep.push_back(t->to(at::kFloat));
  return keep.back().const_data_ptr<float>();
}

void check_sched_state(const at::Tensor& sched_state) {
  TORCH_CHECK(sched_state.is_cuda(), "lrfused: sched_state must be a CUDA tensor");
  TORCH_CHECK(sched_state.scalar_type() == at::kDouble && sched_state.dim() == 1 && sched_state.is_contiguous(),
              "lrfused: sched_state must be a contiguous 1-D float64 tensor, got ", sched_state.scalar_type(),
              " with shape ", sched_state.sizes());
  TORCH_CHECK(sched_num_groups(sched_state.numel()) > 0, "lrfused: sched_state must have ",
              static_cast<int>(SCHED_HEADER), " + ", static_cast<int>(kSchedSlotsPerGroup), " * num_groups elements, got ",
              sched_state.numel());
}

// The CUDA backend of the step ops: a request checked by the shared layer (step_args.h) turned into
// pointer tables on the current stream.
void run_step_cuda(const StepRequest& r) {
  const GroupStep& g = r.group;
  const at::Device device = g.sched_state.device();
  TORCH_CHECK(device.is_cuda(), "lrfused: the CUDA step needs CUDA tensors, got sched_state on ", device);
  const size_t n = r.params.size();
  gpu::FusedStepLaunch a;
  a.optimizer = static_cast<int>(g.optimizer);
  a.flags = static_cast<int>(g.flags);
  a.group_index = static_cast<int>(g.group_index);
  a.num_groups = static_cast<int>(sched_num_groups(g.sched_state.numel()));
  for (int i = 0; i < HYPER_COUNT; ++i) a.hyper[i] = g.hyper[i];
  a.num_tensors = static_cast<int64_t>(n);
  a.sched_state = g.sched_state.mutable_data_ptr<double>();
  a.program = g.program.const_data_ptr<double>();
  a.param_dtype = kernel_dtype(r.param_type, "params");
  a.state_dtype = kernel_dtype(r.state_type, "state");

  const c10::cuda::CUDAGuard guard(device);  // staging copies below run on this device's current stream
  std::vector<at::Tensor> keep;              // casts and working copies, alive until the kernels are enqueued
  a.grad_scale = float_scalar(g.grad_scale, keep);
  a.found_inf = float_scalar(g.found_inf, keep);
  a.grad_factor = float_scalar(g.grad_factor, keep);
  Staging staging;
  std::vector<void*> p(n), gr(n), s[3];
  for (int j = 0; j < 3; ++j) s[j].resize(r.state[j].empty() ? 0 : n);
  std::vector<float*> st(n);
  std::vector<int64_t> numels(n);
  for (size_t i = 0; i < n; ++i) {
    const FlatParam f = flat_param(r, i, staging);
    p[i] = f.param.mutable_data_ptr();
    gr[i] = f.grad.mutable_data_ptr();
    for (int j = 0; j < 3; ++j)
      if (!s[j].empty()) s[j][i] = f.state[j].mutable_data_ptr();
    st[i] = r.steps[i].mutable_data_ptr<float>();
    numels[i] = f.param.numel();
  }
  a.params = p.data();
  a.grads = gr.data();
  a.state1 = s[0].empty() ? nullptr : s[0].data();
  a.state2 = s[1].empty() ? nullptr : s[1].data();
  a.state3 = s[2].empty() ? nullptr : s[2].data();
  a.steps = st.data();
  a.numels = numels.data();

  const cudaStream_t stream = c10::cuda::getCurrentCUDAStream(device.index()).stream();
  const char* err = gpu::launch_fused_step(a, stream);
  TORCH_CHECK(err == nullptr, "lrfused: fused step: CUDA launch failed: ", err);
  staging.write_back();
}

// Optional 1-element float32 device scalar (found_inf of advance_, grad_scale of grad_sq_norm).
const float* optional_scalar(const std::optional<at::Tensor>& t, const at::Device& device, const char* what) {
  if (!t.has_value() || !t->defined()) return nullptr;
  const at::Tensor& x = *t;
  TORCH_CHECK(x.device() == device, "lrfused: ", what, " is on ", x.device(), " but sched_state is on ", device);
  TORCH_CHECK(x.scalar_type() == at::kFloat && x.numel() == 1, "lrfused: ", what,
              " must be a 1-element float32 tensor, got ", x.scalar_type(), " with shape ", x.sizes());
  return x.const_data_ptr<float>();
}

void check_device(const at::Tensor& t, const at::Device& device, const char* what, size_t i) {
  TORCH_CHECK(t.defined(), "lrfused: ", what, "[", i, "] is undefined");
  TORCH_CHECK(t.device() == device, "lrfused: ", what, "[", i, "] is on ", t.device(), " but ", what,
              "[0] is on ", device, " (one device per call)");
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
  TORCH_CHECK(num_groups >= 1 && num_groups <= plateau::kMaxGroupsCuda,
              "lrfused: plateau_report_ on CUDA supports 1 to ", plateau::kMaxGroupsCuda,
              " param groups, got num_groups=", num_groups);
  TORCH_CHECK(sched_state.numel() == sched_size(num_groups), "lrfused: sched_state has ",
              sched_state.numel(), " elements, too few for num_groups=", num_groups);
  TORCH_CHECK(static_cast<int64_t>(config.size()) == plateau::kFixed + num_groups,
              "lrfused: plateau config must have ", plateau::kFixed, " + num_groups = ",
              plateau::kFixed + num_groups, " entries, got ", config.size());
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
  const DType grad_dtype = kernel_dtype(dtype, "grads");
  const c10::cuda::CUDAGuard guard(device);
  const auto options = at::TensorOptions().device(device).dtype(at::kDouble);
  const int64_t n = static_cast<int64_t>(grads.size());
  const int64_t ws_len = gpu::grad_sq_norm_workspace_size(numels.data(), n);
  at::Tensor workspace = at::empty({ws_len}, options);
  at::Tensor out = at::empty({}, options);
  const cudaStream_t stream = c10::cuda::getCurrentCUDAStream(device.index()).stream();
  const char* err = gpu::launch_grad_sq_norm(ptrs.data(), numels.data(), n, grad_dtype, scale,
                                             workspace.mutable_data_ptr<double>(), ws_len,
                                             out.mutable_data_ptr<double>(), stream);
  TORCH_CHECK(err == nullptr, "lrfused::grad_sq_norm: CUDA launch failed: ", err);
  return out;
}

TORCH_LIBRARY_IMPL(lrfused, CUDA, m) {
  LRF_IMPL(m, fused_sgd_, &fused_sgd_kernel<&run_step_cuda>);
  LRF_IMPL(m, fused_adam_, &fused_adam_kernel<&run_step_cuda>);
  LRF_IMPL(m, advance_, &advance_cuda);
  LRF_IMPL(m, plateau_report_, &plateau_report_cuda);
  LRF_IMPL(m, grad_sq_norm, &grad_sq_norm_cuda);
  LRF_IMPL(m, schedule_lrs, &schedule_lrs_cuda);
  LRF_IMPL(m, schedule_momenta, &schedule_momenta_cuda);
}

}  // namespace lrfused

#endif  // LRFUSED_WITH_CUDA
