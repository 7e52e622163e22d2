// AVX2 (+FMA, F16C) and AVX-512 variants of the CPU kernels (simd.h), compiled without
// -march=native: each level's code sits in a target pragma region, and simd.h dispatches on the
// CPU's features at run time. Half keys convert with F16C (vcvtph2ps), bfloat16 with a shift.
#pragma once

#include <cmath>
#include <cstdint>

#include "retrokv/core/half.h"
#include "retrokv/cpu/simd_types.h"

#if (defined(__x86_64__) || defined(__i386__)) && (defined(__GNUC__) || defined(__clang__))
#define RETROKV_X86_SIMD 1
#else
#define RETROKV_X86_SIMD 0
#endif

#if RETROKV_X86_SIMD
#include <cpuid.h>
#include <immintrin.h>

// GCC 12's AVX-512 intrinsics initialise their "undefined" operands with themselves, which
// -Wall reports as uninitialised once they are inlined here: a false positive, silenced locally.
#if defined(__GNUC__) && !defined(__clang__)
#pragma GCC diagnostic push
#pragma GCC diagnostic ignored "-Wuninitialized"
#pragma GCC diagnostic ignored "-Wmaybe-uninitialized"
#endif

// Constants of the vector exp: Cody-Waite split of ln 2 and a degree-6 polynomial for e^r on
// |r| <= ln2/2 (relative error ~1e-7, float rounding level). Inputs below kExpLow give 0.
namespace retrokv::cpu::detail::exp_consts {
inline constexpr float kHigh = 88.3762626647949f;
inline constexpr float kLow = -87.3365447505531f;
inline constexpr float kLog2e = 1.44269504088896341f;
inline constexpr float kLn2Hi = 0.693359375f;
inline constexpr float kLn2Lo = -2.12194440e-4f;
inline constexpr float kP0 = 1.9875691500e-4f;
inline constexpr float kP1 = 1.3981999507e-3f;
inline constexpr float kP2 = 8.3334519073e-3f;
inline constexpr float kP3 = 4.1665795894e-2f;
inline constexpr float kP4 = 1.6666665459e-1f;
inline constexpr float kP5 = 5.0000001201e-1f;
}  // namespace retrokv::cpu::detail::exp_consts

// ---- AVX2 + FMA + F16C ------------------------------------------------------------------------
#if defined(__clang__)
#pragma clang attribute push(__attribute__((target("avx2,fma,f16c"))), apply_to = function)
#else
#pragma GCC push_options
#pragma GCC target("avx2,fma,f16c")
#endif

