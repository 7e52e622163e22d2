// Building blocks of the RoarGraph index (DESIGN.md section 3; RetrievalAttention section 4):
// inner-product scoring of a GQA group, per-thread epoch-tagged visited marks, the best-first
// beam search of width ef over any adjacency, and the occlusion (RNG) pruning rule.
#pragma once

#include <algorithm>
#include <cstdint>
#include <limits>
#include <queue>
#include <vector>

#include "retrokv/core/config.h"
#include "retrokv/core/topk.h"

namespace retrokv::detail {

/// q.k over d floats. Sixteen independent partial sums vectorise under any -march and keep
/// the summation order fixed, so the same pair always gives the same float.
inline float roar_dot(const float* RETROKV_RESTRICT a, const float* RETROKV_RESTRICT b,
                      int64_t d) {
  float acc[16] = {};
  int64_t j = 0;
  for (; j + 16 <= d; j += 16) {
    for (int l = 0; l < 16; ++l) acc[l] += a[j + l] * b[j + l];
  }
  for (int l = 0; j < d; ++j, ++l) acc[l] += a[j] * b[j];
  for (int w = 8; w >= 1; w /= 2) {
    for (int l = 0; l < w; ++l) acc[l] += acc[l + w];
  }
  return acc[0];
}

/// The score of key `k` for a group of g queries (g, d) stored contiguously: max over heads.
inline float roar_group_score(const float* queries, int g, const float* k, int64_t d) {
  float s = roar_dot(queries, k, d);
  for (int h = 1; h < g; ++h) s = std::max(s, roar_dot(queries + h * d, k, d));
  return s;
}

/// Visited marks for one thread: a node is visited iff tag[node] == epoch. Starting a search
/// bumps the epoch (O(1)) instead of clearing n flags; the array is cleared only on wrap-around.
class VisitedTags {
 public:
  void start(int64_t n) {
    if (static_cast<int64_t>(tag_.size()) < n) tag_.resize(static_cast<size_t>(n), 0);
    if (++epoch_ == 0) {
      std::fill(tag_.begin(), tag_.end(), 0);
      epoch_ = 1;
    }
  }
  /// Marks `v` and returns whether it was already marked.
  bool test_and_set(int32_t v) {
    if (tag_[v] == epoch_) return true;
    tag_[v] = epoch_;
    return false;
  }

 private:
  std::vector<uint16_t> tag_;
  uint16_t epoch_ = 0;
};

/// The calling thread's visited marks (searches on one thread never nest).
inline VisitedTags& thread_visited() {
  thread_local VisitedTags tags;
  return tags;
}

/// Orders a heap so that its top is the best candidate (for the frontier).
struct BestOnTop {
  bool operator()(const ScoredId& a, const ScoredId& b) const { return better(b, a); }
};
/// Orders a heap so that its top is the worst kept candidate (for the result set).
struct WorstOnTop {
  bool operator()(const ScoredId& a, const ScoredId& b) const { return better(a, b); }
};

/// Best-first beam search of width ef (HNSW's search_layer, NSG's greedy search).
/// keys: (n, d) contiguous; queries: (g, d) contiguous, group score = max over heads;
/// neighbours(v) returns a pair (const int32_t* ids, int count). Seeds outside [0, n) must be
/// filtered by the caller. Returns up to ef candidates best first (ties by smaller id), and adds
/// the number of keys scored to *scanned. Deterministic for the same inputs.
template <typename Neighbours>
std::vector<ScoredId> beam_search(const float* keys, int64_t n, int64_t d, const float* queries,
                                  int g, const int32_t* seeds, int n_seeds, int ef,
                                  Neighbours&& neighbours, int64_t* scanned) {
  VisitedTags& visited = thread_visited();
  visited.start(n);
  std::priority_queue<ScoredId, std::vector<ScoredId>, BestOnTop> frontier;
  std::priority_queue<ScoredId, std::vector<ScoredId>, WorstOnTop> results;
  int64_t count = 0;
  auto offer = [&](int32_t v) {
    const ScoredId c{roar_group_score(queries, g, keys + v * d, d), v};
    ++count;
    if (static_cast<int>(results.size()) < ef || better(c, results.top())) {
      frontier.push(c);
      results.push(c);
      if (static_cast<int>(results.size()) > ef) results.pop();
    }
  };
  for (int i = 0; i < n_seeds; ++i) {
    if (!visited.test_and_set(seeds[i])) offer(seeds[i]);
  }
  while (!frontier.empty()) {
    const ScoredId c = frontier.top();
    if (static_cast<int>(results.size()) >= ef && better(results.top(), c)) break;
    frontier.pop();
    const auto [ids, deg] = neighbours(c.id);
    for (int j = 0; j < deg; ++j) {
      if (j + 1 < deg) __builtin_prefetch(keys + int64_t{ids[j + 1]} * d);
      if (!visited.test_and_set(ids[j])) offer(ids[j]);
    }
  }
  *scanned += count;
  std::vector<ScoredId> out(results.size());
  for (size_t i = out.size(); i-- > 0;) {
    out[i] = results.top();
    results.pop();
  }
  return out;
}

/// Occlusion (RNG) pruning with inner product as similarity: walks `candidates` in the given
/// order and keeps c unless an already kept r "occludes" it, i.e. r.c > base.c (c is closer to a
/// kept neighbour than to the base). Skips `base` itself, duplicates and ids in `exclude`; stops
/// at `max_keep`. keys: (n, d) contiguous.
inline std::vector<int32_t> occlusion_prune(const float* keys, int64_t d, int32_t base,
                                            const std::vector<int32_t>& candidates, int max_keep,
                                            const std::vector<int32_t>& exclude = {}) {
  std::vector<int32_t> kept;
  kept.reserve(static_cast<size_t>(max_keep));
  const float* bk = keys + int64_t{base} * d;
  for (int32_t c : candidates) {
    if (static_cast<int>(kept.size()) >= max_keep) break;
    if (c == base) continue;
    if (std::find(kept.begin(), kept.end(), c) != kept.end()) continue;
    if (std::find(exclude.begin(), exclude.end(), c) != exclude.end()) continue;
    const float* ck = keys + int64_t{c} * d;
    const float s_base = roar_dot(bk, ck, d);
    bool occluded = false;
    for (int32_t r : kept) {
      if (roar_dot(keys + int64_t{r} * d, ck, d) > s_base) {
        occluded = true;
        break;
      }
    }
    if (!occluded) kept.push_back(c);
  }
  return kept;
}

}  // namespace retrokv::detail
