// Inputs of retrokv-eval fidelity: one KV head's keys, values, training (prefill) queries and
// decode queries, read from a retrokv-trace directory or generated synthetically.
#pragma once

#include <algorithm>
#include <cmath>
#include <filesystem>
#include <fstream>
#include <nlohmann/json.hpp>
#include <random>
#include <string>
#include <vector>

#include "common/random_data.h"
#include "retrokv/core/error.h"
#include "retrokv/core/npy.h"
#include "retrokv/core/view.h"

namespace retrokv::eval {

struct HeadData {
  nlohmann::json layer, kv_head;
  Matrix<float> keys, values;  ///< (n_total, d): prompt rows, then generated rows
  Matrix<float> train;         ///< (m, d) prefill queries of the group (RoarGraph training)
  Matrix<float> queries;       ///< (n_queries * group, d): row t * group + j = head j of query t
  int64_t n_prompt = 0;
  int64_t n_gen_keys = 0;  ///< generated keys after the prompt (0: every query sees the prompt)
  int64_t n_queries = 0;
  int group = 1;
  float scale = 0.f;
};

/// Keys around n / per random centres and queries near random centres, so attention spreads
/// over a few groups of keys (as in the wave index's unit test).
inline SyntheticAttention make_clustered_synthetic(int64_t n, int d, int per, int64_t m_train,
                                                   int64_t m_test, uint64_t seed) {
  std::mt19937_64 rng(seed);
  std::normal_distribution<float> normal(0.f, 1.f);
  const int groups = static_cast<int>(std::max<int64_t>(1, n / per));
  std::uniform_int_distribution<int> pick(0, groups - 1);
  const Matrix<float> centre = random_matrix(groups, d, seed + 1);
  SyntheticAttention s;
  s.keys.resize(n, d);
  s.values = random_matrix(n, d, seed + 2);
  for (int64_t i = 0; i < n; ++i) {
    const int c = pick(rng);
    for (int t = 0; t < d; ++t) s.keys(i, t) = centre(c, t) + 0.5f * normal(rng) + 2.f;
  }
  auto queries = [&](Matrix<float>& q, int64_t m) {
    q.resize(m, d);
    for (int64_t i = 0; i < m; ++i) {
      const int c = pick(rng);
      for (int t = 0; t < d; ++t) q(i, t) = centre(c, t) + 0.5f * normal(rng);
    }
  };
  queries(s.train_queries, m_train);
  queries(s.test_queries, m_test);
  return s;
}

inline HeadData make_synthetic_head(int64_t n, int d, int64_t m, int group, const std::string& kind,
                                    uint64_t seed) {
  RETROKV_CHECK(n >= 1 && d >= 2 && m >= 1, "--synthetic: expected n >= 1, d >= 2, m >= 1, got ", n,
                ",", d, ",", m);
  const int64_t m_train = std::min<int64_t>(n, 4096);
  SyntheticAttention s;
  if (kind == "ood") {
    s = make_ood_synthetic(n, d, m_train, m * group, seed);
  } else if (kind == "clustered") {
    s = make_clustered_synthetic(n, d, 64, m_train, m * group, seed);
  } else {
    RETROKV_FAIL("--synthetic-kind: expected 'ood' or 'clustered', got '", kind, "'");
  }
  HeadData h;
  h.layer = "synthetic-" + kind;
  h.kv_head = 0;
  h.keys = std::move(s.keys);
  h.values = std::move(s.values);
  h.train = std::move(s.train_queries);
  h.queries = std::move(s.test_queries);
  h.n_prompt = n;
  h.n_queries = m;
  h.group = group;
  h.scale = 1.f / std::sqrt(static_cast<float>(d));
  return h;
}

/// Reads DIR/meta.json and every DIR/L{layer}_H{kv_head}/ it lists (retrokv-trace's layout):
/// keys/values (n_total, d), prefill_queries (group, n_prompt, d), decode_queries (group, N, d)
/// where decode query i sees keys [0, n_prompt + i].
inline std::vector<HeadData> load_trace(const std::string& dir) {
  namespace fs = std::filesystem;
  const fs::path meta_path = fs::path(dir) / "meta.json";
  std::ifstream in(meta_path);
  RETROKV_CHECK(in.good(), "--trace: cannot open '", meta_path.string(), "'");
  nlohmann::json meta;
  try {
    in >> meta;
  } catch (const std::exception& e) {
    RETROKV_FAIL("--trace: '", meta_path.string(), "' is not valid JSON: ", e.what());
  }
  const int64_t n_prompt = meta.at("n_prompt").get<int64_t>();
  const float scale = meta.contains("scale") ? meta["scale"].get<float>() : 0.f;
  std::vector<HeadData> heads;
  for (const auto& e : meta.at("traces")) {
    const fs::path sub = fs::path(dir) / e.at("dir").get<std::string>();
    HeadData h;
    h.layer = e.at("layer");
    h.kv_head = e.at("kv_head");
    h.keys = load_npy_matrix((sub / "keys.npy").string());
    h.values = load_npy_matrix((sub / "values.npy").string());
    const int64_t d = h.keys.cols(), n_total = h.keys.rows();
    RETROKV_CHECK(h.values.rows() == n_total && h.values.cols() == d, "values.npy in ",
                  sub.string(), ": expected (", n_total, ", ", d, ")");
    RETROKV_CHECK(n_prompt >= 1 && n_prompt <= n_total, "meta.json n_prompt: expected in [1, ",
                  n_total, "], got ", n_prompt);
    const NpyArray pq = load_npy((sub / "prefill_queries.npy").string());
    const NpyArray dq = load_npy((sub / "decode_queries.npy").string());
    RETROKV_CHECK(pq.shape.size() == 3 && pq.shape[1] == n_prompt && pq.shape[2] == d,
                  "prefill_queries.npy in ", sub.string(), ": expected (group, ", n_prompt, ", ", d,
                  ")");
    RETROKV_CHECK(dq.shape.size() == 3 && dq.shape[0] == pq.shape[0] && dq.shape[2] == d,
                  "decode_queries.npy in ", sub.string(), ": expected (group, N, ", d, ")");
    h.group = static_cast<int>(dq.shape[0]);
    h.n_queries = dq.shape[1];
    h.n_prompt = n_prompt;
    h.n_gen_keys = n_total - n_prompt;
    RETROKV_CHECK(h.n_gen_keys >= h.n_queries, "keys.npy in ", sub.string(), ": ", h.n_gen_keys,
                  " generated keys for ", h.n_queries, " decode queries");
    h.scale = scale > 0.f ? scale : 1.f / std::sqrt(static_cast<float>(d));
    h.train.resize(pq.shape[0] * n_prompt, d);
    std::copy(pq.data<float>(), pq.data<float>() + pq.size(), h.train.data());
    h.queries.resize(h.n_queries * h.group, d);
    const float* src = dq.data<float>();
    for (int j = 0; j < h.group; ++j)
      for (int64_t t = 0; t < h.n_queries; ++t)
        std::copy(src + (j * h.n_queries + t) * d, src + (j * h.n_queries + t + 1) * d,
                  h.queries.row(t * h.group + j));
    heads.push_back(std::move(h));
  }
  RETROKV_CHECK(!heads.empty(), "--trace: meta.json in '", dir, "' lists no traces");
  return heads;
}

}  // namespace retrokv::eval
