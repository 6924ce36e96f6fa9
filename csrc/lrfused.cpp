// Op schemas of the lrfused library and the Python module stub that loads them.
//
// Every tensor an op mutates is marked (a!) so that torch.compile, functionalization and opcheck see
// the data flow. CPU and CUDA implementations register separately (TORCH_LIBRARY_IMPL in optim_cpu.cpp,
// schedule_ops.cpp and cuda_glue.cpp); fake implementations live in lrfused/_ops.py.
#include <torch/library.h>
#include <torch/extension.h>

#include "plan.h"

TORCH_LIBRARY(lrfused, m) {
  // One fused optimizer step for the parameters of one param group that share a device and dtype, per
  // family (named like ATen's _fused_sgd_ / _fused_adam_). Reads k = sched_state[SCHED_STEP], evaluates the
  // group's packed schedule `program` at k from base_lr (and momentum / beta1 when the schedule does not
  // cycle it), records the applied lr and the next step's lr and momentum in the group's sched_state slots,
  // and updates params and state in one pass. Does not advance k: advance_ does that once per device after
  // every group has been updated. steps: per-parameter 0-dim float32 step counters (torch's `step` state).
  // grad_factor: optional 1-element tensor every gradient is multiplied by (clipping). grads are mutated
  // only when grad_scale is given: the unscaled gradient is stored back, as torch's fused optimizers do.
  // master_params: empty, or one float32 master copy per (bfloat16/float16) parameter: the update reads and
  // writes the master and stores the parameter as its rounding. stochastic_rounding: bfloat16 stores (of
  // parameters without a master, and of bfloat16 state) round stochastically with bits drawn from
  // (sr_seed, sr_streams[i], the parameter's step count, element index): see update_math.h.
  // 8-bit state (optim_bits=8): the state lists hold uint8 codes and *_absmax one float32 scale per block of
  // quant8::kQuantBlock elements (csrc/quant8.h); empty lists otherwise.
  // Arguments are checked once for every backend (step_args.h).
  m.def(
      "fused_sgd_(Tensor(a!)[] params, Tensor(b!)[] grads, Tensor(c!)[] momentum_buffers, Tensor(d!)[] steps, "
      "Tensor(e!) sched_state, Tensor program, int group_index, *, float base_lr, float momentum, "
      "float dampening, float weight_decay, bool nesterov, bool maximize, Tensor? grad_scale=None, "
      "Tensor? found_inf=None, Tensor? grad_factor=None, Tensor(f!)[] master_params, "
      "bool stochastic_rounding=False, int sr_seed=0, int[] sr_streams=[], Tensor(g!)[] momentum_buffer_absmax) -> ()");
  m.def(
      "fused_adam_(Tensor(a!)[] params, Tensor(b!)[] grads, Tensor(c!)[] exp_avgs, Tensor(d!)[] exp_avg_sqs, "
      "Tensor(e!)[] max_exp_avg_sqs, Tensor(f!)[] steps, Tensor(g!) sched_state, Tensor program, int group_index, "
      "*, float base_lr, float beta1, float beta2, float eps, float weight_decay, bool amsgrad, bool maximize, "
      "bool decoupled_weight_decay, Tensor? grad_scale=None, Tensor? found_inf=None, "
      "Tensor? grad_factor=None, Tensor(h!)[] master_params, bool stochastic_rounding=False, int sr_seed=0, "
      "int[] sr_streams=[], Tensor(i!)[] exp_avg_absmax, Tensor(j!)[] exp_avg_sq_absmax) -> ()");
  // k += 1 unless found_inf is set (a skipped step advances neither the schedule nor bias correction).
  m.def("advance_(Tensor(a!) sched_state, Tensor? found_inf) -> ()");
  // ReduceLROnPlateau: feed one metric (0-dim tensor on sched_state's device) to the state machine.
  //   config: the plateau::Config fields (contract.h), then min_lr_0 .. min_lr_{num_groups-1}
  m.def("plateau_report_(Tensor(a!) sched_state, Tensor metric, float[] config, int num_groups) -> ()");
  // HuggingFace's GreedyLR: the same, with the rest of its state in greedy_state (float64, on the same device).
  //   config: the greedy::Config fields (contract.h), then min_lrs, max_lrs and initial lrs (num_groups each)
  m.def(
      "greedy_report_(Tensor(a!) sched_state, Tensor(b!) greedy_state, Tensor metric, float[] config, "
      "int num_groups) -> ()");
  // Fused clipping: sum of squares of the (unscaled, when grad_scale is given) gradients of one
  // device and dtype, as a 0-dim float64 tensor on their device (accumulated in float64 on every device).
  m.def("grad_sq_norm(Tensor[] grads, Tensor? grad_scale) -> Tensor");
  // Host-side schedule evaluation through the same C++ as the kernels (float64 results).
  m.def("schedule_lrs(Tensor program, Tensor steps, float base_lr) -> Tensor");
  m.def("schedule_momenta(Tensor program, Tensor steps, float fallback) -> Tensor");
}

PYBIND11_MODULE(TORCH_EXTENSION_NAME, module) {
  lrfused::bind_plan(module);
  lrfused::bind_contract(module);
}
