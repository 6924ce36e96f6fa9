// Multi-tensor squared L2 norm, for fused gradient clipping. One block per 65536-element chunk writes
// its partial sum to a workspace slot; one final block adds the partials in a fixed order, so the result
// does not depend on block scheduling (no atomics). Squares are accumulated in double for every dtype, as
// the CPU kernel does: a float32 sum would overflow past 3.4e38 (an fp64 model's, or large fp32 gradients)
// and turn the clip factor into 0, a silent zero update.
#include "cuda/multi_tensor_apply.cuh"

namespace lrfused {
namespace gpu {

namespace {

template <bool LARGE>
struct NormArgs {
  struct Header {
    double* partials;  // this batch's first slot
  };
  using Table = TensorTable<1, 0, ParamLimit<LARGE>::bytes - static_cast<int>(sizeof(Header)) - 64,
                            MaxBlocks<LARGE>::value>;
  Header h;
  Table t;
};

template <typename A, int THREADS>
__device__ __forceinline__ A block_sum(A v) {
  __shared__ A warp_sums[THREADS / 32];
#pragma unroll
  for (int o = 16; o > 0; o >>= 1) v += __shfl_down_sync(0xffffffffu, v, o);
  const int lane = threadIdx.x % 32;
  const int warp = threadIdx.x / 32;
  if (lane == 0) warp_sums[warp] = v;
  __syncthreads();
  v = threadIdx.x < THREADS / 32 ? warp_sums[threadIdx.x] : A(0);
  if (warp == 0) {
#pragma unroll
    for (int o = 16; o > 0; o >>= 1) v += __shfl_down_sync(0xffffffffu, v, o);
  }
  return v;  // valid in thread 0
}

template <typename T, bool LARGE>
__global__ void __launch_bounds__(kBlockThreads) sq_norm_kernel(const NormArgs<LARGE> args) {
  using A = double;
  constexpr int ILP = Ilp<T>::value;
  const int slot = args.t.block_slot[blockIdx.x];
  const int64_t start = static_cast<int64_t>(args.t.block_chunk[blockIdx.x]) * kChunkSize;
  const int64_t remaining = args.t.numel[slot] - start;
  const int len = static_cast<int>(remaining < kChunkSize ? remaining : kChunkSize);
  const T* g = static_cast<const T*>(args.t.ptr[0][slot]) + start;
  A acc = A(0);
  int done = 0;
  if (aligned16(g)) {
    const int len_vec = len - len % ILP;
    for (int i = threadIdx.x * ILP; i < len_vec; i += blockDim.x * ILP) {
      T v[ILP];
      load_vec(v, g + i);
#pragma unroll
      for (int e = 0; e < ILP; ++e) {
        const A x = static_cast<A>(to_compute(v[e]));
        acc += x * x;
      }
    }
    done = len_vec;
  }
  for (int i = done + static_cast<int>(threadIdx.x); i < len; i += blockDim.x) {
    const A x = static_cast<A>(to_compute(g[i]));
    acc += x * x;
  }
  acc = block_sum<A, kBlockThreads>(acc);
  if (threadIdx.x == 0) args.h.partials[blockIdx.x] = acc;
}

constexpr int kReduceThreads = 1024;

__global__ void __launch_bounds__(kReduceThreads)
reduce_partials_kernel(const double* partials, int64_t count, const float* grad_scale, double* out) {
  double acc = 0.0;
  for (int64_t i = threadIdx.x; i < count; i += kReduceThreads) acc += partials[i];
  acc = block_sum<double, kReduceThreads>(acc);
  if (threadIdx.x == 0) {
    if (grad_scale != nullptr) {
      const double inv = 1.0 / static_cast<double>(*grad_scale);
      acc = acc * inv * inv;
    }
    *out = acc;
  }
}

template <typename T, bool LARGE>
const char* launch_sq_norm_batches(const void* const* grads, const int64_t* numels, int64_t n,
                                   double* workspace, cudaStream_t stream) {
  using Args = NormArgs<LARGE>;
  static_assert(sizeof(Args) <= ParamLimit<LARGE>::bytes, "kernel arguments exceed the parameter limit");
  struct Sink {
    const void* const* grads;
    const int64_t* numels;
    cudaStream_t stream;
    double* next_partial;
    Args args;
    const char* error = nullptr;
    void add_tensor(int slot, int64_t i) {
      args.t.ptr[0][slot] = const_cast<void*>(grads[i]);
      args.t.numel[slot] = numels[i];
    }
    void add_block(int block, int slot, int64_t chunk) {
      args.t.block_slot[block] = static_cast<uint16_t>(slot);
      args.t.block_chunk[block] = static_cast<int32_t>(chunk);
    }
    bool launch(int, int num_blocks) {
      args.h.partials = next_partial;
      error = launch_kernel(&sq_norm_kernel<T, LARGE>, num_blocks, kBlockThreads, stream, args);
      next_partial += num_blocks;
      return error == nullptr;
    }
  };
  Sink sink{grads, numels, stream, workspace, Args{}, nullptr};
  plan_chunks(numels, n, kChunkSize, Args::Table::kMaxTensors, Args::Table::kMaxBlocks, sink);
  return sink.error;
}

template <bool LARGE>
const char* dispatch_norm(const void* const* grads, const int64_t* numels, int64_t n, DType dtype,
                          double* workspace, cudaStream_t stream) {
  switch (dtype) {
    case DType::F32: return launch_sq_norm_batches<float, LARGE>(grads, numels, n, workspace, stream);
    case DType::F16: return launch_sq_norm_batches<__half, LARGE>(grads, numels, n, workspace, stream);
    case DType::BF16:
      return launch_sq_norm_batches<__nv_bfloat16, LARGE>(grads, numels, n, workspace, stream);
    case DType::F64: return launch_sq_norm_batches<double, LARGE>(grads, numels, n, workspace, stream);
  }
  return "lrfused: unsupported gradient dtype";
}

}  // namespace

int64_t grad_sq_norm_workspace_size(const int64_t* numels, int64_t num_tensors) {
  const int64_t chunks = count_chunks(numels, num_tensors, kChunkSize);
  return chunks > 0 ? chunks : 1;
}

const char* launch_grad_sq_norm(const void* const* grads, const int64_t* numels, int64_t num_tensors,
                                DType dtype, const float* grad_scale, double* workspace,
                                int64_t workspace_len, double* out, cudaStream_t stream) {
  const int64_t chunks = count_chunks(numels, num_tensors, kChunkSize);
  if (workspace_len < chunks) return "lrfused: grad norm workspace too small";
  const char* err = nullptr;
#if LRF_LARGE_KERNEL_PARAMS
  if (use_large_kernel_params())
    err = dispatch_norm<true>(grads, numels, num_tensors, dtype, workspace, stream);
  else
#endif
    err = dispatch_norm<false>(grads, numels, num_tensors, dtype, workspace, stream);
  if (err != nullptr) return err;
  return launch_kernel(&reduce_partials_kernel, 1, kReduceThreads, stream, static_cast<const double*>(workspace),
                       chunks, grad_scale, out);
}

}  // namespace gpu
}  // namespace lrfused
