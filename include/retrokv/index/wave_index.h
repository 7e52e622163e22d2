// RetroInfer's wave index for one KV head on the CPU (RetroInfer section 4, DESIGN.md section 3):
// segmented spherical k-means over mean-centred keys, per-cluster centroid / value sum / size,
// KV stored cluster-contiguous, and tripartite attention (steady + retrieval exact, estimation
// zone from centroids, the rest dropped) merged by LSE, with retrokv's adaptive retrieval budget.
#pragma once

#include <Eigen/Core>
#include <algorithm>
#include <cmath>
#include <cstdint>
#include <cstring>
#include <functional>
#include <numeric>
#include <span>
#include <string>
#include <utility>
#include <vector>

#include "retrokv/core/attention_state.h"
#include "retrokv/core/checksum.h"
#include "retrokv/core/error.h"
#include "retrokv/core/half.h"
#include "retrokv/core/topk.h"
#include "retrokv/core/view.h"
#include "retrokv/cpu/attention.h"
#include "retrokv/cpu/detail/partition.h"
#include "retrokv/cpu/detail/prefetch.h"
#include "retrokv/cpu/kmeans.h"
#include "retrokv/index/token_index.h"
#include "retrokv/index/wave_attention.h"
#include "retrokv/index/wave_params.h"
#include "retrokv/index/wave_quantized_zone.h"

namespace retrokv {

/// Wave index over the keys and values (n, d) of one KV head.
///
/// Zones: tokens [0, n_sink) and the last n_local tokens, plus every token appended since the
/// last update, form the steady zone (always exact). All other tokens are clustered segment by
/// segment; a cluster is one contiguous row range of the reordered KV copy the index owns.
/// search/select/attend are const and safe from many threads; build, append and load are not
/// (callers serialise them against readers).
class WaveIndex : public TokenIndex {
 public:
  WaveIndex() = default;

  /// Builds from keys and values (n, d) of one KV head (n >= 0, d >= 1, finite). Throws
  /// retrokv::Error naming the argument on bad shapes, non-finite values or bad params.
  WaveIndex(ConstMatrixView<float> keys, ConstMatrixView<float> values,
            const WaveParams& params = {}) {
    check_params(params);
    RETROKV_CHECK(keys.cols >= 1, "keys: expected d >= 1 columns, got ", keys.cols);
    RETROKV_CHECK(values.rows == keys.rows && values.cols == keys.cols, "values: expected shape (",
                  keys.rows, ", ", keys.cols, ") as keys, got (", values.rows, ", ", values.cols,
                  ")");
    RETROKV_CHECK(keys.rows < int64_t{1} << 31, "keys: at most 2^31 - 1 rows, got ", keys.rows);
    check_finite(keys, "keys");
    check_finite(values, "values");
    params_ = params;
    d_ = static_cast<int>(keys.cols);
    key_mean_.assign(d_, 0.f);
    cluster_offsets_.assign(1, 0);
    if (params.quantized_zone) qzone_ = WaveQuantizedZone(d_, params.quant);
    const int64_t n = keys.rows;
    n_tokens_ = n;
    n_sink_ = std::min<int64_t>(n, params.n_sink);
    const int64_t n_local = std::min<int64_t>(n - n_sink_, params.n_local);
    const int64_t mid_begin = n_sink_, mid_end = n - n_local;
    for (int64_t i = 0; i < n_sink_; ++i) push_steady(keys.row(i), values.row(i), i);
    for (int64_t i = mid_end; i < n; ++i) push_steady(keys.row(i), values.row(i), i);
    const int64_t m = mid_end - mid_begin;
    if (m > 0) {
      // One frame for every segment: the mean of the clustered keys at build time.
      std::vector<double> mean(d_, 0.0);
      for (int64_t i = mid_begin; i < mid_end; ++i)
        for (int t = 0; t < d_; ++t) mean[t] += keys(i, t);
      for (int t = 0; t < d_; ++t) key_mean_[t] = static_cast<float>(mean[t] / m);
      has_mean_ = true;
      const int64_t n_seg = (m + params.segment_size - 1) / params.segment_size;
      for (int64_t s = 0; s < n_seg; ++s) {
        const int64_t b = mid_begin + s * m / n_seg, e = mid_begin + (s + 1) * m / n_seg;
        add_segment(keys.slice_rows(b, e - b), values.slice_rows(b, e - b), b);
      }
    }
  }

  std::string name() const override { return "wave"; }
  int64_t size() const override { return n_tokens_; }
  int dim() const override { return d_; }
  const WaveParams& params() const { return params_; }

  /// Token ids of the exact selection of a GQA group q (g, d): the steady zone plus the tokens
  /// of the retrieval-zone clusters, ranked by the group score (max over heads of q.k), best
  /// first. params.k > 0: the retrieval zone grows in rank order until it holds >= k tokens and
  /// the best k ids are returned; params.k <= 0: the default budget, all of its ids.
  SearchResult search(ConstMatrixView<float> queries, const SearchParams& params) const override {
    check_queries(queries, "queries");
    WaveBudget b = params_.budget;
    if (params.k > 0) {
      b.retrieval_tokens = params.k;
      b.tolerance = 0.0;
    }
    b.estimation_frac = 0.0;
    b.estimation_tokens = 0;
    const float scale = 1.f / std::sqrt(static_cast<float>(d_));
    Scratch& ws = scratch();
    const float* steady_lse = nullptr;
    if (b.tolerance > 0.0) steady_lse = steady_group_lse(queries, scale, ws);
    score_centroids(queries, scale, ws);
    const WaveSelection sel = to_selection(
        select_from_logits(ws.logits.data(), static_cast<int>(queries.rows), b, steady_lse, ws));
    SearchResult res;
    std::vector<ScoredPos> cand;
    auto add = [&](const float* k, int32_t id) {
      float best = -INFINITY;
      for (int64_t h = 0; h < queries.rows; ++h)
        best = std::max(best, Eigen::Map<const Eigen::VectorXf>(queries.row(h), d_)
                                  .dot(Eigen::Map<const Eigen::VectorXf>(k, d_)));
      cand.push_back({best, id});
    };
    for (size_t i = 0; i < steady_ids_.size(); ++i)
      add(steady_keys_.data() + i * d_, steady_ids_[i]);
    for (int32_t c : sel.retrieval)
      for (int64_t p = cluster_offsets_[c]; p < cluster_offsets_[c + 1]; ++p)
        add(keys_.data() + p * d_, pos_ids_[p]);
    std::sort(cand.begin(), cand.end(), [](const ScoredPos& a, const ScoredPos& b) {
      return a.score > b.score || (a.score == b.score && a.id < b.id);
    });
    if (params.k > 0 && static_cast<int64_t>(cand.size()) > params.k) cand.resize(params.k);
    for (const auto& c : cand) {
      res.ids.push_back(c.id);
      res.scores.push_back(c.score);
    }
    res.keys_scanned =
        n_clusters() + static_cast<int64_t>(steady_ids_.size()) + sel.retrieval_tokens;
    return res;
  }

