// Bad caller input to the core throws retrokv::Error whose message names the argument and the
// expected vs actual value (DESIGN.md section 1, "Errors"); nothing else is thrown.
#include <gtest/gtest.h>

#include <cmath>
#include <cstdlib>
#include <functional>
#include <string>
#include <vector>

#include "common/random_data.h"
#include "retrokv/core/checksum.h"
#include "retrokv/core/error.h"
#include "retrokv/core/npy.h"
#include "retrokv/core/parallel.h"
#include "retrokv/core/reference_attention.h"
#include "retrokv/core/topk.h"
#include "retrokv/core/view.h"

// ASan aborts on a huge allocation request instead of returning null, so the out-of-memory
// check runs only without it.
#if defined(__SANITIZE_ADDRESS__)
#define RETROKV_TEST_ASAN 1
#elif defined(__has_feature)
#if __has_feature(address_sanitizer)
#define RETROKV_TEST_ASAN 1
#endif
#endif

namespace retrokv {
namespace {

// Runs f, expects a retrokv::Error whose message contains every needle.
void expect_error(const std::function<void()>& f, const std::vector<std::string>& needles) {
  try {
    f();
  } catch (const Error& e) {
    const std::string msg = e.what();
    EXPECT_EQ(msg.rfind("retrokv: ", 0), 0u) << msg;
    for (const auto& n : needles)
      EXPECT_NE(msg.find(n), std::string::npos) << "'" << n << "' not in: " << msg;
    return;
  } catch (const std::exception& e) {
    ADD_FAILURE() << "expected retrokv::Error, got another exception: " << e.what();
    return;
  }
  ADD_FAILURE() << "expected retrokv::Error, nothing thrown (wanted '" << needles.front() << "')";
}

TEST(CoreErrors, ErrorIsARuntimeErrorWithLocation) {
  try {
    RETROKV_CHECK(1 + 1 == 3, "k: expected ", 3, ", got ", 2);
    FAIL();
  } catch (const std::runtime_error& e) {
    const std::string msg = e.what();
    EXPECT_NE(msg.find("k: expected 3, got 2"), std::string::npos) << msg;
    EXPECT_NE(msg.find("test_errors_core.cpp"), std::string::npos) << msg;
  }
  expect_error([] { RETROKV_CHECK_EQ("d", 64, 128); }, {"d: expected 64, got 128"});
}

TEST(CoreErrors, Views) {
  float buf[16] = {};
  expect_error([&] { MatrixView<float>(buf, -1, 4); }, {"MatrixView", "negative shape", "-1"});
  expect_error([&] { MatrixView<float>(buf, 2, -4); }, {"MatrixView", "negative shape", "-4"});
  expect_error([&] { MatrixView<float>(buf, 2, 4, 3); }, {"ld", "cols (4)", "got 3"});
  expect_error([&] { MatrixView<float>(nullptr, 2, 4); }, {"MatrixView", "null data"});
  const MatrixView<float> v(buf, 4, 4);
  expect_error([&] { v.slice_rows(2, 3); }, {"slice_rows", "4 rows"});
  expect_error([&] { v.slice_rows(-1, 1); }, {"slice_rows"});
  expect_error([] { Matrix<float>(3, -2); }, {"Matrix", "negative shape", "-2"});
  // Sizes whose byte count wraps must be refused before any allocation (safe under ASan too).
  expect_error([] { Matrix<float>(int64_t{1} << 62, int64_t{1} << 62); }, {"Matrix", "overflows"});
  expect_error([] { AlignedBuffer<float>(SIZE_MAX / 2); }, {"out of host memory", "elements"});
#ifndef RETROKV_TEST_ASAN
  if (std::getenv("RETROKV_SANITIZER_BUILD") == nullptr) {
    expect_error([] { Matrix<float>(int64_t{1} << 30, int64_t{1} << 30); }, {"out of host memory"});
  }
#endif
}

TEST(CoreErrors, TopK) {
  const std::vector<float> s = {1.f, 2.f, 3.f};
  expect_error([&] { top_k(s.data(), 3, 4); }, {"k:", "(3)", "got 4"});
  expect_error([&] { top_k(s.data(), 3, -1); }, {"k:", "got -1"});
  expect_error([&] { top_k(s.data(), -3, 0); }, {"n:", "got -3"});
  expect_error([&] { top_k(nullptr, 3, 1); }, {"scores:", "null"});
  const std::vector<float> nan = {1.f, 2.f, NAN};
  expect_error([&] { top_k(nan.data(), 3, 1); }, {"scores:", "NaN", "index 2"});
  expect_error([&] { top_k(s.data(), 3, 1, 2147483647); }, {"id_offset"});
  expect_error([] { TopKCollector c(-2); }, {"k:", "got -2"});
  expect_error([] { TopKCollector(1).push(NAN, 7); }, {"score:", "NaN", "id 7"});
  expect_error([] { merge_top_k({{{NAN, 1}}}, 1); }, {"lists:", "NaN"});
  expect_error([] { merge_top_k({}, -1); }, {"k:", "got -1"});
}

TEST(CoreErrors, ReferenceAttention) {
  const Matrix<float> K = random_matrix(4, 3, 1), V = random_matrix(4, 3, 2), V2(4, 2);
  const float q[3] = {1.f, INFINITY, 0.f};
  const float ok[3] = {1.f, 0.f, 0.f};
  expect_error([&] { reference_attention(q, K, V, 1.f); }, {"q:", "finite", "index 1"});
  expect_error([&] { reference_attention(ok, K, V2, 1.f); }, {"V:", "3 cols", "got 2"});
  const int32_t ids[2] = {1, -1};
  expect_error([&] { reference_attention(ok, K, V, 1.f, ids, 2); }, {"ids:", "got -1", "index 1"});
  expect_error([&] { reference_attention(ok, K, V, 1.f, ids, -2); }, {"n_ids:", "got -2"});
  expect_error([&] { reference_attention(ok, K, V, INFINITY); }, {"scale:", "inf"});
  expect_error([&] { reference_attention(nullptr, K, V, 1.f); }, {"q:", "null"});
  expect_error([&] { reference_scores<float>(nullptr, K.view()); }, {"q:", "null"});
}

TEST(CoreErrors, Npy) {
  const std::vector<uint8_t> junk = {'n', 'o', 't', ' ', 'n', 'p', 'y', '!', 0, 0, 0, 0};
  expect_error([&] { parse_npy(junk.data(), junk.size(), "junk.npy"); }, {"junk.npy", "bad magic"});
  expect_error([] { parse_npy(nullptr, 4); }, {"data:", "null"});
  const float x = 1.f;
  const auto img = encode_npy(&x, {1});
  const NpyArray a = parse_npy(img.data(), img.size());
  expect_error([&] { a.data<int64_t>(); }, {"dtype:", "'<i8'", "'<f4'"});
  expect_error([&] { encode_npy(&x, {2, -1}); }, {"shape:", "got -1"});
  expect_error([&] { encode_npy<float>(nullptr, {2}); }, {"data:", "null"});
  expect_error([] { load_npy("/nonexistent/q.npy"); }, {"path:", "/nonexistent/q.npy"});
  expect_error([&] { npy_to_matrix<float>(a, "q.npy"); }, {"q.npy", "2-D", "got 1"});
}

TEST(CoreErrors, BinaryFilesAndParallel) {
  expect_error([] { BinaryWriter w("TOOLONGMAGIC", 1); }, {"magic:", "8 characters"});
  expect_error([] { BinaryReader r(std::vector<uint8_t>{}, "RKVTEST1", 1, 1, "empty.bin"); },
               {"empty.bin", "bad magic"});
  BinaryWriter w("RKVTEST1", 1);
  w.finish();
  expect_error([&] { w.write<int>(1); }, {"BinaryWriter", "after finish"});
  expect_error([] { parallel_for(10, 0, [](int64_t, int64_t) {}); }, {"grain:", "got 0"});
  expect_error([] { parallel_for(-1, 4, [](int64_t, int64_t) {}); }, {"n:", "got -1"});
  // An Error thrown inside a parallel chunk reaches the caller intact.
  expect_error(
      [] {
        parallel_for(1000, 7, [](int64_t b, int64_t e) {
          for (int64_t i = b; i < e; ++i) RETROKV_CHECK(i != 500, "item: rejected ", i);
        });
      },
      {"item: rejected 500"});
}

}  // namespace
}  // namespace retrokv
