// retrokv-eval fidelity (placeholder until its issue lands).
#include "retrokv/core/error.h"

namespace retrokv::eval {
int run_fidelity(int, char**) { RETROKV_FAIL("retrokv-eval fidelity is not implemented yet"); }
}  // namespace retrokv::eval
