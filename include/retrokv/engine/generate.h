// Token sampling and the prefill-then-decode loop shared by retrokv-generate, retrokv-trace and
// the model tests (SmolLM2 engine, DESIGN.md section 2, "engine").
#pragma once

#include <algorithm>
#include <cstdint>
#include <functional>
#include <random>
#include <span>
#include <vector>

#include "retrokv/engine/attention_backend.h"
#include "retrokv/engine/llama_model.h"

namespace retrokv::engine {

struct SamplingParams {
  float temperature = 0.0f;  ///< 0 = greedy (argmax)
  int top_k = 0;             ///< 0 = whole vocabulary
  uint64_t seed = 0;
};

/// Index of the largest logit (the lowest index among ties).
int32_t argmax(std::span<const float> logits);

/// Draws tokens from logits: argmax when temperature is 0, else softmax(logits / T) restricted to
/// the top_k largest, with a seeded generator (same seed, same draws).
class Sampler {
 public:
  explicit Sampler(const SamplingParams& params);
  int32_t sample(std::span<const float> logits);

 private:
  SamplingParams params_;
  std::mt19937_64 rng_;
  std::vector<std::pair<float, int32_t>> scratch_;
};

struct GenerationStats {
  int64_t n_prompt = 0;
  int64_t n_generated = 0;
  double prefill_seconds = 0;
  double decode_seconds = 0;
  double prefill_tokens_per_second() const {
    return prefill_seconds > 0 ? static_cast<double>(n_prompt) / prefill_seconds : 0;
  }
  /// Decode steps run (n_generated - 1: the last sampled token is not fed back) per second.
  double decode_tokens_per_second() const {
    return decode_seconds > 0
               ? static_cast<double>(std::max<int64_t>(n_generated - 1, 0)) / decode_seconds
               : 0;
  }
};

/// Prefills `prompt` (non-empty) into `backend`, then samples up to max_new_tokens tokens, feeding
/// each back through LlamaModel::decode; stops after sampling `stop_id` (>= 0) if given.
/// `on_token` sees each sampled id as it is produced. Returns the sampled ids.
std::vector<int32_t> generate(LlamaModel& model, AttentionBackend& backend,
                              std::span<const int32_t> prompt, int max_new_tokens, Sampler& sampler,
                              int32_t stop_id = -1, GenerationStats* stats = nullptr,
                              const std::function<void(int32_t)>& on_token = {});

}  // namespace retrokv::engine
