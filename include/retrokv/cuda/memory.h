// Owning GPU and pinned-host buffers for the CUDA part (DESIGN.md section 4): the wave buffer's
// page pool and per-step buffers live in DeviceBuffer, the full KV in mapped PinnedBuffer.
// Running out of memory throws retrokv::Error with the size asked and the size free.
#pragma once

#include <cstddef>

#include "retrokv/cuda/device.h"

namespace retrokv::cuda {

/// cudaMalloc'd bytes on the current device, freed on destruction. Move-only.
class DeviceBuffer {
 public:
  DeviceBuffer() = default;
  /// Allocates `bytes` (0 = no allocation). Out of memory: retrokv::Error naming the bytes asked
  /// and the bytes free (cudaMemGetInfo); nothing else is touched.
  explicit DeviceBuffer(std::size_t bytes);
  ~DeviceBuffer();
  DeviceBuffer(DeviceBuffer&& o) noexcept;
  DeviceBuffer& operator=(DeviceBuffer&& o) noexcept;
  DeviceBuffer(const DeviceBuffer&) = delete;
  DeviceBuffer& operator=(const DeviceBuffer&) = delete;

  void* data() const { return ptr_; }
  template <typename T>
  T* as() const {
    return static_cast<T*>(ptr_);
  }
  std::size_t bytes() const { return bytes_; }

  /// Synchronous copies; `bytes` + `offset` must fit (retrokv::Error otherwise).
  void copy_from_host(const void* src, std::size_t bytes, std::size_t offset = 0);
  void copy_to_host(void* dst, std::size_t bytes, std::size_t offset = 0) const;
  /// Sets every byte to `value` (tests poison outputs with 0xFF = NaN floats).
  void fill_bytes(int value);

 private:
  void* ptr_ = nullptr;
  std::size_t bytes_ = 0;
};

/// Page-locked host memory, mapped into the device address space (cudaHostAllocMapped), so a
/// kernel can read it over PCIe (zero-copy) and async copies run at full speed. Move-only.
class PinnedBuffer {
 public:
  PinnedBuffer() = default;
  /// Out of memory: retrokv::Error naming the bytes asked.
  explicit PinnedBuffer(std::size_t bytes);
  ~PinnedBuffer();
  PinnedBuffer(PinnedBuffer&& o) noexcept;
  PinnedBuffer& operator=(PinnedBuffer&& o) noexcept;
  PinnedBuffer(const PinnedBuffer&) = delete;
  PinnedBuffer& operator=(const PinnedBuffer&) = delete;

  void* data() const { return ptr_; }
  /// The device-side address of the same bytes (for zero-copy reads by kernels).
  void* device_data() const { return device_ptr_; }
  std::size_t bytes() const { return bytes_; }

 private:
  void* ptr_ = nullptr;
  void* device_ptr_ = nullptr;
  std::size_t bytes_ = 0;
};

/// Device-to-device copy of `bytes` on `stream` (cudaMemcpyAsync); the bandwidth yardstick.
CudaStatus device_copy(void* dst, const void* src, std::size_t bytes, Stream stream = nullptr);

/// Free and total bytes of the current device (cudaMemGetInfo).
void memory_info(std::size_t* free_bytes, std::size_t* total_bytes);

}  // namespace retrokv::cuda