  /// Zones for a GQA group q (g, d) under `budget` (the index's default when null).
  WaveSelection select(ConstMatrixView<float> q, float scale,
                       const WaveBudget* budget = nullptr) const {
    check_queries(q, "q");
    RETROKV_CHECK(std::isfinite(scale) && scale > 0.f, "scale: expected finite > 0, got ", scale);
    const WaveBudget& b = budget ? *budget : params_.budget;
    check_budget(b);
    Scratch& ws = scratch();
    const float* steady_lse = steady_group_lse(q, scale, ws);
    score_centroids(q, scale, ws);
    return to_selection(
        select_from_logits(ws.logits.data(), static_cast<int>(q.rows), b, steady_lse, ws));
  }

  /// Tripartite attention of a GQA group q (g, d): o (g, d) normalised outputs, lse[g] natural-log
  /// LSE of the merged state (exact steady + retrieval zones, estimated estimation zone; the
  /// estimate stands in for exp-sums, so lse is itself an estimate when that zone is non-empty).
  /// budget: the index's default when null. stats (optional) reports the zones chosen.
  void attend(ConstMatrixView<float> q, float scale, MatrixView<float> o, float* lse,
              WaveStats* stats = nullptr, const WaveBudget* budget = nullptr) const {
    Step step{this, q, o, lse, stats};
    attend_steps(&step, 1, scale, budget);
  }

  /// One decode step of attend_steps: index, GQA group q (g, d), outputs o (g, d) and lse[g],
  /// optional stats; as the arguments of attend().
  struct Step {
    const WaveIndex* index = nullptr;
    ConstMatrixView<float> q;
    MatrixView<float> o;
    float* lse = nullptr;
    WaveStats* stats = nullptr;
  };

  /// attend() for n steps (e.g. the KV heads of one layer), interleaved: the first half of every
  /// step (steady zone, centroid scores, ranking, and the prefetch of its retrieval clusters and
  /// estimation zone) runs before the second halves (estimate, retrieval, merge), so the zone
  /// reads of one step are in flight while the others rank, instead of each step waiting on its
  /// own scattered misses. Each step's result equals its attend() bit for bit. budget: each
  /// index's default when null. Every step is checked before any runs.
  static void attend_steps(Step* steps, int n, float scale, const WaveBudget* budget = nullptr) {
    RETROKV_CHECK(n >= 0, "n: expected >= 0 steps, got ", n);
    RETROKV_CHECK(n == 0 || steps != nullptr, "steps: null pointer for n = ", n);
    RETROKV_CHECK(std::isfinite(scale) && scale > 0.f, "scale: expected finite > 0, got ", scale);
    for (int i = 0; i < n; ++i) {
      const Step& s = steps[i];
      RETROKV_CHECK(s.index != nullptr, "steps: step ", i, " has a null index");
      s.index->check_queries(s.q, "q");
      RETROKV_CHECK(s.o.rows == s.q.rows && s.o.cols == s.index->d_, "o: expected shape (",
                    s.q.rows, ", ", s.index->d_, "), got (", s.o.rows, ", ", s.o.cols, ")");
      RETROKV_CHECK(s.lse != nullptr, "lse: expected a pointer to ", s.q.rows, " floats, got null");
      check_budget(budget ? *budget : s.index->params_.budget);
      check_estimator_available(budget ? *budget : s.index->params_.budget,
                                s.index->params_.quantized_zone);
    }
    // Up to kSlots steps in flight, each with its own scratch.
    for (int i0 = 0; i0 < n; i0 += kSlots) {
      const int m = std::min(kSlots, n - i0);
      Zones sel[kSlots];
      for (int j = 0; j < m; ++j) {
        const Step& s = steps[i0 + j];
        const WaveBudget& b = budget ? *budget : s.index->params_.budget;
        sel[j] = s.index->begin_step(s.q, scale, b, scratch(j));
      }
      for (int j = 0; j < m; ++j) {
        const Step& s = steps[i0 + j];
        const WaveBudget& b = budget ? *budget : s.index->params_.budget;
        s.index->finish_step(s.q, scale, b, sel[j], scratch(j), s.o, s.lse, s.stats);
      }
    }
  }

  /// Appends tokens k, v (m, d) (decode-time keys and values) to the steady zone. Each time
  /// update_interval tokens have been appended since the last update, the steady zone's tokens
  /// older than its last n_local become a new segment. A rejected call changes nothing.
  void append(ConstMatrixView<float> k, ConstMatrixView<float> v) {
    RETROKV_CHECK(d_ > 0, "append: the index is empty (default-constructed); build it first");
    RETROKV_CHECK(k.cols == d_, "k: expected ", d_, " columns, got ", k.cols);
    RETROKV_CHECK(v.rows == k.rows && v.cols == k.cols, "v: expected shape (", k.rows, ", ", d_,
                  ") as k, got (", v.rows, ", ", v.cols, ")");
    RETROKV_CHECK(n_tokens_ + k.rows < int64_t{1} << 31,
                  "k: the index would exceed 2^31 - 1 "
                  "tokens (",
                  n_tokens_, " + ", k.rows, ")");
    check_finite(k, "k");
    check_finite(v, "v");
    for (int64_t i = 0; i < k.rows; ++i) {
      const int64_t id = n_tokens_++;
      if (n_sink_ < params_.n_sink && n_sink_ == static_cast<int64_t>(steady_ids_.size()) &&
          n_clusters() == 0) {
        push_steady(k.row(i), v.row(i), id);  // still filling the sink
        ++n_sink_;
        continue;
      }
      push_steady(k.row(i), v.row(i), id);
      if (++pending_ >= params_.update_interval) flush();
    }
  }

  /// Clusters across all segments.
  int64_t n_clusters() const { return static_cast<int64_t>(cluster_offsets_.size()) - 1; }
  const std::vector<WaveSegment>& segments() const { return segments_; }
  /// Cluster c is rows [offsets[c], offsets[c+1]) of the reordered KV copy.
  const std::vector<int64_t>& cluster_offsets() const { return cluster_offsets_; }
  /// Original token id of each reordered row.
  const std::vector<int32_t>& reordered_ids() const { return pos_ids_; }
  ConstMatrixView<float> reordered_keys() const { return view_of(keys_); }
  ConstMatrixView<float> reordered_values() const { return view_of(values_); }
  /// (C, d): mean of each cluster's raw (uncentred) keys.
  ConstMatrixView<float> centroids() const { return view_of(centroids_); }
  /// (C, d): sum of each cluster's values.
  ConstMatrixView<float> value_sums() const { return view_of(value_sums_); }
  /// (C, d): per-dimension variance of each cluster's raw keys around its centroid (population,
  /// 1/s), used by WaveEstimator::kVariance.
  ConstMatrixView<float> key_variances() const { return view_of(key_var_); }
  /// What a decode step reads (select, attend, search): the centroids and value sums above
  /// rounded to fp16 (round to nearest even), which halves the two cluster-metadata streams of a
  /// step. True unless some centroid or value sum lies outside fp16's finite range; then every
  /// step reads the float arrays above.
  bool half_metadata() const { return half_ok_; }
  /// (C, d) the fp16 centroids and value sums a step reads when half_metadata() (empty views
  /// otherwise).
  ConstMatrixView<half> step_centroids() const { return half_view(centroids_h_); }
  ConstMatrixView<half> step_value_sums() const { return half_view(value_sums_h_); }
  /// Steady-zone token ids (sinks first, then the rest in order) and their keys and values.
  const std::vector<int32_t>& steady_ids() const { return steady_ids_; }
  ConstMatrixView<float> steady_keys() const { return view_of(steady_keys_); }
  ConstMatrixView<float> steady_values() const { return view_of(steady_values_); }
  /// Tokens appended since the last update.
  int64_t pending() const { return pending_; }
  /// The low-bit per-token copy read by WaveEstimator::kQuantized; null unless the index was
  /// built with params.quantized_zone.
  const WaveQuantizedZone* quantized_zone() const {
    return params_.quantized_zone ? &qzone_ : nullptr;
  }

