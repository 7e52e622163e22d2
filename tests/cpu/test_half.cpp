// half and bfloat16 conversions against an independent reference: every bit pattern round
// trips, and float -> half/bf16 equals a nearest-value search in double with ties to even.
#include <gtest/gtest.h>

#include <algorithm>
#include <cmath>
#include <cstdint>
#include <cstring>
#include <limits>
#include <random>
#include <utility>
#include <vector>

#include "retrokv/core/half.h"

namespace retrokv {
namespace {

float from_bits(uint32_t u) {
  float f;
  std::memcpy(&f, &u, 4);
  return f;
}
uint32_t to_bits(float f) {
  uint32_t u;
  std::memcpy(&u, &f, 4);
  return u;
}

bool half_is_nan(uint16_t h) { return (h & 0x7c00u) == 0x7c00u && (h & 0x3ffu) != 0; }
bool bf16_is_nan(uint16_t b) { return (b & 0x7f80u) == 0x7f80u && (b & 0x7fu) != 0; }

// Value of a half bit pattern from the IEEE formula, in double (not via the library).
double half_value(uint16_t h) {
  const int sign = h >> 15, exp = (h >> 10) & 0x1f, mant = h & 0x3ff;
  double v;
  if (exp == 0x1f) {
    v = mant ? NAN : INFINITY;
  } else if (exp == 0) {
    v = std::ldexp(static_cast<double>(mant), -24);
  } else {
    v = std::ldexp(1.0 + mant / 1024.0, exp - 15);
  }
  return sign ? -v : v;
}

double bf16_value(uint16_t b) {
  const int sign = b >> 15, exp = (b >> 7) & 0xff, mant = b & 0x7f;
  double v;
  if (exp == 0xff) {
    v = mant ? NAN : INFINITY;
  } else if (exp == 0) {
    v = std::ldexp(static_cast<double>(mant), -133);
  } else {
    v = std::ldexp(1.0 + mant / 128.0, exp - 127);
  }
  return sign ? -v : v;
}

// Round-to-nearest-even by search: `table` holds the non-negative finite values in increasing
// order with their bit patterns, plus one "virtual" next power of two mapped to Inf (IEEE
// overflow: a value at or past the midpoint to it rounds to Inf, the tie going to the even
// pattern, which the Inf pattern is).
struct NearestTable {
  std::vector<double> values;
  std::vector<uint16_t> bits;

