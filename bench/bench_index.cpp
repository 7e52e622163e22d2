// Index benchmarks (issue 4): Flat scan vs RoarGraph vs IVF search at n = 128K, d = 128 on the
// synthetic OOD set (tests/common/random_data.h), in one run, with recall@100 and keys-scanned
// counters; the kNN step's GFLOP/s; RoarGraph build time at 8K (m = n).
//
// RETROKV_BENCH_N (default 131072) and RETROKV_BENCH_M_TRAIN (default n: every training query, as
// the paper builds it; the kNN step then costs 2 n^2 d = 4.4 TFLOP at 128K, ~7.5 min on 2 cores,
// and a stride subsample, e.g. 16384, builds ~2x faster but needs a wider beam for the same
// recall) set the search set. The built graph is cached in $TMPDIR (RETROKV_BENCH_CACHE=0
// disables the cache). RoarGraph beams below k = 100 return the top-100 of every key scored.
#include <benchmark/benchmark.h>

#include <cstdio>
#include <cstdlib>
#include <filesystem>
#include <set>
#include <string>

#include "common/random_data.h"
#include "retrokv/index/flat.h"
#include "retrokv/index/ivf.h"
#include "retrokv/index/knn.h"
#include "retrokv/index/roar_graph.h"

namespace retrokv {
namespace {

int64_t env_int(const char* name, int64_t fallback) {
  const char* v = std::getenv(name);
  return v ? std::atoll(v) : fallback;
}

constexpr int kDim = 128;
constexpr int kTopK = 100;
constexpr int kTestQueries = 200;

struct SearchSet {
  int64_t n = 0;
  SyntheticAttention data;
  KnnResult truth;  // exact top-100 of the test queries
  RoarGraphIndex roar;
  IvfIndex ivf;
  double roar_build_s = 0;
};

const SearchSet& search_set() {
  static const SearchSet s = [] {
    SearchSet x;
    x.n = env_int("RETROKV_BENCH_N", 131072);
    const int64_t m_train = std::min<int64_t>(x.n, env_int("RETROKV_BENCH_M_TRAIN", x.n));
    x.data = make_ood_synthetic(x.n, kDim, x.n, kTestQueries, 2024);
    x.truth = knn_inner_product(x.data.test_queries.view(), x.data.keys.view(), kTopK);
    RoarGraphParams p;
    p.max_train_queries = m_train;
    const std::string cache =
        (std::filesystem::temp_directory_path() /
         ("retrokv_bench_roar_" + std::to_string(x.n) + "_" + std::to_string(m_train) + ".bin"))
            .string();
    const bool use_cache = env_int("RETROKV_BENCH_CACHE", 1) != 0;
    if (use_cache && std::filesystem::exists(cache)) {
      try {
        x.roar = RoarGraphIndex::load(cache);
      } catch (const Error&) {
        x.roar = RoarGraphIndex();
      }
    }
    if (x.roar.size() != x.n) {
      x.roar = RoarGraphIndex::build(x.data.keys.view(), x.data.train_queries.view(), p);
      const auto& st = x.roar.stats();
      std::fprintf(stderr,
                   "roargraph build n=%lld m=%lld: %.1f s (knn %.1f s at %.1f GFLOP/s, "
                   "projection %.1f s, fill %.1f s, repair %.1f s)\n",
                   static_cast<long long>(x.n), static_cast<long long>(st.train_queries_used),
                   st.build_seconds, st.knn_seconds, st.knn_gflops, st.projection_seconds,
                   st.fill_seconds, st.repair_seconds);
      if (use_cache) x.roar.save(cache);
    }
    x.ivf = IvfIndex::build(x.data.keys.view(), IvfParams{});
    return x;
  }();
  return s;
}

// Runs every test query once per iteration and reports recall@100 and keys scanned.
template <typename Index>
void run_search(benchmark::State& state, const Index& index, SearchParams sp) {
  const SearchSet& s = search_set();
  double hits = 0, scanned = 0, searches = 0;
  for (auto _ : state) {
    for (int64_t i = 0; i < kTestQueries; ++i) {
      const SearchResult r = index.search(s.data.test_queries.view().slice_rows(i, 1), sp);
      benchmark::DoNotOptimize(r.ids.data());
      const std::set<int32_t> want(s.truth.row_ids(i), s.truth.row_ids(i) + kTopK);
      state.PauseTiming();
      for (int32_t id : r.ids) hits += want.count(id);
      scanned += static_cast<double>(r.keys_scanned);
      searches += 1;
      state.ResumeTiming();
    }
  }
  state.counters["recall@100"] = hits / (kTopK * searches);
  state.counters["keys_scanned"] = scanned / searches;
  state.counters["scanned_frac"] = scanned / searches / s.n;
  state.counters["us_per_query"] = benchmark::Counter(
      searches, benchmark::Counter::kIsIterationInvariantRate | benchmark::Counter::kInvert);
  state.SetItemsProcessed(static_cast<int64_t>(searches));
}

void BM_FlatSearch(benchmark::State& state) {
  static const FlatIndex flat(search_set().data.keys.view());
  SearchParams sp;
  sp.k = kTopK;
  run_search(state, flat, sp);
}

void BM_RoarGraphSearch(benchmark::State& state) {
  SearchParams sp;
  sp.k = kTopK;
  sp.ef = static_cast<int>(state.range(0));
  run_search(state, search_set().roar, sp);
}

void BM_IvfSearch(benchmark::State& state) {
  SearchParams sp;
  sp.k = kTopK;
  sp.nprobe = static_cast<int>(state.range(0));
  run_search(state, search_set().ivf, sp);
}

// Exact kNN (the RoarGraph build's first step): m queries x n keys x d = 128.
void BM_Knn(benchmark::State& state) {
  const int64_t n = state.range(0), m = state.range(1);
  const auto s = make_ood_synthetic(n, kDim, m, 0, 7);
  double gflops = 0;
  for (auto _ : state) {
    const KnnResult r = knn_inner_product(s.train_queries.view(), s.keys.view(), kTopK);
    benchmark::DoNotOptimize(r.ids.data());
    gflops = r.gflops;
  }
  state.counters["GFLOP/s"] = gflops;
}

// Whole RoarGraph build with m = n training queries.
void BM_RoarGraphBuild(benchmark::State& state) {
  const int64_t n = state.range(0);
  const auto s = make_ood_synthetic(n, kDim, n, 0, 8);
  RoarGraphParams p;
  p.show_progress = false;
  RoarGraphStats st;
  for (auto _ : state) {
    const RoarGraphIndex g = RoarGraphIndex::build(s.keys.view(), s.train_queries.view(), p);
    st = g.stats();
  }
  state.counters["build_s"] = st.build_seconds;
  state.counters["knn_s"] = st.knn_seconds;
  state.counters["knn_GFLOP/s"] = st.knn_gflops;
  state.counters["fill_s"] = st.fill_seconds;
  state.counters["mean_degree"] = st.mean_out_degree;
}

BENCHMARK(BM_FlatSearch)->Unit(benchmark::kMillisecond)->Iterations(2)->UseRealTime();
BENCHMARK(BM_RoarGraphSearch)
    ->Arg(60)
    ->Arg(80)
    ->Arg(100)
    ->Arg(120)
    ->Arg(150)
    ->Arg(200)
    ->Arg(300)
    ->Arg(500)
    ->Unit(benchmark::kMillisecond)
    ->Iterations(3)
    ->UseRealTime();
BENCHMARK(BM_IvfSearch)
    ->Arg(8)
    ->Arg(32)
    ->Arg(128)
    ->Unit(benchmark::kMillisecond)
    ->Iterations(2)
    ->UseRealTime();
BENCHMARK(BM_Knn)->Args({8192, 8192})->Unit(benchmark::kMillisecond)->Iterations(1)->UseRealTime();
BENCHMARK(BM_RoarGraphBuild)->Arg(8192)->Unit(benchmark::kSecond)->Iterations(1)->UseRealTime();

}  // namespace
}  // namespace retrokv

BENCHMARK_MAIN();