  /// Bytes of cluster metadata and bookkeeping (not the KV copy).
  int64_t memory_bytes() const override {
    return static_cast<int64_t>((centroids_.size() + value_sums_.size() + key_var_.size() +
                                 key_mean_.size() + cluster_sizes_.size()) *
                                    sizeof(float) +
                                (centroids_h_.size() + value_sums_h_.size()) * sizeof(half) +
                                cluster_offsets_.size() * sizeof(int64_t) +
                                (pos_ids_.size() + steady_ids_.size()) * sizeof(int32_t) +
                                segments_.size() * sizeof(WaveSegment) +
                                (params_.quantized_zone ? qzone_.memory_bytes() : 0));
  }

  static constexpr const char* kMagic = "RKVWAVE1";
  /// Version 2 adds budget.estimator, budget.variance_cap and the per-cluster key variances;
  /// version 3 the quantized zone (params.quantized_zone, params.quant, then the zone's codes).
  /// Versions 1 and 2 still load (defaults for the new fields, variances recomputed, no codes).
  static constexpr uint32_t kVersion = 3;

  /// Writes the whole index (params, metadata and the KV copy) to a versioned, checksummed file.
  void save(const std::string& path) const {
    BinaryWriter w(kMagic, kVersion);
    w.write<int64_t>(params_.segment_size);
    w.write<int32_t>(params_.tokens_per_cluster);
    w.write<int32_t>(params_.iterations);
    w.write<int32_t>(params_.n_sink);
    w.write<int32_t>(params_.n_local);
    w.write<int64_t>(params_.update_interval);
    w.write<uint64_t>(params_.seed);
    w.write<double>(params_.budget.retrieval_frac);
    w.write<int64_t>(params_.budget.retrieval_tokens);
    w.write<double>(params_.budget.estimation_frac);
    w.write<int64_t>(params_.budget.estimation_tokens);
    w.write<double>(params_.budget.tolerance);
    w.write<int32_t>(static_cast<int32_t>(params_.budget.estimator));
    w.write<double>(params_.budget.variance_cap);
    w.write<int32_t>(d_);
    w.write<int64_t>(n_tokens_);
    w.write<int64_t>(n_sink_);
    w.write<int64_t>(pending_);
    w.write<bool>(has_mean_);
    w.write_vector(key_mean_);
    w.write_vector(steady_ids_);
    w.write_vector(steady_keys_);
    w.write_vector(steady_values_);
    w.write_vector(cluster_offsets_);
    w.write_vector(pos_ids_);
    w.write_vector(keys_);
    w.write_vector(values_);
    w.write_vector(centroids_);
    w.write_vector(value_sums_);
    w.write_vector(key_var_);
    w.write_vector(segments_);
    w.write<bool>(params_.quantized_zone);
    w.write<int32_t>(params_.quant.key_bits);
    w.write<int32_t>(params_.quant.value_bits);
    if (params_.quantized_zone) qzone_.write_to(w);
    w.save(path);
  }

  /// Reads a file written by save(). Truncated, corrupt or inconsistent files throw
  /// retrokv::Error naming the path.
  static WaveIndex load(const std::string& path) {
    BinaryReader r = BinaryReader::open(path, kMagic, 1, kVersion);
    const uint32_t version = r.version();
    WaveIndex x;
    WaveParams& p = x.params_;
    p.segment_size = r.read<int64_t>();
    p.tokens_per_cluster = r.read<int32_t>();
    p.iterations = r.read<int32_t>();
    p.n_sink = r.read<int32_t>();
    p.n_local = r.read<int32_t>();
    p.update_interval = r.read<int64_t>();
    p.seed = r.read<uint64_t>();
    p.budget.retrieval_frac = r.read<double>();
    p.budget.retrieval_tokens = r.read<int64_t>();
    p.budget.estimation_frac = r.read<double>();
    p.budget.estimation_tokens = r.read<int64_t>();
    p.budget.tolerance = r.read<double>();
    if (version >= 2) {
      p.budget.estimator = static_cast<WaveEstimator>(r.read<int32_t>());
      p.budget.variance_cap = r.read<double>();
    }
    x.d_ = r.read<int32_t>();
    x.n_tokens_ = r.read<int64_t>();
    x.n_sink_ = r.read<int64_t>();
    x.pending_ = r.read<int64_t>();
    x.has_mean_ = r.read<bool>();
    r.check(x.d_ >= 1 && x.n_tokens_ >= 0 && x.n_tokens_ < (int64_t{1} << 31), "d ", x.d_,
            " / n_tokens ", x.n_tokens_);
    const uint64_t d = static_cast<uint64_t>(x.d_);
    x.key_mean_ = r.read_vector<float>();
    x.steady_ids_ = r.read_vector<int32_t>();
    x.steady_keys_ = r.read_vector<float>();
    x.steady_values_ = r.read_vector<float>();
    x.cluster_offsets_ = r.read_vector<int64_t>();
    x.pos_ids_ = r.read_vector<int32_t>();
    x.keys_ = r.read_vector<float>();
    x.values_ = r.read_vector<float>();
    x.centroids_ = r.read_vector<float>();
    x.value_sums_ = r.read_vector<float>();
    if (version >= 2) x.key_var_ = r.read_vector<float>();
    x.segments_ = r.read_vector<WaveSegment>();
    if (version >= 3) {
      p.quantized_zone = r.read<bool>();
      p.quant.key_bits = r.read<int32_t>();
      p.quant.value_bits = r.read<int32_t>();
      if (p.quantized_zone) {
        try {
          x.qzone_ = WaveQuantizedZone::read_from(r);
        } catch (const Error& e) {
          r.check(false, "quantized zone: ", e.what());
        }
      }
    }
    r.expect_end();
    // The params are checked once all of them are read (the estimator's check needs the
    // version-3 quantized_zone flag).
    try {
      check_params(p);
    } catch (const Error& e) {
      r.check(false, "params: ", e.what());
    }
    // Consistency: every token exactly once, shapes agree, offsets increase to the row count.
    const uint64_t n_steady = x.steady_ids_.size(), n_pos = x.pos_ids_.size();
    r.check(x.key_mean_.size() == d, "key mean size");
    r.check(x.steady_keys_.size() == n_steady * d && x.steady_values_.size() == n_steady * d,
            "steady zone sizes");
    r.check(x.keys_.size() == n_pos * d && x.values_.size() == n_pos * d, "KV sizes");
    r.check(n_steady + n_pos == static_cast<uint64_t>(x.n_tokens_), "token count");
    r.check(x.n_sink_ >= 0 && x.n_sink_ <= p.n_sink && static_cast<uint64_t>(x.n_sink_) <= n_steady,
            "sink count");
    r.check(x.pending_ >= 0 && x.pending_ < p.update_interval, "pending count");
    r.check(!x.cluster_offsets_.empty() && x.cluster_offsets_.front() == 0 &&
                static_cast<uint64_t>(x.cluster_offsets_.back()) == n_pos,
            "cluster offsets");
    for (size_t c = 1; c < x.cluster_offsets_.size(); ++c)
      r.check(x.cluster_offsets_[c] > x.cluster_offsets_[c - 1], "cluster offsets not increasing");
    const uint64_t n_c = x.cluster_offsets_.size() - 1;
    r.check(x.centroids_.size() == n_c * d && x.value_sums_.size() == n_c * d, "cluster sizes");
    if (version < 2) {
      x.key_var_.clear();
      for (uint64_t c = 0; c < n_c; ++c) x.push_cluster_variance(static_cast<int32_t>(c));
    }
    r.check(x.key_var_.size() == n_c * d, "key variance size");
    for (float f : x.key_var_) r.check(f >= 0.f, "negative key variance");
    std::vector<uint8_t> seen(static_cast<size_t>(x.n_tokens_), 0);
    for (const auto* ids : {&x.steady_ids_, &x.pos_ids_}) {
      for (int32_t id : *ids) {
        r.check(id >= 0 && id < x.n_tokens_ && !seen[id], "token id ", id);
        seen[id] = 1;
      }
    }
    int64_t next_cluster = 0;
    for (const WaveSegment& s : x.segments_) {
      r.check(s.first_cluster == next_cluster && s.n_clusters >= 1 &&
                  s.first_cluster + s.n_clusters <= static_cast<int64_t>(n_c) &&
                  s.first_token >= 0 && s.n_tokens >= 1 &&
                  s.first_token + s.n_tokens <= x.n_tokens_,
              "segment table");
      next_cluster += s.n_clusters;
    }
    r.check(next_cluster == static_cast<int64_t>(n_c), "segment table covers the clusters");
    if (p.quantized_zone)
      r.check(x.qzone_.dim() == x.d_ && x.qzone_.params().key_bits == p.quant.key_bits &&
                  x.qzone_.params().value_bits == p.quant.value_bits &&
                  x.qzone_.cluster_offsets() == x.cluster_offsets_,
              "quantized zone does not match the clusters");
    for (const auto* v : {&x.key_mean_, &x.steady_keys_, &x.steady_values_, &x.keys_, &x.values_,
                          &x.centroids_, &x.value_sums_, &x.key_var_})
      for (float f : *v) r.check(std::isfinite(f), "non-finite value");
    // Not stored (the file format is unchanged): derived from the float metadata.
    x.cluster_sizes_.resize(n_c);
    for (uint64_t c = 0; c < n_c; ++c)
      x.cluster_sizes_[c] = static_cast<float>(x.cluster_size(static_cast<int32_t>(c)));
    x.push_half_metadata(0);
    return x;
  }

