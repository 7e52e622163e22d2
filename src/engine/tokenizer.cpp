// Byte-level BPE tokenizer: the GPT-2 pre-tokenizer regex matched by hand over UTF-8 code points
// (std::regex has no \p{L}), then rank-ordered merges per pre-token with a binary heap over a
// linked list of symbols.
#include "retrokv/engine/tokenizer.h"

#include <algorithm>
#include <cstring>
#include <utility>

#include "retrokv/core/error.h"
#include "unicode_tables.h"

namespace retrokv::engine {
namespace {

using unicode::CpClass;

// ---- UTF-8 and code point classes -----------------------------------------------------------

constexpr uint32_t kInvalidCp = 0xFFFFFFFFu;

/// Decodes one code point at p (n > 0 bytes available); returns its length in bytes. Invalid,
/// overlong, surrogate or truncated sequences give kInvalidCp with length 1, so that every byte
/// string is consumed without error.
size_t decode_utf8(const unsigned char* p, size_t n, uint32_t& cp) {
  const unsigned char b0 = p[0];
  if (b0 < 0x80) {
    cp = b0;
    return 1;
  }
  size_t len;
  uint32_t min_cp;
  if ((b0 & 0xE0) == 0xC0) {
    len = 2, cp = b0 & 0x1F, min_cp = 0x80;
  } else if ((b0 & 0xF0) == 0xE0) {
    len = 3, cp = b0 & 0x0F, min_cp = 0x800;
  } else if ((b0 & 0xF8) == 0xF0) {
    len = 4, cp = b0 & 0x07, min_cp = 0x10000;
  } else {
    cp = kInvalidCp;
    return 1;
  }
  if (len > n) {
    cp = kInvalidCp;
    return 1;
  }
  for (size_t k = 1; k < len; ++k) {
    if ((p[k] & 0xC0) != 0x80) {
      cp = kInvalidCp;
      return 1;
    }
    cp = (cp << 6) | (p[k] & 0x3F);
  }
  if (cp < min_cp || cp > 0x10FFFF || (cp >= 0xD800 && cp <= 0xDFFF)) {
    cp = kInvalidCp;
    return 1;
  }
  return len;
}

void append_utf8(std::string& out, uint32_t cp) {
  if (cp < 0x80) {
    out += static_cast<char>(cp);
  } else if (cp < 0x800) {
    out += static_cast<char>(0xC0 | (cp >> 6));
    out += static_cast<char>(0x80 | (cp & 0x3F));
  } else if (cp < 0x10000) {
    out += static_cast<char>(0xE0 | (cp >> 12));
    out += static_cast<char>(0x80 | ((cp >> 6) & 0x3F));
    out += static_cast<char>(0x80 | (cp & 0x3F));
  } else {
    out += static_cast<char>(0xF0 | (cp >> 18));
    out += static_cast<char>(0x80 | ((cp >> 12) & 0x3F));
    out += static_cast<char>(0x80 | ((cp >> 6) & 0x3F));
    out += static_cast<char>(0x80 | (cp & 0x3F));
  }
}

CpClass classify(uint32_t cp) {
  if (cp == kInvalidCp) return CpClass::kOther;
  if (cp < 0x80) {
    // ASCII fast path: the hot case for English text and code.
    if ((cp >= 'a' && cp <= 'z') || (cp >= 'A' && cp <= 'Z')) return CpClass::kLetter;
    if (cp >= '0' && cp <= '9') return CpClass::kNumber;
    if (cp == ' ' || (cp >= 0x09 && cp <= 0x0D)) return CpClass::kSpace;
    return CpClass::kOther;
  }
  const unicode::CpRange* begin = unicode::kRanges;
  const unicode::CpRange* end = unicode::kRanges + unicode::kRangeCount;
  const unicode::CpRange* it = std::upper_bound(
      begin, end, cp, [](uint32_t c, const unicode::CpRange& r) { return c < r.first; });
  if (it == begin) return CpClass::kOther;
  --it;
  return cp <= it->last ? it->cls : CpClass::kOther;
}

/// The text as code points: byte offset, value and class of each (offsets has one extra entry,
/// the text size).
struct CodePoints {
  std::vector<uint32_t> offsets;
  std::vector<uint32_t> cps;
  std::vector<CpClass> classes;

