// StoreAttentionBackend (engine/store_backend.h): the KVVectorStore behind the SmolLM2 engine.
// Random data: the full policy equals FullAttentionBackend through chunked prefill and decode.
// Real model: every policy at budget 1.0 reproduces full attention's greedy tokens and logits;
// at the default budget (2%) teacher-forced greedy agreement stays above a measured bound.
#include <gtest/gtest.h>

#include <algorithm>
#include <cmath>
#include <cstdlib>
#include <filesystem>
#include <fstream>
#include <memory>
#include <random>
#include <sstream>
#include <string>
#include <vector>

#include "retrokv/engine/full_attention_backend.h"
#include "retrokv/engine/generate.h"
#include "retrokv/engine/gguf.h"
#include "retrokv/engine/gguf_vocab.h"
#include "retrokv/engine/llama_model.h"
#include "retrokv/engine/loaded_model.h"
#include "retrokv/engine/model_files.h"
#include "retrokv/engine/store_backend.h"

namespace {

namespace eng = retrokv::engine;
using retrokv::Policy;

std::string model_path() {
  const char* dir = std::getenv("RETROKV_MODEL_DIR");
  const std::string base =
      (dir && *dir) ? std::string(dir) : std::string(RETROKV_SOURCE_DIR) + "/models";
  return base + "/" + eng::kSmolLM2FileName;
}

bool sanitizer_build() {
  const char* s = std::getenv("RETROKV_SANITIZER_BUILD");
  return s != nullptr && std::string(s) == "1";
}

retrokv::StoreConfig store_config(Policy p, double budget) {
  retrokv::StoreConfig c;
  c.policy = p;
  c.params.budget_fraction = budget;
  return c;
}

std::vector<float> random_vec(std::mt19937& rng, size_t n) {
  std::normal_distribution<float> dist(0.f, 1.f);
  std::vector<float> v(n);
  for (float& x : v) x = dist(rng);
  return v;
}

// ---- random data, no model ------------------------------------------------------------------

TEST(StoreBackend, FullPolicyMatchesDenseBackendThroughChunksAndDecode) {
  eng::AttentionShape s{2, 4, 2, 16, 4096, 0.25f};
  eng::FullAttentionBackend ref(s);
  eng::StoreAttentionBackend store(s, store_config(Policy::kFull, 0.02));
  EXPECT_EQ(store.name(), "full");
  std::mt19937 rng(7);
  const int qw = s.q_width(), kw = s.kv_width();
  auto run = [&](int layer, int n, bool decode) {
    auto q = random_vec(rng, size_t(n) * qw), k = random_vec(rng, size_t(n) * kw),
         v = random_vec(rng, size_t(n) * kw);
    std::vector<float> a(size_t(n) * qw), b(size_t(n) * qw);
    if (decode) {
      ref.decode(layer, q.data(), k.data(), v.data(), a.data());
      store.decode(layer, q.data(), k.data(), v.data(), b.data());
    } else {
      retrokv::ConstMatrixView<float> Q(q.data(), n, qw), K(k.data(), n, kw), V(v.data(), n, kw);
      ref.prefill(layer, Q, K, V, retrokv::MatrixView<float>(a.data(), n, qw));
      store.prefill(layer, Q, K, V, retrokv::MatrixView<float>(b.data(), n, qw));
    }
    for (size_t i = 0; i < a.size(); ++i) ASSERT_NEAR(a[i], b[i], 1e-5f) << "at " << i;
  };
  for (int chunk : {40, 25})  // the engine prefills in chunks
    for (int l = 0; l < s.n_layers; ++l) run(l, chunk, false);
  EXPECT_EQ(store.size(1), 65);
  for (int step = 0; step < 5; ++step)
    for (int l = 0; l < s.n_layers; ++l) run(l, 1, true);
  // A prefill after decode has started goes through the store one row at a time, still causal.
  for (int l = 0; l < s.n_layers; ++l) run(l, 3, false);
  EXPECT_EQ(store.size(0), 73);
  EXPECT_EQ(ref.size(0), 73);
  // Full attends everything exactly.
  EXPECT_DOUBLE_EQ(store.stats().exact_fraction(), 1.0);
  store.reset();
  EXPECT_EQ(store.size(0), 0);
  EXPECT_EQ(store.stats().attend_calls, 0);
}

TEST(StoreBackend, RejectsBadLayer) {
  eng::AttentionShape s{2, 4, 2, 16, 4096, 0.25f};
  eng::StoreAttentionBackend store(s, store_config(Policy::kQuest, 0.02));
  std::vector<float> q(s.q_width()), kv(s.kv_width()), out(s.q_width());
  EXPECT_THROW(store.decode(2, q.data(), kv.data(), kv.data(), out.data()), retrokv::Error);
  EXPECT_THROW(store.size(-1), retrokv::Error);
}

// load_prompt hands a layer's prompt to the store without computing attention: decoding after
// it must equal decoding after the engine-style prefill (dense prompt, store built at decode).
TEST(StoreBackend, LoadPromptEqualsPrefillThenDecode) {
  eng::AttentionShape s{2, 4, 2, 16, 4096, 0.25f};
  std::mt19937 rng(11);
  const int qw = s.q_width(), kw = s.kv_width(), n = 90;
  std::vector<std::vector<float>> q(2), k(2), v(2);
  for (int l = 0; l < 2; ++l) {
    q[l] = random_vec(rng, size_t(n) * qw);
    k[l] = random_vec(rng, size_t(n) * kw);
    v[l] = random_vec(rng, size_t(n) * kw);
  }
  for (Policy p :
       {Policy::kFull, Policy::kFlatTopK, Policy::kRoarGraph, Policy::kWave, Policy::kQuest}) {
    SCOPED_TRACE(retrokv::policy_name(p));
    eng::StoreAttentionBackend a(s, store_config(p, 0.1)), b(s, store_config(p, 0.1));
    std::vector<float> scratch(size_t(n) * qw);
    for (int l = 0; l < 2; ++l) {
      retrokv::ConstMatrixView<float> Q(q[l].data(), n, qw), K(k[l].data(), n, kw),
          V(v[l].data(), n, kw);
      a.prefill(l, Q, K, V, retrokv::MatrixView<float>(scratch.data(), n, qw));
      b.load_prompt(l, Q, K, V);
      EXPECT_EQ(b.size(l), n);
    }
    a.finish_prefill();
    b.finish_prefill();
    for (int step = 0; step < 4; ++step) {
      for (int l = 0; l < 2; ++l) {
        auto qs = random_vec(rng, qw), ks = random_vec(rng, kw), vs = random_vec(rng, kw);
        std::vector<float> oa(qw), ob(qw);
        a.decode(l, qs.data(), ks.data(), vs.data(), oa.data());
        b.decode(l, qs.data(), ks.data(), vs.data(), ob.data());
        for (int i = 0; i < qw; ++i) ASSERT_EQ(oa[i], ob[i]) << "layer " << l << " at " << i;
      }
    }
    EXPECT_EQ(a.stats().exact_tokens, b.stats().exact_tokens);
    EXPECT_EQ(b.size(0), n + 4);
  }
}

TEST(StoreBackend, LoadPromptRejectsMisuseAndLeavesTheLayer) {
  eng::AttentionShape s{2, 4, 2, 16, 4096, 0.25f};
  eng::StoreAttentionBackend b(s, store_config(Policy::kWave, 0.1));
  std::mt19937 rng(3);
  const int qw = s.q_width(), kw = s.kv_width(), n = 20;
  auto q = random_vec(rng, size_t(n) * qw), k = random_vec(rng, size_t(n) * kw),
       v = random_vec(rng, size_t(n) * kw);
  retrokv::ConstMatrixView<float> Q(q.data(), n, qw), K(k.data(), n, kw), V(v.data(), n, kw);
  // Query rows that do not match the keys, a bad layer, then a good load.
  EXPECT_THROW(b.load_prompt(0, retrokv::ConstMatrixView<float>(q.data(), n - 1, qw), K, V),
               retrokv::Error);
  EXPECT_THROW(b.load_prompt(2, Q, K, V), retrokv::Error);
  EXPECT_EQ(b.size(0), 0);
  b.load_prompt(0, Q, K, V);
  EXPECT_EQ(b.size(0), n);
  // Twice on a layer, or a dense prefill on a loaded layer before decode, is an error.
  EXPECT_THROW(b.load_prompt(0, Q, K, V), retrokv::Error);
  std::vector<float> out(size_t(n) * qw);
  EXPECT_THROW(b.prefill(0, Q, K, V, retrokv::MatrixView<float>(out.data(), n, qw)),
               retrokv::Error);
  EXPECT_EQ(b.size(0), n);
  // Without queries (no RoarGraph training queries) is allowed.
  b.load_prompt(1, retrokv::ConstMatrixView<float>(nullptr, 0, qw), K, V);
  EXPECT_EQ(b.size(1), n);
}

// ---- the real model -------------------------------------------------------------------------

using Loaded = eng::LoadedModel;  // file, tokenizer and weights, opened once per suite

constexpr int kPromptTokens = 300;
// Next-token distributions compared: the prompt's last position, then decode steps (a decode step
// of the 135M model costs ~0.3 s on a busy 2-core machine, so few of them).
constexpr int kSteps = 7;
constexpr int kExactSteps = 3;  // budget 1.0: logits must match, a few steps show it
// Measured at 2% over 6 teacher-forced decode steps: flat_topk, roar_graph 6/6, wave 5/6, quest
// 5/6 (docs/results.md); one token of slack below the worst. At 300 tokens the steady zone
// (4 sinks + 64 local) alone is ~23% of the context, so the exact share is ~26%.
constexpr double kMinAgreement = 4.0 / 6.0;

// Greedy decode of kSteps tokens after the prompt; logits of every step (the prompt's last
// position first). With `forced` the given tokens are fed instead of the backend's own.
struct Trace {
  std::vector<int32_t> tokens;
  std::vector<std::vector<float>> logits;
};

// The prompt's post-RoPE projections of every layer, captured once from the full-attention run:
// a sparse backend is prefilled from them directly (its prefill is exact, so the model's prompt
// pass would compute the same thing) and only the decode steps run the model.
struct Prompt {
  std::vector<retrokv::Matrix<float>> q, k, v;  // per layer (n, width)
  std::vector<float> last_logits;
};

retrokv::Matrix<float> copy(retrokv::ConstMatrixView<float> m) {
  retrokv::Matrix<float> out(m.rows, m.cols);
  for (int64_t i = 0; i < m.rows; ++i) std::copy(m.row(i), m.row(i) + m.cols, out.view().row(i));
  return out;
}

Trace decode_steps(eng::LlamaModel& model, eng::AttentionBackend& backend,
                   std::vector<float> logits, const std::vector<int32_t>* forced,
                   int steps = kSteps) {
  Trace r;
  for (int step = 0; step < steps; ++step) {
    r.logits.push_back(logits);
    r.tokens.push_back(eng::argmax(logits));
    if (step + 1 < steps)
      logits = model.decode(forced ? (*forced)[step] : r.tokens.back(), backend);
  }
  return r;
}

Trace run_store(eng::LlamaModel& model, const Prompt& p, Policy policy, double budget,
                const std::vector<int32_t>* forced, int steps, retrokv::LayerStats* stats) {
  const eng::AttentionShape s = model.attention_shape();
  eng::StoreAttentionBackend backend(s, store_config(policy, budget));
  for (int l = 0; l < s.n_layers; ++l) {
    retrokv::Matrix<float> out(p.q[l].rows(), s.q_width());
    backend.prefill(l, p.q[l].view(), p.k[l].view(), p.v[l].view(), out.view());
  }
  Trace r = decode_steps(model, backend, p.last_logits, forced, steps);
  *stats = backend.stats();
  return r;
}

class StoreBackendSmolLM2 : public ::testing::Test {
 protected:
  static void SetUpTestSuite() {
    if (sanitizer_build() || !std::filesystem::exists(model_path())) return;
    loaded_ = std::make_unique<Loaded>(eng::GgufFile::open(model_path()));
    std::ifstream in("/usr/share/common-licenses/GPL-3");
    std::stringstream ss;
    ss << in.rdbuf();
    prompt_ = loaded_->tok.encode(ss.str(), false);
    if (prompt_.size() > kPromptTokens) prompt_.resize(kPromptTokens);
    eng::LlamaModel& model = loaded_->model;
    const int L = model.attention_shape().n_layers;
    captured_ = std::make_unique<Prompt>();
    captured_->q.resize(L);
    captured_->k.resize(L);
    captured_->v.resize(L);
    model.set_chunk_size(kPromptTokens);  // one chunk: one observer call per layer
    model.set_qkv_observer([&](int layer, int64_t, retrokv::ConstMatrixView<float> q,
                               retrokv::ConstMatrixView<float> k,
                               retrokv::ConstMatrixView<float> v) {
      captured_->q[layer] = copy(q);
      captured_->k[layer] = copy(k);
      captured_->v[layer] = copy(v);
    });
    eng::FullAttentionBackend full(model.attention_shape());
    const retrokv::Matrix<float> last = model.forward(prompt_, full);
    model.set_qkv_observer({});
    captured_->last_logits.assign(last.data(), last.data() + last.cols());
    reference_ =
        std::make_unique<Trace>(decode_steps(model, full, captured_->last_logits, nullptr));
  }
  static void TearDownTestSuite() {
    captured_.reset();
    loaded_.reset();
    reference_.reset();
  }
  void SetUp() override {
    if (sanitizer_build())
      GTEST_SKIP() << "RETROKV_SANITIZER_BUILD=1: 30 layers of SmolLM2 per policy take minutes "
                      "under ASan+UBSan; the random-data tests cover the backend there";
    if (!loaded_)
      GTEST_SKIP() << "SmolLM2 model not found at " << model_path() << "; fetch it with "
                   << eng::kFetchModelCommand << " (or set RETROKV_MODEL_DIR)";
    ASSERT_EQ(prompt_.size(), size_t(kPromptTokens)) << "GPL-3 text too short";
  }
  static std::unique_ptr<Loaded> loaded_;
  static std::vector<int32_t> prompt_;
  static std::unique_ptr<Trace> reference_;
  static std::unique_ptr<Prompt> captured_;
};
std::unique_ptr<Loaded> StoreBackendSmolLM2::loaded_;
std::vector<int32_t> StoreBackendSmolLM2::prompt_;
std::unique_ptr<Trace> StoreBackendSmolLM2::reference_;
std::unique_ptr<Prompt> StoreBackendSmolLM2::captured_;

const Policy kPolicies[] = {Policy::kFull, Policy::kFlatTopK, Policy::kRoarGraph, Policy::kWave,
                            Policy::kQuest};

// Budget 1.0 selects every indexed token: the store attends exactly, only the summation order
// differs from the dense backend.
TEST_F(StoreBackendSmolLM2, EveryPolicyAtFullBudgetReproducesFullAttention) {
  for (Policy p : kPolicies) {
    SCOPED_TRACE(retrokv::policy_name(p));
    retrokv::LayerStats st;
    const Trace r = run_store(loaded_->model, *captured_, p, 1.0, nullptr, kExactSteps, &st);
    EXPECT_TRUE(std::equal(r.tokens.begin(), r.tokens.end(), reference_->tokens.begin()));
    float worst = 0;
    for (size_t s = 0; s < r.logits.size(); ++s)
      for (size_t i = 0; i < r.logits[s].size(); ++i)
        worst = std::max(worst, std::abs(r.logits[s][i] - reference_->logits[s][i]));
    std::printf("[ budget 1.0 ] %-10s max |logit - full| = %.2e, exact share %.3f\n",
                retrokv::policy_name(p), worst, st.exact_fraction());
    EXPECT_LT(worst, 1e-2f);
    EXPECT_GT(st.exact_fraction(), 0.999);
  }
}

// Default budget: teacher-forced on full attention's tokens, the share of steps whose greedy token
// equals full's.
TEST_F(StoreBackendSmolLM2, DefaultBudgetAgreesWithFullAttention) {
  for (Policy p : {Policy::kFlatTopK, Policy::kRoarGraph, Policy::kWave, Policy::kQuest}) {
    SCOPED_TRACE(retrokv::policy_name(p));
    retrokv::LayerStats st;
    const Trace r =
        run_store(loaded_->model, *captured_, p, 0.02, &reference_->tokens, kSteps, &st);
    EXPECT_EQ(r.tokens[0], reference_->tokens[0]);  // the prompt is attended exactly
    int agree = 0;
    for (int s = 1; s < kSteps; ++s) agree += r.tokens[s] == reference_->tokens[s];
    const double share = double(agree) / (kSteps - 1);
    std::printf("[ budget 0.02 ] %-10s agreement %d/%d, exact share %.3f\n",
                retrokv::policy_name(p), agree, kSteps - 1, st.exact_fraction());
    EXPECT_GE(share, kMinAgreement);
  }
}

}  // namespace
