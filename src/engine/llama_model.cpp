// Llama forward pass (llama_model.h). Weights are dequantised once to float: for a 135M model that
// is ~540 MB and lets prefill use Eigen's blocked GEMM; decode is a memory-bound GEMV per matrix.
#include "retrokv/engine/llama_model.h"

#include <Eigen/Core>
#include <algorithm>
#include <cmath>

#include "retrokv/core/error.h"
#include "retrokv/engine/gemm.h"

namespace retrokv::engine {

namespace {

using RowMat = Eigen::Matrix<float, Eigen::Dynamic, Eigen::Dynamic, Eigen::RowMajor>;

// y (n, out) = x (n, in) * w^T with w (out, in).
void linear(const Matrix<float>& x, int64_t n, const Matrix<float>& w, Matrix<float>& y) {
  RETROKV_ASSERT(x.cols() == w.cols() && y.cols() == w.rows() && x.rows() >= n && y.rows() >= n);
  gemm_nt(x.data(), x.cols(), w.data(), w.cols(), y.data(), y.cols(), n, w.rows(), w.cols());
}

void rms_norm(const Matrix<float>& x, int64_t n, const std::vector<float>& w, float eps,
              Matrix<float>& y) {
  const int64_t d = x.cols();
#pragma omp parallel for schedule(static) if (n > 8)
  for (int64_t r = 0; r < n; ++r) {
    const float* xr = x.row(r);
    double ss = 0;
    for (int64_t c = 0; c < d; ++c) ss += static_cast<double>(xr[c]) * xr[c];
    const float inv = static_cast<float>(1.0 / std::sqrt(ss / static_cast<double>(d) + eps));
    float* yr = y.row(r);
    for (int64_t c = 0; c < d; ++c) yr[c] = xr[c] * inv * w[c];
  }
}

Matrix<float> load_matrix(const GgufFile& f, const std::string& name, int64_t rows, int64_t cols) {
  const GgufTensorInfo& t = f.tensor(name);
  RETROKV_CHECK(t.dims.size() == 2 && t.rows() == rows && t.cols() == cols, "tensor '", name,
                "': expected (rows, cols) = (", rows, ", ", cols, "), got dims [",
                t.dims.size() > 0 ? t.dims[0] : 0, ", ", t.dims.size() > 1 ? t.dims[1] : 0,
                "] with ", t.dims.size(), " dims");
  Matrix<float> m(rows, cols);
  f.dequantize_into(t, m.data());
  return m;
}

std::vector<float> load_vector(const GgufFile& f, const std::string& name, int64_t n) {
  const GgufTensorInfo& t = f.tensor(name);
  RETROKV_CHECK(static_cast<int64_t>(t.n_elements) == n, "tensor '", name, "': expected ", n,
                " elements, got ", t.n_elements);
  return f.dequantize(t);
}

int read_dim(const GgufFile& f, const std::string& key) {
  const uint64_t v = f.get_uint(key);
  RETROKV_CHECK(v > 0 && v < (1u << 24), "gguf: ", key, " must be in [1, 2^24), got ", v);
  return static_cast<int>(v);
}

}  // namespace

LlamaConfig LlamaConfig::from_gguf(const GgufFile& f) {
  const std::string arch = f.get_string("general.architecture");
  RETROKV_CHECK(arch == "llama", "gguf: general.architecture must be 'llama', got '", arch, "'");
  LlamaConfig c;
  c.name = f.get_string_or("general.name", "llama");
  c.n_layers = read_dim(f, "llama.block_count");
  c.d_model = read_dim(f, "llama.embedding_length");
  c.n_heads = read_dim(f, "llama.attention.head_count");
  c.n_kv_heads = f.has("llama.attention.head_count_kv")
                     ? read_dim(f, "llama.attention.head_count_kv")
                     : c.n_heads;
  c.d_ff = read_dim(f, "llama.feed_forward_length");
  c.context_length = static_cast<int64_t>(f.get_uint_or("llama.context_length", 2048));
  c.rope_base = static_cast<float>(f.get_float_or("llama.rope.freq_base", 10000.0));
  c.rms_eps = static_cast<float>(f.get_float("llama.attention.layer_norm_rms_epsilon"));
  RETROKV_CHECK(c.d_model % c.n_heads == 0, "llama: embedding_length (", c.d_model,
                ") must be a multiple of head_count (", c.n_heads, ")");
  RETROKV_CHECK(c.n_heads % c.n_kv_heads == 0, "llama: head_count (", c.n_heads,
                ") must be a multiple of head_count_kv (", c.n_kv_heads, ")");
  c.head_dim = c.d_model / c.n_heads;
  c.rope_dims =
      f.has("llama.rope.dimension_count") ? read_dim(f, "llama.rope.dimension_count") : c.head_dim;
  RETROKV_CHECK(c.rope_dims <= c.head_dim && c.rope_dims % 2 == 0,
                "llama: rope.dimension_count must be even and <= head_dim (", c.head_dim, "), got ",
                c.rope_dims);
  RETROKV_CHECK(c.rope_base > 0 && c.rms_eps > 0,
                "llama: rope.freq_base and rms epsilon must be > 0");
  const GgufTensorInfo& emb = f.tensor("token_embd.weight");
  RETROKV_CHECK(emb.dims.size() == 2 && emb.dims[0] == c.d_model,
                "token_embd.weight: expected dims [", c.d_model,
                ", vocab], got dim 0 = ", emb.dims[0]);
  c.vocab_size = static_cast<int>(emb.dims[1]);
  c.tied_embeddings = f.find_tensor("output.weight") == nullptr;
  return c;
}

LlamaModel::LlamaModel(const GgufFile& f) : config_(LlamaConfig::from_gguf(f)) {
  const LlamaConfig& c = config_;
  const int64_t kv = static_cast<int64_t>(c.n_kv_heads) * c.head_dim;
  embed_ = load_matrix(f, "token_embd.weight", c.vocab_size, c.d_model);
  if (!c.tied_embeddings) output_ = load_matrix(f, "output.weight", c.vocab_size, c.d_model);
  output_norm_ = load_vector(f, "output_norm.weight", c.d_model);
  layers_.resize(static_cast<std::size_t>(c.n_layers));
  for (int l = 0; l < c.n_layers; ++l) {
    const std::string p = "blk." + std::to_string(l) + ".";
    Layer& L = layers_[l];
    L.attn_norm = load_vector(f, p + "attn_norm.weight", c.d_model);
    L.ffn_norm = load_vector(f, p + "ffn_norm.weight", c.d_model);
    L.wq = load_matrix(f, p + "attn_q.weight", c.d_model, c.d_model);
    L.wk = load_matrix(f, p + "attn_k.weight", kv, c.d_model);
    L.wv = load_matrix(f, p + "attn_v.weight", kv, c.d_model);
    L.wo = load_matrix(f, p + "attn_output.weight", c.d_model, c.d_model);
    L.w_gate = load_matrix(f, p + "ffn_gate.weight", c.d_ff, c.d_model);
    L.w_up = load_matrix(f, p + "ffn_up.weight", c.d_ff, c.d_model);
    L.w_down = load_matrix(f, p + "ffn_down.weight", c.d_model, c.d_ff);
  }
  // Adjacent-pair RoPE (the GGUF converter permuted Q/K rows): pair i turns by pos * base^(-2i/d).
  inv_freq_.resize(static_cast<std::size_t>(c.rope_dims / 2));
  for (int i = 0; i < c.rope_dims / 2; ++i)
    inv_freq_[i] = std::pow(static_cast<double>(c.rope_base), -2.0 * i / c.rope_dims);
}

LlamaModel LlamaModel::load(const std::string& path) { return LlamaModel(GgufFile::open(path)); }

AttentionShape LlamaModel::attention_shape() const {
  AttentionShape s;
  s.n_layers = config_.n_layers;
  s.n_q_heads = config_.n_heads;
  s.n_kv_heads = config_.n_kv_heads;
  s.head_dim = config_.head_dim;
  s.max_context = max_context();
  s.scale = 1.0f / std::sqrt(static_cast<float>(config_.head_dim));
  return s;
}

void LlamaModel::set_max_context(int64_t n) {
  RETROKV_CHECK(n >= 1, "max_context: expected >= 1, got ", n);
  max_context_ = n;
}

void LlamaModel::check_context(int64_t positions, const std::string& what) const {
  RETROKV_CHECK(positions <= max_context(), what, ": ", positions,
                " positions exceed the model's context of ", max_context(),
                max_context() == config_.context_length
                    ? " (its trained range; opt in with set_max_context / --allow-beyond-context)"
                    : " (raised with set_max_context)");
}

void LlamaModel::set_chunk_size(int64_t n) {
  RETROKV_CHECK(n >= 1, "chunk_size: expected >= 1, got ", n);
  chunk_size_ = n;
}

void LlamaModel::rope(MatrixView<float> x, int n_heads, int64_t first_pos) const {
  const int d = config_.head_dim;
  const int half = config_.rope_dims / 2;
#pragma omp parallel for schedule(static) if (x.rows > 8)
  for (int64_t r = 0; r < x.rows; ++r) {
    const double pos = static_cast<double>(first_pos + r);
    for (int i = 0; i < half; ++i) {
      const double theta = pos * inv_freq_[i];
      const float cs = static_cast<float>(std::cos(theta));
      const float sn = static_cast<float>(std::sin(theta));
      for (int h = 0; h < n_heads; ++h) {
        float* p = x.row(r) + h * d + 2 * i;
        const float x0 = p[0], x1 = p[1];
        p[0] = x0 * cs - x1 * sn;
        p[1] = x0 * sn + x1 * cs;
      }
    }
  }
}

Matrix<float> LlamaModel::forward(std::span<const int32_t> tokens, AttentionBackend& backend,
                                  bool all_logits) {
  const int64_t n = static_cast<int64_t>(tokens.size());
  RETROKV_CHECK(n >= 1, "tokens: expected at least one token, got 0");
  Matrix<float> logits(all_logits ? n : 1, config_.vocab_size);
  for (int64_t begin = 0; begin < n; begin += chunk_size_) {
    const int64_t count = std::min(chunk_size_, n - begin);
    const bool last = begin + count == n;
    if (all_logits) {
      forward_chunk(tokens.subspan(begin, count), backend, true,
                    logits.view().slice_rows(begin, count));
    } else {
      forward_chunk(tokens.subspan(begin, count), backend, false,
                    last ? logits.view() : MatrixView<float>());
    }
  }
  return logits;
}

std::vector<float> LlamaModel::decode(int32_t token, AttentionBackend& backend) {
  std::vector<float> logits(static_cast<std::size_t>(config_.vocab_size));
  forward_chunk(std::span<const int32_t>(&token, 1), backend, false,
                MatrixView<float>(logits.data(), 1, config_.vocab_size));
  return logits;
}

void LlamaModel::forward_chunk(std::span<const int32_t> tokens, AttentionBackend& backend,
                               bool all_logits, MatrixView<float> logits) {
  const LlamaConfig& c = config_;
  const int64_t n = static_cast<int64_t>(tokens.size());
  const AttentionShape& bs = backend.shape();
  RETROKV_CHECK(bs.n_layers == c.n_layers && bs.n_q_heads == c.n_heads &&
                    bs.n_kv_heads == c.n_kv_heads && bs.head_dim == c.head_dim,
                "backend: attention shape does not match the model (layers/heads/kv heads/dim ",
                c.n_layers, "/", c.n_heads, "/", c.n_kv_heads, "/", c.head_dim, ")");
  for (int32_t t : tokens)
    RETROKV_CHECK(t >= 0 && t < c.vocab_size, "tokens: expected ids in [0, ", c.vocab_size,
                  "), got ", t);
  const int64_t first_pos = backend.size(0);
  const int64_t kv = static_cast<int64_t>(c.n_kv_heads) * c.head_dim;

  Scratch& s = s_;
  if (s.x.rows() < n) {
    s.x.resize(n, c.d_model);
    s.h.resize(n, c.d_model);
    s.q.resize(n, c.d_model);
    s.k.resize(n, kv);
    s.v.resize(n, kv);
    s.att.resize(n, c.d_model);
    s.gate.resize(n, c.d_ff);
    s.up.resize(n, c.d_ff);
  }
  for (int64_t r = 0; r < n; ++r)
    std::copy(embed_.row(tokens[r]), embed_.row(tokens[r]) + c.d_model, s.x.row(r));

  for (int l = 0; l < c.n_layers; ++l) {
    const Layer& L = layers_[l];
    rms_norm(s.x, n, L.attn_norm, c.rms_eps, s.h);
    linear(s.h, n, L.wq, s.q);
    linear(s.h, n, L.wk, s.k);
    linear(s.h, n, L.wv, s.v);
    MatrixView<float> q(s.q.data(), n, c.d_model);
    MatrixView<float> k(s.k.data(), n, kv);
    MatrixView<float> v(s.v.data(), n, kv);
    rope(q, c.n_heads, first_pos);
    rope(k, c.n_kv_heads, first_pos);
    if (observer_) observer_(l, first_pos, q, k, v);
    MatrixView<float> att(s.att.data(), n, c.d_model);
    if (n == 1) {
      backend.decode(l, q.data, k.data, v.data, att.data);
    } else {
      backend.prefill(l, q, k, v, att);
    }
    linear(s.att, n, L.wo, s.h);
    for (int64_t i = 0; i < n * c.d_model; ++i) s.x.data()[i] += s.h.data()[i];

    rms_norm(s.x, n, L.ffn_norm, c.rms_eps, s.h);
    linear(s.h, n, L.w_gate, s.gate);
    linear(s.h, n, L.w_up, s.up);
    float* g = s.gate.data();
    const float* u = s.up.data();
    for (int64_t i = 0; i < n * c.d_ff; ++i) g[i] = g[i] / (1.0f + std::exp(-g[i])) * u[i];
    linear(s.gate, n, L.w_down, s.h);
    for (int64_t i = 0; i < n * c.d_model; ++i) s.x.data()[i] += s.h.data()[i];
  }
  if (logits.empty()) return;

  const Matrix<float>& out_w = c.tied_embeddings ? embed_ : output_;
  const int64_t first_row = all_logits ? 0 : n - 1;
  const int64_t rows = n - first_row;
  // Norm the rows that need logits into the start of h.
  Matrix<float> last(rows, c.d_model);
  for (int64_t r = 0; r < rows; ++r)
    std::copy(s.x.row(first_row + r), s.x.row(first_row + r) + c.d_model, last.row(r));
  rms_norm(last, rows, output_norm_, c.rms_eps, last);
  gemm_nt(last.data(), last.cols(), out_w.data(), out_w.cols(), logits.data, logits.ld, rows,
          c.vocab_size, c.d_model);
}

}  // namespace retrokv::engine
