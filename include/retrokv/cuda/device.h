// Host-side view of the CUDA part, usable from plain g++ code (no CUDA headers): device discovery,
// the status/stream types every launcher uses, and error conversion. When retrokv is built
// without CUDA every call into the CUDA part throws retrokv::Error("built without CUDA").
#pragma once

#include <cstddef>

// cudaStream_t is `CUstream_st*`; declaring the tag here lets plain g++ code name the same type.
struct CUstream_st;

namespace retrokv::cuda {

/// The stream every launcher takes last: exactly cudaStream_t, nullptr = the default stream.
using Stream = CUstream_st*;

/// What every launcher returns: a cudaError_t value as int (0 = cudaSuccess), so this header
/// needs no CUDA header. Launchers throw retrokv::Error for bad caller input (shapes, head_dim,
/// dtype) before launching and return the CUDA status of the launch itself.
using CudaStatus = int;
inline constexpr CudaStatus kCudaSuccess = 0;

/// True when the library was compiled with the CUDA kernels.
bool built_with_cuda();

/// Number of usable CUDA devices: 0 when built without CUDA, without a driver, or without a
/// device (the CUDA error this raises is cleared).
int device_count();

/// Throws retrokv::Error unless built with CUDA and at least one device is present.
void require_device();

/// Streaming multiprocessors of the current device (used to size split-KV launches).
int multiprocessor_count();

/// Throws retrokv::Error("<what>: <cudaGetErrorString>") unless status == kCudaSuccess.
void check_status(CudaStatus status, const char* what);

/// cudaDeviceSynchronize() then check_status (tests and benchmarks).
void synchronize();

}  // namespace retrokv::cuda
