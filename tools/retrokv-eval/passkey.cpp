// retrokv-eval passkey: "The pass key is NNNNN. Remember it." hidden at several depths of a long
// text, asked for at the end (issue 7, "End to end on SmolLM2"). Full attention is reported
// first: the sparse backends are judged against what the 135M model does with it. Each haystack
// is prefilled once with full attention and replayed into every store backend (prompt_replay.h).
#include <CLI/CLI.hpp>
#include <algorithm>
#include <cstdio>
#include <fstream>
#include <map>
#include <memory>
#include <nlohmann/json.hpp>
#include <random>
#include <sstream>
#include <string>
#include <type_traits>
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

}  // namespace

int run_passkey(int argc, char** argv) {
  CLI::App app{"retrokv-eval passkey: pass-key retrieval at several depths per backend"};
  std::string text_path = "/usr/share/common-licenses/GPL-3", out_path, model_path;
  std::string backends = "full,flat_topk,roar_graph,wave,quest", depths_arg = "0.1,0.5,0.9";
  int64_t max_prompt = 0;
  int answer_tokens = 8;
  double budget = PolicyParams{}.budget_fraction;
  uint64_t seed = 1;
  StoreOptions opts;
  app.add_option("--text", text_path, "haystack text (default: the Debian GPL-3 text)");
  app.add_option("--depths", depths_arg, "comma-separated depths in [0, 1] of the pass key");
  app.add_option("--max-prompt-tokens", max_prompt,
                 "keep at most this many tokens of the text (0 = all)")
      ->check(CLI::NonNegativeNumber);
  app.add_option("--backends", backends, "comma-separated: full,flat_topk,roar_graph,wave,quest");
  app.add_option("--budget", budget, "budget_fraction of the sparse backends")
      ->check(CLI::Range(0.0, 1.0));
  app.add_option("--answer-tokens", answer_tokens, "tokens decoded greedily for the answer")
      ->check(CLI::Range(1, 64));
  app.add_option("--seed", seed, "seed of the pass keys");
  opts.add_to(app);
  app.add_option("--model", model_path, "GGUF file (default: $RETROKV_MODEL_DIR or models/)");
  app.add_option("--out", out_path, "JSON lines, one per (backend, depth)")->required();
  CLI11_PARSE(app, argc, argv);

  std::vector<double> depths;
  for (const std::string& d : split_csv(depths_arg)) depths.push_back(std::stod(d));
  for (double d : depths)
    RETROKV_CHECK(d >= 0.0 && d <= 1.0, "--depths: expected values in [0, 1], got ", d);
  const std::vector<std::string> names = split_csv(backends);
  for (const std::string& b : names)
    if (b != "full") parse_policy(b);  // throws naming the bad name
  std::ofstream out(out_path);
  RETROKV_CHECK(out.good(), "--out: cannot write '", out_path, "'");

  const auto loaded = eng::LoadedModel::open(model_path);
  const eng::Tokenizer& tok = loaded->tok;
  eng::LlamaModel& model = loaded->model;
  const eng::AttentionShape shape = model.attention_shape();
  const std::vector<int32_t> body = encode_text_file(tok, text_path, max_prompt);
  const std::vector<int32_t> question =
      tok.encode("\n\nWhat is the pass key? The pass key is", false);
  std::mt19937_64 rng(seed);
  std::uniform_int_distribution<int> five_digits(10000, 99999);

  std::map<std::string, int> correct_count;
  std::printf("%-11s %6s %7s %8s  %s\n", "backend", "depth", "key", "correct", "answer");
  for (double depth : depths) {
    const std::string key = std::to_string(five_digits(rng));
    const std::vector<int32_t> needle =
        tok.encode(" The pass key is " + key + ". Remember it. ", false);
    std::vector<int32_t> prompt;
    if (tok.add_bos() && tok.bos_id() >= 0) prompt.push_back(tok.bos_id());
    const size_t at = static_cast<size_t>(depth * static_cast<double>(body.size()));
    prompt.insert(prompt.end(), body.begin(), body.begin() + at);
    prompt.insert(prompt.end(), needle.begin(), needle.end());
    prompt.insert(prompt.end(), body.begin() + at, body.end());
    prompt.insert(prompt.end(), question.begin(), question.end());

    const bool keep_q = std::find(names.begin(), names.end(), "roar_graph") != names.end();
    eng::FullAttentionBackend full(shape);
    const CapturedPrompt cap = capture_prompt(model, prompt, full, keep_q);

    for (const std::string& name : names) {
      // Full attention continues from its own prefill; a store backend gets the replay.
      std::unique_ptr<eng::StoreAttentionBackend> store;
      if (name != "full") {
        store = std::make_unique<eng::StoreAttentionBackend>(
            shape, opts.config(parse_policy(name), budget));
        replay_prompt(cap, *store);
      }
      eng::AttentionBackend& backend = store ? static_cast<eng::AttentionBackend&>(*store) : full;
      std::vector<int32_t> answer;
      std::vector<float> logits = cap.last_logits;
      for (int t = 0; t < answer_tokens; ++t) {
        answer.push_back(eng::argmax(logits));
        if (t + 1 < answer_tokens) logits = model.decode(answer.back(), backend);
      }
      const std::string text = tok.decode(answer);
      const bool correct = text.find(key) != std::string::npos;
      correct_count[name] += correct;
      const double exact = store ? store->stats().exact_fraction() : 1.0;
      json j{{"backend", name},        {"depth", depth},
             {"correct", correct},     {"passkey", key},
             {"answer", text},         {"exact_frac", exact},
             {"prompt_tokens", cap.n}, {"budget", name == "full" ? 1.0 : budget}};
      out << j.dump() << "\n";
      std::string shown = text;
      std::replace(shown.begin(), shown.end(), '\n', ' ');
      std::printf("%-11s %6.2f %7s %8s  %s\n", name.c_str(), depth, key.c_str(),
                  correct ? "yes" : "no", shown.c_str());
      std::fflush(stdout);
    }
  }
  std::printf("accuracy:");
  for (const std::string& name : names)
    std::printf(" %s %d/%zu", name.c_str(), correct_count[name], depths.size());
  std::printf("\n");
  return 0;
}

}  // namespace retrokv::eval
