// Tests for QuestIndex (the Quest-style page-selection baseline of issue 5): page bounds are true
// upper bounds, the page ranking matches a brute-force ranking, search returns the best tokens of
// the chosen pages, and bad input throws naming the argument.
#include <gtest/gtest.h>

#include <algorithm>
#include <cmath>
#include <numeric>
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

// The search before its speed-up (page bounds per page and head, a partial_sort of every
// page, a full sort of the candidate tokens), written out from the keys: the fast paths must
// return exactly this.
SearchResult reference_search(ConstMatrixView<float> keys, int page_size, ConstMatrixView<float> q,
                              int k) {
  const int64_t n = keys.rows, d = keys.cols, pages = (n + page_size - 1) / page_size;
  std::vector<float> score(static_cast<size_t>(pages), -INFINITY);
  for (int64_t p = 0; p < pages; ++p) {
    const int64_t end = std::min(n, (p + 1) * page_size);
    for (int64_t h = 0; h < q.rows; ++h) {
      float s = 0.f;
      for (int64_t t = 0; t < d; ++t) {
        float mn = INFINITY, mx = -INFINITY;
        for (int64_t i = p * page_size; i < end; ++i) {
          mn = std::min(mn, keys(i, t));
          mx = std::max(mx, keys(i, t));
        }
        s += std::max(q(h, t) * mn, q(h, t) * mx);
      }
      score[p] = std::max(score[p], s);
    }
  }
  std::vector<int32_t> order(static_cast<size_t>(pages));
  std::iota(order.begin(), order.end(), 0);
  const int64_t want = std::min<int64_t>((k + page_size - 1) / page_size, pages);
  std::partial_sort(order.begin(), order.begin() + want, order.end(), [&](int32_t a, int32_t b) {
    return score[a] > score[b] || (score[a] == score[b] && a < b);
  });
  std::vector<std::pair<float, int32_t>> cand;
  for (int64_t j = 0; j < want; ++j) {
    const int32_t p = order[j];
    for (int64_t i = int64_t{p} * page_size; i < std::min(n, (int64_t{p} + 1) * page_size); ++i) {
      float best = -INFINITY;
      for (int64_t h = 0; h < q.rows; ++h) {
        float s = 0.f;
        for (int64_t t = 0; t < d; ++t) s += q(h, t) * keys(i, t);
        best = std::max(best, s);
      }
      cand.push_back({best, static_cast<int32_t>(i)});
    }
  }
  std::sort(cand.begin(), cand.end(), [](const auto& a, const auto& b) {
    return a.first > b.first || (a.first == b.first && a.second < b.second);
  });
  if (static_cast<int64_t>(cand.size()) > k) cand.resize(k);
  SearchResult r;
  for (const auto& c : cand) {
    r.ids.push_back(c.second);
    r.scores.push_back(c.first);
  }
  return r;
}

TEST(QuestIndex, FastSelectionEqualsFullSortReference) {
  // Partial selection (nth_element), transposed bounds scored across pages, tokens scored 16 at a
  // time and the group's shared pass (search_heads) keep the arithmetic and the tie rule: ids
  // and scores are equal, bit for bit, to the old full-sort search. Keys with repeated rows make
  // ties in both page bounds and token scores.
  Matrix<float> k = random_matrix(1000, 64, 11);  // 62 full pages + one of 8
  for (int64_t i = 500; i < 540; ++i) std::copy(k.row(i - 40), k.row(i - 40) + 64, k.row(i));
  const QuestIndex idx(k.view(), QuestParams{16});
  const Matrix<float> q = random_matrix(3, 64, 12);
  for (int kk : {0, 1, 15, 16, 37, 240, 1000, 1200}) {
    const std::vector<SearchResult> heads = idx.search_heads(q.view(), kk);
    ASSERT_EQ(heads.size(), 3u);
    std::set<int32_t> pages_read;
    for (int h = 0; h < 3; ++h) {
      const SearchResult want = reference_search(k.view(), 16, q.view().slice_rows(h, 1), kk);
      SearchParams sp;
      sp.k = kk;
      const SearchResult one = idx.search(q.view().slice_rows(h, 1), sp);
      EXPECT_EQ(one.ids, want.ids) << "k " << kk << " head " << h;
      EXPECT_EQ(one.scores, want.scores) << "k " << kk << " head " << h;
      EXPECT_EQ(heads[h].ids, want.ids) << "k " << kk << " head " << h;
      EXPECT_EQ(heads[h].scores, want.scores) << "k " << kk << " head " << h;
      for (int32_t p : idx.top_pages(q.view().slice_rows(h, 1), (kk + 15) / 16))
        pages_read.insert(p);
    }
    // One pass over the bounds (2 keys' worth per page) plus every distinct page read.
    EXPECT_EQ(heads[0].keys_scanned,
              2 * idx.n_pages() + 16 * static_cast<int64_t>(pages_read.size()));
    SearchParams sp;
    sp.k = kk;
    const SearchResult group = idx.search(q.view(), sp);
    const SearchResult want = reference_search(k.view(), 16, q.view(), kk);
    EXPECT_EQ(group.ids, want.ids) << "k " << kk;
    EXPECT_EQ(group.scores, want.scores) << "k " << kk;
  }
  // page_bounds is page_bound for every head and page, bit for bit.
  std::vector<float> b(static_cast<size_t>(3 * idx.n_pages()));
  idx.page_bounds(q.view(), b.data());
  for (int h = 0; h < 3; ++h)
    for (int64_t p = 0; p < idx.n_pages(); ++p)
      ASSERT_EQ(b[h * idx.n_pages() + p], idx.page_bound(q.row(h), p));
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
  try {
    idx.search_heads(q8.view(), -1);
    FAIL();
  } catch (const Error& e) {
    EXPECT_NE(std::string(e.what()).find("k:"), std::string::npos) << e.what();
  }
  EXPECT_THROW(idx.search_heads(q.view(), 4), Error);  // d = 4, the index has 8
}

}  // namespace
}  // namespace retrokv
