// The fused optimizer-step kernel, shared by sgd.cu, adam.cu and adamw.cu (so the families compile in
// parallel). The schedule is evaluated once per launch by the one-thread schedule kernel (step_kernels.cu),
// which leaves the step's lr, momentum and other (scheduled or not) hyperparameters in sched_state. Per block: thread 0 reads them and found_inf,
// computes the tensor's step-dependent scalars once, in double (update_math.h make_*_scalars), and
// publishes them through shared memory; every thread then streams its share of one 65536-element chunk
// through math::sgd_update / math::adam_update.
#pragma once
#include "cuda/multi_tensor_apply.cuh"
#include "quant8.h"
#include "update_math.h"

namespace lrfused {
namespace gpu {

// Scalars that are the same for every block of a launch.
struct StepHeader {
  double hyper[HYPER_COUNT];
  const double* sched_state;  // the step's lr, momentum and hyperparameters, written by the schedule kernel
  const float* grad_scale;
  const float* found_inf;
  const float* grad_factor;
  int group_index;
  int num_groups;
  int flags;
  int has_state1;  // SGD: momentum buffers were given
  uint64_t sr_seed;
};

// EXTRAS: the launch has master copies, rounds stochastically or has 8-bit state; its table then carries
// a master column (fptr[1]), the 8-bit states' absmax columns (fptr[2], fptr[3]) and each tensor's
// stochastic-rounding stream (u64[0]). Instantiated for the 16-bit and 8-bit dtype pairs only, so other
// launches keep the larger table and the plain kernel.
template <int NPTR, bool LARGE, bool EXTRAS>
struct StepArgs {
  using Table = TensorTable<NPTR, EXTRAS ? 4 : 1, ParamLimit<LARGE>::bytes - static_cast<int>(sizeof(StepHeader)) - 64,
                            MaxBlocks<LARGE>::value, EXTRAS ? 1 : 0>;
  StepHeader h;
  Table t;  // ptr[0] params, ptr[1] grads, ptr[2..] states; fptr[0] step counters, fptr[1] masters, fptr[2..3] absmax
};

// The 8-bit dynamic maps (quant8.h), one copy per translation unit; the kernel stages them in shared memory
// (codes index them divergently, which constant memory serializes).
static __constant__ quant8::DynamicMaps kDeviceMaps = quant8::detail::make_maps();

// Policies: NSTATE state columns, per-block scalars, and the element update (always update_math.h).
template <bool NESTEROV>
struct SgdPolicy {
  static constexpr int kStates = 1;
  template <typename C>
  struct Block {
    math::SgdScalars<C> s;
    bool has_wd;
    bool has_momentum;
    bool first_step;
  };
  template <typename C>
  __device__ static Block<C> make(const StepHeader& h, double lr, double momentum, float step) {
    Block<C> b;
    const double wd = h.hyper[HYPER_WEIGHT_DECAY];
    b.s = math::make_sgd_scalars<C>(lr, momentum, h.hyper[HYPER_DAMPENING_BETA2], wd);
    b.has_wd = wd != 0.0;
    b.has_momentum = momentum != 0.0 && h.has_state1 != 0;
    b.first_step = step == 0.0f;
    return b;
  }
  template <typename C>
  __device__ __forceinline__ static void apply(const Block<C>& b, C& p, C g, C (&st)[kStates]) {
    math::sgd_update<C, NESTEROV>(p, g, st[0], b.s, b.has_wd, b.has_momentum, b.first_step);
  }
  // Whether this step changes the state (a cycled momentum of 0 leaves the buffer, as on the CPU).
  template <typename C>
  __device__ __forceinline__ static bool updates_state(const Block<C>& b) { return b.has_momentum; }
};

// WD: math::WeightDecayMode (none / L2 coupled / decoupled), a template parameter as in the CPU kernels.
template <bool AMSGRAD, int WD>
struct AdamPolicy {
  static constexpr int kStates = AMSGRAD ? 3 : 2;
  template <typename C>
  struct Block {
    math::AdamScalars<C> s;
    bool near_lerp;
  };
  template <typename C>
  __device__ static Block<C> make(const StepHeader& h, double lr, double beta1, float step) {
    Block<C> b;
    b.s = math::make_adam_scalars<C>(lr, beta1, h.hyper[HYPER_DAMPENING_BETA2], h.hyper[HYPER_EPS],
                                     h.hyper[HYPER_WEIGHT_DECAY], WD == math::WD_DECOUPLED,
                                     static_cast<double>(step) + 1.0);
    b.near_lerp = math::adam_near_lerp(beta1);
    return b;
  }
  template <typename C>
  __device__ __forceinline__ static void apply(const Block<C>& b, C& p, C g, C (&st)[kStates]) {
    C unused = C(0);
    C& max_sq = AMSGRAD ? st[kStates - 1] : unused;
    math::adam_update<C, AMSGRAD, WD>(p, g, st[0], st[1], max_sq, b.s, b.near_lerp);
  }
  template <typename C>
  __device__ __forceinline__ static bool updates_state(const Block<C>&) { return true; }
};

template <class Pol, typename T, typename S, bool LARGE, bool EXTRAS>
__global__ void __launch_bounds__(kBlockThreads)
fused_step_kernel(const StepArgs<2 + Pol::kStates, LARGE, EXTRAS> args) {
  using C = typename ComputeOf<T>::type;
  using Block = typename Pol::template Block<C>;
  constexpr int K = Pol::kStates;
  constexpr int ILP = Ilp<T>::value;

  __shared__ Block s_block;
  __shared__ C s_grad_scale;
  __shared__ C s_factor;
  __shared__ int s_skip;
  __shared__ uint64_t s_key[1 + K];  // stochastic-rounding streams: the parameter's, then each state's

  const StepHeader& h = args.h;
  const int slot = args.t.block_slot[blockIdx.x];
  const int64_t chunk = args.t.block_chunk[blockIdx.x];
  const bool stochastic = EXTRAS && (h.flags & FLAG_STOCHASTIC_ROUNDING) != 0;

  if (threadIdx.x == 0) {
    const bool skip = h.found_inf != nullptr && *h.found_inf != 0.0f;
    s_skip = skip;
    if (!skip) {
      const double lr = h.sched_state[sched_slot(REGION_LAST_LR, h.num_groups, h.group_index)];
      const double momentum = h.sched_state[SCHED_SCHEDULED_MOMENTUM];
      StepHeader scheduled = h;  // the launch's hyperparameters, as the schedule kernel left them
      for (int i = kFirstScheduledHyper; i < HYPER_COUNT; ++i) scheduled.hyper[i] = h.sched_state[scheduled_hyper_slot(i)];
      s_block = Pol::template make<C>(scheduled, lr, momentum, *args.t.fptr[0][slot]);
      s_grad_scale = h.grad_scale != nullptr ? static_cast<C>(*h.grad_scale) : C(1);
      s_factor = h.grad_factor != nullptr ? static_cast<C>(*h.grad_factor) : C(1);
      if (stochastic) {
        // the parameter's count after this step, as the CPU kernel has it when it draws
        const uint32_t step = static_cast<uint32_t>(*args.t.fptr[0][slot] + 1.0f);
        for (int j = 0; j <= K; ++j) s_key[j] = math::sr_key(h.sr_seed, args.t.u64[0][slot], step, math::SR_PARAM + j);
      }
    }
  }
  __syncthreads();
  if (s_skip) return;

  const Block b = s_block;
  const C grad_scale = s_grad_scale;
  const C factor = s_factor;
  const bool unscale = h.grad_scale != nullptr;
  const bool has_factor = h.grad_factor != nullptr;
  const bool maximize = (h.flags & FLAG_MAXIMIZE) != 0;

  const int64_t start = chunk * kChunkSize;
  const int64_t remaining = args.t.numel[slot] - start;
  const int len = static_cast<int>(remaining < kChunkSize ? remaining : kChunkSize);

  T* p = static_cast<T*>(args.t.ptr[0][slot]) + start;
  T* g = static_cast<T*>(args.t.ptr[1][slot]) + start;
  // A 16-bit parameter's fp32 master: the update reads and writes it; the parameter stores its rounding.
  float* master = nullptr;
  if constexpr (EXTRAS) master = args.t.fptr[1][slot] != nullptr ? args.t.fptr[1][slot] + start : nullptr;
  uint64_t key[1 + K];
#pragma unroll
  for (int j = 0; j <= K; ++j) key[j] = stochastic ? s_key[j] : 0;
  S* st[K];
  bool has_st[K];
  bool aligned = aligned16(p) && aligned16(g) && (master == nullptr || aligned16(master));

#pragma unroll
  for (int j = 0; j < K; ++j) {
    S* base = static_cast<S*>(args.t.ptr[2 + j][slot]);
    has_st[j] = base != nullptr;
    st[j] = has_st[j] ? base + start : nullptr;
    aligned = aligned && aligned16(st[j]);
  }

  // g: raw gradient in, unscaled gradient out (stored back when grad_scale is given, as torch's fused
  // optimizers do); the update sees it clipped and, for maximize, negated.
  auto update = [&](C& pc, C& gc, C (&sc)[K]) {
    if (unscale) gc = math::unscale(gc, grad_scale);
    C ge = gc;
    if (has_factor) ge = ge * factor;
    if (maximize) ge = -ge;
    Pol::apply(b, pc, ge, sc);
  };

  if constexpr (std::is_same<S, uint8_t>::value) {
    // 8-bit state: a warp per quantization block of 256 elements (chunks start on block boundaries):
    // dequantize, update, reduce the block's new absmax across the warp, requantize.
    static_assert(kChunkSize % quant8::kQuantBlock == 0, "chunks hold whole quantization blocks");
    constexpr int kPer = quant8::kQuantBlock / 32;
    constexpr int kWarps = kBlockThreads / 32;
    __shared__ float s_map[2][256];
    for (int i = threadIdx.x; i < 512; i += blockDim.x) s_map[i / 256][i % 256] = kDeviceMaps.map[i / 256][i % 256];
    __syncthreads();
    const int warp = static_cast<int>(threadIdx.x) / 32, lane = static_cast<int>(threadIdx.x) % 32;
    float* absmax[2] = {args.t.fptr[2][slot], args.t.fptr[3][slot]};
    uint8_t* codes[K];
#pragma unroll
    for (int j = 0; j < K; ++j) codes[j] = reinterpret_cast<uint8_t*>(st[j]);
    for (int base = warp * quant8::kQuantBlock; base < len; base += kWarps * quant8::kQuantBlock) {
      const int64_t block = (start + base) / quant8::kQuantBlock;
      float scale[K], running[K];
#pragma unroll
      for (int j = 0; j < K; ++j) {
        scale[j] = has_st[j] ? absmax[j][block] : 0.0f;
        running[j] = 0.0f;
      }
      C values[K][kPer];
#pragma unroll
      for (int e = 0; e < kPer; ++e) {
        const int i = base + lane + 32 * e;
        if (i >= len) continue;
        C pc = master != nullptr ? static_cast<C>(master[i]) : to_compute(p[i]);
        C gc = to_compute(g[i]);
        C sc[K];
#pragma unroll
        for (int j = 0; j < K; ++j) sc[j] = has_st[j] ? quant8::dequantize(s_map[j == 0 ? 0 : 1], codes[j][i], scale[j]) : C(0);
        update(pc, gc, sc);
        if (master != nullptr) master[i] = static_cast<float>(pc);
        p[i] = store_value<T>(pc, stochastic && master == nullptr, key[0], start + i);
        if (unscale) g[i] = Store<T>::from(gc);
#pragma unroll
        for (int j = 0; j < K; ++j) {
          values[j][e] = sc[j];
          running[j] = quant8::block_absmax_step(running[j], sc[j]);
        }
      }
      const bool requantize = Pol::updates_state(b);  // else the codes and scales stay as they are
#pragma unroll
      for (int j = 0; j < K; ++j) {
        if (!has_st[j] || !requantize) continue;
        for (int offset = 16; offset > 0; offset /= 2)
          running[j] = quant8::block_absmax_step(running[j], __shfl_xor_sync(0xFFFFFFFFu, running[j], offset));
        const float a = quant8::finish_absmax(running[j]);
        if (lane == 0) absmax[j][block] = a;
#pragma unroll
        for (int e = 0; e < kPer; ++e) {
          const int i = base + lane + 32 * e;
          if (i < len) codes[j][i] = quant8::quantize(s_map[j == 0 ? 0 : 1], values[j][e] / a);
        }
      }
    }
    return;
  } else {
  int done = 0;
  if (aligned) {
    const int len_vec = len - len % ILP;
    for (int i = threadIdx.x * ILP; i < len_vec; i += blockDim.x * ILP) {
      T pv[ILP];
      T gv[ILP];
      S sv[K][ILP];
      float mv[EXTRAS ? ILP : 1];
      load_vec(pv, p + i);
      load_vec(gv, g + i);
      if constexpr (EXTRAS) {
        if (master != nullptr) load_vec(mv, master + i);
      }
#pragma unroll
      for (int j = 0; j < K; ++j)
        if (has_st[j]) load_vec(sv[j], st[j] + i);
#pragma unroll
      for (int e = 0; e < ILP; ++e) {
        C pc = to_compute(pv[e]);
        if constexpr (EXTRAS) {
          if (master != nullptr) pc = mv[e];
        }
        C gc = to_compute(gv[e]);
        C sc[K];
#pragma unroll
        for (int j = 0; j < K; ++j) sc[j] = has_st[j] ? to_compute(sv[j][e]) : C(0);
        update(pc, gc, sc);
        const int64_t index = start + i + e;  // in the tensor: the counter of the random bits
        if constexpr (EXTRAS) {
          if (master != nullptr) mv[e] = pc;
        }
        pv[e] = store_value<T>(pc, stochastic && master == nullptr, key[0], index);
        gv[e] = Store<T>::from(gc);
#pragma unroll
        for (int j = 0; j < K; ++j) sv[j][e] = store_value<S>(sc[j], stochastic, key[1 + j], index);
      }
      store_vec(p + i, pv);
      if constexpr (EXTRAS) {
        if (master != nullptr) store_vec(master + i, mv);
      }
      if (unscale) store_vec(g + i, gv);
#pragma unroll
      for (int j = 0; j < K; ++j)
        if (has_st[j]) store_vec(st[j] + i, sv[j]);
    }
    done = len_vec;
  }
  for (int i = done + static_cast<int>(threadIdx.x); i < len; i += blockDim.x) {
    C pc = master != nullptr ? static_cast<C>(master[i]) : to_compute(p[i]);
    C gc = to_compute(g[i]);
    C sc[K];
#pragma unroll
    for (int j = 0; j < K; ++j) sc[j] = has_st[j] ? to_compute(st[j][i]) : C(0);
    update(pc, gc, sc);
    const int64_t index = start + i;
    if (master != nullptr) master[i] = static_cast<float>(pc);
    p[i] = store_value<T>(pc, stochastic && master == nullptr, key[0], index);
    if (unscale) g[i] = Store<T>::from(gc);
#pragma unroll
    for (int j = 0; j < K; ++j)
      if (has_st[j]) st[j][i] = store_value<S>(sc[j], stochastic, key[1 + j], index);
  }
  }  // not 8-bit
}

// Fills the argument tables batch by batch (plan_chunks.h) and launches the update kernel for each.
template <class Pol, typename T, typename S, bool LARGE, bool EXTRAS>
const char* launch_update_batches(const FusedStepLaunch& a, cudaStream_t stream) {
  constexpr int NPTR = 2 + Pol::kStates;
  using Args = StepArgs<NPTR, LARGE, EXTRAS>;
  static_assert(sizeof(Args) <= ParamLimit<LARGE>::bytes, "kernel arguments exceed the parameter limit");

  struct Sink {
    const FusedStepLaunch& a;
    cudaStream_t stream;
    Args args;
    const char* error = nullptr;

    void add_tensor(int slot, int64_t i) {
      void* const* columns[NPTR];
      columns[0] = a.params;
      columns[1] = a.grads;
      void* const* states[3] = {a.state1, a.state2, a.state3};
      for (int j = 0; j < NPTR - 2; ++j) columns[2 + j] = states[j];
      for (int j = 0; j < NPTR; ++j) args.t.ptr[j][slot] = columns[j] != nullptr ? columns[j][i] : nullptr;
      args.t.fptr[0][slot] = a.steps[i];
      if constexpr (EXTRAS) {
        args.t.fptr[1][slot] = a.masters != nullptr ? a.masters[i] : nullptr;
        args.t.fptr[2][slot] = a.absmax1 != nullptr ? a.absmax1[i] : nullptr;
        args.t.fptr[3][slot] = a.absmax2 != nullptr ? a.absmax2[i] : nullptr;
        args.t.u64[0][slot] = a.sr_streams != nullptr ? static_cast<uint64_t>(a.sr_streams[i]) : 0;
      }
      args.t.numel[slot] = a.numels[i];
    }
    void add_block(int block, int slot, int64_t chunk) {
      args.t.block_slot[block] = static_cast<uint16_t>(slot);
      args.t.block_chunk[block] = static_cast<int32_t>(chunk);
    }
    bool launch(int, int num_blocks) {
      error = launch_kernel(&fused_step_kernel<Pol, T, S, LARGE, EXTRAS>, num_blocks, kBlockThreads, stream, args);
      return error == nullptr;
    }
  };

  Sink sink{a, stream, Args{}, nullptr};
  StepHeader& h = sink.args.h;
  for (int i = 0; i < HYPER_COUNT; ++i) h.hyper[i] = a.hyper[i];
  h.sched_state = a.sched_state;
  h.grad_scale = a.grad_scale;
  h.found_inf = a.found_inf;
  h.grad_factor = a.grad_factor;
  h.group_index = a.group_index;
  h.num_groups = a.num_groups;
  h.flags = a.flags;
  h.has_state1 = a.state1 != nullptr;
  h.sr_seed = a.sr_seed;
  plan_chunks(a.numels, a.num_tensors, kChunkSize, Args::Table::kMaxTensors, Args::Table::kMaxBlocks, sink);
  return sink.error;
}

// A 16-bit dtype pair: the plain kernel, or the one with master copies / stochastic rounding (EXTRAS).
template <class Pol, typename T, typename S, bool LARGE>
const char* launch_16bit(const FusedStepLaunch& a, cudaStream_t stream) {
  constexpr bool kRoundsBf16 = std::is_same<T, __nv_bfloat16>::value || std::is_same<S, __nv_bfloat16>::value;
  const bool stochastic = kRoundsBf16 && (a.flags & FLAG_STOCHASTIC_ROUNDING) != 0;
  if (a.masters != nullptr || stochastic) return launch_update_batches<Pol, T, S, LARGE, true>(a, stream);
  return launch_update_batches<Pol, T, S, LARGE, false>(a, stream);
}

// (param dtype, state dtype) -> template instance, for one policy. Master copies are for 16-bit
// parameters (the glue checks it); stochastic rounding changes only bf16 stores.
template <class Pol, bool LARGE>
const char* dispatch_dtypes(const FusedStepLaunch& a, cudaStream_t stream) {
  using F = DType;
  const F p = a.param_dtype;
  const F s = a.state_dtype;
  if (a.masters != nullptr && p != F::F16 && p != F::BF16) return "lrfused: master weights need 16-bit parameters";
  if (p == F::F32 && s == F::F32) return launch_update_batches<Pol, float, float, LARGE, false>(a, stream);
  if (p == F::F32 && s == F::BF16) return launch_16bit<Pol, float, __nv_bfloat16, LARGE>(a, stream);
  if (p == F::F16 && s == F::F16) return launch_16bit<Pol, __half, __half, LARGE>(a, stream);
  if (p == F::F16 && s == F::F32) return launch_16bit<Pol, __half, float, LARGE>(a, stream);
  if (p == F::BF16 && s == F::BF16) return launch_16bit<Pol, __nv_bfloat16, __nv_bfloat16, LARGE>(a, stream);
  if (p == F::BF16 && s == F::F32) return launch_16bit<Pol, __nv_bfloat16, float, LARGE>(a, stream);
  if (p == F::F64 && s == F::F64) return launch_update_batches<Pol, double, double, LARGE, false>(a, stream);
  if (s == F::Q8) {
    if constexpr (Pol::kStates <= 2) {  // amsgrad's third state is refused with 8-bit state (the glue checks)
      if (p == F::F32) return launch_update_batches<Pol, float, uint8_t, LARGE, true>(a, stream);
      if (p == F::BF16) return launch_update_batches<Pol, __nv_bfloat16, uint8_t, LARGE, true>(a, stream);
      if (p == F::F16) return launch_update_batches<Pol, __half, uint8_t, LARGE, true>(a, stream);
    } else {
      return "lrfused: 8-bit state does not support amsgrad";
    }
  }
  return "lrfused: unsupported (param dtype, state dtype) combination";
}

template <class Pol>
const char* dispatch_tables(const FusedStepLaunch& a, cudaStream_t stream) {
#if LRF_LARGE_KERNEL_PARAMS
  if (use_large_kernel_params()) return dispatch_dtypes<Pol, true>(a, stream);
#endif
  return dispatch_dtypes<Pol, false>(a, stream);
}

// Defined in sgd.cu, adam.cu (no / L2 weight decay) and adamw.cu (decoupled weight decay).
const char* launch_sgd_update(const FusedStepLaunch& a, cudaStream_t stream);
const char* launch_adam_update(const FusedStepLaunch& a, cudaStream_t stream);
const char* launch_adamw_update(const FusedStepLaunch& a, cudaStream_t stream);

}  // namespace gpu
}  // namespace lrfused
