// KVVectorStore: the public C++ API of retrokv (issue 7 "API"; DESIGN.md sections 2 and 4). One
// object owns a model's KV cache as a vector store: per (sequence, layer, KV head) the keys and
// values, an index built after prefill and updated during decode, and the hybrid decode step:
// exact steady zone + the policy's selection (+ the wave estimate), merged by natural-log LSE.
// This is the header users include; the per-layer state and its index build are in
// store_layer.h, the decode step in store_attend.h, the save/load format in sequence_file.h.
#pragma once

#include <omp.h>

#include <algorithm>
#include <atomic>
#include <chrono>
#include <cmath>
#include <cstdint>
#include <future>
#include <map>
#include <memory>
#include <mutex>
#include <shared_mutex>
#include <string>
#include <vector>

#include "retrokv/core/checksum.h"
#include "retrokv/core/error.h"
#include "retrokv/core/view.h"
#include "retrokv/index/wave_index.h"
#include "retrokv/store/head_index.h"
#include "retrokv/store/kv_rows.h"
#include "retrokv/store/sequence_file.h"
#include "retrokv/store/store_attend.h"
#include "retrokv/store/store_config.h"
#include "retrokv/store/store_error.h"
#include "retrokv/store/store_layer.h"
#include "retrokv/store/store_stats.h"

namespace retrokv {

/// Identifies a sequence in a store. Ids are never reused by one store.
using SeqId = int64_t;

namespace detail {

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
      add_stats(layer, detail::build_layer(config_, threads(), L, index_end, train));
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

  static constexpr const char* kFileMagic = detail::kSequenceFileMagic;
  static constexpr uint32_t kFileVersion = detail::kSequenceFileVersion;

  /// Writes the sequence (every layer's KV, indexes and decode state) to a versioned,
  /// checksummed file, atomically. A store with the same shape and policy loads it.
  void save_sequence(SeqId seq, const std::string& path) {
    auto s = find(seq);
    BinaryWriter w(kFileMagic, kFileVersion);
    detail::write_sequence_header(config_, w);
    for (int l = 0; l < config_.n_layers; ++l) {
      detail::StoreLayer& L = *s->layers[l];
      std::lock_guard lock(L.mutex);
      L.wait_build();
      detail::write_sequence_layer(config_, w, L);
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
      detail::read_sequence_header(config_, r, path);
      for (int l = 0; l < config_.n_layers; ++l)
        detail::read_sequence_layer(config_, threads(), r, *s->layers[l], path);
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

  void attend_batch(const std::vector<SeqId>& seqs, int layer, ConstMatrixView<float> q,
                    MatrixView<float> out, float* lse, const ConstMatrixView<float>* q_heads,
                    const MatrixView<float>* out_heads) {
    check_layer(layer);
    const int d = config_.head_dim, Hq = config_.n_q_heads;
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
    add_stats(layer,
              detail::attend_layers(config_, threads(), layers, q, out, lse, q_heads, out_heads));
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
