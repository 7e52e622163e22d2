// A GGUF model opened for use: the mapped file, its tokenizer and the Llama weights, which every
// tool and model test needs together (issue 3's engine).
#pragma once

#include <memory>
#include <string>
#include <utility>

#include "retrokv/engine/gguf.h"
#include "retrokv/engine/gguf_vocab.h"
#include "retrokv/engine/llama_model.h"
#include "retrokv/engine/model_files.h"
#include "retrokv/engine/tokenizer.h"

namespace retrokv::engine {

/// The tokenizer and the model are read from `file`, which is declared first so it outlives
/// them; the object is neither copied nor moved (hold it by unique_ptr).
struct LoadedModel {
  GgufFile file;
  Tokenizer tok;
  LlamaModel model;

  explicit LoadedModel(GgufFile f)
      : file(std::move(f)), tok(tokenizer_from_gguf(file)), model(file) {}
  LoadedModel(const LoadedModel&) = delete;
  LoadedModel& operator=(const LoadedModel&) = delete;

  /// Opens find_model(explicit_path): the given file, or the fetched SmolLM2 (model_files.h);
  /// throws retrokv::Error naming where it looked when there is none.
  static std::unique_ptr<LoadedModel> open(const std::string& explicit_path = "") {
    return std::make_unique<LoadedModel>(GgufFile::open(find_model(explicit_path)));
  }
};

}  // namespace retrokv::engine
