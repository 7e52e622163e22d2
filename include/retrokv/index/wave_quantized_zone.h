// Low-bit per-token copy of a wave index's clustered KV, read by the estimation zone (a retrokv
// extension of RetroInfer's three-zone attention, arXiv 2505.02922 section 4; issue 5). A cluster
// mean cannot represent attention that peaks inside a cluster, so instead of one centroid per
// cluster the estimation zone attends every token of its clusters from 2/4/8-bit codes: keys as
// residuals from the cluster centroid, values raw, each row with its own (scale, min) (KIVI-style
// asymmetric levels). On the SmolLM2 traces this takes the default zones from 3.7% to 0.5%
// median error (docs/results.md, issue 5 session 4).
#pragma once

#include <algorithm>
#include <cmath>
#include <cstdint>
#include <cstring>
#include <span>
#include <string>
#include <vector>

#include "retrokv/core/checksum.h"
#include "retrokv/core/error.h"
#include "retrokv/core/view.h"
#include "retrokv/cpu/detail/prefetch.h"
#include "retrokv/cpu/simd.h"
#include "retrokv/index/wave_params.h"

namespace retrokv {

namespace detail {
#if RETROKV_X86_SIMD
// GCC 12's AVX-512 intrinsics trip -Wmaybe-uninitialized once inlined (as in cpu/simd_x86.h).
#if defined(__GNUC__) && !defined(__clang__)
#pragma GCC diagnostic push
#pragma GCC diagnostic ignored "-Wuninitialized"
#pragma GCC diagnostic ignored "-Wmaybe-uninitialized"
#endif
// 4-bit and 8-bit codes to floats, 16 (8) per iteration: with d = 64 the table copy below took
// ~55% of the estimate's time, one dependent load and store per byte. AVX2 only (no FMA needed);
// the caller checks cpu::simd_level() and handles the scalar tail.
__attribute__((target("avx2"))) inline int unpack4_avx2(const uint8_t* src, int d, float* out) {
  const __m128i low_nibbles = _mm_set1_epi8(15);
  int t = 0;
  for (; t + 16 <= d; t += 16) {
    const __m128i b = _mm_loadl_epi64(reinterpret_cast<const __m128i*>(src + t / 2));
    const __m128i lo = _mm_and_si128(b, low_nibbles);
    const __m128i hi = _mm_and_si128(_mm_srli_epi16(b, 4), low_nibbles);
    const __m128i codes = _mm_unpacklo_epi8(lo, hi);  // element 2i is byte i's low nibble
    _mm256_storeu_ps(out + t, _mm256_cvtepi32_ps(_mm256_cvtepu8_epi32(codes)));
    _mm256_storeu_ps(out + t + 8,
                     _mm256_cvtepi32_ps(_mm256_cvtepu8_epi32(_mm_srli_si128(codes, 8))));
  }
  return t;
}
__attribute__((target("avx2"))) inline int unpack8_avx2(const uint8_t* src, int d, float* out) {
  int t = 0;
  for (; t + 8 <= d; t += 8) {
    const __m128i b = _mm_loadl_epi64(reinterpret_cast<const __m128i*>(src + t));
    _mm256_storeu_ps(out + t, _mm256_cvtepi32_ps(_mm256_cvtepu8_epi32(b)));
  }
  return t;
}
// Fused 4-bit kernels of the estimate (AVX-512, d a multiple of 32, g <= kFusedMaxGroup): the
// codes go from memory to registers and straight into the FMAs, without a float row in memory
// (unpack-then-dot_rows/axpy_rows spent ~66 ns per zone token at d = 64, g = 3, more than exact
// attention's ~17). 16 code bytes hold 32 elements, byte i = elements 2i (low nibble) and 2i + 1
// (high nibble); instead of interleaving the nibbles, the query rows (and the value
// accumulators) are kept "split": each 32-element chunk as its 16 even then its 16 odd elements.
inline constexpr int kFusedMaxGroup = 8;
// out[h * ld + j] = a_split[h] . codes(row j) for h < g, j < n.
__attribute__((target("avx512f"))) inline void q4_dot_rows_avx512(const uint8_t* codes,
                                                                  int64_t row_bytes, int n, int d,
                                                                  const float* a_split, int g,
                                                                  float* out, int64_t ld) {
  const __m512i low_nibble = _mm512_set1_epi32(15);
  for (int j = 0; j < n; ++j) {
    const uint8_t* r = codes + j * row_bytes;
    __m512 acc[kFusedMaxGroup];
    for (int h = 0; h < g; ++h) acc[h] = _mm512_setzero_ps();
    for (int k = 0; k < d / 32; ++k) {
      const __m512i b =
          _mm512_cvtepu8_epi32(_mm_loadu_si128(reinterpret_cast<const __m128i*>(r + 16 * k)));
      const __m512 lo = _mm512_cvtepi32_ps(_mm512_and_si512(b, low_nibble));
      const __m512 hi = _mm512_cvtepi32_ps(_mm512_srli_epi32(b, 4));
      for (int h = 0; h < g; ++h) {
        const float* ah = a_split + int64_t{h} * d + 32 * k;
        acc[h] = _mm512_fmadd_ps(_mm512_loadu_ps(ah), lo, acc[h]);
        acc[h] = _mm512_fmadd_ps(_mm512_loadu_ps(ah + 16), hi, acc[h]);
      }
    }
    for (int h = 0; h < g; ++h) out[h * ld + j] = _mm512_reduce_add_ps(acc[h]);
  }
}
// acc_split[h] += sum_j w[h * ldw + j] * codes(row j) for h < g, j < n (split layout).
__attribute__((target("avx512f"))) inline void q4_axpy_rows_avx512(const float* w, int64_t ldw,
                                                                   int g, const uint8_t* codes,
                                                                   int64_t row_bytes, int n, int d,
                                                                   float* acc_split) {
  const __m512i low_nibble = _mm512_set1_epi32(15);
  for (int j = 0; j < n; ++j) {
    const uint8_t* r = codes + j * row_bytes;
    for (int k = 0; k < d / 32; ++k) {
      const __m512i b =
          _mm512_cvtepu8_epi32(_mm_loadu_si128(reinterpret_cast<const __m128i*>(r + 16 * k)));
      const __m512 lo = _mm512_cvtepi32_ps(_mm512_and_si512(b, low_nibble));
      const __m512 hi = _mm512_cvtepi32_ps(_mm512_srli_epi32(b, 4));
      for (int h = 0; h < g; ++h) {
        const __m512 wj = _mm512_set1_ps(w[h * ldw + j]);
        float* ah = acc_split + int64_t{h} * d + 32 * k;
        _mm512_storeu_ps(ah, _mm512_fmadd_ps(wj, lo, _mm512_loadu_ps(ah)));
        _mm512_storeu_ps(ah + 16, _mm512_fmadd_ps(wj, hi, _mm512_loadu_ps(ah + 16)));
      }
    }
  }
}
#if defined(__GNUC__) && !defined(__clang__)
#pragma GCC diagnostic pop
#endif
#endif
}  // namespace detail

/// Quantized, cluster-contiguous copy of a wave index's clustered keys and values (n, d) for
/// the estimation zone. Row j of cluster c is stored as b-bit codes x_t -> code_t with
/// x~_t = min + scale * code_t per row (keys: x = k - centroid_c; values: x = v), codes packed
/// little-endian within a byte, (scale, min) as float. estimate() is const and safe from many
/// threads; append and load are not (callers serialise them against readers).
class WaveQuantizedZone {
 public:
  WaveQuantizedZone() = default;

