// KVVectorStore: the public C++ API of retrokv (issue 7 "API"; DESIGN.md sections 2 and 4). One
// object owns a model's KV cache as a vector store: per (sequence, layer, KV head) the keys and
// values, an index built after prefill and updated during decode, and the hybrid decode step:
// exact steady zone + the policy's selection (+ the wave estimate), merged by natural-log LSE.
#pragma once

#include <omp.h>
#include <unistd.h>

#include <algorithm>
#include <atomic>
#include <chrono>
#include <cmath>
#include <cstdint>
#include <exception>
#include <filesystem>
#include <future>
#include <map>
#include <memory>
#include <mutex>
#include <shared_mutex>
#include <string>
#include <vector>

#include "retrokv/core/attention_state.h"
#include "retrokv/core/checksum.h"
#include "retrokv/core/error.h"
#include "retrokv/core/view.h"
#include "retrokv/cpu/attention.h"
#include "retrokv/store/head_index.h"
#include "retrokv/store/kv_rows.h"
#include "retrokv/store/store_config.h"
#include "retrokv/store/store_error.h"
#include "retrokv/store/store_stats.h"

namespace retrokv {

/// Identifies a sequence in a store. Ids are never reused by one store.
using SeqId = int64_t;

namespace detail {

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

struct StoreSequence {
  std::vector<std::unique_ptr<StoreLayer>> layers;
};

inline double seconds_between(std::chrono::steady_clock::time_point a,
                              std::chrono::steady_clock::time_point b) {
  return std::chrono::duration<double>(b - a).count();
}

inline void check_finite_view(ConstMatrixView<float> m, const char* name) {
  for (int64_t i = 0; i < m.rows; ++i) {
    const float* r = m.row(i);
    for (int64_t j = 0; j < m.cols; ++j)
      RETROKV_CHECK(std::isfinite(r[j]), name, ": expected finite values, got ", r[j], " at (", i,
                    ", ", j, ")");
  }
}

}  // namespace detail

/// The KV cache of a model as a vector store (see the file comment and docs/integration.md).
///
/// Shapes: K, V of a layer are (n, n_kv_heads * d) row-major (KV head h at columns [h*d,
/// (h+1)*d)); Q and attention outputs are (n_q_heads * d) per position, query head h reading KV
/// head h / (n_q_heads / n_kv_heads). Every LSE is natural-log.
///
/// Threading: every method is thread-safe. Calls on the same (sequence, layer) run one at a
/// time; calls on different sequences or layers run concurrently. Index builds run on a
/// background thread when config.async_build is set.
///
/// Errors: bad input throws retrokv::Error (StoreError for an unknown sequence, the memory
/// budget and files) naming the argument, and leaves the store exactly as it was.
class KVVectorStore {
 public:
  explicit KVVectorStore(const StoreConfig& config) : config_(config) {
    config_.validate();
    stats_.resize(static_cast<size_t>(config_.n_layers));
  }
  KVVectorStore(const KVVectorStore&) = delete;
  KVVectorStore& operator=(const KVVectorStore&) = delete;
  /// Waits for every background build.
  ~KVVectorStore() {
    std::unique_lock lock(seqs_mutex_);
    seqs_.clear();
  }

  const StoreConfig& config() const { return config_; }

  // ---- sequences ----------------------------------------------------------------------------

  /// A new empty sequence.
  SeqId add_sequence() {
    auto s = new_sequence();
    std::unique_lock lock(seqs_mutex_);
    const SeqId id = next_id_++;
    seqs_.emplace(id, std::move(s));
    return id;
  }

  /// Frees everything the sequence holds (after its pending builds finish). Unknown id throws
  /// StoreError(kUnknownSequence).
  void remove_sequence(SeqId seq) {
    std::shared_ptr<detail::StoreSequence> victim;
    {
      std::unique_lock lock(seqs_mutex_);
      auto it = seqs_.find(seq);
      if (it == seqs_.end()) unknown_sequence(seq);
      victim = std::move(it->second);
      seqs_.erase(it);
    }
    // Destroyed here (outside the map lock), or by the last call still using it.
  }

  bool has_sequence(SeqId seq) const {
    std::shared_lock lock(seqs_mutex_);
    return seqs_.count(seq) != 0;
  }

  std::vector<SeqId> sequences() const {
    std::shared_lock lock(seqs_mutex_);
    std::vector<SeqId> out;
    for (const auto& kv : seqs_) out.push_back(kv.first);
    return out;
  }

  /// Positions stored for (seq, layer).
  int64_t sequence_length(SeqId seq, int layer) const {
    check_layer(layer);
    auto s = find(seq);
    detail::StoreLayer& L = *s->layers[layer];
    std::lock_guard lock(L.mutex);
    return L.n_tokens;
  }

  // ---- prefill / append / attend ------------------------------------------------------------

