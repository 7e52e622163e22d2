// WaveBuffer (retrokv/cuda/wave_buffer.h): pinned cluster-contiguous host KV, a GPU page pool
// under the LRU WaveBufferPolicy, and fixed-address per-step page tables.
#include "retrokv/cuda/wave_buffer.h"

#include <cuda_runtime.h>

#include <algorithm>
#include <cstring>

#include "retrokv/core/error.h"

namespace retrokv::cuda {
namespace {

int64_t checked_capacity(const WaveBufferConfig& cfg, std::span<const int64_t> offsets) {
  RETROKV_CHECK(cfg.head_dim == 64 || cfg.head_dim == 128, "cfg.head_dim: expected 64 or 128, got ",
                cfg.head_dim);
  RETROKV_CHECK(cfg.dtype == DType::kFloat16 || cfg.dtype == DType::kBFloat16,
                "cfg.dtype: expected float16 or bfloat16, got ", dtype_name(cfg.dtype));
  RETROKV_CHECK(
      cfg.page_size >= 1 && cfg.page_size <= 256 && (cfg.page_size & (cfg.page_size - 1)) == 0,
      "cfg.page_size: expected a power of two in [1, 256], got ", cfg.page_size);
  RETROKV_CHECK(cfg.max_step_pages >= 1, "cfg.max_step_pages: expected >= 1, got ",
                cfg.max_step_pages);
  RETROKV_CHECK(cfg.n_lists >= 1, "cfg.n_lists: expected >= 1, got ", cfg.n_lists);
  RETROKV_CHECK(offsets.size() >= 1 && offsets[0] == 0,
                "cluster_offsets: expected n_clusters + 1 offsets starting at 0");
  for (size_t i = 1; i < offsets.size(); ++i) {
    RETROKV_CHECK(offsets[i] >= offsets[i - 1], "cluster_offsets: expected non-decreasing, got ",
                  offsets[i], " after ", offsets[i - 1], " at index ", i);
  }
  if (cfg.capacity_pages > 0) return cfg.capacity_pages;
  return capacity_pages_for_fraction(offsets.back(), cfg.page_size, cfg.capacity_fraction);
}

}  // namespace

std::size_t WaveBuffer::token_bytes() const {
  return static_cast<std::size_t>(cfg_.head_dim) * 2;  // 16-bit KV
}

WaveBuffer::WaveBuffer(const WaveBufferConfig& cfg, const void* k, const void* v,
                       std::span<const int64_t> cluster_offsets)
    : cfg_(cfg),
      offsets_(cluster_offsets.begin(), cluster_offsets.end()),
      policy_(checked_capacity(cfg, cluster_offsets)) {
  const int64_t n_tokens = offsets_.back();
  RETROKV_CHECK(n_tokens == 0 || (k != nullptr && v != nullptr), "k, v: null host pointer for ",
                n_tokens, " tokens");
  const std::size_t kv_bytes = static_cast<std::size_t>(n_tokens) * token_bytes();
  host_k_ = PinnedBuffer(kv_bytes);
  host_v_ = PinnedBuffer(kv_bytes);
  if (kv_bytes > 0) {
    std::memcpy(host_k_.data(), k, kv_bytes);
    std::memcpy(host_v_.data(), v, kv_bytes);
  }
  const int64_t pool_pages = policy_.capacity_pages() + cfg_.max_step_pages;
  const std::size_t pool_bytes =
      static_cast<std::size_t>(pool_pages) * cfg_.page_size * token_bytes();
  k_pool_ = DeviceBuffer(pool_bytes);
  v_pool_ = DeviceBuffer(pool_bytes);
  const std::size_t table = static_cast<std::size_t>(cfg_.max_step_pages) * sizeof(int32_t);
  d_indptr_ = DeviceBuffer((static_cast<std::size_t>(cfg_.n_lists) + 1) * sizeof(int32_t));
  d_indices_ = DeviceBuffer(table);
  d_page_len_ = DeviceBuffer(table);
  h_table_ = PinnedBuffer(d_indptr_.bytes() + 2 * table);
  std::memset(h_table_.data(), 0, h_table_.bytes());
  d_indptr_.copy_from_host(h_table_.data(), d_indptr_.bytes());  // an empty table until a step
  check_status(cudaEventCreateWithFlags(&uploaded_, cudaEventDisableTiming), "cudaEventCreate");
  check_status(cudaEventCreateWithFlags(&consumed_, cudaEventDisableTiming), "cudaEventCreate");
}

WaveBuffer::~WaveBuffer() {
  if (uploaded_ != nullptr) (void)cudaEventDestroy(uploaded_);
  if (consumed_ != nullptr) (void)cudaEventDestroy(consumed_);
}

void WaveBuffer::copy_cluster(int32_t cluster, std::span<const int32_t> pages, Stream stream) {
  const int64_t begin = offsets_[cluster];
  const int64_t end = offsets_[cluster + 1];
  const std::size_t tb = token_bytes();
  const int ps = cfg_.page_size;
  // Runs of consecutive page slots hold consecutive tokens: one copy per run.
  size_t i = 0;
  while (i < pages.size()) {
    size_t j = i + 1;
    while (j < pages.size() && pages[j] == pages[j - 1] + 1) ++j;
    const int64_t t0 = begin + static_cast<int64_t>(i) * ps;
    const int64_t t1 = std::min<int64_t>(end, begin + static_cast<int64_t>(j) * ps);
    const std::size_t bytes = static_cast<std::size_t>(t1 - t0) * tb;
    const std::size_t dst = static_cast<std::size_t>(pages[i]) * ps * tb;
    const std::size_t src = static_cast<std::size_t>(t0) * tb;
    check_status(cudaMemcpyAsync(k_pool_.as<char>() + dst, static_cast<char*>(host_k_.data()) + src,
                                 bytes, cudaMemcpyHostToDevice, stream),
                 "cudaMemcpyAsync(K cluster)");
    check_status(cudaMemcpyAsync(v_pool_.as<char>() + dst, static_cast<char*>(host_v_.data()) + src,
                                 bytes, cudaMemcpyHostToDevice, stream),
                 "cudaMemcpyAsync(V cluster)");
    i = j;
  }
}

int64_t WaveBuffer::prepare_step(const std::vector<std::vector<int32_t>>& selected, Stream stream) {
  RETROKV_CHECK(static_cast<int>(selected.size()) == cfg_.n_lists, "selected: expected ",
                cfg_.n_lists, " lists, got ", selected.size());
  // The pinned staging of the previous step's page table must have been read.
  check_status(cudaEventSynchronize(uploaded_), "cudaEventSynchronize");
  // Validates before the policy changes, so a rejected call leaves the cache intact.
  const WaveStepPlan plan =
      plan_wave_step(policy_, selected, offsets_, cfg_.page_size, cfg_.max_step_pages);
  // Evicted pages may still be read by the previous step's attention on another stream.
  check_status(cudaStreamWaitEvent(stream, consumed_, 0), "cudaStreamWaitEvent");
  for (size_t i = 0; i < plan.copy_clusters.size(); ++i) {
    copy_cluster(plan.copy_clusters[i],
                 std::span<const int32_t>(plan.copy_pages.data() + plan.copy_indptr[i],
                                          plan.copy_pages.data() + plan.copy_indptr[i + 1]),
                 stream);
  }
  auto* indptr = static_cast<int32_t*>(h_table_.data());
  int32_t* indices = indptr + cfg_.n_lists + 1;
  int32_t* page_len = indices + cfg_.max_step_pages;
  const auto n = static_cast<int32_t>(plan.indices.size());
  std::copy(plan.indptr.begin(), plan.indptr.end(), indptr);
  std::copy(plan.indices.begin(), plan.indices.end(), indices);
  std::copy(plan.page_len.begin(), plan.page_len.end(), page_len);
  max_list_pages_ = plan.max_list_pages;
  check_status(
      cudaMemcpyAsync(d_indptr_.data(), indptr, d_indptr_.bytes(), cudaMemcpyHostToDevice, stream),
      "cudaMemcpyAsync(indptr)");
  if (n > 0) {
    check_status(cudaMemcpyAsync(d_indices_.data(), indices, n * sizeof(int32_t),
                                 cudaMemcpyHostToDevice, stream),
                 "cudaMemcpyAsync(indices)");
    check_status(cudaMemcpyAsync(d_page_len_.data(), page_len, n * sizeof(int32_t),
                                 cudaMemcpyHostToDevice, stream),
                 "cudaMemcpyAsync(page_len)");
  }
  check_status(cudaEventRecord(uploaded_, stream), "cudaEventRecord");
  return n;
}

void WaveBuffer::release_step(Stream compute_stream) {
  check_status(cudaEventRecord(consumed_, compute_stream), "cudaEventRecord");
}

void WaveBuffer::wait_ready(Stream compute_stream) const {
  check_status(cudaStreamWaitEvent(compute_stream, uploaded_, 0), "cudaStreamWaitEvent");
}

PagedKV WaveBuffer::paged_kv() const {
  PagedKV kv;
  kv.k_pages = k_pool_.data();
  kv.v_pages = v_pool_.data();
  kv.dtype = cfg_.dtype;
  kv.page_size = cfg_.page_size;
  kv.indptr = d_indptr_.as<int32_t>();
  kv.indices = d_indices_.as<int32_t>();
  kv.page_len = d_page_len_.as<int32_t>();
  return kv;
}

}  // namespace retrokv::cuda
