// Owning device and pinned host buffers (retrokv/cuda/memory.h). Plain C++ against the CUDA
// runtime API; out-of-memory errors say how much was asked and how much was free.
#include "retrokv/cuda/memory.h"

#include <cuda_runtime.h>

#include <utility>

#include "retrokv/core/error.h"

namespace retrokv::cuda {

void memory_info(std::size_t* free_bytes, std::size_t* total_bytes) {
  require_device();
  check_status(cudaMemGetInfo(free_bytes, total_bytes), "cudaMemGetInfo");
}

CudaStatus device_copy(void* dst, const void* src, std::size_t bytes, Stream stream) {
  return cudaMemcpyAsync(dst, src, bytes, cudaMemcpyDeviceToDevice, stream);
}

DeviceBuffer::DeviceBuffer(std::size_t bytes) {
  if (bytes == 0) return;
  require_device();
  void* p = nullptr;
  const cudaError_t err = cudaMalloc(&p, bytes);
  if (err != cudaSuccess) {
    (void)cudaGetLastError();
    std::size_t free_b = 0, total_b = 0;
    (void)cudaMemGetInfo(&free_b, &total_b);
    (void)cudaGetLastError();
    RETROKV_FAIL("out of GPU memory: asked for ", bytes, " bytes, ", free_b, " bytes free of ",
                 total_b, " (", cudaGetErrorString(err), ")");
  }
  ptr_ = p;
  bytes_ = bytes;
}

DeviceBuffer::~DeviceBuffer() {
  if (ptr_ != nullptr) (void)cudaFree(ptr_);
}

DeviceBuffer::DeviceBuffer(DeviceBuffer&& o) noexcept
    : ptr_(std::exchange(o.ptr_, nullptr)), bytes_(std::exchange(o.bytes_, 0)) {}

DeviceBuffer& DeviceBuffer::operator=(DeviceBuffer&& o) noexcept {
  if (this != &o) {
    if (ptr_ != nullptr) (void)cudaFree(ptr_);
    ptr_ = std::exchange(o.ptr_, nullptr);
    bytes_ = std::exchange(o.bytes_, 0);
  }
  return *this;
}

void DeviceBuffer::copy_from_host(const void* src, std::size_t bytes, std::size_t offset) {
  RETROKV_CHECK(offset <= bytes_ && bytes <= bytes_ - offset,
                "bytes: expected <= ", bytes_ - (offset <= bytes_ ? offset : bytes_), " at offset ",
                offset, ", got ", bytes);
  if (bytes == 0) return;
  check_status(cudaMemcpy(static_cast<char*>(ptr_) + offset, src, bytes, cudaMemcpyHostToDevice),
               "cudaMemcpy(host to device)");
}

void DeviceBuffer::copy_to_host(void* dst, std::size_t bytes, std::size_t offset) const {
  RETROKV_CHECK(offset <= bytes_ && bytes <= bytes_ - offset,
                "bytes: expected <= ", bytes_ - (offset <= bytes_ ? offset : bytes_), " at offset ",
                offset, ", got ", bytes);
  if (bytes == 0) return;
  check_status(
      cudaMemcpy(dst, static_cast<const char*>(ptr_) + offset, bytes, cudaMemcpyDeviceToHost),
      "cudaMemcpy(device to host)");
}

void DeviceBuffer::fill_bytes(int value) {
  if (bytes_ == 0) return;
  check_status(cudaMemset(ptr_, value, bytes_), "cudaMemset");
}

PinnedBuffer::PinnedBuffer(std::size_t bytes) {
  if (bytes == 0) return;
  require_device();
  void* p = nullptr;
  const cudaError_t err = cudaHostAlloc(&p, bytes, cudaHostAllocMapped | cudaHostAllocPortable);
  if (err != cudaSuccess) {
    (void)cudaGetLastError();
    RETROKV_FAIL("out of pinned host memory: asked for ", bytes, " bytes (",
                 cudaGetErrorString(err), ")");
  }
  void* dp = nullptr;
  const cudaError_t map_err = cudaHostGetDevicePointer(&dp, p, 0);
  if (map_err != cudaSuccess) {
    (void)cudaFreeHost(p);
    check_status(map_err, "cudaHostGetDevicePointer");
  }
  ptr_ = p;
  device_ptr_ = dp;
  bytes_ = bytes;
}

PinnedBuffer::~PinnedBuffer() {
  if (ptr_ != nullptr) (void)cudaFreeHost(ptr_);
}

PinnedBuffer::PinnedBuffer(PinnedBuffer&& o) noexcept
    : ptr_(std::exchange(o.ptr_, nullptr)),
      device_ptr_(std::exchange(o.device_ptr_, nullptr)),
      bytes_(std::exchange(o.bytes_, 0)) {}

PinnedBuffer& PinnedBuffer::operator=(PinnedBuffer&& o) noexcept {
  if (this != &o) {
    if (ptr_ != nullptr) (void)cudaFreeHost(ptr_);
    ptr_ = std::exchange(o.ptr_, nullptr);
    device_ptr_ = std::exchange(o.device_ptr_, nullptr);
    bytes_ = std::exchange(o.bytes_, 0);
  }
  return *this;
}

}  // namespace retrokv::cuda
