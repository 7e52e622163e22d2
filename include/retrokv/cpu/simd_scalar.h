// Portable scalar versions of the SIMD kernels (simd.h): the fallback on non-x86 CPUs and the
// reference every vector path is tested against. Plain loops; float accumulation.
#pragma once

#include <cmath>
#include <cstdint>

#include "retrokv/core/half.h"
#include "retrokv/cpu/simd_types.h"

namespace retrokv::cpu::scalar {

template <typename T>
void dot_rows(const float* q, int64_t ldq, int g, RowSource<T> rows, int n, int d, float* s,
              int64_t lds, RowSource<T> /*pf*/, int /*pf_n*/) {
  for (int i = 0; i < n; ++i) {
    const T* k = rows.row(i);
    for (int h = 0; h < g; ++h) {
      const float* qh = q + h * ldq;
      float acc = 0.f;
      for (int j = 0; j < d; ++j) acc += qh[j] * to_float(k[j]);
      s[h * lds + i] = acc;
    }
  }
}

template <typename T>
void axpy_rows(const float* w, int64_t ldw, int g, RowSource<T> rows, int n, int d, float* acc,
               int64_t ldacc, RowSource<T> /*pf*/, int /*pf_n*/) {
  for (int i = 0; i < n; ++i) {
    const T* v = rows.row(i);
    for (int h = 0; h < g; ++h) {
      const float wh = w[h * ldw + i];
      float* a = acc + h * ldacc;
      for (int j = 0; j < d; ++j) a[j] += wh * to_float(v[j]);
    }
  }
}

inline float exp_shift_sum(float* x, int n, float shift) {
  float sum = 0.f;
  for (int i = 0; i < n; ++i) {
    x[i] = std::exp(x[i] - shift);
    sum += x[i];
  }
  return sum;
}

inline double sum(const float* x, int64_t n) {
  double s = 0.0;
  for (int64_t i = 0; i < n; ++i) s += x[i];
  return s;
}

}  // namespace retrokv::cpu::scalar
