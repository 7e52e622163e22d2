// gemm_nt (gemm.h): register-blocked dot products of MR rows of A with NR rows of B, eight lanes
// at a time, over a panel of B small enough to stay in L2 while every row of A passes over it.
#include "retrokv/engine/gemm.h"

#include <omp.h>

#include <Eigen/Core>
#include <algorithm>
#include <cstdlib>
#include <string>

#if defined(__x86_64__) && (defined(__GNUC__) || defined(__clang__))
#include <immintrin.h>
#define RETROKV_GEMM_X86 1
#endif

namespace retrokv::engine {

namespace {

using RowMat = Eigen::Matrix<float, Eigen::Dynamic, Eigen::Dynamic, Eigen::RowMajor>;
using ConstMap = Eigen::Map<const RowMat, 0, Eigen::OuterStride<>>;
using Map = Eigen::Map<RowMat, 0, Eigen::OuterStride<>>;

constexpr int64_t kPanel = 96;  // rows of B per task: 96 x 576 floats = 216 KB, fits L2

void gemm_eigen(const float* a, int64_t lda, const float* b, int64_t ldb, float* c, int64_t ldc,
                int64_t m, int64_t n, int64_t k) {
  ConstMap am(a, m, k, Eigen::OuterStride<>(lda));
  ConstMap bm(b, n, k, Eigen::OuterStride<>(ldb));
  Map cm(c, m, n, Eigen::OuterStride<>(ldc));
  cm.noalias() = am * bm.transpose();
}

#ifdef RETROKV_GEMM_X86

__attribute__((target("avx2,fma"))) inline float hsum(__m256 v) {
  __m128 s = _mm_add_ps(_mm256_castps256_ps128(v), _mm256_extractf128_ps(v, 1));
  s = _mm_add_ps(s, _mm_movehl_ps(s, s));
  s = _mm_add_ss(s, _mm_movehdup_ps(s));
  return _mm_cvtss_f32(s);
}

template <int MR, int NR>
__attribute__((target("avx2,fma"))) void kernel(const float* a, int64_t lda, const float* b,
                                                int64_t ldb, float* c, int64_t ldc, int64_t k) {
  __m256 acc[MR][NR];
  for (int i = 0; i < MR; ++i)
    for (int j = 0; j < NR; ++j) acc[i][j] = _mm256_setzero_ps();
  const int64_t k8 = k & ~int64_t{7};
  for (int64_t p = 0; p < k8; p += 8) {
    __m256 bv[NR];
    for (int j = 0; j < NR; ++j) bv[j] = _mm256_loadu_ps(b + j * ldb + p);
    for (int i = 0; i < MR; ++i) {
      const __m256 av = _mm256_loadu_ps(a + i * lda + p);
      for (int j = 0; j < NR; ++j) acc[i][j] = _mm256_fmadd_ps(av, bv[j], acc[i][j]);
    }
  }
  for (int i = 0; i < MR; ++i) {
    for (int j = 0; j < NR; ++j) {
      float s = hsum(acc[i][j]);
      for (int64_t p = k8; p < k; ++p) s += a[i * lda + p] * b[j * ldb + p];
      c[i * ldc + j] = s;
    }
  }
}

template <int MR>
__attribute__((target("avx2,fma"))) void row_block(const float* a, int64_t lda, const float* b,
                                                   int64_t ldb, float* c, int64_t ldc, int64_t n,
                                                   int64_t k) {
  constexpr int kNR = 3;
  int64_t j = 0;
  for (; j + kNR <= n; j += kNR) kernel<MR, kNR>(a, lda, b + j * ldb, ldb, c + j, ldc, k);
  for (; j < n; ++j) kernel<MR, 1>(a, lda, b + j * ldb, ldb, c + j, ldc, k);
}

__attribute__((target("avx2,fma"))) void panel_avx2(const float* a, int64_t lda, const float* b,
                                                    int64_t ldb, float* c, int64_t ldc, int64_t m,
                                                    int64_t n, int64_t k) {
  constexpr int kMR = 4;
  int64_t i = 0;
  for (; i + kMR <= m; i += kMR) row_block<kMR>(a + i * lda, lda, b, ldb, c + i * ldc, ldc, n, k);
  for (; i < m; ++i) row_block<1>(a + i * lda, lda, b, ldb, c + i * ldc, ldc, n, k);
}

#endif  // RETROKV_GEMM_X86

}  // namespace

bool gemm_has_avx2() {
#ifdef RETROKV_GEMM_X86
  // RETROKV_GEMM=eigen forces the Eigen path (to compare the two).
  static const bool has =
      __builtin_cpu_supports("avx2") && __builtin_cpu_supports("fma") &&
      !(std::getenv("RETROKV_GEMM") && std::string(std::getenv("RETROKV_GEMM")) == "eigen");
  return has;
#else
  return false;
#endif
}

void gemm_nt(const float* a, int64_t lda, const float* b, int64_t ldb, float* c, int64_t ldc,
             int64_t m, int64_t n, int64_t k) {
  if (m <= 0 || n <= 0) return;
  if (!gemm_has_avx2()) return gemm_eigen(a, lda, b, ldb, c, ldc, m, n, k);
#ifdef RETROKV_GEMM_X86
  // Small problems (one decode step) split B finer so both cores get work.
  const int64_t panel = m == 1 ? std::max<int64_t>(16, (n + 63) / 64) : kPanel;
  const int64_t n_panels = (n + panel - 1) / panel;
  // Threads only pay off above ~4M multiply-adds (one decode step's 576 x 576 projection is 0.3M):
  // below that the fork/join costs more than it saves, and far more on a busy machine.
  const bool threads = !omp_in_parallel() && n_panels > 1 && m * n * k >= (int64_t{1} << 22);
#pragma omp parallel for schedule(dynamic, 1) if (threads)
  for (int64_t t = 0; t < n_panels; ++t) {
    const int64_t j0 = t * panel;
    const int64_t cols = std::min(panel, n - j0);
    panel_avx2(a, lda, b + j0 * ldb, ldb, c + j0, ldc, m, cols, k);
  }
#endif
}

}  // namespace retrokv::engine
