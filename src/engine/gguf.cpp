// GGUF parsing with a bounds-checked cursor, the mmap storage and the in-memory writer (gguf.h).
#include "retrokv/engine/gguf.h"

#include <fcntl.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <unistd.h>

#include <cerrno>
#include <cstring>
#include <limits>

#include "retrokv/core/error.h"

namespace retrokv::engine {

namespace {

constexpr uint32_t kMagic = 0x46554747u;  // "GGUF" read as little-endian u32
constexpr int kMaxDims = 4;
constexpr int kMaxArrayDepth = 8;
constexpr uint64_t kMaxElements = uint64_t{1} << 50;

// Reads little-endian values from [base, base + size); every read checks the remaining length so
// a truncated or corrupt file becomes a retrokv::Error with the offset where it went wrong.
class Cursor {
 public:
  Cursor(const uint8_t* base, std::size_t size) : base_(base), size_(size) {}

  std::size_t pos() const { return pos_; }
  std::size_t remaining() const { return size_ - pos_; }

  void need(std::size_t n, const char* what) const {
    RETROKV_CHECK(n <= remaining(), "gguf: truncated file: reading ", what, " needs ", n,
                  " bytes at offset ", pos_, ", only ", remaining(), " left");
  }
  template <typename T>
  T read(const char* what) {
    need(sizeof(T), what);
    T v;
    std::memcpy(&v, base_ + pos_, sizeof(T));
    pos_ += sizeof(T);
    return v;
  }
  std::string read_string(const char* what) {
    const uint64_t len = read<uint64_t>(what);
    RETROKV_CHECK(len <= remaining(), "gguf: corrupt file: ", what, " string length ", len,
                  " at offset ", pos_ - 8, " exceeds the ", remaining(), " bytes left");
    std::string s(reinterpret_cast<const char*>(base_ + pos_), static_cast<std::size_t>(len));
    pos_ += static_cast<std::size_t>(len);
    return s;
  }

