// RoarGraph: the attention-aware graph index of RetrievalAttention (arXiv 2409.10516 section 4,
// DESIGN.md section 3). Built from the prompt's own queries so that a search from a decode query,
// which is out of distribution for the keys, still navigates well. Deterministic parallel build,
// CSR adjacency with per-list slack for incremental insertion, checksummed save/load.
#pragma once

#include <omp.h>

#include <algorithm>
#include <chrono>
#include <cmath>
#include <cstdint>
#include <numeric>
#include <random>
#include <string>
#include <utility>
#include <vector>

#include "retrokv/core/checksum.h"
#include "retrokv/core/error.h"
#include "retrokv/core/progress.h"
#include "retrokv/core/topk.h"
#include "retrokv/core/view.h"
#include "retrokv/index/knn.h"
#include "retrokv/index/roar_graph_search.h"
#include "retrokv/index/token_index.h"

namespace retrokv {

/// Build parameters. Defaults follow the reference implementation (RoarGraph, VLDB 2024) where
/// it has one. Only the fields marked "stored" are saved with the index.
struct RoarGraphParams {
  /// Neighbours per training query in the projection step (the reference's Nq). Default 100;
  /// clamped to n. Stored.
  int k_train = 100;
  /// Degree bound of the projection and of each fill pass; the final out-degree is <= 2 * M.
  /// Default 35. Stored.
  int M = 35;
  /// Beam width of the searches the build runs for the connectivity/fill pass and for insert().
  /// Default 500 (the reference's L). Stored.
  int L = 500;
  /// Default search beam width when SearchParams::ef is 0 (the effective beam is then
  /// max(ef, k)); an explicit SearchParams::ef is used as is, even below k. Default 128. Stored.
  int ef = 128;
  /// Entry points every search starts from: the key best aligned with the mean training query,
  /// plus the pivots of evenly spaced training queries. Default 4. Stored.
  int n_entry_points = 4;
  /// Occlusion rule of the pruning steps: squared L2 between keys (true) or raw inner product
  /// (false). Keys of real heads and of the synthetic OOD set have very unequal norms, and with
  /// raw inner product a large-norm neighbour occludes almost every candidate (mean out-degree
  /// ~3.5 and recall@100 0.86 at ef 200 vs ~0.99 with L2 on the CI set). Default true. Stored.
  bool occlusion_l2 = true;
  /// Seed of the random training-query subset. Default 0. Stored.
  uint64_t seed = 0;
  /// Use at most this many training queries (0: all). The kNN step costs O(m n d). Default 0.
  /// Stored.
  int64_t max_train_queries = 0;
  /// How the subset is drawn when m > max_train_queries: every j-th row (false) or a seeded
  /// random subset (true). Default false. Stored.
  bool random_subsample = false;
  /// OpenMP threads for the build and insert (0: omp_get_max_threads()). The result does not
  /// depend on it. Default 0. Not stored.
  int threads = 0;
  /// Progress bar on a terminal for steps running over ~1 s. Default true. Not stored.
  bool show_progress = true;
};

/// What the build did and what the graph looks like (timings are not saved with the index).
struct RoarGraphStats {
  int64_t n = 0;
  int d = 0;
  int64_t edges = 0;
  double mean_out_degree = 0.0;
  int max_out_degree = 0;
  int64_t train_queries_used = 0;
  /// Fraction of keys with no out-edge after the projection step (before the fill pass).
  double no_edge_after_projection = 0.0;
  /// Edges the connectivity repair added (keys not reachable from the entry point otherwise).
  int64_t repair_links = 0;
  double knn_seconds = 0.0;
  double knn_gflops = 0.0;
  double projection_seconds = 0.0;
  double fill_seconds = 0.0;
  double repair_seconds = 0.0;
  double build_seconds = 0.0;
};

/// Graph index over the keys (n, d) of one KV head. Holds its own copy of the keys (so a loaded
/// index is self-contained). search() is const and safe from many threads at once.
class RoarGraphIndex : public TokenIndex {
 public:
  RoarGraphIndex() = default;

  /// keys: (n, d), n >= 1; train_queries: (m, d), m >= 1 (e.g. the prefill queries of the KV
  /// head's GQA group). Same input and params (threads aside) give a byte-identical save().
  static RoarGraphIndex build(ConstMatrixView<float> keys, ConstMatrixView<float> train_queries,
                              const RoarGraphParams& params = {});

  std::string name() const override { return "roargraph"; }
  int64_t size() const override { return n_; }
  int dim() const override { return static_cast<int>(keys_.cols()); }

  /// queries: (g, d). Returns the best min(k, n) keys scored by a beam search from the entry
  /// points and params.warm_start ids. Beam width: params.ef when > 0 (it may be below k: the
  /// answer is then the top-k of every key scored on the way, and the search goes on until at
  /// least k keys are scored), else max(RoarGraphParams::ef, k). With ef >= k the result is the
  /// beam's best k, as before.
  SearchResult search(ConstMatrixView<float> queries, const SearchParams& params) const override {
    return search_scored(queries, params, -1);
  }

  /// search() with the floor on keys scored made explicit: min_scored >= 0 stops the search once
  /// the beam has converged and min_scored keys are scored, even if that is fewer than k (it then
  /// returns fewer than k ids); -1 is search() (the floor is k). The store's GQA selection uses a
  /// low floor: it merges g heads' lists, so no single head has to fill the whole budget.
  SearchResult search_scored(ConstMatrixView<float> queries, const SearchParams& params,
                             int min_scored) const;

  /// One search per query head of the group queries (g, d), sharing visited keys and scoring
  /// (detail::beam_search_heads): result h is head h's top min(k, scored) keys, best first, by
  /// its own q.k. Beam width per head: params.ef when > 0, else RoarGraphParams::ef (a beam
  /// below k steers; the rest of the k come from every key scored). Seeds: the entry points and
  /// params.warm_start. keys_scanned (distinct keys scored) is in result 0.
  std::vector<SearchResult> search_heads(ConstMatrixView<float> queries,
                                         const SearchParams& params) const;

  /// Adds new keys (b, d) with ids size() .. size() + b - 1, keeping out-degree <= 2M and every
  /// key reachable from the entry point. Deterministic like build(). Cost proportional to b (and
  /// the new keys' neighbourhoods), not to size(): keys and adjacency grow by capacity doubling,
  /// reverse edges touch only the new keys' neighbours, and reachability holds by construction
  /// (every key keeps a spanning-tree in-edge from the entry point that pruning never removes).
  /// The tree is not saved: load() rebuilds it by BFS, so inserts after a save/load may differ
  /// from the same inserts without one (each sequence is deterministic, for any thread count).
  /// Not exception-safe: an allocation failure midway leaves the index unusable.
  void insert(ConstMatrixView<float> new_keys);

