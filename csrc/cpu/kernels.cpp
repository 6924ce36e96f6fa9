// CPU kernels: one OpenMP parallel region per group over the flat element range of all its tensors
// (small tensors share a thread's range instead of paying per-tensor overhead), with the inner loops
// compiled for AVX-512, AVX2 and a baseline, chosen once at run time from the CPU's features.
#include "cpu/kernels.h"

#include <omp.h>

#include <algorithm>
#include <cstring>
#include <stdexcept>
#include <type_traits>
#include <vector>

#include "quant8.h"
#include "update_math.h"

namespace lrfused {
namespace cpu {
namespace {

// Storage types. bf16 and fp16 are converted to fp32 for the math and rounded back to nearest-even,
// bit-compatible with c10::BFloat16 / c10::Half.
using bf16_t = uint16_t;
using half_t = _Float16;

template <typename T> struct Compute { using type = float; };
template <> struct Compute<double> { using type = double; };
template <typename T> using compute_t = typename Compute<T>::type;

LRF_HD float to_compute(float x) { return x; }
LRF_HD double to_compute(double x) { return x; }
LRF_HD float to_compute(half_t x) { return static_cast<float>(x); }
LRF_HD float to_compute(bf16_t x) {
  const uint32_t u = static_cast<uint32_t>(x) << 16;
  float f;
  std::memcpy(&f, &u, sizeof(f));
  return f;
}

template <typename T> LRF_HD T from_compute(float x);
template <typename T> LRF_HD T from_compute(double x);
template <> LRF_HD float from_compute<float>(float x) { return x; }
template <> LRF_HD double from_compute<double>(double x) { return x; }
template <> LRF_HD half_t from_compute<half_t>(float x) { return static_cast<half_t>(x); }
template <> LRF_HD bf16_t from_compute<bf16_t>(float x) {
  uint32_t u;
  std::memcpy(&u, &x, sizeof(u));
  const uint32_t rounded = (u + 0x7FFFu + ((u >> 16) & 1u)) >> 16;
  return static_cast<bf16_t>(x != x ? 0x7FC0u : rounded);
}

template <typename C>
struct SegmentArgs {
  C grad_scale;  // GradScaler's scale: gradients are divided by it (math::unscale) and stored back
  C factor;     // clipping factor, negated for maximize
  bool stochastic;   // bf16 stores round stochastically (FLAG_STOCHASTIC_ROUNDING)
  uint64_t sr_seed;
};

// The stream of stochastic-rounding bits of one buffer of a tensor this step (its step counter has
// been incremented already: the count after this step, as the CUDA kernel computes it).
inline uint64_t sr_key_of(const TensorRef& ref, uint64_t seed, int buffer) {
  return math::sr_key(seed, ref.sr_stream, static_cast<uint32_t>(*ref.step), buffer);
}

LRF_HD uint32_t float_bits(float x) {
  uint32_t u;
  std::memcpy(&u, &x, sizeof(u));
  return u;
}

// Per-thread scratch reused across steps so that a step allocates nothing after the first.
struct Scratch {
  std::vector<int64_t> offsets;
  std::vector<int32_t> scalar_index;
  std::vector<double> distinct_t;
  std::vector<uint8_t> first_step;
  std::vector<double> partials;
};
Scratch& scratch() {
  static thread_local Scratch s;
  return s;
}

template <typename C>
std::vector<math::AdamScalars<C>>& adam_scalars_scratch() {
  static thread_local std::vector<math::AdamScalars<C>> s;
  return s;
}

// Each thread takes an equal share of the flat element range; below this many elements per thread
// the fork/join costs more than it saves.
constexpr int64_t kMinElementsPerThread = 1 << 15;

template <typename Segment>
void parallel_over_elements(const std::vector<int64_t>& offsets, int64_t num_tensors, Segment&& segment) {
  const int64_t total = offsets[num_tensors];
  const int max_threads = omp_get_max_threads();
  const int threads = static_cast<int>(std::max<int64_t>(1, std::min<int64_t>(max_threads, total / kMinElementsPerThread)));
#pragma omp parallel num_threads(threads) if (threads > 1)
  {
    const int tid = omp_get_thread_num();
    const int nth = omp_get_num_threads();
    // Boundaries on 64-element multiples keep threads off each other's cache lines.
    auto bound = [&](int i) { return i == nth ? total : (total / nth * i) & ~int64_t(63); };
    int64_t pos = bound(tid);
    const int64_t stop = bound(tid + 1);
    int64_t t = std::upper_bound(offsets.begin(), offsets.begin() + num_tensors + 1, pos) - offsets.begin() - 1;
    while (pos < stop && t < num_tensors) {
      const int64_t seg_end = std::min(stop, offsets[t + 1]);
      if (seg_end > pos) segment(t, pos - offsets[t], seg_end - offsets[t]);
      pos = std::max(pos, seg_end);
      ++t;
    }
  }
}


// Small tensors are separate allocations that the hardware prefetcher never gets going on: while one
// is updated, pull the buffers of the one kPrefetchAhead further into cache (whole tensors up to
// kPrefetchBytes per buffer; larger ones stream fine on their own).
constexpr int64_t kPrefetchAhead = 8;
constexpr int64_t kStepPrefetchAhead = 16;
constexpr int64_t kPrefetchBytes = 4096;

inline void prefetch_buffer(const void* ptr, int64_t bytes) {
  if (ptr == nullptr || bytes > kPrefetchBytes) return;
  const char* c = static_cast<const char*>(ptr);
  for (int64_t off = 0; off < bytes; off += 64) __builtin_prefetch(c + off, 1, 3);
}

inline void prefetch_tensor(const TensorRef* tensors, int64_t num_tensors, int64_t t, int64_t param_bytes,
                            int64_t state_bytes) {
  if (t >= num_tensors) return;
  const TensorRef& r = tensors[t];
  prefetch_buffer(r.param, r.numel * param_bytes);
  prefetch_buffer(r.grad, r.numel * param_bytes);
  prefetch_buffer(r.s1, r.numel * state_bytes);
  prefetch_buffer(r.s2, r.numel * state_bytes);
  prefetch_buffer(r.s3, r.numel * state_bytes);
  prefetch_buffer(r.master, r.numel * static_cast<int64_t>(sizeof(float)));
}

template <typename C>
using AdamSegmentFn = void (*)(const TensorRef&, int64_t, int64_t, const math::AdamScalars<C>&,
                               const SegmentArgs<C>&, bool);
template <typename C>
using SgdSegmentFn = void (*)(const TensorRef&, int64_t, int64_t, const math::SgdScalars<C>&,
                              const SegmentArgs<C>&, bool, bool, bool);

// The segment kernels of one (param, state) dtype pair for one instruction set.
template <typename C>
struct SegmentTable {
  AdamSegmentFn<C> adam[2][2][3];  // [amsgrad][grad_scale][WeightDecayMode]
  SgdSegmentFn<C> sgd[2][2];       // [momentum][grad_scale]
};

template <typename T, typename S>
void run_group_impl(const TensorRef* tensors, int64_t num_tensors, const StepConfig& cfg,
                    const SegmentTable<compute_t<T>>& table) {
  using C = compute_t<T>;
  Scratch& sc = scratch();
  sc.offsets.resize(num_tensors + 1);
  sc.offsets[0] = 0;
  for (int64_t i = 0; i < num_tensors; ++i) sc.offsets[i + 1] = sc.offsets[i] + tensors[i].numel;

  const bool maximize = cfg.flags & FLAG_MAXIMIZE;
  SegmentArgs<C> gp;
  gp.grad_scale = static_cast<C>(cfg.grad_scale);
  gp.factor = static_cast<C>(maximize ? -cfg.grad_factor : cfg.grad_factor);
  gp.stochastic = (cfg.flags & FLAG_STOCHASTIC_ROUNDING) != 0;
  gp.sr_seed = cfg.sr_seed;
  const bool scaled = cfg.has_grad_scale;

  if (cfg.optimizer == OPT_ADAM) {
    // Bias corrections depend on each parameter's own step count (torch's per-parameter `step`);
    // parameters that share a count share one set of scalars.
    sc.scalar_index.resize(num_tensors);
    sc.distinct_t.clear();
    for (int64_t i = 0; i < num_tensors; ++i) {
      // Each step counter is its own small allocation: one cache miss per tensor unless fetched ahead.
      if (i + kStepPrefetchAhead < num_tensors) __builtin_prefetch(tensors[i + kStepPrefetchAhead].step, 1, 3);
      const float t = *tensors[i].step + 1.0f;
      *tensors[i].step = t;
      if (sc.distinct_t.empty() || sc.distinct_t.back() != t) {
        auto it = std::find(sc.distinct_t.begin(), sc.distinct_t.end(), static_cast<double>(t));
        if (it == sc.distinct_t.end()) {
          sc.distinct_t.push_back(t);
          it = sc.distinct_t.end() - 1;
        }
        sc.scalar_index[i] = static_cast<int32_t>(it - sc.distinct_t.begin());
      } else {
        sc.scalar_index[i] = static_cast<int32_t>(sc.distinct_t.size() - 1);
      }
    }
    const bool decoupled = cfg.flags & FLAG_DECOUPLED_WD;
    const int wd_mode = cfg.weight_decay == 0.0 ? math::WD_NONE : (decoupled ? math::WD_DECOUPLED : math::WD_COUPLED);
    const bool near_lerp = math::adam_near_lerp(cfg.momentum);
    // A reference, so that the worker threads below see the calling thread's vector.
    std::vector<math::AdamScalars<C>>& scalars = adam_scalars_scratch<C>();
    scalars.clear();
    for (double t : sc.distinct_t) {
      scalars.push_back(math::make_adam_scalars<C>(cfg.lr, cfg.momentum, cfg.dampening_beta2, cfg.eps,
                                                   cfg.weight_decay, decoupled, t));
    }
    const bool amsgrad = cfg.flags & FLAG_AMSGRAD;
    const AdamSegmentFn<C> fn = table.adam[amsgrad][scaled][wd_mode];
    parallel_over_elements(sc.offsets, num_tensors, [&](int64_t t, int64_t b, int64_t e) {
      prefetch_tensor(tensors, num_tensors, t + kPrefetchAhead, sizeof(T), sizeof(S));
      fn(tensors[t], b, e, scalars[sc.scalar_index[t]], gp, near_lerp);
    });
  } else {
    sc.first_step.resize(num_tensors);
    for (int64_t i = 0; i < num_tensors; ++i) {
      if (i + kStepPrefetchAhead < num_tensors) __builtin_prefetch(tensors[i + kStepPrefetchAhead].step, 1, 3);
      sc.first_step[i] = *tensors[i].step == 0.0f;
      *tensors[i].step += 1.0f;
    }
    const auto s = math::make_sgd_scalars<C>(cfg.lr, cfg.momentum, cfg.dampening_beta2, cfg.weight_decay);
    const bool has_momentum = cfg.momentum != 0.0;
    const bool has_wd = cfg.weight_decay != 0.0;
    const bool nesterov = cfg.flags & FLAG_NESTEROV;
    const SgdSegmentFn<C> fn = table.sgd[has_momentum][scaled];
    parallel_over_elements(sc.offsets, num_tensors, [&](int64_t t, int64_t b, int64_t e) {
      prefetch_tensor(tensors, num_tensors, t + kPrefetchAhead, sizeof(T), sizeof(S));
      fn(tensors[t], b, e, s, gp, has_wd, nesterov, sc.first_step[t] != 0);
    });
  }
}

using SumSquaresFn = double (*)(const void*, int64_t, int64_t, double);

// Partial sums over fixed blocks of each tensor (kSumBlock elements from the tensor's start), added in
// block order: blocks do not depend on how the threads split the work, so neither do the bits.
constexpr int64_t kSumBlock = 1 << 14;

template <typename T>
double sum_squares_over(const TensorRef* tensors, int64_t num_tensors, double inv_scale, SumSquaresFn segment_fn) {
  Scratch& sc = scratch();
  std::vector<int64_t>& first_block = sc.offsets;  // first block of each tensor
  first_block.resize(num_tensors + 1);
  first_block[0] = 0;
  int64_t elements = 0;
  for (int64_t i = 0; i < num_tensors; ++i) {
    first_block[i + 1] = first_block[i] + (tensors[i].numel + kSumBlock - 1) / kSumBlock;
    elements += tensors[i].numel;
  }
  const int64_t blocks = first_block[num_tensors];
  sc.partials.assign(blocks, 0.0);
  double* partials = sc.partials.data();
  const int threads = static_cast<int>(
      std::max<int64_t>(1, std::min<int64_t>(omp_get_max_threads(), elements / kMinElementsPerThread)));
#pragma omp parallel for num_threads(threads) schedule(static) if (threads > 1)
  for (int64_t b = 0; b < blocks; ++b) {
    const int64_t t =
        std::upper_bound(first_block.begin(), first_block.begin() + num_tensors + 1, b) - first_block.begin() - 1;
    const int64_t begin = (b - first_block[t]) * kSumBlock;
    const int64_t end = std::min(begin + kSumBlock, tensors[t].numel);
    partials[b] = segment_fn(tensors[t].grad, begin, end, inv_scale);
  }
  double total = 0.0;
  for (int64_t b = 0; b < blocks; ++b) total += partials[b];
  return total;
}

}  // namespace

#pragma GCC push_options
#pragma GCC target("avx512f,avx512bw,avx512vl,avx512dq,avx2,fma,f16c,bmi2")
namespace isa_avx512 {
#include "cpu/kernel_body.inc"
}  // namespace isa_avx512
#pragma GCC pop_options

#pragma GCC push_options
#pragma GCC target("avx2,fma,f16c,bmi2")
namespace isa_avx2 {
#include "cpu/kernel_body.inc"
}  // namespace isa_avx2
#pragma GCC pop_options

namespace isa_baseline {
#include "cpu/kernel_body.inc"
}  // namespace isa_baseline

namespace {
enum class Isa { Baseline, Avx2, Avx512 };

Isa detect_isa() {
  __builtin_cpu_init();
  if (__builtin_cpu_supports("avx512f") && __builtin_cpu_supports("avx512bw") &&
      __builtin_cpu_supports("avx512vl") && __builtin_cpu_supports("avx512dq")) {
    return Isa::Avx512;
  }
  if (__builtin_cpu_supports("avx2") && __builtin_cpu_supports("fma") && __builtin_cpu_supports("f16c")) {
    return Isa::Avx2;
  }
  return Isa::Baseline;
}

Isa isa() {
  static const Isa chosen = detect_isa();
  return chosen;
}
}  // namespace

void fused_step(const TensorRef* tensors, int64_t num_tensors, DType param_dtype, DType state_dtype,
                const StepConfig& config) {
  switch (isa()) {
    case Isa::Avx512: return isa_avx512::dispatch(tensors, num_tensors, param_dtype, state_dtype, config);
    case Isa::Avx2: return isa_avx2::dispatch(tensors, num_tensors, param_dtype, state_dtype, config);
    case Isa::Baseline: return isa_baseline::dispatch(tensors, num_tensors, param_dtype, state_dtype, config);
  }
}

double grad_sum_of_squares(const TensorRef* tensors, int64_t num_tensors, DType grad_dtype, double inv_scale) {
  switch (isa()) {
    case Isa::Avx512: return isa_avx512::grad_sum_of_squares(tensors, num_tensors, grad_dtype, inv_scale);
    case Isa::Avx2: return isa_avx2::grad_sum_of_squares(tensors, num_tensors, grad_dtype, inv_scale);
    default: return isa_baseline::grad_sum_of_squares(tensors, num_tensors, grad_dtype, inv_scale);
  }
}

const char* simd_level() {
  switch (isa()) {
    case Isa::Avx512: return "avx512";
    case Isa::Avx2: return "avx2";
    default: return "baseline";
  }
}

}  // namespace cpu
}  // namespace lrfused