  /// An empty zone of dimension d; clusters come from append().
  explicit WaveQuantizedZone(int d, WaveQuantParams p = {}) {
    RETROKV_CHECK(d >= 1, "d: expected >= 1, got ", d);
    check_params(p);
    init(d, p);
  }

  /// Quantizes clusters: keys, values (n, d) cluster-contiguous; offsets (C + 1) increasing
  /// strictly, rows [offsets[c] - offsets[0], offsets[c + 1] - offsets[0]) of keys form cluster
  /// c, offsets[C] - offsets[0] = n; centroids (C, d) (the wave index's: mean raw key).
  WaveQuantizedZone(ConstMatrixView<float> keys, ConstMatrixView<float> values,
                    std::span<const int64_t> offsets, ConstMatrixView<float> centroids,
                    WaveQuantParams p = {}) {
    check_params(p);
    RETROKV_CHECK(keys.cols >= 1, "keys: expected >= 1 columns, got ", keys.cols);
    init(static_cast<int>(keys.cols), p);
    append(keys, values, offsets, centroids);
  }

  /// Appends clusters (a new wave segment) with the constructor's layout; their ids continue
  /// after the existing clusters. A rejected call changes nothing.
  void append(ConstMatrixView<float> keys, ConstMatrixView<float> values,
              std::span<const int64_t> offsets, ConstMatrixView<float> centroids) {
    RETROKV_CHECK(d_ >= 1, "append: the zone is default-constructed; construct it with d first");
    RETROKV_CHECK(keys.cols == d_, "keys: expected ", d_, " columns, got ", keys.cols);
    RETROKV_CHECK(values.rows == keys.rows && values.cols == d_, "values: expected shape (",
                  keys.rows, ", ", d_, ") as keys, got (", values.rows, ", ", values.cols, ")");
    RETROKV_CHECK(!offsets.empty(), "offsets: expected C + 1 >= 1 entries, got none");
    const int64_t n_new = static_cast<int64_t>(offsets.size()) - 1;
    RETROKV_CHECK(centroids.rows == n_new && centroids.cols == d_, "centroids: expected shape (",
                  n_new, ", ", d_, "), got (", centroids.rows, ", ", centroids.cols, ")");
    for (int64_t c = 0; c < n_new; ++c)
      RETROKV_CHECK(offsets[c + 1] > offsets[c], "offsets: expected strictly increasing, got ",
                    offsets[c], " then ", offsets[c + 1], " at ", c);
    RETROKV_CHECK(offsets.back() - offsets.front() == keys.rows, "offsets: expected a span of ",
                  keys.rows, " rows (keys), got ", offsets.back() - offsets.front());
    RETROKV_CHECK(n_rows() + keys.rows < (int64_t{1} << 40), "keys: too many rows");
    check_finite(keys, "keys");
    check_finite(values, "values");
    check_finite(centroids, "centroids");

    // Quantize into temporaries first so that a failure leaves the zone as it was.
    const int64_t n = keys.rows;
    std::vector<uint8_t> kc(static_cast<size_t>(n * key_row_bytes_), 0);
    std::vector<uint8_t> vc(static_cast<size_t>(n * value_row_bytes_), 0);
    std::vector<float> ks(static_cast<size_t>(2 * n)), vs(static_cast<size_t>(2 * n));
    std::vector<float> res(static_cast<size_t>(d_));
    for (int64_t c = 0; c < n_new; ++c) {
      for (int64_t p = offsets[c] - offsets[0]; p < offsets[c + 1] - offsets[0]; ++p) {
        for (int t = 0; t < d_; ++t) res[t] = keys(p, t) - centroids(c, t);
        quantize_row(res.data(), params_.key_bits, kc.data() + p * key_row_bytes_, &ks[2 * p],
                     "keys");
        quantize_row(values.row(p), params_.value_bits, vc.data() + p * value_row_bytes_,
                     &vs[2 * p], "values");
      }
    }
    const int64_t base = offsets_.back();
    offsets_.reserve(offsets_.size() + n_new);
    for (int64_t c = 1; c <= n_new; ++c) offsets_.push_back(base + offsets[c] - offsets[0]);
    for (int64_t c = 0; c < n_new; ++c)
      centroids_.insert(centroids_.end(), centroids.row(c), centroids.row(c) + d_);
    key_codes_.insert(key_codes_.end(), kc.begin(), kc.end());
    value_codes_.insert(value_codes_.end(), vc.begin(), vc.end());
    key_scales_.insert(key_scales_.end(), ks.begin(), ks.end());
    value_scales_.insert(value_scales_.end(), vs.begin(), vs.end());
  }

