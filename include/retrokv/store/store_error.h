// Error kinds of the KV vector store (issue 7 "API"): every store error is a retrokv::Error, and
// StoreError adds a machine-readable code so the C API can map it to a status without parsing text.
#pragma once

#include <string>
#include <utility>

#include "retrokv/core/error.h"

namespace retrokv {

/// Why a store call was rejected. kInvalidArgument covers every plain retrokv::Error too.
enum class StoreErrorCode : int {
  kInvalidArgument = 1,  ///< wrong shape, out-of-range layer, NaN/Inf in q/k/v, bad config
  kUnknownSequence = 2,  ///< sequence id never added, or already removed
  kMemoryBudget = 3,     ///< the call would exceed StoreConfig::host_memory_budget_bytes
  kFile = 4,             ///< cannot read/write a file, corrupt file, or shape/policy mismatch
};

/// A retrokv::Error with a StoreErrorCode. Rejected calls leave the store as it was.
class StoreError : public Error {
 public:
  StoreError(StoreErrorCode code, const std::string& message) : Error(message), code_(code) {}
  StoreErrorCode code() const { return code_; }

 private:
  StoreErrorCode code_;
};

namespace detail {
template <typename... Parts>
[[noreturn]] void throw_store_error(StoreErrorCode code, const char* file, int line,
                                    Parts&&... parts) {
  throw StoreError(code,
                   concat("retrokv: ", std::forward<Parts>(parts)..., " [", file, ":", line, "]"));
}
}  // namespace detail

}  // namespace retrokv

/// RETROKV_STORE_FAIL(code, message parts...): throws retrokv::StoreError with that code.
#define RETROKV_STORE_FAIL(code, ...) \
  ::retrokv::detail::throw_store_error(code, __FILE__, __LINE__, __VA_ARGS__)
