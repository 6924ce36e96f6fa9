// Op schemas of the lrfused library and the Python module stub that loads them.
//
// Every tensor an op mutates is marked (a!) so that torch.compile, functionalization and opcheck see
// the data flow. CPU and CUDA implementations register separately (TORCH_LIBRARY_IMPL in optim_cpu.cpp,
// schedule_ops.cpp and cuda_glue.cpp); fake implementations live in lrfused/_ops.py.
#include <torch/library.h>
#include <torch/extension.h>

#include "plan.h"

TORCH_LIBRARY(lrfused, m) {
  // One fused optimizer step for the parameters of one param group that share a device and dtype.
  // Reads k = sched_state[0], evaluates the group's packed schedule `program` at k, writes the applied
  // lr to sched_state[SCHED_LAST_LR + group_index] and updates params/state in one pass. Does not
  // advance k: advance_ does that once per device after every group has been updated.
  //   optimizer: 0 = SGD, 1 = Adam/AdamW.  flags: bit set of lrfused::OptFlags (update_math.h).
  //   hyper: [base_lr, momentum|beta1, dampening|beta2, eps, weight_decay]
  //   state1: SGD momentum buffers | Adam exp_avg; state2: exp_avg_sq; state3: max_exp_avg_sq;
  //   steps: per-parameter 0-dim float32 step counters (torch's `step` state).
  //   grad_factor: optional 1-element float32 tensor every gradient is multiplied by (clipping).
  //   grads are mutated only when grad_scale is given: the unscaled gradient is stored back, as torch's
  //   fused optimizers do.
  m.def(
      "fused_step_(Tensor(a!)[] params, Tensor(g!)[] grads, Tensor(b!)[] state1, Tensor(c!)[] state2, "
      "Tensor(d!)[] state3, Tensor(e!)[] steps, Tensor(f!) sched_state, Tensor program, "
      "int group_index, int optimizer, int flags, float[] hyper, Tensor? grad_scale, "
      "Tensor? found_inf, Tensor? grad_factor) -> ()");
  // k += 1 unless found_inf is set (a skipped step advances neither the schedule nor bias correction).
  m.def("advance_(Tensor(a!) sched_state, Tensor? found_inf) -> ()");
  // ReduceLROnPlateau: feed one metric (0-dim tensor on sched_state's device) to the state machine.
  //   config: [mode_is_max, factor, patience, threshold, threshold_is_abs, cooldown, eps,
  //            min_lr_0 .. min_lr_{num_groups-1}]
  m.def("plateau_report_(Tensor(a!) sched_state, Tensor metric, float[] config, int num_groups) -> ()");
  // Fused clipping: sum of squares of the (unscaled, when grad_scale is given) gradients of one
  // device and dtype, as a 0-dim float64 tensor on their device (accumulated in float64 on every device).
  m.def("grad_sq_norm(Tensor[] grads, Tensor? grad_scale) -> Tensor");
  // Host-side schedule evaluation through the same C++ as the kernels (float64 results).
  m.def("schedule_lrs(Tensor program, Tensor steps, float base_lr) -> Tensor");
  m.def("schedule_momenta(Tensor program, Tensor steps, float fallback) -> Tensor");
}

PYBIND11_MODULE(TORCH_EXTENSION_NAME, module) {
  lrfused::bind_plan(module);
}
