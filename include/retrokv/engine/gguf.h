// Reader for GGUF files (v2 and v3): header, typed metadata, tensor infos and the memory-mapped
// tensor data, for the SmolLM2 example engine (DESIGN.md section 2, "engine"). Every read is
// bounds-checked, so a corrupt or truncated file throws retrokv::Error instead of crashing.
#pragma once

#include <cstddef>
#include <cstdint>
#include <map>
#include <memory>
#include <string>
#include <string_view>
#include <vector>

#include "retrokv/engine/quant.h"

namespace retrokv::engine {

/// Metadata value types as numbered in the GGUF format.
enum class GgufValueType : uint32_t {
  kUint8 = 0,
  kInt8 = 1,
  kUint16 = 2,
  kInt16 = 3,
  kUint32 = 4,
  kInt32 = 5,
  kFloat32 = 6,
  kBool = 7,
  kString = 8,
  kArray = 9,
  kUint64 = 10,
  kInt64 = 11,
  kFloat64 = 12,
};

const char* gguf_value_type_name(GgufValueType t);

/// One metadata value. Scalars keep their type and are stored widened (integers in `i`/`u`,
/// floats in `f`); arrays keep their element type and hold their elements in `array`, except
/// arrays of strings and of numbers, which are kept flat in `strings` / `numbers` for speed
/// (a vocabulary is 49152 strings).
struct GgufValue {
  GgufValueType type = GgufValueType::kUint8;
  GgufValueType elem_type = GgufValueType::kUint8;  ///< element type when type == kArray
  uint64_t u = 0;                                   ///< unsigned integers and bool
  int64_t i = 0;                                    ///< signed integers
  double f = 0;                                     ///< floats
  std::string str;                                  ///< strings
  std::vector<std::string> strings;                 ///< array of strings
  std::vector<double> numbers;                      ///< array of numbers or bools (as 0/1)
  std::vector<GgufValue> array;                     ///< array of arrays

  bool is_integer() const;
  bool is_float() const {
    return type == GgufValueType::kFloat32 || type == GgufValueType::kFloat64;
  }
  /// Number of elements of an array value (0 for scalars).
  std::size_t array_size() const;
};

/// One tensor of the file. `dims[0]` is the contiguous (fastest) dimension, as in ggml: a weight
/// matrix (rows, cols) has dims = {cols, rows}.
struct GgufTensorInfo {
  std::string name;
  std::vector<int64_t> dims;
  uint32_t type = 0;
  uint64_t offset = 0;  ///< from the start of the data section
  uint64_t n_elements = 0;
  uint64_t n_bytes = 0;
  const uint8_t* data = nullptr;  ///< points into the mapped file

  int64_t rows() const;  ///< product of dims[1..]
  int64_t cols() const { return dims.empty() ? 1 : dims[0]; }
};

/// A parsed GGUF file with its data mapped read-only (or held in memory for from_bytes).
class GgufFile {
 public:
  /// Opens and parses `path` (mmap). Throws retrokv::Error for a missing, corrupt or truncated
  /// file.
  static GgufFile open(const std::string& path);
  /// Parses an in-memory image of a file (tests, fuzzing).
  static GgufFile from_bytes(std::vector<uint8_t> bytes);

  GgufFile(GgufFile&&) noexcept;
  GgufFile& operator=(GgufFile&&) noexcept;
  ~GgufFile();

  uint32_t version() const { return version_; }
  uint64_t alignment() const { return alignment_; }
  const std::string& path() const { return path_; }

  const std::map<std::string, GgufValue, std::less<>>& metadata() const { return metadata_; }
  const GgufValue* find(std::string_view key) const;
  bool has(std::string_view key) const { return find(key) != nullptr; }
  /// Typed getters: throw retrokv::Error naming the key when it is missing or of another type.
  uint64_t get_uint(std::string_view key) const;
  int64_t get_int(std::string_view key) const;
  double get_float(std::string_view key) const;  ///< also accepts integers
  bool get_bool(std::string_view key) const;
  const std::string& get_string(std::string_view key) const;
  const std::vector<std::string>& get_string_array(std::string_view key) const;
  std::vector<int64_t> get_int_array(std::string_view key) const;
  /// Same, with a fallback when the key is absent (a present key of the wrong type still throws).
  uint64_t get_uint_or(std::string_view key, uint64_t fallback) const;
  double get_float_or(std::string_view key, double fallback) const;
  bool get_bool_or(std::string_view key, bool fallback) const;
  std::string get_string_or(std::string_view key, const std::string& fallback) const;

  const std::vector<GgufTensorInfo>& tensors() const { return tensors_; }
  const GgufTensorInfo* find_tensor(std::string_view name) const;
  /// Throws retrokv::Error naming the tensor when it is absent.
  const GgufTensorInfo& tensor(std::string_view name) const;
  /// All elements of a tensor as float (see quant.h for the supported types).
  std::vector<float> dequantize(const GgufTensorInfo& t) const;
  void dequantize_into(const GgufTensorInfo& t, float* dst) const;

 private:
  GgufFile() = default;
  void parse();

  struct Storage;
  std::unique_ptr<Storage> storage_;
  const uint8_t* base_ = nullptr;
  std::size_t size_ = 0;
  std::string path_;
  uint32_t version_ = 0;
  uint64_t alignment_ = 32;
  std::map<std::string, GgufValue, std::less<>> metadata_;
  std::vector<GgufTensorInfo> tensors_;
  std::map<std::string, std::size_t, std::less<>> tensor_index_;
};

/// Builds a GGUF v3 image in memory (used by the tests to make small files and by anyone who
/// needs a fixture). Values are written in insertion order.
class GgufWriter {
 public:
  void add_uint32(const std::string& key, uint32_t v);
  void add_int32(const std::string& key, int32_t v);
  void add_uint64(const std::string& key, uint64_t v);
  void add_float32(const std::string& key, float v);
  void add_float64(const std::string& key, double v);
  void add_bool(const std::string& key, bool v);
  void add_string(const std::string& key, const std::string& v);
  void add_string_array(const std::string& key, const std::vector<std::string>& v);
  void add_int32_array(const std::string& key, const std::vector<int32_t>& v);
  void add_uint8(const std::string& key, uint8_t v);
  void add_int8(const std::string& key, int8_t v);
  void add_uint16(const std::string& key, uint16_t v);
  void add_int16(const std::string& key, int16_t v);
  void add_int64(const std::string& key, int64_t v);
  /// Adds a tensor with raw bytes already in `type`'s layout; dims[0] is the contiguous one.
  void add_tensor(const std::string& name, std::vector<int64_t> dims, uint32_t type,
                  std::vector<uint8_t> bytes);
  void set_alignment(uint32_t alignment);
  std::vector<uint8_t> finish() const;

 private:
  struct Tensor {
    std::string name;
    std::vector<int64_t> dims;
    uint32_t type;
    std::vector<uint8_t> bytes;
  };
  std::vector<uint8_t> kv_;
  uint64_t n_kv_ = 0;
  uint32_t alignment_ = 32;
  std::vector<Tensor> tensors_;
};

}  // namespace retrokv::engine
