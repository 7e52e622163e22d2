// Dequantisation of the GGML block formats on hand-made blocks with known values (quant.h).
#include <gtest/gtest.h>

#include <cstring>
#include <vector>

#include "retrokv/core/error.h"
#include "retrokv/core/half.h"
#include "retrokv/engine/quant.h"

namespace {

using retrokv::engine::dequantize;
using retrokv::engine::GgmlType;

uint32_t id(GgmlType t) { return static_cast<uint32_t>(t); }

void put_half(std::vector<uint8_t>& b, float f) {
  const uint16_t h = retrokv::detail::float_to_half_bits(f);
  b.push_back(static_cast<uint8_t>(h & 0xff));
  b.push_back(static_cast<uint8_t>(h >> 8));
}

TEST(Quant, TraitsMatchTheFileFormat) {
  EXPECT_EQ(retrokv::engine::ggml_bytes_for(id(GgmlType::kQ4_0), 64), 36u);
  EXPECT_EQ(retrokv::engine::ggml_bytes_for(id(GgmlType::kQ4_1), 64), 40u);
  EXPECT_EQ(retrokv::engine::ggml_bytes_for(id(GgmlType::kQ8_0), 64), 68u);
  EXPECT_EQ(retrokv::engine::ggml_bytes_for(id(GgmlType::kF16), 3), 6u);
  EXPECT_EQ(retrokv::engine::ggml_bytes_for(id(GgmlType::kQ6_K), 256), 210u);
  EXPECT_THROW(retrokv::engine::ggml_bytes_for(id(GgmlType::kQ4_0), 33), retrokv::Error);
  EXPECT_THROW(retrokv::engine::ggml_bytes_for(99, 32), retrokv::Error);
  EXPECT_EQ(retrokv::engine::ggml_type_name(id(GgmlType::kQ4_1)), "Q4_1");
  EXPECT_EQ(retrokv::engine::ggml_type_name(99), "type 99");
}

TEST(Quant, F32F16Bf16) {
  const float src[3] = {1.5f, -2.25f, 1e-3f};
  float out[3];
  dequantize(id(GgmlType::kF32), src, sizeof src, 3, out);
  EXPECT_EQ(out[0], 1.5f);
  EXPECT_EQ(out[2], 1e-3f);

  std::vector<uint8_t> h;
  put_half(h, 1.5f);
  put_half(h, -2.25f);
  put_half(h, 65504.0f);
  dequantize(id(GgmlType::kF16), h.data(), h.size(), 3, out);
  EXPECT_EQ(out[0], 1.5f);
  EXPECT_EQ(out[1], -2.25f);
  EXPECT_EQ(out[2], 65504.0f);

  const uint16_t bf[3] = {0x3fc0, 0xc010, 0x4049};  // 1.5, -2.25, 3.140625
  dequantize(id(GgmlType::kBF16), bf, sizeof bf, 3, out);
  EXPECT_EQ(out[0], 1.5f);
  EXPECT_EQ(out[1], -2.25f);
  EXPECT_EQ(out[2], 3.140625f);
}

// Block j's byte i holds element i in its low nibble and element i + 16 in its high nibble.
TEST(Quant, Q4_0LowNibblesFirstHalf) {
  std::vector<uint8_t> b;
  put_half(b, 0.5f);
  for (int i = 0; i < 16; ++i) b.push_back(static_cast<uint8_t>((i & 0xf) | ((15 - i) << 4)));
  std::vector<float> out(32);
  dequantize(id(GgmlType::kQ4_0), b.data(), b.size(), 32, out.data());
  for (int i = 0; i < 16; ++i) {
    EXPECT_EQ(out[i], (i - 8) * 0.5f) << i;
    EXPECT_EQ(out[i + 16], (15 - i - 8) * 0.5f) << i;
  }
}

TEST(Quant, Q4_1ScaleAndMin) {
  std::vector<uint8_t> b;
  for (int blk = 0; blk < 2; ++blk) {
    put_half(b, blk == 0 ? 0.25f : 2.0f);  // d
    put_half(b, blk == 0 ? -1.0f : 3.0f);  // m
    for (int i = 0; i < 16; ++i) b.push_back(static_cast<uint8_t>(((i + blk) & 0xf) | (i << 4)));
  }
  std::vector<float> out(64);
  dequantize(id(GgmlType::kQ4_1), b.data(), b.size(), 64, out.data());
  for (int i = 0; i < 16; ++i) {
    EXPECT_EQ(out[i], i * 0.25f - 1.0f) << i;
    EXPECT_EQ(out[i + 16], i * 0.25f - 1.0f) << i;
    EXPECT_EQ(out[32 + i], ((i + 1) & 0xf) * 2.0f + 3.0f) << i;
    EXPECT_EQ(out[32 + i + 16], i * 2.0f + 3.0f) << i;
  }
}

TEST(Quant, Q8_0SignedValues) {
  std::vector<uint8_t> b;
  put_half(b, 0.125f);
  for (int i = 0; i < 32; ++i) b.push_back(static_cast<uint8_t>(static_cast<int8_t>(i * 8 - 128)));
  std::vector<float> out(32);
  dequantize(id(GgmlType::kQ8_0), b.data(), b.size(), 32, out.data());
  for (int i = 0; i < 32; ++i) EXPECT_EQ(out[i], (i * 8 - 128) * 0.125f) << i;
}

TEST(Quant, RejectsUnsupportedTypesShortBuffersAndPartialBlocks) {
  std::vector<uint8_t> b(210 * 2, 0);
  std::vector<float> out(512);
  try {
    dequantize(id(GgmlType::kQ6_K), b.data(), b.size(), 256, out.data(), "tensor 'blk.0.x'");
    FAIL() << "Q6_K must be rejected";
  } catch (const retrokv::Error& e) {
    EXPECT_NE(std::string(e.what()).find("blk.0.x"), std::string::npos);
    EXPECT_NE(std::string(e.what()).find("Q6_K"), std::string::npos);
  }
  EXPECT_THROW(dequantize(id(GgmlType::kQ4_1), b.data(), 19, 32, out.data()), retrokv::Error);
  EXPECT_THROW(dequantize(id(GgmlType::kQ8_0), b.data(), b.size(), 31, out.data()), retrokv::Error);
}

}  // namespace
