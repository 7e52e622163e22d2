// Dequantisation of the GGML block formats the SmolLM2 engine needs (see quant.h).
#include "retrokv/engine/quant.h"

#include <cstring>

#include "retrokv/core/error.h"
#include "retrokv/core/half.h"

namespace retrokv::engine {

namespace {

constexpr int64_t kQBlock = 32;  // values per block of Q4_0, Q4_1, Q8_0

float load_half(const uint8_t* p) {
  uint16_t bits;
  std::memcpy(&bits, p, sizeof bits);
  return detail::half_bits_to_float(bits);
}

float load_bf16(const uint8_t* p) {
  uint16_t bits;
  std::memcpy(&bits, p, sizeof bits);
  return detail::bf16_bits_to_float(bits);
}

// Q4_0 block: fp16 d, then 16 bytes whose low nibbles are values 0..15 and high nibbles 16..31;
// value = (nibble - 8) * d.
void dequant_q4_0(const uint8_t* src, int64_t n_blocks, float* dst) {
  for (int64_t b = 0; b < n_blocks; ++b, src += 18, dst += kQBlock) {
    const float d = load_half(src);
    const uint8_t* qs = src + 2;
    for (int j = 0; j < 16; ++j) {
      dst[j] = static_cast<float>((qs[j] & 0x0f) - 8) * d;
      dst[j + 16] = static_cast<float>((qs[j] >> 4) - 8) * d;
    }
  }
}

// Q4_1 block: fp16 d, fp16 m, 16 bytes of nibbles (same order as Q4_0); value = nibble * d + m.
void dequant_q4_1(const uint8_t* src, int64_t n_blocks, float* dst) {
  for (int64_t b = 0; b < n_blocks; ++b, src += 20, dst += kQBlock) {
    const float d = load_half(src);
    const float m = load_half(src + 2);
    const uint8_t* qs = src + 4;
    for (int j = 0; j < 16; ++j) {
      dst[j] = static_cast<float>(qs[j] & 0x0f) * d + m;
      dst[j + 16] = static_cast<float>(qs[j] >> 4) * d + m;
    }
  }
}

// Q8_0 block: fp16 d, 32 int8 values; value = q * d.
void dequant_q8_0(const uint8_t* src, int64_t n_blocks, float* dst) {
  for (int64_t b = 0; b < n_blocks; ++b, src += 34, dst += kQBlock) {
    const float d = load_half(src);
    for (int j = 0; j < 32; ++j) dst[j] = static_cast<float>(static_cast<int8_t>(src[2 + j])) * d;
  }
}

}  // namespace

GgmlTypeTraits ggml_type_traits(uint32_t type) {
  auto t = [](const char* name, int64_t values, int64_t bytes, bool deq = false) {
    return GgmlTypeTraits{name, values, bytes, true, deq};
  };
  switch (static_cast<GgmlType>(type)) {
    case GgmlType::kF32:
      return t("F32", 1, 4, true);
    case GgmlType::kF16:
      return t("F16", 1, 2, true);
    case GgmlType::kQ4_0:
      return t("Q4_0", 32, 18, true);
    case GgmlType::kQ4_1:
      return t("Q4_1", 32, 20, true);
    case GgmlType::kQ5_0:
      return t("Q5_0", 32, 22);
    case GgmlType::kQ5_1:
      return t("Q5_1", 32, 24);
    case GgmlType::kQ8_0:
      return t("Q8_0", 32, 34, true);
    case GgmlType::kQ8_1:
      return t("Q8_1", 32, 36);
    case GgmlType::kQ2_K:
      return t("Q2_K", 256, 84);
    case GgmlType::kQ3_K:
      return t("Q3_K", 256, 110);
    case GgmlType::kQ4_K:
      return t("Q4_K", 256, 144);
    case GgmlType::kQ5_K:
      return t("Q5_K", 256, 176);
    case GgmlType::kQ6_K:
      return t("Q6_K", 256, 210);
    case GgmlType::kQ8_K:
      return t("Q8_K", 256, 292);
    case GgmlType::kIQ4_NL:
      return t("IQ4_NL", 32, 18);
    case GgmlType::kIQ4_XS:
      return t("IQ4_XS", 256, 136);
    case GgmlType::kI8:
      return t("I8", 1, 1);
    case GgmlType::kI16:
      return t("I16", 1, 2);
    case GgmlType::kI32:
      return t("I32", 1, 4);
    case GgmlType::kI64:
      return t("I64", 1, 8);
    case GgmlType::kF64:
      return t("F64", 1, 8);
    case GgmlType::kBF16:
      return t("BF16", 1, 2, true);
  }
  return GgmlTypeTraits{};
}

std::string ggml_type_name(uint32_t type) {
  const GgmlTypeTraits t = ggml_type_traits(type);
  return t.known ? std::string(t.name) : "type " + std::to_string(type);
}

uint64_t ggml_bytes_for(uint32_t type, uint64_t n) {
  const GgmlTypeTraits t = ggml_type_traits(type);
  RETROKV_CHECK(t.known, "ggml type: unknown type id ", type);
  const uint64_t bv = static_cast<uint64_t>(t.block_values);
  RETROKV_CHECK(n % bv == 0, "ggml type ", t.name, ": element count must be a multiple of ", bv,
                ", got ", n);
  return n / bv * static_cast<uint64_t>(t.block_bytes);
}

void dequantize(uint32_t type, const void* src, std::size_t src_bytes, int64_t n, float* dst,
                const std::string& what) {
  const GgmlTypeTraits t = ggml_type_traits(type);
  RETROKV_CHECK(t.dequantizable, what, ": unsupported ggml type ", ggml_type_name(type),
                " (supported: F32, F16, BF16, Q8_0, Q4_0, Q4_1)");
  RETROKV_CHECK(n >= 0, what, ": n must be >= 0, got ", n);
  const uint64_t need = ggml_bytes_for(type, static_cast<uint64_t>(n));
  RETROKV_CHECK(src_bytes >= need, what, ": needs ", need, " bytes of ", t.name, " data, got ",
                src_bytes);
  const auto* p = static_cast<const uint8_t*>(src);
  const int64_t n_blocks = n / t.block_values;
  switch (static_cast<GgmlType>(type)) {
    case GgmlType::kF32:
      if (n > 0) std::memcpy(dst, p, static_cast<std::size_t>(n) * sizeof(float));
      return;
    case GgmlType::kF16:
      for (int64_t i = 0; i < n; ++i) dst[i] = load_half(p + 2 * i);
      return;
    case GgmlType::kBF16:
      for (int64_t i = 0; i < n; ++i) dst[i] = load_bf16(p + 2 * i);
      return;
    case GgmlType::kQ4_0:
      return dequant_q4_0(p, n_blocks, dst);
    case GgmlType::kQ4_1:
      return dequant_q4_1(p, n_blocks, dst);
    case GgmlType::kQ8_0:
      return dequant_q8_0(p, n_blocks, dst);
    default:
      break;
  }
  RETROKV_FAIL(what, ": unsupported ggml type ", ggml_type_name(type));
}

}  // namespace retrokv::engine
