// Exact batched k-nearest-neighbours by inner product: for every query (m, d) the top-k keys
// (n, d) by q.k. Step 1 of the RoarGraph build (DESIGN.md section 3, RetrievalAttention
// section 4): O(m n d), so it is a cache-blocked Eigen GEMM per (query block, key block) tile
// followed by a thresholded per-query top-k, parallel over query blocks with OpenMP.
#pragma once

#include <omp.h>

#include <Eigen/Core>
#include <algorithm>
#include <chrono>
#include <cmath>
#include <cstdint>
#include <vector>

#include "retrokv/core/error.h"
#include "retrokv/core/progress.h"
#include "retrokv/core/topk.h"
#include "retrokv/core/view.h"

namespace retrokv {

/// Tiling and threading of knn_inner_product. The tile sizes fix the GEMM shapes, so the result
/// is bit-identical for any thread count (no score depends on how the work is scheduled).
struct KnnParams {
  int query_block = 128;       ///< queries per tile (one thread owns a query block)
  int key_block = 1024;        ///< keys per tile: (query_block, key_block) floats of scores
  int threads = 0;             ///< OpenMP threads; 0 = omp_get_max_threads()
  bool show_progress = false;  ///< progress bar on a terminal when the work takes over ~1 s
};

/// Row i holds query i's top-k, best first: ids (m, k) and scores (m, k), row-major.
struct KnnResult {
  int64_t m = 0;
  int k = 0;
  std::vector<int32_t> ids;
  std::vector<float> scores;
  double seconds = 0.0;  ///< wall time of the whole call
  double gflops = 0.0;   ///< achieved 2 m n d / seconds, in 1e9 flop/s

  const int32_t* row_ids(int64_t i) const { return ids.data() + i * k; }
  const float* row_scores(int64_t i) const { return scores.data() + i * k; }
};

namespace detail {
using KnnRowMajor = Eigen::Matrix<float, Eigen::Dynamic, Eigen::Dynamic, Eigen::RowMajor>;
using KnnMap = Eigen::Map<const KnnRowMajor, 0, Eigen::OuterStride<>>;
}  // namespace detail

/// Exact top-k keys of every query by inner product, ties broken by smaller key id.
/// queries: (m, d); keys: (n, d); 1 <= k <= n. Throws retrokv::Error naming the argument for
/// mismatched d, k out of range, bad tile sizes, or a NaN score (NaN in the input).
inline KnnResult knn_inner_product(ConstMatrixView<float> queries, ConstMatrixView<float> keys,
                                   int k, const KnnParams& params = {}) {
  RETROKV_CHECK(queries.cols == keys.cols, "queries: expected d = ", keys.cols,
                " (the keys' d), got ", queries.cols);
  RETROKV_CHECK(keys.cols > 0, "keys: expected d >= 1, got ", keys.cols);
  RETROKV_CHECK(k >= 1 && k <= keys.rows, "k: expected 1 <= k <= n (", keys.rows, "), got ", k);
  RETROKV_CHECK(keys.rows <= INT32_MAX, "keys: expected n <= 2^31 - 1, got ", keys.rows);
  RETROKV_CHECK(params.query_block >= 1, "params.query_block: expected >= 1, got ",
                params.query_block);
  RETROKV_CHECK(params.key_block >= 1, "params.key_block: expected >= 1, got ", params.key_block);
  RETROKV_CHECK(params.threads >= 0, "params.threads: expected >= 0, got ", params.threads);
  const auto t0 = std::chrono::steady_clock::now();
  const int64_t m = queries.rows, n = keys.rows, d = keys.cols;
  KnnResult res;
  res.m = m;
  res.k = k;
  res.ids.resize(static_cast<size_t>(m * k));
  res.scores.resize(static_cast<size_t>(m * k));
  const int64_t qb = params.query_block, kb = params.key_block;
  const int64_t n_qblocks = (m + qb - 1) / qb;
  const int threads = params.threads > 0 ? params.threads : omp_get_max_threads();
  ProgressBar* bar = nullptr;
  ProgressBar progress("knn", n_qblocks);
  if (params.show_progress) bar = &progress;
  bool nan_seen = false;

#pragma omp parallel num_threads(threads)
  {
    detail::KnnRowMajor s;
    std::vector<TopKCollector> heaps;
#pragma omp for schedule(dynamic, 1)
    for (int64_t b = 0; b < n_qblocks; ++b) {
      const int64_t q0 = b * qb;
      const int64_t rows = std::min(qb, m - q0);
      detail::KnnMap qm(queries.row(q0), rows, d, Eigen::OuterStride<>(queries.ld));
      heaps.assign(static_cast<size_t>(rows), TopKCollector(k));
      bool local_nan = false;
      for (int64_t k0 = 0; k0 < n; k0 += kb) {
        const int64_t cols = std::min(kb, n - k0);
        detail::KnnMap km(keys.row(k0), cols, d, Eigen::OuterStride<>(keys.ld));
        s.resize(rows, cols);
        s.noalias() = qm * km.transpose();
        for (int64_t i = 0; i < rows; ++i) {
          TopKCollector& h = heaps[i];
          const float* si = s.data() + i * cols;
          int64_t j = 0;
          for (; j < cols && !h.full(); ++j) {
            if (std::isnan(si[j])) {
              local_nan = true;
              continue;
            }
            h.push(si[j], static_cast<int32_t>(k0 + j));
          }
          // Ids arrive in increasing order, so a tie with the threshold loses: strict '>'.
          float thr = h.threshold();
          for (; j < cols; ++j) {
            const float v = si[j];
            if (v > thr) {
              h.push(v, static_cast<int32_t>(k0 + j));
              thr = h.threshold();
            } else if (v != v) {
              local_nan = true;
            }
          }
        }
      }
      for (int64_t i = 0; i < rows; ++i) {
        const std::vector<ScoredId> top = heaps[i].sorted();
        for (int j = 0; j < static_cast<int>(top.size()); ++j) {
          res.ids[(q0 + i) * k + j] = top[j].id;
          res.scores[(q0 + i) * k + j] = top[j].score;
        }
      }
      if (local_nan) {
#pragma omp atomic write
        nan_seen = true;
      }
      if (bar) bar->advance(1);
    }
  }
  progress.finish();
  RETROKV_CHECK(!nan_seen, "queries/keys: expected finite values, a q.k score is NaN");
  res.seconds = std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
  const double flops = 2.0 * static_cast<double>(m) * static_cast<double>(n) * d;
  res.gflops = res.seconds > 0 ? flops / res.seconds * 1e-9 : 0.0;
  return res;
}

}  // namespace retrokv
