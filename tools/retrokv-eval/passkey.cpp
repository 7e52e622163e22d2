// retrokv-eval passkey: "The pass key is NNNNN. Remember it." hidden at several depths of a long
// text, asked for at the end (issue 7, "End to end on SmolLM2"). Full attention is reported
// first: the sparse backends are judged against what the 135M model does with it.
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

// The prompt's post-RoPE Q, K, V per layer, captured from the full-attention prefill. Prefill is
// exact for every backend, so a sparse backend is prefilled from these instead of re-running the
// model over the prompt.
struct CapturedPrompt {
  std::vector<std::vector<float>> q, k, v;  // per layer, (n, width) row-major
  int64_t n = 0;
  std::vector<float> last_logits;
};

}  // namespace

int run_passkey(int argc, char** argv) {
  CLI::App app{"retrokv-eval passkey: pass-key retrieval at several depths per backend"};
  std::string text_path = "/usr/share/common-licenses/GPL-3", out_path, model_path;
  std::string backends = "full,flat_topk,roar_graph,wave,quest", depths_arg = "0.1,0.5,0.9";
  int64_t max_prompt = 0;
  int answer_tokens = 8;
  double budget = PolicyParams{}.budget_fraction;
  uint64_t seed = 1;
  int threads = 0;
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
  app.add_option("--threads", threads, "store threads (0 = OpenMP default)")
      ->check(CLI::NonNegativeNumber);
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

  const std::string path = eng::find_model(model_path);
  const eng::GgufFile file = eng::GgufFile::open(path);
  const eng::Tokenizer tok = eng::tokenizer_from_gguf(file);
  eng::LlamaModel model(file);
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

    CapturedPrompt cap;
    cap.q.resize(shape.n_layers);
    cap.k.resize(shape.n_layers);
    cap.v.resize(shape.n_layers);
    cap.n = static_cast<int64_t>(prompt.size());
    auto keep = [](std::vector<float>& dst, ConstMatrixView<float> m) {
      for (int64_t i = 0; i < m.rows; ++i) dst.insert(dst.end(), m.row(i), m.row(i) + m.cols);
    };
    model.set_qkv_observer([&](int layer, int64_t, ConstMatrixView<float> q,
                               ConstMatrixView<float> k, ConstMatrixView<float> v) {
      keep(cap.q[layer], q);
      keep(cap.k[layer], k);
      keep(cap.v[layer], v);
    });
    {
      eng::FullAttentionBackend full(shape);
      const Matrix<float> last = model.forward(prompt, full);
      cap.last_logits.assign(last.data(), last.data() + last.cols());
    }
    model.set_qkv_observer({});

    for (const std::string& name : names) {
      std::unique_ptr<eng::AttentionBackend> backend;
      if (name == "full") {
        backend = std::make_unique<eng::FullAttentionBackend>(shape);
      } else {
        StoreConfig config;
        config.policy = parse_policy(name);
        config.params.budget_fraction = budget;
        config.threads = threads;
        backend = std::make_unique<eng::StoreAttentionBackend>(shape, config);
      }
      Matrix<float> scratch(cap.n, shape.q_width());
      for (int l = 0; l < shape.n_layers; ++l)
        backend->prefill(l, ConstMatrixView<float>(cap.q[l].data(), cap.n, shape.q_width()),
                         ConstMatrixView<float>(cap.k[l].data(), cap.n, shape.kv_width()),
                         ConstMatrixView<float>(cap.v[l].data(), cap.n, shape.kv_width()),
                         scratch.view());
      std::vector<int32_t> answer;
      std::vector<float> logits = cap.last_logits;
      for (int t = 0; t < answer_tokens; ++t) {
        answer.push_back(eng::argmax(logits));
        if (t + 1 < answer_tokens) logits = model.decode(answer.back(), *backend);
      }
      const std::string text = tok.decode(answer);
      const bool correct = text.find(key) != std::string::npos;
      correct_count[name] += correct;
      double exact = 1.0;
      if (auto* sb = dynamic_cast<eng::StoreAttentionBackend*>(backend.get()))
        exact = sb->stats().exact_fraction();
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
