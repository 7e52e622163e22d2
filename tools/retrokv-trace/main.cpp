// retrokv-trace: runs a text through SmolLM2-135M, greedy-generates N tokens and dumps post-RoPE
// keys, values, prefill queries and decode queries of chosen (layer, KV head) pairs as .npy, the
// real data the index and fidelity work is measured on (issue 3, item 5; DESIGN.md section 5).
#include <CLI/CLI.hpp>
#include <cstdio>
#include <exception>
#include <filesystem>
#include <fstream>
#include <map>
#include <nlohmann/json.hpp>
#include <sstream>
#include <string>
#include <vector>

#include "retrokv/core/error.h"
#include "retrokv/core/npy.h"
#include "retrokv/engine/full_attention_backend.h"
#include "retrokv/engine/generate.h"
#include "retrokv/engine/gguf.h"
#include "retrokv/engine/gguf_vocab.h"
#include "retrokv/engine/llama_model.h"
#include "retrokv/engine/loaded_model.h"
#include "retrokv/engine/model_files.h"

namespace {

namespace eng = retrokv::engine;
namespace fs = std::filesystem;

std::vector<int> parse_list(const std::string& s, int limit, const char* what) {
  std::vector<int> out;
  if (s == "all") {
    for (int i = 0; i < limit; ++i) out.push_back(i);
    return out;
  }
  std::stringstream ss(s);
  std::string item;
  while (std::getline(ss, item, ',')) {
    RETROKV_CHECK(!item.empty(), what, ": empty item in '", s, "'");
    std::size_t used = 0;
    int v = 0;
    try {
      v = std::stoi(item, &used);
    } catch (const std::exception&) {
      used = 0;
    }
    RETROKV_CHECK(used == item.size(), what, ": expected integers or 'all', got '", item, "'");
    RETROKV_CHECK(v >= 0 && v < limit, what, ": expected values in [0, ", limit, "), got ", v);
    out.push_back(v);
  }
  RETROKV_CHECK(!out.empty(), what, ": expected at least one value");
  return out;
}

// Per (layer, kv head): rows appended in position order as the model runs.
struct HeadTrace {
  std::vector<float> keys, values;            // (n_total, d)
  std::vector<std::vector<float>> prefill_q;  // group x (n_prompt, d)
  std::vector<std::vector<float>> decode_q;   // group x (n_gen, d)
};

}  // namespace

