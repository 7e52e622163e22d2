// Launcher of the wave index's estimation attention over cluster summaries (RetroInfer section
// 4): the split-KV kernel with centroids as keys, value sums / sizes as values and a log(size)
// logit bias, so o_E and the natural-log lse_E = log Z_E come out as one attention state.
#include "retrokv/cuda/decode_attention.cuh"
#include "retrokv/cuda/dispatch.h"

namespace retrokv::cuda {

CudaStatus estimation_attention(const float* q, const ClusterSummaries& clusters,
                                const DecodePlan& plan, float scale, void* workspace, float* o,
                                float* lse, Stream stream) {
  detail::check_split_inputs(plan, q, o, lse);
  detail::check_aligned16(clusters.centroids, "clusters.centroids");
  detail::check_aligned16(clusters.value_sums, "clusters.value_sums");
  RETROKV_CHECK(clusters.sizes != nullptr, "clusters.sizes: null device pointer");
  RETROKV_CHECK(clusters.indptr != nullptr, "clusters.indptr: null device pointer");
  RETROKV_CHECK(clusters.ids != nullptr, "clusters.ids: null device pointer");
  return RETROKV_DISPATCH_HEAD_DIM(plan.head_dim, D, [&] {
    detail::ClusterAddr<D> addr{clusters.centroids, clusters.value_sums, clusters.sizes,
                                clusters.indptr, clusters.ids};
    return static_cast<CudaStatus>(
        detail::launch_split_attention<D, float>(q, addr, plan, scale, workspace, o, lse, stream));
  });
}

}  // namespace retrokv::cuda
