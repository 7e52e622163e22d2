// NumPy `.npy` read/write for float32, float16 (retrokv::half), int32 and int64 arrays in C
// order, format versions 1.0/2.0 (3.0 read too): how traces dumped from a real model reach the
// tests, tools and benchmarks (DESIGN.md section 5). Anything else is a clear retrokv::Error.
#pragma once

#include <bit>
#include <cctype>
#include <cstddef>
#include <cstdint>
#include <cstring>
#include <limits>
#include <string>
#include <string_view>
#include <type_traits>
#include <utility>
#include <vector>

#include "retrokv/core/checksum.h"
#include "retrokv/core/error.h"
#include "retrokv/core/half.h"
#include "retrokv/core/view.h"

namespace retrokv {

static_assert(std::endian::native == std::endian::little, "npy I/O assumes a little-endian host");

/// The npy descr of a supported element type ("<f4", "<f2", "<i4", "<i8").
template <typename T>
constexpr const char* npy_dtype() {
  if constexpr (std::is_same_v<T, float>)
    return "<f4";
  else if constexpr (std::is_same_v<T, half>)
    return "<f2";
  else if constexpr (std::is_same_v<T, int32_t>)
    return "<i4";
  else if constexpr (std::is_same_v<T, int64_t>)
    return "<i8";
  else
    static_assert(sizeof(T) == 0, "npy: supported types are float, half, int32_t, int64_t");
}

/// A loaded array: little-endian dtype string, shape (C order), and the raw element bytes.
struct NpyArray {
  std::string dtype;  ///< "<f4", "<f2", "<i4" or "<i8"
  std::vector<int64_t> shape;
  std::vector<uint8_t> bytes;

  /// Number of elements (1 for a 0-d array).
  int64_t size() const {
    int64_t n = 1;
    for (int64_t s : shape) n *= s;
    return n;
  }
  int64_t item_size() const { return dtype.empty() ? 0 : dtype.back() - '0'; }
  /// Typed pointer to the elements; throws when T does not match dtype.
  template <typename T>
  const T* data() const {
    RETROKV_CHECK(dtype == npy_dtype<T>(), "dtype: expected '", npy_dtype<T>(), "', array is '",
                  dtype, "'");
    return reinterpret_cast<const T*>(bytes.data());
  }
};

namespace detail {

inline constexpr char kNpyMagic[] = "\x93NUMPY";
inline constexpr size_t kNpyMagicLen = 6;

/// Parser for the header's Python dict literal, e.g.
/// {'descr': '<f4', 'fortran_order': False, 'shape': (3, 4), }
class NpyHeaderParser {
 public:
  NpyHeaderParser(std::string_view text, const std::string& what) : s_(text), what_(what) {}

  void parse(NpyArray* out) {
    bool have_descr = false, have_order = false, have_shape = false;
    skip_ws();
    expect('{');
    while (true) {
      skip_ws();
      if (peek() == '}') break;
      const std::string key = parse_string();
      skip_ws();
      expect(':');
      skip_ws();
      if (key == "descr") {
        if (peek() != '\'' && peek() != '"') fail("unsupported dtype: structured descr");
        out->dtype = parse_string();
        have_descr = true;
      } else if (key == "fortran_order") {
        const bool fortran = parse_bool();
        if (fortran) fail("Fortran order (fortran_order: True) is not supported; save C order");
        have_order = true;
      } else if (key == "shape") {
        out->shape = parse_shape();
        have_shape = true;
      } else {
        fail("bad header: unexpected key '" + key + "'");
      }
      skip_ws();
      if (peek() == ',') {
        ++pos_;
        continue;
      }
      skip_ws();
      if (peek() != '}') fail("bad header: expected ',' or '}' after '" + key + "'");
    }
    ++pos_;  // '}'
    skip_ws();
    if (pos_ != s_.size()) fail("bad header: trailing characters after the dict");
    if (!have_descr || !have_order || !have_shape) {
      fail("bad header: needs the keys 'descr', 'fortran_order' and 'shape'");
    }
  }

