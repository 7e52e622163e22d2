// Growable row storage for one KV head's keys or values (issue 7 "API", DESIGN.md section 2
// "store"): rows of d elements of the store's KV type (float, half, bfloat16), 64-byte aligned,
// grown geometrically so decode-time appends are amortised O(1) and never lose what was stored.
#pragma once

#include <algorithm>
#include <cstdint>
#include <cstring>

#include "retrokv/core/error.h"
#include "retrokv/core/half.h"
#include "retrokv/core/view.h"

namespace retrokv {

/// Bytes of one element of t.
inline int64_t dtype_size(DType t) { return t == DType::kFloat32 ? 4 : 2; }

/// Calls f(T{}) with T the C++ type of t (float, half or bfloat16).
template <typename F>
decltype(auto) dispatch_dtype(DType t, F&& f) {
  switch (t) {
    case DType::kFloat16:
      return f(half{});
    case DType::kBFloat16:
      return f(bfloat16{});
    case DType::kFloat32:
      break;
  }
  return f(float{});
}

/// (rows, d) rows of one element type. reserve() may throw (out of memory) and keeps the
/// contents; append_rows() after a successful reserve() cannot throw, which is what lets the
/// store commit an append to every head only after every allocation has succeeded.
class KVRows {
 public:
  KVRows() = default;
  KVRows(DType dtype, int d) : dtype_(dtype), d_(d) {}

  DType dtype() const { return dtype_; }
  int dim() const { return d_; }
  int64_t rows() const { return rows_; }
  int64_t capacity() const { return capacity_; }
  int64_t row_bytes() const { return d_ * dtype_size(dtype_); }
  /// Bytes allocated (capacity, not rows).
  int64_t allocated_bytes() const { return capacity_ * row_bytes(); }

  /// Capacity of the first allocation for `need` rows (a prefill or a loaded sequence): need
  /// plus decode headroom (1/8 + 256 rows). Without it the first decode append re-allocated,
  /// zero-filled and copied every head's whole cache at once: ~120 ms of one token at 8K over
  /// SmolLM2's 90 heads, ~0.5 ms per token averaged over 256 decoded tokens.
  static int64_t initial_capacity(int64_t need) { return need <= 0 ? 0 : need + need / 8 + 256; }

  /// Capacity reserve(rows() + extra) would grow to: initial_capacity() for the first
  /// allocation, then geometric (x1.25 + 256 rows) so a long decode does not double a
  /// 128K-token cache.
  int64_t grown_capacity(int64_t extra) const {
    const int64_t need = rows_ + extra;
    if (need <= capacity_) return capacity_;
    if (capacity_ == 0) return initial_capacity(need);
    return std::max(need, capacity_ + capacity_ / 4 + 256);
  }

  /// Makes room for `extra` more rows (contents kept). Throws retrokv::Error when out of memory.
  void reserve_extra(int64_t extra) {
    const int64_t cap = grown_capacity(extra);
    if (cap == capacity_) return;
    AlignedBuffer<uint8_t> grown(static_cast<size_t>(cap * row_bytes()));
    if (rows_ > 0) std::memcpy(grown.data(), buf_.data(), static_cast<size_t>(rows_ * row_bytes()));
    buf_.swap(grown);
    capacity_ = cap;
  }

  /// Appends n rows converted from float src (row stride ld). Needs reserve_extra(n) first.
  void append_rows(const float* src, int64_t n, int64_t ld) {
    RETROKV_ASSERT(rows_ + n <= capacity_);
    dispatch_dtype(dtype_, [&](auto tag) {
      using T = decltype(tag);
      T* dst = reinterpret_cast<T*>(buf_.data()) + rows_ * d_;
      for (int64_t i = 0; i < n; ++i)
        for (int j = 0; j < d_; ++j) dst[i * d_ + j] = from_float<T>(src[i * ld + j]);
    });
    rows_ += n;
  }

  /// Appends n rows of raw element bytes (a saved file's payload). Needs reserve_extra(n) first.
  void append_bytes(const void* src, int64_t n) {
    RETROKV_ASSERT(rows_ + n <= capacity_);
    if (n > 0)
      std::memcpy(buf_.data() + rows_ * row_bytes(), src, static_cast<size_t>(n * row_bytes()));
    rows_ += n;
  }

  /// Forgets rows past `rows` (undo of an append; capacity kept).
  void truncate(int64_t rows) { rows_ = std::min(rows_, rows); }

  const uint8_t* bytes() const { return buf_.data(); }

  /// View of all rows as T (T must match dtype()).
  template <typename T>
  ConstMatrixView<T> view() const {
    RETROKV_ASSERT(dtype_of<T>::value == dtype_);
    return ConstMatrixView<T>(rows_ ? reinterpret_cast<const T*>(buf_.data()) : nullptr, rows_, d_);
  }

  /// Rows [begin, end) widened to float into out (end - begin, d).
  void to_float(int64_t begin, int64_t end, float* out) const {
    dispatch_dtype(dtype_, [&](auto tag) {
      using T = decltype(tag);
      const T* src = reinterpret_cast<const T*>(buf_.data());
      for (int64_t i = begin * d_; i < end * d_; ++i)
        out[i - begin * d_] = retrokv::to_float(src[i]);
    });
  }

 private:
  DType dtype_ = DType::kFloat32;
  int d_ = 0;
  int64_t rows_ = 0;
  int64_t capacity_ = 0;
  AlignedBuffer<uint8_t> buf_;
};

}  // namespace retrokv
