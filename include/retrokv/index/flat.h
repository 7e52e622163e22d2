// FlatIndex: exact top-k by inner product over all keys of one KV head (DESIGN.md section 3,
// "Flat"): the oracle every other index's recall is measured against and the speed baseline.
// A GQA group's score of a key is the max over its heads of q.k; ties go to the smaller id.
#pragma once

#include <algorithm>
#include <cmath>
#include <cstdint>
#include <limits>
#include <string>
#include <vector>

#include "retrokv/core/error.h"
#include "retrokv/core/parallel.h"
#include "retrokv/core/topk.h"
#include "retrokv/core/view.h"
#include "retrokv/cpu/simd.h"
#include "retrokv/index/token_index.h"

namespace retrokv {

class FlatIndex : public TokenIndex {
 public:
  /// Rows scanned per parallel task; a search over fewer keys runs on the calling thread.
  static constexpr int64_t kChunkRows = 16384;

  /// Copies keys (n, d) (finite values, n < 2^31).
  explicit FlatIndex(ConstMatrixView<float> keys) : keys_(keys.rows, keys.cols) {
    RETROKV_CHECK(keys.cols >= 1, "keys: expected d >= 1 columns, got ", keys.cols);
    RETROKV_CHECK(keys.cols <= std::numeric_limits<int>::max(), "keys: d too large: ", keys.cols);
    RETROKV_CHECK(keys.rows <= std::numeric_limits<int32_t>::max(),
                  "keys: expected fewer than 2^31 rows, got ", keys.rows);
    for (int64_t i = 0; i < keys.rows; ++i) {
      const float* src = keys.row(i);
      for (int64_t j = 0; j < keys.cols; ++j) {
        RETROKV_CHECK(std::isfinite(src[j]), "keys: expected finite values, got ", src[j], " at (",
                      i, ", ", j, ")");
      }
      std::copy(src, src + keys.cols, keys_.row(i));
    }
  }

  std::string name() const override { return "flat"; }
  int64_t size() const override { return keys_.rows(); }
  int dim() const override { return static_cast<int>(keys_.cols()); }
  int64_t memory_bytes() const override {
    return keys_.rows() * keys_.cols() * static_cast<int64_t>(sizeof(float));
  }
  ConstMatrixView<float> keys() const { return keys_.view(); }

  /// Exact top-k (params.k, 0 <= k <= n) of the group score max_h q_h.k over all n keys, best
  /// first, ties to the smaller id; queries (g, d). scores are the group scores (unscaled);
  /// keys_scanned = n. Deterministic: per-chunk candidates are merged in one fixed order.
  SearchResult search(ConstMatrixView<float> queries, const SearchParams& params) const override {
    const int64_t n = keys_.rows();
    const int d = dim();
    RETROKV_CHECK(queries.rows >= 1, "queries: expected at least one query (g, d), got ",
                  queries.rows, " rows");
    RETROKV_CHECK(queries.cols == d, "queries: expected ", d, " columns, got ", queries.cols);
    RETROKV_CHECK(params.k >= 0 && params.k <= n, "k: expected 0 <= k <= n (", n, "), got ",
                  params.k);
    for (int64_t h = 0; h < queries.rows; ++h) {
      for (int64_t j = 0; j < d; ++j) {
        RETROKV_CHECK(std::isfinite(queries(h, j)), "queries: expected finite values, got ",
                      queries(h, j), " at (", h, ", ", j, ")");
      }
    }
    const int g = static_cast<int>(queries.rows);
    const int k = params.k;
    const cpu::RowKernels<float> rk = cpu::row_kernels<float>();
    const int64_t chunks = n == 0 ? 0 : num_chunks(n, kChunkRows);
    std::vector<std::vector<ScoredId>> lists(static_cast<size_t>(chunks));
    parallel_for_chunks(n, kChunkRows, [&](int64_t c, int64_t begin, int64_t end) {
      constexpr int kBlock = 256;
      std::vector<float> s(static_cast<size_t>(g) * kBlock);
      TopKCollector top(k);
      for (int64_t b = begin; b < end; b += kBlock) {
        const int nb = static_cast<int>(std::min<int64_t>(kBlock, end - b));
        const cpu::RowSource<float> rows{keys_.data(), keys_.cols(), nullptr, b};
        rk.dot_rows(queries.data, queries.ld, g, rows, nb, d, s.data(), kBlock, rows, 0);
        for (int h = 1; h < g; ++h) {
          for (int i = 0; i < nb; ++i) s[i] = std::max(s[i], s[h * kBlock + i]);
        }
        // Ids rise within a chunk, so a candidate equal to the threshold can never win its tie.
        for (int i = 0; i < nb; ++i) {
          if (s[i] > top.threshold() || !top.full()) top.push(s[i], static_cast<int32_t>(b + i));
        }
      }
      lists[c] = top.sorted();
    });
    const std::vector<ScoredId> best = merge_top_k(lists, k);
    SearchResult r;
    r.ids.reserve(best.size());
    r.scores.reserve(best.size());
    for (const ScoredId& c : best) {
      r.ids.push_back(c.id);
      r.scores.push_back(c.score);
    }
    r.keys_scanned = n;
    return r;
  }

 private:
  Matrix<float> keys_;
};

}  // namespace retrokv
