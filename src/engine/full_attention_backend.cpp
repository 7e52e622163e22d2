// Exact causal attention (full_attention_backend.h). Prefill works on blocks of query rows so a
// long prompt never materialises an (n, n) score matrix; decode goes through retrokv's CPU kernels.
#include "retrokv/engine/full_attention_backend.h"

#include <Eigen/Core>
#include <algorithm>
#include <cmath>
#include <limits>

#include "retrokv/cpu/attention.h"
#include "retrokv/engine/gemm.h"

namespace retrokv::engine {

namespace {
using RowMat = Eigen::Matrix<float, Eigen::Dynamic, Eigen::Dynamic, Eigen::RowMajor>;
constexpr int64_t kQueryBlock = 128;
}  // namespace

FullAttentionBackend::FullAttentionBackend(const AttentionShape& shape) : shape_(shape) {
  shape_.validate();
  caches_.resize(static_cast<std::size_t>(shape_.n_layers) * shape_.n_kv_heads);
  lengths_.assign(static_cast<std::size_t>(shape_.n_layers), 0);
}

void FullAttentionBackend::check_layer(int layer) const {
  RETROKV_CHECK(layer >= 0 && layer < shape_.n_layers, "layer: expected [0, ", shape_.n_layers,
                "), got ", layer);
}

int64_t FullAttentionBackend::size(int layer) const {
  check_layer(layer);
  return lengths_[layer];
}

void FullAttentionBackend::reset() {
  for (Cache& c : caches_) {
    c.k.clear();
    c.v.clear();
  }
  std::fill(lengths_.begin(), lengths_.end(), 0);
}

ConstMatrixView<float> FullAttentionBackend::keys(int layer, int kv_head) const {
  check_layer(layer);
  RETROKV_CHECK(kv_head >= 0 && kv_head < shape_.n_kv_heads, "kv_head: expected [0, ",
                shape_.n_kv_heads, "), got ", kv_head);
  return ConstMatrixView<float>(cache(layer, kv_head).k.data(), lengths_[layer], shape_.head_dim);
}

ConstMatrixView<float> FullAttentionBackend::values(int layer, int kv_head) const {
  check_layer(layer);
  RETROKV_CHECK(kv_head >= 0 && kv_head < shape_.n_kv_heads, "kv_head: expected [0, ",
                shape_.n_kv_heads, "), got ", kv_head);
  return ConstMatrixView<float>(cache(layer, kv_head).v.data(), lengths_[layer], shape_.head_dim);
}

void FullAttentionBackend::append(int layer, ConstMatrixView<float> k, ConstMatrixView<float> v) {
  const int d = shape_.head_dim;
  for (int g = 0; g < shape_.n_kv_heads; ++g) {
    Cache& c = cache(layer, g);
    for (int64_t r = 0; r < k.rows; ++r) {
      c.k.insert(c.k.end(), k.row(r) + g * d, k.row(r) + (g + 1) * d);
      c.v.insert(c.v.end(), v.row(r) + g * d, v.row(r) + (g + 1) * d);
    }
  }
  lengths_[layer] += k.rows;
}

void FullAttentionBackend::prefill(int layer, ConstMatrixView<float> q, ConstMatrixView<float> k,
                                   ConstMatrixView<float> v, MatrixView<float> out) {
  check_layer(layer);
  const int64_t n = q.rows;
  const int d = shape_.head_dim;
  RETROKV_CHECK(q.cols == shape_.q_width(), "q: expected ", shape_.q_width(), " columns, got ",
                q.cols);
  RETROKV_CHECK(k.rows == n && k.cols == shape_.kv_width(), "k: expected (", n, ", ",
                shape_.kv_width(), "), got (", k.rows, ", ", k.cols, ")");
  RETROKV_CHECK(v.rows == n && v.cols == shape_.kv_width(), "v: expected (", n, ", ",
                shape_.kv_width(), "), got (", v.rows, ", ", v.cols, ")");
  RETROKV_CHECK(out.rows == n && out.cols == shape_.q_width(), "out: expected (", n, ", ",
                shape_.q_width(), "), got (", out.rows, ", ", out.cols, ")");
  const int64_t past = lengths_[layer];
  append(layer, k, v);
  const int group = shape_.group_size();
  const float scale = shape_.scale;
  const int64_t n_blocks = (n + kQueryBlock - 1) / kQueryBlock;
  const int64_t n_tasks = n_blocks * shape_.n_q_heads;

  // One task = one query head x one block of query rows; each sees keys [0, past + last row].
#pragma omp parallel
  {
    RowMat scores;
#pragma omp for schedule(dynamic, 1)
    for (int64_t task = 0; task < n_tasks; ++task) {
      const int h = static_cast<int>(task % shape_.n_q_heads);
      const int64_t r0 = (task / shape_.n_q_heads) * kQueryBlock;
      const int64_t rows = std::min(kQueryBlock, n - r0);
      const int64_t n_keys = past + r0 + rows;
      const Cache& c = cache(layer, h / group);
      Eigen::Map<const RowMat> vm(c.v.data(), n_keys, d);
      scores.resize(rows, n_keys);
      gemm_nt(q.row(r0) + h * d, q.ld, c.k.data(), d, scores.data(), n_keys, rows, n_keys, d);
      scores *= scale;
      for (int64_t i = 0; i < rows; ++i) {
        const int64_t visible = past + r0 + i + 1;  // causal: up to and including this position
        float* s = scores.row(i).data();
        float m = -std::numeric_limits<float>::infinity();
        for (int64_t j = 0; j < visible; ++j) m = std::max(m, s[j]);
        float sum = 0;
        for (int64_t j = 0; j < visible; ++j) {
          s[j] = std::exp(s[j] - m);
          sum += s[j];
        }
        const float inv = 1.0f / sum;
        for (int64_t j = 0; j < visible; ++j) s[j] *= inv;
        for (int64_t j = visible; j < n_keys; ++j) s[j] = 0;
      }
      Eigen::Map<RowMat, 0, Eigen::OuterStride<>> om(out.row(r0) + h * d, rows, d,
                                                     Eigen::OuterStride<>(out.ld));
      om.noalias() = scores * vm;
    }
  }
}

void FullAttentionBackend::decode(int layer, const float* q, const float* k, const float* v,
                                  float* out) {
  check_layer(layer);
  RETROKV_CHECK(q != nullptr && k != nullptr && v != nullptr && out != nullptr,
                "decode: q, k, v and out must be non-null");
  const int d = shape_.head_dim;
  const int group = shape_.group_size();
  append(layer, ConstMatrixView<float>(k, 1, shape_.kv_width()),
         ConstMatrixView<float>(v, 1, shape_.kv_width()));
  const int64_t n_keys = lengths_[layer];
  // Each KV head's GQA group reads its keys once (retrokv::cpu::attend_full, split-KV over the
  // context). Contexts too short to split run the KV heads in parallel instead, once there is
  // enough work (>= 1024 keys) to pay for the threads.
  const bool heads_parallel = n_keys >= 1024 && n_keys < 2 * cpu::default_attend_chunk(n_keys);
#pragma omp parallel for schedule(static) if (heads_parallel)
  for (int g = 0; g < shape_.n_kv_heads; ++g) {
    std::vector<float> lse(static_cast<std::size_t>(group));
    ConstMatrixView<float> qg(q + static_cast<int64_t>(g) * group * d, group, d);
    MatrixView<float> og(out + static_cast<int64_t>(g) * group * d, group, d);
    cpu::attend_full<float>(qg, keys(layer, g), values(layer, g), shape_.scale, og, lse.data());
  }
}

}  // namespace retrokv::engine