 private:
  [[noreturn]] void fail(const std::string& problem) const {
    RETROKV_FAIL("npy ", what_, ": ", problem);
  }
  char peek() const { return pos_ < s_.size() ? s_[pos_] : '\0'; }
  void skip_ws() {
    while (pos_ < s_.size() && (s_[pos_] == ' ' || s_[pos_] == '\n' || s_[pos_] == '\t')) ++pos_;
  }
  void expect(char c) {
    if (peek() != c)
      fail(std::string("bad header: expected '") + c + "' at offset " + std::to_string(pos_));
    ++pos_;
  }
  std::string parse_string() {
    const char q = peek();
    if (q != '\'' && q != '"')
      fail("bad header: expected a quoted string at offset " + std::to_string(pos_));
    ++pos_;
    const size_t end = s_.find(q, pos_);
    if (end == std::string_view::npos) fail("bad header: unterminated string");
    std::string out(s_.substr(pos_, end - pos_));
    pos_ = end + 1;
    return out;
  }
  bool parse_bool() {
    if (s_.substr(pos_, 4) == "True") {
      pos_ += 4;
      return true;
    }
    if (s_.substr(pos_, 5) == "False") {
      pos_ += 5;
      return false;
    }
    fail("bad header: fortran_order must be True or False");
  }
  int64_t parse_int() {
    if (!std::isdigit(static_cast<unsigned char>(peek()))) {
      fail("bad header: shape entries must be non-negative integers");
    }
    int64_t v = 0;
    while (std::isdigit(static_cast<unsigned char>(peek()))) {
      const int digit = peek() - '0';
      if (v > (std::numeric_limits<int64_t>::max() - digit) / 10) fail("shape overflow");
      v = v * 10 + digit;
      ++pos_;
    }
    if (peek() == 'L') ++pos_;  // Python 2 long suffix
    return v;
  }
  std::vector<int64_t> parse_shape() {
    std::vector<int64_t> shape;
    expect('(');
    while (true) {
      skip_ws();
      if (peek() == ')') break;
      if (shape.size() >= 32) fail("bad header: more than 32 dimensions");
      shape.push_back(parse_int());
      skip_ws();
      if (peek() == ',') {
        ++pos_;
        continue;
      }
      if (peek() != ')') fail("bad header: expected ',' or ')' in shape");
    }
    ++pos_;
    return shape;
  }

