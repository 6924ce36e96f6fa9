// Adam instances of the fused step kernel: no weight decay or L2 (coupled) weight decay, amsgrad or
// not. Decoupled weight decay (AdamW) is in adamw.cu, so the two halves compile in parallel.
#include "cuda/fused_step.cuh"

namespace lrfused {
namespace gpu {

const char* launch_adam_update(const FusedStepLaunch& a, cudaStream_t stream) {
  const bool amsgrad = (a.flags & FLAG_AMSGRAD) != 0;
  // A weight decay schedule may decay from a base of 0 (an absolute schedule): the decay kernels then.
  if (a.hyper[HYPER_WEIGHT_DECAY] != 0.0 || a.weight_decay_scheduled) {
    if (a.flags & FLAG_DECOUPLED_WD) return launch_adamw_update(a, stream);
    if (amsgrad) return dispatch_tables<AdamPolicy<true, math::WD_COUPLED>>(a, stream);
    return dispatch_tables<AdamPolicy<false, math::WD_COUPLED>>(a, stream);
  }
  if (amsgrad) return dispatch_tables<AdamPolicy<true, math::WD_NONE>>(a, stream);
  return dispatch_tables<AdamPolicy<false, math::WD_NONE>>(a, stream);
}

}  // namespace gpu
}  // namespace lrfused
