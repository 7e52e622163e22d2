// The KVVectorStore as the SmolLM2 engine's attention backend (issue 7, "End to end on SmolLM2";
// DESIGN.md section 2, "engine"): the prompt is attended exactly during prefill, as in
// RetrievalAttention and RetroInfer; decode goes through the store's sparse policy.
#pragma once

#include <memory>
#include <vector>

#include "retrokv/engine/attention_backend.h"
#include "retrokv/engine/full_attention_backend.h"
#include "retrokv/store/kv_vector_store.h"

namespace retrokv::engine {

/// One sequence of a KVVectorStore behind the AttentionBackend interface.
///
/// Prefill: the engine prefills a prompt in chunks (LlamaModel::chunk_size()); every chunk is
/// attended exactly (causally) from a dense cache, and its Q rows are kept. The store is built
/// lazily at the first decode: store.prefill(K, V, Q) of the whole prompt for every layer at once
/// (so each layer's index build can overlap the next layers' work when config.async_build), then
/// the dense cache and the Q rows are freed. A prefill after decode has started appends and
/// attends its rows one at a time through the store (causal, but sparse).
///
/// Decode: store.append(k, v) then store.attend(q) (the token attends to itself).
class StoreAttentionBackend : public AttentionBackend {
 public:
  /// `config` gives the policy and its parameters; its shape fields (layers, heads, head_dim,
  /// scale) are overwritten from `shape`.
  StoreAttentionBackend(const AttentionShape& shape, StoreConfig config);

  std::string name() const override { return policy_name(store_->config().policy); }
  const AttentionShape& shape() const override { return shape_; }
  void prefill(int layer, ConstMatrixView<float> q, ConstMatrixView<float> k,
               ConstMatrixView<float> v, MatrixView<float> out) override;
  void decode(int layer, const float* q, const float* k, const float* v, float* out) override;
  int64_t size(int layer) const override;
  void reset() override;

  /// Hands a layer's whole prompt straight to the store, without computing its attention outputs:
  /// for replaying a prompt whose outputs are already known (e.g. captured from a full-attention
  /// prefill, which is exact for every policy). q (n, q_width), k, v (n, kv_width), n >= 1; the
  /// layer must hold no positions yet. Returns once the store has copied them (the index build
  /// may run on in the background; finish_prefill() waits for it).
  void load_prompt(int layer, ConstMatrixView<float> q, ConstMatrixView<float> k,
                   ConstMatrixView<float> v);

  /// Ends the prompt now instead of at the first decode: hands it to the store and waits for the
  /// index builds (so a caller can time decode apart from the build). Idempotent.
  void finish_prefill();

  /// Store statistics summed over layers since construction, reset() or reset_stats(); decode
  /// steps only (prefill is exact and not counted). exact_fraction() is the share of the context
  /// attended exactly.
  LayerStats stats() const { return store_->total_stats(); }
  void reset_stats();
  /// Wall seconds spent in decode() (append + attend, every layer) since the last reset_stats().
  double decode_attention_seconds() const { return decode_seconds_; }
  KVVectorStore& store() { return *store_; }

 private:
  void check_layer(int layer) const;
  // Hands the prompt of every layer not yet in the store to store.prefill.
  void build_store();

  AttentionShape shape_;
  std::unique_ptr<KVVectorStore> store_;
  SeqId seq_ = 0;
  FullAttentionBackend prompt_;        // dense cache of the prompt until the store is built
  std::vector<std::vector<float>> q_;  // per layer: prompt queries (n, q_width), row-major
  bool built_ = false;
  std::vector<char> loaded_;  // per layer: prompt given by load_prompt (already in the store)
  double decode_seconds_ = 0;
};

}  // namespace retrokv::engine