  int dim() const { return d_; }
  const WaveQuantParams& params() const { return params_; }
  int64_t n_clusters() const { return static_cast<int64_t>(offsets_.size()) - 1; }
  int64_t n_rows() const { return offsets_.back(); }
  const std::vector<int64_t>& cluster_offsets() const { return offsets_; }

  /// Dequantized keys and values of row p (the reordered row of the wave index): d floats each,
  /// key = centroid + (min + scale * code), value = min + scale * code.
  void dequantize_row(int64_t p, float* key, float* value) const {
    RETROKV_CHECK(p >= 0 && p < n_rows(), "p: expected a row in [0, ", n_rows(), "), got ", p);
    RETROKV_CHECK(key != nullptr && value != nullptr, "key / value: expected d floats, got null");
    const int64_t c = std::upper_bound(offsets_.begin(), offsets_.end(), p) - offsets_.begin() - 1;
    const float* cen = centroids_.data() + c * d_;
    unpack(key_codes_.data() + p * key_row_bytes_, params_.key_bits, d_, key);
    unpack(value_codes_.data() + p * value_row_bytes_, params_.value_bits, d_, value);
    for (int t = 0; t < d_; ++t) {
      key[t] = (key_scales_[2 * p + 1] + key_scales_[2 * p] * key[t]) + cen[t];
      value[t] = value_scales_[2 * p + 1] + value_scales_[2 * p] * value[t];
    }
  }

