// A Llama-architecture decoder (SmolLM2-135M) on the CPU: weights from a GGUF file dequantised once
// to float, batched prefill (Eigen GEMMs) and single-token decode (OpenMP GEMV). Attention is
// delegated to an AttentionBackend, so retrokv's sparse policies run inside a real model
// (DESIGN.md section 2, "engine"; section 5, "Real data").
#pragma once

#include <cstdint>
#include <functional>
#include <span>
#include <string>
#include <utility>
#include <vector>

#include "retrokv/core/view.h"
#include "retrokv/engine/attention_backend.h"
#include "retrokv/engine/gguf.h"

namespace retrokv::engine {

/// Architecture as read from GGUF metadata ("llama.*" keys, vocab size from token_embd).
struct LlamaConfig {
  std::string name;
  int n_layers = 0;
  int d_model = 0;
  int n_heads = 0;
  int n_kv_heads = 0;
  int head_dim = 0;
  int d_ff = 0;
  int vocab_size = 0;
  int64_t context_length = 0;
  int rope_dims = 0;  ///< leading dims of each head that RoPE rotates (= head_dim for SmolLM2)
  float rope_base = 10000.0f;
  float rms_eps = 1e-5f;
  bool tied_embeddings = false;  ///< logits use token_embd when output.weight is absent

  /// Reads and validates the architecture; throws retrokv::Error for a non-llama file or
  /// inconsistent shapes.
  static LlamaConfig from_gguf(const GgufFile& file);
};

/// Called once per layer and forward call with the post-RoPE projections of the new positions
/// [first_pos, first_pos + n): q (n, n_heads * d), k and v (n, n_kv_heads * d). Used for tracing.
using QkvObserver = std::function<void(int layer, int64_t first_pos, ConstMatrixView<float> q,
                                       ConstMatrixView<float> k, ConstMatrixView<float> v)>;

class LlamaModel {
 public:
  /// Dequantises every weight of `file` to float (F32/F16/BF16/Q8_0/Q4_0/Q4_1 tensors).
  explicit LlamaModel(const GgufFile& file);
  /// Opens, parses and loads `path`.
  static LlamaModel load(const std::string& path);

  const LlamaConfig& config() const { return config_; }
  /// The attention shape for a backend serving this model (scale 1/sqrt(head_dim)).
  AttentionShape attention_shape() const;

  /// Runs `tokens` at the positions after what `backend` has cached (backend.size(0)), in chunks
  /// of at most chunk_size() positions. Returns logits (n, vocab) when all_logits, else the last
  /// position's logits (1, vocab).
  Matrix<float> forward(std::span<const int32_t> tokens, AttentionBackend& backend,
                        bool all_logits = false);
  /// One token at position backend.size(0): its logits (vocab).
  std::vector<float> decode(int32_t token, AttentionBackend& backend);

  /// Positions the caller may run: config().context_length (the trained range, 8192 for
  /// SmolLM2) unless set_max_context() raised it. forward()/decode() do not enforce it; callers
  /// that must stay in range check with check_context() (retrokv-trace does).
  int64_t max_context() const { return max_context_ > 0 ? max_context_ : config_.context_length; }
  /// Explicit opt-in to positions beyond the trained context (retrokv-trace
  /// --allow-beyond-context): RoPE there was never trained, so keys and queries are still the
  /// model's own but generation quality is not validated. Also sets attention_shape().max_context.
  /// n >= 1; n = config().context_length restores the default.
  void set_max_context(int64_t n);
  /// Throws retrokv::Error naming `what` when `positions` exceed max_context().
  void check_context(int64_t positions, const std::string& what) const;

  void set_qkv_observer(QkvObserver observer) { observer_ = std::move(observer); }
  int64_t chunk_size() const { return chunk_size_; }
  void set_chunk_size(int64_t n);

 private:
  struct Layer {
    Matrix<float> wq, wk, wv, wo, w_gate, w_up, w_down;  // (out, in)
    std::vector<float> attn_norm, ffn_norm;
  };
  struct Scratch {
    Matrix<float> x, h, q, k, v, att, gate, up;
  };

  void forward_chunk(std::span<const int32_t> tokens, AttentionBackend& backend, bool all_logits,
                     MatrixView<float> logits);
  void rope(MatrixView<float> x, int n_heads, int64_t first_pos) const;

  LlamaConfig config_;
  Matrix<float> embed_;   // (vocab, d_model)
  Matrix<float> output_;  // (vocab, d_model), empty when tied
  std::vector<float> output_norm_;
  std::vector<Layer> layers_;
  std::vector<double> inv_freq_;  // (rope_dims / 2)
  QkvObserver observer_;
  int64_t chunk_size_ = 512;
  int64_t max_context_ = 0;  // 0: config_.context_length
  Scratch s_;
};

}  // namespace retrokv::engine
