// Configuration of a KVVectorStore (issue 7 "API"; DESIGN.md sections 2-3): the model's attention
// shape, the KV element type, the sparse-attention policy with its budget and steady zone
// (RetroInfer section 4's sink / local window / update interval), threads and a memory budget.
#pragma once

#include <cmath>
#include <cstdint>
#include <string>
#include <string_view>

#include "retrokv/core/error.h"
#include "retrokv/core/half.h"
#include "retrokv/index/roar_graph.h"
#include "retrokv/index/wave_params.h"

namespace retrokv {

/// How `attend` picks the tokens it reads exactly.
enum class Policy : uint8_t {
  kFull = 0,       ///< exact attention over every token (the reference)
  kFlatTopK = 1,   ///< exact top-k keys by group score (oracle selection, scans every key)
  kRoarGraph = 2,  ///< RetrievalAttention's attention-aware graph (index/roar_graph.h)
  kWave = 3,       ///< RetroInfer's wave index: retrieval + estimation zones (index/wave_index.h)
  kQuest = 4,      ///< Quest-style pages ranked by a key-bound score (index/quest_index.h)
};

inline const char* policy_name(Policy p) {
  switch (p) {
    case Policy::kFull:
      return "full";
    case Policy::kFlatTopK:
      return "flat_topk";
    case Policy::kRoarGraph:
      return "roar_graph";
    case Policy::kWave:
      return "wave";
    case Policy::kQuest:
      return "quest";
  }
  return "unknown";
}

/// "full", "flat_topk", "roar_graph", "wave" or "quest"; anything else throws naming `name`.
inline Policy parse_policy(std::string_view name) {
  for (Policy p :
       {Policy::kFull, Policy::kFlatTopK, Policy::kRoarGraph, Policy::kWave, Policy::kQuest}) {
    if (name == policy_name(p)) return p;
  }
  RETROKV_FAIL("name: expected full|flat_topk|roar_graph|wave|quest, got '", name, "'");
}

/// RoarGraph defaults for use inside a store: no progress bar (a library should not draw on the
/// engine's terminal), the rest as RoarGraphParams.
inline RoarGraphParams default_store_roar_params() {
  RoarGraphParams p;
  p.show_progress = false;
  return p;
}

/// Budget and zones of a sparse policy. Per decode step and KV head, attend reads exactly
/// (1) the steady zone: the first n_sink tokens, the last n_local tokens and every token
///     appended since the last index update, and
/// (2) the policy's selection from the indexed part (everything else): `budget` tokens.
/// The wave policy adds (3) the estimation zone (wave.budget.estimation_*), from centroids.
struct PolicyParams {
  /// > 0: tokens selected per KV head and step from the indexed part (wave: retrieval-zone
  /// tokens, whole clusters). 0: use budget_fraction.
  int64_t budget_tokens = 0;
  /// Used when budget_tokens == 0: ceil(budget_fraction * sequence length) tokens (wave: the
  /// fraction of clusters in the retrieval zone). 1.0 selects everything (= exact attention).
  /// Default 3%: on SmolLM2-135M at 7.7K tokens (256 decode steps, teacher-forced) the smallest
  /// of 2% / 3% at which roar_graph and wave both agree with full attention on >= 99% of greedy
  /// tokens; with the steady zone below, 4.3-4.8% of the context is read exactly.
  double budget_fraction = 0.03;
  int n_sink = 4;    ///< first tokens, always exact ("attention sinks")
  int n_local = 64;  ///< most recent tokens, always exact
  /// Appended tokens between index updates; until then they are read exactly (steady zone).
  /// Default 64: with 1024 the 256 decode steps of the 8K SmolLM2 run all stayed in the steady
  /// zone, +1.2 points of exact share for the same agreement (docs/results.md, issue 7).
  int64_t update_interval = 64;
  int quest_page_size = 16;  ///< tokens per page of the quest policy
  /// RoarGraph search beam. 0: the index's ef (per-head mode: max(the index's ef, k)). A value
  /// below the budget is a narrow beam: the search still returns the budget's top tokens among
  /// every key it scored (fewer keys scanned, lower recall; docs/results.md, issue 4).
  /// Default 96 with the shared per-head search below (roar_group_mode 2, warm start 64): on the
  /// SmolLM2 traces (12 KV heads, 128 decode steps, 7.6K keys, budget 3%, bench/bench_select.cpp)
  /// its selection overlaps flat_topk's by 0.968 scoring 1592 keys per GQA group step (20.8% of
  /// the keys), where the old per-head k = budget search overlapped by 0.989 scoring 5448 (71%);
  /// ef 64: 0.936 / 1228 keys, ef 128: 0.980 / 1890 keys.
  int roar_ef = 96;
  /// RoarGraph selection of a GQA group (detail::select_tokens): per query head k =
  /// ceil(roar_head_k_frac * budget) (1: every head ranks the whole budget), the g lists merged
  /// round-robin by rank into the budget.
  double roar_head_k_frac = 1.0;
  /// Keys a per-head search scores at least before it may stop (-1: its k, RoarGraphIndex::
  /// search's floor; lower lets a converged narrow beam stop early, the merge fills the budget
  /// from the other heads' lists).
  int roar_min_scored = -1;
  /// How a GQA group searches the graph: 0 = one search per query head (each with k above);
  /// 1 = one search of the whole group (score = max over heads, k = budget); 2 = the g per-head
  /// searches run together, sharing visited keys and scoring (RoarGraphIndex::search_heads).
  /// Default 2: g separate searches re-score the keys the heads share (per-head ef 128: 3730
  /// keys per group step at overlap 0.972 with flat_topk; shared at ef 96: 1592 at 0.968); one
  /// max-over-heads search ranks by the loudest head and overlaps by only 0.76 at k = budget.
  int roar_group_mode = 2;
  /// Seeds each search with up to this many of the previous step's best ids of the same query
  /// head (0: entry points only). A hint kept in the HeadIndex; a new or loaded index starts cold.
  /// Default 64: -0.7% keys scored and +0.003 overlap at ef 96 (bench_select); cheap, it only
  /// adds seeds.
  int roar_warm_start = 64;
  /// RoarGraph build parameters (threads is overridden by StoreConfig::threads).
  RoarGraphParams roar = default_store_roar_params();
  /// Wave index parameters. n_sink, n_local, update_interval and the retrieval budget are
  /// overridden by the fields above; estimation_* and tolerance are used as given.
  WaveParams wave;

