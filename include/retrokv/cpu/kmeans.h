// Lloyd's k-means over the rows of a float matrix (n, d), plain or spherical (DESIGN.md section
// 3: IVF's coarse quantiser and the wave index's per-segment clustering, RetroInfer section 4).
// Assignment is an Eigen GEMM in row blocks + argmax, parallel with OpenMP; deterministic.
#pragma once

#include <Eigen/Core>
#include <algorithm>
#include <cmath>
#include <cstdint>
#include <numeric>
#include <random>
#include <vector>

#include "retrokv/core/error.h"
#include "retrokv/core/view.h"
#include "retrokv/cpu/simd.h"

namespace retrokv::cpu {

struct KMeansParams {
  enum class Init {
    kEvenlySpaced,  ///< seed j is row floor(j * n / k): deterministic, good for sequence data
    kRandom         ///< k distinct rows drawn with `seed`
  };
  int n_clusters = 0;  ///< k, 1 <= k <= n
  int iterations = 10;
  /// Spherical k-means: centroids are normalised to unit length and rows are assigned by the
  /// largest inner product (cosine ranking). Otherwise rows go to the nearest centroid (L2).
  bool spherical = false;
  Init init = Init::kEvenlySpaced;
  uint64_t seed = 0;
};

/// centroids: (k, d); assignment: (n) cluster of each row; sizes: (k) rows per cluster.
/// The centroids are those of the final update step (unit length when spherical), so they are the
/// (normalised) means of the rows assigned to them.
struct KMeansResult {
  Matrix<float> centroids;
  std::vector<int32_t> assignment;
  std::vector<int32_t> sizes;
};

namespace detail {

inline constexpr int64_t kKMeansBlockRows = 256;

using RowMajorF = Eigen::Matrix<float, Eigen::Dynamic, Eigen::Dynamic, Eigen::RowMajor>;

inline void normalise_row(float* c, int64_t d) {
  double s = 0.0;
  for (int64_t j = 0; j < d; ++j) s += static_cast<double>(c[j]) * c[j];
  if (s <= 0.0) return;  // a zero vector has no direction; leave it (never divide by 0)
  const float inv = static_cast<float>(1.0 / std::sqrt(s));
  for (int64_t j = 0; j < d; ++j) c[j] *= inv;
}

/// The wave index's update shape (one row block, 4 clusters, an even d: 64 tokens of 16 per
/// cluster) has an AVX-512 path (kmeans_assign_x4): at this size the GEMM's operand packing and
/// the OpenMP region cost several times the n*4*d multiply-adds. It sums each score as Eigen's
/// GEMM kernel does for a block of 4 clusters (even and odd terms in two running sums, added at
/// the end; no FMA), so the assignment is bit-identical to the GEMM path (test_kmeans.cpp).
inline bool kmeans_x4_path(int64_t n, int64_t d, int64_t k) {
#if RETROKV_X86_SIMD
  return k == 4 && d % 2 == 0 && n <= kKMeansBlockRows && simd_level() == SimdLevel::kAvx512;
#else
  (void)n, (void)d, (void)k;
  return false;
#endif
}

/// x (n, d) transposed into xt (d, np), np = n rounded up to 16, zero padded: the layout of
/// kmeans_assign_x4 (16 rows per vector).
inline void kmeans_transpose(ConstMatrixView<float> x, std::vector<float>& xt) {
  const int64_t n = x.rows, d = x.cols, np = (n + 15) / 16 * 16;
  xt.assign(static_cast<size_t>(d * np), 0.f);
  for (int64_t i = 0; i < n; ++i)
    for (int64_t t = 0; t < d; ++t) xt[t * np + i] = x(i, t);
}

#if RETROKV_X86_SIMD
#if defined(__clang__)
#pragma clang attribute push(__attribute__((target("avx512f"))), apply_to = function)
#else
#pragma GCC push_options
#pragma GCC target("avx512f")
#pragma GCC diagnostic push
#pragma GCC diagnostic ignored "-Wuninitialized"
#pragma GCC diagnostic ignored "-Wmaybe-uninitialized"
#endif

/// acc[t] += r[t] in double for t < d (d even), 8 lanes at a time: each lane is one t, so the
/// sums are those of the scalar loop.
inline void add_row_f64(const float* r, int64_t d, double* acc) {
  int64_t t = 0;
  for (; t + 8 <= d; t += 8)
    _mm512_storeu_pd(acc + t, _mm512_add_round_pd(_mm512_loadu_pd(acc + t),
                                                  _mm512_cvtps_pd(_mm256_loadu_ps(r + t)),
                                                  _MM_FROUND_CUR_DIRECTION));
  for (; t < d; ++t) acc[t] += r[t];
}

/// kmeans_assign for kmeans_x4_path problems: xt (d, np) from kmeans_transpose, c (4, d), bias[4].
/// 16 rows per vector. The _round_ forms of mul and add keep every product and sum rounded on
/// its own: the compiler may not contract them into an FMA, which would change the scores.
inline void kmeans_assign_x4(const float* xt, int64_t n, int64_t d, const float* c,
                             const float* bias, int32_t* assignment, float* best) {
  constexpr int kR = _MM_FROUND_CUR_DIRECTION;
  const int64_t np = (n + 15) / 16 * 16;
  for (int64_t i0 = 0; i0 < np; i0 += 16) {
    __m512 s[4];
    for (int j = 0; j < 4; ++j) {
      const float* cj = c + j * d;
      __m512 e = _mm512_setzero_ps(), o = _mm512_setzero_ps();
      for (int64_t t = 0; t < d; t += 2) {
        e = _mm512_add_round_ps(
            e, _mm512_mul_round_ps(_mm512_loadu_ps(xt + t * np + i0), _mm512_set1_ps(cj[t]), kR),
            kR);
        o = _mm512_add_round_ps(o,
                                _mm512_mul_round_ps(_mm512_loadu_ps(xt + (t + 1) * np + i0),
                                                    _mm512_set1_ps(cj[t + 1]), kR),
                                kR);
      }
      s[j] = _mm512_add_round_ps(_mm512_add_round_ps(e, o, kR), _mm512_set1_ps(bias[j]), kR);
    }
    // Argmax with ties to the smaller j, as the scalar loop of the GEMM path.
    __m512 v = s[0];
    __m512i arg = _mm512_setzero_si512();
    for (int j = 1; j < 4; ++j) {
      const __mmask16 gt = _mm512_cmp_ps_mask(s[j], v, _CMP_GT_OQ);
      v = _mm512_mask_blend_ps(gt, v, s[j]);
      arg = _mm512_mask_blend_epi32(gt, arg, _mm512_set1_epi32(j));
    }
    alignas(64) float vb[16];
    alignas(64) int32_t ab[16];
    _mm512_store_ps(vb, v);
    _mm512_store_si512(ab, arg);
    for (int64_t r = 0; r < 16 && i0 + r < n; ++r) {
      assignment[i0 + r] = ab[r];
      best[i0 + r] = vb[r];
    }
  }
}

#if defined(__clang__)
#pragma clang attribute pop
#else
#pragma GCC diagnostic pop
#pragma GCC pop_options
#endif
#endif  // RETROKV_X86_SIMD

/// assignment[i] = argmax_j score(x_i, c_j) with score = x.c (spherical) or x.c - |c|^2/2 (L2,
/// the same argmin as |x - c|^2). Ties go to the smaller j. best[i] receives the best score.
/// xt: x transposed by kmeans_transpose when the caller has it (kmeans_x4_path problems only).
inline void kmeans_assign(ConstMatrixView<float> x, const Matrix<float>& c, bool spherical,
                          std::vector<int32_t>& assignment, std::vector<float>& best,
                          const std::vector<float>* xt = nullptr) {
  const int64_t n = x.rows, d = x.cols, k = c.rows();
  Eigen::Map<const RowMajorF> cm(c.data(), k, d);
  Eigen::VectorXf bias = Eigen::VectorXf::Zero(k);
  if (!spherical) bias = -0.5f * cm.rowwise().squaredNorm();
#if RETROKV_X86_SIMD
  if (kmeans_x4_path(n, d, k)) {
    std::vector<float> own;
    if (!xt) {
      kmeans_transpose(x, own);
      xt = &own;
    }
    kmeans_assign_x4(xt->data(), n, d, c.data(), bias.data(), assignment.data(), best.data());
    return;
  }
#endif
  const int64_t n_blocks = (n + kKMeansBlockRows - 1) / kKMeansBlockRows;
#pragma omp parallel
  {
    RowMajorF s;
#pragma omp for schedule(static)
    for (int64_t b = 0; b < n_blocks; ++b) {
      const int64_t r0 = b * kKMeansBlockRows;
      const int64_t rows = std::min(kKMeansBlockRows, n - r0);
      Eigen::Map<const RowMajorF, 0, Eigen::OuterStride<>> xb(x.row(r0), rows, d,
                                                              Eigen::OuterStride<>(x.ld));
      s.resize(rows, k);
      s.noalias() = xb * cm.transpose();
      for (int64_t i = 0; i < rows; ++i) {
        const float* si = s.data() + i * k;
        int32_t arg = 0;
        float v = si[0] + bias[0];
        for (int64_t j = 1; j < k; ++j) {
          const float t = si[j] + bias[j];
          if (t > v) {
            v = t;
            arg = static_cast<int32_t>(j);
          }
        }
        assignment[r0 + i] = arg;
        best[r0 + i] = v;
      }
    }
  }
}

/// Empty clusters are re-seeded with the worst-served rows (lowest best score, ties by smaller
/// row), each taken from a cluster that keeps at least one row. So when n >= k no cluster ends an
/// iteration empty, and no centroid is ever a 0/0 mean.
inline void kmeans_fill_empty(std::vector<int32_t>& assignment, const std::vector<float>& best,
                              std::vector<int32_t>& sizes) {
  std::vector<int32_t> empty;
  for (size_t j = 0; j < sizes.size(); ++j)
    if (sizes[j] == 0) empty.push_back(static_cast<int32_t>(j));
  if (empty.empty()) return;
  std::vector<int32_t> order(assignment.size());
  std::iota(order.begin(), order.end(), 0);
  std::stable_sort(order.begin(), order.end(),
                   [&](int32_t a, int32_t b) { return best[a] < best[b]; });
  size_t next = 0;
  for (int32_t j : empty) {
    while (next < order.size() && sizes[assignment[order[next]]] <= 1) ++next;
    if (next == order.size()) return;  // n < k: nothing left to move
    const int32_t row = order[next++];
    --sizes[assignment[row]];
    assignment[row] = j;
    sizes[j] = 1;
  }
}

}  // namespace detail

/// k-means over the rows of x (n, d). Same input and params give the same result regardless of
/// the thread count. Throws retrokv::Error naming the argument for k outside [1, n], a negative
/// iteration count or non-finite input. Empty clusters are re-seeded from the rows farthest from
/// their centroid (see detail::kmeans_fill_empty); a cluster whose spherical mean is the zero
/// vector keeps the previous centroid.
inline KMeansResult kmeans(ConstMatrixView<float> x, const KMeansParams& params) {
  const int64_t n = x.rows, d = x.cols;
  const int k = params.n_clusters;
  RETROKV_CHECK(d > 0, "x: expected at least one column, got ", d);
  RETROKV_CHECK(k >= 1 && k <= n, "params.n_clusters: expected 1 <= k <= n (", n, "), got ", k);
  RETROKV_CHECK(params.iterations >= 0, "params.iterations: expected >= 0, got ",
                params.iterations);
  for (int64_t i = 0; i < n; ++i) {
    const float* r = x.row(i);
    for (int64_t j = 0; j < d; ++j)
      RETROKV_CHECK(std::isfinite(r[j]), "x: expected finite values, got ", r[j], " at (", i, ", ",
                    j, ")");
  }

  KMeansResult res;
  res.centroids.resize(k, d);
  std::vector<int64_t> seeds(static_cast<size_t>(k));
  if (params.init == KMeansParams::Init::kEvenlySpaced) {
    for (int j = 0; j < k; ++j) seeds[j] = static_cast<int64_t>(j) * n / k;
  } else {
    // Partial Fisher-Yates over row indices: k distinct rows, fixed by the seed.
    std::vector<int64_t> perm(static_cast<size_t>(n));
    std::iota(perm.begin(), perm.end(), 0);
    std::mt19937_64 rng(params.seed);
    for (int j = 0; j < k; ++j) {
      std::uniform_int_distribution<int64_t> pick(j, n - 1);
      std::swap(perm[j], perm[pick(rng)]);
      seeds[j] = perm[j];
    }
  }
  for (int j = 0; j < k; ++j) {
    std::copy(x.row(seeds[j]), x.row(seeds[j]) + d, res.centroids.row(j));
    if (params.spherical) detail::normalise_row(res.centroids.row(j), d);
  }

  res.assignment.assign(static_cast<size_t>(n), 0);
  res.sizes.assign(static_cast<size_t>(k), 0);
  std::vector<float> best(static_cast<size_t>(n));
  std::vector<int32_t> order(static_cast<size_t>(n));
  std::vector<int64_t> offsets(static_cast<size_t>(k) + 1);
  // The wave update's shape: rows transposed once for every iteration's assignment.
  std::vector<float> xt;
  const bool x4 = detail::kmeans_x4_path(n, d, k);
  if (x4) detail::kmeans_transpose(x, xt);
  std::vector<double> acc_x4(x4 ? static_cast<size_t>(d) : 0);
  // iterations == 0 still assigns once, so the result is consistent.
  const int rounds = std::max(1, params.iterations);
  for (int it = 0; it < rounds; ++it) {
    detail::kmeans_assign(x, res.centroids, params.spherical, res.assignment, best,
                          x4 ? &xt : nullptr);
    std::fill(res.sizes.begin(), res.sizes.end(), 0);
    for (int32_t a : res.assignment) ++res.sizes[a];
    detail::kmeans_fill_empty(res.assignment, best, res.sizes);
    if (params.iterations == 0) break;
    // Counting sort of rows by cluster, then per-cluster sums in row order: the result does not
    // depend on how OpenMP splits the clusters.
    offsets[0] = 0;
    for (int j = 0; j < k; ++j) offsets[j + 1] = offsets[j] + res.sizes[j];
    {
      std::vector<int64_t> fill(offsets.begin(), offsets.end() - 1);
      for (int64_t i = 0; i < n; ++i) order[fill[res.assignment[i]]++] = static_cast<int32_t>(i);
    }
    auto update = [&](int j, std::vector<double>& acc) {
      if (res.sizes[j] == 0) return;  // only when n < k: keep the previous centroid
      std::fill(acc.begin(), acc.end(), 0.0);
      for (int64_t p = offsets[j]; p < offsets[j + 1]; ++p) {
        const float* r = x.row(order[p]);
#if RETROKV_X86_SIMD
        if (x4) {
          detail::add_row_f64(r, d, acc.data());
          continue;
        }
#endif
        for (int64_t t = 0; t < d; ++t) acc[t] += r[t];
      }
      const double inv = 1.0 / res.sizes[j];
      double norm2 = 0.0;
      for (int64_t t = 0; t < d; ++t) norm2 += acc[t] * acc[t];
      if (params.spherical && norm2 * inv * inv <= 1e-30) return;  // no direction: keep old
      float* c = res.centroids.row(j);
      for (int64_t t = 0; t < d; ++t) c[t] = static_cast<float>(acc[t] * inv);
      if (params.spherical) detail::normalise_row(c, d);
    };
    if (x4) {
      // 4 clusters of a wave update: an OpenMP region would cost more than the sums.
      for (int j = 0; j < k; ++j) update(j, acc_x4);
    } else {
#pragma omp parallel
      {
        std::vector<double> acc(static_cast<size_t>(d));
#pragma omp for schedule(static)
        for (int j = 0; j < k; ++j) update(j, acc);
      }
    }
  }
  return res;
}

}  // namespace retrokv::cpu
