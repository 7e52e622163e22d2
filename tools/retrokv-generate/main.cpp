// retrokv-generate: runs SmolLM2-135M on the CPU with a chosen attention backend and prints the
// prompt's continuation on stdout, prefill/decode speed on stderr (issue 3, item 4; sparse
// backends: issue 7).
#include <CLI/CLI.hpp>
#include <cstdio>
#include <exception>
#include <fstream>
#include <iostream>
#include <memory>
#include <sstream>
#include <string>

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

namespace {

namespace eng = retrokv::engine;

// "full" is the dense reference backend; the sparse policies run in a KVVectorStore behind
// StoreAttentionBackend (issue 7, "End to end on SmolLM2").
std::unique_ptr<eng::AttentionBackend> make_backend(const std::string& name,
                                                    const eng::AttentionShape& shape,
                                                    double budget) {
  if (name == "full") return std::make_unique<eng::FullAttentionBackend>(shape);
  retrokv::StoreConfig config;
  try {
    config.policy = retrokv::parse_policy(name);
  } catch (const retrokv::Error&) {
    RETROKV_FAIL("--backend: expected full|flat_topk|roar_graph|wave|quest, got '", name, "'");
  }
  config.params.budget_fraction = budget;
  return std::make_unique<eng::StoreAttentionBackend>(shape, config);
}

std::string read_file(const std::string& path) {
  std::ifstream in(path, std::ios::binary);
  RETROKV_CHECK(in.good(), "--prompt-file: cannot open '", path, "'");
  std::ostringstream ss;
  ss << in.rdbuf();
  return ss.str();
}

}  // namespace

int main(int argc, char** argv) {
  CLI::App app{"retrokv-generate: SmolLM2-135M text generation with a retrokv attention backend"};
  std::string prompt, prompt_file, model_path, backend_name = "full";
  int max_new = 64;
  float temperature = 0.0f;
  int top_k = 0;
  uint64_t seed = 0;
  bool chat = false;
  double budget = retrokv::PolicyParams{}.budget_fraction;
  auto* p = app.add_option("--prompt", prompt, "prompt text");
  app.add_option("--prompt-file", prompt_file, "read the prompt from a file")->excludes(p);
  app.add_option("--max-new-tokens,-n", max_new, "tokens to generate")
      ->check(CLI::NonNegativeNumber);
  app.add_option("--temperature,-t", temperature, "sampling temperature (0 = greedy)")
      ->check(CLI::NonNegativeNumber);
  app.add_option("--top-k", top_k, "sample among the top-k tokens (0 = all)");
  app.add_option("--seed", seed, "sampling seed");
  app.add_option("--backend", backend_name,
                 "attention backend: full|flat_topk|roar_graph|wave|quest");
  app.add_option("--budget", budget,
                 "sparse backends: fraction of the context selected per step (1.0 = exact)")
      ->check(CLI::Range(0.0, 1.0));
  app.add_option("--model", model_path, "GGUF file (default: $RETROKV_MODEL_DIR or models/)");
  app.add_flag("--chat", chat, "wrap the prompt in the SmolLM2-Instruct chat template");
  CLI11_PARSE(app, argc, argv);

  try {
    if (!prompt_file.empty()) prompt = read_file(prompt_file);
    RETROKV_CHECK(!prompt.empty(), "--prompt: expected a non-empty prompt (or --prompt-file)");
    const auto loaded = eng::LoadedModel::open(model_path);
    const eng::Tokenizer& tok = loaded->tok;
    eng::LlamaModel& model = loaded->model;
    auto backend = make_backend(backend_name, model.attention_shape(), budget);

    std::string text = prompt;
    if (chat) text = "<|im_start|>user\n" + prompt + "<|im_end|>\n<|im_start|>assistant\n";
    std::vector<int32_t> ids;
    if (tok.add_bos() && tok.bos_id() >= 0) ids.push_back(tok.bos_id());
    const std::vector<int32_t> body = tok.encode(text, chat);
    ids.insert(ids.end(), body.begin(), body.end());
    RETROKV_CHECK(!ids.empty(), "--prompt: tokenised to zero tokens");

    eng::Sampler sampler(eng::SamplingParams{temperature, top_k, seed});
    eng::GenerationStats stats;
    // In chat mode <|im_end|> ends the answer; otherwise the EOS token does.
    int32_t stop = tok.eos_id();
    if (chat) {
      const std::vector<int32_t> end = tok.encode("<|im_end|>", true);
      if (end.size() == 1) stop = end[0];
    }
    eng::generate(model, *backend, ids, max_new, sampler, stop, &stats, [&](int32_t t) {
      if (t == stop) return;
      std::cout << tok.token_text(t) << std::flush;
    });
    std::cout << "\n";
    std::fprintf(stderr,
                 "retrokv-generate: backend %s, %lld prompt tokens, %lld generated\n"
                 "prefill: %.1f tokens/s (%.3f s)\ndecode: %.1f tokens/s (%.3f s)\n",
                 backend->name().c_str(), static_cast<long long>(stats.n_prompt),
                 static_cast<long long>(stats.n_generated), stats.prefill_tokens_per_second(),
                 stats.prefill_seconds, stats.decode_tokens_per_second(), stats.decode_seconds);
    if (const auto* sb = dynamic_cast<const eng::StoreAttentionBackend*>(backend.get()))
      std::fprintf(stderr, "store: budget %.4f, exact share %.4f, attention %.3f s in decode\n",
                   budget, sb->stats().exact_fraction(), sb->decode_attention_seconds());
  } catch (const std::exception& e) {
    std::fprintf(stderr, "retrokv-generate: %s\n", e.what());
    return 1;
  }
  return 0;
}
