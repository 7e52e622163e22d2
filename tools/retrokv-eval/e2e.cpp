// retrokv-eval e2e: SmolLM2-135M end to end with each sparse backend against full attention
// (issue 7, "End to end on SmolLM2"). Full attention greedy-decodes N tokens after a long prompt;
// every other backend is teacher-forced on that sequence, so one divergence does not cascade, and
// is scored by greedy agreement, KL(full || backend) of the next-token distributions, the share
// of the context attended exactly and decode speed.
#include <CLI/CLI.hpp>
#include <algorithm>
#include <chrono>
#include <cmath>
#include <cstdio>
#include <fstream>
#include <memory>
#include <nlohmann/json.hpp>
#include <span>
#include <sstream>
#include <string>
#include <vector>

#include "eval_text.h"
#include "retrokv/core/error.h"
#include "retrokv/engine/full_attention_backend.h"
#include "retrokv/engine/generate.h"
#include "retrokv/engine/gguf.h"
#include "retrokv/engine/gguf_vocab.h"
#include "retrokv/engine/llama_model.h"
#include "retrokv/engine/model_files.h"
#include "retrokv/engine/store_backend.h"
#include "retrokv/store/store_config.h"

namespace retrokv::eval {

namespace {

namespace eng = retrokv::engine;
using json = nlohmann::json;
using Clock = std::chrono::steady_clock;

double since(Clock::time_point t0) {
  return std::chrono::duration<double>(Clock::now() - t0).count();
}

// Times the decode-step attention of any backend (the dense reference has no timer of its own).
class TimedBackend : public eng::AttentionBackend {
 public:
  explicit TimedBackend(eng::AttentionBackend& inner) : inner_(inner) {}
  std::string name() const override { return inner_.name(); }
  const eng::AttentionShape& shape() const override { return inner_.shape(); }
  void prefill(int layer, ConstMatrixView<float> q, ConstMatrixView<float> k,
               ConstMatrixView<float> v, MatrixView<float> out) override {
    inner_.prefill(layer, q, k, v, out);
  }
  void decode(int layer, const float* q, const float* k, const float* v, float* out) override {
    const auto t0 = Clock::now();
    inner_.decode(layer, q, k, v, out);
    seconds += since(t0);
  }
  int64_t size(int layer) const override { return inner_.size(layer); }
  void reset() override { inner_.reset(); }
  double seconds = 0;

