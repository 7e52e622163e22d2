// Checksummed binary files for saved indexes (RoarGraph, IVF, wave; issue 2 "Core"), plus whole-
// file read and atomic write helpers. A file is `magic(8) version(u32) reserved(u32) size(u64)
// payload checksum(u64)`; the checksum covers everything before it and is verified before any
// parsing, and every read is bounds-checked, so a truncated or bit-flipped file always throws.
#pragma once

#include <unistd.h>

#include <atomic>
#include <cstdint>
#include <cstdio>
#include <cstring>
#include <limits>
#include <string>
#include <string_view>
#include <type_traits>
#include <utility>
#include <vector>

#include "retrokv/core/error.h"

namespace retrokv {

namespace detail {

inline constexpr uint64_t kMixA = 0x9E3779B97F4A7C15ull;  // odd: multiplication is a bijection
inline constexpr uint64_t kMixB = 0xD6E8FEB86659FD93ull;
inline constexpr uint64_t kMixC = 0xA0761D6478BD642Full;

inline uint64_t rotl64(uint64_t x, int r) { return (x << r) | (x >> (64 - r)); }

inline uint64_t load_u64(const uint8_t* p) {
  uint64_t v;
  std::memcpy(&v, p, 8);
  return v;
}

/// One lane step. For fixed `acc` it is a bijection of `word` and for fixed `word` a bijection of
/// `acc`, so changing any single input word always changes the lane (never cancels).
inline uint64_t checksum_round(uint64_t acc, uint64_t word) {
  acc ^= rotl64(word * kMixB, 29) * kMixA;
  return rotl64(acc, 23) * kMixC + kMixA;
}

}  // namespace detail

/// 64-bit checksum of bytes [data, data + size). Four independent lanes over 32-byte stripes
/// (fast: several GB/s), then the tail, the length and a final avalanche. Every step is a
/// bijection in the state, so any change confined to one 8-byte word (every single-bit flip) is
/// detected with certainty; other corruptions escape with probability about 2^-64.
inline uint64_t checksum64(const void* data, size_t size, uint64_t seed = 0) {
  using namespace detail;
  const auto* p = static_cast<const uint8_t*>(data);
  uint64_t lane[4] = {seed + kMixA, seed ^ kMixB, seed - kMixC, ~seed};
  size_t i = 0;
  for (; i + 32 <= size; i += 32) {
    for (int l = 0; l < 4; ++l) lane[l] = checksum_round(lane[l], load_u64(p + i + 8 * l));
  }
  uint64_t h = rotl64(lane[0], 1) + rotl64(lane[1], 17) + rotl64(lane[2], 31) + rotl64(lane[3], 47);
  h = checksum_round(h, static_cast<uint64_t>(size));
  for (; i + 8 <= size; i += 8) h = checksum_round(h, load_u64(p + i));
  if (i < size) {  // 1..7 bytes; the length above tells how many were padded
    uint64_t tail = 0;
    std::memcpy(&tail, p + i, size - i);
    h = checksum_round(h, tail);
  }
  h ^= h >> 31;
  h *= kMixB;
  h ^= h >> 29;
  h *= kMixC;
  h ^= h >> 32;
  return h;
}

/// Reads a whole file. Throws retrokv::Error naming the path when it cannot be opened or read.
inline std::vector<uint8_t> read_file(const std::string& path) {
  std::FILE* f = std::fopen(path.c_str(), "rb");
  RETROKV_CHECK(f != nullptr, "path: cannot open '", path, "' for reading");
  std::vector<uint8_t> out;
  // One allocation when the size is known (regular files); chunked reads otherwise (pipes).
  if (std::fseek(f, 0, SEEK_END) == 0) {
    const long size = std::ftell(f);
    if (size > 0) out.reserve(static_cast<size_t>(size));
    std::rewind(f);
  }
  uint8_t buf[1 << 16];
  size_t got;
  while ((got = std::fread(buf, 1, sizeof buf, f)) > 0) out.insert(out.end(), buf, buf + got);
  const bool failed = std::ferror(f) != 0;
  std::fclose(f);
  RETROKV_CHECK(!failed, "path: read error on '", path, "'");
  return out;
}

/// Writes a whole file atomically: a temporary file next to `path`, flushed and synced, then
/// renamed over it, so a crash or a full disk never leaves a half-written file under `path`.
inline void write_file_atomic(const std::string& path, const void* data, size_t size) {
  static std::atomic<uint64_t> counter{0};
  const std::string tmp =
      path + ".tmp." + std::to_string(::getpid()) + "." + std::to_string(counter.fetch_add(1));
  std::FILE* f = std::fopen(tmp.c_str(), "wb");
  RETROKV_CHECK(f != nullptr, "path: cannot open '", tmp, "' for writing");
  bool ok = size == 0 || std::fwrite(data, 1, size, f) == size;
  ok = std::fflush(f) == 0 && ok;
  ok = ::fsync(::fileno(f)) == 0 && ok;
  ok = std::fclose(f) == 0 && ok;
  if (ok) ok = std::rename(tmp.c_str(), path.c_str()) == 0;
  if (!ok) {
    std::remove(tmp.c_str());
    RETROKV_FAIL("path: failed to write '", path, "' (", size, " bytes; disk full or no access?)");
  }
}

inline constexpr size_t kBinaryMagicSize = 8;
inline constexpr size_t kBinaryHeaderSize = 8 + 4 + 4 + 8;  // magic, version, reserved, size
inline constexpr size_t kBinaryTrailerSize = 8;             // checksum

/// Builds a versioned, checksummed file image in memory. Write fields in a fixed order, then
/// save() (or finish() for the bytes). Only trivially copyable values; host byte order (the
/// other endianness fails the size and checksum checks).
class BinaryWriter {
 public:
  /// magic: exactly 8 characters naming the format, e.g. "RKVROAR1".
  BinaryWriter(std::string_view magic, uint32_t version) {
    RETROKV_CHECK(magic.size() == kBinaryMagicSize, "magic: expected 8 characters, got '", magic,
                  "'");
    buf_.resize(kBinaryHeaderSize);
    std::memcpy(buf_.data(), magic.data(), kBinaryMagicSize);
    std::memcpy(buf_.data() + 8, &version, 4);
  }