 private:
  struct ScoredPos {
    float score;
    int32_t id;
  };

  template <typename Vec>
  ConstMatrixView<float> view_of(const Vec& v) const {
    const int64_t rows = d_ ? static_cast<int64_t>(v.size()) / d_ : 0;
    return ConstMatrixView<float>(v.empty() ? nullptr : v.data(), rows, d_);
  }

  static void check_params(const WaveParams& p) {
    RETROKV_CHECK(p.segment_size >= 1, "params.segment_size: expected >= 1, got ", p.segment_size);
    RETROKV_CHECK(p.tokens_per_cluster >= 1, "params.tokens_per_cluster: expected >= 1, got ",
                  p.tokens_per_cluster);
    RETROKV_CHECK(p.iterations >= 0, "params.iterations: expected >= 0, got ", p.iterations);
    RETROKV_CHECK(p.n_sink >= 0, "params.n_sink: expected >= 0, got ", p.n_sink);
    RETROKV_CHECK(p.n_local >= 0, "params.n_local: expected >= 0, got ", p.n_local);
    RETROKV_CHECK(p.update_interval >= 1, "params.update_interval: expected >= 1, got ",
                  p.update_interval);
    for (const auto& [bits, name] : {std::pair{p.quant.key_bits, "params.quant.key_bits"},
                                     std::pair{p.quant.value_bits, "params.quant.value_bits"}})
      RETROKV_CHECK(bits == 2 || bits == 4 || bits == 8, name, ": expected 2, 4 or 8, got ", bits);
    check_budget(p.budget);
    check_estimator_available(p.budget, p.quantized_zone);
  }
  // kQuantized reads the low-bit copy, which only an index built with quantized_zone holds.
  static void check_estimator_available(const WaveBudget& b, bool has_quantized_zone) {
    RETROKV_CHECK(b.estimator != WaveEstimator::kQuantized || has_quantized_zone,
                  "budget.estimator: kQuantized needs an index built with "
                  "params.quantized_zone = true");
  }
  static void check_budget(const WaveBudget& b) {
    RETROKV_CHECK(b.retrieval_frac >= 0.0 && b.retrieval_frac <= 1.0,
                  "budget.retrieval_frac: expected in [0, 1], got ", b.retrieval_frac);
    RETROKV_CHECK(b.estimation_frac >= 0.0 && b.estimation_frac <= 1.0,
                  "budget.estimation_frac: expected in [0, 1], got ", b.estimation_frac);
    RETROKV_CHECK(b.retrieval_tokens >= 0, "budget.retrieval_tokens: expected >= 0, got ",
                  b.retrieval_tokens);
    RETROKV_CHECK(b.estimation_tokens >= 0, "budget.estimation_tokens: expected >= 0, got ",
                  b.estimation_tokens);
    RETROKV_CHECK(b.tolerance >= 0.0 && b.tolerance < 1.0,
                  "budget.tolerance: expected in [0, 1), got ", b.tolerance);
    RETROKV_CHECK(b.estimator == WaveEstimator::kCentroid ||
                      b.estimator == WaveEstimator::kVariance ||
                      b.estimator == WaveEstimator::kQuantized,
                  "budget.estimator: expected kCentroid (0), kVariance (1) or kQuantized (2), got ",
                  static_cast<int32_t>(b.estimator));
    RETROKV_CHECK(std::isfinite(b.variance_cap) && b.variance_cap >= 0.0,
                  "budget.variance_cap: expected finite >= 0, got ", b.variance_cap);
  }
  static void check_finite(ConstMatrixView<float> m, const char* name) {
    for (int64_t i = 0; i < m.rows; ++i)
      for (int64_t j = 0; j < m.cols; ++j)
        RETROKV_CHECK(std::isfinite(m(i, j)), name, ": expected finite values, got ", m(i, j),
                      " at (", i, ", ", j, ")");
  }
  void check_queries(ConstMatrixView<float> q, const char* name) const {
    RETROKV_CHECK(d_ > 0, "the index is empty (default-constructed); build it first");
    RETROKV_CHECK(q.rows >= 1, name, ": expected at least one query head, got ", q.rows);
    RETROKV_CHECK(q.cols == d_, name, ": expected ", d_, " columns (d), got ", q.cols);
    check_finite(q, name);
  }

  void push_steady(const float* k, const float* v, int64_t id) {
    steady_keys_.insert(steady_keys_.end(), k, k + d_);
    steady_values_.insert(steady_values_.end(), v, v + d_);
    steady_ids_.push_back(static_cast<int32_t>(id));
  }

