// Adam / AdamW (amsgrad, coupled or decoupled weight decay, maximize) instances of the fused step kernel.
#include "cuda/fused_step.cuh"

namespace lrfused {
namespace gpu {

const char* launch_adam_update(const FusedStepLaunch& a, cudaStream_t stream) {
  if (a.flags & FLAG_AMSGRAD) return dispatch_tables<AdamPolicy<true>>(a, stream);
  return dispatch_tables<AdamPolicy<false>>(a, stream);
}

}  // namespace gpu
}  // namespace lrfused
