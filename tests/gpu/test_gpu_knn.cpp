// GPU exact kNN by inner product (RoarGraph build, step 1) against a double CPU scan: every
// returned id is a true top-k key up to fp32 near-ties, scores match, rank order holds. Also
// queries that are keys of an out-of-distribution shape (a shifted mean), several key tiles,
// and bad k. Skips without a device.
#include <gtest/gtest.h>

#include <algorithm>
#include <cmath>
#include <random>
#include <vector>

#include "retrokv/core/error.h"
#include "retrokv/cuda/device.h"
#include "retrokv/cuda/knn.h"

namespace retrokv::cuda {
namespace {

void check_knn(int64_t nq, int64_t n, int d, int k, float query_shift) {
  std::mt19937 rng(std::random_device{}());
  std::normal_distribution<float> nd(0.f, 1.f);
  std::vector<float> q(static_cast<size_t>(nq) * d), keys(static_cast<size_t>(n) * d);
  for (auto& x : keys) x = nd(rng);
  for (auto& x : q) x = nd(rng) + query_shift;
  std::vector<int32_t> ids(static_cast<size_t>(nq) * k, -7);
  std::vector<float> scores(ids.size(), NAN);
  exact_knn_host(q.data(), keys.data(), nq, n, d, k, ids.data(), scores.data());
  std::vector<double> ref(n);
  for (int64_t i = 0; i < nq; i += std::max<int64_t>(1, nq / 64)) {  // a sample of the queries
    for (int64_t j = 0; j < n; ++j) {
      double s = 0;
      for (int c = 0; c < d; ++c) s += static_cast<double>(q[i * d + c]) * keys[j * d + c];
      ref[j] = s;
    }
    std::vector<double> sorted = ref;
    std::nth_element(sorted.begin(), sorted.begin() + (k - 1), sorted.end(), std::greater<>());
    const double kth = sorted[k - 1];
    std::vector<int32_t> seen;
    for (int r = 0; r < k; ++r) {
      const int32_t id = ids[i * k + r];
      ASSERT_GE(id, 0);
      ASSERT_LT(id, n);
      const double tol = 1e-4 * (1.0 + std::abs(ref[id]));
      EXPECT_NEAR(scores[i * k + r], ref[id], tol) << "query " << i << " rank " << r;
      EXPECT_GE(ref[id], kth - tol) << "query " << i << " rank " << r;
      if (r > 0) {
        EXPECT_TRUE(scores[i * k + r - 1] > scores[i * k + r] ||
                    (scores[i * k + r - 1] == scores[i * k + r] && ids[i * k + r - 1] < id))
            << "rank order, query " << i << " rank " << r;
      }
      seen.push_back(id);
    }
    std::sort(seen.begin(), seen.end());
    EXPECT_EQ(std::adjacent_find(seen.begin(), seen.end()), seen.end()) << "duplicate id";
  }
}

class GpuKnn : public ::testing::Test {
 protected:
  void SetUp() override {
    if (device_count() == 0) GTEST_SKIP() << "no CUDA device";
  }
};

TEST_F(GpuKnn, OneTileMatchesTheDoubleScan) { check_knn(300, 5000, 64, 100, 0.f); }
TEST_F(GpuKnn, SeveralKeyAndQueryTilesMatch) { check_knn(2500, 70000, 128, 100, 0.f); }
TEST_F(GpuKnn, ShiftedQueriesAndLargeKMatch) { check_knn(100, 40000, 128, 1024, 0.5f); }
TEST_F(GpuKnn, KEqualToNReturnsEveryKeyInOrder) { check_knn(10, 300, 64, 300, 0.f); }

TEST_F(GpuKnn, BadKThrows) {
  std::vector<float> q(64), k(64 * 10);
  std::vector<int32_t> ids(20);
  std::vector<float> s(20);
  EXPECT_THROW(exact_knn_host(q.data(), k.data(), 1, 10, 64, 11, ids.data(), s.data()), Error);
  EXPECT_THROW(exact_knn_host(q.data(), k.data(), 1, 10, 64, 0, ids.data(), s.data()), Error);
}

}  // namespace
}  // namespace retrokv::cuda
