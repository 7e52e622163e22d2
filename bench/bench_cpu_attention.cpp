// Exact CPU decode attention (issue 2, "Benchmarks"): attend_full over n = 8K, 32K, 128K keys,
// d = 128, one KV head with a GQA group of 4 query heads, float and half KV. Reports the K+V bytes
// read per second and, in the same run, a plain multi-threaded read of a buffer of the same size:
// the counter `bw_ratio` = achieved / measured read bandwidth (target >= 0.7 at n = 128K).
//
// The read probe runs interleaved with the kernel, one pass per iteration (see
// run_with_bandwidth_ratio), so a busy machine slows both alike.
//
//   build/bin/bench_cpu_attention --benchmark_repetitions=5 --benchmark_report_aggregates_only=true
#include <benchmark/benchmark.h>

#include <algorithm>
#include <chrono>
#include <cstdint>
#include <map>
#include <memory>
#include <utility>
#include <vector>

#include "retrokv/core/half.h"
#include "retrokv/core/view.h"
#include "retrokv/cpu/attention.h"
#include "retrokv/cpu/bandwidth.h"
#include "retrokv/cpu/simd.h"

namespace retrokv {
namespace {

constexpr int kDim = 128;
constexpr int kGroup = 4;

/// Fast deterministic fill (speed does not depend on the values; a Gaussian generator would
/// dominate the set-up at 128K tokens).
template <typename T>
Matrix<T> filled(int64_t rows, int cols, uint64_t seed) {
  Matrix<T> m(rows, cols);
  uint64_t x = seed * 0x9E3779B97F4A7C15ull + 1;
  for (int64_t i = 0; i < rows * cols; ++i) {
    x = x * 6364136223846793005ull + 1442695040888963407ull;
    const float u = static_cast<float>(static_cast<int64_t>(x >> 40) - (1 << 23)) / (1 << 23);
    m.data()[i] = from_float<T>(u * 1.7f);
  }
  return m;
}

template <typename T>
struct Kv {
  Matrix<T> K, V;
  Matrix<float> q;
};

/// One KV head per (n, T), built once and shared by the repetitions.
template <typename T>
const Kv<T>& kv_for(int64_t n) {
  static std::map<int64_t, std::unique_ptr<Kv<T>>> cache;
  auto& slot = cache[n];
  if (!slot) {
    slot = std::make_unique<Kv<T>>();
    slot->K = filled<T>(n, kDim, 1);
    slot->V = filled<T>(n, kDim, 2);
    slot->q = filled<float>(kGroup, kDim, 3);
  }
  return *slot;
}

cpu::ReadBandwidthProbe& probe_for(int64_t bytes) {
  static std::map<int64_t, std::unique_ptr<cpu::ReadBandwidthProbe>> cache;
  auto& slot = cache[bytes];
  if (!slot) slot = std::make_unique<cpu::ReadBandwidthProbe>(bytes);
  return *slot;
}

double median(std::vector<double> v) {
  std::sort(v.begin(), v.end());
  return v[v.size() / 2];
}

/// Each iteration times one `step` (the reported manual time) and then one pass of the read
/// probe over a buffer of the same size, so both see the same machine load (the machine may be
/// shared). Counters: GBps (bytes / median step time), read_GBps (bytes / median probe time),
/// bw_ratio = their ratio, bw_ratio_best = the same with the fastest step and fastest pass.
template <typename F>
void run_with_bandwidth_ratio(benchmark::State& state, int64_t bytes, F&& step) {
  cpu::ReadBandwidthProbe& probe = probe_for(bytes);
  step();  // warm-up (page faults, caches)
  std::vector<double> t_step, t_read;
  for (auto _ : state) {
    const auto t0 = std::chrono::steady_clock::now();
    step();
    const double dt = std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
    state.SetIterationTime(dt);
    t_step.push_back(dt);
    t_read.push_back(probe.time_pass());
  }
  if (t_step.empty()) return;
  const double b = static_cast<double>(bytes);
  state.SetBytesProcessed(bytes * static_cast<int64_t>(state.iterations()));
  state.counters["GBps"] = b / median(t_step) / 1e9;
  state.counters["read_GBps"] = b / median(t_read) / 1e9;
  state.counters["bw_ratio"] = median(t_read) / median(t_step);
  state.counters["bw_ratio_best"] = *std::min_element(t_read.begin(), t_read.end()) /
                                    *std::min_element(t_step.begin(), t_step.end());
  benchmark::DoNotOptimize(probe.sink());
}

template <typename T>
void BM_attend_full(benchmark::State& state) {
  const int64_t n = state.range(0);
  const Kv<T>& kv = kv_for<T>(n);
  std::vector<float> o(kGroup * kDim), lse(kGroup);
  const float scale = cpu::default_scale(kDim);
  const int64_t bytes = 2 * n * kDim * static_cast<int64_t>(sizeof(T));  // K + V read once
  run_with_bandwidth_ratio(state, bytes, [&] {
    cpu::attend_full<T>(kv.q.view(), kv.K.view(), kv.V.view(), scale,
                        MatrixView<float>(o.data(), kGroup, kDim), lse.data());
    benchmark::DoNotOptimize(o.data());
    benchmark::ClobberMemory();
  });
  state.SetLabel(cpu::simd_level_name(cpu::simd_level()));
}
BENCHMARK_TEMPLATE(BM_attend_full, float)
    ->Arg(8192)
    ->Arg(32768)
    ->Arg(131072)
    ->UseManualTime()
    ->Unit(benchmark::kMicrosecond);
BENCHMARK_TEMPLATE(BM_attend_full, half)
    ->Arg(8192)
    ->Arg(32768)
    ->Arg(131072)
    ->UseManualTime()
    ->Unit(benchmark::kMicrosecond);

/// The same half-KV step on each SIMD path this CPU has (arg 1: 0 scalar, 1 AVX2, 2 AVX-512).
void BM_attend_full_half_path(benchmark::State& state) {
  const auto level = static_cast<cpu::SimdLevel>(state.range(1));
  if (static_cast<int>(level) > static_cast<int>(cpu::supported_simd_level())) {
    state.SkipWithError("SIMD level not supported on this CPU");
    return;
  }
  const cpu::SimdLevel saved = cpu::simd_level();
  cpu::set_simd_level(level);
  BM_attend_full<half>(state);
  cpu::set_simd_level(saved);
}
BENCHMARK(BM_attend_full_half_path)
    ->ArgsProduct({{131072}, {0, 1, 2}})
    ->ArgNames({"n", "simd"})
    ->UseManualTime()
    ->Unit(benchmark::kMicrosecond);

/// The yardstick alone: multi-threaded vectorised sum over K+V-sized buffers (float KV sizes).
void BM_read_bandwidth(benchmark::State& state) {
  const int64_t bytes = 2 * state.range(0) * kDim * static_cast<int64_t>(sizeof(float));
  cpu::ReadBandwidthProbe& probe = probe_for(bytes);
  for (auto _ : state) benchmark::DoNotOptimize(probe.measure(1));
  state.SetBytesProcessed(bytes * static_cast<int64_t>(state.iterations()));
}
BENCHMARK(BM_read_bandwidth)
    ->Arg(8192)
    ->Arg(32768)
    ->Arg(131072)
    ->UseRealTime()
    ->Unit(benchmark::kMicrosecond);

}  // namespace
}  // namespace retrokv

BENCHMARK_MAIN();