namespace retrokv::cpu::avx2 {

struct Ops {
  using V = __m256;
  static constexpr int kWidth = 8;
  static constexpr int kRows = 2;  // 4 heads x 2 rows of accumulators fit 16 ymm registers
  static V zero() { return _mm256_setzero_ps(); }
  static V set1(float x) { return _mm256_set1_ps(x); }
  static V load(const float* p) { return _mm256_loadu_ps(p); }
  static V load(const half* p) {
    return _mm256_cvtph_ps(_mm_loadu_si128(reinterpret_cast<const __m128i*>(p)));
  }
  static V load(const bfloat16* p) {
    const __m256i u = _mm256_cvtepu16_epi32(_mm_loadu_si128(reinterpret_cast<const __m128i*>(p)));
    return _mm256_castsi256_ps(_mm256_slli_epi32(u, 16));
  }
  static void store(float* p, V v) { _mm256_storeu_ps(p, v); }
  static V fma(V a, V b, V c) { return _mm256_fmadd_ps(a, b, c); }
  static V add(V a, V b) { return _mm256_add_ps(a, b); }
  static V sub(V a, V b) { return _mm256_sub_ps(a, b); }
  static float reduce(V v) {
    __m128 s = _mm_add_ps(_mm256_castps256_ps128(v), _mm256_extractf128_ps(v, 1));
    s = _mm_add_ps(s, _mm_movehl_ps(s, s));
    s = _mm_add_ss(s, _mm_movehdup_ps(s));
    return _mm_cvtss_f32(s);
  }
  /// out[0..4) = horizontal sums of a, b, c, d (one hadd tree instead of four reductions).
  static void reduce4(V a, V b, V c, V d, float* out) {
    const __m256 ab = _mm256_hadd_ps(a, b);
    const __m256 cd = _mm256_hadd_ps(c, d);
    const __m256 abcd = _mm256_hadd_ps(ab, cd);
    _mm_storeu_ps(out, _mm_add_ps(_mm256_castps256_ps128(abcd), _mm256_extractf128_ps(abcd, 1)));
  }
  /// out[h][r] = horizontal sum of a[h][r].
  static void reduce_block(const V (&a)[4][kRows], float (&out)[4][kRows]) {
    for (int r = 0; r < kRows; ++r) {
      float t[4];
      reduce4(a[0][r], a[1][r], a[2][r], a[3][r], t);
      for (int h = 0; h < 4; ++h) out[h][r] = t[h];
    }
  }
  static V exp(V x) {
    namespace c = detail::exp_consts;
    const __m256 keep = _mm256_cmp_ps(x, _mm256_set1_ps(c::kLow), _CMP_GE_OQ);
    x = _mm256_min_ps(x, _mm256_set1_ps(c::kHigh));
    x = _mm256_max_ps(x, _mm256_set1_ps(c::kLow));
    const __m256 fx = _mm256_round_ps(_mm256_mul_ps(x, _mm256_set1_ps(c::kLog2e)),
                                      _MM_FROUND_TO_NEAREST_INT | _MM_FROUND_NO_EXC);
    __m256 r = _mm256_fnmadd_ps(fx, _mm256_set1_ps(c::kLn2Hi), x);
    r = _mm256_fnmadd_ps(fx, _mm256_set1_ps(c::kLn2Lo), r);
    __m256 y = _mm256_set1_ps(c::kP0);
    y = _mm256_fmadd_ps(y, r, _mm256_set1_ps(c::kP1));
    y = _mm256_fmadd_ps(y, r, _mm256_set1_ps(c::kP2));
    y = _mm256_fmadd_ps(y, r, _mm256_set1_ps(c::kP3));
    y = _mm256_fmadd_ps(y, r, _mm256_set1_ps(c::kP4));
    y = _mm256_fmadd_ps(y, r, _mm256_set1_ps(c::kP5));
    y = _mm256_fmadd_ps(y, _mm256_mul_ps(r, r), _mm256_add_ps(r, _mm256_set1_ps(1.f)));
    const __m256i e =
        _mm256_slli_epi32(_mm256_add_epi32(_mm256_cvtps_epi32(fx), _mm256_set1_epi32(127)), 23);
    return _mm256_and_ps(_mm256_mul_ps(y, _mm256_castsi256_ps(e)), keep);
  }
};

#include "retrokv/cpu/detail/simd_kernels.inc"

}  // namespace retrokv::cpu::avx2

#if defined(__clang__)
#pragma clang attribute pop
#else
#pragma GCC pop_options
#endif

// ---- AVX-512F ---------------------------------------------------------------------------------
#if defined(__clang__)
#pragma clang attribute push(__attribute__((target("avx512f,avx2,fma,f16c"))), apply_to = function)
#else
#pragma GCC push_options
#pragma GCC target("avx512f,avx2,fma,f16c")
#endif

