// The wave buffer's cache policy as plain host code (RetroInfer section 5, DESIGN.md section 4):
// which whole clusters live in the GPU page pool, LRU over cluster ids with a capacity in pages,
// never evicting a cluster selected in the current decode step. No CUDA: unit-tested on the CPU.
#pragma once

#include <algorithm>
#include <cmath>
#include <cstdint>
#include <list>
#include <span>
#include <unordered_map>
#include <unordered_set>
#include <vector>

#include "retrokv/core/error.h"

namespace retrokv {

/// Pages a cluster of `n_tokens` tokens needs in a pool of `page_size`-token pages.
inline int32_t cluster_pages(int64_t n_tokens, int page_size) {
  RETROKV_CHECK(page_size >= 1, "page_size: expected >= 1, got ", page_size);
  RETROKV_CHECK(n_tokens >= 0, "n_tokens: expected >= 0, got ", n_tokens);
  return static_cast<int32_t>((n_tokens + page_size - 1) / page_size);
}

/// Cache capacity in pages for a fraction of a KV of `total_tokens` tokens (RetroInfer's default
/// is 5%), at least one page.
inline int64_t capacity_pages_for_fraction(int64_t total_tokens, int page_size,
                                           double fraction = 0.05) {
  RETROKV_CHECK(total_tokens >= 0, "total_tokens: expected >= 0, got ", total_tokens);
  RETROKV_CHECK(page_size >= 1, "page_size: expected >= 1, got ", page_size);
  RETROKV_CHECK(fraction > 0.0 && fraction <= 1.0, "fraction: expected in (0, 1], got ", fraction);
  const auto pages = static_cast<int64_t>(
      std::ceil(fraction * static_cast<double>(total_tokens) / static_cast<double>(page_size)));
  return pages < 1 ? 1 : pages;
}

/// LRU cache of whole clusters over a pool of `capacity_pages` page slots [0, capacity).
/// A decode step is: lookup(selected) -> hits (with their page slots) and misses; the caller
/// fetches the misses' KV from pinned host memory; admit(misses, their page counts) -> slots to
/// copy them into, evicting least recently used clusters but never one selected in this step.
/// Deterministic: the same call sequence gives the same slots and evictions.
class WaveBufferPolicy {
 public:
  /// Result of lookup(): hits and misses in the order they were requested.
  struct Lookup {
    std::vector<int32_t> hits;
    std::vector<int32_t> hit_indptr{0};  // pages of hits[i]: hit_pages[hit_indptr[i] .. [i + 1])
    std::vector<int32_t> hit_pages;
    std::vector<int32_t> misses;
  };
  /// Result of admit().
  struct Admission {
    std::vector<int32_t> admitted;        // now cached; copy their KV into their pages
    std::vector<int32_t> page_indptr{0};  // pages of admitted[i]: pages[page_indptr[i] .. [i+1])
    std::vector<int32_t> pages;
    std::vector<int32_t> rejected;  // did not fit: larger than the pool, or the rest is pinned
    std::vector<int32_t> evicted;   // removed to make room, least recently used first
  };
  struct Stats {
    int64_t steps = 0;
    int64_t hits = 0;
    int64_t misses = 0;
    int64_t admitted = 0;
    int64_t rejected = 0;
    int64_t evictions = 0;
    /// hits / (hits + misses); 0 before any lookup.
    double hit_ratio() const {
      const int64_t n = hits + misses;
      return n == 0 ? 0.0 : static_cast<double>(hits) / static_cast<double>(n);
    }
  };

  explicit WaveBufferPolicy(int64_t capacity_pages) : capacity_(capacity_pages) {
    RETROKV_CHECK(capacity_pages >= 1 && capacity_pages <= INT32_MAX,
                  "capacity_pages: expected in [1, 2^31), got ", capacity_pages);
    free_.reserve(static_cast<size_t>(capacity_pages));
    // A stack that hands out slot 0 first.
    for (int64_t p = capacity_pages - 1; p >= 0; --p) free_.push_back(static_cast<int32_t>(p));
  }

  /// Starts a decode step: the `selected` clusters (distinct, >= 0) become pinned for this step;
  /// hits move to most recently used. Throws retrokv::Error on a negative or repeated id, with
  /// nothing changed.
  Lookup lookup(std::span<const int32_t> selected) {
    std::unordered_set<int32_t> seen;
    seen.reserve(selected.size() * 2);
    for (size_t i = 0; i < selected.size(); ++i) {
      RETROKV_CHECK(selected[i] >= 0, "selected: expected cluster ids >= 0, got ", selected[i],
                    " at index ", i);
      RETROKV_CHECK(seen.insert(selected[i]).second,
                    "selected: expected distinct cluster ids, got ", selected[i], " twice (index ",
                    i, ")");
    }
    ++step_;
    ++stats_.steps;
    Lookup out;
    for (const int32_t c : selected) {
      auto it = entries_.find(c);
      if (it == entries_.end()) {
        out.misses.push_back(c);
        ++stats_.misses;
        continue;
      }
      Entry& e = it->second;
      e.pinned_step = step_;
      lru_.splice(lru_.end(), lru_, e.pos);  // most recently used at the back
      out.hits.push_back(c);
      out.hit_pages.insert(out.hit_pages.end(), e.pages.begin(), e.pages.end());
      out.hit_indptr.push_back(static_cast<int32_t>(out.hit_pages.size()));
      ++stats_.hits;
    }
    return out;
  }

