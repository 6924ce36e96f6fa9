// Torch-free interface of the CPU kernels (compiled without torch headers: fast to build, and the same
// per-element math as the CUDA kernels through update_math.h).
#pragma once
#include <cstdint>

#include "contract.h"

namespace lrfused {
namespace cpu {

using ::lrfused::DType;  // the contract's (contract.h)

// One parameter's buffers. s1: exp_avg | momentum buffer, s2: exp_avg_sq, s3: max_exp_avg_sq (may be
// null when unused). step: the parameter's float32 step counter, read and incremented by the kernel.
// master: the fp32 master copy of a 16-bit parameter, or null: the update reads and writes it and stores
// the parameter as its rounding. sr_stream: the parameter's stream of stochastic-rounding bits.
struct TensorRef {
  void* param;
  void* grad;
  void* s1;
  void* s2;
  void* s3;
  float* step;
  int64_t numel;
  float* master;
  uint64_t sr_stream;
  float* s1_absmax;  // 8-bit state (Q8): the float32 absmax of each block of s1 / s2, else null
  float* s2_absmax;
};

struct StepConfig {
  int optimizer;           // OptimizerKind
  int flags;               // OptFlags
  double lr;               // scheduled lr for this step
  double momentum;         // SGD momentum or Adam beta1, scheduled
  double dampening_beta2;  // SGD dampening or Adam beta2
  double eps;
  double weight_decay;
  bool has_grad_scale;     // grads are divided by grad_scale and the unscaled grads stored back
  float grad_scale;        // GradScaler's scale (when has_grad_scale)
  double grad_factor;      // clipping factor applied after unscaling (1 = none)
  uint64_t sr_seed;        // with FLAG_STOCHASTIC_ROUNDING: the seed of math::sr_key
};

// Updates every tensor of one group (one dtype) in a single parallel region over the flat element range.
void fused_step(const TensorRef* tensors, int64_t num_tensors, DType param_dtype, DType state_dtype,
                const StepConfig& config);

// Sum of squares of every gradient in `tensors` (their grad pointers), each element multiplied by
// inv_scale first, accumulated in double over fixed blocks in a fixed order (the same bits for any
// thread count). For fused clipping.
double grad_sum_of_squares(const TensorRef* tensors, int64_t num_tensors, DType grad_dtype, double inv_scale);

// Name of the instruction set the kernels dispatch to on this CPU ("avx512", "avx2" or "baseline").
const char* simd_level();

}  // namespace cpu
}  // namespace lrfused
