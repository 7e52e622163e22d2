// Exact kNN by inner product on the GPU (retrokv/cuda/knn.h): cuBLAS SGEMM per (query tile, key
// tile), radix top-k per row and tile, then a final top-k over the tiles' candidates sorted by
// rank. Deterministic: ties go to the smaller key id at every stage.
#include <cublas_v2.h>
#include <cuda_runtime.h>

#include <algorithm>

#include "retrokv/core/error.h"
#include "retrokv/cuda/attention_math.h"
#include "retrokv/cuda/knn.h"
#include "retrokv/cuda/memory.h"
#include "retrokv/cuda/select.cuh"

namespace retrokv::cuda {
namespace detail {

inline constexpr int64_t kKnnQueryTile = 1024;
inline constexpr int64_t kKnnKeyTile = 32768;
inline constexpr int kKnnThreads = 256;

// Candidate key: padding (id < 0) is 0, below every real score (ordered_float_key(-inf) > 0).
__device__ __forceinline__ uint32_t candidate_key(float score, int32_t id) {
  return id < 0 ? 0u : ordered_float_key(score);
}

/// grid (rows), block kKnnThreads: top-k of one row of a score tile (n_tile keys starting at
/// key id tile_begin) into that row's slot `tile` of the candidates, padded with id -1.
__global__ void __launch_bounds__(kKnnThreads)
    tile_topk_kernel(const float* __restrict__ tile_scores, int64_t n_tile, int64_t tile_begin,
                     int k, int n_tiles, int tile, int32_t* __restrict__ cand_ids,
                     float* __restrict__ cand_scores) {
  __shared__ int s_hist[256];
  __shared__ int s_warp[kKnnThreads / 32];
  __shared__ int64_t s_state[2];
  const int64_t row = blockIdx.x;
  const float* s = tile_scores + row * n_tile;
  const int64_t out0 = (row * n_tiles + tile) * k;
  auto key = [s](int64_t i) { return ordered_float_key(s[i]); };
  const int64_t kk = min(static_cast<int64_t>(k), n_tile);
  uint32_t thr;
  int64_t ties;
  radix_select(key, n_tile, kk, &thr, &ties, s_hist, s_state);
  emit_selected(
      key, n_tile, thr, ties,
      [&](int64_t i, int64_t pos) {
        cand_ids[out0 + pos] = static_cast<int32_t>(tile_begin + i);
        cand_scores[out0 + pos] = s[i];
      },
      s_warp);
  for (int64_t p = kk + threadIdx.x; p < k; p += kKnnThreads) {
    cand_ids[out0 + p] = -1;
    cand_scores[out0 + p] = -INFINITY;
  }
}

/// grid (rows), block kKnnThreads, shared memory k * 8 bytes: top-k over a row's n_cand
/// candidates, then a rank sort (score desc, id asc) into ids/scores (rows, k).
__global__ void __launch_bounds__(kKnnThreads)
    final_topk_kernel(const int32_t* __restrict__ cand_ids, const float* __restrict__ cand_scores,
                      int64_t n_cand, int k, int32_t* __restrict__ ids,
                      float* __restrict__ scores) {
  __shared__ int s_hist[256];
  __shared__ int s_warp[kKnnThreads / 32];
  __shared__ int64_t s_state[2];
  extern __shared__ unsigned char s_raw[];
  float* s_score = reinterpret_cast<float*>(s_raw);
  int32_t* s_id = reinterpret_cast<int32_t*>(s_score + k);
  const int64_t row = blockIdx.x;
  const int32_t* ci = cand_ids + row * n_cand;
  const float* cs = cand_scores + row * n_cand;
  auto key = [ci, cs](int64_t i) { return candidate_key(cs[i], ci[i]); };
  uint32_t thr;
  int64_t ties;
  radix_select(key, n_cand, k, &thr, &ties, s_hist, s_state);
  emit_selected(
      key, n_cand, thr, ties,
      [&](int64_t i, int64_t pos) {
        s_score[pos] = cs[i];
        s_id[pos] = ci[i];
      },
      s_warp);
  __syncthreads();
  for (int j = threadIdx.x; j < k; j += kKnnThreads) {
    const uint32_t kj = candidate_key(s_score[j], s_id[j]);
    int rank = 0;
    for (int i = 0; i < k; ++i) {
      const uint32_t ki = candidate_key(s_score[i], s_id[i]);
      rank += (ki > kj || (ki == kj && s_id[i] < s_id[j])) ? 1 : 0;
    }
    ids[row * k + rank] = s_id[j];
    scores[row * k + rank] = s_score[j];
  }
}

void check_cublas(cublasStatus_t st, const char* what) {
  RETROKV_CHECK(st == CUBLAS_STATUS_SUCCESS, what, ": cuBLAS status ", static_cast<int>(st));
}

}  // namespace detail

std::size_t knn_workspace_bytes(int64_t n_queries, int64_t n_keys, int d, int k) {
  RETROKV_CHECK(n_queries >= 0, "n_queries: expected >= 0, got ", n_queries);
  RETROKV_CHECK(n_keys >= 1, "n_keys: expected >= 1, got ", n_keys);
  RETROKV_CHECK(d >= 1, "d: expected >= 1, got ", d);
  RETROKV_CHECK(k >= 1 && k <= kMaxKnnK && k <= n_keys, "k: expected in [1, min(n_keys = ", n_keys,
                ", ", kMaxKnnK, ")], got ", k);
  const int64_t qt = std::min(n_queries, detail::kKnnQueryTile);
  const int64_t kt = std::min(n_keys, detail::kKnnKeyTile);
  const int64_t n_tiles = (n_keys + kt - 1) / kt;
  return static_cast<std::size_t>(qt * kt) * sizeof(float) +
         static_cast<std::size_t>(qt * n_tiles * k) * (sizeof(float) + sizeof(int32_t));
}

CudaStatus exact_knn(const float* queries, const float* keys, int64_t n_queries, int64_t n_keys,
                     int d, int k, void* workspace, std::size_t workspace_bytes, int32_t* ids,
                     float* scores, Stream stream) {
  const std::size_t need = knn_workspace_bytes(n_queries, n_keys, d, k);
  RETROKV_CHECK(workspace_bytes >= need, "workspace_bytes: expected >= ", need, ", got ",
                workspace_bytes);
  RETROKV_CHECK(queries != nullptr || n_queries == 0, "queries: null device pointer");
  RETROKV_CHECK(keys != nullptr, "keys: null device pointer");
  RETROKV_CHECK(ids != nullptr && scores != nullptr, "ids, scores: null device pointer");
  if (n_queries == 0) return cudaSuccess;
  const int64_t qt = std::min(n_queries, detail::kKnnQueryTile);
  const int64_t kt = std::min(n_keys, detail::kKnnKeyTile);
  const int n_tiles = static_cast<int>((n_keys + kt - 1) / kt);
  float* tile_scores = static_cast<float*>(workspace);
  auto* cand_scores = tile_scores + qt * kt;
  auto* cand_ids = reinterpret_cast<int32_t*>(cand_scores + qt * n_tiles * k);

  cublasHandle_t handle = nullptr;
  detail::check_cublas(cublasCreate(&handle), "cublasCreate");
  struct Destroy {
    cublasHandle_t h;
    ~Destroy() { cublasDestroy(h); }
  } destroy{handle};
  detail::check_cublas(cublasSetStream(handle, stream), "cublasSetStream");
  const float one = 1.f, zero = 0.f;
  for (int64_t q0 = 0; q0 < n_queries; q0 += qt) {
    const int64_t rows = std::min(qt, n_queries - q0);
    for (int t = 0; t < n_tiles; ++t) {
      const int64_t k0 = static_cast<int64_t>(t) * kt;
      const int64_t cols = std::min(kt, n_keys - k0);
      // Row-major S (rows, cols) = Q K^T is column-major S^T (cols, rows) = K^T(col) x Q(col).
      detail::check_cublas(
          cublasSgemm(handle, CUBLAS_OP_T, CUBLAS_OP_N, static_cast<int>(cols),
                      static_cast<int>(rows), d, &one, keys + k0 * d, d, queries + q0 * d, d, &zero,
                      tile_scores, static_cast<int>(cols)),
          "cublasSgemm");
      detail::tile_topk_kernel<<<static_cast<unsigned>(rows), detail::kKnnThreads, 0, stream>>>(
          tile_scores, cols, k0, k, n_tiles, t, cand_ids, cand_scores);
      const cudaError_t err = cudaGetLastError();
      if (err != cudaSuccess) return err;
    }
    const std::size_t smem = static_cast<std::size_t>(k) * (sizeof(float) + sizeof(int32_t));
    detail::final_topk_kernel<<<static_cast<unsigned>(rows), detail::kKnnThreads, smem, stream>>>(
        cand_ids, cand_scores, static_cast<int64_t>(n_tiles) * k, k, ids + q0 * k, scores + q0 * k);
    const cudaError_t err = cudaGetLastError();
    if (err != cudaSuccess) return err;
  }
  return cudaSuccess;
}

void exact_knn_host(const float* queries, const float* keys, int64_t n_queries, int64_t n_keys,
                    int d, int k, int32_t* ids, float* scores) {
  const std::size_t ws_bytes = knn_workspace_bytes(n_queries, n_keys, d, k);
  DeviceBuffer dq(static_cast<std::size_t>(n_queries) * d * sizeof(float));
  DeviceBuffer dk(static_cast<std::size_t>(n_keys) * d * sizeof(float));
  DeviceBuffer ws(ws_bytes);
  DeviceBuffer di(static_cast<std::size_t>(n_queries) * k * sizeof(int32_t));
  DeviceBuffer ds(static_cast<std::size_t>(n_queries) * k * sizeof(float));
  dq.copy_from_host(queries, dq.bytes());
  dk.copy_from_host(keys, dk.bytes());
  check_status(exact_knn(dq.as<float>(), dk.as<float>(), n_queries, n_keys, d, k, ws.data(),
                         ws_bytes, di.as<int32_t>(), ds.as<float>()),
               "exact_knn");
  synchronize();
  di.copy_to_host(ids, di.bytes());
  ds.copy_to_host(scores, ds.bytes());
}

}  // namespace retrokv::cuda