  std::string_view s_;
  const std::string& what_;
  size_t pos_ = 0;
};

/// Parses and validates everything but the data; returns the data's byte offset.
inline size_t parse_npy_header(const uint8_t* data, size_t size, const std::string& what,
                               NpyArray* out_array) {
  RETROKV_CHECK(data != nullptr || size == 0, "data: null pointer for size ", size);
  RETROKV_CHECK(size >= detail::kNpyMagicLen + 2 &&
                    std::memcmp(data, detail::kNpyMagic, detail::kNpyMagicLen) == 0,
                "npy ", what, ": bad magic (not a .npy file)");
  const int major = data[6], minor = data[7];
  RETROKV_CHECK((major == 1 || major == 2 || major == 3) && minor == 0, "npy ", what,
                ": unsupported format version ", major, ".", minor, " (expected 1.0, 2.0, 3.0)");
  const size_t len_bytes = major == 1 ? 2 : 4;
  RETROKV_CHECK(size >= 8 + len_bytes, "npy ", what, ": truncated header");
  size_t header_len = 0;
  for (size_t i = 0; i < len_bytes; ++i) header_len |= size_t{data[8 + i]} << (8 * i);
  const size_t data_offset = 8 + len_bytes + header_len;
  RETROKV_CHECK(header_len <= size - 8 - len_bytes, "npy ", what, ": truncated header (needs ",
                header_len, " bytes, ", size - 8 - len_bytes, " left)");

  NpyArray& out = *out_array;
  const std::string_view header(reinterpret_cast<const char*>(data) + 8 + len_bytes, header_len);
  detail::NpyHeaderParser(header, what).parse(&out);

  const std::string& t = out.dtype;
  RETROKV_CHECK(t.empty() || t[0] != '>', "npy ", what, ": big-endian dtype '", t,
                "' is not supported (save little-endian)");
  const bool supported = t == "<f4" || t == "<f2" || t == "<i4" || t == "<i8";
  RETROKV_CHECK(supported, "npy ", what, ": unsupported dtype '", t,
                "' (supported: <f4 float32, <f2 float16, <i4 int32, <i8 int64)");

  int64_t count = 1;
  for (int64_t dim : out.shape) {
    RETROKV_CHECK(!__builtin_mul_overflow(count, dim, &count), "npy ", what,
                  ": shape overflow (element count exceeds int64)");
  }
  int64_t nbytes = 0;
  RETROKV_CHECK(!__builtin_mul_overflow(count, out.item_size(), &nbytes), "npy ", what,
                ": shape overflow (byte size exceeds int64)");
  const size_t available = size - data_offset;
  RETROKV_CHECK(static_cast<uint64_t>(nbytes) <= available, "npy ", what,
                ": truncated data: shape needs ", nbytes, " bytes, file has ", available);
  RETROKV_CHECK(static_cast<uint64_t>(nbytes) == available, "npy ", what, ": ", available - nbytes,
                " unexpected trailing bytes after the data");
  return data_offset;
}

}  // namespace detail

/// Parses an in-memory .npy file. `what` names it in errors (e.g. the path). Every problem
/// (bad magic, unsupported version, bad header, Fortran order, big-endian or unsupported dtype,
/// shape or size overflow, truncated or trailing data) throws retrokv::Error saying which.
inline NpyArray parse_npy(const uint8_t* data, size_t size, const std::string& what = "buffer") {
  NpyArray out;
  const size_t offset = detail::parse_npy_header(data, size, what, &out);
  out.bytes.assign(data + offset, data + size);
  return out;
}

/// Loads a .npy file; errors name the path. The file buffer becomes the array's storage.
inline NpyArray load_npy(const std::string& path) {
  std::vector<uint8_t> file = read_file(path);
  NpyArray out;
  const size_t offset = detail::parse_npy_header(file.data(), file.size(), "'" + path + "'", &out);
  file.erase(file.begin(), file.begin() + static_cast<std::ptrdiff_t>(offset));
  out.bytes = std::move(file);
  return out;
}

/// Encodes an array as a .npy image (version 1.0, or 2.0 when the header needs it), header
/// padded so the data starts on a 64-byte boundary as numpy does.
template <typename T>
std::vector<uint8_t> encode_npy(const T* data, const std::vector<int64_t>& shape) {
  int64_t count = 1;
  for (int64_t dim : shape) {
    RETROKV_CHECK(dim >= 0, "shape: expected non-negative dimensions, got ", dim);
    RETROKV_CHECK(!__builtin_mul_overflow(count, dim, &count), "shape: element count overflow");
  }
  RETROKV_CHECK(data != nullptr || count == 0, "data: null pointer for ", count, " elements");
  std::string dict =
      std::string("{'descr': '") + npy_dtype<T>() + "', 'fortran_order': False, " + "'shape': (";
  for (size_t i = 0; i < shape.size(); ++i) {
    dict += std::to_string(shape[i]);
    if (shape.size() == 1 || i + 1 < shape.size()) dict += ",";
    if (i + 1 < shape.size()) dict += " ";
  }
  dict += "), }";
  int major = 1;
  size_t prefix = 10;  // magic(6) + version(2) + u16 length
  if (prefix + dict.size() + 1 > 65535) {
    major = 2;
    prefix = 12;
  }
  const size_t total = ((prefix + dict.size() + 1 + 63) / 64) * 64;
  dict.append(total - prefix - dict.size() - 1, ' ');
  dict += '\n';
  std::vector<uint8_t> out(prefix);
  std::memcpy(out.data(), detail::kNpyMagic, detail::kNpyMagicLen);
  out[6] = static_cast<uint8_t>(major);
  out[7] = 0;
  const size_t hlen = dict.size();
  for (size_t i = 0; i < prefix - 8; ++i) out[8 + i] = static_cast<uint8_t>(hlen >> (8 * i));
  out.insert(out.end(), dict.begin(), dict.end());
  const auto* b = reinterpret_cast<const uint8_t*>(data);
  out.insert(out.end(), b, b + count * static_cast<int64_t>(sizeof(T)));
  return out;
}

/// Saves an array (float, half, int32_t or int64_t) as .npy, atomically (temp file + rename).
template <typename T>
void save_npy(const std::string& path, const T* data, const std::vector<int64_t>& shape) {
  const std::vector<uint8_t> img = encode_npy(data, shape);
  write_file_atomic(path, img.data(), img.size());
}

/// Saves a matrix (rows, cols) as a 2-D .npy array.
template <typename T>
void save_npy(const std::string& path, const Matrix<T>& m) {
  save_npy(path, m.data(), {m.rows(), m.cols()});
}

/// A 2-D float or float16 array as a Matrix<T> (T = float, half or bfloat16; values are widened
/// exactly, or rounded to nearest even when T is narrower than the file's type).
template <typename T>
Matrix<T> npy_to_matrix(const NpyArray& a, const std::string& what = "array") {
  RETROKV_CHECK(a.shape.size() == 2, "npy ", what, ": expected a 2-D array, got ", a.shape.size(),
                " dimensions");
  RETROKV_CHECK(a.dtype == "<f4" || a.dtype == "<f2", "npy ", what,
                ": expected dtype <f4 or <f2 for a matrix, got '", a.dtype, "'");
  Matrix<T> m(a.shape[0], a.shape[1]);
  const int64_t n = a.size();
  if (a.dtype == "<f4") {
    const float* src = a.data<float>();
    for (int64_t i = 0; i < n; ++i) m.data()[i] = from_float<T>(src[i]);
  } else {
    const half* src = a.data<half>();
    for (int64_t i = 0; i < n; ++i) m.data()[i] = from_float<T>(to_float(src[i]));
  }
  return m;
}

/// Loads a 2-D float32 or float16 .npy file as a float matrix (rows, cols).
inline Matrix<float> load_npy_matrix(const std::string& path) {
  return npy_to_matrix<float>(load_npy(path), "'" + path + "'");
}

}  // namespace retrokv
