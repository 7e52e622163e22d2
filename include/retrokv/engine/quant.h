// GGML tensor element types and their dequantisation to float, for the SmolLM2 example engine
// (DESIGN.md section 2, "engine"). Block layouts follow the GGUF/ggml file format: Q4_0, Q4_1 and
// Q8_0 store 32 values per block with an fp16 scale (and fp16 minimum for Q4_1).
#pragma once

#include <cstddef>
#include <cstdint>
#include <string>

namespace retrokv::engine {

/// GGML type ids as stored in GGUF tensor infos (only the ones retrokv names).
enum class GgmlType : uint32_t {
  kF32 = 0,
  kF16 = 1,
  kQ4_0 = 2,
  kQ4_1 = 3,
  kQ5_0 = 6,
  kQ5_1 = 7,
  kQ8_0 = 8,
  kQ8_1 = 9,
  kQ2_K = 10,
  kQ3_K = 11,
  kQ4_K = 12,
  kQ5_K = 13,
  kQ6_K = 14,
  kQ8_K = 15,
  kIQ4_NL = 20,
  kIQ4_XS = 23,
  kI8 = 24,
  kI16 = 25,
  kI32 = 26,
  kI64 = 27,
  kF64 = 28,
  kBF16 = 30,
};

/// Values per block and bytes per block of a GGML type. `known` is false for ids retrokv cannot
/// size (the file then cannot be laid out and is rejected).
struct GgmlTypeTraits {
  const char* name = "unknown";
  int64_t block_values = 0;
  int64_t block_bytes = 0;
  bool known = false;
  bool dequantizable = false;  ///< F32, F16, BF16, Q8_0, Q4_0, Q4_1
};

/// Traits of a raw type id; unknown ids give traits with known == false.
GgmlTypeTraits ggml_type_traits(uint32_t type);

/// Printable name of a raw type id ("Q4_1", "type 99" for unknown ids).
std::string ggml_type_name(uint32_t type);

/// Bytes taken by `n` values of `type`. Throws retrokv::Error when the type is unknown or `n` is
/// not a whole number of blocks.
uint64_t ggml_bytes_for(uint32_t type, uint64_t n);

/// Dequantises `n` consecutive values of `type` from `src` (which holds `src_bytes` bytes) into
/// `dst[n]`. `n` must be a whole number of blocks and `src_bytes` large enough. Throws
/// retrokv::Error naming `what` (usually the tensor name) and the type when the type is not one of
/// F32, F16, BF16, Q8_0, Q4_0, Q4_1.
void dequantize(uint32_t type, const void* src, std::size_t src_bytes, int64_t n, float* dst,
                const std::string& what = "tensor");

}  // namespace retrokv::engine
