// The wave buffer (RetroInfer section 5, DESIGN.md section 4): the full KV of a layer in pinned
// host memory, cluster-contiguous, and a GPU page pool caching whole clusters under the LRU
// WaveBufferPolicy. Each step builds the page table of the selected clusters in fixed-address
// device buffers, so gather attention (paged_decode_attention) can be captured in a CUDA graph.
#pragma once

#include <cstddef>
#include <cstdint>
#include <span>
#include <vector>

#include "retrokv/core/half.h"
#include "retrokv/cuda/attention.h"
#include "retrokv/cuda/memory.h"
#include "retrokv/cuda/wave_buffer_policy.h"

struct CUevent_st;

namespace retrokv::cuda {

struct WaveBufferConfig {
  int head_dim = 128;
  DType dtype = DType::kBFloat16;  // float16 or bfloat16
  int page_size = 16;              // tokens per page (8 or 16)
  /// LRU cache capacity in pages; 0 = capacity_fraction of the KV.
  int64_t capacity_pages = 0;
  double capacity_fraction = 0.05;
  /// Most pages one step may select over all lists (sizes the fixed per-step page table and the
  /// staging pages for misses that cannot be cached this step).
  int64_t max_step_pages = 4096;
  /// Lists (sequence x KV head) one step serves: the page table has n_lists + 1 indptr entries.
  int n_lists = 1;
};

/// One layer's clusters: cluster c (a global id over all lists) owns host tokens
/// [cluster_offsets[c], cluster_offsets[c + 1]) of K and V (n_tokens, head_dim). Built once
/// after clustering; the page table it fills is read by paged_decode_attention via paged_kv().
class WaveBuffer {
 public:
  /// Copies K and V (n_tokens, head_dim) of `cfg.dtype` into pinned memory and allocates the
  /// page pool (capacity + max_step_pages pages) and the fixed per-step buffers. Out of GPU
  /// memory: retrokv::Error with the bytes asked and free; nothing is kept.
  WaveBuffer(const WaveBufferConfig& cfg, const void* k, const void* v,
             std::span<const int64_t> cluster_offsets);
  ~WaveBuffer();
  WaveBuffer(const WaveBuffer&) = delete;
  WaveBuffer& operator=(const WaveBuffer&) = delete;

  /// One decode step: selected[l] are the retrieval-zone clusters of list l. Looks up hits,
  /// enqueues host-to-device copies of the misses on `stream` (cached when the LRU admits them,
  /// else into this step's staging pages), and uploads the page table (indptr, indices, valid
  /// tokens per page) into the fixed device buffers. Returns the number of pages. Waits for the
  /// previous step's uploads first (the pinned staging is reused).
  int64_t prepare_step(const std::vector<std::vector<int32_t>>& selected, Stream stream = nullptr);

  /// Makes `compute_stream` wait (on the device, not the host) until the copies and page-table
  /// upload of the last prepare_step are done. With prepare_step on a separate copy stream this
  /// lets the estimation kernel run on the compute stream while misses cross PCIe.
  void wait_ready(Stream compute_stream) const;

  /// Records, on `compute_stream`, that the last step's attention kernels have been enqueued:
  /// the next prepare_step makes its copy stream wait for them before overwriting evicted pages
  /// (needed when copies and attention run on different streams).
  void release_step(Stream compute_stream);

  /// The pool and this step's page table, for paged_decode_attention (fixed addresses).
  PagedKV paged_kv() const;
  /// Longest list of the last prepared step, in pages (for plan_paged_decode).
  int64_t max_list_pages() const { return max_list_pages_; }
  /// Upper bound of max_list_pages() for planning a captured graph: max_step_pages.
  int64_t max_step_pages() const { return cfg_.max_step_pages; }

  const WaveBufferPolicy& policy() const { return policy_; }
  int64_t n_clusters() const { return static_cast<int64_t>(offsets_.size()) - 1; }
  std::size_t pool_bytes() const { return k_pool_.bytes() + v_pool_.bytes(); }

 private:
  std::size_t token_bytes() const;
  void copy_cluster(int32_t cluster, std::span<const int32_t> pages, Stream stream);

  WaveBufferConfig cfg_;
  std::vector<int64_t> offsets_;
  PinnedBuffer host_k_, host_v_;
  DeviceBuffer k_pool_, v_pool_;
  DeviceBuffer d_indptr_, d_indices_, d_page_len_;
  PinnedBuffer h_table_;  // staging of indptr | indices | page_len
  WaveBufferPolicy policy_;
  int64_t max_list_pages_ = 0;
  CUevent_st* uploaded_ = nullptr;
  CUevent_st* consumed_ = nullptr;
};

}  // namespace retrokv::cuda
