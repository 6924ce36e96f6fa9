// Portability macros shared by every csrc header that compiles for host and device.
#pragma once
#include <cstdint>

#if defined(__CUDACC__) || defined(__HIPCC__)
#define LRF_HD __host__ __device__ __forceinline__
#else
#define LRF_HD inline __attribute__((always_inline))
#endif
