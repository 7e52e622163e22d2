// Tests for QuestIndex (the Quest-style page-selection baseline of issue 5): page bounds are true
// upper bounds, the page ranking matches a brute-force ranking, search returns the best tokens of
// the chosen pages, and bad input throws naming the argument.
#include <gtest/gtest.h>

#include <algorithm>
#include <cmath>
#include <set>

#include "common/random_data.h"
#include "retrokv/index/quest_index.h"

namespace retrokv {
namespace {

TEST(QuestIndex, BoundsAreUpperBoundsAndTight) {
  const Matrix<float> k = random_matrix(1000, 24, 1);  // 62 full pages + one of 8 tokens
  QuestIndex idx(k.view());
  ASSERT_EQ(idx.n_pages(), 63);
  EXPECT_EQ(idx.page_end(62) - idx.page_begin(62), 8);
  const Matrix<float> q = random_matrix(10, 24, 2);
  for (int64_t h = 0; h < q.rows(); ++h) {
    for (int64_t p = 0; p < idx.n_pages(); ++p) {
      double best = -1e30;
      for (int64_t i = idx.page_begin(p); i < idx.page_end(p); ++i) {
        double s = 0;
        for (int t = 0; t < 24; ++t) s += double(q(h, t)) * k(i, t);
        best = std::max(best, s);
      }
      EXPECT_GE(idx.page_bound(q.row(h), p), best - 1e-4);
    }
  }
  // A page of one repeated key has a tight bound: exactly q.k.
  Matrix<float> same(16, 4);
  for (int64_t i = 0; i < 64; ++i) same.data()[i] = float(i % 4) - 1.5f;
  QuestIndex one(same.view());
  const float q1[4] = {0.5f, -2.f, 1.f, 3.f};
  EXPECT_FLOAT_EQ(one.page_bound(q1, 0), 0.5f * -1.5f + -2.f * -0.5f + 1.f * 0.5f + 3.f * 1.5f);
}

TEST(QuestIndex, TopPagesMatchBruteForceRanking) {
  const Matrix<float> k = random_matrix(2048, 16, 3);
  QuestIndex idx(k.view());
  const Matrix<float> q = random_matrix(3, 16, 4);  // a GQA group of 3 heads
  const auto pages = idx.top_pages(q.view(), 10);
  ASSERT_EQ(pages.size(), 10u);
  std::vector<std::pair<float, int>> all;
  for (int64_t p = 0; p < idx.n_pages(); ++p) {
    float s = -INFINITY;
    for (int h = 0; h < 3; ++h) s = std::max(s, idx.page_bound(q.row(h), p));
    all.push_back({-s, static_cast<int>(p)});
  }
  std::sort(all.begin(), all.end());
  for (int i = 0; i < 10; ++i) EXPECT_EQ(pages[i], all[i].second);
}

TEST(QuestIndex, SearchReturnsBestTokensOfChosenPages) {
  const Matrix<float> k = random_matrix(1024, 16, 5);
  QuestIndex idx(k.view(), QuestParams{8});
  const Matrix<float> q = random_matrix(1, 16, 6);
  SearchParams sp;
  sp.k = 40;  // 5 pages of 8
  const SearchResult r = idx.search(q.view(), sp);
  ASSERT_EQ(r.ids.size(), 40u);
  const auto pages = idx.top_pages(q.view(), 5);
  std::set<int32_t> allowed;
  for (int32_t p : pages)
    for (int64_t i = idx.page_begin(p); i < idx.page_end(p); ++i) allowed.insert(i);
  EXPECT_EQ(std::set<int32_t>(r.ids.begin(), r.ids.end()), allowed);
  EXPECT_TRUE(std::is_sorted(r.scores.rbegin(), r.scores.rend()));
  // Quest relies on locality (neighbouring tokens have similar keys). On keys that drift slowly
  // (a random walk), the best token by q.k is in the top 8 of 128 pages for nearly every query.
  Matrix<float> walk = random_matrix(1024, 16, 10, 0.3f);
  for (int64_t t = 1; t < 1024; ++t)
    for (int j = 0; j < 16; ++j) walk(t, j) += walk(t - 1, j);
  const Matrix<float>& k2 = walk;
  QuestIndex idx2(k2.view(), QuestParams{8});
  const Matrix<float> qs = random_matrix(10, 16, 7);
  int found = 0;
  for (int i = 0; i < 10; ++i) {
    int64_t best = 0;
    double bs = -1e30;
    for (int64_t t = 0; t < 1024; ++t) {
      double s = 0;
      for (int j = 0; j < 16; ++j) s += double(qs(i, j)) * k2(t, j);
      if (s > bs) bs = s, best = t;
    }
    const auto top = idx2.top_pages(qs.view().slice_rows(i, 1), 8);
    found += std::count(top.begin(), top.end(), static_cast<int32_t>(best / 8)) > 0;
  }
  EXPECT_GE(found, 9);
}

TEST(QuestIndex, BadInputThrowsNamingArgument) {
  const Matrix<float> k = random_matrix(64, 8, 8);
  EXPECT_THROW(QuestIndex(k.view(), QuestParams{0}), Error);
  QuestIndex idx(k.view());
  Matrix<float> q = random_matrix(1, 4, 9);
  try {
    idx.top_pages(q.view(), 2);
    FAIL();
  } catch (const Error& e) {
    EXPECT_NE(std::string(e.what()).find("q:"), std::string::npos) << e.what();
  }
  Matrix<float> q8 = random_matrix(1, 8, 9);
  q8(0, 1) = std::nanf("");
  EXPECT_THROW(idx.top_pages(q8.view(), 2), Error);
  q8(0, 1) = 0.f;
  EXPECT_THROW(idx.top_pages(q8.view(), -1), Error);
}

}  // namespace
}  // namespace retrokv
