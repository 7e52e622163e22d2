// Split-KV (flash-decoding) work planning for the CUDA decode kernels, as plain host code so the
// CPU tests check it: how many splits of each sequence's tokens (or pages, or clusters) one
// launch uses, and the workspace the per-split partial states need.
#pragma once

#include <algorithm>
#include <cstddef>
#include <cstdint>

#include "retrokv/core/error.h"

namespace retrokv::cuda {

/// Query heads one thread block serves: a KV head's group is split into chunks of at most this
/// size, so groups up to 8 (GQA 32/8, 9/3, 64/8) read each key once. Groups of up to 4 use
/// blocks compiled for 4 heads (fewer registers, more blocks per SM).
inline constexpr int kMaxGroupPerBlock = 8;
inline constexpr int kSmallGroupPerBlock = 4;

/// Query heads per block for a GQA group of `group` heads: 4 when the group fits, else 8.
inline int group_per_block(int group) {
  return group <= kSmallGroupPerBlock ? kSmallGroupPerBlock : kMaxGroupPerBlock;
}

/// One launch's split of the work. A "unit" is what the kernel's list holds: a token (ragged
/// KV), a page (page table) or a cluster (estimation). Split s of a list covers units
/// [s * units_per_split, (s + 1) * units_per_split); splits past the list's end write an empty
/// state. Fixed for a given shape, so a launch can be captured in a CUDA graph.
struct DecodePlan {
  int batch = 0;
  int n_q_heads = 0;
  int n_kv_heads = 0;
  int head_dim = 0;
  int group_per_block = kSmallGroupPerBlock;  // group_per_block(group): 4 or 8
  int n_group_chunks = 1;                     // ceil(group / group_per_block)
  int n_splits = 1;                           // thread blocks per (sequence, KV head, group chunk)
  int64_t units_per_split = 1;
  std::size_t workspace_bytes = 0;  // partial (o, lse) per split; 0 when n_splits == 1
};

/// Plans a launch over `batch` sequences whose longest list has `max_units` units. Targets about
/// `blocks_per_sm` blocks per SM across `n_sms` SMs, but never splits finer than
/// `min_units_per_split` units. Throws retrokv::Error on a bad shape.
inline DecodePlan plan_decode(int batch, int n_q_heads, int n_kv_heads, int head_dim,
                              int64_t max_units, int64_t min_units_per_split, int n_sms,
                              int blocks_per_sm = 4) {
  RETROKV_CHECK(batch >= 1, "batch: expected >= 1, got ", batch);
  RETROKV_CHECK(n_kv_heads >= 1, "n_kv_heads: expected >= 1, got ", n_kv_heads);
  RETROKV_CHECK(n_q_heads >= n_kv_heads && n_q_heads % n_kv_heads == 0,
                "n_q_heads: expected a multiple of n_kv_heads (", n_kv_heads, "), got ", n_q_heads);
  RETROKV_CHECK(head_dim >= 1, "head_dim: expected >= 1, got ", head_dim);
  RETROKV_CHECK(max_units >= 0, "max_units: expected >= 0, got ", max_units);
  RETROKV_CHECK(min_units_per_split >= 1, "min_units_per_split: expected >= 1, got ",
                min_units_per_split);
  RETROKV_CHECK(n_sms >= 1, "n_sms: expected >= 1, got ", n_sms);
  DecodePlan p;
  p.batch = batch;
  p.n_q_heads = n_q_heads;
  p.n_kv_heads = n_kv_heads;
  p.head_dim = head_dim;
  const int group = n_q_heads / n_kv_heads;
  p.group_per_block = group_per_block(group);
  p.n_group_chunks = (group + p.group_per_block - 1) / p.group_per_block;
  const int64_t work = static_cast<int64_t>(batch) * n_kv_heads * p.n_group_chunks;
  const int64_t target = static_cast<int64_t>(n_sms) * std::max(1, blocks_per_sm);
  const int64_t want = std::max<int64_t>(1, (target + work - 1) / work);
  const int64_t most = std::max<int64_t>(1, max_units / min_units_per_split);
  const int64_t splits = std::min(want, most);
  p.units_per_split = std::max<int64_t>(1, (max_units + splits - 1) / splits);
  // Recount so that no split is empty for the longest list.
  p.n_splits = static_cast<int>(
      std::max<int64_t>(1, (max_units + p.units_per_split - 1) / p.units_per_split));
  if (p.n_splits > 1) {
    const std::size_t rows = static_cast<std::size_t>(batch) * n_q_heads * p.n_splits;
    p.workspace_bytes = rows * (static_cast<std::size_t>(head_dim) + 1) * sizeof(float);
  }
  return p;
}

}  // namespace retrokv::cuda
