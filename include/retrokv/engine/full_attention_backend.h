// Exact causal attention over the whole KV cache: the reference backend every sparse backend is
// measured against (DESIGN.md section 5, "Fidelity"). Keys and values are kept in float, one
// (n, d) array per (layer, KV head).
#pragma once

#include <vector>

#include "retrokv/engine/attention_backend.h"

namespace retrokv::engine {

class FullAttentionBackend : public AttentionBackend {
 public:
  explicit FullAttentionBackend(const AttentionShape& shape);

  std::string name() const override { return "full"; }
  const AttentionShape& shape() const override { return shape_; }
  void prefill(int layer, ConstMatrixView<float> q, ConstMatrixView<float> k,
               ConstMatrixView<float> v, MatrixView<float> out) override;
  void decode(int layer, const float* q, const float* k, const float* v, float* out) override;
  int64_t size(int layer) const override;
  void reset() override;

  /// Cached keys / values of (layer, kv_head): (size(layer), head_dim).
  ConstMatrixView<float> keys(int layer, int kv_head) const;
  ConstMatrixView<float> values(int layer, int kv_head) const;

 private:
  struct Cache {
    std::vector<float> k, v;  // (n, d) each, row-major
  };
  Cache& cache(int layer, int kv_head) { return caches_[layer * shape_.n_kv_heads + kv_head]; }
  const Cache& cache(int layer, int kv_head) const {
    return caches_[layer * shape_.n_kv_heads + kv_head];
  }
  void check_layer(int layer) const;
  void append(int layer, ConstMatrixView<float> k, ConstMatrixView<float> v);

  AttentionShape shape_;
  std::vector<Cache> caches_;
  std::vector<int64_t> lengths_;
};

}  // namespace retrokv::engine
