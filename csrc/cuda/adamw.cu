// AdamW instances of the fused step kernel (decoupled weight decay: p *= 1 - lr_k * weight_decay).
#include "cuda/fused_step.cuh"

namespace lrfused {
namespace gpu {

const char* launch_adamw_update(const FusedStepLaunch& a, cudaStream_t stream) {
  if (a.flags & FLAG_AMSGRAD) return dispatch_tables<AdamPolicy<true, math::WD_DECOUPLED>>(a, stream);
  return dispatch_tables<AdamPolicy<false, math::WD_DECOUPLED>>(a, stream);
}

}  // namespace gpu
}  // namespace lrfused