  /// Admits `clusters` (normally this step's misses) needing n_pages[i] pages each, in order.
  /// Evicts least recently used clusters that are not pinned in this step; a cluster that still
  /// does not fit is rejected (the caller reads it from host memory this step). Already cached
  /// clusters are skipped. Admitted clusters are pinned for the rest of the step.
  Admission admit(std::span<const int32_t> clusters, std::span<const int32_t> n_pages) {
    RETROKV_CHECK(clusters.size() == n_pages.size(), "n_pages: expected ", clusters.size(),
                  " entries (one per cluster), got ", n_pages.size());
    for (size_t i = 0; i < clusters.size(); ++i) {
      RETROKV_CHECK(clusters[i] >= 0, "clusters: expected ids >= 0, got ", clusters[i],
                    " at index ", i);
      RETROKV_CHECK(n_pages[i] >= 1, "n_pages: expected >= 1, got ", n_pages[i], " at index ", i);
    }
    Admission out;
    for (size_t i = 0; i < clusters.size(); ++i) {
      const int32_t c = clusters[i];
      const int32_t need = n_pages[i];
      if (entries_.count(c) != 0) continue;
      if (need > capacity_ || !make_room(need, &out.evicted)) {
        out.rejected.push_back(c);
        ++stats_.rejected;
        continue;
      }
      Entry e;
      e.pages.assign(free_.end() - need, free_.end());
      std::sort(e.pages.begin(), e.pages.end());
      free_.resize(free_.size() - static_cast<size_t>(need));
      e.pinned_step = step_;
      e.pos = lru_.insert(lru_.end(), c);
      out.admitted.push_back(c);
      out.pages.insert(out.pages.end(), e.pages.begin(), e.pages.end());
      out.page_indptr.push_back(static_cast<int32_t>(out.pages.size()));
      entries_.emplace(c, std::move(e));
      ++stats_.admitted;
    }
    return out;
  }

  bool contains(int32_t cluster) const { return entries_.count(cluster) != 0; }
  /// Page slots of a cached cluster (empty when not cached).
  std::vector<int32_t> pages_of(int32_t cluster) const {
    auto it = entries_.find(cluster);
    return it == entries_.end() ? std::vector<int32_t>{} : it->second.pages;
  }
  /// Cached clusters, least recently used first.
  std::vector<int32_t> lru_order() const { return {lru_.begin(), lru_.end()}; }
  int64_t capacity_pages() const { return capacity_; }
  int64_t free_pages() const { return static_cast<int64_t>(free_.size()); }
  int64_t used_pages() const { return capacity_ - free_pages(); }
  int64_t n_cached() const { return static_cast<int64_t>(entries_.size()); }
  const Stats& stats() const { return stats_; }
  void reset_stats() { stats_ = Stats{}; }

 private:
  struct Entry {
    std::vector<int32_t> pages;
    std::list<int32_t>::iterator pos;
    int64_t pinned_step = -1;
  };

  // Evicts unpinned clusters from the LRU end until `need` pages are free. On failure nothing
  // more than what was already evicted changes (those stay evicted: they were cold anyway).
  bool make_room(int32_t need, std::vector<int32_t>* evicted) {
    auto it = lru_.begin();
    while (static_cast<int64_t>(free_.size()) < need && it != lru_.end()) {
      Entry& e = entries_.at(*it);
      if (e.pinned_step == step_) {
        ++it;
        continue;
      }
      // Returned slots go on the stack so the next allocation reuses them, smallest first.
      for (auto p = e.pages.rbegin(); p != e.pages.rend(); ++p) free_.push_back(*p);
      evicted->push_back(*it);
      ++stats_.evictions;
      const int32_t c = *it;
      it = lru_.erase(it);
      entries_.erase(c);
    }
    return static_cast<int64_t>(free_.size()) >= need;
  }

