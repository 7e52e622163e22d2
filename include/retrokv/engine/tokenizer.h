// Byte-level BPE tokenizer (GPT-2 style) built from GGUF tokenizer metadata, for the SmolLM2
// engine of issue 3 (item 2). Supports the pre-tokenizers named by tokenizer.ggml.pre:
// "default"/"gpt2" (GPT-2 regex) and "smollm" (individual digits, then the GPT-2 regex).
#pragma once

#include <cstdint>
#include <string>
#include <string_view>
#include <unordered_map>
#include <vector>

namespace retrokv::engine {

/// Everything the tokenizer needs, as stored in GGUF (tokenizer.ggml.*). Filled by the GGUF glue.
struct TokenizerVocab {
  std::vector<std::string> tokens;   // id -> token text in GPT-2 byte-level form (e.g. "Ġthe")
  std::vector<int32_t> token_types;  // GGUF token types (1 normal, 3 control, 4 user-defined,
                                     // 6 byte...); may be empty
  std::vector<std::string> merges;   // "a b" strings, rank = index
  std::string pre;                   // tokenizer.ggml.pre, e.g. "smollm"; "" means "default"
  int32_t bos_id = -1, eos_id = -1, unk_id = -1, pad_id = -1;
  bool add_bos = false;
};

/// GGUF token types (llama.cpp's llama_token_type numbering).
enum class TokenType : int32_t {
  kUndefined = 0,
  kNormal = 1,
  kUnknown = 2,
  kControl = 3,
  kUserDefined = 4,
  kUnused = 5,
  kByte = 6,
};

/// The pre-tokenizers this tokenizer implements.
enum class PreTokenizer {
  kGpt2,    // 's|'t|'re|'ve|'m|'ll|'d| ?\p{L}+| ?\p{N}+| ?[^\s\p{L}\p{N}]+|\s+(?!\S)|\s+
  kSmolLM,  // every \p{N} code point its own piece, then kGpt2 on the rest
};

/// Maps a tokenizer.ggml.pre value to a PreTokenizer: "default", "gpt2" and "" give kGpt2,
/// "smollm" gives kSmolLM; anything else throws retrokv::Error naming the value.
PreTokenizer pre_tokenizer_from_name(std::string_view pre);

/// Splits text into the pieces BPE sees (byte ranges of `text`, concatenating back to it).
/// Invalid UTF-8 bytes are taken one at a time as code points of class "other" (not a letter,
/// number or whitespace), so any byte string splits without error.
std::vector<std::string_view> pre_tokenize(std::string_view text, PreTokenizer kind);

/// Byte-level BPE: text bytes -> GPT-2 byte-to-unicode symbols -> merges applied in rank order
/// (lowest rank first, leftmost first among equal pairs) within each pre-token.
/// Thread-safe after construction (all methods are const and share no mutable state).
class Tokenizer {
 public:
  /// Validates the vocabulary: non-empty tokens, token_types empty or one per token, special ids
  /// in range or -1, every merge "a b" with a, b and ab in tokens, `pre` supported. Throws
  /// retrokv::Error naming the offending field.
  explicit Tokenizer(TokenizerVocab vocab);

  /// Token ids of `text` (arbitrary bytes; invalid UTF-8 is fine). BOS is NOT prepended: callers
  /// check add_bos(). Bytes whose symbol is not in the vocabulary (see can_encode_byte) are
  /// dropped, as by a BPE model without an unknown token; so decode(encode(s)) == s exactly when
  /// every byte of s can be encoded. When parse_special, control tokens (type 3; without
  /// token_types: the bos/eos/unk/pad tokens) such as "<|im_start|>" are recognised in the text
  /// (longest match first); user-defined tokens (type 4) are always recognised.
  std::vector<int32_t> encode(std::string_view text, bool parse_special = true) const;

  /// Concatenated bytes of the tokens (control tokens give their literal text).
  /// Throws retrokv::Error for an id out of range.
  std::string decode(const std::vector<int32_t>& ids) const;

  /// Decoded bytes of one token, e.g. " the" for "Ġthe". Throws for an id out of range.
  std::string token_text(int32_t id) const;

  int32_t bos_id() const { return vocab_.bos_id; }
  int32_t eos_id() const { return vocab_.eos_id; }
  int32_t unk_id() const { return vocab_.unk_id; }
  int32_t pad_id() const { return vocab_.pad_id; }
  int vocab_size() const { return static_cast<int>(vocab_.tokens.size()); }
  bool add_bos() const { return vocab_.add_bos; }
  PreTokenizer pre_tokenizer() const { return pre_; }
  /// Whether byte b has a symbol in the vocabulary (SmolLM2 lacks 21 bytes, e.g. 0x04, 0xF1).
  bool can_encode_byte(unsigned char b) const { return byte_token_[b] >= 0; }
  /// GGUF type of a token (without token_types: kControl for bos/eos/unk/pad, else kNormal).
  TokenType token_type(int32_t id) const;

 private:
  struct MergeResult {
    int32_t rank;
    int32_t id;  // id of the merged token
  };

  void bpe(std::string_view piece, std::vector<int32_t>& out) const;
  void encode_plain(std::string_view text, std::vector<int32_t>& out) const;

  TokenizerVocab vocab_;
  PreTokenizer pre_ = PreTokenizer::kGpt2;
  std::unordered_map<uint64_t, MergeResult> merges_;  // (left id << 32 | right id) -> merge
  int32_t byte_token_[256];                           // byte -> id of its symbol, or -1
  std::vector<std::string> decoded_;                  // id -> decoded bytes
  std::vector<int32_t> specials_;      // control/user-defined ids, longest text first
  bool special_first_byte_[256] = {};  // first bytes of specials_, to skip positions quickly
};

}  // namespace retrokv::engine
