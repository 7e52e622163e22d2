// Small types shared by the SIMD kernel variants (simd.h): the level enum and a row source that
// walks either a contiguous token range or a list of token ids of an (n, d) matrix.
#pragma once

#include <cstdint>

namespace retrokv::cpu {

/// Instruction-set paths of the CPU kernels, in increasing order of width.
enum class SimdLevel : int { kScalar = 0, kAvx2 = 1, kAvx512 = 2 };

/// Rows of an (n, d) matrix with leading dimension ld: row(i) is token ids[i] when ids is set,
/// otherwise token begin + i. Ids are trusted here (checked by the public entry points).
template <typename T>
struct RowSource {
  const T* base;
  int64_t ld;
  const int32_t* ids;
  int64_t begin;
  const T* row(int64_t i) const { return base + (ids ? int64_t{ids[i]} : begin + i) * ld; }
};

}  // namespace retrokv::cpu
