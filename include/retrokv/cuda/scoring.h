// Host API of the wave index's centroid scoring on the GPU (RetroInfer section 4, issue 6): for
// each (sequence, KV head) the GQA group's queries score every cluster centroid, p = softmax(
// q.c*scale) per query head, the group sums p, and the top r clusters form the retrieval zone
// and the next e the estimation zone. Plain g++ header; kernels in scoring.cuh.
#pragma once

#include <cstddef>
#include <cstdint>

#include "retrokv/core/error.h"
#include "retrokv/cuda/device.h"

namespace retrokv::cuda {

/// Centroids of every list: list l = b * n_kv_heads + h owns centroid rows
/// [indptr[l], indptr[l + 1]) of centroids (n_total, d) float.
struct CentroidSet {
  const float* centroids = nullptr;
  const int32_t* indptr = nullptr;  // (batch * n_kv_heads + 1), device
};

/// Bytes of device workspace score_centroids needs: group * n_total_clusters floats (host math,
/// the same with and without CUDA).
inline std::size_t scoring_workspace_bytes(int n_q_heads, int n_kv_heads,
                                           int64_t n_total_clusters) {
  RETROKV_CHECK(n_kv_heads >= 1 && n_q_heads % n_kv_heads == 0,
                "n_q_heads: expected a multiple of n_kv_heads (", n_kv_heads, "), got ", n_q_heads);
  RETROKV_CHECK(n_total_clusters >= 0, "n_total_clusters: expected >= 0, got ", n_total_clusters);
  return static_cast<std::size_t>(n_q_heads / n_kv_heads) *
         static_cast<std::size_t>(n_total_clusters) * sizeof(float);
}

/// Scores and selects. q (batch, n_q_heads, d) float; max_clusters: the longest list (host).
/// Outputs: group_scores (n_total) = sum over the group of softmax probabilities (in [0, group]);
/// retrieval_ids (n_lists, r) and estimation_ids (n_lists, e) hold global centroid rows, each
/// zone in ascending id order, padded with -1 when a list has fewer than r + e clusters. The
/// order of scores is (score desc, id asc), so ties are broken by the smaller id.
CudaStatus score_centroids(const float* q, const CentroidSet& set, int batch, int n_q_heads,
                           int n_kv_heads, int head_dim, int64_t max_clusters, int r, int e,
                           float scale, void* workspace, float* group_scores,
                           int32_t* retrieval_ids, int32_t* estimation_ids,
                           Stream stream = nullptr);

}  // namespace retrokv::cuda
