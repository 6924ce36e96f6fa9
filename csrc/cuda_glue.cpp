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

// The device a CUDA op runs on: sched_state's (the dispatcher picks this backend when any argument is a
// CUDA tensor, so sched_state itself is checked here).
at::Device cuda_device_of(const at::Tensor& sched_state) {
  TORCH_CHECK(sched_state.is_cuda(), "lrfused: sched_state must be a CUDA tensor with CUDA arguments, got ",
              sched_state.device());
  return sched_state.device();
}

// The CUDA backend of the step ops: a request checked by the shared layer (step_args.h) turned into
// pointer tables on the current stream.
void run_step_cuda(const StepRequest& r) {
  const GroupStep& g = r.group;
  const at::Device device = cuda_device_of(g.sched_state);
  const size_t n = r.params.size();
  gpu::FusedStepLaunch a;
  a.optimizer = static_cast<int>(g.optimizer);
  a.flags = static_cast<int>(g.flags);
  a.group_index = static_cast<int>(g.group_index);
  a.num_groups = static_cast<int>(sched_num_groups(g.sched_state.numel()));
  for (int i = 0; i < HYPER_COUNT; ++i) a.hyper[i] = g.hyper[i];
  a.weight_decay_scheduled = g.weight_decay_scheduled;
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
  std::vector<float*> masters(r.masters.empty() ? 0 : n);
  std::vector<float*> absmax[2];
  for (int j = 0; j < 2; ++j) absmax[j].resize(r.absmax[j].empty() ? 0 : n);
  std::vector<int64_t> numels(n);
  for (size_t i = 0; i < n; ++i) {
    const FlatParam f = flat_param(r, i, staging);
    if (!masters.empty()) masters[i] = f.master.mutable_data_ptr<float>();
    for (int j = 0; j < 2; ++j)
      if (!absmax[j].empty()) absmax[j][i] = f.absmax[j].mutable_data_ptr<float>();
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
  a.masters = masters.empty() ? nullptr : masters.data();
  a.sr_streams = r.sr_streams.empty() ? nullptr : r.sr_streams.data();
  a.sr_seed = g.sr_seed;
  a.absmax1 = absmax[0].empty() ? nullptr : absmax[0].data();
  a.absmax2 = absmax[1].empty() ? nullptr : absmax[1].data();

  const cudaStream_t stream = c10::cuda::getCurrentCUDAStream(device.index()).stream();
  const char* err = gpu::launch_fused_step(a, stream);
  TORCH_CHECK(err == nullptr, "lrfused: fused step: CUDA launch failed: ", err);
  staging.write_back();
}

void advance_cuda(const at::Tensor& sched_state, const std::optional<at::Tensor>& found_inf) {
  const at::Device device = cuda_device_of(sched_state);
  check_sched_state(sched_state);
  check_scalar_arg(found_inf, device, "found_inf");
  const c10::cuda::CUDAGuard guard(device);
  std::vector<at::Tensor> keep;
  const float* inf = float_scalar(found_inf, keep);
  const cudaStream_t stream = c10::cuda::getCurrentCUDAStream(device.index()).stream();
  const char* err = gpu::launch_advance(sched_state.mutable_data_ptr<double>(), inf, stream);
  TORCH_CHECK(err == nullptr, "lrfused::advance_: CUDA launch failed: ", err);
}

void plateau_report_cuda(const at::Tensor& sched_state, const at::Tensor& metric, at::ArrayRef<double> config,
                         int64_t num_groups) {
  const at::Device device = cuda_device_of(sched_state);
  check_plateau_report(sched_state, metric, config, num_groups);
  TORCH_CHECK(num_groups <= plateau::kMaxGroupsCuda, "lrfused: plateau_report_ on CUDA supports up to ",
              static_cast<int>(plateau::kMaxGroupsCuda), " param groups (the config is a kernel argument), got ",
              num_groups);
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

void greedy_report_cuda(const at::Tensor& sched_state, const at::Tensor& greedy_state, const at::Tensor& metric,
                        at::ArrayRef<double> config, int64_t num_groups) {
  const at::Device device = cuda_device_of(sched_state);
  check_greedy_report(sched_state, greedy_state, metric, config, num_groups);
  TORCH_CHECK(num_groups <= plateau::kMaxGroupsCuda, "lrfused: greedy_report_ on CUDA supports up to ",
              static_cast<int>(plateau::kMaxGroupsCuda), " param groups (the config is a kernel argument), got ",
              num_groups);
  const c10::cuda::CUDAGuard guard(device);
  const at::Tensor m = metric.to(device, at::kDouble);  // as in plateau_report_cuda
  const cudaStream_t stream = c10::cuda::getCurrentCUDAStream(device.index()).stream();
  const char* err = gpu::launch_greedy_report(sched_state.mutable_data_ptr<double>(),
                                              greedy_state.mutable_data_ptr<double>(), static_cast<int>(num_groups),
                                              m.const_data_ptr<double>(), config.data(),
                                              static_cast<int>(config.size()), stream);
  TORCH_CHECK(err == nullptr, "lrfused::greedy_report_: CUDA launch failed: ", err);
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
  const c10::cuda::CUDAGuard guard(device);
  const std::vector<at::Tensor> flat = flat_grads(grads);  // holds the copies of non-dense gradients
  check_scalar_arg(grad_scale, device, "grad_scale");
  std::vector<const void*> ptrs(flat.size());
  std::vector<int64_t> numels(flat.size());
  for (size_t i = 0; i < flat.size(); ++i) {
    ptrs[i] = flat[i].const_data_ptr();
    numels[i] = flat[i].numel();
  }
  std::vector<at::Tensor> keep;
  const float* scale = float_scalar(grad_scale, keep);
  const DType grad_dtype = kernel_dtype(flat[0].scalar_type(), "grads");
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
  LRF_IMPL(m, greedy_report_, &greedy_report_cuda);
  LRF_IMPL(m, grad_sq_norm, &grad_sq_norm_cuda);
  LRF_IMPL(m, schedule_lrs, &schedule_lrs_cuda);
  LRF_IMPL(m, schedule_momenta, &schedule_momenta_cuda);
}

}  // namespace lrfused

#endif  // LRFUSED_WITH_CUDA
