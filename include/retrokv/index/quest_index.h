// Quest-style block selection (Tang et al., ICML 2024), the page-level baseline of issue 5: keys
// in fixed pages keep per-dimension min/max bounds; a query scores a page by the upper bound
// Σ_i max(q_i min_i, q_i max_i) of q.k over the page and attends to the top pages exactly.
#pragma once

#include <algorithm>
#include <cmath>
#include <cstdint>
#include <numeric>
#include <string>
#include <vector>

#include "retrokv/core/error.h"
#include "retrokv/core/view.h"
#include "retrokv/index/token_index.h"

namespace retrokv {

struct QuestParams {
  int page_size = 16;  ///< tokens per page (the last page may be shorter)
};

/// Quest page bounds over the keys (n, d) of one KV head. Holds only the bounds: search re-reads
/// keys through the view given at build, which must outlive the index. search() is const and
/// safe from many threads.
class QuestIndex : public TokenIndex {
 public:
  QuestIndex(ConstMatrixView<float> keys, const QuestParams& params = {})
      : keys_(keys), page_size_(params.page_size) {
    RETROKV_CHECK(params.page_size >= 1, "params.page_size: expected >= 1, got ", params.page_size);
    RETROKV_CHECK(keys.cols >= 1, "keys: expected d >= 1 columns, got ", keys.cols);
    const int64_t n = keys.rows, d = keys.cols;
    const int64_t pages = n_pages();
    min_.assign(static_cast<size_t>(pages * d), INFINITY);
    max_.assign(static_cast<size_t>(pages * d), -INFINITY);
    for (int64_t i = 0; i < n; ++i) {
      const int64_t p = i / page_size_;
      for (int64_t t = 0; t < d; ++t) {
        const float k = keys(i, t);
        RETROKV_CHECK(std::isfinite(k), "keys: expected finite values, got ", k, " at (", i, ", ",
                      t, ")");
        min_[p * d + t] = std::min(min_[p * d + t], k);
        max_[p * d + t] = std::max(max_[p * d + t], k);
      }
    }
  }

  std::string name() const override { return "quest"; }
  int64_t size() const override { return keys_.rows; }
  int dim() const override { return static_cast<int>(keys_.cols); }
  int page_size() const { return page_size_; }
  int64_t n_pages() const { return (keys_.rows + page_size_ - 1) / page_size_; }
  /// Tokens [page_begin(p), page_end(p)) form page p.
  int64_t page_begin(int64_t p) const { return p * page_size_; }
  int64_t page_end(int64_t p) const { return std::min(keys_.rows, (p + 1) * page_size_); }

  /// Upper bound of q.k over page p for one query q[d] (a page's bound is never below the
  /// true max of q.k over its tokens).
  float page_bound(const float* q, int64_t p) const {
    const int64_t d = keys_.cols;
    float s = 0.f;
    for (int64_t t = 0; t < d; ++t) s += std::max(q[t] * min_[p * d + t], q[t] * max_[p * d + t]);
    return s;
  }

  /// The n_pages_wanted best pages for a GQA group q (g, d), best first; a page's group score is
  /// the max of its bound over the heads. Ties go to the smaller page.
  std::vector<int32_t> top_pages(ConstMatrixView<float> q, int64_t n_pages_wanted) const {
    check_queries(q, "q");
    RETROKV_CHECK(n_pages_wanted >= 0, "n_pages_wanted: expected >= 0, got ", n_pages_wanted);
    const int64_t pages = n_pages();
    const int64_t want = std::min(n_pages_wanted, pages);
    std::vector<float> score(pages, -INFINITY);
    for (int64_t p = 0; p < pages; ++p)
      for (int64_t h = 0; h < q.rows; ++h) score[p] = std::max(score[p], page_bound(q.row(h), p));
    std::vector<int32_t> order(pages);
    std::iota(order.begin(), order.end(), 0);
    auto better = [&](int32_t a, int32_t b) {
      return score[a] > score[b] || (score[a] == score[b] && a < b);
    };
    std::partial_sort(order.begin(), order.begin() + want, order.end(), better);
    order.resize(want);
    return order;
  }

  /// Tokens of the top ceil(k / page_size) pages, ranked by the group score (max over heads of
  /// q.k), best first, cut to k.
  SearchResult search(ConstMatrixView<float> queries, const SearchParams& params) const override {
    RETROKV_CHECK(params.k >= 0, "params.k: expected >= 0, got ", params.k);
    const auto pages = top_pages(queries, (params.k + page_size_ - 1) / page_size_);
    SearchResult res;
    std::vector<std::pair<float, int32_t>> cand;
    for (int32_t p : pages) {
      for (int64_t i = page_begin(p); i < page_end(p); ++i) {
        float best = -INFINITY;
        for (int64_t h = 0; h < queries.rows; ++h) {
          float s = 0.f;
          for (int64_t t = 0; t < keys_.cols; ++t) s += queries(h, t) * keys_(i, t);
          best = std::max(best, s);
        }
        cand.push_back({best, static_cast<int32_t>(i)});
      }
    }
    std::sort(cand.begin(), cand.end(), [](const auto& a, const auto& b) {
      return a.first > b.first || (a.first == b.first && a.second < b.second);
    });
    if (static_cast<int64_t>(cand.size()) > params.k) cand.resize(params.k);
    for (const auto& c : cand) {
      res.ids.push_back(c.second);
      res.scores.push_back(c.first);
    }
    // Bounds cost about two keys' worth of work per page; count them as keys scanned.
    res.keys_scanned = 2 * n_pages() + static_cast<int64_t>(pages.size()) * page_size_;
    return res;
  }

  int64_t memory_bytes() const override {
    return static_cast<int64_t>((min_.size() + max_.size()) * sizeof(float));
  }

 private:
  void check_queries(ConstMatrixView<float> q, const char* name) const {
    RETROKV_CHECK(q.rows >= 1, name, ": expected at least one query head, got ", q.rows);
    RETROKV_CHECK(q.cols == keys_.cols, name, ": expected ", keys_.cols, " columns (d), got ",
                  q.cols);
    for (int64_t h = 0; h < q.rows; ++h)
      for (int64_t t = 0; t < q.cols; ++t)
        RETROKV_CHECK(std::isfinite(q(h, t)), name, ": expected finite values, got ", q(h, t),
                      " at (", h, ", ", t, ")");
  }

  ConstMatrixView<float> keys_;
  int page_size_;
  std::vector<float> min_, max_;  // (pages, d)
};

}  // namespace retrokv
