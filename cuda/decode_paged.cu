// Launcher and instantiations of split-KV gather attention over a page table (steady zone +
// retrieved clusters of the wave buffer in one launch): fp16/bf16 x head_dim 64/128.
#include "retrokv/cuda/decode_attention.cuh"
#include "retrokv/cuda/dispatch.h"

namespace retrokv::cuda {

CudaStatus paged_decode_attention(const float* q, const PagedKV& kv, const DecodePlan& plan,
                                  float scale, void* workspace, float* o, float* lse,
                                  Stream stream) {
  detail::check_split_inputs(plan, q, o, lse);
  detail::check_aligned16(kv.k_pages, "kv.k_pages");
  detail::check_aligned16(kv.v_pages, "kv.v_pages");
  RETROKV_CHECK(kv.indptr != nullptr, "kv.indptr: null device pointer");
  RETROKV_CHECK(kv.indices != nullptr, "kv.indices: null device pointer");
  RETROKV_CHECK(
      kv.page_size >= 1 && kv.page_size <= 256 && (kv.page_size & (kv.page_size - 1)) == 0,
      "kv.page_size: expected a power of two in [1, 256], got ", kv.page_size);
  int shift = 0;
  while ((1 << shift) < kv.page_size) ++shift;
  return RETROKV_DISPATCH_HEAD_DIM(plan.head_dim, D, [&] {
    return RETROKV_DISPATCH_KV_DTYPE(kv.dtype, T, [&] {
      detail::PagedAddr<T, D> addr{static_cast<const T*>(kv.k_pages),
                                   static_cast<const T*>(kv.v_pages),
                                   kv.indptr,
                                   kv.indices,
                                   kv.page_len,
                                   shift};
      return static_cast<CudaStatus>(
          detail::launch_split_attention<D, T>(q, addr, plan, scale, workspace, o, lse, stream));
    });
  });
}

}  // namespace retrokv::cuda