namespace retrokv::cpu::avx512 {

struct Ops {
  using V = __m512;
  static constexpr int kWidth = 16;
  static constexpr int kRows = 4;  // 4 heads x 4 rows: 16 accumulators of 32 zmm registers
  static V zero() { return _mm512_setzero_ps(); }
  static V set1(float x) { return _mm512_set1_ps(x); }
  static V load(const float* p) { return _mm512_loadu_ps(p); }
  static V load(const half* p) {
    return _mm512_cvtph_ps(_mm256_loadu_si256(reinterpret_cast<const __m256i*>(p)));
  }
  static V load(const bfloat16* p) {
    const __m512i u =
        _mm512_cvtepu16_epi32(_mm256_loadu_si256(reinterpret_cast<const __m256i*>(p)));
    return _mm512_castsi512_ps(_mm512_slli_epi32(u, 16));
  }
  static void store(float* p, V v) { _mm512_storeu_ps(p, v); }
  static V fma(V a, V b, V c) { return _mm512_fmadd_ps(a, b, c); }
  static V add(V a, V b) { return _mm512_add_ps(a, b); }
  static V sub(V a, V b) { return _mm512_sub_ps(a, b); }
  static float reduce(V v) { return _mm512_reduce_add_ps(v); }
  static __m256 fold(V v) {
    return _mm256_add_ps(_mm512_castps512_ps256(v),
                         _mm256_castpd_ps(_mm512_extractf64x4_pd(_mm512_castps_pd(v), 1)));
  }
  static void reduce4(V a, V b, V c, V d, float* out) {
    avx2::Ops::reduce4(fold(a), fold(b), fold(c), fold(d), out);
  }
  /// Per 128-bit lane L: [sum of lane L of a, b, c, d] (a lane-wise 4-way reduction).
  static V lane_sums(V a, V b, V c, V d) {
    const V ab = _mm512_add_ps(_mm512_unpacklo_ps(a, b), _mm512_unpackhi_ps(a, b));
    const V cd = _mm512_add_ps(_mm512_unpacklo_ps(c, d), _mm512_unpackhi_ps(c, d));
    return _mm512_add_ps(_mm512_shuffle_ps(ab, cd, _MM_SHUFFLE(1, 0, 1, 0)),
                         _mm512_shuffle_ps(ab, cd, _MM_SHUFFLE(3, 2, 3, 2)));
  }
  /// out[h][r] = horizontal sum of a[h][r], all 16 at once: lane sums per head, then a 4 x 4
  /// transpose of 128-bit lanes and two adds (about 2 instructions per sum instead of 6).
  static void reduce_block(const V (&a)[4][kRows], float (&out)[4][kRows]) {
    const V t0 = lane_sums(a[0][0], a[0][1], a[0][2], a[0][3]);
    const V t1 = lane_sums(a[1][0], a[1][1], a[1][2], a[1][3]);
    const V t2 = lane_sums(a[2][0], a[2][1], a[2][2], a[2][3]);
    const V t3 = lane_sums(a[3][0], a[3][1], a[3][2], a[3][3]);
    const V v01 = _mm512_add_ps(_mm512_shuffle_f32x4(t0, t1, _MM_SHUFFLE(1, 0, 1, 0)),
                                _mm512_shuffle_f32x4(t0, t1, _MM_SHUFFLE(3, 2, 3, 2)));
    const V v23 = _mm512_add_ps(_mm512_shuffle_f32x4(t2, t3, _MM_SHUFFLE(1, 0, 1, 0)),
                                _mm512_shuffle_f32x4(t2, t3, _MM_SHUFFLE(3, 2, 3, 2)));
    const V sum = _mm512_add_ps(_mm512_shuffle_f32x4(v01, v23, _MM_SHUFFLE(2, 0, 2, 0)),
                                _mm512_shuffle_f32x4(v01, v23, _MM_SHUFFLE(3, 1, 3, 1)));
    _mm512_storeu_ps(&out[0][0], sum);  // lane h holds rows 0..3 of head h
  }
  static V exp(V x) {
    namespace c = detail::exp_consts;
    const __mmask16 keep = _mm512_cmp_ps_mask(x, _mm512_set1_ps(c::kLow), _CMP_GE_OQ);
    x = _mm512_min_ps(x, _mm512_set1_ps(c::kHigh));
    x = _mm512_max_ps(x, _mm512_set1_ps(c::kLow));
    const __m512 fx = _mm512_roundscale_ps(_mm512_mul_ps(x, _mm512_set1_ps(c::kLog2e)),
                                           _MM_FROUND_TO_NEAREST_INT | _MM_FROUND_NO_EXC);
    __m512 r = _mm512_fnmadd_ps(fx, _mm512_set1_ps(c::kLn2Hi), x);
    r = _mm512_fnmadd_ps(fx, _mm512_set1_ps(c::kLn2Lo), r);
    __m512 y = _mm512_set1_ps(c::kP0);
    y = _mm512_fmadd_ps(y, r, _mm512_set1_ps(c::kP1));
    y = _mm512_fmadd_ps(y, r, _mm512_set1_ps(c::kP2));
    y = _mm512_fmadd_ps(y, r, _mm512_set1_ps(c::kP3));
    y = _mm512_fmadd_ps(y, r, _mm512_set1_ps(c::kP4));
    y = _mm512_fmadd_ps(y, r, _mm512_set1_ps(c::kP5));
    y = _mm512_fmadd_ps(y, _mm512_mul_ps(r, r), _mm512_add_ps(r, _mm512_set1_ps(1.f)));
    const __m512i e =
        _mm512_slli_epi32(_mm512_add_epi32(_mm512_cvtps_epi32(fx), _mm512_set1_epi32(127)), 23);
    return _mm512_maskz_mul_ps(keep, y, _mm512_castsi512_ps(e));
  }
};

#include "retrokv/cpu/detail/simd_kernels.inc"

}  // namespace retrokv::cpu::avx512

#if defined(__clang__)
#pragma clang attribute pop
#else
#pragma GCC pop_options
#endif

#if defined(__GNUC__) && !defined(__clang__)
#pragma GCC diagnostic pop
#endif

#endif  // RETROKV_X86_SIMD
