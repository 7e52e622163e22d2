// The double-precision reference attention (the oracle of every other test): hand-computable
// cases, empty subsets, id lists vs all tokens, LSE merge consistency, half/bf16 inputs.
#include <gtest/gtest.h>

#include <algorithm>
#include <cmath>
#include <functional>
#include <numeric>
#include <random>
#include <string>
#include <vector>

#include "common/random_data.h"
#include "common/test_util.h"
#include "retrokv/core/attention_state.h"
#include "retrokv/core/error.h"
#include "retrokv/core/reference_attention.h"

namespace retrokv {
namespace {

TEST(ReferenceAttention, TwoTokensByHand) {
  // q = (1, 0), keys (1, 0) and (0, 0): logits 1 and 0 with scale 1.
  const float q[2] = {1.f, 0.f};
  const float k[4] = {1.f, 0.f, 0.f, 0.f};
  const float v[4] = {1.f, 2.f, 3.f, 4.f};
  ConstMatrixView<float> K(k, 2, 2), V(v, 2, 2);
  const ReferenceAttention r = reference_attention_double(q, K, V, 1.f);
  const double e = std::exp(1.0);
  EXPECT_NEAR(r.o[0], (e * 1 + 3) / (e + 1), 1e-15);
  EXPECT_NEAR(r.o[1], (e * 2 + 4) / (e + 1), 1e-15);
  EXPECT_NEAR(r.lse, std::log(e + 1), 1e-15);  // natural log
  const AttentionState s = reference_attention(q, K, V, 1.f);
  EXPECT_FLOAT_EQ(s.o[0], static_cast<float>((e + 3) / (e + 1)));
  EXPECT_FLOAT_EQ(s.lse, static_cast<float>(std::log(e + 1)));
  // Scale multiplies the logits: with scale 2 the logits are 2 and 0.
  const ReferenceAttention r2 = reference_attention_double(q, K, V, 2.f);
  EXPECT_NEAR(r2.lse, std::log(std::exp(2.0) + 1), 1e-14);
}

TEST(ReferenceAttention, SingleTokenAndEqualKeys) {
  const int d = 4;
  Matrix<float> K = random_matrix(5, d, 1), V = random_matrix(5, d, 2);
  const Matrix<float> q = random_matrix(1, d, 3);
  // One listed token: o is its value row, lse is its scaled logit.
  const int32_t id = 3;
  const ReferenceAttention one =
      reference_attention_double(q.data(), K.view(), V.view(), 0.5f, &id, 1);
  double logit = 0;
  for (int j = 0; j < d; ++j) logit += double(q(0, j)) * K(3, j);
  EXPECT_NEAR(one.lse, 0.5 * logit, 1e-12);
  for (int j = 0; j < d; ++j) EXPECT_DOUBLE_EQ(one.o[j], V(3, j));
  // All keys equal: o is the mean of the values, lse = logit + log(n).
  for (int i = 1; i < 5; ++i) std::copy(K.row(0), K.row(0) + d, K.row(i));
  const ReferenceAttention eq = reference_attention_double(q.data(), K.view(), V.view(), 1.f);
  logit = 0;
  for (int j = 0; j < d; ++j) logit += double(q(0, j)) * K(0, j);
  EXPECT_NEAR(eq.lse, logit + std::log(5.0), 1e-12);
  for (int j = 0; j < d; ++j) {
    double mean = 0;
    for (int i = 0; i < 5; ++i) mean += V(i, j) / 5.0;
    EXPECT_NEAR(eq.o[j], mean, 1e-12);
  }
}

TEST(ReferenceAttention, EmptySubsetIsEmptyState) {
  const Matrix<float> K = random_matrix(6, 8, 4), V = random_matrix(6, 8, 5);
  const Matrix<float> q = random_matrix(1, 8, 6);
  const int32_t ids[1] = {0};
  const AttentionState s = reference_attention(q.data(), K, V, 0.3f, ids, 0);
  EXPECT_EQ(s.lse, -INFINITY);
  EXPECT_TRUE(s.is_empty());
  for (float x : s.o) EXPECT_EQ(x, 0.f);
  const Matrix<float> none(0, 8);
  const AttentionState z = reference_attention(q.data(), none, none, 0.3f);
  EXPECT_EQ(z.lse, -INFINITY);
  EXPECT_EQ(z.dim(), 8);
}

TEST(ReferenceAttention, IdListMatchesAllTokensAndCompactedSubset) {
  const int64_t n = 300;
  const int d = 64;
  const Matrix<float> K = random_matrix(n, d, 7), V = random_matrix(n, d, 8);
  const Matrix<float> q = random_matrix(1, d, 9);
  const float scale = 1.f / std::sqrt(static_cast<float>(d));
  std::vector<int32_t> perm(n);
  std::iota(perm.begin(), perm.end(), 0);
  std::shuffle(perm.begin(), perm.end(), std::mt19937_64(10));
  const ReferenceAttention all = reference_attention_double(q.data(), K.view(), V.view(), scale);
  const ReferenceAttention listed =
      reference_attention_double(q.data(), K.view(), V.view(), scale, perm.data(), n);
  EXPECT_NEAR(listed.lse, all.lse, 1e-12);
  for (int j = 0; j < d; ++j) EXPECT_NEAR(listed.o[j], all.o[j], 1e-12);

  // A subset by ids equals all-token attention over the compacted rows.
  const std::vector<int32_t> sub(perm.begin(), perm.begin() + 40);
  Matrix<float> Ks(40, d), Vs(40, d);
  for (int i = 0; i < 40; ++i) {
    std::copy(K.row(sub[i]), K.row(sub[i]) + d, Ks.row(i));
    std::copy(V.row(sub[i]), V.row(sub[i]) + d, Vs.row(i));
  }
  const ReferenceAttention a =
      reference_attention_double(q.data(), K.view(), V.view(), scale, sub.data(), 40);
  const ReferenceAttention b = reference_attention_double(q.data(), Ks.view(), Vs.view(), scale);
  EXPECT_EQ(a.lse, b.lse);
  for (int j = 0; j < d; ++j) EXPECT_EQ(a.o[j], b.o[j]);

  // Two disjoint halves merged with the LSE rule give the whole (float merge, 1e-6).
  const std::vector<int32_t> rest(perm.begin() + 40, perm.end());
  const AttentionState sa = reference_attention(q.data(), K, V, scale, sub.data(), 40);
  AttentionState merged = reference_attention(q.data(), K, V, scale, rest.data(), n - 40);
  merged.merge(sa);
  EXPECT_NEAR(merged.lse, all.lse, 1e-5);
  for (int j = 0; j < d; ++j) EXPECT_NEAR(merged.o[j], all.o[j], 1e-6);
}

TEST(ReferenceAttention, LargeLogitsStayFinite) {
  const Matrix<float> K = random_matrix(50, 16, 11, 30.f), V = random_matrix(50, 16, 12);
  const Matrix<float> q = random_matrix(1, 16, 13, 30.f);
  const ReferenceAttention r = reference_attention_double(q.data(), K.view(), V.view(), 10.f);
  EXPECT_TRUE(std::isfinite(r.lse));
  EXPECT_GT(r.lse, 1000.0);  // exp would overflow without the max shift
  for (double x : r.o) EXPECT_TRUE(std::isfinite(x));
}

template <typename T>
void check_narrow_type() {
  const Matrix<float> Kf = random_matrix(100, 32, 14), Vf = random_matrix(100, 32, 15);
  const Matrix<float> q = random_matrix(1, 32, 16);
  const Matrix<T> K = convert_matrix<T>(Kf), V = convert_matrix<T>(Vf);
  const Matrix<float> Kr = to_float_matrix(K), Vr = to_float_matrix(V);
  // On the same rounded values, T and float inputs give identical results.
  const AttentionState a = reference_attention(q.data(), K, V, 0.2f);
  const AttentionState b = reference_attention(q.data(), Kr, Vr, 0.2f);
  EXPECT_EQ(a.lse, b.lse);
  EXPECT_EQ(a.o, b.o);
  const std::vector<double> sa = reference_scores(q.data(), K);
  const std::vector<double> sb = reference_scores(q.data(), Kr);
  EXPECT_EQ(sa, sb);
}

TEST(ReferenceAttention, HalfAndBf16InputsEqualFloatOnRoundedValues) {
  check_narrow_type<half>();
  check_narrow_type<bfloat16>();
}

TEST(ReferenceScores, ExactInnerProducts) {
  const float q[3] = {1.f, -2.f, 0.5f};
  const float k[6] = {1.f, 1.f, 1.f, 0.f, 2.f, 4.f};
  const std::vector<double> s = reference_scores(q, ConstMatrixView<float>(k, 2, 3));
  EXPECT_EQ(s, (std::vector<double>{-0.5, -2.0}));
}

TEST(ReferenceAttention, BadInputNamesTheArgument) {
  const Matrix<float> K = random_matrix(4, 3, 1), V = random_matrix(4, 3, 2), V2(5, 3);
  float q[3] = {0.1f, 0.2f, 0.3f};
  const int32_t bad_id = 4;
  EXPECT_NE(error_of([&] { reference_attention(q, K, V, 1.f, &bad_id, 1); }).find("ids:"),
            std::string::npos);
  EXPECT_NE(error_of([&] { reference_attention(q, K, V2, 1.f); }).find("V:"), std::string::npos);
  EXPECT_NE(error_of([&] { reference_attention(q, K, V, 1.f, nullptr, 2); }).find("ids:"),
            std::string::npos);
  EXPECT_NE(error_of([&] { reference_attention(q, K, V, NAN); }).find("scale:"), std::string::npos);
  q[1] = NAN;
  EXPECT_NE(error_of([&] { reference_attention(q, K, V, 1.f); }).find("q:"), std::string::npos);
}

}  // namespace
}  // namespace retrokv
