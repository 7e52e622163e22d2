// The index of one (sequence, layer, KV head) inside a KVVectorStore (issue 7 "API"; DESIGN.md
// section 3): building it after prefill, updating it during decode, and selecting the tokens a
// GQA group reads exactly. Token ids are the sequence's positions; the index covers positions
// [n_sink, indexed_end) (the "indexed part"), everything else is the exact steady zone.
#pragma once

#include <algorithm>
#include <cmath>
#include <cstdint>
#include <memory>
#include <numeric>
#include <vector>

#include "retrokv/core/topk.h"
#include "retrokv/core/view.h"
#include "retrokv/cpu/attention.h"
#include "retrokv/index/quest_index.h"
#include "retrokv/index/roar_graph.h"
#include "retrokv/index/wave_index.h"
#include "retrokv/store/kv_rows.h"
#include "retrokv/store/store_config.h"

namespace retrokv::detail {

/// Per-head index state. Non-wave policies index positions [n_sink, indexed_end) (index id i is
/// position n_sink + i); the wave index holds every position and its own steady zone.
struct HeadIndex {
  int64_t indexed_end = 0;
  std::unique_ptr<RoarGraphIndex> roar;
  std::vector<float> quest_keys;  // (indexed, d) float copy the QuestIndex views
  std::unique_ptr<QuestIndex> quest;
  std::unique_ptr<WaveIndex> wave;
  /// RoarGraph warm start (PolicyParams::roar_warm_start): per query head (one for a group
  /// search) the previous step's best index ids. Only a hint: ids stay valid after insert() (it
  /// only appends), and roar_warm_of records which index they came from so a rebuilt or loaded
  /// index starts cold. Mutable because selection is logically const; calls on one HeadIndex are
  /// serialized by the store (one (sequence, layer) at a time).
  mutable std::vector<std::vector<int32_t>> roar_warm;
  mutable const RoarGraphIndex* roar_warm_of = nullptr;
};

/// Host bytes an index over n_indexed positions (wave: n_tokens positions) may hold: an upper
/// bound used for the memory budget, so a build never exceeds what was reserved for it.
inline int64_t index_bytes_estimate(Policy p, const PolicyParams& pp, int64_t n, int d) {
  if (n <= 0) return 0;
  switch (p) {
    case Policy::kFull:
    case Policy::kFlatTopK:
      return 0;  // flat scans the store's own KV
    case Policy::kQuest:
      return n * d * 4 + ((n + pp.quest_page_size - 1) / pp.quest_page_size) * 2 * d * 4;
    case Policy::kRoarGraph:
      // Decode-time inserts grow the key copy by doubling (<= 2n rows of d floats), give every
      // new or overflowing list 2M slots (<= 2 * 2M slots per key counting the abandoned ones)
      // and keep per key a list start (8), degree, slots, tree parent, squared norm (4 each),
      // in vectors that may also have doubled.
      return n * (int64_t{8} * d + 48 + int64_t{16} * pp.roar.M) + 8 + 4 * pp.roar.n_entry_points;
    case Policy::kWave: {
      // KV copy and ids per token; per cluster the centroid, value sum and key variances (float),
      // their fp16 copies, the size and the offset.
      const int64_t clusters = n / std::max(1, pp.wave.tokens_per_cluster) + 1;
      int64_t bytes = n * (int64_t{8} * d + 8) + clusters * (int64_t{16} * d + 12) + 8 * int64_t{d};
      if (pp.wave.quantized_zone)  // codes + (scale, min) per row, the zone's centroids, offsets
        bytes +=
            n * ((int64_t{d} * (pp.wave.quant.key_bits + pp.wave.quant.value_bits) + 7) / 8 + 16) +
            clusters * (int64_t{4} * d + 8);
      return bytes;
    }
  }
  return 0;
}

/// WaveParams of the store's wave policy: the store's steady zone and retrieval budget.
inline WaveParams store_wave_params(const PolicyParams& pp) {
  WaveParams w = pp.wave;
  w.n_sink = pp.n_sink;
  w.n_local = pp.n_local;
  w.update_interval = pp.update_interval;
  w.budget.retrieval_tokens = pp.budget_tokens;
  w.budget.retrieval_frac = pp.budget_fraction;
  return w;
}

inline Matrix<float> rows_to_float(const KVRows& rows, int64_t begin, int64_t end) {
  Matrix<float> out(std::max<int64_t>(0, end - begin), rows.dim());
  if (end > begin) rows.to_float(begin, end, out.data());
  return out;
}

/// Builds a non-wave index over positions [n_sink, end) of K; train_q (m, d) are RoarGraph's
/// training queries (empty: the keys stand in). Commits only when everything succeeded.
inline void build_head_index(HeadIndex& hi, Policy policy, const PolicyParams& pp, int threads,
                             const KVRows& K, int64_t n_sink, int64_t end,
                             ConstMatrixView<float> train_q) {
  if (end <= n_sink) return;
  if (policy == Policy::kFlatTopK) {
    hi.indexed_end = end;
  } else if (policy == Policy::kQuest) {
    Matrix<float> keys = rows_to_float(K, n_sink, end);
    std::vector<float> copy(keys.data(), keys.data() + keys.rows() * keys.cols());
    auto q =
        std::make_unique<QuestIndex>(ConstMatrixView<float>(copy.data(), keys.rows(), keys.cols()),
                                     QuestParams{pp.quest_page_size});
    hi.quest_keys.swap(copy);  // the vector's buffer moves with it, so the view stays valid
    hi.quest = std::move(q);
    hi.indexed_end = end;
  } else if (policy == Policy::kRoarGraph) {
    Matrix<float> keys = rows_to_float(K, n_sink, end);
    RoarGraphParams rp = pp.roar;
    rp.threads = threads;
    auto idx = std::make_unique<RoarGraphIndex>(
        RoarGraphIndex::build(keys.view(), train_q.rows > 0 ? train_q : keys.view(), rp));
    hi.roar = std::move(idx);
    hi.indexed_end = end;
  }
}

/// Extends a non-wave index to positions [n_sink, new_end) (decode-time update). RoarGraph
/// inserts the new keys; quest rebuilds its page bounds; flat only moves the boundary.
inline void update_head_index(HeadIndex& hi, Policy policy, const PolicyParams& pp, int threads,
                              const KVRows& K, int64_t n_sink, int64_t new_end) {
  const int64_t old_end = std::max(hi.indexed_end, n_sink);
  if (new_end <= old_end) return;
  if (policy == Policy::kRoarGraph && hi.roar && hi.roar->size() > 0) {
    Matrix<float> fresh = rows_to_float(K, old_end, new_end);
    try {
      hi.roar->insert(fresh.view());
    } catch (...) {
      // insert() is incremental and not exception-safe: drop the half-updated graph. Every
      // position from n_sink on is then in the steady zone (attended exactly, so results stay
      // correct) until the next update rebuilds the graph from the stored keys.
      hi.roar.reset();
      hi.indexed_end = n_sink;
      throw;
    }
    hi.indexed_end = new_end;
    return;
  }
  HeadIndex next;
  build_head_index(next, policy, pp, threads, K, n_sink, new_end, ConstMatrixView<float>());
  if (policy == Policy::kRoarGraph) hi.roar = std::move(next.roar);
  if (policy == Policy::kQuest) {
    hi.quest_keys.swap(next.quest_keys);
    hi.quest = std::move(next.quest);
  }
  hi.indexed_end = new_end;
}

/// Merges per-head ranked lists (best first) round-robin by rank into at most `budget` distinct
/// ids: every head of the group gets its best tokens in, whichever head has the larger logits.
/// (Ranking by the max over heads of raw q.k lets one head with large scores take the whole
/// budget; on the GQA synthetic set that left other heads with > 100% output error at 2%.)
inline std::vector<int32_t> round_robin_union(const std::vector<std::vector<int32_t>>& lists,
                                              int64_t budget) {
  std::vector<int32_t> out;
  size_t longest = 0, total = 0;
  int32_t max_id = -1;
  for (const auto& l : lists) {
    longest = std::max(longest, l.size());
    total += l.size();
    for (int32_t id : l) max_id = std::max(max_id, id);
  }
  if (max_id < 0 || budget <= 0) return out;
  // A bitmap over the id range (positions: n / 8 bytes) instead of a sorted vector: the sorted
  // insert was O(budget^2) and took ~15% of quest's decode attention at 8K.
  std::vector<uint64_t> seen(static_cast<size_t>(max_id / 64) + 1, 0);
  out.reserve(static_cast<size_t>(std::min<int64_t>(budget, static_cast<int64_t>(total))));
  for (size_t r = 0; r < longest && static_cast<int64_t>(out.size()) < budget; ++r) {
    for (const auto& l : lists) {
      if (r >= l.size() || static_cast<int64_t>(out.size()) >= budget) continue;
      const int32_t id = l[r];
      if (id < 0) continue;  // not a position (an index pads nothing, but never index with it)
      uint64_t& word = seen[static_cast<size_t>(id) / 64];
      const uint64_t bit = uint64_t{1} << (id % 64);
      if (word & bit) continue;
      word |= bit;
      out.push_back(id);
    }
  }
  return out;
}

/// Positions a GQA group qg (g, d) reads exactly from the indexed part [n_sink, end): at most
/// `budget` ids (all of them, without a search, when budget >= end - n_sink). Each query head
/// ranks its own top tokens; the group takes them round-robin by rank. RoarGraph searches as
/// PolicyParams::roar_group_mode says (default: the g heads' searches share visited keys and
/// scoring, beam roar_ef, seeded with the previous step's ids kept in `hi`); quest scores the
/// group's page bounds in one pass.
template <typename T>
std::vector<int32_t> select_tokens(const HeadIndex& hi, Policy policy, const PolicyParams& pp,
                                   ConstMatrixView<float> qg, ConstMatrixView<T> K, int64_t n_sink,
                                   int64_t end, int64_t budget, int64_t* keys_scanned) {
  std::vector<int32_t> ids;
  const int64_t m = end - n_sink;
  if (m <= 0 || budget <= 0) return ids;
  if (budget >= m) {
    ids.resize(static_cast<size_t>(m));
    std::iota(ids.begin(), ids.end(), static_cast<int32_t>(n_sink));
    return ids;
  }
  const int64_t g = qg.rows;
  std::vector<std::vector<int32_t>> lists(static_cast<size_t>(g));
  if (policy == Policy::kFlatTopK) {
    std::vector<float> scores(static_cast<size_t>(g * m));
    cpu::dot_scan<T>(qg, K, n_sink, end, scores.data());
    for (int64_t h = 0; h < g; ++h)
      for (const ScoredId& c :
           top_k(scores.data() + h * m, m, static_cast<int>(budget), static_cast<int32_t>(n_sink)))
        lists[h].push_back(c.id);
    *keys_scanned += m;
    return round_robin_union(lists, budget);
  }
  if (policy == Policy::kRoarGraph && hi.roar && hi.roar->size() > 0) {
    const RoarGraphIndex& idx = *hi.roar;
    const int mode = pp.roar_group_mode;
    const int searches = mode == 0 ? static_cast<int>(g) : 1;
    const int n_warm = mode == 1 ? 1 : static_cast<int>(g);
    if (hi.roar_warm_of != &idx || static_cast<int>(hi.roar_warm.size()) != n_warm) {
      hi.roar_warm.assign(static_cast<size_t>(n_warm), {});
      hi.roar_warm_of = &idx;
    }
    for (std::vector<int32_t>& w : hi.roar_warm)
      std::erase_if(w, [&](int32_t id) { return id < 0 || id >= idx.size(); });
    SearchParams sp;
    sp.k = mode == 1 ? static_cast<int>(budget)
                     : std::max(1, static_cast<int>(std::ceil(
                                       pp.roar_head_k_frac * static_cast<double>(budget) - 1e-9)));
    sp.ef = pp.roar_ef;
    std::vector<int32_t> seeds;  // mode 2: every head's warm ids seed the one shared search
    if (mode == 2)
      for (const std::vector<int32_t>& w : hi.roar_warm)
        seeds.insert(seeds.end(), w.begin(), w.end());
    std::vector<SearchResult> results;
    if (mode == 2) {
      sp.warm_start = seeds.data();
      sp.n_warm_start = static_cast<int>(seeds.size());
      results = idx.search_heads(qg, sp);
    } else {
      for (int s = 0; s < searches; ++s) {
        sp.warm_start = hi.roar_warm[s].data();
        sp.n_warm_start = static_cast<int>(hi.roar_warm[s].size());
        results.push_back(
            idx.search_scored(mode == 1 ? qg : qg.slice_rows(s, 1), sp, pp.roar_min_scored));
      }
    }
    lists.assign(results.size(), {});
    for (size_t s = 0; s < results.size(); ++s) {
      const SearchResult& r = results[s];
      for (int32_t id : r.ids)
        if (id < m) lists[s].push_back(static_cast<int32_t>(id + n_sink));
      *keys_scanned += r.keys_scanned;
      if (s < hi.roar_warm.size())
        hi.roar_warm[s].assign(r.ids.begin(),
                               r.ids.begin() + std::min<size_t>(r.ids.size(), pp.roar_warm_start));
    }
    return round_robin_union(lists, budget);
  }
  if (policy == Policy::kQuest && hi.quest) {
    // The same per-head lists as g calls of search(), sharing one pass over the page bounds.
    const std::vector<SearchResult> rs = hi.quest->search_heads(qg, static_cast<int>(budget));
    for (int64_t h = 0; h < g; ++h)
      for (int32_t id : rs[h].ids) lists[h].push_back(static_cast<int32_t>(id + n_sink));
    *keys_scanned += rs[0].keys_scanned;
    return round_robin_union(lists, budget);
  }
  return ids;  // no index (yet): nothing selected, the steady zone is all that is read
}

}  // namespace retrokv::detail