  /// Stores the prompt's keys and values K, V (n, n_kv_heads * d), n >= 1, for a layer that has
  /// no positions yet, and builds its index (in the background when config.async_build). Q
  /// (n, n_q_heads * d) are the prompt's queries: RoarGraph trains on the queries of each KV
  /// head's GQA group; other policies ignore them. Q may have 0 rows (RoarGraph then trains on
  /// the keys, which navigates worse for out-of-distribution decode queries).
  void prefill(SeqId seq, int layer, ConstMatrixView<float> K, ConstMatrixView<float> V,
               ConstMatrixView<float> Q) {
    const int d = config_.head_dim;
    RETROKV_CHECK(K.cols == config_.kv_width(),
                  "K: expected (n, n_kv_heads * head_dim = ", config_.kv_width(), ") columns, got ",
                  K.cols);
    RETROKV_CHECK(V.cols == config_.kv_width(),
                  "V: expected (n, n_kv_heads * head_dim = ", config_.kv_width(), ") columns, got ",
                  V.cols);
    RETROKV_CHECK(Q.rows == 0 || Q.cols == config_.q_width(),
                  "Q: expected (n, n_q_heads * head_dim = ", config_.q_width(), ") columns, got ",
                  Q.cols);
    std::vector<ConstMatrixView<float>> kh, vh, qh;
    for (int h = 0; h < config_.n_kv_heads; ++h) {
      kh.emplace_back(K.data + h * d, K.rows, d, K.ld);
      vh.emplace_back(V.data + h * d, V.rows, d, V.ld);
    }
    if (Q.rows > 0)
      for (int h = 0; h < config_.n_q_heads; ++h) qh.emplace_back(Q.data + h * d, Q.rows, d, Q.ld);
    prefill_heads(seq, layer, kh, vh, qh);
  }

  /// prefill() with per-head views: K_heads, V_heads n_kv_heads views (n, d) each; Q_heads
  /// n_q_heads views (n, d) or empty.
  void prefill_heads(SeqId seq, int layer, const std::vector<ConstMatrixView<float>>& K_heads,
                     const std::vector<ConstMatrixView<float>>& V_heads,
                     const std::vector<ConstMatrixView<float>>& Q_heads) {
    check_layer(layer);
    const int H = config_.n_kv_heads, d = config_.head_dim;
    RETROKV_CHECK(static_cast<int>(K_heads.size()) == H, "K: expected ", H,
                  " per-head views (n_kv_heads), got ", K_heads.size());
    RETROKV_CHECK(static_cast<int>(V_heads.size()) == H, "V: expected ", H,
                  " per-head views (n_kv_heads), got ", V_heads.size());
    RETROKV_CHECK(Q_heads.empty() || static_cast<int>(Q_heads.size()) == config_.n_q_heads,
                  "Q: expected ", config_.n_q_heads, " per-head views (n_q_heads) or none, got ",
                  Q_heads.size());
    const int64_t n = K_heads[0].rows;
    RETROKV_CHECK(n >= 1, "K: expected at least one position, got ", n, " rows");
    RETROKV_CHECK(n < (int64_t{1} << 31) - 1, "K: at most 2^31 - 2 positions, got ", n);
    for (int h = 0; h < H; ++h) {
      RETROKV_CHECK(K_heads[h].rows == n && K_heads[h].cols == d, "K: head ", h,
                    " expected shape (", n, ", ", d, "), got (", K_heads[h].rows, ", ",
                    K_heads[h].cols, ")");
      RETROKV_CHECK(V_heads[h].rows == n && V_heads[h].cols == d, "V: head ", h,
                    " expected shape (", n, ", ", d, ") as K, got (", V_heads[h].rows, ", ",
                    V_heads[h].cols, ")");
      detail::check_finite_view(K_heads[h], "K");
      detail::check_finite_view(V_heads[h], "V");
    }
    for (size_t h = 0; h < Q_heads.size(); ++h) {
      RETROKV_CHECK(Q_heads[h].rows == n && Q_heads[h].cols == d, "Q: head ", h,
                    " expected shape (", n, ", ", d, ") as K, got (", Q_heads[h].rows, ", ",
                    Q_heads[h].cols, ")");
      detail::check_finite_view(Q_heads[h], "Q");
    }
    auto s = find(seq);
    detail::StoreLayer& L = *s->layers[layer];
    std::unique_lock lock(L.mutex);
    L.wait_build();
    RETROKV_CHECK(!L.started, "layer: sequence ", seq, " already holds ", L.n_tokens,
                  " positions in layer ", layer, "; prefill once per layer, then append");
    const PolicyParams& pp = config_.params;
    const int64_t index_end = std::max<int64_t>(pp.n_sink, n - pp.n_local);
    const int64_t kv_bytes = 2 * KVRows::initial_capacity(n) * d * dtype_size(config_.kv_dtype) * H;
    const int64_t idx_bytes =
        H * detail::index_bytes_estimate(config_.policy, pp, indexed_count(n, index_end), d);
    const int64_t delta = kv_bytes + idx_bytes;
    reserve_bytes(delta, "prefill");
    std::vector<KVRows> k, v;
    std::vector<Matrix<float>> train(static_cast<size_t>(H));
    try {
      for (int h = 0; h < H; ++h) {
        k.emplace_back(config_.kv_dtype, d);
        v.emplace_back(config_.kv_dtype, d);
        k.back().reserve_extra(n);
        v.back().reserve_extra(n);
        k.back().append_rows(K_heads[h].data, n, K_heads[h].ld);
        v.back().append_rows(V_heads[h].data, n, V_heads[h].ld);
      }
      // RoarGraph's training queries: the prompt queries of each KV head's group, (n * g, d).
      if (config_.policy == Policy::kRoarGraph && !Q_heads.empty()) {
        const int g = config_.group_size();
        for (int h = 0; h < H; ++h) {
          train[h].resize(n * g, d);
          for (int j = 0; j < g; ++j) {
            const ConstMatrixView<float>& q = Q_heads[h * g + j];
            for (int64_t i = 0; i < n; ++i)
              std::copy(q.row(i), q.row(i) + d, train[h].row(j * n + i));
          }
        }
      }
    } catch (...) {
      release_bytes(delta);
      throw;
    }
    L.k = std::move(k);
    L.v = std::move(v);
    L.n_tokens = n;
    L.n_prefill = n;
    L.since_update = 0;
    L.started = true;
    L.accounted += delta;
    if (config_.policy == Policy::kFull) return;
    auto task = [this, &L, layer, index_end, train = std::move(train)]() {
      build_layer(L, layer, index_end, train);
    };
    const bool background = config_.async_build &&
                            (config_.policy == Policy::kRoarGraph ||
                             config_.policy == Policy::kWave || config_.policy == Policy::kQuest);
    if (background) {
      L.build = std::async(std::launch::async, std::move(task));
      return;
    }
    try {
      task();
    } catch (...) {  // undo the prefill: nothing stored, nothing reserved
      L.k.assign(H, KVRows(config_.kv_dtype, d));
      L.v.assign(H, KVRows(config_.kv_dtype, d));
      L.heads.clear();
      L.heads.resize(static_cast<size_t>(H));
      for (auto& hi : L.heads) hi.indexed_end = pp.n_sink;
      L.n_tokens = L.n_prefill = 0;
      L.started = false;
      L.accounted -= delta;
      release_bytes(delta);
      throw;
    }
  }

