// retrokv-eval recall (placeholder until its issue lands).
#include "retrokv/core/error.h"

namespace retrokv::eval {
int run_recall(int, char**) { RETROKV_FAIL("retrokv-eval recall is not implemented yet"); }
}  // namespace retrokv::eval
