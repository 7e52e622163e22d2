// Device templates of the wave index's centroid scoring (RetroInfer section 4): logits of a GQA
// group against every centroid of its (sequence, KV head), per-head softmax, group sum, and a
// radix select of the top r (retrieval zone) and next e (estimation zone) clusters.
// Needs nvcc; include only from cuda/*.cu.
#pragma once

#include <cuda_runtime.h>

#include <cstdint>

#include "retrokv/cuda/decode_attention.cuh"
#include "retrokv/cuda/select.cuh"

namespace retrokv::cuda::detail {

inline constexpr int kScoreThreads = 128;
inline constexpr int kScoreTile = 64;      // centroids per block of the logits kernel
inline constexpr int kMaxScoreGroup = 64;  // query heads per KV head the kernels accept
inline constexpr int kSelectThreads = 256;

/// grid (ceil(max_clusters / kScoreTile), n_lists), block kScoreThreads. Each lane group loads a
/// centroid row once and dots it with every query head of the group (q staged in shared memory).
/// logits: list l's block starts at group * indptr[l], row g holds q_g.c * scale for its clusters.
template <int D>
__global__ void __launch_bounds__(kScoreThreads)
    centroid_logits_kernel(const float* __restrict__ q, const float* __restrict__ centroids,
                           const int32_t* __restrict__ indptr, int n_q_heads, int n_kv_heads,
                           float scale, float* __restrict__ logits) {
  constexpr int kLanes = D / kVec;
  constexpr int kPerWarp = 32 / kLanes;
  constexpr int kStreams = (kScoreThreads / 32) * kPerWarp;
  extern __shared__ float s_q[];  // (group, D)
  const int l = blockIdx.y;
  const int b = l / n_kv_heads;
  const int h = l % n_kv_heads;
  const int group = n_q_heads / n_kv_heads;
  const float* qg = q + (static_cast<int64_t>(b) * n_q_heads + h * group) * D;
  for (int i = threadIdx.x; i < group * D; i += kScoreThreads) s_q[i] = qg[i] * scale;
  __syncthreads();
  const int64_t begin = indptr[l];
  const int64_t n = indptr[l + 1] - begin;
  const int warp = threadIdx.x / 32;
  const int lane = threadIdx.x % 32;
  const int sub = lane / kLanes;
  const int dim0 = (lane % kLanes) * kVec;
  const int64_t c_begin = static_cast<int64_t>(blockIdx.x) * kScoreTile;
  const int64_t c_end = min(c_begin + kScoreTile, n);
  float* out = logits + begin * group;
  for (int64_t base = c_begin + warp * kPerWarp; base < c_end; base += kStreams) {
    const int64_t c = base + sub;
    const bool valid = c < c_end;
    float kf[kVec];
    if (valid) {
      load_vec8<float>(centroids + (begin + c) * D + dim0, kf);
    } else {
#pragma unroll
      for (int i = 0; i < kVec; ++i) kf[i] = 0.f;
    }
    for (int g = 0; g < group; ++g) {
      float acc = 0.f;
#pragma unroll
      for (int i = 0; i < kVec; ++i) acc = fmaf(s_q[g * D + dim0 + i], kf[i], acc);
#pragma unroll
      for (int off = kLanes / 2; off > 0; off /= 2) acc += __shfl_xor_sync(0xffffffffu, acc, off);
      if (valid && dim0 == 0) out[g * n + c] = acc;
    }
  }
}

/// grid (n_lists), block kSelectThreads: softmax per query head over the list's logits, the
/// group sum into group_scores, then the top r and next e clusters (ascending ids per zone).
__global__ void __launch_bounds__(kSelectThreads)
    select_clusters_kernel(const float* __restrict__ logits, const int32_t* __restrict__ indptr,
                           int group, int r, int e, float* __restrict__ group_scores,
                           int32_t* __restrict__ retrieval_ids,
                           int32_t* __restrict__ estimation_ids) {
  __shared__ float s_max[kMaxScoreGroup];
  __shared__ float s_inv[kMaxScoreGroup];
  __shared__ float s_red[kSelectThreads / 32];
  __shared__ int s_hist[256];
  __shared__ int s_warp[kSelectThreads / 32];
  __shared__ int64_t s_state[2];
  const int l = blockIdx.x;
  const int64_t begin = indptr[l];
  const int64_t n = indptr[l + 1] - begin;
  const float* lg = logits + begin * group;
  const int lane = threadIdx.x % 32;
  const int warp = threadIdx.x / 32;

  for (int g = 0; g < group; ++g) {
    float m = -INFINITY;
    for (int64_t c = threadIdx.x; c < n; c += kSelectThreads) m = fmaxf(m, lg[g * n + c]);
    for (int off = 16; off > 0; off /= 2) m = fmaxf(m, __shfl_xor_sync(0xffffffffu, m, off));
    if (lane == 0) s_red[warp] = m;
    __syncthreads();
    m = -INFINITY;
    for (int w = 0; w < kSelectThreads / 32; ++w) m = fmaxf(m, s_red[w]);
    __syncthreads();
    float z = 0.f;
    for (int64_t c = threadIdx.x; c < n; c += kSelectThreads) z += expf(lg[g * n + c] - m);
    for (int off = 16; off > 0; off /= 2) z += __shfl_xor_sync(0xffffffffu, z, off);
    if (lane == 0) s_red[warp] = z;
    __syncthreads();
    if (threadIdx.x == 0) {
      float zt = 0.f;
      for (int w = 0; w < kSelectThreads / 32; ++w) zt += s_red[w];
      s_max[g] = m;
      s_inv[g] = zt > 0.f ? 1.f / zt : 0.f;
    }
    __syncthreads();
  }
  float* scores = group_scores + begin;
  for (int64_t c = threadIdx.x; c < n; c += kSelectThreads) {
    float s = 0.f;
    for (int g = 0; g < group; ++g) s += expf(lg[g * n + c] - s_max[g]) * s_inv[g];
    scores[c] = s;
  }
  __syncthreads();

  const int64_t k_a = min(static_cast<int64_t>(r), n);
  const int64_t k_b = min(static_cast<int64_t>(r) + e, n);
  uint32_t thr_a, thr_b;
  int64_t ties_a, ties_b;
  // Scores are >= 0, so their bit patterns already sort like the floats.
  auto key = [scores](int64_t i) { return __float_as_uint(scores[i]); };
  radix_select(key, n, k_a, &thr_a, &ties_a, s_hist, s_state);
  radix_select(key, n, k_b, &thr_b, &ties_b, s_hist, s_state);

  // One pass in ascending id order: ties go to the smaller ids, so zone A (top r) is a prefix of
  // zone B (top r + e) in the same order and the estimation zone is B minus A.
  int64_t seen_a = 0, seen_b = 0, out_a = 0, out_e = 0;
  for (int64_t base = 0; base < n; base += kSelectThreads) {
    const int64_t c = base + threadIdx.x;
    const uint32_t bits = c < n ? __float_as_uint(scores[c]) : 0u;
    const bool eq_a = c < n && bits == thr_a;
    const bool eq_b = c < n && bits == thr_b;
    int total;
    const int rank_a = block_exclusive_count(eq_a, s_warp, &total);
    const int64_t tie_a = seen_a + rank_a;
    seen_a += total;
    const int rank_b = block_exclusive_count(eq_b, s_warp, &total);
    const int64_t tie_b = seen_b + rank_b;
    seen_b += total;
    const bool in_a = c < n && (bits > thr_a || (eq_a && tie_a < ties_a));
    const bool in_b = c < n && (bits > thr_b || (eq_b && tie_b < ties_b));
    const bool in_e = in_b && !in_a;
    const int pos_a = block_exclusive_count(in_a, s_warp, &total);
    if (in_a)
      retrieval_ids[static_cast<int64_t>(l) * r + out_a + pos_a] = static_cast<int32_t>(begin + c);
    out_a += total;
    const int pos_e = block_exclusive_count(in_e, s_warp, &total);
    if (in_e)
      estimation_ids[static_cast<int64_t>(l) * e + out_e + pos_e] = static_cast<int32_t>(begin + c);
    out_e += total;
  }
  for (int64_t i = out_a + threadIdx.x; i < r; i += kSelectThreads)
    retrieval_ids[static_cast<int64_t>(l) * r + i] = -1;
  for (int64_t i = out_e + threadIdx.x; i < e; i += kSelectThreads)
    estimation_ids[static_cast<int64_t>(l) * e + i] = -1;
}

}  // namespace retrokv::cuda::detail