  /// Tokens to select for a sequence of n tokens, of which `available` can be selected.
  int64_t budget_for(int64_t n, int64_t available) const {
    const int64_t want =
        budget_tokens > 0
            ? budget_tokens
            : static_cast<int64_t>(std::ceil(budget_fraction * static_cast<double>(n) - 1e-9));
    return std::min(want, available);
  }
};

/// Everything a KVVectorStore needs to know up front.
struct StoreConfig {
  int n_layers = 0;
  int n_q_heads = 0;   ///< query heads; query head h reads KV head h / (n_q_heads / n_kv_heads)
  int n_kv_heads = 0;  ///< KV heads (GQA); must divide n_q_heads
  int head_dim = 0;
  DType kv_dtype = DType::kFloat32;  ///< storage type of K and V (arithmetic is float)
  Policy policy = Policy::kFull;
  PolicyParams params;
  float scale = 0.f;  ///< softmax scale; 0 means 1/sqrt(head_dim)
  int threads = 0;    ///< OpenMP threads for attend and index builds (0: omp_get_max_threads())
  /// Build indexes on a background thread after prefill (attend on that layer waits for it), so
  /// layer l's build overlaps the engine's compute of layer l+1.
  bool async_build = true;
  /// Host bytes the store may hold (KV + indexes, by the estimates in memory_bytes()); 0 means
  /// unlimited. A call that would exceed it throws StoreError(kMemoryBudget) and changes nothing.
  int64_t host_memory_budget_bytes = 0;

  int group_size() const { return n_kv_heads > 0 ? n_q_heads / n_kv_heads : 0; }
  int q_width() const { return n_q_heads * head_dim; }
  int kv_width() const { return n_kv_heads * head_dim; }
  float effective_scale() const {
    return scale > 0.f ? scale : 1.f / std::sqrt(static_cast<float>(head_dim));
  }

