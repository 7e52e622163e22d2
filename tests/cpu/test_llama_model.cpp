// The SmolLM2-135M engine on the real model: architecture read from metadata, greedy answers to
// factual prompts, perplexity on a real text, and prefill == incremental decode. Skipped with the
// fetch command when the model file is absent. Also the full-attention backend against the
// double-precision reference on random data (no model needed).
#include <gtest/gtest.h>

#include <cmath>
#include <cstdlib>
#include <filesystem>
#include <fstream>
#include <memory>
#include <random>
#include <sstream>
#include <string>
#include <tuple>
#include <vector>

#include "common/test_util.h"
#include "retrokv/core/reference_attention.h"
#include "retrokv/engine/full_attention_backend.h"
#include "retrokv/engine/gemm.h"
#include "retrokv/engine/generate.h"
#include "retrokv/engine/gguf.h"
#include "retrokv/engine/gguf_vocab.h"
#include "retrokv/engine/llama_model.h"
#include "retrokv/engine/loaded_model.h"
#include "retrokv/engine/model_files.h"

namespace {

namespace eng = retrokv::engine;
using retrokv::sanitizer_build;

// Measured 19.72 (docs/results.md, "SmolLM2 engine"); the bound leaves ~6% for other summation
// orders (issue 3: a wrong RoPE or dequantisation shows up as perplexity in the hundreds).
constexpr double kPerplexityBound = 21.0;

std::string model_path() {
  const char* dir = std::getenv("RETROKV_MODEL_DIR");
  const std::string base =
      (dir && *dir) ? std::string(dir) : std::string(RETROKV_SOURCE_DIR) + "/models";
  return base + "/" + eng::kSmolLM2FileName;
}

using Loaded = eng::LoadedModel;  // file, tokenizer and weights, opened once per suite

class SmolLM2 : public ::testing::Test {
 protected:
  static void SetUpTestSuite() {
    if (std::filesystem::exists(model_path()))
      loaded_ = std::make_unique<Loaded>(eng::GgufFile::open(model_path()));
  }
  static void TearDownTestSuite() { loaded_.reset(); }
  void SetUp() override {
    if (!loaded_)
      GTEST_SKIP() << "SmolLM2 model not found at " << model_path() << "; fetch it with "
                   << eng::kFetchModelCommand << " (or set RETROKV_MODEL_DIR)";
  }
  std::string greedy(const std::string& prompt, int n) {
    eng::FullAttentionBackend backend(loaded_->model.attention_shape());
    eng::Sampler s(eng::SamplingParams{});
    const auto ids = loaded_->tok.encode(prompt, false);
    return loaded_->tok.decode(eng::generate(loaded_->model, backend, ids, n, s));
  }
  static std::unique_ptr<Loaded> loaded_;
};
std::unique_ptr<Loaded> SmolLM2::loaded_;

TEST_F(SmolLM2, ArchitectureComesFromMetadata) {
  const eng::LlamaConfig& c = loaded_->model.config();
  EXPECT_EQ(c.n_layers, 30);
  EXPECT_EQ(c.d_model, 576);
  EXPECT_EQ(c.n_heads, 9);
  EXPECT_EQ(c.n_kv_heads, 3);
  EXPECT_EQ(c.head_dim, 64);
  EXPECT_EQ(c.d_ff, 1536);
  EXPECT_EQ(c.vocab_size, 49152);
  EXPECT_EQ(c.context_length, 8192);
  EXPECT_FLOAT_EQ(c.rope_base, 100000.0f);
  EXPECT_FLOAT_EQ(c.rms_eps, 1e-5f);
  EXPECT_TRUE(c.tied_embeddings);
  EXPECT_EQ(loaded_->model.attention_shape().group_size(), 3);
}

// Continuations checked by hand against this model (greedy, Q4_1 weights).
TEST_F(SmolLM2, GreedyAnswersFactualPrompts) {
  const std::vector<std::pair<std::string, std::string>> cases = {
      {"The capital of France is", "Paris"},
      {"The capital of Germany is", "Berlin"},
      {"The capital of Japan is", "Tokyo"},
      {"The largest planet in the solar system is", "Jupiter"},
      {"The chemical symbol for gold is", "Au"},
      {"One, two, three, four,", "five, six"},
  };
  // Under ASan+UBSan two prompts keep the run short; the Release run checks all of them.
  const std::size_t n_cases = sanitizer_build() ? 2 : cases.size();
  for (std::size_t i = 0; i < n_cases; ++i) {
    const auto& [prompt, expected] = cases[i];
    const std::string out = greedy(prompt, 6);
    EXPECT_NE(out.find(expected), std::string::npos) << prompt << " -> '" << out << "'";
  }
}

// Logits of a prompt run as one prefill equal those of the same tokens fed one decode step at a
// time (same KV cache, same positions): checks RoPE positions, causal masking and the cache.
TEST_F(SmolLM2, PrefillMatchesIncrementalDecode) {
  const auto ids = loaded_->tok.encode("retrokv keeps the KV cache as a vector store. It", false);
  ASSERT_GE(ids.size(), 8u);
  eng::LlamaModel& m = loaded_->model;
  eng::FullAttentionBackend a(m.attention_shape()), b(m.attention_shape());
  const retrokv::Matrix<float> all = m.forward(ids, a, /*all_logits=*/true);
  double max_diff = 0, max_abs = 0;
  for (std::size_t i = 0; i < ids.size(); ++i) {
    const std::vector<float> step = m.decode(ids[i], b);
    for (int j = 0; j < m.config().vocab_size; ++j) {
      max_diff = std::max(max_diff, static_cast<double>(std::abs(step[j] - all(i, j))));
      max_abs = std::max(max_abs, static_cast<double>(std::abs(all(i, j))));
    }
  }
  EXPECT_EQ(a.size(0), static_cast<int64_t>(ids.size()));
  EXPECT_LT(max_diff, 2e-3 * max_abs) << "max |logit| " << max_abs;
}

// Perplexity on the first 2048 tokens of the GPL-3 text. Measured: see docs/results.md
// ("SmolLM2 engine"); a wrong RoPE or dequantisation gives hundreds.
TEST_F(SmolLM2, PerplexityOnGpl3) {
  if (sanitizer_build())
    GTEST_SKIP() << "2048-token perplexity takes minutes under ASan+UBSan "
                    "(RETROKV_SANITIZER_BUILD=1); the Release run covers it";
  const std::string path = "/usr/share/common-licenses/GPL-3";
  std::ifstream in(path);
  if (!in.good()) GTEST_SKIP() << path << " is not on this machine";
  std::stringstream ss;
  ss << in.rdbuf();
  std::vector<int32_t> ids = loaded_->tok.encode(ss.str(), false);
  ASSERT_GE(ids.size(), 2048u);
  ids.resize(2048);
  eng::LlamaModel& m = loaded_->model;
  eng::FullAttentionBackend backend(m.attention_shape());
  double nll = 0;
  const int64_t chunk = 512;
  for (int64_t begin = 0; begin + 1 < 2048; begin += chunk) {
    const int64_t count = std::min<int64_t>(chunk, 2048 - begin);
    const retrokv::Matrix<float> logits =
        m.forward(std::span<const int32_t>(ids.data() + begin, static_cast<std::size_t>(count)),
                  backend, true);
    for (int64_t r = 0; r < count && begin + r + 1 < 2048; ++r) {
      const float* row = logits.row(r);
      double mx = row[0];
      for (int j = 1; j < m.config().vocab_size; ++j)
        mx = std::max(mx, static_cast<double>(row[j]));
      double z = 0;
      for (int j = 0; j < m.config().vocab_size; ++j) z += std::exp(row[j] - mx);
      nll += mx + std::log(z) - row[ids[begin + r + 1]];
    }
  }
  const double ppl = std::exp(nll / 2047.0);
  std::printf("[ perplexity ] SmolLM2-135M Q4_1, first 2048 tokens of GPL-3: %.3f\n", ppl);
  EXPECT_GT(ppl, 1.0);
  EXPECT_LT(ppl, kPerplexityBound);
}

// Substrings of the retrokv::Error that fn throws (fails when it does not throw).
template <typename Fn>
void expect_error_mentions(Fn&& fn, const std::vector<std::string>& words) {
  try {
    fn();
    ADD_FAILURE() << "expected retrokv::Error";
  } catch (const retrokv::Error& e) {
    for (const std::string& w : words)
      EXPECT_NE(std::string(e.what()).find(w), std::string::npos) << w << " not in: " << e.what();
  }
}

// Running past the trained context (8192 for SmolLM2) is an explicit opt-in (retrokv-trace
// --allow-beyond-context, the 16K trace of docs/results.md): by default the check refuses 8193
// positions and names the caller's argument and the opt-in; raised, it moves the cap and the
// backend shape's max_context with it.
TEST_F(SmolLM2, ContextBeyondTrainedRangeNeedsOptIn) {
  eng::LlamaModel& m = loaded_->model;
  const int64_t trained = m.config().context_length;
  ASSERT_EQ(trained, 8192);
  EXPECT_EQ(m.max_context(), trained);
  EXPECT_EQ(m.attention_shape().max_context, trained);
  EXPECT_NO_THROW(m.check_context(trained, "--gen"));
  expect_error_mentions([&] { m.check_context(trained + 1, "--max-tokens + --gen"); },
                        {"--max-tokens + --gen", "8193", "8192", "--allow-beyond-context"});
  expect_error_mentions([&] { m.set_max_context(0); }, {"max_context", "got 0"});
  EXPECT_EQ(m.max_context(), trained);  // a rejected value leaves the cap alone

  m.set_max_context(16384);
  EXPECT_EQ(m.max_context(), 16384);
  EXPECT_EQ(m.attention_shape().max_context, 16384);
  EXPECT_NO_THROW(m.check_context(16384, "--gen"));
  expect_error_mentions([&] { m.check_context(16385, "--gen"); }, {"--gen", "16385", "16384"});
  m.set_max_context(trained);  // the model is shared by the suite
  EXPECT_EQ(m.attention_shape().max_context, trained);
}

// The backend's prefill (blocked, causal) and decode against reference_attention in double.
TEST(FullAttentionBackend, MatchesReferenceAttention) {
  eng::AttentionShape s;
  s.n_layers = 2;
  s.n_q_heads = 6;
  s.n_kv_heads = 2;
  s.head_dim = 16;
  s.max_context = 1024;
  s.scale = 0.25f;
  eng::FullAttentionBackend backend(s);
  std::mt19937 rng(7);
  std::normal_distribution<float> nd;
  const int64_t n_prefill = 300, n_decode = 5, n = n_prefill + n_decode;
  retrokv::Matrix<float> q(n, s.q_width()), k(n, s.kv_width()), v(n, s.kv_width()),
      out(n, s.q_width());
  for (auto* m : {&q, &k, &v})
    for (int64_t i = 0; i < m->rows() * m->cols(); ++i) m->data()[i] = nd(rng);
  const int layer = 1;
  // Prefill in two uneven pieces, then decode one position at a time.
  backend.prefill(layer, q.view().slice_rows(0, 170), k.view().slice_rows(0, 170),
                  v.view().slice_rows(0, 170), out.view().slice_rows(0, 170));
  backend.prefill(layer, q.view().slice_rows(170, 130), k.view().slice_rows(170, 130),
                  v.view().slice_rows(170, 130), out.view().slice_rows(170, 130));
  for (int64_t t = n_prefill; t < n; ++t)
    backend.decode(layer, q.row(t), k.row(t), v.row(t), out.row(t));
  EXPECT_EQ(backend.size(layer), n);
  EXPECT_EQ(backend.size(0), 0);
  double worst = 0;
  const int d = s.head_dim;
  for (int64_t t = 0; t < n; ++t) {
    for (int h = 0; h < s.n_q_heads; ++h) {
      const int g = h / s.group_size();
      retrokv::ConstMatrixView<float> K(k.data() + g * d, t + 1, d, s.kv_width());
      retrokv::ConstMatrixView<float> V(v.data() + g * d, t + 1, d, s.kv_width());
      const auto ref = retrokv::reference_attention_double(q.row(t) + h * d, K, V, s.scale);
      for (int c = 0; c < d; ++c)
        worst = std::max(worst, std::abs(ref.o[c] - static_cast<double>(out(t, h * d + c))));
    }
  }
  EXPECT_LT(worst, 1e-4);
  EXPECT_THROW(backend.prefill(layer, q.view().slice_rows(0, 2), k.view().slice_rows(0, 3),
                               v.view().slice_rows(0, 2), out.view().slice_rows(0, 2)),
               retrokv::Error);
  EXPECT_THROW(backend.size(2), retrokv::Error);
  backend.reset();
  EXPECT_EQ(backend.size(layer), 0);
}

}  // namespace

