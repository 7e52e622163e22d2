// The decode attention of a KVVectorStore layer (issue 7 "API"; DESIGN.md sections 2 and 3): per
// (sequence, KV head) the hybrid step of the store's policy (full, flat_topk, roar_graph, quest:
// exact steady zone + exact selection, LSE-merged; wave: the index's own tripartite step, all KV
// heads of a sequence interleaved), run in parallel over a batch of sequences.
#pragma once

#include <omp.h>

#include <algorithm>
#include <chrono>
#include <cstdint>
#include <exception>
#include <mutex>
#include <vector>

#include "retrokv/core/attention_state.h"
#include "retrokv/core/view.h"
#include "retrokv/cpu/attention.h"
#include "retrokv/index/wave_index.h"
#include "retrokv/store/head_index.h"
#include "retrokv/store/kv_rows.h"
#include "retrokv/store/store_config.h"
#include "retrokv/store/store_layer.h"
#include "retrokv/store/store_stats.h"

namespace retrokv::detail {

// The wave step of every KV head of one sequence at once (WaveIndex::attend_steps), when all
// of the layer's heads have an index covering all positions; false (nothing done) otherwise.
// heads: q is (n_q_heads, d) per-head rows (q_heads) or one row (1, n_q_heads * d); out alike.
// Per-head stats as attend_head's; the batch's time is split evenly over its heads.
inline bool attend_wave_heads(const StoreConfig& config, const StoreLayer& L,
                              ConstMatrixView<float> q, MatrixView<float> out, bool heads,
                              float* lse_out, LayerStats* st) {
  // Fixed-size buffers (no allocation per step); larger shapes take the per-head path.
  constexpr int kMaxHeads = 64, kMaxQueryHeads = 512;
  const int H = config.n_kv_heads, g = config.group_size(), d = config.head_dim;
  const bool own_lse = lse_out == nullptr;
  if (config.policy != Policy::kWave || H > kMaxHeads ||
      (own_lse && int64_t{H} * g > kMaxQueryHeads))
    return false;
  for (int h = 0; h < H; ++h)
    if (!L.heads[h].wave || L.heads[h].wave->size() != L.n_tokens) return false;
  WaveIndex::Step steps[kMaxHeads];
  WaveStats ws[kMaxHeads];
  float lse_buf[kMaxQueryHeads];
  for (int h = 0; h < H; ++h) {
    WaveIndex::Step& s = steps[h];
    s.index = L.heads[h].wave.get();
    if (heads) {
      s.q = ConstMatrixView<float>(q.row(int64_t{h} * g), g, d, q.ld);
      s.o = MatrixView<float>(out.row(int64_t{h} * g), g, d, out.ld);
    } else {
      s.q = ConstMatrixView<float>(q.row(0) + int64_t{h} * g * d, g, d, d);
      s.o = MatrixView<float>(out.row(0) + int64_t{h} * g * d, g, d, d);
    }
    s.lse = (own_lse ? lse_buf : lse_out) + int64_t{h} * g;
    s.stats = &ws[h];
  }
  const WaveParams wp = detail::store_wave_params(config.params);
  const auto t0 = std::chrono::steady_clock::now();
  WaveIndex::attend_steps(steps, H, config.effective_scale(), &wp.budget);
  const double sec = detail::seconds_between(t0, std::chrono::steady_clock::now()) / H;
  for (int h = 0; h < H; ++h) {
    LayerStats& x = st[h];
    x.head_steps = 1;
    x.context_tokens = L.n_tokens;
    x.exact_seconds = sec;
    x.steady_tokens = ws[h].steady_tokens;
    x.selected_tokens = ws[h].retrieval_tokens;
    x.keys_scanned = ws[h].n_clusters;
    x.estimated_clusters = ws[h].estimation_clusters;
    x.estimated_tokens = ws[h].estimation_tokens;
    x.exact_tokens = x.steady_tokens + x.selected_tokens;
  }
  return true;
}

// attend_head for the KV element type T (float, half, bfloat16).
template <typename T>
void attend_head_typed(const StoreConfig& config, const StoreLayer& L, int h,
                       ConstMatrixView<float> qg, MatrixView<float> og, float* lse_out,
                       LayerStats& st) {
  using Clock = std::chrono::steady_clock;
  const int g = static_cast<int>(qg.rows), d = config.head_dim;
  const float scale = config.effective_scale();
  const PolicyParams& pp = config.params;
  const detail::HeadIndex& hi = L.heads[h];
  const int64_t n = L.n_tokens;
  const ConstMatrixView<T> K = L.k[h].view<T>(), V = L.v[h].view<T>();
  std::vector<float> lse_buf(static_cast<size_t>(g));
  float* lse = lse_out ? lse_out : lse_buf.data();
  st.head_steps = 1;
  st.context_tokens = n;
  const bool wave = config.policy == Policy::kWave && hi.wave && hi.wave->size() == n;
  if (config.policy == Policy::kFull || (config.policy == Policy::kWave && !wave)) {
    const auto t0 = Clock::now();
    cpu::attend_full<T>(qg, K, V, scale, og, lse);
    st.exact_seconds = detail::seconds_between(t0, Clock::now());
    st.exact_tokens = st.steady_tokens = n;
    return;
  }
  if (wave) {
    // The wave index runs its own tripartite step (steady + retrieval exact, estimation zone
    // from centroids, LSE-merged); it is timed as one, in exact_seconds.
    const WaveParams wp = detail::store_wave_params(pp);
    WaveStats ws;
    const auto t0 = Clock::now();
    hi.wave->attend(qg, scale, og, lse, &ws, &wp.budget);
    st.exact_seconds = detail::seconds_between(t0, Clock::now());
    st.steady_tokens = ws.steady_tokens;
    st.selected_tokens = ws.retrieval_tokens;
    st.keys_scanned = ws.n_clusters;
    st.estimated_clusters = ws.estimation_clusters;
    st.estimated_tokens = ws.estimation_tokens;
    st.exact_tokens = st.steady_tokens + st.selected_tokens;
    return;
  }
  // states (2, g, d): steady, selected (exact); lses (2, g) natural-log. (Not allocated on the
  // wave path above, whose step keeps its buffers in per-thread scratch.)
  const int zones = 2;
  std::vector<float> states(static_cast<size_t>(zones) * g * d),
      lses(static_cast<size_t>(zones) * g);
  auto state = [&](int z) { return MatrixView<float>(states.data() + z * g * d, g, d); };
  {
    const int64_t n_sink = pp.n_sink;
    const int64_t sink_end = std::min(n_sink, n);
    const int64_t idx_end = std::clamp(hi.indexed_end, n_sink, std::max(n, n_sink));
    const int64_t tail_begin = std::max(sink_end, std::min(idx_end, n));
    const int64_t available = std::max<int64_t>(0, std::min(idx_end, n) - n_sink);
    const int64_t budget = pp.budget_for(n, available);
    auto t0 = Clock::now();
    const std::vector<int32_t> selected = detail::select_tokens<T>(
        hi, config.policy, pp, qg, K, n_sink, n_sink + available, budget, &st.keys_scanned);
    auto t1 = Clock::now();
    std::vector<int32_t> steady;
    steady.reserve(static_cast<size_t>(sink_end + n - tail_begin));
    for (int64_t i = 0; i < sink_end; ++i) steady.push_back(static_cast<int32_t>(i));
    for (int64_t i = tail_begin; i < n; ++i) steady.push_back(static_cast<int32_t>(i));
    cpu::attend_ids<T>(qg, K, V, steady.data(), static_cast<int64_t>(steady.size()), scale,
                       state(0), lses.data());
    cpu::attend_ids<T>(qg, K, V, selected.data(), static_cast<int64_t>(selected.size()), scale,
                       state(1), lses.data() + g);
    auto t2 = Clock::now();
    st.select_seconds = detail::seconds_between(t0, t1);
    st.exact_seconds = detail::seconds_between(t1, t2);
    st.steady_tokens = static_cast<int64_t>(steady.size());
    st.selected_tokens = static_cast<int64_t>(selected.size());
  }
  const auto t0 = Clock::now();
  std::vector<float> o3(static_cast<size_t>(zones) * d);
  for (int hh = 0; hh < g; ++hh) {
    float l[3];
    for (int z = 0; z < zones; ++z) {
      std::copy(state(z).row(hh), state(z).row(hh) + d, o3.data() + z * d);
      l[z] = lses[z * g + hh];
    }
    lse[hh] = merge_states_n(o3.data(), l, zones, d, og.row(hh));
  }
  st.merge_seconds = detail::seconds_between(t0, Clock::now());
  st.exact_tokens = st.steady_tokens + st.selected_tokens;
}

// The hybrid decode step of one GQA group qg (g, d) over one KV head of a layer: exact steady
// zone, exact selection, wave estimate, natural-log LSE merge. Writes og (g, d), lse (g).
inline void attend_head(const StoreConfig& config, const StoreLayer& L, int h,
                        ConstMatrixView<float> qg, MatrixView<float> og, float* lse_out,
                        LayerStats& st) {
  dispatch_dtype(config.kv_dtype, [&](auto tag) {
    using T = decltype(tag);
    attend_head_typed<T>(config, L, h, qg, og, lse_out, st);
  });
}

// The decode step of one layer for a batch: layers[i] (locked by the caller, its build waited
// for, holding positions) attends row i of q (b, n_q_heads * d) into out, or with q_heads /
// out_heads set (b = 1) the (n_q_heads, d) views; lse (optional) gets b * n_q_heads natural-log
// LSEs. Returns the stats of the whole batch.
inline LayerStats attend_layers(const StoreConfig& config, int threads,
                                const std::vector<StoreLayer*>& layers, ConstMatrixView<float> q,
                                MatrixView<float> out, float* lse,
                                const ConstMatrixView<float>* q_heads,
                                const MatrixView<float>* out_heads) {
  const int d = config.head_dim, Hq = config.n_q_heads, H = config.n_kv_heads;
  const int64_t b = static_cast<int64_t>(layers.size());
  // One work item per (sequence, KV head); results do not depend on the thread count.
  const int64_t items = b * H;
  std::vector<LayerStats> item_stats(static_cast<size_t>(items));
  auto run = [&](int64_t it) {
    const int64_t i = it / H;
    const int h = static_cast<int>(it % H);
    const int g = config.group_size();
    const float* qp = q_heads ? q_heads->row(int64_t{h} * g) : q.row(i) + int64_t{h} * g * d;
    const int64_t qld = q_heads ? q_heads->ld : d;
    float* op = out_heads ? out_heads->row(int64_t{h} * g) : out.row(i) + int64_t{h} * g * d;
    const int64_t old = out_heads ? out_heads->ld : d;
    attend_head(config, *layers[i], h, ConstMatrixView<float>(qp, g, d, qld),
                MatrixView<float>(op, g, d, old), lse ? lse + i * Hq + int64_t{h} * g : nullptr,
                item_stats[it]);
  };
  if (items == 1 || threads == 1 || omp_in_parallel()) {
    for (int64_t i = 0; i < b; ++i) {
      // The wave policy runs the KV heads of a sequence as one interleaved batch (see
      // WaveIndex::attend_steps): equal results, fewer cold-miss stalls.
      if (attend_wave_heads(config, *layers[i], q_heads ? *q_heads : q.slice_rows(i, 1),
                            out_heads ? *out_heads : out.slice_rows(i, 1), q_heads != nullptr,
                            lse ? lse + i * Hq : nullptr, item_stats.data() + i * H))
        continue;
      for (int h = 0; h < H; ++h) run(i * H + h);
    }
  } else {
    std::exception_ptr error;
    std::mutex error_mutex;
#pragma omp parallel for schedule(dynamic, 1) num_threads(std::min <int64_t>(threads, items))
    for (int64_t it = 0; it < items; ++it) {
      try {
        run(it);
      } catch (...) {
        std::lock_guard g(error_mutex);
        if (!error) error = std::current_exception();
      }
    }
    if (error) std::rethrow_exception(error);
  }
  LayerStats st;
  st.attend_calls = b;
  for (const auto& s : item_stats) st.add(s);
  return st;
}

}  // namespace retrokv::detail