  uint16_t round(float f) const {
    const uint16_t sign = (to_bits(f) >> 31) ? 0x8000u : 0u;
    const double a = std::fabs(static_cast<double>(f));
    if (a >= values.back()) return sign | bits.back();
    const size_t hi = std::upper_bound(values.begin(), values.end(), a) - values.begin();
    const size_t lo = hi - 1;  // values[lo] <= a < values[hi]
    const double dlo = a - values[lo], dhi = values[hi] - a;
    if (dlo < dhi) return sign | bits[lo];
    if (dhi < dlo) return sign | bits[hi];
    return sign | ((bits[lo] & 1u) == 0 ? bits[lo] : bits[hi]);
  }
};

NearestTable half_table() {
  NearestTable t;
  for (uint32_t h = 0; h < 0x7c00u; ++h) {
    t.values.push_back(half_value(static_cast<uint16_t>(h)));
    t.bits.push_back(static_cast<uint16_t>(h));
  }
  t.values.push_back(65536.0);
  t.bits.push_back(0x7c00u);
  return t;
}

NearestTable bf16_table() {
  NearestTable t;
  for (uint32_t b = 0; b < 0x7f80u; ++b) {
    t.values.push_back(bf16_value(static_cast<uint16_t>(b)));
    t.bits.push_back(static_cast<uint16_t>(b));
  }
  t.values.push_back(std::ldexp(1.0, 128));
  t.bits.push_back(0x7f80u);
  return t;
}

// Floats that matter for rounding: every representable value of the narrow type, the exact
// midpoints between neighbours (ties) and the floats one ulp either side of them.
std::vector<float> edge_floats(const NearestTable& t) {
  std::vector<float> out;
  for (size_t i = 0; i + 1 < t.values.size(); ++i) {
    const float v = static_cast<float>(t.values[i]);
    const float mid = static_cast<float>((t.values[i] + t.values[i + 1]) / 2);
    EXPECT_EQ(static_cast<double>(mid), (t.values[i] + t.values[i + 1]) / 2) << "inexact mid";
    for (float x : {v, mid, std::nextafter(mid, 0.f), std::nextafter(mid, INFINITY)}) {
      out.push_back(x);
      out.push_back(-x);
    }
  }
  return out;
}

TEST(Half, AllBitPatternsRoundTrip) {
  int nan_count = 0;
  for (uint32_t i = 0; i < 65536; ++i) {
    const uint16_t h = static_cast<uint16_t>(i);
    const float f = detail::half_bits_to_float(h);
    const double expect = half_value(h);
    const uint16_t back = detail::float_to_half_bits(f);
    if (half_is_nan(h)) {
      ++nan_count;
      EXPECT_TRUE(std::isnan(f)) << std::hex << i;
      EXPECT_TRUE(half_is_nan(back)) << std::hex << i << " -> " << back;
      EXPECT_EQ(back & 0x8000u, h & 0x8000u) << "NaN sign " << std::hex << i;
    } else {
      EXPECT_EQ(static_cast<double>(f), expect) << std::hex << i;
      EXPECT_EQ(back, h) << std::hex << i;
      // Signed zeros and infinities keep their sign.
      EXPECT_EQ(std::signbit(f), (h & 0x8000u) != 0) << std::hex << i;
    }
  }
  EXPECT_EQ(nan_count, 2 * 1023);
}

TEST(Half, FloatToHalfMatchesNearestEvenSearch) {
  const NearestTable t = half_table();
  std::vector<float> xs = edge_floats(t);
  // Named edge cases: overflow threshold, 2^-25 (tie to zero), smallest denormal and normal.
  for (float x :
       {65504.f, 65519.99f, 65520.f, 65536.f, 1e10f, std::ldexp(1.f, -25),
        std::nextafter(std::ldexp(1.f, -25), 1.f), std::ldexp(1.f, -24), std::ldexp(1.5f, -24),
        std::ldexp(1.f, -14), std::ldexp(1.f, -26), std::numeric_limits<float>::denorm_min(),
        std::numeric_limits<float>::max(), 0.f, INFINITY}) {
    xs.push_back(x);
    xs.push_back(-x);
  }
  std::mt19937_64 rng(1234);
  for (int i = 0; i < 500000; ++i) xs.push_back(from_bits(static_cast<uint32_t>(rng())));
  // Exponents near the half range, where the interesting rounding happens.
  for (int i = 0; i < 500000; ++i) {
    const uint32_t exp = 98 + static_cast<uint32_t>(rng() % 48);  // 2^-29 .. 2^18
    xs.push_back(from_bits((static_cast<uint32_t>(rng()) & 0x807fffffu) | (exp << 23)));
  }
  int64_t mismatches = 0;
  for (float x : xs) {
    const uint16_t got = detail::float_to_half_bits(x);
    if (std::isnan(x)) {
      EXPECT_TRUE(half_is_nan(got)) << x;
      continue;
    }
    const uint16_t want = t.round(x);
    if (got != want && ++mismatches <= 10) {
      ADD_FAILURE() << "float bits 0x" << std::hex << to_bits(x) << " (" << x << "): got 0x" << got
                    << ", want 0x" << want;
    }
    EXPECT_EQ(half(x).bits, got);
  }
  EXPECT_EQ(mismatches, 0);
  EXPECT_GT(xs.size(), 1000000u);
  // The named cases, explicitly.
  EXPECT_EQ(detail::float_to_half_bits(65520.f), 0x7c00u);
  EXPECT_EQ(detail::float_to_half_bits(std::nextafter(65520.f, 0.f)), 0x7bffu);
  EXPECT_EQ(detail::float_to_half_bits(std::ldexp(1.f, -25)), 0x0000u);
  EXPECT_EQ(detail::float_to_half_bits(std::nextafter(std::ldexp(1.f, -25), 1.f)), 0x0001u);
  EXPECT_EQ(detail::float_to_half_bits(std::ldexp(1.5f, -24)), 0x0002u);  // tie -> even
  EXPECT_EQ(detail::float_to_half_bits(-0.f), 0x8000u);
}

TEST(BFloat16, AllBitPatternsRoundTrip) {
  for (uint32_t i = 0; i < 65536; ++i) {
    const uint16_t b = static_cast<uint16_t>(i);
    const float f = detail::bf16_bits_to_float(b);
    const uint16_t back = detail::float_to_bf16_bits(f);
    if (bf16_is_nan(b)) {
      EXPECT_TRUE(std::isnan(f)) << std::hex << i;
      EXPECT_TRUE(bf16_is_nan(back)) << std::hex << i;
      EXPECT_EQ(back & 0x8000u, b & 0x8000u) << std::hex << i;
    } else {
      EXPECT_EQ(static_cast<double>(f), bf16_value(b)) << std::hex << i;
      EXPECT_EQ(back, b) << std::hex << i;
    }
  }
}

TEST(BFloat16, FloatToBf16MatchesNearestEvenSearch) {
  const NearestTable t = bf16_table();
  std::vector<float> xs = edge_floats(t);
  for (float x : {std::numeric_limits<float>::max(), std::numeric_limits<float>::denorm_min(),
                  std::numeric_limits<float>::min(), 1.f, 0.f, INFINITY}) {
    xs.push_back(x);
    xs.push_back(-x);
  }
  std::mt19937_64 rng(99);
  for (int i = 0; i < 1000000; ++i) xs.push_back(from_bits(static_cast<uint32_t>(rng())));
  int64_t mismatches = 0;
  for (float x : xs) {
    const uint16_t got = detail::float_to_bf16_bits(x);
    if (std::isnan(x)) {
      EXPECT_TRUE(bf16_is_nan(got)) << std::hex << to_bits(x);
      continue;
    }
    const uint16_t want = t.round(x);
    if (got != want && ++mismatches <= 10) {
      ADD_FAILURE() << "float bits 0x" << std::hex << to_bits(x) << ": got 0x" << got << ", want 0x"
                    << want;
    }
    EXPECT_EQ(bfloat16(x).bits, got);
  }
  EXPECT_EQ(mismatches, 0);
  // Ties to even, explicitly: 1 + 2^-8 is halfway between 1 and 1 + 2^-7 -> 1 (even).
  EXPECT_EQ(detail::float_to_bf16_bits(1.f + std::ldexp(1.f, -8)), 0x3f80u);
  EXPECT_EQ(detail::float_to_bf16_bits(1.f + 3 * std::ldexp(1.f, -8)), 0x3f82u);
  EXPECT_EQ(detail::float_to_bf16_bits(std::numeric_limits<float>::max()), 0x7f80u);
}

TEST(Half, TemplatesTreatAllTypesAlike) {
  EXPECT_EQ(to_float(from_float<half>(0.333333f)), half_value(half(0.333333f).bits));
  EXPECT_EQ(to_float(from_float<bfloat16>(-2.5f)), -2.5f);
  EXPECT_EQ(to_float(from_float<float>(1.25f)), 1.25f);
  EXPECT_EQ(dtype_of<half>::value, DType::kFloat16);
  EXPECT_STREQ(dtype_name(dtype_of<bfloat16>::value), "bfloat16");
}

}  // namespace
}  // namespace retrokv
