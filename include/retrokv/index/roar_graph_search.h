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

// q.k over d floats. Sixteen independent partial sums and a fixed reduction tree: the same
// arithmetic (no FMA contraction under ISO C++ mode) whatever vector width the compiler maps the
// lanes to, so the AVX-512, AVX2 and baseline clones return bit-identical results and a saved
// graph does not depend on the machine that built it. Chosen once at run time.
#define RETROKV_ROAR_DOT_BODY                                   \
  float acc[16] = {};                                           \
  int64_t j = 0;                                                \
  for (; j + 16 <= d; j += 16) {                                \
    for (int l = 0; l < 16; ++l) acc[l] += a[j + l] * b[j + l]; \
  }                                                             \
  for (int l = 0; j < d; ++j, ++l) acc[l] += a[j] * b[j];       \
  for (int w = 8; w >= 1; w /= 2) {                             \
    for (int l = 0; l < w; ++l) acc[l] += acc[l + w];           \
  }                                                             \
  return acc[0];

inline float roar_dot_base(const float* RETROKV_RESTRICT a, const float* RETROKV_RESTRICT b,
                           int64_t d) {
  RETROKV_ROAR_DOT_BODY
}
#if defined(__x86_64__) && defined(__GNUC__)
__attribute__((target("avx2"))) inline float roar_dot_avx2(const float* RETROKV_RESTRICT a,
                                                           const float* RETROKV_RESTRICT b,
                                                           int64_t d) {
  RETROKV_ROAR_DOT_BODY
}
__attribute__((target("avx512f"))) inline float roar_dot_avx512(const float* RETROKV_RESTRICT a,
                                                                const float* RETROKV_RESTRICT b,
                                                                int64_t d) {
  RETROKV_ROAR_DOT_BODY
}
#endif
#undef RETROKV_ROAR_DOT_BODY

using RoarDotFn = float (*)(const float*, const float*, int64_t);

inline RoarDotFn pick_roar_dot() {
#if defined(__x86_64__) && defined(__GNUC__)
  __builtin_cpu_init();
  if (__builtin_cpu_supports("avx512f")) return &roar_dot_avx512;
  if (__builtin_cpu_supports("avx2")) return &roar_dot_avx2;
#endif
  return &roar_dot_base;
}

inline float roar_dot(const float* a, const float* b, int64_t d) {
  static const RoarDotFn fn = pick_roar_dot();
  return fn(a, b, d);
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
/// the number of keys scored to *scanned. Deterministic for the same inputs. With sq_norms (the
/// keys' squared norms) the score is 2 q.k - |k|^2, i.e. the search is for the nearest keys in
/// L2 (used by the build's key-to-key searches).
template <typename Neighbours>
std::vector<ScoredId> beam_search(const float* keys, int64_t n, int64_t d, const float* queries,
                                  int g, const int32_t* seeds, int n_seeds, int ef,
                                  Neighbours&& neighbours, int64_t* scanned,
                                  const float* sq_norms = nullptr) {
  VisitedTags& visited = thread_visited();
  visited.start(n);
  std::priority_queue<ScoredId, std::vector<ScoredId>, BestOnTop> frontier;
  std::priority_queue<ScoredId, std::vector<ScoredId>, WorstOnTop> results;
  int64_t count = 0;
  thread_local std::vector<int32_t> fresh;
  auto offer = [&](int32_t v) {
    float score = roar_group_score(queries, g, keys + v * d, d);
    if (sq_norms) score = 2.f * score - sq_norms[v];
    const ScoredId c{score, v};
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
    // Mark and prefetch every unvisited neighbour's row first, then score them: the rows are
    // scattered in memory, so issuing all their loads up front hides most of the latency.
    fresh.clear();
    for (int j = 0; j < deg; ++j) {
      if (visited.test_and_set(ids[j])) continue;
      fresh.push_back(ids[j]);
      const char* row = reinterpret_cast<const char*>(keys + int64_t{ids[j]} * d);
      for (int64_t b = 0; b < d * int64_t{sizeof(float)}; b += 64) __builtin_prefetch(row + b);
    }
    for (int32_t v : fresh) offer(v);
  }
  *scanned += count;
  std::vector<ScoredId> out(results.size());
  for (size_t i = out.size(); i-- > 0;) {
    out[i] = results.top();
    results.pop();
  }
  return out;
}

/// Occlusion (RNG) pruning: walks `candidates` in the given order and keeps c unless an already
/// kept r "occludes" it (c is closer to r than to the base). With `sq_norms` == nullptr closeness
/// is inner product (occluded iff r.c > base.c); otherwise squared L2 from the keys' squared
/// norms (occluded iff |r - c|^2 < |base - c|^2), which stays meaningful when key norms vary a
/// lot (with raw inner product a large-norm neighbour occludes nearly everything). Skips `base`,
/// duplicates and ids in `exclude`; stops at `max_keep`. keys: (n, d) contiguous.
inline std::vector<int32_t> occlusion_prune(const float* keys, int64_t d, int32_t base,
                                            const std::vector<int32_t>& candidates, int max_keep,
                                            const std::vector<int32_t>& exclude = {},
                                            const float* sq_norms = nullptr) {
  std::vector<int32_t> kept;
  kept.reserve(static_cast<size_t>(max_keep));
  const float* bk = keys + int64_t{base} * d;
  for (int32_t c : candidates) {
    if (static_cast<int>(kept.size()) >= max_keep) break;
    if (c == base) continue;
    if (std::find(kept.begin(), kept.end(), c) != kept.end()) continue;
    if (std::find(exclude.begin(), exclude.end(), c) != exclude.end()) continue;
    const float* ck = keys + int64_t{c} * d;
    // Both rules compare "closeness to c" of r and base; for L2 the |c|^2 term cancels.
    const float s_base =
        sq_norms ? 2.f * roar_dot(bk, ck, d) - sq_norms[base] : roar_dot(bk, ck, d);
    bool occluded = false;
    for (int32_t r : kept) {
      const float s_r = sq_norms ? 2.f * roar_dot(keys + int64_t{r} * d, ck, d) - sq_norms[r]
                                 : roar_dot(keys + int64_t{r} * d, ck, d);
      if (s_r > s_base) {
        occluded = true;
        break;
      }
    }
    if (!occluded) kept.push_back(c);
  }
  return kept;
}

}  // namespace retrokv::detail