  /// Appends m >= 1 decode positions k, v (m, n_kv_heads * d) to (seq, layer). Every
  /// update_interval appended positions the index takes in what left the steady zone.
  void append(SeqId seq, int layer, ConstMatrixView<float> k, ConstMatrixView<float> v) {
    check_layer(layer);
    const int H = config_.n_kv_heads, d = config_.head_dim;
    RETROKV_CHECK(k.rows >= 1 && k.cols == config_.kv_width(), "k: expected shape (m >= 1, ",
                  config_.kv_width(), "), got (", k.rows, ", ", k.cols, ")");
    RETROKV_CHECK(v.rows == k.rows && v.cols == k.cols, "v: expected shape (", k.rows, ", ", k.cols,
                  ") as k, got (", v.rows, ", ", v.cols, ")");
    detail::check_finite_view(k, "k");
    detail::check_finite_view(v, "v");
    auto s = find(seq);
    detail::StoreLayer& L = *s->layers[layer];
    std::unique_lock lock(L.mutex);
    L.wait_build();
    const int64_t m = k.rows, n0 = L.n_tokens, n1 = n0 + m;
    RETROKV_CHECK(n1 < (int64_t{1} << 31) - 1, "k: the sequence would exceed 2^31 - 2 positions");
    const PolicyParams& pp = config_.params;
    const Policy policy = config_.policy;
    // Where the index boundary moves (as if positions were appended one at a time).
    const int64_t total = L.since_update + m;
    const bool update =
        policy != Policy::kFull && policy != Policy::kWave && total >= pp.update_interval;
    const int64_t boundary_n = n1 - total % pp.update_interval;
    const int64_t new_end = std::max<int64_t>(pp.n_sink, boundary_n - pp.n_local);
    // Bytes: KV growth, plus the index growth (upper bound).
    int64_t delta = 0;
    for (int h = 0; h < H; ++h)
      delta += 2 * (L.k[h].grown_capacity(m) - L.k[h].capacity()) * L.k[h].row_bytes();
    if (policy == Policy::kWave) {
      delta += H * (detail::index_bytes_estimate(policy, pp, n1, d) -
                    detail::index_bytes_estimate(policy, pp, n0, d));
    } else if (update) {
      for (int h = 0; h < H; ++h) {
        const int64_t old_end = std::max<int64_t>(L.heads[h].indexed_end, pp.n_sink);
        delta += detail::index_bytes_estimate(policy, pp, indexed_count(n1, new_end), d) -
                 detail::index_bytes_estimate(policy, pp, indexed_count(n0, old_end), d);
      }
    }
    delta = std::max<int64_t>(0, delta);
    reserve_bytes(delta, "append");
    try {
      for (int h = 0; h < H; ++h) {
        L.k[h].reserve_extra(m);
        L.v[h].reserve_extra(m);
        if (policy == Policy::kWave && !L.started && !L.heads[h].wave) {
          ConstMatrixView<float> none(nullptr, 0, d);
          L.heads[h].wave = std::make_unique<WaveIndex>(none, none, detail::store_wave_params(pp));
        }
      }
    } catch (...) {
      release_bytes(delta);
      throw;
    }
    // Commit: nothing below can fail for a valid input.
    for (int h = 0; h < H; ++h) {
      L.k[h].append_rows(k.data + h * d, m, k.ld);
      L.v[h].append_rows(v.data + h * d, m, v.ld);
    }
    L.n_tokens = n1;
    L.started = true;
    L.accounted += delta;
    LayerStats st;
    const auto t0 = std::chrono::steady_clock::now();
    if (policy == Policy::kWave) {
      for (int h = 0; h < H; ++h) {
        if (L.heads[h].wave && L.heads[h].wave->size() == n0)
          L.heads[h].wave->append(ConstMatrixView<float>(k.data + h * d, m, d, k.ld),
                                  ConstMatrixView<float>(v.data + h * d, m, d, v.ld));
      }
    } else if (policy != Policy::kFull) {
      L.since_update = update ? total % pp.update_interval : total;
      if (update) {
        for (int h = 0; h < H; ++h) {
          // A failed update (out of memory) keeps the old index, or for RoarGraph drops it
          // (update_head_index): those positions stay in the steady zone and are attended
          // exactly, so the result stays correct. AlignedBuffer reports out-of-memory as Error.
          try {
            const bool fresh = !L.heads[h].roar && !L.heads[h].quest;
            detail::update_head_index(L.heads[h], policy, pp, threads(), L.k[h], pp.n_sink,
                                      new_end);
            (fresh && policy != Policy::kFlatTopK ? st.index_builds : st.index_updates) += 1;
          } catch (const std::bad_alloc&) {
          } catch (const Error&) {
          }
        }
      }
    }
    st.build_seconds = detail::seconds_between(t0, std::chrono::steady_clock::now());
    add_stats(layer, st);
  }