  template <typename T>
  void write(const T& v) {
    static_assert(std::is_trivially_copyable_v<T>, "write: trivially copyable types only");
    write_bytes(&v, sizeof(T));
  }
  /// n values, no count (the reader must know n, e.g. from an earlier field).
  template <typename T>
  void write_array(const T* p, size_t n) {
    static_assert(std::is_trivially_copyable_v<T>, "write_array: trivially copyable types only");
    write_bytes(p, n * sizeof(T));
  }
  /// u64 count, then the values.
  template <typename T>
  void write_vector(const std::vector<T>& v) {
    write<uint64_t>(v.size());
    write_array(v.data(), v.size());
  }
  void write_string(std::string_view s) {
    write<uint64_t>(s.size());
    write_bytes(s.data(), s.size());
  }
  void write_bytes(const void* p, size_t n) {
    RETROKV_CHECK(!finished_, "BinaryWriter: write after finish()");
    if (n == 0) return;
    const auto* b = static_cast<const uint8_t*>(p);
    buf_.insert(buf_.end(), b, b + n);
  }
  /// Payload bytes written so far.
  size_t payload_size() const { return buf_.size() - kBinaryHeaderSize; }

  /// Fills in the size, appends the checksum and returns the complete file image.
  const std::vector<uint8_t>& finish() {
    if (!finished_) {
      const uint64_t size = payload_size();
      std::memcpy(buf_.data() + 16, &size, 8);
      const uint64_t sum = checksum64(buf_.data(), buf_.size());
      const auto* s = reinterpret_cast<const uint8_t*>(&sum);
      buf_.insert(buf_.end(), s, s + 8);
      finished_ = true;
    }
    return buf_;
  }
  /// finish() and write the image to `path` atomically.
  void save(const std::string& path) {
    const auto& img = finish();
    write_file_atomic(path, img.data(), img.size());
  }

