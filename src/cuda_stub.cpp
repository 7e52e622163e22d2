// The CUDA part when retrokv is built without CUDA: queries answer "none", everything else throws.
#include "retrokv/core/error.h"
#include "retrokv/cuda/device.h"

namespace retrokv::cuda {

bool built_with_cuda() { return false; }
int device_count() { return 0; }
void require_device() { RETROKV_FAIL("built without CUDA"); }

}  // namespace retrokv::cuda
