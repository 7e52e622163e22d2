// Host-side view of the CUDA part, usable from plain g++ code. When retrokv is built without
// CUDA every call into the CUDA part throws retrokv::Error("built without CUDA").
#pragma once

namespace retrokv::cuda {

/// True when the library was compiled with the CUDA kernels.
bool built_with_cuda();

/// Number of usable CUDA devices: 0 when built without CUDA, without a driver, or without a
/// device (the CUDA error this raises is cleared).
int device_count();

/// Throws retrokv::Error unless built with CUDA and at least one device is present.
void require_device();

}  // namespace retrokv::cuda
