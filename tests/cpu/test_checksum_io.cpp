// Checksummed binary files: round trips, and every truncation and every single-bit flip of a
// saved file throws retrokv::Error (never crashes, never loads garbage).
#include <gtest/gtest.h>
#include <unistd.h>

#include <cstdint>
#include <filesystem>
#include <functional>
#include <random>
#include <set>
#include <string>
#include <vector>

#include "common/test_util.h"
#include "retrokv/core/checksum.h"
#include "retrokv/core/error.h"

namespace retrokv {
namespace {

namespace fs = std::filesystem;

// A small file with one field of each kind.
BinaryWriter sample_writer() {
  BinaryWriter w("RKVTEST1", 2);
  w.write<int32_t>(-7);
  w.write<double>(3.25);
  w.write<bool>(true);
  w.write_vector(std::vector<float>{1.f, 2.5f, -3.f});
  w.write_string("roar");
  const int64_t arr[3] = {10, 20, 30};
  w.write_array(arr, 3);
  w.write_vector(std::vector<int32_t>{});
  return w;
}

void read_sample(BinaryReader& r) {
  EXPECT_EQ(r.version(), 2u);
  EXPECT_EQ(r.read<int32_t>(), -7);
  EXPECT_EQ(r.read<double>(), 3.25);
  EXPECT_EQ(r.read<bool>(), true);
  EXPECT_EQ(r.read_vector<float>(), (std::vector<float>{1.f, 2.5f, -3.f}));
  EXPECT_EQ(r.read_string(), "roar");
  int64_t arr[3];
  r.read_array(arr, 3);
  EXPECT_EQ(arr[2], 30);
  EXPECT_TRUE(r.read_vector<int32_t>().empty());
  r.expect_end();
}

TEST(Checksum, EverySingleBitFlipChangesIt) {
  std::mt19937_64 rng(1);
  for (size_t size : {1u, 7u, 8u, 31u, 32u, 33u, 100u, 257u}) {
    std::vector<uint8_t> buf(size);
    for (auto& b : buf) b = static_cast<uint8_t>(rng());
    const uint64_t base = checksum64(buf.data(), size);
    EXPECT_EQ(checksum64(buf.data(), size), base);  // deterministic
    for (size_t i = 0; i < size * 8; ++i) {
      buf[i / 8] ^= static_cast<uint8_t>(1u << (i % 8));
      EXPECT_NE(checksum64(buf.data(), size), base) << "size " << size << " bit " << i;
      buf[i / 8] ^= static_cast<uint8_t>(1u << (i % 8));
    }
  }
}

TEST(Checksum, LengthSeedAndZeroPaddingMatter) {
  std::vector<uint8_t> zeros(128, 0);
  std::set<uint64_t> seen;
  for (size_t n = 0; n <= zeros.size(); ++n) seen.insert(checksum64(zeros.data(), n));
  EXPECT_EQ(seen.size(), zeros.size() + 1);  // all-zero prefixes of different lengths differ
  EXPECT_NE(checksum64(zeros.data(), 16, 1), checksum64(zeros.data(), 16, 2));
  EXPECT_EQ(checksum64(nullptr, 0), checksum64(zeros.data(), 0));
}

TEST(BinaryIO, RoundTripInMemoryAndOnDisk) {
  BinaryWriter w = sample_writer();
  const std::vector<uint8_t> img = w.finish();
  BinaryReader r(img, "RKVTEST1", 1, 2);
  read_sample(r);

  TempDir dir;
  const std::string path = (dir.path / "sample.bin").string();
  sample_writer().save(path);
  BinaryReader from_disk = BinaryReader::open(path, "RKVTEST1", 2, 2);
  read_sample(from_disk);
  // The atomic write leaves exactly the target file behind, no temporaries.
  int files = 0;
  for (const auto& e : fs::directory_iterator(dir.path)) {
    ++files;
    EXPECT_EQ(e.path().filename(), "sample.bin");
  }
  EXPECT_EQ(files, 1);
}

TEST(BinaryIO, EveryTruncationThrows) {
  const std::vector<uint8_t> img = sample_writer().finish();
  for (size_t len = 0; len < img.size(); ++len) {
    std::vector<uint8_t> cut(img.begin(), img.begin() + len);
    const std::string msg = error_of([&] { BinaryReader r(cut, "RKVTEST1", 1, 2); });
    EXPECT_FALSE(msg.empty()) << "length " << len << " of " << img.size() << " accepted";
    if (len >= 8) {
      EXPECT_NE(msg.find("truncated"), std::string::npos) << msg;
    }
  }
}

TEST(BinaryIO, EveryBitFlipThrows) {
  const std::vector<uint8_t> img = sample_writer().finish();
  for (size_t bit = 0; bit < img.size() * 8; ++bit) {
    std::vector<uint8_t> bad = img;
    bad[bit / 8] ^= static_cast<uint8_t>(1u << (bit % 8));
    const std::string msg = error_of([&] { BinaryReader r(bad, "RKVTEST1", 1, 2); });
    EXPECT_FALSE(msg.empty()) << "bit " << bit << " flip accepted";
  }
}

TEST(BinaryIO, ClearErrorsForWrongFormatVersionAndCorruptFields) {
  const std::vector<uint8_t> img = sample_writer().finish();
  EXPECT_NE(error_of([&] { BinaryReader r(img, "RKVOTHER", 1, 2); }).find("bad magic"),
            std::string::npos);
  EXPECT_NE(error_of([&] { BinaryReader r(img, "RKVTEST1", 3, 4); }).find("unsupported version"),
            std::string::npos);
  std::vector<uint8_t> longer = img;
  longer.push_back(0);
  EXPECT_NE(error_of([&] { BinaryReader r(longer, "RKVTEST1", 1, 2); }).find("trailing"),
            std::string::npos);

  // Well-checksummed files whose fields lie: a huge vector count, a bool that is not 0/1,
  // reading past the end, leftover payload.
  BinaryWriter w("RKVTEST1", 1);
  w.write<uint64_t>(uint64_t{1} << 60);
  w.write<uint8_t>(2);
  BinaryReader r(w.finish(), "RKVTEST1", 1, 1, "lying.bin");
  const std::string huge = error_of([&] { r.read_vector<float>(); });
  EXPECT_NE(huge.find("lying.bin"), std::string::npos) << huge;
  EXPECT_NE(huge.find("truncated"), std::string::npos) << huge;
  EXPECT_NE(error_of([&] { r.read<bool>(); }).find("corrupt bool"), std::string::npos);
  EXPECT_NE(error_of([&] { r.read<uint64_t>(); }).find("truncated"), std::string::npos);

  BinaryWriter w2("RKVTEST1", 1);
  w2.write<uint32_t>(5);
  BinaryReader r2(w2.finish(), "RKVTEST1", 1, 1);
  EXPECT_NE(error_of([&] { r2.expect_end(); }).find("unread"), std::string::npos);
  EXPECT_NE(error_of([&] { r2.read_vector<float>(); }).find("truncated"), std::string::npos);
  EXPECT_NE(error_of([&] { r2.check(false, "node count ", 3); }).find("corrupt: node count 3"),
            std::string::npos);

  EXPECT_NE(error_of([] { BinaryWriter bad("SHORT", 1); }).find("magic"), std::string::npos);
  EXPECT_NE(error_of([] {
              BinaryReader::open("/nonexistent/retrokv.bin", "RKVTEST1", 1, 1);
            }).find("/nonexistent/retrokv.bin"),
            std::string::npos);
  const uint8_t byte = 1;
  EXPECT_NE(error_of([&] {
              write_file_atomic("/nonexistent/dir/out.bin", &byte, 1);
            }).find("/nonexistent/dir/out.bin"),
            std::string::npos);
}

}  // namespace
}  // namespace retrokv
