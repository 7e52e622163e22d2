// Vectorised inner loops of the CPU kernels (issue 2, "CPU kernels"; DESIGN.md section 2, cpu):
// q.k of a GQA group with key rows stored as float / half / bfloat16, the value accumulation
// acc += w * v, and a fused exp for the online softmax. AVX2 (+FMA, F16C) and AVX-512 variants are
// chosen at run time (no -march=native needed); a portable scalar path runs everywhere else.
#pragma once

#include <atomic>
#include <cstdint>
#include <cstdlib>
#include <cstring>

#include "retrokv/core/error.h"
#include "retrokv/core/half.h"
#include "retrokv/cpu/simd_scalar.h"
#include "retrokv/cpu/simd_types.h"
#include "retrokv/cpu/simd_x86.h"

namespace retrokv::cpu {

inline const char* simd_level_name(SimdLevel level) {
  switch (level) {
    case SimdLevel::kScalar:
      return "scalar";
    case SimdLevel::kAvx2:
      return "avx2";
    case SimdLevel::kAvx512:
      return "avx512";
  }
  return "unknown";
}

/// The best level this CPU (and this compiler) supports. Detected once, cached.
inline SimdLevel supported_simd_level() {
  static const SimdLevel level = [] {
#if RETROKV_X86_SIMD
    __builtin_cpu_init();
    // F16C via cpuid (leaf 1, ecx bit 29): clang's __builtin_cpu_supports does not know it.
    unsigned eax = 0, ebx = 0, ecx = 0, edx = 0;
    const bool f16c = __get_cpuid(1, &eax, &ebx, &ecx, &edx) && (ecx & (1u << 29)) != 0;
    const bool avx2 = __builtin_cpu_supports("avx2") && __builtin_cpu_supports("fma") && f16c;
    if (avx2 && __builtin_cpu_supports("avx512f")) return SimdLevel::kAvx512;
    if (avx2) return SimdLevel::kAvx2;
#endif
    return SimdLevel::kScalar;
  }();
  return level;
}

namespace detail {

/// Parses RETROKV_SIMD=scalar|avx2|avx512 (a cap, for benchmarking the paths); unset: best.
inline SimdLevel initial_simd_level() {
  const SimdLevel best = supported_simd_level();
  const char* env = std::getenv("RETROKV_SIMD");
  if (env == nullptr) return best;
  SimdLevel want = best;
  if (std::strcmp(env, "scalar") == 0) want = SimdLevel::kScalar;
  if (std::strcmp(env, "avx2") == 0) want = SimdLevel::kAvx2;
  return static_cast<int>(want) < static_cast<int>(best) ? want : best;
}

inline std::atomic<int>& simd_level_slot() {
  static std::atomic<int> slot{static_cast<int>(initial_simd_level())};
  return slot;
}

}  // namespace detail

/// The level every kernel dispatches to now (the best supported one unless forced).
inline SimdLevel simd_level() {
  return static_cast<SimdLevel>(detail::simd_level_slot().load(std::memory_order_relaxed));
}

/// Forces a path (tests compare every path against scalar; benchmarks compare paths). Throws
/// retrokv::Error naming `level` when the CPU does not support it.
inline void set_simd_level(SimdLevel level) {
  RETROKV_CHECK(static_cast<int>(level) <= static_cast<int>(supported_simd_level()),
                "level: expected a SIMD level this CPU supports (at most ",
                simd_level_name(supported_simd_level()), "), got ", simd_level_name(level));
  detail::simd_level_slot().store(static_cast<int>(level), std::memory_order_relaxed);
}

/// Function table for key/value rows of element type T at one SIMD level.
template <typename T>
struct RowKernels {
  /// s[h * lds + i] = q[h] . row(i) for h < g, i < n; q: (g, d) with leading dimension ldq.
  /// Meanwhile prefetches rows [0, pf_n) of pf (pf_n <= n; 0: none), e.g. the values of the
  /// same tokens, so that a second stream arrives while this one is computed.
  void (*dot_rows)(const float* q, int64_t ldq, int g, RowSource<T> rows, int n, int d, float* s,
                   int64_t lds, RowSource<T> pf, int pf_n);
  /// acc[h * ldacc + j] += sum_i w[h * ldw + i] * row(i)[j] for h < g, i < n, j < d; prefetches
  /// rows [0, pf_n) of pf (pf_n <= n), e.g. the next block of keys.
  void (*axpy_rows)(const float* w, int64_t ldw, int g, RowSource<T> rows, int n, int d, float* acc,
                    int64_t ldacc, RowSource<T> pf, int pf_n);
};

/// Element-type independent kernels at one SIMD level.
struct MathKernels {
  /// x[i] = exp(x[i] - shift) in place for i < n; returns the sum of the new x.
  float (*exp_shift_sum)(float* x, int n, float shift);
  /// Sum of x[0..n): the read-bandwidth probe (a pure streaming read).
  double (*sum)(const float* x, int64_t n);
};

template <typename T>
inline RowKernels<T> row_kernels(SimdLevel level = simd_level()) {
#if RETROKV_X86_SIMD
  if (level == SimdLevel::kAvx512) return {&avx512::dot_rows<T>, &avx512::axpy_rows<T>};
  if (level == SimdLevel::kAvx2) return {&avx2::dot_rows<T>, &avx2::axpy_rows<T>};
#endif
  (void)level;
  return {&scalar::dot_rows<T>, &scalar::axpy_rows<T>};
}

inline MathKernels math_kernels(SimdLevel level = simd_level()) {
#if RETROKV_X86_SIMD
  if (level == SimdLevel::kAvx512) return {&avx512::exp_shift_sum, &avx512::sum};
  if (level == SimdLevel::kAvx2) return {&avx2::exp_shift_sum, &avx2::sum};
#endif
  (void)level;
  return {&scalar::exp_shift_sum, &scalar::sum};
}

/// q[d] . k[d] with k stored as T (float accumulation).
template <typename T>
inline float dot(const float* q, const T* k, int d) {
  float s;
  const RowSource<T> row{k, d, nullptr, 0};
  row_kernels<T>().dot_rows(q, d, 1, row, 1, d, &s, 1, row, 0);
  return s;
}

/// acc[d] += w * v[d] with v stored as T.
template <typename T>
inline void axpy(float w, const T* v, int d, float* acc) {
  const RowSource<T> row{v, d, nullptr, 0};
  row_kernels<T>().axpy_rows(&w, 1, 1, row, 1, d, acc, d, row, 0);
}

/// Sum of x[0..n) (single thread, vectorised).
inline double simd_sum(const float* x, int64_t n) { return math_kernels().sum(x, n); }

}  // namespace retrokv::cpu
