// IVF-Flat over the keys of one KV head (DESIGN.md section 3, "IVF"): k-means lists, a search
// probes the nprobe centroids with the largest inner product and scans their keys exactly. The
// classic baseline that RetrievalAttention (section 3) shows failing on out-of-distribution
// queries; also a cheap index when queries and keys do agree.
#pragma once

#include <omp.h>

#include <algorithm>
#include <cmath>
#include <cstdint>
#include <numeric>
#include <random>
#include <string>
#include <utility>
#include <vector>

#include "retrokv/core/checksum.h"
#include "retrokv/core/error.h"
#include "retrokv/core/topk.h"
#include "retrokv/core/view.h"
#include "retrokv/cpu/kmeans.h"
#include "retrokv/index/roar_graph_search.h"
#include "retrokv/index/token_index.h"

namespace retrokv {

struct IvfParams {
  /// Number of lists (k-means clusters); 0 picks round(sqrt(n)) (at least 1). Default 0.
  int nlist = 0;
  /// Lists probed when SearchParams::nprobe is 0. Default 8.
  int nprobe = 8;
  /// Lloyd iterations. Default 10.
  int iterations = 10;
  /// Train k-means on at most nlist * train_per_list keys (a seeded random subset; 0 = all),
  /// as Faiss does; every key is then assigned to its nearest centroid. Default 64.
  int train_per_list = 64;
  /// Spherical k-means (unit centroids, assignment by inner product) instead of L2. Default
  /// false.
  bool spherical = false;
  /// Seed of the training subset. Default 0.
  uint64_t seed = 0;
};

/// Inverted lists over an owned copy of the keys (n, d), stored list after list so a probe
/// scans contiguous memory. search() is const and safe from many threads at once.
class IvfIndex : public TokenIndex {
 public:
  IvfIndex() = default;

  /// keys: (n, d), n >= 1. Same keys and params give a byte-identical save().
  static IvfIndex build(ConstMatrixView<float> keys, const IvfParams& params = {});

  std::string name() const override { return "ivf"; }
  int64_t size() const override { return static_cast<int64_t>(ids_.size()); }
  int dim() const override { return static_cast<int>(centroids_.cols()); }
  int nlist() const { return static_cast<int>(centroids_.rows()); }
  const IvfParams& params() const { return params_; }
  /// Sizes of the lists, (nlist).
  std::vector<int64_t> list_sizes() const {
    std::vector<int64_t> s(static_cast<size_t>(nlist()));
    for (int j = 0; j < nlist(); ++j) s[j] = offsets_[j + 1] - offsets_[j];
    return s;
  }

  /// queries: (g, d). Probes max(1, min(nprobe, nlist)) lists; returns the best min(k, keys
  /// scanned) keys by the group score (max over heads).
  SearchResult search(ConstMatrixView<float> queries, const SearchParams& params) const override;

  /// Centroids, list offsets and ids (not the key copy).
  int64_t memory_bytes() const override {
    return static_cast<int64_t>(centroids_.rows() * centroids_.cols() * sizeof(float) +
                                offsets_.size() * sizeof(int64_t) + ids_.size() * sizeof(int32_t));
  }

  void save(const std::string& path) const { serialize().save(path); }
  std::vector<uint8_t> to_bytes() const {
    BinaryWriter w = serialize();
    return w.finish();
  }
  static IvfIndex load(const std::string& path) {
    BinaryReader r = BinaryReader::open(path, kMagic, kVersion, kVersion);
    return deserialize(r);
  }
  static IvfIndex from_bytes(std::vector<uint8_t> bytes) {
    BinaryReader r(std::move(bytes), kMagic, kVersion, kVersion, "ivf image");
    return deserialize(r);
  }

  static constexpr const char* kMagic = "RKVIVF01";
  static constexpr uint32_t kVersion = 1;

 private:
  BinaryWriter serialize() const;
  static IvfIndex deserialize(BinaryReader& r);

