// GGUF reader: every metadata type round-trips through GgufWriter, tensors land at their aligned
// offsets and dequantise, and truncated or bit-flipped files throw retrokv::Error (never crash).
#include <gtest/gtest.h>

#include <algorithm>
#include <cstdlib>
#include <cstring>
#include <fstream>
#include <random>
#include <string>
#include <vector>

#include "retrokv/core/error.h"
#include "retrokv/core/half.h"
#include "retrokv/engine/gguf.h"
#include "retrokv/engine/gguf_vocab.h"

namespace {

using retrokv::engine::GgmlType;
using retrokv::engine::GgufFile;
using retrokv::engine::GgufValueType;
using retrokv::engine::GgufWriter;

std::vector<uint8_t> f32_bytes(const std::vector<float>& v) {
  std::vector<uint8_t> b(v.size() * 4);
  std::memcpy(b.data(), v.data(), b.size());
  return b;
}

std::vector<uint8_t> small_file(uint32_t alignment = 0) {
  GgufWriter w;
  if (alignment) w.set_alignment(alignment);
  w.add_string("general.architecture", "llama");
  w.add_uint8("t.u8", 200);
  w.add_int8("t.i8", -100);
  w.add_uint16("t.u16", 60000);
  w.add_int16("t.i16", -30000);
  w.add_uint32("t.u32", 4000000000u);
  w.add_int32("t.i32", -2000000000);
  w.add_uint64("t.u64", 1ull << 40);
  w.add_int64("t.i64", -(1ll << 40));
  w.add_float32("t.f32", 1.5f);
  w.add_float64("t.f64", -0.125);
  w.add_bool("t.bool", true);
  w.add_string_array("tokenizer.ggml.tokens", {"a", "b", "ab", "", "\xc4\xa0x"});
  w.add_int32_array("tokenizer.ggml.token_type", {1, 1, 1, 3, 1});
  w.add_string_array("tokenizer.ggml.merges", {"a b"});
  w.add_uint32("tokenizer.ggml.bos_token_id", 3);
  w.add_string("tokenizer.ggml.model", "gpt2");
  w.add_string("tokenizer.ggml.pre", "smollm");
  w.add_tensor("vec", {3}, static_cast<uint32_t>(GgmlType::kF32), f32_bytes({1, 2, 3}));
  // A Q8_0 matrix (rows 2, cols 32): row r has scale r + 1 and values i - 16.
  std::vector<uint8_t> q8;
  for (int r = 0; r < 2; ++r) {
    const uint16_t d = retrokv::detail::float_to_half_bits(static_cast<float>(r + 1));
    q8.push_back(d & 0xff);
    q8.push_back(d >> 8);
    for (int i = 0; i < 32; ++i) q8.push_back(static_cast<uint8_t>(static_cast<int8_t>(i - 16)));
  }
  w.add_tensor("mat", {32, 2}, static_cast<uint32_t>(GgmlType::kQ8_0), q8);
  w.add_tensor("k", {256}, static_cast<uint32_t>(GgmlType::kQ6_K), std::vector<uint8_t>(210, 0));
  return w.finish();
}

TEST(Gguf, MetadataOfEveryTypeRoundTrips) {
  const GgufFile f = GgufFile::from_bytes(small_file());
  EXPECT_EQ(f.version(), 3u);
  EXPECT_EQ(f.alignment(), 32u);
  EXPECT_EQ(f.get_string("general.architecture"), "llama");
  EXPECT_EQ(f.get_uint("t.u8"), 200u);
  EXPECT_EQ(f.get_int("t.i8"), -100);
  EXPECT_EQ(f.get_uint("t.u16"), 60000u);
  EXPECT_EQ(f.get_int("t.i16"), -30000);
  EXPECT_EQ(f.get_uint("t.u32"), 4000000000u);
  EXPECT_EQ(f.get_int("t.i32"), -2000000000);
  EXPECT_EQ(f.get_uint("t.u64"), 1ull << 40);
  EXPECT_EQ(f.get_int("t.i64"), -(1ll << 40));
  EXPECT_EQ(f.get_float("t.f32"), 1.5);
  EXPECT_EQ(f.get_float("t.f64"), -0.125);
  EXPECT_TRUE(f.get_bool("t.bool"));
  EXPECT_EQ(f.find("t.f32")->type, GgufValueType::kFloat32);
  const auto& toks = f.get_string_array("tokenizer.ggml.tokens");
  ASSERT_EQ(toks.size(), 5u);
  EXPECT_EQ(toks[2], "ab");
  EXPECT_EQ(toks[3], "");
  EXPECT_EQ(f.get_int_array("tokenizer.ggml.token_type"), (std::vector<int64_t>{1, 1, 1, 3, 1}));
  // Wrong types, negative-to-unsigned and missing keys are errors naming the key.
  EXPECT_THROW(f.get_string("t.u8"), retrokv::Error);
  EXPECT_THROW(f.get_uint("t.i8"), retrokv::Error);
  EXPECT_THROW(f.get_bool("t.u8"), retrokv::Error);
  try {
    f.get_uint("no.such.key");
    FAIL();
  } catch (const retrokv::Error& e) {
    EXPECT_NE(std::string(e.what()).find("no.such.key"), std::string::npos);
  }
  EXPECT_EQ(f.get_uint_or("no.such.key", 7), 7u);
}

TEST(Gguf, TensorsAreAlignedAndDequantise) {
  for (uint32_t alignment : {0u, 64u}) {
    const GgufFile f = GgufFile::from_bytes(small_file(alignment));
    EXPECT_EQ(f.alignment(), alignment ? alignment : 32u);
    ASSERT_EQ(f.tensors().size(), 3u);
    const auto& vec = f.tensor("vec");
    EXPECT_EQ(vec.n_elements, 3u);
    EXPECT_EQ(f.dequantize(vec), (std::vector<float>{1, 2, 3}));
    const auto& mat = f.tensor("mat");
    EXPECT_EQ(mat.rows(), 2);
    EXPECT_EQ(mat.cols(), 32);
    EXPECT_EQ(mat.offset % f.alignment(), 0u);
    EXPECT_EQ(reinterpret_cast<uintptr_t>(mat.data) % f.alignment(),
              reinterpret_cast<uintptr_t>(vec.data) % f.alignment());
    const std::vector<float> m = f.dequantize(mat);
    for (int r = 0; r < 2; ++r)
      for (int i = 0; i < 32; ++i) EXPECT_EQ(m[r * 32 + i], (i - 16) * (r + 1.0f));
    try {
      f.dequantize(f.tensor("k"));
      FAIL() << "Q6_K must be rejected";
    } catch (const retrokv::Error& e) {
      EXPECT_NE(std::string(e.what()).find("'k'"), std::string::npos) << e.what();
      EXPECT_NE(std::string(e.what()).find("Q6_K"), std::string::npos) << e.what();
    }
    EXPECT_THROW(f.tensor("missing"), retrokv::Error);
  }
}

TEST(Gguf, OpensFromDiskWithMmap) {
  const std::string path = ::testing::TempDir() + "/retrokv_test_small.gguf";
  const std::vector<uint8_t> bytes = small_file();
  std::ofstream(path, std::ios::binary)
      .write(reinterpret_cast<const char*>(bytes.data()),
             static_cast<std::streamsize>(bytes.size()));
  const GgufFile f = GgufFile::open(path);
  EXPECT_EQ(f.dequantize(f.tensor("vec")), (std::vector<float>{1, 2, 3}));
  EXPECT_THROW(GgufFile::open(path + ".missing"), retrokv::Error);
}

TEST(Gguf, VocabGlueReadsTokenizerMetadata) {
  const GgufFile f = GgufFile::from_bytes(small_file());
  const auto v = retrokv::engine::tokenizer_vocab_from_gguf(f);
  EXPECT_EQ(v.tokens.size(), 5u);
  EXPECT_EQ(v.token_types, (std::vector<int32_t>{1, 1, 1, 3, 1}));
  EXPECT_EQ(v.merges, (std::vector<std::string>{"a b"}));
  EXPECT_EQ(v.pre, "smollm");
  EXPECT_EQ(v.bos_id, 3);
  EXPECT_EQ(v.eos_id, -1);
  EXPECT_FALSE(v.add_bos);
}

TEST(Gguf, RejectsBadHeaders) {
  std::vector<uint8_t> b = small_file();
  auto with = [&](std::size_t at, uint8_t value) {
    std::vector<uint8_t> c = b;
    c[at] = value;
    return c;
  };
  EXPECT_THROW(GgufFile::from_bytes(with(0, 'X')), retrokv::Error);    // magic
  EXPECT_THROW(GgufFile::from_bytes(with(4, 1)), retrokv::Error);      // version 1
  EXPECT_THROW(GgufFile::from_bytes(with(4, 4)), retrokv::Error);      // version 4
  EXPECT_THROW(GgufFile::from_bytes(with(15, 0x7f)), retrokv::Error);  // absurd tensor count
  EXPECT_THROW(GgufFile::from_bytes({}), retrokv::Error);
  GgufWriter w;
  w.add_uint32("general.alignment", 48);  // not a power of two
  EXPECT_THROW(GgufFile::from_bytes(w.finish()), retrokv::Error);
}

// Every truncation and many random bit flips either parse (the flip hit a value, not a length)
// or throw retrokv::Error; anything else (a crash, another exception) fails the test. Under ASan
// an out-of-bounds read would abort, so this is also a bounds check of every read.
TEST(Gguf, FuzzTruncationsAndBitFlipsNeverCrash) {
  const std::vector<uint8_t> b = small_file();
  // Cutting into the header, metadata, tensor infos or any tensor's bytes is an error; only
  // cutting the zero padding after the last tensor (< alignment bytes) leaves a valid file.
  int errors = 0, parsed = 0;
  std::size_t shortest_valid = b.size();
  for (std::size_t len = 0; len < b.size(); ++len) {
    std::vector<uint8_t> c(b.begin(), b.begin() + static_cast<std::ptrdiff_t>(len));
    try {
      GgufFile::from_bytes(std::move(c));
      ++parsed;
      shortest_valid = std::min(shortest_valid, len);
    } catch (const retrokv::Error&) {
      ++errors;
    }
  }
  EXPECT_EQ(errors + parsed, static_cast<int>(b.size()));
  EXPECT_GT(shortest_valid + 32, b.size());  // only the trailing padding may go
  EXPECT_EQ(parsed, static_cast<int>(b.size() - shortest_valid));

  std::mt19937 rng(1234);
  const int n_flips = std::getenv("RETROKV_SANITIZER_BUILD") ? 1500 : 6000;
  errors = parsed = 0;
  for (int it = 0; it < n_flips; ++it) {
    std::vector<uint8_t> c = b;
    const int flips = 1 + static_cast<int>(rng() % 3);
    for (int k = 0; k < flips; ++k) c[rng() % c.size()] ^= static_cast<uint8_t>(1u << (rng() % 8));
    try {
      const GgufFile f = GgufFile::from_bytes(std::move(c));
      for (const auto& t : f.tensors()) {
        try {
          (void)f.dequantize(t);
        } catch (const retrokv::Error&) {
        }
      }
      ++parsed;
    } catch (const retrokv::Error&) {
      ++errors;
    }
  }
  EXPECT_EQ(parsed + errors, n_flips);
  EXPECT_GT(errors, n_flips / 10);  // the flips do hit structure, not only payload
}

}  // namespace