  /// Partial attention of a GQA group q (g, d) over every token of `clusters` (ids, no
  /// duplicates expected), read from the codes: o (g, d) receives sum_j exp(l_j) v~_j / Z per
  /// head with l_j = q.k~_j * scale, lse[h] = log Z (natural log). No clusters: o = 0,
  /// lse = -inf (an empty state for the LSE merge).
  void estimate(ConstMatrixView<float> q, float scale, std::span<const int32_t> clusters,
                MatrixView<float> o, float* lse) const {
    RETROKV_CHECK(d_ >= 1, "estimate: the zone is default-constructed");
    RETROKV_CHECK(q.rows >= 1 && q.cols == d_, "q: expected shape (g >= 1, ", d_, "), got (",
                  q.rows, ", ", q.cols, ")");
    RETROKV_CHECK(o.rows == q.rows && o.cols == d_, "o: expected shape (", q.rows, ", ", d_,
                  "), got (", o.rows, ", ", o.cols, ")");
    RETROKV_CHECK(lse != nullptr, "lse: expected ", q.rows, " floats, got null");
    RETROKV_CHECK(std::isfinite(scale), "scale: expected finite, got ", scale);
    RETROKV_CHECK(q.rows <= kMaxGroup, "q: expected a GQA group of at most ", kMaxGroup,
                  " heads, got ", q.rows);
    check_finite(q, "q");
    const int g = static_cast<int>(q.rows);
    int64_t n_tok = 0, max_size = 0;
    for (int32_t c : clusters) {
      RETROKV_CHECK(c >= 0 && c < n_clusters(), "clusters: expected ids in [0, ", n_clusters(),
                    "), got ", c);
      n_tok += cluster_size(c);
      max_size = std::max(max_size, cluster_size(c));
    }
    for (int h = 0; h < g; ++h) {
      std::fill(o.row(h), o.row(h) + d_, 0.f);
      lse[h] = -INFINITY;
    }
    if (n_tok == 0) return;
    RETROKV_CHECK(n_tok < (int64_t{1} << 31), "clusters: ", n_tok, " tokens, expected < 2^31");

    Scratch& ws = scratch();
    ws.a.resize(static_cast<size_t>(g) * d_);
    ws.sum_a.assign(g, 0.f);
    ws.logits.resize(static_cast<size_t>(g) * n_tok);
    ws.rows.resize(static_cast<size_t>(max_size) * d_);
    ws.w.resize(static_cast<size_t>(g) * max_size);
    ws.acc.assign(static_cast<size_t>(g) * d_, 0.f);
    for (int h = 0; h < g; ++h)
      for (int t = 0; t < d_; ++t) {
        ws.a[h * d_ + t] = q(h, t) * scale;
        ws.sum_a[h] += ws.a[h * d_ + t];
      }
    const cpu::RowKernels<float> rk = cpu::row_kernels<float>();
    const cpu::RowSource<float> none{nullptr, d_, nullptr, 0};
    const bool vector = cpu::simd_level() != cpu::SimdLevel::kScalar;
    bool fused_keys = false, fused_values = false;
#if RETROKV_X86_SIMD
    const bool fused =
        cpu::simd_level() == cpu::SimdLevel::kAvx512 && d_ % 32 == 0 && g <= detail::kFusedMaxGroup;
    fused_keys = fused && params_.key_bits == 4;
    fused_values = fused && params_.value_bits == 4;
#endif
    // Split layout of the fused kernels: chunk k of a row = its 16 even, then 16 odd elements.
    auto split_index = [](int t) { return (t & ~31) + ((t & 1) << 4) + ((t & 31) >> 1); };
    if (fused_keys) {
      ws.a_split.resize(ws.a.size());
      for (int h = 0; h < g; ++h)
        for (int t = 0; t < d_; ++t) ws.a_split[h * d_ + split_index(t)] = ws.a[h * d_ + t];
    }
    float base[kMaxGroup];

    // Pass 1: l = a.c + min * sum(a) + scale * (a . code), the codes of a cluster unpacked once
    // and scored for the whole group.
    // The zone's clusters are scattered over the codes and cold at every decode step (the
    // model's weights pass through the caches between two steps): each pass requests the codes
    // and row scales of the cluster kPrefetchAhead places ahead while it computes this one.
    auto prefetch_cluster = [&](size_t i, const std::vector<uint8_t>& codes, int64_t row_bytes,
                                const std::vector<float>& scales) {
      if (i >= clusters.size()) return;
      const int64_t b = offsets_[clusters[i]], s = cluster_size(clusters[i]);
      cpu::detail::prefetch_bytes<3>(codes.data() + b * row_bytes,
                                     static_cast<size_t>(s * row_bytes));
      cpu::detail::prefetch_bytes<3>(scales.data() + 2 * b, static_cast<size_t>(2 * s) * 4);
    };
    int64_t pos = 0;
    for (size_t i = 0; i < clusters.size(); ++i) {
      const int32_t c = clusters[i];
      prefetch_cluster(i + kPrefetchAhead, key_codes_, key_row_bytes_, key_scales_);
      const int64_t b = offsets_[c], s = cluster_size(c);
      const cpu::RowSource<float> cen{centroids_.data() + int64_t{c} * d_, d_, nullptr, 0};
      rk.dot_rows(ws.a.data(), d_, g, cen, 1, d_, base, 1, none, 0);
#if RETROKV_X86_SIMD
      if (fused_keys) {
        detail::q4_dot_rows_avx512(key_codes_.data() + b * key_row_bytes_, key_row_bytes_,
                                   static_cast<int>(s), d_, ws.a_split.data(), g,
                                   ws.logits.data() + pos, n_tok);
      }
#endif
      if (!fused_keys) {
        for (int64_t j = 0; j < s; ++j)
          unpack(key_codes_.data() + (b + j) * key_row_bytes_, params_.key_bits, d_,
                 ws.rows.data() + j * d_, vector);
        const cpu::RowSource<float> rows{ws.rows.data(), d_, nullptr, 0};
        rk.dot_rows(ws.a.data(), d_, g, rows, static_cast<int>(s), d_, ws.logits.data() + pos,
                    n_tok, none, 0);
      }
      for (int h = 0; h < g; ++h) {
        float* l = ws.logits.data() + h * n_tok + pos;
        for (int64_t j = 0; j < s; ++j)
          l[j] = base[h] + key_scales_[2 * (b + j) + 1] * ws.sum_a[h] +
                 key_scales_[2 * (b + j)] * l[j];
      }
      pos += s;
    }
    // Pass 2: exp(l - max) per head.
    const cpu::MathKernels mk = cpu::math_kernels();
    float m[kMaxGroup], z[kMaxGroup];
    for (int h = 0; h < g; ++h) {
      float* l = ws.logits.data() + h * n_tok;
      m[h] = *std::max_element(l, l + n_tok);
      z[h] = mk.exp_shift_sum(l, static_cast<int>(n_tok), m[h]);
    }
    // Pass 3: sum_j e_j (min_j + scale_j code_j) = sum_j e_j min_j + sum_j (e_j scale_j) code_j.
    pos = 0;
    float bias[kMaxGroup] = {};  // sum_j e_j min_j per head, in registers rather than ws
    for (size_t i = 0; i < clusters.size(); ++i) {
      const int32_t c = clusters[i];
      prefetch_cluster(i + kPrefetchAhead, value_codes_, value_row_bytes_, value_scales_);
      const int64_t b = offsets_[c], s = cluster_size(c);
      if (!fused_values)
        for (int64_t j = 0; j < s; ++j)
          unpack(value_codes_.data() + (b + j) * value_row_bytes_, params_.value_bits, d_,
                 ws.rows.data() + j * d_, vector);
      for (int h = 0; h < g; ++h) {
        const float* e = ws.logits.data() + h * n_tok + pos;
        float bh = 0.f;
        for (int64_t j = 0; j < s; ++j) {
          ws.w[h * max_size + j] = e[j] * value_scales_[2 * (b + j)];
          bh += e[j] * value_scales_[2 * (b + j) + 1];
        }
        bias[h] += bh;
      }
#if RETROKV_X86_SIMD
      if (fused_values)
        detail::q4_axpy_rows_avx512(ws.w.data(), max_size, g,
                                    value_codes_.data() + b * value_row_bytes_, value_row_bytes_,
                                    static_cast<int>(s), d_, ws.acc.data());
#endif
      if (!fused_values) {
        const cpu::RowSource<float> rows{ws.rows.data(), d_, nullptr, 0};
        rk.axpy_rows(ws.w.data(), max_size, g, rows, static_cast<int>(s), d_, ws.acc.data(), d_,
                     none, 0);
      }
      pos += s;
    }
    if (fused_values) {  // back from the split layout
      ws.rows.resize(std::max(ws.rows.size(), static_cast<size_t>(d_)));
      for (int h = 0; h < g; ++h) {
        float* acc = ws.acc.data() + h * d_;
        for (int t = 0; t < d_; ++t) ws.rows[t] = acc[split_index(t)];
        std::copy(ws.rows.begin(), ws.rows.begin() + d_, acc);
      }
    }
    for (int h = 0; h < g; ++h) {
      // z >= 1: the maximum's own term is exp(0).
      const float inv = 1.f / z[h];
      for (int t = 0; t < d_; ++t) o(h, t) = (ws.acc[h * d_ + t] + bias[h]) * inv;
      lse[h] = m[h] + std::log(z[h]);
    }
  }

