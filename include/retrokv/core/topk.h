// Top-k selection by score with deterministic tie-breaking (DESIGN.md section 2, "core"): the
// exact top-k of the Flat oracle, the bounded heap that graph/IVF/wave searches collect into, and
// the merge of per-thread or per-segment candidate lists. Same input -> same output, always.
#pragma once

#include <algorithm>
#include <cmath>
#include <cstdint>
#include <limits>
#include <vector>

#include "retrokv/core/config.h"
#include "retrokv/core/error.h"

namespace retrokv {

/// A candidate: its score (higher is better, e.g. q.k) and its token id.
struct ScoredId {
  float score;
  int32_t id;
  // Spelled out (not `= default`) so the header also compiles as C++17 under nvcc.
  friend bool operator==(const ScoredId& a, const ScoredId& b) {
    return a.score == b.score && a.id == b.id;
  }
};

/// Strict "better" order: higher score first, ties broken by smaller id (deterministic).
/// It is a strict total order on distinct ids, so every selection below has one right answer.
inline bool better(const ScoredId& a, const ScoredId& b) {
  return a.score > b.score || (a.score == b.score && a.id < b.id);
}

/// Bounded min-heap collecting the best k of a stream (used by scans and graph searches).
/// The heap top is the worst kept candidate, so a push costs O(1) when it does not qualify.
class TopKCollector {
 public:
  /// k >= 0. k == 0 keeps nothing (full() is true, threshold() is +inf).
  explicit TopKCollector(int k) : k_(k) {
    RETROKV_CHECK(k >= 0, "k: expected >= 0, got ", k);
    heap_.reserve(static_cast<size_t>(std::min(k, 1 << 16)));  // k may exceed any real stream
  }

  /// Offers (score, id). A NaN score throws retrokv::Error naming "score": NaN has no place in
  /// the order and would silently corrupt the heap.
  void push(float score, int32_t id) {
    RETROKV_CHECK(!std::isnan(score), "score: expected a number, got NaN (id ", id, ")");
    const ScoredId c{score, id};
    if (static_cast<int>(heap_.size()) < k_) {
      heap_.push_back(c);
      std::push_heap(heap_.begin(), heap_.end(), better);  // top = worst under `better`
    } else if (k_ > 0 && better(c, heap_.front())) {
      std::pop_heap(heap_.begin(), heap_.end(), better);
      heap_.back() = c;
      std::push_heap(heap_.begin(), heap_.end(), better);
    }
  }

  /// Worst kept score: a candidate scoring below it cannot enter. -inf until full; +inf for k=0.
  float threshold() const {
    if (k_ == 0) return std::numeric_limits<float>::infinity();
    if (!full()) return -std::numeric_limits<float>::infinity();
    return heap_.front().score;
  }
  bool full() const { return static_cast<int>(heap_.size()) >= k_; }
  int size() const { return static_cast<int>(heap_.size()); }
  int k() const { return k_; }

  /// The kept candidates, best first.
  std::vector<ScoredId> sorted() const {
    std::vector<ScoredId> out = heap_;
    std::sort(out.begin(), out.end(), better);
    return out;
  }
  void clear() { heap_.clear(); }

 private:
  int k_;
  std::vector<ScoredId> heap_;
};

/// Top-k of scores[0..n) (ids are 0..n-1 + id_offset), best first. k > n throws retrokv::Error
/// naming k; NaN scores throw naming "scores".
///
/// One pass with a threshold: candidates above the current k-th best go to a buffer of 2k;
/// when it fills, nth_element keeps the best k and raises the threshold. O(n) expected, and
/// the common case (a score below the threshold) is one compare. Ids arrive in increasing
/// order, so a later score that ties the threshold loses the tie and is skipped (strict '>').
inline std::vector<ScoredId> top_k(const float* scores, int64_t n, int k, int32_t id_offset = 0) {
  RETROKV_CHECK(n >= 0, "n: expected >= 0, got ", n);
  RETROKV_CHECK(k >= 0 && k <= n, "k: expected 0 <= k <= n (", n, "), got ", k);
  RETROKV_CHECK(scores != nullptr || n == 0, "scores: null pointer for n = ", n);
  RETROKV_CHECK(n == 0 || n - 1 <= int64_t{std::numeric_limits<int32_t>::max()} - id_offset,
                "id_offset: ids ", id_offset, " + [0, ", n, ") overflow int32");
  if (k == 0) {
    for (int64_t i = 0; i < n; ++i) {
      RETROKV_CHECK(!std::isnan(scores[i]), "scores: expected no NaN, got NaN at index ", i);
    }
    return {};
  }
  const size_t cap = 2 * static_cast<size_t>(k);
  std::vector<ScoredId> buf;
  buf.reserve(std::min<size_t>(cap, static_cast<size_t>(n)));
  // The first k candidates enter unconditionally (so -inf scores are kept when needed).
  int64_t i = 0;
  for (; i < k; ++i) {
    RETROKV_CHECK(!std::isnan(scores[i]), "scores: expected no NaN, got NaN at index ", i);
    buf.push_back({scores[i], static_cast<int32_t>(i + id_offset)});
  }
  float threshold = -std::numeric_limits<float>::infinity();
  for (; i < n; ++i) {
    const float s = scores[i];
    if (s > threshold) {
      buf.push_back({s, static_cast<int32_t>(i + id_offset)});
      if (buf.size() == cap) {
        std::nth_element(buf.begin(), buf.begin() + (k - 1), buf.end(), better);
        buf.resize(static_cast<size_t>(k));
        threshold = buf[k - 1].score;
      }
    } else if (RETROKV_UNLIKELY(std::isnan(s))) {
      RETROKV_FAIL("scores: expected no NaN, got NaN at index ", i);
    }
  }
  if (buf.size() > static_cast<size_t>(k)) {
    std::nth_element(buf.begin(), buf.begin() + (k - 1), buf.end(), better);
    buf.resize(static_cast<size_t>(k));
  }
  std::sort(buf.begin(), buf.end(), better);
  return buf;
}

/// Merges several best-first lists into the best k (dedups ids, keeping the best score).
/// Returns min(k, distinct ids) candidates, best first. The lists need not be sorted.
inline std::vector<ScoredId> merge_top_k(const std::vector<std::vector<ScoredId>>& lists, int k) {
  RETROKV_CHECK(k >= 0, "k: expected >= 0, got ", k);
  std::vector<ScoredId> all;
  size_t total = 0;
  for (const auto& l : lists) total += l.size();
  all.reserve(total);
  for (const auto& l : lists) {
    for (const ScoredId& c : l) {
      RETROKV_CHECK(!std::isnan(c.score), "lists: expected no NaN score, got NaN for id ", c.id);
      all.push_back(c);
    }
  }
  // Group by id with the best copy first, keep one per id.
  std::sort(all.begin(), all.end(), [](const ScoredId& a, const ScoredId& b) {
    return a.id < b.id || (a.id == b.id && a.score > b.score);
  });
  all.erase(std::unique(all.begin(), all.end(),
                        [](const ScoredId& a, const ScoredId& b) { return a.id == b.id; }),
            all.end());
  const size_t keep = std::min(all.size(), static_cast<size_t>(k));
  std::partial_sort(all.begin(), all.begin() + keep, all.end(), better);
  all.resize(keep);
  return all;
}

/// The ids of a candidate list, in order.
inline std::vector<int32_t> ids_of(const std::vector<ScoredId>& v) {
  std::vector<int32_t> out(v.size());
  for (size_t i = 0; i < v.size(); ++i) out[i] = v[i].id;
  return out;
}

}  // namespace retrokv
