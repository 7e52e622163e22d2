// Launcher and instantiations of split-KV decode attention over ragged contiguous KV
// (flash-decoding, DESIGN.md section 4): fp16/bf16 x head_dim 64/128.
#include "retrokv/cuda/decode_attention.cuh"
#include "retrokv/cuda/dispatch.h"

namespace retrokv::cuda {

CudaStatus decode_attention(const float* q, const RaggedKV& kv, const DecodePlan& plan, float scale,
                            void* workspace, float* o, float* lse, Stream stream) {
  detail::check_split_inputs(plan, q, o, lse);
  detail::check_aligned16(kv.k, "kv.k");
  detail::check_aligned16(kv.v, "kv.v");
  RETROKV_CHECK(kv.indptr != nullptr, "kv.indptr: null device pointer");
  RETROKV_CHECK(kv.stride_token % 8 == 0 && kv.stride_token >= 0,
                "kv.stride_token: expected a non-negative multiple of 8 elements, got ",
                kv.stride_token);
  RETROKV_CHECK(kv.stride_head % 8 == 0 && kv.stride_head >= 0,
                "kv.stride_head: expected a non-negative multiple of 8 elements, got ",
                kv.stride_head);
  return RETROKV_DISPATCH_HEAD_DIM(plan.head_dim, D, [&] {
    return RETROKV_DISPATCH_KV_DTYPE(kv.dtype, T, [&] {
      detail::RaggedAddr<T, D> addr{static_cast<const T*>(kv.k), static_cast<const T*>(kv.v),
                                    kv.indptr, kv.stride_token, kv.stride_head};
      return static_cast<CudaStatus>(
          detail::launch_split_attention<D, T>(q, addr, plan, scale, workspace, o, lse, stream));
    });
  });
}

}  // namespace retrokv::cuda
