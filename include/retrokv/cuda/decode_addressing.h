// Where token t of a decode-attention list lives: ragged contiguous KV, a page table, or the
// wave index's clusters (estimation zone). Shared by the CUDA kernels and the CPU tests, which
// walk the same splits on the host (RETROKV_HOST_DEVICE; T = __half on device, half on host).
#pragma once

#include <cstdint>

#include "retrokv/core/config.h"
#include "retrokv/cuda/attention_math.h"

namespace retrokv::cuda::detail {

/// Where one token lives and how it is weighted (bias and value scale are 0 / 1 except for
/// cluster estimates).
template <typename T>
struct TokenRow {
  const T* k;
  const T* v;
  float bias2;   // added to the base-2 logit
  float vscale;  // multiplies the value row
};

/// Ragged contiguous KV: list (b, h) = tokens [indptr[b], indptr[b+1]) of KV head h.
template <typename T, int D>
struct RaggedAddr {
  const T* k;
  const T* v;
  const int32_t* indptr;
  int64_t stride_token;
  int64_t stride_head;

  RETROKV_HOST_DEVICE int64_t units(int b, int /*h*/, int /*n_kv*/) const {
    return indptr[b + 1] - indptr[b];
  }
  RETROKV_HOST_DEVICE int tokens_per_unit() const { return 1; }
  RETROKV_HOST_DEVICE bool row(int b, int h, int /*n_kv*/, int64_t t, TokenRow<T>* r) const {
    const int64_t off = (indptr[b] + t) * stride_token + h * stride_head;
    r->k = k + off;
    r->v = v + off;
    r->bias2 = 0.f;
    r->vscale = 1.f;
    return true;
  }
};

/// Page table: list l = b*n_kv + h lists pages; token t is slot t % page_size of its page.
template <typename T, int D>
struct PagedAddr {
  const T* k_pages;
  const T* v_pages;
  const int32_t* indptr;
  const int32_t* indices;
  const int32_t* page_len;
  int page_shift;  // log2(page_size)

  RETROKV_HOST_DEVICE int64_t units(int b, int h, int n_kv) const {
    const int l = b * n_kv + h;
    return indptr[l + 1] - indptr[l];
  }
  RETROKV_HOST_DEVICE int tokens_per_unit() const { return 1 << page_shift; }
  RETROKV_HOST_DEVICE bool row(int b, int h, int n_kv, int64_t t, TokenRow<T>* r) const {
    const int64_t e = indptr[b * n_kv + h] + (t >> page_shift);
    const int slot = static_cast<int>(t & ((1 << page_shift) - 1));
    const int valid = page_len != nullptr ? page_len[e] : (1 << page_shift);
    const int64_t off = ((static_cast<int64_t>(indices[e]) << page_shift) + slot) * D;
    r->k = k_pages + off;
    r->v = v_pages + off;
    r->bias2 = 0.f;
    r->vscale = 1.f;
    return slot < valid;
  }
};

/// Estimation: each listed cluster is one "token" with key = centroid, value = value sum / size
/// and logit bias log(size) (see cluster_logit_bias_log2).
template <int D>
struct ClusterAddr {
  const float* centroids;
  const float* value_sums;
  const int32_t* sizes;
  const int32_t* indptr;
  const int32_t* ids;

  RETROKV_HOST_DEVICE int64_t units(int b, int h, int n_kv) const {
    const int l = b * n_kv + h;
    return indptr[l + 1] - indptr[l];
  }
  RETROKV_HOST_DEVICE int tokens_per_unit() const { return 1; }
  RETROKV_HOST_DEVICE bool row(int b, int h, int n_kv, int64_t t, TokenRow<float>* r) const {
    const int64_t id = ids[indptr[b * n_kv + h] + t];
    const float size = static_cast<float>(sizes[id]);
    r->k = centroids + id * D;
    r->v = value_sums + id * D;
    r->bias2 = cluster_logit_bias_log2(size);
    r->vscale = cluster_value_scale(size);
    return size > 0.f;
  }
};

/// Tokens [*t0, *t1) of list (b, h) that split `split` covers: units [split * units_per_split,
/// (split + 1) * units_per_split) clipped to the list, times tokens per unit. Empty past the end.
template <typename Addr>
RETROKV_HOST_DEVICE void split_token_range(const Addr& addr, int b, int h, int n_kv, int split,
                                           int64_t units_per_split, int64_t* t0, int64_t* t1) {
  const int64_t n_units = addr.units(b, h, n_kv);
  const int64_t u0 = static_cast<int64_t>(split) * units_per_split;
  const int64_t u_end = u0 + units_per_split;
  const int64_t u1 = u_end < n_units ? u_end : n_units;
  const int tpu = addr.tokens_per_unit();
  *t0 = u0 * tpu;
  *t1 = u1 > u0 ? u1 * tpu : *t0;
}

}  // namespace retrokv::cuda::detail