 private:
  const uint8_t* base_;
  std::size_t size_;
  std::size_t pos_ = 0;
};

std::size_t scalar_size(GgufValueType t) {
  switch (t) {
    case GgufValueType::kUint8:
    case GgufValueType::kInt8:
    case GgufValueType::kBool:
      return 1;
    case GgufValueType::kUint16:
    case GgufValueType::kInt16:
      return 2;
    case GgufValueType::kUint32:
    case GgufValueType::kInt32:
    case GgufValueType::kFloat32:
      return 4;
    case GgufValueType::kUint64:
    case GgufValueType::kInt64:
    case GgufValueType::kFloat64:
    case GgufValueType::kString:  // at least its length field
    case GgufValueType::kArray:   // at least type + count
      return 8;
  }
  return 0;
}

GgufValueType check_value_type(uint32_t raw, const std::string& key) {
  RETROKV_CHECK(raw <= static_cast<uint32_t>(GgufValueType::kFloat64), "gguf: corrupt file: key '",
                key, "' has unknown value type ", raw);
  return static_cast<GgufValueType>(raw);
}

// Reads one scalar of type t into v (type already set).
void read_scalar(Cursor& c, GgufValueType t, GgufValue& v, const std::string& key) {
  v.type = t;
  switch (t) {
    case GgufValueType::kUint8:
      v.u = c.read<uint8_t>("uint8");
      return;
    case GgufValueType::kInt8:
      v.i = c.read<int8_t>("int8");
      return;
    case GgufValueType::kUint16:
      v.u = c.read<uint16_t>("uint16");
      return;
    case GgufValueType::kInt16:
      v.i = c.read<int16_t>("int16");
      return;
    case GgufValueType::kUint32:
      v.u = c.read<uint32_t>("uint32");
      return;
    case GgufValueType::kInt32:
      v.i = c.read<int32_t>("int32");
      return;
    case GgufValueType::kUint64:
      v.u = c.read<uint64_t>("uint64");
      return;
    case GgufValueType::kInt64:
      v.i = c.read<int64_t>("int64");
      return;
    case GgufValueType::kFloat32:
      v.f = c.read<float>("float32");
      return;
    case GgufValueType::kFloat64:
      v.f = c.read<double>("float64");
      return;
    case GgufValueType::kBool: {
      const uint8_t b = c.read<uint8_t>("bool");
      RETROKV_CHECK(b <= 1, "gguf: corrupt file: key '", key, "' bool must be 0 or 1, got ",
                    static_cast<int>(b));
      v.u = b;
      return;
    }
    case GgufValueType::kString:
      v.str = c.read_string("metadata value");
      return;
    case GgufValueType::kArray:
      break;
  }
  RETROKV_ASSERT(false);
}

double scalar_as_double(const GgufValue& v) {
  switch (v.type) {
    case GgufValueType::kInt8:
    case GgufValueType::kInt16:
    case GgufValueType::kInt32:
    case GgufValueType::kInt64:
      return static_cast<double>(v.i);
    case GgufValueType::kFloat32:
    case GgufValueType::kFloat64:
      return v.f;
    default:
      return static_cast<double>(v.u);
  }
}

void read_value(Cursor& c, GgufValueType t, GgufValue& v, const std::string& key, int depth) {
  if (t != GgufValueType::kArray) return read_scalar(c, t, v, key);
  RETROKV_CHECK(depth < kMaxArrayDepth, "gguf: corrupt file: key '", key,
                "' nests arrays deeper than ", kMaxArrayDepth);
  v.type = GgufValueType::kArray;
  v.elem_type = check_value_type(c.read<uint32_t>("array type"), key);
  const uint64_t n = c.read<uint64_t>("array length");
  const std::size_t min_size = scalar_size(v.elem_type);
  RETROKV_CHECK(n <= c.remaining() / min_size, "gguf: corrupt file: key '", key, "' array of ", n,
                " ", gguf_value_type_name(v.elem_type), " cannot fit in the ", c.remaining(),
                " bytes left");
  const auto count = static_cast<std::size_t>(n);
  if (v.elem_type == GgufValueType::kString) {
    v.strings.reserve(count);
    for (std::size_t j = 0; j < count; ++j) v.strings.push_back(c.read_string("array element"));
  } else if (v.elem_type == GgufValueType::kArray) {
    v.array.resize(count);
    for (std::size_t j = 0; j < count; ++j)
      read_value(c, GgufValueType::kArray, v.array[j], key, depth + 1);
  } else {
    v.numbers.reserve(count);
    GgufValue e;
    for (std::size_t j = 0; j < count; ++j) {
      read_scalar(c, v.elem_type, e, key);
      v.numbers.push_back(scalar_as_double(e));
    }
  }
}

uint64_t align_up(uint64_t x, uint64_t a) { return (x + a - 1) / a * a; }

}  // namespace

const char* gguf_value_type_name(GgufValueType t) {
  switch (t) {
    case GgufValueType::kUint8:
      return "uint8";
    case GgufValueType::kInt8:
      return "int8";
    case GgufValueType::kUint16:
      return "uint16";
    case GgufValueType::kInt16:
      return "int16";
    case GgufValueType::kUint32:
      return "uint32";
    case GgufValueType::kInt32:
      return "int32";
    case GgufValueType::kFloat32:
      return "float32";
    case GgufValueType::kBool:
      return "bool";
    case GgufValueType::kString:
      return "string";
    case GgufValueType::kArray:
      return "array";
    case GgufValueType::kUint64:
      return "uint64";
    case GgufValueType::kInt64:
      return "int64";
    case GgufValueType::kFloat64:
      return "float64";
  }
  return "unknown";
}

bool GgufValue::is_integer() const {
  switch (type) {
    case GgufValueType::kUint8:
    case GgufValueType::kInt8:
    case GgufValueType::kUint16:
    case GgufValueType::kInt16:
    case GgufValueType::kUint32:
    case GgufValueType::kInt32:
    case GgufValueType::kUint64:
    case GgufValueType::kInt64:
      return true;
    default:
      return false;
  }
}

std::size_t GgufValue::array_size() const {
  if (type != GgufValueType::kArray) return 0;
  return strings.size() + numbers.size() + array.size();
}

int64_t GgufTensorInfo::rows() const {
  int64_t r = 1;
  for (std::size_t j = 1; j < dims.size(); ++j) r *= dims[j];
  return r;
}

// ---- storage ---------------------------------------------------------------------------------

struct GgufFile::Storage {
  std::vector<uint8_t> bytes;
  void* map = nullptr;
  std::size_t map_size = 0;
  ~Storage() {
    if (map != nullptr) ::munmap(map, map_size);
  }
};

GgufFile::GgufFile(GgufFile&&) noexcept = default;
GgufFile& GgufFile::operator=(GgufFile&&) noexcept = default;
GgufFile::~GgufFile() = default;

GgufFile GgufFile::open(const std::string& path) {
  GgufFile f;
  f.path_ = path;
  f.storage_ = std::make_unique<Storage>();
  const int fd = ::open(path.c_str(), O_RDONLY | O_CLOEXEC);
  RETROKV_CHECK(fd >= 0, "gguf: cannot open '", path, "': ", std::strerror(errno));
  struct stat st {};
  if (::fstat(fd, &st) != 0) {
    const int err = errno;
    ::close(fd);
    RETROKV_FAIL("gguf: cannot stat '", path, "': ", std::strerror(err));
  }
  const auto size = static_cast<std::size_t>(st.st_size);
  if (size > 0) {
    void* p = ::mmap(nullptr, size, PROT_READ, MAP_PRIVATE, fd, 0);
    const int err = errno;
    ::close(fd);
    RETROKV_CHECK(p != MAP_FAILED, "gguf: cannot mmap '", path, "': ", std::strerror(err));
    f.storage_->map = p;
    f.storage_->map_size = size;
    f.base_ = static_cast<const uint8_t*>(p);
    f.size_ = size;
  } else {
    ::close(fd);
  }
  f.parse();
  return f;
}

GgufFile GgufFile::from_bytes(std::vector<uint8_t> bytes) {
  GgufFile f;
  f.path_ = "<memory>";
  f.storage_ = std::make_unique<Storage>();
  f.storage_->bytes = std::move(bytes);
  f.base_ = f.storage_->bytes.data();
  f.size_ = f.storage_->bytes.size();
  f.parse();
  return f;
}

void GgufFile::parse() {
  Cursor c(base_, size_);
  const uint32_t magic = c.read<uint32_t>("magic");
  RETROKV_CHECK(magic == kMagic, "gguf: '", path_, "' is not a GGUF file (magic 0x", std::hex,
                magic, ", expected 0x", kMagic, ")");
  version_ = c.read<uint32_t>("version");
  RETROKV_CHECK(version_ == 2 || version_ == 3, "gguf: version must be 2 or 3, got ", version_);
  const uint64_t n_tensors = c.read<uint64_t>("tensor count");
  const uint64_t n_kv = c.read<uint64_t>("metadata count");
  // Each key-value pair takes at least 8 (key length) + 4 (type) + 1 bytes; each tensor info at
  // least 8 + 4 + 4 + 8. Bounding the counts first keeps a corrupt count from reserving memory.
  RETROKV_CHECK(n_kv <= c.remaining() / 13, "gguf: corrupt file: metadata count ", n_kv,
                " cannot fit in ", c.remaining(), " bytes");
  RETROKV_CHECK(n_tensors <= c.remaining() / 24, "gguf: corrupt file: tensor count ", n_tensors,
                " cannot fit in ", c.remaining(), " bytes");

  for (uint64_t j = 0; j < n_kv; ++j) {
    std::string key = c.read_string("metadata key");
    const GgufValueType t = check_value_type(c.read<uint32_t>("value type"), key);
    GgufValue v;
    read_value(c, t, v, key, 0);
    RETROKV_CHECK(!metadata_.count(key), "gguf: corrupt file: duplicate metadata key '", key, "'");
    metadata_.emplace(std::move(key), std::move(v));
  }

  alignment_ = 32;
  if (const GgufValue* a = find("general.alignment")) {
    RETROKV_CHECK(a->type == GgufValueType::kUint32, "gguf: general.alignment must be uint32, got ",
                  gguf_value_type_name(a->type));
    RETROKV_CHECK(a->u > 0 && (a->u & (a->u - 1)) == 0,
                  "gguf: general.alignment must be a power of two, got ", a->u);
    alignment_ = a->u;
  }

  tensors_.reserve(static_cast<std::size_t>(n_tensors));
  for (uint64_t j = 0; j < n_tensors; ++j) {
    GgufTensorInfo t;
    t.name = c.read_string("tensor name");
    const uint32_t n_dims = c.read<uint32_t>("tensor n_dims");
    RETROKV_CHECK(n_dims >= 1 && n_dims <= kMaxDims, "gguf: tensor '", t.name,
                  "': n_dims must be in [1, ", kMaxDims, "], got ", n_dims);
    t.n_elements = 1;
    for (uint32_t k = 0; k < n_dims; ++k) {
      const uint64_t d = c.read<uint64_t>("tensor dim");
      RETROKV_CHECK(d >= 1 && d <= kMaxElements && t.n_elements <= kMaxElements / d,
                    "gguf: tensor '", t.name, "': dim ", k, " = ", d, " is out of range");
      t.n_elements *= d;
      t.dims.push_back(static_cast<int64_t>(d));
    }
    t.type = c.read<uint32_t>("tensor type");
    const GgmlTypeTraits traits = ggml_type_traits(t.type);
    RETROKV_CHECK(traits.known, "gguf: tensor '", t.name, "' has unknown ggml type id ", t.type);
    RETROKV_CHECK(t.dims[0] % traits.block_values == 0, "gguf: tensor '", t.name, "' of type ",
                  traits.name, ": dim 0 must be a multiple of ", traits.block_values, ", got ",
                  t.dims[0]);
    t.n_bytes = ggml_bytes_for(t.type, t.n_elements);
    t.offset = c.read<uint64_t>("tensor offset");
    RETROKV_CHECK(t.offset % alignment_ == 0, "gguf: tensor '", t.name, "' offset ", t.offset,
                  " is not a multiple of the alignment ", alignment_);
    RETROKV_CHECK(!tensor_index_.count(t.name), "gguf: corrupt file: duplicate tensor '", t.name,
                  "'");
    tensor_index_.emplace(t.name, tensors_.size());
    tensors_.push_back(std::move(t));
  }

  const uint64_t data_start = align_up(c.pos(), alignment_);
  const uint64_t data_size = data_start <= size_ ? size_ - data_start : 0;
  for (GgufTensorInfo& t : tensors_) {
    RETROKV_CHECK(data_start <= size_ && t.offset <= data_size && t.n_bytes <= data_size - t.offset,
                  "gguf: truncated file: tensor '", t.name, "' needs bytes [", t.offset, ", ",
                  t.offset + t.n_bytes, ") of the data section, which has ", data_size, " bytes");
    t.data = base_ + data_start + t.offset;
  }
}

// ---- metadata access -------------------------------------------------------------------------

const GgufValue* GgufFile::find(std::string_view key) const {
  auto it = metadata_.find(key);
  return it == metadata_.end() ? nullptr : &it->second;
}

namespace {
const GgufValue& require(const GgufFile& f, std::string_view key) {
  const GgufValue* v = f.find(key);
  RETROKV_CHECK(v != nullptr, "gguf: metadata key '", key, "' is missing from ", f.path());
  return *v;
}
[[noreturn]] void wrong_type(std::string_view key, const char* expected, const GgufValue& v) {
  RETROKV_FAIL("gguf: metadata key '", key, "': expected ", expected, ", got ",
               gguf_value_type_name(v.type));
}
}  // namespace

uint64_t GgufFile::get_uint(std::string_view key) const {
  const GgufValue& v = require(*this, key);
  if (!v.is_integer()) wrong_type(key, "an integer", v);
  if (v.type == GgufValueType::kInt8 || v.type == GgufValueType::kInt16 ||
      v.type == GgufValueType::kInt32 || v.type == GgufValueType::kInt64) {
    RETROKV_CHECK(v.i >= 0, "gguf: metadata key '", key, "': expected >= 0, got ", v.i);
    return static_cast<uint64_t>(v.i);
  }
  return v.u;
}

int64_t GgufFile::get_int(std::string_view key) const {
  const GgufValue& v = require(*this, key);
  if (!v.is_integer()) wrong_type(key, "an integer", v);
  if (v.type == GgufValueType::kUint8 || v.type == GgufValueType::kUint16 ||
      v.type == GgufValueType::kUint32 || v.type == GgufValueType::kUint64) {
    RETROKV_CHECK(v.u <= static_cast<uint64_t>(std::numeric_limits<int64_t>::max()),
                  "gguf: metadata key '", key, "': value ", v.u, " does not fit int64");
    return static_cast<int64_t>(v.u);
  }
  return v.i;
}

double GgufFile::get_float(std::string_view key) const {
  const GgufValue& v = require(*this, key);
  if (v.is_float()) return v.f;
  if (v.is_integer()) return scalar_as_double(v);
  wrong_type(key, "a number", v);
}

bool GgufFile::get_bool(std::string_view key) const {
  const GgufValue& v = require(*this, key);
  if (v.type != GgufValueType::kBool) wrong_type(key, "bool", v);
  return v.u != 0;
}

const std::string& GgufFile::get_string(std::string_view key) const {
  const GgufValue& v = require(*this, key);
  if (v.type != GgufValueType::kString) wrong_type(key, "string", v);
  return v.str;
}

const std::vector<std::string>& GgufFile::get_string_array(std::string_view key) const {
  const GgufValue& v = require(*this, key);
  if (v.type != GgufValueType::kArray || v.elem_type != GgufValueType::kString)
    wrong_type(key, "array of string", v);
  return v.strings;
}

std::vector<int64_t> GgufFile::get_int_array(std::string_view key) const {
  const GgufValue& v = require(*this, key);
  GgufValue probe;
  probe.type = v.elem_type;
  if (v.type != GgufValueType::kArray || !probe.is_integer())
    wrong_type(key, "array of integers", v);
  std::vector<int64_t> out;
  out.reserve(v.numbers.size());
  for (double x : v.numbers) out.push_back(static_cast<int64_t>(x));
  return out;
}

uint64_t GgufFile::get_uint_or(std::string_view key, uint64_t fallback) const {
  return has(key) ? get_uint(key) : fallback;
}
double GgufFile::get_float_or(std::string_view key, double fallback) const {
  return has(key) ? get_float(key) : fallback;
}
bool GgufFile::get_bool_or(std::string_view key, bool fallback) const {
  return has(key) ? get_bool(key) : fallback;
}
std::string GgufFile::get_string_or(std::string_view key, const std::string& fallback) const {
  return has(key) ? get_string(key) : fallback;
}

// ---- tensors ---------------------------------------------------------------------------------

const GgufTensorInfo* GgufFile::find_tensor(std::string_view name) const {
  auto it = tensor_index_.find(name);
  return it == tensor_index_.end() ? nullptr : &tensors_[it->second];
}

const GgufTensorInfo& GgufFile::tensor(std::string_view name) const {
  const GgufTensorInfo* t = find_tensor(name);
  RETROKV_CHECK(t != nullptr, "gguf: tensor '", name, "' is missing from ", path_);
  return *t;
}

void GgufFile::dequantize_into(const GgufTensorInfo& t, float* dst) const {
  engine::dequantize(t.type, t.data, static_cast<std::size_t>(t.n_bytes),
                     static_cast<int64_t>(t.n_elements), dst, "tensor '" + t.name + "'");
}

std::vector<float> GgufFile::dequantize(const GgufTensorInfo& t) const {
  RETROKV_CHECK(ggml_type_traits(t.type).dequantizable, "tensor '", t.name,
                "': unsupported ggml type ", ggml_type_name(t.type),
                " (supported: F32, F16, BF16, Q8_0, Q4_0, Q4_1)");
  std::vector<float> out(static_cast<std::size_t>(t.n_elements));
  dequantize_into(t, out.data());
  return out;
}

// ---- writer ----------------------------------------------------------------------------------

namespace {
template <typename T>
void put(std::vector<uint8_t>& out, T v) {
  const auto* p = reinterpret_cast<const uint8_t*>(&v);
  out.insert(out.end(), p, p + sizeof(T));
}
void put_string(std::vector<uint8_t>& out, const std::string& s) {
  put<uint64_t>(out, s.size());
  out.insert(out.end(), s.begin(), s.end());
}
}  // namespace

#define RETROKV_GGUF_ADD(fn, ctype, vtype)                           \
  void GgufWriter::fn(const std::string& key, ctype v) {             \
    put_string(kv_, key);                                            \
    put<uint32_t>(kv_, static_cast<uint32_t>(GgufValueType::vtype)); \
    put<ctype>(kv_, v);                                              \
    ++n_kv_;                                                         \
  }
RETROKV_GGUF_ADD(add_uint8, uint8_t, kUint8)
RETROKV_GGUF_ADD(add_int8, int8_t, kInt8)
RETROKV_GGUF_ADD(add_uint16, uint16_t, kUint16)
RETROKV_GGUF_ADD(add_int16, int16_t, kInt16)
RETROKV_GGUF_ADD(add_uint32, uint32_t, kUint32)
RETROKV_GGUF_ADD(add_int32, int32_t, kInt32)
RETROKV_GGUF_ADD(add_uint64, uint64_t, kUint64)
RETROKV_GGUF_ADD(add_int64, int64_t, kInt64)
RETROKV_GGUF_ADD(add_float32, float, kFloat32)
RETROKV_GGUF_ADD(add_float64, double, kFloat64)
#undef RETROKV_GGUF_ADD

void GgufWriter::add_bool(const std::string& key, bool v) {
  put_string(kv_, key);
  put<uint32_t>(kv_, static_cast<uint32_t>(GgufValueType::kBool));
  put<uint8_t>(kv_, v ? 1 : 0);
  ++n_kv_;
}

void GgufWriter::add_string(const std::string& key, const std::string& v) {
  put_string(kv_, key);
  put<uint32_t>(kv_, static_cast<uint32_t>(GgufValueType::kString));
  put_string(kv_, v);
  ++n_kv_;
}

void GgufWriter::add_string_array(const std::string& key, const std::vector<std::string>& v) {
  put_string(kv_, key);
  put<uint32_t>(kv_, static_cast<uint32_t>(GgufValueType::kArray));
  put<uint32_t>(kv_, static_cast<uint32_t>(GgufValueType::kString));
  put<uint64_t>(kv_, v.size());
  for (const auto& s : v) put_string(kv_, s);
  ++n_kv_;
}

void GgufWriter::add_int32_array(const std::string& key, const std::vector<int32_t>& v) {
  put_string(kv_, key);
  put<uint32_t>(kv_, static_cast<uint32_t>(GgufValueType::kArray));
  put<uint32_t>(kv_, static_cast<uint32_t>(GgufValueType::kInt32));
  put<uint64_t>(kv_, v.size());
  for (int32_t x : v) put<int32_t>(kv_, x);
  ++n_kv_;
}

void GgufWriter::add_tensor(const std::string& name, std::vector<int64_t> dims, uint32_t type,
                            std::vector<uint8_t> bytes) {
  tensors_.push_back(Tensor{name, std::move(dims), type, std::move(bytes)});
}

void GgufWriter::set_alignment(uint32_t alignment) {
  RETROKV_CHECK(alignment > 0 && (alignment & (alignment - 1)) == 0,
                "alignment: expected a power of two, got ", alignment);
  alignment_ = alignment;
  add_uint32("general.alignment", alignment);
}

std::vector<uint8_t> GgufWriter::finish() const {
  std::vector<uint8_t> out;
  put<uint32_t>(out, kMagic);
  put<uint32_t>(out, 3);
  put<uint64_t>(out, tensors_.size());
  put<uint64_t>(out, n_kv_);
  out.insert(out.end(), kv_.begin(), kv_.end());
  uint64_t offset = 0;
  for (const Tensor& t : tensors_) {
    put_string(out, t.name);
    put<uint32_t>(out, static_cast<uint32_t>(t.dims.size()));
    for (int64_t d : t.dims) put<uint64_t>(out, static_cast<uint64_t>(d));
    put<uint32_t>(out, t.type);
    put<uint64_t>(out, offset);
    offset = align_up(offset + t.bytes.size(), alignment_);
  }
  out.resize(align_up(out.size(), alignment_), 0);
  for (const Tensor& t : tensors_) {
    out.insert(out.end(), t.bytes.begin(), t.bytes.end());
    out.resize(align_up(out.size(), alignment_), 0);
  }
  return out;
}

}  // namespace retrokv::engine
