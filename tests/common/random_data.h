// Random inputs for tests and benchmarks: Gaussian matrices, dtype conversion, and an
// attention-like "out-of-distribution" generator where queries and keys come from different
// distributions (RetrievalAttention section 3's OOD observation, reproduced synthetically).
#pragma once

#include <algorithm>
#include <cmath>
#include <cstdint>
#include <random>
#include <vector>

#include "retrokv/core/error.h"
#include "retrokv/core/half.h"
#include "retrokv/core/view.h"

// Namespace retrokv (not retrokv::testing, which would shadow GoogleTest's ::testing inside
// test code written in namespace retrokv).
namespace retrokv {

/// (rows, cols) matrix of i.i.d. N(0, stddev^2) values; the same seed gives the same matrix.
inline Matrix<float> random_matrix(int64_t rows, int64_t cols, uint64_t seed, float stddev = 1.f) {
  Matrix<float> m(rows, cols);
  std::mt19937_64 rng(seed);
  std::normal_distribution<float> dist(0.f, stddev);
  for (int64_t i = 0; i < rows * cols; ++i) m.data()[i] = dist(rng);
  return m;
}

/// Rounds every element to T (round to nearest even for half / bfloat16).
template <typename T>
Matrix<T> convert_matrix(const Matrix<float>& m) {
  Matrix<T> out(m.rows(), m.cols());
  for (int64_t i = 0; i < m.rows() * m.cols(); ++i) out.data()[i] = from_float<T>(m.data()[i]);
  return out;
}

/// Exact widening of a float / half / bfloat16 matrix to float.
template <typename T>
Matrix<float> to_float_matrix(const Matrix<T>& m) {
  Matrix<float> out(m.rows(), m.cols());
  for (int64_t i = 0; i < m.rows() * m.cols(); ++i) out.data()[i] = to_float(m.data()[i]);
  return out;
}

/// Keys, values and two query sets of one synthetic attention head, all (rows, d).
struct SyntheticAttention {
  Matrix<float> keys;           ///< (n, d)
  Matrix<float> values;         ///< (n, d)
  Matrix<float> train_queries;  ///< (m_train, d): stand-ins for the prompt's (prefill) queries
  Matrix<float> test_queries;   ///< (m_test, d): stand-ins for decode queries, same distribution
};

/// Attention-like data with queries out of the keys' distribution.
///
/// Keys: a large shared mean offset (as real post-RoPE keys have: a few channels carry a big
/// common bias) plus anisotropic noise whose per-dimension scale decays geometrically, so the
/// keys fill a thin, elongated cloud far from the origin. Queries: their own mean direction,
/// roughly orthogonal to the key mean, plus a per-query random direction in the keys' strong
/// dimensions. Why this is OOD for keys, the way real attention is:
/// - q.k = q.mu_k + q.(k - mu_k); the first term is nearly the same for every key, so the
///   ranking is decided by the query's projection on the keys' noise, which differs per query:
///   each query's top keys by inner product are a small, query-dependent set at the extreme of
///   the cloud in that query's direction (measured at n = 20K, d = 64: top-100 Jaccard between
///   two queries ~0.05; the top 1% of keys hold ~70% of the softmax mass at scale 1/sqrt(d)).
/// - Key-key neighbourhoods (L2 or inner product among keys) are dominated by the shared offset
///   and the strongest axes, so "near each other" for keys does not predict "high q.k together"
///   (a query's top-100 shares ~8 keys with the 100 L2 neighbours of its own best key; k-means
///   over keys probed by centroid score finds ~46% of the top-100 scanning 5% of the keys, ~82%
///   at 20%). A graph or clustering built from keys alone navigates poorly from a query, while
///   one guided by train_queries (same distribution as test_queries) does not have this problem.
/// Values are i.i.d. N(0, 1). The same arguments and seed always give the same data (other
/// tests calibrate bounds on it: change the distribution only together with them).
inline SyntheticAttention make_ood_synthetic(int64_t n, int d, int64_t m_train, int64_t m_test,
                                             uint64_t seed) {
  RETROKV_CHECK(n >= 0 && m_train >= 0 && m_test >= 0, "make_ood_synthetic: negative sizes (n ", n,
                ", m_train ", m_train, ", m_test ", m_test, ")");
  RETROKV_CHECK(d >= 2, "d: expected >= 2, got ", d);
  std::mt19937_64 rng(seed);
  std::normal_distribution<float> normal(0.f, 1.f);

  // Two orthonormal mean directions: mu_k for keys, mu_q for queries (Gram-Schmidt).
  std::vector<float> mu_k(d), mu_q(d);
  for (auto& x : mu_k) x = normal(rng);
  for (auto& x : mu_q) x = normal(rng);
  auto normalise = [](std::vector<float>& v) {
    double s = 0;
    for (float x : v) s += double(x) * x;
    const float inv = static_cast<float>(1.0 / std::sqrt(s));
    for (float& x : v) x *= inv;
  };
  normalise(mu_k);
  double proj = 0;
  for (int j = 0; j < d; ++j) proj += double(mu_k[j]) * mu_q[j];
  for (int j = 0; j < d; ++j) mu_q[j] -= static_cast<float>(proj) * mu_k[j];
  normalise(mu_q);

  // Anisotropic key spread: sigma_j = 2 * 0.97^j in a random permutation of the dimensions.
  std::vector<float> sigma(d);
  std::vector<int> perm(d);
  for (int j = 0; j < d; ++j) perm[j] = j;
  std::shuffle(perm.begin(), perm.end(), rng);
  for (int j = 0; j < d; ++j) sigma[perm[j]] = 2.f * std::pow(0.97f, static_cast<float>(j));

  const float key_offset = 3.f * std::sqrt(static_cast<float>(d));  // large shared mean
  SyntheticAttention s;
  s.keys.resize(n, d);
  for (int64_t i = 0; i < n; ++i) {
    float* k = s.keys.row(i);
    for (int j = 0; j < d; ++j) k[j] = key_offset * mu_k[j] + sigma[j] * normal(rng);
  }
  s.values.resize(n, d);
  for (int64_t i = 0; i < n * d; ++i) s.values.data()[i] = normal(rng);

  // Queries: mean along mu_q (a direction the keys have no offset in) plus a query-specific
  // component weighted towards the keys' strong axes, so each query selects its own extreme.
  const float query_offset = 2.f * std::sqrt(static_cast<float>(d));
  auto fill_queries = [&](Matrix<float>& q, int64_t m) {
    q.resize(m, d);
    for (int64_t i = 0; i < m; ++i) {
      float* row = q.row(i);
      for (int j = 0; j < d; ++j) {
        row[j] = query_offset * mu_q[j] + 1.5f * sigma[j] * normal(rng) + 0.3f * normal(rng);
      }
    }
  };
  fill_queries(s.train_queries, m_train);
  fill_queries(s.test_queries, m_test);
  return s;
}

}  // namespace retrokv
