// Device discovery and error conversion for the CUDA build: a missing driver or device is
// "0 devices", not an error.
#include <cuda_runtime.h>

#include "retrokv/core/error.h"
#include "retrokv/cuda/device.h"

namespace retrokv::cuda {

bool built_with_cuda() { return true; }

int device_count() {
  int n = 0;
  if (cudaGetDeviceCount(&n) != cudaSuccess) {
    (void)cudaGetLastError();  // clear the error so later calls start clean
    return 0;
  }
  return n;
}

void require_device() {
  RETROKV_CHECK(device_count() > 0, "no CUDA device present (cudaGetDeviceCount found none)");
}

int multiprocessor_count() {
  require_device();
  int dev = 0;
  check_status(cudaGetDevice(&dev), "cudaGetDevice");
  int n = 0;
  check_status(cudaDeviceGetAttribute(&n, cudaDevAttrMultiProcessorCount, dev),
               "cudaDeviceGetAttribute(MultiProcessorCount)");
  return n;
}

void check_status(CudaStatus status, const char* what) {
  if (status == kCudaSuccess) return;
  const auto err = static_cast<cudaError_t>(status);
  RETROKV_FAIL(what, ": CUDA error ", status, " (", cudaGetErrorName(err), ": ",
               cudaGetErrorString(err), ")");
}

void synchronize() { check_status(cudaDeviceSynchronize(), "cudaDeviceSynchronize"); }

}  // namespace retrokv::cuda
