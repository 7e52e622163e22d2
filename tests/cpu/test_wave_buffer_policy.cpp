// The wave buffer's LRU cluster cache policy (retrokv/cuda/wave_buffer_policy.h) on the CPU:
// exact hit/miss/eviction sequences, pinning of the current step's clusters, invariants on a
// random stream, and bad input.
#include <gtest/gtest.h>

#include <algorithm>
#include <random>
#include <set>
#include <string>
#include <vector>

#include "retrokv/cuda/wave_buffer_policy.h"

namespace retrokv {
namespace {

using V = std::vector<int32_t>;

TEST(WaveBufferPolicy, ExactSequenceOfHitsMissesAndEvictions) {
  WaveBufferPolicy p(4);
  // Step 1: cold cache.
  auto l1 = p.lookup(V{1, 2});
  EXPECT_EQ(l1.hits, V{});
  EXPECT_EQ(l1.misses, (V{1, 2}));
  auto a1 = p.admit(l1.misses, V{1, 1});
  EXPECT_EQ(a1.admitted, (V{1, 2}));
  EXPECT_EQ(a1.pages, (V{0, 1}));
  EXPECT_EQ(a1.page_indptr, (V{0, 1, 2}));
  EXPECT_EQ(a1.evicted, V{});
  // Step 2: 2 hits, 3 misses and takes two pages.
  auto l2 = p.lookup(V{2, 3});
  EXPECT_EQ(l2.hits, V{2});
  EXPECT_EQ(l2.hit_pages, V{1});
  EXPECT_EQ(l2.hit_indptr, (V{0, 1}));
  EXPECT_EQ(l2.misses, V{3});
  auto a2 = p.admit(l2.misses, V{2});
  EXPECT_EQ(a2.pages, (V{2, 3}));
  EXPECT_EQ(p.lru_order(), (V{1, 2, 3}));
  EXPECT_EQ(p.free_pages(), 0);
  // Step 3: 1 hits (moves to most recent), 4 misses and evicts the LRU cluster 2.
  auto l3 = p.lookup(V{4, 1});
  EXPECT_EQ(l3.hits, V{1});
  EXPECT_EQ(l3.hit_pages, V{0});
  EXPECT_EQ(l3.misses, V{4});
  auto a3 = p.admit(l3.misses, V{1});
  EXPECT_EQ(a3.evicted, V{2});
  EXPECT_EQ(a3.admitted, V{4});
  EXPECT_EQ(a3.pages, V{1});
  EXPECT_EQ(p.lru_order(), (V{3, 1, 4}));
  // Step 4: all hits, in request order, with their pages.
  auto l4 = p.lookup(V{3, 1, 4});
  EXPECT_EQ(l4.hits, (V{3, 1, 4}));
  EXPECT_EQ(l4.hit_pages, (V{2, 3, 0, 1}));
  EXPECT_EQ(l4.hit_indptr, (V{0, 2, 3, 4}));
  EXPECT_TRUE(l4.misses.empty());
  // Step 5: a 4-page cluster evicts everything, least recently used first.
  auto l5 = p.lookup(V{5});
  auto a5 = p.admit(l5.misses, V{4});
  EXPECT_EQ(a5.evicted, (V{3, 1, 4}));
  EXPECT_EQ(a5.pages, (V{0, 1, 2, 3}));
  EXPECT_EQ(p.pages_of(5), (V{0, 1, 2, 3}));
  EXPECT_FALSE(p.contains(1));

  const auto& s = p.stats();
  EXPECT_EQ(s.steps, 5);
  EXPECT_EQ(s.hits, 1 + 1 + 3);
  EXPECT_EQ(s.misses, 2 + 1 + 1 + 1);
  EXPECT_EQ(s.admitted, 5);
  EXPECT_EQ(s.evictions, 4);
  EXPECT_EQ(s.rejected, 0);
  EXPECT_DOUBLE_EQ(s.hit_ratio(), 5.0 / 10.0);
}

TEST(WaveBufferPolicy, NeverEvictsAClusterSelectedInTheCurrentStep) {
  WaveBufferPolicy p(2);
  auto l1 = p.lookup(V{1, 2});
  p.admit(l1.misses, V{1, 1});
  // Same step: 1 and 2 are pinned, so 3 cannot get a page.
  auto a = p.admit(V{3}, V{1});
  EXPECT_EQ(a.rejected, V{3});
  EXPECT_TRUE(a.evicted.empty());
  EXPECT_TRUE(p.contains(1) && p.contains(2));
  // Next step selects 2 and 3: only 1 may go.
  auto l2 = p.lookup(V{3, 2});
  EXPECT_EQ(l2.misses, V{3});
  auto b = p.admit(l2.misses, V{1});
  EXPECT_EQ(b.evicted, V{1});
  EXPECT_EQ(b.admitted, V{3});
  EXPECT_EQ(b.pages, V{0});
  // A cluster larger than the pool is rejected without evicting anything.
  auto l3 = p.lookup(V{9});
  auto c = p.admit(l3.misses, V{3});
  EXPECT_EQ(c.rejected, V{9});
  EXPECT_TRUE(c.evicted.empty());
  EXPECT_EQ(p.stats().rejected, 2);
}

TEST(WaveBufferPolicy, AdmitSkipsCachedClustersAndKeepsRoomForLaterOnes) {
  WaveBufferPolicy p(3);
  auto l = p.lookup(V{7});
  p.admit(l.misses, V{1});
  auto again = p.admit(V{7, 8}, V{1, 2});
  EXPECT_EQ(again.admitted, V{8});
  EXPECT_EQ(again.pages, (V{1, 2}));
  EXPECT_EQ(p.used_pages(), 3);
  EXPECT_EQ(p.n_cached(), 2);
}

TEST(WaveBufferPolicy, RandomStreamKeepsPagesDisjointAndPinnedClustersCached) {
  std::mt19937 rng(1234);
  const int64_t cap = 40;
  WaveBufferPolicy p(cap);
  std::uniform_int_distribution<int> cluster(0, 99);
  std::uniform_int_distribution<int> pages(1, 4);
  std::vector<int32_t> size_of(100);
  for (auto& s : size_of) s = pages(rng);
  int64_t hits = 0, misses = 0;
  for (int step = 0; step < 300; ++step) {
    // A drifting working set, as consecutive decode queries have.
    std::set<int32_t> pick;
    while (pick.size() < 8) pick.insert((cluster(rng) % 20 + step / 10) % 100);
    const V sel(pick.begin(), pick.end());
    auto l = p.lookup(sel);
    hits += static_cast<int64_t>(l.hits.size());
    misses += static_cast<int64_t>(l.misses.size());
    ASSERT_EQ(l.hits.size() + l.misses.size(), sel.size());
    V need;
    for (int32_t c : l.misses) need.push_back(size_of[c]);
    auto a = p.admit(l.misses, need);
    ASSERT_EQ(a.admitted.size() + a.rejected.size(), l.misses.size());
    for (int32_t c : a.evicted) ASSERT_EQ(std::count(sel.begin(), sel.end(), c), 0) << c;
    for (int32_t c : l.hits) ASSERT_TRUE(p.contains(c));
    // Pages of all cached clusters are disjoint, in range, and add up with the free list.
    std::set<int32_t> used;
    int64_t n_used = 0;
    for (int32_t c : p.lru_order()) {
      const V pg = p.pages_of(c);
      ASSERT_EQ(static_cast<int32_t>(pg.size()), size_of[c]);
      for (int32_t s : pg) {
        ASSERT_GE(s, 0);
        ASSERT_LT(s, cap);
        used.insert(s);
        ++n_used;
      }
    }
    ASSERT_EQ(static_cast<int64_t>(used.size()), n_used);
    ASSERT_EQ(n_used, p.used_pages());
    ASSERT_EQ(p.used_pages() + p.free_pages(), cap);
  }
  EXPECT_EQ(p.stats().hits, hits);
  EXPECT_EQ(p.stats().misses, misses);
  // The working set (about 20 clusters of 2.5 pages) nearly fits: most lookups hit.
  EXPECT_GT(p.stats().hit_ratio(), 0.7);  // 0.79 with this seed
}

TEST(WaveBufferPolicy, BadInputThrowsAndChangesNothing) {
  WaveBufferPolicy p(4);
  EXPECT_THROW(WaveBufferPolicy(0), Error);
  try {
    p.lookup(V{1, 1});
    FAIL() << "no throw";
  } catch (const Error& e) {
    EXPECT_NE(std::string(e.what()).find("selected"), std::string::npos) << e.what();
  }
  EXPECT_EQ(p.stats().steps, 0);
  EXPECT_THROW(p.lookup(V{-1}), Error);
  try {
    p.admit(V{1, 2}, V{1});
    FAIL() << "no throw";
  } catch (const Error& e) {
    EXPECT_NE(std::string(e.what()).find("n_pages"), std::string::npos) << e.what();
  }
  EXPECT_THROW(p.admit(V{1}, V{0}), Error);
  EXPECT_EQ(p.n_cached(), 0);
}

TEST(WaveBufferPolicy, CapacityHelpers) {
  EXPECT_EQ(cluster_pages(0, 16), 0);
  EXPECT_EQ(cluster_pages(16, 16), 1);
  EXPECT_EQ(cluster_pages(17, 16), 2);
  EXPECT_EQ(cluster_pages(13, 8), 2);
  EXPECT_EQ(capacity_pages_for_fraction(131072, 16), 410);  // ceil(0.05 * 8192)
  EXPECT_EQ(capacity_pages_for_fraction(10, 16), 1);
  EXPECT_THROW(capacity_pages_for_fraction(100, 16, 0.0), Error);
  EXPECT_THROW(cluster_pages(10, 0), Error);
}

// Simulates the device pool of WaveBuffer: each slot remembers which host token it holds. After
// the copies of every step, walking the page table must give exactly the selected clusters'
// tokens, list by list, in selection order — so no eviction ever overwrote a page still listed.
TEST(WaveStepPlan, PageTablesReadExactlyTheSelectedTokensOverManySteps) {
  std::mt19937 rng(99);
  const int ps = 8, n_lists = 3, per_list = 60;
  std::vector<int64_t> offsets = {0};
  for (int c = 0; c < n_lists * per_list; ++c) {
    offsets.push_back(offsets.back() + static_cast<int64_t>(rng() % 30));  // some empty clusters
  }
  WaveBufferPolicy policy(50);
  const int64_t max_step_pages = 200;
  std::vector<int64_t> pool((50 + max_step_pages) * ps, -1);  // token held by each slot
  int64_t copied_clusters = 0;
  for (int step = 0; step < 200; ++step) {
    std::vector<std::vector<int32_t>> sel(n_lists);
    for (int l = 0; l < n_lists; ++l) {
      std::set<int32_t> pick;
      const int want = 2 + static_cast<int>(rng() % 6);
      while (static_cast<int>(pick.size()) < want) {
        pick.insert(l * per_list + static_cast<int32_t>((rng() % 15 + step / 20) % per_list));
      }
      sel[l].assign(pick.begin(), pick.end());
      std::shuffle(sel[l].begin(), sel[l].end(), rng);
    }
    const int64_t misses_before = policy.stats().misses;
    const WaveStepPlan plan = plan_wave_step(policy, sel, offsets, ps, max_step_pages);
    // Every miss is copied exactly once (into the cache or staging), hits never.
    ASSERT_EQ(static_cast<int64_t>(plan.copy_clusters.size()),
              policy.stats().misses - misses_before);
    copied_clusters += static_cast<int64_t>(plan.copy_clusters.size());
    for (size_t i = 0; i < plan.copy_clusters.size(); ++i) {
      const int32_t c = plan.copy_clusters[i];
      for (int32_t e = plan.copy_indptr[i]; e < plan.copy_indptr[i + 1]; ++e) {
        const int64_t first = offsets[c] + static_cast<int64_t>(e - plan.copy_indptr[i]) * ps;
        for (int s = 0; s < ps; ++s) {
          pool[plan.copy_pages[e] * ps + s] = first + s < offsets[c + 1] ? first + s : -1;
        }
      }
    }
    ASSERT_EQ(plan.indptr.size(), static_cast<size_t>(n_lists + 1));
    int64_t longest = 0;
    for (int l = 0; l < n_lists; ++l) {
      std::vector<int64_t> expect, got;
      for (int32_t c : sel[l])
        for (int64_t t = offsets[c]; t < offsets[c + 1]; ++t) expect.push_back(t);
      for (int32_t e = plan.indptr[l]; e < plan.indptr[l + 1]; ++e) {
        ASSERT_GE(plan.page_len[e], 1);
        ASSERT_LE(plan.page_len[e], ps);
        for (int s = 0; s < plan.page_len[e]; ++s) got.push_back(pool[plan.indices[e] * ps + s]);
      }
      ASSERT_EQ(got, expect) << "step " << step << " list " << l;
      longest = std::max<int64_t>(longest, plan.indptr[l + 1] - plan.indptr[l]);
    }
    ASSERT_EQ(plan.max_list_pages, longest);
  }
  // A drifting working set about twice the 50-page cache: half the lookups hit (0.50 with this
  // seed), far above what a cache that kept nothing across steps would give (0).
  EXPECT_GT(policy.stats().hit_ratio(), 0.4);
  EXPECT_LT(copied_clusters, policy.stats().hits + policy.stats().misses);
}

TEST(WaveStepPlan, BadSelectionsThrowBeforeThePolicyChanges) {
  WaveBufferPolicy policy(10);
  const std::vector<int64_t> offsets = {0, 16, 40, 41};
  using L = std::vector<std::vector<int32_t>>;
  EXPECT_THROW(plan_wave_step(policy, L{{0}, {3}}, offsets, 16, 100), Error);  // out of range
  EXPECT_THROW(plan_wave_step(policy, L{{0}, {0}}, offsets, 16, 100), Error);  // repeated
  try {
    plan_wave_step(policy, L{{0, 1, 2}}, offsets, 16, 3);  // needs 1 + 2 + 1 pages
    FAIL() << "no throw";
  } catch (const Error& e) {
    EXPECT_NE(std::string(e.what()).find("max_step_pages"), std::string::npos) << e.what();
  }
  EXPECT_EQ(policy.stats().steps, 0);
  const WaveStepPlan ok = plan_wave_step(policy, L{{2, 0}, {1}}, offsets, 16, 4);
  EXPECT_EQ(ok.indptr, (std::vector<int32_t>{0, 2, 4}));
  EXPECT_EQ(ok.page_len, (std::vector<int32_t>{1, 16, 16, 8}));
  EXPECT_EQ(ok.max_list_pages, 2);
}

}  // namespace
}  // namespace retrokv
