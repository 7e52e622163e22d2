// Per-layer statistics of a KVVectorStore (issue 7 "API"; DESIGN.md section 5 "How it is
// measured"): tokens attended exactly, keys scanned (the one unit every index is measured in),
// clusters estimated, and time per phase of the decode step.
#pragma once

#include <cstdint>

namespace retrokv {

/// Counters summed over every attend on one layer (all sequences) since the last reset. A "head
/// step" is one KV head's GQA group in one attend of one sequence. Times are thread seconds
/// summed over head steps (not wall time).
struct LayerStats {
  int64_t attend_calls = 0;        ///< sequences attended (a batch of b counts b)
  int64_t head_steps = 0;          ///< attend_calls * n_kv_heads
  int64_t context_tokens = 0;      ///< sum over head steps of the sequence length
  int64_t exact_tokens = 0;        ///< tokens attended exactly: steady + selected
  int64_t steady_tokens = 0;       ///< sinks, local window, tokens since the last index update
  int64_t selected_tokens = 0;     ///< tokens the policy selected (wave: retrieval zone)
  int64_t keys_scanned = 0;        ///< keys (or centroids, page bounds) scored to select
  int64_t estimated_clusters = 0;  ///< wave estimation zone
  int64_t estimated_tokens = 0;    ///< tokens the estimated clusters stand for
  int64_t index_builds = 0;        ///< per-head index builds (prefill, or first update)
  int64_t index_updates = 0;       ///< per-head index updates during decode
  /// GPU wave-buffer cache (DESIGN.md section 4); always 0 on the CPU path.
  int64_t cache_lookups = 0;
  int64_t cache_hits = 0;
  double build_seconds = 0;   ///< index builds and updates
  double select_seconds = 0;  ///< index search / centroid scoring
  /// Exact attention over steady + selected tokens (wave: the index's whole tripartite step).
  double exact_seconds = 0;
  double estimate_seconds = 0;  ///< estimation zone (0 while wave times its step as one)
  double merge_seconds = 0;     ///< LSE merge of the partial states

  /// Share of the context attended exactly, in [0, 1].
  double exact_fraction() const {
    return context_tokens ? static_cast<double>(exact_tokens) / context_tokens : 0.0;
  }
  double cache_hit_ratio() const {
    return cache_lookups ? static_cast<double>(cache_hits) / cache_lookups : 0.0;
  }
  void add(const LayerStats& o) {
    attend_calls += o.attend_calls;
    head_steps += o.head_steps;
    context_tokens += o.context_tokens;
    exact_tokens += o.exact_tokens;
    steady_tokens += o.steady_tokens;
    selected_tokens += o.selected_tokens;
    keys_scanned += o.keys_scanned;
    estimated_clusters += o.estimated_clusters;
    estimated_tokens += o.estimated_tokens;
    index_builds += o.index_builds;
    index_updates += o.index_updates;
    cache_lookups += o.cache_lookups;
    cache_hits += o.cache_hits;
    build_seconds += o.build_seconds;
    select_seconds += o.select_seconds;
    exact_seconds += o.exact_seconds;
    estimate_seconds += o.estimate_seconds;
    merge_seconds += o.merge_seconds;
  }
};

}  // namespace retrokv
