// FlatIndex (issue 2): exact top-k by inner product equals brute force, ids and tie-breaking
// included (integer-valued data makes every score exact and full of ties), GQA group score =
// max over heads, keys_scanned = n, determinism across thread counts, bad input.
#include <gtest/gtest.h>
#include <omp.h>

#include <algorithm>
#include <cmath>
#include <cstdlib>
#include <random>
#include <string>
#include <vector>

#include "common/random_data.h"
#include "common/test_util.h"
#include "retrokv/core/reference_attention.h"
#include "retrokv/cpu/simd.h"
#include "retrokv/index/flat.h"

namespace retrokv {
namespace {

/// Entries uniform in {-2, ..., 2}: dot products are small integers, exact in float, many ties.
Matrix<float> integer_matrix(int64_t rows, int cols, uint64_t seed) {
  Matrix<float> m(rows, cols);
  std::mt19937_64 rng(seed);
  for (int64_t i = 0; i < rows * cols; ++i) m.data()[i] = static_cast<float>(int(rng() % 5) - 2);
  return m;
}

/// Brute force in double: group score max_h q_h.k, sorted by (score desc, id asc).
std::vector<ScoredId> brute_force(const Matrix<float>& keys, const Matrix<float>& q, int k) {
  std::vector<double> best(keys.rows(), -INFINITY);
  for (int64_t h = 0; h < q.rows(); ++h) {
    const std::vector<double> s = reference_scores(q.row(h), keys);
    for (int64_t i = 0; i < keys.rows(); ++i) best[i] = std::max(best[i], s[i]);
  }
  std::vector<ScoredId> all;
  for (int64_t i = 0; i < keys.rows(); ++i)
    all.push_back({static_cast<float>(best[i]), static_cast<int32_t>(i)});
  std::sort(all.begin(), all.end(), better);
  all.resize(k);
  return all;
}

void expect_exact(const SearchResult& r, const std::vector<ScoredId>& ref,
                  const std::string& what) {
  ASSERT_EQ(r.ids.size(), ref.size()) << what;
  ASSERT_EQ(r.scores.size(), ref.size()) << what;
  for (size_t i = 0; i < ref.size(); ++i) {
    EXPECT_EQ(r.ids[i], ref[i].id) << what << " rank " << i;
    EXPECT_EQ(r.scores[i], ref[i].score) << what << " rank " << i;
  }
}

TEST(FlatIndex, EqualsBruteForceWithTies) {
  const int64_t sizes[] = {1, 37, 5000, sanitizer_build() ? 20000 : 70000};  // 70000: 5 chunks
  for (int64_t n : sizes) {
    const int d = 16;
    const Matrix<float> keys = integer_matrix(n, d, n);
    const FlatIndex index(keys.view());
    EXPECT_EQ(index.size(), n);
    EXPECT_EQ(index.dim(), d);
    for (int g : {1, 4}) {
      const Matrix<float> q = integer_matrix(g, d, 100 + g);
      for (int k : {1, 10, 100, 1000}) {
        if (k > n) continue;
        SearchParams p;
        p.k = k;
        const SearchResult r = index.search(q.view(), p);
        EXPECT_EQ(r.keys_scanned, n);
        expect_exact(
            r, brute_force(keys, q, k),
            "n " + std::to_string(n) + " g " + std::to_string(g) + " k " + std::to_string(k));
      }
    }
  }
}

TEST(FlatIndex, ContinuousDataMatchesDoubleRanking) {
  const int64_t n = sanitizer_build() ? 8000 : 40000;
  const int d = 128, g = 4, k = 100;
  const Matrix<float> keys = random_matrix(n, d, 3);
  const Matrix<float> q = random_matrix(g, d, 4);
  const FlatIndex index(keys.view());
  SearchParams p;
  p.k = k;
  const SearchResult r = index.search(q.view(), p);
  const std::vector<ScoredId> ref = brute_force(keys, q, k);
  // Float scores differ from double by ~1e-5; gaps between neighbouring ranks are far larger
  // here (checked), so the ranking must be identical.
  double min_gap = INFINITY;
  for (int i = 0; i + 1 < k; ++i)
    min_gap = std::min(min_gap, double(ref[i].score - ref[i + 1].score));
  ASSERT_GT(min_gap, 1e-4);
  ASSERT_EQ(r.ids.size(), size_t(k));
  for (int i = 0; i < k; ++i) {
    EXPECT_EQ(r.ids[i], ref[i].id) << "rank " << i;
    EXPECT_NEAR(r.scores[i], ref[i].score, 1e-4) << "rank " << i;
  }
}

TEST(FlatIndex, GroupScoreIsMaxOverHeads) {
  // Each head alone prefers its own planted key; the group returns both, ranked by max score.
  const int64_t n = 1000;
  const int d = 8;
  Matrix<float> keys = integer_matrix(n, d, 9);
  for (int j = 0; j < d; ++j) keys(123, j) = keys(456, j) = 0.f;
  keys(123, 0) = 10.f;  // head 0's favourite: q0.k = 10 * 3 = 30
  keys(456, 1) = 10.f;  // head 1's favourite: q1.k = 10 * 2 = 20
  Matrix<float> q(2, d);
  q(0, 0) = 3.f;
  q(1, 1) = 2.f;
  const FlatIndex index(keys.view());
  SearchParams p;
  p.k = 2;
  const SearchResult r = index.search(q.view(), p);
  ASSERT_EQ(r.ids.size(), 2u);
  EXPECT_EQ(r.ids[0], 123);
  EXPECT_EQ(r.ids[1], 456);
  EXPECT_EQ(r.scores[0], 30.f);
  EXPECT_EQ(r.scores[1], 20.f);
  // Head 1 alone ranks 456 first.
  const SearchResult r1 = index.search(ConstMatrixView<float>(q.row(1), 1, d), p);
  EXPECT_EQ(r1.ids[0], 456);
}

TEST(FlatIndex, EdgeValuesOfK) {
  const int64_t n = 300;
  const Matrix<float> keys = integer_matrix(n, 12, 5);
  const Matrix<float> q = integer_matrix(3, 12, 6);
  const FlatIndex index(keys.view());
  SearchParams p;
  p.k = 0;
  const SearchResult r0 = index.search(q.view(), p);
  EXPECT_TRUE(r0.ids.empty());
  EXPECT_EQ(r0.keys_scanned, n);
  p.k = static_cast<int>(n);
  expect_exact(index.search(q.view(), p), brute_force(keys, q, n), "k = n");
}

TEST(FlatIndex, DeterministicAcrossThreadCountsAndSimdLevels) {
  const int64_t n = sanitizer_build() ? 40000 : 100000;
  const Matrix<float> keys = random_matrix(n, 64, 8);
  const Matrix<float> q = random_matrix(4, 64, 9);
  const FlatIndex index(keys.view());
  SearchParams p;
  p.k = 500;
  const int saved = omp_get_max_threads();
  omp_set_num_threads(1);
  const SearchResult a = index.search(q.view(), p);
  omp_set_num_threads(std::max(2, saved));
  const SearchResult b = index.search(q.view(), p);
  omp_set_num_threads(saved);
  EXPECT_EQ(a.ids, b.ids);
  EXPECT_EQ(a.scores, b.scores);
  // The scalar path ranks the same (well-separated continuous scores).
  const cpu::SimdLevel level = cpu::simd_level();
  cpu::set_simd_level(cpu::SimdLevel::kScalar);
  const SearchResult c = index.search(q.view(), p);
  cpu::set_simd_level(level);
  int same = 0;
  for (size_t i = 0; i < a.ids.size(); ++i) same += a.ids[i] == c.ids[i];
  EXPECT_GE(same, 495);  // rounding may swap a near-tie or two, no more
}

TEST(FlatIndex, BadInputThrows) {
  const Matrix<float> keys = random_matrix(50, 8, 1);
  const FlatIndex index(keys.view());
  const Matrix<float> q = random_matrix(2, 8, 2);
  auto expect_error = [](auto&& f, const std::string& name) {
    try {
      f();
      ADD_FAILURE() << "no retrokv::Error, expected one naming " << name;
    } catch (const Error& e) {
      EXPECT_NE(std::string(e.what()).find(name), std::string::npos) << e.what();
    }
  };
  SearchParams p;
  p.k = 51;
  expect_error([&] { index.search(q.view(), p); }, "k:");
  p.k = -1;
  expect_error([&] { index.search(q.view(), p); }, "k:");
  p.k = 5;
  const Matrix<float> q_wide = random_matrix(2, 9, 2);
  expect_error([&] { index.search(q_wide.view(), p); }, "queries:");
  Matrix<float> q_nan = random_matrix(2, 8, 2);
  q_nan(1, 3) = NAN;
  expect_error([&] { index.search(q_nan.view(), p); }, "queries:");
  expect_error([&] { index.search(ConstMatrixView<float>(q.data(), 0, 8), p); }, "queries:");
  Matrix<float> keys_inf = random_matrix(10, 8, 3);
  keys_inf(4, 4) = INFINITY;
  expect_error([&] { FlatIndex bad(keys_inf.view()); }, "keys:");
  expect_error([&] { FlatIndex bad(ConstMatrixView<float>(keys.data(), 5, 0)); }, "keys:");
}

}  // namespace
}  // namespace retrokv
