// Non-owning row-major matrix views `(rows, cols)` with a leading dimension, and owning
// 64-byte-aligned buffers. Keys of one KV head are a MatrixView<const T> of shape (n, d).
#pragma once

#include <cstddef>
#include <cstdint>
#include <cstdlib>
#include <cstring>
#include <memory>
#include <new>
#include <type_traits>

#include "retrokv/core/error.h"

namespace retrokv {

/// Row-major view: element (r, c) is data[r * ld + c]; ld >= cols.
template <typename T>
struct MatrixView {
  T* data = nullptr;
  int64_t rows = 0;
  int64_t cols = 0;
  int64_t ld = 0;

  MatrixView() = default;
  MatrixView(T* d, int64_t r, int64_t c) : MatrixView(d, r, c, c) {}
  MatrixView(T* d, int64_t r, int64_t c, int64_t leading) : data(d), rows(r), cols(c), ld(leading) {
    RETROKV_CHECK(r >= 0 && c >= 0, "MatrixView: negative shape (", r, ", ", c, ")");
    RETROKV_CHECK(leading >= c, "MatrixView: ld must be >= cols (", c, "), got ", leading);
    RETROKV_CHECK(d != nullptr || r == 0 || c == 0, "MatrixView: null data for shape (", r, ", ", c,
                  ")");
  }
  /// Implicit conversion to a view of const elements.
  template <typename U, typename = std::enable_if_t<std::is_same_v<const U, T>>>
  MatrixView(const MatrixView<U>& o) : data(o.data), rows(o.rows), cols(o.cols), ld(o.ld) {}

  T* row(int64_t r) const { return data + r * ld; }
  T& operator()(int64_t r, int64_t c) const { return data[r * ld + c]; }
  bool contiguous() const { return ld == cols; }
  bool empty() const { return rows == 0 || cols == 0; }
  /// Rows [begin, begin + count).
  MatrixView<T> slice_rows(int64_t begin, int64_t count) const {
    RETROKV_CHECK(begin >= 0 && count >= 0 && begin + count <= rows, "slice_rows: [", begin, ", ",
                  begin + count, ") out of range for ", rows, " rows");
    return MatrixView<T>(data + begin * ld, count, cols, ld);
  }
};

template <typename T>
using ConstMatrixView = MatrixView<const T>;

namespace detail {
struct AlignedFree {
  void operator()(void* p) const { std::free(p); }
};
}  // namespace detail

inline constexpr std::size_t kAlignment = 64;

/// Owning, 64-byte-aligned, zero-initialised array of trivially copyable T.
template <typename T>
class AlignedBuffer {
  static_assert(std::is_trivially_copyable_v<T>);

 public:
  AlignedBuffer() = default;
  explicit AlignedBuffer(std::size_t n) { resize(n); }
  AlignedBuffer(const AlignedBuffer& o) : AlignedBuffer(o.size_) {
    if (size_) std::memcpy(data(), o.data(), size_ * sizeof(T));
  }
  AlignedBuffer& operator=(const AlignedBuffer& o) {
    if (this != &o) {
      AlignedBuffer tmp(o);
      swap(tmp);
    }
    return *this;
  }
  AlignedBuffer(AlignedBuffer&&) noexcept = default;
  AlignedBuffer& operator=(AlignedBuffer&&) noexcept = default;

  /// Reallocates (contents are not kept) and zero-fills. Throws retrokv::Error when out of memory.
  void resize(std::size_t n) {
    if (n == size_) return;
    ptr_.reset();
    size_ = 0;
    if (n == 0) return;
    RETROKV_CHECK(n <= (SIZE_MAX - kAlignment) / sizeof(T), "out of host memory: ", n,
                  " elements of ", sizeof(T), " bytes overflow the address space");
    const std::size_t bytes = ((n * sizeof(T) + kAlignment - 1) / kAlignment) * kAlignment;
    void* p = std::aligned_alloc(kAlignment, bytes);
    RETROKV_CHECK(p != nullptr, "out of host memory: asked for ", bytes, " bytes");
    std::memset(p, 0, bytes);
    ptr_.reset(p);
    size_ = n;
  }
  void swap(AlignedBuffer& o) noexcept {
    std::swap(ptr_, o.ptr_);
    std::swap(size_, o.size_);
  }

  T* data() { return static_cast<T*>(ptr_.get()); }
  const T* data() const { return static_cast<const T*>(ptr_.get()); }
  std::size_t size() const { return size_; }
  bool empty() const { return size_ == 0; }
  T& operator[](std::size_t i) { return data()[i]; }
  const T& operator[](std::size_t i) const { return data()[i]; }
  T* begin() { return data(); }
  T* end() { return data() + size_; }
  const T* begin() const { return data(); }
  const T* end() const { return data() + size_; }

 private:
  std::unique_ptr<void, detail::AlignedFree> ptr_;
  std::size_t size_ = 0;
};

/// Owning row-major matrix (rows, cols), contiguous (ld == cols), aligned.
template <typename T>
class Matrix {
 public:
  Matrix() = default;
  Matrix(int64_t rows, int64_t cols) { resize(rows, cols); }
  void resize(int64_t rows, int64_t cols) {
    RETROKV_CHECK(rows >= 0 && cols >= 0, "Matrix: negative shape (", rows, ", ", cols, ")");
    int64_t total = 0;
    RETROKV_CHECK(!__builtin_mul_overflow(rows, cols, &total), "Matrix: shape (", rows, ", ", cols,
                  ") overflows int64");
    buf_.resize(static_cast<std::size_t>(total));
    rows_ = rows;
    cols_ = cols;
  }
  int64_t rows() const { return rows_; }
  int64_t cols() const { return cols_; }
  T* data() { return buf_.data(); }
  const T* data() const { return buf_.data(); }
  T* row(int64_t r) { return data() + r * cols_; }
  const T* row(int64_t r) const { return data() + r * cols_; }
  T& operator()(int64_t r, int64_t c) { return data()[r * cols_ + c]; }
  const T& operator()(int64_t r, int64_t c) const { return data()[r * cols_ + c]; }
  MatrixView<T> view() { return MatrixView<T>(data(), rows_, cols_); }
  ConstMatrixView<T> view() const { return ConstMatrixView<T>(data(), rows_, cols_); }
  operator ConstMatrixView<T>() const { return view(); }

 private:
  AlignedBuffer<T> buf_;
  int64_t rows_ = 0;
  int64_t cols_ = 0;
};

}  // namespace retrokv
