// Dense float GEMM in the "NT" form the engine needs (activations times weight rows, queries times
// key rows): C (m, n) = A (m, k) * B (n, k)^T. Uses an AVX2+FMA kernel chosen at run time (the
// default build targets baseline x86-64, where Eigen only gets SSE2), else Eigen.
#pragma once

#include <cstdint>

namespace retrokv::engine {

/// C (m, n) = A (m, k) * B (n, k)^T, all row-major with leading dimensions lda, ldb, ldc.
/// Parallel (OpenMP) over blocks of B's rows unless called inside a parallel region.
void gemm_nt(const float* a, int64_t lda, const float* b, int64_t ldb, float* c, int64_t ldc,
             int64_t m, int64_t n, int64_t k);

/// Whether gemm_nt runs its AVX2+FMA kernel on this CPU.
bool gemm_has_avx2();

}  // namespace retrokv::engine
