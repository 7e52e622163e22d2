// Run-time head_dim and element type -> compile-time constants for the CUDA launchers (the
// FlashInfer pattern): one macro per choice, unsupported values throw retrokv::Error.
#pragma once

#include "retrokv/core/error.h"
#include "retrokv/core/half.h"

/// Runs the variadic body with `constexpr int HEAD_DIM` = head_dim; head_dim must be 64 or 128.
#define RETROKV_DISPATCH_HEAD_DIM(head_dim, HEAD_DIM, ...)                                        \
  [&] {                                                                                           \
    switch (head_dim) {                                                                           \
      case 64: {                                                                                  \
        constexpr int HEAD_DIM = 64;                                                              \
        return __VA_ARGS__();                                                                     \
      }                                                                                           \
      case 128: {                                                                                 \
        constexpr int HEAD_DIM = 128;                                                             \
        return __VA_ARGS__();                                                                     \
      }                                                                                           \
      default:                                                                                    \
        RETROKV_FAIL("head_dim: expected 64 or 128 (the compiled CUDA kernels), got ", head_dim); \
    }                                                                                             \
  }()

/// Runs the body with `using KV_T = ...` (device type) for a 16-bit DType: __half or
/// __nv_bfloat16. Only in .cu files (needs cuda_fp16.h / cuda_bf16.h).
#define RETROKV_DISPATCH_KV_DTYPE(dtype, KV_T, ...)                                       \
  [&] {                                                                                   \
    switch (dtype) {                                                                      \
      case ::retrokv::DType::kFloat16: {                                                  \
        using KV_T = __half;                                                              \
        return __VA_ARGS__();                                                             \
      }                                                                                   \
      case ::retrokv::DType::kBFloat16: {                                                 \
        using KV_T = __nv_bfloat16;                                                       \
        return __VA_ARGS__();                                                             \
      }                                                                                   \
      default:                                                                            \
        RETROKV_FAIL("dtype: expected float16 or bfloat16 KV for the CUDA kernels, got ", \
                     ::retrokv::dtype_name(dtype));                                       \
    }                                                                                     \
  }()
