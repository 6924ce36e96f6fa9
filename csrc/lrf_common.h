// Portability macros shared by every csrc header that compiles for host and device.
#pragma once
#include <cstdint>

#if defined(__CUDACC__) || defined(__HIPCC__)
#define LRF_HD __host__ __device__ __forceinline__
#else
#define LRF_HD inline __attribute__((always_inline))
#endif

namespace lrfused {

// Layout of the per-device float64 `sched_state` tensor (length SCHED_LAST_LR + kSchedSlotsPerGroup * G for
// G param groups). Python reads these numbers from the extension (lrfused._C.sched_layout()).
enum SchedSlot : int {
  SCHED_STEP = 0,            // k: number of applied (not skipped) steps
  SCHED_PLATEAU_BEST = 1,    // ReduceLROnPlateau: best metric so far (+-inf before the first report)
  SCHED_PLATEAU_BAD = 2,     // num_bad_epochs
  SCHED_PLATEAU_COOLDOWN = 3,// cooldown_counter
  SCHED_PLATEAU_EPOCH = 4,   // number of metrics reported
  SCHED_SCHEDULED_MOMENTUM = 5,  // CUDA: scheduled momentum|beta1 of the group being launched (scratch)
  SCHED_LAST_LR = 8,         // [8, 8 + G): lr applied by the latest step, per group
  // [8 + G, 8 + 2G): ReduceLROnPlateau's current lr per group (initialised to the group's base lr)
  // [8 + 2G, 8 + 3G): the lr the next step applies, per group (what param_groups[g]["lr"] shows)
  // [8 + 3G, 8 + 4G): the momentum|beta1 the next step applies (what a momentum-cycling group shows)
};
constexpr int kSchedSlotsPerGroup = 4;

LRF_HD int sched_plateau_lr_slot(int num_groups, int group) { return SCHED_LAST_LR + num_groups + group; }
LRF_HD int sched_next_lr_slot(int num_groups, int group) { return SCHED_LAST_LR + 2 * num_groups + group; }
LRF_HD int sched_next_momentum_slot(int num_groups, int group) { return SCHED_LAST_LR + 3 * num_groups + group; }
// Number of groups of a sched_state of `numel` slots, or -1 when numel is not a valid size.
LRF_HD int64_t sched_num_groups(int64_t numel) {
  const int64_t per_group = numel - SCHED_LAST_LR;
  return per_group >= kSchedSlotsPerGroup && per_group % kSchedSlotsPerGroup == 0 ? per_group / kSchedSlotsPerGroup
                                                                                  : -1;
}

}  // namespace lrfused