 private:
  eng::AttentionBackend& inner_;
};

// Natural-log softmax of logits.
std::vector<double> log_softmax(std::span<const float> x) {
  const float m = *std::max_element(x.begin(), x.end());
  double s = 0;
  for (float v : x) s += std::exp(double(v) - m);
  const double lse = m + std::log(s);
  std::vector<double> out(x.size());
  for (size_t i = 0; i < x.size(); ++i) out[i] = double(x[i]) - lse;
  return out;
}

double kl(const std::vector<double>& logp, const std::vector<double>& logq) {
  double s = 0;
  for (size_t i = 0; i < logp.size(); ++i) s += std::exp(logp[i]) * (logp[i] - logq[i]);
  return std::max(0.0, s);
}

}  // namespace

int run_e2e(int argc, char** argv) {
  CLI::App app{"retrokv-eval e2e: SmolLM2 with each sparse backend vs full attention"};
  std::string text_path = "/usr/share/common-licenses/GPL-3", out_path, model_path;
  std::string question = "\n\nQuestion: What does this license allow? Answer:";
  std::string backends = "flat_topk,roar_graph,wave,quest";
  int new_tokens = 256;
  int64_t max_prompt = 0;
  double budget = PolicyParams{}.budget_fraction;
  int threads = 0;
  app.add_option("--text", text_path, "long context (default: the Debian GPL-3 text)");
  app.add_option("--question", question, "appended after the text");
  app.add_option("--new-tokens", new_tokens, "tokens full attention decodes greedily")
      ->check(CLI::Range(1, 1 << 20));
  app.add_option("--max-prompt-tokens", max_prompt,
                 "keep at most this many tokens of the text (0 = all); the question is kept")
      ->check(CLI::NonNegativeNumber);
  app.add_option("--backends", backends, "comma-separated: flat_topk,roar_graph,wave,quest");
  app.add_option("--budget", budget, "budget_fraction of the sparse backends")
      ->check(CLI::Range(0.0, 1.0));
  app.add_option("--threads", threads, "store threads (0 = OpenMP default)")
      ->check(CLI::NonNegativeNumber);
  app.add_option("--model", model_path, "GGUF file (default: $RETROKV_MODEL_DIR or models/)");
  app.add_option("--out", out_path, "JSON lines, one per backend")->required();
  CLI11_PARSE(app, argc, argv);

  std::vector<Policy> policies;
  for (const std::string& b : split_csv(backends)) policies.push_back(parse_policy(b));
  std::ofstream out(out_path);
  RETROKV_CHECK(out.good(), "--out: cannot write '", out_path, "'");

  const std::string path = eng::find_model(model_path);
  const eng::GgufFile file = eng::GgufFile::open(path);
  const eng::Tokenizer tok = eng::tokenizer_from_gguf(file);
  eng::LlamaModel model(file);
  std::vector<int32_t> prompt;
  if (tok.add_bos() && tok.bos_id() >= 0) prompt.push_back(tok.bos_id());
  const std::vector<int32_t> body = encode_text_file(tok, text_path, max_prompt);
  const std::vector<int32_t> q = tok.encode(question, false);
  prompt.insert(prompt.end(), body.begin(), body.end());
  prompt.insert(prompt.end(), q.begin(), q.end());
  const int64_t n_prompt = static_cast<int64_t>(prompt.size());
  std::fprintf(stderr, "e2e: %lld prompt tokens, %d new tokens, budget %.4f\n",
               static_cast<long long>(n_prompt), new_tokens, budget);

  // One run: prefill, then N next-token distributions; forced tokens when given.
  struct Result {
    std::vector<int32_t> tokens;
    std::vector<std::vector<double>> logp;
    double prefill_s = 0, build_s = 0, decode_s = 0, attention_s = 0;
  };
  auto run = [&](eng::AttentionBackend& inner, eng::StoreAttentionBackend* store,
                 const std::vector<int32_t>* forced) {
    Result r;
    TimedBackend backend(inner);
    auto t0 = Clock::now();
    Matrix<float> last = model.forward(prompt, backend);
    r.prefill_s = since(t0);
    if (store) {
      t0 = Clock::now();
      store->finish_prefill();
      r.build_s = since(t0);
      store->reset_stats();
    }
    std::vector<float> logits(last.data(), last.data() + last.cols());
    t0 = Clock::now();
    for (int step = 0; step < new_tokens; ++step) {
      r.logp.push_back(log_softmax(logits));
      r.tokens.push_back(eng::argmax(logits));
      if (step + 1 < new_tokens)
        logits = model.decode(forced ? (*forced)[step] : r.tokens.back(), backend);
    }
    r.decode_s = since(t0);
    r.attention_s = backend.seconds;
    return r;
  };

  const int steps = std::max(new_tokens - 1, 1);
  auto emit = [&](const std::string& name, double agreement, double kl_mean, double exact,
                  const Result& r) {
    json j{{"backend", name},
           {"agreement", agreement},
           {"kl_mean", kl_mean},
           {"exact_frac", exact},
           {"decode_tokens_per_s", (new_tokens - 1) / std::max(r.decode_s, 1e-12)},
           {"attention_ms_per_token", 1e3 * r.attention_s / steps},
           {"prefill_s", r.prefill_s},
           {"index_build_s", r.build_s},
           {"prompt_tokens", n_prompt},
           {"new_tokens", new_tokens},
           {"budget", name == "full" ? 1.0 : budget}};
    out << j.dump() << "\n";
    std::printf("%-11s %9.4f %9.5f %7.4f %10.2f %12.3f %9.2f\n", name.c_str(), agreement, kl_mean,
                exact, (new_tokens - 1) / std::max(r.decode_s, 1e-12), 1e3 * r.attention_s / steps,
                r.build_s);
    std::fflush(stdout);
  };

  std::printf("%-11s %9s %9s %7s %10s %12s %9s\n", "backend", "agreement", "kl_mean", "exact",
              "decode/s", "attn_ms/tok", "build_s");
  eng::FullAttentionBackend full(model.attention_shape());
  const Result ref = run(full, nullptr, nullptr);
  emit("full", 1.0, 0.0, 1.0, ref);
  std::fprintf(stderr, "e2e: full attention continues: %s\n", tok.decode(ref.tokens).c_str());

  for (Policy p : policies) {
    StoreConfig config;
    config.policy = p;
    config.params.budget_fraction = budget;
    config.threads = threads;
    eng::StoreAttentionBackend store(model.attention_shape(), config);
    const Result r = run(store, &store, &ref.tokens);
    int agree = 0;
    double kl_sum = 0;
    for (int s = 0; s < new_tokens; ++s) {
      agree += r.tokens[s] == ref.tokens[s];
      kl_sum += kl(ref.logp[s], r.logp[s]);
    }
    emit(policy_name(p), double(agree) / new_tokens, kl_sum / new_tokens,
         store.stats().exact_fraction(), r);
  }
  return 0;
}

}  // namespace retrokv::eval
