// Portability macros shared by host and device code: the same inline math (the attention-state
// merge, fp16/bf16 conversion) is written once, unit-tested with g++ and reused by nvcc.
#pragma once

#if defined(__CUDACC__)
#define RETROKV_HOST_DEVICE __host__ __device__ __forceinline__
#else
#define RETROKV_HOST_DEVICE inline
#endif

#if defined(__GNUC__) || defined(__clang__)
#define RETROKV_RESTRICT __restrict__
#define RETROKV_LIKELY(x) __builtin_expect(!!(x), 1)
#define RETROKV_UNLIKELY(x) __builtin_expect(!!(x), 0)
#else
#define RETROKV_RESTRICT
#define RETROKV_LIKELY(x) (x)
#define RETROKV_UNLIKELY(x) (x)
#endif
