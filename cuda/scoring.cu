// Launcher of the wave index's centroid scoring and zone selection (RetroInfer section 4).
#include "retrokv/cuda/dispatch.h"
#include "retrokv/cuda/scoring.cuh"
#include "retrokv/cuda/scoring.h"

namespace retrokv::cuda {

CudaStatus score_centroids(const float* q, const CentroidSet& set, int batch, int n_q_heads,
                           int n_kv_heads, int head_dim, int64_t max_clusters, int r, int e,
                           float scale, void* workspace, float* group_scores,
                           int32_t* retrieval_ids, int32_t* estimation_ids, Stream stream) {
  RETROKV_CHECK(batch >= 1, "batch: expected >= 1, got ", batch);
  RETROKV_CHECK(n_kv_heads >= 1 && n_q_heads >= n_kv_heads && n_q_heads % n_kv_heads == 0,
                "n_q_heads: expected a multiple of n_kv_heads (", n_kv_heads, "), got ", n_q_heads);
  const int group = n_q_heads / n_kv_heads;
  RETROKV_CHECK(group <= detail::kMaxScoreGroup,
                "n_q_heads / n_kv_heads: expected <= ", detail::kMaxScoreGroup, ", got ", group);
  RETROKV_CHECK(max_clusters >= 0, "max_clusters: expected >= 0, got ", max_clusters);
  RETROKV_CHECK(r >= 0, "r: expected >= 0, got ", r);
  RETROKV_CHECK(e >= 0, "e: expected >= 0, got ", e);
  RETROKV_CHECK(q != nullptr, "q: null device pointer");
  detail::check_aligned16(set.centroids, "set.centroids");
  RETROKV_CHECK(set.indptr != nullptr, "set.indptr: null device pointer");
  RETROKV_CHECK(workspace != nullptr, "workspace: null device pointer");
  RETROKV_CHECK(group_scores != nullptr, "group_scores: null device pointer");
  RETROKV_CHECK(r == 0 || retrieval_ids != nullptr, "retrieval_ids: null device pointer");
  RETROKV_CHECK(e == 0 || estimation_ids != nullptr, "estimation_ids: null device pointer");
  const int n_lists = batch * n_kv_heads;
  float* logits = static_cast<float*>(workspace);
  return RETROKV_DISPATCH_HEAD_DIM(head_dim, D, [&]() -> CudaStatus {
    if (max_clusters > 0) {
      const dim3 grid(
          static_cast<unsigned>((max_clusters + detail::kScoreTile - 1) / detail::kScoreTile),
          n_lists);
      const std::size_t smem = static_cast<std::size_t>(group) * D * sizeof(float);
      detail::centroid_logits_kernel<D><<<grid, detail::kScoreThreads, smem, stream>>>(
          q, set.centroids, set.indptr, n_q_heads, n_kv_heads, scale, logits);
      const cudaError_t err = cudaGetLastError();
      if (err != cudaSuccess) return err;
    }
    detail::select_clusters_kernel<<<n_lists, detail::kSelectThreads, 0, stream>>>(
        logits, set.indptr, group, r, e, group_scores, retrieval_ids, estimation_ids);
    return cudaGetLastError();
  });
}

}  // namespace retrokv::cuda
