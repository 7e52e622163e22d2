// Shared by the model-driven subcommands (e2e, passkey): prefill a long prompt once with full
// attention, capture its post-RoPE Q, K, V per layer, and replay them into each store backend.
// Prefill is exact for every backend (RetrievalAttention and RetroInfer attend the prompt
// densely), so re-running the model over an 8K prompt per backend would only repeat the same
// work: the replay hands the captured K, V (and Q, RoarGraph's training queries) straight to the
// store, and the decode that follows continues from the captured last-position logits.
#pragma once

#include <CLI/CLI.hpp>
#include <cstdint>
#include <istream>
#include <ostream>
#include <span>
#include <string>
#include <vector>

#include "retrokv/core/error.h"
#include "retrokv/core/view.h"
#include "retrokv/engine/attention_backend.h"
#include "retrokv/engine/llama_model.h"
#include "retrokv/engine/store_backend.h"
#include "retrokv/store/store_config.h"

namespace retrokv::eval {

/// The prompt's post-RoPE Q, K, V per layer and the logits after its last position.
struct CapturedPrompt {
  std::vector<std::vector<float>> q, k, v;  // per layer, (n, width) row-major
  int64_t n = 0;
  int q_width = 0, kv_width = 0;
  std::vector<float> last_logits;

  ConstMatrixView<float> Q(int layer) const { return {q[layer].data(), n, q_width}; }
  ConstMatrixView<float> K(int layer) const { return {k[layer].data(), n, kv_width}; }
  ConstMatrixView<float> V(int layer) const { return {v[layer].data(), n, kv_width}; }
  /// Host bytes held (Q, K, V of every layer).
  int64_t bytes() const {
    int64_t b = 0;
    for (size_t l = 0; l < q.size(); ++l) b += 4 * int64_t(q[l].size() + k[l].size() + v[l].size());
    return b;
  }
};

namespace detail {
template <typename T>
void write_vec(std::ostream& out, const std::vector<T>& v) {
  const uint64_t n = v.size();
  out.write(reinterpret_cast<const char*>(&n), sizeof n);
  out.write(reinterpret_cast<const char*>(v.data()), static_cast<std::streamsize>(n * sizeof(T)));
}
template <typename T>
std::vector<T> read_vec(std::istream& in, uint64_t max_n) {
  uint64_t n = 0;
  in.read(reinterpret_cast<char*>(&n), sizeof n);
  RETROKV_CHECK(in.good() && n <= max_n, "cache: truncated or corrupt file");
  std::vector<T> v(n);
  in.read(reinterpret_cast<char*>(v.data()), static_cast<std::streamsize>(n * sizeof(T)));
  RETROKV_CHECK(in.good(), "cache: truncated file");
  return v;
}
}  // namespace detail

/// Writes a capture to `out` after `key` (what it was made from: the prompt ids and whatever
/// else the caller wants checked on load). A scratch cache for repeated experiments, not a
/// format: no versioning beyond the key.
inline void write_capture(std::ostream& out, const std::vector<int32_t>& key,
                          const CapturedPrompt& cap) {
  detail::write_vec(out, key);
  const int64_t head[3] = {cap.n, cap.q_width, cap.kv_width};
  out.write(reinterpret_cast<const char*>(head), sizeof head);
  detail::write_vec(out, cap.last_logits);
  const uint64_t layers = cap.k.size();
  out.write(reinterpret_cast<const char*>(&layers), sizeof layers);
  for (uint64_t l = 0; l < layers; ++l) {
    detail::write_vec(out, cap.q[l]);
    detail::write_vec(out, cap.k[l]);
    detail::write_vec(out, cap.v[l]);
  }
}

/// Reads what write_capture wrote; false (and nothing read past the key) when the key differs.
inline bool read_capture(std::istream& in, const std::vector<int32_t>& key, CapturedPrompt& cap) {
  if (detail::read_vec<int32_t>(in, uint64_t{1} << 32) != key) return false;
  int64_t head[3];
  in.read(reinterpret_cast<char*>(head), sizeof head);
  cap.n = head[0];
  cap.q_width = static_cast<int>(head[1]);
  cap.kv_width = static_cast<int>(head[2]);
  cap.last_logits = detail::read_vec<float>(in, uint64_t{1} << 32);
  uint64_t layers = 0;
  in.read(reinterpret_cast<char*>(&layers), sizeof layers);
  RETROKV_CHECK(in.good() && layers < 4096, "cache: corrupt file");
  cap.q.resize(layers);
  cap.k.resize(layers);
  cap.v.resize(layers);
  for (uint64_t l = 0; l < layers; ++l) {
    cap.q[l] = detail::read_vec<float>(in, uint64_t{1} << 40);
    cap.k[l] = detail::read_vec<float>(in, uint64_t{1} << 40);
    cap.v[l] = detail::read_vec<float>(in, uint64_t{1} << 40);
  }
  return true;
}

/// Runs `prompt` through `model` with `backend` (normally full attention, which then holds the
/// prompt and can keep decoding) and captures what every layer projected. `keep_q` false skips
/// the queries (only RoarGraph trains on them; they are 3x the KV of a GQA-3 model).
inline CapturedPrompt capture_prompt(engine::LlamaModel& model, std::span<const int32_t> prompt,
                                     engine::AttentionBackend& backend, bool keep_q = true) {
  const engine::AttentionShape shape = model.attention_shape();
  RETROKV_CHECK(backend.size(0) == 0, "backend: expected an empty backend, it holds ",
                backend.size(0), " positions");
  CapturedPrompt cap;
  cap.q.resize(shape.n_layers);
  cap.k.resize(shape.n_layers);
  cap.v.resize(shape.n_layers);
  cap.n = static_cast<int64_t>(prompt.size());
  cap.q_width = keep_q ? shape.q_width() : 0;
  cap.kv_width = shape.kv_width();
  for (int l = 0; l < shape.n_layers; ++l) {
    if (keep_q) cap.q[l].reserve(static_cast<size_t>(cap.n * shape.q_width()));
    cap.k[l].reserve(static_cast<size_t>(cap.n * shape.kv_width()));
    cap.v[l].reserve(static_cast<size_t>(cap.n * shape.kv_width()));
  }
  auto keep = [](std::vector<float>& dst, ConstMatrixView<float> m) {
    for (int64_t i = 0; i < m.rows; ++i) dst.insert(dst.end(), m.row(i), m.row(i) + m.cols);
  };
  model.set_qkv_observer([&](int layer, int64_t, ConstMatrixView<float> q, ConstMatrixView<float> k,
                             ConstMatrixView<float> v) {
    if (keep_q) keep(cap.q[layer], q);
    keep(cap.k[layer], k);
    keep(cap.v[layer], v);
  });
  try {
    const Matrix<float> last = model.forward(prompt, backend);
    cap.last_logits.assign(last.data(), last.data() + last.cols());
  } catch (...) {
    model.set_qkv_observer({});
    throw;
  }
  model.set_qkv_observer({});
  return cap;
}

/// Gives every layer of an empty store backend the captured prompt (no attention is computed);
/// the index builds run as the store's config says. Call store.finish_prefill() to wait for them.
inline void replay_prompt(const CapturedPrompt& cap, engine::StoreAttentionBackend& store) {
  const engine::AttentionShape& shape = store.shape();
  RETROKV_CHECK(
      static_cast<int>(cap.k.size()) == shape.n_layers && cap.kv_width == shape.kv_width(),
      "cap: captured with another model shape");
  for (int l = 0; l < shape.n_layers; ++l) {
    const ConstMatrixView<float> q =
        cap.q_width > 0 ? cap.Q(l) : ConstMatrixView<float>(nullptr, 0, shape.q_width());
    store.load_prompt(l, q, cap.K(l), cap.V(l));
  }
}

/// Store parameters the model-driven subcommands share (--budget, --update-interval, ...).
struct StoreOptions {
  PolicyParams defaults;
  int n_local = defaults.n_local;
  int n_sink = defaults.n_sink;
  int64_t update_interval = defaults.update_interval;
  int64_t max_train_queries = 0;
  int roar_ef = defaults.roar_ef;
  int roar_L = 0;
  int threads = 0;
  bool async_build = false;
  std::string wave_estimator = "centroid";
  int wave_bits = 4;