  /// One decode position: k, v (n_kv_heads * d) each.
  void append(SeqId seq, int layer, const float* k, const float* v) {
    RETROKV_CHECK(k != nullptr, "k: null pointer");
    RETROKV_CHECK(v != nullptr, "v: null pointer");
    append(seq, layer, ConstMatrixView<float>(k, 1, config_.kv_width()),
           ConstMatrixView<float>(v, 1, config_.kv_width()));
  }

  /// Decode attention of (seq, layer): q (n_q_heads, d) -> out (n_q_heads, d); lse (optional,
  /// n_q_heads floats) gets the natural-log LSE of the merged state (an estimate when the wave
  /// estimation zone is non-empty). Waits for the layer's background build.
  void attend(SeqId seq, int layer, ConstMatrixView<float> q, MatrixView<float> out,
              float* lse = nullptr) {
    attend_batch(std::vector<SeqId>{seq}, layer, ConstMatrixView<float>(), MatrixView<float>(), lse,
                 &q, &out);
  }

  /// attend() with flat pointers: q and out hold n_q_heads * d floats.
  void attend(SeqId seq, int layer, const float* q, float* out, float* lse = nullptr) {
    RETROKV_CHECK(q != nullptr, "q: null pointer");
    RETROKV_CHECK(out != nullptr, "out: null pointer");
    attend_batch(std::vector<SeqId>{seq}, layer, ConstMatrixView<float>(q, 1, config_.q_width()),
                 MatrixView<float>(out, 1, config_.q_width()), lse);
  }

  /// Batch decode over sequences of different lengths: row i of q (b, n_q_heads * d) attends
  /// over seqs[i]; out (b, n_q_heads * d); lse (optional, b * n_q_heads). Parallel over
  /// (sequence, KV head); equal to b single attends.
  void attend_batch(const std::vector<SeqId>& seqs, int layer, ConstMatrixView<float> q,
                    MatrixView<float> out, float* lse = nullptr) {
    attend_batch(seqs, layer, q, out, lse, nullptr, nullptr);
  }

  /// Waits for the pending background builds of every layer of seq (e.g. before timing).
  void wait(SeqId seq) {
    auto s = find(seq);
    for (auto& L : s->layers) {
      std::lock_guard lock(L->mutex);
      L->wait_build();
    }
  }

  // ---- statistics and memory ----------------------------------------------------------------

  LayerStats stats(int layer) const {
    check_layer(layer);
    std::lock_guard lock(stats_mutex_);
    return stats_[layer];
  }
  /// Sum over all layers.
  LayerStats total_stats() const {
    std::lock_guard lock(stats_mutex_);
    LayerStats t;
    for (const auto& s : stats_) t.add(s);
    return t;
  }
  void reset_stats() {
    std::lock_guard lock(stats_mutex_);
    for (auto& s : stats_) s = LayerStats{};
  }
  /// Host bytes held (KV capacity plus index estimates), as counted against the budget.
  int64_t memory_bytes() const { return used_.load(); }

  // ---- save / load --------------------------------------------------------------------------

  static constexpr const char* kFileMagic = "RKVSEQ01";
  static constexpr uint32_t kFileVersion = 1;

  /// Writes the sequence (every layer's KV, indexes and decode state) to a versioned,
  /// checksummed file, atomically. A store with the same shape and policy loads it.
  void save_sequence(SeqId seq, const std::string& path) {
    auto s = find(seq);
    BinaryWriter w(kFileMagic, kFileVersion);
    write_header(w);
    for (int l = 0; l < config_.n_layers; ++l) {
      detail::StoreLayer& L = *s->layers[l];
      std::lock_guard lock(L.mutex);
      L.wait_build();
      write_layer(w, L);
    }
    try {
      w.save(path);
    } catch (const StoreError&) {
      throw;
    } catch (const Error& e) {
      RETROKV_STORE_FAIL(StoreErrorCode::kFile, "path: ", e.what());
    }
  }

