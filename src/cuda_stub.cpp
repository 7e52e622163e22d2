// The CUDA part when retrokv is built without CUDA: queries answer "none", every launcher and
// allocation throws retrokv::Error("built without CUDA"), so CPU-only builds link and fail loudly.
#include "retrokv/core/error.h"
#include "retrokv/cuda/attention.h"
#include "retrokv/cuda/device.h"
#include "retrokv/cuda/graph.h"
#include "retrokv/cuda/knn.h"
#include "retrokv/cuda/memory.h"
#include "retrokv/cuda/scoring.h"
#include "retrokv/cuda/wave_buffer.h"

namespace retrokv::cuda {

namespace {
[[noreturn]] void no_cuda() { RETROKV_FAIL("built without CUDA"); }
}  // namespace

bool built_with_cuda() { return false; }
int device_count() { return 0; }
void require_device() { no_cuda(); }
int multiprocessor_count() { no_cuda(); }
void check_status(CudaStatus status, const char* what) {
  RETROKV_CHECK(status == kCudaSuccess, what, ": CUDA error ", status, " (built without CUDA)");
}
void synchronize() { no_cuda(); }

void memory_info(std::size_t*, std::size_t*) { no_cuda(); }
CudaStatus device_copy(void*, const void*, std::size_t, Stream) { no_cuda(); }
DeviceBuffer::DeviceBuffer(std::size_t bytes) {
  if (bytes != 0) no_cuda();
}
DeviceBuffer::~DeviceBuffer() = default;
DeviceBuffer::DeviceBuffer(DeviceBuffer&& o) noexcept : ptr_(o.ptr_), bytes_(o.bytes_) {
  o.ptr_ = nullptr;
  o.bytes_ = 0;
}
DeviceBuffer& DeviceBuffer::operator=(DeviceBuffer&& o) noexcept {
  ptr_ = o.ptr_;
  bytes_ = o.bytes_;
  o.ptr_ = nullptr;
  o.bytes_ = 0;
  return *this;
}
void DeviceBuffer::copy_from_host(const void*, std::size_t, std::size_t) { no_cuda(); }
void DeviceBuffer::copy_to_host(void*, std::size_t, std::size_t) const { no_cuda(); }
void DeviceBuffer::fill_bytes(int) { no_cuda(); }
PinnedBuffer::PinnedBuffer(std::size_t bytes) {
  if (bytes != 0) no_cuda();
}
PinnedBuffer::~PinnedBuffer() = default;
PinnedBuffer::PinnedBuffer(PinnedBuffer&& o) noexcept
    : ptr_(o.ptr_), device_ptr_(o.device_ptr_), bytes_(o.bytes_) {
  o.ptr_ = nullptr;
  o.device_ptr_ = nullptr;
  o.bytes_ = 0;
}
PinnedBuffer& PinnedBuffer::operator=(PinnedBuffer&& o) noexcept {
  ptr_ = o.ptr_;
  device_ptr_ = o.device_ptr_;
  bytes_ = o.bytes_;
  o.ptr_ = nullptr;
  o.device_ptr_ = nullptr;
  o.bytes_ = 0;
  return *this;
}

CudaStatus decode_attention(const float*, const RaggedKV&, const DecodePlan&, float, void*, float*,
                            float*, Stream) {
  no_cuda();
}
CudaStatus paged_decode_attention(const float*, const PagedKV&, const DecodePlan&, float, void*,
                                  float*, float*, Stream) {
  no_cuda();
}
CudaStatus estimation_attention(const float*, const ClusterSummaries&, const DecodePlan&, float,
                                void*, float*, float*, Stream) {
  no_cuda();
}
CudaStatus merge_states(const float*, const float*, int, int64_t, int, int64_t, int64_t, int64_t,
                        int64_t, float*, float*, Stream) {
  no_cuda();
}
CudaStatus merge_states(const float*, const float*, int, int64_t, int, float*, float*, Stream) {
  no_cuda();
}
CudaStatus score_centroids(const float*, const CentroidSet&, int, int, int, int, int64_t, int, int,
                           float, void*, float*, int32_t*, int32_t*, Stream) {
  no_cuda();
}

std::size_t knn_workspace_bytes(int64_t, int64_t, int, int) { no_cuda(); }
CudaStatus exact_knn(const float*, const float*, int64_t, int64_t, int, int, void*, std::size_t,
                     int32_t*, float*, Stream) {
  no_cuda();
}
void exact_knn_host(const float*, const float*, int64_t, int64_t, int, int, int32_t*, float*) {
  no_cuda();
}

CudaStream::CudaStream() { no_cuda(); }
CudaStream::~CudaStream() = default;
CudaStream::CudaStream(CudaStream&& o) noexcept : stream_(o.stream_) { o.stream_ = nullptr; }
CudaStream& CudaStream::operator=(CudaStream&& o) noexcept {
  stream_ = o.stream_;
  o.stream_ = nullptr;
  return *this;
}
void CudaStream::synchronize() const { no_cuda(); }
CudaGraph::~CudaGraph() = default;
CudaGraph::CudaGraph(CudaGraph&& o) noexcept : exec_(o.exec_) { o.exec_ = nullptr; }
CudaGraph& CudaGraph::operator=(CudaGraph&& o) noexcept {
  exec_ = o.exec_;
  o.exec_ = nullptr;
  return *this;
}
void CudaGraph::begin_capture(Stream) { no_cuda(); }
void CudaGraph::end_capture(Stream) { no_cuda(); }
void CudaGraph::launch(Stream) const { no_cuda(); }

WaveBuffer::WaveBuffer(const WaveBufferConfig&, const void*, const void*, std::span<const int64_t>)
    : policy_(1) {
  no_cuda();
}
WaveBuffer::~WaveBuffer() = default;
int64_t WaveBuffer::prepare_step(const std::vector<std::vector<int32_t>>&, Stream) { no_cuda(); }
void WaveBuffer::wait_ready(Stream) const { no_cuda(); }
void WaveBuffer::release_step(Stream) { no_cuda(); }
PagedKV WaveBuffer::paged_kv() const { no_cuda(); }
std::size_t WaveBuffer::token_bytes() const { no_cuda(); }
void WaveBuffer::copy_cluster(int32_t, std::span<const int32_t>, Stream) { no_cuda(); }

}  // namespace retrokv::cuda
