// Device discovery for the CUDA build: a missing driver or device is "0 devices", not an error.
#include <cuda_runtime.h>

#include "retrokv/core/error.h"
#include "retrokv/cuda/device.h"

namespace retrokv::cuda {

bool built_with_cuda() { return true; }

int device_count() {
  int n = 0;
  if (cudaGetDeviceCount(&n) != cudaSuccess) {
    (void)cudaGetLastError();  // clear the sticky-free error so later calls start clean
    return 0;
  }
  return n;
}

void require_device() {
  RETROKV_CHECK(device_count() > 0, "no CUDA device present (cudaGetDeviceCount found none)");
}

}  // namespace retrokv::cuda
