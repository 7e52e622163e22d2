// Exact attention in double precision: the test oracle for every kernel and index (issue 2,
// "Core"). Slow on purpose: one query, plain loops, no shortcuts. Inputs are the same rounded
// half/bf16 values the kernels read, so differences measure the kernel, not the rounding.
#pragma once

#include <algorithm>
#include <cmath>
#include <cstdint>
#include <limits>
#include <type_traits>
#include <vector>

#include "retrokv/core/attention_state.h"
#include "retrokv/core/error.h"
#include "retrokv/core/half.h"
#include "retrokv/core/view.h"

namespace retrokv {

/// Double-precision attention result: o[d] normalised, natural-log lse. Empty: lse=-inf, o=0.
struct ReferenceAttention {
  std::vector<double> o;
  double lse = -std::numeric_limits<double>::infinity();
};

namespace detail {

template <typename T>
void check_reference_inputs(const float* q, ConstMatrixView<T> K, ConstMatrixView<T> V, float scale,
                            const int32_t* ids, int64_t n_ids) {
  RETROKV_CHECK(q != nullptr, "q: null pointer");
  RETROKV_CHECK(K.rows == V.rows, "V: expected ", K.rows, " rows (as K), got ", V.rows);
  RETROKV_CHECK(K.cols == V.cols, "V: expected ", K.cols, " cols (as K), got ", V.cols);
  RETROKV_CHECK(std::isfinite(scale), "scale: expected a finite number, got ", scale);
  RETROKV_CHECK(n_ids >= 0, "n_ids: expected >= 0, got ", n_ids);
  RETROKV_CHECK(ids != nullptr || n_ids == 0, "ids: null pointer for n_ids = ", n_ids);
  for (int64_t j = 0; j < K.cols; ++j) {
    RETROKV_CHECK(std::isfinite(q[j]), "q: expected finite values, got ", q[j], " at index ", j);
  }
  for (int64_t i = 0; ids != nullptr && i < n_ids; ++i) {
    RETROKV_CHECK(ids[i] >= 0 && ids[i] < K.rows, "ids: expected ids in [0, ", K.rows, "), got ",
                  ids[i], " at index ", i);
  }
}

template <typename T>
double dot_double(const float* q, const T* k, int64_t d) {
  double s = 0.0;
  for (int64_t j = 0; j < d; ++j)
    s += static_cast<double>(q[j]) * static_cast<double>(to_float(k[j]));
  return s;
}

}  // namespace detail

/// Exact attention of one query q[d] over the tokens of K, V (n, d), in double precision.
/// ids == nullptr: all n tokens (n_ids must be 0); otherwise the n_ids listed tokens (a repeated
/// id counts as often as it is listed). Returns o[d] and the natural-log lse of q.k*scale.
template <typename T>
ReferenceAttention reference_attention_double(const float* q, ConstMatrixView<T> K,
                                              ConstMatrixView<T> V, float scale,
                                              const int32_t* ids = nullptr, int64_t n_ids = 0) {
  detail::check_reference_inputs(q, K, V, scale, ids, n_ids);
  const int64_t d = K.cols;
  const int64_t count = ids == nullptr ? K.rows : n_ids;
  ReferenceAttention out;
  out.o.assign(static_cast<size_t>(d), 0.0);
  if (count == 0) return out;
  std::vector<double> logits(static_cast<size_t>(count));
  double m = -std::numeric_limits<double>::infinity();
  for (int64_t i = 0; i < count; ++i) {
    const int64_t t = ids == nullptr ? i : ids[i];
    logits[i] = detail::dot_double(q, K.row(t), d) * static_cast<double>(scale);
    m = std::max(m, logits[i]);
  }
  RETROKV_CHECK(std::isfinite(m), "K: expected finite scaled logits q.k*scale, got max ", m);
  double z = 0.0;
  for (int64_t i = 0; i < count; ++i) {
    const int64_t t = ids == nullptr ? i : ids[i];
    const double w = std::exp(logits[i] - m);
    z += w;
    const T* v = V.row(t);
    for (int64_t j = 0; j < d; ++j) out.o[j] += w * static_cast<double>(to_float(v[j]));
  }
  for (int64_t j = 0; j < d; ++j) out.o[j] /= z;
  out.lse = m + std::log(z);
  return out;
}

/// Exact attention of one query q[d] over tokens of K, V (n, d) (T = float, half or bfloat16),
/// computed in double. ids == nullptr: all tokens; otherwise the n_ids listed tokens. Returns
/// (o, lse) with natural-log lse; empty subset -> lse=-inf, o=0.
template <typename T>
AttentionState reference_attention(const float* q, ConstMatrixView<T> K, ConstMatrixView<T> V,
                                   float scale, const int32_t* ids = nullptr, int64_t n_ids = 0) {
  const ReferenceAttention r = reference_attention_double(q, K, V, scale, ids, n_ids);
  AttentionState s(static_cast<int>(K.cols));
  for (size_t j = 0; j < r.o.size(); ++j) s.o[j] = static_cast<float>(r.o[j]);
  s.lse = static_cast<float>(r.lse);
  return s;
}

/// Exact inner products in double, q (d) vs every key row: out[i] = q . K[i] (unscaled).
template <typename T>
std::vector<double> reference_scores(const float* q, ConstMatrixView<T> K) {
  RETROKV_CHECK(q != nullptr, "q: null pointer");
  std::vector<double> out(static_cast<size_t>(K.rows));
  for (int64_t i = 0; i < K.rows; ++i) out[i] = detail::dot_double(q, K.row(i), K.cols);
  return out;
}

/// Convenience overloads so mutable views and owning matrices deduce T as well.
template <typename T>
requires(!std::is_const_v<T>) ReferenceAttention
    reference_attention_double(const float* q, MatrixView<T> K, MatrixView<T> V, float scale,
                               const int32_t* ids = nullptr, int64_t n_ids = 0) {
  return reference_attention_double<T>(q, ConstMatrixView<T>(K), ConstMatrixView<T>(V), scale, ids,
                                       n_ids);
}
template <typename T>
ReferenceAttention reference_attention_double(const float* q, const Matrix<T>& K,
                                              const Matrix<T>& V, float scale,
                                              const int32_t* ids = nullptr, int64_t n_ids = 0) {
  return reference_attention_double<T>(q, K.view(), V.view(), scale, ids, n_ids);
}
template <typename T>
requires(!std::is_const_v<T>) AttentionState
    reference_attention(const float* q, MatrixView<T> K, MatrixView<T> V, float scale,
                        const int32_t* ids = nullptr, int64_t n_ids = 0) {
  return reference_attention<T>(q, ConstMatrixView<T>(K), ConstMatrixView<T>(V), scale, ids, n_ids);
}
template <typename T>
AttentionState reference_attention(const float* q, const Matrix<T>& K, const Matrix<T>& V,
                                   float scale, const int32_t* ids = nullptr, int64_t n_ids = 0) {
  return reference_attention<T>(q, K.view(), V.view(), scale, ids, n_ids);
}
template <typename T>
requires(!std::is_const_v<T>) std::vector<double> reference_scores(const float* q,
                                                                   MatrixView<T> K) {
  return reference_scores<T>(q, ConstMatrixView<T>(K));
}
template <typename T>
std::vector<double> reference_scores(const float* q, const Matrix<T>& K) {
  return reference_scores<T>(q, K.view());
}

}  // namespace retrokv