  void add_to(CLI::App& app) {
    app.add_option("--n-local", n_local, "steady zone: most recent tokens always exact")
        ->check(CLI::NonNegativeNumber)
        ->capture_default_str();
    app.add_option("--n-sink", n_sink, "steady zone: first tokens always exact")
        ->check(CLI::NonNegativeNumber)
        ->capture_default_str();
    app.add_option("--update-interval", update_interval,
                   "appended tokens between index updates (they are exact until then)")
        ->check(CLI::PositiveNumber)
        ->capture_default_str();
    app.add_option("--max-train-queries", max_train_queries,
                   "RoarGraph: at most this many training queries per KV head (0 = all n * group)")
        ->check(CLI::NonNegativeNumber)
        ->capture_default_str();
    app.add_option("--roar-ef", roar_ef, "RoarGraph search beam (0 = max(index ef, budget))")
        ->check(CLI::NonNegativeNumber)
        ->capture_default_str();
    app.add_option("--roar-L", roar_L,
                   "RoarGraph build beam of the fill pass and inserts (0 = index default)")
        ->check(CLI::NonNegativeNumber);
    app.add_option("--threads", threads, "store threads (0 = OpenMP default)")
        ->check(CLI::NonNegativeNumber);
    app.add_option("--wave-estimator", wave_estimator,
                   "wave estimation zone: centroid (RetroInfer's formula), variance, or quantized "
                   "(every zone token from --wave-bits codes; more memory, lower error)")
        ->check(CLI::IsMember({"centroid", "variance", "quantized"}))
        ->capture_default_str();
    app.add_option("--wave-bits", wave_bits, "key and value bits of --wave-estimator quantized")
        ->check(CLI::IsMember({2, 4, 8}))
        ->capture_default_str();
    app.add_flag("--async-build", async_build,
                 "build each layer's index on a background thread (overlaps the layers' builds)");
  }

  StoreConfig config(Policy p, double budget_fraction) const {
    StoreConfig c;
    c.policy = p;
    c.params.budget_fraction = budget_fraction;
    c.params.n_local = n_local;
    c.params.n_sink = n_sink;
    c.params.update_interval = update_interval;
    c.params.roar.max_train_queries = max_train_queries;
    c.params.roar_ef = roar_ef;
    if (roar_L > 0) c.params.roar.L = roar_L;
    if (wave_estimator == "variance") c.params.wave.budget.estimator = WaveEstimator::kVariance;
    if (wave_estimator == "quantized") {
      c.params.wave.budget.estimator = WaveEstimator::kQuantized;
      c.params.wave.quantized_zone = true;
      c.params.wave.quant.key_bits = c.params.wave.quant.value_bits = wave_bits;
    }
    c.threads = threads;
    c.async_build = async_build;
    return c;
  }

  /// Backend name in tables and JSON: the policy, with the wave estimator when not the default.
  std::string backend_name(Policy p) const {
    if (p == Policy::kFull) return "full_store";
    if (p == Policy::kWave && wave_estimator == "variance") return "wave_var";
    if (p == Policy::kWave && wave_estimator == "quantized")
      return "wave_q" + std::to_string(wave_bits);
    return policy_name(p);
  }
};

}  // namespace retrokv::eval
