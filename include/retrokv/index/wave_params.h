// Parameters, budgets and per-step statistics of the wave index (RetroInfer section 4, DESIGN.md
// section 3 "WaveIndex"): segment and cluster sizes, the steady zone, and the retrieval and
// estimation budgets as fractions of the clusters or as token counts, plus retrokv's adaptive τ.
#pragma once

#include <cstdint>
#include <vector>

namespace retrokv {

/// How the estimation zone turns a cluster (centroid c, size s, value sum VS) into attention mass.
enum class WaveEstimator : int32_t {
  /// RetroInfer's (the issue's) formula: Z_i = s exp(a.c), a = q*scale. By Jensen's inequality it
  /// underestimates the cluster's Σ_j exp(a.k_j) whenever the cluster's keys spread along q.
  kCentroid = 0,
  /// retrokv extension: Z_i = s exp(a.c + min(½ Σ_t a_t² σ²_it, variance_cap)), the second-order
  /// (Gaussian) term of log mean_j exp(a.k_j) with the cluster's per-dimension key variance σ²_i.
  /// The cap keeps clusters with outlier keys (where the Gaussian term explodes) bounded. On the
  /// SmolLM2 traces it cuts the median error of the default zones by about a third
  /// (docs/results.md). Costs d multiply-adds per estimated cluster and head, plus (C, d) floats.
  kVariance = 1,
  /// retrokv extension: every token of the estimation zone's clusters attended from a low-bit
  /// copy (WaveQuantizedZone: keys as residuals from the centroid, values raw, per-row scale and
  /// min; 4 bits by default). The zones are unchanged, only their estimate. On the SmolLM2 traces
  /// it takes the default zones from 3.7% (kCentroid) to 0.5% median error (docs/results.md,
  /// issue 5, session 4), for about 16% of a float32 KV of extra memory (19% with its centroid
  /// copy) and ~6x the zone's reads: on the CPU its decode step at 8K costs about as much as
  /// exact attention (fused AVX-512 4-bit kernels; a fidelity option, not a speed one yet).
  /// Needs an index built with WaveParams::quantized_zone.
  kQuantized = 2,
};

/// Bit widths of the quantized estimation zone (WaveEstimator::kQuantized).
struct WaveQuantParams {
  int key_bits = 4;    ///< bits per key code: 2, 4 or 8 (4: 0.51% median, 8: 0.34%, 2: 3.0%)
  int value_bits = 4;  ///< bits per value code: 2, 4 or 8
};

/// How many clusters a decode step reads exactly (retrieval zone) and estimates from centroids
/// (estimation zone). Clusters are ranked by the group's summed softmax over centroids.
struct WaveBudget {
  /// Retrieval zone as a fraction of all clusters (ceil; 0 = none). Ignored when
  /// retrieval_tokens > 0 or tolerance > 0.
  double retrieval_frac = 0.018;
  /// > 0: retrieval zone = clusters in rank order until they hold >= this many tokens.
  int64_t retrieval_tokens = 0;
  /// Estimation zone (the clusters ranked right after the retrieval zone), as a fraction of all
  /// clusters (ceil; 0 = no estimation) or, when estimation_tokens > 0, a token count.
  double estimation_frac = 0.232;
  int64_t estimation_tokens = 0;
  /// Adaptive retrieval (a retrokv extension, 0 = off): grow the retrieval zone in rank order
  /// until, for every head of the group, the centroid-estimated attention mass of the clusters
  /// not yet retrieved is below `tolerance` of the estimated total (steady zone included).
  double tolerance = 0.0;
  /// Estimate of the estimation zone (default: the centroid formula).
  WaveEstimator estimator = WaveEstimator::kCentroid;
  /// kVariance only: upper clip, in natural-log units, of the per-cluster correction (>= 0).
  double variance_cap = 1.0;
};

/// Build-time parameters of one KV head's wave index.
struct WaveParams {
  int64_t segment_size = 8192;  ///< tokens per clustering segment (the last ones evenly split)
  int tokens_per_cluster = 16;  ///< clusters per segment = ceil(segment tokens / this)
  int iterations = 10;          ///< spherical k-means iterations per segment
  int n_sink = 4;               ///< first tokens, always in the steady zone
  int n_local = 64;             ///< most recent tokens, always in the steady zone
  /// Every this many appended tokens, the steady zone's tokens older than the last n_local
  /// become a new segment of clusters (old segments are not re-clustered).
  int64_t update_interval = 1024;
  uint64_t seed = 0;  ///< recorded for reproducibility; seeds are evenly spaced (deterministic)
  /// Keep a low-bit per-token copy of the clustered KV (WaveQuantizedZone) so that budgets may
  /// use WaveEstimator::kQuantized. Off by default: it costs memory whether or not it is used.
  bool quantized_zone = false;
  WaveQuantParams quant;  ///< bit widths of that copy
  WaveBudget budget;      ///< default budget of attend() and select()
};

/// What one decode step (one GQA group) did: the budget it chose and the work it took.
struct WaveStats {
  int64_t n_clusters = 0;           ///< centroids scored
  int64_t steady_tokens = 0;        ///< exact: sinks, local window, appended tokens
  int64_t retrieval_clusters = 0;   ///< exact: clusters read
  int64_t retrieval_tokens = 0;     ///< exact: their tokens
  int64_t estimation_clusters = 0;  ///< estimated from centroid, value sum and size
  int64_t estimation_tokens = 0;    ///< tokens those clusters stand for
  int64_t total_tokens = 0;         ///< all tokens the index holds
  /// Largest over the group's heads of the centroid-estimated share of attention mass outside
  /// the exactly attended tokens (estimation + dropped zones), in [0, 1].
  double estimated_remaining_mass = 0.0;
  /// Share of tokens attended exactly: (steady + retrieval) / total.
  double exact_fraction() const {
    return total_tokens ? double(steady_tokens + retrieval_tokens) / double(total_tokens) : 0.0;
  }
};

/// The zones chosen for one GQA group: cluster ids in rank order (best first).
struct WaveSelection {
  std::vector<int32_t> retrieval;
  std::vector<int32_t> estimation;
  int64_t retrieval_tokens = 0;
  int64_t estimation_tokens = 0;
  double estimated_remaining_mass = 0.0;  ///< as in WaveStats
};

/// One clustering segment: consecutive original tokens and the clusters made from them.
struct WaveSegment {
  int64_t first_token = 0;  ///< smallest original token id of the segment
  int64_t n_tokens = 0;
  int64_t first_cluster = 0;
  int64_t n_clusters = 0;
};

}  // namespace retrokv
