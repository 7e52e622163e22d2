// StoreAttentionBackend (store_backend.h): exact prefill from a dense cache, lazy store build at
// the first decode, sparse decode through the KVVectorStore.
#include "retrokv/engine/store_backend.h"

#include <chrono>
#include <utility>

namespace retrokv::engine {

namespace {
StoreConfig with_shape(StoreConfig c, const AttentionShape& s) {
  s.validate();
  c.n_layers = s.n_layers;
  c.n_q_heads = s.n_q_heads;
  c.n_kv_heads = s.n_kv_heads;
  c.head_dim = s.head_dim;
  c.scale = s.scale;
  return c;
}
}  // namespace

StoreAttentionBackend::StoreAttentionBackend(const AttentionShape& shape, StoreConfig config)
    : shape_(shape),
      store_(std::make_unique<KVVectorStore>(with_shape(std::move(config), shape))),
      prompt_(shape) {
  seq_ = store_->add_sequence();
  q_.resize(static_cast<size_t>(shape_.n_layers));
  loaded_.assign(static_cast<size_t>(shape_.n_layers), 0);
}

void StoreAttentionBackend::check_layer(int layer) const {
  RETROKV_CHECK(layer >= 0 && layer < shape_.n_layers, "layer: expected [0, ", shape_.n_layers,
                "), got ", layer);
}

int64_t StoreAttentionBackend::size(int layer) const {
  check_layer(layer);
  return built_ || loaded_[layer] ? store_->sequence_length(seq_, layer) : prompt_.size(layer);
}

void StoreAttentionBackend::reset() {
  store_->remove_sequence(seq_);
  seq_ = store_->add_sequence();
  prompt_.reset();
  for (auto& q : q_) std::vector<float>().swap(q);
  built_ = false;
  loaded_.assign(loaded_.size(), 0);
  reset_stats();
}

void StoreAttentionBackend::reset_stats() {
  store_->reset_stats();
  decode_seconds_ = 0;
}

void StoreAttentionBackend::prefill(int layer, ConstMatrixView<float> q, ConstMatrixView<float> k,
                                    ConstMatrixView<float> v, MatrixView<float> out) {
  check_layer(layer);
  RETROKV_CHECK(built_ || !loaded_[layer], "layer: ", layer,
                " was given its prompt by load_prompt; decode it before prefilling more");
  if (!built_) {
    // Shapes are checked by the dense backend before anything is kept.
    prompt_.prefill(layer, q, k, v, out);
    std::vector<float>& dst = q_[layer];
    for (int64_t i = 0; i < q.rows; ++i) dst.insert(dst.end(), q.row(i), q.row(i) + q.cols);
    return;
  }
  RETROKV_CHECK(q.cols == shape_.q_width() && out.rows == q.rows && out.cols == q.cols,
                "q: expected ", "(n, ", shape_.q_width(), ") with out of the same shape, got q (",
                q.rows, ", ", q.cols, "), out (", out.rows, ", ", out.cols, ")");
  RETROKV_CHECK(k.rows == q.rows && v.rows == q.rows, "k, v: expected ", q.rows, " rows as q, got ",
                k.rows, " and ", v.rows);
  for (int64_t i = 0; i < q.rows; ++i) decode(layer, q.row(i), k.row(i), v.row(i), out.row(i));
}

void StoreAttentionBackend::load_prompt(int layer, ConstMatrixView<float> q,
                                        ConstMatrixView<float> k, ConstMatrixView<float> v) {
  check_layer(layer);
  RETROKV_CHECK(!built_ && !loaded_[layer] && prompt_.size(layer) == 0, "layer: ", layer,
                " already holds positions; load_prompt gives a layer its whole prompt once, "
                "before any prefill or decode");
  RETROKV_CHECK(q.rows == 0 || q.rows == k.rows, "q: expected ", k.rows,
                " rows as k (or none: no training queries), got ", q.rows);
  // The store checks the shapes and values and copies K, V and the training queries.
  store_->prefill(seq_, layer, k, v, q);
  loaded_[layer] = 1;
}

void StoreAttentionBackend::build_store() {
  const int H = shape_.n_kv_heads, Hq = shape_.n_q_heads, d = shape_.head_dim;
  for (int l = 0; l < shape_.n_layers; ++l) {
    const int64_t n = prompt_.size(l);
    if (n == 0 || loaded_[l]) continue;  // no prompt (starts with append) or loaded already
    std::vector<ConstMatrixView<float>> kh, vh, qh;
    for (int h = 0; h < H; ++h) {
      kh.push_back(prompt_.keys(l, h));
      vh.push_back(prompt_.values(l, h));
    }
    const int64_t qw = shape_.q_width();
    for (int h = 0; h < Hq; ++h) qh.emplace_back(q_[l].data() + int64_t{h} * d, n, d, qw);
    // prefill copies K, V and the training queries before it returns (the build may run on).
    store_->prefill_heads(seq_, l, kh, vh, qh);
    std::vector<float>().swap(q_[l]);
  }
  prompt_.reset();
  built_ = true;
}

void StoreAttentionBackend::finish_prefill() {
  if (!built_) build_store();
  store_->wait(seq_);
}

void StoreAttentionBackend::decode(int layer, const float* q, const float* k, const float* v,
                                   float* out) {
  check_layer(layer);
  RETROKV_CHECK(q && k && v && out, "q, k, v, out: expected non-null pointers");
  if (!built_) build_store();
  const auto t0 = std::chrono::steady_clock::now();
  store_->append(seq_, layer, k, v);
  store_->attend(seq_, layer, q, out);
  decode_seconds_ += std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
}

}  // namespace retrokv::engine