  // Turns the steady zone's non-sink tokens older than the last n_local into a new segment.
  void flush() {
    pending_ = 0;
    const int64_t tail = static_cast<int64_t>(steady_ids_.size()) - n_sink_;
    const int64_t convert = tail - params_.n_local;
    if (convert <= 0) return;
    const int64_t b = n_sink_;
    ConstMatrixView<float> k(steady_keys_.data() + b * d_, convert, d_);
    ConstMatrixView<float> v(steady_values_.data() + b * d_, convert, d_);
    if (!has_mean_) {
      std::vector<double> mean(d_, 0.0);
      for (int64_t i = 0; i < convert; ++i)
        for (int t = 0; t < d_; ++t) mean[t] += k(i, t);
      for (int t = 0; t < d_; ++t) key_mean_[t] = static_cast<float>(mean[t] / convert);
      has_mean_ = true;
    }
    add_segment(k, v, steady_ids_[b]);
    steady_keys_.erase(steady_keys_.begin() + b * d_, steady_keys_.begin() + (b + convert) * d_);
    steady_values_.erase(steady_values_.begin() + b * d_,
                         steady_values_.begin() + (b + convert) * d_);
    steady_ids_.erase(steady_ids_.begin() + b, steady_ids_.begin() + b + convert);
  }

  // Clusters one segment of consecutive tokens (first id `first_token`) and appends its clusters
  // to the reordered store. Empty k-means clusters (possible only for duplicate keys) are dropped.
  void add_segment(ConstMatrixView<float> k, ConstMatrixView<float> v, int64_t first_token) {
    const int64_t n = k.rows;
    Matrix<float> centred(n, d_);
    for (int64_t i = 0; i < n; ++i)
      for (int t = 0; t < d_; ++t) centred(i, t) = k(i, t) - key_mean_[t];
    cpu::KMeansParams kp;
    kp.n_clusters = static_cast<int>(
        std::min<int64_t>(n, (n + params_.tokens_per_cluster - 1) / params_.tokens_per_cluster));
    kp.iterations = params_.iterations;
    kp.spherical = true;
    kp.init = cpu::KMeansParams::Init::kEvenlySpaced;
    kp.seed = params_.seed;
    const cpu::KMeansResult km = cpu::kmeans(centred.view(), kp);
    std::vector<int64_t> start(kp.n_clusters + 1, 0);
    for (int c = 0; c < kp.n_clusters; ++c) start[c + 1] = start[c] + km.sizes[c];
    std::vector<int64_t> order(n);
    {
      std::vector<int64_t> fill(start.begin(), start.end() - 1);
      for (int64_t i = 0; i < n; ++i) order[fill[km.assignment[i]]++] = i;
    }
    WaveSegment seg;
    seg.first_token = first_token;
    seg.n_tokens = n;
    seg.first_cluster = n_clusters();
    std::vector<double> ks(d_), vs(d_);
    for (int c = 0; c < kp.n_clusters; ++c) {
      if (km.sizes[c] == 0) continue;
      std::fill(ks.begin(), ks.end(), 0.0);
      std::fill(vs.begin(), vs.end(), 0.0);
      for (int64_t p = start[c]; p < start[c + 1]; ++p) {
        const int64_t i = order[p];
        keys_.insert(keys_.end(), k.row(i), k.row(i) + d_);
        values_.insert(values_.end(), v.row(i), v.row(i) + d_);
        pos_ids_.push_back(static_cast<int32_t>(first_token + i));
        for (int t = 0; t < d_; ++t) {
          ks[t] += k(i, t);
          vs[t] += v(i, t);
        }
      }
      for (int t = 0; t < d_; ++t) {
        centroids_.push_back(static_cast<float>(ks[t] / km.sizes[c]));
        value_sums_.push_back(static_cast<float>(vs[t]));
      }
      cluster_offsets_.push_back(cluster_offsets_.back() + km.sizes[c]);
      cluster_sizes_.push_back(static_cast<float>(km.sizes[c]));
      push_cluster_variance(static_cast<int32_t>(n_clusters() - 1));
      ++seg.n_clusters;
    }
    if (params_.quantized_zone && seg.n_clusters > 0) {
      // The zone numbers its clusters as the index does (both only ever append).
      const int64_t c0 = seg.first_cluster, c1 = n_clusters();
      const int64_t r0 = cluster_offsets_[c0], r1 = cluster_offsets_[c1];
      qzone_.append(view_of(keys_).slice_rows(r0, r1 - r0),
                    view_of(values_).slice_rows(r0, r1 - r0),
                    std::span<const int64_t>(cluster_offsets_.data() + c0, c1 - c0 + 1),
                    view_of(centroids_).slice_rows(c0, c1 - c0));
    }
    segments_.push_back(seg);
    push_half_metadata(static_cast<size_t>(seg.first_cluster) * d_);
  }

  // Extends the fp16 copies of the centroids and value sums from element `from` on (all of them
  // after a load). A decode step streams all C centroids and gathers the estimation zone's value
  // sums, cold in a model; in fp16 those reads are half the bytes. The rounding (relative 2^-11)
  // moves a logit by about 5e-4 * |q.c|, far below the gaps that decide a cluster's zone, and the
  // estimate it feeds is itself approximate (docs/results.md, issue 7 session 4: the same
  // SmolLM2 agreement). A value past fp16's range (possible for arbitrary input, not for model
  // keys) would round to inf: then the index drops the copies and reads the floats for good.
  void push_half_metadata(size_t from) {
    if (!half_ok_) return;
    constexpr float kHalfMax = 65504.f;
    for (size_t i = from; i < centroids_.size(); ++i) {
      if (!(std::abs(centroids_[i]) <= kHalfMax && std::abs(value_sums_[i]) <= kHalfMax)) {
        half_ok_ = false;
        std::vector<half>().swap(centroids_h_);
        std::vector<half>().swap(value_sums_h_);
        return;
      }
    }
    centroids_h_.reserve(centroids_.capacity());
    value_sums_h_.reserve(value_sums_.capacity());
    for (size_t i = from; i < centroids_.size(); ++i) {
      centroids_h_.push_back(half(centroids_[i]));
      value_sums_h_.push_back(half(value_sums_[i]));
    }
  }

  ConstMatrixView<half> half_view(const std::vector<half>& v) const {
    const int64_t rows = d_ ? static_cast<int64_t>(v.size()) / d_ : 0;
    return ConstMatrixView<half>(v.empty() ? nullptr : v.data(), rows, d_);
  }

  // Appends the per-dimension variance (1/s) of cluster c's stored keys around its centroid.
  void push_cluster_variance(int32_t c) {
    std::vector<double> var(d_, 0.0);
    const float* cen = centroids_.data() + static_cast<int64_t>(c) * d_;
    for (int64_t p = cluster_offsets_[c]; p < cluster_offsets_[c + 1]; ++p)
      for (int t = 0; t < d_; ++t) {
        const double dl = static_cast<double>(keys_[p * d_ + t]) - cen[t];
        var[t] += dl * dl;
      }
    const double s = static_cast<double>(cluster_size(c));
    for (int t = 0; t < d_; ++t) key_var_.push_back(static_cast<float>(var[t] / s));
  }

  // Steps attend_steps keeps in flight at once (each holds one scratch).
  static constexpr int kSlots = 8;

