// Top-k selection: equals a full sort under the deterministic order (score desc, id asc), ties
// included, for every k around the buffer's prune points; the collector and the list merge.
#include <gtest/gtest.h>

#include <algorithm>
#include <cmath>
#include <map>
#include <random>
#include <string>
#include <vector>

#include "retrokv/core/error.h"
#include "retrokv/core/parallel.h"
#include "retrokv/core/progress.h"
#include "retrokv/core/topk.h"

namespace retrokv {
namespace {

std::vector<ScoredId> sorted_reference(const std::vector<float>& s, int k, int32_t offset) {
  std::vector<ScoredId> all;
  for (size_t i = 0; i < s.size(); ++i) all.push_back({s[i], static_cast<int32_t>(i) + offset});
  std::stable_sort(all.begin(), all.end(),
                   [](const ScoredId& a, const ScoredId& b) { return a.score > b.score; });
  all.resize(k);  // stable sort keeps equal scores in id order: the documented tie-break
  return all;
}

std::vector<float> random_scores(int64_t n, int levels, uint64_t seed) {
  std::mt19937_64 rng(seed);
  std::vector<float> s(n);
  // Few distinct levels -> many ties; levels == 0 -> continuous values.
  for (auto& x : s) {
    x = levels ? static_cast<float>(rng() % levels) - levels / 2
               : std::normal_distribution<float>()(rng);
  }
  return s;
}

TEST(TopK, BetterIsScoreThenSmallerId) {
  EXPECT_TRUE(better({2.f, 9}, {1.f, 0}));
  EXPECT_TRUE(better({1.f, 3}, {1.f, 4}));
  EXPECT_FALSE(better({1.f, 4}, {1.f, 4}));  // strict
  EXPECT_FALSE(better({1.f, 4}, {1.f, 3}));
  EXPECT_TRUE(better({-INFINITY, 0}, {-INFINITY, 1}));
}

TEST(TopK, EqualsFullSortWithTies) {
  for (int64_t n : {1, 7, 100, 1000, 20000}) {
    for (int levels : {0, 3, 50}) {
      const std::vector<float> s = random_scores(n, levels, 17 * n + levels);
      std::vector<int> ks = {1, static_cast<int>(std::min<int64_t>(2, n)), static_cast<int>(n)};
      if (n >= 16) ks.insert(ks.end(), {static_cast<int>(n / 8) - 1, static_cast<int>(n / 8), 10});
      for (int k : ks) {
        for (int32_t offset : {0, 1000}) {
          const auto got = top_k(s.data(), n, k, offset);
          EXPECT_EQ(got, sorted_reference(s, k, offset))
              << "n=" << n << " levels=" << levels << " k=" << k;
        }
      }
    }
  }
}

TEST(TopK, SortedAndReverseSortedStreams) {
  // Increasing scores make every candidate pass the threshold (a prune every k pushes);
  // decreasing scores make none pass after the first k; constant scores are all ties.
  const int64_t n = 5000;
  std::vector<float> up(n), down(n), flat(n, 1.f);
  for (int64_t i = 0; i < n; ++i) {
    up[i] = static_cast<float>(i);
    down[i] = static_cast<float>(n - i);
  }
  for (int k : {1, 3, 64, 2499, 2500, 4999, 5000}) {
    EXPECT_EQ(top_k(up.data(), n, k), sorted_reference(up, k, 0)) << k;
    EXPECT_EQ(top_k(down.data(), n, k), sorted_reference(down, k, 0)) << k;
    EXPECT_EQ(top_k(flat.data(), n, k), sorted_reference(flat, k, 0)) << k;
  }
}

TEST(TopK, ZeroKAndInfinities) {
  const std::vector<float> s = {INFINITY, -INFINITY, 0.f, INFINITY, -1.f};
  EXPECT_TRUE(top_k(s.data(), 5, 0).empty());
  EXPECT_TRUE(top_k(nullptr, 0, 0).empty());
  const auto got = top_k(s.data(), 5, 5);
  const std::vector<ScoredId> want = {
      {INFINITY, 0}, {INFINITY, 3}, {0.f, 2}, {-1.f, 4}, {-INFINITY, 1}};
  EXPECT_EQ(got, want);
}

TEST(TopK, RejectsBadInputNamingTheArgument) {
  const std::vector<float> s = {1.f, NAN, 2.f};
  try {
    top_k(s.data(), 3, 1);
    FAIL() << "NaN accepted";
  } catch (const Error& e) {
    EXPECT_NE(std::string(e.what()).find("scores"), std::string::npos) << e.what();
    EXPECT_NE(std::string(e.what()).find("index 1"), std::string::npos) << e.what();
  }
  const std::vector<float> ok = {1.f, 2.f};
  try {
    top_k(ok.data(), 2, 3);
    FAIL() << "k > n accepted";
  } catch (const Error& e) {
    EXPECT_NE(std::string(e.what()).find("k:"), std::string::npos) << e.what();
    EXPECT_NE(std::string(e.what()).find("got 3"), std::string::npos) << e.what();
  }
  EXPECT_THROW(top_k(ok.data(), 2, -1), Error);
  EXPECT_THROW(top_k(ok.data(), -2, 0), Error);
  EXPECT_THROW(top_k(nullptr, 2, 1), Error);
  EXPECT_THROW(TopKCollector(-1), Error);
  TopKCollector c(2);
  EXPECT_THROW(c.push(NAN, 0), Error);
  EXPECT_EQ(c.size(), 0);  // a rejected push keeps nothing
}

TEST(TopKCollector, ThresholdAndSortedMatchReferenceOnShuffledStream) {
  std::mt19937_64 rng(5);
  const int n = 5000, k = 37;
  const std::vector<float> s = random_scores(n, 40, 3);
  std::vector<int32_t> order(n);
  for (int i = 0; i < n; ++i) order[i] = i;
  std::shuffle(order.begin(), order.end(), rng);

  TopKCollector c(k);
  EXPECT_EQ(c.threshold(), -INFINITY);
  EXPECT_FALSE(c.full());
  for (int i = 0; i < n; ++i) {
    c.push(s[order[i]], order[i]);
    if (i + 1 < k) {
      EXPECT_EQ(c.threshold(), -INFINITY);
    }
  }
  EXPECT_TRUE(c.full());
  EXPECT_EQ(c.size(), k);
  const auto want = sorted_reference(s, k, 0);
  EXPECT_EQ(c.sorted(), want);
  EXPECT_EQ(c.threshold(), want.back().score);
  c.clear();
  EXPECT_EQ(c.size(), 0);
  EXPECT_EQ(c.threshold(), -INFINITY);

  TopKCollector none(0);
  none.push(1.f, 1);
  EXPECT_EQ(none.size(), 0);
  EXPECT_TRUE(none.full());
  EXPECT_EQ(none.threshold(), INFINITY);
}

TEST(MergeTopK, DedupsKeepingBestScoreAndSelectsBestK) {
  std::mt19937_64 rng(11);
  std::vector<std::vector<ScoredId>> lists(5);
  std::map<int32_t, float> best;
  for (auto& l : lists) {
    for (int i = 0; i < 60; ++i) {
      const int32_t id = static_cast<int32_t>(rng() % 100);  // many duplicate ids across lists
      const float score = static_cast<float>(rng() % 20);
      l.push_back({score, id});
      auto it = best.find(id);
      if (it == best.end() || score > it->second) best[id] = score;
    }
    std::sort(l.begin(), l.end(), better);
  }
  std::vector<ScoredId> uniq;
  for (auto [id, score] : best) uniq.push_back({score, id});
  std::sort(uniq.begin(), uniq.end(), better);
  for (int k : {0, 1, 10, static_cast<int>(uniq.size()), 1000}) {
    std::vector<ScoredId> want(uniq.begin(), uniq.begin() + std::min<size_t>(k, uniq.size()));
    EXPECT_EQ(merge_top_k(lists, k), want) << "k=" << k;
  }
  // Order of the lists does not matter.
  std::reverse(lists.begin(), lists.end());
  EXPECT_EQ(merge_top_k(lists, 10), std::vector<ScoredId>(uniq.begin(), uniq.begin() + 10));
  EXPECT_TRUE(merge_top_k({}, 5).empty());
  EXPECT_THROW(merge_top_k(lists, -1), Error);
  EXPECT_EQ(ids_of({{1.f, 4}, {0.f, 2}}), (std::vector<int32_t>{4, 2}));
}

// The pattern scans use: per-chunk collectors in parallel, merged in chunk order. The split
// depends only on (n, grain), so the result equals the serial top-k for any thread count.
TEST(ParallelTopK, PerChunkCollectorsMergeToSerialResult) {
  const int64_t n = 100000;
  const int k = 50;
  const std::vector<float> s = random_scores(n, 1000, 77);  // ties across chunks
  const auto want = top_k(s.data(), n, k);
  for (int64_t grain : {1000, 4096, 100000}) {
    std::vector<std::vector<ScoredId>> parts(num_chunks(n, grain));
    ProgressBar bar("test", n);
    parallel_for_chunks(n, grain, [&](int64_t c, int64_t b, int64_t e) {
      parts[c] = top_k(s.data() + b, e - b, static_cast<int>(std::min<int64_t>(k, e - b)),
                       static_cast<int32_t>(b));
      bar.advance(e - b);
    });
    bar.finish();
    EXPECT_EQ(bar.done(), n);
    EXPECT_EQ(merge_top_k(parts, k), want) << "grain " << grain;
  }
  EXPECT_EQ(num_chunks(0, 5), 0);
  EXPECT_EQ(num_chunks(10, 5), 2);
  EXPECT_EQ(num_chunks(11, 5), 3);
  EXPECT_GE(num_threads(), 1);
}

}  // namespace
}  // namespace retrokv
