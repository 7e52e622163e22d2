// The seam between the Llama engine and retrokv's attention: per layer the engine hands the backend
// post-RoPE Q, K, V and gets the attention output back; the backend owns the KV cache. Exact full
// attention is the first backend; RoarGraph / wave index / KVVectorStore plug in behind the same
// interface (DESIGN.md section 2, "engine").
#pragma once

#include <cmath>
#include <cstdint>
#include <string>

#include "retrokv/core/error.h"
#include "retrokv/core/view.h"

namespace retrokv::engine {

/// Shapes of a model's attention: GQA query head h reads KV head h / (n_q_heads / n_kv_heads).
struct AttentionShape {
  int n_layers = 0;
  int n_q_heads = 0;
  int n_kv_heads = 0;
  int head_dim = 0;
  int64_t max_context = 0;  ///< positions the model was trained for (a backend may allow more)
  float scale = 0;          ///< logit scale, 1/sqrt(head_dim) for Llama

  int group_size() const { return n_kv_heads > 0 ? n_q_heads / n_kv_heads : 0; }
  int q_width() const { return n_q_heads * head_dim; }
  int kv_width() const { return n_kv_heads * head_dim; }
  void validate() const {
    RETROKV_CHECK(n_layers > 0 && n_q_heads > 0 && n_kv_heads > 0 && head_dim > 0,
                  "AttentionShape: layers/heads/head_dim must be > 0, got ", n_layers, "/",
                  n_q_heads, "/", n_kv_heads, "/", head_dim);
    RETROKV_CHECK(n_q_heads % n_kv_heads == 0, "AttentionShape: n_q_heads (", n_q_heads,
                  ") must be a multiple of n_kv_heads (", n_kv_heads, ")");
    RETROKV_CHECK(std::isfinite(scale) && scale > 0, "AttentionShape: scale must be > 0, got ",
                  scale);
  }
};

/// Causal self-attention with a KV cache, one instance per sequence. Layers are independent: the
/// engine calls prefill/decode for layer 0, then 1, ... with the same new positions.
class AttentionBackend {
 public:
  virtual ~AttentionBackend() = default;

  virtual std::string name() const = 0;
  virtual const AttentionShape& shape() const = 0;

  /// Appends n new positions to `layer`'s cache and attends causally: new row i sees every cached
  /// position and new rows 0..i. q: (n, n_q_heads * d), k and v: (n, n_kv_heads * d), out:
  /// (n, n_q_heads * d), each row laid out head-major (head h at columns [h*d, (h+1)*d)).
  virtual void prefill(int layer, ConstMatrixView<float> q, ConstMatrixView<float> k,
                       ConstMatrixView<float> v, MatrixView<float> out) = 0;

  /// One new position: q (n_q_heads * d), k and v (n_kv_heads * d), out (n_q_heads * d). The
  /// default forwards to prefill with n = 1; backends with a cheaper decode path override it.
  virtual void decode(int layer, const float* q, const float* k, const float* v, float* out) {
    const AttentionShape& s = shape();
    prefill(layer, ConstMatrixView<float>(q, 1, s.q_width()),
            ConstMatrixView<float>(k, 1, s.kv_width()), ConstMatrixView<float>(v, 1, s.kv_width()),
            MatrixView<float>(out, 1, s.q_width()));
  }

  /// Number of positions cached for `layer`.
  virtual int64_t size(int layer) const = 0;
  /// Forgets every cached position (a new sequence).
  virtual void reset() = 0;
};

}  // namespace retrokv::engine