  /// Reads a file written by save_sequence into a new sequence and returns its id. A missing,
  /// truncated or corrupt file, or one saved with another shape / policy / steady zone, throws
  /// StoreError(kFile) naming the path and the mismatch; nothing is added then.
  SeqId load_sequence(const std::string& path) {
    std::shared_ptr<detail::StoreSequence> s = new_sequence();
    int64_t bytes = 0;
    try {
      BinaryReader r = BinaryReader::open(path, kFileMagic, kFileVersion, kFileVersion);
      read_header(r, path);
      for (int l = 0; l < config_.n_layers; ++l) read_layer(r, *s->layers[l], path);
      r.expect_end();
      for (auto& L : s->layers) bytes += layer_bytes(*L);
    } catch (const StoreError&) {
      throw;
    } catch (const Error& e) {
      RETROKV_STORE_FAIL(StoreErrorCode::kFile, "path: ", e.what());
    }
    reserve_bytes(bytes, "load_sequence");
    for (auto& L : s->layers) L->accounted = layer_bytes(*L);
    std::unique_lock lock(seqs_mutex_);
    const SeqId id = next_id_++;
    seqs_.emplace(id, std::move(s));
    return id;
  }

 private:
  int threads() const { return config_.threads > 0 ? config_.threads : omp_get_max_threads(); }

  void check_layer(int layer) const {
    RETROKV_CHECK(layer >= 0 && layer < config_.n_layers, "layer: expected 0 <= layer < ",
                  config_.n_layers, ", got ", layer);
  }

  [[noreturn]] static void unknown_sequence(SeqId seq) {
    RETROKV_STORE_FAIL(StoreErrorCode::kUnknownSequence, "seq: unknown sequence id ", seq,
                       " (never added, or removed)");
  }

  std::shared_ptr<detail::StoreSequence> find(SeqId seq) const {
    std::shared_lock lock(seqs_mutex_);
    auto it = seqs_.find(seq);
    if (it == seqs_.end()) unknown_sequence(seq);
    return it->second;
  }

  std::shared_ptr<detail::StoreSequence> new_sequence() {
    auto s = std::make_shared<detail::StoreSequence>();
    for (int l = 0; l < config_.n_layers; ++l) {
      auto L = std::make_unique<detail::StoreLayer>();
      L->used = &used_;
      L->k.assign(config_.n_kv_heads, KVRows(config_.kv_dtype, config_.head_dim));
      L->v.assign(config_.n_kv_heads, KVRows(config_.kv_dtype, config_.head_dim));
      L->heads.resize(static_cast<size_t>(config_.n_kv_heads));
      for (auto& hi : L->heads) hi.indexed_end = config_.params.n_sink;
      s->layers.push_back(std::move(L));
    }
    return s;
  }

  /// Positions the index holds: all n for the wave index, [n_sink, end) otherwise.
  int64_t indexed_count(int64_t n, int64_t end) const {
    if (config_.policy == Policy::kWave) return n;
    return std::max<int64_t>(0, std::min(end, n) - config_.params.n_sink);
  }

  int64_t layer_bytes(const detail::StoreLayer& L) const {
    int64_t b = 0;
    for (int h = 0; h < config_.n_kv_heads; ++h) {
      b += L.k[h].allocated_bytes() + L.v[h].allocated_bytes();
      b += detail::index_bytes_estimate(config_.policy, config_.params,
                                        indexed_count(L.n_tokens, L.heads[h].indexed_end),
                                        config_.head_dim);
    }
    return b;
  }

  void reserve_bytes(int64_t delta, const char* what) {
    const int64_t budget = config_.host_memory_budget_bytes;
    int64_t cur = used_.load();
    do {
      if (budget > 0 && delta > 0 && cur + delta > budget)
        RETROKV_STORE_FAIL(StoreErrorCode::kMemoryBudget, "host_memory_budget_bytes: ", what,
                           " needs ", delta, " more bytes, the store holds ", cur, " of ", budget);
    } while (!used_.compare_exchange_weak(cur, cur + delta));
  }
  void release_bytes(int64_t delta) { used_.fetch_sub(delta); }

  void add_stats(int layer, const LayerStats& st) {
    std::lock_guard lock(stats_mutex_);
    stats_[layer].add(st);
  }

  // Builds every KV head's index of a freshly prefilled layer (possibly on a background thread;
  // the layer is not touched by anyone else until wait_build()).
  void build_layer(detail::StoreLayer& L, int layer, int64_t index_end,
                   const std::vector<Matrix<float>>& train) {
    const auto t0 = std::chrono::steady_clock::now();
    const PolicyParams& pp = config_.params;
    LayerStats st;
    for (int h = 0; h < config_.n_kv_heads; ++h) {
      detail::HeadIndex& hi = L.heads[h];
      if (config_.policy == Policy::kWave) {
        Matrix<float> keys = detail::rows_to_float(L.k[h], 0, L.n_tokens);
        Matrix<float> values = detail::rows_to_float(L.v[h], 0, L.n_tokens);
        hi.wave =
            std::make_unique<WaveIndex>(keys.view(), values.view(), detail::store_wave_params(pp));
      } else {
        ConstMatrixView<float> tq =
            train[h].rows() > 0 ? train[h].view() : ConstMatrixView<float>();
        detail::build_head_index(hi, config_.policy, pp, threads(), L.k[h], pp.n_sink, index_end,
                                 tq);
      }
      ++st.index_builds;
    }
    st.build_seconds = detail::seconds_between(t0, std::chrono::steady_clock::now());
    add_stats(layer, st);
  }