  /// The insert() before it was incremental (copies every key, rebuilds the adjacency and floods
  /// the whole graph per call): kept only so benchmarks and tests can compare against it.
  void insert_rebuild(ConstMatrixView<float> new_keys);

  /// Adjacency (slot starts, degrees, slot capacities, spanning-tree parents, neighbour slots)
  /// plus entry points; keys are not counted.
  int64_t memory_bytes() const override {
    return static_cast<int64_t>(
        start_.size() * sizeof(int64_t) +
        (degree_.size() + slots_.size() + parent_.size()) * sizeof(int32_t) +
        neighbours_.size() * sizeof(int32_t) + entry_points_.size() * sizeof(int32_t));
  }
  const RoarGraphStats& stats() const { return stats_; }
  const RoarGraphParams& params() const { return params_; }
  const std::vector<int32_t>& entry_points() const { return entry_points_; }
  int out_degree(int32_t v) const { return degree_[v]; }
  const int32_t* neighbours(int32_t v) const { return neighbours_.data() + start_[v]; }
  ConstMatrixView<float> keys() const { return ConstMatrixView<float>(keys_.data(), n_, dim()); }

  /// Number of keys reachable from entry_points()[0] along out-edges.
  int64_t count_reachable() const;

  /// Versioned, checksummed file; load() throws retrokv::Error on any truncation or corruption.
  void save(const std::string& path) const { serialize().save(path); }
  /// The exact bytes save() writes.
  std::vector<uint8_t> to_bytes() const {
    BinaryWriter w = serialize();
    return w.finish();
  }
  static RoarGraphIndex load(const std::string& path) {
    BinaryReader r = BinaryReader::open(path, kMagic, kVersion, kVersion);
    return deserialize(r);
  }
  static RoarGraphIndex from_bytes(std::vector<uint8_t> bytes) {
    BinaryReader r(std::move(bytes), kMagic, kVersion, kVersion, "roargraph image");
    return deserialize(r);
  }

  static constexpr const char* kMagic = "RKVROAR1";
  static constexpr uint32_t kVersion = 1;

 private:
  using Lists = std::vector<std::vector<int32_t>>;

  int threads() const { return params_.threads > 0 ? params_.threads : omp_get_max_threads(); }
  int max_degree() const { return 2 * params_.M; }
  std::vector<float> sq_norms() const {
    std::vector<float> out(static_cast<size_t>(size()));
    for (int64_t i = 0; i < size(); ++i)
      out[i] = detail::roar_dot(keys_.row(i), keys_.row(i), keys_.cols());
    return out;
  }
  const float* occlusion_norms() const { return params_.occlusion_l2 ? norms_.data() : nullptr; }
  /// Compact layout (slot capacity = degree) of lists.
  void to_csr(const Lists& lists);
  Lists to_lists() const;
  /// Spanning tree of the out-edges by BFS from entry_points_[0] (neighbour order, so it is a
  /// function of the graph alone: a loaded index gets the tree the saved one had).
  void build_tree();
  /// Appends keys (b, d) to keys_ (capacity doubling) and their squared norms; sets n_.
  /// Validates a search's queries and params; q gets a contiguous copy of the group (the view
  /// may be strided), seeds the entry points followed by params.warm_start.
  void prepare_search(ConstMatrixView<float> queries, const SearchParams& params,
                      std::vector<float>& q, std::vector<int32_t>& seeds) const;
  /// Out-list of new key v (pruned to M): a width-L search of keys [0, s0) through nb plus
  /// exact scores of its sub-batch mates [s0, s1). *nearest (if given) gets the search's best.
  template <typename Neighbours>
  std::vector<int32_t> new_key_links(int64_t v, int64_t s0, int64_t s1, Neighbours&& nb,
                                     const float* nrm, int32_t* nearest) const;
  /// Validates insert()'s argument (dimension, size limit, finite values).
  void check_new_keys(ConstMatrixView<float> new_keys) const;
  void append_keys(ConstMatrixView<float> new_keys);
  /// Appends w to v's list, moving v's slots to the end of neighbours_ with room for 2M when full.
  void push_edge(int32_t v, int32_t w);
  /// Makes t -> v an edge if t has room or if v survives occlusion pruning of t's list plus v
  /// (tree edges are always kept). Returns whether t -> v is an edge afterwards.
  bool add_reverse_edge(int32_t t, int32_t v, bool force);
  /// Links every key not reachable from entry_points_[0]; returns the number of links added.
  int64_t repair_connectivity(Lists& lists) const;
  BinaryWriter serialize() const;
  static RoarGraphIndex deserialize(BinaryReader& r);

