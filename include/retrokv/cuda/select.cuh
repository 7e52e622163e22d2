// Block-wide selection primitives shared by the centroid scoring and the exact kNN kernels:
// radix select of the k largest keys, ordered compaction with ties to the smaller index, and a
// rank sort of a small candidate list. Needs nvcc; include only from cuda/*.cu.
#pragma once

#include <cuda_runtime.h>

#include <cstdint>

#include "retrokv/cuda/select_math.h"

namespace retrokv::cuda::detail {

/// Number of set flags before this thread in the block (thread order) and the block total.
/// All threads of the block must call it; blockDim.x is a multiple of 32, at most 1024.
__device__ __forceinline__ int block_exclusive_count(bool flag, int* s_warp, int* total) {
  const int lane = threadIdx.x % 32;
  const int warp = threadIdx.x / 32;
  const unsigned ballot = __ballot_sync(0xffffffffu, flag);
  const int in_warp = __popc(ballot & ((1u << lane) - 1u));
  __syncthreads();  // s_warp may still be read by a previous call
  if (lane == 0) s_warp[warp] = __popc(ballot);
  __syncthreads();
  int before = 0;
  int sum = 0;
  for (int w = 0; w < static_cast<int>(blockDim.x / 32); ++w) {
    before += w < warp ? s_warp[w] : 0;
    sum += s_warp[w];
  }
  *total = sum;
  return before + in_warp;
}

/// Radix select over uint32 keys key(i), i in [0, n): the k-th largest key `thr` and how many
/// keys equal to it belong to the top k (`ties`). k = 0 selects nothing (thr = ~0, ties = 0).
/// s_hist: 256 ints, s_state: 2 int64 of shared memory. All threads of the block must call it.
template <typename KeyFn>
__device__ __forceinline__ void radix_select(KeyFn key, int64_t n, int64_t k, uint32_t* thr,
                                             int64_t* ties, int* s_hist, int64_t* s_state) {
  if (k <= 0) {
    *thr = 0xffffffffu;
    *ties = 0;
    return;
  }
  uint32_t prefix = 0;
  uint32_t mask = 0;
  int64_t remaining = k;
  for (int shift = 24; shift >= 0; shift -= 8) {
    for (int i = threadIdx.x; i < 256; i += blockDim.x) s_hist[i] = 0;
    __syncthreads();
    for (int64_t i = threadIdx.x; i < n; i += blockDim.x) {
      const uint32_t bits = key(i);
      if ((bits & mask) == prefix) atomicAdd(&s_hist[(bits >> shift) & 255u], 1);
    }
    __syncthreads();
    if (threadIdx.x == 0) {
      int64_t rest;
      s_state[0] = radix_pick_digit(s_hist, remaining, &rest);
      s_state[1] = rest;
    }
    __syncthreads();
    prefix |= static_cast<uint32_t>(s_state[0]) << shift;
    remaining = s_state[1];
    mask |= 255u << shift;
    __syncthreads();
  }
  *thr = prefix;
  *ties = remaining;
}

/// Calls emit(i, position) for the top k of key(i) (as found by radix_select), in ascending i,
/// position = 0, 1, ... in that order; ties at the threshold go to the smaller i.
template <typename KeyFn, typename EmitFn>
__device__ __forceinline__ void emit_selected(KeyFn key, int64_t n, uint32_t thr, int64_t ties,
                                              EmitFn emit, int* s_warp) {
  int64_t seen = 0, out = 0;
  for (int64_t base = 0; base < n; base += blockDim.x) {
    const int64_t i = base + threadIdx.x;
    const uint32_t bits = i < n ? key(i) : 0u;
    const bool eq = i < n && bits == thr;
    int total;
    const int rank = block_exclusive_count(eq, s_warp, &total);
    const bool in = i < n && (bits > thr || (eq && seen + rank < ties));
    seen += total;
    const int pos = block_exclusive_count(in, s_warp, &total);
    if (in) emit(i, out + pos);
    out += total;
  }
}

}  // namespace retrokv::cuda::detail
