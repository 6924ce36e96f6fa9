// The C++ function type of every lrfused op (schemas in lrfused.cpp), written once.
//
// Each backend registers its kernels with LRF_IMPL and every C++ caller reaches an op through LRF_OP, both
// of which name the type from here. A CPU and a CUDA kernel that disagree (say `at::Tensor&` against
// `const at::Tensor&`) are then a compile error; left to the dispatcher, the mismatch aborts the process
// at import ("Mismatch in kernel C++ signatures"), which only a CUDA build that is loaded would show.
#pragma once
#include <ATen/ATen.h>
#include <ATen/core/dispatch/Dispatcher.h>

#include <optional>

namespace lrfused {
namespace op_sig {

using fused_sgd_ = void(at::TensorList params, at::TensorList grads, at::TensorList momentum_buffers,
                        at::TensorList steps, const at::Tensor& sched_state, const at::Tensor& program,
                        int64_t group_index, double base_lr, double momentum, double dampening, double weight_decay,
                        bool nesterov, bool maximize, const std::optional<at::Tensor>& grad_scale,
                        const std::optional<at::Tensor>& found_inf, const std::optional<at::Tensor>& grad_factor,
                        at::TensorList master_params, bool stochastic_rounding, int64_t sr_seed,
                        at::IntArrayRef sr_streams, at::TensorList momentum_buffer_absmax);
using fused_adam_ = void(at::TensorList params, at::TensorList grads, at::TensorList exp_avgs,
                         at::TensorList exp_avg_sqs, at::TensorList max_exp_avg_sqs, at::TensorList steps,
                         const at::Tensor& sched_state, const at::Tensor& program, int64_t group_index,
                         double base_lr, double beta1, double beta2, double eps, double weight_decay, bool amsgrad,
                         bool maximize, bool decoupled_weight_decay, const std::optional<at::Tensor>& grad_scale,
                         const std::optional<at::Tensor>& found_inf, const std::optional<at::Tensor>& grad_factor,
                         at::TensorList master_params, bool stochastic_rounding, int64_t sr_seed,
                         at::IntArrayRef sr_streams, at::TensorList exp_avg_absmax, at::TensorList exp_avg_sq_absmax);
using advance_ = void(const at::Tensor& sched_state, const std::optional<at::Tensor>& found_inf);
using plateau_report_ = void(const at::Tensor& sched_state, const at::Tensor& metric, at::ArrayRef<double> config,
                             int64_t num_groups);
using greedy_report_ = void(const at::Tensor& sched_state, const at::Tensor& greedy_state, const at::Tensor& metric,
                            at::ArrayRef<double> config, int64_t num_groups);
using grad_sq_norm = at::Tensor(at::TensorList grads, const std::optional<at::Tensor>& grad_scale);
using schedule_lrs = at::Tensor(const at::Tensor& program, const at::Tensor& steps, double base_lr);
using schedule_momenta = at::Tensor(const at::Tensor& program, const at::Tensor& steps, double fallback);

}  // namespace op_sig
}  // namespace lrfused

// m.impl with the kernel converted to its op's declared type: a kernel of another type does not compile.
#define LRF_IMPL(library, name, fn) (library).impl(#name, static_cast<::lrfused::op_sig::name*>(fn))

// The typed handle of lrfused::<name>, looked up once.
#define LRF_OP(name)                                                                                     \
  ([]() -> const c10::TypedOperatorHandle<::lrfused::op_sig::name>& {                                   \
    static const auto handle =                                                                           \
        c10::Dispatcher::singleton().findSchemaOrThrow("lrfused::" #name, "").typed<::lrfused::op_sig::name>(); \
    return handle;                                                                                       \
  }())