  // Per-thread buffers of select/attend/search, reused across calls (a decode step at 8K
  // tokens is tens of microseconds, so a dozen heap allocations per call are a visible share).
  // thread_local keeps concurrent calls on one index independent; nothing here outlives a call.
  struct Scratch {
    std::vector<float> logits;   // (g, C) q.c*scale
    std::vector<float> e;        // (g, C) exp(logit - max_h)
    std::vector<float> score;    // (C) group score Σ_h softmax_h
    std::vector<uint64_t> keys;  // (C) packed (score, id) ranking keys
    std::vector<uint64_t> tmp;   // (C) partition buffer of select_largest
    std::vector<int32_t> rank;   // ranked cluster ids, best first
    std::vector<int32_t> rows;   // retrieval-zone row ids
    std::vector<double> cluster_mass, steady_mass, suffix;
    std::vector<float> states, lses, a2, merged, steady_o, steady_lse;
  };
  // slot: one scratch per step attend_steps keeps in flight (select/search use slot 0).
  static Scratch& scratch(int slot = 0) {
    thread_local Scratch s[kSlots];
    return s[slot];
  }

  // Zones as a view into the scratch ranking: rank[0, n_retrieval) retrieval, the next
  // n_estimation the estimation zone.
  struct Zones {
    const int32_t* rank = nullptr;
    int64_t n_retrieval = 0, n_estimation = 0;
    int64_t retrieval_tokens = 0, estimation_tokens = 0;
    double estimated_remaining_mass = 0.0;
  };
  static WaveSelection to_selection(const Zones& z) {
    WaveSelection sel;
    if (z.rank) {
      sel.retrieval.assign(z.rank, z.rank + z.n_retrieval);
      sel.estimation.assign(z.rank + z.n_retrieval, z.rank + z.n_retrieval + z.n_estimation);
    }
    sel.retrieval_tokens = z.retrieval_tokens;
    sel.estimation_tokens = z.estimation_tokens;
    sel.estimated_remaining_mass = z.estimated_remaining_mass;
    return sel;
  }

  // First half of a decode step (shapes checked): the exact steady zone into ws.states[0] and
  // ws.lses[0, g), centroid logits, the zones, the retrieval rows in ws.rows; and prefetches of
  // the retrieval clusters' heads and the estimation zone's value sums.
  Zones begin_step(ConstMatrixView<float> q, float scale, const WaveBudget& b, Scratch& ws) const {
    const int g = static_cast<int>(q.rows);
    // states: (3, g, d) = steady, retrieval (exact), estimation; lses: (3, g), natural-log.
    ws.states.resize(static_cast<size_t>(3) * g * d_);
    ws.lses.resize(static_cast<size_t>(3) * g);
    // In a model every step starts cold (the weights and the other heads pass through the caches
    // between two steps of this head), so the step asks for its data as soon as the addresses
    // are known: the head of the centroid stream now, to arrive while the steady zone is
    // attended; the rest streams ahead of the scoring loop (score_centroids).
    prefetch_centroids(0, kCentroidLead);
    // The steady zone's exact LSE also feeds the adaptive budget and the remaining-mass figure.
    cpu::attend_range<float>(q, steady_keys(), steady_values(), 0,
                             static_cast<int64_t>(steady_ids_.size()), scale,
                             MatrixView<float>(ws.states.data(), g, d_), ws.lses.data());
    score_centroids(q, scale, ws);
    // Unordered: the estimation zone's order only sets the summation order of its estimate.
    const Zones sel =
        select_from_logits(ws.logits.data(), g, b, ws.lses.data(), ws, /*ordered=*/false);
    // Retrieval zone: whole clusters, each a contiguous run of rows of the reordered copy. The
    // head of every retrieval cluster and the estimation zone's value sums are requested now, all
    // at once (dozens of independent misses in flight instead of one cluster after another); the
    // estimate, which only needs the value sums, runs first in finish_step while the clusters
    // arrive. The zones are independent states merged afterwards in a fixed order, so the result
    // is unchanged (bit for bit: test_wave_index.cpp, AttendIsBitIdenticalToZoneKernels).
    ws.rows.resize(static_cast<size_t>(sel.retrieval_tokens));
    int32_t* out = ws.rows.data();
    for (int64_t i = 0; i < sel.n_retrieval; ++i) {
      const int32_t c = sel.rank[i];
      const int64_t b0 = cluster_offsets_[c], e0 = cluster_offsets_[c + 1];
      // The first lines of the cluster's keys and values: enough to start the hardware
      // prefetcher on each run (asking for every line stalled on the miss buffers instead).
      const size_t lead =
          std::min(kClusterLead, static_cast<size_t>((e0 - b0) * d_) * sizeof(float));
      cpu::detail::prefetch_bytes<3>(keys_.data() + b0 * d_, lead);
      cpu::detail::prefetch_bytes<3>(values_.data() + b0 * d_, lead);
      for (int64_t p = b0; p < e0; ++p) *out++ = static_cast<int32_t>(p);
    }
    const size_t vs_row = static_cast<size_t>(d_) * (half_ok_ ? sizeof(half) : sizeof(float));
    const char* vs = half_ok_
                         ? static_cast<const char*>(static_cast<const void*>(value_sums_h_.data()))
                         : static_cast<const char*>(static_cast<const void*>(value_sums_.data()));
    if (b.estimator != WaveEstimator::kQuantized)  // kQuantized reads codes, not value sums
      for (int64_t i = 0; i < sel.n_estimation; ++i)
        cpu::detail::prefetch_bytes<3>(vs + sel.rank[sel.n_retrieval + i] * vs_row, vs_row);
    return sel;
  }

  // Second half: the estimate, the exact retrieval zone, the merge into o, lse, and stats.
  void finish_step(ConstMatrixView<float> q, float scale, const WaveBudget& b, const Zones& sel,
                   Scratch& ws, MatrixView<float> o, float* lse, WaveStats* stats) const {
    const int g = static_cast<int>(q.rows);
    float* lses = ws.lses.data();
    auto state = [&](int z) {
      return MatrixView<float>(ws.states.data() + static_cast<size_t>(z) * g * d_, g, d_);
    };
    const int64_t n_c = n_clusters();
    const bool variance = b.estimator == WaveEstimator::kVariance;
    if (variance) {
      // (g, d) squared scaled queries for the variance estimator.
      ws.a2.resize(static_cast<size_t>(g) * d_);
      for (int h = 0; h < g; ++h)
        for (int t = 0; t < d_; ++t) ws.a2[h * d_ + t] = (q(h, t) * scale) * (q(h, t) * scale);
    }
    auto estimate = [&](const auto* value_sums) {
      detail::estimate_zone(ws.logits.data(), n_c, g, cluster_offsets_.data(), value_sums,
                            sel.rank + sel.n_retrieval, sel.n_estimation, d_, state(2).data,
                            lses + 2 * g, variance ? key_var_.data() : nullptr,
                            variance ? ws.a2.data() : nullptr, static_cast<float>(b.variance_cap));
    };
    if (b.estimator == WaveEstimator::kQuantized) {
      qzone_.estimate(q, scale,
                      std::span<const int32_t>(sel.rank + sel.n_retrieval,
                                               static_cast<size_t>(sel.n_estimation)),
                      state(2), lses + 2 * g);
    } else if (half_ok_) {
      estimate(value_sums_h_.data());
    } else {
      estimate(value_sums_.data());
    }
    cpu::attend_ids<float>(q, reordered_keys(), reordered_values(), ws.rows.data(),
                           sel.retrieval_tokens, scale, state(1), lses + g);
    ws.merged.resize(static_cast<size_t>(3) * d_);
    for (int h = 0; h < g; ++h) {
      float l[3];
      for (int z = 0; z < 3; ++z) {
        std::copy(state(z).row(h), state(z).row(h) + d_, ws.merged.data() + z * d_);
        l[z] = lses[z * g + h];
      }
      lse[h] = merge_states_n(ws.merged.data(), l, 3, d_, o.row(h));
    }
    if (stats) {
      stats->n_clusters = n_c;
      stats->steady_tokens = static_cast<int64_t>(steady_ids_.size());
      stats->retrieval_clusters = sel.n_retrieval;
      stats->retrieval_tokens = sel.retrieval_tokens;
      stats->estimation_clusters = sel.n_estimation;
      stats->estimation_tokens = sel.estimation_tokens;
      stats->total_tokens = n_tokens_;
      stats->estimated_remaining_mass = sel.estimated_remaining_mass;
    }
  }

