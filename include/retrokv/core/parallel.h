// Small OpenMP helpers shared by the CPU kernels and index builds (DESIGN.md section 2, "core").
// The work split depends only on (n, grain), never on the thread count, so per-chunk results
// merged in chunk order are deterministic ("same seed and input give the same index").
#pragma once

#include <omp.h>

#include <algorithm>
#include <cstdint>
#include <exception>
#include <mutex>

#include "retrokv/core/error.h"

namespace retrokv {

/// Threads a parallel region started here would use (1 inside an active parallel region).
inline int num_threads() { return omp_in_parallel() ? 1 : omp_get_max_threads(); }

/// Number of chunks parallel_for splits [0, n) into: ceil(n / grain).
inline int64_t num_chunks(int64_t n, int64_t grain) {
  RETROKV_CHECK(n >= 0, "n: expected >= 0, got ", n);
  RETROKV_CHECK(grain >= 1, "grain: expected >= 1, got ", grain);
  return (n + grain - 1) / grain;
}

/// Calls f(chunk, begin, end) for the chunks [c*grain, min(n, (c+1)*grain)) of [0, n), in
/// parallel (dynamic schedule: chunks may cost different amounts). Runs serially when called
/// from inside a parallel region. The first exception thrown by f is rethrown here after the
/// loop (an exception must not escape an OpenMP region); later chunks are skipped.
template <typename F>
void parallel_for_chunks(int64_t n, int64_t grain, F&& f) {
  const int64_t chunks = num_chunks(n, grain);
  if (chunks == 0) return;
  if (chunks == 1 || omp_in_parallel() || omp_get_max_threads() == 1) {
    for (int64_t c = 0; c < chunks; ++c) f(c, c * grain, std::min(n, (c + 1) * grain));
    return;
  }
  std::exception_ptr error;
  std::mutex error_mutex;
  bool failed = false;
#pragma omp parallel for schedule(dynamic, 1)
  for (int64_t c = 0; c < chunks; ++c) {
    bool skip;
#pragma omp atomic read
    skip = failed;
    if (skip) continue;
    try {
      f(c, c * grain, std::min(n, (c + 1) * grain));
    } catch (...) {
      std::lock_guard<std::mutex> lock(error_mutex);
      if (!error) error = std::current_exception();
#pragma omp atomic write
      failed = true;
    }
  }
  if (error) std::rethrow_exception(error);
}

/// Calls f(begin, end) over [0, n) in chunks of `grain` items, in parallel (see above).
template <typename F>
void parallel_for(int64_t n, int64_t grain, F&& f) {
  parallel_for_chunks(n, grain, [&f](int64_t, int64_t begin, int64_t end) { f(begin, end); });
}

}  // namespace retrokv
