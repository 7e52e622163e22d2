// Exact k-nearest keys by inner product on the GPU (RetrievalAttention's RoarGraph build, step
// 1: each training query's top-k_train keys): cuBLAS GEMM over tiles of queries x keys, a
// per-row top-k of every tile, and a final top-k with rank order. Plain g++ header.
#pragma once

#include <cstddef>
#include <cstdint>

#include "retrokv/cuda/device.h"

namespace retrokv::cuda {

/// Largest k exact_knn accepts.
inline constexpr int kMaxKnnK = 1024;

/// Device workspace exact_knn needs for these sizes (one tile of scores + per-tile candidates).
std::size_t knn_workspace_bytes(int64_t n_queries, int64_t n_keys, int d, int k);

/// queries (n_queries, d), keys (n_keys, d) float, device pointers, row-major. Writes ids
/// (n_queries, k) and scores (n_queries, k) = q.k (unscaled) in rank order: score descending,
/// ties to the smaller key id (the order of retrokv::better). k in [1, min(n_keys, 1024)].
/// Returns the last CUDA status; throws retrokv::Error on bad input or a cuBLAS failure.
CudaStatus exact_knn(const float* queries, const float* keys, int64_t n_queries, int64_t n_keys,
                     int d, int k, void* workspace, std::size_t workspace_bytes, int32_t* ids,
                     float* scores, Stream stream = nullptr);

/// The same from host memory to host memory (allocates, uploads, runs, downloads); for index
/// builds that live on the CPU. ids and scores: (n_queries, k) host arrays.
void exact_knn_host(const float* queries, const float* keys, int64_t n_queries, int64_t n_keys,
                    int d, int k, int32_t* ids, float* scores);

}  // namespace retrokv::cuda