  int64_t cluster_size(int32_t c) const { return offsets_[c + 1] - offsets_[c]; }

  /// Bytes an estimate over cluster c reads: its codes, row scales and centroid.
  int64_t cluster_bytes(int32_t c) const {
    RETROKV_CHECK(c >= 0 && c < n_clusters(), "c: expected a cluster id in [0, ", n_clusters(),
                  "), got ", c);
    return cluster_size(c) * (key_row_bytes_ + value_row_bytes_ + 4 * int64_t{sizeof(float)}) +
           int64_t{d_} * int64_t{sizeof(float)};
  }

  /// Bytes held: codes, row scales, centroids and offsets.
  int64_t memory_bytes() const {
    return static_cast<int64_t>(key_codes_.size() + value_codes_.size() +
                                (key_scales_.size() + value_scales_.size() + centroids_.size()) *
                                    sizeof(float) +
                                offsets_.size() * sizeof(int64_t));
  }

  static constexpr const char* kMagic = "RKVWAVQZ";
  static constexpr uint32_t kVersion = 1;

  /// Appends the zone to w (so a wave index can embed it in its own file).
  void write_to(BinaryWriter& w) const {
    w.write<int32_t>(d_);
    w.write<int32_t>(params_.key_bits);
    w.write<int32_t>(params_.value_bits);
    w.write_vector(offsets_);
    w.write_vector(centroids_);
    w.write_vector(key_codes_);
    w.write_vector(value_codes_);
    w.write_vector(key_scales_);
    w.write_vector(value_scales_);
  }

