// .npy read/write: round trips of every supported dtype and shape, numpy's own header layout,
// a clear error for each unsupported or corrupt input, and a fuzz test (random truncations and
// bit flips never crash: they throw retrokv::Error or load a consistent array).
#include <gtest/gtest.h>
#include <unistd.h>

#include <cstdint>
#include <cstdlib>
#include <cstring>
#include <filesystem>
#include <functional>
#include <random>
#include <string>
#include <vector>

#include "common/test_util.h"
#include "retrokv/core/error.h"
#include "retrokv/core/half.h"
#include "retrokv/core/npy.h"

namespace retrokv {
namespace {

namespace fs = std::filesystem;

// A .npy image with a hand-written header dict (padded as numpy pads: to 64 bytes, '\n' last).
std::vector<uint8_t> raw_npy(const std::string& dict, const std::vector<uint8_t>& payload,
                             int major = 1) {
  const size_t prefix = major == 1 ? 10 : 12;
  std::string h = dict;
  const size_t total = ((prefix + h.size() + 1 + 63) / 64) * 64;
  h.append(total - prefix - h.size() - 1, ' ');
  h += '\n';
  std::vector<uint8_t> out = {0x93, 'N', 'U', 'M', 'P', 'Y', static_cast<uint8_t>(major), 0};
  for (size_t i = 0; i < prefix - 8; ++i) out.push_back(static_cast<uint8_t>(h.size() >> (8 * i)));
  out.insert(out.end(), h.begin(), h.end());
  out.insert(out.end(), payload.begin(), payload.end());
  return out;
}

template <typename T>
std::vector<uint8_t> bytes_of(const std::vector<T>& v) {
  std::vector<uint8_t> b(v.size() * sizeof(T));
  if (!b.empty()) std::memcpy(b.data(), v.data(), b.size());
  return b;
}

template <typename T>
void check_round_trip(const std::string& dir, T (*make)(int64_t)) {
  const std::vector<std::vector<int64_t>> shapes = {{}, {0}, {5}, {3, 4}, {2, 3, 4}, {0, 5}};
  for (const auto& shape : shapes) {
    int64_t n = 1;
    for (int64_t s : shape) n *= s;
    std::vector<T> v(n);
    for (int64_t i = 0; i < n; ++i) v[i] = make(i);
    const std::string path = dir + "/a.npy";
    save_npy(path, v.data(), shape);
    const NpyArray a = load_npy(path);
    EXPECT_EQ(a.dtype, npy_dtype<T>());
    EXPECT_EQ(a.shape, shape);
    EXPECT_EQ(a.size(), n);
    EXPECT_EQ(a.bytes, bytes_of(v)) << npy_dtype<T>() << " rank " << shape.size();
    // numpy aligns the data to 64 bytes.
    EXPECT_EQ((fs::file_size(path) - a.bytes.size()) % 64, 0u);
  }
}

TEST(Npy, RoundTripsEveryDtypeAndShape) {
  TempDir dir;
  const std::string d = dir.path.string();
  check_round_trip<float>(d, [](int64_t i) { return 0.5f * i - 3.f; });
  check_round_trip<half>(d, [](int64_t i) { return half(0.25f * i - 1.f); });
  check_round_trip<int32_t>(d, [](int64_t i) { return static_cast<int32_t>(-i * 1000003); });
  check_round_trip<int64_t>(d, [](int64_t i) { return (int64_t{1} << 40) - i; });
}

TEST(Npy, ReadsNumpysOwnLayoutAndVersion2) {
  // Exactly what numpy.save writes for np.arange(6, dtype='<f4').reshape(2, 3).
  const std::vector<float> vals = {0, 1, 2, 3, 4, 5};
  const auto img =
      raw_npy("{'descr': '<f4', 'fortran_order': False, 'shape': (2, 3), }", bytes_of(vals));
  ASSERT_EQ(img.size(), 128u + 24u);
  NpyArray a = parse_npy(img.data(), img.size());
  EXPECT_EQ(a.shape, (std::vector<int64_t>{2, 3}));
  EXPECT_EQ(a.data<float>()[5], 5.f);
  // Our writer produces the same bytes.
  EXPECT_EQ(encode_npy(vals.data(), {2, 3}), img);

  // Version 2.0 (u32 header length), double quotes, key order, no trailing comma, 1-D "(6,)".
  const auto v2 = raw_npy(R"({"shape": (6,), "fortran_order": False, "descr": "<i8"})",
                          bytes_of(std::vector<int64_t>{1, 2, 3, 4, 5, -6}), 2);
  a = parse_npy(v2.data(), v2.size());
  EXPECT_EQ(a.dtype, "<i8");
  EXPECT_EQ(a.shape, (std::vector<int64_t>{6}));
  EXPECT_EQ(a.data<int64_t>()[5], -6);
  EXPECT_NE(error_of([&] { a.data<float>(); }).find("dtype"), std::string::npos);
}

TEST(Npy, MatrixLoadConvertsHalfToFloat) {
  TempDir dir;
  const std::string path = (dir.path / "m.npy").string();
  std::vector<half> h(6);
  for (int i = 0; i < 6; ++i) h[i] = half(0.1f * i);
  save_npy(path, h.data(), {3, 2});
  const Matrix<float> m = load_npy_matrix(path);
  ASSERT_EQ(m.rows(), 3);
  ASSERT_EQ(m.cols(), 2);
  for (int i = 0; i < 6; ++i) EXPECT_EQ(m.data()[i], to_float(h[i]));

  Matrix<float> f(2, 3);
  for (int i = 0; i < 6; ++i) f.data()[i] = 1.f / (i + 1);
  save_npy(path, f);
  const Matrix<half> as_half = npy_to_matrix<half>(load_npy(path));
  for (int i = 0; i < 6; ++i) EXPECT_EQ(as_half.data()[i].bits, half(f.data()[i]).bits);

  const std::vector<int32_t> ints = {1, 2};
  save_npy(path, ints.data(), {2});
  EXPECT_NE(error_of([&] { load_npy_matrix(path); }).find("2-D"), std::string::npos);
  save_npy(path, ints.data(), {1, 2});
  EXPECT_NE(error_of([&] { load_npy_matrix(path); }).find("<i4"), std::string::npos);
}

TEST(Npy, ClearErrorForEachProblem) {
  const auto f4 = bytes_of(std::vector<float>{1, 2, 3, 4});
  auto expect_error = [](const std::vector<uint8_t>& img, const std::string& needle) {
    const std::string msg = error_of([&] { parse_npy(img.data(), img.size(), "x.npy"); });
    EXPECT_NE(msg.find(needle), std::string::npos) << "want '" << needle << "', got: " << msg;
    EXPECT_NE(msg.find("x.npy"), std::string::npos) << msg;
  };
  expect_error(raw_npy("{'descr': '<f4', 'fortran_order': True, 'shape': (2, 2), }", f4),
               "Fortran order");
  expect_error(raw_npy("{'descr': '>f4', 'fortran_order': False, 'shape': (2, 2), }", f4),
               "big-endian");
  expect_error(raw_npy("{'descr': '<f8', 'fortran_order': False, 'shape': (2, 1), }", f4),
               "unsupported dtype '<f8'");
  expect_error(raw_npy("{'descr': [('a', '<f4')], 'fortran_order': False, 'shape': (4,), }", f4),
               "unsupported dtype");
  expect_error(raw_npy("{'descr': '<f4', 'fortran_order': False, 'shape': (2, 3), }", f4),
               "truncated data");
  expect_error(raw_npy("{'descr': '<f4', 'fortran_order': False, 'shape': (3,), }", f4),
               "trailing bytes");
  expect_error(raw_npy("{'descr': '<f4', 'fortran_order': False, 'shape': (4611686018427387904, "
                       "4611686018427387904), }",
                       f4),
               "shape overflow");
  expect_error(
      raw_npy("{'descr': '<f4', 'fortran_order': False, 'shape': (99999999999999999999,), }", f4),
      "shape overflow");
  expect_error(raw_npy("{'descr': '<f4', 'fortran_order': False, 'shape': (-4,), }", f4),
               "bad header");
  expect_error(raw_npy("{'descr': '<f4', 'shape': (4,), }", f4), "bad header");
  expect_error(raw_npy("{'descr': '<f4', 'fortran_order': False, 'shape': (4,), 'x': 1}", f4),
               "unexpected key");
  expect_error(raw_npy("not a dict", f4), "bad header");
  auto bad_magic = raw_npy("{'descr': '<f4', 'fortran_order': False, 'shape': (4,), }", f4);
  bad_magic[1] = 'X';
  expect_error(bad_magic, "bad magic");
  auto bad_version = raw_npy("{'descr': '<f4', 'fortran_order': False, 'shape': (4,), }", f4);
  bad_version[6] = 4;
  expect_error(bad_version, "unsupported format version 4.0");
  auto long_header = raw_npy("{'descr': '<f4', 'fortran_order': False, 'shape': (4,), }", f4);
  long_header[9] = 0x7f;  // header length far past the end of the file
  expect_error(long_header, "truncated header");
  expect_error({0x93, 'N', 'U'}, "bad magic");

  EXPECT_NE(error_of([] { load_npy("/nonexistent/k.npy"); }).find("/nonexistent/k.npy"),
            std::string::npos);
  const float one = 1.f;
  EXPECT_NE(error_of([&] { save_npy("/nonexistent/dir/k.npy", &one, {1}); }).find("k.npy"),
            std::string::npos);
  EXPECT_NE(error_of([&] { save_npy("/tmp/unused.npy", &one, {-1}); }).find("shape"),
            std::string::npos);
}

// Loads `img`; returns true if it loaded. Any exception other than retrokv::Error fails the test.
bool try_load(const std::vector<uint8_t>& img, NpyArray* out) {
  try {
    *out = parse_npy(img.data(), img.size());
    return true;
  } catch (const Error&) {
    return false;
  } catch (const std::exception& e) {
    ADD_FAILURE() << "non-retrokv exception: " << e.what();
    return false;
  }
}

TEST(Npy, FuzzTruncationsAndBitFlipsNeverCrash) {
  std::vector<float> vals(7 * 5);
  for (size_t i = 0; i < vals.size(); ++i) vals[i] = 0.37f * i;
  const std::vector<uint8_t> img = encode_npy(vals.data(), {7, 5});
  const size_t data_offset = img.size() - vals.size() * 4;
  std::mt19937_64 rng(2024);
  const int trials = sanitizer_build() ? 3000 : 20000;
  int loaded = 0, rejected = 0;
  for (int t = 0; t < trials; ++t) {
    std::vector<uint8_t> bad = img;
    bool header_touched = false;
    if (t % 3 == 0) {
      bad.resize(rng() % img.size());  // truncation
    } else {
      const int flips = 1 + static_cast<int>(rng() % 3);
      for (int f = 0; f < flips; ++f) {
        // Half the flips in the header, where the parser has to cope.
        const size_t pos = (rng() % 2) ? rng() % data_offset : rng() % bad.size();
        bad[pos] ^= static_cast<uint8_t>(1u << (rng() % 8));
        header_touched |= pos < data_offset;
      }
    }
    NpyArray a;
    if (!try_load(bad, &a)) {
      ++rejected;
      continue;
    }
    ++loaded;
    // Whatever loads is self-consistent.
    EXPECT_EQ(static_cast<int64_t>(a.bytes.size()), a.size() * a.item_size());
    EXPECT_TRUE(a.dtype == "<f4" || a.dtype == "<f2" || a.dtype == "<i4" || a.dtype == "<i8");
    if (!header_touched && bad.size() == img.size()) {
      // Only data bits changed: same shape and dtype, data equal to the flipped bytes.
      EXPECT_EQ(a.shape, (std::vector<int64_t>{7, 5}));
      EXPECT_EQ(a.bytes, std::vector<uint8_t>(bad.begin() + data_offset, bad.end()));
    }
  }
  EXPECT_GT(rejected, trials / 4);  // truncations alone are a third of the trials
  EXPECT_GT(loaded, 0);             // data-only flips load
}

}  // namespace
}  // namespace retrokv
