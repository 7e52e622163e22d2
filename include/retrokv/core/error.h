// retrokv::Error and the checks that raise it (DESIGN.md section 1, "Errors").
// RETROKV_CHECK guards caller input and always runs; RETROKV_ASSERT guards internal invariants
// and is compiled out with NDEBUG, as in Faiss's FAISS_THROW_IF_NOT / FAISS_ASSERT split.
#pragma once

#include <sstream>
#include <stdexcept>
#include <string>
#include <utility>

namespace retrokv {

/// Thrown for every bad input from a caller: wrong shape, out-of-range value, NaN, corrupt file,
/// unsupported type, memory limit. The message names the argument and expected vs actual value.
class Error : public std::runtime_error {
 public:
  explicit Error(const std::string& message) : std::runtime_error(message) {}
};

namespace detail {

template <typename... Parts>
std::string concat(Parts&&... parts) {
  std::ostringstream os;
  (os << ... << std::forward<Parts>(parts));
  return os.str();
}

template <typename... Parts>
[[noreturn]] void throw_error(const char* file, int line, Parts&&... parts) {
  throw Error(concat("retrokv: ", std::forward<Parts>(parts)..., " [", file, ":", line, "]"));
}

}  // namespace detail
}  // namespace retrokv

/// RETROKV_CHECK(cond, message parts...): throws retrokv::Error with the parts streamed together.
/// Name the argument and give expected and actual values, e.g.
/// RETROKV_CHECK(k <= n, "k must be <= n_keys (", n, "), got ", k);
#define RETROKV_CHECK(cond, ...)                                                  \
  do {                                                                            \
    if (!(cond)) ::retrokv::detail::throw_error(__FILE__, __LINE__, __VA_ARGS__); \
  } while (0)

/// RETROKV_FAIL(message parts...): unconditional throw of retrokv::Error.
#define RETROKV_FAIL(...) ::retrokv::detail::throw_error(__FILE__, __LINE__, __VA_ARGS__)

/// RETROKV_CHECK_EQ(name, expected, actual): the common shape check.
#define RETROKV_CHECK_EQ(name, expected, actual) \
  RETROKV_CHECK((expected) == (actual), name, ": expected ", (expected), ", got ", (actual))

#ifdef NDEBUG
#define RETROKV_ASSERT(cond) ((void)0)
#else
#include <cassert>
#define RETROKV_ASSERT(cond) assert(cond)
#endif