  RoarGraphParams params_;
  int64_t n_ = 0;
  Matrix<float> keys_;                // (capacity >= n, d): rows n.. are spare room for insert()
  std::vector<float> norms_;          // (n): squared key norms
  std::vector<int64_t> start_;        // (n): first slot of each list in neighbours_
  std::vector<int32_t> degree_;       // (n): out-degree
  std::vector<int32_t> slots_;        // (n): slots reserved at start_ (>= degree)
  std::vector<int32_t> parent_;       // (n): spanning-tree parent (-1: root or unreachable)
  std::vector<int64_t> degree_hist_;  // (2M + 1): keys per out-degree, for an exact max in O(M)
  std::vector<int32_t> neighbours_;   // slots; after inserts also spare and abandoned slots
  std::vector<int32_t> entry_points_;
  RoarGraphStats stats_;
};

// ---------------------------------------------------------------------------------------------

namespace detail {

inline double seconds_since(std::chrono::steady_clock::time_point t0) {
  return std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
}

inline void check_finite_rows(ConstMatrixView<float> x, const char* name) {
  for (int64_t i = 0; i < x.rows; ++i) {
    const float* r = x.row(i);
    for (int64_t j = 0; j < x.cols; ++j) {
      RETROKV_CHECK(std::isfinite(r[j]), name, ": expected finite values, got ", r[j], " at (", i,
                    ", ", j, ")");
    }
  }
}

/// Rows of the training-query subset, ascending.
inline std::vector<int64_t> roar_train_rows(int64_t m, const RoarGraphParams& p) {
  std::vector<int64_t> rows;
  const int64_t want =
      (p.max_train_queries > 0 && p.max_train_queries < m) ? p.max_train_queries : m;
  if (want == m) {
    rows.resize(static_cast<size_t>(m));
    std::iota(rows.begin(), rows.end(), 0);
  } else if (!p.random_subsample) {
    for (int64_t i = 0; i < want; ++i) rows.push_back(i * m / want);
  } else {
    std::vector<int64_t> perm(static_cast<size_t>(m));
    std::iota(perm.begin(), perm.end(), 0);
    std::mt19937_64 rng(p.seed);
    for (int64_t i = 0; i < want; ++i) {
      std::uniform_int_distribution<int64_t> pick(i, m - 1);
      std::swap(perm[i], perm[pick(rng)]);
    }
    rows.assign(perm.begin(), perm.begin() + want);
    std::sort(rows.begin(), rows.end());
  }
  return rows;
}

inline bool contains(const std::vector<int32_t>& v, int32_t x) {
  return std::find(v.begin(), v.end(), x) != v.end();
}

}  // namespace detail

inline RoarGraphIndex RoarGraphIndex::build(ConstMatrixView<float> keys,
                                            ConstMatrixView<float> train_queries,
                                            const RoarGraphParams& params) {
  RETROKV_CHECK(keys.rows >= 1, "keys: expected at least 1 row, got ", keys.rows);
  RETROKV_CHECK(keys.rows < INT32_MAX, "keys: expected n < 2^31 - 1, got ", keys.rows);
  RETROKV_CHECK(keys.cols >= 1, "keys: expected d >= 1, got ", keys.cols);
  RETROKV_CHECK(train_queries.rows >= 1, "train_queries: expected at least 1 row, got ",
                train_queries.rows);
  RETROKV_CHECK(train_queries.cols == keys.cols, "train_queries: expected d = ", keys.cols,
                ", got ", train_queries.cols);
  RETROKV_CHECK(params.k_train >= 1, "params.k_train: expected >= 1, got ", params.k_train);
  RETROKV_CHECK(params.M >= 1 && params.M <= 4096, "params.M: expected 1..4096, got ", params.M);
  RETROKV_CHECK(params.L >= 1, "params.L: expected >= 1, got ", params.L);
  RETROKV_CHECK(params.ef >= 1, "params.ef: expected >= 1, got ", params.ef);
  RETROKV_CHECK(params.n_entry_points >= 1, "params.n_entry_points: expected >= 1, got ",
                params.n_entry_points);
  RETROKV_CHECK(params.max_train_queries >= 0, "params.max_train_queries: expected >= 0, got ",
                params.max_train_queries);
  RETROKV_CHECK(params.threads >= 0, "params.threads: expected >= 0, got ", params.threads);
  detail::check_finite_rows(keys, "keys");
  detail::check_finite_rows(train_queries, "train_queries");

  const auto t_build = std::chrono::steady_clock::now();
  RoarGraphIndex idx;
  idx.params_ = params;
  const int64_t n = keys.rows, d = keys.cols;
  idx.keys_.resize(n, d);
  idx.n_ = n;
  for (int64_t i = 0; i < n; ++i) std::copy(keys.row(i), keys.row(i) + d, idx.keys_.row(i));
  const float* kd = idx.keys_.data();
  const int threads = idx.threads();
  const int M = params.M;
  idx.norms_ = idx.sq_norms();
  const float* nrm = idx.occlusion_norms();

  // 1. Exact top-k_train keys of every (selected) training query.
  const std::vector<int64_t> rows = detail::roar_train_rows(train_queries.rows, params);
  const int64_t m = static_cast<int64_t>(rows.size());
  Matrix<float> tq(m, d);
  for (int64_t i = 0; i < m; ++i) {
    std::copy(train_queries.row(rows[i]), train_queries.row(rows[i]) + d, tq.row(i));
  }
  const int k_train = static_cast<int>(std::min<int64_t>(params.k_train, n));
  KnnParams kp;
  kp.threads = threads;
  kp.show_progress = params.show_progress;
  const KnnResult knn = knn_inner_product(tq.view(), idx.keys_.view(), k_train, kp);
  idx.stats_.train_queries_used = m;
  idx.stats_.knn_seconds = knn.seconds;
  idx.stats_.knn_gflops = knn.gflops;

  // Entry points: the key best aligned with the mean training query (a good start for any query
  // of this distribution), then pivots of evenly spaced training queries.
  {
    std::vector<double> mean(static_cast<size_t>(d), 0.0);
    for (int64_t i = 0; i < m; ++i)
      for (int64_t j = 0; j < d; ++j) mean[j] += tq(i, j);
    std::vector<float> meanf(static_cast<size_t>(d));
    for (int64_t j = 0; j < d; ++j) meanf[j] = static_cast<float>(mean[j] / m);
    ScoredId best{-std::numeric_limits<float>::infinity(), 0};
    for (int64_t i = 0; i < n; ++i) {
      const ScoredId c{detail::roar_dot(meanf.data(), kd + i * d, d), static_cast<int32_t>(i)};
      if (better(c, best)) best = c;
    }
    idx.entry_points_.push_back(best.id);
    const int want = static_cast<int>(std::min<int64_t>(params.n_entry_points, n));
    for (int e = 1; e < want * 4 && static_cast<int>(idx.entry_points_.size()) < want; ++e) {
      const int64_t q = (static_cast<int64_t>(e) * m / (want * 4)) % m;
      const int32_t p = knn.row_ids(q)[0];
      if (!detail::contains(idx.entry_points_, p)) idx.entry_points_.push_back(p);
    }
  }

  // 2. Projection: each pivot (a training query's nearest key) is linked to that query's other
  // neighbours in rank order, pruned by occlusion. Queries sharing a pivot are merged by
  // (rank, query index), so the candidate order is fixed before the parallel loop.
  auto t0 = std::chrono::steady_clock::now();
  Lists lists(static_cast<size_t>(n));
  {
    std::vector<int64_t> start(static_cast<size_t>(n) + 1, 0);
    for (int64_t q = 0; q < m; ++q) ++start[knn.row_ids(q)[0] + 1];
    for (int64_t i = 0; i < n; ++i) start[i + 1] += start[i];
    std::vector<int64_t> by_pivot(static_cast<size_t>(m));
    {
      std::vector<int64_t> fill(start.begin(), start.end() - 1);
      for (int64_t q = 0; q < m; ++q) by_pivot[fill[knn.row_ids(q)[0]]++] = q;
    }
#pragma omp parallel for num_threads(threads) schedule(dynamic, 64)
    for (int64_t p = 0; p < n; ++p) {
      if (start[p] == start[p + 1]) continue;
      std::vector<int32_t> cand;
      for (int r = 1; r < k_train; ++r)
        for (int64_t s = start[p]; s < start[p + 1]; ++s)
          cand.push_back(knn.row_ids(by_pivot[s])[r]);
      lists[p] = detail::occlusion_prune(kd, d, static_cast<int32_t>(p), cand, M, {}, nrm);
    }
    // Reverse edges within the bound M, sources in id order.
    std::vector<std::vector<int32_t>> rev(static_cast<size_t>(n));
    for (int64_t p = 0; p < n; ++p)
      for (int32_t c : lists[p]) rev[c].push_back(static_cast<int32_t>(p));
    for (int64_t c = 0; c < n; ++c) {
      for (int32_t p : rev[c]) {
        if (static_cast<int>(lists[c].size()) >= M) break;
        if (!detail::contains(lists[c], p)) lists[c].push_back(p);
      }
    }
    int64_t empty = 0;
    for (const auto& l : lists) empty += l.empty();
    idx.stats_.no_edge_after_projection = static_cast<double>(empty) / n;
  }
  idx.stats_.projection_seconds = detail::seconds_since(t0);

  // 3. Fill pass (the reference's connectivity enhancement): every key searches the projection
  // graph for itself with beam L and keeps up to M occlusion-pruned results as extra out-edges;
  // then reverse edges within the final bound 2M. All searches read the same frozen graph and
  // results are merged in id order, so the outcome does not depend on scheduling.
  t0 = std::chrono::steady_clock::now();
  {
    idx.to_csr(lists);
    Lists extra(static_cast<size_t>(n));
    ProgressBar bar("roargraph fill", n);
    const int64_t grain = 256;
    const int64_t chunks = (n + grain - 1) / grain;
#pragma omp parallel for num_threads(threads) schedule(dynamic, 1)
    for (int64_t c = 0; c < chunks; ++c) {
      for (int64_t v = c * grain; v < std::min(n, (c + 1) * grain); ++v) {
        int64_t scanned = 0;
        auto nb = [&](int32_t u) {
          return std::pair<const int32_t*, int>(idx.neighbours(u), idx.out_degree(u));
        };
        const std::vector<ScoredId> res = detail::beam_search(
            kd, n, d, kd + v * d, 1, idx.entry_points_.data(),
            static_cast<int>(idx.entry_points_.size()), params.L, nb, &scanned, nrm);
        extra[v] =
            detail::occlusion_prune(kd, d, static_cast<int32_t>(v), ids_of(res), M, lists[v], nrm);
      }
      if (params.show_progress) bar.advance(std::min(n, (c + 1) * grain) - c * grain);
    }
    bar.finish();
    // Reverse edges: t receives v for every fill edge v -> t (sources in id order). When that
    // overflows 2M, t's fill part (never its query-guided projection edges) is re-pruned by
    // occlusion over old and new candidates, closest first, as NSG/Vamana do; dropping the
    // overflow instead leaves many keys without in-edges (slow repair, poor recall).
    const int max_deg = 2 * M;
    Lists rev(static_cast<size_t>(n));
    for (int64_t v = 0; v < n; ++v)
      for (int32_t t : extra[v]) rev[t].push_back(static_cast<int32_t>(v));
#pragma omp parallel for num_threads(threads) schedule(dynamic, 256)
    for (int64_t t = 0; t < n; ++t) {
      std::vector<int32_t> fresh;
      for (int32_t v : rev[t]) {
        if (!detail::contains(lists[t], v) && !detail::contains(extra[t], v)) fresh.push_back(v);
      }
      const size_t total = lists[t].size() + extra[t].size() + fresh.size();
      std::vector<int32_t> fill = extra[t];
      fill.insert(fill.end(), fresh.begin(), fresh.end());
      if (total > static_cast<size_t>(max_deg)) {
        const float* tk = kd + t * d;
        std::vector<ScoredId> c;
        for (int32_t v : fill) {
          const float s = detail::roar_dot(tk, kd + int64_t{v} * d, d);
          c.push_back({nrm ? 2.f * s - nrm[v] : s, v});
        }
        std::sort(c.begin(), c.end(), better);
        fill = detail::occlusion_prune(kd, d, static_cast<int32_t>(t), ids_of(c),
                                       max_deg - static_cast<int>(lists[t].size()), lists[t], nrm);
      }
      extra[t] = std::move(fill);
    }
    for (int64_t v = 0; v < n; ++v)
      lists[v].insert(lists[v].end(), extra[v].begin(), extra[v].end());
  }
  idx.stats_.fill_seconds = detail::seconds_since(t0);

  // 4. Connectivity repair, then the final CSR.
  t0 = std::chrono::steady_clock::now();
  idx.stats_.repair_links = idx.repair_connectivity(lists);
  idx.to_csr(lists);
  idx.build_tree();
  idx.stats_.repair_seconds = detail::seconds_since(t0);
  idx.stats_.build_seconds = detail::seconds_since(t_build);
  return idx;
}

inline void RoarGraphIndex::to_csr(const Lists& lists) {
  const int64_t n = static_cast<int64_t>(lists.size());
  start_.assign(static_cast<size_t>(n), 0);
  degree_.assign(static_cast<size_t>(n), 0);
  int64_t edges = 0;
  int max_deg = 0;
  for (int64_t v = 0; v < n; ++v) {
    start_[v] = edges;
    degree_[v] = static_cast<int32_t>(lists[v].size());
    edges += degree_[v];
    max_deg = std::max(max_deg, degree_[v]);
  }
  slots_ = degree_;
  degree_hist_.assign(static_cast<size_t>(std::max(max_deg, max_degree())) + 1, 0);
  for (int64_t v = 0; v < n; ++v) ++degree_hist_[degree_[v]];
  neighbours_.resize(static_cast<size_t>(edges));
  for (int64_t v = 0; v < n; ++v)
    std::copy(lists[v].begin(), lists[v].end(), neighbours_.begin() + start_[v]);
  stats_.n = n;
  stats_.d = dim();
  stats_.edges = edges;
  stats_.mean_out_degree = n ? static_cast<double>(edges) / n : 0.0;
  stats_.max_out_degree = max_deg;
}

inline RoarGraphIndex::Lists RoarGraphIndex::to_lists() const {
  const int64_t n = size();
  Lists lists(static_cast<size_t>(n));
  for (int64_t v = 0; v < n; ++v) {
    const int32_t* a = neighbours(static_cast<int32_t>(v));
    lists[v].assign(a, a + out_degree(static_cast<int32_t>(v)));
  }
  return lists;
}

inline void RoarGraphIndex::build_tree() {
  const int64_t n = size();
  parent_.assign(static_cast<size_t>(n), -1);
  std::vector<uint8_t> seen(static_cast<size_t>(n), 0);
  std::vector<int32_t> queue{entry_points_[0]};
  seen[entry_points_[0]] = 1;
  for (size_t head = 0; head < queue.size(); ++head) {
    const int32_t u = queue[head];
    const int32_t* a = neighbours(u);
    for (int e = 0; e < out_degree(u); ++e) {
      if (seen[a[e]]) continue;
      seen[a[e]] = 1;
      parent_[a[e]] = u;
      queue.push_back(a[e]);
    }
  }
}

inline void RoarGraphIndex::append_keys(ConstMatrixView<float> new_keys) {
  const int64_t n0 = size(), d = dim(), n = n0 + new_keys.rows;
  if (keys_.rows() < n) {
    Matrix<float> grown(std::max(n, 2 * keys_.rows()), d);
    std::copy(keys_.data(), keys_.data() + n0 * d, grown.data());
    keys_ = std::move(grown);
  }
  for (int64_t i = 0; i < new_keys.rows; ++i)
    std::copy(new_keys.row(i), new_keys.row(i) + d, keys_.row(n0 + i));
  norms_.resize(static_cast<size_t>(n));
  for (int64_t i = n0; i < n; ++i) norms_[i] = detail::roar_dot(keys_.row(i), keys_.row(i), d);
  n_ = n;
}

inline void RoarGraphIndex::push_edge(int32_t v, int32_t w) {
  if (degree_[v] == slots_[v]) {
    // Move the list to fresh slots with room for the bound: a list moves at most once, so the
    // abandoned slots total at most the edges the index had when it was built or loaded.
    const int64_t at = static_cast<int64_t>(neighbours_.size());
    neighbours_.resize(static_cast<size_t>(at + max_degree()));
    std::copy(neighbours_.begin() + start_[v], neighbours_.begin() + start_[v] + degree_[v],
              neighbours_.begin() + at);
    start_[v] = at;
    slots_[v] = max_degree();
  }
  --degree_hist_[degree_[v]];
  neighbours_[start_[v] + degree_[v]++] = w;
  ++degree_hist_[degree_[v]];
  ++stats_.edges;
}

inline bool RoarGraphIndex::add_reverse_edge(int32_t t, int32_t v, bool force) {
  int32_t* a = neighbours_.data() + start_[t];
  const int deg = degree_[t];
  if (std::find(a, a + deg, v) != a + deg) return true;
  if (deg < max_degree()) {
    push_edge(t, v);
    return true;
  }
  const int64_t d = dim();
  const float* kd = keys_.data();
  const float* nrm = occlusion_norms();
  const float* tk = kd + int64_t{t} * d;
  auto close = [&](int32_t w) {
    const float s = detail::roar_dot(tk, kd + int64_t{w} * d, d);
    return nrm ? 2.f * s - nrm[w] : s;
  };
  // Tree edges stay (they are what keeps every key reachable); the rest compete with v under
  // occlusion pruning, nearest first (Vamana/NSG's reverse-edge rule). t's list changes only if
  // v survives, so a reverse edge that would not be kept costs t nothing.
  std::vector<int32_t> kept;
  std::vector<ScoredId> cand;
  for (int e = 0; e < deg; ++e) {
    if (parent_[a[e]] == t)
      kept.push_back(a[e]);
    else
      cand.push_back({close(a[e]), a[e]});
  }
  if (cand.empty()) return false;  // every edge of t is a tree edge
  if (force) {
    // v must get this edge: it replaces t's farthest non-tree neighbour.
    const auto worst = std::min_element(cand.begin(), cand.end(), better);
    *std::find(a, a + deg, worst->id) = v;
    return true;
  }
  cand.push_back({close(v), v});
  std::sort(cand.begin(), cand.end(), better);
  std::vector<int32_t> pruned = detail::occlusion_prune(
      kd, d, t, ids_of(cand), max_degree() - static_cast<int>(kept.size()), kept, nrm);
  if (!detail::contains(pruned, v)) return false;
  kept.insert(kept.end(), pruned.begin(), pruned.end());
  std::copy(kept.begin(), kept.end(), a);
  stats_.edges += static_cast<int64_t>(kept.size()) - deg;
  --degree_hist_[deg];
  degree_[t] = static_cast<int32_t>(kept.size());
  ++degree_hist_[degree_[t]];
  return true;
}

inline int64_t RoarGraphIndex::repair_connectivity(Lists& lists) const {
  const int64_t n = static_cast<int64_t>(lists.size());
  const int64_t d = keys_.cols();
  const int max_deg = max_degree();
  std::vector<uint8_t> reached(static_cast<size_t>(n), 0);
  std::vector<int32_t> stack;
  auto flood = [&](int32_t from) {
    if (reached[from]) return;
    reached[from] = 1;
    stack.push_back(from);
    while (!stack.empty()) {
      const int32_t u = stack.back();
      stack.pop_back();
      for (int32_t w : lists[u]) {
        if (!reached[w]) {
          reached[w] = 1;
          stack.push_back(w);
        }
      }
    }
  };
  flood(entry_points_[0]);
  std::vector<int32_t> unreached;
  for (int64_t u = 0; u < n; ++u)
    if (!reached[u]) unreached.push_back(static_cast<int32_t>(u));
  if (unreached.empty()) return 0;
  // Candidate linkers for every unreached key, searched in parallel on the frozen graph (a search
  // from the entry points only visits reached keys); the links are then made serially in id order.
  const float* nrm = occlusion_norms();
  const int ef = std::min(params_.L, 64);
  Lists cands(unreached.size());
  auto nb = [&](int32_t u) {
    return std::pair<const int32_t*, int>(lists[u].data(), static_cast<int>(lists[u].size()));
  };
#pragma omp parallel for num_threads(threads()) schedule(dynamic, 16)
  for (int64_t i = 0; i < static_cast<int64_t>(unreached.size()); ++i) {
    int64_t scanned = 0;
    cands[i] = ids_of(
        detail::beam_search(keys_.data(), n, d, keys_.row(unreached[i]), 1, entry_points_.data(),
                            static_cast<int>(entry_points_.size()), ef, nb, &scanned, nrm));
  }
  int64_t links = 0;
  int64_t cursor = 0;  // fallback: next key to try as a linker, in id order
  for (size_t i = 0; i < unreached.size(); ++i) {
    const int32_t u = unreached[i];
    if (reached[u]) continue;
    auto ok = [&](int32_t v) { return reached[v] && static_cast<int>(lists[v].size()) < max_deg; };
    int32_t from = -1;
    for (int32_t c : cands[i]) {
      if (ok(c)) {
        from = c;
        break;
      }
    }
    for (int pass = 0; from < 0 && pass < 2; ++pass) {
      for (; cursor < n; ++cursor) {
        if (ok(static_cast<int32_t>(cursor))) {
          from = static_cast<int32_t>(cursor);
          break;
        }
      }
      if (from < 0) cursor = 0;
    }
    RETROKV_CHECK(from >= 0, "roargraph: every reachable key has out-degree 2M = ", max_deg,
                  "; cannot link key ", u, " (raise params.M)");
    lists[from].push_back(u);
    ++links;
    flood(u);
  }
  return links;
}

inline int64_t RoarGraphIndex::count_reachable() const {
  const int64_t n = size();
  if (n == 0) return 0;
  std::vector<uint8_t> reached(static_cast<size_t>(n), 0);
  std::vector<int32_t> stack{entry_points_[0]};
  reached[entry_points_[0]] = 1;
  int64_t count = 1;
  while (!stack.empty()) {
    const int32_t u = stack.back();
    stack.pop_back();
    for (int64_t e = start_[u]; e < start_[u] + degree_[u]; ++e) {
      const int32_t w = neighbours_[e];
      if (!reached[w]) {
        reached[w] = 1;
        ++count;
        stack.push_back(w);
      }
    }
  }
  return count;
}

inline void RoarGraphIndex::prepare_search(ConstMatrixView<float> queries,
                                           const SearchParams& params, std::vector<float>& q,
                                           std::vector<int32_t>& seeds) const {
  const int64_t n = size(), d = keys_.cols();
  RETROKV_CHECK(n > 0, "index: empty (build or load it first)");
  RETROKV_CHECK(queries.cols == d, "queries: expected d = ", d, ", got ", queries.cols);
  RETROKV_CHECK(queries.rows >= 1 && queries.rows <= 1024,
                "queries: expected 1..1024 rows (one GQA group), got ", queries.rows);
  RETROKV_CHECK(params.k >= 1, "params.k: expected >= 1, got ", params.k);
  RETROKV_CHECK(params.ef >= 0, "params.ef: expected >= 0, got ", params.ef);
  RETROKV_CHECK(params.n_warm_start >= 0, "params.n_warm_start: expected >= 0, got ",
                params.n_warm_start);
  RETROKV_CHECK(params.n_warm_start == 0 || params.warm_start != nullptr,
                "params.warm_start: null pointer for n_warm_start = ", params.n_warm_start);
  const int g = static_cast<int>(queries.rows);
  // Contiguous copy of the group (the view may be strided) and a NaN check.
  q.assign(static_cast<size_t>(g * d), 0.f);
  for (int h = 0; h < g; ++h) {
    for (int64_t j = 0; j < d; ++j) {
      const float v = queries(h, j);
      RETROKV_CHECK(!std::isnan(v), "queries: expected no NaN, got NaN at (", h, ", ", j, ")");
      q[h * d + j] = v;
    }
  }
  seeds = entry_points_;
  for (int i = 0; i < params.n_warm_start; ++i) {
    const int32_t w = params.warm_start[i];
    RETROKV_CHECK(w >= 0 && w < n, "params.warm_start: expected ids in [0, ", n, "), got ", w,
                  " at ", i);
    seeds.push_back(w);
  }
}

inline SearchResult RoarGraphIndex::search_scored(ConstMatrixView<float> queries,
                                                  const SearchParams& params,
                                                  int min_scored) const {
  RETROKV_CHECK(min_scored >= -1, "min_scored: expected >= -1, got ", min_scored);
  const int64_t n = size(), d = keys_.cols();
  std::vector<float> q;
  std::vector<int32_t> seeds;
  prepare_search(queries, params, q, seeds);
  const int g = static_cast<int>(queries.rows);
  const int k = static_cast<int>(std::min<int64_t>(params.k, n));
  // An explicit ef may be below k: the beam then steers the search and the answer is the top-k
  // of every key scored (detail::beam_search). ef = 0 keeps the default beam, at least k wide.
  const int ef = params.ef > 0 ? params.ef : std::max(params_.ef, k);
  SearchResult out;
  auto nb = [this](int32_t u) {
    return std::pair<const int32_t*, int>(neighbours(u), out_degree(u));
  };
  std::vector<ScoredId> res = detail::beam_search(keys_.data(), n, d, q.data(), g, seeds.data(),
                                                  static_cast<int>(seeds.size()), ef, nb,
                                                  &out.keys_scanned, nullptr, k, min_scored);
  if (static_cast<int>(res.size()) > k) res.resize(static_cast<size_t>(k));
  out.ids.resize(res.size());
  out.scores.resize(res.size());
  for (size_t i = 0; i < res.size(); ++i) {
    out.ids[i] = res[i].id;
    out.scores[i] = res[i].score;
  }
  return out;
}

inline std::vector<SearchResult> RoarGraphIndex::search_heads(ConstMatrixView<float> queries,
                                                              const SearchParams& params) const {
  const int64_t n = size(), d = keys_.cols();
  std::vector<float> q;
  std::vector<int32_t> seeds;
  prepare_search(queries, params, q, seeds);
  const int g = static_cast<int>(queries.rows);
  const int k = static_cast<int>(std::min<int64_t>(params.k, n));
  const int ef = params.ef > 0 ? params.ef : params_.ef;
  auto nb = [this](int32_t u) {
    return std::pair<const int32_t*, int>(neighbours(u), out_degree(u));
  };
  std::vector<SearchResult> out(static_cast<size_t>(g));
  const std::vector<std::vector<ScoredId>> res =
      detail::beam_search_heads(keys_.data(), n, d, q.data(), g, seeds.data(),
                                static_cast<int>(seeds.size()), ef, k, nb, &out[0].keys_scanned);
  for (int h = 0; h < g; ++h) {
    out[h].ids = ids_of(res[h]);
    out[h].scores.resize(res[h].size());
    for (size_t i = 0; i < res[h].size(); ++i) out[h].scores[i] = res[h][i].score;
  }
  return out;
}

inline void RoarGraphIndex::check_new_keys(ConstMatrixView<float> new_keys) const {
  const int64_t n0 = size(), d = keys_.cols();
  RETROKV_CHECK(n0 > 0, "index: empty (build or load it first)");
  RETROKV_CHECK(new_keys.cols == d, "new_keys: expected d = ", d, ", got ", new_keys.cols);
  RETROKV_CHECK(n0 + new_keys.rows < INT32_MAX, "new_keys: total keys would exceed 2^31 - 1");
  detail::check_finite_rows(new_keys, "new_keys");
}

template <typename Neighbours>
std::vector<int32_t> RoarGraphIndex::new_key_links(int64_t v, int64_t s0, int64_t s1,
                                                   Neighbours&& nb, const float* nrm,
                                                   int32_t* nearest) const {
  const int64_t d = dim();
  const float* kd = keys_.data();
  const float* qv = kd + v * d;
  int64_t scanned = 0;
  std::vector<ScoredId> pool =
      detail::beam_search(kd, s0, d, qv, 1, entry_points_.data(),
                          static_cast<int>(entry_points_.size()), params_.L, nb, &scanned, nrm);
  if (nearest) *nearest = pool.empty() ? entry_points_[0] : pool[0].id;
  for (int64_t u = s0; u < s1; ++u) {
    if (u == v) continue;
    const float s = detail::roar_dot(qv, kd + u * d, d);
    pool.push_back({nrm ? 2.f * s - nrm[u] : s, static_cast<int32_t>(u)});
  }
  std::sort(pool.begin(), pool.end(), better);
  return detail::occlusion_prune(kd, d, static_cast<int32_t>(v), ids_of(pool), params_.M, {}, nrm);
}

inline void RoarGraphIndex::insert_rebuild(ConstMatrixView<float> new_keys) {
  const int64_t n0 = size(), d = keys_.cols();
  check_new_keys(new_keys);
  if (new_keys.rows == 0) return;
  const int64_t b = new_keys.rows, n = n0 + b;
  Lists lists = to_lists();
  // The old cost: a full copy of the keys every call.
  Matrix<float> copy(n0, d);
  std::copy(keys_.data(), keys_.data() + n0 * d, copy.data());
  append_keys(new_keys);
  lists.resize(static_cast<size_t>(n));
  const int max_deg = max_degree(), threads = this->threads();
  const std::vector<float> norms = sq_norms();
  const float* nrm = params_.occlusion_l2 ? norms.data() : nullptr;

  // Sub-batches: new keys search the graph as it was before their sub-batch (frozen, so the
  // parallel searches are deterministic) and score their sub-batch mates exactly.
  const int64_t kSub = 512;
  for (int64_t s0 = n0; s0 < n; s0 += kSub) {
    const int64_t s1 = std::min(n, s0 + kSub);
    Lists out(static_cast<size_t>(s1 - s0));
    auto nb = [&](int32_t u) {
      return std::pair<const int32_t*, int>(lists[u].data(), static_cast<int>(lists[u].size()));
    };
#pragma omp parallel for num_threads(threads) schedule(dynamic, 8)
    for (int64_t v = s0; v < s1; ++v) out[v - s0] = new_key_links(v, s0, s1, nb, nrm, nullptr);
    for (int64_t v = s0; v < s1; ++v) lists[v] = out[v - s0];
    for (int64_t v = s0; v < s1; ++v) {
      for (int32_t t : out[v - s0]) {
        auto& lt = lists[t];
        if (static_cast<int>(lt.size()) < max_deg && !detail::contains(lt, static_cast<int32_t>(v)))
          lt.push_back(static_cast<int32_t>(v));
      }
    }
  }
  stats_.repair_links += repair_connectivity(lists);
  to_csr(lists);
  build_tree();
}

inline void RoarGraphIndex::insert(ConstMatrixView<float> new_keys) {
  const int64_t n0 = size();
  check_new_keys(new_keys);
  if (new_keys.rows == 0) return;
  const int64_t b = new_keys.rows, n = n0 + b;
  const int max_deg = max_degree(), threads = this->threads();
  append_keys(new_keys);
  start_.resize(static_cast<size_t>(n));
  degree_.resize(static_cast<size_t>(n));
  slots_.resize(static_cast<size_t>(n));
  parent_.resize(static_cast<size_t>(n), -1);
  const float* nrm = occlusion_norms();
  auto nb = [this](int32_t u) {
    return std::pair<const int32_t*, int>(neighbours(u), out_degree(u));
  };

  // Sub-batches: new keys search the graph as it was before their sub-batch (frozen, so the
  // parallel searches are deterministic) and score their sub-batch mates exactly. The links are
  // then made serially in id order.
  const int64_t kSub = 512;
  for (int64_t s0 = n0; s0 < n; s0 += kSub) {
    const int64_t s1 = std::min(n, s0 + kSub);
    Lists out(static_cast<size_t>(s1 - s0));
    std::vector<int32_t> nearest_old(static_cast<size_t>(s1 - s0));
#pragma omp parallel for num_threads(threads) schedule(dynamic, 8)
    for (int64_t v = s0; v < s1; ++v)
      out[v - s0] = new_key_links(v, s0, s1, nb, nrm, &nearest_old[v - s0]);
    // Every new list gets room for the bound, so reverse edges into new keys never move them.
    int64_t at = static_cast<int64_t>(neighbours_.size());
    neighbours_.resize(static_cast<size_t>(at + (s1 - s0) * max_deg));
    for (int64_t v = s0; v < s1; ++v, at += max_deg) {
      const auto& o = out[v - s0];
      start_[v] = at;
      slots_[v] = max_deg;
      degree_[v] = static_cast<int32_t>(o.size());
      std::copy(o.begin(), o.end(), neighbours_.begin() + at);
      stats_.edges += degree_[v];
      ++degree_hist_[degree_[v]];
    }
    // Reverse edges t -> v, nearest t first. v's tree parent is the first t that links to it and
    // is itself attached (an old key, or a mate whose parent is set), so the tree has no cycle.
    auto attached = [&](int32_t t) { return t < s0 || parent_[t] >= 0; };
    for (int64_t v = s0; v < s1; ++v) {
      const int32_t vi = static_cast<int32_t>(v);
      for (int32_t t : out[v - s0]) {
        if (add_reverse_edge(t, vi, false) && parent_[vi] < 0 && attached(t)) parent_[vi] = t;
      }
      if (parent_[vi] >= 0) continue;
      // No attached neighbour kept v: force the link from the nearest attached key.
      std::vector<int32_t> from;
      for (int32_t t : out[v - s0])
        if (attached(t)) from.push_back(t);
      from.push_back(nearest_old[v - s0]);
      for (int32_t t : from) {
        if (add_reverse_edge(t, vi, true)) {
          parent_[vi] = t;
          break;
        }
      }
      // Last resort (every candidate's edges are all tree edges): any attached key with room.
      for (int64_t t = 0; parent_[vi] < 0 && t < n; ++t) {
        if (t != v && attached(static_cast<int32_t>(t)) && degree_[t] < max_deg) {
          push_edge(static_cast<int32_t>(t), vi);
          parent_[vi] = static_cast<int32_t>(t);
        }
      }
      RETROKV_CHECK(parent_[vi] >= 0,
                    "roargraph: every reachable key has out-degree 2M = ", max_deg,
                    "; cannot link key ", v, " (raise params.M)");
      ++stats_.repair_links;
    }
  }
  stats_.n = n;
  stats_.mean_out_degree = static_cast<double>(stats_.edges) / n;
  stats_.max_out_degree = 0;
  for (int k = max_deg; k > 0 && stats_.max_out_degree == 0; --k)
    if (degree_hist_[k] > 0) stats_.max_out_degree = k;
}

inline BinaryWriter RoarGraphIndex::serialize() const {
  BinaryWriter w(kMagic, kVersion);
  w.write<int64_t>(size());
  w.write<int32_t>(dim());
  w.write<int32_t>(params_.k_train);
  w.write<int32_t>(params_.M);
  w.write<int32_t>(params_.L);
  w.write<int32_t>(params_.ef);
  w.write<int32_t>(params_.n_entry_points);
  w.write<uint64_t>(params_.seed);
  w.write<int64_t>(params_.max_train_queries);
  w.write<uint8_t>(params_.random_subsample ? 1 : 0);
  w.write<uint8_t>(params_.occlusion_l2 ? 1 : 0);
  w.write<int64_t>(stats_.train_queries_used);
  w.write_vector(entry_points_);
  w.write_array(keys_.data(), static_cast<size_t>(size() * dim()));
  // The file keeps the compact CSR layout, whatever slack the in-memory lists have.
  std::vector<int64_t> offsets(static_cast<size_t>(size()) + 1, 0);
  for (int64_t v = 0; v < size(); ++v) offsets[v + 1] = offsets[v] + degree_[v];
  w.write_array(offsets.data(), offsets.size());
  std::vector<int32_t> flat;
  flat.reserve(static_cast<size_t>(offsets.back()));
  for (int64_t v = 0; v < size(); ++v) {
    const int32_t* a = neighbours(static_cast<int32_t>(v));
    flat.insert(flat.end(), a, a + degree_[v]);
  }
  w.write_array(flat.data(), flat.size());
  return w;
}

inline RoarGraphIndex RoarGraphIndex::deserialize(BinaryReader& r) {
  RoarGraphIndex idx;
  const int64_t n = r.read<int64_t>();
  const int32_t d = r.read<int32_t>();
  r.check(n >= 1 && n < INT32_MAX, "n = ", n);
  r.check(d >= 1 && d <= (1 << 16), "d = ", d);
  RoarGraphParams& p = idx.params_;
  p.k_train = r.read<int32_t>();
  p.M = r.read<int32_t>();
  p.L = r.read<int32_t>();
  p.ef = r.read<int32_t>();
  p.n_entry_points = r.read<int32_t>();
  p.seed = r.read<uint64_t>();
  p.max_train_queries = r.read<int64_t>();
  p.random_subsample = r.read<bool>();
  p.occlusion_l2 = r.read<bool>();
  idx.stats_.train_queries_used = r.read<int64_t>();
  r.check(p.k_train >= 1 && p.M >= 1 && p.M <= 4096 && p.L >= 1 && p.ef >= 1 &&
              p.n_entry_points >= 1 && p.max_train_queries >= 0,
          "parameters out of range");
  idx.entry_points_ = r.read_vector<int32_t>(static_cast<uint64_t>(n));
  r.check(!idx.entry_points_.empty(), "no entry point");
  for (int32_t e : idx.entry_points_) r.check(e >= 0 && e < n, "entry point ", e);
  r.check(static_cast<uint64_t>(n) * d <= r.remaining() / sizeof(float), "keys truncated");
  idx.keys_.resize(n, d);
  idx.n_ = n;
  r.read_array(idx.keys_.data(), static_cast<size_t>(n * d));
  r.check(static_cast<uint64_t>(n + 1) <= r.remaining() / sizeof(int64_t), "offsets truncated");
  std::vector<int64_t> offsets(static_cast<size_t>(n) + 1);
  r.read_array(offsets.data(), offsets.size());
  r.check(offsets[0] == 0, "offsets[0] = ", offsets[0]);
  const int max_deg = 2 * p.M;
  for (int64_t v = 0; v < n; ++v) {
    const int64_t deg = offsets[v + 1] - offsets[v];
    r.check(deg >= 0 && deg <= max_deg, "out-degree ", deg, " of key ", v);
  }
  const int64_t edges = offsets[n];
  r.check(static_cast<uint64_t>(edges) * sizeof(int32_t) == r.remaining(), "edge count ", edges);
  std::vector<int32_t> flat(static_cast<size_t>(edges));
  r.read_array(flat.data(), flat.size());
  r.expect_end();
  for (int32_t w : flat) r.check(w >= 0 && w < n, "neighbour id ", w);
  Lists lists(static_cast<size_t>(n));
  for (int64_t v = 0; v < n; ++v)
    lists[v].assign(flat.begin() + offsets[v], flat.begin() + offsets[v + 1]);
  idx.to_csr(lists);
  idx.norms_ = idx.sq_norms();
  idx.build_tree();
  return idx;
}

}  // namespace retrokv
