// Shared machinery of the multi-tensor kernels: argument-table sizing, kernel-parameter limits, dtype
// conversion and 16-byte vector loads. CUDA headers and csrc/ headers only (DESIGN.md principle 2).
//
// Pointer tables travel as kernel arguments, so a step needs no host-to-device copy and is capturable in
// a CUDA graph. CUDA >= 12.1 on Volta+ accepts 32764 bytes of kernel arguments (driver >= 12.1), which
// lets one launch cover ~8x more tensors than the classic 4 KB limit; the 4 KB tables remain for older
// toolkits and drivers. LRFUSED_CUDA_SMALL_TABLES=1 forces the 4 KB tables (used by the tests to
// exercise both).
#pragma once
#include <atomic>
#include <cstdint>
#include <cstdlib>
#include <cstring>
#include <type_traits>
#include <cuda_runtime.h>
#include <cuda_fp16.h>
#include <cuda_bf16.h>

#include "cuda/launch.h"
#include "cuda/plan_chunks.h"
#include "update_math.h"

#if defined(CUDART_VERSION) && CUDART_VERSION >= 12010
#define LRF_LARGE_KERNEL_PARAMS 1
#else
#define LRF_LARGE_KERNEL_PARAMS 0
#endif

namespace lrfused {
namespace gpu {

constexpr int kBlockThreads = 512;
// Elements per block. A multiple of every vector width; ATen's multi_tensor_apply uses the same.
constexpr int64_t kChunkSize = 65536;
constexpr int kSmallParamBytes = 4096;
constexpr int kLargeParamBytes = 32764;

template <bool LARGE>
struct ParamLimit {
  static constexpr int bytes = LARGE ? kLargeParamBytes : kSmallParamBytes;
};

// Whether launches on the current device may use the 32 KB tables. Cached per device: the first call
// (normally an eager warm-up step, before any graph capture) queries the driver.
inline bool use_large_kernel_params() {
#if LRF_LARGE_KERNEL_PARAMS
  static const bool forced_small = [] {
    const char* env = std::getenv("LRFUSED_CUDA_SMALL_TABLES");
    return env != nullptr && env[0] == '1';
  }();
  if (forced_small) return false;
  constexpr int kMaxDevices = 128;
  static std::atomic<signed char> cache[kMaxDevices];  // 0 unknown, 1 yes, -1 no
  int device = 0;
  if (cudaGetDevice(&device) != cudaSuccess || device < 0 || device >= kMaxDevices) {
    cudaGetLastError();
    return false;
  }
  signed char known = cache[device].load(std::memory_order_relaxed);
  if (known == 0) {
    int driver = 0;
    int major = 0;
    const bool ok = cudaDriverGetVersion(&driver) == cudaSuccess &&
                    cudaDeviceGetAttribute(&major, cudaDevAttrComputeCapabilityMajor, device) == cudaSuccess;
    if (!ok) cudaGetLastError();
    known = (ok && driver >= 12010 && major >= 7) ? 1 : -1;
    cache[device].store(known, std::memory_order_relaxed);
  }
  return known > 0;
#else
  return false;
#endif
}

template <typename T>
struct NonDeduced {
  using type = T;
};

// Launches `kernel` and returns this launch's error (nullptr on success). Through cudaLaunchKernel, whose
// return value belongs to this launch: `<<<...>>>` followed by cudaGetLastError() would also report, and
// clear, an unrelated error that other code left pending.
template <typename... Params>
inline const char* launch_kernel(void (*kernel)(Params...), unsigned blocks, unsigned threads,
                                 cudaStream_t stream, const typename NonDeduced<Params>::type&... args) {
  void* params[] = {const_cast<void*>(static_cast<const void*>(&args))...};
  const cudaError_t err = cudaLaunchKernel(reinterpret_cast<const void*>(kernel), dim3(blocks), dim3(threads),
                                           params, 0, stream);
  return err == cudaSuccess ? nullptr : cudaGetErrorString(err);
}

// ---- dtypes -------------------------------------------------------------------------------------

template <typename T> struct ComputeOf { using type = float; };
template <> struct ComputeOf<double> { using type = double; };

__device__ __forceinline__ float to_compute(float x) { return x; }
__device__ __forceinline__ double to_compute(double x) { return x; }
__device__ __forceinline__ float to_compute(__half x) { return __half2float(x); }
__device__ __forceinline__ float to_compute(__nv_bfloat16 x) { return __bfloat162float(x); }

template <typename T> struct Store;
template <> struct Store<float> {
  template <typename C> __device__ __forceinline__ static float from(C x) { return static_cast<float>(x); }
};
template <> struct Store<double> {
  template <typename C> __device__ __forceinline__ static double from(C x) { return static_cast<double>(x); }
};
template <> struct Store<__half> {
  __device__ __forceinline__ static __half from(float x) { return __float2half_rn(x); }
};
template <> struct Store<__nv_bfloat16> {
  __device__ __forceinline__ static __nv_bfloat16 from(float x) { return __float2bfloat16_rn(x); }
};

// A result stored in X: bf16 stochastically when `stochastic` (element `index` of the stream `key`, the
// bits of update_math.h, as the CPU kernels draw them), else to nearest.
template <typename X, typename C>
__device__ __forceinline__ X store_value(C x, bool stochastic, uint64_t key, int64_t index) {
  if constexpr (std::is_same<X, __nv_bfloat16>::value && std::is_same<C, float>::value) {
    if (stochastic)
      return __ushort_as_bfloat16(
          math::bf16_bits_stochastic(__float_as_uint(x), math::sr_random16(key, static_cast<uint64_t>(index))));
  }
  return Store<X>::from(x);
}

// ---- vector memory access ---------------------------------------------------------------------

template <int BYTES> struct RawOf;
template <> struct RawOf<16> { using type = uint4; };
template <> struct RawOf<8> { using type = uint2; };
template <> struct RawOf<4> { using type = unsigned int; };
template <> struct RawOf<2> { using type = unsigned short; };

// N consecutive elements as pieces of at most 16 bytes. The caller guarantees that `src` is aligned to
// min(16, N * sizeof(X)) bytes (16-byte aligned base pointers, offsets a multiple of N elements).
template <typename X, int N>
__device__ __forceinline__ void load_vec(X (&dst)[N], const X* src) {
  constexpr int kBytes = N * static_cast<int>(sizeof(X));
  constexpr int kPiece = kBytes >= 16 ? 16 : kBytes;
  constexpr int kPer = kPiece / static_cast<int>(sizeof(X));
  using R = typename RawOf<kPiece>::type;
#pragma unroll
  for (int i = 0; i < N / kPer; ++i) {
    const R r = reinterpret_cast<const R*>(src)[i];
    memcpy(&dst[i * kPer], &r, kPiece);
  }
}

template <typename X, int N>
__device__ __forceinline__ void store_vec(X* dst, const X (&src)[N]) {
  constexpr int kBytes = N * static_cast<int>(sizeof(X));
  constexpr int kPiece = kBytes >= 16 ? 16 : kBytes;
  constexpr int kPer = kPiece / static_cast<int>(sizeof(X));
  using R = typename RawOf<kPiece>::type;
#pragma unroll
  for (int i = 0; i < N / kPer; ++i) {
    R r;
    memcpy(&r, &src[i * kPer], kPiece);
    reinterpret_cast<R*>(dst)[i] = r;
  }
}

__device__ __forceinline__ bool aligned16(const void* p) {
  return (reinterpret_cast<uintptr_t>(p) & 15u) == 0;
}

// Elements per 16-byte vector of the parameter dtype: 4 fp32, 8 fp16/bf16, 2 fp64.
template <typename T>
struct Ilp {
  static constexpr int value = 16 / static_cast<int>(sizeof(T));
  static_assert(kChunkSize % (16 / sizeof(T)) == 0, "chunk size must be a multiple of the vector width");
};

// ---- argument tables ----------------------------------------------------------------------------

// Per-launch work list: NPTR pointer columns per tensor (+ NFLOATPTR float* columns, NU64 integer
// columns and numel), and a (table slot, chunk index) pair per block. Sized to the kernel-parameter budget
// left by `Header`. Chunk indices are int32 (2^31 chunks of 2^16 elements); element offsets are computed
// in 64 bits.
template <int NPTR, int NFLOATPTR, int BUDGET, int MAX_BLOCKS, int NU64 = 0>
struct TensorTable {
  static constexpr int kMaxBlocks = MAX_BLOCKS;
  static constexpr int kPerTensor = 8 * NPTR + 8 * NFLOATPTR + 8 * NU64 + 8;
  static constexpr int kMaxTensors = (BUDGET - MAX_BLOCKS * 6) / kPerTensor;
  static_assert(kMaxTensors >= 8 && kMaxTensors < 65536, "kernel-argument table too small");

  void* ptr[NPTR][kMaxTensors];
  float* fptr[NFLOATPTR > 0 ? NFLOATPTR : 1][NFLOATPTR > 0 ? kMaxTensors : 1];
  uint64_t u64[NU64 > 0 ? NU64 : 1][NU64 > 0 ? kMaxTensors : 1];
  int64_t numel[kMaxTensors];
  int32_t block_chunk[kMaxBlocks];
  uint16_t block_slot[kMaxBlocks];
};

// Blocks per launch: 320 (as ATen) with 4 KB of arguments; 1536 with 32 KB, which is ~3 waves of
// 512-thread blocks on a 132-SM H100/H200 and leaves room for ~400-600 tensors per launch.
template <bool LARGE>
struct MaxBlocks {
  static constexpr int value = LARGE ? 1536 : 320;
};

}  // namespace gpu
}  // namespace lrfused