  /// Reads what write_to wrote; inconsistent data throws retrokv::Error through r.check.
  static WaveQuantizedZone read_from(BinaryReader& r) {
    WaveQuantizedZone x;
    const int32_t d = r.read<int32_t>();
    WaveQuantParams p;
    p.key_bits = r.read<int32_t>();
    p.value_bits = r.read<int32_t>();
    r.check(d >= 1 && d <= (1 << 20), "d ", d);
    r.check(valid_bits(p.key_bits) && valid_bits(p.value_bits), "bits ", p.key_bits, " / ",
            p.value_bits);
    x.init(d, p);
    x.offsets_ = r.read_vector<int64_t>();
    x.centroids_ = r.read_vector<float>();
    x.key_codes_ = r.read_vector<uint8_t>();
    x.value_codes_ = r.read_vector<uint8_t>();
    x.key_scales_ = r.read_vector<float>();
    x.value_scales_ = r.read_vector<float>();
    r.check(!x.offsets_.empty() && x.offsets_.front() == 0, "cluster offsets");
    for (size_t c = 1; c < x.offsets_.size(); ++c)
      r.check(x.offsets_[c] > x.offsets_[c - 1], "cluster offsets not increasing");
    const uint64_t n_c = x.offsets_.size() - 1, n = static_cast<uint64_t>(x.offsets_.back());
    const uint64_t ud = static_cast<uint64_t>(d);
    r.check(x.centroids_.size() / ud == n_c && x.centroids_.size() == n_c * ud, "centroid size");
    r.check(x.key_codes_.size() / static_cast<uint64_t>(x.key_row_bytes_) == n &&
                x.key_codes_.size() == n * static_cast<uint64_t>(x.key_row_bytes_),
            "key code size");
    r.check(x.value_codes_.size() == n * static_cast<uint64_t>(x.value_row_bytes_),
            "value code size");
    r.check(x.key_scales_.size() == 2 * n && x.value_scales_.size() == 2 * n, "scale sizes");
    for (const auto* v : {&x.centroids_, &x.key_scales_, &x.value_scales_})
      for (float f : *v) r.check(std::isfinite(f), "non-finite value");
    for (size_t i = 0; i < x.key_scales_.size(); i += 2)
      r.check(x.key_scales_[i] >= 0.f && x.value_scales_[i] >= 0.f, "negative scale");
    return x;
  }