  IvfParams params_;
  Matrix<float> centroids_;       // (nlist, d)
  std::vector<int64_t> offsets_;  // (nlist + 1)
  std::vector<int32_t> ids_;      // (n): key ids list after list, ascending within a list
  Matrix<float> sorted_keys_;     // (n, d): row i is key ids_[i]
};

inline IvfIndex IvfIndex::build(ConstMatrixView<float> keys, const IvfParams& params) {
  const int64_t n = keys.rows, d = keys.cols;
  RETROKV_CHECK(n >= 1 && n < INT32_MAX, "keys: expected 1 <= n < 2^31 - 1 rows, got ", n);
  RETROKV_CHECK(d >= 1, "keys: expected d >= 1, got ", d);
  RETROKV_CHECK(params.nlist >= 0 && params.nlist <= n, "params.nlist: expected 0..n (", n,
                "), got ", params.nlist);
  RETROKV_CHECK(params.nprobe >= 1, "params.nprobe: expected >= 1, got ", params.nprobe);
  RETROKV_CHECK(params.iterations >= 0, "params.iterations: expected >= 0, got ",
                params.iterations);
  RETROKV_CHECK(params.train_per_list >= 0, "params.train_per_list: expected >= 0, got ",
                params.train_per_list);
  IvfIndex idx;
  idx.params_ = params;
  const int nlist =
      params.nlist > 0
          ? params.nlist
          : static_cast<int>(std::max<int64_t>(1, std::llround(std::sqrt(static_cast<double>(n)))));
  idx.params_.nlist = nlist;

  // Training subset: a seeded random choice of rows, kept in row order.
  const int64_t n_train =
      params.train_per_list > 0 ? std::min<int64_t>(n, int64_t{nlist} * params.train_per_list) : n;
  Matrix<float> train(n_train, d);
  {
    std::vector<int64_t> rows(static_cast<size_t>(n));
    std::iota(rows.begin(), rows.end(), 0);
    if (n_train < n) {
      std::mt19937_64 rng(params.seed);
      for (int64_t i = 0; i < n_train; ++i) {
        std::uniform_int_distribution<int64_t> pick(i, n - 1);
        std::swap(rows[i], rows[pick(rng)]);
      }
      rows.resize(static_cast<size_t>(n_train));
      std::sort(rows.begin(), rows.end());
    }
    for (int64_t i = 0; i < n_train; ++i) {
      const float* r = keys.row(rows[i]);
      for (int64_t j = 0; j < d; ++j) {
        RETROKV_CHECK(std::isfinite(r[j]), "keys: expected finite values, got ", r[j], " at (",
                      rows[i], ", ", j, ")");
      }
      std::copy(r, r + d, train.row(i));
    }
  }
  cpu::KMeansParams kp;
  kp.n_clusters = nlist;
  kp.iterations = params.iterations;
  kp.spherical = params.spherical;
  cpu::KMeansResult km = cpu::kmeans(train.view(), kp);
  idx.centroids_ = std::move(km.centroids);

  // Assign every key (the same rule k-means used), then counting-sort into lists.
  std::vector<int32_t> assignment(static_cast<size_t>(n));
  std::vector<float> best(static_cast<size_t>(n));
  cpu::detail::kmeans_assign(keys, idx.centroids_, params.spherical, assignment, best);
  for (int64_t i = 0; i < n; ++i) {
    RETROKV_CHECK(std::isfinite(best[i]), "keys: expected finite values, row ", i,
                  " gives a non-finite centroid score");
  }
  idx.offsets_.assign(static_cast<size_t>(nlist) + 1, 0);
  for (int32_t a : assignment) ++idx.offsets_[a + 1];
  for (int j = 0; j < nlist; ++j) idx.offsets_[j + 1] += idx.offsets_[j];
  idx.ids_.resize(static_cast<size_t>(n));
  idx.sorted_keys_.resize(n, d);
  std::vector<int64_t> fill(idx.offsets_.begin(), idx.offsets_.end() - 1);
  for (int64_t i = 0; i < n; ++i) {
    const int64_t pos = fill[assignment[i]]++;
    idx.ids_[pos] = static_cast<int32_t>(i);
    std::copy(keys.row(i), keys.row(i) + d, idx.sorted_keys_.row(pos));
  }
  return idx;
}

inline SearchResult IvfIndex::search(ConstMatrixView<float> queries,
                                     const SearchParams& params) const {
  const int64_t n = size(), d = dim();
  RETROKV_CHECK(n > 0, "index: empty (build or load it first)");
  RETROKV_CHECK(queries.cols == d, "queries: expected d = ", d, ", got ", queries.cols);
  RETROKV_CHECK(queries.rows >= 1 && queries.rows <= 1024,
                "queries: expected 1..1024 rows (one GQA group), got ", queries.rows);
  RETROKV_CHECK(params.k >= 1, "params.k: expected >= 1, got ", params.k);
  RETROKV_CHECK(params.nprobe >= 0, "params.nprobe: expected >= 0, got ", params.nprobe);
  const int g = static_cast<int>(queries.rows);
  std::vector<float> q(static_cast<size_t>(g * d));
  for (int h = 0; h < g; ++h) {
    for (int64_t j = 0; j < d; ++j) {
      RETROKV_CHECK(!std::isnan(queries(h, j)), "queries: expected no NaN, got NaN at (", h, ", ",
                    j, ")");
      q[h * d + j] = queries(h, j);
    }
  }
  const int nprobe = std::min(nlist(), params.nprobe > 0 ? params.nprobe : params_.nprobe);
  std::vector<float> cs(static_cast<size_t>(nlist()));
  for (int j = 0; j < nlist(); ++j)
    cs[j] = detail::roar_group_score(q.data(), g, centroids_.row(j), d);
  const std::vector<ScoredId> probes = top_k(cs.data(), nlist(), nprobe);
  TopKCollector top(params.k);
  SearchResult out;
  for (const ScoredId& p : probes) {
    for (int64_t i = offsets_[p.id]; i < offsets_[p.id + 1]; ++i) {
      const float s = detail::roar_group_score(q.data(), g, sorted_keys_.row(i), d);
      if (s >= top.threshold()) top.push(s, ids_[i]);  // ids are not monotone: ties push
    }
    out.keys_scanned += offsets_[p.id + 1] - offsets_[p.id];
  }
  const std::vector<ScoredId> best = top.sorted();
  out.ids = ids_of(best);
  out.scores.resize(best.size());
  for (size_t i = 0; i < best.size(); ++i) out.scores[i] = best[i].score;
  return out;
}

inline BinaryWriter IvfIndex::serialize() const {
  BinaryWriter w(kMagic, kVersion);
  w.write<int64_t>(size());
  w.write<int32_t>(dim());
  w.write<int32_t>(nlist());
  w.write<int32_t>(params_.nprobe);
  w.write<int32_t>(params_.iterations);
  w.write<int32_t>(params_.train_per_list);
  w.write<uint8_t>(params_.spherical ? 1 : 0);
  w.write<uint64_t>(params_.seed);
  w.write_array(centroids_.data(), static_cast<size_t>(nlist()) * dim());
  w.write_array(offsets_.data(), offsets_.size());
  w.write_array(ids_.data(), ids_.size());
  w.write_array(sorted_keys_.data(), static_cast<size_t>(size()) * dim());
  return w;
}

inline IvfIndex IvfIndex::deserialize(BinaryReader& r) {
  IvfIndex idx;
  const int64_t n = r.read<int64_t>();
  const int32_t d = r.read<int32_t>();
  const int32_t nlist = r.read<int32_t>();
  r.check(n >= 1 && n < INT32_MAX, "n = ", n);
  r.check(d >= 1 && d <= (1 << 16), "d = ", d);
  r.check(nlist >= 1 && nlist <= n, "nlist = ", nlist);
  IvfParams& p = idx.params_;
  p.nlist = nlist;
  p.nprobe = r.read<int32_t>();
  p.iterations = r.read<int32_t>();
  p.train_per_list = r.read<int32_t>();
  p.spherical = r.read<bool>();
  p.seed = r.read<uint64_t>();
  r.check(p.nprobe >= 1 && p.iterations >= 0 && p.train_per_list >= 0, "parameters");
  // Sizes first, against the bytes left, before allocating anything large.
  const uint64_t need = static_cast<uint64_t>(nlist) * d * sizeof(float) +
                        (static_cast<uint64_t>(nlist) + 1) * sizeof(int64_t) +
                        static_cast<uint64_t>(n) * (sizeof(int32_t) + uint64_t{4} * d);
  r.check(need == r.remaining(), "payload of ", r.remaining(), " bytes, expected ", need);
  idx.centroids_.resize(nlist, d);
  r.read_array(idx.centroids_.data(), static_cast<size_t>(nlist) * d);
  idx.offsets_.resize(static_cast<size_t>(nlist) + 1);
  r.read_array(idx.offsets_.data(), idx.offsets_.size());
  r.check(idx.offsets_[0] == 0 && idx.offsets_[nlist] == n, "list offsets");
  for (int j = 0; j < nlist; ++j) r.check(idx.offsets_[j] <= idx.offsets_[j + 1], "list offsets");
  idx.ids_.resize(static_cast<size_t>(n));
  r.read_array(idx.ids_.data(), idx.ids_.size());
  std::vector<uint8_t> seen(static_cast<size_t>(n), 0);
  for (int32_t id : idx.ids_) {
    r.check(id >= 0 && id < n && !seen[id], "key id ", id);
    seen[id] = 1;
  }
  idx.sorted_keys_.resize(n, d);
  r.read_array(idx.sorted_keys_.data(), static_cast<size_t>(n) * d);
  r.expect_end();
  return idx;
}

}  // namespace retrokv