int main(int argc, char** argv) {
  CLI::App app{"retrokv-trace: dump SmolLM2 Q/K/V traces (post-RoPE, float32 .npy)"};
  std::string text_path = "/usr/share/common-licenses/GPL-3", out_dir, layers_s = "2,10,20,28";
  std::string heads_s = "all", model_path;
  int64_t max_tokens = 0;
  int n_gen = 128;
  app.add_option("--text", text_path, "text file to run through the model");
  app.add_option("--out", out_dir, "output directory")->required();
  app.add_option("--layers", layers_s, "comma-separated layers, or 'all'");
  app.add_option("--kv-heads", heads_s, "comma-separated KV heads, or 'all'");
  app.add_option("--max-tokens", max_tokens, "keep the first N prompt tokens (0 = all)")
      ->check(CLI::NonNegativeNumber);
  app.add_option("--gen", n_gen, "greedily generated tokens")->check(CLI::NonNegativeNumber);
  app.add_option("--model", model_path, "GGUF file (default: $RETROKV_MODEL_DIR or models/)");
  bool beyond_context = false;
  app.add_flag("--allow-beyond-context", beyond_context,
               "run past the model's trained context (llama.context_length): positions there were "
               "never trained, but the keys/queries are still the model's own; meta.json records "
               "it");
  CLI11_PARSE(app, argc, argv);

  try {
    std::ifstream in(text_path, std::ios::binary);
    RETROKV_CHECK(in.good(), "--text: cannot open '", text_path, "'");
    std::ostringstream ss;
    ss << in.rdbuf();
    const std::string text = ss.str();

    const std::string path = eng::find_model(model_path);  // recorded in meta.json
    const auto loaded = eng::LoadedModel::open(path);
    const eng::Tokenizer& tok = loaded->tok;
    eng::LlamaModel& model = loaded->model;
    const eng::LlamaConfig& cfg = model.config();
    const eng::AttentionShape shape = model.attention_shape();
    const int d = cfg.head_dim;
    const int group = shape.group_size();
    const std::vector<int> layers = parse_list(layers_s, cfg.n_layers, "--layers");
    const std::vector<int> heads = parse_list(heads_s, cfg.n_kv_heads, "--kv-heads");

    std::vector<int32_t> ids;
    if (tok.add_bos() && tok.bos_id() >= 0) ids.push_back(tok.bos_id());
    const std::vector<int32_t> body = tok.encode(text, false);
    ids.insert(ids.end(), body.begin(), body.end());
    if (max_tokens > 0 && static_cast<int64_t>(ids.size()) > max_tokens) ids.resize(max_tokens);
    RETROKV_CHECK(!ids.empty(), "--text: '", text_path, "' gave no tokens");
    const int64_t n_prompt = static_cast<int64_t>(ids.size());
    const int64_t n_positions = n_prompt + n_gen;
    if (beyond_context && n_positions > cfg.context_length) model.set_max_context(n_positions);
    model.check_context(n_positions, "--max-tokens + --gen (prompt " + std::to_string(n_prompt) +
                                         " + generated " + std::to_string(n_gen) + ")");
    if (n_positions > cfg.context_length)
      std::fprintf(stderr,
                   "retrokv-trace: WARNING: %lld positions exceed the trained context of %lld "
                   "(--allow-beyond-context)\n",
                   static_cast<long long>(n_positions), static_cast<long long>(cfg.context_length));

    std::map<std::pair<int, int>, HeadTrace> traces;
    std::vector<char> want_layer(static_cast<std::size_t>(cfg.n_layers), 0);
    for (int l : layers) {
      want_layer[l] = 1;
      for (int h : heads) {
        HeadTrace& t = traces[{l, h}];
        t.prefill_q.resize(group);
        t.decode_q.resize(group);
      }
    }
    model.set_qkv_observer([&](int layer, int64_t first_pos, retrokv::ConstMatrixView<float> q,
                               retrokv::ConstMatrixView<float> k,
                               retrokv::ConstMatrixView<float> v) {
      if (!want_layer[layer]) return;
      for (int h : heads) {
        HeadTrace& t = traces[{layer, h}];
        for (int64_t r = 0; r < k.rows; ++r) {
          const bool prefill = first_pos + r < n_prompt;
          t.keys.insert(t.keys.end(), k.row(r) + h * d, k.row(r) + (h + 1) * d);
          t.values.insert(t.values.end(), v.row(r) + h * d, v.row(r) + (h + 1) * d);
          for (int j = 0; j < group; ++j) {
            const float* qr = q.row(r) + (h * group + j) * d;
            auto& dst = prefill ? t.prefill_q[j] : t.decode_q[j];
            dst.insert(dst.end(), qr, qr + d);
          }
        }
      }
    });

    std::fprintf(stderr, "retrokv-trace: %lld prompt tokens from %s, generating %d\n",
                 static_cast<long long>(n_prompt), text_path.c_str(), n_gen);
    eng::FullAttentionBackend backend(shape);
    eng::Sampler greedy(eng::SamplingParams{});
    eng::GenerationStats stats;
    // generate() does not feed back the last sampled token; run it so each of the n_gen tokens
    // contributes its decode query and its own key/value.
    std::vector<int32_t> gen =
        eng::generate(model, backend, ids, n_gen, greedy, /*stop_id=*/-1, &stats);
    if (!gen.empty()) model.decode(gen.back(), backend);
    const int64_t n_total = n_prompt + static_cast<int64_t>(gen.size());
    std::fprintf(stderr, "prefill %.1f tokens/s, decode %.1f tokens/s\n",
                 stats.prefill_tokens_per_second(), stats.decode_tokens_per_second());

    fs::create_directories(out_dir);
    nlohmann::json entries = nlohmann::json::array();
    for (auto& [key, t] : traces) {
      const auto [layer, h] = key;
      const std::string name = "L" + std::to_string(layer) + "_H" + std::to_string(h);
      const fs::path dir = fs::path(out_dir) / name;
      fs::create_directories(dir);
      RETROKV_ASSERT(static_cast<int64_t>(t.keys.size()) == n_total * d);
      retrokv::save_npy((dir / "keys.npy").string(), t.keys.data(), {n_total, d});
      retrokv::save_npy((dir / "values.npy").string(), t.values.data(), {n_total, d});
      std::vector<float> pq, dq;
      std::vector<int> q_heads;
      for (int j = 0; j < group; ++j) {
        pq.insert(pq.end(), t.prefill_q[j].begin(), t.prefill_q[j].end());
        dq.insert(dq.end(), t.decode_q[j].begin(), t.decode_q[j].end());
        q_heads.push_back(h * group + j);
      }
      retrokv::save_npy((dir / "prefill_queries.npy").string(), pq.data(), {group, n_prompt, d});
      retrokv::save_npy((dir / "decode_queries.npy").string(), dq.data(),
                        {group, static_cast<int64_t>(gen.size()), d});
      nlohmann::json e = {{"layer", layer}, {"kv_head", h}, {"dir", name}, {"q_heads", q_heads}};
      std::ofstream((dir / "meta.json").string()) << e.dump(2) << "\n";
      entries.push_back(e);
    }
    nlohmann::json meta = {
        {"model", fs::path(path).filename().string()},
        {"model_name", cfg.name},
        {"text_source", text_path},
        {"n_prompt", n_prompt},
        {"n_gen", gen.size()},
        {"n_total", n_total},
        {"trained_context", cfg.context_length},
        {"beyond_trained_context", n_total > cfg.context_length},
        {"head_dim", d},
        {"scale", shape.scale},
        {"n_q_heads", cfg.n_heads},
        {"n_kv_heads", cfg.n_kv_heads},
        {"group_size", group},
        {"rope", "adjacent pairs, base " + std::to_string(cfg.rope_base)},
        {"positions",
         {{"keys", "row i is position i: [0, n_prompt) prompt, [n_prompt, n_total) generated"},
          {"prefill_queries", "[group, n_prompt, d]: row i is position i"},
          {"decode_queries",
           "[group, n_gen, d]: row i is position n_prompt + i (the query that fed generated "
           "token i back; it sees keys [0, n_prompt + i])"}}},
        {"generated_ids", gen},
        {"generated_text", tok.decode(gen)},
        {"prefill_tokens_per_second", stats.prefill_tokens_per_second()},
        {"decode_tokens_per_second", stats.decode_tokens_per_second()},
        {"traces", entries},
    };
    std::ofstream((fs::path(out_dir) / "meta.json").string()) << meta.dump(2) << "\n";
    std::fprintf(stderr, "retrokv-trace: wrote %zu traces to %s\n", traces.size(), out_dir.c_str());
  } catch (const std::exception& e) {
    std::fprintf(stderr, "retrokv-trace: %s\n", e.what());
    return 1;
  }
  return 0;
}