  /// Writes the zone to a versioned, checksummed file.
  void save(const std::string& path) const {
    BinaryWriter w(kMagic, kVersion);
    write_to(w);
    w.save(path);
  }

  /// Reads a file written by save(); truncated, corrupt or inconsistent files throw
  /// retrokv::Error naming the path.
  static WaveQuantizedZone load(const std::string& path) {
    BinaryReader r = BinaryReader::open(path, kMagic, 1, kVersion);
    WaveQuantizedZone x = read_from(r);
    r.expect_end();
    return x;
  }

  /// Same from an in-memory image (what BinaryWriter::finish() returns).
  static WaveQuantizedZone from_image(std::vector<uint8_t> image) {
    BinaryReader r(std::move(image), kMagic, 1, kVersion, "wave quantized zone image");
    WaveQuantizedZone x = read_from(r);
    r.expect_end();
    return x;
  }

  static constexpr int kMaxGroup = 64;
  /// Clusters ahead whose codes the estimate prefetches.
  static constexpr size_t kPrefetchAhead = 3;

 private:
  struct Scratch {
    std::vector<float> a, a_split, sum_a, logits, rows, w, acc;
  };
  // Per-thread scratch: concurrent estimates stay independent, and a step allocates nothing
  // once the buffers have grown.
  static Scratch& scratch() {
    thread_local Scratch s;
    return s;
  }

  static bool valid_bits(int b) { return b == 2 || b == 4 || b == 8; }

  static void check_params(const WaveQuantParams& p) {
    RETROKV_CHECK(valid_bits(p.key_bits), "params.key_bits: expected 2, 4 or 8, got ", p.key_bits);
    RETROKV_CHECK(valid_bits(p.value_bits), "params.value_bits: expected 2, 4 or 8, got ",
                  p.value_bits);
  }

  static void check_finite(ConstMatrixView<float> m, const char* name) {
    for (int64_t i = 0; i < m.rows; ++i)
      for (int64_t t = 0; t < m.cols; ++t)
        RETROKV_CHECK(std::isfinite(m(i, t)), name, ": expected finite values, got ", m(i, t),
                      " at (", i, ", ", t, ")");
  }