namespace {

// gemm_nt (AVX2 kernel where the CPU has it, Eigen otherwise) against a double-precision loop, on
// sizes that exercise every edge of the 4 x 3 register block and the k % 8 tail.
TEST(GemmNt, MatchesNaiveProduct) {
  std::mt19937 rng(3);
  std::uniform_real_distribution<float> u(-1, 1);
  for (auto [m, n, k] :
       {std::tuple{1, 1, 1}, {1, 200, 576}, {7, 5, 13}, {130, 97, 64}, {5, 301, 37}}) {
    const int64_t lda = k + 3, ldb = k + 1, ldc = n + 2;
    std::vector<float> a(m * lda), b(n * ldb), c(m * ldc, -7.0f);
    for (auto& x : a) x = u(rng);
    for (auto& x : b) x = u(rng);
    retrokv::engine::gemm_nt(a.data(), lda, b.data(), ldb, c.data(), ldc, m, n, k);
    double worst = 0;
    for (int i = 0; i < m; ++i) {
      for (int j = 0; j < n; ++j) {
        double ref = 0;
        for (int p = 0; p < k; ++p) ref += static_cast<double>(a[i * lda + p]) * b[j * ldb + p];
        worst = std::max(worst, std::abs(ref - c[i * ldc + j]));
      }
      for (int j = n; j < ldc; ++j) EXPECT_EQ(c[i * ldc + j], -7.0f);  // padding untouched
    }
    EXPECT_LT(worst, 1e-4 * k) << m << "x" << n << "x" << k;
  }
}

}  // namespace
