// tokenizer.ggml.* metadata -> TokenizerVocab (gguf_vocab.h).
#include "retrokv/engine/gguf_vocab.h"

#include <limits>

#include "retrokv/core/error.h"

namespace retrokv::engine {

namespace {
int32_t read_id(const GgufFile& f, const char* key) {
  if (!f.has(key)) return -1;
  const int64_t v = f.get_int(key);
  RETROKV_CHECK(v >= -1 && v <= std::numeric_limits<int32_t>::max(), "gguf: ", key,
                " must be a token id, got ", v);
  return static_cast<int32_t>(v);
}
}  // namespace

TokenizerVocab tokenizer_vocab_from_gguf(const GgufFile& f) {
  const std::string model = f.get_string_or("tokenizer.ggml.model", "gpt2");
  RETROKV_CHECK(model == "gpt2",
                "gguf: tokenizer.ggml.model must be 'gpt2' (byte-level BPE), got '", model, "'");
  TokenizerVocab v;
  v.tokens = f.get_string_array("tokenizer.ggml.tokens");
  if (f.has("tokenizer.ggml.token_type")) {
    for (int64_t t : f.get_int_array("tokenizer.ggml.token_type"))
      v.token_types.push_back(static_cast<int32_t>(t));
  }
  if (f.has("tokenizer.ggml.merges")) v.merges = f.get_string_array("tokenizer.ggml.merges");
  v.pre = f.get_string_or("tokenizer.ggml.pre", "");
  v.bos_id = read_id(f, "tokenizer.ggml.bos_token_id");
  v.eos_id = read_id(f, "tokenizer.ggml.eos_token_id");
  v.unk_id = read_id(f, "tokenizer.ggml.unknown_token_id");
  v.pad_id = read_id(f, "tokenizer.ggml.padding_token_id");
  v.add_bos = f.get_bool_or("tokenizer.ggml.add_bos_token", false);
  return v;
}

Tokenizer tokenizer_from_gguf(const GgufFile& f) { return Tokenizer(tokenizer_vocab_from_gguf(f)); }

}  // namespace retrokv::engine