  // ws.logits (g, C) = q.c*scale, row-major. The project's SIMD row kernel streams the centroids
  // once for the whole group; an Eigen GEMM here cost more in packing the (C, d) centroid matrix
  // on every call (and ran at Eigen's compile-time SIMD width) than the g*C*d multiply-adds.
  // The rows are the fp16 centroids unless half_metadata() is false.
  void score_centroids(ConstMatrixView<float> q, float scale, Scratch& ws) const {
    const int64_t n_c = n_clusters();
    const int g = static_cast<int>(q.rows);
    ws.logits.resize(static_cast<size_t>(g) * n_c);
    if (n_c == 0) return;
    if (half_ok_) {
      score_rows(centroids_h_.data(), q, ws.logits.data());
    } else {
      score_rows(centroids_.data(), q, ws.logits.data());
    }
    float* out = ws.logits.data();
    for (size_t i = 0; i < ws.logits.size(); ++i) out[i] *= scale;
  }

  // out (g, C) = q.c over centroid rows of type T (unscaled).
  template <typename T>
  void score_rows(const T* centroids, ConstMatrixView<float> q, float* out) const {
    const int64_t n_c = n_clusters();
    const int g = static_cast<int>(q.rows);
    const cpu::RowKernels<T> rk = cpu::row_kernels<T>();
    // Blocks of kCentroidBlock rows; scoring row i prefetches row i + kCentroidLead (attend()
    // asked for the first kCentroidLead rows before the steady zone), so the stream stays ahead
    // of the hardware prefetcher, which starts over at every 4 KB page. Row for row the same
    // kernel path as one big block (kCentroidBlock is a multiple of every SIMD row group).
    for (int64_t i = 0; i < n_c; i += kCentroidBlock) {
      const int nb = static_cast<int>(std::min<int64_t>(kCentroidBlock, n_c - i));
      const cpu::RowSource<T> rows{centroids, d_, nullptr, i};
      const cpu::RowSource<T> ahead{centroids, d_, nullptr, i + kCentroidLead};
      const int n_ahead = static_cast<int>(std::clamp<int64_t>(n_c - i - kCentroidLead, 0, nb));
      rk.dot_rows(q.data, q.ld, g, rows, nb, d_, out + i, n_c, ahead, n_ahead);
    }
  }

  // Centroid rows prefetched ahead of the scoring, and rows scored per kernel call (see
  // score_centroids).
  static constexpr int64_t kCentroidLead = 32;
  static constexpr int64_t kCentroidBlock = 1024;
  // Bytes of each retrieval cluster's keys and values requested right after the ranking.
  static constexpr size_t kClusterLead = 256;

  // Prefetches centroid rows [begin, begin + count) (clipped).
  void prefetch_centroids(int64_t begin, int64_t count) const {
    const int64_t end = std::min(n_clusters(), begin + count);
    if (end <= begin) return;
    if (half_ok_) {
      cpu::detail::prefetch_bytes<3>(centroids_h_.data() + begin * d_,
                                     static_cast<size_t>((end - begin) * d_) * sizeof(half));
    } else {
      cpu::detail::prefetch_bytes<3>(centroids_.data() + begin * d_,
                                     static_cast<size_t>((end - begin) * d_) * sizeof(float));
    }
  }

  // Exact steady-zone natural-log LSE per head (used by the adaptive budget's total), in
  // ws.steady_lse; returns its data.
  const float* steady_group_lse(ConstMatrixView<float> q, float scale, Scratch& ws) const {
    ws.steady_o.resize(static_cast<size_t>(q.rows) * d_);
    ws.steady_lse.resize(q.rows);
    cpu::attend_range<float>(
        q, steady_keys(), steady_values(), 0, static_cast<int64_t>(steady_ids_.size()), scale,
        MatrixView<float>(ws.steady_o.data(), q.rows, d_), ws.steady_lse.data());
    return ws.steady_lse.data();
  }

  int64_t cluster_size(int32_t c) const { return cluster_offsets_[c + 1] - cluster_offsets_[c]; }

