// Tests for IvfIndex: probing every list is exact; recall grows with nprobe and keys scanned is
// the size of the probed lists; determinism, save/load round trip, fuzzed files, bad input.
#include <gtest/gtest.h>

#include <random>
#include <set>
#include <string>
#include <vector>

#include "common/random_data.h"
#include "common/recall.h"
#include "common/test_util.h"
#include "retrokv/index/ivf.h"
#include "retrokv/index/knn.h"

namespace retrokv {
namespace {

TEST(Ivf, AllListsIsExactAndListsPartitionKeys) {
  const auto s = make_ood_synthetic(3000, 32, 0, 50, 1);
  IvfParams p;
  p.nlist = 40;
  const IvfIndex idx = IvfIndex::build(s.keys.view(), p);
  EXPECT_EQ(idx.nlist(), 40);
  int64_t total = 0;
  for (int64_t sz : idx.list_sizes()) total += sz;
  EXPECT_EQ(total, 3000);
  const auto [recall, scanned] =
      recall_at(idx, s.keys.view(), s.test_queries.view(), ivf_params(50, 40));
  EXPECT_EQ(recall, 1.0);
  EXPECT_EQ(scanned, 3000.0);
}

TEST(Ivf, RecallGrowsWithNprobeAndScannedIsListSizes) {
  const auto s = make_ood_synthetic(4000, 32, 0, 100, 2);
  IvfParams p;  // nlist = sqrt(n) = 63
  const IvfIndex idx = IvfIndex::build(s.keys.view(), p);
  EXPECT_EQ(idx.nlist(), 63);
  double prev = 0;
  for (int nprobe : {1, 4, 16, 63}) {
    const auto [recall, scanned] =
        recall_at(idx, s.keys.view(), s.test_queries.view(), ivf_params(100, nprobe));
    EXPECT_GE(recall, prev);
    prev = recall;
  }
  EXPECT_EQ(prev, 1.0);
  // keys_scanned of one search is exactly the sizes of the lists it probed (nprobe = 1: one list).
  SearchParams sp;
  sp.nprobe = 1;
  sp.k = 5;
  const SearchResult r = idx.search(s.test_queries.view().slice_rows(0, 1), sp);
  const auto sizes = idx.list_sizes();
  EXPECT_NE(std::find(sizes.begin(), sizes.end(), r.keys_scanned), sizes.end());
}

TEST(Ivf, DeterministicSaveLoadRoundTrip) {
  const auto s = make_ood_synthetic(2000, 16, 0, 20, 3);
  IvfParams p;
  p.nlist = 30;
  p.train_per_list = 20;
  p.seed = 9;
  const IvfIndex a = IvfIndex::build(s.keys.view(), p);
  const IvfIndex b = IvfIndex::build(s.keys.view(), p);
  EXPECT_EQ(a.to_bytes(), b.to_bytes());
  const std::string path = ::testing::TempDir() + "/ivf_roundtrip.bin";
  a.save(path);
  const IvfIndex c = IvfIndex::load(path);
  std::remove(path.c_str());
  EXPECT_EQ(c.to_bytes(), a.to_bytes());
  for (int64_t i = 0; i < 20; ++i) {
    SearchParams sp;
    sp.k = 10;
    sp.nprobe = 3;
    const auto ra = a.search(s.test_queries.view().slice_rows(i, 1), sp);
    const auto rc = c.search(s.test_queries.view().slice_rows(i, 1), sp);
    EXPECT_EQ(ra.ids, rc.ids);
    EXPECT_EQ(ra.scores, rc.scores);
    EXPECT_EQ(ra.keys_scanned, rc.keys_scanned);
  }
}

TEST(Ivf, FuzzedFilesAlwaysThrow) {
  const auto s = make_ood_synthetic(200, 8, 0, 1, 4);
  IvfParams p;
  p.nlist = 10;
  const std::vector<uint8_t> good = IvfIndex::build(s.keys.view(), p).to_bytes();
  EXPECT_NO_THROW(IvfIndex::from_bytes(good));
  std::mt19937_64 rng(6);
  const int trials = sanitizer_build() ? 200 : 1000;
  for (int t = 0; t < trials; ++t) {
    std::vector<uint8_t> bad = good;
    if (t % 2 == 0) {
      bad.resize(std::uniform_int_distribution<size_t>(0, good.size() - 1)(rng));
    } else {
      bad[std::uniform_int_distribution<size_t>(0, good.size() - 1)(rng)] ^=
          static_cast<uint8_t>(1u << (rng() % 8));
    }
    EXPECT_THROW(IvfIndex::from_bytes(bad), Error) << "trial " << t;
  }
}

TEST(Ivf, BadInputThrowsNamingTheArgument) {
  const auto s = make_ood_synthetic(100, 8, 0, 2, 5);
  auto expect_named = [](auto&& f, const std::string& what) {
    try {
      f();
      ADD_FAILURE() << "no throw, expected " << what;
    } catch (const Error& e) {
      EXPECT_NE(std::string(e.what()).find(what), std::string::npos) << e.what();
    }
  };
  IvfParams p;
  p.nlist = 101;
  expect_named([&] { IvfIndex::build(s.keys.view(), p); }, "params.nlist");
  p = IvfParams{};
  p.nprobe = 0;
  expect_named([&] { IvfIndex::build(s.keys.view(), p); }, "params.nprobe");
  const IvfIndex idx = IvfIndex::build(s.keys.view(), IvfParams{});
  Matrix<float> wrong = random_matrix(1, 5, 1);
  expect_named([&] { idx.search(wrong.view(), {}); }, "queries");
  SearchParams sp;
  sp.k = 0;
  expect_named([&] { idx.search(s.test_queries.view(), sp); }, "params.k");
}

}  // namespace
}  // namespace retrokv
