// Branch-free partition of distinct 64-bit keys around one of them, the inner loop of the wave
// index's cluster ranking (WaveIndex::select_largest, DESIGN.md section 3): a scalar loop and an
// AVX-512 one that moves 8 keys per step by in-register compress. Both write exactly the same
// output, so the zones (and the order of the estimation zone) do not depend on the path.
#pragma once

#include <cstdint>

#include "retrokv/cpu/simd.h"

namespace retrokv::cpu::detail {

/// Partitions the n distinct keys in[0, n) around `pivot` (one of them) into out[0, n): the keys
/// greater than pivot go to out[0, gt) in input order, pivot to out[gt], the smaller keys to
/// out(gt, n) in reverse input order. Returns gt. in and out must not overlap.
inline int64_t partition_keys_scalar(const uint64_t* in, int64_t n, uint64_t pivot, uint64_t* out) {
  // Every key is stored to both ends and only the cursors move: no data-dependent branch.
  int64_t gt = 0, lt = n - 1;
  for (int64_t i = 0; i < n; ++i) {
    const uint64_t x = in[i];
    out[gt] = x;
    out[lt] = x;
    gt += x > pivot;
    lt -= x < pivot;
  }
  out[gt] = pivot;
  return gt;
}

#if RETROKV_X86_SIMD
#if defined(__clang__)
#pragma clang attribute push(__attribute__((target("avx512f"))), apply_to = function)
#else
#pragma GCC push_options
#pragma GCC target("avx512f")
// GCC 12's AVX-512 intrinsics initialise their "undefined" operands with themselves, which -Wall
// reports as uninitialised once inlined (as in simd_x86.h): a false positive, silenced here.
#pragma GCC diagnostic push
#pragma GCC diagnostic ignored "-Wuninitialized"
#pragma GCC diagnostic ignored "-Wmaybe-uninitialized"
#endif

/// partition_keys_scalar, 8 keys at a time (AVX-512F). Compress into a register and a masked
/// store, not a compressing store: the memory form is microcoded and slow on AMD Zen 4.
inline int64_t partition_keys_avx512(const uint64_t* in, int64_t n, uint64_t pivot, uint64_t* out) {
  const __m512i p = _mm512_set1_epi64(static_cast<long long>(pivot));
  const __m512i reverse = _mm512_set_epi64(0, 1, 2, 3, 4, 5, 6, 7);  // lane j <- lane 7 - j
  int64_t gt = 0, lt = n - 1;
  int64_t i = 0;
  // While 8 or more keys are left, the free gap [gt, lt] holds at least 8 slots, so lt >= 7 and
  // neither store below reaches the other side.
  for (; i + 8 <= n; i += 8) {
    const __m512i v = _mm512_loadu_si512(in + i);
    const __mmask8 greater = _mm512_cmpgt_epu64_mask(v, p);
    const __mmask8 smaller = _mm512_cmplt_epu64_mask(v, p);
    const int n_greater = __builtin_popcount(greater);
    const int n_smaller = __builtin_popcount(smaller);
    _mm512_mask_storeu_epi64(out + gt, static_cast<__mmask8>((1u << n_greater) - 1),
                             _mm512_maskz_compress_epi64(greater, v));
    gt += n_greater;
    // The smaller keys, compressed to lanes [0, n_smaller) and reversed into the top lanes, land
    // at out[lt - n_smaller + 1, lt] with the first of them at out[lt], as the scalar loop puts
    // them.
    const __m512i s = _mm512_permutexvar_epi64(reverse, _mm512_maskz_compress_epi64(smaller, v));
    _mm512_mask_storeu_epi64(out + lt - 7, static_cast<__mmask8>(0xFF00u >> n_smaller), s);
    lt -= n_smaller;
  }
  for (; i < n; ++i) {
    const uint64_t x = in[i];
    out[gt] = x;
    out[lt] = x;
    gt += x > pivot;
    lt -= x < pivot;
  }
  out[gt] = pivot;
  return gt;
}

#if defined(__clang__)
#pragma clang attribute pop
#else
#pragma GCC diagnostic pop
#pragma GCC pop_options
#endif
#endif  // RETROKV_X86_SIMD

/// partition_keys_scalar on the widest path the CPU has (simd_level()); same output on every path.
inline int64_t partition_keys(const uint64_t* in, int64_t n, uint64_t pivot, uint64_t* out) {
#if RETROKV_X86_SIMD
  if (simd_level() == SimdLevel::kAvx512) return partition_keys_avx512(in, n, pivot, out);
#endif
  return partition_keys_scalar(in, n, pivot, out);
}

}  // namespace retrokv::cpu::detail
