// retrokv-eval e2e: SmolLM2-135M end to end with each sparse backend against full attention
// (issue 7, "End to end on SmolLM2"). Full attention greedy-decodes N tokens after a long prompt;
// every other backend is teacher-forced on that sequence, so one divergence does not cascade, and
// is scored by greedy agreement, KL(full || backend) of the next-token distributions, the share
// of the context attended exactly and decode speed. The prompt is prefilled once (full attention,
// exact for every backend) and its captured Q, K, V are replayed into each store backend
// (prompt_replay.h), so an 8K prompt costs one model prefill, not one per backend.
#include <CLI/CLI.hpp>
#include <algorithm>
#include <chrono>
#include <cmath>
#include <cstdio>
#include <ctime>
#include <fstream>
#include <memory>
#include <nlohmann/json.hpp>
#include <span>
#include <sstream>
#include <string>
#include <vector>

#include "eval_text.h"
#include "prompt_replay.h"
#include "retrokv/core/error.h"
#include "retrokv/engine/full_attention_backend.h"
#include "retrokv/engine/generate.h"
#include "retrokv/engine/gguf.h"
#include "retrokv/engine/gguf_vocab.h"
#include "retrokv/engine/llama_model.h"
#include "retrokv/engine/loaded_model.h"
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
    const double c0 = thread_cpu_seconds();
    const auto t0 = Clock::now();
    inner_.decode(layer, q, k, v, out);
    seconds += since(t0);
    cpu_seconds += thread_cpu_seconds() - c0;
  }
  int64_t size(int layer) const override { return inner_.size(layer); }
  void reset() override { inner_.reset(); }
  double seconds = 0;
  // CPU time of the calling thread: the attention's work when it runs on this thread alone
  // (--threads 1), and unlike wall time not inflated by other processes on a shared machine.
  double cpu_seconds = 0;

 private:
  static double thread_cpu_seconds() {
    timespec ts{};
    clock_gettime(CLOCK_THREAD_CPUTIME_ID, &ts);
    return double(ts.tv_sec) + 1e-9 * double(ts.tv_nsec);
  }
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
  std::string budgets = std::to_string(PolicyParams{}.budget_fraction);
  StoreOptions opts;
  std::string cache_path;
  app.add_option("--text", text_path, "long context (default: the Debian GPL-3 text)");
  app.add_option("--question", question, "appended after the text");
  app.add_option("--new-tokens", new_tokens, "tokens full attention decodes greedily")
      ->check(CLI::Range(1, 1 << 20));
  app.add_option("--max-prompt-tokens", max_prompt,
                 "keep at most this many tokens of the text (0 = all); the question is kept")
      ->check(CLI::NonNegativeNumber);
  app.add_option("--backends", backends,
                 "comma-separated: flat_topk,roar_graph,wave,quest, and full (the store's exact "
                 "policy, reported as full_store)");
  app.add_option("--budget", budgets,
                 "budget_fraction of the sparse backends; a comma list runs every backend at each")
      ->capture_default_str();
  opts.add_to(app);
  app.add_option("--cache", cache_path,
                 "scratch file for the full-attention reference (prefill capture, tokens, "
                 "distributions): reused when the prompt and --new-tokens match, else rewritten");
  app.add_option("--model", model_path, "GGUF file (default: $RETROKV_MODEL_DIR or models/)");
  app.add_option("--out", out_path, "JSON lines, one per (backend, budget)")->required();
  CLI11_PARSE(app, argc, argv);

  std::vector<Policy> policies;
  for (const std::string& b : split_csv(backends)) policies.push_back(parse_policy(b));
  std::vector<double> budget_list;
  for (const std::string& b : split_csv(budgets)) {
    const double f = std::stod(b);
    RETROKV_CHECK(f >= 0.0 && f <= 1.0, "--budget: expected fractions in [0, 1], got ", b);
    budget_list.push_back(f);
  }
  RETROKV_CHECK(!budget_list.empty(), "--budget: expected at least one fraction");
  std::ofstream out(out_path);
  RETROKV_CHECK(out.good(), "--out: cannot write '", out_path, "'");

  const auto loaded = eng::LoadedModel::open(model_path);
  const eng::Tokenizer& tok = loaded->tok;
  eng::LlamaModel& model = loaded->model;
  std::vector<int32_t> prompt;
  if (tok.add_bos() && tok.bos_id() >= 0) prompt.push_back(tok.bos_id());
  const std::vector<int32_t> body = encode_text_file(tok, text_path, max_prompt);
  const std::vector<int32_t> q = tok.encode(question, false);
  prompt.insert(prompt.end(), body.begin(), body.end());
  prompt.insert(prompt.end(), q.begin(), q.end());
  const int64_t n_prompt = static_cast<int64_t>(prompt.size());
  std::fprintf(stderr, "e2e: %lld prompt tokens, %d new tokens, update interval %lld\n",
               static_cast<long long>(n_prompt), new_tokens,
               static_cast<long long>(opts.update_interval));

  // N next-token distributions from `logits` on: greedy, or forced tokens when given.
  struct Result {
    std::vector<int32_t> tokens;
    std::vector<std::vector<double>> logp;
    double prefill_s = 0, build_s = 0, decode_s = 0, attention_s = 0, attention_cpu_s = 0;
  };
  auto decode = [&](TimedBackend& backend, std::vector<float> logits,
                    const std::vector<int32_t>* forced, Result& r) {
    backend.seconds = backend.cpu_seconds = 0;
    const auto t0 = Clock::now();
    for (int step = 0; step < new_tokens; ++step) {
      r.logp.push_back(log_softmax(logits));
      r.tokens.push_back(eng::argmax(logits));
      if (step + 1 < new_tokens)
        logits = model.decode(forced ? (*forced)[step] : r.tokens.back(), backend);
    }
    r.decode_s = since(t0);
    r.attention_s = backend.seconds;
    r.attention_cpu_s = backend.cpu_seconds;
  };

  const int steps = std::max(new_tokens - 1, 1);
  bool cached = false;  // the reference's timings come from the --cache file (an earlier run)
  auto emit = [&](const std::string& name, double budget, double agreement, double kl_mean,
                  const LayerStats* st, const Result& r) {
    const double exact = st ? st->exact_fraction() : 1.0;
    const double steady =
        st && st->context_tokens ? double(st->steady_tokens) / st->context_tokens : 0.0;
    json j{{"backend", name},
           {"agreement", agreement},
           {"kl_mean", kl_mean},
           {"exact_frac", exact},
           {"steady_frac", steady},
           {"decode_tokens_per_s", (new_tokens - 1) / std::max(r.decode_s, 1e-12)},
           {"attention_ms_per_token", 1e3 * r.attention_s / steps},
           {"attention_cpu_ms_per_token", 1e3 * r.attention_cpu_s / steps},
           {"prefill_s", r.prefill_s},
           {"index_build_s", r.build_s},
           {"prompt_tokens", n_prompt},
           {"new_tokens", new_tokens},
           {"budget", budget},
           {"n_local", opts.n_local},
           {"update_interval", opts.update_interval},
           {"max_train_queries", opts.max_train_queries},
           {"roar_L", opts.roar_L},
           {"threads", opts.threads}};
    if (!st) j["reference_from_cache"] = cached;
    if (st) {
      j["keys_scanned_per_head_step"] =
          double(st->keys_scanned) / std::max<int64_t>(1, st->head_steps);
      // Thread-seconds per phase over all layers (LayerStats), per decode step: index updates
      // (appends), selection, exact attention (wave: its whole step), LSE merge.
      j["update_ms_per_token"] = 1e3 * st->build_seconds / steps;
      j["select_ms_per_token"] = 1e3 * st->select_seconds / steps;
      j["exact_ms_per_token"] = 1e3 * st->exact_seconds / steps;
      j["merge_ms_per_token"] = 1e3 * st->merge_seconds / steps;
    }
    out << j.dump() << "\n";
    out.flush();
    std::printf("%-11s %7.4f %9.4f %9.5f %7.4f %10.2f %12.3f %12.3f %9.2f\n", name.c_str(), budget,
                agreement, kl_mean, exact, (new_tokens - 1) / std::max(r.decode_s, 1e-12),
                1e3 * r.attention_s / steps, 1e3 * r.attention_cpu_s / steps, r.build_s);
    std::fflush(stdout);
  };

  std::printf("%-11s %7s %9s %9s %7s %10s %12s %12s %9s\n", "backend", "budget", "agreement",
              "kl_mean", "exact", "decode/s", "attn_ms/tok", "attn_cpu_ms", "build_s");
  // The reference: full attention prefills the prompt (captured for the replays) and decodes.
  Result ref;
  CapturedPrompt cap;
  const bool keep_q =
      std::find(policies.begin(), policies.end(), Policy::kRoarGraph) != policies.end();
  // The cache key: the prompt, --new-tokens and whether the queries were kept (a cache with
  // them serves a run that needs none).
  auto key_for = [&](bool q) {
    std::vector<int32_t> key = prompt;
    key.push_back(new_tokens);
    key.push_back(q);
    return key;
  };
  for (bool q : {true, false}) {
    if (cache_path.empty() || cached || (keep_q && !q)) continue;
    std::ifstream in(cache_path, std::ios::binary);
    if (in.good() && read_capture(in, key_for(q), cap)) {
      ref.tokens = detail::read_vec<int32_t>(in, uint64_t{1} << 32);
      const std::vector<double> t = detail::read_vec<double>(in, 8);
      ref.prefill_s = t.at(0), ref.decode_s = t.at(1), ref.attention_s = t.at(2);
      ref.attention_cpu_s = t.size() > 3 ? t[3] : 0.0;
      for (int s = 0; s < new_tokens; ++s) {
        const std::vector<float> lp = detail::read_vec<float>(in, uint64_t{1} << 32);
        ref.logp.emplace_back(lp.begin(), lp.end());
      }
      cached = true;
      std::fprintf(stderr, "e2e: full-attention reference read from %s\n", cache_path.c_str());
    }
  }
  if (!cached) {
    eng::FullAttentionBackend full(model.attention_shape());
    TimedBackend timed(full);
    const auto t0 = Clock::now();
    cap = capture_prompt(model, prompt, timed, keep_q);
    ref.prefill_s = since(t0);
    decode(timed, cap.last_logits, nullptr, ref);
    if (!cache_path.empty()) {
      std::ofstream cout_(cache_path, std::ios::binary);
      write_capture(cout_, key_for(keep_q), cap);
      detail::write_vec(cout_, ref.tokens);
      detail::write_vec(cout_, std::vector<double>{ref.prefill_s, ref.decode_s, ref.attention_s,
                                                   ref.attention_cpu_s});
      for (const auto& lp : ref.logp)
        detail::write_vec(cout_, std::vector<float>(lp.begin(), lp.end()));
      RETROKV_CHECK(cout_.good(), "--cache: cannot write '", cache_path, "'");
    }
  }
  emit("full", 1.0, 1.0, 0.0, nullptr, ref);
  std::fprintf(stderr, "e2e: prefill %.1f s, captured %.0f MB; full attention continues: %s\n",
               ref.prefill_s, cap.bytes() / 1e6, tok.decode(ref.tokens).c_str());

  for (double budget : budget_list) {
    for (Policy p : policies) {
      eng::StoreAttentionBackend store(model.attention_shape(), opts.config(p, budget));
      TimedBackend timed(store);
      Result r;
      auto t0 = Clock::now();
      replay_prompt(cap, store);
      store.finish_prefill();
      r.build_s = since(t0);
      store.reset_stats();
      decode(timed, cap.last_logits, &ref.tokens, r);
      int agree = 0;
      double kl_sum = 0;
      for (int s = 0; s < new_tokens; ++s) {
        agree += r.tokens[s] == ref.tokens[s];
        kl_sum += kl(ref.logp[s], r.logp[s]);
      }
      const LayerStats st = store.stats();
      // "full" here is the store's exact policy (same kernel as the reference, through the
      // store): a same-run timing baseline when the reference came from --cache.
      emit(opts.backend_name(p), budget, double(agree) / new_tokens, kl_sum / new_tokens, &st, r);
    }
  }
  return 0;
}

}  // namespace retrokv::eval
