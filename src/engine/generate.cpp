// Sampling and the generation loop (generate.h).
#include "retrokv/engine/generate.h"

#include <algorithm>
#include <chrono>
#include <cmath>

#include "retrokv/core/error.h"

namespace retrokv::engine {

int32_t argmax(std::span<const float> logits) {
  RETROKV_CHECK(!logits.empty(), "logits: expected a non-empty vector");
  return static_cast<int32_t>(std::max_element(logits.begin(), logits.end()) - logits.begin());
}

Sampler::Sampler(const SamplingParams& params) : params_(params), rng_(params.seed) {
  RETROKV_CHECK(params.temperature >= 0 && std::isfinite(params.temperature),
                "temperature: expected >= 0, got ", params.temperature);
  RETROKV_CHECK(params.top_k >= 0, "top_k: expected >= 0, got ", params.top_k);
}

int32_t Sampler::sample(std::span<const float> logits) {
  if (params_.temperature == 0.0f) return argmax(logits);
  scratch_.clear();
  for (std::size_t i = 0; i < logits.size(); ++i)
    scratch_.emplace_back(logits[i], static_cast<int32_t>(i));
  std::size_t keep = scratch_.size();
  if (params_.top_k > 0 && static_cast<std::size_t>(params_.top_k) < keep) {
    keep = static_cast<std::size_t>(params_.top_k);
    std::partial_sort(scratch_.begin(), scratch_.begin() + static_cast<std::ptrdiff_t>(keep),
                      scratch_.end(), [](auto& a, auto& b) { return a.first > b.first; });
  }
  float m = -INFINITY;
  for (std::size_t i = 0; i < keep; ++i) m = std::max(m, scratch_[i].first);
  double total = 0;
  std::vector<double> w(keep);
  for (std::size_t i = 0; i < keep; ++i) {
    w[i] = std::exp((static_cast<double>(scratch_[i].first) - m) / params_.temperature);
    total += w[i];
  }
  std::uniform_real_distribution<double> u(0.0, total);
  double x = u(rng_);
  for (std::size_t i = 0; i < keep; ++i) {
    if (x < w[i]) return scratch_[i].second;
    x -= w[i];
  }
  return scratch_[keep - 1].second;
}

std::vector<int32_t> generate(LlamaModel& model, AttentionBackend& backend,
                              std::span<const int32_t> prompt, int max_new_tokens, Sampler& sampler,
                              int32_t stop_id, GenerationStats* stats,
                              const std::function<void(int32_t)>& on_token) {
  RETROKV_CHECK(!prompt.empty(), "prompt: expected at least one token, got 0");
  RETROKV_CHECK(max_new_tokens >= 0, "max_new_tokens: expected >= 0, got ", max_new_tokens);
  using Clock = std::chrono::steady_clock;
  GenerationStats st;
  st.n_prompt = static_cast<int64_t>(prompt.size());
  std::vector<int32_t> out;
  const auto t0 = Clock::now();
  Matrix<float> logits = model.forward(prompt, backend, false);
  const auto t1 = Clock::now();
  st.prefill_seconds = std::chrono::duration<double>(t1 - t0).count();
  std::vector<float> next(logits.data(), logits.data() + logits.cols());
  for (int i = 0; i < max_new_tokens; ++i) {
    const int32_t tok = sampler.sample(next);
    out.push_back(tok);
    if (on_token) on_token(tok);
    if (tok == stop_id || i + 1 == max_new_tokens) break;
    next = model.decode(tok, backend);
  }
  st.decode_seconds = std::chrono::duration<double>(Clock::now() - t1).count();
  st.n_generated = static_cast<int64_t>(out.size());
  if (stats) *stats = st;
  return out;
}

}  // namespace retrokv::engine
