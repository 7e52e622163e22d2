// The state of one (sequence, layer) inside a KVVectorStore (issue 7 "API"; DESIGN.md section 2
// "store"): its KV rows and per-head indexes, the lock that serialises calls on it, the pending
// background index build, and that build itself (every KV head's index after prefill).
#pragma once

#include <atomic>
#include <chrono>
#include <cstdint>
#include <future>
#include <memory>
#include <mutex>
#include <vector>

#include "retrokv/core/view.h"
#include "retrokv/index/wave_index.h"
#include "retrokv/store/head_index.h"
#include "retrokv/store/kv_rows.h"
#include "retrokv/store/store_config.h"
#include "retrokv/store/store_stats.h"

namespace retrokv::detail {

/// One layer of one sequence. Its mutex serialises calls on (sequence, layer); `build` is the
/// pending background index build that attend/append/save wait for.
struct StoreLayer {
  std::mutex mutex;
  bool started = false;      // prefilled or appended to
  int64_t n_tokens = 0;      // positions stored
  int64_t n_prefill = 0;     // positions stored by prefill
  int64_t since_update = 0;  // appended since the last index update (non-wave policies)
  std::vector<KVRows> k, v;  // (n_tokens, d) per KV head
  std::vector<HeadIndex> heads;
  std::future<void> build;
  int64_t accounted = 0;  // bytes reserved against the store's memory budget
  std::atomic<int64_t>* used = nullptr;

  StoreLayer() = default;
  StoreLayer(const StoreLayer&) = delete;
  StoreLayer& operator=(const StoreLayer&) = delete;
  ~StoreLayer() {
    if (build.valid()) build.wait();  // the build task references this layer
    if (used) used->fetch_sub(accounted);
  }
  /// Waits for the background build; rethrows its error once (the layer then attends exactly).
  void wait_build() {
    if (build.valid()) {
      std::future<void> f = std::move(build);
      f.get();
    }
  }
};

/// Every layer of one sequence. The store holds it by shared_ptr, so a call that found it keeps
/// it alive after remove_sequence().
struct StoreSequence {
  std::vector<std::unique_ptr<StoreLayer>> layers;
};

/// Seconds from a to b, the unit of every LayerStats time.
inline double seconds_between(std::chrono::steady_clock::time_point a,
                              std::chrono::steady_clock::time_point b) {
  return std::chrono::duration<double>(b - a).count();
}

// Builds every KV head's index of a freshly prefilled layer (possibly on a background thread;
// the layer is not touched by anyone else until wait_build()). Returns the build's stats, which
// the store adds to the layer's stats.
inline LayerStats build_layer(const StoreConfig& config, int threads, StoreLayer& L,
                              int64_t index_end, const std::vector<Matrix<float>>& train) {
  const auto t0 = std::chrono::steady_clock::now();
  const PolicyParams& pp = config.params;
  LayerStats st;
  for (int h = 0; h < config.n_kv_heads; ++h) {
    detail::HeadIndex& hi = L.heads[h];
    if (config.policy == Policy::kWave) {
      Matrix<float> keys = detail::rows_to_float(L.k[h], 0, L.n_tokens);
      Matrix<float> values = detail::rows_to_float(L.v[h], 0, L.n_tokens);
      hi.wave =
          std::make_unique<WaveIndex>(keys.view(), values.view(), detail::store_wave_params(pp));
    } else {
      ConstMatrixView<float> tq = train[h].rows() > 0 ? train[h].view() : ConstMatrixView<float>();
      detail::build_head_index(hi, config.policy, pp, threads, L.k[h], pp.n_sink, index_end, tq);
    }
    ++st.index_builds;
  }
  st.build_seconds = detail::seconds_between(t0, std::chrono::steady_clock::now());
  return st;
}

}  // namespace retrokv::detail