 private:
  std::vector<uint8_t> buf_;
  bool finished_ = false;
};

/// Verifies a BinaryWriter image (magic, size, checksum, version) before anything is parsed,
/// then reads fields with bounds checks. Every problem throws retrokv::Error naming `what`
/// (e.g. the file path) and the problem: "bad magic", "truncated", "checksum mismatch", ...
class BinaryReader {
 public:
  BinaryReader(std::vector<uint8_t> image, std::string_view magic, uint32_t min_version,
               uint32_t max_version, std::string what = "file")
      : buf_(std::move(image)), what_(std::move(what)) {
    RETROKV_CHECK(magic.size() == kBinaryMagicSize, "magic: expected 8 characters, got '", magic,
                  "'");
    RETROKV_CHECK(buf_.size() >= kBinaryMagicSize &&
                      std::memcmp(buf_.data(), magic.data(), kBinaryMagicSize) == 0,
                  what_, ": bad magic, expected a '", magic, "' file");
    RETROKV_CHECK(buf_.size() >= kBinaryHeaderSize + kBinaryTrailerSize, what_,
                  ": truncated header (", buf_.size(), " bytes)");
    uint64_t size;
    std::memcpy(&size, buf_.data() + 16, 8);
    const uint64_t available = buf_.size() - kBinaryHeaderSize - kBinaryTrailerSize;
    RETROKV_CHECK(size <= available, what_, ": truncated: header says ", size,
                  " payload bytes, file has ", available);
    RETROKV_CHECK(size == available, what_, ": ", available - size,
                  " unexpected trailing bytes after the payload");
    uint64_t stored;
    std::memcpy(&stored, buf_.data() + buf_.size() - 8, 8);
    const uint64_t actual = checksum64(buf_.data(), buf_.size() - 8);
    RETROKV_CHECK(stored == actual, what_, ": checksum mismatch (corrupt file)");
    std::memcpy(&version_, buf_.data() + 8, 4);
    RETROKV_CHECK(version_ >= min_version && version_ <= max_version, what_,
                  ": unsupported version ", version_, ", expected ", min_version, "..",
                  max_version);
    pos_ = kBinaryHeaderSize;
    end_ = buf_.size() - kBinaryTrailerSize;
  }

  /// Reads and verifies the file at `path`.
  static BinaryReader open(const std::string& path, std::string_view magic, uint32_t min_version,
                           uint32_t max_version) {
    return BinaryReader(read_file(path), magic, min_version, max_version, path);
  }

  uint32_t version() const { return version_; }
  size_t remaining() const { return end_ - pos_; }

  /// Reads one value. bool is stored as one byte and must be 0 or 1.
  template <typename T>
  T read() {
    static_assert(std::is_trivially_copyable_v<T>, "read: trivially copyable types only");
    if constexpr (std::is_same_v<T, bool>) {
      const uint8_t b = read<uint8_t>();
      RETROKV_CHECK(b <= 1, what_, ": corrupt bool value ", int{b});
      return b != 0;
    } else {
      T v;
      read_bytes(&v, sizeof(T));
      return v;
    }
  }
  template <typename T>
  void read_array(T* out, size_t n) {
    static_assert(std::is_trivially_copyable_v<T> && !std::is_same_v<T, bool>);
    RETROKV_CHECK(n <= remaining() / (sizeof(T) ? sizeof(T) : 1), what_, ": truncated: need ", n,
                  " values of ", sizeof(T), " bytes, ", remaining(), " bytes left");
    read_bytes(out, n * sizeof(T));
  }
  /// u64 count then values; the count is checked against the bytes left (and max_count) before
  /// allocating, so a corrupt count cannot ask for terabytes.
  template <typename T>
  std::vector<T> read_vector(uint64_t max_count = std::numeric_limits<uint64_t>::max()) {
    const uint64_t n = read<uint64_t>();
    RETROKV_CHECK(n <= max_count, what_, ": vector count ", n, " exceeds the limit ", max_count);
    RETROKV_CHECK(n <= remaining() / sizeof(T), what_, ": truncated: vector of ", n, " values of ",
                  sizeof(T), " bytes, ", remaining(), " bytes left");
    std::vector<T> v(static_cast<size_t>(n));
    read_array(v.data(), v.size());
    return v;
  }
  std::string read_string(uint64_t max_size = std::numeric_limits<uint64_t>::max()) {
    const auto v = read_vector<char>(max_size);
    return std::string(v.begin(), v.end());
  }
  void read_bytes(void* out, size_t n) {
    RETROKV_CHECK(n <= remaining(), what_, ": truncated: need ", n, " bytes, ", remaining(),
                  " left");
    if (n) std::memcpy(out, buf_.data() + pos_, n);
    pos_ += n;
  }
  /// Call after the last field: leftover payload means the file and the parser disagree.
  void expect_end() const {
    RETROKV_CHECK(remaining() == 0, what_, ": ", remaining(), " unread payload bytes");
  }
  /// Throws a "corrupt" error naming the file when a parsed value fails a consistency check.
  template <typename... Parts>
  void check(bool cond, Parts&&... parts) const {
    if (!cond) RETROKV_FAIL(what_, ": corrupt: ", std::forward<Parts>(parts)...);
  }

 private:
  std::vector<uint8_t> buf_;
  std::string what_;
  uint32_t version_ = 0;
  size_t pos_ = 0;
  size_t end_ = 0;
};

}  // namespace retrokv
