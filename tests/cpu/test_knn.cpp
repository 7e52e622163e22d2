// Tests for knn_inner_product: equals a brute-force double-precision top-k (ids and scores), is
// independent of tile sizes and thread count, handles strided views, rejects bad input.
#include <gtest/gtest.h>
#include <omp.h>

#include <algorithm>
#include <cmath>
#include <vector>

#include "common/random_data.h"
#include "retrokv/index/knn.h"

namespace retrokv {
namespace {

// Brute-force top-k with the same tie rule (score desc, id asc), scores in float from a plain
// loop; ids compared only where the score gap to the k-th is clear of rounding.
std::vector<ScoredId> brute(const float* q, ConstMatrixView<float> keys, int k) {
  std::vector<ScoredId> all;
  for (int64_t i = 0; i < keys.rows; ++i) {
    double s = 0;
    for (int64_t j = 0; j < keys.cols; ++j) s += double(q[j]) * keys(i, j);
    all.push_back({static_cast<float>(s), static_cast<int32_t>(i)});
  }
  std::sort(all.begin(), all.end(), better);
  all.resize(k);
  return all;
}

TEST(Knn, EqualsBruteForce) {
  const int64_t n = 3000, m = 300;
  const int d = 64, k = 20;
  Matrix<float> keys = random_matrix(n, d, 1);
  Matrix<float> qs = random_matrix(m, d, 2);
  KnnParams p;
  p.query_block = 37;  // odd tiles exercise the edges
  p.key_block = 500;
  const KnnResult r = knn_inner_product(qs.view(), keys.view(), k, p);
  ASSERT_EQ(r.m, m);
  ASSERT_EQ(r.k, k);
  int64_t mismatches = 0;
  for (int64_t i = 0; i < m; ++i) {
    const auto ref = brute(qs.row(i), keys.view(), k);
    for (int j = 0; j < k; ++j) {
      EXPECT_NEAR(r.row_scores(i)[j], ref[j].score, 1e-3f * (1 + std::fabs(ref[j].score)));
      mismatches += r.row_ids(i)[j] != ref[j].id;
    }
  }
  // Random Gaussian scores have gaps far above float rounding: ids must match exactly.
  EXPECT_EQ(mismatches, 0);
}

TEST(Knn, SameResultForAnyTilingAndThreads) {
  const int64_t n = 2048, m = 500;
  const int d = 32, k = 10;
  Matrix<float> keys = random_matrix(n, d, 3);
  Matrix<float> qs = random_matrix(m, d, 4);
  KnnParams a;
  a.threads = 1;
  KnnParams b;
  b.threads = 2;
  b.query_block = 16;
  const KnnResult ra = knn_inner_product(qs.view(), keys.view(), k, a);
  const KnnResult rb = knn_inner_product(qs.view(), keys.view(), k, b);
  EXPECT_EQ(ra.ids, rb.ids);
  // Same key tiles -> same GEMM shapes -> bit-identical scores regardless of threads.
  KnnParams c = a;
  c.threads = 2;
  EXPECT_EQ(knn_inner_product(qs.view(), keys.view(), k, c).scores, ra.scores);
  EXPECT_GT(ra.gflops, 0.0);
}

TEST(Knn, TiesGoToSmallerIdAndKEqualsN) {
  Matrix<float> keys(6, 2);
  for (int i = 0; i < 6; ++i) keys(i, 0) = (i % 2) ? 1.f : 2.f;  // ties within each parity
  Matrix<float> q(1, 2);
  q(0, 0) = 1.f;
  const KnnResult r = knn_inner_product(q.view(), keys.view(), 6);
  EXPECT_EQ(std::vector<int32_t>(r.ids.begin(), r.ids.end()),
            (std::vector<int32_t>{0, 2, 4, 1, 3, 5}));
}

TEST(Knn, StridedViews) {
  Matrix<float> big = random_matrix(400, 48, 5);
  ConstMatrixView<float> keys(big.data(), 400, 32, 48);  // first 32 columns
  Matrix<float> qbig = random_matrix(10, 40, 6);
  ConstMatrixView<float> qs(qbig.data(), 10, 32, 40);
  const KnnResult r = knn_inner_product(qs, keys, 5);
  for (int i = 0; i < 10; ++i) {
    const auto ref = brute(qs.row(i), keys, 5);
    for (int j = 0; j < 5; ++j) EXPECT_EQ(r.row_ids(i)[j], ref[j].id);
  }
}

TEST(Knn, BadInputThrowsNamingTheArgument) {
  Matrix<float> keys = random_matrix(10, 8, 7);
  Matrix<float> qs = random_matrix(3, 4, 8);
  Matrix<float> good = random_matrix(3, 8, 9);
  auto expect_throw = [](auto&& f, const char* what) {
    try {
      f();
      FAIL() << "no throw for " << what;
    } catch (const Error& e) {
      EXPECT_NE(std::string(e.what()).find(what), std::string::npos) << e.what();
    }
  };
  expect_throw([&] { knn_inner_product(qs.view(), keys.view(), 3); }, "queries");
  expect_throw([&] { knn_inner_product(good.view(), keys.view(), 11); }, "k");
  expect_throw([&] { knn_inner_product(good.view(), keys.view(), 0); }, "k");
  KnnParams p;
  p.key_block = 0;
  expect_throw([&] { knn_inner_product(good.view(), keys.view(), 3, p); }, "key_block");
  good(1, 2) = std::nanf("");
  expect_throw([&] { knn_inner_product(good.view(), keys.view(), 3); }, "NaN");
}

}  // namespace
}  // namespace retrokv
