// Byte-level BPE tokenizer (issue 3, item 2): exact encodings on a hand-made vocabulary, the
// GPT-2/SmolLM2 pre-tokenizer splits, round trips of random UTF-8 and bytes, vocabulary
// validation, and (when the model file is present) token ids equal to a reference BPE
// implementation's on the real SmolLM2 vocabulary.
#include <gmock/gmock.h>
#include <gtest/gtest.h>

#include <cstdint>
#include <cstdlib>
#include <filesystem>
#include <fstream>
#include <iterator>
#include <memory>
#include <random>
#include <string>
#include <vector>

#include "common/test_util.h"
#include "retrokv/core/error.h"
#include "retrokv/engine/gguf.h"
#include "retrokv/engine/gguf_vocab.h"
#include "retrokv/engine/tokenizer.h"

namespace retrokv::engine {
namespace {

using ::testing::ElementsAre;
using ::testing::ElementsAreArray;
using ::testing::HasSubstr;

// ---- a tiny hand-made vocabulary --------------------------------------------------------------

/// GPT-2's visible symbol for byte b (the byte-to-unicode map, written out independently of the
/// implementation under test).
std::string byte_symbol(int b) {
  const bool printable = (b >= 0x21 && b <= 0x7E) || (b >= 0xA1 && b <= 0xAC) || b >= 0xAE;
  int cp = b;
  if (!printable) {
    int shifted = 0;
    for (int x = 0; x < b; ++x) {
      const bool p = (x >= 0x21 && x <= 0x7E) || (x >= 0xA1 && x <= 0xAC) || x >= 0xAE;
      if (!p) ++shifted;
    }
    cp = 256 + shifted;
  }
  std::string s;
  if (cp < 0x80) {
    s += static_cast<char>(cp);
  } else {
    s += static_cast<char>(0xC0 | (cp >> 6));
    s += static_cast<char>(0x80 | (cp & 0x3F));
  }
  return s;
}

// Ids 0..255 are the bytes themselves (so a byte's id equals its value), then these.
enum : int32_t {
  kHe = 256,
  kLl,
  kHell,
  kHello,
  kSpW,
  kOr,
  kSpWor,
  kSpWorl,
  kSpWorld,
  kAa,
  kBc,
  kAb,
  kCtrlX,    // "<|x|>", control
  kUserU,    // "<u>", user-defined
  kCtrlXGt,  // "<|x|>>", control (longest match wins over "<|x|>")
  kNumTokens
};

TokenizerVocab tiny_vocab() {
  TokenizerVocab v;
  for (int b = 0; b < 256; ++b) v.tokens.push_back(byte_symbol(b));
  const std::string sp = byte_symbol(' ');  // "Ġ"
  for (const char* t : {"he", "ll", "hell", "hello"}) v.tokens.push_back(t);
  v.tokens.push_back(sp + "w");
  v.tokens.push_back("or");
  v.tokens.push_back(sp + "wor");
  v.tokens.push_back(sp + "worl");
  v.tokens.push_back(sp + "world");
  for (const char* t : {"aa", "bc", "ab", "<|x|>", "<u>", "<|x|>>"}) v.tokens.push_back(t);
  v.token_types.assign(v.tokens.size(), 1);
  v.token_types[kCtrlX] = 3;
  v.token_types[kUserU] = 4;
  v.token_types[kCtrlXGt] = 3;
  // Rank = index: "b c" (10) beats "a b" (11).
  v.merges = {"h e",       "l l",        "he ll",       "hell o", sp + " w", "o r",
              sp + "w or", sp + "wor l", sp + "worl d", "a a",    "b c",     "a b"};
  v.pre = "smollm";
  v.eos_id = kCtrlX;
  return v;
}

const Tokenizer& tiny() {
  static const Tokenizer tok(tiny_vocab());
  return tok;
}

TEST(Tokenizer, TinyVocabExactEncodings) {
  const Tokenizer& t = tiny();
  ASSERT_EQ(t.vocab_size(), kNumTokens);
  EXPECT_THAT(t.encode("hello world"), ElementsAre(kHello, kSpWorld));
  // The space before a space run stays alone ("\s+(?!\S)" backs off), the last one joins "world".
  EXPECT_THAT(t.encode("hello  world"), ElementsAre(kHello, ' ', kSpWorld));
  // Equal ranks: leftmost pair first.
  EXPECT_THAT(t.encode("aaa"), ElementsAre(kAa, 'a'));
  EXPECT_THAT(t.encode("aaaa"), ElementsAre(kAa, kAa));
  // Lower rank first even when it is further right.
  EXPECT_THAT(t.encode("abc"), ElementsAre('a', kBc));
  EXPECT_THAT(t.encode("hellx"), ElementsAre(kHell, 'x'));
  // Byte fallback: nothing merges past "he", the rest stays single bytes.
  EXPECT_THAT(t.encode("help"), ElementsAre(kHe, 'l', 'p'));
  EXPECT_THAT(t.encode("\xE4\xBD\xA0"), ElementsAre(0xE4, 0xBD, 0xA0));
  EXPECT_TRUE(t.encode("").empty());
  // smollm: digits are isolated, so " 12" is " ", "1", "2".
  EXPECT_THAT(t.encode("a 12"), ElementsAre('a', ' ', '1', '2'));
}

TEST(Tokenizer, SpecialTokens) {
  const Tokenizer& t = tiny();
  EXPECT_THAT(t.encode("<|x|>hello<u>"), ElementsAre(kCtrlX, kHello, kUserU));
  EXPECT_THAT(t.encode("<|x|>>"), ElementsAre(kCtrlXGt));
  EXPECT_THAT(t.encode("<|x|>!"), ElementsAre(kCtrlX, '!'));
  EXPECT_THAT(t.encode("<|x|><|x|>"), ElementsAre(kCtrlX, kCtrlX));
  // Without parse_special the control token is text; the user-defined one is still recognised.
  EXPECT_THAT(t.encode("<|x|>hello<u>", false),
              ElementsAre('<', '|', 'x', '|', '>', kHello, kUserU));
  EXPECT_EQ(t.decode({kCtrlX, kHello, kUserU}), "<|x|>hello<u>");
  EXPECT_EQ(t.token_text(kSpWorld), " world");
  EXPECT_EQ(t.token_text(' '), " ");
  EXPECT_EQ(t.token_text(0x0A), "\n");
  EXPECT_EQ(t.eos_id(), kCtrlX);
  EXPECT_EQ(t.bos_id(), -1);
  EXPECT_FALSE(t.add_bos());
  EXPECT_EQ(t.token_type(kUserU), TokenType::kUserDefined);
}

TEST(Tokenizer, EveryByteDecodesToItself) {
  const Tokenizer& t = tiny();
  for (int b = 0; b < 256; ++b) {
    ASSERT_TRUE(t.can_encode_byte(static_cast<unsigned char>(b)));
    ASSERT_EQ(t.token_text(b), std::string(1, static_cast<char>(b))) << "byte " << b;
  }
}

// ---- pre-tokenizer ----------------------------------------------------------------------------

std::vector<std::string> split(std::string_view text, PreTokenizer kind) {
  std::vector<std::string> out;
  for (std::string_view p : pre_tokenize(text, kind)) out.emplace_back(p);
  return out;
}

// Expected splits checked against the HF `tokenizers` ByteLevel (and Digits) pre-tokenizers.
TEST(PreTokenize, Gpt2RegexTrickyCases) {
  const auto g = PreTokenizer::kGpt2;
  EXPECT_THAT(split("don't", g), ElementsAre("don", "'t"));
  EXPECT_THAT(split("  hello  world", g), ElementsAre(" ", " hello", " ", " world"));
  EXPECT_THAT(split("2024", g), ElementsAre("2024"));
  EXPECT_THAT(split("abc 123", g), ElementsAre("abc", " 123"));
  EXPECT_THAT(split("\xE4\xBD\xA0\xE5\xA5\xBD \xE4\xB8\x96\xE7\x95\x8C", g),  // "你好 世界"
              ElementsAre("\xE4\xBD\xA0\xE5\xA5\xBD", " \xE4\xB8\x96\xE7\x95\x8C"));
  EXPECT_THAT(split("hi \xF0\x9F\x98\x80\xF0\x9F\x98\x80!", g),  // emoji are "other"
              ElementsAre("hi", " \xF0\x9F\x98\x80\xF0\x9F\x98\x80!"));
  EXPECT_THAT(split("a\n\nb", g), ElementsAre("a", "\n", "\n", "b"));
  EXPECT_THAT(split("hello   ", g), ElementsAre("hello", "   "));
  EXPECT_THAT(split("it's 'S 'LL we'll", g),
              ElementsAre("it", "'s", " '", "S", " '", "LL", " we", "'ll"));
  EXPECT_THAT(split("x  \n\n  y", g), ElementsAre("x", "  \n\n ", " y"));
  // U+00A0 and U+3000 are whitespace but not the optional " " of " ?\p{L}+".
  EXPECT_THAT(split("a\xC2\xA0"
                    "b \xE3\x80\x80"
                    "c",
                    g),
              ElementsAre("a", "\xC2\xA0", "b", " ", "\xE3\x80\x80", "c"));
  EXPECT_THAT(split("foo(bar)  {\n\treturn;\n}", g),
              ElementsAre("foo", "(", "bar", ")", " ", " {", "\n", "\t", "return", ";", "\n", "}"));
}

TEST(PreTokenize, SmolLMIsolatesEveryNumber) {
  const auto s = PreTokenizer::kSmolLM;
  EXPECT_THAT(split("2024", s), ElementsAre("2", "0", "2", "4"));
  EXPECT_THAT(split("abc 123", s), ElementsAre("abc", " ", "1", "2", "3"));
  // Arabic-Indic digits are \p{N} too.
  EXPECT_THAT(split("3.14 + \xD9\xA3\xD9\xA4", s),
              ElementsAre("3", ".", "1", "4", " +", " ", "\xD9\xA3", "\xD9\xA4"));
  EXPECT_THAT(split("don't", s), ElementsAre("don", "'t"));
}

TEST(PreTokenize, InvalidUtf8BytesAreOtherCodePoints) {
  const auto s = PreTokenizer::kSmolLM;
  EXPECT_THAT(split("a\xFF\xFE"
                    "b",
                    s),
              ElementsAre("a", "\xFF\xFE", "b"));
  // A truncated 3-byte sequence: both bytes invalid, then the letter.
  EXPECT_THAT(split(" \xE4\xBD"
                    "x",
                    s),
              ElementsAre(" \xE4\xBD", "x"));
  // An overlong "/" (C0 AF) and a surrogate (ED A0 80) are not decoded as code points.
  EXPECT_THAT(split("\xC0\xAF\xED\xA0\x80", s), ElementsAre("\xC0\xAF\xED\xA0\x80"));
}

TEST(PreTokenize, PiecesTileTheText) {
  std::mt19937 rng(7);
  for (int iter = 0; iter < 500; ++iter) {
    std::string text(rng() % 64, '\0');
    for (char& c : text) c = static_cast<char>(rng());
    for (auto kind : {PreTokenizer::kGpt2, PreTokenizer::kSmolLM}) {
      std::string joined;
      for (std::string_view p : pre_tokenize(text, kind)) {
        ASSERT_FALSE(p.empty());
        joined += p;
      }
      ASSERT_EQ(joined, text);
    }
  }
}

// ---- round trips ------------------------------------------------------------------------------

/// Random valid UTF-8 mixing ASCII, spaces, digits, Latin-1, CJK, emoji and other planes.
std::string random_utf8(std::mt19937& rng, int n_cps) {
  std::string s;
  for (int i = 0; i < n_cps; ++i) {
    uint32_t cp;
    switch (rng() % 6) {
      case 0:
        cp = 0x20 + rng() % 0x5F;
        break;
      case 1:
        cp = " \n\t'0"[rng() % 5];
        break;
      case 2:
        cp = 0x80 + rng() % 0x780;
        break;
      case 3:
        cp = 0x800 + rng() % 0xF800;
        break;
      case 4:
        cp = 0x1F300 + rng() % 0x300;
        break;
      default:
        cp = rng() % 0x110000;
        break;
    }
    if (cp >= 0xD800 && cp <= 0xDFFF) cp = 'x';
    if (cp < 0x80) {
      s += static_cast<char>(cp);
    } else if (cp < 0x800) {
      s += static_cast<char>(0xC0 | (cp >> 6));
      s += static_cast<char>(0x80 | (cp & 0x3F));
    } else if (cp < 0x10000) {
      s += static_cast<char>(0xE0 | (cp >> 12));
      s += static_cast<char>(0x80 | ((cp >> 6) & 0x3F));
      s += static_cast<char>(0x80 | (cp & 0x3F));
    } else {
      s += static_cast<char>(0xF0 | (cp >> 18));
      s += static_cast<char>(0x80 | ((cp >> 12) & 0x3F));
      s += static_cast<char>(0x80 | ((cp >> 6) & 0x3F));
      s += static_cast<char>(0x80 | (cp & 0x3F));
    }
  }
  return s;
}

TEST(Tokenizer, RoundTripRandomUtf8AndBytes) {
  const Tokenizer& t = tiny();
  std::mt19937 rng(11);
  const int iters = sanitizer_build() ? 300 : 2000;
  for (int i = 0; i < iters; ++i) {
    const std::string u = random_utf8(rng, static_cast<int>(rng() % 40));
    ASSERT_EQ(t.decode(t.encode(u)), u);
    std::string b(rng() % 40, '\0');
    for (char& c : b) c = static_cast<char>(rng());
    ASSERT_EQ(t.decode(t.encode(b)), b);
    ASSERT_EQ(t.decode(t.encode(b, false)), b);
  }
  const std::string with_specials = "<|x|>hello <u> world<|x|>>\xFF";
  EXPECT_EQ(t.decode(t.encode(with_specials)), with_specials);
}

TEST(Tokenizer, BytesWithoutSymbolAreDropped) {
  TokenizerVocab v = tiny_vocab();
  v.tokens[0x04] = "<missing-04>";  // the symbol of byte 0x04 no longer exists
  const Tokenizer t(v);
  EXPECT_FALSE(t.can_encode_byte(0x04));
  // The neighbours of the dropped byte become adjacent and merge, as in a BPE without unk.
  EXPECT_THAT(t.encode("!\x04!"), ElementsAre('!', '!'));
  EXPECT_THAT(t.encode("\x04"), ElementsAre());
  EXPECT_EQ(t.decode(t.encode("he\x04llo")), "hello");
}

// ---- validation -------------------------------------------------------------------------------

void expect_error(const TokenizerVocab& v, const std::string& needle) {
  try {
    Tokenizer t(v);
    FAIL() << "expected retrokv::Error mentioning " << needle;
  } catch (const retrokv::Error& e) {
    EXPECT_THAT(e.what(), HasSubstr(needle));
  }
}

TEST(Tokenizer, BadVocabularyThrowsNamingTheField) {
  expect_error(TokenizerVocab{}, "tokens");
  TokenizerVocab v = tiny_vocab();
  v.token_types.pop_back();
  expect_error(v, "token_types");
  v = tiny_vocab();
  v.bos_id = kNumTokens;
  expect_error(v, "bos_id");
  v = tiny_vocab();
  v.eos_id = -2;
  expect_error(v, "eos_id");
  v = tiny_vocab();
  v.unk_id = 1 << 20;
  expect_error(v, "unk_id");
  v = tiny_vocab();
  v.pad_id = -7;
  expect_error(v, "pad_id");
  v = tiny_vocab();
  v.merges.push_back("ab");
  expect_error(v, "merges[12]");
  v = tiny_vocab();
  v.merges[3] = "hell zz";
  expect_error(v, "merges[3]: right token \"zz\"");
  v = tiny_vocab();
  v.merges[0] = "x y";
  expect_error(v, "merges[0]: merged token \"xy\"");
  v = tiny_vocab();
  v.pre = "not-a-tokenizer";
  expect_error(v, "not-a-tokenizer");
  v.pre = "default";
  EXPECT_EQ(Tokenizer(v).pre_tokenizer(), PreTokenizer::kGpt2);
  v.pre = "";
  EXPECT_EQ(Tokenizer(v).pre_tokenizer(), PreTokenizer::kGpt2);

  const Tokenizer& t = tiny();
  EXPECT_THROW(t.token_text(-1), retrokv::Error);
  EXPECT_THROW(t.token_text(kNumTokens), retrokv::Error);
  try {
    t.decode({kHello, kNumTokens});
    FAIL();
  } catch (const retrokv::Error& e) {
    EXPECT_THAT(e.what(), HasSubstr("ids[1]"));
  }
}

TEST(Tokenizer, NoTokenTypesMeansSpecialIdsAreControl) {
  TokenizerVocab v = tiny_vocab();
  v.token_types.clear();
  v.bos_id = kCtrlXGt;
  const Tokenizer t(v);
  EXPECT_EQ(t.token_type(kCtrlXGt), TokenType::kControl);
  EXPECT_EQ(t.token_type(kUserU), TokenType::kNormal);
  EXPECT_THAT(t.encode("<|x|>><u>"), ElementsAre(kCtrlXGt, '<', 'u', '>'));
}

// ---- the real SmolLM2 vocabulary --------------------------------------------------------------

std::string model_path() {
  const char* dir = std::getenv("RETROKV_MODEL_DIR");
  const std::string base = dir && *dir ? dir : RETROKV_SOURCE_DIR "/models";
  return base + "/SmolLM2-135M-Instruct.Q4_1.gguf";
}

class SmolLM2Tokenizer : public ::testing::Test {
 protected:
  static void SetUpTestSuite() {
    const std::string path = model_path();
    if (!std::filesystem::exists(path)) return;
    tok_ = std::make_unique<Tokenizer>(tokenizer_vocab_from_gguf(GgufFile::open(path)));
  }
  static void TearDownTestSuite() { tok_.reset(); }
  void SetUp() override {
    if (!tok_) {
      GTEST_SKIP() << "model file " << model_path()
                   << " not found; run ./scripts/fetch_model.sh (or set RETROKV_MODEL_DIR)";
    }
  }
  static inline std::unique_ptr<Tokenizer> tok_;
};

struct Expected {
  const char* text;
  std::vector<int32_t> ids;
};

// Ids from HF `tokenizers` BPE built from this GGUF's tokens and merges, with the pre-tokenizer
// Sequence[Digits(individual_digits=True), ByteLevel(add_prefix_space=False)] and the 17 control
// tokens added as special tokens.
const std::vector<Expected>& expected_encodings() {
  static const std::vector<Expected> cases = {
      {"Hello, world! This is a test of the SmolLM2 tokenizer.",
       {19556, 28, 905, 17, 669, 314, 253, 1028, 282, 260, 3511, 308, 34519, 34, 46119, 30}},
      {"The quick brown fox jumps over the lazy dog.\n\nIt's 12345 miles away; they'll say "
       "we've done it, I'm sure you'd agree.",
       {504, 2365, 6354, 16438, 27003, 690, 260,  23790, 2767, 30,   198,  198,  1589,
        506, 216,  33,   34,    35,    36,  37,   4158,  2025, 43,   502,  3060, 1643,
        392, 3543, 2294, 357,   28,    339, 5248, 2090,  346,  6737, 3387, 30}},
      {"def fib(n):\n    if n < 2:\n        return n\n    return fib(n - 1) + fib(n - 2)\n",
       {1604, 3987, 24, 94,  727, 472, 585, 304,  2067, 216, 34, 42,  448, 1003, 304, 472, 1003,
        3987, 24,   94, 731, 216, 33,  25,  1232, 3987, 24,  94, 731, 216, 34,   25,  198}},
      {"Numbers: 2024, 3.14159, -42, 1e10, 0x1F, 1,000,000",
       {39006, 42, 216, 34,  32, 34, 36,  28, 216, 35, 30, 33, 36,  33, 37,
        41,    28, 731, 36,  34, 28, 216, 33, 85,  33, 32, 28, 216, 32, 104,
        33,    54, 28,  216, 33, 28, 32,  32, 32,  28, 32, 32, 32}},
      {"Unicode: caf\xC3\xA9 na\xC3\xAFve \xC3\xBC"
       "ber \xE4\xBD\xA0\xE5\xA5\xBD\xE4\xB8\x96"
       "\xE7\x95\x8C \xE3\x81\x93\xE3\x82\x93\xE3\x81\xAB\xE3\x81\xA1\xE3\x81\xAF "
       "\xD0\xBF\xD1\x80\xD0\xB8\xD0\xB2\xD0\xB5\xD1\x82 \xD9\x85\xD8\xB1\xD8\xAD\xD8\xA8\xD8\xA7",
       {3706, 15817, 42,    37366, 15486, 46494, 5549,  137,   593,   216,   18645, 250,  48392,
        138,  7906,  240,   178,   239,   230,   46673, 237,   10391, 237,   41152, 7365, 111,
        7365, 124,   21985, 46879, 16464, 32547, 36395, 20602, 44626, 31462, 10805}},
      {"Emoji: \xF0\x9F\x98\x80\xF0\x9F\x8E\x89\xF0\x9F\x91\x8D\xF0\x9F\x8F\xBD \xF0\x9F\x91\xA8"
       "\xE2\x80\x8D\xF0\x9F\x91\xA9\xE2\x80\x8D\xF0\x9F\x91\xA7 \xE2\x9D\xA4\xEF\xB8\x8F",
       {10809, 33777, 42,    40303, 218, 10813, 232, 227, 10813, 235, 231,
        10813, 233,   138,   15107, 235, 118,   321, 231, 10813, 235, 119,
        321,   231,   10813, 235,   117, 4636,  247, 114, 31752}},
      {"  leading spaces,   inner   runs,\ttabs\t\tand trailing   ",
       {216, 2899, 5600, 28, 256, 6210, 256, 7313, 28, 197, 100, 7366, 197, 197, 397, 35079, 333}},
      {"line1\nline2\r\n\r\nline3\n\n\n   indented\n",
       {1311, 33, 198, 1311, 34, 7209, 198, 1311, 35, 1116, 11181, 641, 6574, 198}},
      {"<|im_start|>user\nWhat is the capital of France?<|im_end|>\n<|im_start|>assistant\n",
       {1, 4093, 198, 1780, 314, 260, 3575, 282, 4649, 47, 2, 198, 1, 520, 9531, 198}},
      {"don't DON'T 's 'S ''' can't we're I've you'll he'd",
       {12420, 982, 422, 2154, 23,  68,   637, 99,   637, 67,  7855,
        416,   982, 392, 2316, 339, 3543, 346, 3060, 384, 6737}},
      {"\xC2\xBD \xE2\x85\x95 \xE2\x85\xA7 \xD9\xA3\xD9\xA4 \xC2\xB2\xC2\xB3 x\xE2\x82\x81",
       {16738, 216, 173, 223, 239, 216,   173,   223,  117,   216,
        164,   113, 164, 114, 216, 19133, 39050, 1792, 25699, 219}},
      {"a\xC2\xA0"
       "b\xE2\x80\x83"
       "c\xE3\x80\x80"
       "d\xE2\x80\xA8"
       "e \xC2\x85"
       "f",
       {81, 15442, 82, 321, 221, 83, 12109, 218, 84, 321, 118, 85, 216, 141, 223, 86}},
      {"<|endoftext|><repo_name>x<file_sep>", {0, 3, 104, 5}},
  };
  return cases;
}

TEST_F(SmolLM2Tokenizer, MetadataAsExpected) {
  EXPECT_EQ(tok_->vocab_size(), 49152);
  EXPECT_EQ(tok_->bos_id(), 1);
  EXPECT_EQ(tok_->eos_id(), 2);
  EXPECT_FALSE(tok_->add_bos());
  EXPECT_EQ(tok_->pre_tokenizer(), PreTokenizer::kSmolLM);
  EXPECT_EQ(tok_->token_text(1), "<|im_start|>");
  EXPECT_EQ(tok_->token_text(260), " the");
  // 21 of the 256 bytes have no symbol in this vocabulary, e.g. 0x04 and the lead byte 0xF1.
  int missing = 0;
  for (int b = 0; b < 256; ++b) missing += !tok_->can_encode_byte(static_cast<unsigned char>(b));
  EXPECT_EQ(missing, 21);
  EXPECT_FALSE(tok_->can_encode_byte(0xF1));
}

TEST_F(SmolLM2Tokenizer, MatchesReferenceIds) {
  for (const Expected& e : expected_encodings()) {
    EXPECT_THAT(tok_->encode(e.text), ElementsAreArray(e.ids)) << e.text;
    EXPECT_EQ(tok_->decode(e.ids), e.text);
  }
  EXPECT_TRUE(tok_->encode("").empty());
  // Without parse_special "<|im_start|>" is plain text.
  EXPECT_THAT(tok_->encode("<|im_start|>", false), ::testing::Not(::testing::Contains(1)));
}

std::string without_unencodable(const Tokenizer& t, const std::string& s) {
  std::string out;
  for (char c : s) {
    if (t.can_encode_byte(static_cast<unsigned char>(c))) out += c;
  }
  return out;
}

TEST_F(SmolLM2Tokenizer, RoundTripDropsOnlyUnencodableBytes) {
  std::mt19937 rng(5);
  const int iters = sanitizer_build() ? 200 : 1000;
  for (int i = 0; i < iters; ++i) {
    const std::string u = random_utf8(rng, static_cast<int>(rng() % 60));
    ASSERT_EQ(tok_->decode(tok_->encode(u)), without_unencodable(*tok_, u));
    std::string b(rng() % 60, '\0');
    for (char& c : b) c = static_cast<char>(rng());
    ASSERT_EQ(tok_->decode(tok_->encode(b)), without_unencodable(*tok_, b));
  }
}

// The default trace text: token count and an FNV-1a hash of the ids equal the reference
// implementation's (7639 tokens) when the file is the usual GPL-3 text.
TEST_F(SmolLM2Tokenizer, Gpl3MatchesReference) {
  const char* path = "/usr/share/common-licenses/GPL-3";
  std::ifstream in(path, std::ios::binary);
  if (!in) GTEST_SKIP() << path << " not present";
  const std::string text((std::istreambuf_iterator<char>(in)), std::istreambuf_iterator<char>());
  const std::vector<int32_t> ids = tok_->encode(text);
  EXPECT_EQ(tok_->decode(ids), text);
  if (text.size() != 35149) GTEST_SKIP() << path << " is not the expected 35149-byte text";
  EXPECT_EQ(ids.size(), 7639u);
  uint64_t h = 1469598103934665603ull;
  for (int32_t id : ids) {
    h ^= static_cast<uint32_t>(id);
    h *= 1099511628211ull;
  }
  EXPECT_EQ(h, 12106164653266596947ull);
}

}  // namespace
}  // namespace retrokv::engine
