// Glue between the GGUF reader and the BPE tokenizer: the tokenizer.ggml.* metadata of a GGUF
// file as a TokenizerVocab (SmolLM2 engine, DESIGN.md section 2, "engine").
#pragma once

#include "retrokv/engine/gguf.h"
#include "retrokv/engine/tokenizer.h"

namespace retrokv::engine {

/// Reads tokenizer.ggml.{tokens, token_type, merges, pre, bos/eos/unknown/padding_token_id,
/// add_bos_token}. Throws retrokv::Error when tokens are missing or tokenizer.ggml.model is not
/// "gpt2" (byte-level BPE).
TokenizerVocab tokenizer_vocab_from_gguf(const GgufFile& file);

/// Shortcut: Tokenizer(tokenizer_vocab_from_gguf(file)).
Tokenizer tokenizer_from_gguf(const GgufFile& file);

}  // namespace retrokv::engine
