// Tests for cpu::kmeans: exact recovery of separated blobs, centroids equal to the means of their
// rows, spherical assignment = argmax inner product, determinism, empty clusters, bad input.
#include <gtest/gtest.h>
#include <omp.h>

#include <cmath>
#include <random>

#include "common/random_data.h"
#include "retrokv/cpu/kmeans.h"

namespace retrokv {
namespace {

// n rows in `blobs` well separated groups, stored blob after blob (row i is in blob i*blobs/n).
Matrix<float> make_blobs(int64_t n, int d, int blobs, uint64_t seed) {
  Matrix<float> x = random_matrix(n, d, seed, 0.05f);
  Matrix<float> centres = random_matrix(blobs, d, seed + 1, 10.f);
  for (int64_t i = 0; i < n; ++i)
    for (int j = 0; j < d; ++j) x(i, j) += centres(i * blobs / n, j);
  return x;
}

TEST(KMeans, RecoversSeparatedBlobs) {
  const int64_t n = 1200;
  const int blobs = 12;
  Matrix<float> x = make_blobs(n, 16, blobs, 7);
  cpu::KMeansParams p;
  p.n_clusters = blobs;
  const cpu::KMeansResult r = cpu::kmeans(x.view(), p);
  // Evenly spaced seeds land one per blob; every blob must be exactly one cluster.
  for (int64_t i = 0; i < n; ++i) EXPECT_EQ(r.assignment[i], i * blobs / n) << "row " << i;
  for (int j = 0; j < blobs; ++j) EXPECT_EQ(r.sizes[j], n / blobs);
}

TEST(KMeans, CentroidsAreMeansAndSizesCount) {
  Matrix<float> x = random_matrix(2000, 24, 3);
  for (bool spherical : {false, true}) {
    cpu::KMeansParams p;
    p.n_clusters = 37;
    p.spherical = spherical;
    p.init = cpu::KMeansParams::Init::kRandom;
    p.seed = 11;
    const cpu::KMeansResult r = cpu::kmeans(x.view(), p);
    std::vector<int32_t> sizes(37, 0);
    std::vector<std::vector<double>> sums(37, std::vector<double>(24, 0.0));
    for (int64_t i = 0; i < x.rows(); ++i) {
      ASSERT_GE(r.assignment[i], 0);
      ASSERT_LT(r.assignment[i], 37);
      ++sizes[r.assignment[i]];
      for (int j = 0; j < 24; ++j) sums[r.assignment[i]][j] += x(i, j);
    }
    EXPECT_EQ(sizes, r.sizes);
    for (int c = 0; c < 37; ++c) {
      ASSERT_GT(sizes[c], 0);
      double norm = 0;
      for (int j = 0; j < 24; ++j) norm += sums[c][j] * sums[c][j];
      norm = std::sqrt(norm) / sizes[c];
      for (int j = 0; j < 24; ++j) {
        const double mean = sums[c][j] / sizes[c];
        const double expect = spherical ? mean / norm : mean;
        EXPECT_NEAR(r.centroids(c, j), expect, 1e-5) << "cluster " << c << " dim " << j;
      }
    }
  }
}

TEST(KMeans, SphericalAssignsByLargestInnerProduct) {
  Matrix<float> x = random_matrix(900, 32, 5);
  cpu::KMeansParams p;
  p.n_clusters = 30;
  p.spherical = true;
  p.iterations = 5;
  const cpu::KMeansResult r = cpu::kmeans(x.view(), p);
  // The centroids returned are updated after the last assignment; one more assignment against
  // them must agree with a brute-force argmax, and centroids have unit norm.
  for (int c = 0; c < 30; ++c) {
    double s = 0;
    for (int j = 0; j < 32; ++j) s += double(r.centroids(c, j)) * r.centroids(c, j);
    EXPECT_NEAR(s, 1.0, 1e-5);
  }
  std::vector<int32_t> a(900);
  std::vector<float> best(900);
  cpu::detail::kmeans_assign(x.view(), r.centroids, true, a, best);
  for (int64_t i = 0; i < 900; ++i) {
    int arg = 0;
    double bv = -1e30;
    for (int c = 0; c < 30; ++c) {
      double s = 0;
      for (int j = 0; j < 32; ++j) s += double(x(i, j)) * r.centroids(c, j);
      if (s > bv + 1e-4) bv = s, arg = c;
    }
    double got = 0;
    for (int j = 0; j < 32; ++j) got += double(x(i, j)) * r.centroids(a[i], j);
    EXPECT_NEAR(got, bv, 1e-4) << "row " << i << " brute " << arg << " got " << a[i];
  }
}

// The wave index's update shape (<= one row block, 4 clusters, even d) is assigned by an AVX-512
// kernel instead of the Eigen GEMM; its scores must be bit-identical to the GEMM path's, which
// the same rows take when stacked past one row block.
TEST(KMeans, WaveUpdateShapeMatchesGemmPathBitForBit) {
  if (!cpu::detail::kmeans_x4_path(64, 64, 4)) GTEST_SKIP() << "no AVX-512 on this CPU";
  for (const auto& [n, d] : {std::pair<int, int>{64, 64}, {64, 128}, {40, 64}, {7, 2}, {256, 32}}) {
    const Matrix<float> x = random_matrix(n, d, 100 + n + d);
    for (bool spherical : {true, false}) {
      Matrix<float> c = random_matrix(4, d, 200 + d);
      if (spherical) {
        for (int j = 0; j < 4; ++j) cpu::detail::normalise_row(c.row(j), d);
      }
      ASSERT_TRUE(cpu::detail::kmeans_x4_path(n, d, 4));
      std::vector<int32_t> a(n);
      std::vector<float> best(n);
      cpu::detail::kmeans_assign(x.view(), c, spherical, a, best);
      const int64_t reps = cpu::detail::kKMeansBlockRows / n + 1;
      Matrix<float> xs(n * reps, d);
      for (int64_t r = 0; r < reps; ++r)
        for (int i = 0; i < n; ++i) std::copy(x.row(i), x.row(i) + d, xs.row(r * n + i));
      ASSERT_FALSE(cpu::detail::kmeans_x4_path(xs.rows(), d, 4));
      std::vector<int32_t> ag(xs.rows());
      std::vector<float> bestg(xs.rows());
      cpu::detail::kmeans_assign(xs.view(), c, spherical, ag, bestg);
      for (int i = 0; i < n; ++i) {
        ASSERT_EQ(best[i], bestg[i]) << n << " " << d << " " << spherical << " row " << i;
        ASSERT_EQ(a[i], ag[i]) << n << " " << d << " " << spherical << " row " << i;
      }
    }
  }
  // A whole k-means of the update shape (10 iterations) matches one run with the path off.
  const Matrix<float> x = random_matrix(64, 64, 9);
  cpu::KMeansParams p;
  p.n_clusters = 4;
  p.spherical = true;
  const cpu::KMeansResult fast = cpu::kmeans(x.view(), p);
  cpu::set_simd_level(cpu::SimdLevel::kAvx2);
  const cpu::KMeansResult gemm = cpu::kmeans(x.view(), p);
  cpu::set_simd_level(cpu::supported_simd_level());
  EXPECT_EQ(fast.assignment, gemm.assignment);
  EXPECT_EQ(fast.sizes, gemm.sizes);
  for (int64_t i = 0; i < 4 * 64; ++i)
    EXPECT_EQ(fast.centroids.data()[i], gemm.centroids.data()[i]);
}

TEST(KMeans, DeterministicAcrossRunsAndThreadCounts) {
  Matrix<float> x = random_matrix(3000, 16, 9);
  cpu::KMeansParams p;
  p.n_clusters = 50;
  p.init = cpu::KMeansParams::Init::kRandom;
  p.seed = 42;
  const int saved = omp_get_max_threads();
  omp_set_num_threads(1);
  const cpu::KMeansResult a = cpu::kmeans(x.view(), p);
  omp_set_num_threads(std::max(2, saved));
  const cpu::KMeansResult b = cpu::kmeans(x.view(), p);
  omp_set_num_threads(saved);
  EXPECT_EQ(a.assignment, b.assignment);
  EXPECT_EQ(a.sizes, b.sizes);
  for (int64_t i = 0; i < 50 * 16; ++i) EXPECT_EQ(a.centroids.data()[i], b.centroids.data()[i]);
  p.seed = 43;
  const cpu::KMeansResult c = cpu::kmeans(x.view(), p);
  EXPECT_NE(a.assignment, c.assignment);
}

TEST(KMeans, EmptyClustersNeverNaN) {
  // All rows identical: every centroid starts equal, so all but one cluster would be empty.
  Matrix<float> x(64, 8);
  for (int64_t i = 0; i < 64 * 8; ++i) x.data()[i] = 1.5f;
  for (bool spherical : {false, true}) {
    cpu::KMeansParams p;
    p.n_clusters = 6;
    p.spherical = spherical;
    const cpu::KMeansResult r = cpu::kmeans(x.view(), p);
    int64_t total = 0;
    for (int c = 0; c < 6; ++c) {
      EXPECT_GE(r.sizes[c], 1) << "cluster " << c;
      total += r.sizes[c];
    }
    EXPECT_EQ(total, 64);
    for (int64_t i = 0; i < 6 * 8; ++i) EXPECT_TRUE(std::isfinite(r.centroids.data()[i]));
  }
  // Zero rows under spherical k-means: no direction to normalise, still finite.
  Matrix<float> z(20, 4);
  cpu::KMeansParams p;
  p.n_clusters = 3;
  p.spherical = true;
  const cpu::KMeansResult r = cpu::kmeans(z.view(), p);
  for (int64_t i = 0; i < 3 * 4; ++i) EXPECT_EQ(r.centroids.data()[i], 0.f);
}

TEST(KMeans, BadInputThrowsNamingArgument) {
  Matrix<float> x = random_matrix(10, 4, 1);
  cpu::KMeansParams p;
  p.n_clusters = 11;
  try {
    cpu::kmeans(x.view(), p);
    FAIL() << "k > n accepted";
  } catch (const Error& e) {
    EXPECT_NE(std::string(e.what()).find("n_clusters"), std::string::npos) << e.what();
  }
  p.n_clusters = 0;
  EXPECT_THROW(cpu::kmeans(x.view(), p), Error);
  p.n_clusters = 2;
  p.iterations = -1;
  EXPECT_THROW(cpu::kmeans(x.view(), p), Error);
  p.iterations = 3;
  x(4, 2) = std::nanf("");
  try {
    cpu::kmeans(x.view(), p);
    FAIL() << "NaN accepted";
  } catch (const Error& e) {
    EXPECT_NE(std::string(e.what()).find("x:"), std::string::npos) << e.what();
  }
}

}  // namespace
}  // namespace retrokv
