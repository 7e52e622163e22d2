// Tests for WaveQuantizedZone (low-bit per-token estimation zone of the wave index): the
// quantization error bound, estimate() against a double recomputation from the dequantized rows,
// equality with retrokv-eval's reference quantizer and its wave_q estimate, append == one build,
// save/load round trip, corrupted files and images, and bad arguments.
#include <gtest/gtest.h>

#include <algorithm>
#include <cmath>
#include <fstream>
#include <random>
#include <vector>

#include "../../tools/retrokv-eval/fidelity_estimators.h"
#include "common/corrupt_file.h"
#include "common/random_data.h"
#include "common/test_util.h"
#include "retrokv/core/attention_state.h"
#include "retrokv/core/reference_attention.h"
#include "retrokv/index/wave_index.h"
#include "retrokv/index/wave_quantized_zone.h"

namespace retrokv {
namespace {

// n rows of dim d split into clusters of random sizes 1..24; keys near their cluster's centre
// (as a wave cluster is), values N(0, 1) plus an offset so rows are not centred.
struct Clustered {
  Matrix<float> keys, values, centroids;
  std::vector<int64_t> offsets{0};
};

Clustered make_clustered(int64_t n, int d, uint64_t seed) {
  std::mt19937_64 rng(seed);
  std::normal_distribution<float> normal(0.f, 1.f);
  std::uniform_int_distribution<int> size(1, 24);
  Clustered c;
  c.keys.resize(n, d);
  c.values = random_matrix(n, d, seed + 1);
  while (c.offsets.back() < n)
    c.offsets.push_back(std::min<int64_t>(n, c.offsets.back() + size(rng)));
  const int64_t C = static_cast<int64_t>(c.offsets.size()) - 1;
  c.centroids.resize(C, d);
  const Matrix<float> centre = random_matrix(C, d, seed + 2, 3.f);
  for (int64_t i = 0; i < C; ++i) {
    std::vector<double> mean(d, 0.0);
    for (int64_t p = c.offsets[i]; p < c.offsets[i + 1]; ++p)
      for (int t = 0; t < d; ++t) {
        c.keys(p, t) = centre(i, t) + 0.7f * normal(rng);
        c.values(p, t) += 0.5f;
        mean[t] += c.keys(p, t);
      }
    const double s = double(c.offsets[i + 1] - c.offsets[i]);
    for (int t = 0; t < d; ++t) c.centroids(i, t) = static_cast<float>(mean[t] / s);
  }
  return c;
}

WaveQuantizedZone build(const Clustered& c, int kb, int vb) {
  WaveQuantParams p;
  p.key_bits = kb;
  p.value_bits = vb;
  return WaveQuantizedZone(c.keys.view(), c.values.view(), c.offsets, c.centroids.view(), p);
}

// Exact attention in double of head q (d) over the rows of `clusters`, keys and values given
// row-wise by `row(p, k, v)`; returns (o, lse natural log).
template <typename RowFn>
AttentionState reference_over(const float* q, int d, float scale, const std::vector<int64_t>& off,
                              const std::vector<int32_t>& clusters, RowFn row) {
  std::vector<double> l;
  std::vector<std::vector<double>> vs;
  std::vector<float> k(d), v(d);
  for (int32_t c : clusters)
    for (int64_t p = off[c]; p < off[c + 1]; ++p) {
      row(p, k.data(), v.data());
      double s = 0.0;
      for (int t = 0; t < d; ++t) s += double(q[t]) * scale * k[t];
      l.push_back(s);
      vs.emplace_back(v.begin(), v.end());
    }
  AttentionState out(d);
  if (l.empty()) return out;
  const double m = *std::max_element(l.begin(), l.end());
  double z = 0.0;
  std::vector<double> acc(d, 0.0);
  for (size_t j = 0; j < l.size(); ++j) {
    const double e = std::exp(l[j] - m);
    z += e;
    for (int t = 0; t < d; ++t) acc[t] += e * vs[j][t];
  }
  for (int t = 0; t < d; ++t) out.o[t] = static_cast<float>(acc[t] / z);
  out.lse = static_cast<float>(m + std::log(z));
  return out;
}

TEST(WaveQuantizedZone, DequantizeWithinHalfAStep) {
  const int d = 37;  // odd: exercises the last half-byte of 4-bit rows and a partial 2-bit byte
  const Clustered c = make_clustered(600, d, 1);
  for (int bits : {2, 4, 8}) {
    const WaveQuantizedZone z = build(c, bits, bits);
    EXPECT_EQ(z.n_rows(), 600);
    EXPECT_EQ(z.cluster_offsets(), c.offsets);
    const float levels = float((1 << bits) - 1);
    std::vector<float> k(d), v(d);
    for (int64_t i = 0; i + 1 < static_cast<int64_t>(c.offsets.size()); ++i)
      for (int64_t p = c.offsets[i]; p < c.offsets[i + 1]; ++p) {
        z.dequantize_row(p, k.data(), v.data());
        float kmn = INFINITY, kmx = -INFINITY, vmn = INFINITY, vmx = -INFINITY;
        for (int t = 0; t < d; ++t) {
          const float r = c.keys(p, t) - c.centroids(i, t);
          kmn = std::min(kmn, r), kmx = std::max(kmx, r);
          vmn = std::min(vmn, c.values(p, t)), vmx = std::max(vmx, c.values(p, t));
        }
        // Half a level of the row's own range, plus float rounding of the dequantization.
        const float kb = 0.5f * (kmx - kmn) / levels * 1.0001f + 1e-5f;
        const float vb = 0.5f * (vmx - vmn) / levels * 1.0001f + 1e-5f;
        for (int t = 0; t < d; ++t) {
          ASSERT_LE(std::abs(k[t] - c.keys(p, t)), kb) << bits << " bits, row " << p << ", " << t;
          ASSERT_LE(std::abs(v[t] - c.values(p, t)), vb) << bits << " bits, row " << p << ", " << t;
        }
      }
  }
}

TEST(WaveQuantizedZone, EstimateEqualsDoubleReferenceOfDequantizedRows) {
  const int d = 32;
  const Clustered c = make_clustered(2000, d, 2);
  const int64_t C = static_cast<int64_t>(c.offsets.size()) - 1;
  std::mt19937_64 rng(3);
  for (auto [bits, vbits] :
       {std::pair{2, 2}, std::pair{4, 4}, std::pair{8, 8}, std::pair{4, 8}, std::pair{2, 4}}) {
    const WaveQuantizedZone z = build(c, bits, vbits);
    for (int g : {1, 3, 4}) {
      for (int trial = 0; trial < 5; ++trial) {
        // A random zone of 1..C/3 distinct clusters; queries with large logits (scale 0.5).
        std::vector<int32_t> all(C);
        for (int64_t i = 0; i < C; ++i) all[i] = static_cast<int32_t>(i);
        std::shuffle(all.begin(), all.end(), rng);
        all.resize(std::uniform_int_distribution<int64_t>(1, C / 3)(rng));
        const Matrix<float> q = random_matrix(g, d, 100 + trial * 7 + g);
        Matrix<float> o(g, d);
        std::vector<float> lse(g);
        z.estimate(q.view(), 0.5f, all, o.view(), lse.data());
        for (int h = 0; h < g; ++h) {
          const AttentionState ref =
              reference_over(q.row(h), d, 0.5f, c.offsets, all,
                             [&](int64_t p, float* k, float* v) { z.dequantize_row(p, k, v); });
          EXPECT_NEAR(lse[h], ref.lse, 2e-5 * (1.0 + std::abs(ref.lse)));
          double num = 0, den = 0;
          for (int t = 0; t < d; ++t) {
            num += (o(h, t) - ref.o[t]) * double(o(h, t) - ref.o[t]);
            den += double(ref.o[t]) * ref.o[t];
          }
          EXPECT_LE(std::sqrt(num / den), 2e-5) << bits << " bits, g " << g << ", head " << h;
        }
      }
    }
  }
}

TEST(WaveQuantizedZone, EightBitEstimateIsCloseToExactAttention) {
  // The codes approximate the real tokens: 8 bits within 1%, 4 bits within 10% of exact
  // attention over the same clusters (this data: keys 0.7 around their centre, logit std ~2).
  const int d = 32;
  const Clustered c = make_clustered(3000, d, 4);
  const int64_t C = static_cast<int64_t>(c.offsets.size()) - 1;
  std::vector<int32_t> zone;
  for (int64_t i = 0; i < C; i += 2) zone.push_back(static_cast<int32_t>(i));
  const Matrix<float> q = random_matrix(3, d, 5);
  const float scale = 1.f / std::sqrt(float(d));
  for (auto [bits, bound] : {std::pair{8, 0.01}, std::pair{4, 0.1}}) {
    const WaveQuantizedZone z = build(c, bits, bits);
    Matrix<float> o(3, d);
    float lse[3];
    z.estimate(q.view(), scale, zone, o.view(), lse);
    for (int h = 0; h < 3; ++h) {
      const AttentionState ref =
          reference_over(q.row(h), d, scale, c.offsets, zone, [&](int64_t p, float* k, float* v) {
            std::copy(c.keys.row(p), c.keys.row(p) + d, k);
            std::copy(c.values.row(p), c.values.row(p) + d, v);
          });
      double num = 0, den = 0;
      for (int t = 0; t < d; ++t) {
        num += (o(h, t) - ref.o[t]) * double(o(h, t) - ref.o[t]);
        den += double(ref.o[t]) * ref.o[t];
      }
      EXPECT_LE(std::sqrt(num / den), bound) << bits << " bits, head " << h;
    }
  }
}

TEST(WaveQuantizedZone, EmptyZoneIsEmptyState) {
  const Clustered c = make_clustered(100, 16, 6);
  const WaveQuantizedZone z = build(c, 4, 4);
  const Matrix<float> q = random_matrix(2, 16, 7);
  Matrix<float> o(2, 16);
  for (int i = 0; i < 32; ++i) o.data()[i] = 5.f;
  float lse[2] = {1.f, 1.f};
  z.estimate(q.view(), 0.25f, {}, o.view(), lse);
  for (int i = 0; i < 32; ++i) EXPECT_EQ(o.data()[i], 0.f);
  EXPECT_EQ(lse[0], -INFINITY);
  EXPECT_EQ(lse[1], -INFINITY);
}

// The library zone reproduces the harness's reference quantizer (tools/retrokv-eval) row for
// row, and the harness's wave_q estimate (exact steady + retrieval from WaveIndex::attend merged
// with WaveQuantizedZone) equals decomposed_attend's kQuantized double recomputation.
TEST(WaveQuantizedZone, MatchesHarnessReferenceOnAWaveIndex) {
  const int d = 32, g = 3;
  auto s = make_ood_synthetic(5000, d, 0, 4 * g, 8);
  WaveParams wp;
  wp.segment_size = 2048;
  WaveIndex w(s.keys.view(), s.values.view(), wp);
  WaveQuantizedZone z(w.reordered_keys(), w.reordered_values(), w.cluster_offsets(), w.centroids());
  eval::QuantizedTokens ref;
  eval::QuantSpec spec;  // k4v4, per-row scales: the library's default
  ref.compute(w, spec);
  std::vector<float> k(d), v(d);
  for (int64_t p = 0; p < z.n_rows(); ++p) {
    z.dequantize_row(p, k.data(), v.data());
    for (int t = 0; t < d; ++t) {
      ASSERT_NEAR(k[t], ref.k[p * d + t], 1e-6f * (1.f + std::abs(k[t]))) << p << ", " << t;
      ASSERT_NEAR(v[t], ref.v[p * d + t], 1e-6f * (1.f + std::abs(v[t]))) << p << ", " << t;
    }
  }
  eval::ClusterMoments unused;
  const float scale = 1.f / std::sqrt(float(d));
  for (int b = 0; b < 4; ++b) {
    const ConstMatrixView<float> q = s.test_queries.view().slice_rows(b * g, g);
    const WaveSelection sel = w.select(q, scale);
    WaveBudget nb = w.params().budget;
    nb.estimation_frac = 0.0;
    Matrix<float> o(g, d), oz(g, d);
    float lse[g], lz[g];
    w.attend(q, scale, o.view(), lse, nullptr, &nb);
    z.estimate(q, scale, sel.estimation, oz.view(), lz);
    std::vector<double> od(d);
    for (int h = 0; h < g; ++h) {
      merge_states({o.row(h), lse[h]}, {oz.row(h), lz[h]}, o.row(h), d);
      eval::decomposed_attend(w, unused, q.row(h), scale, sel, eval::EstimateMode::kQuantized,
                              od.data(), &ref);
      for (int t = 0; t < d; ++t)
        EXPECT_NEAR(o(h, t), od[t], 3e-5 * (1.0 + std::abs(od[t]))) << b << ", " << h << ", " << t;
    }
  }
}

TEST(WaveQuantizedZone, AppendEqualsOneBuild) {
  const int d = 24;
  const Clustered c = make_clustered(1500, d, 9);
  const WaveQuantizedZone whole = build(c, 4, 8);
  const int64_t C = static_cast<int64_t>(c.offsets.size()) - 1, c0 = C / 3;
  WaveQuantParams p{4, 8};
  WaveQuantizedZone parts(d, p);
  const std::span<const int64_t> off(c.offsets);
  for (auto [a, b] : {std::pair<int64_t, int64_t>{0, c0}, std::pair<int64_t, int64_t>{c0, C}})
    parts.append(c.keys.view().slice_rows(off[a], off[b] - off[a]),
                 c.values.view().slice_rows(off[a], off[b] - off[a]), off.subspan(a, b - a + 1),
                 c.centroids.view().slice_rows(a, b - a));
  EXPECT_EQ(parts.cluster_offsets(), whole.cluster_offsets());
  EXPECT_EQ(parts.memory_bytes(), whole.memory_bytes());
  BinaryWriter w1(WaveQuantizedZone::kMagic, 1), w2(WaveQuantizedZone::kMagic, 1);
  whole.write_to(w1);
  parts.write_to(w2);
  EXPECT_EQ(w1.finish(), w2.finish());
}

TEST(WaveQuantizedZone, MemoryAndBytesRead) {
  const int d = 64;
  const Clustered c = make_clustered(800, d, 10);
  const WaveQuantizedZone z = build(c, 4, 4);
  const int64_t C = static_cast<int64_t>(c.offsets.size()) - 1;
  // Per row: 32 + 32 bytes of 4-bit codes and four floats; per cluster a centroid and an offset.
  EXPECT_EQ(z.memory_bytes(), 800 * (64 + 16) + C * d * 4 + (C + 1) * 8);
  EXPECT_EQ(z.cluster_bytes(0), z.cluster_size(0) * 80 + d * 4);
}

TEST(WaveQuantizedZone, SaveLoadRoundTripAndCorruptFilesThrow) {
  const int d = 16;
  const Clustered c = make_clustered(300, d, 11);
  const WaveQuantizedZone z = build(c, 2, 4);
  TempDir dir;
  const std::string path = (dir.path / "zone.bin").string();
  z.save(path);
  const WaveQuantizedZone r = WaveQuantizedZone::load(path);
  EXPECT_EQ(r.params().key_bits, 2);
  EXPECT_EQ(r.params().value_bits, 4);
  const Matrix<float> q = random_matrix(2, d, 12);
  std::vector<int32_t> zone{0, 3, 5, 7};
  Matrix<float> o1(2, d), o2(2, d);
  float l1[2], l2[2];
  z.estimate(q.view(), 0.3f, zone, o1.view(), l1);
  r.estimate(q.view(), 0.3f, zone, o2.view(), l2);
  for (int i = 0; i < 2 * d; ++i) EXPECT_EQ(o1.data()[i], o2.data()[i]);
  EXPECT_EQ(l1[0], l2[0]);
  EXPECT_EQ(l1[1], l2[1]);

  expect_corruptions_throw(
      path, [&] { WaveQuantizedZone::load(path); }, sanitizer_build() ? 40 : 200, 13);
}

// Payload corruption behind a valid checksum (as a buggy writer would produce): the structure
// checks reject it or the zone that loads is self-consistent (estimate over all clusters works).
TEST(WaveQuantizedZone, CorruptPayloadWithValidChecksumIsRejectedOrConsistent) {
  const int d = 8;
  const Clustered c = make_clustered(120, d, 14);
  const WaveQuantizedZone z = build(c, 4, 4);
  BinaryWriter w(WaveQuantizedZone::kMagic, 1);
  z.write_to(w);
  const std::vector<uint8_t> image = w.finish();
  const std::vector<uint8_t> payload(image.begin() + kBinaryHeaderSize,
                                     image.end() - kBinaryTrailerSize);
  std::mt19937_64 rng(15);
  const Matrix<float> q = random_matrix(1, d, 16);
  int rejected = 0;
  const int trials = sanitizer_build() ? 100 : 600;
  for (int t = 0; t < trials; ++t) {
    std::vector<uint8_t> p = payload;
    const int flips = 1 + t % 3;
    for (int f = 0; f < flips; ++f) {
      const size_t pos = std::uniform_int_distribution<size_t>(0, p.size() - 1)(rng);
      p[pos] = static_cast<uint8_t>(std::uniform_int_distribution<int>(0, 255)(rng));
    }
    BinaryWriter bw(WaveQuantizedZone::kMagic, 1);
    bw.write_bytes(p.data(), p.size());
    try {
      const WaveQuantizedZone x = WaveQuantizedZone::from_image(bw.finish());
      ASSERT_EQ(x.dim(), d);  // d is checked against nothing else here, so only the rows move
      std::vector<int32_t> all(static_cast<size_t>(x.n_clusters()));
      for (size_t i = 0; i < all.size(); ++i) all[i] = static_cast<int32_t>(i);
      Matrix<float> o(1, d);
      float lse;
      x.estimate(q.view(), 0.3f, all, o.view(), &lse);
    } catch (const Error&) {
      ++rejected;
    }
  }
  // Most of the payload is codes, where every byte is valid; the structure must never pass.
  EXPECT_GT(rejected, 0);
  // d, key_bits, value_bits and the offsets count (the first 20 payload bytes) decide every
  // size that follows: any single-bit flip there is rejected.
  for (size_t pos = 0; pos < 20; ++pos)
    for (int bit = 0; bit < 8; ++bit) {
      std::vector<uint8_t> p = payload;
      p[pos] = static_cast<uint8_t>(p[pos] ^ (1 << bit));
      BinaryWriter bw(WaveQuantizedZone::kMagic, 1);
      bw.write_bytes(p.data(), p.size());
      EXPECT_THROW(WaveQuantizedZone::from_image(bw.finish()), Error) << pos << ", bit " << bit;
    }
}

TEST(WaveQuantizedZone, BadArgumentsThrowNamingTheArgument) {
  const int d = 16;
  const Clustered c = make_clustered(200, d, 17);
  auto expect_msg = [](auto&& f, const std::string& what) {
    const std::string msg = error_of(f);
    EXPECT_NE(msg.find(what), std::string::npos)
        << "expected '" << what << "', got '" << msg << "'";
  };
  WaveQuantParams bad;
  bad.key_bits = 3;
  expect_msg([&] { WaveQuantizedZone(d, bad); }, "params.key_bits");
  bad = {4, 1};
  expect_msg([&] { WaveQuantizedZone(d, bad); }, "params.value_bits");
  expect_msg([&] { WaveQuantizedZone(0); }, "d:");
  expect_msg(
      [&] { WaveQuantizedZone().estimate(c.keys.view().slice_rows(0, 1), 1.f, {}, {}, nullptr); },
      "default-constructed");

  WaveQuantizedZone z = build(c, 4, 4);
  const int64_t bytes = z.memory_bytes(), n_c = z.n_clusters();
  const std::span<const int64_t> off(c.offsets);
  expect_msg(
      [&] { z.append(c.keys.view(), c.values.view().slice_rows(0, 10), off, c.centroids.view()); },
      "values:");
  expect_msg(
      [&] { z.append(c.keys.view(), c.values.view(), off, c.centroids.view().slice_rows(0, 2)); },
      "centroids:");
  std::vector<int64_t> dec(c.offsets);
  std::swap(dec[1], dec[2]);
  expect_msg([&] { z.append(c.keys.view(), c.values.view(), dec, c.centroids.view()); },
             "offsets:");
  expect_msg(
      [&] {
        z.append(c.keys.view().slice_rows(0, 50), c.values.view().slice_rows(0, 50), off,
                 c.centroids.view());
      },
      "offsets:");
  expect_msg(
      [&] { z.append(c.keys.view(), c.values.view(), {}, c.centroids.view().slice_rows(0, 0)); },
      "offsets:");
  Matrix<float> nan_keys = c.keys;
  nan_keys(7, 3) = std::nanf("");
  expect_msg([&] { z.append(nan_keys.view(), c.values.view(), off, c.centroids.view()); }, "keys:");
  Matrix<float> huge = c.values;
  huge(5, 0) = 3e38f;
  huge(5, 1) = -3e38f;
  expect_msg([&] { z.append(c.keys.view(), huge.view(), off, c.centroids.view()); }, "values:");
  // Rejected appends left the zone as it was.
  EXPECT_EQ(z.memory_bytes(), bytes);
  EXPECT_EQ(z.n_clusters(), n_c);

  const Matrix<float> q = random_matrix(2, d, 18);
  Matrix<float> o(2, d);
  float lse[2];
  const std::vector<int32_t> zone{0, 1};
  expect_msg([&] { z.estimate(q.view().slice_rows(0, 0), 1.f, zone, o.view(), lse); }, "q:");
  const Matrix<float> q8 = random_matrix(2, 8, 19);
  expect_msg([&] { z.estimate(q8.view(), 1.f, zone, o.view(), lse); }, "q:");
  Matrix<float> qn = q;
  qn(1, 2) = std::nanf("");
  expect_msg([&] { z.estimate(qn.view(), 1.f, zone, o.view(), lse); }, "q:");
  Matrix<float> o3(3, d);
  expect_msg([&] { z.estimate(q.view(), 1.f, zone, o3.view(), lse); }, "o:");
  expect_msg([&] { z.estimate(q.view(), 1.f, zone, o.view(), nullptr); }, "lse:");
  expect_msg([&] { z.estimate(q.view(), std::nanf(""), zone, o.view(), lse); }, "scale:");
  const std::vector<int32_t> out_of_range{0, static_cast<int32_t>(n_c)};
  expect_msg([&] { z.estimate(q.view(), 1.f, out_of_range, o.view(), lse); }, "clusters:");
  const std::vector<int32_t> negative{-1};
  expect_msg([&] { z.estimate(q.view(), 1.f, negative, o.view(), lse); }, "clusters:");
  expect_msg([&] { z.cluster_bytes(static_cast<int32_t>(n_c)); }, "c:");
  std::vector<float> k(d), v(d);
  expect_msg([&] { z.dequantize_row(z.n_rows(), k.data(), v.data()); }, "p:");
  TempDir dir;
  expect_msg([&] { WaveQuantizedZone::load((dir.path / "missing").string()); }, "missing");
}

}  // namespace
}  // namespace retrokv