  // Ranks clusters by Σ_h softmax_h(logits) and cuts the zones. steady_lse (natural-log, one per
  // head) feeds the adaptive budget and the remaining-mass figure; null: no such figure. The
  // returned zones point into ws.rank (valid until the next call on this thread). ordered =
  // false (attend): under a fixed budget the estimation zone may come in any order (it is only
  // summed); the retrieval zone is always in rank order.
  Zones select_from_logits(const float* logits, int g, const WaveBudget& b, const float* steady_lse,
                           Scratch& ws, bool ordered = true) const {
    Zones sel;
    const int64_t n_c = n_clusters();
    if (n_c == 0) return sel;
    // One exp per (head, cluster): e = exp(l - max_h l) gives the softmax score and, times the
    // cluster size, the centroid estimate of the cluster's attention mass (relative to max_h).
    ws.e.resize(static_cast<size_t>(g) * n_c);
    ws.cluster_mass.resize(g);
    ws.steady_mass.resize(g);
    ws.score.assign(n_c, 0.f);
    float* e = ws.e.data();
    using ArrayMap = Eigen::Map<Eigen::ArrayXf>;
    using ConstArrayMap = Eigen::Map<const Eigen::ArrayXf>;
    const ConstArrayMap size_a(cluster_sizes_.data(), n_c);
    const cpu::MathKernels mk = cpu::math_kernels();
    for (int h = 0; h < g; ++h) {
      const ConstArrayMap l(logits + h * n_c, n_c);
      float* eh = e + h * n_c;
      const float m = l.maxCoeff();
      // The project's SIMD exp (runtime-dispatched, up to AVX-512) over every centroid: this
      // loop is a large part of the step once the exact zones are small.
      std::copy(logits + h * n_c, logits + (h + 1) * n_c, eh);
      const double z = static_cast<double>(mk.exp_shift_sum(eh, static_cast<int>(n_c), m));
      const ConstArrayMap ea(eh, n_c);
      const double mass = static_cast<double>((ea * size_a).sum());
      ArrayMap(ws.score.data(), n_c) += ea * static_cast<float>(1.0 / z);
      ws.cluster_mass[h] = mass;
      // exp of a huge gap is +inf in double: the clusters' share is then 0, never NaN.
      ws.steady_mass[h] = steady_lse ? std::exp(static_cast<double>(steady_lse[h]) - m) : 0.0;
    }
    // Rank by one packed integer per cluster: the score's bits (scores are >= 0, so their IEEE
    // bits order like the floats) above the complemented id, so that descending integer order
    // is exactly retrokv::better's order (higher score, then smaller id) and the selection and
    // sort compare plain integers instead of calling a comparator.
    ws.keys.resize(n_c);
    for (int64_t c = 0; c < n_c; ++c) {
      uint32_t bits;
      std::memcpy(&bits, &ws.score[c], sizeof bits);
      ws.keys[c] = (static_cast<uint64_t>(bits) << 32) | (~static_cast<uint32_t>(c));
    }
    // How many ranked clusters we need; the order beyond that is never looked at.
    int64_t need = n_c;
    const bool fixed = b.tolerance <= 0.0 && b.retrieval_tokens == 0 && b.estimation_tokens == 0;
    if (fixed) {
      need = std::min(n_c, frac_count(b.retrieval_frac, n_c) + frac_count(b.estimation_frac, n_c));
    }
    const auto first = ws.keys.begin();
    if (need < n_c) select_largest(ws.keys.data(), n_c, need, ws);
    if (fixed && !ordered) {
      // Only the retrieval prefix needs its order; the rest of `need` is the estimation zone.
      const int64_t r_fixed = std::min(frac_count(b.retrieval_frac, n_c), need);
      if (r_fixed < need) select_largest(ws.keys.data(), need, r_fixed, ws);
      std::sort(first, first + r_fixed, std::greater<>());
    } else {
      std::sort(first, first + need, std::greater<>());
    }
    ws.rank.resize(need);
    int32_t* rank = ws.rank.data();
    for (int64_t i = 0; i < need; ++i)
      rank[i] = static_cast<int32_t>(~static_cast<uint32_t>(ws.keys[i]));

    int64_t r = 0;
    const int64_t n_r = need;
    if (b.tolerance > 0.0) {
      // Smallest prefix r of the ranking such that, for every head, the estimated mass of the
      // clusters rank[r..] is below tolerance of the estimated total (steady zone included).
      ws.suffix.assign(static_cast<size_t>(g) * (n_r + 1), 0.0);
      for (int h = 0; h < g; ++h) {
        double* sh = ws.suffix.data() + h * (n_r + 1);
        const float* eh = e + h * n_c;
        for (int64_t j = n_r - 1; j >= 0; --j)
          sh[j] = sh[j + 1] + static_cast<double>(eh[rank[j]]) * cluster_size(rank[j]);
      }
      for (;; ++r) {
        double worst = 0.0;
        for (int h = 0; h < g; ++h)
          worst = std::max(worst,
                           ws.suffix[h * (n_r + 1) + r] / (ws.cluster_mass[h] + ws.steady_mass[h]));
        if (worst < b.tolerance || r == n_r) break;
      }
    } else if (b.retrieval_tokens > 0) {
      int64_t tok = 0;
      while (r < n_r && tok < b.retrieval_tokens) tok += cluster_size(rank[r++]);
    } else {
      r = std::min<int64_t>(frac_count(b.retrieval_frac, n_c), n_r);
    }
    int64_t n_e = 0;
    const int64_t left = n_r - r;
    if (b.estimation_tokens > 0) {
      int64_t tok = 0;
      while (n_e < left && tok < b.estimation_tokens) tok += cluster_size(rank[r + n_e++]);
    } else {
      n_e = std::min(left, frac_count(b.estimation_frac, n_c));
    }
    sel.rank = rank;
    sel.n_retrieval = r;
    sel.n_estimation = n_e;
    for (int64_t i = 0; i < r; ++i) sel.retrieval_tokens += cluster_size(rank[i]);
    for (int64_t i = r; i < r + n_e; ++i) sel.estimation_tokens += cluster_size(rank[i]);
    if (steady_lse) {
      double worst = 0.0;
      for (int h = 0; h < g; ++h) {
        double got = 0.0;
        for (int64_t i = 0; i < r; ++i)
          got += static_cast<double>(e[h * n_c + rank[i]]) * cluster_size(rank[i]);
        worst = std::max(worst, std::max(0.0, ws.cluster_mass[h] - got) /
                                    (ws.cluster_mass[h] + ws.steady_mass[h]));
      }
      sel.estimated_remaining_mass = worst;
    }
    return sel;
  }

  // Moves the k largest of the n DISTINCT keys to keys[0, k) (in no particular order). A
  // quickselect whose partition is branch-free (cpu/detail/partition.h): std::nth_element's
  // data-dependent branches mispredicted about half the time on these random scores and were the
  // largest single cost of a step at 8K tokens.
  static void select_largest(uint64_t* keys, int64_t n, int64_t k, Scratch& ws) {
    if (k <= 0 || k >= n) return;
    ws.tmp.resize(static_cast<size_t>(n));
    uint64_t* tmp = ws.tmp.data();
    int64_t lo = 0, hi = n;  // keys[0, lo) are among the k largest, keys[hi, n) are not
    while (hi - lo > 32) {
      // Median of three as the pivot (the keys are distinct, so only > and < occur).
      const uint64_t a = keys[lo], bk = keys[lo + (hi - lo) / 2], c = keys[hi - 1];
      const uint64_t pivot = std::max(std::min(a, bk), std::min(std::max(a, bk), c));
      // tmp[0, gt) > pivot, tmp[gt] = pivot, tmp(gt, hi - lo) < pivot (8 keys per step on
      // AVX-512, the same output on every path).
      const int64_t gt = cpu::detail::partition_keys(keys + lo, hi - lo, pivot, tmp);
      std::copy(tmp, tmp + (hi - lo), keys + lo);
      const int64_t p = lo + gt;  // the pivot's final position
      if (k <= p) {
        hi = p;
      } else if (k == p + 1) {
        return;
      } else {
        lo = p + 1;
      }
    }
    // A short range left: finish with the standard selection.
    std::nth_element(keys + lo, keys + k, keys + hi, std::greater<>());
  }

  static int64_t frac_count(double frac, int64_t n) {
    return std::min<int64_t>(n,
                             static_cast<int64_t>(std::ceil(frac * static_cast<double>(n) - 1e-9)));
  }

  WaveParams params_;
  int d_ = 0;
  int64_t n_tokens_ = 0;
  int64_t n_sink_ = 0;   // sink tokens at the front of the steady zone
  int64_t pending_ = 0;  // appended since the last update
  bool has_mean_ = false;
  std::vector<float> key_mean_;  // (d) centring applied before clustering
  std::vector<int32_t> steady_ids_;
  std::vector<float> steady_keys_, steady_values_;  // (n_steady, d)
  std::vector<int64_t> cluster_offsets_{0};         // (C + 1)
  std::vector<float> cluster_sizes_;                // (C) as floats, for the ranking
  std::vector<int32_t> pos_ids_;                    // (n_clustered)
  std::vector<float> keys_, values_;                // (n_clustered, d), cluster-contiguous
  std::vector<float> centroids_, value_sums_;       // (C, d)
  std::vector<half> centroids_h_, value_sums_h_;    // (C, d) the above in fp16, read by steps
  bool half_ok_ = true;                             // all of them within fp16's range
  std::vector<float> key_var_;                      // (C, d) per-dimension key variance
  WaveQuantizedZone qzone_;  // low-bit copy of keys_/values_ (params_.quantized_zone only)
  std::vector<WaveSegment> segments_;
};

}  // namespace retrokv