  /// Throws retrokv::Error naming the first bad field.
  void validate() const {
    RETROKV_CHECK(n_layers >= 1, "config.n_layers: expected >= 1, got ", n_layers);
    RETROKV_CHECK(n_q_heads >= 1, "config.n_q_heads: expected >= 1, got ", n_q_heads);
    RETROKV_CHECK(n_kv_heads >= 1, "config.n_kv_heads: expected >= 1, got ", n_kv_heads);
    RETROKV_CHECK(n_q_heads % n_kv_heads == 0, "config.n_q_heads: expected a multiple of ",
                  "n_kv_heads (", n_kv_heads, "), got ", n_q_heads);
    RETROKV_CHECK(head_dim >= 1 && head_dim <= 4096, "config.head_dim: expected 1..4096, got ",
                  head_dim);
    RETROKV_CHECK(
        kv_dtype == DType::kFloat32 || kv_dtype == DType::kFloat16 || kv_dtype == DType::kBFloat16,
        "config.kv_dtype: expected float32|float16|bfloat16, got ", static_cast<int>(kv_dtype));
    RETROKV_CHECK(static_cast<int>(policy) <= 4, "config.policy: unknown value ",
                  static_cast<int>(policy));
    RETROKV_CHECK(std::isfinite(scale) && scale >= 0.f,
                  "config.scale: expected finite >= 0 (0 = 1/sqrt(d)), got ", scale);
    RETROKV_CHECK(threads >= 0, "config.threads: expected >= 0, got ", threads);
    RETROKV_CHECK(host_memory_budget_bytes >= 0,
                  "config.host_memory_budget_bytes: expected >= 0 (0 = unlimited), got ",
                  host_memory_budget_bytes);
    const PolicyParams& p = params;
    RETROKV_CHECK(p.budget_tokens >= 0, "config.params.budget_tokens: expected >= 0, got ",
                  p.budget_tokens);
    RETROKV_CHECK(p.budget_fraction >= 0.0 && p.budget_fraction <= 1.0,
                  "config.params.budget_fraction: expected in [0, 1], got ", p.budget_fraction);
    RETROKV_CHECK(p.n_sink >= 0, "config.params.n_sink: expected >= 0, got ", p.n_sink);
    RETROKV_CHECK(p.n_local >= 0, "config.params.n_local: expected >= 0, got ", p.n_local);
    RETROKV_CHECK(p.update_interval >= 1, "config.params.update_interval: expected >= 1, got ",
                  p.update_interval);
    RETROKV_CHECK(p.quest_page_size >= 1, "config.params.quest_page_size: expected >= 1, got ",
                  p.quest_page_size);
    RETROKV_CHECK(p.roar_ef >= 0, "config.params.roar_ef: expected >= 0, got ", p.roar_ef);
    RETROKV_CHECK(p.roar_head_k_frac > 0.0 && p.roar_head_k_frac <= 1.0,
                  "config.params.roar_head_k_frac: expected in (0, 1], got ", p.roar_head_k_frac);
    RETROKV_CHECK(p.roar_min_scored >= -1, "config.params.roar_min_scored: expected >= -1, got ",
                  p.roar_min_scored);
    RETROKV_CHECK(p.roar_group_mode >= 0 && p.roar_group_mode <= 2,
                  "config.params.roar_group_mode: expected 0, 1 or 2, got ", p.roar_group_mode);
    RETROKV_CHECK(p.roar_warm_start >= 0, "config.params.roar_warm_start: expected >= 0, got ",
                  p.roar_warm_start);
    RETROKV_CHECK(p.roar.k_train >= 1 && p.roar.M >= 1 && p.roar.L >= 1 && p.roar.ef >= 1 &&
                      p.roar.n_entry_points >= 1 && p.roar.max_train_queries >= 0,
                  "config.params.roar: expected k_train, M, L, ef, n_entry_points >= 1 and ",
                  "max_train_queries >= 0");
    RETROKV_CHECK(
        p.wave.segment_size >= 1 && p.wave.tokens_per_cluster >= 1 && p.wave.iterations >= 0,
        "config.params.wave: expected segment_size, tokens_per_cluster >= 1 and ",
        "iterations >= 0");
    const WaveBudget& b = p.wave.budget;
    RETROKV_CHECK(b.estimation_frac >= 0.0 && b.estimation_frac <= 1.0 &&
                      b.estimation_tokens >= 0 && b.tolerance >= 0.0 && b.tolerance < 1.0,
                  "config.params.wave.budget: expected estimation_frac in [0, 1], ",
                  "estimation_tokens >= 0, tolerance in [0, 1)");
    RETROKV_CHECK(
        b.estimator == WaveEstimator::kCentroid || b.estimator == WaveEstimator::kVariance ||
            (b.estimator == WaveEstimator::kQuantized && p.wave.quantized_zone),
        "config.params.wave.budget.estimator: expected kCentroid (0), kVariance (1) or ",
        "kQuantized (2, with params.wave.quantized_zone), got ", static_cast<int32_t>(b.estimator));
    for (const int bits : {p.wave.quant.key_bits, p.wave.quant.value_bits})
      RETROKV_CHECK(bits == 2 || bits == 4 || bits == 8,
                    "config.params.wave.quant: expected key_bits and value_bits in {2, 4, 8}, got ",
                    bits);
  }
};

}  // namespace retrokv