  int64_t capacity_;
  int64_t step_ = 0;
  std::vector<int32_t> free_;  // stack of free slots
  std::list<int32_t> lru_;     // front = least recently used
  std::unordered_map<int32_t, Entry> entries_;
  Stats stats_;
};

/// One wave-buffer step planned on the host (what WaveBuffer::prepare_step executes): the page
/// table of the selected clusters, list by list in selection order, and the host-to-device
/// copies the step needs.
struct WaveStepPlan {
  std::vector<int32_t> indptr{0};       // (n_lists + 1) into indices / page_len
  std::vector<int32_t> indices;         // page slots of the pool
  std::vector<int32_t> page_len;        // valid tokens of each listed page
  std::vector<int32_t> copy_clusters;   // clusters whose KV must be copied into the pool now
  std::vector<int32_t> copy_indptr{0};  // pages of copy_clusters[i]: copy_pages[[i] .. [i + 1])
  std::vector<int32_t> copy_pages;
  int64_t max_list_pages = 0;  // longest list, in pages
};

/// Plans a step over a pool of policy.capacity_pages() cached slots followed by max_step_pages
/// staging slots. selected[l]: the clusters of list l (global ids into cluster_offsets, which
/// has n_clusters + 1 token offsets). Hits reuse their slots; misses are admitted (evicting
/// least recently used clusters) or, when the cache cannot take them this step, get staging
/// slots. Empty clusters get no pages. Throws retrokv::Error, with the policy untouched, on an
/// id out of range, a repeated id, or more than max_step_pages pages.
inline WaveStepPlan plan_wave_step(WaveBufferPolicy& policy,
                                   const std::vector<std::vector<int32_t>>& selected,
                                   std::span<const int64_t> cluster_offsets, int page_size,
                                   int64_t max_step_pages) {
  RETROKV_CHECK(page_size >= 1, "page_size: expected >= 1, got ", page_size);
  RETROKV_CHECK(!cluster_offsets.empty(), "cluster_offsets: expected n_clusters + 1 offsets");
  const int64_t n_clusters = static_cast<int64_t>(cluster_offsets.size()) - 1;
  std::vector<int32_t> all;
  std::unordered_map<int32_t, int32_t> need_of;
  int64_t total_pages = 0;
  for (size_t l = 0; l < selected.size(); ++l) {
    for (const int32_t c : selected[l]) {
      RETROKV_CHECK(c >= 0 && c < n_clusters, "selected[", l, "]: expected cluster ids in [0, ",
                    n_clusters, "), got ", c);
      const int32_t np = cluster_pages(cluster_offsets[c + 1] - cluster_offsets[c], page_size);
      RETROKV_CHECK(need_of.emplace(c, np).second, "selected[", l,
                    "]: expected distinct cluster ids over all lists, got ", c, " twice");
      total_pages += np;
      if (np > 0) all.push_back(c);
    }
  }
  RETROKV_CHECK(total_pages <= max_step_pages, "selected: expected at most ", max_step_pages,
                " pages per step (max_step_pages), got ", total_pages);

  const WaveBufferPolicy::Lookup hit = policy.lookup(all);
  std::vector<int32_t> miss_need;
  for (const int32_t c : hit.misses) miss_need.push_back(need_of[c]);
  const WaveBufferPolicy::Admission adm = policy.admit(hit.misses, miss_need);

  WaveStepPlan plan;
  std::unordered_map<int32_t, std::vector<int32_t>> pages_of;
  for (size_t i = 0; i < hit.hits.size(); ++i) {
    pages_of[hit.hits[i]].assign(hit.hit_pages.begin() + hit.hit_indptr[i],
                                 hit.hit_pages.begin() + hit.hit_indptr[i + 1]);
  }
  auto add_copy = [&](int32_t c, const std::vector<int32_t>& pages) {
    plan.copy_clusters.push_back(c);
    plan.copy_pages.insert(plan.copy_pages.end(), pages.begin(), pages.end());
    plan.copy_indptr.push_back(static_cast<int32_t>(plan.copy_pages.size()));
  };
  for (size_t i = 0; i < adm.admitted.size(); ++i) {
    auto& p = pages_of[adm.admitted[i]];
    p.assign(adm.pages.begin() + adm.page_indptr[i], adm.pages.begin() + adm.page_indptr[i + 1]);
    add_copy(adm.admitted[i], p);
  }
  auto staging = static_cast<int32_t>(policy.capacity_pages());
  for (const int32_t c : adm.rejected) {
    auto& p = pages_of[c];
    for (int32_t i = 0; i < need_of[c]; ++i) p.push_back(staging++);
    add_copy(c, p);
  }
  for (const auto& list : selected) {
    for (const int32_t c : list) {
      const auto it = pages_of.find(c);
      if (it == pages_of.end()) continue;  // empty cluster
      const int64_t size = cluster_offsets[c + 1] - cluster_offsets[c];
      for (size_t i = 0; i < it->second.size(); ++i) {
        plan.indices.push_back(it->second[i]);
        plan.page_len.push_back(static_cast<int32_t>(
            std::min<int64_t>(page_size, size - static_cast<int64_t>(i) * page_size)));
      }
    }
    plan.indptr.push_back(static_cast<int32_t>(plan.indices.size()));
    plan.max_list_pages = std::max<int64_t>(
        plan.max_list_pages, plan.indptr.back() - plan.indptr[plan.indptr.size() - 2]);
  }
  return plan;
}

}  // namespace retrokv
