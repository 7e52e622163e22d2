// CPU attention kernels (issue 2): chunked attention merged by LSE equals the double reference
// (1, 2, 7, 100 random chunks; d 64/128; float/half/bf16 on the same rounded inputs), id lists,
// GQA groups equal per-head results, empty inputs, bad inputs, and every SIMD path vs scalar.
#include <gtest/gtest.h>
#include <omp.h>

#include <algorithm>
#include <cmath>
#include <cstdlib>
#include <limits>
#include <random>
#include <string>
#include <vector>

#include "common/random_data.h"
#include "common/test_util.h"
#include "retrokv/core/attention_state.h"
#include "retrokv/core/reference_attention.h"
#include "retrokv/cpu/attention.h"
#include "retrokv/cpu/simd.h"

namespace retrokv {
namespace {

using cpu::SimdLevel;

/// Restores the SIMD level a test forced.
class SimdLevelGuard {
 public:
  explicit SimdLevelGuard(SimdLevel level) : saved_(cpu::simd_level()) {
    cpu::set_simd_level(level);
  }
  ~SimdLevelGuard() { cpu::set_simd_level(saved_); }

 private:
  SimdLevel saved_;
};

std::vector<SimdLevel> available_levels() {
  std::vector<SimdLevel> out;
  for (int l = 0; l <= static_cast<int>(cpu::supported_simd_level()); ++l) {
    out.push_back(static_cast<SimdLevel>(l));
  }
  return out;
}

double rel_error(const float* a, const float* ref, int d) {
  double num = 0, den = 0;
  for (int j = 0; j < d; ++j) {
    num += (double(a[j]) - ref[j]) * (double(a[j]) - ref[j]);
    den += double(ref[j]) * ref[j];
  }
  return std::sqrt(num / std::max(den, 1e-300));
}

/// One KV head in storage type T plus a group of float queries.
template <typename T>
struct Head {
  Matrix<T> K, V;
  Matrix<float> q;
};

template <typename T>
Head<T> make_head(int64_t n, int d, int g, uint64_t seed) {
  Head<T> h;
  h.K = convert_matrix<T>(random_matrix(n, d, seed));
  h.V = convert_matrix<T>(random_matrix(n, d, seed + 1));
  h.q = random_matrix(g, d, seed + 2);
  return h;
}

/// Expects (o, lse) of every head of the group to match the double reference.
template <typename T>
void expect_matches_reference(const Head<T>& h, const float* o, const float* lse, float scale,
                              const int32_t* ids, int64_t n_ids, double tol,
                              const std::string& what) {
  const int d = static_cast<int>(h.q.cols());
  for (int64_t r = 0; r < h.q.rows(); ++r) {
    const AttentionState ref = reference_attention(h.q.row(r), h.K, h.V, scale, ids, n_ids);
    EXPECT_LE(rel_error(o + r * d, ref.o.data(), d), tol) << what << " head " << r;
    EXPECT_NEAR(lse[r], ref.lse, tol * std::max(1.f, std::abs(ref.lse))) << what << " head " << r;
  }
}

// ---- split into random chunks + LSE merge == reference ----------------------------------------

template <typename T>
void check_random_chunks(int d) {
  const int64_t n = sanitizer_build() ? 700 : 3000;
  const int g = 4;
  const Head<T> h = make_head<T>(n, d, g, 100 + d);
  const float scale = cpu::default_scale(d);
  std::mt19937_64 rng(42 + d);
  for (int parts : {1, 2, 7, 100}) {
    // parts - 1 random cut points (repeats allowed: some chunks are empty).
    std::vector<int64_t> cuts = {0, n};
    for (int c = 1; c < parts; ++c) cuts.push_back(static_cast<int64_t>(rng() % (n + 1)));
    std::sort(cuts.begin(), cuts.end());
    const int chunks = static_cast<int>(cuts.size()) - 1;
    // Partial states (g, chunks, d) as the merge wants them.
    std::vector<float> po(static_cast<size_t>(g) * chunks * d), pl(static_cast<size_t>(g) * chunks);
    std::vector<float> o(g * d), lse(g);
    for (int c = 0; c < chunks; ++c) {
      cpu::attend_range<T>(h.q.view(), h.K.view(), h.V.view(), cuts[c], cuts[c + 1], scale,
                           MatrixView<float>(o.data(), g, d), lse.data());
      for (int r = 0; r < g; ++r) {
        std::copy(o.begin() + r * d, o.begin() + (r + 1) * d, po.begin() + (r * chunks + c) * d);
        pl[r * chunks + c] = lse[r];
      }
    }
    std::vector<float> merged(g * d), merged_lse(g);
    for (int r = 0; r < g; ++r) {
      merged_lse[r] = merge_states_n(po.data() + r * chunks * d, pl.data() + r * chunks, chunks, d,
                                     merged.data() + r * d);
    }
    expect_matches_reference(h, merged.data(), merged_lse.data(), scale, nullptr, 0, 1e-5,
                             "parts " + std::to_string(parts));
    // attend_full with the same number of (equal) chunks gives the same answer.
    const int64_t chunk = (n + parts - 1) / parts;
    cpu::attend_full<T>(h.q.view(), h.K.view(), h.V.view(), scale,
                        MatrixView<float>(o.data(), g, d), lse.data(), chunk);
    expect_matches_reference(h, o.data(), lse.data(), scale, nullptr, 0, 1e-5,
                             "attend_full chunk " + std::to_string(chunk));
  }
}

TEST(CpuAttention, RandomChunksMergeToReferenceFloat) {
  check_random_chunks<float>(64);
  check_random_chunks<float>(128);
}
TEST(CpuAttention, RandomChunksMergeToReferenceHalf) {
  check_random_chunks<half>(64);
  check_random_chunks<half>(128);
}
TEST(CpuAttention, RandomChunksMergeToReferenceBf16) {
  check_random_chunks<bfloat16>(64);
  check_random_chunks<bfloat16>(128);
}

TEST(CpuAttention, FullAttentionLongContextDefaultChunk) {
  const int64_t n = sanitizer_build() ? 5000 : 40000;  // several default chunks
  const int d = 128, g = 4;
  const Head<half> h = make_head<half>(n, d, g, 7);
  std::vector<float> o(g * d), lse(g);
  const float scale = cpu::default_scale(d);
  cpu::attend_full<half>(h.q.view(), h.K.view(), h.V.view(), scale,
                         MatrixView<float>(o.data(), g, d), lse.data());
  expect_matches_reference(h, o.data(), lse.data(), scale, nullptr, 0, 1e-5, "default chunk");
}

TEST(CpuAttention, PeakedLogitsStayAccurate) {
  // Large logits (scale 1, |q.k| up to ~50): the running max must keep exp() in range.
  const int64_t n = 2000;
  const int d = 64, g = 2;
  Head<float> h = make_head<float>(n, d, g, 9);
  std::vector<float> o(g * d), lse(g);
  cpu::attend_full<float>(h.q.view(), h.K.view(), h.V.view(), 1.f,
                          MatrixView<float>(o.data(), g, d), lse.data(), 300);
  expect_matches_reference(h, o.data(), lse.data(), 1.f, nullptr, 0, 1e-5, "scale 1");
}

TEST(CpuAttention, FullIsIndependentOfThreadCount) {
  const int64_t n = sanitizer_build() ? 6000 : 30000;
  const int d = 128, g = 4;
  const Head<half> h = make_head<half>(n, d, g, 11);
  std::vector<float> o1(g * d), l1(g), o2(g * d), l2(g);
  const int saved = omp_get_max_threads();
  omp_set_num_threads(1);
  cpu::attend_full<half>(h.q.view(), h.K.view(), h.V.view(), 0.1f,
                         MatrixView<float>(o1.data(), g, d), l1.data(), 1000);
  omp_set_num_threads(std::max(2, saved));
  cpu::attend_full<half>(h.q.view(), h.K.view(), h.V.view(), 0.1f,
                         MatrixView<float>(o2.data(), g, d), l2.data(), 1000);
  omp_set_num_threads(saved);
  EXPECT_EQ(o1, o2);
  EXPECT_EQ(l1, l2);
}

// ---- id lists ----------------------------------------------------------------------------------

template <typename T>
void check_ids(int d) {
  const int64_t n = 1500;
  const int g = 4;
  const Head<T> h = make_head<T>(n, d, g, 300 + d);
  std::mt19937_64 rng(5);
  // 400 random ids with duplicates (counted twice), in random order.
  std::vector<int32_t> ids(400);
  for (auto& id : ids) id = static_cast<int32_t>(rng() % n);
  ids[1] = ids[0];
  ids[2] = ids[0];
  std::vector<float> o(g * d), lse(g);
  const float scale = cpu::default_scale(d);
  cpu::attend_ids<T>(h.q.view(), h.K.view(), h.V.view(), ids.data(), ids.size(), scale,
                     MatrixView<float>(o.data(), g, d), lse.data());
  expect_matches_reference(h, o.data(), lse.data(), scale, ids.data(), ids.size(), 1e-5, "ids");
}

TEST(CpuAttention, IdsMatchReference) {
  check_ids<float>(64);
  check_ids<half>(128);
  check_ids<bfloat16>(128);
}

TEST(CpuAttention, IdsOfARangeEqualTheRange) {
  const int64_t n = 1000;
  const int d = 128, g = 4;
  const Head<half> h = make_head<half>(n, d, g, 13);
  std::vector<int32_t> ids;
  for (int32_t i = 100; i < 700; ++i) ids.push_back(i);
  std::vector<float> o1(g * d), l1(g), o2(g * d), l2(g);
  cpu::attend_range<half>(h.q.view(), h.K.view(), h.V.view(), 100, 700, 0.09f,
                          MatrixView<float>(o1.data(), g, d), l1.data());
  cpu::attend_ids<half>(h.q.view(), h.K.view(), h.V.view(), ids.data(), ids.size(), 0.09f,
                        MatrixView<float>(o2.data(), g, d), l2.data());
  EXPECT_EQ(o1, o2);  // same rows in the same order: the same arithmetic
  EXPECT_EQ(l1, l2);
}

// ---- GQA groups, strided views, empty inputs ---------------------------------------------------

TEST(CpuAttention, GroupEqualsPerHead) {
  const int64_t n = 777;
  const int d = 128;
  for (int g : {1, 3, 4, 6, 8}) {
    const Head<bfloat16> h = make_head<bfloat16>(n, d, g, 17 + g);
    std::vector<float> o(g * d), lse(g);
    cpu::attend_range<bfloat16>(h.q.view(), h.K.view(), h.V.view(), 10, n, 0.1f,
                                MatrixView<float>(o.data(), g, d), lse.data());
    for (int r = 0; r < g; ++r) {
      std::vector<float> o1(d);
      float l1;
      cpu::attend_range<bfloat16>(ConstMatrixView<float>(h.q.row(r), 1, d), h.K.view(), h.V.view(),
                                  10, n, 0.1f, MatrixView<float>(o1.data(), 1, d), &l1);
      EXPECT_LE(rel_error(o.data() + r * d, o1.data(), d), 1e-6) << "g " << g << " head " << r;
      EXPECT_NEAR(lse[r], l1, 1e-6 * std::max(1.f, std::abs(l1))) << "g " << g << " head " << r;
    }
  }
}

TEST(CpuAttention, StridedViews) {
  // q, K, V and o with leading dimensions larger than d (rows of a bigger (n, h, d) tensor).
  const int64_t n = 500;
  const int d = 64, g = 2, ld = 3 * d;
  const Matrix<float> Kw = random_matrix(n, ld, 1), Vw = random_matrix(n, ld, 2);
  const Matrix<float> qw = random_matrix(g, ld, 3);
  const ConstMatrixView<float> K(Kw.data() + d, n, d, ld), V(Vw.data() + 2 * d, n, d, ld);
  const ConstMatrixView<float> q(qw.data() + d, g, d, ld);
  std::vector<float> ow(g * ld, 7.f), lse(g);
  cpu::attend_full<float>(q, K, V, 0.125f, MatrixView<float>(ow.data(), g, d, ld), lse.data(), 128);
  for (int r = 0; r < g; ++r) {
    const AttentionState ref = reference_attention<float>(q.row(r), K, V, 0.125f);
    EXPECT_LE(rel_error(ow.data() + r * ld, ref.o.data(), d), 1e-5);
    EXPECT_NEAR(lse[r], ref.lse, 1e-5 * std::abs(ref.lse));
    EXPECT_EQ(ow[r * ld + d], 7.f);  // nothing written past the row
  }
}

TEST(CpuAttention, EmptyRangeAndListGiveEmptyState) {
  const int d = 64, g = 3;
  const Head<half> h = make_head<half>(50, d, g, 19);
  std::vector<float> o(g * d, 5.f), lse(g, 5.f);
  cpu::attend_range<half>(h.q.view(), h.K.view(), h.V.view(), 20, 20, 0.1f,
                          MatrixView<float>(o.data(), g, d), lse.data());
  for (float x : o) EXPECT_EQ(x, 0.f);
  for (float l : lse) EXPECT_EQ(l, -std::numeric_limits<float>::infinity());
  std::fill(o.begin(), o.end(), 5.f);
  std::fill(lse.begin(), lse.end(), 5.f);
  cpu::attend_ids<half>(h.q.view(), h.K.view(), h.V.view(), nullptr, 0, 0.1f,
                        MatrixView<float>(o.data(), g, d), lse.data());
  for (float x : o) EXPECT_EQ(x, 0.f);
  for (float l : lse) EXPECT_EQ(l, -std::numeric_limits<float>::infinity());
  // Zero-token context through attend_full.
  const Matrix<half> K0(0, d), V0(0, d);
  std::fill(o.begin(), o.end(), 5.f);
  cpu::attend_full<half>(h.q.view(), K0.view(), V0.view(), 0.1f, MatrixView<float>(o.data(), g, d),
                         lse.data());
  for (float x : o) EXPECT_EQ(x, 0.f);
  for (float l : lse) EXPECT_EQ(l, -std::numeric_limits<float>::infinity());
}

TEST(CpuAttention, DotScanMatchesReferenceScores) {
  const int64_t n = 300;
  for (int d : {1, 7, 64, 100, 128}) {
    const Head<half> h = make_head<half>(n, d, 5, 23 + d);
    std::vector<float> s(5 * 200);
    cpu::dot_scan<half>(h.q.view(), h.K.view(), 50, 250, s.data());
    for (int r = 0; r < 5; ++r) {
      const std::vector<double> ref = reference_scores(h.q.row(r), h.K);
      for (int i = 0; i < 200; ++i) {
        EXPECT_NEAR(s[r * 200 + i], ref[50 + i], 1e-5 * std::sqrt(double(d)) * 4)
            << "d " << d << " head " << r << " row " << i;
      }
    }
  }
}

// ---- bad input ---------------------------------------------------------------------------------

#define EXPECT_ERROR_NAMING(stmt, name)                                           \
  do {                                                                            \
    try {                                                                         \
      stmt;                                                                       \
      ADD_FAILURE() << "no retrokv::Error from: " #stmt;                          \
    } catch (const Error& e) {                                                    \
      EXPECT_NE(std::string(e.what()).find(name), std::string::npos) << e.what(); \
    }                                                                             \
  } while (0)

TEST(CpuAttention, BadInputThrowsNamingTheArgument) {
  const int d = 64, g = 2;
  const Head<float> h = make_head<float>(100, d, g, 29);
  const Matrix<float> K_wide = random_matrix(100, d + 1, 1), V_short = random_matrix(99, d, 2);
  std::vector<float> o(g * d), lse(g);
  const MatrixView<float> ov(o.data(), g, d);
  const auto q = h.q.view();
  const auto K = h.K.view();
  const auto V = h.V.view();
  EXPECT_ERROR_NAMING(cpu::attend_range<float>(q, K_wide.view(), V, 0, 10, 0.1f, ov, lse.data()),
                      "K:");
  EXPECT_ERROR_NAMING(cpu::attend_range<float>(q, K, V_short.view(), 0, 10, 0.1f, ov, lse.data()),
                      "V:");
  EXPECT_ERROR_NAMING(
      cpu::attend_range<float>(q, K, V, 0, 10, 0.1f, MatrixView<float>(o.data(), 1, d), lse.data()),
      "o:");
  EXPECT_ERROR_NAMING(cpu::attend_range<float>(q, K, V, 0, 10, 0.1f, ov, nullptr), "lse:");
  EXPECT_ERROR_NAMING(cpu::attend_range<float>(q, K, V, 5, 101, 0.1f, ov, lse.data()), "end");
  EXPECT_ERROR_NAMING(cpu::attend_range<float>(q, K, V, 6, 5, 0.1f, ov, lse.data()), "begin");
  EXPECT_ERROR_NAMING(cpu::attend_range<float>(q, K, V, -1, 5, 0.1f, ov, lse.data()), "begin");
  EXPECT_ERROR_NAMING(cpu::attend_range<float>(q, K, V, 0, 5, NAN, ov, lse.data()), "scale:");
  EXPECT_ERROR_NAMING(cpu::attend_full<float>(q, K, V, 0.1f, ov, lse.data(), -3), "chunk:");
  const int32_t bad_ids[] = {3, 100};
  EXPECT_ERROR_NAMING(cpu::attend_ids<float>(q, K, V, bad_ids, 2, 0.1f, ov, lse.data()), "ids:");
  const int32_t neg_ids[] = {-1};
  EXPECT_ERROR_NAMING(cpu::attend_ids<float>(q, K, V, neg_ids, 1, 0.1f, ov, lse.data()), "ids:");
  EXPECT_ERROR_NAMING(cpu::attend_ids<float>(q, K, V, nullptr, 3, 0.1f, ov, lse.data()), "ids:");
  EXPECT_ERROR_NAMING(cpu::attend_ids<float>(q, K, V, bad_ids, -1, 0.1f, ov, lse.data()), "n_ids:");
  for (float bad : {NAN, INFINITY, -INFINITY}) {
    Matrix<float> qb = random_matrix(g, d, 3);
    qb(1, 7) = bad;
    EXPECT_ERROR_NAMING(cpu::attend_range<float>(qb.view(), K, V, 0, 10, 0.1f, ov, lse.data()),
                        "q:");
    EXPECT_ERROR_NAMING(cpu::attend_full<float>(qb.view(), K, V, 0.1f, ov, lse.data()), "q:");
    EXPECT_ERROR_NAMING(cpu::attend_ids<float>(qb.view(), K, V, bad_ids, 1, 0.1f, ov, lse.data()),
                        "q:");
    std::vector<float> s(2 * 10);
    EXPECT_ERROR_NAMING(cpu::dot_scan<float>(qb.view(), K, 0, 10, s.data()), "q:");
  }
  std::vector<float> s(2 * 10);
  EXPECT_ERROR_NAMING(cpu::dot_scan<float>(q, K_wide.view(), 0, 10, s.data()), "K:");
  EXPECT_ERROR_NAMING(cpu::dot_scan<float>(q, K, 0, 101, s.data()), "end");
  EXPECT_ERROR_NAMING(cpu::default_scale(0), "d:");
}

// ---- every SIMD path against scalar ------------------------------------------------------------

TEST(CpuSimd, ReportsTheDetectedLevel) {
  // Informational: which paths the other tests cover on this machine.
  std::printf("SIMD levels tested here: up to %s\n",
              cpu::simd_level_name(cpu::supported_simd_level()));
  EXPECT_LE(static_cast<int>(cpu::simd_level()), static_cast<int>(cpu::supported_simd_level()));
}

template <typename T>
void check_paths_against_scalar(int d, int g) {
  const int64_t n = sanitizer_build() ? 400 : 1300;
  const Head<T> h = make_head<T>(n, d, g, 1000 + d * 10 + g);
  std::vector<int32_t> ids;
  for (int64_t i = 0; i < n; i += 3) ids.push_back(static_cast<int32_t>((i * 7) % n));
  const float scale = cpu::default_scale(d);
  std::vector<float> o_ref(g * d), l_ref(g), oi_ref(g * d), li_ref(g), s_ref(g * n);
  {
    SimdLevelGuard guard(SimdLevel::kScalar);
    cpu::attend_full<T>(h.q.view(), h.K.view(), h.V.view(), scale,
                        MatrixView<float>(o_ref.data(), g, d), l_ref.data(), 500);
    cpu::attend_ids<T>(h.q.view(), h.K.view(), h.V.view(), ids.data(), ids.size(), scale,
                       MatrixView<float>(oi_ref.data(), g, d), li_ref.data());
    cpu::dot_scan<T>(h.q.view(), h.K.view(), 0, n, s_ref.data());
  }
  for (SimdLevel level : available_levels()) {
    SimdLevelGuard guard(level);
    const std::string what = std::string(cpu::simd_level_name(level)) + " d " + std::to_string(d) +
                             " g " + std::to_string(g);
    std::vector<float> o(g * d), l(g), s(g * n);
    cpu::attend_full<T>(h.q.view(), h.K.view(), h.V.view(), scale,
                        MatrixView<float>(o.data(), g, d), l.data(), 500);
    for (int r = 0; r < g; ++r) {
      EXPECT_LE(rel_error(o.data() + r * d, o_ref.data() + r * d, d), 1e-5) << what;
      EXPECT_NEAR(l[r], l_ref[r], 1e-5 * std::max(1.f, std::abs(l_ref[r]))) << what;
    }
    cpu::attend_ids<T>(h.q.view(), h.K.view(), h.V.view(), ids.data(), ids.size(), scale,
                       MatrixView<float>(o.data(), g, d), l.data());
    for (int r = 0; r < g; ++r) {
      EXPECT_LE(rel_error(o.data() + r * d, oi_ref.data() + r * d, d), 1e-5) << what;
      EXPECT_NEAR(l[r], li_ref[r], 1e-5 * std::max(1.f, std::abs(li_ref[r]))) << what;
    }
    cpu::dot_scan<T>(h.q.view(), h.K.view(), 0, n, s.data());
    double worst = 0;
    for (int64_t i = 0; i < g * n; ++i) worst = std::max(worst, double(std::abs(s[i] - s_ref[i])));
    EXPECT_LE(worst, 1e-5 * d) << what;
  }
}

TEST(CpuSimd, EveryPathMatchesScalar) {
  for (int d : {64, 128, 100, 24, 5}) {  // 100, 24, 5: vector tails
    for (int g : {1, 3, 4, 6}) {
      check_paths_against_scalar<float>(d, g);
      check_paths_against_scalar<half>(d, g);
      check_paths_against_scalar<bfloat16>(d, g);
    }
  }
}

TEST(CpuSimd, KernelsMatchDoublePerPath) {
  std::mt19937_64 rng(31);
  std::normal_distribution<float> normal;
  for (SimdLevel level : available_levels()) {
    SimdLevelGuard guard(level);
    const cpu::MathKernels mk = cpu::math_kernels();
    // exp_shift_sum: relative error at float rounding level; far below the shift gives exactly 0.
    std::vector<float> x(77);
    for (size_t i = 0; i < x.size(); ++i) x[i] = -0.9f * i - normal(rng) * 0.1f;
    x[5] = -200.f;
    std::vector<float> y = x;
    const float sum = mk.exp_shift_sum(y.data(), static_cast<int>(y.size()), 1.5f);
    double ref_sum = 0;
    for (size_t i = 0; i < x.size(); ++i) {
      // The kernel sees the float difference; the check is of exp itself.
      const double ref = std::exp(double(x[i] - 1.5f));
      ref_sum += ref;
      EXPECT_NEAR(y[i], ref, 3e-7 * ref + 1e-38) << cpu::simd_level_name(level) << " i " << i;
    }
    EXPECT_EQ(y[5], 0.f);
    EXPECT_NEAR(sum, ref_sum, 1e-6 * ref_sum);
    // sum (bandwidth probe) and single dot / axpy on every tail length.
    std::vector<float> big(1000);
    double big_ref = 0;
    for (auto& v : big) big_ref += v = normal(rng);
    EXPECT_NEAR(mk.sum(big.data(), big.size()), big_ref, 1e-4);
    for (int d = 1; d <= 40; ++d) {
      std::vector<float> q(d), acc(d, 1.f);
      std::vector<half> k(d);
      double dot_ref = 0;
      for (int j = 0; j < d; ++j) {
        q[j] = normal(rng);
        k[j] = half(normal(rng));
        dot_ref += double(q[j]) * float(k[j]);
      }
      EXPECT_NEAR(cpu::dot(q.data(), k.data(), d), dot_ref, 1e-5 * d);
      cpu::axpy(0.5f, k.data(), d, acc.data());
      for (int j = 0; j < d; ++j) EXPECT_FLOAT_EQ(acc[j], 1.f + 0.5f * float(k[j]));
    }
  }
}

TEST(CpuSimd, SetLevelRejectsUnsupported) {
  if (cpu::supported_simd_level() == SimdLevel::kAvx512) {
    GTEST_SKIP() << "every level is supported here";
  }
  EXPECT_ERROR_NAMING(cpu::set_simd_level(SimdLevel::kAvx512), "level:");
}

}  // namespace
}  // namespace retrokv