  void init(int d, const WaveQuantParams& p) {
    d_ = d;
    params_ = p;
    key_row_bytes_ = (int64_t{d} * p.key_bits + 7) / 8;
    value_row_bytes_ = (int64_t{d} * p.value_bits + 7) / 8;
  }

  // Asymmetric levels over one row: scale = (max - min) / (2^bits - 1), code = round((x - min)
  // / scale) clamped (all codes 0 when the row is constant). The same float operations as
  // tools/retrokv-eval's quantize_group_reference, so both dequantize to the same values.
  void quantize_row(const float* x, int bits, uint8_t* out, float* scale_min,
                    const char* name) const {
    float mn = INFINITY, mx = -INFINITY;
    for (int t = 0; t < d_; ++t) mn = std::min(mn, x[t]), mx = std::max(mx, x[t]);
    const float levels = static_cast<float>((1 << bits) - 1);
    const float sc = (mx - mn) / levels;
    RETROKV_CHECK(std::isfinite(sc), name, ": row range ", mn, " .. ", mx,
                  " overflows float when quantized");
    for (int t = 0; t < d_; ++t) {
      float c = 0.f;
      if (sc > 0.f) c = std::min(levels, std::max(0.f, std::nearbyint((x[t] - mn) / sc)));
      const unsigned code = static_cast<unsigned>(c);
      const int64_t bit = int64_t{t} * bits;
      out[bit >> 3] |= static_cast<uint8_t>(code << (bit & 7));
    }
    scale_min[0] = sc;
    scale_min[1] = mn;
  }

  // Codes of one byte as floats, for every byte value: the unpack of a row is then one small
  // copy per byte instead of a shift, a mask and an int-to-float conversion per element (the
  // conversions were most of the estimate's time). Same float values as converting each code.
  template <int kBits>
  struct ByteTable {
    static constexpr int kPerByte = 8 / kBits;
    float v[256][kPerByte];
    ByteTable() {
      for (int b = 0; b < 256; ++b)
        for (int i = 0; i < kPerByte; ++i)
          v[b][i] = static_cast<float>((b >> (i * kBits)) & ((1 << kBits) - 1));
    }
  };
  template <int kBits>
  static void unpack_bits(const uint8_t* src, int d, float* out) {
    static const ByteTable<kBits> table;
    constexpr int per = ByteTable<kBits>::kPerByte;
    const int full = d / per;
    for (int i = 0; i < full; ++i) std::memcpy(out + i * per, table.v[src[i]], sizeof(float) * per);
    for (int t = full * per; t < d; ++t) out[t] = table.v[src[full]][t - full * per];
  }
  // Codes of one row to floats; `vector` (cpu::simd_level() >= kAvx2, read once per estimate)
  // takes the AVX2 loop for 4 and 8 bits and the table for what is left of the row.
  static void unpack(const uint8_t* src, int bits, int d, float* out, bool vector = false) {
    int done = 0;
#if RETROKV_X86_SIMD
    if (vector && bits == 4) done = detail::unpack4_avx2(src, d, out);
    if (vector && bits == 8) done = detail::unpack8_avx2(src, d, out);
#endif
    (void)vector;
    if (done == d) return;
    // done is a multiple of 16 (8), so the rest starts on a byte boundary.
    const uint8_t* rest = src + done * bits / 8;
    if (bits == 8)
      unpack_bits<8>(rest, d - done, out + done);
    else if (bits == 4)
      unpack_bits<4>(rest, d - done, out + done);
    else
      unpack_bits<2>(rest, d - done, out + done);
  }

  int d_ = 0;
  WaveQuantParams params_;
  int64_t key_row_bytes_ = 0, value_row_bytes_ = 0;
  std::vector<int64_t> offsets_{0};               // (C + 1), from 0
  std::vector<float> centroids_;                  // (C, d)
  std::vector<uint8_t> key_codes_, value_codes_;  // (n, row bytes), cluster-contiguous
  std::vector<float> key_scales_, value_scales_;  // (n, 2): scale, min per row
};

}  // namespace retrokv
