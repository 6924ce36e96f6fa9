// SGD (momentum, dampening, nesterov, weight decay, maximize) instances of the fused step kernel.
#include "cuda/fused_step.cuh"

namespace lrfused {
namespace gpu {

const char* launch_sgd_update(const FusedStepLaunch& a, cudaStream_t stream) {
  if (a.flags & FLAG_NESTEROV) return dispatch_tables<SgdPolicy<true>>(a, stream);
  return dispatch_tables<SgdPolicy<false>>(a, stream);
}

}  // namespace gpu
}  // namespace lrfused