  void attend_batch(const std::vector<SeqId>& seqs, int layer, ConstMatrixView<float> q,
                    MatrixView<float> out, float* lse, const ConstMatrixView<float>* q_heads,
                    const MatrixView<float>* out_heads) {
    check_layer(layer);
    const int d = config_.head_dim, Hq = config_.n_q_heads, H = config_.n_kv_heads;
    const int64_t b = static_cast<int64_t>(seqs.size());
    RETROKV_CHECK(b >= 1, "seqs: expected at least one sequence, got none");
    if (q_heads) {  // single attend with (n_q_heads, d) views
      RETROKV_CHECK(q_heads->rows == Hq && q_heads->cols == d,
                    "q: expected shape (n_q_heads = ", Hq, ", head_dim = ", d, "), got (",
                    q_heads->rows, ", ", q_heads->cols, ")");
      RETROKV_CHECK(out_heads->rows == Hq && out_heads->cols == d,
                    "out: expected shape (n_q_heads = ", Hq, ", head_dim = ", d, "), got (",
                    out_heads->rows, ", ", out_heads->cols, ")");
      detail::check_finite_view(*q_heads, "q");
    } else {
      RETROKV_CHECK(q.rows == b && q.cols == config_.q_width(), "q: expected shape (", b,
                    ", n_q_heads * head_dim = ", config_.q_width(), "), got (", q.rows, ", ",
                    q.cols, ")");
      RETROKV_CHECK(out.rows == b && out.cols == config_.q_width(), "out: expected shape (", b,
                    ", ", config_.q_width(), "), got (", out.rows, ", ", out.cols, ")");
      detail::check_finite_view(q, "q");
    }
    // Find every sequence first (an unknown id rejects the whole batch), then lock each distinct
    // layer once, in address order, so concurrent batches cannot deadlock.
    std::vector<std::shared_ptr<detail::StoreSequence>> held;
    std::vector<detail::StoreLayer*> layers;
    for (SeqId id : seqs) {
      held.push_back(find(id));
      layers.push_back(held.back()->layers[layer].get());
    }
    std::vector<detail::StoreLayer*> distinct = layers;
    std::sort(distinct.begin(), distinct.end());
    distinct.erase(std::unique(distinct.begin(), distinct.end()), distinct.end());
    std::vector<std::unique_lock<std::mutex>> locks;
    for (auto* L : distinct) locks.emplace_back(L->mutex);
    for (auto* L : distinct) L->wait_build();
    for (int64_t i = 0; i < b; ++i)
      RETROKV_CHECK(layers[i]->n_tokens > 0, "seq: sequence ", seqs[i], " holds no positions in ",
                    "layer ", layer, " (prefill or append first)");
    // One work item per (sequence, KV head); results do not depend on the thread count.
    const int64_t items = b * H;
    std::vector<LayerStats> item_stats(static_cast<size_t>(items));
    auto run = [&](int64_t it) {
      const int64_t i = it / H;
      const int h = static_cast<int>(it % H);
      const int g = config_.group_size();
      const float* qp = q_heads ? q_heads->row(int64_t{h} * g) : q.row(i) + int64_t{h} * g * d;
      const int64_t qld = q_heads ? q_heads->ld : d;
      float* op = out_heads ? out_heads->row(int64_t{h} * g) : out.row(i) + int64_t{h} * g * d;
      const int64_t old = out_heads ? out_heads->ld : d;
      attend_head(*layers[i], h, ConstMatrixView<float>(qp, g, d, qld),
                  MatrixView<float>(op, g, d, old), lse ? lse + i * Hq + int64_t{h} * g : nullptr,
                  item_stats[it]);
    };
    if (items == 1 || threads() == 1 || omp_in_parallel()) {
      for (int64_t i = 0; i < b; ++i) {
        // The wave policy runs the KV heads of a sequence as one interleaved batch (see
        // WaveIndex::attend_steps): equal results, fewer cold-miss stalls.
        if (attend_wave_heads(*layers[i], q_heads ? *q_heads : q.slice_rows(i, 1),
                              out_heads ? *out_heads : out.slice_rows(i, 1), q_heads != nullptr,
                              lse ? lse + i * Hq : nullptr, item_stats.data() + i * H))
          continue;
        for (int h = 0; h < H; ++h) run(i * H + h);
      }
    } else {
      std::exception_ptr error;
      std::mutex error_mutex;
#pragma omp parallel for schedule(dynamic, 1) num_threads(std::min <int64_t>(threads(), items))
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
    add_stats(layer, st);
  }

  // The wave step of every KV head of one sequence at once (WaveIndex::attend_steps), when all
  // of the layer's heads have an index covering all positions; false (nothing done) otherwise.
  // heads: q is (n_q_heads, d) per-head rows (q_heads) or one row (1, n_q_heads * d); out alike.
  // Per-head stats as attend_head's; the batch's time is split evenly over its heads.
  bool attend_wave_heads(const detail::StoreLayer& L, ConstMatrixView<float> q,
                         MatrixView<float> out, bool heads, float* lse_out, LayerStats* st) const {
    // Fixed-size buffers (no allocation per step); larger shapes take the per-head path.
    constexpr int kMaxHeads = 64, kMaxQueryHeads = 512;
    const int H = config_.n_kv_heads, g = config_.group_size(), d = config_.head_dim;
    const bool own_lse = lse_out == nullptr;
    if (config_.policy != Policy::kWave || H > kMaxHeads ||
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
    const WaveParams wp = detail::store_wave_params(config_.params);
    const auto t0 = std::chrono::steady_clock::now();
    WaveIndex::attend_steps(steps, H, config_.effective_scale(), &wp.budget);
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

  // The hybrid decode step of one GQA group qg (g, d) over one KV head of a layer: exact steady
  // zone, exact selection, wave estimate, natural-log LSE merge. Writes og (g, d), lse (g).
  void attend_head(const detail::StoreLayer& L, int h, ConstMatrixView<float> qg,
                   MatrixView<float> og, float* lse_out, LayerStats& st) const {
    dispatch_dtype(config_.kv_dtype, [&](auto tag) {
      using T = decltype(tag);
      attend_head_typed<T>(L, h, qg, og, lse_out, st);
    });
  }

  template <typename T>
  void attend_head_typed(const detail::StoreLayer& L, int h, ConstMatrixView<float> qg,
                         MatrixView<float> og, float* lse_out, LayerStats& st) const {
    using Clock = std::chrono::steady_clock;
    const int g = static_cast<int>(qg.rows), d = config_.head_dim;
    const float scale = config_.effective_scale();
    const PolicyParams& pp = config_.params;
    const detail::HeadIndex& hi = L.heads[h];
    const int64_t n = L.n_tokens;
    const ConstMatrixView<T> K = L.k[h].view<T>(), V = L.v[h].view<T>();
    std::vector<float> lse_buf(static_cast<size_t>(g));
    float* lse = lse_out ? lse_out : lse_buf.data();
    st.head_steps = 1;
    st.context_tokens = n;
    const bool wave = config_.policy == Policy::kWave && hi.wave && hi.wave->size() == n;
    if (config_.policy == Policy::kFull || (config_.policy == Policy::kWave && !wave)) {
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
          hi, config_.policy, pp, qg, K, n_sink, n_sink + available, budget, &st.keys_scanned);
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

  // ---- file format ----------------------------------------------------------------------
  // header: n_layers, n_q_heads, n_kv_heads, head_dim (i32), kv_dtype, policy (u8), n_sink,
  // n_local (i32), update_interval (i64), quest_page_size (i32); per layer: started (bool),
  // n_tokens, n_prefill, since_update (i64); per KV head: indexed_end (i64), K and V bytes,
  // then the index: RoarGraph image / wave image (u64 size + bytes); quest and flat rebuild.

  void write_header(BinaryWriter& w) const {
    w.write<int32_t>(config_.n_layers);
    w.write<int32_t>(config_.n_q_heads);
    w.write<int32_t>(config_.n_kv_heads);
    w.write<int32_t>(config_.head_dim);
    w.write<uint8_t>(static_cast<uint8_t>(config_.kv_dtype));
    w.write<uint8_t>(static_cast<uint8_t>(config_.policy));
    w.write<int32_t>(config_.params.n_sink);
    w.write<int32_t>(config_.params.n_local);
    w.write<int64_t>(config_.params.update_interval);
    w.write<int32_t>(config_.params.quest_page_size);
  }

  void read_header(BinaryReader& r, const std::string& path) const {
    auto expect = [&](const char* field, int64_t saved, int64_t mine) {
      if (saved != mine)
        RETROKV_STORE_FAIL(StoreErrorCode::kFile, "path: '", path, "' was saved with ", field,
                           " = ", saved, ", this store has ", field, " = ", mine);
    };
    expect("n_layers", r.read<int32_t>(), config_.n_layers);
    expect("n_q_heads", r.read<int32_t>(), config_.n_q_heads);
    expect("n_kv_heads", r.read<int32_t>(), config_.n_kv_heads);
    expect("head_dim", r.read<int32_t>(), config_.head_dim);
    const uint8_t dt = r.read<uint8_t>();
    if (dt != static_cast<uint8_t>(config_.kv_dtype))
      RETROKV_STORE_FAIL(StoreErrorCode::kFile, "path: '", path,
                         "' was saved with kv_dtype = ", dtype_name(static_cast<DType>(dt)),
                         ", this store has ", dtype_name(config_.kv_dtype));
    const uint8_t pol = r.read<uint8_t>();
    if (pol != static_cast<uint8_t>(config_.policy))
      RETROKV_STORE_FAIL(StoreErrorCode::kFile, "path: '", path, "' was saved with policy ",
                         policy_name(static_cast<Policy>(pol)), ", this store has ",
                         policy_name(config_.policy));
    expect("params.n_sink", r.read<int32_t>(), config_.params.n_sink);
    expect("params.n_local", r.read<int32_t>(), config_.params.n_local);
    expect("params.update_interval", r.read<int64_t>(), config_.params.update_interval);
    expect("params.quest_page_size", r.read<int32_t>(), config_.params.quest_page_size);
  }

  void write_layer(BinaryWriter& w, const detail::StoreLayer& L) const {
    w.write<bool>(L.started);
    w.write<int64_t>(L.n_tokens);
    w.write<int64_t>(L.n_prefill);
    w.write<int64_t>(L.since_update);
    for (int h = 0; h < config_.n_kv_heads; ++h) {
      const detail::HeadIndex& hi = L.heads[h];
      w.write<int64_t>(hi.indexed_end);
      w.write_bytes(L.k[h].bytes(), static_cast<size_t>(L.n_tokens * L.k[h].row_bytes()));
      w.write_bytes(L.v[h].bytes(), static_cast<size_t>(L.n_tokens * L.v[h].row_bytes()));
      std::vector<uint8_t> image;
      if (hi.roar) image = hi.roar->to_bytes();
      if (hi.wave) image = wave_to_bytes(*hi.wave);
      w.write_vector(image);
    }
  }

  void read_layer(BinaryReader& r, detail::StoreLayer& L, const std::string& path) const {
    const int d = config_.head_dim;
    const PolicyParams& pp = config_.params;
    L.started = r.read<bool>();
    L.n_tokens = r.read<int64_t>();
    L.n_prefill = r.read<int64_t>();
    L.since_update = r.read<int64_t>();
    r.check(L.n_tokens >= 0 && L.n_tokens < (int64_t{1} << 31) - 1 && L.n_prefill >= 0 &&
                L.n_prefill <= L.n_tokens && L.since_update >= 0 &&
                L.since_update < std::max<int64_t>(1, pp.update_interval) &&
                (L.started || L.n_tokens == 0),
            "layer counters");
    for (int h = 0; h < config_.n_kv_heads; ++h) {
      detail::HeadIndex& hi = L.heads[h];
      hi.indexed_end = r.read<int64_t>();
      r.check(hi.indexed_end >= pp.n_sink &&
                  (hi.indexed_end == pp.n_sink || hi.indexed_end <= L.n_tokens),
              "indexed_end ", hi.indexed_end);
      const uint64_t row_bytes = static_cast<uint64_t>(L.k[h].row_bytes());
      r.check(static_cast<uint64_t>(L.n_tokens) <= r.remaining() / (2 * row_bytes), "KV truncated");
      for (KVRows* rows : {&L.k[h], &L.v[h]}) {
        std::vector<uint8_t> raw(static_cast<size_t>(L.n_tokens * row_bytes));
        r.read_bytes(raw.data(), raw.size());
        rows->reserve_extra(L.n_tokens);
        rows->append_bytes(raw.data(), L.n_tokens);
      }
      std::vector<uint8_t> image = r.read_vector<uint8_t>();
      const int64_t indexed =
          std::max<int64_t>(0, std::min(hi.indexed_end, L.n_tokens) - pp.n_sink);
      const Policy p = config_.policy;
      if (p == Policy::kRoarGraph) {
        r.check(image.empty() == (indexed == 0), "RoarGraph image presence");
        if (!image.empty()) {
          hi.roar = std::make_unique<RoarGraphIndex>(RoarGraphIndex::from_bytes(std::move(image)));
          r.check(hi.roar->size() == indexed && hi.roar->dim() == d, "RoarGraph size");
        }
      } else if (p == Policy::kWave) {
        if (!image.empty()) {
          hi.wave = std::make_unique<WaveIndex>(wave_from_bytes(image, path));
          r.check(hi.wave->size() == L.n_tokens && hi.wave->dim() == d, "wave index size");
        }
      } else {
        r.check(image.empty(), "unexpected index image for policy ", policy_name(p));
        if (p == Policy::kQuest && indexed > 0) {
          const int64_t end = hi.indexed_end;
          hi.indexed_end = pp.n_sink;
          detail::build_head_index(hi, p, pp, threads(), L.k[h], pp.n_sink, end,
                                   ConstMatrixView<float>());
        }
      }
    }
    // Stored values must be finite, as the inputs they came from were.
    for (int h = 0; h < config_.n_kv_heads; ++h) {
      for (const KVRows* rows : {&L.k[h], &L.v[h]}) {
        Matrix<float> f = detail::rows_to_float(*rows, 0, rows->rows());
        for (int64_t i = 0; i < f.rows() * f.cols(); ++i)
          r.check(std::isfinite(f.data()[i]), "non-finite stored value");
      }
    }
  }

  // WaveIndex saves to a path only: go through a private temporary file.
  static std::string temp_path(const char* what) {
    static std::atomic<uint64_t> counter{0};
    return (std::filesystem::temp_directory_path() /
            ("retrokv-" + std::string(what) + "-" + std::to_string(::getpid()) + "-" +
             std::to_string(counter.fetch_add(1))))
        .string();
  }
  static std::vector<uint8_t> wave_to_bytes(const WaveIndex& w) {
    const std::string tmp = temp_path("wave-save");
    try {
      w.save(tmp);
      std::vector<uint8_t> bytes = read_file(tmp);
      std::filesystem::remove(tmp);
      return bytes;
    } catch (...) {
      std::error_code ec;
      std::filesystem::remove(tmp, ec);
      throw;
    }
  }
  static WaveIndex wave_from_bytes(const std::vector<uint8_t>& bytes, const std::string& path) {
    const std::string tmp = temp_path("wave-load");
    try {
      write_file_atomic(tmp, bytes.data(), bytes.size());
      WaveIndex w = WaveIndex::load(tmp);
      std::filesystem::remove(tmp);
      return w;
    } catch (const Error& e) {
      std::error_code ec;
      std::filesystem::remove(tmp, ec);
      RETROKV_STORE_FAIL(StoreErrorCode::kFile, "path: '", path, "': wave index: ", e.what());
    }
  }

  StoreConfig config_;
  mutable std::shared_mutex seqs_mutex_;
  std::map<SeqId, std::shared_ptr<detail::StoreSequence>> seqs_;
  SeqId next_id_ = 1;
  std::atomic<int64_t> used_{0};
  mutable std::mutex stats_mutex_;
  std::vector<LayerStats> stats_;
};

}  // namespace retrokv
