// N-way merge of attention states on the GPU (DESIGN.md section 1): the split-KV reduction and
// the final exact + estimated + CPU merge. Per element it runs merge_strided_element, the same
// RETROKV_HOST_DEVICE code the CPU tests check.
#include <cuda_runtime.h>

#include "retrokv/core/error.h"
#include "retrokv/cuda/attention.h"
#include "retrokv/cuda/attention_math.h"

namespace retrokv::cuda {
namespace detail {

__global__ void merge_states_kernel(const float* __restrict__ o, const float* __restrict__ lse,
                                    int n_states, int d, int64_t o_state_stride,
                                    int64_t o_row_stride, int64_t lse_state_stride,
                                    int64_t lse_row_stride, float* __restrict__ o_out,
                                    float* __restrict__ lse_out) {
  const int64_t row = blockIdx.x;
  const float* o_row = o + row * o_row_stride;
  const float* lse_row = lse + row * lse_row_stride;
  for (int j = threadIdx.x; j < d; j += blockDim.x) {
    float merged_lse;
    o_out[row * d + j] = merge_strided_element(o_row + j, o_state_stride, lse_row, lse_state_stride,
                                               n_states, &merged_lse);
    if (j == 0) lse_out[row] = merged_lse;
  }
}

}  // namespace detail

CudaStatus merge_states(const float* o, const float* lse, int n_states, int64_t n_rows, int d,
                        int64_t o_state_stride, int64_t o_row_stride, int64_t lse_state_stride,
                        int64_t lse_row_stride, float* o_out, float* lse_out, Stream stream) {
  RETROKV_CHECK(n_states >= 0, "n_states: expected >= 0, got ", n_states);
  RETROKV_CHECK(n_rows >= 0 && n_rows <= 0x7fffffff, "n_rows: expected in [0, 2^31), got ", n_rows);
  RETROKV_CHECK(d >= 1, "d: expected >= 1, got ", d);
  RETROKV_CHECK(n_states == 0 || (o != nullptr && lse != nullptr),
                "o, lse: null device pointer for n_states = ", n_states);
  RETROKV_CHECK(o_out != nullptr && lse_out != nullptr, "o_out, lse_out: null device pointer");
  if (n_rows == 0) return cudaSuccess;
  const int threads = d >= 128 ? 128 : ((d + 31) / 32) * 32;
  detail::merge_states_kernel<<<static_cast<unsigned>(n_rows), threads, 0, stream>>>(
      o, lse, n_states, d, o_state_stride, o_row_stride, lse_state_stride, lse_row_stride, o_out,
      lse_out);
  return cudaGetLastError();
}

CudaStatus merge_states(const float* o, const float* lse, int n_states, int64_t n_rows, int d,
                        float* o_out, float* lse_out, Stream stream) {
  return merge_states(o, lse, n_states, n_rows, d, n_rows * d, d, n_rows, 1, o_out, lse_out,
                      stream);
}

}  // namespace retrokv::cuda
