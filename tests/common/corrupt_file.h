// Fuzzing of a saved file: truncations and single-bit flips must all make its loader throw
// retrokv::Error (never crash, never load a silently wrong object). Shared by the tests of every
// format that is checksummed and versioned.
#pragma once

#include <gtest/gtest.h>

#include <cstdint>
#include <fstream>
#include <functional>
#include <iterator>
#include <random>
#include <string>
#include <vector>

#include "retrokv/core/error.h"

namespace retrokv {

/// For `trials` rounds, rewrites `path` truncated at a random length and then with one random
/// bit flipped, and expects `load()` (which reads `path`) to throw retrokv::Error each time.
/// Positions are drawn from [tail_from * size, size) on even rounds and from the whole file on
/// odd ones, so a format's last section (tail_from > 0) gets its share. Leaves `path` holding its
/// original bytes.
inline void expect_corruptions_throw(const std::string& path, const std::function<void()>& load,
                                     int trials, uint64_t seed, double tail_from = 0.0) {
  std::vector<char> good;
  {
    std::ifstream f(path, std::ios::binary);
    good.assign(std::istreambuf_iterator<char>(f), {});
  }
  ASSERT_FALSE(good.empty()) << path;
  auto write = [&](const std::vector<char>& b) {
    std::ofstream f(path, std::ios::binary | std::ios::trunc);
    f.write(b.data(), static_cast<std::streamsize>(b.size()));
  };
  std::mt19937_64 rng(seed);
  const size_t tail = static_cast<size_t>(tail_from * static_cast<double>(good.size()));
  for (int t = 0; t < trials; ++t) {
    const size_t lo = t % 2 ? 0 : std::min(tail, good.size() - 1);
    std::vector<char> b = good;
    b.resize(std::uniform_int_distribution<size_t>(lo, good.size() - 1)(rng));
    write(b);
    EXPECT_THROW(load(), Error) << path << " truncated to " << b.size();
    b = good;
    const size_t pos = std::uniform_int_distribution<size_t>(lo, good.size() - 1)(rng);
    b[pos] = static_cast<char>(b[pos] ^ (1 << (t % 8)));
    write(b);
    EXPECT_THROW(load(), Error) << path << " bit flip at " << pos;
  }
  write(good);
}

}  // namespace retrokv