  explicit CodePoints(std::string_view text) {
    const auto* p = reinterpret_cast<const unsigned char*>(text.data());
    const size_t n = text.size();
    offsets.reserve(n + 1);
    cps.reserve(n);
    classes.reserve(n);
    size_t i = 0;
    while (i < n) {
      uint32_t cp;
      const size_t len = decode_utf8(p + i, n - i, cp);
      offsets.push_back(static_cast<uint32_t>(i));
      cps.push_back(cp);
      classes.push_back(classify(cp));
      i += len;
    }
    offsets.push_back(static_cast<uint32_t>(n));
  }
  size_t size() const { return cps.size(); }
};

/// End (code point index) of the GPT-2 regex match starting at code point i of [.., hi):
///   's|'t|'re|'ve|'m|'ll|'d| ?\p{L}+| ?\p{N}+| ?[^\s\p{L}\p{N}]+|\s+(?!\S)|\s+
/// Alternatives are tried in order, as a backtracking regex engine does; every code point is
/// matched by one of them, so consecutive matches tile the text.
size_t gpt2_match(const CodePoints& c, size_t i, size_t hi) {
  const uint32_t cp = c.cps[i];
  if (cp == '\'' && i + 1 < hi) {
    const uint32_t a = c.cps[i + 1];
    if (a == 's' || a == 't' || a == 'm' || a == 'd') return i + 2;
    if (i + 2 < hi) {
      const uint32_t b = c.cps[i + 2];
      if ((a == 'r' && b == 'e') || (a == 'v' && b == 'e') || (a == 'l' && b == 'l')) return i + 3;
    }
  }
  // " ?X+" for X in letter, number, other: the optional space is U+0020 only.
  const size_t k = (cp == ' ' && i + 1 < hi && c.classes[i + 1] != CpClass::kSpace) ? i + 1 : i;
  const CpClass cls = c.classes[k];
  if (cls != CpClass::kSpace) {
    size_t j = k + 1;
    while (j < hi && c.classes[j] == cls) ++j;
    return j;
  }
  // Whitespace run: \s+(?!\S) backs off one code point when a non-space follows (that code point
  // then starts the next match, e.g. " world"); \s+ takes a lone whitespace before a non-space.
  size_t j = i + 1;
  while (j < hi && c.classes[j] == CpClass::kSpace) ++j;
  if (j < hi && j - i >= 2) return j - 1;
  return j;
}

// ---- GPT-2 byte <-> unicode map -------------------------------------------------------------

/// Printable Latin-1 bytes stand for themselves; the other 68 bytes (controls, space, 0x7F-0xA0,
/// soft hyphen) are shifted to U+0100.. in byte order, so every byte has a visible symbol.
struct ByteMap {
  uint32_t byte_to_cp[256];
  int16_t cp_to_byte[512];

