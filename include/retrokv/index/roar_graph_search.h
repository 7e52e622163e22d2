// Building blocks of the RoarGraph index (DESIGN.md section 3; RetrievalAttention section 4):
// inner-product scoring of a GQA group (run-time dispatched SIMD, batched over scattered rows),
// per-thread epoch-tagged visited marks, the best-first beam search of width ef over any
// adjacency (optionally returning the top-k of every key it scored), and the occlusion (RNG)
// pruning rule.
#pragma once

#include <algorithm>
#include <cstdint>
#include <functional>
#include <limits>
#include <vector>

#include "retrokv/core/config.h"
#include "retrokv/core/topk.h"

namespace retrokv::detail {

// q.k over d floats. Sixteen independent partial sums and a fixed reduction tree: the same
// arithmetic (no FMA contraction under ISO C++ mode) whatever vector width the compiler maps the
// lanes to, so the AVX-512, AVX2 and baseline clones return bit-identical results and a saved
// graph does not depend on the machine that built it. Chosen once at run time.
#define RETROKV_ROAR_DOT_KERNEL(a, b, d, result)                      \
  do {                                                                \
    float acc[16] = {};                                               \
    int64_t j = 0;                                                    \
    for (; j + 16 <= (d); j += 16) {                                  \
      for (int l = 0; l < 16; ++l) acc[l] += (a)[j + l] * (b)[j + l]; \
    }                                                                 \
    for (int l = 0; j < (d); ++j, ++l) acc[l] += (a)[j] * (b)[j];     \
    for (int w = 8; w >= 1; w /= 2) {                                 \
      for (int l = 0; l < w; ++l) acc[l] += acc[l + w];               \
    }                                                                 \
    (result) = acc[0];                                                \
  } while (0)

// One query against `count` scattered key rows: out[i] = roar_dot(q, keys + ids[i] * d, d), bit
// for bit. One indirect call per batch instead of per row, and q stays in registers across rows.
#define RETROKV_ROAR_DOT_ROWS_BODY                                \
  for (int i = 0; i < count; ++i) {                               \
    const float* RETROKV_RESTRICT b = keys + int64_t{ids[i]} * d; \
    RETROKV_ROAR_DOT_KERNEL(q, b, d, out[i]);                     \
  }

inline float roar_dot_base(const float* RETROKV_RESTRICT a, const float* RETROKV_RESTRICT b,
                           int64_t d) {
  float r;
  RETROKV_ROAR_DOT_KERNEL(a, b, d, r);
  return r;
}
inline void roar_dot_rows_base(const float* RETROKV_RESTRICT q, const float* RETROKV_RESTRICT keys,
                               int64_t d, const int32_t* ids, int count, float* out) {
  RETROKV_ROAR_DOT_ROWS_BODY
}
#if defined(__x86_64__) && defined(__GNUC__)
__attribute__((target("avx2"))) inline float roar_dot_avx2(const float* RETROKV_RESTRICT a,
                                                           const float* RETROKV_RESTRICT b,
                                                           int64_t d) {
  float r;
  RETROKV_ROAR_DOT_KERNEL(a, b, d, r);
  return r;
}
__attribute__((target("avx2"))) inline void roar_dot_rows_avx2(const float* RETROKV_RESTRICT q,
                                                               const float* RETROKV_RESTRICT keys,
                                                               int64_t d, const int32_t* ids,
                                                               int count, float* out) {
  RETROKV_ROAR_DOT_ROWS_BODY
}
__attribute__((target("avx512f"))) inline float roar_dot_avx512(const float* RETROKV_RESTRICT a,
                                                                const float* RETROKV_RESTRICT b,
                                                                int64_t d) {
  float r;
  RETROKV_ROAR_DOT_KERNEL(a, b, d, r);
  return r;
}
__attribute__((target("avx512f"))) inline void roar_dot_rows_avx512(
    const float* RETROKV_RESTRICT q, const float* RETROKV_RESTRICT keys, int64_t d,
    const int32_t* ids, int count, float* out) {
  RETROKV_ROAR_DOT_ROWS_BODY
}
#endif
#undef RETROKV_ROAR_DOT_ROWS_BODY
#undef RETROKV_ROAR_DOT_KERNEL

using RoarDotFn = float (*)(const float*, const float*, int64_t);
using RoarDotRowsFn = void (*)(const float*, const float*, int64_t, const int32_t*, int, float*);

/// 2: AVX-512, 1: AVX2, 0: baseline; probed once.
inline int roar_simd_level() {
  static const int level = [] {
#if defined(__x86_64__) && defined(__GNUC__)
    __builtin_cpu_init();
    if (__builtin_cpu_supports("avx512f")) return 2;
    if (__builtin_cpu_supports("avx2")) return 1;
#endif
    return 0;
  }();
  return level;
}

inline RoarDotFn pick_roar_dot() {
#if defined(__x86_64__) && defined(__GNUC__)
  if (roar_simd_level() == 2) return &roar_dot_avx512;
  if (roar_simd_level() == 1) return &roar_dot_avx2;
#endif
  return &roar_dot_base;
}

inline RoarDotRowsFn pick_roar_dot_rows() {
#if defined(__x86_64__) && defined(__GNUC__)
  if (roar_simd_level() == 2) return &roar_dot_rows_avx512;
  if (roar_simd_level() == 1) return &roar_dot_rows_avx2;
#endif
  return &roar_dot_rows_base;
}

inline float roar_dot(const float* a, const float* b, int64_t d) {
  static const RoarDotFn fn = pick_roar_dot();
  return fn(a, b, d);
}

/// out[i] = roar_dot(q, keys + ids[i] * d, d) for i < count (bit-identical to roar_dot).
inline void roar_dot_rows(const float* q, const float* keys, int64_t d, const int32_t* ids,
                          int count, float* out) {
  static const RoarDotRowsFn fn = pick_roar_dot_rows();
  fn(q, keys, d, ids, count, out);
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

/// Keeps the best `keep` of v, best first. nth_element then a sort of the kept part: the same
/// result as partial_sort (`better` is a strict total order on distinct ids) at O(n + keep log
/// keep) instead of O(n log keep). Compares through a lambda, not the function pointer `better`,
/// so they inline: with the pointer, nth_element over every scored key was the top symbol of a
/// perf profile of bench_select (29% of samples incl. the flat reference; 9% with the lambda).
inline void select_best(std::vector<ScoredId>& v, size_t keep) {
  const auto cmp = [](const ScoredId& a, const ScoredId& b) { return better(a, b); };
  keep = std::min(keep, v.size());
  if (keep < v.size()) {
    std::nth_element(v.begin(), v.begin() + keep, v.end(), cmp);
    v.resize(keep);
  }
  std::sort(v.begin(), v.end(), cmp);
}

/// The best `keep` of (scores[i], ids[i]), i < n, best first by `better` (ties: smaller id).
/// The keep-th best score comes from nth_element over a float copy (plain float compares), then
/// one pass collects the ids above it, the ties at it by smaller id, and only those are sorted:
/// select_best's answer without building a ScoredId per scored key and head.
inline std::vector<ScoredId> best_of_scored(const int32_t* ids, const float* scores, int64_t n,
                                            int64_t keep) {
  keep = std::min(keep, n);
  std::vector<ScoredId> out;
  if (keep <= 0) return out;
  out.reserve(static_cast<size_t>(keep));
  if (keep == n) {
    for (int64_t i = 0; i < n; ++i) out.push_back({scores[i], ids[i]});
  } else {
    thread_local std::vector<float> tmp;
    tmp.assign(scores, scores + n);
    std::nth_element(tmp.begin(), tmp.begin() + (keep - 1), tmp.end(), std::greater<float>());
    const float thr = tmp[keep - 1];
    thread_local std::vector<int32_t> ties;
    ties.clear();
    for (int64_t i = 0; i < n; ++i) {
      if (scores[i] > thr)
        out.push_back({scores[i], ids[i]});
      else if (scores[i] == thr)
        ties.push_back(ids[i]);
    }
    std::sort(ties.begin(), ties.end());
    for (size_t i = 0; i < ties.size() && static_cast<int64_t>(out.size()) < keep; ++i)
      out.push_back({thr, ties[i]});
  }
  std::sort(out.begin(), out.end(),
            [](const ScoredId& a, const ScoredId& b) { return better(a, b); });
  return out;
}

/// fresh = the not-yet-visited ids among ids[0, deg), marked visited, their key rows prefetched:
/// the rows are scattered in memory, so issuing all their loads before scoring any of them
/// hides most of the latency.
inline void take_unvisited(VisitedTags& visited, const int32_t* ids, int deg, const float* keys,
                           int64_t d, std::vector<int32_t>& fresh) {
  fresh.clear();
  for (int j = 0; j < deg; ++j) {
    if (visited.test_and_set(ids[j])) continue;
    fresh.push_back(ids[j]);
    const char* row = reinterpret_cast<const char*>(keys + int64_t{ids[j]} * d);
    for (int64_t b = 0; b < d * int64_t{sizeof(float)}; b += 64) __builtin_prefetch(row + b);
  }
}

/// Best-first beam search of width ef (HNSW's search_layer, NSG's greedy search).
/// keys: (n, d) contiguous; queries: (g, d) contiguous, group score = max over heads;
/// neighbours(v) returns a pair (const int32_t* ids, int count). Seeds outside [0, n) must be
/// filtered by the caller. Adds the number of keys scored to *scanned. Deterministic for the same
/// inputs. With sq_norms (the keys' squared norms) the score is 2 q.k - |k|^2, i.e. the search is
/// for the nearest keys in L2 (used by the build's key-to-key searches).
///
/// Returns the best max(ef, k_out) keys it scored, best first (ties by smaller id). With
/// k_out <= ef that is the beam itself. With k_out > ef the beam only steers the search (it
/// stops once the ef-th best beats every unexpanded candidate) and the result is the top k_out
/// of *every* key scored on the way, so a narrow beam still returns k_out keys: the beam must be
/// as wide as k only to *find* k good keys, not to hold them. The search also keeps expanding
/// until at least k_out keys are scored (every key scored before that joins the frontier), so on
/// a graph where every key is reachable from a seed it returns min(k_out, n) keys.
/// min_scored >= 0 replaces that floor of k_out scored keys (the store's selection merges several
/// heads' lists and needs no head to return all k_out: the floor was most of its scan).
template <typename Neighbours>
std::vector<ScoredId> beam_search(const float* keys, int64_t n, int64_t d, const float* queries,
                                  int g, const int32_t* seeds, int n_seeds, int ef,
                                  Neighbours&& neighbours, int64_t* scanned,
                                  const float* sq_norms = nullptr, int k_out = 0,
                                  int min_scored = -1) {
  const int64_t floor_scored = min_scored >= 0 ? min_scored : k_out;
  VisitedTags& visited = thread_visited();
  visited.start(n);
  // Per-thread buffers: a search allocates nothing once a thread has run one of its size.
  thread_local std::vector<ScoredId> frontier, results, pool;
  thread_local std::vector<int32_t> fresh;
  thread_local std::vector<float> score, score_h;
  frontier.clear();
  results.clear();
  pool.clear();
  const bool keep_all = k_out > ef;
  int64_t count = 0;
  // Scores fresh[0..) (already marked visited) and offers them in order: same order and same
  // arithmetic as scoring them one by one.
  auto offer_fresh = [&] {
    const int c = static_cast<int>(fresh.size());
    if (c == 0) return;
    score.resize(static_cast<size_t>(c));
    roar_dot_rows(queries, keys, d, fresh.data(), c, score.data());
    if (g > 1) {
      score_h.resize(static_cast<size_t>(c));
      for (int h = 1; h < g; ++h) {
        roar_dot_rows(queries + h * d, keys, d, fresh.data(), c, score_h.data());
        for (int i = 0; i < c; ++i) score[i] = std::max(score[i], score_h[i]);
      }
    }
    for (int i = 0; i < c; ++i) {
      const int32_t v = fresh[i];
      const ScoredId cand{sq_norms ? 2.f * score[i] - sq_norms[v] : score[i], v};
      ++count;
      if (keep_all) pool.push_back(cand);
      if (static_cast<int>(results.size()) < ef || better(cand, results.front())) {
        frontier.push_back(cand);
        std::push_heap(frontier.begin(), frontier.end(), BestOnTop{});
        results.push_back(cand);
        std::push_heap(results.begin(), results.end(), WorstOnTop{});
        if (static_cast<int>(results.size()) > ef) {
          std::pop_heap(results.begin(), results.end(), WorstOnTop{});
          results.pop_back();
        }
      } else if (count <= floor_scored) {
        // Not in the beam, but fewer than k_out keys are known yet: keep it expandable.
        frontier.push_back(cand);
        std::push_heap(frontier.begin(), frontier.end(), BestOnTop{});
      }
    }
  };
  fresh.clear();
  for (int i = 0; i < n_seeds; ++i) {
    if (!visited.test_and_set(seeds[i])) fresh.push_back(seeds[i]);
  }
  offer_fresh();
  while (!frontier.empty()) {
    const ScoredId c = frontier.front();
    if (static_cast<int>(results.size()) >= ef && better(results.front(), c) &&
        count >= floor_scored)
      break;
    std::pop_heap(frontier.begin(), frontier.end(), BestOnTop{});
    frontier.pop_back();
    const auto [ids, deg] = neighbours(c.id);
    take_unvisited(visited, ids, deg, keys, d, fresh);
    // The next candidate is most likely the current best unexpanded one: fetch its adjacency
    // (a scattered CSR row) while this batch is scored.
    if (!frontier.empty()) {
      const auto [next_ids, next_deg] = neighbours(frontier.front().id);
      const char* adj = reinterpret_cast<const char*>(next_ids);
      for (int64_t b = 0; b < next_deg * int64_t{sizeof(int32_t)}; b += 64)
        __builtin_prefetch(adj + b);
    }
    offer_fresh();
  }
  *scanned += count;
  if (keep_all) {
    select_best(pool, std::min(pool.size(), static_cast<size_t>(k_out)));
    return pool;
  }
  std::sort(results.begin(), results.end(), better);
  return std::vector<ScoredId>(results.begin(), results.end());
}

/// g beam searches of width ef, one per query head of a GQA group (g, d), that share one visited
/// set and one scoring pass: a key is fetched and scored for every head once, and offered to
/// every head's beam. Each head keeps its own beam and frontier and stops on its own criterion
/// (its ef-th best beats its best unexpanded candidate); heads take turns expanding their best
/// candidate until every head has stopped. Returns per head the top min(k_out, scored) of every
/// key scored (best first, ties by smaller id), so a head whose good keys another head already
/// found stops early. Why: the heads of a group share much of their top keys, and g separate
/// searches re-fetch the shared part (a cold, scattered 4d-byte read per key is most of a
/// search's cost). Adds the number of distinct keys scored to *scanned. Deterministic.
template <typename Neighbours>
std::vector<std::vector<ScoredId>> beam_search_heads(const float* keys, int64_t n, int64_t d,
                                                     const float* queries, int g,
                                                     const int32_t* seeds, int n_seeds, int ef,
                                                     int k_out, Neighbours&& neighbours,
                                                     int64_t* scanned) {
  VisitedTags& visited = thread_visited();
  visited.start(n);
  thread_local std::vector<int32_t> fresh, scored_ids;
  thread_local std::vector<float> score_h;
  // Per head: frontier, beam and the score of every key scored (in scored_ids order).
  thread_local std::vector<std::vector<ScoredId>> frontier, results;
  thread_local std::vector<std::vector<float>> head_scores;
  for (auto* v : {&frontier, &results}) {
    v->resize(static_cast<size_t>(g));
    for (auto& x : *v) x.clear();
  }
  head_scores.resize(static_cast<size_t>(g));
  for (auto& x : head_scores) x.clear();
  scored_ids.clear();
  auto offer_fresh = [&] {
    const int c = static_cast<int>(fresh.size());
    if (c == 0) return;
    score_h.resize(static_cast<size_t>(c));
    for (int h = 0; h < g; ++h) {
      roar_dot_rows(queries + h * d, keys, d, fresh.data(), c, score_h.data());
      std::vector<ScoredId>& fr = frontier[h];
      std::vector<ScoredId>& res = results[h];
      for (int i = 0; i < c; ++i) {
        const ScoredId cand{score_h[i], fresh[i]};
        head_scores[h].push_back(score_h[i]);
        if (static_cast<int>(res.size()) < ef || better(cand, res.front())) {
          fr.push_back(cand);
          std::push_heap(fr.begin(), fr.end(), BestOnTop{});
          res.push_back(cand);
          std::push_heap(res.begin(), res.end(), WorstOnTop{});
          if (static_cast<int>(res.size()) > ef) {
            std::pop_heap(res.begin(), res.end(), WorstOnTop{});
            res.pop_back();
          }
        }
      }
    }
    scored_ids.insert(scored_ids.end(), fresh.begin(), fresh.end());
  };
  auto active = [&](int h) {
    const std::vector<ScoredId>& fr = frontier[h];
    const std::vector<ScoredId>& res = results[h];
    if (fr.empty()) return false;
    return !(static_cast<int>(res.size()) >= ef && better(res.front(), fr.front()));
  };
  fresh.clear();
  for (int i = 0; i < n_seeds; ++i)
    if (!visited.test_and_set(seeds[i])) fresh.push_back(seeds[i]);
  offer_fresh();
  for (int turn = 0;; turn = (turn + 1) % g) {
    int h = -1;
    for (int j = 0; j < g && h < 0; ++j)
      if (active((turn + j) % g)) h = (turn + j) % g;
    if (h < 0) break;
    turn = h;
    std::vector<ScoredId>& fr = frontier[h];
    const ScoredId c = fr.front();
    std::pop_heap(fr.begin(), fr.end(), BestOnTop{});
    fr.pop_back();
    const auto [ids, deg] = neighbours(c.id);
    take_unvisited(visited, ids, deg, keys, d, fresh);
    offer_fresh();
  }
  const int64_t count = static_cast<int64_t>(scored_ids.size());
  *scanned += count;
  std::vector<std::vector<ScoredId>> out(static_cast<size_t>(g));
  for (int h = 0; h < g; ++h)
    out[h] = best_of_scored(scored_ids.data(), head_scores[h].data(), count, k_out);
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
