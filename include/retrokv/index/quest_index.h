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

#include "retrokv/core/config.h"
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
        min_[t * pages + p] = std::min(min_[t * pages + p], k);
        max_[t * pages + p] = std::max(max_[t * pages + p], k);
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
    const int64_t d = keys_.cols, pages = n_pages();
    float s = 0.f;
    for (int64_t t = 0; t < d; ++t)
      s += std::max(q[t] * min_[t * pages + p], q[t] * max_[t * pages + p]);
    return s;
  }

  /// out[h * n_pages() + p] = page_bound(q.row(h), p) for every head of q (g, d) and page, bit
  /// for bit. The bounds are stored transposed (d, pages) so the loop runs across pages in SIMD
  /// lanes while each page's sum keeps page_bound's order over t; the g heads share one pass
  /// over the bounds. (page_bound per page and head is a chain of d dependent adds: it was most
  /// of a quest step.)
  void page_bounds(ConstMatrixView<float> q, float* out) const {
    const int64_t d = keys_.cols, pages = n_pages(), g = q.rows;
    std::fill(out, out + g * pages, 0.f);
    for (int64_t t = 0; t < d; ++t) {
      const float* RETROKV_RESTRICT mn = min_.data() + t * pages;
      const float* RETROKV_RESTRICT mx = max_.data() + t * pages;
      for (int64_t h = 0; h < g; ++h) {
        const float qt = q(h, t);
        float* RETROKV_RESTRICT o = out + h * pages;
        for (int64_t p = 0; p < pages; ++p) o[p] += std::max(qt * mn[p], qt * mx[p]);
      }
    }
  }

  /// The n_pages_wanted best pages for a GQA group q (g, d), best first; a page's group score is
  /// the max of its bound over the heads. Ties go to the smaller page.
  std::vector<int32_t> top_pages(ConstMatrixView<float> q, int64_t n_pages_wanted) const {
    check_queries(q, "q");
    RETROKV_CHECK(n_pages_wanted >= 0, "n_pages_wanted: expected >= 0, got ", n_pages_wanted);
    const int64_t pages = n_pages();
    std::vector<float> bounds(static_cast<size_t>(q.rows * pages));
    page_bounds(q, bounds.data());
    std::vector<float> score(bounds.begin(), bounds.begin() + pages);
    for (int64_t h = 1; h < q.rows; ++h)
      for (int64_t p = 0; p < pages; ++p) score[p] = std::max(score[p], bounds[h * pages + p]);
    return best_of(score.data(), pages, n_pages_wanted);
  }

  /// Tokens of the top ceil(k / page_size) pages, ranked by the group score (max over heads of
  /// q.k), best first, cut to k.
  SearchResult search(ConstMatrixView<float> queries, const SearchParams& params) const override {
    RETROKV_CHECK(params.k >= 0, "params.k: expected >= 0, got ", params.k);
    const auto pages = top_pages(queries, (params.k + page_size_ - 1) / page_size_);
    SearchResult res = rank_tokens(queries, pages, params.k);
    // Bounds cost about two keys' worth of work per page; count them as keys scanned.
    res.keys_scanned = 2 * n_pages() + static_cast<int64_t>(pages.size()) * page_size_;
    return res;
  }

  /// search(queries.slice_rows(h, 1), {k}) for every head h of the group (g, d) in one call, with
  /// identical ids and scores: the store ranks each head separately and merges round-robin, and
  /// this shares one pass over the page bounds. keys_scanned (in result 0) counts that pass once
  /// (2 per page) plus every distinct page read.
  std::vector<SearchResult> search_heads(ConstMatrixView<float> queries, int k) const {
    check_queries(queries, "queries");
    RETROKV_CHECK(k >= 0, "k: expected >= 0, got ", k);
    const int64_t pages = n_pages(), g = queries.rows;
    std::vector<float> bounds(static_cast<size_t>(g * pages));
    page_bounds(queries, bounds.data());
    std::vector<SearchResult> out(static_cast<size_t>(g));
    std::vector<uint8_t> read(static_cast<size_t>(pages), 0);
    int64_t distinct = 0;
    for (int64_t h = 0; h < g; ++h) {
      const std::vector<int32_t> top =
          best_of(bounds.data() + h * pages, pages, (k + page_size_ - 1) / page_size_);
      for (int32_t p : top) distinct += read[p] ? 0 : (read[p] = 1);
      out[h] = rank_tokens(queries.slice_rows(h, 1), top, k);
    }
    out[0].keys_scanned = 2 * pages + distinct * page_size_;
    return out;
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

  /// The `want` best of score[0..pages) (ties: smaller page), best first: nth_element and a sort
  /// of the kept part, the same pages in the same order as partial_sort over all pages.
  static std::vector<int32_t> best_of(const float* score, int64_t pages, int64_t want) {
    want = std::min(want, pages);
    std::vector<int32_t> order(static_cast<size_t>(pages));
    std::iota(order.begin(), order.end(), 0);
    auto better = [score](int32_t a, int32_t b) {
      return score[a] > score[b] || (score[a] == score[b] && a < b);
    };
    if (want < pages) {
      std::nth_element(order.begin(), order.begin() + want, order.end(), better);
      order.resize(static_cast<size_t>(want));
    }
    std::sort(order.begin(), order.end(), better);
    return order;
  }

  /// The best k tokens of `pages` by the group score (max over heads of q.k summed in t order),
  /// best first, ties by smaller id. Tokens of a page are scored together: their d-long sums are
  /// independent chains (same arithmetic per token, several in flight).
  SearchResult rank_tokens(ConstMatrixView<float> queries, const std::vector<int32_t>& pages,
                           int64_t k) const {
    constexpr int kLanes = 16;
    std::vector<std::pair<float, int32_t>> cand;
    const int64_t d = keys_.cols;
    for (int32_t p : pages) {
      for (int64_t i0 = page_begin(p); i0 < page_end(p); i0 += kLanes) {
        const int lanes = static_cast<int>(std::min<int64_t>(kLanes, page_end(p) - i0));
        float best[kLanes];
        std::fill(best, best + kLanes, -INFINITY);
        for (int64_t h = 0; h < queries.rows; ++h) {
          float acc[kLanes] = {};
          for (int64_t t = 0; t < d; ++t) {
            const float qt = queries(h, t);
            for (int j = 0; j < lanes; ++j) acc[j] += qt * keys_(i0 + j, t);
          }
          for (int j = 0; j < lanes; ++j) best[j] = std::max(best[j], acc[j]);
        }
        for (int j = 0; j < lanes; ++j) cand.push_back({best[j], static_cast<int32_t>(i0 + j)});
      }
    }
    auto better = [](const auto& a, const auto& b) {
      return a.first > b.first || (a.first == b.first && a.second < b.second);
    };
    if (static_cast<int64_t>(cand.size()) > k) {
      std::nth_element(cand.begin(), cand.begin() + k, cand.end(), better);
      cand.resize(static_cast<size_t>(k));
    }
    std::sort(cand.begin(), cand.end(), better);
    SearchResult res;
    for (const auto& c : cand) {
      res.ids.push_back(c.second);
      res.scores.push_back(c.first);
    }
    return res;
  }

  ConstMatrixView<float> keys_;
  int page_size_;
  std::vector<float> min_, max_;  // (d, pages): transposed, see page_bounds
};

}  // namespace retrokv