  ByteMap() {
    std::fill(std::begin(cp_to_byte), std::end(cp_to_byte), int16_t{-1});
    uint32_t next = 256;
    for (uint32_t b = 0; b < 256; ++b) {
      const bool printable = (b >= 0x21 && b <= 0x7E) || (b >= 0xA1 && b <= 0xAC) || b >= 0xAE;
      byte_to_cp[b] = printable ? b : next++;
      cp_to_byte[byte_to_cp[b]] = static_cast<int16_t>(b);
    }
  }
};

const ByteMap& byte_map() {
  static const ByteMap map;
  return map;
}

/// Bytes a byte-level token text stands for; code points outside the map are kept verbatim.
std::string decode_byte_level(std::string_view token) {
  const ByteMap& map = byte_map();
  std::string out;
  out.reserve(token.size());
  const auto* p = reinterpret_cast<const unsigned char*>(token.data());
  size_t i = 0;
  while (i < token.size()) {
    uint32_t cp;
    const size_t len = decode_utf8(p + i, token.size() - i, cp);
    if (cp != kInvalidCp && cp < 512 && map.cp_to_byte[cp] >= 0) {
      out += static_cast<char>(map.cp_to_byte[cp]);
    } else {
      out.append(token.data() + i, len);
    }
    i += len;
  }
  return out;
}

bool is_special_type(TokenType t) {
  return t == TokenType::kControl || t == TokenType::kUserDefined;
}

}  // namespace

PreTokenizer pre_tokenizer_from_name(std::string_view pre) {
  if (pre.empty() || pre == "default" || pre == "gpt2") return PreTokenizer::kGpt2;
  if (pre == "smollm") return PreTokenizer::kSmolLM;
  RETROKV_FAIL("pre: unsupported tokenizer.ggml.pre \"", pre,
               "\" (supported: \"default\", \"gpt2\", \"smollm\")");
}

std::vector<std::string_view> pre_tokenize(std::string_view text, PreTokenizer kind) {
  std::vector<std::string_view> pieces;
  if (text.empty()) return pieces;
  RETROKV_CHECK(text.size() < (size_t{1} << 32), "text: expected fewer than 2^32 bytes, got ",
                text.size());
  const CodePoints c(text);
  const auto emit = [&](size_t a, size_t b) {
    pieces.push_back(text.substr(c.offsets[a], c.offsets[b] - c.offsets[a]));
  };
  const auto gpt2 = [&](size_t lo, size_t hi) {
    for (size_t i = lo; i < hi;) {
      const size_t j = gpt2_match(c, i, hi);
      emit(i, j);
      i = j;
    }
  };
  if (kind == PreTokenizer::kGpt2) {
    gpt2(0, c.size());
    return pieces;
  }
  // kSmolLM: each \p{N} code point is isolated; the stretches between go through the regex.
  size_t lo = 0;
  for (size_t i = 0; i < c.size(); ++i) {
    if (c.classes[i] != CpClass::kNumber) continue;
    gpt2(lo, i);
    emit(i, i + 1);
    lo = i + 1;
  }
  gpt2(lo, c.size());
  return pieces;
}

Tokenizer::Tokenizer(TokenizerVocab vocab) : vocab_(std::move(vocab)) {
  const size_t n = vocab_.tokens.size();
  RETROKV_CHECK(n > 0, "tokens: expected a non-empty vocabulary, got 0 tokens");
  RETROKV_CHECK(n < (size_t{1} << 31), "tokens: expected fewer than 2^31 tokens, got ", n);
  RETROKV_CHECK(vocab_.token_types.empty() || vocab_.token_types.size() == n,
                "token_types: expected empty or one per token (", n, "), got ",
                vocab_.token_types.size());
  const auto check_id = [n](const char* name, int32_t id) {
    RETROKV_CHECK(id >= -1 && id < static_cast<int64_t>(n), name, ": expected -1 or an id in [0, ",
                  n, "), got ", id);
  };
  check_id("bos_id", vocab_.bos_id);
  check_id("eos_id", vocab_.eos_id);
  check_id("unk_id", vocab_.unk_id);
  check_id("pad_id", vocab_.pad_id);
  pre_ = pre_tokenizer_from_name(vocab_.pre);

  // Without types, the declared special ids are the control tokens.
  if (vocab_.token_types.empty()) {
    vocab_.token_types.assign(n, static_cast<int32_t>(TokenType::kNormal));
    for (int32_t id : {vocab_.bos_id, vocab_.eos_id, vocab_.unk_id, vocab_.pad_id}) {
      if (id >= 0) vocab_.token_types[id] = static_cast<int32_t>(TokenType::kControl);
    }
  }

  std::unordered_map<std::string_view, int32_t> ids;
  ids.reserve(n);
  decoded_.resize(n);
  for (size_t i = 0; i < n; ++i) {
    const std::string& t = vocab_.tokens[i];
    ids.emplace(t, static_cast<int32_t>(i));  // first id wins for duplicated texts
    const auto type = static_cast<TokenType>(vocab_.token_types[i]);
    if (is_special_type(type)) {
      decoded_[i] = t;  // stored verbatim, e.g. "<|im_start|>"
      if (!t.empty()) {
        specials_.push_back(static_cast<int32_t>(i));
        special_first_byte_[static_cast<unsigned char>(t[0])] = true;
      }
    } else {
      decoded_[i] = decode_byte_level(t);
    }
  }
  std::stable_sort(specials_.begin(), specials_.end(), [this](int32_t a, int32_t b) {
    return vocab_.tokens[a].size() > vocab_.tokens[b].size();
  });

  const ByteMap& map = byte_map();
  for (int b = 0; b < 256; ++b) {
    std::string symbol;
    append_utf8(symbol, map.byte_to_cp[b]);
    const auto it = ids.find(symbol);
    byte_token_[b] = it != ids.end() ? it->second : -1;
  }

  merges_.reserve(vocab_.merges.size());
  std::string joined;
  for (size_t r = 0; r < vocab_.merges.size(); ++r) {
    const std::string& m = vocab_.merges[r];
    const size_t sp = m.find(' ', 1);
    RETROKV_CHECK(sp != std::string::npos && sp + 1 < m.size(), "merges[", r,
                  "]: expected \"left right\", got \"", m, "\"");
    const std::string_view left(m.data(), sp);
    const std::string_view right(m.data() + sp + 1, m.size() - sp - 1);
    const auto l = ids.find(left);
    const auto rt = ids.find(right);
    RETROKV_CHECK(l != ids.end(), "merges[", r, "]: left token \"", left, "\" is not in tokens");
    RETROKV_CHECK(rt != ids.end(), "merges[", r, "]: right token \"", right, "\" is not in tokens");
    joined.assign(left);
    joined.append(right);
    const auto merged = ids.find(joined);
    RETROKV_CHECK(merged != ids.end(), "merges[", r, "]: merged token \"", joined,
                  "\" is not in tokens");
    const uint64_t key = (uint64_t(uint32_t(l->second)) << 32) | uint32_t(rt->second);
    merges_.emplace(key, MergeResult{static_cast<int32_t>(r), merged->second});  // first wins
  }
}

TokenType Tokenizer::token_type(int32_t id) const {
  RETROKV_CHECK(id >= 0 && id < vocab_size(), "id: expected a token id in [0, ", vocab_size(),
                "), got ", id);
  return static_cast<TokenType>(vocab_.token_types[id]);
}

void Tokenizer::bpe(std::string_view piece, std::vector<int32_t>& out) const {
  // Bytes without a symbol in the vocabulary are dropped (SmolLM2 lacks 21 of the 256, e.g. 0x04
  // and the lead bytes 0xF1/0xF2), as a BPE model without an unknown token does; their
  // neighbours become adjacent and may merge.
  if (piece.size() == 1) {
    const int32_t id = byte_token_[static_cast<unsigned char>(piece[0])];
    if (id >= 0) out.push_back(id);
    return;
  }
  // Symbols form a linked list; a merge folds the right symbol into the left one.
  struct Symbol {
    int32_t id, prev, next;
  };
  struct Candidate {
    int32_t rank, left, right, left_id, right_id, merged;
  };
  // Min-heap on (rank, left position): lowest rank first, leftmost first among equal pairs.
  const auto later = [](const Candidate& a, const Candidate& b) {
    return a.rank != b.rank ? a.rank > b.rank : a.left > b.left;
  };
  std::vector<Symbol> sym;
  sym.reserve(piece.size());
  for (char ch : piece) {
    const int32_t id = byte_token_[static_cast<unsigned char>(ch)];
    if (id < 0) continue;
    const auto i = static_cast<int32_t>(sym.size());
    sym.push_back({id, i - 1, i + 1});
  }
  if (sym.empty()) return;
  sym.back().next = -1;
  const size_t n = sym.size();
  std::vector<Candidate> heap;
  const auto push = [&](int32_t left) {
    if (left < 0) return;
    const int32_t right = sym[left].next;
    if (right < 0) return;
    const uint64_t key = (uint64_t(uint32_t(sym[left].id)) << 32) | uint32_t(sym[right].id);
    const auto it = merges_.find(key);
    if (it == merges_.end()) return;
    heap.push_back({it->second.rank, left, right, sym[left].id, sym[right].id, it->second.id});
    std::push_heap(heap.begin(), heap.end(), later);
  };
  for (size_t i = 0; i + 1 < n; ++i) push(static_cast<int32_t>(i));
  while (!heap.empty()) {
    std::pop_heap(heap.begin(), heap.end(), later);
    const Candidate c = heap.back();
    heap.pop_back();
    Symbol& l = sym[c.left];
    // Stale when either side has merged since the candidate was pushed.
    if (l.id != c.left_id || l.next != c.right || sym[c.right].id != c.right_id) continue;
    l.id = c.merged;
    l.next = sym[c.right].next;
    if (l.next >= 0) sym[l.next].prev = c.left;
    sym[c.right].id = -1;
    push(l.prev);
    push(c.left);
  }
  for (int32_t i = 0; i >= 0; i = sym[i].next) out.push_back(sym[i].id);  // 0 is never merged away
}

void Tokenizer::encode_plain(std::string_view text, std::vector<int32_t>& out) const {
  for (std::string_view piece : pre_tokenize(text, pre_)) bpe(piece, out);
}

std::vector<int32_t> Tokenizer::encode(std::string_view text, bool parse_special) const {
  std::vector<int32_t> out;
  out.reserve(text.size() / 3 + 1);
  // Leftmost-longest split on special tokens; the stretches between are tokenized on their own.
  size_t start = 0;
  for (size_t i = 0; i < text.size() && !specials_.empty();) {
    int32_t found = -1;
    if (!special_first_byte_[static_cast<unsigned char>(text[i])]) {
      ++i;
      continue;
    }
    for (int32_t id : specials_) {
      const std::string& t = vocab_.tokens[id];
      if (!parse_special && static_cast<TokenType>(vocab_.token_types[id]) == TokenType::kControl) {
        continue;
      }
      if (text.compare(i, t.size(), t) == 0) {
        found = id;
        break;
      }
    }
    if (found < 0) {
      ++i;
      continue;
    }
    encode_plain(text.substr(start, i - start), out);
    out.push_back(found);
    i += vocab_.tokens[found].size();
    start = i;
  }
  encode_plain(text.substr(start), out);
  return out;
}

std::string Tokenizer::token_text(int32_t id) const {
  RETROKV_CHECK(id >= 0 && id < vocab_size(), "id: expected a token id in [0, ", vocab_size(),
                "), got ", id);
  return decoded_[id];
}

std::string Tokenizer::decode(const std::vector<int32_t>& ids) const {
  std::string out;
  for (size_t i = 0; i < ids.size(); ++i) {
    const int32_t id = ids[i];
    RETROKV_CHECK(id >= 0 && id < vocab_size(), "ids[", i, "]: expected a token id in [0, ",
                  vocab_size(), "), got ", id);
    out += decoded_[id];
  }
  return out;
}

}  // namespace retrokv::engine
