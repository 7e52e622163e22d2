// Host API of the CUDA decode-attention kernels (DESIGN.md section 4, issue 6): split-KV
// (flash-decoding) attention over ragged per-sequence KV, the same over a page table (steady zone
// + retrieved clusters in one launch), the wave index's estimation over clusters, and the N-way
// merge of (o, lse) states. Plain g++ header; the kernels are in include/retrokv/cuda/*.cuh.
//
// Conventions of every launcher: device pointers; inputs first, outputs next, stream last;
// returns the launch's cudaError_t as CudaStatus (0 = success); throws retrokv::Error for bad
// caller input (shape, head_dim not 64/128, dtype, misaligned pointers) before launching.
// Queries are float (batch, n_q_heads, d); GQA: query head h reads KV head h / (n_q / n_kv).
// Outputs: o (batch, n_q_heads, d) normalised, lse (batch, n_q_heads) NATURAL-log, empty -> -inf.
#pragma once

#include <algorithm>
#include <cstddef>
#include <cstdint>

#include "retrokv/core/error.h"
#include "retrokv/core/half.h"
#include "retrokv/cuda/decode_plan.h"
#include "retrokv/cuda/device.h"

namespace retrokv::cuda {

/// Ragged contiguous KV of a batch: sequence b owns global tokens [indptr[b], indptr[b + 1]).
/// Element (token t, KV head h, dim j) of K is k[t * stride_token + h * stride_head + j]
/// ((n, h, d) layout: stride_token = h*d, stride_head = d; (h, n, d): stride_token = d,
/// stride_head = n_total*d). Strides are in elements, multiples of 8; pointers 16-byte aligned.
struct RaggedKV {
  const void* k = nullptr;
  const void* v = nullptr;
  DType dtype = DType::kFloat16;    // float16 or bfloat16
  const int32_t* indptr = nullptr;  // (batch + 1), device
  int64_t stride_token = 0;
  int64_t stride_head = 0;
};

/// Paged KV: a pool of pages, each `page_size` tokens of ONE KV head, K and V pools of shape
/// (n_pages, page_size, d). List l = b * n_kv_heads + h (sequence b, KV head h) reads pages
/// indices[indptr[l] .. indptr[l + 1]); page_len[e] tokens of listed page e are valid (nullptr =
/// all full), so a cluster's last partial page or the steady zone's tail fit. page_size is a
/// power of two (8 or 16 in the wave buffer).
struct PagedKV {
  const void* k_pages = nullptr;
  const void* v_pages = nullptr;
  DType dtype = DType::kFloat16;
  int page_size = 16;
  const int32_t* indptr = nullptr;    // (batch * n_kv_heads + 1), device
  const int32_t* indices = nullptr;   // page ids, device
  const int32_t* page_len = nullptr;  // valid tokens per listed page, device, or nullptr
};

/// Wave-index cluster summaries for the estimation zone: centroids (n_clusters, d) float (mean
/// key), value_sums (n_clusters, d) float (sum of the cluster's values), sizes (n_clusters)
/// int32. List l = b * n_kv_heads + h estimates over clusters ids[indptr[l] .. indptr[l + 1]).
struct ClusterSummaries {
  const float* centroids = nullptr;
  const float* value_sums = nullptr;
  const int32_t* sizes = nullptr;
  const int32_t* indptr = nullptr;
  const int32_t* ids = nullptr;
};

/// Fewest tokens a split reads: below this the split's fixed cost (q load, merge) dominates.
inline constexpr int64_t kMinTokensPerSplit = 256;
/// Fewest clusters an estimation split reads.
inline constexpr int64_t kMinClustersPerSplit = 64;

/// Plans for the three attention launchers (plain host code, no device call). max_tokens /
/// max_pages / max_clusters: the longest list of the batch. n_sms: multiprocessor_count().
inline DecodePlan plan_ragged_decode(int batch, int n_q_heads, int n_kv_heads, int head_dim,
                                     int64_t max_tokens, int n_sms) {
  return plan_decode(batch, n_q_heads, n_kv_heads, head_dim, max_tokens, kMinTokensPerSplit, n_sms);
}
inline DecodePlan plan_paged_decode(int batch, int n_q_heads, int n_kv_heads, int head_dim,
                                    int64_t max_pages, int page_size, int n_sms) {
  RETROKV_CHECK(page_size >= 1 && page_size <= 256 && (page_size & (page_size - 1)) == 0,
                "page_size: expected a power of two in [1, 256], got ", page_size);
  return plan_decode(batch, n_q_heads, n_kv_heads, head_dim, max_pages,
                     std::max<int64_t>(1, kMinTokensPerSplit / page_size), n_sms);
}
inline DecodePlan plan_estimation(int batch, int n_q_heads, int n_kv_heads, int head_dim,
                                  int64_t max_clusters, int n_sms) {
  return plan_decode(batch, n_q_heads, n_kv_heads, head_dim, max_clusters, kMinClustersPerSplit,
                     n_sms);
}

/// Exact decode attention over ragged KV. q (batch, n_q_heads, d) float; workspace: at least
/// plan.workspace_bytes of device memory (may be nullptr when that is 0). Scale is usually
/// 1/sqrt(d). Writes o (batch, n_q_heads, d) and natural-log lse (batch, n_q_heads).
CudaStatus decode_attention(const float* q, const RaggedKV& kv, const DecodePlan& plan, float scale,
                            void* workspace, float* o, float* lse, Stream stream = nullptr);

/// Exact decode attention over a page table (gather attention), same outputs.
CudaStatus paged_decode_attention(const float* q, const PagedKV& kv, const DecodePlan& plan,
                                  float scale, void* workspace, float* o, float* lse,
                                  Stream stream = nullptr);

/// Estimation attention over clusters: per query head o_E = sum exp(q.c_i*scale) VS_i / Z_E,
/// lse_E = log Z_E (natural), Z_E = sum s_i exp(q.c_i*scale). An empty list gives lse = -inf.
CudaStatus estimation_attention(const float* q, const ClusterSummaries& clusters,
                                const DecodePlan& plan, float scale, void* workspace, float* o,
                                float* lse, Stream stream = nullptr);

/// N-way merge of attention states: state i of row r has o at o[i * o_state_stride +
/// r * o_row_stride] (d floats) and natural-log lse at lse[i * lse_state_stride + r *
/// lse_row_stride]. Writes o_out (n_rows, d) and lse_out (n_rows). Empty states never give NaN.
CudaStatus merge_states(const float* o, const float* lse, int n_states, int64_t n_rows, int d,
                        int64_t o_state_stride, int64_t o_row_stride, int64_t lse_state_stride,
                        int64_t lse_row_stride, float* o_out, float* lse_out,
                        Stream stream = nullptr);

/// Same, for the common layout o (n_states, n_rows, d), lse (n_states, n_rows).
CudaStatus merge_states(const float* o, const float* lse, int n_states, int64_t n_rows, int d,
                        float* o_out, float* lse_out, Stream stream = nullptr);

}  // namespace retrokv::cuda
